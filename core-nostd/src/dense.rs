//! Dense (fully connected) layers. Weights are laid out `[output][input]`, one row per output
//! unit, so that each output is one contiguous dot product.

use crate::cpu::Kernels;
#[cfg(target_arch = "x86_64")]
use crate::dot::{Dots, UNITS};
use crate::element::{Int32, Real, Scale};
use crate::requant::Requantization;
use crate::{Error, check_len};

fn check(
    input_len: usize,
    weights_len: usize,
    outputs: usize,
    output_len: usize,
) -> Result<(), Error> {
    check_len("dense weights", weights_len, input_len.checked_mul(outputs))?;
    check_len("dense output", output_len, Some(outputs))
}

/// f32 dense layer: `output = weights . input + bias`, then ReLU if `relu`.
/// The layer has `bias.len()` outputs. Weights and biases are `f32` values or their
/// little-endian bytes (see [`Real`]).
pub fn dense_f32<W: Real>(
    input: &[f32],
    weights: &[W],
    bias: &[W],
    relu: bool,
    output: &mut [f32],
) -> Result<(), Error> {
    check(input.len(), weights.len(), bias.len(), output.len())?;
    let row_len = input.len().max(1);
    for ((out, row), &b) in output.iter_mut().zip(weights.chunks(row_len)).zip(bias) {
        let sum = row
            .iter()
            .zip(input)
            .fold(b.to_f32(), |acc, (w, x)| acc + w.to_f32() * x);
        *out = if relu { sum.max(0.0) } else { sum };
    }
    if input.is_empty() {
        for (out, &b) in output.iter_mut().zip(bias) {
            *out = b.to_f32();
        }
    }
    Ok(())
}

/// int8 dense layer: int32 sums of `(input - input_zero_point) * weight`, plus `bias`,
/// requantized per output unit. On x86-64 with AVX2, inputs of up to [`AVX2_MAX_INPUTS`]
/// values run through AVX2 dot products (see [`Kernels`]); the sums, and so the outputs,
/// are the same bits.
pub fn dense_i8<B: Int32, S: Scale>(
    input: &[i8],
    input_zero_point: i8,
    weights: &[i8],
    bias: &[B],
    requantization: &Requantization<'_, S>,
    output: &mut [i8],
) -> Result<(), Error> {
    dense_i8_with(
        Kernels::detect(),
        input,
        input_zero_point,
        weights,
        bias,
        requantization,
        output,
    )
}

/// Longest input the AVX2 loop takes: it widens the input onto the stack first.
pub const AVX2_MAX_INPUTS: usize = 2048;

/// [`dense_i8`] with its loops built for `kernels`, which must be one of
/// [`Kernels::supported`] (another falls back to the portable loops).
pub fn dense_i8_with<B: Int32, S: Scale>(
    kernels: Kernels,
    input: &[i8],
    input_zero_point: i8,
    weights: &[i8],
    bias: &[B],
    requantization: &Requantization<'_, S>,
    output: &mut [i8],
) -> Result<(), Error> {
    check(input.len(), weights.len(), bias.len(), output.len())?;
    requantization.check(bias.len())?;
    let zero_point = input_zero_point as i16;
    #[cfg(target_arch = "x86_64")]
    if matches!(kernels, Kernels::Avx2 | Kernels::Avx512Vnni)
        && input.len() <= AVX2_MAX_INPUTS
        && let Some(avx2) = crate::dot::x86::Avx2::new()
    {
        let mut widened = [[0u8; 2]; AVX2_MAX_INPUTS];
        for (w, &x) in widened.iter_mut().zip(input) {
            *w = (x as i16 - zero_point).to_le_bytes();
        }
        let widened = widened.get(..input.len()).unwrap_or(&[]);
        // SAFETY: `Avx2::new` checked that this processor and its OS run AVX2.
        unsafe { rows_avx2(avx2, widened, weights, bias, requantization, output) };
        return Ok(());
    }
    let _ = kernels;
    let row_len = input.len().max(1);
    let units = output
        .iter_mut()
        .zip(weights.chunks(row_len))
        .zip(bias)
        .zip(requantization.per_channel);
    for (((out, row), b), &scale) in units {
        let sum = row.iter().zip(input).fold(b.to_i32(), |acc, (&w, &x)| {
            acc.wrapping_add(((x as i16 - zero_point) * w as i16) as i32)
        });
        *out = requantization.output(scale, sum);
    }
    Ok(())
}

/// The rows of a dense layer, four at a time, against the widened input.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_avx2<B: Int32, S: Scale>(
    avx2: crate::dot::x86::Avx2,
    input: &[[u8; 2]],
    weights: &[i8],
    bias: &[B],
    requantization: &Requantization<'_, S>,
    output: &mut [i8],
) {
    let row_len = input.len().max(1);
    let groups = weights.chunks_exact(row_len * UNITS);
    let last = groups.remainder().chunks_exact(row_len);
    let mut units = output.iter_mut().zip(bias).zip(requantization.per_channel);
    let mut put = |sum: i32| {
        if let Some(((out, b), &scale)) = units.next() {
            *out = requantization.output(scale, sum.wrapping_add(b.to_i32()));
        }
    };
    for group in groups {
        let mut rows = group.chunks_exact(row_len);
        if let (Some(r0), Some(r1), Some(r2), Some(r3)) =
            (rows.next(), rows.next(), rows.next(), rows.next())
        {
            avx2.dot4(input, [r0, r1, r2, r3])
                .into_iter()
                .for_each(&mut put);
        }
    }
    for row in last {
        put(avx2.dot(input, row));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Requantize;

    #[test]
    fn f32_rows_are_output_units() {
        let mut out = [0.0f32; 2];
        dense_f32(
            &[1.0, 2.0, 3.0],
            &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5],
            &[0.25, -4.0],
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [-1.75, -1.0]);
        dense_f32(
            &[1.0, 2.0, 3.0],
            &[1.0, 0.0, -1.0, 0.5, 0.5, 0.5],
            &[0.25, -4.0],
            true,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0.0, 0.0]);
    }

    #[test]
    fn int8_matches_hand_computed_sums() {
        let scales = [
            Requantize::from_scale(0.5).unwrap(),
            Requantize::from_scale(0.25).unwrap(),
        ];
        let requantization = Requantization {
            per_channel: &scales,
            zero_point: 10,
            min: -128,
            max: 127,
        };
        let mut out = [0i8; 2];
        // Inputs minus zero point 2: [-1, 0, 3]. Unit 0: -1*4 + 0 + 3*6 + 1 = 15 -> 7.5 -> 8
        // (+10 = 18). Unit 1: -1*-100 + 0 + 3*-100 + 0 = -200 -> -50 (+10 = -40).
        dense_i8(
            &[1, 2, 5],
            2,
            &[4, 9, 6, -100, 7, -100],
            &[1, 0],
            &requantization,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [18, -40]);
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0.0f32; 2];
        assert!(dense_f32(&[1.0; 3], &[0.0; 5], &[0.0; 2], false, &mut out).is_err());
        assert!(dense_f32(&[1.0; 3], &[0.0; 6], &[0.0; 3], false, &mut out).is_err());
    }

    #[test]
    fn an_empty_clamp_is_an_error() {
        let scales = [Requantize::from_scale(0.5).unwrap()];
        let mut requantization = Requantization {
            per_channel: &scales,
            zero_point: 0,
            min: 1,
            max: 0,
        };
        let mut out = [0i8; 1];
        let run = |r: &Requantization<'_>, out: &mut [i8]| dense_i8(&[4], 0, &[1], &[0i32], r, out);
        assert!(matches!(
            run(&requantization, &mut out),
            Err(Error::Format { .. })
        ));
        requantization.min = 0;
        requantization.max = 1;
        assert_eq!(run(&requantization, &mut out), Ok(()));
        assert_eq!(out, [1], "4 x 0.5 = 2, clamped to 1");
    }
}
