//! The two emulated boards and how QEMU runs the firmware on them.

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A board the firmware is built for and run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// Arm's AN386 image (a Cortex-M4 with FPU) on QEMU's `mps2-an386`.
    CortexM4,
    /// An RV32IMAC hart on QEMU's `virt` board.
    Riscv32,
}

/// The exit status the firmware's panic handler ends QEMU with.
const PANIC_STATUS: i32 = 101;

impl Board {
    /// Every board, in the order they are reported.
    pub const ALL: [Board; 2] = [Board::CortexM4, Board::Riscv32];

    /// The name `--target` takes.
    pub fn name(self) -> &'static str {
        match self {
            Board::CortexM4 => "cortex-m4",
            Board::Riscv32 => "riscv32",
        }
    }

    /// The Rust target the firmware is built for.
    pub fn triple(self) -> &'static str {
        match self {
            Board::CortexM4 => "thumbv7em-none-eabihf",
            Board::Riscv32 => "riscv32imac-unknown-none-elf",
        }
    }

    /// The QEMU program and the arguments that pick the board.
    fn qemu(self) -> (&'static str, &'static [&'static str]) {
        match self {
            Board::CortexM4 => (
                "qemu-system-arm",
                &["-machine", "mps2-an386", "-cpu", "cortex-m4"],
            ),
            Board::Riscv32 => (
                "qemu-system-riscv32",
                &["-machine", "virt", "-bios", "none"],
            ),
        }
    }

    /// The command line that runs `elf`, as the report shows it.
    pub fn command_line(self, elf: &Path) -> String {
        let (program, board) = self.qemu();
        let mut words = vec![program.to_string()];
        words.extend(board.iter().chain(COMMON).map(|w| w.to_string()));
        words.push(elf.display().to_string());
        words.join(" ")
    }

    /// Runs `elf` in QEMU in the folder `dir` (where it finds its input and writes its
    /// outputs through semihosting), for at most `timeout`. Returns the seconds it took, or
    /// why it failed: a status other than 0, or the timeout. QEMU's stdout and stderr go to
    /// `qemu.stdout` and `qemu.stderr` in `dir`.
    pub fn run(self, elf: &Path, dir: &Path, timeout: Duration) -> anyhow::Result<RunOutcome> {
        let (program, board) = self.qemu();
        let stdout = File::create(dir.join("qemu.stdout"))
            .with_context(|| format!("cannot create qemu.stdout in {}", dir.display()))?;
        let stderr = File::create(dir.join("qemu.stderr"))
            .with_context(|| format!("cannot create qemu.stderr in {}", dir.display()))?;
        let started = Instant::now();
        let mut child = Command::new(program)
            .args(board)
            .args(COMMON)
            .arg(elf)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot start {program}: install QEMU (Debian: qemu-system-arm and \
                     qemu-system-misc), for example with ../shared/tools/cross-toolchain.sh"
                )
            })?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if started.elapsed() > timeout {
                // Already ended by itself if the kill fails.
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let seconds = started.elapsed().as_secs_f64();
        let stderr = std::fs::read_to_string(dir.join("qemu.stderr")).unwrap_or_default();
        Ok(match status {
            Some(status) if status.success() => RunOutcome::Finished { seconds },
            Some(status) => RunOutcome::Failed(describe_failure(program, status, stderr.trim())),
            None => RunOutcome::Failed(format!(
                "{program} still ran after {} s (--timeout-s), and was stopped; stderr: {}",
                timeout.as_secs(),
                or_nothing(stderr.trim())
            )),
        })
    }
}

/// Arguments for both boards: no display, semihosting on the host's files, and one
/// nanosecond of virtual time per instruction, so the firmware's timers count
/// instructions.
const COMMON: &[&str] = &[
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "none",
    "-semihosting-config",
    "enable=on,target=native",
    "-icount",
    "shift=0",
    "-kernel",
];

/// How a QEMU run ended.
pub enum RunOutcome {
    /// Status 0: the firmware ran every image.
    Finished {
        /// Wall-clock seconds on the host.
        seconds: f64,
    },
    /// Why it did not.
    Failed(String),
}

fn describe_failure(program: &str, status: ExitStatus, stderr: &str) -> String {
    let why = match status.code() {
        Some(PANIC_STATUS) => "the firmware panicked".to_string(),
        Some(code) => format!("exit status {code}"),
        None => format!("{status}"),
    };
    format!("{program} failed ({why}); stderr: {}", or_nothing(stderr))
}

fn or_nothing(text: &str) -> &str {
    if text.is_empty() { "(nothing)" } else { text }
}
