//! [`DecodeAttention`] on cubecl's GPU runtimes: one workgroup a (row, query head). Its threads
//! rotate the query and the head's new key into workgroup memory, then go over the cached keys a
//! chunk of `threads` at a time, one key a thread for the scores and one output value a thread for
//! the weighted values, keeping a running maximum and sum (the softmax in one pass, rescaled as the
//! maximum grows), so any length of cache fits in 3 KiB of workgroup memory: inside WebGPU's
//! default 16 KiB, with no subgroup operations.
//!
//! The first query head of each group writes the new key and value into the cache; every head
//! reads them from its own workgroup memory, so no workgroup waits on another.

use burn::backend::TensorMetadata;
use burn_cubecl::CubeBackend;
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::tensor::CubeTensor;
use cubecl::prelude::*;
use cubecl::{CubeCount, CubeDim};

use crate::decode_attention::{DecodeAttention, DecodeShape, DecodeStep};
use crate::kv_cache::MASKED;

impl DecodeAttention for CubeBackend {
    fn decode_attention(
        q: CubeTensor,
        k: CubeTensor,
        v: CubeTensor,
        cache: CubeTensor,
        cos: CubeTensor,
        sin: CubeTensor,
        bias: CubeTensor,
        step: DecodeStep,
    ) -> (CubeTensor, CubeTensor) {
        let [k, v, cos, sin, bias] = [k, v, cos, sin, bias].map(into_contiguous);
        // The kernel writes the new key and value into the cache, and each head's output over its
        // own query: in place when no one else holds them (decoding's case), into copies otherwise.
        let writable = |t: CubeTensor| {
            let t = into_contiguous(t);
            if t.can_mut() { t } else { t.copy() }
        };
        let (q, cache) = (writable(q), writable(cache));
        let DecodeShape { heads, kv_heads, head_dim, len, window, scale } = step.shape;
        let (batch, capacity, bias_rows) = (q.shape()[0], cache.shape()[3], bias.shape()[0]);
        let threads = head_dim.next_power_of_two().max(32) as u32;
        let client = q.client.clone();
        decode_attention_kernel::launch(
            &client,
            CubeCount::Static(heads as u32, batch as u32, 1),
            CubeDim::new_1d(threads),
            q.clone().into_tensor_arg(),
            k.into_tensor_arg(),
            v.into_tensor_arg(),
            cache.clone().into_tensor_arg(),
            cos.into_tensor_arg(),
            sin.into_tensor_arg(),
            bias.into_tensor_arg(),
            heads / kv_heads,
            kv_heads,
            head_dim,
            capacity,
            batch * kv_heads * capacity * head_dim,
            len,
            window,
            bias_rows,
            scale,
            threads as usize / 2,
            step.rotary,
            threads as usize,
        );
        (q, cache)
    }
}

/// Where value `i`'s partner in HF's `rotate_half` lies in its head of `head_dim` values.
#[cube]
fn partner(i: usize, head_dim: usize) -> usize {
    let half = head_dim / 2;
    if i < half { i + half } else { i - half }
}

/// Value `i` of a head (`value`, and the value at [`partner`]) rotated by the angles at `angles`
/// (HF's `x cos + rotate_half(x) sin`), or as it is without a rotation (no angle read then).
#[cube]
#[allow(clippy::too_many_arguments)]
fn rotated(
    value: f32,
    partner: f32,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    angles: usize,
    i: usize,
    head_dim: usize,
    #[comptime] rotary: bool,
) -> f32 {
    let mut out = value;
    if comptime![rotary] {
        out = value * cos[angles + i] + select(i < head_dim / 2, -partner, partner) * sin[angles + i];
    }
    out
}

/// Seven tensors, the most WebGPU's default limits bind at once: the output goes over the query.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel(
    q: &mut Tensor<f32>,     // [b, heads * hd]: the queries in, the outputs out
    k: &Tensor<f32>,         // [b, kv * hd]
    v: &Tensor<f32>,         // [b, kv * hd]
    cache: &mut Tensor<f32>, // [2, b, kv, capacity, hd]: keys, then values
    cos: &Tensor<f32>,       // [b, hd]
    sin: &Tensor<f32>,       // [b, hd]
    bias: &Tensor<f32>,      // [b or 1, len + 1]
    group: usize,
    kv_heads: usize,
    head_dim: usize,
    capacity: usize,
    values_at: usize,
    len: usize,
    window: usize,
    bias_rows: usize,
    scale: f32,
    half_threads: usize,
    #[comptime] rotary: bool,
    #[comptime] threads: usize,
) {
    let (head, row, t) = (CUBE_POS_X as usize, CUBE_POS_Y as usize, UNIT_POS_X as usize);
    let heads = group * kv_heads;
    let kv_head = head / group;
    let mut query = Shared::<[f32]>::new_slice(threads);
    let mut new_value = Shared::<[f32]>::new_slice(threads);
    let mut new_key = Shared::<[f32]>::new_slice(threads);
    let mut weights = Shared::<[f32]>::new_slice(threads);
    let mut scratch = Shared::<[f32]>::new_slice(threads);

    // 1. The query and the new key rotated, the new value; the group's first head caches the pair.
    let cache_row = (row * kv_heads + kv_head) * capacity;
    if t < head_dim {
        let new_at = (row * kv_heads + kv_head) * head_dim;
        let (query_at, other) = ((row * heads + head) * head_dim, partner(t, head_dim));
        query[t] = rotated(q[query_at + t], q[query_at + other], cos, sin, row * head_dim, t, head_dim, rotary);
        new_key[t] = rotated(k[new_at + t], k[new_at + other], cos, sin, row * head_dim, t, head_dim, rotary);
        new_value[t] = v[new_at + t];
        if head % group == 0 {
            cache[(cache_row + len) * head_dim + t] = new_key[t];
            cache[values_at + (cache_row + len) * head_dim + t] = new_value[t];
        }
    }
    sync_cube();

    // 2. The keys a chunk at a time: scores, the chunk's maximum and weights, the running sums.
    let bias_at = select(bias_rows == 1, 0usize, row) * (len + 1);
    let total = len + 1;
    let mut running_max = f32::new(-3.0e38);
    let mut running_sum = f32::new(0.0);
    let mut acc = f32::new(0.0);
    let mut start = 0usize;
    while start < total {
        let j = start + t;
        let mut score = f32::new(-3.0e38);
        if j < total {
            let mut dot = f32::new(0.0);
            if j == len {
                for i in 0..head_dim {
                    dot += query[i] * new_key[i];
                }
            } else {
                for i in 0..head_dim {
                    dot += query[i] * cache[(cache_row + j) * head_dim + i];
                }
            }
            let outside = window > 0 && len >= j + window;
            score = dot * scale + bias[bias_at + j] + select(outside, f32::new(MASKED), f32::new(0.0));
        }
        scratch[t] = score;
        sync_cube();
        let mut stride = half_threads;
        while stride > 0 {
            if t < stride {
                scratch[t] = f32::max(scratch[t], scratch[t + stride]);
            }
            sync_cube();
            stride /= 2;
        }
        let chunk_max = scratch[0];
        sync_cube();
        let new_max = f32::max(running_max, chunk_max);
        let weight = select(j < total, f32::exp(score - new_max), f32::new(0.0));
        weights[t] = weight;
        scratch[t] = weight;
        sync_cube();
        stride = half_threads;
        while stride > 0 {
            if t < stride {
                scratch[t] += scratch[t + stride];
            }
            sync_cube();
            stride /= 2;
        }
        let correction = f32::exp(running_max - new_max);
        running_sum = running_sum * correction + scratch[0];
        if t < head_dim {
            let mut sum = f32::new(0.0);
            let chunk = select(total - start < threads, total - start, threads);
            for c in 0..chunk {
                let key = start + c;
                let mut value = new_value[t];
                if key != len {
                    value = cache[values_at + (cache_row + key) * head_dim + t];
                }
                sum += weights[c] * value;
            }
            acc = acc * correction + sum;
        }
        running_max = new_max;
        sync_cube();
        start += threads;
    }

    // 3. The weighted values, normalised.
    if t < head_dim {
        q[(row * heads + head) * head_dim + t] = acc / running_sum;
    }
}
