//! Pooling with window and stride both `size`: channel by channel, each output value covers a
//! `size` x `size` block of the input; rows and columns that do not fill a block are dropped
//! (Keras's "valid" pooling), so the output is `height / size` x `width / size`.
//!
//! int8 pooling works on the quantized values directly: the output keeps the input's scale
//! and zero point. Average pooling rounds to nearest, ties away from zero.

use crate::{Error, Shape, check_len};

/// The shape after pooling `shape` with windows of `size`.
pub fn pooled(shape: Shape, size: usize) -> Result<Shape, Error> {
    if size == 0 || size > shape.height || size > shape.width {
        return Err(Error::BadWindow { what: "pool", size });
    }
    Ok(Shape {
        channels: shape.channels,
        height: shape.height / size,
        width: shape.width / size,
    })
}

/// Output columns a pool computes together.
const POOL_COLUMNS: usize = 16;

/// Folds every window, in output order: `step` adds the window's values, row by row, to
/// `start`, and `finish` turns the result into the output value.
fn for_each_window<T: Copy, A: Copy, U>(
    input: &[T],
    shape: Shape,
    size: usize,
    output: &mut [U],
    start: A,
    step: impl Fn(A, T) -> A,
    finish: impl Fn(A) -> U,
) -> Result<(), Error> {
    let out_shape = pooled(shape, size)?;
    check_len("pool input", input.len(), shape.len())?;
    check_len("pool output", output.len(), out_shape.len())?;
    let plane = shape.height * shape.width;
    let out_plane = out_shape.height * out_shape.width;
    if plane == 0 || out_plane == 0 {
        return Ok(());
    }
    for (in_plane, out) in input
        .chunks_exact(plane)
        .zip(output.chunks_exact_mut(out_plane))
    {
        let bands = in_plane.chunks_exact(shape.width * size);
        for (band, out_row) in bands.zip(out.chunks_exact_mut(out_shape.width)) {
            // Output columns in blocks, their partial results on the stack, one input row
            // of the band at a time.
            for (block, out_block) in out_row.chunks_mut(POOL_COLUMNS).enumerate() {
                let mut sums = [start; POOL_COLUMNS];
                let first = block * POOL_COLUMNS * size;
                for row in band.chunks_exact(shape.width) {
                    let row = row.get(first..).unwrap_or(&[]);
                    let sums = sums.iter_mut().take(out_block.len());
                    // The common sizes as arrays, which the compiler unrolls.
                    match size {
                        2 => fold_blocks::<2, _, _>(sums, row, &step),
                        4 => fold_blocks::<4, _, _>(sums, row, &step),
                        _ => {
                            for (sum, values) in sums.zip(row.chunks_exact(size)) {
                                *sum = values.iter().fold(*sum, |sum, &v| step(sum, v));
                            }
                        }
                    }
                }
                for (out, &sum) in out_block.iter_mut().zip(&sums) {
                    *out = finish(sum);
                }
            }
        }
    }
    Ok(())
}

/// Adds each block of `S` values of `row` to its partial result.
#[inline(always)]
fn fold_blocks<'s, const S: usize, T: Copy, A: Copy + 's>(
    sums: impl Iterator<Item = &'s mut A>,
    row: &[T],
    step: &impl Fn(A, T) -> A,
) {
    let (blocks, _) = row.as_chunks::<S>();
    for (sum, block) in sums.zip(blocks) {
        *sum = block.iter().fold(*sum, |sum, &v| step(sum, v));
    }
}

/// f32 max pooling.
pub fn max_pool_f32(
    input: &[f32],
    shape: Shape,
    size: usize,
    output: &mut [f32],
) -> Result<(), Error> {
    for_each_window(
        input,
        shape,
        size,
        output,
        f32::NEG_INFINITY,
        f32::max,
        |m| m,
    )
}

/// f32 average pooling.
pub fn avg_pool_f32(
    input: &[f32],
    shape: Shape,
    size: usize,
    output: &mut [f32],
) -> Result<(), Error> {
    let count = (size * size) as f32;
    for_each_window(
        input,
        shape,
        size,
        output,
        0.0,
        |sum, v| sum + v,
        |sum| sum / count,
    )
}

/// int8 max pooling.
pub fn max_pool_i8(
    input: &[i8],
    shape: Shape,
    size: usize,
    output: &mut [i8],
) -> Result<(), Error> {
    for_each_window(input, shape, size, output, i8::MIN, i8::max, |m| m)
}

/// int8 average pooling, rounded to nearest with ties away from zero.
pub fn avg_pool_i8(
    input: &[i8],
    shape: Shape,
    size: usize,
    output: &mut [i8],
) -> Result<(), Error> {
    let count = size.saturating_mul(size).min(i32::MAX as usize) as i32;
    let step = |sum: i32, v: i8| sum.saturating_add(v as i32);
    for_each_window(input, shape, size, output, 0, step, |sum| {
        let half = if sum >= 0 { count / 2 } else { -(count / 2) };
        (sum.saturating_add(half) / count).clamp(i8::MIN as i32, i8::MAX as i32) as i8
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: Shape = Shape {
        channels: 2,
        height: 5,
        width: 4,
    };

    #[test]
    fn windows_cover_blocks_and_drop_the_remainder() {
        let input: [f32; 40] = core::array::from_fn(|i| i as f32);
        let mut out = [0.0f32; 8];
        max_pool_f32(&input, SHAPE, 2, &mut out).unwrap();
        // Channel 0 rows are 0..4, 4..8, ...; the fifth row is dropped.
        assert_eq!(out, [5.0, 7.0, 13.0, 15.0, 25.0, 27.0, 33.0, 35.0]);
        avg_pool_f32(&input, SHAPE, 2, &mut out).unwrap();
        assert_eq!(out[..4], [2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn int8_average_rounds_half_away_from_zero() {
        let shape = Shape {
            channels: 3,
            height: 2,
            width: 2,
        };
        let input = [1i8, 2, 2, 1, -1, -2, -2, -1, -128, -128, -128, -127];
        let mut out = [0i8; 3];
        avg_pool_i8(&input, shape, 2, &mut out).unwrap();
        // 6 / 4 = 1.5 -> 2; -6 / 4 = -1.5 -> -2; -511 / 4 = -127.75 -> -128.
        assert_eq!(out, [2, -2, -128]);
        max_pool_i8(&input, shape, 2, &mut out).unwrap();
        assert_eq!(out, [2, -1, -127]);
    }

    #[test]
    fn bad_windows_and_lengths_are_errors() {
        let mut out = [0.0f32; 8];
        assert!(max_pool_f32(&[0.0; 40], SHAPE, 0, &mut out).is_err());
        assert!(max_pool_f32(&[0.0; 40], SHAPE, 5, &mut out).is_err());
        assert!(max_pool_f32(&[0.0; 39], SHAPE, 2, &mut out).is_err());
        assert!(max_pool_f32(&[0.0; 40], SHAPE, 2, &mut out[..7]).is_err());
    }
}
