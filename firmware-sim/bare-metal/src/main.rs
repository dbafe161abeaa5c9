//! `core-nostd` in a bare-metal image: the int8 model file is in flash (`include_bytes!`), its
//! arena and the image buffer are static, and the images come from the host through
//! semihosting. Built by `firmware-sim qemu` for QEMU's `mps2-an386` (Cortex-M4F,
//! `thumbv7em-none-eabihf`) and `virt` (RV32IMAC, `riscv32imac-unknown-none-elf`) boards,
//! with `-Zbuild-std=core,compiler_builtins`: no `alloc` exists in the build.
//!
//! The model is the Rust file that `host-trainer quantize --rust FILE.rs` writes, named at
//! build time by the environment variable `FIRMWARE_MODEL_RS` (an absolute path).
//!
//! Files, in the folder QEMU runs in:
//!
//! | file | direction | content |
//! | --- | --- | --- |
//! | `images.bin` | read | CIFAR-10 binary records: a label byte, then the 3,072 pixel bytes (1,024 red, green, blue) |
//! | `predictions.bin` | written | per image: the class byte, the `CLASSES` int8 scores, the ticks of the inference (u64, little-endian) |
//! | `summary.txt` | written | `key value` lines: target, images, model size, address and CRC-32, arena, stack and clock figures |
//!
//! It ends through semihosting: exit status 0 when every image ran. Anything that goes wrong
//! (a missing file, a model the core refuses, a fault or trap) panics; the panic message goes
//! to stderr and the exit status is 101, so QEMU fails.
#![no_std]
#![no_main]

#[cfg_attr(target_arch = "arm", path = "board/cortex_m.rs")]
#[cfg_attr(target_arch = "riscv32", path = "board/riscv.rs")]
mod board;
mod stack;

use core::ffi::CStr;
use core::fmt;

use core_nostd::Model;
use semihosting::fs::File;
use semihosting::io::{Read, Write};

use board::Clock;
use stack::PaintedStack;

/// The file `host-trainer quantize --rust` wrote: `MODEL`, `MODEL_BYTES`, `ARENA_BYTES`,
/// `CLASSES`.
mod model {
    include!(env!("FIRMWARE_MODEL_RS"));
}

const IMAGES: &CStr = c"images.bin";
const PREDICTIONS: &CStr = c"predictions.bin";
const SUMMARY: &CStr = c"summary.txt";

/// Pixel bytes of a CIFAR-10 image (3 planes of 32 x 32).
const PIXEL_BYTES: usize = 3 * 32 * 32;

/// Bytes of an input record: the label, then the pixels.
const RECORD_BYTES: usize = 1 + PIXEL_BYTES;

/// Bytes of an output record: the class, the scores, the ticks.
const PREDICTION_BYTES: usize = 1 + model::CLASSES + 8;

/// Iterations of the calibration loop: 8 million instructions.
const CALIBRATION_ITERATIONS: u32 = 4_000_000;

/// The arena, sized by the exported `ARENA_BYTES`.
static mut ARENA: [u8; model::ARENA_BYTES] = [0; model::ARENA_BYTES];

/// One input record.
static mut RECORD: [u8; RECORD_BYTES] = [0; RECORD_BYTES];

/// Why the firmware stops.
enum Failure {
    /// The core refused the model or an inference.
    Core {
        what: &'static str,
        error: core_nostd::Error,
    },
    /// A semihosting call on a host file failed.
    Host {
        action: &'static str,
        file: &'static CStr,
        error: semihosting::io::Error,
    },
    /// The input file does not hold whole records.
    InputLength { bytes: u64 },
    /// The model reads other images than CIFAR-10's.
    PixelBytes { model: usize },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Core { what, error } => write!(f, "{what}: {error}"),
            Failure::Host {
                action,
                file,
                error,
            } => write!(f, "cannot {action} {file:?} on the host: {error:?}"),
            Failure::InputLength { bytes } => write!(
                f,
                "{IMAGES:?} has {bytes} bytes: expected a non-zero multiple of {RECORD_BYTES} \
                 (CIFAR-10 records)"
            ),
            Failure::PixelBytes { model } => write!(
                f,
                "the model reads {model} pixel bytes an image; this firmware feeds CIFAR-10 \
                 images of {PIXEL_BYTES}"
            ),
        }
    }
}

/// What `run` measured.
struct Figures {
    images: u64,
    arena_needed: usize,
    calibration_ticks: u64,
}

/// Called by the board's entry point.
fn start() -> ! {
    let stack = PaintedStack::paint();
    let clock = Clock::start();
    match run(&clock) {
        Ok(figures) => match write_summary(&figures, &stack) {
            Ok(()) => semihosting::process::exit(0),
            Err(failure) => panic!("{failure}"),
        },
        Err(failure) => panic!("{failure}"),
    }
}

fn run(clock: &Clock) -> Result<Figures, Failure> {
    // The loop run twice as long, less the loop run once: the ticks of
    // `CALIBRATION_ITERATIONS` iterations without the cost of reading the clock.
    let ticks_of = |iterations| {
        let started = clock.now();
        board::count_down(iterations);
        clock.now() - started
    };
    let single = ticks_of(CALIBRATION_ITERATIONS);
    let calibration_ticks = ticks_of(2 * CALIBRATION_ITERATIONS).saturating_sub(single);

    let model = Model::parse(&model::MODEL).map_err(|error| Failure::Core {
        what: "the embedded model",
        error,
    })?;
    if model.pixel_bytes() != PIXEL_BYTES {
        return Err(Failure::PixelBytes {
            model: model.pixel_bytes(),
        });
    }

    let host = |action, file| {
        move |error| Failure::Host {
            action,
            file,
            error,
        }
    };
    let mut images = File::open(IMAGES).map_err(host("open", IMAGES))?;
    let bytes = images.metadata().map_err(host("measure", IMAGES))?.len();
    if bytes == 0 || bytes % RECORD_BYTES as u64 != 0 {
        return Err(Failure::InputLength { bytes });
    }
    let mut predictions = File::create(PREDICTIONS).map_err(host("create", PREDICTIONS))?;

    // SAFETY: `run` is called once, from `start`, and nothing else names these statics (no
    // interrupt handler does), so these are the only references to them.
    let (arena, record) = unsafe { (&mut *(&raw mut ARENA), &mut *(&raw mut RECORD)) };
    let count = bytes / RECORD_BYTES as u64;
    for _ in 0..count {
        images
            .read_exact(record)
            .map_err(host("read a record of", IMAGES))?;
        let mut scores = [0i8; model::CLASSES];
        let started = clock.now();
        let class = model.infer_i8(&record[1..], arena, &mut scores);
        let ticks = clock.now() - started;
        let class = class.map_err(|error| Failure::Core {
            what: "inference",
            error,
        })?;

        let mut out = [0u8; PREDICTION_BYTES];
        out[0] = class as u8;
        for (byte, score) in out[1..=model::CLASSES].iter_mut().zip(scores) {
            *byte = score as u8;
        }
        out[1 + model::CLASSES..].copy_from_slice(&ticks.to_le_bytes());
        predictions
            .write_all(&out)
            .map_err(host("write", PREDICTIONS))?;
    }

    Ok(Figures {
        images: count,
        arena_needed: model.arena_bytes(),
        calibration_ticks,
    })
}

/// Writes `summary.txt`, the figures the host cannot see from outside.
fn write_summary(figures: &Figures, stack: &PaintedStack) -> Result<(), Failure> {
    let host = |error| Failure::Host {
        action: "write",
        file: SUMMARY,
        error,
    };
    let mut summary = File::create(SUMMARY).map_err(host)?;
    write!(
        summary,
        "target {}\nimages {}\nclasses {}\nmodel_bytes {}\nmodel_address {:#x}\n\
         model_crc32 {:#010x}\narena_bytes {}\narena_needed_bytes {}\nstack_bytes {}\n\
         stack_peak_bytes {}\ncalibration_instructions {}\ncalibration_ticks {}\n",
        board::TARGET,
        figures.images,
        model::CLASSES,
        model::MODEL_BYTES,
        model::MODEL.as_ptr() as usize,
        core_nostd::crc32(&model::MODEL),
        model::ARENA_BYTES,
        figures.arena_needed,
        stack.size_bytes(),
        stack.peak_bytes(),
        u64::from(CALIBRATION_ITERATIONS) * board::COUNT_DOWN_INSTRUCTIONS,
        figures.calibration_ticks,
    )
    .map_err(host)
}
