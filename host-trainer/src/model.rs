//! Architecture specs (serde; JSON, TOML or a preset name) and the burn CNN they describe.
//!
//! A network is a list of convolution blocks (convolution with "same" padding and stride 1,
//! an optional ReLU, an optional pooling), then hidden dense layers, then a dense output of
//! one score per class. Input is 3x32x32.

use std::path::Path;

use anyhow::{Context, bail};
use burn::module::{Initializer, Param};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};
use serde::{Deserialize, Serialize};

use crate::data::{CHANNELS, IMAGE_SIDE, NUM_CLASSES};

/// The non-linearity after a convolution or hidden dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `max(0, x)`.
    #[default]
    Relu,
    /// The identity.
    None,
}

/// Pooling after a convolution, with window and stride both equal to the pool size; a
/// trailing row or column that does not fill a window is dropped (Keras's "valid").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Pool {
    /// Maximum over the window.
    Max,
    /// Mean over the window.
    Avg,
    /// No pooling.
    #[default]
    None,
}

fn default_pool_size() -> usize {
    2
}

/// One convolution block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConvBlock {
    /// Output channels.
    pub filters: usize,
    /// Side of the square kernel.
    pub kernel: usize,
    /// Non-linearity after the convolution (default `relu`).
    #[serde(default)]
    pub activation: Activation,
    /// Pooling after the activation (default `none`).
    #[serde(default)]
    pub pool: Pool,
    /// Side of the pooling window and its stride (default 2).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

/// One hidden dense layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DenseLayer {
    /// Output units.
    pub units: usize,
    /// Non-linearity (default `relu`).
    #[serde(default)]
    pub activation: Activation,
}

/// A whole network: convolution blocks, then hidden dense layers, then a 10-way output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchSpec {
    /// Convolution blocks, input first.
    #[serde(default)]
    pub conv: Vec<ConvBlock>,
    /// Hidden dense layers between the flattened features and the output.
    #[serde(default)]
    pub dense: Vec<DenseLayer>,
}

/// The preset names, as `--preset` takes them.
pub const PRESETS: [&str; 4] = [
    "tutorial-1conv",
    "tutorial-2conv",
    "tutorial-hidden",
    "tutorial-tuned",
];

fn block(filters: usize, kernel: usize, activation: Activation, pool_size: usize) -> ConvBlock {
    ConvBlock {
        filters,
        kernel,
        activation,
        pool: Pool::Max,
        pool_size,
    }
}

fn relu_dense(units: usize) -> DenseLayer {
    DenseLayer {
        units,
        activation: Activation::Relu,
    }
}

impl ArchSpec {
    /// The tutorial's models by name.
    pub fn preset(name: &str) -> anyhow::Result<Self> {
        let spec = match name {
            "tutorial-1conv" => Self {
                conv: vec![block(32, 3, Activation::None, 2)],
                dense: vec![],
            },
            "tutorial-2conv" => Self {
                conv: vec![
                    block(32, 3, Activation::Relu, 2),
                    block(32, 3, Activation::Relu, 2),
                ],
                dense: vec![],
            },
            "tutorial-hidden" => Self {
                dense: vec![relu_dense(400)],
                ..Self::preset("tutorial-2conv")?
            },
            "tutorial-tuned" => Self {
                conv: vec![
                    block(32, 3, Activation::Relu, 2),
                    block(32, 9, Activation::Relu, 4),
                ],
                dense: vec![relu_dense(750)],
            },
            other => bail!(
                "unknown preset '{other}'; the presets are {}",
                PRESETS.join(", ")
            ),
        };
        Ok(spec)
    }

    /// Reads a spec from a `.json` or `.toml` file and checks it.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the architecture file {}", path.display()))?;
        let is_toml = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("toml"));
        let spec: Self = if is_toml {
            toml::from_str(&text)
                .with_context(|| format!("{}: not a valid spec", path.display()))?
        } else {
            serde_json::from_str(&text)
                .with_context(|| format!("{}: not a valid spec", path.display()))?
        };
        spec.validate()
            .with_context(|| format!("{}: not a usable architecture", path.display()))?;
        Ok(spec)
    }

    /// Checks that every size is positive and every pooling fits the feature map before it.
    pub fn validate(&self) -> anyhow::Result<()> {
        let mut side = IMAGE_SIDE;
        for (index, block) in self.conv.iter().enumerate() {
            if block.filters == 0 || block.kernel == 0 {
                bail!("conv[{index}]: filters and kernel must be at least 1");
            }
            if block.kernel > side {
                bail!(
                    "conv[{index}]: kernel {} is larger than its {side}x{side} input",
                    block.kernel
                );
            }
            if block.pool != Pool::None {
                if block.pool_size == 0 || block.pool_size > side {
                    bail!(
                        "conv[{index}]: pool_size {} does not fit its {side}x{side} input",
                        block.pool_size
                    );
                }
                side /= block.pool_size;
            }
        }
        if let Some(index) = self.dense.iter().position(|d| d.units == 0) {
            bail!("dense[{index}]: units must be at least 1");
        }
        Ok(())
    }

    /// Side of the feature map after the last convolution block.
    pub fn output_side(&self) -> usize {
        self.conv
            .iter()
            .fold(IMAGE_SIDE, |side, block| match block.pool {
                Pool::None => side,
                _ => side / block.pool_size,
            })
    }

    /// Number of features the first dense layer sees.
    pub fn flattened_features(&self) -> usize {
        let channels = self.conv.last().map_or(CHANNELS, |b| b.filters);
        channels * self.output_side() * self.output_side()
    }

    /// Trainable parameters (weights and biases).
    pub fn parameter_count(&self) -> usize {
        let mut channels = CHANNELS;
        let mut count = 0;
        for block in &self.conv {
            count += block.filters * (channels * block.kernel * block.kernel + 1);
            channels = block.filters;
        }
        let mut features = self.flattened_features();
        for layer in &self.dense {
            count += layer.units * (features + 1);
            features = layer.units;
        }
        count + NUM_CLASSES * (features + 1)
    }

    /// One line describing the network, for logs.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        for block in &self.conv {
            let mut part = format!("conv {}@{}x{}", block.filters, block.kernel, block.kernel);
            if block.activation == Activation::Relu {
                part.push_str(" relu");
            }
            match block.pool {
                Pool::Max => part.push_str(&format!(" maxpool {}", block.pool_size)),
                Pool::Avg => part.push_str(&format!(" avgpool {}", block.pool_size)),
                Pool::None => {}
            }
            parts.push(part);
        }
        for layer in &self.dense {
            let activation = if layer.activation == Activation::Relu {
                " relu"
            } else {
                ""
            };
            parts.push(format!("dense {}{activation}", layer.units));
        }
        parts.push(format!("dense {NUM_CLASSES}"));
        format!(
            "{} ({} parameters)",
            parts.join(" -> "),
            self.parameter_count()
        )
    }
}

/// Padding before and after one spatial axis for a "same" convolution of stride 1: the
/// extra row or column of an even kernel goes after (bottom, right), as Keras does.
pub fn same_padding(kernel: usize) -> (usize, usize) {
    let total = kernel - 1;
    (total / 2, total - total / 2)
}

/// The CNN an [`ArchSpec`] describes.
#[derive(Module, Debug)]
pub struct Cnn {
    convs: Vec<Conv2d>,
    hidden: Vec<Linear>,
    output: Linear,
    #[module(skip)]
    spec: ArchSpec,
}

impl Cnn {
    /// A network with Glorot-uniform weights and zero biases (Keras's defaults), on `device`.
    pub fn new(spec: &ArchSpec, device: &Device) -> Self {
        let glorot = Initializer::XavierUniform { gain: 1.0 };
        let mut channels = CHANNELS;
        let mut convs = Vec::with_capacity(spec.conv.len());
        for block in &spec.conv {
            let (before, after) = same_padding(block.kernel);
            let mut conv = Conv2dConfig::new([channels, block.filters], [block.kernel; 2])
                .with_padding(PaddingConfig2d::Explicit(before, before, after, after))
                .with_initializer(glorot.clone())
                .init(device);
            conv.bias = Some(Param::from_tensor(Tensor::zeros([block.filters], device)));
            convs.push(conv);
            channels = block.filters;
        }
        let dense = |input: usize, output: usize| {
            let mut linear = LinearConfig::new(input, output)
                .with_initializer(glorot.clone())
                .init(device);
            linear.bias = Some(Param::from_tensor(Tensor::zeros([output], device)));
            linear
        };
        let mut features = spec.flattened_features();
        let mut hidden = Vec::with_capacity(spec.dense.len());
        for layer in &spec.dense {
            hidden.push(dense(features, layer.units));
            features = layer.units;
        }
        Self {
            convs,
            hidden,
            output: dense(features, NUM_CLASSES),
            spec: spec.clone(),
        }
    }

    /// The spec this network was built from.
    pub fn spec(&self) -> &ArchSpec {
        &self.spec
    }

    /// Weights and biases of each convolution and dense layer, input first, in the layouts
    /// of `core-nostd`: convolution weights `[out][in][ky][kx]` (burn's own), dense weights
    /// `[out][in]` (burn stores `[in][out]`).
    pub fn parameters(&self) -> anyhow::Result<Vec<(Vec<f32>, Vec<f32>)>> {
        fn values<const D: usize>(tensor: Tensor<D>) -> anyhow::Result<Vec<f32>> {
            tensor
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .map_err(|e| anyhow::anyhow!("cannot read a parameter tensor: {e:?}"))
        }
        fn bias(bias: &Option<Param<Tensor<1>>>, units: usize) -> anyhow::Result<Vec<f32>> {
            match bias {
                Some(bias) => values(bias.val()),
                None => Ok(vec![0.0; units]),
            }
        }
        let mut parameters = Vec::new();
        for conv in &self.convs {
            let weights = conv.weight.val();
            let filters = weights.dims()[0];
            parameters.push((values(weights)?, bias(&conv.bias, filters)?));
        }
        for linear in self.hidden.iter().chain([&self.output]) {
            let weights = linear.weight.val();
            let units = weights.dims()[1];
            parameters.push((values(weights.transpose())?, bias(&linear.bias, units)?));
        }
        Ok(parameters)
    }

    /// Class scores (logits), `[batch, 10]`, for images `[batch, 3, 32, 32]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x = images;
        for (conv, block) in self.convs.iter().zip(&self.spec.conv) {
            x = conv.forward(x);
            if block.activation == Activation::Relu {
                x = relu(x);
            }
            let window = [block.pool_size; 2];
            x = match block.pool {
                Pool::Max => max_pool2d(x, MaxPoolOptions::new(window).with_stride(window)),
                Pool::Avg => avg_pool2d(x, AvgPoolOptions::new(window).with_stride(window)),
                Pool::None => x,
            };
        }
        let mut x: Tensor<2> = x.flatten(1, 3);
        for (linear, layer) in self.hidden.iter().zip(&self.spec.dense) {
            x = linear.forward(x);
            if layer.activation == Activation::Relu {
                x = relu(x);
            }
        }
        self.output.forward(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_kernels_pad_the_extra_row_after() {
        assert_eq!(same_padding(1), (0, 0));
        assert_eq!(same_padding(3), (1, 1));
        assert_eq!(same_padding(6), (2, 3));
        assert_eq!(same_padding(9), (4, 4));
    }

    #[test]
    fn presets_have_the_tutorials_shapes() {
        let tuned = ArchSpec::preset("tutorial-tuned").unwrap();
        assert_eq!(tuned.output_side(), 4);
        assert_eq!(tuned.flattened_features(), 32 * 4 * 4);
        // 896 + 82,976 + 384,750 + 7,510, counted by hand from the layer shapes.
        assert_eq!(tuned.parameter_count(), 476_132);
        // Counted by hand: conv 32@3x3 is 32 * (3 * 9 + 1) = 896; tutorial-1conv adds
        // 10 * (8,192 + 1); tutorial-2conv adds 32 * (288 + 1) and 10 * (2,048 + 1);
        // tutorial-hidden puts 400 * (2,048 + 1) and 10 * (400 + 1) in place of the latter.
        let counts = [82_826, 30_634, 833_754, 476_132];
        for (name, count) in PRESETS.iter().zip(counts) {
            let spec = ArchSpec::preset(name).unwrap();
            spec.validate().unwrap();
            assert_eq!(spec.parameter_count(), count, "{name}");
        }
        assert!(ArchSpec::preset("resnet").is_err());
    }

    #[test]
    fn forward_keeps_the_spatial_size_for_even_kernels() {
        let device = Device::flex();
        let spec = ArchSpec {
            conv: vec![ConvBlock {
                filters: 4,
                kernel: 6,
                activation: Activation::Relu,
                pool: Pool::Avg,
                pool_size: 4,
            }],
            dense: vec![],
        };
        let model = Cnn::new(&spec, &device);
        let out = model.forward(Tensor::zeros([2, 3, 32, 32], &device));
        assert_eq!(out.dims(), [2, 10]);
    }

    /// The same weights give the same scores on burn-flex and on the plain burn-ndarray
    /// reference, odd and even kernels and both poolings included.
    #[test]
    fn flex_and_ndarray_agree() {
        let spec = ArchSpec {
            conv: vec![
                ConvBlock {
                    filters: 6,
                    kernel: 5,
                    activation: Activation::Relu,
                    pool: Pool::Max,
                    pool_size: 2,
                },
                ConvBlock {
                    filters: 4,
                    kernel: 4,
                    activation: Activation::None,
                    pool: Pool::Avg,
                    pool_size: 4,
                },
            ],
            dense: vec![DenseLayer {
                units: 12,
                activation: Activation::Relu,
            }],
        };
        let flex = Device::flex();
        #[allow(deprecated)]
        let ndarray = Device::ndarray();
        flex.seed(4);
        let model = Cnn::new(&spec, &flex);
        let reference = Cnn::new(&spec, &ndarray).load_record(model.clone().into_record());
        let input: Tensor<4> =
            Tensor::random([3, 3, 32, 32], burn::tensor::Distribution::Default, &flex);
        let expected = reference
            .forward(input.clone().to_device(&ndarray))
            .into_data();
        let got = model.forward(input).into_data();
        got.assert_approx_eq::<f32>(&expected, burn::tensor::Tolerance::relative(1e-4));
    }

    #[test]
    fn specs_read_from_json_and_toml() {
        let dir = tempfile::tempdir().unwrap();
        let json = dir.path().join("a.json");
        std::fs::write(
            &json,
            r#"{"conv":[{"filters":8,"kernel":5,"pool":"max"}],"dense":[{"units":20}]}"#,
        )
        .unwrap();
        let spec = ArchSpec::from_file(&json).unwrap();
        assert_eq!(spec.conv[0].pool_size, 2);
        assert_eq!(spec.dense[0].activation, Activation::Relu);

        let toml = dir.path().join("a.toml");
        std::fs::write(
            &toml,
            "[[conv]]\nfilters = 8\nkernel = 3\npool = \"avg\"\npool_size = 64\n",
        )
        .unwrap();
        let err = format!("{:#}", ArchSpec::from_file(&toml).unwrap_err());
        assert!(err.contains("pool_size 64"), "{err}");
        let mut spec = ArchSpec::preset("tutorial-tuned").unwrap();
        spec.conv[1].kernel = 17;
        let err = spec.validate().unwrap_err().to_string();
        assert!(
            err.contains("conv[1]: kernel 17 is larger than its 16x16 input"),
            "{err}"
        );
        spec.conv[1].kernel = 16;
        spec.validate().unwrap();
    }
}
