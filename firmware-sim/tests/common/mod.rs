//! What the end-to-end tests share.

/// Runs `host-trainer` in this process, quietly; panics with its error.
pub fn host_trainer(args: &[&str]) {
    let mut all = vec!["host-trainer", "--quiet"];
    all.extend_from_slice(args);
    host_trainer::cli::run_from(&all).unwrap_or_else(|e| panic!("host-trainer {args:?}: {e:#}"));
}
