//! Criterion benchmarks of the toolchain; run them with `cargo bench -p benches`.
//!
//! - `benches/trainer.rs` measures what the trainer spends its time on: reading CIFAR-10,
//!   one training step of `tutorial-tuned` at batch 32 and 128, and inference.
//! - `benches/core.rs` measures per-image latency at batch 1 on one thread of the same
//!   `tutorial-tuned` network on the core's int8 and f32 paths and on burn-flex and
//!   burn-ndarray, in one group (`cargo bench -p benches --bench core`).
