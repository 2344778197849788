//! Text on the chart, drawn with ab_glyph straight into the RGB buffer.
//!
//! plotters' own ab_glyph text drops each glyph's left side bearing, which
//! spaces letters unevenly ("awaitin g"); placing glyphs here by the font's
//! advances and kerning keeps words whole. Only horizontal text is needed.

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};

/// Where the point given to [`Painter::write`] is on the text's box.
#[derive(Clone, Copy, Debug)]
pub enum Align {
    Left,
    Centre,
    Right,
}

#[derive(Clone, Copy, Debug)]
pub enum Baseline {
    /// The point is the top of the text's box.
    Top,
    Middle,
    Bottom,
}

/// The width `text` takes at `size` pixels.
pub fn width_of(font: &FontRef<'static>, text: &str, size: f32) -> f32 {
    let scaled = font.as_scaled(PxScale::from(size));
    let mut caret = 0.0;
    let mut previous = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(previous) = previous {
            caret += scaled.kern(previous, id);
        }
        caret += scaled.h_advance(id);
        previous = Some(id);
    }
    caret
}

/// Writes text into an RGB buffer of `width` × `height` pixels.
pub struct Painter<'a> {
    font: &'a FontRef<'static>,
    rgb: &'a mut [u8],
    width: u32,
    height: u32,
}

impl<'a> Painter<'a> {
    pub fn new(font: &'a FontRef<'static>, rgb: &'a mut [u8], size: (u32, u32)) -> Self {
        Painter {
            font,
            rgb,
            width: size.0,
            height: size.1,
        }
    }

    /// Writes `text` at `size` pixels in `color`, placed at `at` as `align`
    /// and `baseline` say.
    pub fn write(
        &mut self,
        text: &str,
        size: f32,
        at: (i32, i32),
        place: (Align, Baseline),
        color: [u8; 3],
    ) {
        let scale = PxScale::from(size);
        let scaled = self.font.as_scaled(scale);
        let (ascent, descent) = (scaled.ascent(), scaled.descent());
        let width = width_of(self.font, text, size);
        let left = match place.0 {
            Align::Left => at.0 as f32,
            Align::Centre => at.0 as f32 - width / 2.0,
            Align::Right => at.0 as f32 - width,
        };
        let baseline = match place.1 {
            Baseline::Top => at.1 as f32 + ascent,
            Baseline::Middle => at.1 as f32 + (ascent + descent) / 2.0,
            Baseline::Bottom => at.1 as f32 + descent,
        };
        // Whole pixels for the pen's start: the same text looks the same
        // wherever it is drawn.
        let (mut caret, baseline) = (left.round(), baseline.round());
        let mut previous = None;
        for c in text.chars() {
            let id = scaled.glyph_id(c);
            if let Some(previous) = previous {
                caret += scaled.kern(previous, id);
            }
            let glyph = id.with_scale_and_position(scale, point(caret, baseline));
            if let Some(outline) = self.font.outline_glyph(glyph) {
                let bounds = outline.px_bounds();
                let (x0, y0) = (bounds.min.x as i32, bounds.min.y as i32);
                outline.draw(|x, y, coverage| {
                    self.blend(x0 + x as i32, y0 + y as i32, coverage, color);
                });
            }
            caret += scaled.h_advance(id);
            previous = Some(id);
        }
    }

    fn blend(&mut self, x: i32, y: i32, coverage: f32, color: [u8; 3]) {
        if x < 0 || y < 0 || x >= self.width as i32 || y >= self.height as i32 {
            return;
        }
        let at = ((y as u32 * self.width + x as u32) * 3) as usize;
        let alpha = coverage.clamp(0.0, 1.0);
        for (channel, ink) in self.rgb[at..at + 3].iter_mut().zip(color) {
            let mixed = f32::from(*channel) * (1.0 - alpha) + f32::from(ink) * alpha;
            *channel = mixed.round() as u8;
        }
    }
}
