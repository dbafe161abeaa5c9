//! Heap-free inference for the CNNs that `host-trainer` trains.
//!
//! This crate is `#![no_std]` and uses no `alloc`. The model format and the kernels
//! arrive with the quantization work; for now the crate only fixes its place in the
//! workspace.
#![no_std]
#![warn(missing_docs)]
