//! Which vector instructions the kernels may use on this processor, found once.
//!
//! On x86-64 the int8 kernels have a second build of their loops for AVX2, chosen at run
//! time: the baseline x86-64 target the host compiles for has only SSE2, and a model on a
//! desktop or a CI machine runs several times faster with the wider instructions. Other
//! targets (Cortex-M, RISC-V) always run the portable loops.

/// A set of instructions a kernel's loops are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kernels {
    /// The target's baseline instructions, on every target.
    Portable,
    /// AVX2 (x86-64 only; chosen only where the processor and the OS support it).
    Avx2,
    /// AVX2, and for convolutions with large windows AVX-512 VNNI (`vpdpbusd`, 64
    /// multiply-adds of unsigned by signed bytes per instruction); x86-64 only.
    Avx512Vnni,
}

impl Kernels {
    /// The fastest set this processor supports.
    pub fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        match x86::level() {
            x86::Level::Vnni => return Self::Avx512Vnni,
            x86::Level::Avx2 => return Self::Avx2,
            x86::Level::Baseline => {}
        }
        Self::Portable
    }

    /// Every set this processor supports, the portable one first (for tests that compare
    /// them).
    pub fn supported() -> impl Iterator<Item = Self> {
        let best = Self::detect();
        [Self::Portable, Self::Avx2, Self::Avx512Vnni]
            .into_iter()
            .filter(move |&k| k <= best)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use core::arch::x86_64::{__cpuid, __cpuid_count, _xgetbv};
    use core::sync::atomic::{AtomicU8, Ordering};

    /// The widest instructions the kernels may use here.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub(super) enum Level {
        Baseline,
        Avx2,
        Vnni,
    }

    const UNKNOWN: u8 = 0;
    static LEVEL: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// What the processor has and the OS saves the registers of, found once.
    pub(super) fn level() -> Level {
        let code = match LEVEL.load(Ordering::Relaxed) {
            UNKNOWN => {
                let code = match detect() {
                    Level::Baseline => 1,
                    Level::Avx2 => 2,
                    Level::Vnni => 3,
                };
                LEVEL.store(code, Ordering::Relaxed);
                code
            }
            code => code,
        };
        match code {
            3 => Level::Vnni,
            2 => Level::Avx2,
            _ => Level::Baseline,
        }
    }

    fn detect() -> Level {
        if __cpuid(0).eax < 7 {
            return Level::Baseline;
        }
        let leaf1 = __cpuid(1);
        let osxsave = leaf1.ecx & (1 << 27) != 0;
        let avx = leaf1.ecx & (1 << 28) != 0;
        if !(osxsave && avx) {
            return Level::Baseline;
        }
        // SAFETY: OSXSAVE is set, so XGETBV is available.
        let xcr0 = unsafe { xcr0() };
        let leaf7 = __cpuid_count(7, 0);
        // The OS must save the SSE (bit 1) and AVX (bit 2) register state.
        let avx2 = xcr0 & 0b110 == 0b110 && leaf7.ebx & (1 << 5) != 0;
        if !avx2 {
            return Level::Baseline;
        }
        // And for AVX-512 the mask registers and the upper ZMM state (bits 5 to 7); then
        // AVX512F (EBX bit 16), AVX512BW (EBX bit 30) and AVX512-VNNI (ECX bit 11).
        let zmm = xcr0 & 0b1110_0000 == 0b1110_0000;
        let vnni =
            leaf7.ebx & (1 << 16) != 0 && leaf7.ebx & (1 << 30) != 0 && leaf7.ecx & (1 << 11) != 0;
        if zmm && vnni {
            Level::Vnni
        } else {
            Level::Avx2
        }
    }

    /// # Safety
    /// The processor must have XSAVE (CPUID leaf 1, ECX bit 27).
    #[target_feature(enable = "xsave")]
    unsafe fn xcr0() -> u64 {
        // SAFETY: the caller checked that XGETBV exists; register 0 is always readable.
        unsafe { _xgetbv(0) }
    }
}
