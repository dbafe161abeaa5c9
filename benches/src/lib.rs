//! Criterion benchmarks of the trainer and the inference core.
