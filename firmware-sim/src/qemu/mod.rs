//! `firmware-sim qemu`: builds the bare-metal firmware of `firmware-sim/bare-metal` around a
//! model, runs it in QEMU on a Cortex-M4F and on a RISC-V board over test images, and checks
//! that it answers exactly as `core-nostd` does on the host, score for score. It measures
//! what an embedded engineer asks first: flash, RAM and instructions per inference.
//!
//! QEMU counts instructions, not cycles: with `-icount shift=0` virtual time advances one
//! nanosecond per instruction, and the firmware times each inference with a clock that
//! follows it (SysTick on the Cortex-M4F, `minstret` on RISC-V), after measuring how many
//! instructions one tick is with a loop of known length.

mod board;
mod elf;
mod outputs;
mod toolchain;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::ValueEnum;
use core_nostd::Model;
use core_nostd::format::Precision;
use host_trainer::cli::load_data;
use host_trainer::data::{IMAGE_BYTES, Wanted};
use serde::Serialize;

use board::{Board, RunOutcome};
use elf::Footprint;
use outputs::{Prediction, Summary};

/// Build the bare-metal firmware around an int8 model, run it in QEMU (Cortex-M4F and
/// RISC-V) over test images, and check that every score equals the host core's.
#[derive(Debug, clap::Args)]
pub struct QemuArgs {
    /// The Rust file `host-trainer quantize --rust FILE.rs` wrote; the model file it includes
    /// must be beside it.
    #[arg(long)]
    model_rs: PathBuf,
    /// Data set holding the test images (default: as for `host-trainer train`).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Run the first N test images; default: all of them (about 0.2 s of QEMU each).
    #[arg(long)]
    limit: Option<usize>,
    /// The boards to build for and run on.
    #[arg(long, value_enum, default_value_t = TargetArg::All)]
    target: TargetArg,
    /// Stop a QEMU run after this many seconds (default: 120 plus 2 per image).
    #[arg(long)]
    timeout_s: Option<u64>,
    /// The script that installs a compiler able to build `core` for targets rustup lacks
    /// (default: shared/tools/cross-toolchain.sh beside this checkout).
    #[arg(long)]
    cross_toolchain: Option<PathBuf>,
    /// Where to write the figures as JSON (default: beside the Rust file, `<name>.qemu.json`).
    #[arg(long)]
    json: Option<PathBuf>,
}

/// `--target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TargetArg {
    /// Cortex-M4F, `thumbv7em-none-eabihf`, on QEMU's mps2-an386.
    CortexM4,
    /// RV32IMAC, `riscv32imac-unknown-none-elf`, on QEMU's virt.
    Riscv32,
    /// Both.
    All,
}

impl TargetArg {
    fn boards(self) -> Vec<Board> {
        match self {
            TargetArg::CortexM4 => vec![Board::CortexM4],
            TargetArg::Riscv32 => vec![Board::Riscv32],
            TargetArg::All => Board::ALL.to_vec(),
        }
    }
}

/// Everything `firmware-sim qemu` measures.
#[derive(Debug, Serialize)]
pub struct Report {
    model_rs: String,
    model_file: String,
    model_bytes: usize,
    arena_bytes: usize,
    /// Multiply-accumulates of one inference, from the model's layers.
    multiply_accumulates: u64,
    images: usize,
    /// Share of the images the host core classifies correctly.
    host_accuracy: f64,
    boards: Vec<BoardReport>,
    /// Why the run failed; empty when it passed.
    pub failures: Vec<String>,
}

/// One board's run.
#[derive(Debug, Serialize)]
struct BoardReport {
    board: &'static str,
    target: &'static str,
    qemu_command: String,
    /// Images whose class and every score equal the host's.
    identical: usize,
    /// The figures, when the firmware ran to the end.
    measured: Option<Measured>,
    /// What went wrong on this board.
    failures: Vec<String>,
}

/// The figures of a firmware that ran every image.
#[derive(Debug, Serialize)]
struct Measured {
    #[serde(flatten)]
    footprint: Footprint,
    flash_bytes: u64,
    model_bytes: u64,
    arena_bytes: u64,
    /// Arena bytes the model needs (at most `arena_bytes`).
    arena_needed_bytes: u64,
    /// Bytes of the RAM left to the stack, that the firmware painted.
    stack_region_bytes: u64,
    stack_peak_bytes: u64,
    /// `.data`, `.bss` and the peak stack.
    ram_bytes: u64,
    /// Instructions one clock tick stands for (the timing's resolution).
    instructions_per_tick: f64,
    instructions_per_inference_mean: f64,
    instructions_per_inference_min: f64,
    instructions_per_inference_max: f64,
    multiply_accumulates_per_instruction: f64,
    qemu_seconds: f64,
}

/// The most mismatching images a board's failure lists.
const MISMATCHES_SHOWN: usize = 5;

/// Runs the command; the report's `failures` say whether it passed.
pub fn run(args: &QemuArgs) -> anyhow::Result<Report> {
    let model_rs = std::fs::canonicalize(&args.model_rs)
        .with_context(|| format!("cannot find --model-rs {}", args.model_rs.display()))?;
    let json = match &args.json {
        Some(json) => json.clone(),
        None => args.model_rs.with_extension("qemu.json"),
    };
    host_trainer::cli::check_output_folder(&json)?;
    let model_path = included_model(&model_rs)?;
    let model_file = std::fs::read(&model_path)
        .with_context(|| format!("cannot read the model file {}", model_path.display()))?;
    let model = Model::parse(&model_file)
        .map_err(|e| anyhow::anyhow!("{}: not a valid model file: {e}", model_path.display()))?;
    if model.precision() != Precision::Int8 {
        bail!(
            "{}: an f32 model; the firmware runs int8 models (host-trainer quantize --precision int8)",
            model_path.display()
        );
    }
    if model.pixel_bytes() != IMAGE_BYTES {
        bail!(
            "{}: the model reads {} pixel bytes an image; the firmware feeds CIFAR-10 images of {IMAGE_BYTES}",
            model_path.display(),
            model.pixel_bytes()
        );
    }

    let (cifar, _, _) = load_data(args.data.as_deref(), Wanted::TestOnly)?;
    let images = args.limit.unwrap_or(cifar.test.len()).min(cifar.test.len());
    if images == 0 {
        bail!("no test images to run (is --limit 0?)");
    }
    let test = &cifar.test;
    let input: Vec<u8> = (0..images)
        .flat_map(|i| std::iter::once(test.labels[i]).chain(test.image(i).iter().copied()))
        .collect();
    let expected = host_predictions(&model, test, images)?;
    let host_correct = (0..images)
        .filter(|&i| expected[i].0 == usize::from(test.labels[i]))
        .count();

    let boards = args.target.boards();
    let cross_script = args
        .cross_toolchain
        .clone()
        .unwrap_or_else(toolchain::default_cross_script);
    let elves = toolchain::build(&boards, &model_rs, &cross_script)?;
    let timeout = Duration::from_secs(args.timeout_s.unwrap_or(120 + 2 * images as u64));
    println!(
        "running {images} test images on {} (QEMU, -icount shift=0)",
        boards
            .iter()
            .map(|b| b.name())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let job = Job {
        model: &model,
        model_file: &model_file,
        input: &input,
        expected: &expected,
        timeout,
    };
    let job = &job;
    let reports = std::thread::scope(|scope| {
        let handles: Vec<_> = boards
            .iter()
            .zip(&elves)
            .map(|(&board, elf)| scope.spawn(move || job.run_board(board, elf)))
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })
            .collect::<anyhow::Result<Vec<_>>>()
    })?;

    let failures = reports
        .iter()
        .flat_map(|r| r.failures.iter().map(|f| format!("{}: {f}", r.board)))
        .collect();
    let report = Report {
        model_rs: model_rs.display().to_string(),
        model_file: model_path.display().to_string(),
        model_bytes: model_file.len(),
        arena_bytes: model.arena_bytes(),
        multiply_accumulates: model.multiply_accumulates(),
        images,
        host_accuracy: host_correct as f64 / images as f64,
        boards: reports,
        failures,
    };
    print_report(&report);
    host_trainer::output::write_json(&json, &report)?;
    println!("wrote {}", json.display());
    Ok(report)
}

/// The model file that the Rust file `model_rs` includes (`include_bytes!("NAME")`), beside it.
fn included_model(model_rs: &Path) -> anyhow::Result<PathBuf> {
    let source = std::fs::read_to_string(model_rs)
        .with_context(|| format!("cannot read --model-rs {}", model_rs.display()))?;
    const MACRO: &str = "include_bytes!(\"";
    let name = source
        .split_once(MACRO)
        .and_then(|(_, rest)| rest.split_once("\")"))
        .map(|(name, _)| name)
        .with_context(|| {
            format!(
                "{}: no `include_bytes!(\"FILE\")`: expected a file written by \
                 `host-trainer quantize --rust`",
                model_rs.display()
            )
        })?;
    if name.contains(['\\', '"']) {
        bail!(
            "{}: the model file name {name:?} has escapes; rename the model file",
            model_rs.display()
        );
    }
    Ok(model_rs.with_file_name(name))
}

/// The host core's class and int8 scores for the first `images` test images.
fn host_predictions(
    model: &Model<'_>,
    test: &host_trainer::data::Dataset,
    images: usize,
) -> anyhow::Result<Vec<(usize, Vec<i8>)>> {
    let mut arena = vec![0u8; model.arena_bytes()];
    (0..images)
        .map(|index| {
            let mut scores = vec![0i8; model.classes()];
            let class = model
                .infer_i8(test.image(index), &mut arena, &mut scores)
                .map_err(|e| anyhow::anyhow!("host core, test image {index}: {e}"))?;
            Ok((class, scores))
        })
        .collect()
}

/// What every board's run shares.
struct Job<'a> {
    model: &'a Model<'a>,
    model_file: &'a [u8],
    /// `images.bin`: the CIFAR-10 records of the images.
    input: &'a [u8],
    expected: &'a [(usize, Vec<i8>)],
    timeout: Duration,
}

impl Job<'_> {
    /// Runs the firmware `elf` on `board` and checks what it wrote. Errors are the host's own
    /// (a temporary folder it cannot make); what the firmware did wrong goes in `failures`.
    fn run_board(&self, board: Board, elf: &Path) -> anyhow::Result<BoardReport> {
        let dir = tempfile::Builder::new()
            .prefix("firmware-qemu-")
            .tempdir()
            .context("cannot create a temporary folder for QEMU")?;
        std::fs::write(dir.path().join("images.bin"), self.input)
            .with_context(|| format!("cannot write images.bin in {}", dir.path().display()))?;
        // The image that runs is measured, whatever later builds do to the build folder.
        let built = elf;
        let elf = &dir.path().join("firmware.elf");
        std::fs::copy(built, elf)
            .with_context(|| format!("cannot copy the firmware image {}", built.display()))?;
        let mut report = BoardReport {
            board: board.name(),
            target: board.triple(),
            qemu_command: board.command_line(built),
            identical: 0,
            measured: None,
            failures: Vec::new(),
        };
        let seconds = match board.run(elf, dir.path(), self.timeout)? {
            RunOutcome::Finished { seconds } => seconds,
            RunOutcome::Failed(why) => {
                report.failures.push(why);
                return Ok(report);
            }
        };
        match self.check(board, elf, dir.path(), seconds, &mut report) {
            Ok(measured) => report.measured = Some(measured),
            Err(error) => report.failures.push(format!("{error:#}")),
        }
        Ok(report)
    }

    /// Reads the firmware's outputs, counts the images it answered as the host did, and
    /// works out its figures.
    fn check(
        &self,
        board: Board,
        elf: &Path,
        dir: &Path,
        qemu_seconds: f64,
        report: &mut BoardReport,
    ) -> anyhow::Result<Measured> {
        let summary = Summary::read(&dir.join("summary.txt"))?;
        self.check_summary(board, &summary)?;
        let predictions = outputs::read_predictions(
            &dir.join("predictions.bin"),
            self.expected.len(),
            summary.classes,
        )?;
        let mismatches: Vec<usize> = (0..predictions.len())
            .filter(|&i| !same_answer(&predictions[i], &self.expected[i]))
            .collect();
        report.identical = predictions.len() - mismatches.len();
        if !mismatches.is_empty() {
            let shown: Vec<String> = mismatches
                .iter()
                .take(MISMATCHES_SHOWN)
                .map(|&i| {
                    format!(
                        "image {i}: firmware class {} scores {:?}, host class {} scores {:?}",
                        predictions[i].class,
                        predictions[i].scores,
                        self.expected[i].0,
                        self.expected[i].1
                    )
                })
                .collect();
            report.failures.push(format!(
                "{} of {} images differ from the host core; {}",
                mismatches.len(),
                predictions.len(),
                shown.join("; ")
            ));
        }

        let footprint = elf::footprint(elf, summary.model_address, summary.model_bytes)?;
        if summary.calibration_ticks == 0 {
            bail!("summary.txt: calibration_ticks is 0: the firmware's clock did not run");
        }
        let instructions_per_tick =
            summary.calibration_instructions as f64 / summary.calibration_ticks as f64;
        let instructions: Vec<f64> = predictions
            .iter()
            .map(|p| p.ticks as f64 * instructions_per_tick)
            .collect();
        let mean = instructions.iter().sum::<f64>() / instructions.len() as f64;
        Ok(Measured {
            footprint,
            flash_bytes: footprint.flash_bytes(),
            model_bytes: summary.model_bytes,
            arena_bytes: summary.arena_bytes,
            arena_needed_bytes: summary.arena_needed_bytes,
            stack_region_bytes: summary.stack_bytes,
            stack_peak_bytes: summary.stack_peak_bytes,
            ram_bytes: footprint.static_ram_bytes() + summary.stack_peak_bytes,
            instructions_per_tick,
            instructions_per_inference_mean: mean,
            instructions_per_inference_min: instructions
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min),
            instructions_per_inference_max: instructions.iter().copied().fold(0.0, f64::max),
            multiply_accumulates_per_instruction: self.model.multiply_accumulates() as f64 / mean,
            qemu_seconds,
        })
    }

    /// Checks that the firmware ran the model file and the images it was meant to.
    fn check_summary(&self, board: Board, summary: &Summary) -> anyhow::Result<()> {
        if summary.target != board.triple() {
            bail!(
                "summary.txt: target is {}, expected {}",
                summary.target,
                board.triple()
            );
        }
        let crc = core_nostd::crc32(self.model_file);
        if summary.model_crc32 != crc || summary.model_bytes != self.model_file.len() as u64 {
            bail!(
                "summary.txt: the firmware embeds a model of {} bytes with CRC-32 {:#010x}; \
                 the model file has {} bytes and CRC-32 {crc:#010x}",
                summary.model_bytes,
                summary.model_crc32,
                self.model_file.len()
            );
        }
        if summary.images != self.expected.len() as u64 {
            bail!(
                "summary.txt: images is {}, expected {}",
                summary.images,
                self.expected.len()
            );
        }
        if summary.classes != self.model.classes() {
            bail!(
                "summary.txt: classes is {}, expected the model's {}",
                summary.classes,
                self.model.classes()
            );
        }
        Ok(())
    }
}

fn same_answer(prediction: &Prediction, (class, scores): &(usize, Vec<i8>)) -> bool {
    usize::from(prediction.class) == *class && prediction.scores == *scores
}

fn print_report(report: &Report) {
    println!(
        "model {} ({} bytes, arena {} bytes, {} multiply-accumulates an image); host core accuracy {:.2}% on {} images",
        report.model_file,
        report.model_bytes,
        report.arena_bytes,
        report.multiply_accumulates,
        100.0 * report.host_accuracy,
        report.images
    );
    println!(
        "{:<10} {:>13} {:>12} {:>10} {:>13} {:>11} {:>15} {:>10} {:>8}",
        "board",
        "identical",
        "flash B",
        "model B",
        "RAM B",
        "stack B",
        "instr/image",
        "MAC/instr",
        "QEMU s"
    );
    for board in &report.boards {
        let identical = format!("{}/{}", board.identical, report.images);
        match &board.measured {
            Some(m) => println!(
                "{:<10} {:>13} {:>12} {:>10} {:>13} {:>11} {:>15.0} {:>10.3} {:>8.1}",
                board.board,
                identical,
                m.flash_bytes,
                m.model_bytes,
                m.ram_bytes,
                m.stack_peak_bytes,
                m.instructions_per_inference_mean,
                m.multiply_accumulates_per_instruction,
                m.qemu_seconds
            ),
            None => println!("{:<10} {:>13} (did not finish)", board.board, identical),
        }
    }
    for board in &report.boards {
        if let Some(m) = &board.measured {
            println!(
                "{}: flash = text {} + rodata {} + data {}; RAM = data {} + bss {} + peak stack {}; \
                 instructions per image {:.0} to {:.0}, resolution {:.0} (one clock tick)",
                board.board,
                m.footprint.text_bytes,
                m.footprint.rodata_bytes,
                m.footprint.data_bytes,
                m.footprint.data_bytes,
                m.footprint.bss_bytes,
                m.stack_peak_bytes,
                m.instructions_per_inference_min,
                m.instructions_per_inference_max,
                m.instructions_per_tick
            );
        }
    }
}
