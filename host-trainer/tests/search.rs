//! `host-trainer search` end to end, on 1,000 images of the shared CIFAR-10 copy and one
//! epoch per training: the outputs, a resume after a kill, successive halving, bad input.

mod fixtures;

use std::path::Path;

use serde_json::Value;

use fixtures::{fail, host_trainer, json, succeed};

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

/// Two settings of a small network: every parameter a list, so both grid points are drawn.
const TWO_SETTINGS: &str = "base = \"tutorial-tuned\"\n\
    [params]\n\
    conv1.filters = [8, 16]\n\
    conv2.filters = [8]\n\
    conv2.kernel = [3]\n\
    dense1.units = [32]\n";

/// A search over `space` into `out`, 1,000 training images in 2 folds, one epoch each.
fn search_args<'a>(data: &'a str, space: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "search",
        "--quiet",
        "--data",
        data,
        "--space",
        space,
        "--folds",
        "2",
        "--epochs",
        "1",
        "--limit-train",
        "1000",
        "--limit-test",
        "500",
        "--seed",
        "3",
        "--out",
        out,
    ];
    args.extend(extra);
    args
}

/// Writes `text` as `space.toml` in `dir`.
fn space_file(dir: &Path, text: &str) -> String {
    let path = dir.join("space.toml");
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

fn epoch_lines(stdout: &str) -> usize {
    stdout.lines().filter(|l| l.starts_with("epoch ")).count()
}

#[test]
fn random_search_writes_consistent_outputs_and_a_finished_search_only_prints() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let space = space_file(dir.path(), TWO_SETTINGS);
    let out_path = dir.path().join("search");
    let out = out_path.to_str().unwrap();

    let stdout = succeed(&search_args(data, &space, out, &["--iter", "2"]));
    assert_eq!(
        epoch_lines(&stdout),
        2 * 2 + 1,
        "4 fold trainings and the refit:\n{stdout}"
    );
    assert!(
        stdout.contains("setting 1/2: ") && stdout.contains("setting 2/2: "),
        "{stdout}"
    );

    let results = json(&out_path.join("results.json"));
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "one row per setting");
    assert_eq!(results["settings"], 2);
    assert_eq!(results["training_images"], 1000);
    let mut filters: Vec<i64> = rows
        .iter()
        .map(|r| r["params"]["conv1.filters"].as_i64().unwrap())
        .collect();
    filters.sort_unstable();
    assert_eq!(filters, [8, 16], "both grid points, no repeat");
    for (rank, row) in rows.iter().enumerate() {
        assert_eq!(row["rank"], rank + 1);
        let folds: Vec<f64> = row["fold_scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap())
            .collect();
        assert_eq!(folds.len(), 2);
        let mean = (folds[0] + folds[1]) / 2.0;
        assert!((row["mean_score"].as_f64().unwrap() - mean).abs() < 1e-12);
        let std = (folds[0] - folds[1]).abs() / 2.0;
        assert!((row["std_score"].as_f64().unwrap() - std).abs() < 1e-12);
        let line = format!(
            "{:.3} (+/-{:.3}) for {{'conv1.filters': {}, ",
            mean,
            2.0 * std,
            row["params"]["conv1.filters"]
        );
        assert!(stdout.contains(&line), "{line} missing from:\n{stdout}");
    }
    assert!(rows[0]["mean_score"].as_f64() >= rows[1]["mean_score"].as_f64());
    assert_eq!(results["best"], rows[0]);
    let seconds: f64 = rows.iter().map(|r| r["seconds"].as_f64().unwrap()).sum();
    assert!((results["fold_seconds"].as_f64().unwrap() - seconds).abs() < 1e-9);

    let log = lines(&out_path.join("trials.jsonl"));
    assert_eq!(log.len(), 1 + 2 * 2, "a header and one line per fold");
    for line in &log[1..] {
        let record: Value = serde_json::from_str(line).unwrap();
        let row = rows
            .iter()
            .find(|r| r["setting"] == record["setting"])
            .unwrap();
        let fold = record["fold"].as_u64().unwrap() as usize;
        assert_eq!(row["fold_scores"][fold - 1], record["score"]);
        assert_eq!(
            record["images"], 500,
            "each held-out fold is half of the images"
        );
        assert_eq!(record["train_images"], 500);
    }

    let csv = lines(&out_path.join("results.csv"));
    assert_eq!(csv.len(), 1 + 2);
    assert!(
        csv[0].starts_with("rank,setting,rung,budget,mean_score,std_score,fold_1,fold_2,seconds,"),
        "{}",
        csv[0]
    );
    assert!(csv[0].ends_with("conv1.filters,conv2.filters,conv2.kernel,dense1.units"));
    let best_csv: Vec<&str> = csv[1].split(',').collect();
    assert_eq!(best_csv[1], rows[0]["setting"].to_string());
    assert_eq!(best_csv[9], rows[0]["params"]["conv1.filters"].to_string());

    let png = image::image_dimensions(out_path.join("scores.png")).unwrap();
    assert_eq!(png, host_trainer::search::report::scores_png_size(4));
    assert_eq!(png, (1200, 640));

    let best = out_path.join("best");
    for file in [
        "model.bpk",
        "arch.json",
        "training.json",
        "metrics.json",
        "report.txt",
        "confusion.png",
        "curves.png",
    ] {
        assert!(best.join(file).is_file(), "best/{file} missing");
    }
    let arch = json(&best.join("arch.json"));
    assert_eq!(
        arch["conv"][0]["filters"],
        rows[0]["params"]["conv1.filters"]
    );
    assert_eq!(arch["conv"][1]["kernel"], 3);
    assert_eq!(arch["dense"][0]["units"], 32);
    let training = json(&best.join("training.json"));
    assert_eq!(
        training["config"]["optimizer"], "adadelta",
        "the tutorial recipe"
    );
    assert_eq!(training["config"]["epochs"], 1);
    assert_eq!(training["config"]["seed"], 3);
    let metrics = json(&best.join("metrics.json"));
    assert_eq!(
        metrics["train_images"].as_u64().unwrap() + metrics["validation_images"].as_u64().unwrap(),
        1000,
        "the refit trains on the whole searched training set"
    );
    assert_eq!(metrics["test"]["images"], 500);
    assert_eq!(
        results["refit"]["test_accuracy"],
        metrics["test"]["accuracy"]
    );
    assert!(
        stdout.contains("macro avg"),
        "the refit prints train's report"
    );

    // Resuming a finished search trains nothing, writes nothing and prints the results.
    let before: Vec<Vec<u8>> = ["trials.jsonl", "results.json", "best/metrics.json"]
        .iter()
        .map(|f| std::fs::read(out_path.join(f)).unwrap())
        .collect();
    let again = succeed(&search_args(
        data,
        &space,
        out,
        &["--iter", "2", "--resume"],
    ));
    assert_eq!(epoch_lines(&again), 0, "{again}");
    assert!(again.contains("nothing left to do"), "{again}");
    assert!(again.contains(&format!(
        "best: {:.3}",
        rows[0]["mean_score"].as_f64().unwrap()
    )));
    assert!(again.contains("confusion matrix"), "{again}");
    let after: Vec<Vec<u8>> = ["trials.jsonl", "results.json", "best/metrics.json"]
        .iter()
        .map(|f| std::fs::read(out_path.join(f)).unwrap())
        .collect();
    assert!(before == after, "a finished search was rewritten");

    let stderr = fail(&search_args(
        data,
        &space,
        out,
        &["--iter", "3", "--resume"],
    ));
    assert!(
        stderr.contains("trials.jsonl") && stderr.contains("iter: 2 in the log, 3 now"),
        "{stderr}"
    );
    let stderr = fail(&search_args(data, &space, out, &["--iter", "2"]));
    assert!(stderr.contains("--resume"), "{stderr}");
}

#[test]
fn a_killed_search_resumes_with_only_the_missing_folds() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let space = space_file(dir.path(), TWO_SETTINGS);
    let out_path = dir.path().join("search");
    let out = out_path.to_str().unwrap();
    succeed(&search_args(data, &space, out, &["--iter", "2"]));
    let log_path = out_path.join("trials.jsonl");
    let original = lines(&log_path);
    let original_results = json(&out_path.join("results.json"));

    // A kill while the second fold's line was being written, before any result: the log
    // keeps its header, the first fold and half a line.
    let half = &original[2][..original[2].len() / 2];
    std::fs::write(
        &log_path,
        format!("{}\n{}\n{half}", original[0], original[1]),
    )
    .unwrap();
    for file in ["results.json", "results.csv", "scores.png"] {
        std::fs::remove_file(out_path.join(file)).unwrap();
    }
    std::fs::remove_dir_all(out_path.join("best")).unwrap();

    let output = host_trainer(&search_args(
        data,
        &space,
        out,
        &["--iter", "2", "--resume"],
    ));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("resuming: 1 fold trainings already in"),
        "{stdout}"
    );
    assert!(stderr.contains("unfinished last line"), "{stderr}");
    assert_eq!(
        epoch_lines(&stdout),
        3 + 1,
        "3 missing folds and the refit:\n{stdout}"
    );

    let resumed = lines(&log_path);
    assert_eq!(resumed.len(), original.len(), "no fold twice, none missing");
    assert_eq!(
        resumed[..2],
        original[..2],
        "the untouched fold is kept as it was"
    );
    let key = |line: &str| {
        let record: Value = serde_json::from_str(line).unwrap();
        (
            record["setting"].clone(),
            record["fold"].clone(),
            record["correct"].clone(),
        )
    };
    let keys = |lines: &[String]| -> Vec<_> { lines[1..].iter().map(|l| key(l)).collect() };
    assert_eq!(keys(&resumed), keys(&original), "training repeats exactly");

    let results = json(&out_path.join("results.json"));
    for (a, b) in results["rows"]
        .as_array()
        .unwrap()
        .iter()
        .zip(original_results["rows"].as_array().unwrap())
    {
        assert_eq!(a["setting"], b["setting"]);
        assert_eq!(a["fold_scores"], b["fold_scores"]);
        assert_eq!(a["mean_score"], b["mean_score"]);
    }
    assert!(out_path.join("best/model.bpk").is_file());
}

#[test]
fn halving_reports_every_rung_and_refits_the_last_rungs_best() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let space = space_file(
        dir.path(),
        "[params]\nconv1.filters = [8, 16]\nconv2.filters = [8]\n\
         dense1.units = { randint = [20, 60] }\n",
    );
    let out_path = dir.path().join("search");
    let out = out_path.to_str().unwrap();
    let stdout = succeed(&search_args(
        data,
        &space,
        out,
        &["--iter", "3", "--strategy", "halving"],
    ));

    // 3 settings on a third of the 500 training-fold images, then the best on all 500.
    let results = json(&out_path.join("results.json"));
    let rungs = results["rungs"].as_array().unwrap();
    assert_eq!(rungs.len(), 2);
    assert_eq!(
        (rungs[0]["candidates"].as_u64(), rungs[0]["budget"].as_u64()),
        (Some(3), Some(166))
    );
    assert_eq!(
        (rungs[1]["candidates"].as_u64(), rungs[1]["budget"].as_u64()),
        (Some(1), Some(500))
    );
    let rows = results["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3 + 1);
    assert_eq!(
        (rows[0]["rung"].as_u64(), rows[0]["budget"].as_u64()),
        (Some(2), Some(500))
    );
    assert!(
        rows[1..]
            .iter()
            .all(|r| r["rung"] == 1 && r["budget"] == 166)
    );
    let first_rung_best = rows[1..]
        .iter()
        .max_by(|a, b| {
            a["mean_score"]
                .as_f64()
                .unwrap()
                .total_cmp(&b["mean_score"].as_f64().unwrap())
                .then(b["setting"].as_u64().cmp(&a["setting"].as_u64()))
        })
        .unwrap();
    assert_eq!(
        rows[0]["setting"], first_rung_best["setting"],
        "the best third goes on"
    );
    assert_eq!(results["best"], rows[0]);
    assert!(stdout.contains("[rung 2, 500 images]"), "{stdout}");

    let log = lines(&out_path.join("trials.jsonl"));
    assert_eq!(log.len(), 1 + 3 * 2 + 2);
    for line in &log[1..] {
        let record: Value = serde_json::from_str(line).unwrap();
        let expected = if record["rung"] == 1 { 166 } else { 500 };
        assert_eq!(record["train_images"], expected, "{line}");
    }
    let csv = lines(&out_path.join("results.csv"));
    assert_eq!(csv.len(), 1 + 4);
    assert!(
        csv[1].starts_with("1,") && csv[1].split(',').nth(2) == Some("2"),
        "{}",
        csv[1]
    );
    assert_eq!(
        image::image_dimensions(out_path.join("scores.png")).unwrap(),
        (1200, 340)
    );
    let arch = json(&out_path.join("best/arch.json"));
    assert_eq!(arch["dense"][0]["units"], rows[0]["params"]["dense1.units"]);
}

#[test]
fn bad_input_fails_with_the_file_or_field_named() {
    let data = fixtures::shared_data("cifar10-jpeg.tar.gz");
    let data = data.to_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();
    let cases = [
        (
            "[params]\nconv1.filterz = [8]\n",
            "unknown parameter 'conv1.filterz'",
        ),
        (
            "[params]\nconv1.filters = []\n",
            "conv1.filters: the list of choices is empty",
        ),
        (
            "[params]\ndense1.units = { randint = [60, 20] }\n",
            "dense1.units: randint needs low < high",
        ),
        (
            "[params]\nlr = { loguniform = [0, 1] }\n",
            "lr: loguniform needs positive bounds",
        ),
        ("[params]\nlr = [0.1\n", "not valid TOML"),
    ];
    for (text, expected) in cases {
        let space = space_file(dir.path(), text);
        let stderr = fail(&["search", "--data", data, "--space", &space, "--out", out]);
        assert!(
            stderr.contains("space.toml") && stderr.contains(expected),
            "{text}: {stderr}"
        );
    }

    let space = space_file(dir.path(), TWO_SETTINGS);
    for (flags, expected) in [
        (
            ["--folds", "1"],
            "--folds 1: cross-validation needs at least 2 folds",
        ),
        (
            ["--iter", "0"],
            "--iter 0: a search needs at least one setting",
        ),
    ] {
        let mut args = vec!["search", "--data", data, "--space", &space, "--out", out];
        args.extend(flags);
        let stderr = fail(&args);
        assert!(stderr.contains(expected), "{stderr}");
    }
    let stderr = fail(&[
        "search",
        "--data",
        data,
        "--space",
        "missing.toml",
        "--out",
        out,
    ]);
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(
        !Path::new(out).join("trials.jsonl").exists(),
        "nothing is started"
    );
}
