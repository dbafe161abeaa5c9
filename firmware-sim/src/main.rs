//! `firmware-sim`: runs `core-nostd` over a test set the way a firmware would, and checks its
//! answers against the float burn model the model file came from.
//!
//! As on a microcontroller, the model sits in a fixed-size static buffer (the "flash") and
//! the activations in a static arena; a counting global allocator proves that inference
//! allocates nothing: any allocation on the inference thread between the start and the end
//! of an inference fails the run.
//!
//! `firmware-sim qemu` goes one step further: it builds a real bare-metal image for a
//! Cortex-M4F and a RISC-V board and runs it in QEMU (see the `qemu` module).

mod counting;
mod qemu;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use core_nostd::Model;
use core_nostd::format::{Layer, Precision};
use host_trainer::cli::{TrainedRun, load_data};
use host_trainer::data::{Dataset, NUM_CLASSES, Wanted};
use host_trainer::export::FloatNet;
use host_trainer::train::{Batcher, predict};
use serde::Serialize;

#[global_allocator]
static ALLOCATOR: counting::CountingAllocator = counting::CountingAllocator;

/// Bytes of the simulated flash that holds a model file (the f32 `tutorial-hidden`, the
/// largest preset, takes 3.3 MB).
const FLASH_BYTES: usize = 8 << 20;

/// Bytes of the static arena (4-byte words, so f32 models find it aligned).
const ARENA_BYTES: usize = 256 << 10;

static FLASH: Mutex<[u8; FLASH_BYTES]> = Mutex::new([0; FLASH_BYTES]);
static ARENA: Mutex<[u32; ARENA_BYTES / 4]> = Mutex::new([0; ARENA_BYTES / 4]);

/// Run a core-nostd model over the test set as firmware would, and check it against the
/// float burn model; or, with `qemu`, build a bare-metal firmware and run it in QEMU.
#[derive(Debug, Parser)]
#[command(
    name = "firmware-sim",
    version,
    about,
    long_about = None,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sim: Option<Args>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the bare-metal firmware around an int8 model, run it in QEMU (Cortex-M4F and
    /// RISC-V) over test images, and check that every score equals the host core's.
    Qemu(qemu::QemuArgs),
}

/// The simulation's options (without a subcommand).
#[derive(Debug, clap::Args)]
struct Args {
    /// Model file written by `host-trainer quantize` (int8 or f32).
    #[arg(long)]
    model: PathBuf,
    /// The training directory the model was made from (`host-trainer train --out`).
    #[arg(long)]
    reference: PathBuf,
    /// Data set holding the test images (default: as for `host-trainer train`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run at most N test images (a stratified sample); default: all of them.
    #[arg(long)]
    limit: Option<usize>,
    /// Fail when int8 accuracy is more than this many percentage points below float.
    #[arg(long, default_value_t = 1.0)]
    max_drop: f64,
    /// Fail when the int8 and float models give the same class on less than this share of
    /// the images, in percent: a sign that the model file does not come from the reference.
    #[arg(long, default_value_t = 90.0)]
    min_agreement: f64,
    /// Where to write the figures as JSON (default: beside the model, `<name>.sim.json`).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Hide the progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long, short)]
    quiet: bool,
}

/// The largest share of test images on which the core's f32 path may disagree with burn.
const MAX_F32_DISAGREEMENT: f64 = 0.001;

/// Accuracy and speed of one inference path.
#[derive(Debug, Clone, Serialize)]
struct PathFigures {
    accuracy: f64,
    images_per_second: f64,
    #[serde(skip)]
    predictions: Vec<u8>,
}

/// A class's accuracy on the float model and on the int8 one.
#[derive(Debug, Clone, Serialize)]
struct ClassChange {
    class: String,
    float_accuracy: f64,
    int8_accuracy: f64,
    change_points: f64,
}

/// Everything `firmware-sim` measures.
#[derive(Debug, Clone, Serialize)]
struct Report {
    model: String,
    reference: String,
    images: usize,
    /// burn's float model on the host (batches of 256, all cores).
    burn_f32: PathFigures,
    /// The core's f32 path (one image at a time, one thread).
    core_f32: PathFigures,
    /// The core's int8 path (one image at a time, one thread), for an int8 model file.
    core_int8: Option<PathFigures>,
    /// Share of images where the core's f32 class equals burn's.
    f32_agreement_with_burn: f64,
    /// Share of images where the int8 class equals burn's float class.
    int8_agreement_with_float: Option<f64>,
    /// Per class, int8 against float accuracy.
    per_class: Vec<ClassChange>,
    /// Bytes of the model file given.
    model_bytes: usize,
    /// Bytes of the f32 model file the core's f32 path ran.
    f32_model_bytes: usize,
    /// Arena bytes the model file given needs.
    arena_bytes: usize,
    /// Heap allocations made during inference (every path through the core): must be 0.
    inference_allocations: u64,
    /// Why the run failed; empty when it passed.
    failures: Vec<String>,
}

fn main() -> ExitCode {
    let failures = match Cli::parse() {
        Cli {
            command: Some(Command::Qemu(args)),
            ..
        } => qemu::run(&args).map(|report| report.failures),
        Cli {
            sim: Some(args), ..
        } => run(&args).map(|report| report.failures),
        Cli { .. } => {
            let _ = <Cli as clap::CommandFactory>::command().print_help();
            return ExitCode::from(2);
        }
    };
    match failures {
        Ok(failures) if failures.is_empty() => ExitCode::SUCCESS,
        Ok(failures) => {
            for failure in &failures {
                eprintln!("FAILED: {failure}");
            }
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> anyhow::Result<Report> {
    if !args.max_drop.is_finite() || args.max_drop < 0.0 {
        bail!(
            "--max-drop {} must be a number of points, 0 or more",
            args.max_drop
        );
    }
    if !(0.0..=100.0).contains(&args.min_agreement) {
        bail!(
            "--min-agreement {} must be a percentage",
            args.min_agreement
        );
    }
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| args.model.with_extension("sim.json"));
    host_trainer::cli::check_output_folder(&json)?;
    let show_progress = !args.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let model_file = std::fs::read(&args.model)
        .with_context(|| format!("cannot read the model file {}", args.model.display()))?;
    let given = Model::parse(&model_file)
        .map_err(|e| anyhow::anyhow!("{}: not a valid model file: {e}", args.model.display()))?;
    let (precision, arena_bytes) = (given.precision(), given.arena_bytes());
    let run = TrainedRun::load(&args.reference, None)?;
    let (cifar, _, _) = load_data(args.data.as_deref(), Wanted::TestOnly)?;
    let test = match args.limit {
        Some(limit) => cifar.test.limit(limit, run.record.config.seed),
        None => cifar.test,
    };
    if test.is_empty() {
        bail!("no test images to run (is --limit 0?)");
    }

    let f32_file = match precision {
        Precision::F32 => model_file.clone(),
        Precision::Int8 => FloatNet::from_cnn(&run.model, &run.record.normalization)?
            .to_f32_model()
            .context("cannot export the reference network as an f32 model")?,
    };

    let exported = Model::parse(&f32_file)
        .map_err(|e| anyhow::anyhow!("the reference's f32 export does not parse: {e}"))?;
    if !same_layers(&given, &exported) {
        bail!(
            "{} does not have the layers of the network in {}: was it made from another run?",
            args.model.display(),
            args.reference.display()
        );
    }

    let burn_f32 = burn_path(&run, &test);
    let mut allocations = 0;
    let core_f32 = core_path(
        &f32_file,
        &test,
        "core f32",
        show_progress,
        &mut allocations,
    )?;
    let core_int8 = match precision {
        Precision::Int8 => Some(core_path(
            &model_file,
            &test,
            "core int8",
            show_progress,
            &mut allocations,
        )?),
        Precision::F32 => None,
    };

    let report = compare(
        args,
        &test,
        burn_f32,
        core_f32,
        core_int8,
        (model_file.len(), f32_file.len(), arena_bytes),
        allocations,
    );
    print_report(&report);
    host_trainer::output::write_json(&json, &report)?;
    println!("wrote {}", json.display());
    Ok(report)
}

/// Whether two models have the same layers, sizes and activations (whatever their
/// precision and weights).
fn same_layers(a: &Model<'_>, b: &Model<'_>) -> bool {
    a.input_shape() == b.input_shape()
        && a.layers().count() == b.layers().count()
        && a.layers().zip(b.layers()).all(|pair| match pair {
            (
                Layer::Conv {
                    filters,
                    kernel,
                    relu,
                    ..
                },
                Layer::Conv {
                    filters: f,
                    kernel: k,
                    relu: r,
                    ..
                },
            ) => (filters, kernel, relu) == (f, k, r),
            (Layer::MaxPool { size }, Layer::MaxPool { size: s })
            | (Layer::AvgPool { size }, Layer::AvgPool { size: s }) => size == s,
            (
                Layer::Dense { units, relu, .. },
                Layer::Dense {
                    units: u, relu: r, ..
                },
            ) => (units, relu) == (u, r),
            _ => false,
        })
}

/// burn's float model over `test`, as `host-trainer evaluate` runs it.
fn burn_path(run: &TrainedRun, test: &Dataset) -> PathFigures {
    let device = run.record.config.backend.device();
    let started = Instant::now();
    let predictions = predict(
        &run.model,
        test,
        &Batcher::new(&run.record.normalization),
        256,
        &device,
    );
    PathFigures {
        accuracy: predictions.accuracy,
        images_per_second: test.len() as f64 / started.elapsed().as_secs_f64().max(1e-9),
        predictions: predictions.labels,
    }
}

/// Copies `model_file` into the static flash, parses it there, and classifies every test
/// image one at a time in the static arena, counting heap allocations during inference.
fn core_path(
    model_file: &[u8],
    test: &Dataset,
    name: &str,
    show_progress: bool,
    allocations: &mut u64,
) -> anyhow::Result<PathFigures> {
    let mut flash = FLASH
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut arena = ARENA
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let Some(flash) = flash.get_mut(..model_file.len()) else {
        bail!(
            "the model file has {} bytes; the simulated flash holds {FLASH_BYTES}",
            model_file.len()
        );
    };
    flash.copy_from_slice(model_file);
    let model = Model::parse(flash).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
    if model.arena_bytes() > ARENA_BYTES {
        bail!(
            "{name}: the model needs an arena of {} bytes; the static arena has {ARENA_BYTES}",
            model.arena_bytes()
        );
    }
    let arena: &mut [u8] = bytemuck::cast_slice_mut(arena.as_mut_slice());

    let bar = host_trainer::progress::images_bar(test.len() as u64, name, show_progress);
    let mut predictions = Vec::with_capacity(test.len());
    let mut seconds = 0.0;
    for index in 0..test.len() {
        let pixels = test.image(index);
        let before = counting::allocations();
        let started = Instant::now();
        let class = model.classify(pixels, arena);
        seconds += started.elapsed().as_secs_f64();
        *allocations += counting::allocations() - before;
        let class = class.map_err(|e| anyhow::anyhow!("{name}, test image {index}: {e}"))?;
        predictions.push(class as u8);
        bar.inc(1);
    }
    bar.finish_and_clear();

    Ok(PathFigures {
        accuracy: agreement(&predictions, &test.labels),
        images_per_second: test.len() as f64 / seconds.max(1e-9),
        predictions,
    })
}

/// Share of positions where `a` and `b` hold the same class.
fn agreement(a: &[u8], b: &[u8]) -> f64 {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    same as f64 / a.len().max(1) as f64
}

/// Accuracy of `predictions` on the images of class `class`.
fn class_accuracy(predictions: &[u8], labels: &[u8], class: u8) -> f64 {
    let (mut right, mut total) = (0usize, 0usize);
    for (&p, &l) in predictions.iter().zip(labels) {
        if l == class {
            total += 1;
            right += usize::from(p == l);
        }
    }
    right as f64 / total.max(1) as f64
}

/// Puts the figures side by side and checks the two targets.
fn compare(
    args: &Args,
    test: &Dataset,
    burn_f32: PathFigures,
    core_f32: PathFigures,
    core_int8: Option<PathFigures>,
    (model_bytes, f32_model_bytes, arena_bytes): (usize, usize, usize),
    inference_allocations: u64,
) -> Report {
    let f32_agreement = agreement(&core_f32.predictions, &burn_f32.predictions);
    let int8_agreement = core_int8
        .as_ref()
        .map(|int8| agreement(&int8.predictions, &burn_f32.predictions));
    let per_class = match &core_int8 {
        Some(int8) => (0..NUM_CLASSES as u8)
            .map(|class| {
                let float_accuracy = class_accuracy(&burn_f32.predictions, &test.labels, class);
                let int8_accuracy = class_accuracy(&int8.predictions, &test.labels, class);
                ClassChange {
                    class: test.class_names[class as usize].clone(),
                    float_accuracy,
                    int8_accuracy,
                    change_points: 100.0 * (int8_accuracy - float_accuracy),
                }
            })
            .collect(),
        None => Vec::new(),
    };

    let mut failures = Vec::new();
    if inference_allocations > 0 {
        failures.push(format!(
            "inference allocated on the heap {inference_allocations} times"
        ));
    }
    if 1.0 - f32_agreement > MAX_F32_DISAGREEMENT {
        failures.push(format!(
            "the core's f32 path disagrees with burn on {:.2}% of the images (at most {:.1}% allowed)",
            100.0 * (1.0 - f32_agreement),
            100.0 * MAX_F32_DISAGREEMENT
        ));
    }
    if let Some(agreement) = int8_agreement
        && 100.0 * agreement < args.min_agreement
    {
        failures.push(format!(
            "int8 and float agree on only {:.2}% of the images (--min-agreement {}): does the model file come from this reference?",
            100.0 * agreement,
            args.min_agreement
        ));
    }
    if let Some(int8) = &core_int8 {
        let drop_points = 100.0 * (burn_f32.accuracy - int8.accuracy);
        if drop_points > args.max_drop {
            failures.push(format!(
                "int8 accuracy is {drop_points:.2} points below float (--max-drop {})",
                args.max_drop
            ));
        }
    }

    Report {
        model: args.model.display().to_string(),
        reference: args.reference.display().to_string(),
        images: test.len(),
        burn_f32,
        core_f32,
        core_int8,
        f32_agreement_with_burn: f32_agreement,
        int8_agreement_with_float: int8_agreement,
        per_class,
        model_bytes,
        f32_model_bytes,
        arena_bytes,
        inference_allocations,
        failures,
    }
}

fn print_report(report: &Report) {
    println!("test images: {}", report.images);
    println!("{:<28} {:>9} {:>12}", "path", "accuracy", "images/s");
    let mut paths = vec![
        ("burn f32 (batch 256)", &report.burn_f32),
        ("core-nostd f32 (1 thread)", &report.core_f32),
    ];
    if let Some(int8) = &report.core_int8 {
        paths.push(("core-nostd int8 (1 thread)", int8));
    }
    for (name, path) in paths {
        println!(
            "{name:<28} {:>8.2}% {:>12.1}",
            100.0 * path.accuracy,
            path.images_per_second
        );
    }
    println!(
        "top-1 agreement: core f32 with burn {:.2}%",
        100.0 * report.f32_agreement_with_burn
    );
    if let Some(agreement) = report.int8_agreement_with_float {
        println!("top-1 agreement: int8 with float {:.2}%", 100.0 * agreement);
        println!(
            "{:<12} {:>8} {:>8} {:>8}",
            "class", "float", "int8", "change"
        );
        for class in &report.per_class {
            println!(
                "{:<12} {:>7.1}% {:>7.1}% {:>+8.1}",
                class.class,
                100.0 * class.float_accuracy,
                100.0 * class.int8_accuracy,
                class.change_points
            );
        }
    }
    println!(
        "model {} bytes (f32 model {} bytes), arena {} bytes, heap allocations during inference: {}",
        report.model_bytes,
        report.f32_model_bytes,
        report.arena_bytes,
        report.inference_allocations
    );
}
