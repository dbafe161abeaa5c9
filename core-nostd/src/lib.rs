//! Heap-free inference for the CNNs that `host-trainer` trains: a model file format, a
//! parser that checks a model once, and f32 and int8 kernels that run it in a caller-owned
//! arena.
//!
//! `#![no_std]`, no `alloc`. Feature maps are stored channel by channel (CHW): value
//! `(c, y, x)` of a map of `height` x `width` sits at `c * height * width + y * width + x`,
//! the layout of the CIFAR-10 binary format and of burn's tensors, so a network trained on
//! the host runs here without reordering.
//!
//! The int8 kernels follow the integer-only scheme of TensorFlow Lite and CMSIS-NN: int8
//! values with a zero point, int32 accumulators, and a per-channel fixed-point
//! [`Requantize`] back to int8. They use no floating point.
//!
//! # Running a model
//!
//! [`Model::parse`] checks everything once: header, checksum, that each layer's shapes chain
//! and that its weights have the lengths they need. Inference then needs an arena of
//! [`Model::arena_bytes`] bytes (4-aligned for f32 models) and returns the class index;
//! any bytes, pixels or arena give a value or an [`Error`], never a panic.
//!
//! ```
//! use core_nostd::format::{Input, Layer, ModelDef, PixelFormat, Precision, Quantization, Weights};
//! use core_nostd::Model;
//!
//! // A 1x2x2 grey image; the input table maps pixel p to p as f32; one dense layer with
//! // two units: the sum of the pixels, and its negation.
//! let table: Vec<u8> = (0..256).flat_map(|p| (p as f32).to_le_bytes()).collect();
//! let weights: Vec<u8> = [1.0f32, 1.0, 1.0, 1.0, -1.0, -1.0, -1.0, -1.0]
//!     .iter()
//!     .flat_map(|w| w.to_le_bytes())
//!     .collect();
//! let bias = [0u8; 8];
//! let mut layers = heapless::Vec::new();
//! layers
//!     .push(Layer::Dense {
//!         units: 2,
//!         relu: false,
//!         params: Weights { weights: &weights, bias: &bias, scales: &[], output: Quantization::NONE },
//!     })
//!     .unwrap();
//! let def = ModelDef {
//!     precision: Precision::F32,
//!     input: Input {
//!         channels: 1,
//!         height: 2,
//!         width: 2,
//!         pixel_format: PixelFormat::U8Planar,
//!         table: &table,
//!         quantization: Quantization::NONE,
//!     },
//!     layers,
//! };
//! let payload = postcard::to_allocvec(&def).unwrap();
//! let mut file = core_nostd::format::header(&payload).unwrap().to_vec();
//! file.extend_from_slice(&payload);
//!
//! let model = Model::parse(&file).unwrap();
//! let mut arena = [0u32; 8]; // u32 words keep the arena 4-aligned
//! let arena: &mut [u8] = bytemuck::cast_slice_mut(&mut arena);
//! assert_eq!(model.arena_bytes(), 4 * (4 + 2));
//! let mut scores = [0.0f32; 2];
//! let class = model.infer_f32(&[1, 2, 3, 4], arena, &mut scores).unwrap();
//! assert_eq!((class, scores), (0, [10.0, -10.0]));
//! assert!(model.infer_f32(&[1, 2, 3, 4], &mut arena[..23], &mut scores).is_err());
//! ```
//!
//! # The model file, byte by byte
//!
//! | offset | bytes | content |
//! | --- | --- | --- |
//! | 0 | 4 | magic `CMCU` ([`format::MAGIC`]) |
//! | 4 | 2 | format version, little-endian ([`format::VERSION`], now 1) |
//! | 6 | 4 | payload length in bytes, little-endian |
//! | 10 | 4 | CRC-32 (zlib's) of the payload, little-endian |
//! | 14 | rest | payload: a [`format::ModelDef`] in postcard encoding |
//!
//! A reader checks that the 14 header bytes are there, then the magic, then the version
//! (another version is [`Error::Version`], whatever follows the header), then the length
//! and the CRC, and only then decodes the payload.
//!
//! Postcard writes struct fields in order with no tags: `u16` and lengths as varints
//! (7 bits per byte, low bits first, high bit set on all but the last byte), `i8` as one
//! byte, `bool` as `0` or `1`, `f32` as 4 little-endian bytes, an enum as its variant
//! index (a varint) then the variant's fields, and a byte slice or list as a varint length
//! then its items. The payload is therefore:
//!
//! - precision: varint, `0` f32, `1` int8;
//! - input: channels, height, width (varints); pixel format (varint `0`: one byte per
//!   value, planar); table (varint length, then `channels` x 256 entries of 4 bytes (f32)
//!   or 1 byte (int8): the input value of each pixel value, normalization and input
//!   quantization folded in); quantization: scale (f32), zero point (i8);
//! - layers: a varint count (at most [`format::MAX_LAYERS`]), then each layer: its variant
//!   index, `0` convolution (filters varint, kernel byte, relu bool, parameters), `1` max
//!   pooling (size byte), `2` average pooling (size byte), `3` dense (units varint, relu
//!   bool, parameters);
//! - parameters: weights (varint length, then f32 or int8 values: `[out][in][ky][kx]` for a
//!   convolution, `[out][in]` for dense), biases (varint length, then one f32 or int32 per
//!   output, 4 little-endian bytes each), scales (varint length, then per output a 4-byte
//!   little-endian multiplier and a 1-byte shift; empty for f32), output quantization
//!   (scale f32, zero point i8).
//!
//! Weights stay where they are in the file: the parsed [`Model`] borrows them, and the
//! kernels decode the little-endian bytes as they read them, so a model in flash needs no
//! alignment and no copy in RAM.
//!
//! # Arena
//!
//! Two buffers used in turn: the first holds the input values and the outputs of layers
//! 2, 4, ...; the second the outputs of layers 1, 3, .... Each is as large as the largest
//! tensor it holds, in values of the model's precision (4 bytes f32, 1 byte int8). An int8
//! model adds one convolution window as int16 values (2 x channels x kernel x kernel bytes,
//! for its largest window), the patch its convolutions take dot products with. For
//! `tutorial-tuned` (3x32x32 input, conv 32 then max pool 2, conv 32 then max pool 4,
//! dense 750, dense 10) that is 32,768 + 8,192 values and a 32x9x9 window: 46,144 bytes in
//! int8, 163,840 in f32.
//!
//! # Instruction sets
//!
//! On every target the kernels are plain Rust loops. On x86-64 the int8 convolution and
//! dense layers also have builds for AVX2 and for AVX-512 VNNI, chosen at run time by
//! [`cpu::Kernels::detect`] (CPUID, and the OS's saved register state): the host compiles
//! for the x86-64 baseline, which has only SSE2. They give the same bits as the portable
//! loops (the sums are exact integers; the tests compare every build the processor runs
//! with an integer reference). They need no more arena, but they widen the input onto the
//! stack first (up to 64 KiB for one layer, and 8 KiB of regrouped weights; about 150 KiB of
//! stack in all), which a host thread has and a microcontroller never runs.
#![no_std]
#![warn(missing_docs)]

pub mod classify;
pub mod conv;
pub mod cpu;
mod crc;
pub mod dense;
mod dot;
pub mod element;
mod error;
pub mod format;
mod model;
pub mod pool;
pub mod requant;

pub use crc::crc32;
pub use error::Error;
pub use model::Model;
pub use requant::Requantize;

/// The shape of a feature map: channels of `height` x `width` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Number of channels.
    pub channels: usize,
    /// Rows per channel.
    pub height: usize,
    /// Values per row.
    pub width: usize,
}

impl Shape {
    /// Values in one channel, or `None` on overflow.
    pub fn plane(&self) -> Option<usize> {
        self.height.checked_mul(self.width)
    }

    /// Values in the whole map, or `None` on overflow.
    pub fn len(&self) -> Option<usize> {
        self.plane()?.checked_mul(self.channels)
    }

    /// Whether the map holds no value.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }
}

/// Fails with [`Error::Length`] unless `slice_len == expected`.
pub(crate) fn check_len(
    what: &'static str,
    slice_len: usize,
    expected: Option<usize>,
) -> Result<(), Error> {
    match expected {
        Some(expected) if expected == slice_len => Ok(()),
        Some(expected) => Err(Error::Length {
            what,
            expected,
            found: slice_len,
        }),
        None => Err(Error::Overflow { what }),
    }
}
