//! The one error type of the crate.

use core::fmt;

/// Why a model or a kernel refused its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// A slice does not hold as many values as its shape says.
    Length {
        /// Which argument.
        what: &'static str,
        /// Values the shape needs.
        expected: usize,
        /// Values the slice holds.
        found: usize,
    },
    /// A size computed from the shapes does not fit in `usize`.
    Overflow {
        /// Which size.
        what: &'static str,
    },
    /// A kernel or pool size is zero, or a pool is larger than its input.
    BadWindow {
        /// Which window.
        what: &'static str,
        /// Its size.
        size: usize,
    },
    /// A requantization shift outside what the fixed-point arithmetic supports.
    BadShift {
        /// The shift.
        shift: i32,
    },
    /// The model file is malformed.
    Format {
        /// What is wrong.
        what: &'static str,
    },
    /// The model file has another format version.
    Version {
        /// Version in the file.
        found: u16,
        /// The version this build reads.
        supported: u16,
    },
    /// The payload's CRC-32 differs from the one in the header: the file is damaged.
    Checksum {
        /// CRC-32 in the header.
        stored: u32,
        /// CRC-32 of the payload as read.
        computed: u32,
    },
    /// The payload is not a valid postcard-encoded model definition.
    Decode,
    /// The model has the other precision than the inference asked for.
    Precision {
        /// The model's precision.
        model: crate::format::Precision,
    },
    /// A buffer is not aligned as its values need.
    Alignment {
        /// Which buffer.
        what: &'static str,
        /// Alignment needed, in bytes.
        align: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Length {
                what,
                expected,
                found,
            } => write!(f, "{what}: expected {expected}, found {found}"),
            Error::Overflow { what } => write!(f, "{what}: size overflows"),
            Error::BadWindow { what, size } => write!(f, "{what}: unusable size {size}"),
            Error::BadShift { shift } => {
                write!(f, "requantization shift {shift} is outside -31..=30")
            }
            Error::Format { what } => write!(f, "malformed model: {what}"),
            Error::Version { found, supported } => write!(
                f,
                "model format version {found}, but this build reads version {supported}"
            ),
            Error::Checksum { stored, computed } => write!(
                f,
                "model payload damaged: CRC-32 {computed:#010x}, header says {stored:#010x}"
            ),
            Error::Decode => write!(f, "malformed model: the payload does not decode"),
            Error::Precision { model } => {
                write!(f, "the model is {model:?}; use the matching infer function")
            }
            Error::Alignment { what, align } => {
                write!(f, "{what}: must be aligned to {align} bytes")
            }
        }
    }
}

impl core::error::Error for Error {}
