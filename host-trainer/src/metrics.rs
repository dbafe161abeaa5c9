//! Classification metrics: accuracy, per-class precision / recall / F1 / support with macro
//! and weighted averages (laid out as scikit-learn's `classification_report` prints them), and
//! the confusion matrix.

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Tallies `predicted` against `truth` over `classes` classes.
    pub fn new(classes: usize, truth: &[u8], predicted: &[u8]) -> Self {
        assert_eq!(truth.len(), predicted.len(), "one prediction per label");
        let mut counts = vec![vec![0; classes]; classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize][p as usize] += 1;
        }
        Self { counts }
    }

    /// Number of predictions tallied.
    pub fn total(&self) -> usize {
        self.counts.iter().flatten().sum()
    }

    /// Fraction of predictions on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: usize = (0..self.counts.len()).map(|c| self.counts[c][c]).sum();
        ratio(correct, self.total())
    }

    /// The matrix as a text table, rows true classes, columns predicted classes.
    pub fn to_table(&self, class_names: &[String]) -> String {
        let name_width = class_names
            .iter()
            .map(String::len)
            .max()
            .unwrap_or(0)
            .max(10);
        let cell = self
            .counts
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(5);
        let mut out = format!("{:>name_width$}", "true \\ pred");
        for name in class_names {
            let short: String = name.chars().take(cell).collect();
            out.push_str(&format!(" {short:>cell$}"));
        }
        out.push('\n');
        for (name, row) in class_names.iter().zip(&self.counts) {
            out.push_str(&format!("{name:>name_width$}"));
            for count in row {
                out.push_str(&format!(" {count:>cell$}"));
            }
            out.push('\n');
        }
        out
    }
}

fn ratio(numerator: usize, denominator: usize) -> f64 {
    // scikit-learn's zero_division default: an undefined ratio is reported as 0.
    if denominator == 0 {
        0.0
    } else {
        numerator as f64 / denominator as f64
    }
}

/// Precision, recall, F1 and support of one class, or an average of them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    /// Correct predictions of the class over all predictions of it.
    pub precision: f64,
    /// Correct predictions of the class over all its images.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Images of the class (for averages: of all classes).
    pub support: usize,
}

/// Everything scikit-learn's `classification_report` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassificationReport {
    /// Class names in label order.
    pub class_names: Vec<String>,
    /// Scores per class, in label order.
    pub per_class: Vec<ClassScores>,
    /// Overall accuracy.
    pub accuracy: f64,
    /// Unweighted mean over classes.
    pub macro_avg: ClassScores,
    /// Mean over classes weighted by support.
    pub weighted_avg: ClassScores,
}

impl ClassificationReport {
    /// The report for a confusion matrix.
    pub fn from_confusion(confusion: &ConfusionMatrix, class_names: &[String]) -> Self {
        let classes = confusion.counts.len();
        let per_class: Vec<ClassScores> = (0..classes)
            .map(|c| {
                let correct = confusion.counts[c][c];
                let predicted: usize = confusion.counts.iter().map(|row| row[c]).sum();
                let support: usize = confusion.counts[c].iter().sum();
                let precision = ratio(correct, predicted);
                let recall = ratio(correct, support);
                let f1 = if precision + recall == 0.0 {
                    0.0
                } else {
                    2.0 * precision * recall / (precision + recall)
                };
                ClassScores {
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        let total: usize = per_class.iter().map(|s| s.support).sum();
        let average = |weight: &dyn Fn(&ClassScores) -> f64| {
            let weights: f64 = per_class.iter().map(weight).sum();
            let mean = |value: fn(&ClassScores) -> f64| {
                if weights == 0.0 {
                    0.0
                } else {
                    per_class.iter().map(|s| weight(s) * value(s)).sum::<f64>() / weights
                }
            };
            ClassScores {
                precision: mean(|s| s.precision),
                recall: mean(|s| s.recall),
                f1: mean(|s| s.f1),
                support: total,
            }
        };
        Self {
            class_names: class_names.to_vec(),
            macro_avg: average(&|_| 1.0),
            weighted_avg: average(&|s| s.support as f64),
            per_class,
            accuracy: confusion.accuracy(),
        }
    }

    /// The report as scikit-learn lays it out, with two decimals.
    pub fn to_text(&self) -> String {
        let width = self
            .class_names
            .iter()
            .map(String::len)
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(0);
        let row = |name: &str, s: &ClassScores| {
            format!(
                "{name:>width$}  {:>9.2} {:>9.2} {:>9.2} {:>9}\n",
                s.precision, s.recall, s.f1, s.support
            )
        };
        let mut out = format!(
            "{:>width$}  {:>9} {:>9} {:>9} {:>9}\n\n",
            "", "precision", "recall", "f1-score", "support"
        );
        for (name, scores) in self.class_names.iter().zip(&self.per_class) {
            out.push_str(&row(name, scores));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:>width$}  {:>9} {:>9} {:>9.2} {:>9}\n",
            "accuracy", "", "", self.accuracy, self.macro_avg.support
        ));
        out.push_str(&row("macro avg", &self.macro_avg));
        out.push_str(&row("weighted avg", &self.weighted_avg));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        ["a", "b", "c"][..n].iter().map(|s| s.to_string()).collect()
    }

    /// Three classes; truth and predictions chosen so every figure is easy to check by hand:
    ///
    /// ```text
    ///            pred a  pred b  pred c
    /// true a        2       1       0      support 3
    /// true b        0       1       1      support 2
    /// true c        1       0       4      support 5
    /// ```
    /// a: precision 2/3, recall 2/3, F1 2/3. b: precision 1/2, recall 1/2, F1 1/2.
    /// c: precision 4/5, recall 4/5, F1 4/5. Accuracy 7/10.
    /// Macro: (2/3 + 1/2 + 4/5) / 3 = 59/90. Weighted: (3*2/3 + 2*1/2 + 5*4/5) / 10 = 0.7.
    #[test]
    fn report_matches_hand_computed_figures() {
        let truth = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2];
        let predicted = [0, 0, 1, 1, 2, 0, 2, 2, 2, 2];
        let confusion = ConfusionMatrix::new(3, &truth, &predicted);
        assert_eq!(
            confusion.counts,
            vec![vec![2, 1, 0], vec![0, 1, 1], vec![1, 0, 4]]
        );
        let report = ClassificationReport::from_confusion(&confusion, &names(3));
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        assert!(close(report.accuracy, 0.7));
        assert!(close(report.per_class[0].precision, 2.0 / 3.0));
        assert!(close(report.per_class[1].recall, 0.5));
        assert!(close(report.per_class[2].f1, 0.8));
        assert_eq!(report.per_class[2].support, 5);
        assert!(close(report.macro_avg.precision, 59.0 / 90.0));
        assert!(close(report.weighted_avg.f1, 0.7));
        assert_eq!(report.weighted_avg.support, 10);
    }

    #[test]
    fn a_never_predicted_class_scores_zero_not_nan() {
        let confusion = ConfusionMatrix::new(2, &[0, 1], &[0, 0]);
        let report = ClassificationReport::from_confusion(&confusion, &names(2));
        assert_eq!(report.per_class[1].precision, 0.0);
        assert_eq!(report.per_class[1].f1, 0.0);
        assert!(!report.macro_avg.f1.is_nan());
    }

    #[test]
    fn text_has_scikit_learns_layout() {
        let confusion = ConfusionMatrix::new(2, &[0, 1, 1, 1], &[0, 1, 1, 0]);
        let text = ClassificationReport::from_confusion(&confusion, &names(2)).to_text();
        let expected = "              precision    recall  f1-score   support

           a       0.50      1.00      0.67         1
           b       1.00      0.67      0.80         3

    accuracy                           0.75         4
   macro avg       0.75      0.83      0.73         4
weighted avg       0.88      0.75      0.77         4
";
        assert_eq!(text, expected);
    }
}
