//! [`AdapterKernels`] on cubecl's GPU runtimes. The row pass (forward: `h = x a` then `out = base +
//! scale · h b`; backward: `d h = scale · grad b^T` then `d x = dx_base + d h a^T`) is one kernel
//! with a workgroup a row: its threads split the row's width for the `rank` sums, a tree sum in
//! workgroup memory, then each thread writes its columns. The factors' gradients are one kernel, a
//! thread a value, each a sum over the rows. No subgroups; 8 KiB of workgroup memory at most.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim, calculate_cube_count_elemwise};

use crate::low_rank::{AdapterKernels, Frozen, MAX_RANK, forward};
use crate::packed::PackedWeight;

/// Threads a row: a power of two, at least [`MAX_RANK`].
const THREADS: usize = 64;

impl AdapterKernels for CubeBackend {
    fn adapted_dense(x: CubeTensor, weight: CubeTensor, a: CubeTensor, b: CubeTensor, scale: f32) -> CubeTensor {
        forward::<Self>(x, Frozen::Dense(weight), a, b, scale)
    }

    fn adapted_packed(x: CubeTensor, weight: PackedWeight, a: CubeTensor, b: CubeTensor, scale: f32) -> CubeTensor {
        forward::<Self>(x, Frozen::Packed(weight), a, b, scale)
    }

    fn adapter_forward(base: CubeTensor, x: CubeTensor, a: CubeTensor, b: CubeTensor, scale: f32) -> (CubeTensor, CubeTensor) {
        let [base, x, a, b] = [base, x, a, b].map(into_contiguous);
        // out [n, out] = base + scale · h b: the second sum reads b as `q [out, rank]`.
        let q = CubeBackend::float_transpose(b);
        rows(x, a, q, base, 1.0, scale, true)
    }

    fn adapter_backward_rows(
        grad: CubeTensor,
        dx_base: CubeTensor,
        a: CubeTensor,
        b: CubeTensor,
        scale: f32,
        with_dx: bool,
    ) -> (CubeTensor, CubeTensor) {
        let [grad, dx_base, a, b] = [grad, dx_base, a, b].map(into_contiguous);
        // d h = scale · grad b^T reads b as `p [out, rank]`; d x = dx_base + d h a^T reads a as `q [in, rank]`.
        let p = CubeBackend::float_transpose(b);
        rows(grad, p, a, dx_base, scale, 1.0, with_dx)
    }

    fn adapter_backward_columns(x: CubeTensor, h: CubeTensor, dh: CubeTensor, grad: CubeTensor, scale: f32) -> (CubeTensor, CubeTensor) {
        let [x, h, dh, grad] = [x, h, dh, grad].map(into_contiguous);
        let (d_in, rank, d_out) = (x.shape()[1], h.shape()[1], grad.shape()[1]);
        let da = CubeBackend::float_empty([d_in, rank].into(), &x.device, FloatDType::F32);
        let db = CubeBackend::float_empty([rank, d_out].into(), &x.device, FloatDType::F32);
        let (client, total) = (x.client.clone(), (d_in + d_out) * rank);
        let cube_dim = CubeDim::new(&client, total);
        let cube_count = calculate_cube_count_elemwise(&client, total, cube_dim);
        columns_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            x.into_tensor_arg(),
            h.into_tensor_arg(),
            dh.into_tensor_arg(),
            grad.into_tensor_arg(),
            da.clone().into_tensor_arg(),
            db.clone().into_tensor_arg(),
            scale,
            total,
        );
        (da, db)
    }
}

/// `(base + s2 · h q^T, h)` with `h = s1 · u p`, for `u` `[n, len]`, `p` `[len, rank]` and `q`
/// `[width, rank]` (either may be a transposed view); `out` is written only `with_out`.
fn rows(u: CubeTensor, p: CubeTensor, q: CubeTensor, base: CubeTensor, s1: f32, s2: f32, with_out: bool) -> (CubeTensor, CubeTensor) {
    let (n, rank) = (u.shape()[0], p.shape()[1]);
    debug_assert!(rank <= MAX_RANK, "the caller keeps ranks above {MAX_RANK} on burn's ops");
    // Shaped as `base` even when not written: fusion checks each output against its declared shape.
    let out = CubeBackend::float_empty(base.shape(), &u.device, FloatDType::F32);
    let h = CubeBackend::float_empty([n, rank].into(), &u.device, FloatDType::F32);
    let client = u.client.clone();
    rows_kernel::launch(
        &client,
        CubeCount::Static(n as u32, 1, 1),
        CubeDim::new_1d(THREADS as u32),
        u.into_tensor_arg(),
        p.into_tensor_arg(),
        q.into_tensor_arg(),
        base.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        h.clone().into_tensor_arg(),
        s1,
        s2,
        THREADS / 2,
        rank,
        THREADS,
        THREADS * rank,
        with_out,
    );
    (out, h)
}

/// Row `CUBE_POS_X`: `h = s1 · u p` (each thread a strided share of the row for every `r`, summed
/// in workgroup memory), then, when `with_out`, `out = base + s2 · h q^T` a column a thread.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rows_kernel(
    u: &Tensor<f32>,
    p: &Tensor<f32>,
    q: &Tensor<f32>,
    base: &Tensor<f32>,
    out: &mut Tensor<f32>,
    h: &mut Tensor<f32>,
    s1: f32,
    s2: f32,
    half_threads: usize,
    #[comptime] rank: usize,
    #[comptime] threads: usize,
    #[comptime] slots: usize,
    #[comptime] with_out: bool,
) {
    let (row, t) = (CUBE_POS_X as usize, UNIT_POS_X as usize);
    let len = u.shape(1);
    let mut sums = Shared::<[f32]>::new_slice(slots);
    for r in 0..rank {
        let mut partial = f32::new(0.0);
        let mut i = t;
        while i < len {
            partial += u[row * len + i] * p[i * p.stride(0) + r * p.stride(1)];
            i += threads;
        }
        sums[t * rank + r] = partial;
    }
    sync_cube();
    let mut stride = half_threads;
    while stride > 0 {
        if t < stride {
            for r in 0..rank {
                sums[t * rank + r] += sums[(t + stride) * rank + r];
            }
        }
        sync_cube();
        stride /= 2;
    }
    if t < rank {
        let value = s1 * sums[t];
        h[row * rank + t] = value;
        sums[t] = value;
    }
    sync_cube();
    if comptime![with_out] {
        let width = base.shape(1);
        let mut j = t;
        while j < width {
            let mut sum = f32::new(0.0);
            for r in 0..rank {
                sum += sums[r] * q[j * q.stride(0) + r * q.stride(1)];
            }
            out[row * width + j] = base[row * width + j] + s2 * sum;
            j += threads;
        }
    }
}

/// Threads below `d_in · rank`: `d a [i, r] = Σ_rows x [row, i] · d h [row, r]`; the rest:
/// `d b [r, j] = scale · Σ_rows h [row, r] · grad [row, j]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn columns_kernel(
    x: &Tensor<f32>,
    h: &Tensor<f32>,
    dh: &Tensor<f32>,
    grad: &Tensor<f32>,
    da: &mut Tensor<f32>,
    db: &mut Tensor<f32>,
    scale: f32,
    total: usize,
) {
    if ABSOLUTE_POS >= total {
        terminate!();
    }
    let (n, d_in, rank, d_out) = (x.shape(0), x.shape(1), h.shape(1), grad.shape(1));
    let mut sum = f32::new(0.0);
    if ABSOLUTE_POS < d_in * rank {
        let (i, r) = (ABSOLUTE_POS / rank, ABSOLUTE_POS % rank);
        for row in 0..n {
            sum += x[row * d_in + i] * dh[row * rank + r];
        }
        da[ABSOLUTE_POS] = sum;
    } else {
        let k = ABSOLUTE_POS - d_in * rank;
        let (r, j) = (k / d_out, k % d_out);
        for row in 0..n {
            sum += h[row * rank + r] * grad[row * d_out + j];
        }
        db[k] = scale * sum;
    }
}
