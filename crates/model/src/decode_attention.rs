//! A decoded token's attention in one kernel on a GPU: its query and key rotated, its key and value
//! written into the layer's cache in place, and the query's softmax over every cached key, grouped
//! heads reading their shared key/value head without repeating it. Taken apart (rotation of halves,
//! two concatenations that copy the whole cache, grouped attention's reshapes and masks, burn's
//! attention) a token's attention was some twenty kernels a layer, each a launch a person waits on.
//!
//! The cache holds room for more tokens than it has (`LayerCache`'s capacity, doubled when full),
//! so a token's key and value are written where they go instead of the cache being copied. The
//! CPU decodes through the same cache: its own attention here, written in place, each key/value
//! head's keys and values read once for the query heads that share it. Through burn's ops the
//! CPU had concatenated two fresh copies of the whole cache every token and layer (at 500 tokens
//! of SmolLM2, about an eighth of a token's time went to copying them and zeroing new pages).

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::gated::as_f32;
use crate::kv_cache::MASKED;
use crate::log_softmax::{on_cpu_backend, values};
use crate::own_kernels::attention_fits;
use crate::row_kernels::{LANES, exp, row_max, simd};
use rayon::prelude::*;

/// Keys times head dimensions times query heads of a token's attention (every row's) from which
/// its groups go to rayon's threads (a fraction of a millisecond; one answer stays on one thread
/// until its context passes 500 tokens, where waking a thread had cost about what it saved).
const PARALLEL_ATTENTION: usize = 1 << 19;

/// The shape of one decoded token's attention in a layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Keys cached before this token: where its key and value go.
    pub len: usize,
    /// A sliding-window layer sees this many keys back, itself included; 0 sees them all.
    pub window: usize,
    /// Scores are `q · k * scale`.
    pub scale: f32,
}

/// Whether inference on tensors on these `devices` runs this crate's fused GPU kernels (this
/// attention, `rms_norm.rs`, `decode_products.rs`, `decode_sampler.rs`): every one on cubecl's GPU
/// runtimes and none tracked by autodiff. Every input counts: while a model trains, a frozen part
/// of it (a packed embedding) gives tensors on the plain device beside tracked ones, and an op
/// taking both must keep the tracked one's gradient. The CPU keeps its paths.
pub(crate) fn fused_for(devices: &[Device]) -> bool {
    devices.iter().all(fused_on)
}

fn fused_on(device: &Device) -> bool {
    !device.is_autodiff() && crate::own_kernels::on_gpu_kernels(device)
}

/// Whether a decoded token's attention on these `devices`, heads of `head_dim`, goes through
/// [`LayerCache::attend_one`](crate::kv_cache::LayerCache::attend_one): on the CPU, and on a GPU
/// where the kernel takes the heads; never with an input autodiff tracks.
pub(crate) fn attends_in_place(devices: &[Device], head_dim: usize) -> bool {
    devices.iter().all(|device| !device.is_autodiff() && (on_cpu_backend(device) || fused_on(device) && attention_fits(head_dim)))
}

/// One decoded token's attention, `[b, heads * hd]`: `q` `[b, heads * hd]`, `k`, `v`
/// `[b, kv_heads * hd]` as the projections made them; `cos`, `sin` `[b, hd]` the token's rotation
/// (none for a family without rotary embeddings); `cache` `[2, b, kv_heads, capacity, hd]` the
/// keys and values, with room at `shape.len`; `bias` `[b or 1, len + 1]` the additive mask of
/// padded keys. Returns the output and the cache holding the new key and value.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend_one(
    q: Tensor<2>,
    k: Tensor<2>,
    v: Tensor<2>,
    rope: Option<(Tensor<2>, Tensor<2>)>,
    cache: Tensor<5>,
    bias: Tensor<2>,
    shape: DecodeShape,
) -> (Tensor<2>, Tensor<5>) {
    let rotary = rope.is_some();
    // Without a rotation no angle is read; the two are values of their own (WebGPU refuses a
    // buffer bound twice in one launch where a binding may write).
    let (cos, sin) = rope.unwrap_or_else(|| (Tensor::empty([1, 1], &q.device()), Tensor::empty([1, 1], &q.device())));
    let (out, cache) = <Dispatch as DecodeAttention>::decode_attention(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        cache.into_dispatch(),
        cos.into_dispatch(),
        sin.into_dispatch(),
        bias.into_dispatch(),
        DecodeStep { shape, rotary },
    );
    (Tensor::from_dispatch(out), Tensor::from_dispatch(cache))
}

/// [`DecodeShape`] and whether the query and key are rotated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeStep {
    pub shape: DecodeShape,
    pub rotary: bool,
}

/// One decoded token's attention over a cache with room for it (see [`attend_one`]).
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait DecodeAttention: Backend {
    /// `(out [b, heads * hd], cache)`; seven tensors, the most WebGPU's default limits bind at once.
    #[allow(clippy::too_many_arguments)]
    #[fusion(meta = |q, _k, _v, cache, _cos, _sin, _bias, _step| (q.clone(), cache.clone()))]
    fn decode_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cache: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        step: DecodeStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

impl DecodeAttention for Flex {
    fn decode_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cache: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        step: DecodeStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let DecodeShape { heads, kv_heads, head_dim: hd, len, window, scale } = step.shape;
        let (cache_shape, bias_rows) = (cache.shape(), bias.shape()[0]);
        let (q, k, v, cos, sin, bias) = (values(&q), values(&k), values(&v), values(&cos), values(&sin), values(&bias));
        // Written where it lies: a cache this token's call owns is not copied (a view is, once).
        let whole = cache.is_contiguous() && cache.layout().start_offset() == 0 && cache.bytes().len() == cache_shape.num_elements() * 4;
        let mut cache = if whole && cache.dtype() == DType::F32 { cache } else { as_f32(cache).to_contiguous() };
        let slots = cache.storage_mut::<f32>();
        let (capacity, batch, group) = (cache_shape[3], q.len() / (heads * hd), heads / kv_heads);
        let values_at = slots.len() / 2;
        let rotate = |b: usize, x: &[f32]| -> Vec<f32> {
            if !step.rotary {
                return x.to_vec();
            }
            let (cos, sin, half) = (&cos[b * hd..(b + 1) * hd], &sin[b * hd..(b + 1) * hd], hd / 2);
            (0..hd).map(|i| x[i] * cos[i] + if i < half { -x[i + half] } else { x[i - half] } * sin[i]).collect()
        };
        let cached = |b: usize, kv: usize, j: usize| ((b * kv_heads + kv) * capacity + j) * hd;
        // 1. Each row's new key (rotated) and value into the cache.
        for b in 0..batch {
            for kv in 0..kv_heads {
                let (at, new) = (cached(b, kv, len), (b * kv_heads + kv) * hd);
                slots[at..at + hd].copy_from_slice(&rotate(b, &k[new..new + hd]));
                slots[values_at + at..values_at + at + hd].copy_from_slice(&v[new..new + hd]);
            }
        }
        // 2. The query heads sharing a key/value head together (its keys and values read once), a
        // row's group a job: `out`'s rows of heads `kv * group..` of row `b`.
        let slots: &[f32] = slots;
        let attend = |scores: &mut Vec<f32>, (job, rows): (usize, &mut [f32])| {
            let (b, kv) = (job / kv_heads, job % kv_heads);
            let bias = &bias[if bias_rows == 1 { 0 } else { b * (len + 1) }..][..len + 1];
            let first = b * heads + kv * group;
            let rotated: Vec<f32> = (first..first + group).flat_map(|h| rotate(b, &q[h * hd..][..hd])).collect();
            let (keys, values) = (&slots[cached(b, kv, 0)..][..(len + 1) * hd], &slots[values_at + cached(b, kv, 0)..][..(len + 1) * hd]);
            let (queries, keys_seen) = (&rotated[..], (window, scale));
            simd!((), |queries: &'a [f32],
                       keys: &'a [f32],
                       values: &'a [f32],
                       bias: &'a [f32],
                       keys_seen: (usize, f32),
                       scores: &'a mut Vec<f32>,
                       rows: &'a mut [f32]| { attend_group(queries, keys, values, bias, keys_seen, scores, rows) });
        };
        let mut out = vec![0.0; q.len()];
        // Split over rayon's threads once the cache is long enough to pay for the fork: a serial
        // attention was 3% of a batch of eight's samples at two threads, the other thread waiting.
        if batch * heads * (len + 1) * hd >= PARALLEL_ATTENTION {
            out.par_chunks_mut(group * hd).enumerate().for_each_init(Vec::new, attend);
        } else {
            let mut scores = Vec::with_capacity(group * (len + 1));
            out.chunks_mut(group * hd).enumerate().for_each(|job| attend(&mut scores, job));
        }
        (FlexTensor::from_data(TensorData::new(out, [batch, heads * hd])), cache)
    }
}

/// The attention of the query heads `queries` (`[group, hd]`) sharing cached `keys` and `values`
/// (`[len + 1, hd]` each) into `rows` (`[group, hd]`, zeros): `bias` the keys' additive mask,
/// `(window, scale)` as in [`DecodeShape`]; `scores` room for `[group, len + 1]`. Each key and
/// value is read once for the group (they outgrow the caches as an answer grows). In [`LANES`]
/// partial sums and no FMA, as `row_kernels.rs` sums, so the SIMD level changes the speed only.
#[inline(always)]
fn attend_group(
    queries: &[f32],
    keys: &[f32],
    values: &[f32],
    bias: &[f32],
    (window, scale): (usize, f32),
    scores: &mut Vec<f32>,
    rows: &mut [f32],
) {
    let (hd, keys_count) = (keys.len() / bias.len(), bias.len());
    let (group, len) = (queries.len() / hd, keys_count - 1);
    // Plain loops: a closure handed to an iterator adapter is compiled on its own, without the
    // SIMD level `simd!` compiled this for.
    scores.clear();
    scores.resize(group * keys_count, 0.0);
    for (j, key) in keys.chunks_exact(hd).enumerate() {
        let hidden = if window > 0 && len >= j + window { MASKED } else { 0.0 };
        for (g, query) in queries.chunks_exact(hd).enumerate() {
            scores[g * keys_count + j] = dot(query, key) * scale + bias[j] + hidden;
        }
    }
    for head_scores in scores.chunks_exact_mut(keys_count) {
        let max = row_max(head_scores);
        for s in head_scores.iter_mut() {
            *s = exp(*s - max);
        }
        let total = lanes_sum(head_scores);
        for s in head_scores.iter_mut() {
            *s /= total;
        }
    }
    for (j, value) in values.chunks_exact(hd).enumerate() {
        for (g, row) in rows.chunks_exact_mut(hd).enumerate() {
            let weight = scores[g * keys_count + j];
            for (o, v) in row.iter_mut().zip(value) {
                *o += weight * v;
            }
        }
    }
}

/// `a · b` in [`LANES`] partial sums.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (a8, a_rest) = a.as_chunks::<LANES>();
    let (b8, b_rest) = b.as_chunks::<LANES>();
    for (a, b) in a8.iter().zip(b8) {
        for ((lane, a), b) in lanes.iter_mut().zip(a).zip(b) {
            *lane += a * b;
        }
    }
    let mut rest = 0.0;
    for (a, b) in a_rest.iter().zip(b_rest) {
        rest += a * b;
    }
    lanes.into_iter().sum::<f32>() + rest
}

/// `Σ x` in [`LANES`] partial sums.
#[inline(always)]
fn lanes_sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (x8, rest) = x.as_chunks::<LANES>();
    for x in x8 {
        for (lane, x) in lanes.iter_mut().zip(x) {
            *lane += x;
        }
    }
    lanes.into_iter().sum::<f32>() + rest.iter().sum::<f32>()
}

impl<B: Backend + DecodeAttention, C: CheckpointStrategy> DecodeAttention for Autodiff<B, C> {
    fn decode_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        cache: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        step: DecodeStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        // Never reached with a tracked input ([`fused_for`]): the inner backend's forward, untracked.
        let i = Self::inner;
        let (out, cache) = B::decode_attention(i(q), i(k), i(v), i(cache), i(cos), i(sin), i(bias), step);
        (Self::from_inner(out), Self::from_inner(cache))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Distribution, Int};

    use super::*;
    use crate::decoder::grouped_attention;
    use crate::kv_cache::{LayerCache, attention_bias, window_bias};
    use crate::rope::{Rotary, apply_rope};

    const B: usize = 2;
    const H: usize = 4;
    const KV: usize = 2;
    const HD: usize = 8;

    fn random<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
    }

    /// A token's attention through the cache as the unfused path takes it and as
    /// [`LayerCache::attend_one`] does, two tokens in a row (the first turns the two tensors the
    /// prompt left into one with room), with a padded row and a sliding window; then the unfused
    /// path on the roomy cache gives back every key and value. `cached` keys before the first.
    fn compare(window: usize, cached: usize) {
        let device = Device::flex();
        let rotary = Rotary { inv_freq: (0..HD / 2).map(|i| 1.0 / 10_000f32.powf(2.0 * i as f32 / HD as f32)).collect() };
        let (k0, v0) = (random([B, KV, cached, HD], &device), random([B, KV, cached, HD], &device));
        let (mut unfused, mut fused) = (LayerCache::default(), LayerCache::default());
        unfused.append(k0.clone(), v0.clone());
        fused.append(k0, v0);
        // Row 1 is left-padded by 3 tokens.
        let mut mask: Vec<i64> = (0..B * cached).map(|i| i64::from(i < cached || i % cached >= 3)).collect();
        for step in 0..2 {
            let keys = cached + step + 1;
            mask = (0..B).flat_map(|row| mask[row * (keys - 1)..(row + 1) * (keys - 1)].iter().copied().chain([1])).collect();
            let mask = Tensor::<2, Int>::from_data(TensorData::new(mask.clone(), [B, keys]), &device);
            let mut bias = attention_bias(Some(mask), 1, keys, &device); // [b, 1, 1, keys]
            if window > 0 {
                bias = bias + window_bias(1, keys, window, &device);
            }
            let positions = Tensor::<2, Int>::from_data(TensorData::new(vec![keys as i64 - 1, keys as i64 - 4], [B, 1]), &device);
            let rope = rotary.cos_sin(positions); // [b, 1, 1, hd] each
            let (q, k, v) = (random([B, H * HD], &device), random([B, KV * HD], &device), random([B, KV * HD], &device));

            let heads = |x: Tensor<2>, n: usize| x.reshape([B, 1, n, HD]).swap_dims(1, 2); // [b, n, 1, hd]
            let (q4, k4) = (apply_rope(heads(q.clone(), H), &rope), apply_rope(heads(k.clone(), KV), &rope));
            let (all_k, all_v) = unfused.append(k4, heads(v.clone(), KV));
            let expected = grouped_attention(q4, all_k, all_v, bias.clone()).reshape([B, H * HD]);

            let (cos, sin) = (rope.0.reshape([B, HD]), rope.1.reshape([B, HD]));
            let shape = DecodeShape { heads: H, kv_heads: KV, head_dim: HD, len: 0, window, scale: (HD as f32).sqrt().recip() };
            let bias_rows = bias.dims()[0];
            let got = fused.attend_one([q, k, v], Some((cos, sin)), bias.reshape([bias_rows, keys]), shape);
            let gap: f32 = (got - expected).abs().max().into_scalar();
            assert!(gap < 1e-5, "token {step}, window {window}: {gap} apart");
        }
        let (k, v) = (random([B, KV, 2, HD], &device), random([B, KV, 2, HD], &device));
        let (expected, got) = (unfused.append(k.clone(), v.clone()), fused.append(k, v));
        let gap = |a: Tensor<4>, b: Tensor<4>| -> f32 { (a - b).abs().max().into_scalar() };
        let gap = gap(expected.0, got.0).max(gap(expected.1, got.1));
        assert!(gap < 1e-6, "the cache read back by the unfused path: {gap} apart");
    }

    #[test]
    fn a_decoded_token_attends_through_the_cache_as_the_unfused_path_does() {
        compare(0, 33); // past the cache's first room of 32
    }

    #[test]
    fn a_decoded_token_in_a_sliding_window_sees_only_the_window() {
        compare(5, 33);
    }

    #[test]
    fn a_long_cache_splits_its_heads_over_the_threads_and_attends_as_the_unfused_path_does() {
        compare(0, PARALLEL_ATTENTION / (B * H * HD));
    }
}
