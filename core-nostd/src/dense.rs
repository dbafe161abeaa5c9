//! Dense (fully connected) layers. Weights are laid out `[output][input]`, one row per output
//! unit, so that each output is one contiguous dot product.

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
/// requantized per output unit.
pub fn dense_i8<B: Int32, S: Scale>(
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
