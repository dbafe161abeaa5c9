//! From a trained burn network to the model files `core-nostd` runs: the float network in
//! the core's layer order and layouts, its f32 model file, and the Rust source a firmware
//! includes to size its arena at compile time.

use std::path::Path;

use anyhow::{Context, bail};
use core_nostd::format::{
    self, Input, Layer, ModelDef, PixelFormat, Precision, Quantization, Weights,
};
use core_nostd::{Shape, conv, dense, pool};

use crate::data::{CHANNELS, IMAGE_SIDE};
use crate::model::{Activation, Cnn, Pool};
use crate::train::Normalization;

/// One layer of a float network, in the core's order and layouts.
#[derive(Debug, Clone, PartialEq)]
pub enum FloatLayer {
    /// Convolution, "same" padding, stride 1; weights `[out][in][ky][kx]`.
    Conv {
        /// Side of the square kernel.
        kernel: usize,
        /// Whether a ReLU follows.
        relu: bool,
        /// Weights.
        weights: Vec<f32>,
        /// One bias per output channel.
        bias: Vec<f32>,
    },
    /// Max pooling with window and stride `size`.
    MaxPool(usize),
    /// Average pooling with window and stride `size`.
    AvgPool(usize),
    /// Dense layer on the flattened input; weights `[out][in]`.
    Dense {
        /// Whether a ReLU follows.
        relu: bool,
        /// Weights.
        weights: Vec<f32>,
        /// One bias per output unit.
        bias: Vec<f32>,
    },
}

/// A trained network as plain arrays: what the quantizer and the model files start from.
#[derive(Debug, Clone, PartialEq)]
pub struct FloatNet {
    /// Per input channel, the network input for each pixel value.
    pub table: [[f32; 256]; CHANNELS],
    /// The layers, input first.
    pub layers: Vec<FloatLayer>,
}

impl FloatNet {
    /// The parameters of `model`, whose inputs are normalized with `normalization`.
    pub fn from_cnn(model: &Cnn, normalization: &Normalization) -> anyhow::Result<Self> {
        let spec = model.spec();
        let mut parameters = model.parameters()?.into_iter();
        let mut next = || {
            parameters
                .next()
                .context("the network has fewer layers than its spec")
        };
        let mut layers = Vec::new();
        for block in &spec.conv {
            let (weights, bias) = next()?;
            layers.push(FloatLayer::Conv {
                kernel: block.kernel,
                relu: block.activation == Activation::Relu,
                weights,
                bias,
            });
            match block.pool {
                Pool::Max => layers.push(FloatLayer::MaxPool(block.pool_size)),
                Pool::Avg => layers.push(FloatLayer::AvgPool(block.pool_size)),
                Pool::None => {}
            }
        }
        for layer in &spec.dense {
            let (weights, bias) = next()?;
            layers.push(FloatLayer::Dense {
                relu: layer.activation == Activation::Relu,
                weights,
                bias,
            });
        }
        let (weights, bias) = next()?;
        layers.push(FloatLayer::Dense {
            relu: false,
            weights,
            bias,
        });
        Ok(Self {
            table: normalization.table(),
            layers,
        })
    }

    /// The input shape of every network here: a 3x32x32 image.
    pub fn input_shape(&self) -> Shape {
        Shape {
            channels: CHANNELS,
            height: IMAGE_SIDE,
            width: IMAGE_SIDE,
        }
    }

    /// The output of every layer for one image (CHW pixels), computed with the core's f32
    /// kernels: the activations calibration measures.
    pub fn activations(&self, pixels: &[u8]) -> anyhow::Result<Vec<Vec<f32>>> {
        let mut shape = self.input_shape();
        let plane = shape.height * shape.width;
        let mut current: Vec<f32> = pixels
            .chunks(plane)
            .zip(&self.table)
            .flat_map(|(channel, table)| channel.iter().map(|&p| table[p as usize]))
            .collect();
        let mut outputs = Vec::with_capacity(self.layers.len());
        for layer in &self.layers {
            let (next, next_shape) = match layer {
                FloatLayer::Conv {
                    kernel,
                    relu,
                    weights,
                    bias,
                } => {
                    let out_shape = Shape {
                        channels: bias.len(),
                        ..shape
                    };
                    let mut out = vec![0.0; out_shape.len().unwrap_or(0)];
                    conv::conv2d_f32(&current, shape, weights, bias, *kernel, *relu, &mut out)?;
                    (out, out_shape)
                }
                FloatLayer::MaxPool(size) | FloatLayer::AvgPool(size) => {
                    let out_shape = pool::pooled(shape, *size)?;
                    let mut out = vec![0.0; out_shape.len().unwrap_or(0)];
                    if matches!(layer, FloatLayer::MaxPool(_)) {
                        pool::max_pool_f32(&current, shape, *size, &mut out)?;
                    } else {
                        pool::avg_pool_f32(&current, shape, *size, &mut out)?;
                    }
                    (out, out_shape)
                }
                FloatLayer::Dense {
                    relu,
                    weights,
                    bias,
                } => {
                    let mut out = vec![0.0; bias.len()];
                    dense::dense_f32(&current, weights, bias, *relu, &mut out)?;
                    let out_shape = Shape {
                        channels: bias.len(),
                        height: 1,
                        width: 1,
                    };
                    (out, out_shape)
                }
            };
            outputs.push(next.clone());
            current = next;
            shape = next_shape;
        }
        Ok(outputs)
    }

    /// The f32 model file of this network.
    pub fn to_f32_model(&self) -> anyhow::Result<Vec<u8>> {
        let table = self
            .table
            .iter()
            .flatten()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let layers = self.owned_layers(|_, weights, bias| Ok(OwnedParams::f32(weights, bias)))?;
        encode(Precision::F32, table, Quantization::NONE, &layers)
    }

    /// The layers as the model file stores them, with `params(index, weights, bias)` giving
    /// the stored parameters of layer `index` (convolutions and dense layers; pooling has
    /// none). Called in layer order.
    pub(crate) fn owned_layers(
        &self,
        mut params: impl FnMut(usize, &[f32], &[f32]) -> anyhow::Result<OwnedParams>,
    ) -> anyhow::Result<Vec<OwnedLayer>> {
        self.layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                Ok(match layer {
                    FloatLayer::Conv {
                        kernel,
                        relu,
                        weights,
                        bias,
                    } => OwnedLayer::Conv {
                        kernel: *kernel,
                        relu: *relu,
                        params: params(index, weights, bias)?,
                    },
                    FloatLayer::MaxPool(size) => OwnedLayer::MaxPool(*size),
                    FloatLayer::AvgPool(size) => OwnedLayer::AvgPool(*size),
                    FloatLayer::Dense {
                        relu,
                        weights,
                        bias,
                    } => OwnedLayer::Dense {
                        relu: *relu,
                        params: params(index, weights, bias)?,
                    },
                })
            })
            .collect()
    }
}

/// Parameters of a layer as the model file stores them.
#[derive(Debug, Clone)]
pub(crate) struct OwnedParams {
    /// Weight bytes.
    pub weights: Vec<u8>,
    /// Bias bytes, 4 per output.
    pub bias: Vec<u8>,
    /// Requantization bytes, 5 per output (int8 only).
    pub scales: Vec<u8>,
    /// Output quantization.
    pub output: Quantization,
    /// Number of outputs.
    pub outputs: usize,
}

impl OwnedParams {
    fn f32(weights: &[f32], bias: &[f32]) -> Self {
        Self {
            weights: weights.iter().flat_map(|v| v.to_le_bytes()).collect(),
            bias: bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
            scales: Vec::new(),
            output: Quantization::NONE,
            outputs: bias.len(),
        }
    }

    fn borrowed(&self) -> Weights<'_> {
        Weights {
            weights: &self.weights,
            bias: &self.bias,
            scales: &self.scales,
            output: self.output,
        }
    }
}

/// A layer as the model file stores it, owning its bytes.
#[derive(Debug, Clone)]
pub(crate) enum OwnedLayer {
    Conv {
        kernel: usize,
        relu: bool,
        params: OwnedParams,
    },
    MaxPool(usize),
    AvgPool(usize),
    Dense {
        relu: bool,
        params: OwnedParams,
    },
}

fn narrow<T: TryFrom<usize>>(value: usize, what: &str) -> anyhow::Result<T> {
    T::try_from(value).map_err(|_| anyhow::anyhow!("{what} {value} does not fit the model format"))
}

/// Encodes a model file: header, then the postcard payload; checks it parses.
pub(crate) fn encode(
    precision: Precision,
    table: Vec<u8>,
    input_quantization: Quantization,
    layers: &[OwnedLayer],
) -> anyhow::Result<Vec<u8>> {
    let mut list = heapless::Vec::<Layer<'_>, { format::MAX_LAYERS }>::new();
    for layer in layers {
        let layer = match layer {
            OwnedLayer::Conv {
                kernel,
                relu,
                params,
            } => Layer::Conv {
                filters: narrow(params.outputs, "filter count")?,
                kernel: narrow(*kernel, "kernel size")?,
                relu: *relu,
                params: params.borrowed(),
            },
            OwnedLayer::MaxPool(size) => Layer::MaxPool {
                size: narrow(*size, "pool size")?,
            },
            OwnedLayer::AvgPool(size) => Layer::AvgPool {
                size: narrow(*size, "pool size")?,
            },
            OwnedLayer::Dense { relu, params } => Layer::Dense {
                units: narrow(params.outputs, "unit count")?,
                relu: *relu,
                params: params.borrowed(),
            },
        };
        if list.push(layer).is_err() {
            bail!(
                "the network has more than {} layers, the most the model format holds",
                format::MAX_LAYERS
            );
        }
    }
    let def = ModelDef {
        precision,
        input: Input {
            channels: CHANNELS as u16,
            height: IMAGE_SIDE as u16,
            width: IMAGE_SIDE as u16,
            pixel_format: PixelFormat::U8Planar,
            table: &table,
            quantization: input_quantization,
        },
        layers: list,
    };
    let payload = postcard::to_allocvec(&def).context("cannot encode the model")?;
    let header = format::header(&payload).context("the model is larger than 4 GiB")?;
    let mut file = header.to_vec();
    file.extend_from_slice(&payload);
    core_nostd::Model::parse(&file)
        .map_err(|e| anyhow::anyhow!("the encoded model does not parse back: {e}"))?;
    Ok(file)
}

/// Rust source that embeds the model file `model_file_name` (a path relative to the
/// source's folder, or absolute) and gives the sizes a firmware needs at compile time.
pub fn rust_source(model: &[u8], model_file_name: &str) -> anyhow::Result<String> {
    let parsed =
        core_nostd::Model::parse(model).map_err(|e| anyhow::anyhow!("not a model file: {e}"))?;
    Ok(format!(
        "// Written by `host-trainer quantize`: the model file and the buffer sizes it needs.\n\
         // Include it with `include!`; the model file is {model_file_name:?}, from this file's folder.\n\
         \n\
         /// Bytes of the model file.\n\
         pub const MODEL_BYTES: usize = {model_bytes};\n\
         \n\
         /// Arena bytes `Model::infer_*` needs (exact minimum).\n\
         pub const ARENA_BYTES: usize = {arena};\n\
         \n\
         /// Number of class scores.\n\
         pub const CLASSES: usize = {classes};\n\
         \n\
         /// The model file, for `core_nostd::Model::parse`.\n\
         pub static MODEL: [u8; MODEL_BYTES] = *include_bytes!({model_file_name:?});\n",
        model_bytes = model.len(),
        arena = parsed.arena_bytes(),
        classes = parsed.classes(),
    ))
}

/// Writes `model` to `path` and, with `rust`, the Rust source that embeds it; both
/// atomically.
pub fn write_model(path: &Path, model: &[u8], rust: Option<&Path>) -> anyhow::Result<()> {
    crate::output::write_atomic(path, model)?;
    if let Some(rust) = rust {
        // `include_bytes!` reads a relative path from the source's folder: the bare name
        // where both files share a folder, the model's absolute path otherwise.
        let folder = crate::output::folder_of(path);
        let target = if folder.is_some() && folder == crate::output::folder_of(rust) {
            path.file_name().map(std::path::PathBuf::from)
        } else {
            path.canonicalize().ok()
        };
        let name = target
            .as_deref()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{}: the model file needs a UTF-8 path", path.display()))?;
        crate::output::write_atomic(rust, rust_source(model, name)?.as_bytes())?;
    }
    Ok(())
}

/// Accuracy of a core-nostd model on `test`, all cores in parallel, each with its own arena.
pub fn core_accuracy(
    model: &core_nostd::Model<'_>,
    test: &crate::data::Dataset,
    show_progress: bool,
) -> anyhow::Result<f64> {
    use rayon::prelude::*;
    let bar = crate::progress::images_bar(test.len() as u64, "core-nostd", show_progress);
    let words = model.arena_bytes().div_ceil(4);
    let correct = (0..test.len())
        .into_par_iter()
        .map_init(
            || vec![0u32; words],
            |arena, index| {
                let arena: &mut [u8] = bytemuck::cast_slice_mut(arena.as_mut_slice());
                let class = model
                    .classify(test.image(index), arena)
                    .map_err(|e| anyhow::anyhow!("test image {index}: {e}"))?;
                bar.inc(1);
                Ok::<usize, anyhow::Error>(usize::from(class == test.labels[index] as usize))
            },
        )
        .try_reduce(|| 0, |a, b| Ok(a + b))?;
    bar.finish_and_clear();
    Ok(correct as f64 / test.len().max(1) as f64)
}
