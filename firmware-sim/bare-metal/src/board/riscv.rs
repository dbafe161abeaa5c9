//! The RV32IMAC hart of QEMU's `virt` board, started with `-bios none`: reset through
//! `riscv-rt`, time from the `minstret` counter, traps turned into panics (and so into a
//! failing exit).

use core::arch::asm;

use riscv::register::{mcause, mepc, minstret, mtval};

/// The Rust target this board module is built for.
pub const TARGET: &str = "riscv32imac-unknown-none-elf";

#[riscv_rt::entry]
fn main() -> ! {
    crate::start()
}

/// Instructions retired, from `minstret`: under `qemu -icount` QEMU derives it from its
/// instruction count, one tick an instruction (the firmware measures the ratio, see
/// [`count_down`]).
pub struct Clock;

impl Clock {
    /// `minstret` runs from reset; there is nothing to start.
    pub fn start() -> Clock {
        Clock
    }

    /// Instructions retired since reset.
    pub fn now(&self) -> u64 {
        minstret::read64()
    }
}

/// Instructions one iteration of [`count_down`] executes.
pub const COUNT_DOWN_INSTRUCTIONS: u64 = 2;

/// Runs a loop of exactly `iterations` x [`COUNT_DOWN_INSTRUCTIONS`] instructions, to measure
/// how many instructions a tick of [`Clock`] is.
pub fn count_down(iterations: u32) {
    let iterations = iterations.max(1);
    // SAFETY: touches only the register it is given.
    unsafe {
        asm!(
            "2:",
            "addi {n}, {n}, -1",
            "bnez {n}, 2b",
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
}

/// The lowest and one past the highest address of the stack, from `riscv-rt`'s linker
/// script: its `.stack` section runs from `__estack` up to `_stack_start`.
pub fn stack_bounds() -> (usize, usize) {
    unsafe extern "C" {
        static __estack: u32;
        static _stack_start: u32;
    }
    (
        (&raw const __estack) as usize,
        (&raw const _stack_start) as usize,
    )
}

/// The stack pointer of the caller.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register.
    unsafe { asm!("mv {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

#[unsafe(export_name = "ExceptionHandler")]
fn exception_handler(_frame: &riscv_rt::TrapFrame) -> ! {
    panic!(
        "trap: mcause {:#x} at mepc {:#010x}, mtval {:#x}",
        mcause::read().bits(),
        mepc::read(),
        mtval::read()
    )
}
