//! Dot products of int16 patches with int8 weights, the inner loop of the int8
//! convolution and dense layers, for each instruction set of [`crate::cpu::Kernels`].

/// Dot products computed together in one pass over a patch.
pub(crate) const UNITS: usize = 4;

/// The dot products of a patch of int16 values (little-endian bytes) with int8 filters,
/// for one instruction set. |x - zero point| <= 255 and |w| <= 128: every product fits in
/// an i32, and the sums wrap as the portable loops' do.
pub(crate) trait Dots: Copy {
    /// The dot product with one filter.
    fn dot(self, patch: &[[u8; 2]], filter: &[i8]) -> i32;
    /// The dot products with four filters, in one pass over the patch.
    fn dot4(self, patch: &[[u8; 2]], filters: [&[i8]; UNITS]) -> [i32; UNITS];
}

/// Plain loops, which compilers vectorize with the target's baseline instructions.
#[derive(Clone, Copy)]
pub(crate) struct Portable;

impl Dots for Portable {
    #[inline(always)]
    fn dot(self, patch: &[[u8; 2]], filter: &[i8]) -> i32 {
        patch.iter().zip(filter).fold(0i32, |sum, (p, &w)| {
            sum.wrapping_add(i16::from_le_bytes(*p) as i32 * w as i32)
        })
    }

    #[inline(always)]
    fn dot4(self, patch: &[[u8; 2]], filters: [&[i8]; UNITS]) -> [i32; UNITS] {
        let [f0, f1, f2, f3] = filters;
        let (mut s0, mut s1, mut s2, mut s3) = (0i32, 0i32, 0i32, 0i32);
        for ((((p, &w0), &w1), &w2), &w3) in patch.iter().zip(f0).zip(f1).zip(f2).zip(f3) {
            let p = i16::from_le_bytes(*p) as i32;
            s0 = s0.wrapping_add(p * w0 as i32);
            s1 = s1.wrapping_add(p * w1 as i32);
            s2 = s2.wrapping_add(p * w2 as i32);
            s3 = s3.wrapping_add(p * w3 as i32);
        }
        [s0, s1, s2, s3]
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::{Dots, Portable, UNITS};
    use core::arch::x86_64::*;

    /// Proof that AVX2 runs here: only [`Avx2::new`] makes one, after checking.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(());

    impl Avx2 {
        pub(crate) fn new() -> Option<Self> {
            (crate::cpu::Kernels::detect() >= crate::cpu::Kernels::Avx2).then_some(Self(()))
        }
    }

    impl Dots for Avx2 {
        #[inline(always)]
        fn dot(self, patch: &[[u8; 2]], filter: &[i8]) -> i32 {
            // SAFETY: an `Avx2` exists only where AVX2 runs.
            let [sum] = unsafe { dots(patch, [filter]) };
            sum
        }

        #[inline(always)]
        fn dot4(self, patch: &[[u8; 2]], filters: [&[i8]; UNITS]) -> [i32; UNITS] {
            // SAFETY: an `Avx2` exists only where AVX2 runs.
            unsafe { dots(patch, filters) }
        }
    }

    /// `N` dot products, 16 values at a time: the patch's int16 values times the filters'
    /// int8 values widened to int16, summed in pairs into int32 lanes (`vpmaddwd`).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn dots<const N: usize>(patch: &[[u8; 2]], filters: [&[i8]; N]) -> [i32; N] {
        let len = filters.iter().fold(patch.len(), |len, f| len.min(f.len()));
        let (patch, _) = patch.split_at(len);
        let (blocks, patch_rest) = patch.as_chunks::<16>();
        let mut sums = [_mm256_setzero_si256(); N];
        for (b, block) in blocks.iter().enumerate() {
            // SAFETY: `block` is 16 int16 values, 32 bytes; the load takes any alignment.
            let p = unsafe { _mm256_loadu_si256(block.as_ptr().cast()) };
            for (sum, filter) in sums.iter_mut().zip(&filters) {
                let Some(w) = filter.get(b * 16..b * 16 + 16) else {
                    continue;
                };
                // SAFETY: `w` is 16 bytes; the load takes any alignment.
                let w = unsafe { _mm_loadu_si128(w.as_ptr().cast()) };
                *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(p, _mm256_cvtepi8_epi16(w)));
            }
        }
        let done = blocks.len() * 16;
        let mut out = [0i32; N];
        for ((out, sum), filter) in out.iter_mut().zip(sums).zip(filters) {
            let rest = filter.get(done..).unwrap_or(&[]);
            *out = horizontal_sum(sum).wrapping_add(Portable.dot(patch_rest, rest));
        }
        out
    }

    #[target_feature(enable = "avx2")]
    #[inline]
    fn horizontal_sum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// Eight requantizations at once, bit for bit [`crate::Requantize::apply`] followed by
    /// the zero point and the clamp of [`crate::requant::Requantization::output`], for
    /// scales that do not shift left (`shift <= 0`; the caller checks). `multipliers` are
    /// the scales' multipliers (never negative), `rights` their `-shift`, `low` and `high`
    /// the clamp with the zero point taken off.
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn requantize8(
        sums: __m256i,
        multipliers: __m256i,
        rights: __m256i,
        (low, high, zero_point): (__m256i, __m256i, __m256i),
    ) -> __m256i {
        let zero = _mm256_setzero_si256();
        let one = _mm256_set1_epi32(1);
        // round(sum * multiplier / 2^31), on the even and the odd lanes as 64-bit products.
        let high_half = |product: __m256i| {
            let negative = _mm256_cmpgt_epi64(zero, product);
            let nudge = _mm256_blendv_epi8(
                _mm256_set1_epi64x(1 << 30),
                _mm256_set1_epi64x(1 - (1 << 30)),
                negative,
            );
            let x = _mm256_add_epi64(product, nudge);
            // Division by 2^31 truncating toward zero: add 2^31 - 1 to negative values first.
            let negative = _mm256_cmpgt_epi64(zero, x);
            let x = _mm256_add_epi64(
                x,
                _mm256_and_si256(negative, _mm256_set1_epi64x((1 << 31) - 1)),
            );
            // Bits 31..62: the quotient fits in 32 bits, so a logical shift gives its bits.
            _mm256_srli_epi64::<31>(x)
        };
        let even = high_half(_mm256_mul_epi32(sums, multipliers));
        let odd = high_half(_mm256_mul_epi32(
            _mm256_srli_epi64::<32>(sums),
            _mm256_srli_epi64::<32>(multipliers),
        ));
        let product = _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd));
        // Rounding right shift, ties away from zero.
        let mask = _mm256_sub_epi32(_mm256_sllv_epi32(one, rights), one);
        let remainder = _mm256_and_si256(product, mask);
        let threshold = _mm256_add_epi32(
            _mm256_srli_epi32::<1>(mask),
            _mm256_and_si256(_mm256_cmpgt_epi32(zero, product), one),
        );
        let shifted = _mm256_srav_epi32(product, rights);
        let rounded = _mm256_sub_epi32(shifted, _mm256_cmpgt_epi32(remainder, threshold));
        let clamped = _mm256_max_epi32(_mm256_min_epi32(rounded, high), low);
        _mm256_add_epi32(clamped, zero_point)
    }

    /// Proof that AVX-512 VNNI runs here: only [`Vnni::new`] makes one, after checking.
    #[derive(Clone, Copy)]
    pub(crate) struct Vnni(());

    impl Vnni {
        pub(crate) fn new() -> Option<Self> {
            (crate::cpu::Kernels::detect() == crate::cpu::Kernels::Avx512Vnni).then_some(Self(()))
        }

        /// The dot products of `P` patches of unsigned bytes with `N` signed-byte filters,
        /// 64 bytes per instruction (`vpdpbusd`), each filter byte loaded once for all
        /// patches. Each product is at most 255 x 128, so the int32 lanes hold the sums of
        /// patches of up to 2^16 bytes exactly.
        #[inline(always)]
        pub(crate) fn dots<const P: usize, const N: usize>(
            self,
            patches: [&[u8]; P],
            filters: [&[i8]; N],
        ) -> [[i32; N]; P] {
            // SAFETY: a `Vnni` exists only where AVX-512 F, BW and VNNI run.
            unsafe { dots_u8(patches, filters) }
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn dots_u8<const P: usize, const N: usize>(
        patches: [&[u8]; P],
        filters: [&[i8]; N],
    ) -> [[i32; N]; P] {
        let len = filters.iter().fold(usize::MAX, |len, f| len.min(f.len()));
        let len = patches.iter().fold(len, |len, p| len.min(p.len()));
        let mut sums = [[_mm512_setzero_si512(); N]; P];
        let mut start = 0;
        while start < len {
            let n = (len - start).min(64);
            let mask = u64::MAX >> (64 - n);
            // SAFETY: `start < len`, so the pointers stay inside every patch and filter, and
            // the mask loads only the `n` bytes from `start`, all before `len`.
            let mut p = [_mm512_setzero_si512(); P];
            for (p, patch) in p.iter_mut().zip(&patches) {
                *p = unsafe { _mm512_maskz_loadu_epi8(mask, patch.as_ptr().add(start).cast()) };
            }
            for (j, filter) in filters.iter().enumerate() {
                // SAFETY: as above.
                let w = unsafe { _mm512_maskz_loadu_epi8(mask, filter.as_ptr().add(start).cast()) };
                for (sums, &p) in sums.iter_mut().zip(&p) {
                    if let Some(sum) = sums.get_mut(j) {
                        *sum = _mm512_dpbusd_epi32(*sum, p, w);
                    }
                }
            }
            start += 64;
        }
        let mut out = [[0; N]; P];
        for (out, sums) in out.iter_mut().zip(&sums) {
            for (out, &sum) in out.iter_mut().zip(sums) {
                *out = _mm512_reduce_add_epi32(sum);
            }
        }
        out
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::x86::{Avx2, requantize8};
    use crate::Requantize;
    use crate::requant::Requantization;
    use core::arch::x86_64::*;

    /// Eight lanes at a time against the scalar rule, over extremes and pseudo-random
    /// accumulators, multipliers, right shifts, zero points and clamps.
    #[test]
    fn vector_requantization_is_the_scalar_one() {
        let Some(_) = Avx2::new() else {
            return;
        };
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let edges = [
            i32::MIN,
            i32::MIN + 1,
            -1,
            0,
            1,
            i32::MAX,
            1 << 30,
            -(1 << 30),
        ];
        for round in 0..20_000 {
            let mut sums = [0i32; 8];
            let mut multipliers = [0i32; 8];
            let mut rights = [0i32; 8];
            for lane in 0..8 {
                let r = next();
                sums[lane] = if r % 5 == 0 {
                    edges[(r >> 8) as usize % 8]
                } else {
                    (r >> 16) as i32 >> (r % 24)
                };
                let m = next();
                multipliers[lane] = match m % 4 {
                    0 => i32::MAX,
                    1 => 0,
                    _ => (m >> 33) as i32 | (1 << 30),
                };
                rights[lane] = (next() % 32) as i32;
            }
            let zero_point = (next() % 256) as i32 - 128;
            let (min, max) = if round % 2 == 0 {
                (-128i8, 127i8)
            } else {
                (zero_point as i8, 127)
            };
            let requantization = Requantization::<'_, Requantize> {
                per_channel: &[],
                zero_point,
                min,
                max,
            };
            // SAFETY: `Avx2::new` found AVX2; the loads and the store are of 8 int32 values.
            let got = unsafe { vector(sums, multipliers, rights, zero_point, min, max) };
            for lane in 0..8 {
                let scale = Requantize::new(multipliers[lane], -rights[lane]).unwrap();
                let want = requantization.output(scale, sums[lane]) as i32;
                assert_eq!(got[lane], want, "lane {lane}: {:?} {scale:?}", sums[lane]);
            }
        }
    }

    #[target_feature(enable = "avx2")]
    unsafe fn vector(
        sums: [i32; 8],
        multipliers: [i32; 8],
        rights: [i32; 8],
        zero_point: i32,
        min: i8,
        max: i8,
    ) -> [i32; 8] {
        let load = |v: &[i32; 8]| unsafe { _mm256_loadu_si256(v.as_ptr().cast()) };
        let clamp = (
            _mm256_set1_epi32(min as i32 - zero_point),
            _mm256_set1_epi32(max as i32 - zero_point),
            _mm256_set1_epi32(zero_point),
        );
        let value = requantize8(load(&sums), load(&multipliers), load(&rights), clamp);
        let mut out = [0i32; 8];
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), value) };
        out
    }
}
