//! Train a small network on a subset of the shared CIFAR-10 copy, quantize it, and run
//! `firmware-sim` on it: it must pass against its own reference, and fail against another.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

mod common;
use common::host_trainer;

fn shared_archive() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/cifar10/cifar10-jpeg.tar.gz");
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn train(data: &str, out: &Path, preset: &str, seed: &str) {
    host_trainer(&[
        "train",
        "--data",
        data,
        "--preset",
        preset,
        "--out",
        out.to_str().unwrap(),
        "--epochs",
        "2",
        "--limit-train",
        "1500",
        "--limit-test",
        "400",
        "--seed",
        seed,
    ]);
}

fn firmware_sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firmware-sim"))
        .args(args)
        .output()
        .expect("firmware-sim runs")
}

#[test]
fn quantized_model_passes_against_its_reference_and_fails_against_another() {
    let archive = shared_archive();
    let data = archive.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    let other = dir.path().join("other");
    train(data, &first, "tutorial-2conv", "1");
    train(data, &second, "tutorial-2conv", "2");
    train(data, &other, "tutorial-1conv", "1");
    let model = dir.path().join("first.cmcu");
    let quantize = |out: &Path, precision: &str| {
        host_trainer(&[
            "quantize",
            "--model",
            first.to_str().unwrap(),
            "--data",
            data,
            "--out",
            out.to_str().unwrap(),
            "--calibration",
            "200",
            "--precision",
            precision,
        ])
    };
    quantize(&model, "int8");
    let f32_model = dir.path().join("first-f32.cmcu");
    quantize(&f32_model, "f32");

    let json = dir.path().join("sim.json");
    let run = |model: &Path, reference: &Path| {
        firmware_sim(&[
            "--model",
            model.to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
            "--data",
            data,
            "--limit",
            "400",
            "--max-drop",
            "5",
            "--json",
            json.to_str().unwrap(),
        ])
    };

    let output = run(&model, &first);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("core-nostd int8"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["images"], 400);
    assert_eq!(report["inference_allocations"], 0);
    assert_eq!(
        report["model_bytes"].as_u64().unwrap(),
        std::fs::metadata(&model).unwrap().len()
    );
    assert!(report["f32_agreement_with_burn"].as_f64().unwrap() >= 0.999);
    let float = report["burn_f32"]["accuracy"].as_f64().unwrap();
    let int8 = report["core_int8"]["accuracy"].as_f64().unwrap();
    assert!(
        float > 0.2,
        "two epochs on 1,500 images beat chance: {float}"
    );
    assert!(100.0 * (float - int8) <= 5.0);
    assert!(report["int8_agreement_with_float"].as_f64().unwrap() > 0.8);
    assert_eq!(report["per_class"].as_array().unwrap().len(), 10);
    assert!(report["failures"].as_array().unwrap().is_empty());

    // The f32 file of one network against another network as the reference: the core's
    // f32 path and burn disagree, and the run fails.
    let output = run(&f32_model, &second);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.contains("disagrees with burn"), "{stderr}");

    // A reference with other layers is refused before anything runs.
    let output = run(&model, &other);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "stderr:\n{stderr}");
    assert!(stderr.contains("does not have the layers"), "{stderr}");
}

#[test]
fn a_file_that_is_not_a_model_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bogus.cmcu");
    std::fs::write(&bogus, b"not a model at all").unwrap();
    let output = firmware_sim(&[
        "--model",
        bogus.to_str().unwrap(),
        "--reference",
        dir.path().to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("bogus.cmcu"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
