//! [`AttentionKernels`] on cubecl's GPU runtimes: one workgroup a (query row, head, batch row) for
//! the forward and the queries' backward, one a (key row, key/value head, batch row) for the keys'
//! and the values' backwards, which walk the queries of every head of the group. The row's own
//! vectors sit in workgroup memory; the other side is walked a chunk of `threads` rows at a time,
//! one row a thread for the scores and one output value a thread for the sums, in at most 4 KiB.
//! Inputs are read through their strides (as the projections laid them out); outputs are written
//! `[b, len, heads, hd]`, the projections' layout.

use burn::backend::TensorMetadata;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::FloatDType;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::decode_sampler_gpu::all_reduce;
use crate::train_attention::{AttentionKernels, STATS, rotated};

/// The sizes and the launch of one pass.
struct Pass {
    heads: usize,
    kv_heads: usize,
    t: usize,
    t_keys: usize,
    hd: usize,
    bias_rows: usize,
    batch: usize,
    threads: usize,
}

impl Pass {
    fn of(q: &CubeTensor, k: &CubeTensor, bias: &CubeTensor) -> Self {
        let (q_shape, k_shape) = (q.shape(), k.shape());
        let hd = q_shape[3];
        Self {
            batch: q_shape[0],
            heads: q_shape[1],
            kv_heads: k_shape[1],
            t: q_shape[2],
            t_keys: k_shape[2],
            hd,
            bias_rows: bias.shape()[0],
            threads: hd.next_power_of_two().max(32),
        }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }

    /// A workgroup for each of `rows` rows of each of `heads` heads and every batch row.
    fn count(&self, rows: usize, heads: usize) -> CubeCount {
        CubeCount::Static(rows as u32, heads as u32, self.batch as u32)
    }

    fn dim(&self) -> CubeDim {
        CubeDim::new_1d(self.threads as u32)
    }
}

fn empty(like: &CubeTensor, shape: [usize; 4]) -> CubeTensor {
    CubeBackend::float_empty(shape.into(), &like.device, FloatDType::F32)
}

impl AttentionKernels for CubeBackend {
    fn rotated_attention_forward(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        bias: CubeTensor,
        cos: CubeTensor,
        sin: CubeTensor,
    ) -> (CubeTensor, CubeTensor) {
        let (q, k) = rotated::<Self>(q, k, cos, sin);
        Self::attention_forward(q, k, v, bias)
    }

    fn attention_forward(q: CubeTensor, k: CubeTensor, v: CubeTensor, bias: CubeTensor) -> (CubeTensor, CubeTensor) {
        let p = Pass::of(&q, &k, &bias);
        let out = empty(&q, [p.batch, p.t, p.heads, p.hd]);
        let stats = empty(&q, [p.batch, p.heads, p.t, STATS]);
        let client = q.client.clone();
        forward_kernel::launch(
            &client,
            p.count(p.t, p.heads),
            p.dim(),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            stats.clone().into_tensor_arg(),
            p.t_keys,
            p.bias_rows,
            p.scale(),
            p.threads / 2,
            p.threads,
        );
        (out, stats)
    }

    fn attention_backward_queries(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        bias: CubeTensor,
        stats: CubeTensor,
        grad: CubeTensor,
    ) -> (CubeTensor, CubeTensor) {
        let p = Pass::of(&q, &k, &bias);
        let dq = empty(&q, [p.batch, p.t, p.heads, p.hd]);
        // D goes beside each query's maximum and sum: in place when no one else holds the stats.
        let stats = into_contiguous(stats);
        let stats = if stats.can_mut() { stats } else { stats.copy() };
        let client = q.client.clone();
        queries_kernel::launch(
            &client,
            p.count(p.t, p.heads),
            p.dim(),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            bias.into_tensor_arg(),
            stats.clone().into_tensor_arg(),
            grad.into_tensor_arg(),
            dq.clone().into_tensor_arg(),
            p.t_keys,
            p.bias_rows,
            p.scale(),
            p.threads / 2,
            p.threads,
        );
        (dq, stats)
    }

    fn attention_backward_keys_values(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        bias: CubeTensor,
        stats: CubeTensor,
        grad: CubeTensor,
    ) -> CubeTensor {
        let p = Pass::of(&q, &k, &bias);
        let out = CubeBackend::float_empty([2, p.batch, p.t_keys, p.kv_heads, p.hd].into(), &q.device, FloatDType::F32);
        let client = q.client.clone();
        key_side_kernel::launch(
            &client,
            CubeCount::Static(p.t_keys as u32, p.kv_heads as u32, 2 * p.batch as u32),
            p.dim(),
            q.into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            bias.into_tensor_arg(),
            into_contiguous(stats).into_tensor_arg(),
            grad.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            p.t,
            p.bias_rows,
            p.scale(),
            p.threads,
        );
        out
    }
}

/// Where row `i` of (`head`, `row`) of a `[b, h, len, hd]` tensor starts, by its strides.
#[cube]
fn row_at(t: &Tensor<f32>, row: usize, head: usize, i: usize) -> usize {
    row * t.stride(0) + head * t.stride(1) + i * t.stride(2)
}

/// Where row `i` of (`head`, `row`) of a `[b, len, h, hd]` tensor (the output's gradient) starts.
#[cube]
fn laid_out_at(t: &Tensor<f32>, row: usize, head: usize, i: usize) -> usize {
    row * t.stride(0) + i * t.stride(1) + head * t.stride(2)
}

/// `shared` (a head's vector in workgroup memory) dotted with row `at` of `t`.
#[cube]
fn dot_row(shared: &Shared<[f32]>, t: &Tensor<f32>, at: usize, hd: usize) -> f32 {
    let mut sum = f32::new(0.0);
    for d in 0..hd {
        sum += shared[d] * t[at + d * t.stride(3)];
    }
    sum
}

/// Where the bias of (`row`, query `i`) starts: `[b or 1, 1, t, t_keys]`.
#[cube]
fn bias_at(bias: &Tensor<f32>, bias_rows: usize, row: usize, i: usize) -> usize {
    let bias_row = select(bias_rows == 1, 0usize, row);
    bias_row * bias.stride(0) + i * bias.stride(2)
}

/// Query `CUBE_POS_X` of head `CUBE_POS_Y`, batch row `CUBE_POS_Z`: a one-pass softmax over the
/// keys a chunk at a time (the running maximum and sum rescale what came before), then the output
/// and the maximum and sum the backward rebuilds the probabilities from.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn forward_kernel(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    bias: &Tensor<f32>,
    out: &mut Tensor<f32>,
    stats: &mut Tensor<f32>,
    t_keys: usize,
    bias_rows: usize,
    scale: f32,
    half_threads: usize,
    #[comptime] threads: usize,
) {
    let (i, head, row, t) = (CUBE_POS_X as usize, CUBE_POS_Y as usize, CUBE_POS_Z as usize, UNIT_POS_X as usize);
    let (len, heads, hd) = (out.shape(1), out.shape(2), out.shape(3));
    let kv_head = head / (heads / k.shape(1));
    let mut query = Shared::<[f32]>::new_slice(threads);
    let mut weights = Shared::<[f32]>::new_slice(threads);
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    if t < hd {
        query[t] = q[row_at(q, row, head, i) + t * q.stride(3)];
    }
    sync_cube();
    let biases = bias_at(bias, bias_rows, row, i);
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = f32::new(0.0);
    let mut acc = f32::new(0.0);
    let mut start = 0usize;
    while start < t_keys {
        let j = start + t;
        let mut score = f32::new(-3.0e38);
        if j < t_keys {
            score = dot_row(&query, k, row_at(k, row, kv_head, j), hd) * scale + bias[biases + j * bias.stride(3)];
        }
        let new_max = f32::max(running_max, all_reduce(&mut scratch, score, half_threads, true));
        let weight = select(j < t_keys, f32::exp(score - new_max), f32::new(0.0));
        weights[t] = weight;
        let chunk_sum = all_reduce(&mut scratch, weight, half_threads, false);
        let correction = f32::exp(running_max - new_max);
        running_sum = running_sum * correction + chunk_sum;
        if t < hd {
            let mut sum = f32::new(0.0);
            let chunk = select(t_keys - start < threads, t_keys - start, threads);
            for c in 0..chunk {
                sum += weights[c] * v[row_at(v, row, kv_head, start + c) + t * v.stride(3)];
            }
            acc = acc * correction + sum;
        }
        running_max = new_max;
        sync_cube();
        start += threads;
    }
    let query_at = (row * heads + head) * len + i;
    if t < hd {
        out[((row * len + i) * heads + head) * hd + t] = acc / running_sum;
    }
    if t == 0 {
        stats[query_at * 3] = running_max;
        stats[query_at * 3 + 1] = running_sum;
    }
}

/// d q of one query: `D = sum_j p_j (dO · v_j)` first, then `dq = scale sum_j p_j (dO · v_j - D) k_j`;
/// D is written beside the query's maximum and sum for the keys' pass.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn queries_kernel(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    bias: &Tensor<f32>,
    stats: &mut Tensor<f32>,
    grad: &Tensor<f32>,
    dq: &mut Tensor<f32>,
    t_keys: usize,
    bias_rows: usize,
    scale: f32,
    half_threads: usize,
    #[comptime] threads: usize,
) {
    let (i, head, row, t) = (CUBE_POS_X as usize, CUBE_POS_Y as usize, CUBE_POS_Z as usize, UNIT_POS_X as usize);
    let (len, heads, hd) = (dq.shape(1), dq.shape(2), dq.shape(3));
    let kv_head = head / (heads / k.shape(1));
    let mut query = Shared::<[f32]>::new_slice(threads);
    let mut d_out = Shared::<[f32]>::new_slice(threads);
    let mut weights = Shared::<[f32]>::new_slice(threads);
    let mut scratch = Shared::<[f32]>::new_slice(threads);
    if t < hd {
        query[t] = q[row_at(q, row, head, i) + t * q.stride(3)];
        d_out[t] = grad[laid_out_at(grad, row, head, i) + t * grad.stride(3)];
    }
    sync_cube();
    let query_at = (row * heads + head) * len + i;
    let (max, sum) = (stats[query_at * 3], stats[query_at * 3 + 1]);
    let biases = bias_at(bias, bias_rows, row, i);
    let mut partial = f32::new(0.0);
    let mut j = t;
    while j < t_keys {
        let p = f32::exp(dot_row(&query, k, row_at(k, row, kv_head, j), hd) * scale + bias[biases + j * bias.stride(3)] - max) / sum;
        partial += p * dot_row(&d_out, v, row_at(v, row, kv_head, j), hd);
        j += threads;
    }
    let big_d = all_reduce(&mut scratch, partial, half_threads, false);
    let mut acc = f32::new(0.0);
    let mut start = 0usize;
    while start < t_keys {
        let j = start + t;
        let mut ds = f32::new(0.0);
        if j < t_keys {
            let p = f32::exp(dot_row(&query, k, row_at(k, row, kv_head, j), hd) * scale + bias[biases + j * bias.stride(3)] - max) / sum;
            ds = p * (dot_row(&d_out, v, row_at(v, row, kv_head, j), hd) - big_d);
        }
        weights[t] = ds;
        sync_cube();
        if t < hd {
            let chunk = select(t_keys - start < threads, t_keys - start, threads);
            for c in 0..chunk {
                acc += weights[c] * k[row_at(k, row, kv_head, start + c) + t * k.stride(3)];
            }
        }
        sync_cube();
        start += threads;
    }
    if t < hd {
        dq[((row * len + i) * heads + head) * hd + t] = acc * scale;
    }
    if t == 0 {
        stats[query_at * 3 + 2] = big_d;
    }
}

/// Key `CUBE_POS_X` of key/value head `CUBE_POS_Y`, batch row `CUBE_POS_Z` (the first `b`; the
/// values' the next `b`), over the `len` queries of each of its group's query heads: d k = `scale
/// sum_i p_ij (dO_i · v_j - D_i) q_i` into `out[0]`; d v = `sum_i p_ij dO_i` into `out[1]`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn key_side_kernel(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    bias: &Tensor<f32>,
    stats: &Tensor<f32>,
    grad: &Tensor<f32>,
    out: &mut Tensor<f32>,
    len: usize,
    bias_rows: usize,
    scale: f32,
    #[comptime] threads: usize,
) {
    let (j, kv_head, t) = (CUBE_POS_X as usize, CUBE_POS_Y as usize, UNIT_POS_X as usize);
    let (batch, t_keys, kv_heads, hd) = (out.shape(1), out.shape(2), out.shape(3), out.shape(4));
    // The first half of the workgroups take d k, the second d v.
    let keys = (CUBE_POS_Z as usize) < batch;
    let row = select(keys, CUBE_POS_Z as usize, CUBE_POS_Z as usize - batch);
    let part = select(keys, 0usize, 1usize);
    let heads = q.shape(1);
    let groups = heads / kv_heads;
    let mut key = Shared::<[f32]>::new_slice(threads);
    let mut value = Shared::<[f32]>::new_slice(threads);
    let mut weights = Shared::<[f32]>::new_slice(threads);
    if t < hd {
        key[t] = k[row_at(k, row, kv_head, j) + t * k.stride(3)];
        if keys {
            value[t] = v[row_at(v, row, kv_head, j) + t * v.stride(3)];
        }
    }
    sync_cube();
    // The group's queries, head after head: query `n` is query `n % len` of head `first + n / len`.
    let (first, total) = (kv_head * groups, groups * len);
    let mut acc = f32::new(0.0);
    let mut start = 0usize;
    while start < total {
        let n = start + t;
        let mut weight = f32::new(0.0);
        if n < total {
            let (head, i) = (first + n / len, n % len);
            let query_at = (row * heads + head) * len + i;
            let score = dot_row(&key, q, row_at(q, row, head, i), hd) * scale + bias[bias_at(bias, bias_rows, row, i) + j * bias.stride(3)];
            weight = f32::exp(score - stats[query_at * 3]) / stats[query_at * 3 + 1];
            if keys {
                weight *= dot_row(&value, grad, laid_out_at(grad, row, head, i), hd) - stats[query_at * 3 + 2];
            }
        }
        weights[t] = weight;
        sync_cube();
        if t < hd {
            let chunk = select(total - start < threads, total - start, threads);
            for c in 0..chunk {
                let (head, i) = (first + (start + c) / len, (start + c) % len);
                // d k sums the queries, d v the output's gradients.
                let mut side = grad[laid_out_at(grad, row, head, i) + t * grad.stride(3)];
                if keys {
                    side = q[row_at(q, row, head, i) + t * q.stride(3)];
                }
                acc += weights[c] * side;
            }
        }
        sync_cube();
        start += threads;
    }
    if t < hd {
        let mut result = acc;
        if keys {
            result *= scale;
        }
        out[(((part * batch + row) * t_keys + j) * kv_heads + kv_head) * hd + t] = result;
    }
}
