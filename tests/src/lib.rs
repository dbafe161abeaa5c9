//! Cross-crate tests, under `tests/tests/`: the kernels of `core-nostd` against burn's own
//! operators, and the conventions the trainer and the core must share.
