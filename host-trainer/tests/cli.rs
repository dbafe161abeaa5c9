//! The `host-trainer` binary end to end, on small subsets of the shared CIFAR-10 copy.

mod fixtures;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use fixtures::{fail, json, succeed};

fn png_size(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// About 2,000 real training images, a few epochs: the network must clearly beat chance,
/// write every output, and `evaluate` must reproduce the saved test figures.
#[test]
fn short_training_beats_chance_and_evaluate_reproduces_it() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let out = tempfile::tempdir().unwrap();
    let out_dir = out.path().to_str().unwrap();
    let stdout = succeed(&[
        "train",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
        "--preset",
        "tutorial-tuned",
        "--out",
        out_dir,
        "--limit-train",
        "2000",
        "--limit-test",
        "1000",
        "--epochs",
        "6",
        "--no-augment",
        "--seed",
        "1",
    ]);
    assert!(stdout.contains("epoch   1/6"), "{stdout}");
    for file in [
        "model.bpk",
        "arch.json",
        "training.json",
        "metrics.json",
        "report.txt",
    ] {
        assert!(out.path().join(file).is_file(), "{file} missing");
    }
    assert_eq!(png_size(&out.path().join("confusion.png")), (900, 820));
    assert_eq!(png_size(&out.path().join("curves.png")), (1200, 500));

    let metrics = json(&out.path().join("metrics.json"));
    let accuracy = metrics["test"]["accuracy"].as_f64().unwrap();
    assert!(
        accuracy > 0.25,
        "test accuracy {accuracy} does not beat chance clearly"
    );
    assert_eq!(metrics["test"]["images"], 1000);
    assert_eq!(
        metrics["train_images"].as_u64().unwrap() + metrics["validation_images"].as_u64().unwrap(),
        2000
    );
    let history = metrics["history"].as_array().unwrap();
    assert!(!history.is_empty() && history.len() <= 6);
    let best = metrics["best_epoch"].as_u64().unwrap() as usize;
    let best_loss = history[best - 1]["validation_loss"].as_f64().unwrap();
    assert!(
        history
            .iter()
            .all(|r| r["validation_loss"].as_f64().unwrap() >= best_loss)
    );

    let report = std::fs::read_to_string(out.path().join("report.txt")).unwrap();
    for needle in [
        "precision",
        "airplane",
        "truck",
        "macro avg",
        "weighted avg",
        "confusion matrix",
    ] {
        assert!(
            report.contains(needle),
            "report.txt lacks {needle}:\n{report}"
        );
    }

    succeed(&[
        "evaluate",
        "--quiet",
        "--model",
        out_dir,
        "--data",
        data.to_str().unwrap(),
    ]);
    let evaluation = json(&out.path().join("evaluation.json"));
    assert_eq!(evaluation["accuracy"], metrics["test"]["accuracy"]);
    assert_eq!(evaluation["confusion"], metrics["test"]["confusion"]);
    assert_eq!(evaluation["report"], metrics["test"]["report"]);
    assert_eq!(
        png_size(&out.path().join("evaluation-confusion.png")),
        png_size(&out.path().join("confusion.png"))
    );

    // A second training into the same directory without --resume is refused, and the
    // first run's weights stay as they were.
    let weights = std::fs::read(out.path().join("model.bpk")).unwrap();
    let stderr = fail(&[
        "train",
        "--quiet",
        "--data",
        data.to_str().unwrap(),
        "--preset",
        "tutorial-1conv",
        "--out",
        out_dir,
        "--limit-train",
        "200",
        "--epochs",
        "1",
    ]);
    assert!(stderr.contains("already holds a training run"), "{stderr}");
    assert_eq!(
        std::fs::read(out.path().join("model.bpk")).unwrap(),
        weights
    );
}

/// A run stopped after two epochs and resumed to three gives the same figures as an
/// uninterrupted three-epoch run with the same seed (which also shows runs repeat exactly).
/// The schedule is constant: a cosine schedule depends on the planned number of epochs.
#[test]
fn resumed_training_matches_an_uninterrupted_run() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let data = data.to_str().unwrap();
    let common = [
        "train",
        "--quiet",
        "--data",
        data,
        "--preset",
        "tutorial-2conv",
        "--limit-train",
        "600",
        "--limit-test",
        "200",
        "--patience",
        "10",
        "--seed",
        "5",
        "--schedule",
        "constant",
    ];
    let whole = tempfile::tempdir().unwrap();
    let parts = tempfile::tempdir().unwrap();
    let with = |dir: &Path, extra: &[&str]| {
        let mut args: Vec<&str> = common.to_vec();
        args.extend(["--out", dir.to_str().unwrap()]);
        args.extend(extra);
        succeed(&args.iter().map(|s| &**s).collect::<Vec<_>>())
    };
    with(whole.path(), &["--epochs", "3"]);
    with(parts.path(), &["--epochs", "2"]);
    let resumed = with(parts.path(), &["--epochs", "3", "--resume"]);
    assert!(
        resumed.contains("epoch   3/3") && !resumed.contains("epoch   1/3"),
        "{resumed}"
    );

    let a = json(&whole.path().join("metrics.json"));
    let b = json(&parts.path().join("metrics.json"));
    let history = |m: &Value| -> Vec<(f64, f64)> {
        m["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["train_loss"].as_f64().unwrap(),
                    r["validation_loss"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(history(&a).len(), 3);
    assert_eq!(history(&a), history(&b));
    assert_eq!(a["test"]["confusion"], b["test"]["confusion"]);
}

#[test]
fn bad_inputs_fail_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "hello").unwrap();
    let stderr = fail(&[
        "train",
        "--data",
        notes.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("notes.txt") && stderr.contains("not a gzip or tar archive"),
        "{stderr}"
    );

    let stderr = fail(&[
        "train",
        "--preset",
        "resnet-50",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(stderr.contains("unknown preset 'resnet-50'"), "{stderr}");

    let never = dir.path().join("never");
    let stderr = fail(&["train", "--epochs", "0", "--out", never.to_str().unwrap()]);
    assert!(stderr.contains("--epochs"), "{stderr}");
    assert!(!never.exists(), "bad settings stop before --out is made");

    let arch = dir.path().join("arch.json");
    std::fs::write(
        &arch,
        r#"{"conv": [{"filters": 8, "kernel": 3, "pool": "max", "pool_size": 40}]}"#,
    )
    .unwrap();
    let stderr = fail(&[
        "train",
        "--arch",
        arch.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        stderr.contains("arch.json") && stderr.contains("pool_size 40"),
        "{stderr}"
    );

    let stderr = fail(&["evaluate", "--model", dir.path().to_str().unwrap()]);
    assert!(stderr.contains("arch.json"), "{stderr}");
}

#[test]
fn missing_data_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_host-trainer"))
        .args(["train", "--out", "out"])
        .current_dir(dir.path())
        .env_remove("CIFAR10_DATA")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("host-trainer download"), "{stderr}");
}
