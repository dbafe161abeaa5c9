//! How the kernels read weights, biases and scales: as plain values (what a caller holding
//! `&[f32]` passes), or as the little-endian bytes a model blob stores them in, decoded as
//! they are read. The second form lets a model run from flash at any alignment, without
//! copying its weights into RAM.

use crate::Requantize;

/// A real-valued weight or bias.
pub trait Real: Copy {
    /// The value.
    fn to_f32(self) -> f32;
}

impl Real for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Real for [u8; 4] {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_le_bytes(self)
    }
}

/// An int32 bias.
pub trait Int32: Copy {
    /// The value.
    fn to_i32(self) -> i32;
}

impl Int32 for i32 {
    #[inline(always)]
    fn to_i32(self) -> i32 {
        self
    }
}

impl Int32 for [u8; 4] {
    #[inline(always)]
    fn to_i32(self) -> i32 {
        i32::from_le_bytes(self)
    }
}

/// A per-channel requantization scale.
pub trait Scale: Copy {
    /// The scale.
    fn to_requantize(self) -> Requantize;
}

impl Scale for Requantize {
    #[inline(always)]
    fn to_requantize(self) -> Requantize {
        self
    }
}

/// The stored form: the multiplier as 4 little-endian bytes, then the shift as one signed
/// byte. Out-of-range parts are clamped into range here; [`crate::Model::parse`] rejects
/// them before any inference, so the clamp only keeps this conversion total.
impl Scale for [u8; 5] {
    #[inline(always)]
    fn to_requantize(self) -> Requantize {
        let multiplier = i32::from_le_bytes([self[0], self[1], self[2], self[3]]);
        Requantize::clamped(multiplier, self[4] as i8 as i32)
    }
}
