//! Q4_0 rows sixteen at a time, a row in each 32-bit lane, as llama.cpp's repacked Q4_0 lays them
//! out for AVX-512: where `block_dot.rs` unpacks a pair of one row's blocks into 64 bytes and
//! meets them with one `vpdpbusd` a quad of activations, here one `vpdpbusd` meets a quad of all
//! sixteen rows, one scale product serves the sixteen rows of a block, and the nibbles need no
//! shuffle: about a third fewer vector operations a row and block (docs/benchmarks.md).
//!
//! The layout, made once when the weight is loaded ([`interleave`]): each group of 16 rows, block
//! by block, the 16 rows' `d` (32 bytes), then for `k` in 0..4 each row's bytes `4k..4k + 4` of
//! its 16 bytes of nibbles (64 bytes): 288 bytes a block, the group's bytes where its rows' were.
//! A 64-byte load then holds quad `k` of every row in its low nibbles and quad `k + 4` in its high
//! ones. Rows past the last whole group stay as the file has them.
//!
//! The arithmetic is `block_dot.rs`'s, quad for quad: each quad's exact integer sum, to f32, times
//! `d` times the activations' scale, added into the lane of its quad (an even block's quads in
//! lanes 0-7, an odd one's in 8-15), folded 16 -> 8 -> 4 -> 2 -> 1 as `fold_sixteen` does, only
//! across sixteen registers at once: the same bits, which the tests hold it to.
#![allow(unsafe_code)]

use std::arch::x86_64::*;

use crate::int_dot::{BLOCK, ByteHalves, QUAD, QuantizedRows};

/// Rows a group holds: one a 32-bit lane of a 512-bit register.
pub(crate) const ROWS: usize = 16;

/// Bytes of a Q4_0 block: `d` (f16), then 16 bytes of nibbles.
const BLOCK_BYTES: usize = 18;

/// Bytes of a group's block: 16 rows' `d`, then four runs of 16 rows' four bytes.
const GROUP_BLOCK: usize = ROWS * BLOCK_BYTES;

/// Where a group's block keeps row `lane`'s bytes `4k..4k + 4` of nibbles.
const fn nibbles_at(lane: usize, k: usize) -> usize {
    2 * ROWS + 64 * k + 4 * lane
}

/// Where row `lane`'s block keeps each of its pieces, and where the group's block keeps it:
/// `(in the row's block, in the group's block, bytes)`, its `d` first, then its four runs of nibbles.
fn pieces(lane: usize) -> impl Iterator<Item = (usize, usize, usize)> {
    std::iter::once((0, 2 * lane, 2)).chain((0..4).map(move |k| (2 + 4 * k, nibbles_at(lane, k), 4)))
}

/// How far ahead of the block being read the group's next bytes are asked for: the CPU's own
/// prefetching left a 4,864-wide group waiting on memory (docs/benchmarks.md).
const PREFETCH_BYTES: usize = 16 * GROUP_BLOCK;

/// Of `rows` rows, those in whole groups (the first ones).
pub(crate) fn grouped(rows: usize) -> usize {
    rows / ROWS * ROWS
}

/// Q4_0 rows of `row_bytes` each, in the file's layout, laid out in place in groups of 16.
pub(crate) fn interleave(bytes: &mut [u8], row_bytes: usize) {
    let mut plain = vec![0u8; ROWS * row_bytes];
    for group in bytes.chunks_exact_mut(ROWS * row_bytes) {
        plain.copy_from_slice(group);
        for (lane, row) in plain.chunks_exact(row_bytes).enumerate() {
            for (block, to) in row.chunks_exact(BLOCK_BYTES).zip(group.chunks_exact_mut(GROUP_BLOCK)) {
                for (in_row, in_group, len) in pieces(lane) {
                    to[in_group..][..len].copy_from_slice(&block[in_row..][..len]);
                }
            }
        }
    }
}

/// Rows `start..start + len` of `bytes` (laid out by [`interleave`]) in the file's layout.
pub(crate) fn plain_rows(bytes: &[u8], row_bytes: usize, start: usize, len: usize) -> Vec<u8> {
    let whole = grouped(bytes.len() / row_bytes.max(1));
    let mut out = vec![0u8; len * row_bytes];
    for (r, row) in (start..).zip(out.chunks_exact_mut(row_bytes)) {
        if r >= whole {
            row.copy_from_slice(&bytes[r * row_bytes..][..row_bytes]);
            continue;
        }
        let (group, lane) = (&bytes[r / ROWS * ROWS * row_bytes..][..ROWS * row_bytes], r % ROWS);
        for (block, from) in row.chunks_exact_mut(BLOCK_BYTES).zip(group.chunks_exact(GROUP_BLOCK)) {
            for (in_row, in_group, len) in pieces(lane) {
                block[in_row..][..len].copy_from_slice(&from[in_group..][..len]);
            }
        }
    }
    out
}

/// Whole groups `groups` (laid out by [`interleave`], `row_bytes` a row) dotted with each row of
/// `xs` into `out` `[rows, n]`. `block_dot::available` said yes.
pub(crate) fn dot_groups(groups: &[u8], row_bytes: usize, xs: &QuantizedRows, out: &mut [f32]) {
    assert!(super::available(), "AVX-512 BW/VL/VNNI and F16C");
    let blocks = row_bytes / BLOCK_BYTES;
    let (cols, count) = (blocks * BLOCK, groups.len() / row_bytes.max(1));
    let n = xs.q.len() / cols.max(1);
    assert!(row_bytes == blocks * BLOCK_BYTES && count.is_multiple_of(ROWS) && groups.len() == count * row_bytes);
    assert!(xs.q.len() == n * cols && out.len() == count * n && xs.scales.len() * BLOCK == xs.q.len());
    let bytes = xs.bytes();
    assert!(bytes.high.len() == xs.q.len() && bytes.low.len() == xs.q.len() && bytes.minus_eight_high_sums.len() * QUAD == xs.q.len());
    for (g, group) in groups.chunks_exact(ROWS * row_bytes).enumerate() {
        let mut j = 0;
        while j < n {
            let at = Rows { group, blocks, first_x: j, out_first: g * ROWS * n, n };
            // SAFETY: `available` found the features; the group and the rows of `x` are inside the
            // lengths asserted above.
            j += unsafe {
                match n - j {
                    1 => one_row_of_x(bytes, &xs.scales, out, at),
                    2 | 3 => two_rows_of_x(bytes, &xs.scales, out, at),
                    _ => four_rows_of_x(bytes, &xs.scales, out, at),
                }
            };
        }
    }
}

/// A group of `W` and the rows of `x` it meets.
#[derive(Clone, Copy)]
struct Rows<'a> {
    group: &'a [u8],
    blocks: usize,
    first_x: usize,
    /// Where the group's first row's values start in `out`.
    out_first: usize,
    /// Rows of `x` in all: `out`'s width.
    n: usize,
}

/// What a row of `x` brings to block `b`: its high and low bytes and offsets, and its scale.
#[derive(Clone, Copy)]
struct XBlock {
    high: *const i8,
    low: *const u8,
    offsets: *const i32,
    scale: f32,
}

impl XBlock {
    /// Block `b` of row `j` of `x`.
    ///
    /// # Safety
    /// The block is inside the rows of `bytes`.
    unsafe fn at(bytes: &ByteHalves, scales: &[f32], cols: usize, j: usize, b: usize) -> Self {
        let x = j * cols + b * BLOCK;
        // SAFETY: the caller's block.
        unsafe {
            Self {
                high: bytes.high.as_ptr().add(x),
                low: bytes.low.as_ptr().add(x),
                offsets: bytes.minus_eight_high_sums.as_ptr().add(x / QUAD),
                scale: *scales.get_unchecked(j * cols / BLOCK + b),
            }
        }
    }
}

/// Quad `quad` of a block of 16 rows (`q` their values 0..16 in each lane, `signed` less 8) times
/// the same quad of `x`, into `sum` with the block's scales `d` (the rows' `d` times `x`'s).
///
/// # Safety
/// The CPU has what `block_dot::available` checks; `x` is a block inside its row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn quad_into(sum: &mut __m512, q: __m512i, signed: __m512i, x: XBlock, quad: usize, d: __m512) {
    // SAFETY: the quad's four bytes and its offset are inside the block.
    let (high, low, offset) = unsafe {
        (
            _mm512_set1_epi32(x.high.add(QUAD * quad).cast::<i32>().read_unaligned()),
            _mm512_set1_epi32(x.low.add(QUAD * quad).cast::<i32>().read_unaligned()),
            _mm512_set1_epi32(*x.offsets.add(quad)),
        )
    };
    // 256 (q . high - 8 sum of high) + low . (q - 8): w . x in each row's lane.
    let mut quads = _mm512_dpbusd_epi32(offset, q, high);
    quads = _mm512_dpbusd_epi32(_mm512_slli_epi32::<8>(quads), low, signed);
    *sum = _mm512_add_ps(*sum, _mm512_mul_ps(_mm512_cvtepi32_ps(quads), d));
}

/// The block's sixteen rows' `d` times each row of `x`'s scale.
///
/// # Safety
/// The CPU has what `block_dot::available` checks; a group's block (288 bytes) at `at`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn block_scales<const N: usize>(at: *const u8, x: &[XBlock; N]) -> [__m512; N] {
    // SAFETY: the caller's block.
    let d_rows = unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(at.cast())) };
    std::array::from_fn(|j| _mm512_mul_ps(d_rows, _mm512_set1_ps(x[j].scale)))
}

/// The low (`high` false) or high nibbles of a run `z` of sixteen rows' bytes, as values 0..16 and
/// as signed values (less 8).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn nibbles(z: __m512i, high: bool) -> (__m512i, __m512i) {
    let q = _mm512_and_si512(if high { _mm512_srli_epi16::<4>(z) } else { z }, _mm512_set1_epi8(0xF));
    (q, _mm512_sub_epi8(q, _mm512_set1_epi8(8)))
}

/// Block `b` of the group against `N` rows of `x`, each into its 8 lanes' sums.
///
/// # Safety
/// The CPU has what `block_dot::available` checks; the block is inside the group, each `x` inside its row.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn block_into<const N: usize>(sums: &mut [[__m512; 8]; N], at: *const u8, x: [XBlock; N]) {
    // SAFETY: the block's 288 bytes are inside the group.
    let d = unsafe { block_scales(at, &x) };
    for k in 0..4 {
        // SAFETY: as above.
        let z = unsafe { _mm512_loadu_si512(at.add(nibbles_at(0, k)).cast()) };
        let ((low, low_signed), (high, high_signed)) = (nibbles(z, false), nibbles(z, true));
        for j in 0..N {
            // SAFETY: the caller's blocks of `x`.
            unsafe {
                quad_into(&mut sums[j][k], low, low_signed, x[j], k, d[j]);
                quad_into(&mut sums[j][k + 4], high, high_signed, x[j], k + 4, d[j]);
            }
        }
    }
}

/// The low (`high` false) or high nibbles of block `b` of the group, quads 0-3 or 4-7, against
/// `N` rows of `x`: quad `k`'s sums in `sums[k]`, a row of `x` each.
///
/// # Safety
/// As [`block_into`].
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn half_block_into<const N: usize>(sums: &mut [[__m512; N]; 4], at: *const u8, x: [XBlock; N], high: bool) {
    // SAFETY: the block's 288 bytes are inside the group.
    let d = unsafe { block_scales(at, &x) };
    for (k, sums) in sums.iter_mut().enumerate() {
        // SAFETY: as above.
        let (q, signed) = nibbles(unsafe { _mm512_loadu_si512(at.add(nibbles_at(0, k)).cast()) }, high);
        for j in 0..N {
            // SAFETY: the caller's blocks of `x`.
            unsafe { quad_into(&mut sums[j], q, signed, x[j], k + 4 * usize::from(high), d[j]) };
        }
    }
}

/// Sixteen lanes' sums of 16 rows folded 16 -> 8 -> 4 -> 2 -> 1 as `fold_sixteen` folds one row's:
/// row `r`'s dot product in lane `r`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn folded(lanes: [__m512; 16]) -> __m512 {
    let eight: [__m512; 8] = std::array::from_fn(|i| _mm512_add_ps(lanes[i], lanes[i + 8]));
    let four: [__m512; 4] = std::array::from_fn(|i| _mm512_add_ps(eight[i], eight[i + 4]));
    let two = [_mm512_add_ps(four[0], four[2]), _mm512_add_ps(four[1], four[3])];
    _mm512_add_ps(two[0], two[1])
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

/// Asks for the group's bytes [`PREFETCH_BYTES`] past block `b`'s.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
fn ask_ahead(group: &[u8], b: usize) {
    let at = group.as_ptr().wrapping_add(b * GROUP_BLOCK + PREFETCH_BYTES);
    for line in (0..GROUP_BLOCK).step_by(64).chain([GROUP_BLOCK - 1]) {
        _mm_prefetch::<_MM_HINT_T0>(at.wrapping_add(line).cast());
    }
}

/// The group against one row of `x`, its blocks in pairs (sixteen sums in registers). Returns 1.
///
/// # Safety
/// The CPU has what `block_dot::available` checks; the group and the row of `x` are inside `bytes`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn one_row_of_x(bytes: &ByteHalves, scales: &[f32], out: &mut [f32], at: Rows) -> usize {
    let cols = at.blocks * BLOCK;
    let (mut even, mut odd) = ([[_mm512_setzero_ps(); 8]], [[_mm512_setzero_ps(); 8]]);
    let block_at = |b: usize| at.group.as_ptr().wrapping_add(b * GROUP_BLOCK);
    for p in 0..at.blocks / 2 {
        ask_ahead(at.group, 2 * p);
        ask_ahead(at.group, 2 * p + 1);
        // SAFETY: blocks `2p` and `2p + 1` are inside the group and the row of `x`.
        unsafe {
            block_into(&mut even, block_at(2 * p), [XBlock::at(bytes, scales, cols, at.first_x, 2 * p)]);
            block_into(&mut odd, block_at(2 * p + 1), [XBlock::at(bytes, scales, cols, at.first_x, 2 * p + 1)]);
        }
    }
    if at.blocks % 2 == 1 {
        let b = at.blocks - 1;
        // SAFETY: as above.
        unsafe { block_into(&mut even, block_at(b), [XBlock::at(bytes, scales, cols, at.first_x, b)]) };
    }
    store(out, at, 0, folded(std::array::from_fn(|l| if l < 8 { even[0][l] } else { odd[0][l - 8] })));
    1
}

/// The group against two rows of `x`: its even blocks, then its odd ones (eight sums a row of `x`
/// at a time in registers, each block's weights unpacked once for both). Returns 2.
///
/// # Safety
/// As [`one_row_of_x`], for both rows of `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn two_rows_of_x(bytes: &ByteHalves, scales: &[f32], out: &mut [f32], at: Rows) -> usize {
    let cols = at.blocks * BLOCK;
    let mut lanes = [[_mm512_setzero_ps(); 16]; 2];
    for parity in 0..2 {
        let mut sums = [[_mm512_setzero_ps(); 8]; 2];
        for b in (parity..at.blocks).step_by(2) {
            if parity == 0 {
                ask_ahead(at.group, b);
                ask_ahead(at.group, b + 1);
            }
            // SAFETY: block `b` is inside the group and both rows of `x`.
            unsafe {
                // Not `map`: a closure has no target features, and its call was not inlined.
                let x = [XBlock::at(bytes, scales, cols, at.first_x, b), XBlock::at(bytes, scales, cols, at.first_x + 1, b)];
                block_into(&mut sums, at.group.as_ptr().add(b * GROUP_BLOCK), x);
            }
        }
        for j in 0..2 {
            lanes[j][8 * parity..8 * parity + 8].copy_from_slice(&sums[j]);
        }
    }
    for (j, lanes) in lanes.into_iter().enumerate() {
        store(out, at, j, folded(lanes));
    }
    2
}

/// The group against four rows of `x`: its even blocks' low nibbles, high nibbles, then the odd
/// blocks' (four sums a row of `x` at a time in registers, each quarter's weights unpacked once for
/// the four). Returns 4.
///
/// # Safety
/// As [`one_row_of_x`], for the four rows of `x`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,f16c")]
unsafe fn four_rows_of_x(bytes: &ByteHalves, scales: &[f32], out: &mut [f32], at: Rows) -> usize {
    let cols = at.blocks * BLOCK;
    let mut lanes = [[_mm512_setzero_ps(); 16]; 4];
    for parity in 0..2 {
        for high in [false, true] {
            let mut sums = [[_mm512_setzero_ps(); 4]; 4];
            for b in (parity..at.blocks).step_by(2) {
                if parity == 0 && !high {
                    ask_ahead(at.group, b);
                    ask_ahead(at.group, b + 1);
                }
                // SAFETY: block `b` is inside the group and the four rows of `x`.
                unsafe {
                    let x = [
                        XBlock::at(bytes, scales, cols, at.first_x, b),
                        XBlock::at(bytes, scales, cols, at.first_x + 1, b),
                        XBlock::at(bytes, scales, cols, at.first_x + 2, b),
                        XBlock::at(bytes, scales, cols, at.first_x + 3, b),
                    ];
                    half_block_into(&mut sums, at.group.as_ptr().add(b * GROUP_BLOCK), x, high);
                }
            }
            let first = 8 * parity + 4 * usize::from(high);
            for (k, sums) in sums.into_iter().enumerate() {
                for (lanes, sum) in lanes.iter_mut().zip(sums) {
                    lanes[first + k] = sum;
                }
            }
        }
    }
    for (j, lanes) in lanes.into_iter().enumerate() {
        store(out, at, j, folded(lanes));
    }
    4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf_quants::GgmlType;
    use crate::quant_dot::tests::activations;

    #[test]
    fn rows_laid_out_in_groups_read_back_as_the_file_has_them() {
        let (rows, cols) = (37, 96);
        let bytes = GgmlType::Q4_0.example_bytes(rows * cols).unwrap();
        let row_bytes = bytes.len() / rows;
        let mut laid = bytes.clone();
        interleave(&mut laid, row_bytes);
        assert_ne!(laid, bytes, "the groups moved");
        assert_eq!(laid[grouped(rows) * row_bytes..], bytes[grouped(rows) * row_bytes..], "the rows past the groups stay");
        for (start, len) in [(0, rows), (5, 20), (31, 6), (36, 1)] {
            assert_eq!(
                plain_rows(&laid, row_bytes, start, len),
                bytes[start * row_bytes..(start + len) * row_bytes],
                "rows {start}..+{len}"
            );
        }
    }

    /// Odd and even numbers of blocks, 1 to 7 rows of `x` (fours, pairs and one left), two groups.
    #[test]
    fn rows_in_lanes_give_the_products_from_the_blocks_bits() {
        if !super::super::available() {
            return;
        }
        for cols in [288, 512] {
            let rows = 2 * ROWS;
            let bytes = GgmlType::Q4_0.example_bytes(rows * cols).unwrap();
            let row_bytes = bytes.len() / rows;
            let mut laid = bytes.clone();
            interleave(&mut laid, row_bytes);
            for n in 1..=7 {
                let x = QuantizedRows::new(&(0..n).flat_map(|seed| activations(cols, seed)).collect::<Vec<_>>());
                let mut expected = vec![0.0f32; rows * n];
                super::super::dot_rows(GgmlType::Q4_0, &bytes, row_bytes, &x, &mut expected, &mut Vec::new());
                let mut found = vec![0.0f32; rows * n];
                dot_groups(&laid, row_bytes, &x, &mut found);
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&found), bits(&expected), "{cols} wide, {n} rows of x");
            }
        }
    }
}
