//! What every architecture's attention shares: the additive mask (causal, and padded keys hidden)
//! and the KV cache of a batch being decoded. Keys and values are cached as the layer makes them,
//! before any repetition for grouped-query attention, so a cache holds only the key/value heads.

use burn::tensor::{Device, Int, Tensor, TensorData};

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

/// Keys and values of one layer for the tokens seen so far, `[b, kv_heads, t, head_dim]`.
#[derive(Debug, Default, Clone)]
pub struct LayerCache {
    kv: Option<(Tensor<4>, Tensor<4>)>,
}

impl LayerCache {
    /// Appends the new keys and values; returns all of them.
    pub(crate) fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let kv = match self.kv.take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.kv = Some(kv.clone());
        kv
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
