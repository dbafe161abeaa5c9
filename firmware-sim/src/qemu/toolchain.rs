//! Building the firmware: with rustup's cargo where rustup has the target installed, and
//! otherwise with the compiler that `../shared/tools/cross-toolchain.sh` installs, which
//! builds `core` and `compiler_builtins` from source (`-Zbuild-std`). Either way `alloc` is
//! never built, so the firmware cannot use it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, bail};

use super::board::Board;

/// The firmware crate, beside this one.
pub fn firmware_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bare-metal")
}

/// The cross-toolchain script of a checkout with `shared/` beside it.
pub fn default_cross_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/cross-toolchain.sh")
}

/// Where the firmware is built: its own folder in the workspace's target directory.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bare-metal")
}

/// Builds the firmware around the model in `model_rs` (an absolute path) for each board,
/// and returns each board's ELF file. `cross_script` is used for the boards whose target
/// rustup lacks.
pub fn build(
    boards: &[Board],
    model_rs: &Path,
    cross_script: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let manifest = firmware_dir().join("Cargo.toml");
    if !manifest.is_file() {
        bail!("the firmware crate is missing: no {}", manifest.display());
    }
    let installed = rustup_targets();
    let (rustup, cross): (Vec<Board>, Vec<Board>) = boards
        .iter()
        .partition(|board| installed.iter().any(|t| t == board.triple()));

    if !rustup.is_empty() {
        let mut cargo = Command::new("cargo");
        cargo.env_remove("RUSTC").env_remove("RUSTDOC");
        cargo_build(cargo, &rustup, &manifest, model_rs, &[], "rustup's cargo")?;
    }
    if !cross.is_empty() {
        if !cross_script.is_file() {
            bail!(
                "rustup has no {} target and the cross-toolchain script {} is missing \
                 (--cross-toolchain): install the target with `rustup target add`, or give \
                 the script's path",
                cross
                    .iter()
                    .map(|b| b.triple())
                    .collect::<Vec<_>>()
                    .join(", "),
                cross_script.display()
            );
        }
        // The script installs once and prints the exports for its compiler; they stay in
        // this child's environment, away from the host's cargo.
        let mut bash = Command::new("bash");
        bash.arg("-c")
            .arg(r#"exports=$("$0") || exit 1; eval "$exports"; exec "$CROSS_CARGO" "$@""#)
            .arg(cross_script);
        cargo_build(
            bash,
            &cross,
            &manifest,
            model_rs,
            &[
                "-Zbuild-std=core,compiler_builtins",
                "-Zbuild-std-features=compiler-builtins-mem",
            ],
            "the cross toolchain",
        )?;
    }

    Ok(boards
        .iter()
        .map(|board| target_dir().join(board.triple()).join("release/firmware"))
        .collect())
}

/// The targets `rustup target list --installed` lists; none without rustup.
fn rustup_targets() -> Vec<String> {
    match Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.trim().to_string())
            .collect(),
        _ => Vec::new(),
    }
}

/// Runs `cargo build` (through `command`, which runs cargo with the arguments added here)
/// for `boards` in one invocation.
fn cargo_build(
    mut command: Command,
    boards: &[Board],
    manifest: &Path,
    model_rs: &Path,
    extra: &[&str],
    route: &str,
) -> anyhow::Result<()> {
    let names: Vec<&str> = boards.iter().map(|b| b.name()).collect();
    println!(
        "building the firmware for {} with {route} (minutes the first time)",
        names.join(", ")
    );
    command
        .args(["build", "--release", "--locked", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir());
    for board in boards {
        command.args(["--target", board.triple()]);
    }
    command.args(extra).env("FIRMWARE_MODEL_RS", model_rs);
    // Flags meant for the host build would reach the firmware's too.
    for variable in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        command.env_remove(variable);
    }
    let output: Output = command
        .output()
        .with_context(|| format!("cannot run cargo ({route})"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
        bail!(
            "building the firmware for {} with {route} failed ({}):\n{}",
            names.join(", "),
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    Ok(())
}
