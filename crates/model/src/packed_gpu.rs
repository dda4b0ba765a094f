//! A packed weight's product on cubecl's GPU runtimes (WebGPU in the tab, wgpu or CUDA natively):
//! the file's bytes go to the GPU once, and each product widens the weight there, for that product
//! only, with a kernel that reads GGUF's blocks as `gguf_quants.rs` does on the host. Between a
//! forward and its backward only the packed bytes are held, as on the CPU.
//!
//! One thread writes one value of the rows asked for (every row, for a product): it finds the
//! value's block in its row and decodes the block's scale (and minimum) and its bits, for every
//! type the reader knows; the host's widening is the reference they are checked against.

use burn::backend::ops::{FloatTensorOps, IntTensorOps};
use burn::tensor::IntDType;
use burn::tensor::{FloatDType, Slice, TensorData};
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::packed::{PackedOps, PackedWeight};

impl PackedOps for CubeBackend {
    fn packed_matmul(x: CubeTensor, weight: PackedWeight) -> CubeTensor {
        if x.meta.shape()[0] <= FEW_ROWS {
            return few_rows_product(x, &weight);
        }
        let tiles = weight.tiles(GPU_TILE_VALUES).map(|(start, len)| {
            let w = widened(&weight, start, len, &x); // [len, in]
            Self::float_matmul(x.clone(), Self::float_transpose(w)) // [n, len]
        });
        let mut tiles: Vec<CubeTensor> = tiles.collect();
        if tiles.len() == 1 { tiles.remove(0) } else { Self::float_cat(tiles, 1) }
    }

    fn packed_matmul_transposed(g: CubeTensor, weight: PackedWeight) -> CubeTensor {
        let tiles = weight.tiles(GPU_TILE_VALUES).map(|(start, len)| {
            let w = widened(&weight, start, len, &g); // [len, in]
            let g_tile = Self::float_slice(g.clone(), &[Slice::full(), Slice::new(start as isize, Some((start + len) as isize), 1)]); // [n, len]
            Self::float_matmul(g_tile, w) // [n, in]
        });
        tiles.reduce(Self::float_add).expect("a weight has rows")
    }

    fn packed_rows(ids: CubeTensor, weight: PackedWeight) -> CubeTensor {
        let ids = Self::int_cast(ids, IntDType::U32); // [n]
        let grid = Grid::new(&weight, &ids, weight.shape()[1]);
        rows_kernel::launch(
            &ids.client.clone(),
            grid.cube_count,
            grid.cube_dim,
            grid.words.into_tensor_arg(),
            ids.into_tensor_arg(),
            grid.out.clone().into_tensor_arg(),
            grid.cols,
            grid.row_bytes,
            grid.rows,
            grid.total,
            weight.ggml_type().id(),
        );
        grid.out
    }
}

/// What a kernel over a packed weight and an input of `n` rows needs: the weight's words on the
/// input's device, an output `[n, width]` with one thread a value, and the weight's layout.
pub(crate) struct Grid {
    pub(crate) words: CubeTensor,
    pub(crate) out: CubeTensor,
    pub(crate) cube_dim: CubeDim,
    pub(crate) cube_count: CubeCount,
    pub(crate) total: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_bytes: usize,
}

impl Grid {
    pub(crate) fn new(weight: &PackedWeight, input: &CubeTensor, width: usize) -> Self {
        let words = weight.on_device(&input.device, || upload(&weight.bytes(), input));
        let ([rows, cols], n) = (weight.shape(), input.meta.shape()[0]);
        let total = n * width;
        let out = CubeBackend::float_empty([n, width].into(), &input.device, FloatDType::F32);
        let cube_dim = CubeDim::new(&input.client, total);
        let cube_count = calculate_cube_count_elemwise(&input.client, total, cube_dim);
        Self { words, out, cube_dim, cube_count, total, rows, cols, row_bytes: weight.row_bytes() }
    }
}

/// The most values of `W` a product widens at once on a GPU (128 MiB of f32): every projection of
/// a 1 B model is one piece (Llama 3.2 1B's widest is 16.8 M values), while a tied head is cut in
/// a few (Qwen's 151,936 x 896 in five, where it was a 545 MB transient each step of sampling many answers).
const GPU_TILE_VALUES: usize = 1 << 25;

/// Rows `start..start + len` of `W` in f32 on `like`'s device, `[len, in]`: a lookup of those rows.
fn widened(weight: &PackedWeight, start: usize, len: usize, like: &CubeTensor) -> CubeTensor {
    let ids = CubeBackend::int_arange(start as i64..(start + len) as i64, &like.device, IntDType::U32);
    CubeBackend::packed_rows(ids, weight.clone())
}

/// Rows of `x` up to which a product reads `W`'s blocks directly instead of widening it: decoding,
/// where widening wrote the whole f32 `W` for one row of output (a 0.5 B model's every projection and
/// its head, 2 GB a token) and the product then read it back.
const FEW_ROWS: usize = 8;

/// `x` `[n, in]` @ W^T -> `[n, out]` for a few rows of `x`, each output a dot product of a row of `x`
/// with a row of `W` read from its blocks ([`few_rows_kernel`]).
fn few_rows_product(x: CubeTensor, weight: &PackedWeight) -> CubeTensor {
    let x = burn_cubecl::kernel::into_contiguous(x);
    let grid = Grid::new(weight, &x, weight.shape()[0]);
    few_rows_kernel::launch(
        &x.client.clone(),
        grid.cube_count,
        grid.cube_dim,
        grid.words.into_tensor_arg(),
        x.into_tensor_arg(),
        grid.out.clone().into_tensor_arg(),
        grid.cols,
        grid.row_bytes,
        grid.rows,
        grid.total,
        weight.ggml_type().id(),
    );
    grid.out
}

/// The bytes as little-endian `u32` words (the last one zero-padded) on `like`'s device.
pub(crate) fn upload(bytes: &[u8], like: &CubeTensor) -> CubeTensor {
    let words: Vec<u32> = bytes.chunks(4).map(|c| u32::from_le_bytes(std::array::from_fn(|i| c.get(i).copied().unwrap_or(0)))).collect();
    let len = words.len();
    CubeBackend::int_from_data(TensorData::new(words, [len]), &like.device)
}

// GGML's type ids (`GgmlType::id`).
const F32: u32 = 0;
const F16: u32 = 1;
const BF16: u32 = 30;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q8_0: u32 = 8;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;
const Q6_K: u32 = 14;

/// Rows `ids` of `W` `[rows, cols]`: output row `i` is row `ids[i]` (zeros past `W`).
#[cube(launch)]
fn rows_kernel(
    words: &Tensor<u32>,
    ids: &Tensor<u32>,
    out: &mut Tensor<f32>,
    cols: usize,
    row_bytes: usize,
    rows: usize,
    total: usize,
    #[comptime] kind: u32,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let row = usize::cast_from(ids[ABSOLUTE_POS / cols]);
    let inside = row < rows;
    let value = value_at(words, select(inside, row, 0usize) * row_bytes, ABSOLUTE_POS % cols, kind);
    out[ABSOLUTE_POS] = select(inside, value, 0.0f32);
}

/// `out[i, r] = x[i] · W[r]` for `x` `[n, cols]` (contiguous): one thread an output, reading row `r`
/// of `W` value by value from its blocks.
#[cube(launch)]
fn few_rows_kernel(
    words: &Tensor<u32>,
    x: &Tensor<f32>,
    out: &mut Tensor<f32>,
    cols: usize,
    row_bytes: usize,
    rows: usize,
    total: usize,
    #[comptime] kind: u32,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (i, row) = (ABSOLUTE_POS / rows, ABSOLUTE_POS % rows);
    out[ABSOLUTE_POS] = dot_packed(words, x, i, row * row_bytes, cols, kind);
}

/// Row `i` of `x` `[n, cols]` dotted with the packed row whose bytes start at `row_start`.
#[cube]
pub(crate) fn dot_packed(words: &Tensor<u32>, x: &Tensor<f32>, i: usize, row_start: usize, cols: usize, #[comptime] kind: u32) -> f32 {
    let mut sum = 0.0f32;
    for col in 0..cols {
        sum += x[i * cols + col] * value_at(words, row_start, col, kind);
    }
    sum
}

/// Value `col` of the row whose bytes start at `row_start`, decoded as `kind` (a GGML type id).
#[cube]
fn value_at(words: &Tensor<u32>, row_start: usize, col: usize, #[comptime] kind: u32) -> f32 {
    let mut value = 0.0f32;
    if kind == F32 {
        value = f32::reinterpret(words[row_start / 4 + col]);
    } else if kind == F16 {
        value = half_at(words, row_start + col * 2);
    } else if kind == BF16 {
        let at = row_start + col * 2;
        value = f32::reinterpret((byte_at(words, at) | (byte_at(words, at + 1) << 8)) << 16);
    } else if kind == Q8_0 {
        let base = row_start + (col / 32) * 34;
        let q = i32::cast_from(byte_at(words, base + 2 + col % 32));
        value = f32::cast_from(select(q >= 128, q - 256, q)) * half_at(words, base);
    } else if kind == Q4_0 {
        let base = row_start + (col / 32) * 18;
        let n = nibble(words, base + 2, col % 32);
        value = f32::cast_from(i32::cast_from(n) - 8) * half_at(words, base);
    } else if kind == Q4_1 {
        let base = row_start + (col / 32) * 20;
        let n = nibble(words, base + 4, col % 32);
        value = f32::cast_from(n) * half_at(words, base) + half_at(words, base + 2);
    } else if kind == Q5_0 {
        let base = row_start + (col / 32) * 22;
        let n = fifth(words, base + 2, base + 6, col % 32);
        value = f32::cast_from(i32::cast_from(n) - 16) * half_at(words, base);
    } else if kind == Q5_1 {
        let base = row_start + (col / 32) * 24;
        let n = fifth(words, base + 4, base + 8, col % 32);
        value = f32::cast_from(n) * half_at(words, base) + half_at(words, base + 2);
    } else if kind == Q4_K || kind == Q5_K {
        value = k_quant_4_or_5(words, row_start, col, kind == Q5_K);
    } else if kind == Q6_K {
        value = q6_k(words, row_start + (col / 256) * 210, col % 256);
    }
    value
}

/// Byte `at` of the packed bytes.
#[cube]
fn byte_at(words: &Tensor<u32>, at: usize) -> u32 {
    (words[at / 4] >> (u32::cast_from(at % 4) * 8)) & 0xFF
}

/// The IEEE half at byte `at`, widened (files' scales are finite: no infinities or NaNs here).
#[cube]
fn half_at(words: &Tensor<u32>, at: usize) -> f32 {
    let h = byte_at(words, at) | (byte_at(words, at + 1) << 8);
    let exponent = (h >> 10) & 0x1F;
    let mantissa = h & 0x3FF;
    let negative = (h >> 15) != 0;
    // Subnormal: mantissa · 2^-24.
    let subnormal = f32::cast_from(mantissa) * 5.960_464_5e-8;
    let normal = f32::reinterpret(((h >> 15) << 31) | ((exponent + 112) << 23) | (mantissa << 13));
    select(exponent == 0, select(negative, -subnormal, subnormal), normal)
}

/// Value `j` of a 32-value run of 4-bit values at `qs`: low nibbles are values 0..16, high 16..32.
#[cube]
fn nibble(words: &Tensor<u32>, qs: usize, j: usize) -> u32 {
    (byte_at(words, qs + j % 16) >> select(j < 16, 0u32, 4u32)) & 0xF
}

/// Value `j` of a Q5 block: its nibble at `qs` and its fifth bit, bit `j` of the word at `qh`.
#[cube]
fn fifth(words: &Tensor<u32>, qh: usize, qs: usize, j: usize) -> u32 {
    let high = byte_at(words, qh) | (byte_at(words, qh + 1) << 8) | (byte_at(words, qh + 2) << 16) | (byte_at(words, qh + 3) << 24);
    nibble(words, qs, j) | (((high >> u32::cast_from(j)) & 1) << 4)
}

/// Q4_K or Q5_K value `col` of a row at `row_start`: 256 values a block in 4 runs of 64, each run
/// two sub-blocks of 32 with 6-bit scales and minimums (`get_scale_min_k4`).
#[cube]
fn k_quant_4_or_5(words: &Tensor<u32>, row_start: usize, col: usize, #[comptime] five: bool) -> f32 {
    let block_bytes = comptime![if five { 176usize } else { 144usize }];
    let base = row_start + (col / 256) * block_bytes;
    let j = col % 256;
    let run = j / 64;
    let high_half = (j % 64) >= 32;
    let l = j % 32;
    let sub = 2 * run + select(high_half, 1usize, 0usize);
    let scales = base + 4;
    // Sub-blocks 0..4 keep 6 bits in bytes 0..8; 4..8 split theirs over bytes 8..12 and the top
    // bits of 0..8 (`scales + sub - 4` stays inside the block: `scales` is `base + 4`).
    let (low, next) = (byte_at(words, scales + sub), byte_at(words, scales + sub + 4));
    let sc = select(sub < 4, low & 63, (next & 0xF) | ((byte_at(words, scales + sub - 4) >> 6) << 4));
    let m = select(sub < 4, next & 63, (next >> 4) | ((low >> 6) << 4));
    let qs = base + comptime![if five { 48usize } else { 16usize }];
    let q = byte_at(words, qs + run * 32 + l);
    let mut n = select(high_half, q >> 4, q & 0xF);
    if comptime![five] {
        let h = byte_at(words, base + 16 + l);
        let bit = u32::cast_from(2 * run) + select(high_half, 1u32, 0u32);
        n += ((h >> bit) & 1) * 16;
    }
    let d = half_at(words, base) * f32::cast_from(sc);
    let minimum = half_at(words, base + 2) * f32::cast_from(m);
    d * f32::cast_from(n) - minimum
}

/// Q6_K value `j` of the block at `base`: two halves of 128 values, each four interleaved runs of
/// 32 with low 4 bits, high 2 bits and a signed 8-bit scale per 16 values; `d` last.
#[cube]
fn q6_k(words: &Tensor<u32>, base: usize, j: usize) -> f32 {
    let half = j / 128;
    let k = (j % 128) / 32;
    let l = j % 32;
    let low = byte_at(words, base + 64 * half + l + 32 * (k % 2));
    let nib = select(k < 2, low & 0xF, low >> 4);
    let high = (byte_at(words, base + 128 + 32 * half + l) >> u32::cast_from(2 * k)) & 3;
    let q = i32::cast_from(nib | (high << 4)) - 32;
    let s = i32::cast_from(byte_at(words, base + 192 + 8 * half + l / 16 + 2 * k));
    let scale = half_at(words, base + 208) * f32::cast_from(select(s >= 128, s - 256, s));
    scale * f32::cast_from(q)
}
