//! The `host-trainer` command line: flags, and what each subcommand does with them.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::data::{self, Cifar10, Wanted, download, locate};
use crate::evaluate::{Evaluation, evaluate};
use crate::model::{ArchSpec, PRESETS};
use crate::train::{self, Backend, Normalization, OptimizerKind, Schedule, Session, TrainConfig};

/// Train, evaluate and benchmark CIFAR-10 CNNs on the CPU.
#[derive(Debug, Parser)]
#[command(name = "host-trainer", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Hide progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Train a CNN on the training set and evaluate it on the test set.
    Train(TrainArgs),
    /// Re-run the test-set evaluation of a trained model directory.
    Evaluate(EvaluateArgs),
    /// Download the official CIFAR-10 binary archive, checking its MD5.
    Download(DownloadArgs),
    /// Measure training and inference throughput, in images per second.
    Bench(BenchArgs),
    /// Quantize a trained model to int8 (or export it as f32) in the core-nostd model format.
    Quantize(QuantizeArgs),
    /// Search architectures and training settings by stratified K-fold cross-validation,
    /// then refit the best on the whole training set.
    Search(SearchArgs),
}

/// Number representation of a written model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PrecisionArg {
    /// The integer-only int8 scheme.
    Int8,
    /// 32-bit floats, as trained.
    F32,
}

#[derive(Debug, Args)]
struct QuantizeArgs {
    /// A directory written by `host-trainer train`.
    #[arg(long)]
    model: PathBuf,
    /// Data set for calibration and the accuracy check (default: as for `train`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// The model file to write.
    #[arg(long)]
    out: PathBuf,
    /// Training images whose activations set the int8 ranges (a stratified sample).
    #[arg(long, default_value_t = 1000)]
    calibration: usize,
    /// Take each activation range at this percentile (for example 99.99) instead of the
    /// minimum and maximum.
    #[arg(long)]
    percentile: Option<f64>,
    /// Precision of the written model.
    #[arg(long, value_enum, default_value = "int8")]
    precision: PrecisionArg,
    /// Also write Rust source that embeds the model file and gives ARENA_BYTES.
    #[arg(long)]
    rust: Option<PathBuf>,
    /// Check accuracy on at most N test images (default: as many as the training run used).
    #[arg(long)]
    limit_test: Option<usize>,
}

/// Starting points for the training settings; any flag given overrides them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Recipe {
    /// The best settings measured here (see README): Adam, cosine schedule, augmentation.
    Improved,
    /// The tutorial's protocol: Adadelta, batch 32, 20 epochs, val split 0.2, patience 1.
    Tutorial,
}

#[derive(Debug, Args)]
struct TrainArgs {
    /// Data set: a directory or archive (default: $CIFAR10_DATA, ./data/, then the shared copy).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Architecture preset: tutorial-1conv, tutorial-2conv, tutorial-hidden or tutorial-tuned
    /// (default: tutorial-tuned).
    #[arg(long, conflicts_with = "arch")]
    preset: Option<String>,
    /// Architecture spec file (.json or .toml).
    #[arg(long)]
    arch: Option<PathBuf>,
    /// Output directory (created if needed).
    #[arg(long)]
    out: PathBuf,
    /// Settings to start from.
    #[arg(long, value_enum, default_value = "improved")]
    recipe: Recipe,
    /// Maximum number of epochs.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images per mini-batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Optimizer.
    #[arg(long, value_enum)]
    optimizer: Option<OptimizerKind>,
    /// Initial learning rate (default: the optimizer's own).
    #[arg(long)]
    lr: Option<f64>,
    /// L2 weight decay for Adam and SGD.
    #[arg(long)]
    weight_decay: Option<f64>,
    /// Learning-rate schedule.
    #[arg(long, value_enum)]
    schedule: Option<Schedule>,
    /// Epochs without a better validation loss before stopping.
    #[arg(long)]
    patience: Option<usize>,
    /// Fraction of the training set held out for validation.
    #[arg(long)]
    val_split: Option<f64>,
    /// Seed of every random choice.
    #[arg(long)]
    seed: Option<u64>,
    /// Augment training images with random crops and horizontal flips.
    #[arg(long, overrides_with = "no_augment")]
    augment: bool,
    /// Do not augment.
    #[arg(long)]
    no_augment: bool,
    /// Standardize each channel with the training set's statistics.
    #[arg(long, overrides_with = "no_standardize")]
    standardize: bool,
    /// Only scale pixels to [0, 1].
    #[arg(long)]
    no_standardize: bool,
    /// Use at most N training images (a stratified sample).
    #[arg(long)]
    limit_train: Option<usize>,
    /// Use at most N test images (a stratified sample).
    #[arg(long)]
    limit_test: Option<usize>,
    /// Tensor backend.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Continue an interrupted run from the checkpoint in --out.
    #[arg(long)]
    resume: bool,
}

#[derive(Debug, Args)]
struct EvaluateArgs {
    /// A directory written by `host-trainer train`.
    #[arg(long)]
    model: PathBuf,
    /// Data set (default: as for `train`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use at most N test images (default: as many as the training run used).
    #[arg(long)]
    limit_test: Option<usize>,
    /// Tensor backend (default: the one the model was trained with).
    #[arg(long, value_enum)]
    backend: Option<Backend>,
}

#[derive(Debug, Args)]
struct DownloadArgs {
    /// Directory to write the archive into.
    #[arg(long, default_value = locate::LOCAL_DIR)]
    dir: PathBuf,
    /// Where to fetch it from.
    #[arg(long, default_value = download::OFFICIAL_URL)]
    url: String,
    /// Expected MD5 (known for the official URL).
    #[arg(long)]
    md5: Option<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Architecture preset to measure.
    #[arg(long, default_value = "tutorial-tuned")]
    preset: String,
    /// Training batch sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 128])]
    batch_sizes: Vec<usize>,
    /// Training images per measurement (after one warm-up batch).
    #[arg(long, default_value_t = 2048)]
    images: usize,
    /// Tensor backend.
    #[arg(long, value_enum, default_value = "flex")]
    backend: Backend,
    /// Also time loading this data set.
    #[arg(long)]
    data: Option<PathBuf>,
}

/// What `train` writes beside the weights so that `evaluate` can rebuild the same inputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingRecord {
    /// The settings of the run.
    pub config: TrainConfig,
    /// The input normalization learned from the training split.
    pub normalization: Normalization,
    /// `--limit-test` of the run, if any.
    pub limit_test: Option<usize>,
    /// `--limit-train` of the run, if any.
    pub limit_train: Option<usize>,
}

/// Everything `train` measured, as `metrics.json` holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunMetrics {
    /// The data set read.
    pub data: String,
    /// The architecture.
    pub spec: ArchSpec,
    /// The settings.
    pub config: TrainConfig,
    /// Trainable parameters.
    pub parameters: usize,
    /// Images trained on (validation split excluded) and validated on.
    pub train_images: usize,
    /// Images held out for validation.
    pub validation_images: usize,
    /// Seconds spent reading the data set.
    pub load_seconds: f64,
    /// Wall time of all epochs, validation included.
    pub train_seconds: f64,
    /// The epoch whose weights were kept.
    pub best_epoch: usize,
    /// Every epoch's figures.
    pub history: Vec<train::EpochRecord>,
    /// The test-set evaluation of the kept weights.
    pub test: Evaluation,
}

/// Parses the command line and runs it.
pub fn main() -> anyhow::Result<()> {
    run(Cli::parse())
}

/// Runs `host-trainer` with these arguments (the first is the program name), in this
/// process: what other crates' tests use to train and quantize.
pub fn run_from<I, T>(args: I) -> anyhow::Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    run(Cli::try_parse_from(args)?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let show_progress = !cli.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    match cli.command {
        Command::Train(args) => run_train(args, show_progress),
        Command::Evaluate(args) => run_evaluate(args),
        Command::Download(args) => {
            download::download(&args.url, &args.dir, args.md5.as_deref(), !cli.quiet)?;
            Ok(())
        }
        Command::Quantize(args) => run_quantize(args, show_progress),
        Command::Search(args) => run_search(args, show_progress),
        Command::Bench(args) => crate::bench::run(
            &ArchSpec::preset(&args.preset)?,
            &args.batch_sizes,
            args.images,
            args.backend,
            args.data.as_deref(),
        ),
    }
}

/// Finds and loads the data set (`--data`, else the usual places), printing where from and how
/// long it took; returns the data, its path as text and the seconds.
pub fn load_data(
    explicit: Option<&Path>,
    wanted: Wanted,
) -> anyhow::Result<(Cifar10, String, f64)> {
    let path = locate::resolve(explicit)?;
    let started = Instant::now();
    let cifar = data::load(&path, wanted)?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "data: {} training and {} test images from {} in {seconds:.1} s",
        cifar.train.len(),
        cifar.test.len(),
        path.display()
    );
    Ok((cifar, path.display().to_string(), seconds))
}

fn train_config(args: &TrainArgs) -> TrainConfig {
    let mut config = match args.recipe {
        Recipe::Improved => TrainConfig::improved(),
        Recipe::Tutorial => TrainConfig::tutorial(),
    };
    if let Some(optimizer) = args.optimizer {
        config.optimizer = optimizer;
        config.learning_rate = optimizer.default_learning_rate();
    }
    config.learning_rate = args.lr.unwrap_or(config.learning_rate);
    config.epochs = args.epochs.unwrap_or(config.epochs);
    config.batch_size = args.batch_size.unwrap_or(config.batch_size);
    config.weight_decay = args.weight_decay.unwrap_or(config.weight_decay);
    config.schedule = args.schedule.unwrap_or(config.schedule);
    config.patience = args.patience.unwrap_or(config.patience);
    config.validation_split = args.val_split.unwrap_or(config.validation_split);
    config.seed = args.seed.unwrap_or(config.seed);
    config.backend = args.backend.unwrap_or(config.backend);
    if args.augment || args.no_augment {
        config.augment = args.augment;
    }
    if args.standardize || args.no_standardize {
        config.standardize = args.standardize;
    }
    config
}

fn run_train(args: TrainArgs, show_progress: bool) -> anyhow::Result<()> {
    let spec = match (&args.preset, &args.arch) {
        (_, Some(path)) => ArchSpec::from_file(path)?,
        (Some(name), None) => ArchSpec::preset(name)?,
        (None, None) => {
            println!(
                "no --preset or --arch given: training tutorial-tuned (presets: {})",
                PRESETS.join(", ")
            );
            ArchSpec::preset("tutorial-tuned")?
        }
    };
    let config = train_config(&args);
    // Bad settings stop before anything is written.
    config.validate()?;
    spec.validate()?;
    if !args.resume
        && ["model.bpk", "checkpoint"]
            .iter()
            .any(|name| args.out.join(name).exists())
    {
        anyhow::bail!(
            "{} already holds a training run; pass --resume to continue it, or choose another --out",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;

    let (cifar, data_name, load_seconds) = load_data(args.data.as_deref(), Wanted::Both)?;
    let train_set = match args.limit_train {
        Some(n) => cifar.train.limit(n, config.seed),
        None => cifar.train,
    };
    let test_set = match args.limit_test {
        Some(n) => cifar.test.limit(n, config.seed),
        None => cifar.test,
    };
    println!("model: {}", spec.summary());
    println!(
        "training: {:?}, lr {}, batch {}, up to {} epochs, patience {}, {:?} schedule, augment {}, standardize {}, backend {:?}",
        config.optimizer,
        config.learning_rate,
        config.batch_size,
        config.epochs,
        config.patience,
        config.schedule,
        config.augment,
        config.standardize,
        config.backend
    );
    crate::output::write_json(&args.out.join("arch.json"), &spec)?;

    let session = Session {
        dir: &args.out,
        resume: args.resume,
        show_progress,
    };
    let trained = train::train(&train_set, &spec, &config, &session)?;
    crate::output::write_json(
        &args.out.join("training.json"),
        &TrainingRecord {
            config: config.clone(),
            normalization: trained.normalization,
            limit_test: args.limit_test,
            limit_train: args.limit_train,
        },
    )?;
    crate::plots::curves_png(
        &args.out.join("curves.png"),
        &trained.history,
        "learning curves",
    )?;

    let evaluation = evaluate(&trained.model, &test_set, &trained.normalization);
    let metrics = RunMetrics {
        data: data_name,
        parameters: spec.parameter_count(),
        spec,
        config,
        train_images: trained.train_images,
        validation_images: trained.validation_images,
        load_seconds,
        train_seconds: trained.train_seconds,
        best_epoch: trained.best_epoch,
        history: trained.history,
        test: evaluation.clone(),
    };
    let title = format!("best epoch {}", metrics.best_epoch);
    evaluation.write_files(&args.out, &title)?;
    crate::output::write_json(&args.out.join("metrics.json"), &metrics)?;
    println!("\n{}", evaluation.to_text(&title));
    println!(
        "trained in {:.0} s; wrote model.bpk, arch.json, training.json, metrics.json, report.txt, confusion.png, curves.png to {}",
        metrics.train_seconds,
        args.out.display()
    );
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{}: unexpected contents", path.display()))
}

/// A directory written by `train`, read back.
pub struct TrainedRun {
    /// The architecture.
    pub spec: ArchSpec,
    /// The settings and input normalization.
    pub record: TrainingRecord,
    /// The kept weights.
    pub model: crate::model::Cnn,
}

impl TrainedRun {
    /// Reads `dir`'s `arch.json`, `training.json` and `model.bpk`, on `backend` (default: the
    /// one it was trained with).
    pub fn load(dir: &Path, backend: Option<Backend>) -> anyhow::Result<Self> {
        let spec: ArchSpec = read_json(&dir.join("arch.json"))?;
        spec.validate()
            .with_context(|| format!("{}", dir.join("arch.json").display()))?;
        let record: TrainingRecord = read_json(&dir.join("training.json"))?;
        let backend = backend.unwrap_or(record.config.backend);
        let model = train::load_weights(&spec, &dir.join("model.bpk"), &backend.device())?;
        Ok(Self {
            spec,
            record,
            model,
        })
    }

    /// The test set this run was evaluated on: `limit` images if given, else the run's own
    /// `--limit-test`, else all.
    pub fn test_set(
        &self,
        test: crate::data::Dataset,
        limit: Option<usize>,
    ) -> anyhow::Result<crate::data::Dataset> {
        let test = match limit.or(self.record.limit_test) {
            Some(n) => test.limit(n, self.record.config.seed),
            None => test,
        };
        if test.is_empty() {
            anyhow::bail!("no test images to evaluate on (is --limit-test 0?)");
        }
        Ok(test)
    }
}

fn run_evaluate(args: EvaluateArgs) -> anyhow::Result<()> {
    let run = TrainedRun::load(&args.model, args.backend)?;
    let (cifar, _, _) = load_data(args.data.as_deref(), Wanted::TestOnly)?;
    let test_set = run.test_set(cifar.test, args.limit_test)?;
    let evaluation = evaluate(&run.model, &test_set, &run.record.normalization);
    crate::output::write_json(&args.model.join("evaluation.json"), &evaluation)?;
    crate::plots::confusion_png(
        &args.model.join("evaluation-confusion.png"),
        &evaluation.confusion,
        &evaluation.report.class_names,
        &format!("test accuracy {:.2}%", evaluation.accuracy * 100.0),
    )?;
    println!(
        "{}",
        evaluation.to_text(&format!("evaluation of {}", args.model.display()))
    );
    println!(
        "wrote evaluation.json and evaluation-confusion.png to {}",
        args.model.display()
    );
    Ok(())
}

/// Fails unless the folder `path` would be written in exists, so that a long command stops
/// before its work rather than after it.
pub fn check_output_folder(path: &Path) -> anyhow::Result<()> {
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        anyhow::bail!(
            "cannot write {}: {} is not a folder",
            path.display(),
            folder.display()
        );
    }
    Ok(())
}

/// Whether two paths name one file: the same file name in the same existing folder.
fn same_file(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| Some((crate::output::folder_of(p)?, p.file_name()?.to_owned()));
    match (resolved(a), resolved(b)) {
        (Some(a), Some(b)) => a == b,
        _ => a == b,
    }
}

fn run_quantize(args: QuantizeArgs, show_progress: bool) -> anyhow::Result<()> {
    if args.calibration == 0 {
        anyhow::bail!("--calibration 0: calibration needs at least one image");
    }
    if let Some(p) = args.percentile
        && !(50.0..=100.0).contains(&p)
    {
        anyhow::bail!("--percentile {p}: the calibration percentile must lie in [50, 100]");
    }
    check_output_folder(&args.out)?;
    if let Some(rust) = &args.rust {
        check_output_folder(rust)?;
        if same_file(rust, &args.out) {
            anyhow::bail!(
                "--rust {} names the --out file: the Rust source and the model need two files",
                rust.display()
            );
        }
    }
    // Never write over what this command reads.
    for input in ["arch.json", "training.json", "model.bpk", "checkpoint"] {
        let input = args.model.join(input);
        for (flag, output) in [("--out", Some(&args.out)), ("--rust", args.rust.as_ref())] {
            if let Some(output) = output
                && same_file(output, &input)
            {
                anyhow::bail!(
                    "{flag} {} would overwrite {}, part of the trained model",
                    output.display(),
                    input.display()
                );
            }
        }
    }
    let run = TrainedRun::load(&args.model, None)?;
    let net = crate::export::FloatNet::from_cnn(&run.model, &run.record.normalization)?;
    let (cifar, _, _) = load_data(args.data.as_deref(), Wanted::Both)?;
    let test_set = run.test_set(cifar.test, args.limit_test)?;

    let started = Instant::now();
    let bytes = match args.precision {
        PrecisionArg::F32 => net.to_f32_model()?,
        PrecisionArg::Int8 => {
            let calibration = cifar.train.limit(args.calibration, run.record.config.seed);
            let images: Vec<&[u8]> = (0..calibration.len())
                .map(|i| calibration.image(i))
                .collect();
            let method = match args.percentile {
                Some(p) => crate::quant::RangeMethod::Percentile(p),
                None => crate::quant::RangeMethod::MinMax,
            };
            let ranges = crate::quant::calibrate(&net, &images, method)?;
            println!(
                "calibrated on {} training images ({method:?}) in {:.1} s",
                images.len(),
                started.elapsed().as_secs_f64()
            );
            crate::quant::int8_model(&net, &ranges)?
        }
    };
    let model = core_nostd::Model::parse(&bytes)
        .map_err(|e| anyhow::anyhow!("the written model does not parse: {e}"))?;

    let float = evaluate(&run.model, &test_set, &run.record.normalization);
    let core_accuracy = crate::export::core_accuracy(&model, &test_set, show_progress)?;
    crate::export::write_model(&args.out, &bytes, args.rust.as_deref())?;
    println!(
        "model: {} bytes ({:?}), arena {} bytes, {} multiply-accumulates per image",
        bytes.len(),
        model.precision(),
        model.arena_bytes(),
        model.multiply_accumulates()
    );
    println!(
        "test accuracy on {} images: float (burn) {:.4}, {:?} (core-nostd) {:.4}, change {:+.2} points",
        test_set.len(),
        float.accuracy,
        model.precision(),
        core_accuracy,
        100.0 * (core_accuracy - float.accuracy)
    );
    match &args.rust {
        Some(rust) => println!("wrote {} and {}", args.out.display(), rust.display()),
        None => println!("wrote {}", args.out.display()),
    }
    Ok(())
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// Data set: a directory or archive (default: $CIFAR10_DATA, ./data/, then the shared copy).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Search space (TOML; default: the tutorial's, host-trainer/spaces/tutorial.toml).
    #[arg(long)]
    space: Option<PathBuf>,
    /// Settings to draw (with halving: the settings of the first rung).
    #[arg(long, default_value_t = 10)]
    iter: usize,
    /// Stratified cross-validation folds.
    #[arg(long, default_value_t = 3)]
    folds: usize,
    /// Output directory: trials.jsonl, results.json, results.csv, scores.png, best/.
    #[arg(long)]
    out: PathBuf,
    /// How settings compete.
    #[arg(long, value_enum, default_value = "random")]
    strategy: crate::search::Strategy,
    /// What a halving rung's budget counts.
    #[arg(long, value_enum, default_value = "images")]
    resource: crate::search::Resource,
    /// Smallest budget halving may start from (default: 2 x folds x 10 images, or 1 epoch).
    #[arg(long)]
    min_resource: Option<usize>,
    /// Training settings of every fold and of the refit; the space overrides them.
    #[arg(long, value_enum, default_value = "tutorial")]
    recipe: Recipe,
    /// Maximum number of epochs per training (default: the recipe's).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of the draws, the folds and every training.
    #[arg(long)]
    seed: Option<u64>,
    /// Search on at most N training images (a stratified sample); the refit uses the same.
    #[arg(long)]
    limit_train: Option<usize>,
    /// Evaluate the refit on at most N test images (a stratified sample).
    #[arg(long)]
    limit_test: Option<usize>,
    /// Tensor backend.
    #[arg(long, value_enum)]
    backend: Option<Backend>,
    /// Go on with the search logged in --out: only folds missing from its trial log train.
    #[arg(long)]
    resume: bool,
}

fn run_search(args: SearchArgs, show_progress: bool) -> anyhow::Result<()> {
    let space = match &args.space {
        Some(path) => crate::search::space::Space::from_file(path)?,
        None => crate::search::space::Space::tutorial()?,
    };
    let mut training = match args.recipe {
        Recipe::Improved => TrainConfig::improved(),
        Recipe::Tutorial => TrainConfig::tutorial(),
    };
    training.epochs = args.epochs.unwrap_or(training.epochs);
    training.seed = args.seed.unwrap_or(training.seed);
    training.backend = args.backend.unwrap_or(training.backend);
    let data = locate::resolve(args.data.as_deref())?;
    let options = crate::search::Options {
        // Absolute, so that a resume from another folder names the same data.
        data: std::fs::canonicalize(&data).unwrap_or(data),
        space,
        iter: args.iter,
        folds: args.folds,
        strategy: args.strategy,
        resource: args.resource,
        min_resource: args.min_resource,
        training,
        limit_train: args.limit_train,
        limit_test: args.limit_test,
    };
    crate::search::run(&options, &args.out, args.resume, show_progress, |refit| {
        let mut argv = vec![std::ffi::OsString::from("host-trainer")];
        argv.extend(refit.train_args()?);
        if !show_progress {
            argv.push("--quiet".into());
        }
        let shown: Vec<_> = argv.iter().map(|a| a.to_string_lossy()).collect();
        println!("{}", shown.join(" "));
        run(Cli::try_parse_from(argv)?)
    })
}
