//! `host-trainer search`: random search or successive halving over a search space
//! ([`space`]), each setting scored by stratified K-fold cross-validation ([`folds`]) on the
//! training set with the protocol of `train` (a validation split inside the training folds,
//! early stopping), then the best setting refit on the whole training set by `train` itself.
//!
//! The search directory holds `trials.jsonl` (the trial log, [`trials`]), `results.json`,
//! `results.csv` and `scores.png` ([`report`]), and `best/`, a `train --out` directory.
//! Every finished fold is in the log before the next one starts, so a killed search resumes
//! losing only the fold it was training.

pub mod folds;
pub mod report;
pub mod rungs;
pub mod space;
pub mod trials;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use crate::data::{self, Dataset, NUM_CLASSES, Wanted, split};
use crate::evaluate::{Evaluation, evaluate};
use crate::train::{self, Session, TrainConfig};
use report::{RefitSummary, Results, Row};
use rungs::Rung;
use space::{Setting, Space};
use trials::{FoldRecord, TrialLog};

/// How settings compete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// Every setting on the whole budget, as scikit-learn's `RandomizedSearchCV`.
    Random,
    /// Successive halving, as scikit-learn's `HalvingRandomSearchCV`: the best third of each
    /// rung goes on with three times the budget.
    Halving,
}

/// What the budget of a halving rung counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Resource {
    /// Training images: a stratified sample of the training folds (scikit-learn's
    /// `n_samples`); the held-out fold is always scored whole.
    Images,
    /// The maximum number of epochs.
    Epochs,
}

impl Resource {
    /// The budget's unit, for messages.
    pub fn unit(self) -> &'static str {
        match self {
            Resource::Images => "images",
            Resource::Epochs => "epochs",
        }
    }
}

/// Everything that decides which trainings a search runs and how they are scored. A
/// resumed search must have the same, field for field; the trial log's header records it.
#[derive(Debug, Clone, Serialize)]
pub struct Options {
    /// The data set, as found.
    pub data: PathBuf,
    /// The search space.
    pub space: Space,
    /// Settings to draw (`--iter`).
    pub iter: usize,
    /// Cross-validation folds.
    pub folds: usize,
    /// Random search or successive halving.
    pub strategy: Strategy,
    /// What a halving rung's budget counts.
    pub resource: Resource,
    /// The smallest budget halving may start from (default: `2 * folds * 10` images, as
    /// scikit-learn's `min_resources="smallest"`, or 1 epoch).
    pub min_resource: Option<usize>,
    /// The training settings each setting overrides; its seed also draws the settings and
    /// the folds.
    pub training: TrainConfig,
    /// Search on at most this many training images (a stratified sample, as `train` takes).
    pub limit_train: Option<usize>,
    /// Evaluate the refit on at most this many test images.
    pub limit_test: Option<usize>,
}

impl Options {
    /// Checks the counts, before anything is read or trained.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.folds < 2 {
            bail!(
                "--folds {}: cross-validation needs at least 2 folds",
                self.folds
            );
        }
        if self.iter == 0 {
            bail!("--iter 0: a search needs at least one setting");
        }
        if self.min_resource == Some(0) {
            bail!("--min-resource 0: a budget must be at least 1");
        }
        if self.training.epochs == 0 {
            bail!("--epochs 0: every training needs at least one epoch");
        }
        Ok(())
    }
}

/// The files of a search directory.
struct SearchFiles {
    dir: PathBuf,
}

impl SearchFiles {
    fn log(&self) -> PathBuf {
        self.dir.join("trials.jsonl")
    }

    fn results_json(&self) -> PathBuf {
        self.dir.join("results.json")
    }

    fn results_csv(&self) -> PathBuf {
        self.dir.join("results.csv")
    }

    fn scores_png(&self) -> PathBuf {
        self.dir.join("scores.png")
    }

    /// The refit, a `train --out` directory.
    fn best(&self) -> PathBuf {
        self.dir.join("best")
    }

    /// Where the fold in progress trains; emptied before and after each fold.
    fn fold_work(&self) -> PathBuf {
        self.dir.join("fold-in-progress")
    }
}

/// The refit of the best setting on the whole training set, which `train` runs.
#[derive(Debug, Clone)]
pub struct Refit {
    /// Its `--out`.
    pub dir: PathBuf,
    /// The best setting's architecture file.
    pub arch: PathBuf,
    /// The data set.
    pub data: PathBuf,
    /// The best setting's training settings.
    pub config: TrainConfig,
    /// As the search's.
    pub limit_train: Option<usize>,
    /// As the search's.
    pub limit_test: Option<usize>,
    /// Go on from a refit interrupted earlier.
    pub resume: bool,
}

/// A `ValueEnum`'s name on the command line.
fn value_name<T: clap::ValueEnum>(value: T) -> anyhow::Result<String> {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_string())
        .context("a value without a command-line name")
}

impl Refit {
    /// The arguments of the `host-trainer train` command that runs the refit (after the
    /// program name). Every training setting is given, so the recipe does not matter.
    pub fn train_args(&self) -> anyhow::Result<Vec<OsString>> {
        let c = &self.config;
        let mut args: Vec<OsString> = vec![
            "train".into(),
            "--arch".into(),
            self.arch.clone().into(),
            "--out".into(),
            self.dir.clone().into(),
            "--data".into(),
            self.data.clone().into(),
        ];
        let options = [
            ("--epochs", c.epochs.to_string()),
            ("--batch-size", c.batch_size.to_string()),
            ("--optimizer", value_name(c.optimizer)?),
            ("--lr", c.learning_rate.to_string()),
            ("--weight-decay", c.weight_decay.to_string()),
            ("--schedule", value_name(c.schedule)?),
            ("--patience", c.patience.to_string()),
            ("--val-split", c.validation_split.to_string()),
            ("--seed", c.seed.to_string()),
            ("--backend", value_name(c.backend)?),
        ];
        for (flag, value) in options {
            args.push(flag.into());
            args.push(value.into());
        }
        args.push(
            if c.augment {
                "--augment"
            } else {
                "--no-augment"
            }
            .into(),
        );
        args.push(
            if c.standardize {
                "--standardize"
            } else {
                "--no-standardize"
            }
            .into(),
        );
        for (flag, limit) in [
            ("--limit-train", self.limit_train),
            ("--limit-test", self.limit_test),
        ] {
            if let Some(n) = limit {
                args.push(flag.into());
                args.push(n.to_string().into());
            }
        }
        if self.resume {
            args.push("--resume".into());
        }
        Ok(args)
    }
}

/// Runs the search described by `options` in `out` (resuming from its trial log if
/// `resume`), writes the results, and hands the best setting to `refit`, which trains it as
/// `train` does into `out/best/`.
pub fn run(
    options: &Options,
    out: &Path,
    resume: bool,
    show_progress: bool,
    refit: impl FnOnce(&Refit) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    options.validate()?;
    let settings = draw_settings(options)?;
    let files = SearchFiles {
        dir: out.to_path_buf(),
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;

    let options_json = serde_json::to_string(options)?;
    let mut trainer = FoldTrainer {
        options,
        work_dir: files.fold_work(),
        show_progress,
        data: None,
        expected_images: None,
        trained: 0,
    };
    let (log, logged, training_images) = open_log(&files, &options_json, resume, &mut trainer)?;
    trainer.expected_images = Some(training_images);
    let rungs = plan(options, settings.len(), training_images);
    let mut search = CrossValidation {
        options,
        settings: &settings,
        rungs: &rungs,
        logged,
        log,
        trainer,
        progress: Progress::new(show_progress, &rungs, options.folds),
    };
    let rows = search.run()?;
    let trained = search.trainer.trained;
    // Closes the trial log: every fold is in it.
    drop(search);

    let summary = Summary {
        options,
        files: &files,
        settings: settings.len(),
        training_images,
        rungs: &rungs,
        rows: &rows,
    };
    if trained == 0 && summary.is_finished() {
        summary.print_table();
        summary.print_refit_report()?;
        println!(
            "\nthe search in {} is finished; nothing left to do",
            out.display()
        );
        return Ok(());
    }
    summary.write(None)?;
    summary.print_table();
    // A refit from before this run's folds may no longer be of the best setting.
    let refitted = summary.refit(trained > 0, refit)?;
    summary.write(Some(refitted))?;
    println!(
        "wrote trials.jsonl, results.json, results.csv, scores.png and best/ to {}",
        out.display()
    );
    Ok(())
}

/// The cross-validation of every rung: trains the folds the log lacks, appending each.
struct CrossValidation<'a> {
    options: &'a Options,
    settings: &'a [Setting],
    rungs: &'a [Rung],
    logged: HashMap<FoldKey, FoldRecord>,
    log: TrialLog,
    trainer: FoldTrainer<'a>,
    progress: Progress,
}

impl CrossValidation<'_> {
    /// Every rung's rows, ranked; each rung after the first takes the best of the one
    /// before.
    fn run(&mut self) -> anyhow::Result<Vec<Row>> {
        let rungs = self.rungs;
        let mut rows = Vec::new();
        let mut candidates: Vec<usize> = (0..self.settings.len()).collect();
        for (index, rung) in rungs.iter().enumerate() {
            if self.options.strategy == Strategy::Halving {
                println!(
                    "rung {}/{}: {} settings, {} {} per fold training",
                    index + 1,
                    rungs.len(),
                    candidates.len(),
                    rung.budget,
                    self.options.resource.unit()
                );
            }
            let rung_rows = candidates
                .iter()
                .map(|&setting| self.score(setting, index))
                .collect::<anyhow::Result<Vec<Row>>>()?;
            if let Some(next) = rungs.get(index + 1) {
                let mut ranked = rung_rows.clone();
                report::rank(&mut ranked);
                candidates = ranked
                    .iter()
                    .take(next.candidates)
                    .map(|row| row.setting - 1)
                    .collect();
                candidates.sort_unstable();
            }
            rows.extend(rung_rows);
        }
        report::rank(&mut rows);
        Ok(rows)
    }

    /// The row of setting `setting` (from 0) in rung `rung` (from 0): its folds from the log,
    /// or trained now, in which case its score is printed.
    fn score(&mut self, setting: usize, rung: usize) -> anyhow::Result<Row> {
        let options = self.options;
        let (settings, rungs) = (self.settings, self.rungs);
        let mut records = Vec::with_capacity(options.folds);
        let mut trained_now = false;
        for fold in 0..options.folds {
            let job = FoldJob {
                setting: setting + 1,
                params: &settings[setting],
                rung: rung + 1,
                budget: rungs[rung].budget,
                last_rung: rung + 1 == rungs.len(),
                fold,
            };
            let record = match self.logged.get(&(job.setting, job.rung, fold + 1)) {
                Some(record) => {
                    self.progress.skip(job.budget);
                    record.clone()
                }
                None => {
                    let what = job.describe(settings.len(), rungs.len(), options);
                    self.progress.announce(&what);
                    let record = self.trainer.train(&job)?;
                    self.log.append(&record)?;
                    self.progress.finish(job.budget, record.seconds);
                    trained_now = true;
                    record
                }
            };
            records.push(record);
        }

        let row = Row::new(
            setting + 1,
            &rungs[rung],
            rung + 1,
            &settings[setting],
            &records,
        );
        if trained_now {
            let rung_text = match options.strategy {
                Strategy::Random => String::new(),
                Strategy::Halving => format!("rung {}/{}, ", rung + 1, rungs.len()),
            };
            println!(
                "{rung_text}setting {}/{}: {} in {:.0} s",
                setting + 1,
                settings.len(),
                row.score_line(Strategy::Random, options.resource),
                row.seconds
            );
        }
        Ok(row)
    }
}

/// Draws the settings and checks that each makes a usable network, before any training.
fn draw_settings(options: &Options) -> anyhow::Result<Vec<Setting>> {
    let space = &options.space;
    if let Some(size) = space.grid_size().filter(|&s| s < options.iter) {
        tracing::warn!(
            "--iter {}: the space holds only {size} settings (every parameter is a list); \
             searching all of them",
            options.iter
        );
    }
    let settings = space.sample(options.iter, options.training.seed);
    for (index, setting) in settings.iter().enumerate() {
        space
            .apply(setting, &options.training)
            .with_context(|| format!("setting {} of the space", index + 1))?;
    }
    Ok(settings)
}

/// A finished fold: (setting, rung, fold), each from 1.
type FoldKey = (usize, usize, usize);

/// Opens the trial log to resume, or starts one (which needs the data's size).
fn open_log(
    files: &SearchFiles,
    options_json: &str,
    resume: bool,
    trainer: &mut FoldTrainer,
) -> anyhow::Result<(TrialLog, HashMap<FoldKey, FoldRecord>, usize)> {
    let path = files.log();
    let opened = if path.exists() {
        if !resume {
            bail!(
                "{} already holds a search; pass --resume to go on with it, or choose another \
                 --out",
                files.dir.display()
            );
        }
        TrialLog::open(&path, options_json)?
    } else {
        if resume {
            tracing::warn!(
                "--resume: no trial log in {}; starting a new search",
                files.dir.display()
            );
        }
        None
    };
    match opened {
        Some(opened) => {
            println!(
                "resuming: {} fold trainings already in {}",
                opened.records.len(),
                path.display()
            );
            let logged = opened
                .records
                .into_iter()
                .map(|r| ((r.setting, r.rung, r.fold), r))
                .collect();
            Ok((opened.log, logged, opened.training_images))
        }
        None => {
            let training_images = trainer.data()?.0.len();
            let log = TrialLog::create(&path, options_json, training_images)?;
            Ok((log, HashMap::new(), training_images))
        }
    }
}

/// The rungs for this search: budgets up to all training-fold images, or `--epochs`.
fn plan(options: &Options, settings: usize, training_images: usize) -> Vec<Rung> {
    let folds = options.folds;
    let (max_budget, smallest) = match options.resource {
        Resource::Images => (
            training_images - training_images.div_ceil(folds),
            2 * folds * NUM_CLASSES,
        ),
        Resource::Epochs => (options.training.epochs, 1),
    };
    rungs::plan(
        options.strategy,
        settings,
        max_budget,
        options.min_resource.unwrap_or(smallest),
    )
}

/// One fold training to run.
struct FoldJob<'a> {
    /// From 1.
    setting: usize,
    params: &'a Setting,
    /// From 1.
    rung: usize,
    budget: usize,
    /// The last rung trains on the whole training folds whatever the budget's rounding.
    last_rung: bool,
    /// From 0.
    fold: usize,
}

impl FoldJob<'_> {
    fn describe(&self, settings: usize, rungs: usize, options: &Options) -> String {
        let mut text = format!(
            "setting {}/{settings}, fold {}/{}",
            self.setting,
            self.fold + 1,
            options.folds
        );
        if options.strategy == Strategy::Halving {
            text.push_str(&format!(
                ", rung {}/{rungs} ({} {})",
                self.rung,
                self.budget,
                options.resource.unit()
            ));
        }
        text
    }
}

/// Trains and scores folds, reading the data set the first time one is needed (a finished
/// search that is resumed reads nothing).
struct FoldTrainer<'a> {
    options: &'a Options,
    work_dir: PathBuf,
    show_progress: bool,
    /// The training set and its folds.
    data: Option<(Dataset, Vec<Vec<usize>>)>,
    /// The training set's size in the trial log, which the data read must match.
    expected_images: Option<usize>,
    /// Folds trained by this run.
    trained: usize,
}

impl FoldTrainer<'_> {
    fn data(&mut self) -> anyhow::Result<&(Dataset, Vec<Vec<usize>>)> {
        if self.data.is_none() {
            let set = load_training_set(self.options)?;
            if let Some(expected) = self.expected_images.filter(|&n| n != set.len()) {
                bail!(
                    "{}: {} training images, but the trial log was written with {expected}; \
                     has the data set changed?",
                    self.options.data.display(),
                    set.len()
                );
            }
            let folds = folds::stratified_folds(
                &set.labels,
                self.options.folds,
                self.options.training.seed,
            );
            self.data = Some((set, folds));
        }
        self.data.as_ref().context("the data set was just read")
    }

    fn train(&mut self, job: &FoldJob) -> anyhow::Result<FoldRecord> {
        let options = self.options;
        let (spec, mut config) = options.space.apply(job.params, &options.training)?;
        self.data()?;
        let Some((set, folds)) = &self.data else {
            bail!("the data set is not loaded");
        };

        let mut indices = folds::training_indices(folds, job.fold);
        match options.resource {
            Resource::Images if !job.last_rung && job.budget < indices.len() => {
                let labels: Vec<u8> = indices.iter().map(|&i| set.labels[i]).collect();
                indices = split::stratified_sample(&labels, job.budget, config.seed)
                    .into_iter()
                    .map(|position| indices[position])
                    .collect();
            }
            Resource::Images => {}
            Resource::Epochs => config.epochs = job.budget,
        }
        let training = set.subset(&indices);
        let held_out = set.subset(&folds[job.fold]);

        let started = std::time::Instant::now();
        remove_dir_if_present(&self.work_dir)?;
        let session = Session {
            dir: &self.work_dir,
            resume: false,
            show_progress: self.show_progress,
        };
        let trained = train::train(&training, &spec, &config, &session).with_context(|| {
            format!(
                "setting {} {}, fold {}",
                job.setting,
                job.params,
                job.fold + 1
            )
        })?;
        let evaluation = evaluate(&trained.model, &held_out, &trained.normalization);
        remove_dir_if_present(&self.work_dir)?;
        self.trained += 1;

        let correct = (0..evaluation.confusion.counts.len())
            .map(|class| evaluation.confusion.counts[class][class])
            .sum();
        Ok(FoldRecord {
            setting: job.setting,
            rung: job.rung,
            fold: job.fold + 1,
            budget: job.budget,
            train_images: training.len(),
            correct,
            images: held_out.len(),
            score: evaluation.accuracy,
            best_epoch: trained.best_epoch,
            epochs: trained.history.len(),
            seconds: started.elapsed().as_secs_f64(),
            params: job.params.clone(),
        })
    }
}

fn remove_dir_if_present(dir: &Path) -> anyhow::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

/// Reads the data set and takes the searched training images from it, as `train` does.
fn load_training_set(options: &Options) -> anyhow::Result<Dataset> {
    let started = std::time::Instant::now();
    let cifar = data::load(&options.data, Wanted::Both)?;
    let all = cifar.train.len();
    let set = match options.limit_train {
        Some(n) => cifar.train.limit(n, options.training.seed),
        None => cifar.train,
    };
    println!(
        "data: {} of {all} training images from {} in {:.1} s",
        set.len(),
        options.data.display(),
        started.elapsed().as_secs_f64()
    );
    if set.len() < 2 * options.folds {
        bail!(
            "{} training images are too few for {} folds",
            set.len(),
            options.folds
        );
    }
    Ok(set)
}

/// The progress of the whole search, drawn as a bar on a line of its own before each fold
/// training: `train` prints a line per epoch, which would tear a bar redrawn in place.
struct Progress {
    visible: bool,
    total_folds: usize,
    done_folds: usize,
    /// Budget units (images or epochs) of all fold trainings, and of those done.
    total_cost: f64,
    done_cost: f64,
    /// Budget units trained by this run and the seconds they took, for the ETA.
    run_cost: f64,
    run_seconds: f64,
}

impl Progress {
    fn new(visible: bool, rungs: &[Rung], folds: usize) -> Self {
        Self {
            visible,
            total_folds: rungs.iter().map(|r| r.candidates * folds).sum(),
            done_folds: 0,
            total_cost: rungs
                .iter()
                .map(|r| (r.candidates * folds * r.budget) as f64)
                .sum(),
            done_cost: 0.0,
            run_cost: 0.0,
            run_seconds: 0.0,
        }
    }

    /// A fold found in the log.
    fn skip(&mut self, budget: usize) {
        self.done_folds += 1;
        self.done_cost += budget as f64;
    }

    /// A fold trained now.
    fn finish(&mut self, budget: usize, seconds: f64) {
        self.skip(budget);
        self.run_cost += budget as f64;
        self.run_seconds += seconds;
    }

    fn announce(&self, what: &str) {
        if self.visible {
            eprintln!("{}", self.line(what));
        }
    }

    fn line(&self, what: &str) -> String {
        const WIDTH: usize = 30;
        let fraction = (self.done_cost / self.total_cost.max(1.0)).clamp(0.0, 1.0);
        let filled = (fraction * WIDTH as f64).round() as usize;
        let bar = match filled {
            0 => " ".repeat(WIDTH),
            WIDTH => "=".repeat(WIDTH),
            n => format!("{}>{}", "=".repeat(n - 1), " ".repeat(WIDTH - n)),
        };
        let eta = if self.run_cost > 0.0 {
            let left = self.run_seconds / self.run_cost * (self.total_cost - self.done_cost);
            format!(
                "ETA {}",
                indicatif::HumanDuration(Duration::from_secs_f64(left.max(0.0)))
            )
        } else {
            "ETA after the first fold".to_string()
        };
        format!(
            "search [{bar}] {}/{} fold trainings, {eta}: {what}",
            self.done_folds, self.total_folds
        )
    }
}

/// What the refit's `metrics.json` tells the search.
#[derive(Deserialize)]
struct RefitMetrics {
    test: Evaluation,
}

fn read_refit(dir: &Path) -> anyhow::Result<RefitSummary> {
    let path = dir.join("metrics.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let metrics: RefitMetrics = serde_json::from_str(&text)
        .with_context(|| format!("{}: unexpected contents", path.display()))?;
    Ok(RefitSummary {
        dir: "best".into(),
        test_accuracy: metrics.test.accuracy,
        test_images: metrics.test.images,
    })
}

/// The finished cross-validation, ready to report.
struct Summary<'a> {
    options: &'a Options,
    files: &'a SearchFiles,
    settings: usize,
    training_images: usize,
    rungs: &'a [Rung],
    rows: &'a [Row],
}

impl Summary<'_> {
    /// Whether the refit ran and the results record it.
    fn is_finished(&self) -> bool {
        let recorded = std::fs::read_to_string(self.files.results_json())
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .is_some_and(|results| results["refit"].is_object());
        recorded && self.files.best().join("metrics.json").is_file()
    }

    fn write(&self, refit: Option<RefitSummary>) -> anyhow::Result<()> {
        let results = Results {
            strategy: self.options.strategy,
            resource: self.options.resource,
            folds: self.options.folds,
            settings: self.settings,
            training_images: self.training_images,
            rungs: self.rungs,
            rows: self.rows,
            fold_seconds: self.fold_seconds(),
            best: &self.rows[0],
            refit,
        };
        crate::output::write_json(&self.files.results_json(), &results)?;
        let names: Vec<&String> = self.options.space.params.keys().collect();
        let csv = report::csv_bytes(self.rows, self.options.folds, &names)?;
        crate::output::write_atomic(&self.files.results_csv(), &csv)?;
        report::scores_png(
            &self.files.scores_png(),
            &self.options.space,
            self.rows,
            self.rungs,
            self.options.resource,
        )
    }

    /// Trains the best setting on the whole training set with `refit`, into `best/`
    /// (emptied first if `stale`), and reads its test figures.
    fn refit(
        &self,
        stale: bool,
        refit: impl FnOnce(&Refit) -> anyhow::Result<()>,
    ) -> anyhow::Result<RefitSummary> {
        let best_dir = self.files.best();
        if stale {
            remove_dir_if_present(&best_dir)?;
        }
        std::fs::create_dir_all(&best_dir)
            .with_context(|| format!("cannot create {}", best_dir.display()))?;
        let options = self.options;
        let (spec, config) = options
            .space
            .apply(&self.rows[0].params, &options.training)?;
        let arch = best_dir.join("arch.json");
        crate::output::write_json(&arch, &spec)?;

        println!(
            "\nrefit of the best setting on all {} training images, evaluated on the test set:",
            self.training_images
        );
        refit(&Refit {
            dir: best_dir.clone(),
            arch,
            data: options.data.clone(),
            config,
            limit_train: options.limit_train,
            limit_test: options.limit_test,
            resume: best_dir.join("checkpoint").join("state.json").is_file(),
        })?;
        read_refit(&best_dir)
    }

    fn fold_seconds(&self) -> f64 {
        self.rows.iter().map(|r| r.seconds).sum()
    }

    fn print_table(&self) {
        let options = self.options;
        println!(
            "\nmean accuracy on the held-out fold (+/- 2 standard deviations) of {} settings, \
             {} folds, best first:",
            self.settings, options.folds
        );
        for row in self.rows {
            println!("{}", row.score_line(options.strategy, options.resource));
        }
        let folds: usize = self.rows.iter().map(|r| r.fold_scores.len()).sum();
        println!(
            "\nbest: {}\ncross-validation: {folds} fold trainings in {:.0} s",
            self.rows[0].score_line(options.strategy, options.resource),
            self.fold_seconds()
        );
    }

    fn print_refit_report(&self) -> anyhow::Result<()> {
        let path = self.files.best().join("report.txt");
        let report = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        println!(
            "\nrefit of the best setting on all {} training images ({}):\n\n{report}",
            self.training_images,
            self.files.best().display()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn the_refit_is_a_train_command_line_that_parses() {
        let mut config = TrainConfig::improved();
        config.learning_rate = 0.000123456789;
        config.augment = false;
        let refit = Refit {
            dir: "out/best".into(),
            arch: "out/best/arch.json".into(),
            data: "data.tar.gz".into(),
            config,
            limit_train: Some(100),
            limit_test: None,
            resume: true,
        };
        let args = refit.train_args().unwrap();
        let text: Vec<String> = args.iter().map(|a| a.to_string_lossy().into()).collect();
        let text = text.join(" ");
        for expected in [
            "train --arch out/best/arch.json --out out/best --data data.tar.gz",
            "--optimizer adam --lr 0.000123456789",
            "--schedule cosine",
            "--no-augment --standardize --limit-train 100 --resume",
        ] {
            assert!(text.contains(expected), "{text}");
        }
        let argv = std::iter::once(OsString::from("host-trainer")).chain(args);
        crate::cli::Cli::try_parse_from(argv).unwrap();
    }

    #[test]
    fn progress_shows_the_share_of_the_budget_and_an_eta() {
        let rungs = [
            Rung {
                candidates: 3,
                budget: 100,
            },
            Rung {
                candidates: 1,
                budget: 300,
            },
        ];
        let mut progress = Progress::new(false, &rungs, 2);
        assert_eq!(progress.total_folds, 8);
        assert!(progress.line("x").contains("ETA after the first fold"));
        progress.skip(100);
        progress.finish(100, 20.0);
        // 200 of 1,200 units done, 20 s per 100 units: 1,000 units left take 200 s.
        let line = progress.line("setting 2/3, fold 1/2");
        assert!(line.starts_with("search [====>     "), "{line}");
        assert!(
            line.ends_with("2/8 fold trainings, ETA 3 minutes: setting 2/3, fold 1/2"),
            "{line}"
        );
    }

    #[test]
    fn counts_are_checked_first() {
        let options = |folds, iter| Options {
            data: "data".into(),
            space: Space::tutorial().unwrap(),
            iter,
            folds,
            strategy: Strategy::Random,
            resource: Resource::Images,
            min_resource: None,
            training: TrainConfig::tutorial(),
            limit_train: None,
            limit_test: None,
        };
        let err = options(1, 10).validate().unwrap_err().to_string();
        assert!(err.contains("--folds 1"), "{err}");
        let err = options(3, 0).validate().unwrap_err().to_string();
        assert!(err.contains("--iter 0"), "{err}");
        options(2, 1).validate().unwrap();
    }
}
