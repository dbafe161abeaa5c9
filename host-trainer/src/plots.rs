//! PNG figures: the confusion matrix as a labelled heatmap and the learning curves.
//!
//! Text is drawn with the DejaVu Sans font embedded in the binary, so no system font
//! library is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::Context;
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::metrics::ConfusionMatrix;
use crate::train::EpochRecord;

/// The family name the embedded font is registered under.
pub(crate) const FONT: &str = "sans-serif";

fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // The embedded font is a valid TrueType file; failing to parse it would be a build bug.
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font does not parse"));
    });
}

/// Draws into an in-memory RGB buffer, encodes it as PNG and writes it atomically.
pub(crate) fn write_png(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    register_font();
    let mut pixels = vec![255u8; (size.0 * size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(root.clone())?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing {}: {e}", path.display()))?;
    }
    let image = image::RgbImage::from_raw(size.0, size.1, pixels)
        .context("the plot buffer has the wrong size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut png, image::ImageFormat::Png)
        .with_context(|| format!("encoding {}", path.display()))?;
    crate::output::write_atomic(path, png.get_ref())
}

/// A plotting error as an `anyhow` error.
pub(crate) fn plot_error<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting failed: {e}")
}

/// The confusion matrix as a heatmap, rows true classes, columns predicted, counts in cells.
pub fn confusion_png(
    path: &Path,
    confusion: &ConfusionMatrix,
    class_names: &[String],
    title: &str,
) -> anyhow::Result<()> {
    let n = confusion.counts.len();
    let max = confusion
        .counts
        .iter()
        .flatten()
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    write_png(path, (900, 820), |root| {
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, (FONT, 24))
            .margin(15)
            .x_label_area_size(60)
            .y_label_area_size(110)
            // `a..b` segmented has a segment for each of a..=b.
            .build_cartesian_2d(
                (0..n.saturating_sub(1)).into_segmented(),
                (0..n.saturating_sub(1)).into_segmented(),
            )
            .map_err(plot_error)?;
        // Segmented axes put each class name at the centre of its row or column.
        let name = |value: &SegmentValue<usize>, flip: bool| match value {
            SegmentValue::CenterOf(index) => {
                let index = if flip { n - 1 - index } else { *index };
                class_names.get(index).cloned().unwrap_or_default()
            }
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(n)
            .y_labels(n)
            .x_label_formatter(&|v| name(v, false))
            .y_label_formatter(&|v| name(v, true))
            .x_desc("predicted class")
            .y_desc("true class")
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 18))
            .draw()
            .map_err(plot_error)?;
        let at = |x: usize, y: usize| (SegmentValue::Exact(x), SegmentValue::Exact(y));
        for (truth, row) in confusion.counts.iter().enumerate() {
            for (predicted, &count) in row.iter().enumerate() {
                let shade = count as f64 / max;
                let level = (255.0 * (1.0 - shade)) as u8;
                let colour = RGBColor(level, level, 255);
                let y = n - 1 - truth;
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [at(predicted, y), at(predicted + 1, y + 1)],
                        colour.filled(),
                    )))
                    .map_err(plot_error)?;
                let text_colour = if shade > 0.55 { WHITE } else { BLACK };
                let style = TextStyle::from((FONT, 16).into_font())
                    .color(&text_colour)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                let centre = chart.backend_coord(&at(predicted, y + 1));
                let cell_w = chart.backend_coord(&at(predicted + 1, y)).0 - centre.0;
                let cell_h = chart.backend_coord(&at(predicted, y)).1 - centre.1;
                root.draw(&Text::new(
                    count.to_string(),
                    (centre.0 + cell_w / 2, centre.1 + cell_h / 2),
                    style,
                ))
                .map_err(plot_error)?;
            }
        }
        Ok(())
    })
}

/// Loss and accuracy per epoch, training and validation, side by side.
pub fn curves_png(path: &Path, history: &[EpochRecord], title: &str) -> anyhow::Result<()> {
    write_png(path, (1200, 500), |root| {
        root.fill(&WHITE).map_err(plot_error)?;
        let root = root.titled(title, (FONT, 22)).map_err(plot_error)?;
        let (left, right) = root.split_horizontally(600);
        let epochs = history.len().max(1) as f64;
        type Pick = fn(&EpochRecord) -> (f64, f64);
        let panels: [(_, &str, Pick); 2] = [
            (left, "loss", |r| (r.train_loss, r.validation_loss)),
            (right, "accuracy", |r| {
                (r.train_accuracy, r.validation_accuracy)
            }),
        ];
        for (area, label, values) in panels {
            let points: Vec<(f64, f64)> = history.iter().map(values).collect();
            let high = points
                .iter()
                .flat_map(|&(a, b)| [a, b])
                .filter(|v| v.is_finite())
                .fold(0.0f64, f64::max);
            let y_max = if label == "accuracy" {
                1.0
            } else {
                high * 1.1 + 1e-6
            };
            let mut chart = ChartBuilder::on(&area)
                .margin(20)
                .x_label_area_size(45)
                .y_label_area_size(60)
                .build_cartesian_2d(1.0..epochs.max(2.0), 0.0..y_max)
                .map_err(plot_error)?;
            chart
                .configure_mesh()
                .x_desc("epoch")
                .y_desc(label)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .draw()
                .map_err(plot_error)?;
            type Side = fn(&(f64, f64)) -> f64;
            let series: [(&str, RGBColor, Side); 2] =
                [("training", BLUE, |p| p.0), ("validation", RED, |p| p.1)];
            for (name, colour, pick) in series {
                let line: Vec<(f64, f64)> = points
                    .iter()
                    .enumerate()
                    .map(|(i, p)| (i as f64 + 1.0, pick(p)))
                    .collect();
                chart
                    .draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                    .map_err(plot_error)?
                    .label(name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                chart
                    .draw_series(line.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
                    .map_err(plot_error)?;
            }
            chart
                .configure_series_labels()
                .label_font((FONT, 14))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(plot_error)?;
        }
        Ok(())
    })
}
