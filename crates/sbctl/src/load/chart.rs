//! A PNG of round-trip percentiles per second: p50, p99 and p99.9 as lines over the run, a grid,
//! and axis labels drawn with a built-in 3×5 font (no system fonts needed).

use std::io::Write;

use super::stats::Window;

pub const WIDTH: u32 = 960;
pub const HEIGHT: u32 = 480;
const LEFT: u32 = 70;
const RIGHT: u32 = 20;
const TOP: u32 = 40;
const BOTTOM: u32 = 50;
const SCALE: u32 = 2;

type Rgb = [u8; 3];
const WHITE: Rgb = [255, 255, 255];
const GRID: Rgb = [225, 225, 225];
const AXIS: Rgb = [60, 60, 60];
/// p50, p99, p99.9.
const SERIES: [Rgb; 3] = [[31, 119, 180], [255, 127, 14], [214, 39, 40]];

/// 3×5 glyphs, rows top to bottom, three bits each (high bit left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '.' => [0b000, 0b000, 0b000, 0b000, 0b010],
        'p' => [0b000, 0b111, 0b101, 0b111, 0b100],
        'm' => [0b000, 0b111, 0b111, 0b101, 0b101],
        's' => [0b000, 0b011, 0b110, 0b011, 0b110],
        't' => [0b010, 0b111, 0b010, 0b010, 0b011],
        'r' => [0b000, 0b110, 0b101, 0b100, 0b100],
        ' ' => [0; 5],
        _ => return None,
    })
}

struct Canvas {
    pixels: Vec<u8>,
}

impl Canvas {
    fn new() -> Self {
        let size = (WIDTH * HEIGHT * 3) as usize;
        let mut pixels = Vec::with_capacity(size);
        for _ in 0..WIDTH * HEIGHT {
            pixels.extend_from_slice(&WHITE);
        }
        Self { pixels }
    }

    fn set(&mut self, x: i64, y: i64, color: Rgb) {
        if x < 0 || y < 0 || x >= i64::from(WIDTH) || y >= i64::from(HEIGHT) {
            return;
        }
        let at = ((y as usize) * WIDTH as usize + x as usize) * 3;
        if let Some(pixel) = self.pixels.get_mut(at..at + 3) {
            pixel.copy_from_slice(&color);
        }
    }

    /// Bresenham, two pixels thick.
    fn line(&mut self, from: (i64, i64), to: (i64, i64), color: Rgb) {
        let (mut x, mut y) = from;
        let dx = (to.0 - x).abs();
        let dy = -(to.1 - y).abs();
        let sx = if x < to.0 { 1 } else { -1 };
        let sy = if y < to.1 { 1 } else { -1 };
        let mut err = dx + dy;
        for _ in 0..=(dx - dy) {
            self.set(x, y, color);
            self.set(x, y + 1, color);
            if (x, y) == to {
                break;
            }
            let e2 = 2 * err;
            if e2 >= dy {
                err += dy;
                x += sx;
            }
            if e2 <= dx {
                err += dx;
                y += sy;
            }
        }
    }

    fn text(&mut self, x: i64, y: i64, text: &str, color: Rgb) {
        let step = i64::from(4 * SCALE);
        for (i, c) in text.chars().enumerate() {
            let Some(rows) = glyph(c) else { continue };
            let left = x + i as i64 * step;
            for (row, bits) in rows.iter().enumerate() {
                for col in 0..3 {
                    if bits & (0b100 >> col) != 0 {
                        for dy in 0..i64::from(SCALE) {
                            for dx in 0..i64::from(SCALE) {
                                self.set(
                                    left + col * i64::from(SCALE) + dx,
                                    y + row as i64 * i64::from(SCALE) + dy,
                                    color,
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A round figure at or above `value` for the top of the y axis.
fn nice_ceiling(value: f64) -> f64 {
    if value <= 0.0 || !value.is_finite() {
        return 1.0;
    }
    let magnitude = 10f64.powf(value.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * magnitude >= value {
            return step * magnitude;
        }
    }
    10.0 * magnitude
}

fn label(value: f64) -> String {
    if value >= 10.0 || value == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The chart as PNG bytes.
pub fn render(windows: &[Window]) -> Result<Vec<u8>, png::EncodingError> {
    let mut canvas = Canvas::new();
    let plot_w = i64::from(WIDTH - LEFT - RIGHT);
    let plot_h = i64::from(HEIGHT - TOP - BOTTOM);
    let (x0, y0) = (i64::from(LEFT), i64::from(TOP) + plot_h);
    let top = nice_ceiling(
        windows
            .iter()
            .map(|w| w.round_trip.p999_ms)
            .fold(0.0, f64::max),
    );
    let seconds = windows.len().max(2) as f64 - 1.0;
    let first_second = windows.first().map_or(0.0, |w| w.second as f64);
    for i in 0..=4 {
        let y = y0 - plot_h * i / 4;
        canvas.line((x0, y), (x0 + plot_w, y), if i == 0 { AXIS } else { GRID });
        canvas.text(8, y - 5, &label(top * i as f64 / 4.0), AXIS);
    }
    canvas.line((x0, y0), (x0, y0 - plot_h), AXIS);
    canvas.text(8, i64::from(TOP) - 30, "ms", AXIS);
    for i in 0..=5 {
        let x = x0 + plot_w * i / 5;
        canvas.line((x, y0), (x, y0 + 5), AXIS);
        // Whole seconds of the run: windows are numbered from the first second.
        let second = first_second + seconds * i as f64 / 5.0;
        canvas.text(x - 8, y0 + 12, &format!("{second:.0}"), AXIS);
    }
    canvas.text(x0 + plot_w / 2 - 8, y0 + 32, "s", AXIS);
    let to_point = |i: usize, ms: f64| {
        let x = x0 + ((i as f64 / seconds) * plot_w as f64).round() as i64;
        let y = y0 - ((ms / top).min(1.0) * plot_h as f64).round() as i64;
        (x, y)
    };
    let picks: [fn(&Window) -> f64; 3] = [
        |w| w.round_trip.p50_ms,
        |w| w.round_trip.p99_ms,
        |w| w.round_trip.p999_ms,
    ];
    for (series, pick) in picks.iter().enumerate() {
        let color = SERIES.get(series).copied().unwrap_or(AXIS);
        let points: Vec<(i64, i64)> = windows
            .iter()
            .enumerate()
            .filter(|(_, w)| w.round_trip.samples > 0)
            .map(|(i, w)| to_point(i, pick(w)))
            .collect();
        for pair in points.windows(2) {
            if let [a, b] = pair {
                canvas.line(*a, *b, color);
            }
        }
        // Legend: a colour bar and its name.
        let lx = x0 + 40 + series as i64 * 140;
        canvas.line((lx, 16), (lx + 30, 16), color);
        canvas.text(
            lx + 38,
            11,
            ["p50", "p99", "p99.9"].get(series).unwrap_or(&""),
            AXIS,
        );
    }
    let mut out = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&canvas.pixels)?;
        writer.finish()?;
    }
    Ok(out)
}

pub fn write(path: &std::path::Path, windows: &[Window]) -> std::io::Result<()> {
    let bytes = render(windows).map_err(std::io::Error::other)?;
    let mut file = std::fs::File::create(path)?;
    file.write_all(&bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::load::stats::Percentiles;

    #[test]
    fn a_png_of_the_chart_size() {
        let windows: Vec<Window> = (0..30)
            .map(|second| Window {
                second,
                agents_connected: 10,
                round_trip: Percentiles {
                    samples: 10,
                    p50_ms: 1.0 + second as f64 / 10.0,
                    p95_ms: 2.0,
                    p99_ms: 3.0,
                    p999_ms: 4.5,
                    max_ms: 5.0,
                },
                sent: 10,
                errors: 0,
            })
            .collect();
        let bytes = render(&windows).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (WIDTH, HEIGHT));
        // Empty runs still draw axes.
        assert!(render(&[]).is_ok());
    }

    #[test]
    fn axis_tops_are_round() {
        assert_eq!(nice_ceiling(4.5), 5.0);
        assert_eq!(nice_ceiling(12.0), 20.0);
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(100.0), 100.0);
    }
}
