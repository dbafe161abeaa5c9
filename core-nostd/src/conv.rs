//! 2-D convolution, stride 1, "same" padding as the trainer uses it: for a kernel of side
//! `k` the input is padded by `(k - 1) / 2` rows and columns before and the rest after, so
//! an even kernel puts its extra row and column at the bottom and right (as Keras does).
//!
//! Weights are laid out `[out_channel][in_channel][ky][kx]`, as burn stores them.

use crate::element::{Int32, Real, Scale};
use crate::requant::Requantization;
use crate::{Error, Shape, check_len};

/// Padding before and after one axis for a kernel of side `kernel`.
pub const fn same_padding(kernel: usize) -> (usize, usize) {
    let total = kernel.saturating_sub(1);
    (total / 2, total - total / 2)
}

/// Checks every slice length of a convolution against its shapes.
fn check(
    input_len: usize,
    shape: Shape,
    weights_len: usize,
    out_channels: usize,
    kernel: usize,
    output_len: usize,
) -> Result<(), Error> {
    if kernel == 0 {
        return Err(Error::BadWindow {
            what: "convolution kernel",
            size: kernel,
        });
    }
    check_len("convolution input", input_len, shape.len())?;
    let taps = kernel
        .checked_mul(kernel)
        .and_then(|k| k.checked_mul(shape.channels))
        .and_then(|k| k.checked_mul(out_channels));
    check_len("convolution weights", weights_len, taps)?;
    let outputs = shape.plane().and_then(|p| p.checked_mul(out_channels));
    check_len("convolution output", output_len, outputs)
}

/// The kernel rows that land inside the input for output row `at`.
fn window(at: usize, kernel: usize, before: usize, size: usize) -> core::ops::Range<usize> {
    let start = before.saturating_sub(at);
    let end = kernel.min((size + before).saturating_sub(at));
    start..end.max(start)
}

/// Output columns computed together: their accumulators live on the stack, and the inner
/// loop runs along a row of the input, where the compiler can vectorize it.
const COLUMNS: usize = 32;

/// The loops shared by both precisions: `start` gives the accumulator of an output channel,
/// `accumulate` adds one input value times one weight, and `finish` turns a sum into the
/// output value. For each output row and block of columns, each tap of the kernel adds its
/// weight times a shifted run of one input row; taps that fall in the padding are skipped.
/// The taps of one output value are summed in input channel, row, column order. The lengths
/// were checked by the caller.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn convolve<I: Copy, W: Copy, A: Copy, O>(
    input: &[I],
    shape: Shape,
    weights: &[W],
    kernel: usize,
    output: &mut [O],
    start: impl Fn(usize) -> A,
    accumulate: impl Fn(A, I, W) -> A,
    finish: impl Fn(usize, A) -> O,
) {
    let Shape {
        channels,
        height,
        width,
    } = shape;
    let (before, _) = same_padding(kernel);
    let plane = height * width;
    let taps = kernel * kernel;
    if plane == 0 || taps == 0 || channels == 0 {
        return;
    }
    for (oc, (out_plane, filters)) in output
        .chunks_exact_mut(plane)
        .zip(weights.chunks_exact(channels * taps))
        .enumerate()
    {
        let bias = start(oc);
        for y in 0..height {
            let rows = window(y, kernel, before, height);
            let out_row = &mut out_plane[y * width..(y + 1) * width];
            for (block, out_block) in out_row.chunks_mut(COLUMNS).enumerate() {
                let x0 = block * COLUMNS;
                let x1 = x0 + out_block.len();
                let mut sums = [bias; COLUMNS];
                for (in_plane, filter) in input.chunks_exact(plane).zip(filters.chunks_exact(taps))
                {
                    for ky in rows.clone() {
                        let iy = y + ky - before;
                        let row = &in_plane[iy * width..(iy + 1) * width];
                        let taps_row = &filter[ky * kernel..(ky + 1) * kernel];
                        for (kx, &w) in taps_row.iter().enumerate() {
                            // Output column x reads input column x + kx - before.
                            let lo = x0.max(before.saturating_sub(kx));
                            let hi = x1.min((width + before).saturating_sub(kx));
                            if lo >= hi {
                                continue;
                            }
                            let source = &row[lo + kx - before..hi + kx - before];
                            for (sum, &value) in sums[lo - x0..hi - x0].iter_mut().zip(source) {
                                *sum = accumulate(*sum, value, w);
                            }
                        }
                    }
                }
                for (out, &sum) in out_block.iter_mut().zip(&sums) {
                    *out = finish(oc, sum);
                }
            }
        }
    }
}

/// f32 convolution: `output = conv(input, weights) + bias`, then ReLU if `relu`.
/// The output has `bias.len()` channels of the input's height and width. Weights and biases
/// are `f32` values or their little-endian bytes (see [`Real`]).
pub fn conv2d_f32<W: Real>(
    input: &[f32],
    shape: Shape,
    weights: &[W],
    bias: &[W],
    kernel: usize,
    relu: bool,
    output: &mut [f32],
) -> Result<(), Error> {
    check(
        input.len(),
        shape,
        weights.len(),
        bias.len(),
        kernel,
        output.len(),
    )?;
    convolve(
        input,
        shape,
        weights,
        kernel,
        output,
        |oc| bias[oc].to_f32(),
        |sum, x, w: W| sum + x * w.to_f32(),
        |_, sum| if relu { sum.max(0.0) } else { sum },
    );
    Ok(())
}

/// Bytes of scratch [`conv2d_i8`] needs: one patch of `channels x kernel x kernel` int16
/// values, or `None` on overflow.
pub fn i8_scratch_bytes(channels: usize, kernel: usize) -> Option<usize> {
    kernel
        .checked_mul(kernel)?
        .checked_mul(channels)?
        .checked_mul(2)
}

/// int8 convolution. Accumulates `(input - input_zero_point) * weight` in int32 over the
/// window (padding holds the zero point, so it adds nothing), adds `bias`, and requantizes.
/// The output has `bias.len()` channels; `requantization.per_channel` needs as many scales.
///
/// For each output position the window is first copied into `scratch` (at least
/// [`i8_scratch_bytes`] bytes, any alignment) as int16 values with the zero point taken
/// off and padding as 0; then each output channel is one contiguous dot product of that
/// patch with its filter, a loop compilers turn into multiply-add vector instructions.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8<B: Int32, S: Scale>(
    input: &[i8],
    shape: Shape,
    input_zero_point: i8,
    weights: &[i8],
    bias: &[B],
    kernel: usize,
    requantization: &Requantization<'_, S>,
    scratch: &mut [u8],
    output: &mut [i8],
) -> Result<(), Error> {
    check(
        input.len(),
        shape,
        weights.len(),
        bias.len(),
        kernel,
        output.len(),
    )?;
    let scales = requantization.per_channel;
    requantization.check(bias.len())?;
    let patch_bytes = i8_scratch_bytes(shape.channels, kernel).ok_or(Error::Overflow {
        what: "convolution scratch",
    })?;
    let found = scratch.len();
    let Some(scratch) = scratch.get_mut(..patch_bytes) else {
        return Err(Error::Length {
            what: "convolution scratch bytes",
            expected: patch_bytes,
            found,
        });
    };
    let (patch, _) = scratch.as_chunks_mut::<2>();

    let Shape {
        channels,
        height,
        width,
    } = shape;
    let plane = height * width;
    let taps = kernel * kernel;
    if plane == 0 || channels == 0 {
        return Ok(());
    }
    let (before, _) = same_padding(kernel);
    let zero_point = input_zero_point as i16;
    for y in 0..height {
        for x in 0..width {
            fill_patch(input, shape, zero_point, kernel, before, (y, x), patch);
            let units = output
                .chunks_exact_mut(plane)
                .zip(weights.chunks_exact(channels * taps))
                .zip(bias.iter().zip(scales));
            for ((out_plane, filter), (bias, &scale)) in units {
                // |x - zero point| <= 255 and |w| <= 128: every product fits in an i32.
                let sum = patch
                    .iter()
                    .zip(filter)
                    .fold(bias.to_i32(), |sum, (p, &w)| {
                        sum.wrapping_add(i16::from_le_bytes(*p) as i32 * w as i32)
                    });
                out_plane[y * width + x] = requantization.output(scale, sum);
            }
        }
    }
    Ok(())
}

/// Copies the window of output position `(y, x)` into `patch`, in the weights' order
/// (input channel, kernel row, kernel column), as `input - zero_point`, with 0 for padding.
fn fill_patch(
    input: &[i8],
    shape: Shape,
    zero_point: i16,
    kernel: usize,
    before: usize,
    (y, x): (usize, usize),
    patch: &mut [[u8; 2]],
) {
    let Shape { height, width, .. } = shape;
    let plane = height * width;
    let columns = window(x, kernel, before, width);
    let rows = window(y, kernel, before, height);
    let mut taps = patch.chunks_exact_mut(kernel);
    for in_plane in input.chunks_exact(plane) {
        for ky in 0..kernel {
            let Some(taps_row) = taps.next() else {
                return;
            };
            taps_row.fill([0; 2]);
            if !rows.contains(&ky) {
                continue;
            }
            let iy = y + ky - before;
            let row = &in_plane[iy * width..(iy + 1) * width];
            let first = x + columns.start - before;
            let values = &row[first..first + columns.len()];
            for (tap, &value) in taps_row[columns.clone()].iter_mut().zip(values) {
                *tap = (value as i16 - zero_point).to_le_bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Requantize;

    const SHAPE: Shape = Shape {
        channels: 2,
        height: 4,
        width: 5,
    };

    /// Direct definition: pad explicitly, then slide the kernel.
    fn reference(
        input: &[f32],
        shape: Shape,
        weights: &[f32],
        bias: &[f32],
        k: usize,
    ) -> [f32; 64] {
        let (before, _) = same_padding(k);
        let mut out = [0.0; 64];
        for oc in 0..bias.len() {
            for y in 0..shape.height as isize {
                for x in 0..shape.width as isize {
                    let mut sum = bias[oc];
                    for ic in 0..shape.channels {
                        for ky in 0..k as isize {
                            for kx in 0..k as isize {
                                let iy = y + ky - before as isize;
                                let ix = x + kx - before as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= shape.height as isize
                                    || ix >= shape.width as isize
                                {
                                    continue;
                                }
                                let v = input[ic * 20 + (iy * 5 + ix) as usize];
                                let w = weights[((oc * shape.channels + ic) * k + ky as usize) * k
                                    + kx as usize];
                                sum += v * w;
                            }
                        }
                    }
                    out[oc * 20 + (y * 5 + x) as usize] = sum;
                }
            }
        }
        out
    }

    #[test]
    fn odd_and_even_kernels_match_the_definition() {
        let input: [f32; 40] = core::array::from_fn(|i| (i as f32 * 0.37).sin());
        for k in [1usize, 2, 3, 4, 5] {
            let weights: [f32; 3 * 2 * 25] = core::array::from_fn(|i| (i as f32 * 0.11).cos());
            let weights = &weights[..3 * 2 * k * k];
            let bias = [0.5, -0.25, 0.0];
            let mut out = [0.0f32; 60];
            conv2d_f32(&input, SHAPE, weights, &bias, k, false, &mut out).unwrap();
            let expected = reference(&input, SHAPE, weights, &bias, k);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "kernel {k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn even_kernels_pad_after() {
        assert_eq!(same_padding(2), (0, 1));
        assert_eq!(same_padding(6), (2, 3));
        // A 2x2 kernel picking its bottom-right tap reads the next row and column, and the
        // padding (zero) beyond the last ones.
        let input = [1.0f32, 2.0, 3.0, 4.0];
        let shape = Shape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let mut out = [0.0f32; 4];
        conv2d_f32(
            &input,
            shape,
            &[0.0, 0.0, 0.0, 1.0],
            &[0.0],
            2,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [4.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn int8_matches_an_integer_reference() {
        let input: [i8; 40] = core::array::from_fn(|i| (i as i32 * 37 % 256 - 128) as i8);
        let weights: [i8; 3 * 2 * 9] = core::array::from_fn(|i| (i as i32 * 53 % 255 - 127) as i8);
        let bias = [100, -2000, 7];
        let scales = [
            Requantize::from_scale(0.002).unwrap(),
            Requantize::from_scale(0.0031).unwrap(),
            Requantize::from_scale(0.0007).unwrap(),
        ];
        let requantization = Requantization {
            per_channel: &scales,
            zero_point: -5,
            min: -5,
            max: 127,
        };
        let mut out = [0i8; 60];
        conv2d_i8(
            &input,
            SHAPE,
            3,
            &weights,
            &bias,
            3,
            &requantization,
            &mut [0; 2 * 2 * 9],
            &mut out,
        )
        .unwrap();
        let real: [f32; 40] = core::array::from_fn(|i| (input[i] as i32 - 3) as f32);
        let real_weights: [f32; 54] = core::array::from_fn(|i| weights[i] as f32);
        let sums = reference(&real, SHAPE, &real_weights, &[100.0, -2000.0, 7.0], 3);
        for (i, &q) in out.iter().enumerate() {
            let accumulator = sums[i] as i32;
            let expected = (scales[i / 20].apply(accumulator) - 5).clamp(-5, 127) as i8;
            assert_eq!(q, expected, "output {i}");
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0.0f32; 60];
        let weights = [0.0f32; 54];
        assert!(matches!(
            conv2d_f32(&[0.0; 39], SHAPE, &weights, &[0.0; 3], 3, false, &mut out),
            Err(Error::Length {
                what: "convolution input",
                ..
            })
        ));
        assert!(
            conv2d_f32(
                &[0.0; 40],
                SHAPE,
                &weights[..53],
                &[0.0; 3],
                3,
                false,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv2d_f32(
                &[0.0; 40],
                SHAPE,
                &weights,
                &[0.0; 3],
                3,
                false,
                &mut out[..59]
            )
            .is_err()
        );
        assert!(conv2d_f32(&[0.0; 40], SHAPE, &weights, &[0.0; 3], 0, false, &mut out).is_err());
        let huge = Shape {
            channels: usize::MAX,
            height: 2,
            width: 2,
        };
        assert!(matches!(
            conv2d_f32(&[0.0; 4], huge, &weights, &[0.0; 3], 3, false, &mut out),
            Err(Error::Overflow { .. })
        ));
    }
}
