//! Decoding's groups of products with a packed base on cubecl's GPU runtimes, each one launch: a
//! layer's query, key and value, a projection with its bias or with the residual sum after it, the
//! gated MLP's gate and up with the activation between them. One thread an output value, the dot
//! product of its row of `x` with a row of `W` read value by value from its GGUF blocks
//! (`packed_gpu.rs`' decoding, the host's widening the reference).

use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeDim, calculate_cube_count_elemwise};

use crate::packed::PackedWeight;
use crate::packed_gpu::{Grid, dot_packed, upload};

/// `x` `[n, in]` @ W_i^T -> `[n, out_i]` for three packed weights in one launch
/// ([`few_rows3_kernel`]): a layer's query, key and value.
pub(crate) fn few_rows_products3(x: CubeTensor, weights: &[PackedWeight; 3]) -> [CubeTensor; 3] {
    let x = burn_cubecl::kernel::into_contiguous(x);
    let (n, cols) = (x.meta.shape()[0], x.meta.shape()[1]);
    let words = weights.each_ref().map(|w| w.on_device(&x.device, || upload(&w.bytes(), &x)));
    let outs = weights.each_ref().map(|w| CubeBackend::float_empty([n, w.shape()[0]].into(), &x.device, FloatDType::F32));
    let rows = weights.each_ref().map(|w| w.shape()[0]);
    let row_bytes = weights.each_ref().map(|w| w.row_bytes());
    let total = n * rows.iter().sum::<usize>();
    let cube_dim = CubeDim::new(&x.client, total);
    let cube_count = calculate_cube_count_elemwise(&x.client, total, cube_dim);
    let [w1, w2, w3] = words;
    let [k1, k2, k3] = weights.each_ref().map(|w| w.ggml_type().id());
    few_rows3_kernel::launch(
        &x.client.clone(),
        cube_count,
        cube_dim,
        w1.into_tensor_arg(),
        w2.into_tensor_arg(),
        w3.into_tensor_arg(),
        x.into_tensor_arg(),
        outs[0].clone().into_tensor_arg(),
        outs[1].clone().into_tensor_arg(),
        outs[2].clone().into_tensor_arg(),
        cols,
        row_bytes[0],
        row_bytes[1],
        row_bytes[2],
        rows[0],
        rows[1],
        rows[2],
        total,
        k1,
        k2,
        k3,
    );
    outs
}

/// `x @ W^T + addend` `[n, out]` in one launch: `addend` a residual `[n, out]` (`per_value`) or a
/// bias `[out]`.
pub(crate) fn few_rows_plus(x: CubeTensor, addend: CubeTensor, weight: &PackedWeight, per_value: bool) -> CubeTensor {
    let x = burn_cubecl::kernel::into_contiguous(x);
    let grid = Grid::new(weight, &x, weight.shape()[0]);
    few_rows_plus_kernel::launch(
        &x.client.clone(),
        grid.cube_count,
        grid.cube_dim,
        grid.words.into_tensor_arg(),
        x.into_tensor_arg(),
        addend.into_tensor_arg(),
        grid.out.clone().into_tensor_arg(),
        grid.cols,
        grid.row_bytes,
        grid.rows,
        grid.total,
        weight.ggml_type().id(),
        per_value,
    );
    grid.out
}

/// `act(x @ gate^T) * (x @ up^T)` `[n, out]` for a packed gate and up in one launch.
pub(crate) fn few_rows_gated(x: CubeTensor, gate: &PackedWeight, up: &PackedWeight, gelu: bool) -> CubeTensor {
    let x = burn_cubecl::kernel::into_contiguous(x);
    let grid = Grid::new(gate, &x, gate.shape()[0]);
    let up_words = up.on_device(&x.device, || upload(&up.bytes(), &x));
    few_rows_gated_kernel::launch(
        &x.client.clone(),
        grid.cube_count,
        grid.cube_dim,
        grid.words.into_tensor_arg(),
        up_words.into_tensor_arg(),
        x.into_tensor_arg(),
        grid.out.clone().into_tensor_arg(),
        grid.cols,
        grid.row_bytes,
        up.row_bytes(),
        grid.rows,
        grid.total,
        gate.ggml_type().id(),
        up.ggml_type().id(),
        gelu,
    );
    grid.out
}

/// [`few_rows_kernel`] for three weights at once: threads `0..n·rows1` write `o1`, the next
/// `n·rows2` `o2`, the rest `o3`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn few_rows3_kernel(
    w1: &Tensor<u32>,
    w2: &Tensor<u32>,
    w3: &Tensor<u32>,
    x: &Tensor<f32>,
    o1: &mut Tensor<f32>,
    o2: &mut Tensor<f32>,
    o3: &mut Tensor<f32>,
    cols: usize,
    bytes1: usize,
    bytes2: usize,
    bytes3: usize,
    rows1: usize,
    rows2: usize,
    rows3: usize,
    total: usize,
    #[comptime] kind1: u32,
    #[comptime] kind2: u32,
    #[comptime] kind3: u32,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let n = total / (rows1 + rows2 + rows3);
    let (first, second) = (n * rows1, n * (rows1 + rows2));
    if ABSOLUTE_POS < first {
        let at = ABSOLUTE_POS;
        o1[at] = dot_packed(w1, x, at / rows1, (at % rows1) * bytes1, cols, kind1);
    } else if ABSOLUTE_POS < second {
        let at = ABSOLUTE_POS - first;
        o2[at] = dot_packed(w2, x, at / rows2, (at % rows2) * bytes2, cols, kind2);
    } else {
        let at = ABSOLUTE_POS - second;
        o3[at] = dot_packed(w3, x, at / rows3, (at % rows3) * bytes3, cols, kind3);
    }
}

/// `out[i, r] = x[i] · W[r] + addend[i, r]` (`per_value`) or `+ addend[r]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn few_rows_plus_kernel(
    words: &Tensor<u32>,
    x: &Tensor<f32>,
    addend: &Tensor<f32>,
    out: &mut Tensor<f32>,
    cols: usize,
    row_bytes: usize,
    rows: usize,
    total: usize,
    #[comptime] kind: u32,
    #[comptime] per_value: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (i, row) = (ABSOLUTE_POS / rows, ABSOLUTE_POS % rows);
    let mut at = row;
    if comptime![per_value] {
        at = ABSOLUTE_POS;
    }
    out[ABSOLUTE_POS] = dot_packed(words, x, i, row * row_bytes, cols, kind) + addend[at];
}

/// `out[i, r] = act(x[i] · gate[r]) · (x[i] · up[r])`, both rows read from their blocks.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn few_rows_gated_kernel(
    gate: &Tensor<u32>,
    up: &Tensor<u32>,
    x: &Tensor<f32>,
    out: &mut Tensor<f32>,
    cols: usize,
    gate_bytes: usize,
    up_bytes: usize,
    rows: usize,
    total: usize,
    #[comptime] gate_kind: u32,
    #[comptime] up_kind: u32,
    #[comptime] gelu: bool,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (i, row) = (ABSOLUTE_POS / rows, ABSOLUTE_POS % rows);
    let g = dot_packed(gate, x, i, row * gate_bytes, cols, gate_kind);
    let u = dot_packed(up, x, i, row * up_bytes, cols, up_kind);
    let mut activated = g / (1.0 + f32::exp(-g));
    if comptime![gelu] {
        activated = 0.5 * g * (1.0 + f32::tanh(0.797_884_6 * (g + 0.044_715 * g * g * g)));
    }
    out[ABSOLUTE_POS] = activated * u;
}
