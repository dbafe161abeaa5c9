//! 2-D convolution, stride 1, "same" padding as the trainer uses it: for a kernel of side
//! `k` the input is padded by `(k - 1) / 2` rows and columns before and the rest after, so
//! an even kernel puts its extra row and column at the bottom and right (as Keras does).
//!
//! Weights are laid out `[out_channel][in_channel][ky][kx]`, as burn stores them.

use crate::cpu::Kernels;
#[cfg(target_arch = "x86_64")]
use crate::dot::x86;
use crate::dot::{Dots, Portable, UNITS};
use crate::element::{Int32, Real, Scale};
use crate::requant::Requantization;
use crate::{Error, Shape, check_len};

/// Padding before and after one axis for a kernel of side `kernel`.
pub const fn same_padding(kernel: usize) -> (usize, usize) {
    let total = kernel.saturating_sub(1);
    (total / 2, total - total / 2)
}

/// Checks every slice length of a convolution against its shapes.
fn check(
    input_len: usize,
    shape: Shape,
    weights_len: usize,
    out_channels: usize,
    kernel: usize,
    output_len: usize,
) -> Result<(), Error> {
    if kernel == 0 {
        return Err(Error::BadWindow {
            what: "convolution kernel",
            size: kernel,
        });
    }
    check_len("convolution input", input_len, shape.len())?;
    let taps = kernel
        .checked_mul(kernel)
        .and_then(|k| k.checked_mul(shape.channels))
        .and_then(|k| k.checked_mul(out_channels));
    check_len("convolution weights", weights_len, taps)?;
    let outputs = shape.plane().and_then(|p| p.checked_mul(out_channels));
    check_len("convolution output", output_len, outputs)
}

/// The kernel rows that land inside the input for output row `at`.
fn window(at: usize, kernel: usize, before: usize, size: usize) -> core::ops::Range<usize> {
    let start = before.saturating_sub(at);
    let end = kernel.min((size + before).saturating_sub(at));
    start..end.max(start)
}

/// Output columns computed together: their accumulators live on the stack, and the inner
/// loop runs along a row of the input, where the compiler can vectorize it.
const COLUMNS: usize = 32;

/// The loops shared by both precisions: `start` gives the accumulator of an output channel,
/// `accumulate` adds one input value times one weight, and `finish` turns a sum into the
/// output value. For each output row and block of columns, each tap of the kernel adds its
/// weight times a shifted run of one input row; taps that fall in the padding are skipped.
/// The taps of one output value are summed in input channel, row, column order. The lengths
/// were checked by the caller.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn convolve<I: Copy, W: Copy, A: Copy, O>(
    input: &[I],
    shape: Shape,
    weights: &[W],
    kernel: usize,
    output: &mut [O],
    start: impl Fn(usize) -> A,
    accumulate: impl Fn(A, I, W) -> A,
    finish: impl Fn(usize, A) -> O,
) {
    let Shape {
        channels,
        height,
        width,
    } = shape;
    let (before, _) = same_padding(kernel);
    let plane = height * width;
    let taps = kernel * kernel;
    if plane == 0 || taps == 0 || channels == 0 {
        return;
    }
    for (oc, (out_plane, filters)) in output
        .chunks_exact_mut(plane)
        .zip(weights.chunks_exact(channels * taps))
        .enumerate()
    {
        let bias = start(oc);
        for y in 0..height {
            let rows = window(y, kernel, before, height);
            let out_row = &mut out_plane[y * width..(y + 1) * width];
            for (block, out_block) in out_row.chunks_mut(COLUMNS).enumerate() {
                let x0 = block * COLUMNS;
                let x1 = x0 + out_block.len();
                let mut sums = [bias; COLUMNS];
                for (in_plane, filter) in input.chunks_exact(plane).zip(filters.chunks_exact(taps))
                {
                    for ky in rows.clone() {
                        let iy = y + ky - before;
                        let row = &in_plane[iy * width..(iy + 1) * width];
                        let taps_row = &filter[ky * kernel..(ky + 1) * kernel];
                        for (kx, &w) in taps_row.iter().enumerate() {
                            // Output column x reads input column x + kx - before.
                            let lo = x0.max(before.saturating_sub(kx));
                            let hi = x1.min((width + before).saturating_sub(kx));
                            if lo >= hi {
                                continue;
                            }
                            let source = &row[lo + kx - before..hi + kx - before];
                            for (sum, &value) in sums[lo - x0..hi - x0].iter_mut().zip(source) {
                                *sum = accumulate(*sum, value, w);
                            }
                        }
                    }
                }
                for (out, &sum) in out_block.iter_mut().zip(&sums) {
                    *out = finish(oc, sum);
                }
            }
        }
    }
}

/// f32 convolution: `output = conv(input, weights) + bias`, then ReLU if `relu`.
/// The output has `bias.len()` channels of the input's height and width. Weights and biases
/// are `f32` values or their little-endian bytes (see [`Real`]).
pub fn conv2d_f32<W: Real>(
    input: &[f32],
    shape: Shape,
    weights: &[W],
    bias: &[W],
    kernel: usize,
    relu: bool,
    output: &mut [f32],
) -> Result<(), Error> {
    check(
        input.len(),
        shape,
        weights.len(),
        bias.len(),
        kernel,
        output.len(),
    )?;
    convolve(
        input,
        shape,
        weights,
        kernel,
        output,
        |oc| bias[oc].to_f32(),
        |sum, x, w: W| sum + x * w.to_f32(),
        |_, sum| if relu { sum.max(0.0) } else { sum },
    );
    Ok(())
}

/// Bytes of scratch [`conv2d_i8`] needs: one patch of `channels x kernel x kernel` int16
/// values, or `None` on overflow.
pub fn i8_scratch_bytes(channels: usize, kernel: usize) -> Option<usize> {
    kernel
        .checked_mul(kernel)?
        .checked_mul(channels)?
        .checked_mul(2)
}

/// int8 convolution. Accumulates `(input - input_zero_point) * weight` in int32 over the
/// window (padding holds the zero point, so it adds nothing), adds `bias`, and requantizes.
/// The output has `bias.len()` channels; `requantization.per_channel` needs as many scales.
///
/// Two loop orders, chosen by the window's size `channels x kernel x kernel`:
///
/// - Small windows (under [`PATCH_MIN_TAPS`], such as the first layer on an RGB image) run
///   along the rows of the input, each tap adding its weight times a shifted run of a row
///   to a block of output columns, as the f32 kernel does.
/// - Larger windows are first copied, for each output position, into `scratch` (at least
///   [`i8_scratch_bytes`] bytes, any alignment) as int16 values with the zero point taken
///   off and padding as 0; then each group of four output channels is one pass of dot
///   products of that patch with their filters.
///
/// On x86-64 the loops are also built for AVX2 and AVX-512 VNNI, chosen at run time (see
/// [`Kernels`]): small windows then take all output channels of a position at once, large
/// ones dot byte patches with the filters 64 bytes at a time, two positions per pass.
/// Every order and build gives the same bits: the sums are exact integers.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8<B: Int32, S: Scale>(
    input: &[i8],
    shape: Shape,
    input_zero_point: i8,
    weights: &[i8],
    bias: &[B],
    kernel: usize,
    requantization: &Requantization<'_, S>,
    scratch: &mut [u8],
    output: &mut [i8],
) -> Result<(), Error> {
    conv2d_i8_with(
        Kernels::detect(),
        input,
        shape,
        input_zero_point,
        weights,
        bias,
        kernel,
        requantization,
        scratch,
        output,
    )
}

/// [`conv2d_i8`] with its loops built for `kernels`, which must be one of
/// [`Kernels::supported`] (another falls back to the portable loops).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_i8_with<B: Int32, S: Scale>(
    kernels: Kernels,
    input: &[i8],
    shape: Shape,
    input_zero_point: i8,
    weights: &[i8],
    bias: &[B],
    kernel: usize,
    requantization: &Requantization<'_, S>,
    scratch: &mut [u8],
    output: &mut [i8],
) -> Result<(), Error> {
    check(
        input.len(),
        shape,
        weights.len(),
        bias.len(),
        kernel,
        output.len(),
    )?;
    requantization.check(bias.len())?;
    let patch_bytes = i8_scratch_bytes(shape.channels, kernel).ok_or(Error::Overflow {
        what: "convolution scratch",
    })?;
    let found = scratch.len();
    let Some(scratch) = scratch.get_mut(..patch_bytes) else {
        return Err(Error::Length {
            what: "convolution scratch bytes",
            expected: patch_bytes,
            found,
        });
    };
    let (patch, _) = scratch.as_chunks_mut::<2>();
    let conv = ConvI8 {
        input,
        shape,
        zero_point: input_zero_point as i16,
        weights,
        bias,
        kernel,
        requantization,
    };
    match kernels {
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2 | Kernels::Avx512Vnni => match x86::Avx2::new() {
            Some(avx2) => {
                let vnni = (kernels == Kernels::Avx512Vnni)
                    .then(x86::Vnni::new)
                    .flatten();
                // SAFETY: `Avx2::new` checked that this processor and its OS run AVX2.
                unsafe { conv.run_avx2(avx2, vnni, patch, output) }
            }
            None => conv.run(Portable, patch, output),
        },
        _ => conv.run(Portable, patch, output),
    }
    Ok(())
}

/// Largest padded input, in values, the AVX2 loops widen onto the stack (64 KiB); a larger
/// one is read through the portable patch copy.
#[cfg(target_arch = "x86_64")]
const PADDED_MAX: usize = 32 * 1024;

/// A padded input, and its rows and columns per channel.
#[cfg(target_arch = "x86_64")]
type PaddedInput<'a, T> = (&'a [T], (usize, usize));

/// The scales of a layer decoded once, for the VNNI loop: multipliers, right shifts
/// (`-shift`), and the offset added to each channel's sum.
#[cfg(target_arch = "x86_64")]
struct DecodedScales {
    multipliers: [i32; VNNI_MAX_UNITS],
    rights: [i32; VNNI_MAX_UNITS],
    offsets: [i32; VNNI_MAX_UNITS],
    /// No scale shifts left: the vector requantization applies.
    right_only: bool,
}

#[cfg(target_arch = "x86_64")]
impl DecodedScales {
    /// `None` where the layer has more than [`VNNI_MAX_UNITS`] output channels.
    fn new<S: Scale>(requantization: &Requantization<'_, S>, offsets: &[i32]) -> Option<Self> {
        let per_channel = requantization.per_channel;
        if per_channel.len() > VNNI_MAX_UNITS {
            return None;
        }
        let mut scales = Self {
            multipliers: [0; VNNI_MAX_UNITS],
            rights: [0; VNNI_MAX_UNITS],
            offsets: [0; VNNI_MAX_UNITS],
            right_only: true,
        };
        let slots = scales
            .multipliers
            .iter_mut()
            .zip(&mut scales.rights)
            .zip(&mut scales.offsets);
        for (((m, r), o), (&scale, &offset)) in slots.zip(per_channel.iter().zip(offsets)) {
            let scale = scale.to_requantize();
            (*m, *r, *o) = (scale.multiplier(), -scale.shift(), offset);
            scales.right_only &= scale.shift() <= 0;
        }
        Some(scales)
    }
}

/// Most kernel rows (`channels x kernel`) of a window the AVX2 and VNNI loops take.
#[cfg(target_arch = "x86_64")]
const MAX_WINDOW_ROWS: usize = 1024;

/// A padded copy of the input, and where each kernel row of the window at `(0, 0)` starts
/// in it (in the weights' order: input channel, kernel row); the window at `(y, x)` starts
/// `y * columns + x` further.
#[cfg(target_arch = "x86_64")]
struct Padded<'a, T> {
    values: &'a [T],
    columns: usize,
    kernel: usize,
    starts: &'a [usize],
}

#[cfg(target_arch = "x86_64")]
impl<T: Copy> Padded<'_, T> {
    /// Copies the window at `(y, x)` into `patch`.
    #[inline(always)]
    fn fill(&self, (y, x): (usize, usize), patch: &mut [T]) {
        let base = y * self.columns + x;
        match self.kernel {
            3 => self.fill_rows::<3>(base, patch),
            5 => self.fill_rows::<5>(base, patch),
            7 => self.fill_rows::<7>(base, patch),
            9 => self.fill_rows::<9>(base, patch),
            k => {
                for (tap_row, &start) in patch.chunks_exact_mut(k.max(1)).zip(self.starts) {
                    if let Some(source) = self.values.get(base + start..base + start + k) {
                        tap_row.copy_from_slice(source);
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn fill_rows<const K: usize>(&self, base: usize, patch: &mut [T]) {
        let (tap_rows, _) = patch.as_chunks_mut::<K>();
        for (tap_row, &start) in tap_rows.iter_mut().zip(self.starts) {
            if let Some(source) = self
                .values
                .get(base + start..)
                .and_then(|s| s.first_chunk::<K>())
            {
                *tap_row = *source;
            }
        }
    }
}

/// Fills `starts` for a padded input of `(rows, columns)` per channel; `None` where the
/// window has more kernel rows than `starts` holds.
#[cfg(target_arch = "x86_64")]
fn window_starts(
    starts: &mut [usize; MAX_WINDOW_ROWS],
    channels: usize,
    kernel: usize,
    (rows, columns): (usize, usize),
) -> Option<&[usize]> {
    let starts = starts.get_mut(..channels.checked_mul(kernel)?)?;
    let all = (0..channels).flat_map(|ic| (0..kernel).map(move |ky| (ic * rows + ky) * columns));
    for (start, value) in starts.iter_mut().zip(all) {
        *start = value;
    }
    Some(starts)
}

/// Most output channels the AVX-512 VNNI loop takes (it keeps a correction per channel).
#[cfg(target_arch = "x86_64")]
const VNNI_MAX_UNITS: usize = 1024;

/// Largest padded input, in values, the AVX2 small-window loop widens onto the stack
/// (16 KiB): a 3-channel 64x64 image with a 3x3 kernel fits.
#[cfg(target_arch = "x86_64")]
const SMALL_PADDED_MAX: usize = 8 * 1024;

/// Most output channels the AVX2 small-window loop takes.
#[cfg(target_arch = "x86_64")]
const SMALL_MAX_UNITS: usize = 64;

/// Windows of fewer values than this (`channels x kernel x kernel`) run along input rows
/// instead of through a patch: their dot products would be too short to pay for the copy.
pub const PATCH_MIN_TAPS: usize = 64;

/// One int8 convolution whose lengths [`check`] accepted.
struct ConvI8<'a, B, S> {
    input: &'a [i8],
    shape: Shape,
    zero_point: i16,
    weights: &'a [i8],
    bias: &'a [B],
    kernel: usize,
    requantization: &'a Requantization<'a, S>,
}

impl<B: Int32, S: Scale> ConvI8<'_, B, S> {
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_avx2(
        &self,
        avx2: x86::Avx2,
        vnni: Option<x86::Vnni>,
        patch: &mut [[u8; 2]],
        output: &mut [i8],
    ) {
        if self.run_small_avx2(output) {
            return;
        }
        if let Some(vnni) = vnni
            && self.run_vnni(vnni, patch.as_flattened_mut(), output)
        {
            return;
        }
        let k = self.kernel;
        let mut buffer = [[0u8; 2]; PADDED_MAX];
        let widen = |v: i8| (v as i16 - self.zero_point).to_le_bytes();
        let Some((padded, (rows, columns))) = self.pad_input(&mut buffer, [0; 2], widen) else {
            return self.run(avx2, patch, output);
        };
        let mut starts = [0; MAX_WINDOW_ROWS];
        let Some(starts) = window_starts(&mut starts, self.shape.channels, k, (rows, columns))
        else {
            return self.run(avx2, patch, output);
        };
        let padded = Padded {
            values: padded,
            columns,
            kernel: k,
            starts,
        };
        let fill = |at, patch: &mut [[u8; 2]]| padded.fill(at, patch);
        self.run_patches(avx2, patch, output, fill)
    }

    /// Large windows with AVX-512 VNNI, which multiplies unsigned by signed bytes: the
    /// input is shifted to `x + 128` (the padding to `zero point + 128`, so that it adds
    /// nothing once corrected), patches are bytes, and each output channel's sum takes off
    /// `(128 + zero point) x (sum of its weights)`, computed once. The sums are the same
    /// integers as the other loops'. Returns false, having done nothing, for small windows,
    /// more than [`VNNI_MAX_UNITS`] output channels, or an input too large to pad on the
    /// stack.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_vnni(&self, vnni: x86::Vnni, patch: &mut [u8], output: &mut [i8]) -> bool {
        let Shape {
            channels,
            height,
            width,
        } = self.shape;
        let k = self.kernel;
        let window = channels * k * k;
        let units = self.bias.len();
        if window < PATCH_MIN_TAPS || units > VNNI_MAX_UNITS {
            return false;
        }
        let Some((first, second)) = patch.get_mut(..2 * window).map(|p| p.split_at_mut(window))
        else {
            return false;
        };
        // Bytes x + 128; the padding zero point + 128, so that it adds nothing once corrected.
        let shift = |v: i8| (v as u8) ^ 0x80;
        let zero_point = self.zero_point as i8;
        let mut buffer = [0u8; 2 * PADDED_MAX];
        let Some((padded, (rows, columns))) = self.pad_input(&mut buffer, shift(zero_point), shift)
        else {
            return false;
        };
        let mut offsets = [0i32; VNNI_MAX_UNITS];
        let correction = 128 + zero_point as i32;
        for ((offset, filter), bias) in offsets
            .iter_mut()
            .zip(self.weights.chunks_exact(window))
            .zip(self.bias)
        {
            let weights = filter
                .iter()
                .fold(0i32, |sum, &w| sum.wrapping_add(w as i32));
            *offset = bias.to_i32().wrapping_sub(correction.wrapping_mul(weights));
        }
        let Some(scales) = DecodedScales::new(self.requantization, &offsets) else {
            return false;
        };
        let groups = self.weights.chunks_exact(window * UNITS);
        let last = groups.remainder().chunks_exact(window);
        let mut starts = [0; MAX_WINDOW_ROWS];
        let Some(starts) = window_starts(&mut starts, channels, k, (rows, columns)) else {
            return false;
        };
        let padded = Padded {
            values: padded,
            columns,
            kernel: k,
            starts,
        };
        let fill = |at, patch: &mut [u8]| padded.fill(at, patch);
        // Two positions of a row at a time share each load of the filters; every channel's
        // slot is written before it is read.
        let mut sums = [[0i32; VNNI_MAX_UNITS]; 2];
        for y in 0..height {
            for x in (0..width).step_by(2) {
                let pair = x + 1 < width;
                fill((y, x), first);
                if pair {
                    fill((y, x + 1), second);
                }
                let patches = [&*first, if pair { &*second } else { &*first }];
                let [first_sums, second_sums] = &mut sums;
                let mut slots = first_sums.iter_mut().zip(second_sums.iter_mut());
                let mut keep = |[a, b]: [i32; 2]| {
                    if let Some((first, second)) = slots.next() {
                        (*first, *second) = (a, b);
                    }
                };
                for group in groups.clone() {
                    let mut filters = group.chunks_exact(window);
                    if let (Some(f0), Some(f1), Some(f2), Some(f3)) = (
                        filters.next(),
                        filters.next(),
                        filters.next(),
                        filters.next(),
                    ) {
                        let [s0, s1] = vnni.dots(patches, [f0, f1, f2, f3]);
                        for (a, b) in s0.into_iter().zip(s1) {
                            keep([a, b]);
                        }
                    }
                }
                for filter in last.clone() {
                    let [[a], [b]] = vnni.dots(patches, [filter]);
                    keep([a, b]);
                }
                let at = y * width + x;
                for (position, sums) in sums.iter().enumerate().take(1 + pair as usize) {
                    self.requantize_position(
                        &sums[..units.min(VNNI_MAX_UNITS)],
                        &scales,
                        output,
                        at + position,
                    );
                }
            }
        }
        true
    }

    /// Requantizes the sums of all output channels at one position (with the offsets of
    /// `scales` added) into `output`, eight channels at a time where the scales allow.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn requantize_position(
        &self,
        sums: &[i32],
        scales: &DecodedScales,
        output: &mut [i8],
        at: usize,
    ) {
        use core::arch::x86_64::*;
        let plane = self.shape.height * self.shape.width;
        let load = |values: &[i32; 8]| {
            // SAFETY: 8 int32 values, 32 bytes; the load takes any alignment.
            unsafe { _mm256_loadu_si256(values.as_ptr().cast()) }
        };
        let zero_point = self.requantization.zero_point;
        let clamp = (
            _mm256_set1_epi32(self.requantization.min as i32 - zero_point),
            _mm256_set1_epi32(self.requantization.max as i32 - zero_point),
            _mm256_set1_epi32(zero_point),
        );
        let mut planes = output.chunks_exact_mut(plane.max(1));
        let (blocks, rest) = sums.as_chunks::<8>();
        let mut done = 0;
        if scales.right_only {
            let parts = scales
                .multipliers
                .as_chunks::<8>()
                .0
                .iter()
                .zip(scales.rights.as_chunks::<8>().0)
                .zip(scales.offsets.as_chunks::<8>().0);
            for (block, ((m, r), o)) in blocks.iter().zip(parts) {
                let value = x86::requantize8(
                    _mm256_add_epi32(load(block), load(o)),
                    load(m),
                    load(r),
                    clamp,
                );
                let mut values = [0i32; 8];
                // SAFETY: `values` is 8 int32 values, 32 bytes; the store takes any alignment.
                unsafe { _mm256_storeu_si256(values.as_mut_ptr().cast(), value) };
                // The values first: `zip` stops on them without taking another plane.
                for (value, out_plane) in values.into_iter().zip(planes.by_ref()) {
                    if let Some(out) = out_plane.get_mut(at) {
                        *out = value as i8;
                    }
                }
            }
            done = blocks.len() * 8;
        }
        let rest = if scales.right_only { rest } else { sums };
        let parts = scales
            .multipliers
            .iter()
            .zip(&scales.rights)
            .zip(&scales.offsets)
            .skip(done);
        for ((out_plane, &sum), ((&m, &r), &o)) in planes.zip(rest).zip(parts) {
            if let Some(out) = out_plane.get_mut(at) {
                let scale = crate::Requantize::clamped(m, -r);
                *out = self
                    .requantization
                    .output_decoded(scale, sum.wrapping_add(o));
            }
        }
    }

    /// The input as `value(x)`, with the padding as rows and columns of `padding`, in
    /// `buffer`; with the padded rows and columns per channel. `None` where it does not fit.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn pad_input<'b, T: Copy>(
        &self,
        buffer: &'b mut [T],
        padding: T,
        value: impl Fn(i8) -> T,
    ) -> Option<PaddedInput<'b, T>> {
        let Shape {
            channels,
            height,
            width,
        } = self.shape;
        let k = self.kernel;
        let (rows, columns) = (height + k - 1, width + k - 1);
        let padded = channels
            .checked_mul(rows)
            .and_then(|n| n.checked_mul(columns))
            .and_then(|n| buffer.get_mut(..n))?;
        padded.fill(padding);
        let (before, _) = same_padding(k);
        let plane = height * width;
        for (padded, in_plane) in padded
            .chunks_exact_mut(rows * columns)
            .zip(self.input.chunks_exact(plane.max(1)))
        {
            for (padded_row, in_row) in padded
                .chunks_exact_mut(columns)
                .skip(before)
                .zip(in_plane.chunks_exact(width.max(1)))
            {
                let inside = padded_row.iter_mut().skip(before);
                for (p, &v) in inside.zip(in_row) {
                    *p = value(v);
                }
            }
        }
        Some((padded, (rows, columns)))
    }

    /// Small windows on AVX2: the output channels of one position together, eight per
    /// vector, from weights regrouped on the stack in pairs of taps (`vpmaddwd` multiplies
    /// a pair of patch values broadcast to every lane by each channel's pair of weights),
    /// requantized eight at a time. Returns false, having done nothing, where the layer
    /// does not fit this loop: windows of [`PATCH_MIN_TAPS`] or more, output channels not
    /// a multiple of 8 or over 64, or a scale that shifts left.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn run_small_avx2(&self, output: &mut [i8]) -> bool {
        let window = self.shape.channels * self.kernel * self.kernel;
        let units = self.bias.len();
        let shifts_left = self
            .requantization
            .per_channel
            .iter()
            .any(|s| s.to_requantize().shift() > 0);
        if window >= PATCH_MIN_TAPS
            || units == 0
            || !units.is_multiple_of(8)
            || units > SMALL_MAX_UNITS
            || shifts_left
        {
            return false;
        }
        if units.is_multiple_of(32) {
            self.small_avx2::<4>(output)
        } else {
            self.small_avx2::<1>(output)
        }
    }

    /// [`Self::run_small_avx2`], `V` vectors (`8 V` output channels) per pass.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    fn small_avx2<const V: usize>(&self, output: &mut [i8]) -> bool {
        use core::arch::x86_64::*;
        const MAX_PAIRS: usize = PATCH_MIN_TAPS / 2;
        let Shape { height, width, .. } = self.shape;
        let plane = height * width;
        let window = self.shape.channels * self.kernel * self.kernel;
        let units = self.bias.len();
        let pairs = window.div_ceil(2);
        // pairs_of[p * units + oc]: weights 2p and 2p + 1 of channel oc, as two int16 halves.
        let mut pairs_of = [0i32; MAX_PAIRS * SMALL_MAX_UNITS];
        for (oc, filter) in self.weights.chunks_exact(window).enumerate() {
            for (p, pair) in filter.chunks(2).enumerate() {
                let low = pair.first().map_or(0, |&w| w as i16 as u16 as u32);
                let high = pair.get(1).map_or(0, |&w| w as i16 as u16 as u32);
                if let Some(slot) = pairs_of.get_mut(p * units + oc) {
                    *slot = (low | high << 16) as i32;
                }
            }
        }
        let pairs_of = pairs_of.get(..pairs * units).unwrap_or(&[]);
        let mut multipliers = [0i32; SMALL_MAX_UNITS];
        let mut rights = [0i32; SMALL_MAX_UNITS];
        let mut biases = [0i32; SMALL_MAX_UNITS];
        let parts = multipliers.iter_mut().zip(&mut rights).zip(&mut biases);
        for (((m, r), b), (&s, bias)) in
            parts.zip(self.requantization.per_channel.iter().zip(self.bias))
        {
            let scale = s.to_requantize();
            (*m, *r, *b) = (scale.multiplier(), -scale.shift(), bias.to_i32());
        }
        let zero_point = self.requantization.zero_point;
        let clamp = (
            _mm256_set1_epi32(self.requantization.min as i32 - zero_point),
            _mm256_set1_epi32(self.requantization.max as i32 - zero_point),
            _mm256_set1_epi32(zero_point),
        );
        let load = |values: &[i32; 8]| {
            // SAFETY: 8 int32 values, 32 bytes; the load takes any alignment.
            unsafe { _mm256_loadu_si256(values.as_ptr().cast()) }
        };
        let mut buffer = [[0u8; 2]; SMALL_PADDED_MAX];
        let widen = |v: i8| (v as i16 - self.zero_point).to_le_bytes();
        let Some((padded, (rows, columns))) = self.pad_input(&mut buffer, [0; 2], widen) else {
            return false;
        };
        // Where each tap of the window at (0, 0) sits in the padded input; the window at
        // (y, x) is y * columns + x further. Odd windows end with a tap of weight 0.
        let mut offsets = [0usize; PATCH_MIN_TAPS];
        let kernel = self.kernel;
        let taps = (0..self.shape.channels).flat_map(|ic| {
            (0..kernel)
                .flat_map(move |ky| (0..kernel).map(move |kx| (ic * rows + ky) * columns + kx))
        });
        for (offset, tap) in offsets.iter_mut().zip(taps) {
            *offset = tap;
        }
        let (offset_pairs, _) = offsets.as_chunks::<2>();
        let offset_pairs = offset_pairs.get(..pairs).unwrap_or(&[]);
        let value = |at: usize| {
            padded
                .get(at)
                .map_or(0, |v| i16::from_le_bytes(*v) as u16 as u32)
        };
        let mut outputs = [[0i32; 8]; V];
        let (multipliers, _) = multipliers.as_chunks::<8>();
        let (rights, _) = rights.as_chunks::<8>();
        let (biases, _) = biases.as_chunks::<8>();
        for pass in 0..units / (8 * V) {
            let first = pass * 8 * V;
            for y in 0..height {
                for x in 0..width {
                    let base = y * columns + x;
                    let mut sums = [_mm256_setzero_si256(); V];
                    for (p, (row, &[t0, t1])) in
                        pairs_of.chunks_exact(units).zip(offset_pairs).enumerate()
                    {
                        // An odd window's last pair has no second tap: its weight is 0.
                        let high = if 2 * p + 1 < window {
                            value(base + t1)
                        } else {
                            0
                        };
                        let both = _mm256_set1_epi32((value(base + t0) | high << 16) as i32);
                        let Some(row) = row.get(first..first + 8 * V) else {
                            continue;
                        };
                        let (row, _) = row.as_chunks::<8>();
                        let Some(row) = row.first_chunk::<V>() else {
                            continue;
                        };
                        for (sum, w) in sums.iter_mut().zip(row) {
                            *sum = _mm256_add_epi32(*sum, _mm256_madd_epi16(both, load(w)));
                        }
                    }
                    let blocks = (first / 8..).zip(sums).zip(&mut outputs);
                    for ((block, sum), out) in blocks {
                        if let (Some(m), Some(r), Some(b)) =
                            (multipliers.get(block), rights.get(block), biases.get(block))
                        {
                            let sum = _mm256_add_epi32(sum, load(b));
                            let value = x86::requantize8(sum, load(m), load(r), clamp);
                            // SAFETY: `out` is 8 int32 values, 32 bytes; the store takes any alignment.
                            unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), value) };
                        }
                    }
                    let at = y * width + x;
                    let planes = output.chunks_exact_mut(plane).skip(first);
                    for (out_plane, &value) in planes.zip(outputs.as_flattened()) {
                        if let Some(out) = out_plane.get_mut(at) {
                            *out = value as i8;
                        }
                    }
                }
            }
        }
        true
    }

    #[inline(always)]
    fn run(&self, dots: impl Dots, patch: &mut [[u8; 2]], output: &mut [i8]) {
        let Shape {
            channels,
            height,
            width,
        } = self.shape;
        let plane = height * width;
        let window = channels * self.kernel * self.kernel;
        if plane == 0 || window == 0 {
            return;
        }
        let scales = self.requantization.per_channel;
        if window < PATCH_MIN_TAPS {
            let zero_point = self.zero_point;
            convolve(
                self.input,
                self.shape,
                self.weights,
                self.kernel,
                output,
                |oc| self.bias.get(oc).map_or(0, |b| b.to_i32()),
                // |x - zero point| <= 255 and |w| <= 128: the product fits in an i16.
                |sum, x: i8, w: i8| sum.wrapping_add(((x as i16 - zero_point) * w as i16) as i32),
                |oc, sum| match scales.get(oc) {
                    Some(&scale) => self.requantization.output(scale, sum),
                    None => 0,
                },
            );
            return;
        }
        let (before, _) = same_padding(self.kernel);
        self.run_patches(dots, patch, output, |at, patch| {
            fill_patch(
                self.input,
                self.shape,
                self.zero_point,
                self.kernel,
                before,
                at,
                patch,
            )
        });
    }

    /// The patch loop: `fill` copies the window of an output position into the patch.
    #[inline(always)]
    fn run_patches(
        &self,
        dots: impl Dots,
        patch: &mut [[u8; 2]],
        output: &mut [i8],
        fill: impl Fn((usize, usize), &mut [[u8; 2]]),
    ) {
        let Shape {
            channels,
            height,
            width,
        } = self.shape;
        let plane = height * width;
        let window = channels * self.kernel * self.kernel;
        let scales = self.requantization.per_channel;
        let groups = self.weights.chunks_exact(window * UNITS);
        let last = groups.remainder().chunks_exact(window);
        for y in 0..height {
            for x in 0..width {
                let at = y * width + x;
                fill((y, x), patch);
                let mut units = self
                    .bias
                    .iter()
                    .zip(scales)
                    .zip(output.chunks_exact_mut(plane));
                let mut put = |sum: i32| {
                    if let Some(((bias, &scale), out_plane)) = units.next()
                        && let Some(out) = out_plane.get_mut(at)
                    {
                        *out = self
                            .requantization
                            .output(scale, sum.wrapping_add(bias.to_i32()));
                    }
                };
                for group in groups.clone() {
                    let mut filters = group.chunks_exact(window);
                    if let (Some(f0), Some(f1), Some(f2), Some(f3)) = (
                        filters.next(),
                        filters.next(),
                        filters.next(),
                        filters.next(),
                    ) {
                        dots.dot4(patch, [f0, f1, f2, f3])
                            .into_iter()
                            .for_each(&mut put);
                    }
                }
                for filter in last.clone() {
                    put(dots.dot(patch, filter));
                }
            }
        }
    }
}

/// Copies the window of output position `(y, x)` into `patch`, in the weights' order
/// (input channel, kernel row, kernel column), as `input - zero_point`, with 0 for padding.
fn fill_patch(
    input: &[i8],
    shape: Shape,
    zero_point: i16,
    kernel: usize,
    before: usize,
    (y, x): (usize, usize),
    patch: &mut [[u8; 2]],
) {
    let Shape { height, width, .. } = shape;
    let plane = height * width;
    let columns = window(x, kernel, before, width);
    let rows = window(y, kernel, before, height);
    let mut taps = patch.chunks_exact_mut(kernel);
    for in_plane in input.chunks_exact(plane) {
        for ky in 0..kernel {
            let Some(taps_row) = taps.next() else {
                return;
            };
            taps_row.fill([0; 2]);
            if !rows.contains(&ky) {
                continue;
            }
            let iy = y + ky - before;
            let row = &in_plane[iy * width..(iy + 1) * width];
            let first = x + columns.start - before;
            let values = &row[first..first + columns.len()];
            for (tap, &value) in taps_row[columns.clone()].iter_mut().zip(values) {
                *tap = (value as i16 - zero_point).to_le_bytes();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Requantize;

    const SHAPE: Shape = Shape {
        channels: 2,
        height: 4,
        width: 5,
    };

    /// Direct definition: pad explicitly, then slide the kernel.
    fn reference(
        input: &[f32],
        shape: Shape,
        weights: &[f32],
        bias: &[f32],
        k: usize,
    ) -> [f32; 64] {
        let (before, _) = same_padding(k);
        let mut out = [0.0; 64];
        for oc in 0..bias.len() {
            for y in 0..shape.height as isize {
                for x in 0..shape.width as isize {
                    let mut sum = bias[oc];
                    for ic in 0..shape.channels {
                        for ky in 0..k as isize {
                            for kx in 0..k as isize {
                                let iy = y + ky - before as isize;
                                let ix = x + kx - before as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= shape.height as isize
                                    || ix >= shape.width as isize
                                {
                                    continue;
                                }
                                let v = input[ic * 20 + (iy * 5 + ix) as usize];
                                let w = weights[((oc * shape.channels + ic) * k + ky as usize) * k
                                    + kx as usize];
                                sum += v * w;
                            }
                        }
                    }
                    out[oc * 20 + (y * 5 + x) as usize] = sum;
                }
            }
        }
        out
    }

    #[test]
    fn odd_and_even_kernels_match_the_definition() {
        let input: [f32; 40] = core::array::from_fn(|i| (i as f32 * 0.37).sin());
        for k in [1usize, 2, 3, 4, 5] {
            let weights: [f32; 3 * 2 * 25] = core::array::from_fn(|i| (i as f32 * 0.11).cos());
            let weights = &weights[..3 * 2 * k * k];
            let bias = [0.5, -0.25, 0.0];
            let mut out = [0.0f32; 60];
            conv2d_f32(&input, SHAPE, weights, &bias, k, false, &mut out).unwrap();
            let expected = reference(&input, SHAPE, weights, &bias, k);
            for (a, b) in out.iter().zip(&expected) {
                assert!((a - b).abs() < 1e-5, "kernel {k}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn even_kernels_pad_after() {
        assert_eq!(same_padding(2), (0, 1));
        assert_eq!(same_padding(6), (2, 3));
        // A 2x2 kernel picking its bottom-right tap reads the next row and column, and the
        // padding (zero) beyond the last ones.
        let input = [1.0f32, 2.0, 3.0, 4.0];
        let shape = Shape {
            channels: 1,
            height: 2,
            width: 2,
        };
        let mut out = [0.0f32; 4];
        conv2d_f32(
            &input,
            shape,
            &[0.0, 0.0, 0.0, 1.0],
            &[0.0],
            2,
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [4.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn int8_matches_an_integer_reference() {
        let input: [i8; 40] = core::array::from_fn(|i| (i as i32 * 37 % 256 - 128) as i8);
        let weights: [i8; 3 * 2 * 9] = core::array::from_fn(|i| (i as i32 * 53 % 255 - 127) as i8);
        let bias = [100, -2000, 7];
        let scales = [
            Requantize::from_scale(0.002).unwrap(),
            Requantize::from_scale(0.0031).unwrap(),
            Requantize::from_scale(0.0007).unwrap(),
        ];
        let requantization = Requantization {
            per_channel: &scales,
            zero_point: -5,
            min: -5,
            max: 127,
        };
        let mut out = [0i8; 60];
        conv2d_i8(
            &input,
            SHAPE,
            3,
            &weights,
            &bias,
            3,
            &requantization,
            &mut [0; 2 * 2 * 9],
            &mut out,
        )
        .unwrap();
        let real: [f32; 40] = core::array::from_fn(|i| (input[i] as i32 - 3) as f32);
        let real_weights: [f32; 54] = core::array::from_fn(|i| weights[i] as f32);
        let sums = reference(&real, SHAPE, &real_weights, &[100.0, -2000.0, 7.0], 3);
        for (i, &q) in out.iter().enumerate() {
            let accumulator = sums[i] as i32;
            let expected = (scales[i / 20].apply(accumulator) - 5).clamp(-5, 127) as i8;
            assert_eq!(q, expected, "output {i}");
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut out = [0.0f32; 60];
        let weights = [0.0f32; 54];
        assert!(matches!(
            conv2d_f32(&[0.0; 39], SHAPE, &weights, &[0.0; 3], 3, false, &mut out),
            Err(Error::Length {
                what: "convolution input",
                ..
            })
        ));
        assert!(
            conv2d_f32(
                &[0.0; 40],
                SHAPE,
                &weights[..53],
                &[0.0; 3],
                3,
                false,
                &mut out
            )
            .is_err()
        );
        assert!(
            conv2d_f32(
                &[0.0; 40],
                SHAPE,
                &weights,
                &[0.0; 3],
                3,
                false,
                &mut out[..59]
            )
            .is_err()
        );
        assert!(conv2d_f32(&[0.0; 40], SHAPE, &weights, &[0.0; 3], 0, false, &mut out).is_err());
        let huge = Shape {
            channels: usize::MAX,
            height: 2,
            width: 2,
        };
        assert!(matches!(
            conv2d_f32(&[0.0; 4], huge, &weights, &[0.0; 3], 3, false, &mut out),
            Err(Error::Overflow { .. })
        ));
    }
}
