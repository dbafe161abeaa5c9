//! Heap-free inference kernels for the CNNs that `host-trainer` trains.
//!
//! `#![no_std]`, no `alloc`: every kernel reads and writes caller-owned slices. Feature maps
//! are stored channel by channel (CHW): value `(c, y, x)` of a map of `height` x `width` sits
//! at `c * height * width + y * width + x`, the layout of the CIFAR-10 binary format and of
//! burn's tensors, so a network trained on the host runs here without reordering.
//!
//! Each kernel exists in `f32` and in `int8`. The int8 kernels follow the integer-only scheme
//! of TensorFlow Lite and CMSIS-NN: int8 values with a zero point, int32 accumulators, and a
//! per-channel fixed-point [`Requantize`] back to int8. No floating point is used by them.
//!
//! Every kernel checks its slice lengths against the shapes it is given before touching any
//! element and returns [`Error`] on a mismatch; no input makes a kernel panic.
//!
//! ```
//! use core_nostd::{conv, Shape};
//!
//! // A 1x3x3 image convolved with one 3x3 kernel that sums the neighbourhood.
//! let image = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];
//! let weights = [1.0f32; 9];
//! let mut out = [0.0f32; 9];
//! let shape = Shape { channels: 1, height: 3, width: 3 };
//! conv::conv2d_f32(&image, shape, &weights, &[0.0], 3, false, &mut out).unwrap();
//! assert_eq!(out[4], 45.0); // the centre sees all nine values
//! assert_eq!(out[0], 12.0); // a corner sees four; padding counts as zero
//! ```
#![no_std]
#![warn(missing_docs)]

pub mod classify;
pub mod conv;
pub mod dense;
mod error;
pub mod pool;
pub mod requant;

pub use error::Error;
pub use requant::Requantize;

/// The shape of a feature map: channels of `height` x `width` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Number of channels.
    pub channels: usize,
    /// Rows per channel.
    pub height: usize,
    /// Values per row.
    pub width: usize,
}

impl Shape {
    /// Values in one channel, or `None` on overflow.
    pub fn plane(&self) -> Option<usize> {
        self.height.checked_mul(self.width)
    }

    /// Values in the whole map, or `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.plane()?.checked_mul(self.channels)
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// Fails with [`Error::Length`] unless `slice_len == expected`.
pub(crate) fn check_len(
    what: &'static str,
    slice_len: usize,
    expected: Option<usize>,
) -> Result<(), Error> {
    match expected {
        Some(expected) if expected == slice_len => Ok(()),
        Some(expected) => Err(Error::Length {
            what,
            expected,
            found: slice_len,
        }),
        None => Err(Error::Overflow { what }),
    }
}
