//! The f32 kernels of `core-nostd` against burn's operators (burn-ndarray, the plain
//! reference backend) on random shapes, and the padding convention the trainer and the core
//! share.

use burn::module::Module;
use burn::prelude::*;
use burn::tensor::module::{avg_pool2d, conv2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, ConvOptions, MaxPoolOptions};
use core_nostd::{Shape, conv, dense, pool};
use proptest::prelude::*;

#[allow(deprecated)]
fn reference_device() -> Device {
    Device::ndarray()
}

fn values(len: usize) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(-1.0f32..1.0, len)
}

fn assert_close(got: &[f32], expected: &[f32]) {
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let tolerance = 1e-4 * (1.0 + e.abs());
        assert!((g - e).abs() <= tolerance, "value {i}: core {g}, burn {e}");
    }
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Shapes up to 16x16 and 8 channels, kernels of 1 to 9 (odd and even), 1 to 4 filters.
fn conv_case() -> impl Strategy<Value = (Shape, usize, usize, Vec<f32>, Vec<f32>, Vec<f32>)> {
    (
        1usize..=8,
        1usize..=16,
        1usize..=16,
        prop::sample::select(vec![1usize, 2, 3, 4, 5, 6, 9]),
        1usize..=4,
    )
        .prop_flat_map(|(channels, height, width, kernel, filters)| {
            let shape = Shape {
                channels,
                height,
                width,
            };
            (
                Just(shape),
                Just(kernel),
                Just(filters),
                values(channels * height * width),
                values(filters * channels * kernel * kernel),
                values(filters),
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn conv2d_matches_burn((shape, kernel, filters, input, weights, bias) in conv_case(), relu in any::<bool>()) {
        let device = reference_device();
        let (before, after) = conv::same_padding(kernel);
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, shape.channels, shape.height, shape.width]), &device);
        let w = Tensor::<4>::from_data(TensorData::new(weights.clone(), [filters, shape.channels, kernel, kernel]), &device);
        let b = Tensor::<1>::from_data(TensorData::new(bias.clone(), [filters]), &device);
        let options = ConvOptions::new_with_padding([1, 1], [(before, after), (before, after)], [1, 1], 1);
        let mut expected = conv2d(x, w, Some(b), options);
        if relu {
            expected = burn::tensor::activation::relu(expected);
        }

        let mut out = vec![0.0f32; filters * shape.height * shape.width];
        conv::conv2d_f32(&input, shape, &weights, &bias, kernel, relu, &mut out).unwrap();
        assert_close(&out, &to_vec(expected));
    }

    #[test]
    fn pooling_matches_burn(
        (shape, input) in (1usize..=8, 1usize..=16, 1usize..=16).prop_flat_map(|(c, h, w)| {
            (Just(Shape { channels: c, height: h, width: w }), values(c * h * w))
        }),
        size in prop::sample::select(vec![2usize, 4]),
    ) {
        prop_assume!(size <= shape.height && size <= shape.width);
        let device = reference_device();
        let out_shape = pool::pooled(shape, size).unwrap();
        let x = Tensor::<4>::from_data(TensorData::new(input.clone(), [1, shape.channels, shape.height, shape.width]), &device);
        let window = [size, size];

        let expected = max_pool2d(x.clone(), MaxPoolOptions::new(window).with_stride(window));
        let mut out = vec![0.0f32; out_shape.len().unwrap()];
        pool::max_pool_f32(&input, shape, size, &mut out).unwrap();
        assert_close(&out, &to_vec(expected));

        let expected = avg_pool2d(x, AvgPoolOptions::new(window).with_stride(window));
        pool::avg_pool_f32(&input, shape, size, &mut out).unwrap();
        assert_close(&out, &to_vec(expected));
    }

    #[test]
    fn dense_matches_burn(
        (inputs, outputs, input, weights, bias) in (1usize..=64, 1usize..=16).prop_flat_map(|(i, o)| {
            (Just(i), Just(o), values(i), values(i * o), values(o))
        }),
    ) {
        let device = reference_device();
        // burn's Linear stores [input][output]; the core reads one row per output unit.
        let mut linear = burn::nn::LinearConfig::new(inputs, outputs).init(&device);
        let transposed: Vec<f32> = (0..inputs * outputs).map(|k| weights[(k % outputs) * inputs + k / outputs]).collect();
        linear.weight = burn::module::Param::from_data(TensorData::new(transposed, [inputs, outputs]), &device);
        linear.bias = Some(burn::module::Param::from_data(TensorData::new(bias.clone(), [outputs]), &device));
        let x = Tensor::<2>::from_data(TensorData::new(input.clone(), [1, inputs]), &device);
        let expected = to_vec(linear.valid().forward(x));

        let mut out = vec![0.0f32; outputs];
        dense::dense_f32(&input, &weights, &bias, false, &mut out).unwrap();
        assert_close(&out, &expected);
    }
}

#[test]
fn trainer_and_core_pad_alike() {
    for kernel in 1..=16 {
        assert_eq!(
            host_trainer::model::same_padding(kernel),
            conv::same_padding(kernel),
            "kernel {kernel}"
        );
    }
}
