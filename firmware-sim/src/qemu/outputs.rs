//! The files the firmware writes through semihosting: `summary.txt` and `predictions.bin`
//! (their layout is in `firmware-sim/bare-metal/src/main.rs`).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};

/// The `key value` lines of `summary.txt`.
#[derive(Debug, Clone)]
pub struct Summary {
    /// The Rust target the firmware was built for.
    pub target: String,
    /// Images it ran.
    pub images: u64,
    /// Scores per image.
    pub classes: usize,
    /// Bytes of the embedded model file.
    pub model_bytes: u64,
    /// Where the embedded model file lies.
    pub model_address: u64,
    /// CRC-32 of the embedded model file.
    pub model_crc32: u32,
    /// Bytes of the static arena (`ARENA_BYTES`).
    pub arena_bytes: u64,
    /// Bytes of arena the model needs.
    pub arena_needed_bytes: u64,
    /// Bytes of the stack region.
    pub stack_bytes: u64,
    /// The most stack bytes in use at any time, from the painted stack.
    pub stack_peak_bytes: u64,
    /// Instructions of the calibration loop.
    pub calibration_instructions: u64,
    /// Clock ticks the calibration loop took.
    pub calibration_ticks: u64,
}

impl Summary {
    /// Reads `summary.txt` from `path`.
    pub fn read(path: &Path) -> anyhow::Result<Summary> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read {}: the firmware ended without writing it",
                path.display()
            )
        })?;
        Summary::parse(&text).with_context(|| format!("{}", path.display()))
    }

    fn parse(text: &str) -> anyhow::Result<Summary> {
        let mut values = HashMap::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let Some((key, value)) = line.split_once(' ') else {
                bail!("the line {line:?} is not `key value`");
            };
            values.insert(key, value.trim());
        }
        let text_of = |key: &str| {
            values
                .get(key)
                .copied()
                .with_context(|| format!("no `{key}` line"))
        };
        let number = |key: &str| -> anyhow::Result<u64> {
            let value = text_of(key)?;
            let parsed = match value.strip_prefix("0x") {
                Some(hex) => u64::from_str_radix(hex, 16),
                None => value.parse(),
            };
            parsed.with_context(|| format!("`{key}` is {value:?}, expected a number"))
        };
        Ok(Summary {
            target: text_of("target")?.to_string(),
            images: number("images")?,
            classes: usize::try_from(number("classes")?)?,
            model_bytes: number("model_bytes")?,
            model_address: number("model_address")?,
            model_crc32: u32::try_from(number("model_crc32")?)
                .context("`model_crc32` does not fit in 32 bits")?,
            arena_bytes: number("arena_bytes")?,
            arena_needed_bytes: number("arena_needed_bytes")?,
            stack_bytes: number("stack_bytes")?,
            stack_peak_bytes: number("stack_peak_bytes")?,
            calibration_instructions: number("calibration_instructions")?,
            calibration_ticks: number("calibration_ticks")?,
        })
    }
}

/// One image's answer from the firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prediction {
    /// The class it chose.
    pub class: u8,
    /// Its int8 scores.
    pub scores: Vec<i8>,
    /// Clock ticks the inference took.
    pub ticks: u64,
}

/// Reads `predictions.bin`: `images` records of a class byte, `classes` int8 scores and a
/// little-endian u64 tick count.
pub fn read_predictions(
    path: &Path,
    images: usize,
    classes: usize,
) -> anyhow::Result<Vec<Prediction>> {
    let bytes = std::fs::read(path).with_context(|| {
        format!(
            "cannot read {}: the firmware ended without writing it",
            path.display()
        )
    })?;
    let record = 1 + classes + 8;
    if bytes.len() != images * record {
        bail!(
            "{} has {} bytes: expected {images} records of {record} bytes ({} bytes)",
            path.display(),
            bytes.len(),
            images * record
        );
    }
    Ok(bytes
        .chunks_exact(record)
        .map(|chunk| {
            let (head, ticks) = chunk.split_at(1 + classes);
            let mut tick_bytes = [0u8; 8];
            tick_bytes.copy_from_slice(ticks);
            Prediction {
                class: head[0],
                scores: head[1..].iter().map(|&b| b as i8).collect(),
                ticks: u64::from_le_bytes(tick_bytes),
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMMARY: &str = "target riscv32imac-unknown-none-elf\nimages 2\nclasses 10\n\
        model_bytes 100\nmodel_address 0x80006d88\nmodel_crc32 0x1d1f6044\narena_bytes 64\n\
        arena_needed_bytes 64\nstack_bytes 4096\nstack_peak_bytes 512\n\
        calibration_instructions 8000000\ncalibration_ticks 8000000\n";

    #[test]
    fn a_summary_parses_with_hex_and_decimal_numbers() {
        let summary = Summary::parse(SUMMARY).unwrap();
        assert_eq!(summary.model_address, 0x8000_6d88);
        assert_eq!(summary.model_crc32, 0x1d1f_6044);
        assert_eq!(summary.stack_peak_bytes, 512);
    }

    #[test]
    fn a_summary_without_a_key_names_it() {
        let text = SUMMARY.replace("stack_peak_bytes 512\n", "");
        let error = Summary::parse(&text).unwrap_err().to_string();
        assert!(error.contains("stack_peak_bytes"), "{error}");
        let text = SUMMARY.replace("images 2", "images two");
        let error = Summary::parse(&text).unwrap_err().to_string();
        assert!(error.contains("`images` is \"two\""), "{error}");
    }

    #[test]
    fn predictions_of_the_wrong_length_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predictions.bin");
        let mut record = vec![3u8];
        record.extend((0..10).map(|i| (i as i8 - 5) as u8));
        record.extend(1234u64.to_le_bytes());
        std::fs::write(&path, &record).unwrap();
        let predictions = read_predictions(&path, 1, 10).unwrap();
        assert_eq!(predictions[0].class, 3);
        assert_eq!(predictions[0].scores[0], -5);
        assert_eq!(predictions[0].ticks, 1234);
        let error = read_predictions(&path, 2, 10).unwrap_err().to_string();
        assert!(error.contains("expected 2 records of 19 bytes"), "{error}");
    }
}
