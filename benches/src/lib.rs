//! Criterion benchmarks of the toolchain; run them with `cargo bench -p benches`.
//!
//! `benches/trainer.rs` measures what the trainer spends its time on: reading CIFAR-10, one
//! training step of `tutorial-tuned` at batch 32 and 128, and inference.
