//! A parsed model: checked once, then run any number of times in a caller-owned arena.

use crate::classify::argmax;
use crate::format::{
    HEADER_BYTES, Input, Layer, MAGIC, MAX_LAYERS, ModelDef, Precision, VERSION, Weights,
};
use crate::requant::{Requantization, SHIFTS};
use crate::{Error, Shape, conv, crc, dense, pool};

/// A layer with the shapes it reads and writes, worked out by [`Model::parse`].
#[derive(Debug, Clone, Copy)]
struct Step<'a> {
    layer: Layer<'a>,
    input: Shape,
    output: Shape,
}

/// A model borrowed from its file bytes, checked and planned.
///
/// The arena holds the activations in two buffers used in turn (ping-pong): the input
/// values and the output of every second layer go in the first, the other outputs in the
/// second, each sized for the largest tensor it holds. The first buffer starts at the
/// arena's start, the second right after it. int8 models add, after both, the scratch of
/// their largest convolution window (see [`crate::conv::i8_scratch_bytes`]).
/// [`Model::arena_bytes`] is the sum and the exact minimum that [`Model::infer_f32`] and
/// [`Model::infer_i8`] accept; f32 models also need the arena aligned to 4 bytes.
#[derive(Debug, Clone)]
pub struct Model<'a> {
    precision: Precision,
    input: Input<'a>,
    input_shape: Shape,
    steps: heapless::Vec<Step<'a>, MAX_LAYERS>,
    first_values: usize,
    second_values: usize,
    scratch_bytes: usize,
}

impl<'a> Model<'a> {
    /// Reads and checks a model file: header, checksum, payload, and that every layer's
    /// shapes chain and its weights have the lengths they need. Any bytes give a model or
    /// an error.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        let payload = payload(bytes)?;
        let (def, rest) =
            postcard::take_from_bytes::<ModelDef<'a>>(payload).map_err(|_| Error::Decode)?;
        if !rest.is_empty() {
            return Err(Error::Format {
                what: "bytes left after the model definition",
            });
        }
        Self::from_def(def)
    }

    /// Checks a decoded definition and plans its arena.
    pub fn from_def(def: ModelDef<'a>) -> Result<Self, Error> {
        let precision = def.precision;
        let input = def.input;
        let input_shape = Shape {
            channels: input.channels as usize,
            height: input.height as usize,
            width: input.width as usize,
        };
        if input_shape.len().is_none_or(|n| n == 0) {
            return Err(Error::Format {
                what: "the input has no values",
            });
        }
        let table_bytes = input_shape
            .channels
            .checked_mul(256 * precision.value_bytes());
        crate::check_len("input table bytes", input.table.len(), table_bytes)?;

        let mut steps = heapless::Vec::new();
        let mut shape = input_shape;
        let mut sizes = [shape.len().ok_or(Error::Overflow { what: "input" })?, 0];
        let mut scratch_bytes = 0;
        for (index, &layer) in def.layers.iter().enumerate() {
            let output = output_shape(precision, layer, shape)?;
            if let (Precision::Int8, Layer::Conv { kernel, .. }) = (precision, layer) {
                let patch = conv::i8_scratch_bytes(shape.channels, kernel as usize).ok_or(
                    Error::Overflow {
                        what: "convolution scratch",
                    },
                )?;
                scratch_bytes = scratch_bytes.max(patch);
            }
            let values = output.len().ok_or(Error::Overflow {
                what: "layer output",
            })?;
            let buffer = &mut sizes[(index + 1) % 2];
            *buffer = (*buffer).max(values);
            steps
                .push(Step {
                    layer,
                    input: shape,
                    output,
                })
                .map_err(|_| Error::Format {
                    what: "too many layers",
                })?;
            shape = output;
        }
        if !matches!(
            steps.last(),
            Some(Step {
                layer: Layer::Dense { .. },
                ..
            })
        ) {
            return Err(Error::Format {
                what: "the last layer must be dense",
            });
        }
        let model = Self {
            precision,
            input,
            input_shape,
            steps,
            first_values: sizes[0],
            second_values: sizes[1],
            scratch_bytes,
        };
        model
            .first_values
            .checked_add(model.second_values)
            .and_then(|n| n.checked_mul(precision.value_bytes()))
            .and_then(|n| n.checked_add(scratch_bytes))
            .ok_or(Error::Overflow { what: "arena" })?;
        Ok(model)
    }

    /// The precision of every layer.
    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// The input image's shape.
    pub fn input_shape(&self) -> Shape {
        self.input_shape
    }

    /// Pixel bytes one inference reads.
    pub fn pixel_bytes(&self) -> usize {
        self.input_shape.channels * self.input_shape.height * self.input_shape.width
    }

    /// The input's quantization (identity for f32 models).
    pub fn input(&self) -> &Input<'a> {
        &self.input
    }

    /// Number of class scores.
    pub fn classes(&self) -> usize {
        self.steps.last().map_or(0, |step| {
            step.output.channels * step.output.plane().unwrap_or(0)
        })
    }

    /// The layers, input first.
    pub fn layers(&self) -> impl Iterator<Item = &Layer<'a>> {
        self.steps.iter().map(|step| &step.layer)
    }

    /// Multiply-accumulates of one inference (convolutions and dense layers).
    pub fn multiply_accumulates(&self) -> u64 {
        self.steps
            .iter()
            .map(|step| match step.layer {
                Layer::Conv { kernel, .. } => {
                    let taps = kernel as u64 * kernel as u64 * step.input.channels as u64;
                    taps * step.output.len().unwrap_or(0) as u64
                }
                Layer::Dense { .. } => {
                    step.input.len().unwrap_or(0) as u64 * step.output.len().unwrap_or(0) as u64
                }
                Layer::MaxPool { .. } | Layer::AvgPool { .. } => 0,
            })
            .sum()
    }

    /// Bytes of arena one inference needs: see the type's docs for the plan.
    pub fn arena_bytes(&self) -> usize {
        (self.first_values + self.second_values) * self.precision.value_bytes() + self.scratch_bytes
    }

    /// Runs an f32 model: `pixels` in the model's pixel format, `scores` one per class.
    /// Returns the index of the largest score.
    pub fn infer_f32(
        &self,
        pixels: &[u8],
        arena: &mut [u8],
        scores: &mut [f32],
    ) -> Result<usize, Error> {
        self.expect(Precision::F32)?;
        self.check_io(pixels.len(), arena.len(), scores.len())?;
        let arena = prefix_mut(arena, self.arena_bytes())?;
        let values: &mut [f32] =
            bytemuck::try_cast_slice_mut(arena).map_err(|_| Error::Alignment {
                what: "arena",
                align: core::mem::align_of::<f32>(),
            })?;
        let (first, second) = values.split_at_mut(self.first_values);

        let (table, _) = self.input.table.as_chunks::<4>();
        self.read_pixels(pixels, table, first, |&entry| f32::from_le_bytes(entry));
        let last = self.run_layers(first, second, |step, from, to| run_f32(step, from, to))?;
        for (score, &value) in scores.iter_mut().zip(last) {
            *score = value;
        }
        argmax(scores)
    }

    /// Runs an int8 model with integer arithmetic only: `pixels` in the model's pixel
    /// format, `scores` one int8 score per class (see the last layer's output quantization).
    /// Returns the index of the largest score.
    pub fn infer_i8(
        &self,
        pixels: &[u8],
        arena: &mut [u8],
        scores: &mut [i8],
    ) -> Result<usize, Error> {
        self.expect(Precision::Int8)?;
        self.check_io(pixels.len(), arena.len(), scores.len())?;
        let arena = prefix_mut(arena, self.arena_bytes())?;
        let (values, scratch) = arena.split_at_mut(self.first_values + self.second_values);
        let values: &mut [i8] = bytemuck::must_cast_slice_mut(values);
        let (first, second) = values.split_at_mut(self.first_values);

        let table: &[i8] = bytemuck::must_cast_slice(self.input.table);
        self.read_pixels(pixels, table, first, |&entry| entry);
        // Each layer's output carries its own zero point; pooling keeps its input's.
        let mut zero_point = self.input.quantization.zero_point;
        let last = self.run_layers(first, second, |step, from, to| {
            zero_point = run_i8(step, zero_point, from, scratch, to)?;
            Ok(())
        })?;
        for (score, &value) in scores.iter_mut().zip(last) {
            *score = value;
        }
        argmax(scores)
    }

    /// Writes the input values of `pixels` (planar bytes) into `values`, through each
    /// channel's 256-entry `table`.
    fn read_pixels<E, T>(
        &self,
        pixels: &[u8],
        table: &[E],
        values: &mut [T],
        decode: impl Fn(&E) -> T,
    ) {
        let plane = self.input_shape.height * self.input_shape.width;
        for ((values, pixels), table) in values
            .chunks_exact_mut(plane)
            .zip(pixels.chunks_exact(plane))
            .zip(table.chunks_exact(256))
        {
            for (value, &pixel) in values.iter_mut().zip(pixels) {
                if let Some(entry) = table.get(pixel as usize) {
                    *value = decode(entry);
                }
            }
        }
    }

    /// Runs every layer on the two arena buffers in turn, starting from the input values in
    /// `first`, and returns the last layer's output.
    fn run_layers<'b, T>(
        &self,
        first: &'b mut [T],
        second: &'b mut [T],
        mut run: impl FnMut(&Step<'a>, &[T], &mut [T]) -> Result<(), Error>,
    ) -> Result<&'b [T], Error> {
        for (index, step) in self.steps.iter().enumerate() {
            let (from, to) = if index % 2 == 0 {
                (&*first, &mut *second)
            } else {
                (&*second, &mut *first)
            };
            run(
                step,
                prefix(from, step.input)?,
                prefix_mut(to, values_of(step.output))?,
            )?;
        }
        Ok(if self.steps.len().is_multiple_of(2) {
            first
        } else {
            second
        })
    }

    /// The class of `pixels` for a model of either precision, with the scores kept in a
    /// small buffer on the stack (up to 64 classes).
    pub fn classify(&self, pixels: &[u8], arena: &mut [u8]) -> Result<usize, Error> {
        const MOST_CLASSES: usize = 64;
        let classes = self.classes();
        if classes > MOST_CLASSES {
            return Err(Error::Length {
                what: "classes",
                expected: MOST_CLASSES,
                found: classes,
            });
        }
        match self.precision {
            Precision::F32 => {
                let mut scores = [0f32; MOST_CLASSES];
                self.infer_f32(pixels, arena, &mut scores[..classes])
            }
            Precision::Int8 => {
                let mut scores = [0i8; MOST_CLASSES];
                self.infer_i8(pixels, arena, &mut scores[..classes])
            }
        }
    }

    fn expect(&self, precision: Precision) -> Result<(), Error> {
        if self.precision == precision {
            Ok(())
        } else {
            Err(Error::Precision {
                model: self.precision,
            })
        }
    }

    fn check_io(&self, pixels: usize, arena: usize, scores: usize) -> Result<(), Error> {
        crate::check_len("pixels", pixels, Some(self.pixel_bytes()))?;
        crate::check_len("scores", scores, Some(self.classes()))?;
        if arena < self.arena_bytes() {
            return Err(Error::Length {
                what: "arena bytes",
                expected: self.arena_bytes(),
                found: arena,
            });
        }
        Ok(())
    }
}

/// Values of a shape already checked by [`Model::from_def`].
fn values_of(shape: Shape) -> usize {
    shape.channels * shape.height * shape.width
}

/// The first `shape`'s worth of a buffer; the plan makes every buffer large enough, so the
/// error only guards the arithmetic.
fn prefix<T>(buffer: &[T], shape: Shape) -> Result<&[T], Error> {
    buffer.get(..values_of(shape)).ok_or(Error::Length {
        what: "arena buffer",
        expected: values_of(shape),
        found: buffer.len(),
    })
}

/// The first `len` values of a buffer, or an error naming the shortfall.
fn prefix_mut<T>(buffer: &mut [T], len: usize) -> Result<&mut [T], Error> {
    let found = buffer.len();
    buffer.get_mut(..len).ok_or(Error::Length {
        what: "arena bytes",
        expected: len,
        found,
    })
}

/// Checks the header and returns the payload.
fn payload(bytes: &[u8]) -> Result<&[u8], Error> {
    let Some((header, payload)) = bytes.split_first_chunk::<HEADER_BYTES>() else {
        return Err(Error::Length {
            what: "model header",
            expected: HEADER_BYTES,
            found: bytes.len(),
        });
    };
    if header[0..4] != MAGIC {
        return Err(Error::Format {
            what: "not a model file: the magic number is wrong",
        });
    }
    let version = u16::from_le_bytes([header[4], header[5]]);
    if version != VERSION {
        return Err(Error::Version {
            found: version,
            supported: VERSION,
        });
    }
    let length = u32::from_le_bytes([header[6], header[7], header[8], header[9]]) as usize;
    crate::check_len("model payload bytes", payload.len(), Some(length))?;
    let stored = u32::from_le_bytes([header[10], header[11], header[12], header[13]]);
    let computed = crc::crc32(payload);
    if stored != computed {
        return Err(Error::Checksum { stored, computed });
    }
    Ok(payload)
}

/// The output shape of `layer` on `input`, after checking its parameters' lengths.
fn output_shape(precision: Precision, layer: Layer<'_>, input: Shape) -> Result<Shape, Error> {
    match layer {
        Layer::Conv {
            filters,
            kernel,
            params,
            ..
        } => {
            if filters == 0 || kernel == 0 {
                return Err(Error::BadWindow {
                    what: "convolution",
                    size: 0,
                });
            }
            let taps = (kernel as usize * kernel as usize).checked_mul(input.channels);
            check_params(precision, &params, filters as usize, taps)?;
            Ok(Shape {
                channels: filters as usize,
                ..input
            })
        }
        Layer::MaxPool { size } | Layer::AvgPool { size } => {
            let output = pool::pooled(input, size as usize)?;
            if output.plane() == Some(0) {
                return Err(Error::BadWindow {
                    what: "pool",
                    size: size as usize,
                });
            }
            Ok(output)
        }
        Layer::Dense { units, params, .. } => {
            if units == 0 {
                return Err(Error::Format {
                    what: "a dense layer has no units",
                });
            }
            check_params(precision, &params, units as usize, input.len())?;
            Ok(Shape {
                channels: units as usize,
                height: 1,
                width: 1,
            })
        }
    }
}

/// Checks the lengths of a layer's parameters, and its requantization scales.
fn check_params(
    precision: Precision,
    params: &Weights<'_>,
    outputs: usize,
    inputs_per_output: Option<usize>,
) -> Result<(), Error> {
    let weight_bytes = inputs_per_output
        .and_then(|n| n.checked_mul(outputs))
        .and_then(|n| n.checked_mul(precision.value_bytes()));
    crate::check_len("weight bytes", params.weights.len(), weight_bytes)?;
    crate::check_len("bias bytes", params.bias.len(), outputs.checked_mul(4))?;
    let scale_bytes = match precision {
        Precision::F32 => Some(0),
        Precision::Int8 => outputs.checked_mul(5),
    };
    crate::check_len("scale bytes", params.scales.len(), scale_bytes)?;
    for scale in params.scales.chunks_exact(5) {
        let multiplier = i32::from_le_bytes([scale[0], scale[1], scale[2], scale[3]]);
        let shift = scale[4] as i8 as i32;
        if multiplier < 0 || !SHIFTS.contains(&shift) {
            return Err(Error::BadShift { shift });
        }
    }
    Ok(())
}

fn run_f32(step: &Step<'_>, input: &[f32], output: &mut [f32]) -> Result<(), Error> {
    match step.layer {
        Layer::Conv {
            kernel,
            relu,
            params,
            ..
        } => {
            let (weights, _) = params.weights.as_chunks::<4>();
            let (bias, _) = params.bias.as_chunks::<4>();
            conv::conv2d_f32(
                input,
                step.input,
                weights,
                bias,
                kernel as usize,
                relu,
                output,
            )
        }
        Layer::MaxPool { size } => pool::max_pool_f32(input, step.input, size as usize, output),
        Layer::AvgPool { size } => pool::avg_pool_f32(input, step.input, size as usize, output),
        Layer::Dense { relu, params, .. } => {
            let (weights, _) = params.weights.as_chunks::<4>();
            let (bias, _) = params.bias.as_chunks::<4>();
            dense::dense_f32(input, weights, bias, relu, output)
        }
    }
}

/// The requantization of a layer's output; a ReLU keeps the values at or above the
/// quantized zero.
fn requantization<'a>(params: &Weights<'a>, relu: bool) -> Requantization<'a, [u8; 5]> {
    Requantization {
        per_channel: params.scales.as_chunks::<5>().0,
        zero_point: params.output.zero_point as i32,
        min: if relu {
            params.output.zero_point
        } else {
            i8::MIN
        },
        max: i8::MAX,
    }
}

/// Runs one int8 layer and returns the zero point of its output.
fn run_i8(
    step: &Step<'_>,
    zero_point: i8,
    input: &[i8],
    scratch: &mut [u8],
    output: &mut [i8],
) -> Result<i8, Error> {
    match step.layer {
        Layer::Conv {
            kernel,
            relu,
            params,
            ..
        } => {
            let (bias, _) = params.bias.as_chunks::<4>();
            conv::conv2d_i8(
                input,
                step.input,
                zero_point,
                bytemuck::must_cast_slice(params.weights),
                bias,
                kernel as usize,
                &requantization(&params, relu),
                scratch,
                output,
            )?;
            Ok(params.output.zero_point)
        }
        Layer::MaxPool { size } => {
            pool::max_pool_i8(input, step.input, size as usize, output)?;
            Ok(zero_point)
        }
        Layer::AvgPool { size } => {
            pool::avg_pool_i8(input, step.input, size as usize, output)?;
            Ok(zero_point)
        }
        Layer::Dense { relu, params, .. } => {
            let (bias, _) = params.bias.as_chunks::<4>();
            dense::dense_i8(
                input,
                zero_point,
                bytemuck::must_cast_slice(params.weights),
                bias,
                &requantization(&params, relu),
                output,
            )?;
            Ok(params.output.zero_point)
        }
    }
}
