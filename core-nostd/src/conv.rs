//! 2-D convolution, stride 1, "same" padding as the trainer uses it: for a kernel of side
//! `k` the input is padded by `(k - 1) / 2` rows and columns before and the rest after, so
//! an even kernel puts its extra row and column at the bottom and right (as Keras does).
//!
//! Weights are laid out `[out_channel][in_channel][ky][kx]`, as burn stores them.

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

/// The kernel rows (or columns) that land inside the input for output row (or column) `at`.
fn window(at: usize, kernel: usize, before: usize, size: usize) -> core::ops::Range<usize> {
    let start = before.saturating_sub(at);
    let end = kernel.min((size + before).saturating_sub(at));
    start..end.max(start)
}

/// The loops shared by both precisions: for every output value, `start` gives the
/// accumulator of its channel, `accumulate` adds one input value times one weight, and
/// `finish` turns the sum into the output value. Only taps that land inside the input are
/// visited; the lengths were checked by the caller.
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
        for y in 0..height {
            let rows = window(y, kernel, before, height);
            for x in 0..width {
                let columns = window(x, kernel, before, width);
                let mut sum = start(oc);
                for (in_plane, filter) in input.chunks_exact(plane).zip(filters.chunks_exact(taps))
                {
                    for ky in rows.clone() {
                        let iy = y + ky - before;
                        let row = &in_plane[iy * width..(iy + 1) * width];
                        let taps_row = &filter[ky * kernel..(ky + 1) * kernel];
                        for kx in columns.clone() {
                            sum = accumulate(sum, row[x + kx - before], taps_row[kx]);
                        }
                    }
                }
                out_plane[y * width + x] = finish(oc, sum);
            }
        }
    }
}

/// f32 convolution: `output = conv(input, weights) + bias`, then ReLU if `relu`.
/// The output has `bias.len()` channels of the input's height and width.
pub fn conv2d_f32(
    input: &[f32],
    shape: Shape,
    weights: &[f32],
    bias: &[f32],
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
        |oc| bias[oc],
        |sum, x, w| sum + x * w,
        |_, sum| if relu { sum.max(0.0) } else { sum },
    );
    Ok(())
}

/// int8 convolution. Accumulates `(input - input_zero_point) * weight` in int32 over the
/// window (padding holds the zero point, so it adds nothing), adds `bias`, and requantizes.
/// The output has `bias.len()` channels; `requantization.per_channel` needs as many scales.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8(
    input: &[i8],
    shape: Shape,
    input_zero_point: i32,
    weights: &[i8],
    bias: &[i32],
    kernel: usize,
    requantization: &Requantization<'_>,
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
    check_len("requantization scales", scales.len(), Some(bias.len()))?;
    convolve(
        input,
        shape,
        weights,
        kernel,
        output,
        |oc| bias[oc],
        |sum: i32, x: i8, w: i8| sum.wrapping_add((x as i32 - input_zero_point) * w as i32),
        |oc, sum| requantization.output(scales[oc], sum),
    );
    Ok(())
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
