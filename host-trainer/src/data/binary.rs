//! The official CIFAR-10 binary layout: `data_batch_1.bin` .. `data_batch_5.bin` and
//! `test_batch.bin`, each a run of 3,073-byte records (one label byte, then the red, green
//! and blue planes of 1,024 bytes each), and `batches.meta.txt` with the class names.

use std::path::{Path, PathBuf};

use super::{CLASS_NAMES, Cifar10, DataError, Dataset, IMAGE_BYTES, NUM_CLASSES, Split, Wanted};

/// Bytes of one record: the label, then the image.
pub const RECORD_BYTES: usize = 1 + IMAGE_BYTES;
/// The folder name the official archive unpacks to.
pub const BATCH_DIR: &str = "cifar-10-batches-bin";
/// File names of the five training batches, in order.
pub const TRAIN_BATCHES: [&str; 5] = [
    "data_batch_1.bin",
    "data_batch_2.bin",
    "data_batch_3.bin",
    "data_batch_4.bin",
    "data_batch_5.bin",
];
/// File name of the test batch.
pub const TEST_BATCH: &str = "test_batch.bin";
/// File name of the class-name list.
pub const META_FILE: &str = "batches.meta.txt";

/// The folder holding the batch files: `path` itself or its `cifar-10-batches-bin/`.
pub fn find_batch_dir(path: &Path) -> Option<PathBuf> {
    let holds_batches = |dir: &Path| {
        dir.join(TEST_BATCH).is_file() || TRAIN_BATCHES.iter().any(|b| dir.join(b).is_file())
    };
    if holds_batches(path) {
        return Some(path.to_path_buf());
    }
    let nested = path.join(BATCH_DIR);
    holds_batches(&nested).then_some(nested)
}

/// Reads the batches under `dir`.
pub fn load_dir(dir: &Path, wanted: Wanted) -> Result<Cifar10, DataError> {
    let meta_path = dir.join(META_FILE);
    let class_names = if meta_path.is_file() {
        let text = super::read_file(&meta_path)?;
        parse_meta(&meta_path, &text)?
    } else {
        default_class_names()
    };

    let mut train = Dataset {
        class_names: class_names.clone(),
        ..Dataset::empty()
    };
    if wanted == Wanted::Both {
        let present: Vec<PathBuf> = TRAIN_BATCHES
            .iter()
            .map(|name| dir.join(name))
            .filter(|p| p.is_file())
            .collect();
        if present.len() != TRAIN_BATCHES.len() {
            return Err(missing_train(dir, present.len()));
        }
        for path in present {
            let bytes = super::read_file(&path)?;
            append_records(&path, &bytes, &mut train)?;
        }
    }

    let test_path = dir.join(TEST_BATCH);
    if !test_path.is_file() {
        return Err(DataError::MissingSplit {
            path: dir.to_path_buf(),
            split: Split::Test,
            expected: "test_batch.bin",
        });
    }
    let mut test = Dataset {
        class_names,
        ..Dataset::empty()
    };
    append_records(&test_path, &super::read_file(&test_path)?, &mut test)?;
    Ok(Cifar10 { train, test })
}

pub(super) fn missing_train(path: &Path, found: usize) -> DataError {
    DataError::MissingSplit {
        path: path.to_path_buf(),
        split: Split::Train,
        expected: if found == 0 {
            "data_batch_1.bin .. data_batch_5.bin (none found)"
        } else {
            "all five of data_batch_1.bin .. data_batch_5.bin (some are missing)"
        },
    }
}

/// Appends the records of one batch file to `set`, checking its size and every label.
pub fn append_records(path: &Path, bytes: &[u8], set: &mut Dataset) -> Result<(), DataError> {
    if !bytes.len().is_multiple_of(RECORD_BYTES) {
        return Err(DataError::TruncatedBatch {
            path: path.to_path_buf(),
            len: bytes.len(),
            offset: bytes.len() / RECORD_BYTES * RECORD_BYTES,
        });
    }
    set.images.reserve(bytes.len() / RECORD_BYTES * IMAGE_BYTES);
    for (record, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
        let label = chunk[0];
        if label as usize >= NUM_CLASSES {
            return Err(DataError::BadLabel {
                path: path.to_path_buf(),
                record,
                offset: record * RECORD_BYTES,
                label,
            });
        }
        set.labels.push(label);
        set.images.extend_from_slice(&chunk[1..]);
    }
    Ok(())
}

/// Class names from `batches.meta.txt`: one a line, blank lines ignored, ten expected.
pub fn parse_meta(path: &Path, bytes: &[u8]) -> Result<Vec<String>, DataError> {
    let text = String::from_utf8_lossy(bytes);
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() != NUM_CLASSES {
        return Err(DataError::BadMeta {
            path: path.to_path_buf(),
            found: names.len(),
        });
    }
    Ok(names)
}

fn default_class_names() -> Vec<String> {
    CLASS_NAMES.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: u8, fill: u8) -> Vec<u8> {
        let mut bytes = vec![label];
        bytes.extend(std::iter::repeat_n(fill, IMAGE_BYTES));
        bytes
    }

    #[test]
    fn reads_records_in_order() {
        let mut bytes = record(3, 7);
        bytes.extend(record(9, 200));
        let mut set = Dataset::empty();
        append_records(Path::new("b.bin"), &bytes, &mut set).unwrap();
        assert_eq!(set.labels, vec![3, 9]);
        assert!(set.image(0).iter().all(|&p| p == 7));
        assert!(set.image(1).iter().all(|&p| p == 200));
    }

    #[test]
    fn a_partial_record_names_its_offset() {
        let mut bytes = record(1, 1);
        bytes.extend(&record(2, 2)[..100]);
        let err = append_records(Path::new("b.bin"), &bytes, &mut Dataset::empty()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("b.bin"), "{text}");
        assert!(text.contains("offset 3073"), "{text}");
    }

    #[test]
    fn a_label_above_nine_names_record_and_offset() {
        let mut bytes = record(1, 1);
        bytes.extend(record(10, 2));
        let err = append_records(Path::new("b.bin"), &bytes, &mut Dataset::empty()).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("record 1"), "{text}");
        assert!(text.contains("offset 3073"), "{text}");
        assert!(text.contains("label 10"), "{text}");
    }

    #[test]
    fn meta_needs_ten_names() {
        let names = parse_meta(Path::new("m"), CLASS_NAMES.join("\n").as_bytes()).unwrap();
        assert_eq!(names[9], "truck");
        assert!(parse_meta(Path::new("m"), b"cat\ndog\n").is_err());
    }
}
