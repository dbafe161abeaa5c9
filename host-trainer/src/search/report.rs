//! What a search reports: a row per setting (and rung) with its cross-validated score, the
//! table as scikit-learn's examples print it, and `results.json`, `results.csv` and
//! `scores.png`.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

use super::rungs::Rung;
use super::space::{Distribution, Setting, Space, Value};
use super::trials::FoldRecord;
use super::{Resource, Strategy};
use crate::plots::{FONT, plot_error, write_png};

/// One setting's scores in one rung.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// 1 for the best; rows of later rungs rank above those of earlier ones.
    pub rank: usize,
    /// Which setting, in the order they were drawn (from 1).
    pub setting: usize,
    /// Which rung (from 1; always 1 for random search).
    pub rung: usize,
    /// The rung's budget per fold training: images or epochs.
    pub budget: usize,
    /// Mean accuracy over the held-out folds.
    pub mean_score: f64,
    /// Standard deviation of the fold accuracies (over the folds, as numpy's `std`).
    pub std_score: f64,
    /// Accuracy on each held-out fold, fold 1 first.
    pub fold_scores: Vec<f64>,
    /// Wall time of the setting's fold trainings.
    pub seconds: f64,
    /// The setting's parameters.
    pub params: Setting,
}

impl Row {
    /// The row of `setting` from its fold records (fold order).
    pub fn new(
        setting: usize,
        rung: &Rung,
        rung_number: usize,
        params: &Setting,
        folds: &[FoldRecord],
    ) -> Self {
        let fold_scores: Vec<f64> = folds.iter().map(FoldRecord::accuracy).collect();
        let (mean_score, std_score) = mean_and_std(&fold_scores);
        Self {
            rank: 0,
            setting,
            rung: rung_number,
            budget: rung.budget,
            mean_score,
            std_score,
            fold_scores,
            seconds: folds.iter().map(|f| f.seconds).sum(),
            params: params.clone(),
        }
    }

    /// `0.612 (+/-0.034) for {...}`, the mean and twice the standard deviation, as the
    /// tutorial printed `cv_results_`; halving adds the rung and its budget.
    pub fn score_line(&self, strategy: Strategy, resource: Resource) -> String {
        let line = format!(
            "{:.3} (+/-{:.3}) for {}",
            self.mean_score,
            2.0 * self.std_score,
            self.params
        );
        match strategy {
            Strategy::Random => line,
            Strategy::Halving => format!(
                "{line} [rung {}, {} {}]",
                self.rung,
                self.budget,
                resource.unit()
            ),
        }
    }
}

/// Mean and population standard deviation.
pub fn mean_and_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    (mean, variance.sqrt())
}

/// Sorts best first, the last rung's rows ahead of earlier rungs' (only they competed on the
/// whole budget), and numbers the ranks.
pub fn rank(rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        b.rung
            .cmp(&a.rung)
            .then(b.mean_score.total_cmp(&a.mean_score))
            .then(a.setting.cmp(&b.setting))
    });
    for (index, row) in rows.iter_mut().enumerate() {
        row.rank = index + 1;
    }
}

/// The refit of the best setting, once it has run.
#[derive(Debug, Clone, Serialize)]
pub struct RefitSummary {
    /// Its directory, relative to the search's.
    pub dir: String,
    /// Accuracy on the test set.
    pub test_accuracy: f64,
    /// Test images evaluated.
    pub test_images: usize,
}

/// `results.json`.
#[derive(Debug, Serialize)]
pub struct Results<'a> {
    /// Random search or successive halving.
    pub strategy: Strategy,
    /// What a rung's budget counts.
    pub resource: Resource,
    /// Cross-validation folds.
    pub folds: usize,
    /// Settings drawn.
    pub settings: usize,
    /// Training images searched on (after `--limit-train`).
    pub training_images: usize,
    /// Settings and budget of each rung.
    pub rungs: &'a [Rung],
    /// Every setting's scores, best first.
    pub rows: &'a [Row],
    /// Wall time of every fold training, those of an interrupted earlier run included.
    pub fold_seconds: f64,
    /// The winner, refit on the whole training set.
    pub best: &'a Row,
    /// The refit's test figures, once it has run.
    pub refit: Option<RefitSummary>,
}

/// `results.csv`: one line per row, best first; a column per fold and per parameter.
pub fn csv_bytes(rows: &[Row], folds: usize, names: &[&String]) -> anyhow::Result<Vec<u8>> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "rank",
        "setting",
        "rung",
        "budget",
        "mean_score",
        "std_score",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend((1..=folds).map(|f| format!("fold_{f}")));
    header.push("seconds".into());
    header.extend(names.iter().map(|n| n.to_string()));
    writer.write_record(&header)?;
    for row in rows {
        let mut fields = vec![
            row.rank.to_string(),
            row.setting.to_string(),
            row.rung.to_string(),
            row.budget.to_string(),
            row.mean_score.to_string(),
            row.std_score.to_string(),
        ];
        fields.extend(row.fold_scores.iter().map(f64::to_string));
        fields.push(format!("{:.2}", row.seconds));
        fields.extend(
            names
                .iter()
                .map(|n| row.params.0.get(*n).map(Value::plain).unwrap_or_default()),
        );
        writer.write_record(&fields)?;
    }
    writer
        .into_inner()
        .map_err(|e| anyhow::anyhow!("writing CSV: {e}"))
}

/// Side of one panel of `scores.png`, in pixels.
const PANEL: (u32, u32) = (400, 300);
/// Height of the title strip above the panels.
const TITLE_HEIGHT: u32 = 40;
/// Panels per row.
const COLUMNS: usize = 3;

/// Width and height of `scores.png` for a space of `parameters` parameters: panels of
/// 400 x 300, three to a row, under a 40-pixel title.
pub fn scores_png_size(parameters: usize) -> (u32, u32) {
    let columns = parameters.clamp(1, COLUMNS);
    let rows = parameters.max(1).div_ceil(COLUMNS);
    (
        PANEL.0 * columns as u32,
        TITLE_HEIGHT + PANEL.1 * rows as u32,
    )
}

/// Dot colour of each rung.
const RUNG_COLOURS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// A tick label: three decimals at most, scientific notation for small magnitudes.
fn tick(x: f64) -> String {
    if x != 0.0 && x.abs() < 0.01 {
        return format!("{x:.1e}");
    }
    let text = format!("{x:.3}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// Where a parameter's values sit on its panel's horizontal axis.
enum Axis {
    /// Numbers as they are.
    Linear,
    /// The logarithm (base 10) of numbers.
    Log,
    /// The choices of a list, one slot each, in this order.
    Categories(Vec<Value>),
}

impl Axis {
    /// Lists get a slot per choice (numbers in increasing order), distributions a numeric
    /// axis, logarithmic for log-uniform ones.
    fn of(space: &Space, name: &str, rows: &[Row]) -> Self {
        let mut listed = match space.params.get(name) {
            Some(Distribution::Choice(choices)) => choices.clone(),
            Some(Distribution::LogUniform { .. }) => return Axis::Log,
            Some(_) => return Axis::Linear,
            None => Vec::new(),
        };
        if listed.iter().all(|c| c.as_number().is_some()) {
            let number = |v: &Value| v.as_number().unwrap_or(0.0);
            listed.sort_by(|a, b| number(a).total_cmp(&number(b)));
        }
        let drawn = rows.iter().filter_map(|r| r.params.0.get(name)).cloned();
        let mut categories: Vec<Value> = Vec::new();
        for value in listed.into_iter().chain(drawn) {
            if !categories.contains(&value) {
                categories.push(value);
            }
        }
        Axis::Categories(categories)
    }

    fn position(&self, value: &Value) -> Option<f64> {
        match self {
            Axis::Linear => value.as_number(),
            Axis::Log => value.as_number().filter(|x| *x > 0.0).map(f64::log10),
            Axis::Categories(categories) => {
                categories.iter().position(|c| c == value).map(|i| i as f64)
            }
        }
    }

    fn label(&self, x: f64) -> String {
        match self {
            Axis::Linear => tick(x),
            Axis::Log => format!("{:.0e}", 10f64.powf(x)),
            Axis::Categories(categories) => {
                let slot = x.round();
                if (x - slot).abs() > 1e-6 || slot < 0.0 {
                    return String::new();
                }
                categories
                    .get(slot as usize)
                    .map(|v| v.plain())
                    .unwrap_or_default()
            }
        }
    }
}

/// A range around `low..=high` with a margin, never empty.
fn padded(low: f64, high: f64, margin: f64) -> std::ops::Range<f64> {
    if high - low < 1e-12 {
        return low - margin.max(1e-3)..high + margin.max(1e-3);
    }
    let pad = (high - low) * 0.08;
    low - pad..high + pad
}

/// `scores.png`: for each parameter a small panel of mean score against the parameter's
/// value, a dot per row, coloured by rung.
pub fn scores_png(
    path: &Path,
    space: &Space,
    rows: &[Row],
    rungs: &[Rung],
    resource: Resource,
) -> anyhow::Result<()> {
    let names: Vec<&String> = space.params.keys().collect();
    let size = scores_png_size(names.len());
    write_png(path, size, |root| {
        draw_scores(&root, space, &names, rows, rungs, resource)
    })
}

fn draw_scores(
    root: &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    space: &Space,
    names: &[&String],
    rows: &[Row],
    rungs: &[Rung],
    resource: Resource,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    title
        .draw(&Text::new(
            "mean accuracy on the held-out folds: a dot per setting".to_string(),
            (12, TITLE_HEIGHT as i32 / 2),
            TextStyle::from((FONT, 20).into_font()).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(plot_error)?;
    if rungs.len() > 1 {
        let mut x = PANEL.0 as i32 * names.len().clamp(1, COLUMNS) as i32 - 12;
        for (index, rung) in rungs.iter().enumerate().rev() {
            let colour = RUNG_COLOURS[index % RUNG_COLOURS.len()];
            let text = format!("rung {}: {} {}", index + 1, rung.budget, resource.unit());
            title
                .draw(&Text::new(
                    text.clone(),
                    (x, TITLE_HEIGHT as i32 / 2),
                    TextStyle::from((FONT, 15).into_font())
                        .color(&colour)
                        .pos(Pos::new(HPos::Right, VPos::Center)),
                ))
                .map_err(plot_error)?;
            x -= 9 * text.len() as i32 + 16;
        }
    }

    let (low, high) = rows.iter().fold((1.0f64, 0.0f64), |(lo, hi), r| {
        (lo.min(r.mean_score), hi.max(r.mean_score))
    });
    let y_range = padded(low.min(high), high.max(low), 0.02);
    let columns = names.len().clamp(1, COLUMNS);
    let panels = body.split_evenly((names.len().max(1).div_ceil(COLUMNS), columns));
    for (area, name) in panels.iter().zip(names) {
        let axis = Axis::of(space, name, rows);
        let points: Vec<(f64, f64, usize)> = rows
            .iter()
            .filter_map(|r| {
                let x = axis.position(r.params.0.get(*name)?)?;
                Some((x, r.mean_score, r.rung))
            })
            .collect();
        let x_range = match &axis {
            Axis::Categories(categories) => -0.5..categories.len().max(1) as f64 - 0.5,
            _ => {
                let (lo, hi) = points
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                        (lo.min(p.0), hi.max(p.0))
                    });
                if lo.is_finite() {
                    padded(lo, hi, 0.5)
                } else {
                    0.0..1.0
                }
            }
        };
        let mut chart = ChartBuilder::on(area)
            .caption(name.as_str(), (FONT, 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(48)
            .build_cartesian_2d(x_range, y_range.clone())
            .map_err(plot_error)?;
        let x_labels = match &axis {
            Axis::Categories(categories) => categories.len().max(1),
            _ => 5,
        };
        chart
            .configure_mesh()
            .x_labels(x_labels)
            .y_labels(5)
            .max_light_lines(0)
            .x_label_formatter(&|x| axis.label(*x))
            .y_label_formatter(&|y| format!("{y:.2}"))
            .label_style((FONT, 12))
            .draw()
            .map_err(plot_error)?;
        chart
            .draw_series(points.iter().map(|&(x, y, rung)| {
                let colour = RUNG_COLOURS[(rung - 1) % RUNG_COLOURS.len()];
                Circle::new((x, y), 4, colour.filled())
            }))
            .map_err(plot_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(setting: usize, rung: usize, mean: f64) -> Row {
        Row {
            rank: 0,
            setting,
            rung,
            budget: 10,
            mean_score: mean,
            std_score: 0.0,
            fold_scores: vec![mean],
            seconds: 1.0,
            params: Setting::default(),
        }
    }

    #[test]
    fn standard_deviation_is_over_the_folds_as_numpy_computes_it() {
        let (mean, std) = mean_and_std(&[0.5, 0.7]);
        assert!((mean - 0.6).abs() < 1e-12);
        assert!((std - 0.1).abs() < 1e-12);
        assert_eq!(mean_and_std(&[0.25]), (0.25, 0.0));
    }

    #[test]
    fn ranking_puts_the_last_rung_first_then_the_best_scores() {
        let mut rows = vec![
            row(1, 1, 0.9),
            row(2, 1, 0.5),
            row(2, 2, 0.6),
            row(3, 2, 0.6),
            row(4, 2, 0.7),
        ];
        rank(&mut rows);
        let order: Vec<(usize, usize)> = rows.iter().map(|r| (r.setting, r.rung)).collect();
        assert_eq!(order, [(4, 2), (2, 2), (3, 2), (1, 1), (2, 1)]);
        assert_eq!(
            rows.iter().map(|r| r.rank).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn score_lines_read_as_the_tutorials() {
        let mut r = row(1, 2, 0.6123);
        r.std_score = 0.017;
        r.params.0.insert("dense1.units".into(), Value::Int(420));
        assert_eq!(
            r.score_line(Strategy::Random, Resource::Images),
            "0.612 (+/-0.034) for {'dense1.units': 420}"
        );
        assert_eq!(
            r.score_line(Strategy::Halving, Resource::Epochs),
            "0.612 (+/-0.034) for {'dense1.units': 420} [rung 2, 10 epochs]"
        );
    }

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(250.0), "250");
        assert_eq!(tick(0.125), "0.125");
        assert_eq!(tick(0.0001), "1.0e-4");
        assert_eq!(tick(0.0), "0");
    }

    #[test]
    fn the_png_has_one_panel_per_parameter() {
        assert_eq!(scores_png_size(1), (400, 340));
        assert_eq!(scores_png_size(3), (1200, 340));
        assert_eq!(scores_png_size(7), (1200, 940));

        let space = Space::parse(
            "[params]\nconv1.filters = [8, 16]\noptimizer = [\"adam\", \"sgd\"]\n\
             lr = { loguniform = [1e-4, 1e-1] }\n",
            "space.toml",
        )
        .unwrap();
        let rows: Vec<Row> = space
            .sample(4, 1)
            .into_iter()
            .enumerate()
            .map(|(i, params)| Row {
                params,
                ..row(i + 1, 1 + i % 2, 0.3 + 0.1 * i as f64)
            })
            .collect();
        let rungs = [
            Rung {
                candidates: 4,
                budget: 100,
            },
            Rung {
                candidates: 2,
                budget: 300,
            },
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.png");
        scores_png(&path, &space, &rows, &rungs, Resource::Images).unwrap();
        assert_eq!(image::image_dimensions(&path).unwrap(), (1200, 340));
    }
}
