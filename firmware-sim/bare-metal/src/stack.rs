//! Peak stack use, measured by painting: every free stack word gets a pattern at startup,
//! and the lowest word that no longer holds it marks how deep the stack went.

use crate::board;

/// What free stack words are painted with.
const PAINT: u32 = 0xC0FF_EE55;

/// Bytes left unpainted just below the painter's own stack pointer, for the frame of the
/// painting loop itself.
const MARGIN_BYTES: usize = 64;

/// The painted stack region: from the bottom of the stack to just below where `paint` ran.
pub struct PaintedStack {
    bottom: usize,
    top: usize,
}

impl PaintedStack {
    /// Paints every word from the bottom of the stack up to `MARGIN_BYTES` below the current
    /// stack pointer. Call it first thing, before interrupts are enabled.
    #[inline(never)]
    pub fn paint() -> PaintedStack {
        let (bottom, top) = board::stack_bounds();
        let limit = (board::stack_pointer() - MARGIN_BYTES) & !3;
        let mut word = bottom as *mut u32;
        while (word as usize) < limit {
            // SAFETY: `word` lies between the bottom of the stack and below the live part of
            // it (under the stack pointer, less a margin), which nothing uses yet; it is
            // 4-aligned since both linker scripts align the stack's bottom to 4.
            unsafe {
                word.write_volatile(PAINT);
                word = word.add(1);
            }
        }
        PaintedStack { bottom, top }
    }

    /// Bytes of the whole stack region.
    pub fn size_bytes(&self) -> usize {
        self.top - self.bottom
    }

    /// The most stack bytes in use at any time since [`PaintedStack::paint`]: from the top of
    /// the stack down to the lowest word whose paint is gone.
    pub fn peak_bytes(&self) -> usize {
        let mut word = self.bottom as *const u32;
        while (word as usize) < self.top {
            // SAFETY: inside the stack region, 4-aligned, as in `paint`.
            if unsafe { word.read_volatile() } != PAINT {
                break;
            }
            // SAFETY: stays within the region, or one past its end, which ends the loop.
            word = unsafe { word.add(1) };
        }
        self.top - word as usize
    }
}
