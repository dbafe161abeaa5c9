//! Host side of the toolchain: CIFAR-10 loading, configurable CNNs trained with burn on the
//! CPU, and their evaluation.

pub mod adadelta;
pub mod bench;
pub mod cli;
pub mod data;
pub mod evaluate;
pub mod metrics;
pub mod model;
pub mod output;
pub mod plots;
pub mod progress;
pub mod train;
