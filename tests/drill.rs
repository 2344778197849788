//! Drills without the engine: the scorecard's arithmetic for any timings,
//! and the chart as a person would see it — a PNG of the size Slack is told,
//! the same bytes for the same drills, and bars split into the three parts
//! in proportion (read back from the pixels).
//!
//! `FAILOVER_BOT_CHART_DIR=DIR cargo test --test drill` also writes the
//! charts to DIR, to look at.

use chrono::{DateTime, Duration, TimeZone, Utc};
use proptest::prelude::*;

use failover_bot::drill::chart::{self, HEIGHT, WIDTH};
use failover_bot::drill::{scorecard, DrillTimings, Part, StepTimes};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 9, 1, 9, 30, 0).unwrap()
}

fn step(waiting_s: u64, applying_s: u64, converging_s: u64) -> StepTimes {
    StepTimes {
        waiting_ms: waiting_s * 1000,
        applying_ms: applying_s * 1000,
        converging_ms: converging_s * 1000,
    }
}

/// `count` drills of three steps, a few days apart, getting faster, with
/// some scatter (a fixed sequence: the chart must not change between runs).
fn history(count: u64) -> Vec<DrillTimings> {
    let mut seed = 7u64;
    let mut scatter = move |range: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % range
    };
    (0..count)
        .map(|i| {
            let practice = 40u64.saturating_sub(i);
            let steps = (0..3)
                .map(|_| {
                    step(
                        60 + practice * 15 + scatter(240),
                        5 + scatter(25),
                        40 + practice * 3 + scatter(90),
                    )
                })
                .collect();
            DrillTimings {
                op: 100 + i,
                env: "dev".into(),
                started_at: start() + Duration::days(3 * i as i64),
                steps,
            }
        })
        .collect()
}

/// Decodes the PNG: its size and its RGB pixels.
fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
    let frame = reader.next_frame(&mut pixels).expect("the PNG's image");
    assert_eq!(frame.color_type, png::ColorType::Rgb);
    assert_eq!(frame.bit_depth, png::BitDepth::Eight);
    pixels.truncate(frame.buffer_size());
    (frame.width, frame.height, pixels)
}

fn keep(name: &str, bytes: &[u8]) {
    if let Ok(dir) = std::env::var("FAILOVER_BOT_CHART_DIR") {
        std::fs::write(std::path::Path::new(&dir).join(name), bytes).unwrap();
    }
}

fn pixel(pixels: &[u8], x: u32, y: u32) -> [u8; 3] {
    let at = ((y * WIDTH + x) * 3) as usize;
    [pixels[at], pixels[at + 1], pixels[at + 2]]
}

fn color_of(part: Part) -> [u8; 3] {
    part.rgb()
}

/// Per column: how many pixels of each part's colour, bottom to top, as
/// (part, run length) in the order they are met going up.
fn runs_up(pixels: &[u8], x: u32) -> Vec<(Part, u32)> {
    let mut runs: Vec<(Part, u32)> = Vec::new();
    for y in (0..HEIGHT).rev() {
        let here = pixel(pixels, x, y);
        let Some(part) = Part::ALL.into_iter().find(|p| color_of(*p) == here) else {
            continue;
        };
        match runs.last_mut() {
            Some((last, n)) if *last == part => *n += 1,
            _ => runs.push((part, 1)),
        }
    }
    runs
}

/// Drills as the sandbox makes them: seconds of waiting, milliseconds of
/// applying and converging.
fn quick(count: u64) -> Vec<DrillTimings> {
    (0..count)
        .map(|i| DrillTimings {
            op: i + 1,
            env: "sandbox".into(),
            started_at: start() + Duration::minutes(i as i64),
            steps: vec![StepTimes {
                waiting_ms: 4_000 + 1_500 * i,
                applying_ms: 3 + i,
                converging_ms: 900,
            }],
        })
        .collect()
}

#[test]
fn the_chart_is_a_png_of_the_declared_size_for_0_1_and_50_drills() {
    let cases = [
        ("drills-0", history(0)),
        ("drills-1", history(1)),
        ("drills-50", history(50)),
        ("quick-3", quick(3)),
    ];
    for (name, drills) in cases {
        let bytes = chart::render(&drills).unwrap();
        keep(&format!("{name}.png"), &bytes);
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        let (width, height, pixels) = decode(&bytes);
        assert_eq!((width, height), (WIDTH, HEIGHT), "{name}");
        assert_eq!(pixels.len(), (WIDTH * HEIGHT * 3) as usize);
        assert!(
            bytes.len() < 200_000,
            "{name}: {} bytes, more than a chart needs",
            bytes.len()
        );
    }
}

#[test]
fn the_same_drills_give_the_same_bytes_in_any_order() {
    let drills = history(12);
    let mut shuffled = drills.clone();
    shuffled.reverse();
    shuffled.swap(2, 7);
    let first = chart::render(&drills).unwrap();
    keep("drills-12.png", &first);
    assert_eq!(first, chart::render(&drills).unwrap());
    assert_eq!(first, chart::render(&shuffled).unwrap());
}

/// The one bar of one drill: the column with the longest stack of all
/// three colours (the legend's swatches sit side by side, never stacked).
fn bar_column(pixels: &[u8]) -> Vec<(Part, u32)> {
    (0..WIDTH)
        .map(|x| runs_up(pixels, x))
        .filter(|runs| runs.len() == 3)
        .max_by_key(|runs| runs.iter().map(|(_, n)| n).sum::<u32>())
        .expect("a column with all three parts stacked")
}

#[test]
fn a_bar_is_split_into_waiting_applying_and_converging_in_proportion() {
    let drill = DrillTimings {
        op: 1,
        env: "dev".into(),
        started_at: start(),
        steps: vec![step(240, 30, 90), step(120, 30, 90)],
    };
    let bytes = chart::render(std::slice::from_ref(&drill)).unwrap();
    keep("split.png", &bytes);
    let (_, _, pixels) = decode(&bytes);
    let runs = bar_column(&pixels);
    let order: Vec<Part> = runs.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        order,
        [Part::Waiting, Part::Applying, Part::Converging],
        "stacked bottom to top in the order they happen"
    );
    // 360 s : 60 s : 180 s, to within a pixel of rounding each edge.
    let (waiting, applying, converging) = (runs[0].1 as f64, runs[1].1 as f64, runs[2].1 as f64);
    let per_second = (waiting + applying + converging) / 600.0;
    for (measured, seconds) in [(waiting, 360.0), (applying, 60.0), (converging, 180.0)] {
        assert!(
            (measured - seconds * per_second).abs() <= 2.0,
            "{runs:?} is not 360:60:180"
        );
    }
}

#[test]
fn a_part_that_took_no_time_is_not_drawn() {
    let drill = DrillTimings {
        op: 1,
        env: "dev".into(),
        started_at: start(),
        steps: vec![step(300, 0, 120)],
    };
    let (_, _, pixels) = decode(&chart::render(&[drill]).unwrap());
    let tallest = (0..WIDTH)
        .map(|x| runs_up(&pixels, x))
        .max_by_key(|runs| runs.iter().map(|(_, n)| n).sum::<u32>())
        .unwrap();
    let order: Vec<Part> = tallest.iter().map(|(p, _)| *p).collect();
    assert_eq!(order, [Part::Waiting, Part::Converging]);
}

#[test]
fn fifty_drills_make_fifty_bars() {
    let (_, _, pixels) = decode(&chart::render(&history(50)).unwrap());
    // Along a line just above the x axis every bar shows its waiting part:
    // count the separate stretches of that colour.
    let axis = (0..HEIGHT)
        .rev()
        .find(|&y| (0..WIDTH).any(|x| pixel(&pixels, x, y) == color_of(Part::Waiting)))
        .unwrap();
    let mut bars = 0;
    let mut inside = false;
    for x in 0..WIDTH {
        let waiting = pixel(&pixels, x, axis) == color_of(Part::Waiting);
        if waiting && !inside {
            bars += 1;
        }
        inside = waiting;
    }
    assert_eq!(bars, 50);
}

#[test]
fn corrupt_timings_are_left_out_of_the_chart_not_a_panic() {
    let mut drills = history(3);
    drills[1].steps = vec![StepTimes {
        waiting_ms: u64::MAX,
        applying_ms: 1,
        converging_ms: 0,
    }];
    let with_corrupt = chart::render(&drills).unwrap();
    drills.remove(1);
    assert_eq!(with_corrupt, chart::render(&drills).unwrap());
}

proptest! {
    #[test]
    fn scorecard_figures_add_up_to_the_total(
        steps in prop::collection::vec((0u64..10_000_000, 0u64..10_000_000, 0u64..10_000_000), 1..12),
        earlier in prop::collection::vec(0u64..100_000_000, 0..20),
    ) {
        let drill = DrillTimings {
            op: 1_000,
            env: "dev".into(),
            started_at: start() + Duration::days(365),
            steps: steps.iter().map(|&(w, a, c)| StepTimes { waiting_ms: w, applying_ms: a, converging_ms: c }).collect(),
        };
        let history: Vec<DrillTimings> = earlier
            .iter()
            .enumerate()
            .map(|(i, &total)| DrillTimings {
                op: i as u64,
                env: "dev".into(),
                started_at: start() + Duration::days(i as i64),
                steps: vec![StepTimes { waiting_ms: total, applying_ms: 0, converging_ms: 0 }],
            })
            .collect();
        let card = scorecard(&drill, &history).unwrap();
        let by_steps: u64 = card.steps.iter().map(|s| s.total_ms().unwrap()).sum();
        prop_assert_eq!(by_steps, card.total_ms);
        prop_assert_eq!(card.parts.total_ms(), Some(card.total_ms));
        for part in Part::ALL {
            let sum: u64 = card.steps.iter().map(|s| s.part_ms(part)).sum();
            prop_assert_eq!(sum, card.parts.part_ms(part));
        }
        match card.earlier {
            None => prop_assert!(earlier.is_empty()),
            Some(c) => {
                prop_assert_eq!(c.drills, earlier.len());
                prop_assert_eq!(c.last.total_ms, *earlier.last().unwrap());
                prop_assert_eq!(c.best.total_ms, *earlier.iter().min().unwrap());
                let below = earlier.iter().filter(|&&t| t < c.median_ms).count();
                let above = earlier.iter().filter(|&&t| t > c.median_ms).count();
                prop_assert!(below <= earlier.len() / 2 && above <= earlier.len() / 2);
            }
        }
    }
}
