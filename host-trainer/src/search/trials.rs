//! The trial log, `trials.jsonl`: a header line with the search's options, then one JSON
//! object per finished fold training, each written, flushed and synced to disk before the
//! next training starts. A search killed at any moment loses at most the fold it was
//! training; a line cut short by the kill is dropped when the search resumes.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::space::Setting;

/// One finished fold training. Settings, rungs and folds count from 1.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FoldRecord {
    /// Which setting, in the order they were drawn.
    pub setting: usize,
    /// Which rung (always 1 for random search).
    pub rung: usize,
    /// Which fold was held out.
    pub fold: usize,
    /// The rung's budget: training images or epochs.
    pub budget: usize,
    /// Images the training used, its validation split included.
    pub train_images: usize,
    /// Held-out images classified correctly.
    pub correct: usize,
    /// Images in the held-out fold.
    pub images: usize,
    /// `correct / images`, for a reader of the log.
    pub score: f64,
    /// The epoch whose weights were scored.
    pub best_epoch: usize,
    /// Epochs run before early stopping or the limit.
    pub epochs: usize,
    /// Wall time of the training and the scoring.
    pub seconds: f64,
    /// The setting's parameters, for a reader of the log.
    pub params: Setting,
}

impl FoldRecord {
    /// The accuracy on the held-out fold, computed from the counts so that a logged fold
    /// and a fresh one give bit-identical figures.
    pub fn accuracy(&self) -> f64 {
        self.correct as f64 / self.images.max(1) as f64
    }
}

/// The header as read back.
#[derive(Debug, Deserialize)]
struct Header {
    options: serde_json::Value,
    training_images: usize,
}

/// The header line: the options exactly as serialized, so that a resumed search can compare
/// them as text (numbers read back from JSON can differ in their last bit).
fn header_line(options_json: &str, training_images: usize) -> String {
    format!("{{\"options\":{options_json},\"training_images\":{training_images}}}\n")
}

/// An open trial log, appending.
pub struct TrialLog {
    path: PathBuf,
    file: File,
}

/// What an existing log holds.
pub struct Opened {
    /// The log, open for appending after its last complete line.
    pub log: TrialLog,
    /// Training images of the search (after `--limit-train`).
    pub training_images: usize,
    /// Every finished fold, in the order written.
    pub records: Vec<FoldRecord>,
}

impl TrialLog {
    /// Starts a new log at `path` (replacing any), with the header.
    pub fn create(path: &Path, options_json: &str, training_images: usize) -> anyhow::Result<Self> {
        let file =
            File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut log = Self {
            path: path.to_path_buf(),
            file,
        };
        log.write_line(&header_line(options_json, training_images))?;
        Ok(log)
    }

    /// Opens the log at `path` to go on with it: checks that it was written with the same
    /// options, reads its finished folds, and cuts off a last line left unfinished by a kill.
    /// `None` when not even the header was finished.
    pub fn open(path: &Path, options_json: &str) -> anyhow::Result<Option<Opened>> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let complete = bytes
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |last| last + 1);
        if complete < bytes.len() {
            tracing::warn!(
                "{}: dropping an unfinished last line ({} bytes), the fold that was being \
                 written when the search stopped; it will be trained again",
                path.display(),
                bytes.len() - complete
            );
        }
        let text = std::str::from_utf8(&bytes[..complete])
            .with_context(|| format!("{}: not a trial log (not UTF-8)", path.display()))?;
        let mut lines = text.lines();
        let Some(first) = lines.next() else {
            return Ok(None);
        };

        let header: Header = serde_json::from_str(first)
            .with_context(|| format!("{}: line 1 is not a search header", path.display()))?;
        if first.trim_end() != header_line(options_json, header.training_images).trim_end() {
            let now: serde_json::Value = serde_json::from_str(options_json)?;
            let mut differences = Vec::new();
            differ("", &header.options, &now, &mut differences);
            if differences.is_empty() {
                differences.push("the search space's numbers".into());
            }
            bail!(
                "--resume: {} was written by a search with other options ({}); resume with the \
                 same options, or start a new search with another --out",
                path.display(),
                differences.join("; ")
            );
        }

        let mut records = Vec::new();
        for (index, line) in lines.enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let record: FoldRecord = serde_json::from_str(line).with_context(|| {
                format!(
                    "{}: line {} is not a fold record",
                    path.display(),
                    index + 2
                )
            })?;
            records.push(record);
        }

        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_len(complete as u64)
            .with_context(|| format!("cannot truncate {}", path.display()))?;
        file.sync_all()
            .with_context(|| format!("writing {}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Some(Opened {
            log: Self {
                path: path.to_path_buf(),
                file,
            },
            training_images: header.training_images,
            records,
        }))
    }

    /// Appends a finished fold and syncs it to disk.
    pub fn append(&mut self, record: &FoldRecord) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(record)?;
        line.push('\n');
        self.write_line(&line)
    }

    fn write_line(&mut self, line: &str) -> anyhow::Result<()> {
        self.file
            .write_all(line.as_bytes())
            .and_then(|()| self.file.flush())
            .and_then(|()| self.file.sync_data())
            .with_context(|| format!("writing {}", self.path.display()))
    }
}

/// Collects `path: logged there, now here` for every leaf where two option trees differ.
fn differ(path: &str, logged: &serde_json::Value, now: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value::Object;
    match (logged, now) {
        (Object(a), Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            let null = serde_json::Value::Null;
            for key in keys {
                let inner = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                differ(
                    &inner,
                    a.get(key).unwrap_or(&null),
                    b.get(key).unwrap_or(&null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} in the log, {b} now")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(setting: usize, fold: usize) -> FoldRecord {
        FoldRecord {
            setting,
            rung: 1,
            fold,
            budget: 100,
            train_images: 100,
            correct: 7,
            images: 21,
            score: 7.0 / 21.0,
            best_epoch: 1,
            epochs: 2,
            seconds: 0.5,
            params: Setting::default(),
        }
    }

    const OPTIONS: &str = r#"{"iter":2,"training":{"epochs":1,"lr":0.1}}"#;

    #[test]
    fn records_survive_a_reopen_and_a_cut_last_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        let mut log = TrialLog::create(&path, OPTIONS, 1000).unwrap();
        log.append(&record(1, 1)).unwrap();
        log.append(&record(1, 2)).unwrap();
        drop(log);

        // A kill in the middle of the second record.
        let text = std::fs::read_to_string(&path).unwrap();
        let cut = text.len() - 40;
        std::fs::write(&path, &text[..cut]).unwrap();

        let opened = TrialLog::open(&path, OPTIONS).unwrap().unwrap();
        assert_eq!(opened.training_images, 1000);
        assert_eq!(opened.records, [record(1, 1)]);
        let mut log = opened.log;
        log.append(&record(2, 1)).unwrap();
        drop(log);

        let reopened = TrialLog::open(&path, OPTIONS).unwrap().unwrap();
        assert_eq!(reopened.records, [record(1, 1), record(2, 1)]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
    }

    #[test]
    fn other_options_are_refused_with_the_differences_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        TrialLog::create(&path, OPTIONS, 1000).unwrap();
        let other = r#"{"iter":3,"training":{"epochs":2,"lr":0.1}}"#;
        let err = TrialLog::open(&path, other).err().unwrap().to_string();
        assert!(err.contains("trials.jsonl"), "{err}");
        assert!(err.contains("iter: 2 in the log, 3 now"), "{err}");
        assert!(
            err.contains("training.epochs: 1 in the log, 2 now"),
            "{err}"
        );
    }

    #[test]
    fn a_damaged_line_in_the_middle_is_an_error_and_a_cut_header_is_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trials.jsonl");
        std::fs::write(&path, header_line(OPTIONS, 10) + "{\"setting\":\n{}\n").unwrap();
        let err = format!("{:#}", TrialLog::open(&path, OPTIONS).err().unwrap());
        assert!(err.contains("line 2 is not a fold record"), "{err}");

        std::fs::write(&path, &header_line(OPTIONS, 10)[..12]).unwrap();
        assert!(TrialLog::open(&path, OPTIONS).unwrap().is_none());
    }
}
