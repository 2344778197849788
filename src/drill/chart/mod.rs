//! The drill chart: one stacked bar per drill, oldest on the left, split
//! into time awaiting approval, applying and converging, as a PNG for the
//! scorecard's thread.
//!
//! The chart is laid out first, in pixels, as a scene of filled rectangles
//! (bars, grid lines, legend swatches) and labels; plotters then draws the
//! rectangles into an RGB buffer, `text` writes the labels over them, and
//! `png` encodes the buffer, so the same drills always give the same bytes. The font is compiled into the binary
//! (Ubuntu Light, from `epaint_default_fonts`, under the Ubuntu Font Licence
//! 1.0, whose text ships in `assets/fonts/`): the distroless image has no
//! system fonts to find.

mod text;

use ab_glyph::FontRef;
use plotters::prelude::*;

use super::{DrillTimings, Part};
use text::{Align, Baseline, Painter};

/// Sized for Slack: wide enough to read in a thread, 2:1.
pub const WIDTH: u32 = 1000;
pub const HEIGHT: u32 = 500;

const FONT: &[u8] = epaint_default_fonts::UBUNTU_LIGHT;

/// Okabe–Ito colours: told apart with the common colour-vision deficiencies.
const WAITING: [u8; 3] = [230, 159, 0];
const APPLYING: [u8; 3] = [0, 114, 178];
const CONVERGING: [u8; 3] = [0, 158, 115];
const BACKGROUND: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [40, 40, 40];
const GRID: [u8; 3] = [226, 226, 226];

/// The plot's frame, in pixels: room for the title and legend above, tick
/// labels to the left, dates below.
const PLOT_LEFT: i32 = 84;
const PLOT_RIGHT: i32 = WIDTH as i32 - 28;
const PLOT_TOP: i32 = 76;
const PLOT_BOTTOM: i32 = HEIGHT as i32 - 48;

/// Bars take this share of their slot, and never more than `MAX_BAR`
/// pixels (one drill alone would otherwise be a wall).
const BAR_SHARE: f64 = 0.7;
const MAX_BAR: f64 = 90.0;
/// Above this many drills the bars carry no total (they would overlap).
const MAX_TOTAL_LABELS: usize = 15;
/// At most this many dates under the bars.
const MAX_DATE_LABELS: usize = 10;
/// At most this many steps up the value axis.
const TICKS: f64 = 8.0;

#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    #[error("the chart's font could not be loaded")]
    Font,
    #[error("drawing the chart failed: {0}")]
    Draw(String),
    #[error("encoding the chart as PNG failed: {0}")]
    Encode(#[from] png::EncodingError),
}

impl Part {
    /// The part's colour on the chart (RGB).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Part::Waiting => WAITING,
            Part::Applying => APPLYING,
            Part::Converging => CONVERGING,
        }
    }

    fn legend(self) -> &'static str {
        match self {
            Part::Waiting => "awaiting approval",
            Part::Applying => "applying",
            Part::Converging => "converging",
        }
    }
}

/// The chart of `drills` (in any order; drawn by start time) as a PNG of
/// [`WIDTH`] × [`HEIGHT`]. Drills whose times do not add up (corrupt) are
/// left out; with none left, the chart says there are no drills yet.
pub fn render(drills: &[DrillTimings]) -> Result<Vec<u8>, ChartError> {
    let font = FontRef::try_from_slice(FONT).map_err(|_| ChartError::Font)?;
    let scene = Scene::of(&bars(drills), &title(drills), &font);
    let mut rgb = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw_shapes(&scene, &mut rgb).map_err(|e| ChartError::Draw(e.to_string()))?;
    let mut painter = Painter::new(&font, &mut rgb, (WIDTH, HEIGHT));
    for label in &scene.labels {
        painter.write(&label.text, label.size, label.at, label.place, INK);
    }
    encode(&rgb)
}

/// One drill as drawn: its date and its parts in seconds.
struct Bar {
    date: String,
    parts: [f64; 3],
    total: f64,
}

fn bars(drills: &[DrillTimings]) -> Vec<Bar> {
    let mut sorted: Vec<&DrillTimings> = drills.iter().collect();
    sorted.sort_by_key(|d| (d.started_at, d.op));
    let format = date_format(&sorted);
    sorted
        .into_iter()
        .filter_map(|drill| {
            let (parts, total) = drill.sums()?;
            Some(Bar {
                date: drill.started_at.format(format).to_string(),
                parts: Part::ALL.map(|p| seconds(parts.part_ms(p))),
                total: seconds(total),
            })
        })
        .collect()
}

/// The day, or the day and time (UTC) when two drills share a day, so
/// that no two bars are labelled alike.
fn date_format(sorted: &[&DrillTimings]) -> &'static str {
    let same_day = sorted
        .windows(2)
        .any(|pair| pair[0].started_at.date_naive() == pair[1].started_at.date_naive());
    if same_day {
        "%b %-d %H:%M"
    } else {
        "%b %-d"
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

fn title(drills: &[DrillTimings]) -> String {
    let mut envs: Vec<&str> = drills.iter().map(|d| d.env.as_str()).collect();
    envs.sort_unstable();
    envs.dedup();
    match envs.as_slice() {
        [env] => format!("Failover drills in {env}: time per drill"),
        _ => "Failover drills: time per drill".to_owned(),
    }
}

/// Minutes for drills of minutes, seconds for quick ones (the sandbox).
#[derive(Clone, Copy)]
enum Unit {
    Seconds,
    Minutes,
}

impl Unit {
    fn for_longest(seconds: f64) -> Unit {
        if seconds >= 120.0 {
            Unit::Minutes
        } else {
            Unit::Seconds
        }
    }

    fn of(self, seconds: f64) -> f64 {
        match self {
            Unit::Seconds => seconds,
            Unit::Minutes => seconds / 60.0,
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Minutes => "min",
        }
    }

    /// A bar's total: one decimal below 10, none above.
    fn total(self, value: f64) -> String {
        let decimals = if value < 10.0 { 1 } else { 0 };
        format!("{value:.decimals$} {}", self.suffix())
    }
}

/// The value axis: its top and the values that get a line and a label.
struct Scale {
    unit: Unit,
    top: f64,
    step: f64,
}

impl Scale {
    fn for_longest(seconds: f64) -> Scale {
        let unit = Unit::for_longest(seconds);
        // Headroom for the totals above the bars; a positive range even
        // when every drill took no time.
        let wanted = unit.of(seconds) * 1.12;
        let wanted = if wanted > 0.0 { wanted } else { 1.0 };
        let step = nice_step(wanted / TICKS);
        Scale {
            unit,
            top: step * (wanted / step).ceil(),
            step,
        }
    }

    /// The pixel row of `value` (in the scale's unit).
    fn row(&self, value: f64) -> i32 {
        let height = f64::from(PLOT_BOTTOM - PLOT_TOP);
        PLOT_BOTTOM - (value / self.top * height).round() as i32
    }

    fn ticks(&self) -> impl Iterator<Item = f64> + '_ {
        let count = (self.top / self.step).round() as u32;
        (0..=count).map(|i| f64::from(i) * self.step)
    }

    fn label(&self, value: f64) -> String {
        if value == 0.0 {
            return "0".to_owned();
        }
        let decimals = (-self.step.log10()).ceil().max(0.0) as usize;
        format!("{value:.decimals$} {}", self.unit.suffix())
    }
}

/// 1, 2 or 5 times a power of ten, at least `rough`.
fn nice_step(rough: f64) -> f64 {
    let magnitude = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * magnitude)
}

/// A filled rectangle from `from` up to, not including, `to` (as
/// plotters' bitmap backend fills).
struct Fill {
    from: (i32, i32),
    to: (i32, i32),
    color: [u8; 3],
}

struct Label {
    text: String,
    size: f32,
    at: (i32, i32),
    place: (Align, Baseline),
}

/// Everything on the chart, in pixels, in drawing order.
struct Scene {
    fills: Vec<Fill>,
    labels: Vec<Label>,
}

impl Scene {
    fn of(bars: &[Bar], title: &str, font: &FontRef<'static>) -> Scene {
        let mut scene = Scene {
            fills: Vec::new(),
            labels: Vec::new(),
        };
        scene.label(title, 22.0, (24, 18), (Align::Left, Baseline::Top));
        scene.legend(font);
        if bars.is_empty() {
            let middle = ((PLOT_LEFT + PLOT_RIGHT) / 2, (PLOT_TOP + PLOT_BOTTOM) / 2);
            scene.label(
                "No drills yet",
                20.0,
                middle,
                (Align::Centre, Baseline::Middle),
            );
        } else {
            scene.plot(bars);
        }
        scene
    }

    fn label(&mut self, text: &str, size: f32, at: (i32, i32), place: (Align, Baseline)) {
        self.labels.push(Label {
            text: text.to_owned(),
            size,
            at,
            place,
        });
    }

    /// The three parts' colours, right-aligned in the title band.
    fn legend(&mut self, font: &FontRef<'static>) {
        const SIZE: f32 = 16.0;
        const MIDDLE: i32 = 30;
        let mut right = PLOT_RIGHT;
        for part in Part::ALL.iter().rev() {
            let width = text::width_of(font, part.legend(), SIZE).ceil() as i32;
            let left = right - width;
            self.label(
                part.legend(),
                SIZE,
                (left, MIDDLE),
                (Align::Left, Baseline::Middle),
            );
            self.fills.push(Fill {
                from: (left - 20, MIDDLE - 7),
                to: (left - 6, MIDDLE + 7),
                color: part.rgb(),
            });
            right = left - 36;
        }
    }

    fn plot(&mut self, bars: &[Bar]) {
        let longest = bars.iter().map(|b| b.total).fold(0.0, f64::max);
        let scale = Scale::for_longest(longest);
        for value in scale.ticks() {
            let row = scale.row(value);
            let color = if value == 0.0 { INK } else { GRID };
            self.fills.push(Fill {
                from: (PLOT_LEFT, row),
                to: (PLOT_RIGHT, row + 1),
                color,
            });
            let label = scale.label(value);
            self.label(
                &label,
                15.0,
                (PLOT_LEFT - 10, row),
                (Align::Right, Baseline::Middle),
            );
        }
        let slot = f64::from(PLOT_RIGHT - PLOT_LEFT) / bars.len() as f64;
        let width = (slot * BAR_SHARE).min(MAX_BAR);
        let dates_every = bars.len().div_ceil(MAX_DATE_LABELS).max(1);
        for (i, bar) in bars.iter().enumerate() {
            let centre = f64::from(PLOT_LEFT) + slot * (i as f64 + 0.5);
            let left = (centre - width / 2.0).round() as i32;
            let right = ((centre + width / 2.0).round() as i32).max(left + 1);
            let top = self.stack(bar, &scale, (left, right));
            let centre = centre.round() as i32;
            if bars.len() <= MAX_TOTAL_LABELS {
                let total = scale.unit.total(scale.unit.of(bar.total));
                self.label(
                    &total,
                    14.0,
                    (centre, top - 6),
                    (Align::Centre, Baseline::Bottom),
                );
            }
            // Dates counted from the newest, which always has one.
            if (bars.len() - 1 - i).is_multiple_of(dates_every) {
                let at = (centre, PLOT_BOTTOM + 10);
                self.label(&bar.date, 14.0, at, (Align::Centre, Baseline::Top));
            }
        }
    }

    /// One bar's parts, bottom up, in the pixel columns `columns` (the
    /// second not included); returns the bar's top row. Edges come from
    /// running sums, so the parts meet without gap or overlap and a part
    /// that took no time draws nothing.
    fn stack(&mut self, bar: &Bar, scale: &Scale, columns: (i32, i32)) -> i32 {
        let mut below = 0.0;
        let mut floor = PLOT_BOTTOM;
        for (part, seconds) in Part::ALL.into_iter().zip(bar.parts) {
            let above = below + scale.unit.of(seconds);
            let top = scale.row(above);
            if top < floor {
                self.fills.push(Fill {
                    from: (columns.0, top),
                    to: (columns.1, floor),
                    color: part.rgb(),
                });
            }
            (below, floor) = (above, top.min(floor));
        }
        floor
    }
}

fn rgb(color: [u8; 3]) -> RGBColor {
    RGBColor(color[0], color[1], color[2])
}

fn draw_shapes(scene: &Scene, buffer: &mut [u8]) -> Result<(), Box<dyn std::error::Error>> {
    let root = BitMapBackend::with_buffer(buffer, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&rgb(BACKGROUND))?;
    for shape in &scene.fills {
        root.draw(&Rectangle::new(
            [shape.from, shape.to],
            rgb(shape.color).filled(),
        ))?;
    }
    root.present()?;
    Ok(())
}

fn encode(rgb: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(rgb)?;
    writer.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_one_two_or_five_times_a_power_of_ten() {
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(1.0), 1.0);
        assert_eq!(nice_step(1.2), 2.0);
        assert_eq!(nice_step(3.0), 5.0);
        assert_eq!(nice_step(6.0), 10.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert!((nice_step(0.013) - 0.02).abs() < 1e-12);
    }

    #[test]
    fn the_scale_covers_the_longest_drill_with_room_for_its_total() {
        let scale = Scale::for_longest(53.0 * 60.0);
        assert_eq!((scale.top, scale.step), (60.0, 10.0));
        assert_eq!(scale.label(20.0), "20 min");
        assert_eq!(scale.label(0.0), "0");
        let quick = Scale::for_longest(0.4);
        assert_eq!(quick.label(quick.step), "0.1 s");
        let nothing = Scale::for_longest(0.0);
        assert!(nothing.top > 0.0);
        assert_eq!(nothing.row(0.0), PLOT_BOTTOM);
        assert_eq!(nothing.row(nothing.top), PLOT_TOP);
    }
}
