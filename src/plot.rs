//! PNG line charts (plotters into a pixel buffer, text in the embedded DejaVu Sans, PNG through
//! `image`, written atomically). One chart is a column of panels sharing the x axis.

use std::path::Path;
use std::sync::Once;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{Error, Result};

pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub struct Panel {
    pub title: String,
    pub y_label: String,
    /// Logarithmic y axis (every value must be positive).
    pub log_y: bool,
    pub series: Vec<Series>,
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The font is compiled in; failing to parse it is a build defect, not user input.
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans parses"));
    });
}

/// Draws `panels` one above the other, `x_label` under the last, into a `width`×(`panel_height`
/// per panel) PNG at `path`.
pub fn write_png(path: &Path, x_label: &str, panels: &[Panel], width: u32, panel_height: u32) -> Result<()> {
    register_font();
    let height = panel_height * panels.len().max(1) as u32;
    let mut rgb = vec![0u8; width as usize * height as usize * 3];
    draw(&mut rgb, (width, height), x_label, panels)
        .map_err(|e| Error::Runtime(format!("{}: cannot draw the plot: {e}", path.display())))?;
    crate::atomic::write_atomic(path, |w| {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(w)
            .write_image(&rgb, width, height, image::ExtendedColorType::Rgb8)
            .map_err(std::io::Error::other)
    })
}

fn draw(rgb: &mut [u8], size: (u32, u32), x_label: &str, panels: &[Panel]) -> std::result::Result<(), String> {
    let root = BitMapBackend::with_buffer(rgb, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let areas = root.split_evenly((panels.len().max(1), 1));
    for (k, (panel, area)) in panels.iter().zip(&areas).enumerate() {
        // A log axis has no place for zero or negative values: they are left out.
        let kept = |s: &Series| Series {
            name: s.name.clone(),
            points: s.points.iter().copied().filter(|p| !panel.log_y || p.1 > 0.0).collect(),
        };
        let panel = &Panel {
            title: panel.title.clone(),
            y_label: panel.y_label.clone(),
            log_y: panel.log_y,
            series: panel.series.iter().map(kept).collect(),
        };
        let points = || panel.series.iter().flat_map(|s| s.points.iter());
        let (x0, x1) = bounds(points().map(|p| p.0));
        let (x0, x1) = (x0 - 0.03 * (x1 - x0), x1 + 0.03 * (x1 - x0));
        let (y0, y1) = bounds(points().map(|p| p.1));
        let mut chart = ChartBuilder::on(area);
        chart.caption(&panel.title, ("sans-serif", 18)).margin(12).y_label_area_size(70);
        chart.x_label_area_size(if k + 1 == panels.len() { 40 } else { 25 });
        let last = k + 1 == panels.len();
        if panel.log_y {
            // The raw range widened by factors, not offsets (the panel holds positive values
            // only), so a single value still sits inside; an empty panel shows 0.1..1.
            let ys = || points().map(|p| p.1).filter(|y| y.is_finite());
            let (lo, hi) = match (ys().reduce(f64::min), ys().reduce(f64::max)) {
                (Some(lo), Some(hi)) => (lo / 1.5, hi * 1.5),
                _ => (0.1, 1.0),
            };
            let c = chart.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(|e| e.to_string())?;
            finish(c, panel, last.then_some(x_label), &log_label)?;
        } else {
            let pad = ((y1 - y0) * 0.08).max(1e-9);
            let c = chart.build_cartesian_2d(x0..x1, (y0 - pad)..(y1 + pad)).map_err(|e| e.to_string())?;
            finish(c, panel, last.then_some(x_label), &|v| format!("{v:.3}"))?;
        }
    }
    root.present().map_err(|e| e.to_string())
}

/// The grid, axis labels, the series of `panel` as lines with dots, and their legend.
fn finish<'a, Y>(
    mut c: ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    panel: &Panel,
    x_label: Option<&str>,
    y_format: &dyn Fn(&f64) -> String,
) -> std::result::Result<(), String>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = c.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    // Whole x values (block numbers, steps) print without decimals.
    mesh.y_desc(&panel.y_label).y_labels(12).y_label_formatter(y_format).x_label_formatter(&|v| {
        if v.fract() == 0.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.2}")
        }
    });
    if let Some(x) = x_label {
        mesh.x_desc(x);
    }
    mesh.draw().map_err(|e| e.to_string())?;
    for (i, s) in panel.series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        c.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        c.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(|e| e.to_string())?;
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())
}

/// Log-axis labels at 1, 2 and 5 times a power of ten only (the others would crowd).
fn log_label(v: &f64) -> String {
    let mantissa = (v / 10f64.powf(v.log10().floor())).round();
    if [1.0, 2.0, 5.0].contains(&mantissa) {
        format!("{v:.0e}")
    } else {
        String::new()
    }
}

/// The range of `v`, widened when it is a single value (plotters needs a non-empty range).
fn bounds(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    match (lo.is_finite(), lo < hi) {
        (false, _) => (0.0, 1.0),
        (true, true) => (lo, hi),
        (true, false) => (lo - 0.5 * lo.abs().max(1.0), hi + 0.5 * hi.abs().max(1.0)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panel(log_y: bool, points: Vec<(f64, f64)>) -> Panel {
        Panel { title: "t".into(), y_label: "y".into(), log_y, series: vec![Series { name: "s".into(), points }] }
    }

    #[test]
    fn degenerate_panels_still_draw() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            vec![panel(true, vec![(1.0, 0.05)])],
            vec![panel(true, vec![(1.0, 0.0), (2.0, -1.0)])],
            vec![panel(false, vec![(1.0, 3.0)])],
            vec![panel(false, vec![]), panel(true, vec![(1.0, 2.0), (2.0, 2.0)])],
        ];
        for (i, panels) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.png"));
            write_png(&path, "x", panels, 300, 200).unwrap();
            let img = image::open(&path).unwrap();
            assert_eq!((img.width(), img.height()), (300, 200 * panels.len() as u32));
        }
    }
}
