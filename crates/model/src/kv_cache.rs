//! What every architecture's attention shares: the additive mask (causal, and padded keys hidden)
//! and the KV cache of a batch being decoded. Keys and values are cached as the layer makes them,
//! before any repetition for grouped-query attention, so a cache holds only the key/value heads.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::decode_attention::{DecodeShape, attend_one};

/// Added to the attention score of a hidden key. Finite rather than -inf so that a row with every
/// key hidden (a padding query) gives a uniform softmax instead of NaN — NaN would poison gradients.
pub(crate) const MASKED: f32 = -1e9;

/// Additive attention bias `[batch or 1, 1, t_query, t_keys]`: the queries are the last
/// `t_query` of `t_keys` positions and see keys at or before themselves, and no padded key.
pub(crate) fn attention_bias(mask: Option<Tensor<2, Int>>, t_query: usize, t_keys: usize, device: &Device) -> Tensor<4> {
    let offset = t_keys - t_query;
    let causal: Vec<f32> = (0..t_query).flat_map(|i| (0..t_keys).map(move |j| if j <= offset + i { 0.0 } else { MASKED })).collect();
    let causal = Tensor::<2>::from_data(TensorData::new(causal, [t_query, t_keys]), device).reshape([1, 1, t_query, t_keys]);
    match mask {
        None => causal,
        Some(mask) => {
            let [b, _] = mask.dims();
            let hidden_keys = (mask.float().neg() + 1.0) * MASKED; // [b, t_keys]
            causal + hidden_keys.reshape([b, 1, 1, t_keys])
        }
    }
}

/// Additive bias `[1, 1, t_query, t_keys]` that hides keys `window` or more positions before their
/// query (the queries are the last `t_query` of `t_keys`), as a sliding-window layer sees them.
/// Added to [`attention_bias`]; with a KV cache, positions count the cached tokens too.
pub(crate) fn window_bias(t_query: usize, t_keys: usize, window: usize, device: &Device) -> Tensor<4> {
    let offset = t_keys - t_query;
    let hidden: Vec<f32> =
        (0..t_query).flat_map(|i| (0..t_keys).map(move |j| if offset + i >= j + window { MASKED } else { 0.0 })).collect();
    Tensor::<2>::from_data(TensorData::new(hidden, [t_query, t_keys]), device).reshape([1, 1, t_query, t_keys])
}

/// Keys and values of one layer for the tokens seen so far. A prompt's pass keeps them as two
/// tensors `[b, kv_heads, len, head_dim]` and concatenates what follows; decoding a token at a
/// time keeps them as one `[2, b, kv_heads, capacity, head_dim]` (keys, then values) with room
/// after the first `len` positions, where each new token is written ([`LayerCache::attend_one`]).
#[derive(Debug, Default, Clone)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
    roomy: Option<Tensor<5>>,
    len: usize,
}

/// Positions a GPU's cache makes room for at least when it grows (it doubles otherwise).
const MIN_ROOM: usize = 32;

impl LayerCache {
    /// Appends the new keys and values; returns all of them.
    pub(crate) fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let past = self.kv.take().or_else(|| {
            let roomy = self.roomy.take()?.narrow(3, 0, self.len); // [2, b, kv, len, hd]
            let [_, b, kv, len, hd] = roomy.dims();
            let half = |i: usize| roomy.clone().narrow(0, i, 1).reshape([b, kv, len, hd]);
            Some((half(0), half(1)))
        });
        let kv = match past {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.len = kv.0.dims()[2];
        self.kv = Some(kv.clone());
        kv
    }

    /// [`LayerCache::attend_one`] as a rotary family's layer holds its inputs: the token's angles
    /// `(cos, sin)` `[b, 1, 1, hd]`, the mask `[b or 1, 1, 1, len + 1]`.
    pub(crate) fn attend_rotated(
        &mut self,
        qkv: [Tensor<2>; 3],
        (cos, sin): &(Tensor<4>, Tensor<4>),
        bias: Tensor<4>,
        shape: DecodeShape,
    ) -> Tensor<2> {
        let (b, hd) = (qkv[0].dims()[0], shape.head_dim);
        let rope = Some((cos.clone().reshape([b, hd]), sin.clone().reshape([b, hd])));
        let [bias_rows, _, _, keys] = bias.dims();
        self.attend_one(qkv, rope, bias.reshape([bias_rows, keys]), shape)
    }

    /// One decoded token's attention through the cache, `[b, heads * hd]`, its key and value kept
    /// (see [`attend_one`]): `q` `[b, heads * hd]`, `k`, `v` `[b, kv_heads * hd]` unrotated,
    /// `rope` the token's `(cos, sin)` `[b, hd]`, `bias` `[b or 1, len + 1]` the padded keys' mask.
    pub(crate) fn attend_one(
        &mut self,
        [q, k, v]: [Tensor<2>; 3],
        rope: Option<(Tensor<2>, Tensor<2>)>,
        bias: Tensor<2>,
        shape: DecodeShape,
    ) -> Tensor<2> {
        let (b, device) = (q.dims()[0], q.device());
        let (kv, hd) = (shape.kv_heads, shape.head_dim);
        let room = |positions: usize| Tensor::<5>::zeros([2, b, kv, positions.max(MIN_ROOM), hd], &device);
        let grown = |cache: Tensor<5>| {
            let held = cache.dims()[3];
            Tensor::cat(vec![cache, room(held)], 3)
        };
        let cache = match (self.roomy.take(), self.kv.take()) {
            (Some(cache), _) if cache.dims()[3] > self.len => cache,
            (Some(cache), _) => grown(cache),
            (None, Some((keys, values))) => grown(Tensor::stack(vec![keys, values], 0)),
            (None, None) => room(0),
        };
        let (out, cache) = attend_one(q, k, v, rope, cache, bias, DecodeShape { len: self.len, ..shape });
        self.roomy = Some(cache);
        self.len += 1;
        out
    }
}

/// The KV cache of a whole model for a batch being decoded, plus which cached keys are padding.
#[derive(Debug, Default, Clone)]
pub struct KvCache {
    pub(crate) layers: Vec<LayerCache>,
    key_mask: Option<Tensor<2, Int>>,
}

impl KvCache {
    /// Tokens held so far (padding included).
    pub fn len(&self) -> usize {
        self.key_mask.as_ref().map_or(0, |m| m.dims()[1])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records `attention_mask` (`[b, t]`, the new tokens) after the cached ones and gives the bias
    /// for the new queries over every key; makes room for `layers` layers on first use.
    pub(crate) fn extend(&mut self, attention_mask: Tensor<2, Int>, layers: usize) -> Tensor<4> {
        let t = attention_mask.dims()[1];
        let device = attention_mask.device();
        let key_mask = match self.key_mask.take() {
            Some(past) => Tensor::cat(vec![past, attention_mask], 1),
            None => attention_mask,
        };
        self.key_mask = Some(key_mask.clone());
        let t_keys = key_mask.dims()[1];
        if self.layers.len() != layers {
            self.layers = (0..layers).map(|_| LayerCache::default()).collect();
        }
        attention_bias(Some(key_mask), t, t_keys, &device)
    }
}
