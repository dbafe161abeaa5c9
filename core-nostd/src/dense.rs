//! Dense (fully connected) layers. Weights are laid out `[output][input]`, one row per output
//! unit, so that each output is one contiguous dot product.

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
/// The layer has `bias.len()` outputs.
pub fn dense_f32(
    input: &[f32],
    weights: &[f32],
    bias: &[f32],
    relu: bool,
    output: &mut [f32],
) -> Result<(), Error> {
    check(input.len(), weights.len(), bias.len(), output.len())?;
    if input.is_empty() {
        output.copy_from_slice(bias);
        return Ok(());
    }
    for ((out, row), &b) in output
        .iter_mut()
        .zip(weights.chunks_exact(input.len()))
        .zip(bias)
    {
        let sum = row.iter().zip(input).fold(b, |acc, (w, x)| acc + w * x);
        *out = if relu { sum.max(0.0) } else { sum };
    }
    Ok(())
}

/// int8 dense layer: int32 sums of `(input - input_zero_point) * weight`, plus `bias`,
/// requantized per output unit.
pub fn dense_i8(
    input: &[i8],
    input_zero_point: i32,
    weights: &[i8],
    bias: &[i32],
    requantization: &Requantization<'_>,
    output: &mut [i8],
) -> Result<(), Error> {
    check(input.len(), weights.len(), bias.len(), output.len())?;
    check_len(
        "requantization scales",
        requantization.per_channel.len(),
        Some(bias.len()),
    )?;
    let row_len = input.len().max(1);
    let units = output
        .iter_mut()
        .zip(weights.chunks(row_len))
        .zip(bias)
        .zip(requantization.per_channel);
    for (((out, row), &b), &scale) in units {
        let sum = row.iter().zip(input).fold(b, |acc, (&w, &x)| {
            acc.wrapping_add((x as i32 - input_zero_point) * w as i32)
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
}
