//! Post-training static quantization to the integer-only int8 scheme of TensorFlow Lite and
//! CMSIS-NN, and the int8 model file that `core-nostd` runs.
//!
//! - Weights: int8, symmetric, one scale per output channel: `scale = max |w| / 127`,
//!   `q = round(w / scale)` in [-127, 127].
//! - Activations: int8, asymmetric, one scale and zero point per tensor, from the range seen
//!   on calibration images (min/max, or a percentile of the values), widened to include 0:
//!   `scale = (max - min) / 255`, `zero_point = round(-128 - min / scale)`.
//! - The input tensor's range is exact: it is the range of the normalization table, which
//!   the model file stores as a pixel-to-int8 table.
//! - Biases: int32, `round(b / (input scale x weight scale))`.
//! - Requantization of each output channel by `input scale x weight scale / output scale`,
//!   in the fixed point of [`core_nostd::Requantize`]; a ReLU becomes the lower bound of the
//!   output clamp. Pooling keeps its input's scale and zero point.
//!
//! Rounding here is to nearest, ties away from zero (`f32::round`).

use anyhow::{Context, bail};
use core_nostd::Requantize;
use core_nostd::format::{Precision, Quantization};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::export::{FloatNet, OwnedParams, encode};

/// How activation ranges are taken from the calibration images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum RangeMethod {
    /// The smallest and largest value seen.
    MinMax,
    /// The given percentile of the values (for example 99.99) and its mirror (0.01): a few
    /// outliers then do not stretch the scale.
    Percentile(f64),
}

/// Values kept per layer and image for percentiles: every value of small tensors, an even
/// sample of large ones.
const SAMPLES_PER_IMAGE: usize = 4096;

/// The range of each layer's output over the calibration images.
pub fn calibrate(
    net: &FloatNet,
    images: &[&[u8]],
    method: RangeMethod,
) -> anyhow::Result<Vec<(f32, f32)>> {
    if images.is_empty() {
        bail!("calibration needs at least one image");
    }
    let per_image: Vec<Vec<(f32, f32, Vec<f32>)>> = images
        .par_iter()
        .map(|pixels| {
            let activations = net.activations(pixels)?;
            Ok(activations
                .into_iter()
                .map(|values| {
                    let (min, max) = values
                        .iter()
                        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                            (lo.min(v), hi.max(v))
                        });
                    let sample = match method {
                        RangeMethod::MinMax => Vec::new(),
                        RangeMethod::Percentile(_) => {
                            let step = values.len().div_ceil(SAMPLES_PER_IMAGE).max(1);
                            values.into_iter().step_by(step).collect()
                        }
                    };
                    (min, max, sample)
                })
                .collect())
        })
        .collect::<anyhow::Result<_>>()?;

    let layers = net.layers.len();
    let mut ranges = Vec::with_capacity(layers);
    for layer in 0..layers {
        let range = match method {
            RangeMethod::MinMax => per_image
                .iter()
                .map(|image| (image[layer].0, image[layer].1))
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), (a, b)| {
                    (lo.min(a), hi.max(b))
                }),
            RangeMethod::Percentile(percentile) => {
                if !(50.0..=100.0).contains(&percentile) {
                    bail!("the calibration percentile must lie in [50, 100], not {percentile}");
                }
                let mut values: Vec<f32> = per_image
                    .iter()
                    .flat_map(|image| image[layer].2.iter().copied())
                    .collect();
                let last = values.len() - 1;
                let high = ((percentile / 100.0) * last as f64).round() as usize;
                let low = last - high;
                let (_, &mut lo, _) = values.select_nth_unstable_by(low, f32::total_cmp);
                let (_, &mut hi, _) = values.select_nth_unstable_by(high, f32::total_cmp);
                (lo, hi)
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

/// The asymmetric int8 quantization of values in `[min, max]`, widened to include 0.
pub fn activation_quantization(min: f32, max: f32) -> Quantization {
    let min = min.min(0.0);
    let max = max.max(0.0);
    let scale = if max > min { (max - min) / 255.0 } else { 1.0 };
    let zero_point = (-128.0 - min / scale).round().clamp(-128.0, 127.0) as i8;
    Quantization { scale, zero_point }
}

/// `value` quantized with `quantization`, saturating to int8.
pub fn quantize_value(value: f32, quantization: Quantization) -> i8 {
    (value / quantization.scale + quantization.zero_point as f32)
        .round()
        .clamp(-128.0, 127.0) as i8
}

/// What `q` stands for under `quantization`.
pub fn dequantize_value(q: i8, quantization: Quantization) -> f32 {
    quantization.scale * (q as i32 - quantization.zero_point as i32) as f32
}

/// Per-output-channel symmetric int8 weights: the values and one scale per channel.
pub fn quantize_weights(weights: &[f32], outputs: usize) -> (Vec<i8>, Vec<f32>) {
    let per_output = weights.len() / outputs.max(1);
    let mut values = Vec::with_capacity(weights.len());
    let mut scales = Vec::with_capacity(outputs);
    for row in weights.chunks(per_output.max(1)) {
        let largest = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = if largest > 0.0 { largest / 127.0 } else { 1.0 };
        values.extend(
            row.iter()
                .map(|w| (w / scale).round().clamp(-127.0, 127.0) as i8),
        );
        scales.push(scale);
    }
    (values, scales)
}

/// Quantizes a layer's parameters given its input and output quantization.
fn quantize_params(
    weights: &[f32],
    bias: &[f32],
    input: Quantization,
    output: Quantization,
) -> anyhow::Result<OwnedParams> {
    let (values, weight_scales) = quantize_weights(weights, bias.len());
    let mut bias_bytes = Vec::with_capacity(bias.len() * 4);
    let mut scale_bytes = Vec::with_capacity(bias.len() * 5);
    for (&b, &weight_scale) in bias.iter().zip(&weight_scales) {
        let accumulator_scale = input.scale as f64 * weight_scale as f64;
        let q = (b as f64 / accumulator_scale)
            .round()
            .clamp(i32::MIN as f64, i32::MAX as f64) as i32;
        bias_bytes.extend_from_slice(&q.to_le_bytes());
        let requantize = Requantize::from_scale(accumulator_scale / output.scale as f64)
            .map_err(|e| anyhow::anyhow!("a requantization scale is out of range: {e}"))?;
        scale_bytes.extend_from_slice(&requantize.to_bytes());
    }
    Ok(OwnedParams {
        weights: values.iter().map(|&v| v as u8).collect(),
        bias: bias_bytes,
        scales: scale_bytes,
        output,
        outputs: bias.len(),
    })
}

/// The int8 model file of `net`, with activation ranges from [`calibrate`].
pub fn int8_model(net: &FloatNet, ranges: &[(f32, f32)]) -> anyhow::Result<Vec<u8>> {
    if ranges.len() != net.layers.len() {
        bail!(
            "{} calibration ranges for {} layers",
            ranges.len(),
            net.layers.len()
        );
    }
    let (lo, hi) = net
        .table
        .iter()
        .flatten()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    let input_quantization = activation_quantization(lo, hi);
    let table = net
        .table
        .iter()
        .flatten()
        .map(|&v| quantize_value(v, input_quantization) as u8)
        .collect();

    // A layer with weights gets its output range's quantization, which the next layer
    // reads; pooling keeps its input's.
    let mut current = input_quantization;
    let layers = net.owned_layers(|index, weights, bias| {
        let (min, max) = ranges[index];
        let output = activation_quantization(min, max);
        let params = quantize_params(weights, bias, current, output);
        current = output;
        params
    })?;
    encode(Precision::Int8, table, input_quantization, &layers)
        .context("cannot build the int8 model")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activation_ranges_include_zero_and_map_it_exactly() {
        let relu = activation_quantization(0.0, 2.55);
        assert_eq!(relu.zero_point, -128);
        assert!((relu.scale - 0.01).abs() < 1e-7);
        let q = activation_quantization(-1.0, 3.0);
        assert_eq!(q.zero_point, -64); // -128 + 1 / (4 / 255) = -64.25 -> -64
        assert_eq!(dequantize_value(q.zero_point, q), 0.0);
        let positive = activation_quantization(0.5, 1.0);
        assert_eq!(positive.zero_point, -128);
        let constant = activation_quantization(0.0, 0.0);
        assert_eq!(constant.scale, 1.0);
    }

    #[test]
    fn quantize_then_dequantize_is_within_half_a_step() {
        let q = activation_quantization(-0.7, 2.3);
        for i in 0..=1000 {
            let v = -0.7 + 3.0 * i as f32 / 1000.0;
            let back = dequantize_value(quantize_value(v, q), q);
            assert!((back - v).abs() <= q.scale / 2.0 + 1e-6, "{v} -> {back}");
        }
        // Outside the range the value saturates.
        assert_eq!(quantize_value(100.0, q), 127);
    }

    #[test]
    fn weights_get_one_symmetric_scale_per_output() {
        let (values, scales) =
            quantize_weights(&[0.504, -1.0, 0.25, 0.0, 0.0, 0.0, 2.54, -0.011], 2);
        assert_eq!(scales[0], 1.0 / 127.0);
        assert_eq!(&values[..4], &[64, -127, 32, 0]); // 64.01 and 31.75
        assert_eq!(scales[1], 2.54 / 127.0);
        assert_eq!(&values[4..], &[0, 0, 127, -1]); // -0.55 rounds to -1
        let (zeros, scales) = quantize_weights(&[0.0; 3], 1);
        assert_eq!((zeros, scales), (vec![0, 0, 0], vec![1.0]));
    }
}
