//! The Cortex-M4F of QEMU's `mps2-an386` board: reset through `cortex-m-rt`, time from
//! SysTick, faults turned into panics (and so into a failing exit).

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::{ExceptionFrame, entry, exception};

/// The Rust target this board module is built for.
pub const TARGET: &str = "thumbv7em-none-eabihf";

/// SysTick is a 24-bit down-counter: it counts from this value to 0, then reloads.
const RELOAD: u32 = 0x00FF_FFFF;

/// Times SysTick has wrapped since [`Clock::start`].
static WRAPS: AtomicU32 = AtomicU32::new(0);

#[entry]
fn main() -> ! {
    crate::start()
}

/// A 64-bit tick counter built from SysTick running on the processor clock and its wrap
/// interrupt. Under `qemu -icount shift=0` one nanosecond of virtual time passes per
/// instruction, and QEMU clocks the mps2 processor at 25 MHz: 40 instructions a tick (the
/// firmware measures the ratio, see [`count_down`]).
pub struct Clock {
    _syst: SYST,
}

impl Clock {
    /// Starts SysTick from `RELOAD`, counting processor clock cycles.
    pub fn start() -> Clock {
        let Some(peripherals) = cortex_m::Peripherals::take() else {
            panic!("the core peripherals were already taken");
        };
        let mut syst = peripherals.SYST;
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(RELOAD);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        // Cleared to 0, the counter reloads on the first tick without a wrap interrupt;
        // until then it would read as a whole period already gone.
        while SYST::get_current() == 0 {}
        Clock { _syst: syst }
    }

    /// Ticks since [`Clock::start`].
    pub fn now(&self) -> u64 {
        loop {
            let wraps = WRAPS.load(Ordering::SeqCst);
            let current = SYST::get_current();
            // A wrap between the two reads of WRAPS would pair the old count with the new
            // counter value: read again.
            if WRAPS.load(Ordering::SeqCst) == wraps {
                return u64::from(wraps) * (u64::from(RELOAD) + 1) + u64::from(RELOAD - current);
            }
        }
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
            "subs {n}, {n}, #1",
            "bne 2b",
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
}

/// The lowest and one past the highest address of the stack, from `cortex-m-rt`'s linker
/// script: the stack grows down from `_stack_start` to `_stack_end`, the end of bss.
pub fn stack_bounds() -> (usize, usize) {
    unsafe extern "C" {
        static _stack_end: u32;
        static _stack_start: u32;
    }
    (
        (&raw const _stack_end) as usize,
        (&raw const _stack_start) as usize,
    )
}

/// The stack pointer of the caller.
#[inline(always)]
pub fn stack_pointer() -> usize {
    let sp: usize;
    // SAFETY: reads a register.
    unsafe { asm!("mov {}, sp", out(reg) sp, options(nomem, nostack, preserves_flags)) };
    sp
}

#[exception]
fn SysTick() {
    WRAPS.fetch_add(1, Ordering::SeqCst);
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    panic!("hard fault at pc {:#010x}", frame.pc())
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    panic!("unexpected exception or interrupt {irqn}")
}
