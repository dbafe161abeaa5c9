//! Criterion benchmarks of the toolchain; run them with `cargo bench -p benches`.
//!
//! - `benches/trainer.rs` measures what the trainer spends its time on: reading CIFAR-10,
//!   one training step of `tutorial-tuned` at batch 32 and 128, and inference.
//! - `benches/core.rs` measures per-image latency at batch 1 on one thread of the same
//!   `tutorial-tuned` network on the core's int8 and f32 paths and on burn-flex and
//!   burn-ndarray, in one group (`cargo bench -p benches --bench core`).

use host_trainer::data::{Dataset, IMAGE_BYTES};

/// `images` images of pseudo-random pixels (a fixed xorshift sequence), labels cycling
/// through the ten classes: inputs whose values do not change what is measured.
pub fn random_set(images: usize) -> Dataset {
    let mut set = Dataset::empty();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    set.images = (0..images * IMAGE_BYTES)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    set.labels = (0..images).map(|i| (i % 10) as u8).collect();
    set
}
