//! Host side of the toolchain: CIFAR-10 loading, configurable CNNs trained with burn on the
//! CPU, their evaluation, and their int8 quantization into the model files of `core-nostd`.

pub mod adadelta;
pub mod bench;
pub mod cli;
pub mod data;
pub mod evaluate;
pub mod export;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plots;
pub mod progress;
pub mod quant;
pub mod search;
pub mod train;
