//! The one error type of the crate.

use core::fmt;

/// Why a kernel refused its arguments.
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
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Length {
                what,
                expected,
                found,
            } => write!(f, "{what}: expected {expected} values, found {found}"),
            Error::Overflow { what } => write!(f, "{what}: size overflows"),
            Error::BadWindow { what, size } => write!(f, "{what}: unusable size {size}"),
            Error::BadShift { shift } => {
                write!(f, "requantization shift {shift} is outside -31..=30")
            }
        }
    }
}

impl core::error::Error for Error {}
