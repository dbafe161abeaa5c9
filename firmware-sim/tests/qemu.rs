//! Train a small network of the `tutorial-tuned` architecture, quantize it with `--rust`, and
//! run `firmware-sim qemu` on 200 test images on the Cortex-M4F and the RISC-V board: every
//! class and score must equal the host core's. The firmware built with too small an arena
//! panics, and the command fails.
//!
//! Needs QEMU and a compiler that builds `core` for both targets: where rustup lacks the
//! targets, `firmware-sim qemu` installs them with ../shared/tools/cross-toolchain.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::host_trainer;

fn shared(path: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data/cifar10")
        .join(path);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn firmware_qemu(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .arg("qemu")
        .args(args)
        .output()
        .expect("firmware-sim runs")
}

fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn firmware_answers_as_the_host_core_on_both_boards_and_a_panic_fails_the_command() {
    let archive = shared("cifar10-jpeg.tar.gz");
    let test_batch = shared("cifar-10-batches-bin");
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    host_trainer(&[
        "train",
        "--data",
        archive.to_str().unwrap(),
        "--preset",
        "tutorial-tuned",
        "--out",
        run.to_str().unwrap(),
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--limit-test",
        "200",
    ]);
    let model = dir.path().join("model-int8.cmcu");
    let model_rs = dir.path().join("model_int8.rs");
    host_trainer(&[
        "quantize",
        "--model",
        run.to_str().unwrap(),
        "--data",
        archive.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
        "--rust",
        model_rs.to_str().unwrap(),
        "--calibration",
        "200",
        "--limit-test",
        "200",
    ]);

    let json = dir.path().join("qemu.json");
    let output = firmware_qemu(&[
        "--model-rs",
        model_rs.to_str().unwrap(),
        "--data",
        test_batch.to_str().unwrap(),
        "--limit",
        "200",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text(&output));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["images"], 200);
    assert!(report["failures"].as_array().unwrap().is_empty());
    let model_bytes = std::fs::metadata(&model).unwrap().len();
    let boards = report["boards"].as_array().unwrap();
    assert_eq!(boards.len(), 2);
    for (board, name) in boards.iter().zip(["cortex-m4", "riscv32"]) {
        assert_eq!(board["board"], name);
        assert_eq!(board["identical"], 200, "{board}");
        let measured = &board["measured"];
        assert_eq!(measured["model_bytes"].as_u64().unwrap(), model_bytes);
        assert!(measured["flash_bytes"].as_u64().unwrap() > model_bytes);
        let stack = measured["stack_peak_bytes"].as_u64().unwrap();
        assert!(stack > 0 && stack < 64 * 1024, "{board}");
        assert!(
            measured["bss_bytes"].as_u64().unwrap() >= measured["arena_bytes"].as_u64().unwrap()
        );
        // Every multiply-accumulate costs at least one instruction on these cores.
        let per_instruction = measured["multiply_accumulates_per_instruction"]
            .as_f64()
            .unwrap();
        assert!(per_instruction > 0.01 && per_instruction < 1.0, "{board}");
    }

    // The same model with too small an arena: the core refuses the inference, the
    // firmware panics, QEMU exits with the panic's status and the command fails.
    let source = std::fs::read_to_string(&model_rs).unwrap();
    let needed = source
        .lines()
        .find_map(|line| line.strip_prefix("pub const ARENA_BYTES: usize = "))
        .unwrap()
        .trim_end_matches(';')
        .to_string();
    let small = dir.path().join("model_small_arena.rs");
    std::fs::write(
        &small,
        source.replace(
            &format!("ARENA_BYTES: usize = {needed};"),
            "ARENA_BYTES: usize = 64;",
        ),
    )
    .unwrap();
    let output = firmware_qemu(&[
        "--model-rs",
        small.to_str().unwrap(),
        "--data",
        test_batch.to_str().unwrap(),
        "--limit",
        "2",
        "--target",
        "riscv32",
        "--json",
        dir.path().join("small.json").to_str().unwrap(),
    ]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(1), "{all}");
    assert!(all.contains("the firmware panicked"), "{all}");
    assert!(
        all.contains(&format!("arena bytes: expected {needed}, found 64")),
        "{all}"
    );
}

#[test]
fn a_missing_model_is_named_before_anything_is_built() {
    let output = firmware_qemu(&["--model-rs", "/nonexistent/model_int8.rs"]);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(2), "{all}");
    assert!(all.contains("/nonexistent/model_int8.rs"), "{all}");
}
