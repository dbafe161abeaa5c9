//! Fixed-point requantization: scaling an int32 accumulator by a real factor with integer
//! arithmetic only, bit for bit as TensorFlow Lite (gemmlowp) does it.
//!
//! A real factor `m` in (0, 2^31) is stored as a 32-bit `multiplier` in [2^30, 2^31) and a
//! `shift`, with `m = multiplier * 2^(shift - 31)`. Applying it:
//!
//! 1. a left shift by `max(shift, 0)` (saturating);
//! 2. a rounding doubling high multiply: `(x * multiplier + nudge) / 2^31`, where `nudge` is
//!    `2^30` for a non-negative product and `1 - 2^30` for a negative one, and the division
//!    truncates toward zero;
//! 3. a rounding right shift by `max(-shift, 0)`: the remainder is compared with half the
//!    divisor, ties round up for positive values and down for negative ones (away from zero).

use crate::Error;
use crate::element::Scale;

/// A real scale factor in fixed point; see the module docs for the arithmetic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requantize {
    multiplier: i32,
    shift: i32,
}

/// Shifts the arithmetic supports: a right shift of up to 31 bits, a left one of up to 30.
pub const SHIFTS: core::ops::RangeInclusive<i32> = -31..=30;

impl Requantize {
    /// A requantization from its parts; `multiplier` must not be negative and `shift` must lie
    /// in [`SHIFTS`].
    pub fn new(multiplier: i32, shift: i32) -> Result<Self, Error> {
        if multiplier < 0 || !SHIFTS.contains(&shift) {
            return Err(Error::BadShift { shift });
        }
        Ok(Self { multiplier, shift })
    }

    /// The nearest fixed-point form of `scale`, as TensorFlow Lite's `QuantizeMultiplier`
    /// computes it. A scale too small for 31 bits of right shift becomes zero; a scale that
    /// is not finite, is negative, or needs more than 30 bits of left shift is an error.
    pub fn from_scale(scale: f64) -> Result<Self, Error> {
        if !(scale.is_finite() && scale >= 0.0) {
            return Err(Error::BadShift { shift: i32::MAX });
        }
        if scale == 0.0 {
            return Ok(Self {
                multiplier: 0,
                shift: 0,
            });
        }
        let (fraction, exponent) = libm::frexp(scale);
        let mut fixed = libm::round(fraction * (1u64 << 31) as f64) as i64;
        let mut shift = exponent;
        if fixed == 1i64 << 31 {
            fixed /= 2;
            shift += 1;
        }
        if shift < *SHIFTS.start() {
            return Ok(Self {
                multiplier: 0,
                shift: 0,
            });
        }
        Self::new(fixed as i32, shift)
    }

    /// `new` with each part clamped into its range instead of refused.
    pub(crate) fn clamped(multiplier: i32, shift: i32) -> Self {
        Self {
            multiplier: multiplier.max(0),
            shift: shift.clamp(*SHIFTS.start(), *SHIFTS.end()),
        }
    }

    /// The stored form read by [`crate::element::Scale`]: the multiplier in 4 little-endian
    /// bytes, then the shift in one signed byte.
    pub fn to_bytes(self) -> [u8; 5] {
        let m = self.multiplier.to_le_bytes();
        [m[0], m[1], m[2], m[3], self.shift as i8 as u8]
    }

    /// The 32-bit multiplier.
    pub fn multiplier(self) -> i32 {
        self.multiplier
    }

    /// The power-of-two exponent.
    pub fn shift(self) -> i32 {
        self.shift
    }

    /// `round(value * scale)` in integer arithmetic.
    #[inline]
    pub fn apply(self, value: i32) -> i32 {
        let left = self.shift.max(0) as u32;
        let right = (-self.shift).max(0) as u32;
        let shifted = value.saturating_mul(1i32 << left);
        rounding_shift_right(doubling_high_mul(shifted, self.multiplier), right)
    }
}

/// How an int8 layer turns its int32 accumulators into int8 outputs: a per-channel
/// [`Requantize`], the output zero point, then a clamp (into which a ReLU folds: its lower
/// bound becomes the zero point).
#[derive(Debug, Clone, Copy)]
pub struct Requantization<'a, S = Requantize> {
    /// One scale per output channel: input scale x weight scale / output scale.
    pub per_channel: &'a [S],
    /// The output's zero point.
    pub zero_point: i32,
    /// Smallest output value.
    pub min: i8,
    /// Largest output value.
    pub max: i8,
}

impl<S: Scale> Requantization<'_, S> {
    /// Checks that there is one scale for each of `outputs` channels and that the clamp is
    /// a range (`min <= max`).
    pub fn check(&self, outputs: usize) -> Result<(), Error> {
        crate::check_len(
            "requantization scales",
            self.per_channel.len(),
            Some(outputs),
        )?;
        if self.min > self.max {
            return Err(Error::Format {
                what: "requantization clamp: min is above max",
            });
        }
        Ok(())
    }

    /// The int8 output of channel `scale` for accumulator `accumulator`.
    #[inline(always)]
    pub fn output(&self, scale: S, accumulator: i32) -> i8 {
        self.output_decoded(scale.to_requantize(), accumulator)
    }

    /// [`Self::output`] with the scale already decoded.
    #[inline]
    pub(crate) fn output_decoded(&self, scale: Requantize, accumulator: i32) -> i8 {
        let value = scale.apply(accumulator).saturating_add(self.zero_point);
        value.clamp(self.min as i32, self.max as i32) as i8
    }
}

/// `round(a * b / 2^31)`, saturating the one overflowing case.
fn doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let product = a as i64 * b as i64;
    let nudge = if product >= 0 {
        1i64 << 30
    } else {
        1 - (1i64 << 30)
    };
    ((product + nudge) / (1i64 << 31)) as i32
}

/// `x / 2^exponent` rounded to nearest, ties away from zero; `exponent` is at most 31.
fn rounding_shift_right(x: i32, exponent: u32) -> i32 {
    let x = x as i64;
    let mask = (1i64 << exponent) - 1;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i64::from(x < 0);
    ((x >> exponent) + i64::from(remainder > threshold)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_split_into_multiplier_and_shift() {
        let half = Requantize::from_scale(0.5).unwrap();
        assert_eq!((half.multiplier(), half.shift()), (1 << 30, 0));
        let three = Requantize::from_scale(3.0).unwrap();
        assert_eq!((three.multiplier(), three.shift()), (3 << 29, 2));
        let tiny = Requantize::from_scale(1e-3).unwrap();
        // 1e-3 = 0.512 * 2^-9; 0.512 * 2^31 = 1,099,511,627.776, rounded up.
        assert_eq!((tiny.multiplier(), tiny.shift()), (1_099_511_628, -9));
        assert_eq!(Requantize::from_scale(0.0).unwrap().apply(12345), 0);
        assert!(Requantize::from_scale(-1.0).is_err());
        assert!(Requantize::from_scale(f64::NAN).is_err());
        assert!(Requantize::from_scale(1e12).is_err());
        assert!(Requantize::new(1, 31).is_err());
    }

    #[test]
    fn hand_computed_roundings() {
        let half = Requantize::from_scale(0.5).unwrap();
        // (3 * 2^30 + 2^30) / 2^31 = 2: 1.5 rounds up.
        assert_eq!(half.apply(3), 2);
        // (-3 * 2^30 + 1 - 2^30) / 2^31 = -1.99.. truncated to -1: the high multiply rounds
        // -1.5 toward zero, as gemmlowp does.
        assert_eq!(half.apply(-3), -1);
        let quarter = Requantize::from_scale(0.25).unwrap();
        // multiplier 2^30, shift -1: high multiply gives 3 for 6 (6 * 0.5), then 3 / 2 = 1.5
        // rounds away from zero to 2; -6 gives -3, then -1.5 rounds to -2.
        assert_eq!(quarter.apply(6), 2);
        assert_eq!(quarter.apply(-6), -2);
        // Two roundings: 5 * 0.5 = 2.5 rounds to 3, then 3 / 2 = 1.5 rounds to 2, where the
        // exact 1.25 would give 1. TensorFlow Lite's default arithmetic does the same.
        assert_eq!(quarter.apply(5), 2);
        assert_eq!(Requantize::from_scale(4.0).unwrap().apply(-7), -28);
    }

    #[test]
    fn stays_within_one_of_the_real_product() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..10_000 {
            let scale = (next() % 1_000_000 + 1) as f64 * 1e-7;
            let value = (next() % 2_000_001) as i32 - 1_000_000;
            let got = Requantize::from_scale(scale).unwrap().apply(value);
            let exact = value as f64 * scale;
            assert!(
                (got as f64 - exact).abs() < 1.0,
                "{value} * {scale}: {got} vs {exact}"
            );
        }
    }

    #[test]
    fn extremes_saturate_instead_of_overflowing() {
        // The left shift saturates to i32::MAX; the high multiply by (2^31 - 1) / 2^31 then
        // gives (2^62 - 2^32 + 1 + 2^30) / 2^31, truncated: 2^31 - 2.
        let big = Requantize::new(i32::MAX, 30).unwrap();
        assert_eq!(big.apply(i32::MAX), i32::MAX - 1);
        assert_eq!(big.apply(i32::MIN), i32::MIN + 1);
        // The largest right shift: about -2^31 * 2^-31 = -1.
        let small = Requantize::new(i32::MAX, -31).unwrap();
        assert_eq!(small.apply(i32::MIN), -1);
        assert_eq!(small.apply(i32::MAX), 1);
    }
}
