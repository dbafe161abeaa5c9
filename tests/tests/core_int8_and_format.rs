//! The int8 kernels, the requantization and the model format of `core-nostd` against plain
//! references written here, from the crate's documentation rather than its code:
//!
//! - int8 convolution, pooling and dense layers, bit for bit, against nested loops with
//!   explicit "same" padding and an i64 re-implementation of the documented fixed-point
//!   rounding;
//! - the requantization against exact rational arithmetic in i128;
//! - model files: postcard round trips, the exact arena size, whole-model inference against
//!   the reference kernels, and the checks `Model::parse` documents;
//! - `Model::parse` and inference on arbitrary, structured-random and mutated bytes: a value
//!   or an error, never a panic.

use core_nostd::cpu::Kernels;
use core_nostd::format::{
    self, HEADER_BYTES, Input, Layer, MAGIC, ModelDef, PixelFormat, Precision, Quantization,
    VERSION, Weights,
};
use core_nostd::requant::{Requantization, SHIFTS};
use core_nostd::{Error, Model, Requantize, Shape, conv, dense, pool};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::cmp::Ordering;

// ---------------------------------------------------------------------------------------
// Integer references
// ---------------------------------------------------------------------------------------

/// The requantization as `requant.rs` documents it, in i64:
/// 1. left shift by `max(shift, 0)`, saturating to i32;
/// 2. `x * multiplier / 2^31` rounded to nearest; the documented nudge (`2^30`, or
///    `1 - 2^30` for a negative product) followed by truncation toward zero rounds ties
///    toward +infinity, which is what a floor division of `x * multiplier + 2^30` does;
/// 3. divide by `2^max(-shift, 0)`, rounding to nearest with ties away from zero.
fn reference_requantize(accumulator: i32, multiplier: i32, shift: i32) -> i32 {
    let left = shift.max(0);
    let right = (-shift).max(0);
    let shifted = (i64::from(accumulator) << left).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    let product = shifted * i64::from(multiplier);
    let high = (product + (1i64 << 30)).div_euclid(1i64 << 31);
    let magnitude = if right == 0 {
        high.abs()
    } else {
        (high.abs() + (1i64 << (right - 1))) >> right
    };
    i32::try_from(high.signum() * magnitude).expect("a requantized value fits in i32")
}

/// Requantize, add the output zero point, clamp.
fn reference_output(
    accumulator: i32,
    requantize: (i32, i32),
    zero_point: i8,
    min: i8,
    max: i8,
) -> i8 {
    let value = i64::from(reference_requantize(
        accumulator,
        requantize.0,
        requantize.1,
    )) + i64::from(zero_point);
    value.clamp(i64::from(min), i64::from(max)) as i8
}

/// int32 accumulators of an int8 convolution: the input, minus its zero point, is copied
/// into an explicitly padded map (`(k - 1) / 2` before, the rest after; the padding holds
/// 0, the zero point minus itself), then a "valid" convolution runs over it.
fn reference_conv_accumulators(
    input: &[i8],
    shape: Shape,
    zero_point: i8,
    weights: &[i8],
    bias: &[i32],
    kernel: usize,
) -> Vec<i32> {
    let Shape {
        channels,
        height,
        width,
    } = shape;
    let before = (kernel - 1) / 2;
    let after = kernel - 1 - before;
    let padded_height = before + height + after;
    let padded_width = before + width + after;
    let mut padded = vec![0i64; channels * padded_height * padded_width];
    for c in 0..channels {
        for y in 0..height {
            for x in 0..width {
                padded[(c * padded_height + y + before) * padded_width + x + before] =
                    i64::from(input[(c * height + y) * width + x]) - i64::from(zero_point);
            }
        }
    }
    let mut out = Vec::with_capacity(bias.len() * height * width);
    for (oc, &b) in bias.iter().enumerate() {
        for y in 0..height {
            for x in 0..width {
                let mut sum = i64::from(b);
                for ic in 0..channels {
                    for ky in 0..kernel {
                        for kx in 0..kernel {
                            let value =
                                padded[(ic * padded_height + y + ky) * padded_width + x + kx];
                            let weight =
                                weights[((oc * channels + ic) * kernel + ky) * kernel + kx];
                            sum += value * i64::from(weight);
                        }
                    }
                }
                out.push(i32::try_from(sum).expect("accumulator fits in i32"));
            }
        }
    }
    out
}

/// int32 accumulators of an int8 dense layer.
fn reference_dense_accumulators(
    input: &[i8],
    zero_point: i8,
    weights: &[i8],
    bias: &[i32],
) -> Vec<i32> {
    bias.iter()
        .enumerate()
        .map(|(unit, &b)| {
            let sum = input.iter().enumerate().fold(i64::from(b), |sum, (i, &x)| {
                sum + (i64::from(x) - i64::from(zero_point))
                    * i64::from(weights[unit * input.len() + i])
            });
            i32::try_from(sum).expect("accumulator fits in i32")
        })
        .collect()
}

/// The values of every `size` x `size` window, window by window in output order, each
/// window row by row; rows and columns that do not fill a window are dropped.
fn windows<T: Copy>(input: &[T], shape: Shape, size: usize) -> Vec<Vec<T>> {
    let (out_height, out_width) = (shape.height / size, shape.width / size);
    let mut all = Vec::new();
    for c in 0..shape.channels {
        for oy in 0..out_height {
            for ox in 0..out_width {
                let mut window = Vec::with_capacity(size * size);
                for dy in 0..size {
                    for dx in 0..size {
                        let (y, x) = (oy * size + dy, ox * size + dx);
                        window.push(input[(c * shape.height + y) * shape.width + x]);
                    }
                }
                all.push(window);
            }
        }
    }
    all
}

fn reference_max_pool_i8(input: &[i8], shape: Shape, size: usize) -> Vec<i8> {
    windows(input, shape, size)
        .iter()
        .map(|w| *w.iter().max().unwrap())
        .collect()
}

/// The mean of each window, rounded to nearest with ties away from zero (pool.rs).
fn reference_avg_pool_i8(input: &[i8], shape: Shape, size: usize) -> Vec<i8> {
    windows(input, shape, size)
        .iter()
        .map(|w| {
            let sum: i64 = w.iter().map(|&v| i64::from(v)).sum();
            let count = w.len() as i64;
            let (quotient, remainder) = (sum.abs() / count, sum.abs() % count);
            let magnitude = quotient + i64::from(2 * remainder >= count);
            i8::try_from(sum.signum() * magnitude).expect("a mean of int8 values is an int8")
        })
        .collect()
}

fn pooled_shape(shape: Shape, size: usize) -> Shape {
    Shape {
        channels: shape.channels,
        height: shape.height / size,
        width: shape.width / size,
    }
}

// ---------------------------------------------------------------------------------------
// f32 references, summing in the order conv.rs and dense.rs document (bias first, then
// input channel, kernel row, kernel column; padding skipped), so the results are exact.
// ---------------------------------------------------------------------------------------

fn reference_conv_f32(
    input: &[f32],
    shape: Shape,
    weights: &[f32],
    bias: &[f32],
    kernel: usize,
    relu: bool,
) -> Vec<f32> {
    let Shape {
        channels,
        height,
        width,
    } = shape;
    let before = (kernel as isize - 1) / 2;
    let mut out = Vec::with_capacity(bias.len() * height * width);
    for (oc, &b) in bias.iter().enumerate() {
        for y in 0..height as isize {
            for x in 0..width as isize {
                let mut sum = b;
                for ic in 0..channels {
                    for ky in 0..kernel as isize {
                        for kx in 0..kernel as isize {
                            let (iy, ix) = (y + ky - before, x + kx - before);
                            if iy < 0 || ix < 0 || iy >= height as isize || ix >= width as isize {
                                continue;
                            }
                            let value = input[(ic * height + iy as usize) * width + ix as usize];
                            let weight = weights[((oc * channels + ic) * kernel + ky as usize)
                                * kernel
                                + kx as usize];
                            sum += value * weight;
                        }
                    }
                }
                out.push(if relu { sum.max(0.0) } else { sum });
            }
        }
    }
    out
}

fn reference_dense_f32(input: &[f32], weights: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
    bias.iter()
        .enumerate()
        .map(|(unit, &b)| {
            let mut sum = b;
            for (i, &x) in input.iter().enumerate() {
                sum += weights[unit * input.len() + i] * x;
            }
            if relu { sum.max(0.0) } else { sum }
        })
        .collect()
}

fn reference_max_pool_f32(input: &[f32], shape: Shape, size: usize) -> Vec<f32> {
    windows(input, shape, size)
        .iter()
        .map(|w| w.iter().copied().fold(f32::NEG_INFINITY, f32::max))
        .collect()
}

fn reference_avg_pool_f32(input: &[f32], shape: Shape, size: usize) -> Vec<f32> {
    windows(input, shape, size)
        .iter()
        .map(|w| {
            let mut sum = 0.0f32;
            for &v in w {
                sum += v;
            }
            sum / (size * size) as f32
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Strategies for the kernels
// ---------------------------------------------------------------------------------------

/// Requantization scales from 1e-4 to 1, log-uniform.
fn realistic_scale() -> impl Strategy<Value = f64> {
    (-4.0f64..0.0).prop_map(|e| 10f64.powf(e))
}

/// The typical size of an accumulator over `fan_in` products of uniform int8 values less a
/// uniform zero point (standard deviations about 105 and 74).
fn typical_accumulator(fan_in: usize) -> f64 {
    (fan_in as f64).sqrt() * 7800.0
}

/// A scale that maps a typical accumulator of `fan_in` products to about 40, give or take a
/// factor of ten, the way a calibrated model's scales do (most outputs then fall inside
/// the clamp); within 1e-4..1.
fn matched_scale(fan_in: usize, exponent: f64) -> f64 {
    (10f64.powf(exponent) * 40.0 / typical_accumulator(fan_in)).clamp(1e-4, 1.0)
}

/// `matched_scale` rounded to a power of two: multiplier 2^30, so the high multiply and the
/// right shift meet exact ties often.
fn dyadic_scale(fan_in: usize, exponent: f64) -> f64 {
    matched_scale(fan_in, exponent).log2().round().exp2()
}

/// Scales for layers of `fan_in` inputs per output: anywhere in 1e-4..1 (log-uniform),
/// matched to the accumulators, or matched and dyadic.
fn layer_scale(fan_in: usize) -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => realistic_scale(),
        2 => (-1.0f64..1.0).prop_map(move |e| matched_scale(fan_in, e)),
        1 => (-1.0f64..1.0).prop_map(move |e| dyadic_scale(fan_in, e)),
    ]
}

/// Biases: small (what calibrated models have) or anywhere in +-2^20.
fn bias_value() -> impl Strategy<Value = i32> {
    prop_oneof![3 => -4096i32..4096, 1 => -(1i32 << 20)..(1 << 20)]
}

/// How a layer's accumulators become int8 outputs.
#[derive(Debug, Clone)]
struct OutputSpec {
    scales: Vec<f64>,
    zero_point: i8,
    min: i8,
    max: i8,
}

impl OutputSpec {
    fn requantizers(&self) -> Vec<Requantize> {
        self.scales
            .iter()
            .map(|&s| Requantize::from_scale(s).expect("a scale in 1e-4..1 is representable"))
            .collect()
    }

    fn parts(&self) -> Vec<(i32, i32)> {
        self.requantizers()
            .iter()
            .map(|r| (r.multiplier(), r.shift()))
            .collect()
    }
}

/// Random scales, zero point, and a clamp that is the full range, a folded ReLU, or any
/// range.
fn output_spec(channels: usize, fan_in: usize) -> impl Strategy<Value = OutputSpec> {
    (
        vec(layer_scale(fan_in), channels),
        any::<i8>(),
        any::<(i8, i8)>(),
        0u8..3,
    )
        .prop_map(|(scales, zero_point, (a, b), mode)| {
            let (min, max) = match mode {
                0 => (i8::MIN, i8::MAX),
                1 => (zero_point, i8::MAX),
                _ => (a.min(b), a.max(b)),
            };
            OutputSpec {
                scales,
                zero_point,
                min,
                max,
            }
        })
}

/// Runs an int8 kernel with plain scales and i32 biases, then with the stored byte forms
/// (`[u8; 5]` scales, `[u8; 4]` biases) a model file uses, and checks both against the
/// reference accumulators requantized by the reference rule.
fn check_requantized(
    accumulators: &[i32],
    per_channel: usize,
    spec: &OutputSpec,
    got: &[i8],
    got_from_bytes: &[i8],
) -> Result<(), TestCaseError> {
    let parts = spec.parts();
    prop_assert_eq!(got.len(), accumulators.len());
    for (i, (&acc, (&q, &q_bytes))) in accumulators
        .iter()
        .zip(got.iter().zip(got_from_bytes))
        .enumerate()
    {
        let channel = i / per_channel;
        let expected = reference_output(acc, parts[channel], spec.zero_point, spec.min, spec.max);
        prop_assert_eq!(
            q,
            expected,
            "value {} (channel {}): accumulator {}, requantize {:?}",
            i,
            channel,
            acc,
            parts[channel]
        );
        prop_assert_eq!(q_bytes, expected, "byte form, value {}", i);
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct ConvCase {
    shape: Shape,
    kernel: usize,
    input: Vec<i8>,
    input_zero_point: i8,
    weights: Vec<i8>,
    bias: Vec<i32>,
    output: OutputSpec,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..=8,
        1usize..=16,
        1usize..=16,
        prop::sample::select(vec![1usize, 2, 3, 4, 5, 9, 1, 2, 3, 4, 5, 9, 6, 13, 16]),
        // Groups of four output channels and the rest; multiples of 8 for the small-window
        // loop of the AVX2 build.
        prop::sample::select(vec![1usize, 2, 3, 4, 5, 7, 8, 9, 16, 24, 32]),
    )
        .prop_flat_map(|(channels, height, width, kernel, filters)| {
            let shape = Shape {
                channels,
                height,
                width,
            };
            (
                vec(any::<i8>(), channels * height * width),
                any::<i8>(),
                vec(any::<i8>(), filters * channels * kernel * kernel),
                vec(bias_value(), filters),
                output_spec(filters, channels * kernel * kernel),
            )
                .prop_map(move |(input, input_zero_point, weights, bias, output)| {
                    ConvCase {
                        shape,
                        kernel,
                        input,
                        input_zero_point,
                        weights,
                        bias,
                        output,
                    }
                })
        })
}

#[derive(Debug, Clone)]
struct PoolCase {
    shape: Shape,
    size: usize,
    input: Vec<i8>,
}

/// Pools of 2 and 4 (and 1 and 3 for good measure) over maps at least that large.
fn pool_case() -> impl Strategy<Value = PoolCase> {
    (
        prop::sample::select(vec![2usize, 4, 2, 4, 1, 3]),
        1usize..=8,
    )
        .prop_flat_map(|(size, channels)| (Just(size), Just(channels), size..=16, size..=16))
        .prop_flat_map(|(size, channels, height, width)| {
            let shape = Shape {
                channels,
                height,
                width,
            };
            // Values anywhere, at the extremes, and near zero (where ties are common).
            let value = prop_oneof![any::<i8>(), Just(i8::MIN), Just(i8::MAX), -2i8..=2];
            vec(value, channels * height * width).prop_map(move |input| PoolCase {
                shape,
                size,
                input,
            })
        })
}

#[derive(Debug, Clone)]
struct DenseCase {
    input: Vec<i8>,
    input_zero_point: i8,
    weights: Vec<i8>,
    bias: Vec<i32>,
    output: OutputSpec,
}

fn dense_case() -> impl Strategy<Value = DenseCase> {
    (1usize..=300, 1usize..=16).prop_flat_map(|(inputs, units)| {
        (
            vec(any::<i8>(), inputs),
            any::<i8>(),
            vec(any::<i8>(), inputs * units),
            vec(bias_value(), units),
            output_spec(units, inputs),
        )
            .prop_map(
                |(input, input_zero_point, weights, bias, output)| DenseCase {
                    input,
                    input_zero_point,
                    weights,
                    bias,
                    output,
                },
            )
    })
}

fn byte_forms(bias: &[i32], requantizers: &[Requantize]) -> (Vec<[u8; 4]>, Vec<[u8; 5]>) {
    (
        bias.iter().map(|b| b.to_le_bytes()).collect(),
        requantizers.iter().map(|r| r.to_bytes()).collect(),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conv2d_i8_matches_the_integer_reference(case in conv_case()) {
        let ConvCase { shape, kernel, input, input_zero_point, weights, bias, output } = &case;
        let requantizers = output.requantizers();
        let requantization = Requantization {
            per_channel: &requantizers[..],
            zero_point: i32::from(output.zero_point),
            min: output.min,
            max: output.max,
        };
        let plane = shape.height * shape.width;
        // The scratch may have any alignment: start it at an odd address.
        let scratch_bytes = conv::i8_scratch_bytes(shape.channels, *kernel).unwrap();
        prop_assert_eq!(scratch_bytes, 2 * shape.channels * kernel * kernel);
        let mut scratch_buffer = vec![0u8; scratch_bytes + 1];
        let scratch = &mut scratch_buffer[1..];
        let (bias_bytes, scale_bytes) = byte_forms(bias, &requantizers);
        let requantization_bytes = Requantization {
            per_channel: &scale_bytes[..],
            zero_point: i32::from(output.zero_point),
            min: output.min,
            max: output.max,
        };
        let accumulators = reference_conv_accumulators(input, *shape, *input_zero_point, weights, bias, *kernel);
        // Every build of the loops this processor runs gives the reference's bits.
        let mut got = vec![0i8; bias.len() * plane];
        for kernels in Kernels::supported() {
            conv::conv2d_i8_with(kernels, &input[..], *shape, *input_zero_point, &weights[..], &bias[..], *kernel, &requantization, scratch, &mut got).unwrap();
            let mut got_bytes = vec![0i8; got.len()];
            conv::conv2d_i8_with(kernels, &input[..], *shape, *input_zero_point, &weights[..], &bias_bytes[..], *kernel, &requantization_bytes, scratch, &mut got_bytes).unwrap();
            check_requantized(&accumulators, plane, output, &got, &got_bytes)
                .map_err(|e| TestCaseError::fail(format!("{kernels:?}: {e}")))?;
        }

        // One output value too few is refused, not written past.
        let mut short = vec![0i8; got.len() - 1];
        let refused = conv::conv2d_i8(&input[..], *shape, *input_zero_point, &weights[..], &bias[..], *kernel, &requantization, scratch, &mut short);
        prop_assert!(matches!(refused, Err(Error::Length { .. })), "{:?}", refused);
        // So is a scratch one byte short.
        let refused = conv::conv2d_i8(&input[..], *shape, *input_zero_point, &weights[..], &bias[..], *kernel, &requantization, &mut scratch[1..], &mut got);
        prop_assert_eq!(refused, Err(Error::Length { what: "convolution scratch bytes", expected: scratch_bytes, found: scratch_bytes - 1 }));
    }

    #[test]
    fn pools_i8_match_the_integer_reference(case in pool_case()) {
        let PoolCase { shape, size, input } = &case;
        let out_shape = pooled_shape(*shape, *size);
        prop_assert_eq!(pool::pooled(*shape, *size), Ok(out_shape));
        let mut got = vec![0i8; out_shape.len().unwrap()];
        pool::max_pool_i8(input, *shape, *size, &mut got).unwrap();
        prop_assert_eq!(&got, &reference_max_pool_i8(input, *shape, *size));
        pool::avg_pool_i8(input, *shape, *size, &mut got).unwrap();
        prop_assert_eq!(&got, &reference_avg_pool_i8(input, *shape, *size));
    }

    #[test]
    fn dense_i8_matches_the_integer_reference(case in dense_case()) {
        let DenseCase { input, input_zero_point, weights, bias, output } = &case;
        let requantizers = output.requantizers();
        let requantization = Requantization {
            per_channel: &requantizers[..],
            zero_point: i32::from(output.zero_point),
            min: output.min,
            max: output.max,
        };
        let (bias_bytes, scale_bytes) = byte_forms(bias, &requantizers);
        let requantization_bytes = Requantization {
            per_channel: &scale_bytes[..],
            zero_point: i32::from(output.zero_point),
            min: output.min,
            max: output.max,
        };
        let accumulators = reference_dense_accumulators(input, *input_zero_point, weights, bias);
        for kernels in Kernels::supported() {
            let mut got = vec![0i8; bias.len()];
            dense::dense_i8_with(kernels, input, *input_zero_point, weights, &bias[..], &requantization, &mut got).unwrap();
            let mut got_bytes = vec![0i8; bias.len()];
            dense::dense_i8_with(kernels, input, *input_zero_point, weights, &bias_bytes[..], &requantization_bytes, &mut got_bytes).unwrap();
            check_requantized(&accumulators, 1, output, &got, &got_bytes)
                .map_err(|e| TestCaseError::fail(format!("{kernels:?}: {e}")))?;
        }
    }
}

#[test]
fn avg_pool_i8_ties_round_away_from_zero() {
    // Windows of 2x2 whose sums are +-2 (mean +-0.5), +-6 (+-1.5), +-10 (+-2.5), and
    // -512 / 508 (exact), so every tie is checked in both signs.
    let shape = Shape {
        channels: 8,
        height: 2,
        width: 2,
    };
    let input: Vec<i8> = [
        [1i8, 1, 0, 0],
        [-1, -1, 0, 0],
        [2, 2, 1, 1],
        [-2, -2, -1, -1],
        [3, 3, 2, 2],
        [-3, -3, -2, -2],
        [-128, -128, -128, -128],
        [127, 127, 127, 127],
    ]
    .concat();
    let mut out = [0i8; 8];
    pool::avg_pool_i8(&input, shape, 2, &mut out).unwrap();
    assert_eq!(out, [1, -1, 2, -2, 3, -3, -128, 127]);
    assert_eq!(out.to_vec(), reference_avg_pool_i8(&input, shape, 2));
}

// ---------------------------------------------------------------------------------------
// Requantization against exact arithmetic
// ---------------------------------------------------------------------------------------

/// `scale` as `mantissa * 2^exponent`, exactly (positive finite scales).
fn dyadic(scale: f64) -> (i128, i32) {
    assert!(scale.is_finite() && scale > 0.0);
    let bits = scale.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = i128::from(bits & ((1u64 << 52) - 1));
    if biased == 0 {
        (fraction, -1074)
    } else {
        (fraction | (1i128 << 52), biased - 1075)
    }
}

/// `x * 2^n` for `n >= 0`, refusing to overflow.
fn times_power_of_two(x: i128, n: i32) -> i128 {
    assert!((0..126).contains(&n), "exponent {n}");
    x.checked_mul(1i128 << n).expect("no i128 overflow")
}

/// Accumulators: anywhere in i32, the sizes a layer produces, and the extremes.
fn accumulator() -> impl Strategy<Value = i32> {
    prop_oneof![
        any::<i32>(),
        -100_000i32..100_000,
        -100i32..100,
        Just(i32::MIN),
        Just(i32::MAX),
        Just(0),
    ]
}

/// Checks that `(multiplier, shift)` is the nearest fixed-point form of `scale`:
/// `|multiplier * 2^(shift - 31) - scale| <= 2^(shift - 32)`, with the multiplier in
/// `[2^30, 2^31)`.
fn check_nearest(scale: f64, requantize: Requantize) -> Result<(), TestCaseError> {
    let (multiplier, shift) = (requantize.multiplier(), requantize.shift());
    prop_assert!(
        ((1 << 30)..=i32::MAX).contains(&multiplier),
        "multiplier {} of {}",
        multiplier,
        scale
    );
    prop_assert!(SHIFTS.contains(&shift));
    let (mantissa, exponent) = dyadic(scale);
    // Exponents of the three terms: the fixed point, the scale, the half unit.
    let lowest = (shift - 31).min(exponent).min(shift - 32);
    let fixed = times_power_of_two(i128::from(multiplier), shift - 31 - lowest);
    let exact = times_power_of_two(mantissa, exponent - lowest);
    let half_unit = times_power_of_two(1, shift - 32 - lowest);
    prop_assert!(
        (fixed - exact).abs() <= half_unit,
        "scale {} became {} * 2^({} - 31)",
        scale,
        multiplier,
        shift
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Any multiplier and shift `Requantize::new` accepts, on any accumulator: bit for bit
    /// the documented rule, saturation included.
    #[test]
    fn requantize_follows_the_documented_rule(multiplier in prop_oneof![0..=i32::MAX, (1i32 << 30)..=i32::MAX, Just(i32::MAX), Just(0), Just(1 << 30), (1u32..=30, any::<u32>()).prop_map(|(k, m)| (((u64::from(m) | 1) << k) & 0x7fff_ffff) as i32)], shift in SHIFTS, acc in accumulator()) {
        let requantize = Requantize::new(multiplier, shift).unwrap();
        prop_assert_eq!((requantize.multiplier(), requantize.shift()), (multiplier, shift));
        prop_assert_eq!(requantize.apply(acc), reference_requantize(acc, multiplier, shift));
        let bytes = requantize.to_bytes();
        prop_assert_eq!(&bytes[..4], &multiplier.to_le_bytes()[..]);
        prop_assert_eq!(bytes[4] as i8 as i32, shift);
    }

    #[test]
    fn requantize_new_refuses_exactly_what_it_cannot_represent(multiplier in any::<i32>(), shift in -64i32..64) {
        let representable = multiplier >= 0 && SHIFTS.contains(&shift);
        match Requantize::new(multiplier, shift) {
            Ok(_) => prop_assert!(representable),
            Err(e) => {
                prop_assert!(!representable);
                prop_assert_eq!(e, Error::BadShift { shift });
            }
        }
    }

    /// Realistic scales (1e-4 to 4): `from_scale` picks the nearest fixed point, `apply`
    /// follows the documented rule, and stays within the error its two roundings allow of
    /// the exact `acc * scale`: half a unit for the high multiply (scaled down by the right
    /// shift), half a unit for the right shift (none when there is none), plus the error of
    /// the fixed-point scale itself, `|acc| * |multiplier * 2^(shift - 31) - scale|`.
    #[test]
    fn requantize_is_within_its_rounding_of_the_exact_product(scale in prop_oneof![realistic_scale(), 0.5f64..4.0, (1u32..16, 0i32..14).prop_map(|(n, k)| f64::from(n) * (-f64::from(k)).exp2())], acc in accumulator()) {
        let requantize = Requantize::from_scale(scale).unwrap();
        check_nearest(scale, requantize)?;
        let (multiplier, shift) = (requantize.multiplier(), requantize.shift());
        let got = requantize.apply(acc);
        prop_assert_eq!(got, reference_requantize(acc, multiplier, shift));

        let left = shift.max(0);
        let right = (-shift).max(0);
        if (i64::from(acc) << left) != i64::from(acc.saturating_mul(1 << left)) {
            // The left shift saturated: the rule above is all there is to check.
            return Ok(());
        }
        let (mantissa, exponent) = dyadic(scale);
        // Everything as an integer multiple of 2^lowest.
        let lowest = 0.min(exponent).min(shift - 31).min(-1).min(-(right + 1));
        let acc = i128::from(acc);
        let got_scaled = times_power_of_two(i128::from(got), -lowest);
        let exact = acc * times_power_of_two(mantissa, exponent - lowest);
        let fixed_scale = times_power_of_two(i128::from(multiplier), shift - 31 - lowest);
        let scale_error = acc.abs() * (fixed_scale - times_power_of_two(mantissa, exponent - lowest)).abs();
        let first_rounding = times_power_of_two(1, -1 - right - lowest);
        let second_rounding = if right == 0 { 0 } else { times_power_of_two(1, -1 - lowest) };
        let bound = first_rounding + second_rounding + scale_error;
        prop_assert!(
            (got_scaled - exact).abs() <= bound,
            "{} * {}: got {}, off by {} / 2^{}, bound {}",
            acc, scale, got, (got_scaled - exact).abs(), -lowest, bound
        );
        // With no right shift there is a single rounding, to nearest with ties up, of the
        // product by the fixed-point scale: exactly floor(acc * fixed + 1/2).
        if right == 0 {
            let product = acc * i128::from(multiplier) * (1i128 << left);
            prop_assert_eq!(i128::from(got), (product + (1i128 << 30)).div_euclid(1i128 << 31));
        }
    }

    /// Wider scales, from 2^-31 to 2^29: still the nearest fixed point.
    #[test]
    fn from_scale_is_the_nearest_fixed_point(log2 in -31.0f64..29.0) {
        let scale = log2.exp2();
        check_nearest(scale, Requantize::from_scale(scale).unwrap())?;
    }

    /// Scales below 2^-33 need more than 31 bits of right shift: they become zero.
    #[test]
    fn tiny_scales_become_zero(log2 in -1000.0f64..-33.0, acc in accumulator()) {
        let requantize = Requantize::from_scale(log2.exp2()).unwrap();
        prop_assert_eq!(requantize.multiplier(), 0);
        prop_assert_eq!(requantize.apply(acc), 0);
    }

    /// Scales from 2^30 up need more than 30 bits of left shift; negative and non-finite
    /// scales have no fixed-point form either.
    #[test]
    fn unrepresentable_scales_are_errors(log2 in 30.0f64..1000.0) {
        prop_assert!(Requantize::from_scale(log2.exp2()).is_err());
        prop_assert!(Requantize::from_scale(-log2.exp2()).is_err());
    }
}

/// The worked examples of requant.rs, through the reference and the crate.
#[test]
fn documented_examples() {
    let half = Requantize::from_scale(0.5).unwrap();
    let quarter = Requantize::from_scale(0.25).unwrap();
    let four = Requantize::from_scale(4.0).unwrap();
    for (requantize, acc, expected) in [
        (half, 3, 2),
        (half, -3, -1),
        (quarter, 6, 2),
        (quarter, -6, -2),
        (quarter, 5, 2),
        (four, -7, -28),
    ] {
        let parts = (requantize.multiplier(), requantize.shift());
        assert_eq!(
            reference_requantize(acc, parts.0, parts.1),
            expected,
            "{acc} by {parts:?}"
        );
        assert_eq!(requantize.apply(acc), expected, "{acc} by {parts:?}");
    }
    let saturating = Requantize::new(i32::MAX, 30).unwrap();
    assert_eq!(saturating.apply(i32::MAX), i32::MAX - 1);
    assert_eq!(reference_requantize(i32::MAX, i32::MAX, 30), i32::MAX - 1);
    assert_eq!(reference_requantize(i32::MIN, i32::MAX, 30), i32::MIN + 1);
}

#[test]
fn special_scales() {
    assert_eq!(Requantize::from_scale(0.0).unwrap().apply(i32::MAX), 0);
    for scale in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e-3] {
        assert!(matches!(
            Requantize::from_scale(scale),
            Err(Error::BadShift { .. })
        ));
    }
}

// ---------------------------------------------------------------------------------------
// Model files
// ---------------------------------------------------------------------------------------

/// A small deterministic generator for weights and pixels (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn symmetric(&mut self) -> f32 {
        (self.unit() * 2.0 - 1.0) as f32
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Conv {
        filters: u16,
        kernel: u8,
        relu: bool,
    },
    MaxPool(u8),
    AvgPool(u8),
    Dense {
        units: u16,
        relu: bool,
    },
}

/// One layer with its parameters owned.
#[derive(Debug, Clone)]
struct OwnedLayer {
    kind: Kind,
    /// The shape the layer reads.
    input: Shape,
    weights: Vec<u8>,
    bias: Vec<u8>,
    scales: Vec<u8>,
    /// The (multiplier, shift) of each output channel, int8 only.
    requantize: Vec<(i32, i32)>,
    output: Quantization,
}

/// A model definition with everything owned, from which a `ModelDef` borrows.
#[derive(Debug, Clone)]
struct OwnedModel {
    precision: Precision,
    channels: u16,
    height: u16,
    width: u16,
    table: Vec<u8>,
    input_quantization: Quantization,
    layers: Vec<OwnedLayer>,
}

impl OwnedModel {
    fn def(&self) -> ModelDef<'_> {
        let mut layers = heapless::Vec::new();
        for layer in &self.layers {
            let params = Weights {
                weights: &layer.weights,
                bias: &layer.bias,
                scales: &layer.scales,
                output: layer.output,
            };
            let layer = match layer.kind {
                Kind::Conv {
                    filters,
                    kernel,
                    relu,
                } => Layer::Conv {
                    filters,
                    kernel,
                    relu,
                    params,
                },
                Kind::MaxPool(size) => Layer::MaxPool { size },
                Kind::AvgPool(size) => Layer::AvgPool { size },
                Kind::Dense { units, relu } => Layer::Dense {
                    units,
                    relu,
                    params,
                },
            };
            layers.push(layer).expect("at most 16 layers");
        }
        ModelDef {
            precision: self.precision,
            input: Input {
                channels: self.channels,
                height: self.height,
                width: self.width,
                pixel_format: PixelFormat::U8Planar,
                table: &self.table,
                quantization: self.input_quantization,
            },
            layers,
        }
    }

    fn payload(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.def()).expect("a model definition encodes")
    }

    fn file(&self) -> Vec<u8> {
        with_header(&self.payload())
    }

    fn input_shape(&self) -> Shape {
        Shape {
            channels: self.channels as usize,
            height: self.height as usize,
            width: self.width as usize,
        }
    }

    fn classes(&self) -> usize {
        match self.layers.last().map(|l| l.kind) {
            Some(Kind::Dense { units, .. }) => units as usize,
            _ => 0,
        }
    }
}

fn with_header(payload: &[u8]) -> Vec<u8> {
    let mut file = format::header(payload).expect("a small payload").to_vec();
    file.extend_from_slice(payload);
    file
}

/// zlib's CRC-32, bit by bit.
fn reference_crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The shape of a model, drawn by proptest (so that it shrinks); the weights come from
/// `seed`.
#[derive(Debug, Clone)]
struct Plan {
    precision: Precision,
    channels: u16,
    height: u16,
    width: u16,
    conv: Option<(u8, u16, bool)>,
    pool: Option<(bool, u8)>,
    second_conv: Option<(u8, u16, bool)>,
    hidden: Option<(u16, bool)>,
    units: u16,
    relu_out: bool,
    seed: u64,
}

fn conv_plan() -> impl Strategy<Value = (u8, u16, bool)> {
    (
        prop::sample::select(vec![1u8, 2, 3, 4, 5, 9, 1, 2, 3, 4, 5, 9, 6, 13, 16]),
        1u16..=4,
        any::<bool>(),
    )
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop_oneof![Just(Precision::F32), Just(Precision::Int8)],
        (1u16..=3, 1u16..=12, 1u16..=12),
        proptest::option::of(conv_plan()),
        proptest::option::of((any::<bool>(), 1u8..=4)),
        proptest::option::of(conv_plan()),
        proptest::option::of((1u16..=8, any::<bool>())),
        1u16..=10,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                precision,
                (channels, height, width),
                conv,
                pool,
                second_conv,
                hidden,
                units,
                relu_out,
                seed,
            )| Plan {
                precision,
                channels,
                height,
                width,
                conv,
                pool,
                second_conv,
                hidden,
                units,
                relu_out,
                seed,
            },
        )
}

/// Weights, biases, scales and output quantization for a layer of `outputs` outputs with
/// `fan_in` inputs each.
fn parameters(
    rng: &mut Rng,
    precision: Precision,
    kind: Kind,
    input: Shape,
    fan_in: usize,
    outputs: usize,
) -> OwnedLayer {
    match precision {
        Precision::F32 => OwnedLayer {
            kind,
            input,
            weights: (0..fan_in * outputs)
                .flat_map(|_| rng.symmetric().to_le_bytes())
                .collect(),
            bias: (0..outputs)
                .flat_map(|_| rng.symmetric().to_le_bytes())
                .collect(),
            scales: Vec::new(),
            requantize: Vec::new(),
            output: Quantization::NONE,
        },
        Precision::Int8 => {
            let requantizers: Vec<Requantize> = (0..outputs)
                .map(|_| {
                    let exponent = 2.0 * rng.unit() - 1.0;
                    let scale = match rng.next() % 4 {
                        0 => 10f64.powf(-4.0 * rng.unit()),
                        1 => dyadic_scale(fan_in, exponent),
                        _ => matched_scale(fan_in, exponent),
                    };
                    Requantize::from_scale(scale).unwrap()
                })
                .collect();
            OwnedLayer {
                kind,
                input,
                weights: rng.bytes(fan_in * outputs),
                bias: (0..outputs)
                    .flat_map(|_| ((rng.next() % (1 << 13)) as i32 - (1 << 12)).to_le_bytes())
                    .collect(),
                scales: requantizers.iter().flat_map(|r| r.to_bytes()).collect(),
                requantize: requantizers
                    .iter()
                    .map(|r| (r.multiplier(), r.shift()))
                    .collect(),
                output: Quantization {
                    scale: (0.001 + rng.unit()) as f32,
                    zero_point: rng.next() as i8,
                },
            }
        }
    }
}

fn build(plan: &Plan) -> OwnedModel {
    let mut rng = Rng(plan.seed);
    let precision = plan.precision;
    let mut shape = Shape {
        channels: plan.channels as usize,
        height: plan.height as usize,
        width: plan.width as usize,
    };
    let table = match precision {
        Precision::F32 => (0..shape.channels * 256)
            .flat_map(|_| rng.symmetric().to_le_bytes())
            .collect(),
        Precision::Int8 => rng.bytes(shape.channels * 256),
    };
    let input_quantization = match precision {
        Precision::F32 => Quantization::NONE,
        Precision::Int8 => Quantization {
            scale: (0.001 + rng.unit()) as f32,
            zero_point: rng.next() as i8,
        },
    };
    let mut layers = Vec::new();
    let add_conv = |rng: &mut Rng, shape: &mut Shape, (kernel, filters, relu): (u8, u16, bool)| {
        let kind = Kind::Conv {
            filters,
            kernel,
            relu,
        };
        let fan_in = kernel as usize * kernel as usize * shape.channels;
        let layer = parameters(rng, precision, kind, *shape, fan_in, filters as usize);
        shape.channels = filters as usize;
        layer
    };
    if let Some(c) = plan.conv {
        layers.push(add_conv(&mut rng, &mut shape, c));
    }
    if let Some((max, size)) = plan.pool {
        let size = size.min(shape.height.min(shape.width) as u8);
        let kind = if max {
            Kind::MaxPool(size)
        } else {
            Kind::AvgPool(size)
        };
        layers.push(OwnedLayer {
            kind,
            input: shape,
            weights: Vec::new(),
            bias: Vec::new(),
            scales: Vec::new(),
            requantize: Vec::new(),
            output: Quantization::NONE,
        });
        shape = pooled_shape(shape, size as usize);
    }
    if let Some(c) = plan.second_conv {
        layers.push(add_conv(&mut rng, &mut shape, c));
    }
    let add_dense = |rng: &mut Rng, shape: &mut Shape, units: u16, relu: bool| {
        let kind = Kind::Dense { units, relu };
        let layer = parameters(
            rng,
            precision,
            kind,
            *shape,
            shape.len().unwrap(),
            units as usize,
        );
        *shape = Shape {
            channels: units as usize,
            height: 1,
            width: 1,
        };
        layer
    };
    if let Some((units, relu)) = plan.hidden {
        layers.push(add_dense(&mut rng, &mut shape, units, relu));
    }
    layers.push(add_dense(&mut rng, &mut shape, plan.units, plan.relu_out));
    OwnedModel {
        precision,
        channels: plan.channels,
        height: plan.height,
        width: plan.width,
        table,
        input_quantization,
        layers,
    }
}

fn i8s(bytes: &[u8]) -> Vec<i8> {
    bytes.iter().map(|&b| b as i8).collect()
}

fn i32s(bytes: &[u8]) -> Vec<i32> {
    bytes
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The int8 scores of a model by the reference kernels: table lookup, then each layer,
/// the zero point passing from layer to layer (pools keep it).
fn reference_scores_i8(model: &OwnedModel, pixels: &[u8]) -> Vec<i8> {
    let plane = model.height as usize * model.width as usize;
    let table = i8s(&model.table);
    let mut values: Vec<i8> = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| table[(i / plane) * 256 + p as usize])
        .collect();
    let mut zero_point = model.input_quantization.zero_point;
    for layer in &model.layers {
        let shape = layer.input;
        values = match layer.kind {
            Kind::Conv { kernel, relu, .. } => {
                let accumulators = reference_conv_accumulators(
                    &values,
                    shape,
                    zero_point,
                    &i8s(&layer.weights),
                    &i32s(&layer.bias),
                    kernel as usize,
                );
                let plane = shape.height * shape.width;
                let out_zero = layer.output.zero_point;
                let min = if relu { out_zero } else { i8::MIN };
                zero_point = out_zero;
                accumulators
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| {
                        reference_output(a, layer.requantize[i / plane], out_zero, min, i8::MAX)
                    })
                    .collect()
            }
            Kind::MaxPool(size) => reference_max_pool_i8(&values, shape, size as usize),
            Kind::AvgPool(size) => reference_avg_pool_i8(&values, shape, size as usize),
            Kind::Dense { relu, .. } => {
                let accumulators = reference_dense_accumulators(
                    &values,
                    zero_point,
                    &i8s(&layer.weights),
                    &i32s(&layer.bias),
                );
                let out_zero = layer.output.zero_point;
                let min = if relu { out_zero } else { i8::MIN };
                zero_point = out_zero;
                accumulators
                    .iter()
                    .enumerate()
                    .map(|(i, &a)| reference_output(a, layer.requantize[i], out_zero, min, i8::MAX))
                    .collect()
            }
        };
    }
    values
}

fn reference_scores_f32(model: &OwnedModel, pixels: &[u8]) -> Vec<f32> {
    let plane = model.height as usize * model.width as usize;
    let table = f32s(&model.table);
    let mut values: Vec<f32> = pixels
        .iter()
        .enumerate()
        .map(|(i, &p)| table[(i / plane) * 256 + p as usize])
        .collect();
    for layer in &model.layers {
        let shape = layer.input;
        values = match layer.kind {
            Kind::Conv { kernel, relu, .. } => reference_conv_f32(
                &values,
                shape,
                &f32s(&layer.weights),
                &f32s(&layer.bias),
                kernel as usize,
                relu,
            ),
            Kind::MaxPool(size) => reference_max_pool_f32(&values, shape, size as usize),
            Kind::AvgPool(size) => reference_avg_pool_f32(&values, shape, size as usize),
            Kind::Dense { relu, .. } => {
                reference_dense_f32(&values, &f32s(&layer.weights), &f32s(&layer.bias), relu)
            }
        };
    }
    values
}

/// The arena by the crate docs: two buffers, the first for the input and the outputs of
/// layers 2, 4, ..., the second for those of layers 1, 3, ..., each as large as the
/// largest tensor it holds, in values of the model's precision; int8 models add the
/// scratch of their largest convolution window, `channels x kernel x kernel` int16 values.
fn reference_arena_bytes(model: &OwnedModel) -> usize {
    let mut buffers = [model.input_shape().len().unwrap(), 0];
    let mut scratch = 0;
    for (index, layer) in model.layers.iter().enumerate() {
        if let (Precision::Int8, Kind::Conv { kernel, .. }) = (model.precision, layer.kind) {
            scratch = scratch.max(2 * layer.input.channels * kernel as usize * kernel as usize);
        }
        let output = match layer.kind {
            Kind::Conv { filters, .. } => filters as usize * layer.input.height * layer.input.width,
            Kind::MaxPool(size) | Kind::AvgPool(size) => {
                pooled_shape(layer.input, size as usize).len().unwrap()
            }
            Kind::Dense { units, .. } => units as usize,
        };
        let buffer = &mut buffers[(index + 1) % 2];
        *buffer = (*buffer).max(output);
    }
    (buffers[0] + buffers[1]) * model.precision.value_bytes() + scratch
}

/// Index of the first largest score.
fn first_argmax<T: PartialOrd + Copy>(scores: &[T]) -> usize {
    let mut best = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[best] {
            best = i;
        }
    }
    best
}

/// A 4-aligned arena of at least `bytes` bytes.
fn aligned_arena(bytes: usize) -> Vec<u32> {
    vec![0u32; bytes.div_ceil(4) + 1]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Encode, parse, decode: the header is as documented, the payload decodes back to the
    /// same definition, `Model::parse` accepts it, `arena_bytes()` is the documented plan
    /// and the exact minimum, and inference gives the reference scores.
    #[test]
    fn models_round_trip_and_run_in_exactly_their_arena(plan in plan()) {
        let owned = build(&plan);
        let def = owned.def();
        let payload = postcard::to_allocvec(&def).unwrap();
        let file = with_header(&payload);

        prop_assert_eq!(&file[0..4], &MAGIC[..]);
        prop_assert_eq!(&file[0..4], b"CMCU");
        prop_assert_eq!(u16::from_le_bytes([file[4], file[5]]), 1);
        prop_assert_eq!(VERSION, 1);
        prop_assert_eq!(u32::from_le_bytes(file[6..10].try_into().unwrap()) as usize, payload.len());
        prop_assert_eq!(u32::from_le_bytes(file[10..14].try_into().unwrap()), reference_crc32(&payload));
        // The payload starts with the precision's variant index, then the input's
        // channels, height and width (all below 128: one varint byte each).
        let precision_index = match plan.precision { Precision::F32 => 0, Precision::Int8 => 1 };
        prop_assert_eq!(&payload[..4], &[precision_index, plan.channels as u8, plan.height as u8, plan.width as u8][..]);

        let decoded: ModelDef<'_> = postcard::from_bytes(&file[HEADER_BYTES..]).unwrap();
        prop_assert_eq!(&decoded, &def);

        let model = Model::parse(&file).unwrap();
        prop_assert_eq!(model.precision(), plan.precision);
        prop_assert_eq!(model.input_shape(), owned.input_shape());
        prop_assert_eq!(model.pixel_bytes(), owned.input_shape().len().unwrap());
        prop_assert_eq!(model.classes(), plan.units as usize);
        prop_assert_eq!(model.layers().count(), owned.layers.len());
        prop_assert_eq!(model.layers().copied().collect::<Vec<_>>(), def.layers.iter().copied().collect::<Vec<_>>());
        let arena_bytes = model.arena_bytes();
        prop_assert_eq!(arena_bytes, reference_arena_bytes(&owned));

        let mut rng = Rng(plan.seed ^ 0x5eed);
        let pixels = rng.bytes(model.pixel_bytes());
        let mut words = aligned_arena(arena_bytes);
        let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        let classes = model.classes();
        match plan.precision {
            Precision::F32 => {
                let expected = reference_scores_f32(&owned, &pixels);
                let mut scores = vec![0f32; classes];
                let class = model.infer_f32(&pixels, &mut arena[..arena_bytes], &mut scores);
                prop_assert_eq!(&scores, &expected);
                prop_assert_eq!(class, Ok(first_argmax(&expected)));
                let short = model.infer_f32(&pixels, &mut arena[..arena_bytes - 1], &mut scores);
                prop_assert_eq!(short, Err(Error::Length { what: "arena bytes", expected: arena_bytes, found: arena_bytes - 1 }));
                let misaligned = model.infer_f32(&pixels, &mut arena[1..arena_bytes + 1], &mut scores);
                prop_assert!(matches!(misaligned, Err(Error::Alignment { .. })), "{:?}", misaligned);
                let mut wrong = vec![0i8; classes];
                prop_assert_eq!(model.infer_i8(&pixels, &mut arena[..arena_bytes], &mut wrong), Err(Error::Precision { model: Precision::F32 }));
            }
            Precision::Int8 => {
                let expected = reference_scores_i8(&owned, &pixels);
                let mut scores = vec![0i8; classes];
                let class = model.infer_i8(&pixels, &mut arena[..arena_bytes], &mut scores);
                prop_assert_eq!(&scores, &expected);
                prop_assert_eq!(class, Ok(first_argmax(&expected)));
                // int8 arenas need no alignment.
                let mut again = vec![0i8; classes];
                prop_assert_eq!(model.infer_i8(&pixels, &mut arena[1..arena_bytes + 1], &mut again), class);
                prop_assert_eq!(&again, &scores);
                let short = model.infer_i8(&pixels, &mut arena[..arena_bytes - 1], &mut scores);
                prop_assert_eq!(short, Err(Error::Length { what: "arena bytes", expected: arena_bytes, found: arena_bytes - 1 }));
                let mut wrong = vec![0f32; classes];
                prop_assert_eq!(model.infer_f32(&pixels, &mut arena[..arena_bytes], &mut wrong), Err(Error::Precision { model: Precision::Int8 }));
            }
        }
        let class = model.classify(&pixels, &mut arena[..arena_bytes]);
        prop_assert!(class.is_ok_and(|c| c < classes), "{:?}", class);
        prop_assert!(model.classify(&pixels, &mut arena[..arena_bytes - 1]).is_err());
        // A larger arena works too; wrong pixel counts are refused.
        prop_assert_eq!(model.classify(&pixels, arena), class);
        let mut more = pixels.clone();
        more.push(0);
        let too_many = model.classify(&more, &mut arena[..arena_bytes]);
        prop_assert!(matches!(too_many, Err(Error::Length { what: "pixels", .. })), "{:?}", too_many);
        let too_few = model.classify(&pixels[1..], &mut arena[..arena_bytes]);
        prop_assert!(matches!(too_few, Err(Error::Length { what: "pixels", .. })), "{:?}", too_few);
    }
}

// ---------------------------------------------------------------------------------------
// Invalid definitions give the documented errors
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Defect {
    WeightLength,
    BiasLength,
    ScaleLength,
    ShiftOutOfRange(i8),
    NegativeMultiplier,
    ZeroKernel,
    ZeroFilters,
    PoolTooLarge(u8),
    ZeroPool,
    LastNotDense,
    TableLength,
    EmptyInput,
    ZeroUnits,
    OtherPrecision,
}

fn defect() -> impl Strategy<Value = Defect> {
    prop_oneof![
        Just(Defect::WeightLength),
        Just(Defect::BiasLength),
        Just(Defect::ScaleLength),
        prop_oneof![31i8..=127, -128i8..=-32].prop_map(Defect::ShiftOutOfRange),
        Just(Defect::NegativeMultiplier),
        Just(Defect::ZeroKernel),
        Just(Defect::ZeroFilters),
        (1u8..=200).prop_map(Defect::PoolTooLarge),
        Just(Defect::ZeroPool),
        Just(Defect::LastNotDense),
        Just(Defect::TableLength),
        Just(Defect::EmptyInput),
        Just(Defect::ZeroUnits),
        Just(Defect::OtherPrecision),
    ]
}

/// Breaks one thing in `model` and returns a description of the error `Model::parse`
/// must give, as a predicate.
fn apply_defect(model: &mut OwnedModel, defect: Defect, pick: Index) -> fn(&Error) -> bool {
    let weighted: Vec<usize> = (0..model.layers.len())
        .filter(|&i| !model.layers[i].bias.is_empty())
        .collect();
    let layer = weighted[pick.index(weighted.len())];
    let int8 = model.precision == Precision::Int8;
    let find = |model: &OwnedModel, f: fn(&Kind) -> bool| {
        model
            .layers
            .iter()
            .position(|l| f(&l.kind))
            .expect("the plan has this layer")
    };
    match defect {
        Defect::WeightLength => {
            model.layers[layer].weights.pop();
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "weight bytes",
                        ..
                    }
                )
            }
        }
        Defect::BiasLength => {
            model.layers[layer].bias.extend([0; 4]);
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "bias bytes",
                        ..
                    }
                )
            }
        }
        Defect::ScaleLength => {
            let scales = &mut model.layers[layer].scales;
            if int8 {
                scales.truncate(scales.len() - 5);
            } else {
                scales.extend([0, 0, 0, 0x40, 0]);
            }
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "scale bytes",
                        ..
                    }
                )
            }
        }
        Defect::ShiftOutOfRange(shift) if int8 => {
            let scales = &mut model.layers[layer].scales;
            let last = scales.len() - 1;
            scales[last] = shift as u8;
            |e| matches!(e, Error::BadShift { shift } if !SHIFTS.contains(shift))
        }
        Defect::NegativeMultiplier if int8 => {
            model.layers[layer].scales[3] |= 0x80;
            |e| matches!(e, Error::BadShift { .. })
        }
        Defect::ShiftOutOfRange(_) | Defect::NegativeMultiplier => {
            // f32 layers have no scales: any at all are one defect.
            model.layers[layer].scales.extend([0, 0, 0, 0x40, 0]);
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "scale bytes",
                        ..
                    }
                )
            }
        }
        Defect::ZeroKernel => {
            let i = find(model, |k| matches!(k, Kind::Conv { .. }));
            if let Kind::Conv { kernel, .. } = &mut model.layers[i].kind {
                *kernel = 0;
            }
            |e| matches!(e, Error::BadWindow { .. })
        }
        Defect::ZeroFilters => {
            let i = find(model, |k| matches!(k, Kind::Conv { .. }));
            if let Kind::Conv { filters, .. } = &mut model.layers[i].kind {
                *filters = 0;
            }
            |_| true
        }
        Defect::PoolTooLarge(extra) => {
            let i = find(model, |k| matches!(k, Kind::MaxPool(_) | Kind::AvgPool(_)));
            let input = model.layers[i].input;
            let too_large = (input.height.min(input.width) as u8).saturating_add(extra);
            match &mut model.layers[i].kind {
                Kind::MaxPool(size) | Kind::AvgPool(size) => *size = too_large,
                _ => unreachable!(),
            }
            |e| matches!(e, Error::BadWindow { what: "pool", .. })
        }
        Defect::ZeroPool => {
            let i = find(model, |k| matches!(k, Kind::MaxPool(_) | Kind::AvgPool(_)));
            match &mut model.layers[i].kind {
                Kind::MaxPool(size) | Kind::AvgPool(size) => *size = 0,
                _ => unreachable!(),
            }
            |e| {
                matches!(
                    e,
                    Error::BadWindow {
                        what: "pool",
                        size: 0
                    }
                )
            }
        }
        Defect::LastNotDense => {
            model.layers.push(OwnedLayer {
                kind: Kind::MaxPool(1),
                input: Shape {
                    channels: model.classes(),
                    height: 1,
                    width: 1,
                },
                weights: Vec::new(),
                bias: Vec::new(),
                scales: Vec::new(),
                requantize: Vec::new(),
                output: Quantization::NONE,
            });
            |e| matches!(e, Error::Format { .. })
        }
        Defect::TableLength => {
            model.table.push(0);
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "input table bytes",
                        ..
                    }
                )
            }
        }
        Defect::EmptyInput => {
            model.height = 0;
            |e| matches!(e, Error::Format { .. })
        }
        Defect::ZeroUnits => {
            let last = model.layers.len() - 1;
            if let Kind::Dense { units, .. } = &mut model.layers[last].kind {
                *units = 0;
            }
            |_| true
        }
        Defect::OtherPrecision => {
            model.precision = if int8 {
                Precision::F32
            } else {
                Precision::Int8
            };
            |e| {
                matches!(
                    e,
                    Error::Length {
                        what: "input table bytes",
                        ..
                    }
                )
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn invalid_definitions_are_refused_with_the_right_error(
        plan in plan().prop_map(|mut p| {
            p.conv.get_or_insert((3, 2, true));
            p.pool.get_or_insert((true, 2));
            p
        }),
        defect in defect(),
        pick in any::<Index>(),
    ) {
        let mut owned = build(&plan);
        prop_assert!(Model::parse(&owned.file()).is_ok());
        let expected = apply_defect(&mut owned, defect, pick);
        let file = owned.file();
        match Model::parse(&file) {
            Ok(model) => return Err(TestCaseError::fail(format!("{defect:?} accepted: {model:?}"))),
            Err(e) => prop_assert!(expected(&e), "{:?} gave {:?}", defect, e),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing never panics
// ---------------------------------------------------------------------------------------

/// Runs a parsed model on random pixels with an arena of `arena_bytes()`: int8 inference
/// must succeed; f32 inference may only fail when every score is NaN (damaged weights can
/// make them so). Also checks the refusals of a short arena and the other precision.
fn exercise(model: &Model<'_>, seed: u64) -> Result<(), TestCaseError> {
    // Damaged files cannot grow much, but keep the work bounded all the same.
    if model.arena_bytes() > 1 << 24 || model.multiply_accumulates() > 1 << 26 {
        return Ok(());
    }
    let classes = model.classes();
    prop_assert!(classes > 0);
    let arena_bytes = model.arena_bytes();
    prop_assert!(arena_bytes > 0);
    let pixels = Rng(seed).bytes(model.pixel_bytes());
    let mut words = aligned_arena(arena_bytes);
    let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
    let arena = &mut arena[..arena_bytes];
    match model.precision() {
        Precision::F32 => {
            let mut scores = vec![0f32; classes];
            match model.infer_f32(&pixels, arena, &mut scores) {
                Ok(class) => {
                    prop_assert!(class < classes);
                    prop_assert!(!scores[class].is_nan());
                    // The first largest score; NaN never wins.
                    let best = scores[class];
                    prop_assert!(
                        scores
                            .iter()
                            .all(|s| s.partial_cmp(&best) != Some(Ordering::Greater))
                    );
                    prop_assert!(scores[..class].iter().all(|s| s.is_nan() || *s < best));
                }
                Err(e) => {
                    prop_assert!(matches!(e, Error::Length { what: "scores", .. }), "{:?}", e);
                    prop_assert!(scores.iter().all(|s| s.is_nan()));
                }
            }
            let short = model.infer_f32(&pixels, &mut arena[..arena_bytes - 1], &mut scores);
            prop_assert!(
                matches!(
                    short,
                    Err(Error::Length {
                        what: "arena bytes",
                        ..
                    })
                ),
                "{:?}",
                short
            );
            let mut wrong = vec![0i8; classes];
            let other = model.infer_i8(&pixels, arena, &mut wrong);
            prop_assert!(matches!(other, Err(Error::Precision { .. })), "{:?}", other);
        }
        Precision::Int8 => {
            let mut scores = vec![0i8; classes];
            let class = model.infer_i8(&pixels, arena, &mut scores);
            prop_assert_eq!(class, Ok(first_argmax(&scores)));
            let short = model.infer_i8(&pixels, &mut arena[..arena_bytes - 1], &mut scores);
            prop_assert!(
                matches!(
                    short,
                    Err(Error::Length {
                        what: "arena bytes",
                        ..
                    })
                ),
                "{:?}",
                short
            );
            let mut wrong = vec![0f32; classes];
            let other = model.infer_f32(&pixels, arena, &mut wrong);
            prop_assert!(matches!(other, Err(Error::Precision { .. })), "{:?}", other);
        }
    }
    Ok(())
}

/// Whether an error is one the header checks give.
fn is_header_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Version { .. }
            | Error::Checksum { .. }
            | Error::Length {
                what: "model header" | "model payload bytes",
                ..
            }
    ) || *e
        == Error::Format {
            what: "not a model file: the magic number is wrong",
        }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Extend(Vec<u8>),
    Insert(Index, u8),
    Remove(Index),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 0u8..8).prop_map(|(i, bit)| Mutation::Flip(i, bit)),
        3 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => vec(any::<u8>(), 1..32).prop_map(Mutation::Extend),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => any::<Index>().prop_map(Mutation::Remove),
    ]
}

fn mutate(bytes: &mut Vec<u8>, mutation: &Mutation) {
    if bytes.is_empty() {
        if let Mutation::Extend(more) = mutation {
            bytes.extend_from_slice(more);
        }
        return;
    }
    match mutation {
        Mutation::Flip(i, bit) => {
            let at = i.index(bytes.len());
            bytes[at] ^= 1 << bit;
        }
        Mutation::Set(i, b) => {
            let at = i.index(bytes.len());
            bytes[at] = *b;
        }
        Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        Mutation::Extend(more) => bytes.extend_from_slice(more),
        Mutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        Mutation::Remove(i) => {
            bytes.remove(i.index(bytes.len()));
        }
    }
}

fn varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in vec(any::<u8>(), 0..2000), seed in any::<u64>()) {
        match Model::parse(&bytes) {
            Ok(model) => exercise(&model, seed)?,
            Err(e) if bytes.len() < HEADER_BYTES => {
                prop_assert_eq!(e, Error::Length { what: "model header", expected: HEADER_BYTES, found: bytes.len() });
            }
            Err(e) if bytes[..4] != MAGIC => prop_assert!(matches!(e, Error::Format { .. }), "{:?}", e),
            Err(_) => {}
        }
    }

    /// The header checks in their documented order: magic, version (whatever follows),
    /// length, CRC.
    #[test]
    fn header_fields_are_checked_in_order(
        version in prop_oneof![Just(1u16), any::<u16>()],
        length in proptest::option::of(any::<u32>()),
        crc in proptest::option::of(any::<u32>()),
        payload in vec(any::<u8>(), 0..300),
    ) {
        let mut file = MAGIC.to_vec();
        file.extend(version.to_le_bytes());
        file.extend(length.unwrap_or(payload.len() as u32).to_le_bytes());
        let computed = reference_crc32(&payload);
        file.extend(crc.unwrap_or(computed).to_le_bytes());
        file.extend(&payload);
        let result = Model::parse(&file);
        if version != 1 {
            prop_assert_eq!(result.unwrap_err(), Error::Version { found: version, supported: 1 });
        } else if length.is_some_and(|l| l as usize != payload.len()) {
            prop_assert_eq!(result.unwrap_err(), Error::Length { what: "model payload bytes", expected: length.unwrap() as usize, found: payload.len() });
        } else if crc.is_some_and(|c| c != computed) {
            prop_assert_eq!(result.unwrap_err(), Error::Checksum { stored: crc.unwrap(), computed });
        } else {
            // The header is valid: whatever the payload gives, it is not a header error.
            if let Err(e) = &result {
                prop_assert!(!is_header_error(e), "{:?}", e);
            }
        }
    }

    /// A valid model file of another version is refused as such, whatever else is damaged.
    #[test]
    fn other_versions_are_refused(plan in plan(), version in any::<u16>().prop_filter("not 1", |v| *v != 1), damage in vec(mutation(), 0..3)) {
        let mut file = build(&plan).file();
        file[4..6].copy_from_slice(&version.to_le_bytes());
        let mut rest = file.split_off(6);
        for m in &damage {
            mutate(&mut rest, m);
        }
        // Keep a whole header: a file shorter than one is refused for its length.
        rest.resize(rest.len().max(HEADER_BYTES - 6), 0);
        file.extend(rest);
        prop_assert_eq!(Model::parse(&file).unwrap_err(), Error::Version { found: version, supported: VERSION });
    }

    /// Arbitrary payloads behind a valid header reach the decoder.
    #[test]
    fn parse_never_panics_after_a_valid_header(payload in vec(any::<u8>(), 0..2000), seed in any::<u64>()) {
        let file = with_header(&payload);
        match Model::parse(&file) {
            Ok(model) => exercise(&model, seed)?,
            Err(e) => prop_assert!(!is_header_error(&e), "{:?}", e),
        }
    }

    /// A well-formed precision and input section (so the decoder gets as far as the
    /// layers), then random layer bytes behind a layer count.
    #[test]
    fn parse_never_panics_on_random_layers(
        int8 in any::<bool>(),
        (channels, height, width) in (1usize..=3, 1usize..=12, 1usize..=12),
        zero_point in any::<i8>(),
        count in 0u8..=17,
        layers in vec(prop_oneof![0u8..=5, any::<u8>()], 0..400),
        seed in any::<u64>(),
    ) {
        let value_bytes = if int8 { 1 } else { 4 };
        let mut payload = vec![u8::from(int8), channels as u8, height as u8, width as u8, 0];
        varint(channels * 256 * value_bytes, &mut payload);
        payload.extend(Rng(seed).bytes(channels * 256 * value_bytes));
        payload.extend(0.5f32.to_le_bytes());
        payload.push(zero_point as u8);
        payload.push(count);
        payload.extend(&layers);
        let file = with_header(&payload);
        match Model::parse(&file) {
            Ok(model) => {
                prop_assert!((1..=16).contains(&model.layers().count()));
                exercise(&model, seed)?;
            }
            Err(e) => prop_assert!(!is_header_error(&e), "{:?}", e),
        }
    }

    /// Damaged model files. Without a new header, any change is caught by the header
    /// checks (the CRC guards the payload). With the header recomputed, the damage reaches
    /// the decoder and the shape checks: a model or an error, and a parsed model runs.
    #[test]
    fn parse_never_panics_on_damaged_models(plan in plan(), damage in vec(mutation(), 1..5), seed in any::<u64>()) {
        let owned = build(&plan);
        let original = owned.file();

        let mut file = original.clone();
        for m in &damage {
            mutate(&mut file, m);
        }
        let result = Model::parse(&file);
        if file != original {
            prop_assert!(result.as_ref().is_err_and(is_header_error), "{:?}", result);
        }

        let mut payload = owned.payload();
        for m in &damage {
            mutate(&mut payload, m);
        }
        let file = with_header(&payload);
        match Model::parse(&file) {
            Ok(model) => exercise(&model, seed)?,
            Err(e) => prop_assert!(!is_header_error(&e), "{:?}", e),
        }
    }

    /// A valid payload with bytes after it, or cut short, behind a header that matches.
    #[test]
    fn trailing_and_missing_payload_bytes_are_refused(plan in plan(), extra in vec(any::<u8>(), 1..16), cut in any::<Index>()) {
        let payload = build(&plan).payload();
        let mut longer = payload.clone();
        longer.extend(&extra);
        prop_assert_eq!(
            Model::parse(&with_header(&longer)).unwrap_err(),
            Error::Format { what: "bytes left after the model definition" }
        );
        let shorter = &payload[..cut.index(payload.len())];
        prop_assert_eq!(Model::parse(&with_header(shorter)).unwrap_err(), Error::Decode);
    }
}
