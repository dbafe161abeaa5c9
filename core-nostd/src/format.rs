//! The model file: a fixed header, then a postcard-encoded [`ModelDef`] whose weights are
//! byte slices borrowed from the file. The crate docs give the layout byte by byte.

use serde::{Deserialize, Serialize};

use crate::crc::crc32;

/// The first four bytes of every model file.
pub const MAGIC: [u8; 4] = *b"CMCU";

/// The format version this crate reads and writes. A file of any other version is refused
/// with [`crate::Error::Version`] before anything else of it is read.
pub const VERSION: u16 = 1;

/// Bytes before the payload: magic (4), version (2), payload length (4), payload CRC-32 (4).
pub const HEADER_BYTES: usize = 14;

/// The most layers a model may have.
pub const MAX_LAYERS: usize = 16;

/// Number representation of a model's weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// 32-bit floats, little-endian.
    F32,
    /// The integer-only int8 scheme: int8 weights and activations, int32 biases.
    Int8,
}

impl Precision {
    /// Bytes of one weight or activation.
    pub const fn value_bytes(self) -> usize {
        match self {
            Precision::F32 => 4,
            Precision::Int8 => 1,
        }
    }
}

/// How the input pixels are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PixelFormat {
    /// One byte per value, channel by channel (all of red, then green, then blue), rows top
    /// to bottom: the layout of the CIFAR-10 binary files.
    U8Planar,
}

/// The affine map between an int8 tensor and the real values it stands for:
/// `real = scale * (q - zero_point)`. Only the host reads `scale`; inference uses the zero
/// point alone. f32 models store scale 1 and zero point 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quantization {
    /// Real value of one step.
    pub scale: f32,
    /// The int8 value that stands for 0.0.
    pub zero_point: i8,
}

impl Quantization {
    /// The identity, used by f32 models.
    pub const NONE: Self = Self {
        scale: 1.0,
        zero_point: 0,
    };
}

/// The network's input and how pixels become its values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Input<'a> {
    /// Channels of the image.
    pub channels: u16,
    /// Rows of the image.
    pub height: u16,
    /// Columns of the image.
    pub width: u16,
    /// Layout of the pixel bytes.
    pub pixel_format: PixelFormat,
    /// Per channel, 256 entries, the input value of each pixel value: f32 (4 little-endian
    /// bytes each) in f32 models, int8 in int8 ones. Normalization (scaling to [0, 1],
    /// per-channel standardization) and input quantization are folded into it.
    pub table: &'a [u8],
    /// Quantization of the input values (int8 models).
    pub quantization: Quantization,
}

/// Weights of a convolution or dense layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Weights<'a> {
    /// Weights, f32 (4 little-endian bytes) or int8 (1 byte) each: `[out][in][ky][kx]` for
    /// a convolution, `[out][in]` for a dense layer.
    pub weights: &'a [u8],
    /// One bias per output channel: f32 or int32, 4 little-endian bytes each.
    pub bias: &'a [u8],
    /// int8 models: one requantization per output channel, 5 bytes each (multiplier as a
    /// little-endian int32, then the shift as an int8; see [`crate::Requantize`]). Empty in
    /// f32 models.
    pub scales: &'a [u8],
    /// Quantization of the output (int8 models).
    pub output: Quantization,
}

/// One layer of the network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Layer<'a> {
    /// Convolution, stride 1, "same" padding, then ReLU if `relu`.
    Conv {
        /// Output channels.
        filters: u16,
        /// Side of the square kernel.
        kernel: u8,
        /// Whether a ReLU follows (in int8, folded into the output clamp).
        relu: bool,
        /// Parameters.
        #[serde(borrow)]
        params: Weights<'a>,
    },
    /// Max pooling, window and stride `size`.
    MaxPool {
        /// Side of the window.
        size: u8,
    },
    /// Average pooling, window and stride `size`.
    AvgPool {
        /// Side of the window.
        size: u8,
    },
    /// Dense layer over the flattened (CHW order) input, then ReLU if `relu`.
    Dense {
        /// Output units.
        units: u16,
        /// Whether a ReLU follows.
        relu: bool,
        /// Parameters.
        #[serde(borrow)]
        params: Weights<'a>,
    },
}

/// Everything the payload holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelDef<'a> {
    /// Precision of every layer.
    pub precision: Precision,
    /// The input.
    #[serde(borrow)]
    pub input: Input<'a>,
    /// The layers, input first. The last one is dense and gives the class scores.
    #[serde(borrow)]
    pub layers: heapless::Vec<Layer<'a>, MAX_LAYERS>,
}

/// The header for `payload`: magic, [`VERSION`], payload length and CRC-32.
/// A model file is this header followed by the payload. `None` if the payload is longer
/// than 4 GiB.
pub fn header(payload: &[u8]) -> Option<[u8; HEADER_BYTES]> {
    let length = u32::try_from(payload.len()).ok()?;
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[0..4].copy_from_slice(&MAGIC);
    bytes[4..6].copy_from_slice(&VERSION.to_le_bytes());
    bytes[6..10].copy_from_slice(&length.to_le_bytes());
    bytes[10..14].copy_from_slice(&crc32(payload).to_le_bytes());
    Some(bytes)
}
