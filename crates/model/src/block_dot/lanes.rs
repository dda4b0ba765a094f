//! Q4_0 and Q8_0 rows sixteen at a time, a row in each 32-bit lane, as llama.cpp's repacked
//! Q4_0 lays them out for AVX-512: one `vpdpbusd` meets a quad of all sixteen rows, each block's
//! products add up in integers in the lanes, and one conversion, scale product and addition a
//! block serves the sixteen rows (`int_dot::add_block`), where a row at a time took one a quad.
//!
//! AVX2 CPUs read the same groups as two halves of eight rows (`block_dot_avx2/lanes.rs`).
//!
//! The layout, made once when the weight is loaded ([`interleave`]): each group of 16 rows, block
//! by block, the 16 rows' `d` (32 bytes), then for each run `k` each row's bytes `4k..4k + 4` of
//! its block's values (64 bytes): Q4_0's 16 bytes of nibbles in 4 runs (288 bytes a block; a run
//! holds quad `k` of every row in its low nibbles and quad `k + 4` in its high ones), Q8_0's 32
//! signed bytes in 8 (544 bytes; run `k` quad `k`). The group's bytes sit where its rows' were.
//! Rows past the last whole group stay as the file has them.
//!
//! Each block's sum is exact in 32 bits (`256 (q . high - offset sum of high) + low . signed`, `x =
//! 256 high + low` as `int_dot.rs` splits it), so the bits are every path's: the tests hold them
//! to the unpacked rows'.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::gguf_quants::GgmlType;
use crate::int_dot::{BLOCK, ByteHalves, QUAD, QuantizedRows};

/// Rows a group holds: one a 32-bit lane of a 512-bit register.
pub(crate) const ROWS: usize = 16;

/// A type whose rows a group lays out in lanes.
pub(crate) trait InLanes {
    /// Bytes of a block: `d` (f16), then its 32 values' bytes.
    const BLOCK_BYTES: usize;
    /// Whether a byte holds two values (Q4_0's nibbles: quads `k` and `k + 4` in run `k`) or one
    /// signed value (Q8_0's, read unsigned plus 128 against the activations' high bytes).
    const NIBBLES: bool;
    /// Runs of sixteen rows' four bytes a group's block holds.
    const RUNS: usize = (Self::BLOCK_BYTES - 2) / QUAD;
    /// Bytes of a group's block: 16 rows' `d`, then the runs.
    const GROUP_BLOCK: usize = ROWS * Self::BLOCK_BYTES;
    /// How far ahead of the block being read the group's next bytes are asked for: the CPU's own
    /// prefetching left a 4,864-wide group waiting on memory (docs/benchmarks.md).
    const PREFETCH_BYTES: usize = 16 * Self::GROUP_BLOCK;
}

pub(crate) struct Q4_0;
impl InLanes for Q4_0 {
    const BLOCK_BYTES: usize = 18;
    const NIBBLES: bool = true;
}

pub(crate) struct Q8_0;
impl InLanes for Q8_0 {
    const BLOCK_BYTES: usize = 34;
    const NIBBLES: bool = false;
}

/// Where a group's block keeps row `lane`'s bytes `4k..4k + 4` of values.
pub(crate) const fn run_at(lane: usize, k: usize) -> usize {
    2 * ROWS + 64 * k + QUAD * lane
}

/// Of `rows` rows, those in whole groups (the first ones).
pub(crate) fn grouped(rows: usize) -> usize {
    rows / ROWS * ROWS
}

/// Rows of a one-scale `ggml_type` (`int_dot::one_scale`), `row_bytes` each, in the file's layout, laid out
/// in place in groups of 16.
pub(crate) fn interleave(ggml_type: GgmlType, bytes: &mut [u8], row_bytes: usize) {
    match ggml_type {
        GgmlType::Q4_0 => interleave_of::<Q4_0>(bytes, row_bytes),
        GgmlType::Q8_0 => interleave_of::<Q8_0>(bytes, row_bytes),
        other => unreachable!("{} is never laid out in lanes", other.name()),
    }
}

fn interleave_of<T: InLanes>(bytes: &mut [u8], row_bytes: usize) {
    let mut plain = vec![0u8; ROWS * row_bytes];
    for group in bytes.chunks_exact_mut(ROWS * row_bytes) {
        plain.copy_from_slice(group);
        for (lane, row) in plain.chunks_exact(row_bytes).enumerate() {
            for (block, to) in row.chunks_exact(T::BLOCK_BYTES).zip(group.chunks_exact_mut(T::GROUP_BLOCK)) {
                to[2 * lane..][..2].copy_from_slice(&block[..2]);
                for k in 0..T::RUNS {
                    to[run_at(lane, k)..][..QUAD].copy_from_slice(&block[2 + QUAD * k..][..QUAD]);
                }
            }
        }
    }
}

/// Rows `start..start + len` of `bytes` (laid out by [`interleave`]) in the file's layout: for
/// the widened tiles of a prefill's products, a copy of every row each time.
pub(crate) fn plain_rows(ggml_type: GgmlType, bytes: &[u8], row_bytes: usize, start: usize, len: usize) -> Vec<u8> {
    match ggml_type {
        GgmlType::Q4_0 => plain_rows_of::<Q4_0>(bytes, row_bytes, start, len),
        GgmlType::Q8_0 => plain_rows_of::<Q8_0>(bytes, row_bytes, start, len),
        other => unreachable!("{} is never laid out in lanes", other.name()),
    }
}

fn plain_rows_of<T: InLanes>(bytes: &[u8], row_bytes: usize, start: usize, len: usize) -> Vec<u8> {
    let whole = grouped(bytes.len() / row_bytes.max(1));
    let mut out = vec![0u8; len * row_bytes];
    for (r, row) in (start..).zip(out.chunks_exact_mut(row_bytes)) {
        if r >= whole {
            row.copy_from_slice(&bytes[r * row_bytes..][..row_bytes]);
            continue;
        }
        let (group, lane) = (&bytes[r / ROWS * ROWS * row_bytes..][..ROWS * row_bytes], r % ROWS);
        for (block, from) in row.chunks_exact_mut(T::BLOCK_BYTES).zip(group.chunks_exact(T::GROUP_BLOCK)) {
            block[..2].copy_from_slice(&from[2 * lane..][..2]);
            for k in 0..T::RUNS {
                block[2 + QUAD * k..][..QUAD].copy_from_slice(&from[run_at(lane, k)..][..QUAD]);
            }
        }
    }
    out
}

/// Whole groups `groups` of `ggml_type` (laid out by [`interleave`], `row_bytes` a row) dotted
/// with each row of `xs` into `out` `[rows, n]`. `block_dot::available` said yes.
pub(crate) fn dot_groups(ggml_type: GgmlType, groups: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    match ggml_type {
        GgmlType::Q4_0 => dot_groups_of::<Q4_0>(groups, row_bytes, xs, out),
        GgmlType::Q8_0 => dot_groups_of::<Q8_0>(groups, row_bytes, xs, out),
        other => unreachable!("{} is never laid out in lanes", other.name()),
    }
}

fn dot_groups_of<T: InLanes>(groups: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    assert!(super::available(), "AVX-512 BW/VL/VNNI and F16C");
    let bytes = xs.bytes();
    assert!(bytes.high.len() == xs.q.len() && bytes.low.len() == xs.q.len() && offsets::<T>(bytes).len() == xs.scales.len());
    each_group::<T>(groups, row_bytes, xs, out.len(), |at| {
        // SAFETY: `available` found the features; `each_group` checked the group and the rows of `x`.
        unsafe {
            match at.n - at.first_x {
                1 => rows_of_x::<T, 1>(bytes, &xs.scales, out, at),
                2 | 3 => rows_of_x::<T, 2>(bytes, &xs.scales, out, at),
                _ => rows_of_x::<T, 4>(bytes, &xs.scales, out, at),
            }
        }
    });
}

/// Each group of `groups` (whole groups of `T`, `row_bytes` a row) against the rows of `xs`, a run
/// of them at a time (`kernel` says how many it took), the shapes checked once for every kernel:
/// `out` (`out_len` values) is `[rows, n]`.
pub(crate) fn each_group<T: InLanes>(
    groups: &[u8],
    row_bytes: usize,
    xs: &QuantizedRows,
    out_len: usize,
    mut kernel: impl FnMut(Rows) -> usize,
) {
    let blocks = row_bytes / T::BLOCK_BYTES;
    let (cols, count) = (blocks * BLOCK, groups.len() / row_bytes.max(1));
    let n = xs.q.len() / cols.max(1);
    assert!(row_bytes == blocks * T::BLOCK_BYTES && count.is_multiple_of(ROWS) && groups.len() == count * row_bytes);
    assert!(xs.q.len() == n * cols && out_len == count * n && xs.scales.len() * BLOCK == xs.q.len());
    for (g, group) in groups.chunks_exact(ROWS * row_bytes).enumerate() {
        let mut j = 0;
        while j < n {
            j += kernel(Rows { group, blocks, first_x: j, out_first: g * ROWS * n, n });
        }
    }
}

/// Each block's sum of the activations' high bytes times `T`'s offset, negated: where its sum starts.
fn offsets<T: InLanes>(bytes: &ByteHalves) -> &[i32] {
    if T::NIBBLES { &bytes.minus_eight_block_sums } else { &bytes.minus_128_block_sums }
}

/// A group of `W` and the rows of `x` it meets.
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a> {
    pub group: &'a [u8],
    pub blocks: usize,
    pub first_x: usize,
    /// Where the group's first row's values start in `out`.
    pub out_first: usize,
    /// Rows of `x` in all: `out`'s width.
    pub n: usize,
}

/// What a row of `x` brings to block `b`: its high and low bytes, the offset its sum starts at, and
/// its scale.
#[derive(Clone, Copy)]
struct XBlock {
    high: *const i8,
    low: *const u8,
    offset: i32,
    scale: f32,
}

impl XBlock {
    /// Block `b` of row `j` of `x`, against weights of type `T`.
    ///
    /// # Safety
    /// The block is inside the rows of `bytes`.
    unsafe fn at<T: InLanes>(bytes: &ByteHalves, scales: &[f32], cols: usize, j: usize, b: usize) -> Self {
        let x = j * cols + b * BLOCK;
        // SAFETY: the caller's block.
        unsafe {
            Self {
                high: bytes.high.as_ptr().add(x),
                low: bytes.low.as_ptr().add(x),
                offset: *offsets::<T>(bytes).get_unchecked(x / BLOCK),
                scale: *scales.get_unchecked(x / BLOCK),
            }
        }
    }

    /// Quad `quad`'s four high bytes in every lane.
    ///
    /// # Safety
    /// The quad is inside the block.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn high(self, quad: usize) -> __m512i {
        // SAFETY: the caller's quad.
        _mm512_set1_epi32(unsafe { self.high.add(QUAD * quad).cast::<i32>().read_unaligned() })
    }

    /// Quad `quad`'s four low bytes in every lane.
    ///
    /// # Safety
    /// The quad is inside the block.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
    unsafe fn low(self, quad: usize) -> __m512i {
        // SAFETY: the caller's quad.
        _mm512_set1_epi32(unsafe { self.low.add(QUAD * quad).cast::<i32>().read_unaligned() })
    }
}

/// Run `k` of the group's block at `at`, and of its quads the one `HIGH` says (Q4_0's low nibbles
/// with `HIGH` false, its high ones with true; Q8_0's one): the sixteen rows' values read unsigned
/// (Q4_0's 0..16, Q8_0's plus 128) and as signed bytes (Q4_0's less 8, Q8_0's as stored).
///
/// # Safety
/// The CPU has what `block_dot::available` checks; a group's block at `at`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn quad_values<T: InLanes, const HIGH: bool>(at: *const u8, k: usize) -> (__m512i, __m512i) {
    // SAFETY: the run's 64 bytes are inside the caller's block.
    let z = unsafe { _mm512_loadu_si512(at.add(run_at(0, k)).cast()) };
    if !T::NIBBLES {
        return (_mm512_xor_si512(z, _mm512_set1_epi8(i8::MIN)), z);
    }
    let q = _mm512_and_si512(if HIGH { _mm512_srli_epi16::<4>(z) } else { z }, _mm512_set1_epi8(0xF));
    (q, _mm512_sub_epi8(q, _mm512_set1_epi8(8)))
}

/// Quad `quad` of a block of 16 rows (`q` their values read unsigned, `signed` as signed bytes)
/// times the same quad of each row of `x`, into its integer sums: `high` (of `q` times the high
/// bytes) and `low` (of the low bytes times `signed`).
///
/// # Safety
/// The CPU has what `block_dot::available` checks; each `x` a block inside its row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn quad_into<const N: usize>(
    high: &mut [__m512i; N],
    low: &mut [__m512i; N],
    (q, signed): (__m512i, __m512i),
    x: &[XBlock; N],
    quad: usize,
) {
    for j in 0..N {
        // SAFETY: the caller's blocks of `x`.
        unsafe {
            high[j] = _mm512_dpbusd_epi32(high[j], q, x[j].high(quad));
            low[j] = _mm512_dpbusd_epi32(low[j], x[j].low(quad), signed);
        }
    }
}

/// Row `j`'s 16 results (`dots`, a row a lane) into `out` `[rows, n]`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn store(out: &mut [f32], at: Rows, j: usize, dots: __m512) {
    let mut values = [0.0f32; ROWS];
    // SAFETY: 16 f32s of room.
    unsafe { _mm512_storeu_ps(values.as_mut_ptr(), dots) };
    for (r, v) in values.into_iter().enumerate() {
        out[at.out_first + r * at.n + at.first_x + j] = v;
    }
}

/// Asks for the group's bytes [`InLanes::PREFETCH_BYTES`] past block `b`'s. SSE's only (every
/// x86-64 has it), so that AVX2's kernel inlines it too.
#[inline]
#[target_feature(enable = "sse")]
pub(crate) fn ask_ahead<T: InLanes>(group: &[u8], b: usize) {
    let at = group.as_ptr().wrapping_add(b * T::GROUP_BLOCK + T::PREFETCH_BYTES);
    // Every 64 bytes and the last byte (the block need not start a line): a loop counted when
    // compiled, where a `step_by` and `chain` had compiled to a loop of several branches.
    for line in 0..=T::GROUP_BLOCK / 64 {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add((64 * line).min(T::GROUP_BLOCK - 1)).cast());
    }
}

/// The group against `N` rows of `x` (1, 2 or 4: their sums fit the registers beside a block), a
/// block at a time: each block's quads into two integer sums a row of `x`, then
/// [`add_block`](crate::int_dot::add_block) in sixteen lanes. Returns `N`.
///
/// # Safety
/// The CPU has what `block_dot::available` checks; the group and the rows of `x` are inside `bytes`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn rows_of_x<T: InLanes, const N: usize>(bytes: &ByteHalves, scales: &[f32], out: &mut [f32], at: Rows) -> usize {
    let cols = at.blocks * BLOCK;
    let mut sums = [_mm512_setzero_ps(); N];
    for b in 0..at.blocks {
        ask_ahead::<T>(at.group, b);
        let block = at.group.as_ptr().wrapping_add(b * T::GROUP_BLOCK);
        // Not `array::from_fn`: a closure has no target features, and its call was not inlined.
        let mut x = [XBlock { high: std::ptr::null(), low: std::ptr::null(), offset: 0, scale: 0.0 }; N];
        for (j, x) in x.iter_mut().enumerate() {
            // SAFETY: block `b` is inside the rows of `x`.
            *x = unsafe { XBlock::at::<T>(bytes, scales, cols, at.first_x + j, b) };
        }
        let (mut high, mut low) = ([_mm512_setzero_si512(); N], [_mm512_setzero_si512(); N]);
        for j in 0..N {
            high[j] = _mm512_set1_epi32(x[j].offset);
        }
        for k in 0..T::RUNS {
            // SAFETY: the block is inside the group; its quads inside each row of `x`.
            unsafe {
                quad_into(&mut high, &mut low, quad_values::<T, false>(block, k), &x, k);
                if T::NIBBLES {
                    quad_into(&mut high, &mut low, quad_values::<T, true>(block, k), &x, k + 4);
                }
            }
        }
        // SAFETY: the block's 16 `d` are its first 32 bytes.
        let d_rows = unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(block.cast())) };
        for j in 0..N {
            let block_sums = _mm512_add_epi32(_mm512_slli_epi32::<8>(high[j]), low[j]);
            let scale = _mm512_mul_ps(d_rows, _mm512_set1_ps(x[j].scale));
            sums[j] = _mm512_add_ps(sums[j], _mm512_mul_ps(_mm512_cvtepi32_ps(block_sums), scale));
        }
    }
    for (j, sums) in sums.into_iter().enumerate() {
        store(out, at, j, sums);
    }
    N
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf_quants::GgmlType;
    use crate::int_dot::IntDot;
    use crate::quant_dot::tests::activations;
    use crate::quant_dot::{UnpackedRow, dot_row};

    #[test]
    fn rows_laid_out_in_groups_read_back_as_the_file_has_them() {
        let (rows, cols) = (37, 96);
        for ggml_type in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let bytes = ggml_type.example_bytes(rows * cols).unwrap();
            let row_bytes = bytes.len() / rows;
            let mut laid = bytes.clone();
            interleave(ggml_type, &mut laid, row_bytes);
            assert_ne!(laid, bytes, "the groups moved");
            assert_eq!(laid[grouped(rows) * row_bytes..], bytes[grouped(rows) * row_bytes..], "the rows past the groups stay");
            for (start, len) in [(0, rows), (5, 20), (31, 6), (36, 1)] {
                assert_eq!(
                    plain_rows(ggml_type, &laid, row_bytes, start, len),
                    bytes[start * row_bytes..(start + len) * row_bytes],
                    "{}: rows {start}..+{len}",
                    ggml_type.name()
                );
            }
        }
    }

    /// Odd and even numbers of blocks, 1 to 7 rows of `x` (fours, pairs and one left), two groups.
    #[test]
    fn rows_in_lanes_give_the_unpacked_rows_bits() {
        if !super::super::available() {
            return;
        }
        for (ggml_type, cols) in [GgmlType::Q4_0, GgmlType::Q8_0].into_iter().flat_map(|t| [(t, 288), (t, 512)]) {
            let rows = 2 * ROWS;
            let bytes = ggml_type.example_bytes(rows * cols).unwrap();
            let row_bytes = bytes.len() / rows;
            let mut laid = bytes.clone();
            interleave(ggml_type, &mut laid, row_bytes);
            for n in 1..=7 {
                let x = QuantizedRows::new(&(0..n).flat_map(|seed| activations(cols, seed)).collect::<Vec<_>>());
                let mut expected = vec![0.0f32; rows * n];
                for (row, out) in bytes.chunks_exact(row_bytes).zip(expected.chunks_exact_mut(n)) {
                    dot_row(ggml_type, row, &x, out, &mut UnpackedRow::default(), IntDot::Portable);
                }
                let mut found = vec![0.0f32; rows * n];
                dot_groups(ggml_type, &laid, row_bytes, &x, &mut found);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&found), bits(&expected), "{} {cols} wide, {n} rows of x", ggml_type.name());
            }
        }
    }
}
