//! Test-set evaluation of a trained network and the files that report it.

use std::path::Path;

use burn::module::Module;
use burn::prelude::Device;
use serde::{Deserialize, Serialize};

use crate::data::{Dataset, NUM_CLASSES};
use crate::metrics::{ClassificationReport, ConfusionMatrix};
use crate::model::Cnn;
use crate::train::{Batcher, Normalization, predict};

/// Every figure of one evaluation on a test set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Images evaluated.
    pub images: usize,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Mean cross-entropy.
    pub loss: f64,
    /// Per-class precision, recall, F1 and support, with averages.
    pub report: ClassificationReport,
    /// Counts of true against predicted class.
    pub confusion: ConfusionMatrix,
    /// Wall time of the inference.
    pub seconds: f64,
    /// Inference throughput.
    pub images_per_second: f64,
}

/// Runs `model` over `test` and computes every figure.
pub fn evaluate(model: &Cnn, test: &Dataset, normalization: &Normalization) -> Evaluation {
    let started = std::time::Instant::now();
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(Device::flex);
    let predictions = predict(model, test, &Batcher::new(normalization), 256, &device);
    let seconds = started.elapsed().as_secs_f64();
    let confusion = ConfusionMatrix::new(NUM_CLASSES, &test.labels, &predictions.labels);
    Evaluation {
        images: test.len(),
        accuracy: predictions.accuracy,
        loss: predictions.loss,
        report: ClassificationReport::from_confusion(&confusion, &test.class_names),
        confusion,
        seconds,
        images_per_second: test.len() as f64 / seconds.max(1e-9),
    }
}

impl Evaluation {
    /// The human-readable report: accuracy, classification report, confusion matrix.
    pub fn to_text(&self, title: &str) -> String {
        format!(
            "{title}\n\ntest accuracy: {:.4} ({} images), test loss: {:.4}\n\n{}\nconfusion matrix (rows: true class, columns: predicted class)\n\n{}",
            self.accuracy,
            self.images,
            self.loss,
            self.report.to_text(),
            self.confusion.to_table(&self.report.class_names)
        )
    }

    /// Writes `report.txt` and `confusion.png` into `dir`.
    pub fn write_files(&self, dir: &Path, title: &str) -> anyhow::Result<()> {
        crate::output::write_atomic(&dir.join("report.txt"), self.to_text(title).as_bytes())?;
        crate::plots::confusion_png(
            &dir.join("confusion.png"),
            &self.confusion,
            &self.report.class_names,
            &format!("{title}: test accuracy {:.2}%", self.accuracy * 100.0),
        )
    }
}
