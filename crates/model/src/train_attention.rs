//! Attention for training on a GPU: the forward one kernel and the backward three, recomputing
//! the probabilities from each query's largest score and sum rather than keeping them
//! (FlashAttention's way). burn's attention is a chain of products, a softmax of five ops and their backwards: about
//! twenty launches a layer in a training step, and the `[b, h, t, t_keys]` scores, masked scores and
//! probabilities kept in between. Here each workgroup takes one query (or key) row and walks the
//! other side a chunk at a time in workgroup memory, so any length fits WebGPU's default limits.
//!
//! The additive bias `[b or 1, 1, t, t_keys]` carries the causal, padding and window masks, as
//! burn's attention takes it. Grouped heads read their key/value head where it lies (no stacking,
//! no mask tiled to match), and every output is laid out `[b, t, heads, hd]`, as the projections
//! lay heads: the output joins its heads for the output projection, and the gradients go back to
//! theirs, without a copy. The CPU keeps its own attention (`recompute.rs`); the CPU
//! implementation here states the kernels' arithmetic, and its test checks it against burn's
//! attention and gradients.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Slice, Tensor, TensorData};

use crate::rope::RotationKernels;

/// softmax(q k^T / sqrt(hd) + bias) v `[b, h, t, hd]` for `q` `[b, h, t, hd]`, `k`, `v` `[b, kv,
/// t_keys, hd]` (each key/value head shared by `h / kv` query heads, as HF's `repeat_kv` shares
/// it), `bias` `[b or 1, 1, t, t_keys]` (no gradient): the kernels above, for cubecl's GPU runtimes.
pub(crate) fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, bias: Tensor<4>) -> Tensor<4> {
    let (out, _stats) =
        <Dispatch as AttentionKernels>::attention_forward(q.into_dispatch(), k.into_dispatch(), v.into_dispatch(), bias.into_dispatch());
    Tensor::<4>::from_dispatch(out).swap_dims(1, 2) // [b, t, h, hd] laid out, [b, h, t, hd] seen
}

/// [`attention`] of `q` and `k` rotated by `rope` (`cos`, `sin` `[b, 1, t, hd]`) first, as
/// `apply_rope` rotates them: queries and keys turned together, forward and backward.
pub(crate) fn rotated_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    (cos, sin): &(Tensor<4>, Tensor<4>),
    bias: Tensor<4>,
) -> Tensor<4> {
    let (out, _stats) = <Dispatch as AttentionKernels>::rotated_attention_forward(
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        bias.into_dispatch(),
        cos.clone().into_dispatch(),
        sin.clone().into_dispatch(),
    );
    Tensor::<4>::from_dispatch(out).swap_dims(1, 2)
}

/// `q` and `k` rotated (laid out `[b, t, heads, hd]`), seen as `[b, heads, t, hd]`.
pub(crate) fn rotated<B: RotationKernels>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    cos: FloatTensor<B>,
    sin: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (q, k) = B::rotate_pair(q, k, cos, sin, false);
    (B::float_swap_dims(q, 1, 2), B::float_swap_dims(k, 1, 2))
}

/// The forward and the three backward passes. `stats` `[b, h, t, 3]`: each query's largest score
/// and its softmax's sum (kept apart: a query whose keys are all masked has scores of about -1e9,
/// where a log-sum-exp in f32 would lose the sum), then (once the queries' backward ran)
/// `D = rowsum(dO · O)`.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait AttentionKernels: Backend {
    /// `(output [b, t, h, hd], stats)`.
    #[fusion(meta = |q, _k, _v, _bias| (heads_swapped(q), stats_spec(q)))]
    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// [`AttentionKernels::attention_forward`] of `q` and `k` rotated by `cos`, `sin` `[b, 1, t,
    /// hd]` first (no cache: as many keys as queries): the two rotations one launch forward, and
    /// the gradients' turn back one launch backward.
    #[fusion(meta = |q, _k, _v, _bias, _cos, _sin| (heads_swapped(q), stats_spec(q)))]
    fn rotated_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(d q [b, t, h, hd], stats with D)` from the output's gradient `grad` `[b, t, h, hd]`.
    #[fusion(meta = |q, _k, _v, _bias, stats, _grad| (heads_swapped(q), stats.clone()))]
    fn attention_backward_queries(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// d k and d v in one `[2, b, t_keys, kv, hd]`, from stats with D.
    #[fusion(meta = |_q, k, _v, _bias, _stats, _grad| keys_values_spec(k))]
    fn attention_backward_keys_values(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

/// `[b, kv, t_keys, hd]`'s spec as `[2, b, t_keys, kv, hd]`.
#[cfg(all(feature = "cube", feature = "fusion"))]
fn keys_values_spec(k: &burn::backend::fusion::custom::TensorSpec) -> burn::backend::fusion::custom::TensorSpec {
    let mut spec = k.clone();
    spec.shape = [2, k.shape[0], k.shape[2], k.shape[1], k.shape[3]].into();
    spec
}

/// `[b, heads, len, hd]`'s spec as `[b, len, heads, hd]`: the layout the kernels write.
#[cfg(all(feature = "cube", feature = "fusion"))]
pub(crate) fn heads_swapped(x: &burn::backend::fusion::custom::TensorSpec) -> burn::backend::fusion::custom::TensorSpec {
    let mut spec = x.clone();
    spec.shape = [x.shape[0], x.shape[2], x.shape[1], x.shape[3]].into();
    spec
}

#[cfg(all(feature = "cube", feature = "fusion"))]
fn stats_spec(q: &burn::backend::fusion::custom::TensorSpec) -> burn::backend::fusion::custom::TensorSpec {
    let mut spec = q.clone();
    spec.shape = [q.shape[0], q.shape[1], q.shape[2], STATS].into();
    spec
}

/// Values of `stats` a query: its largest score, its softmax's sum, D.
pub(crate) const STATS: usize = 3;

/// The sizes every pass reads.
#[derive(Debug, Clone, Copy)]
struct Dims {
    heads: usize,
    kv_heads: usize,
    t: usize,
    t_keys: usize,
    hd: usize,
    bias_rows: usize,
}

impl Dims {
    fn of<B: Backend>(q: &FloatTensor<B>, k: &FloatTensor<B>, bias: &FloatTensor<B>) -> Self {
        let (q, k) = (q.shape(), k.shape());
        Self { heads: q[1], kv_heads: k[1], t: q[2], t_keys: k[2], hd: q[3], bias_rows: bias.shape()[0] }
    }

    fn scale(&self) -> f32 {
        1.0 / (self.hd as f32).sqrt()
    }

    /// The key/value head query head `head` reads.
    fn kv_head(&self, head: usize) -> usize {
        head / (self.heads / self.kv_heads)
    }

    /// `(row, head, query)`'s score of key `j`.
    fn score(&self, host: &Host, row: usize, head: usize, i: usize, j: usize) -> f32 {
        let (q, k) = (self.query(&host.q, row, head, i), self.key(&host.k, row, self.kv_head(head), j));
        let bias_row = if self.bias_rows == 1 { 0 } else { row };
        dot(q, k) * self.scale() + host.bias[(bias_row * self.t + i) * self.t_keys + j]
    }

    /// Query `i` of head `head` of batch row `row` in `q` `[b, h, t, hd]`.
    fn query<'a>(&self, q: &'a [f32], row: usize, head: usize, i: usize) -> &'a [f32] {
        let at = ((row * self.heads + head) * self.t + i) * self.hd;
        &q[at..at + self.hd]
    }

    /// Key (or value) `j` of head `kv_head` of batch row `row` in `[b, kv, t_keys, hd]`.
    fn key<'a>(&self, k: &'a [f32], row: usize, kv_head: usize, j: usize) -> &'a [f32] {
        let at = ((row * self.kv_heads + kv_head) * self.t_keys + j) * self.hd;
        &k[at..at + self.hd]
    }

    /// Where query `i` of (`row`, `head`) starts in a `[b, t, h, hd]` output or gradient.
    fn laid_out(&self, row: usize, head: usize, i: usize) -> usize {
        ((row * self.t + i) * self.heads + head) * self.hd
    }

    /// Where query `i` of (`row`, `head`) has its stats.
    fn stats_at(&self, row: usize, head: usize, i: usize) -> usize {
        ((row * self.heads + head) * self.t + i) * STATS
    }

    /// Every (row, head, query) in stats' order.
    fn queries(&self, b: usize) -> impl Iterator<Item = (usize, usize, usize)> {
        let (heads, t) = (self.heads, self.t);
        (0..b * heads * t).map(move |n| (n / (t * heads), n / t % heads, n % t))
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

/// The tensors on the host, contiguous.
struct Host {
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    bias: Vec<f32>,
}

fn host(q: FloatTensor<Flex>, k: FloatTensor<Flex>, v: Option<FloatTensor<Flex>>, bias: FloatTensor<Flex>) -> Host {
    Host { q: values(q), k: values(k), v: v.map(values).unwrap_or_default(), bias: values(bias) }
}

fn values(t: FloatTensor<Flex>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 values")
}

impl AttentionKernels for Flex {
    fn rotated_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (q, k) = rotated::<Self>(q, k, cos, sin);
        Self::attention_forward(q, k, v, bias)
    }

    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (d, b, device) = (Dims::of::<Self>(&q, &k, &bias), q.shape()[0], q.device());
        let host = host(q, k, Some(v), bias);
        let (mut out, mut stats) = (vec![0.0f32; b * d.heads * d.t * d.hd], vec![0.0f32; b * d.heads * d.t * STATS]);
        for (row, head, i) in d.queries(b) {
            let scores: Vec<f32> = (0..d.t_keys).map(|j| d.score(&host, row, head, i, j)).collect();
            let max = scores.iter().copied().fold(f32::MIN, f32::max);
            let sum: f32 = scores.iter().map(|s| (s - max).exp()).sum();
            let at = d.stats_at(row, head, i);
            (stats[at], stats[at + 1]) = (max, sum);
            let o = d.laid_out(row, head, i);
            for (j, s) in scores.iter().enumerate() {
                let p = (s - max).exp() / sum;
                out[o..o + d.hd].iter_mut().zip(d.key(&host.v, row, d.kv_head(head), j)).for_each(|(o, v)| *o += p * v);
            }
        }
        let tensor = |v: Vec<f32>, shape: [usize; 4]| Self::float_from_data(TensorData::new(v, shape), &device);
        (tensor(out, [b, d.t, d.heads, d.hd]), tensor(stats, [b, d.heads, d.t, STATS]))
    }

    fn attention_backward_queries(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (d, b, device) = (Dims::of::<Self>(&q, &k, &bias), q.shape()[0], q.device());
        let (host, mut stats, grad) = (host(q, k, Some(v), bias), values(stats), values(grad));
        let mut dq = vec![0.0f32; host.q.len()];
        for (row, head, i) in d.queries(b) {
            let (at, o) = (d.stats_at(row, head, i), d.laid_out(row, head, i));
            let d_out = &grad[o..o + d.hd];
            // p_j, and dp_j = dO · v_j; D = sum_j p_j dp_j (= rowsum(dO · O)).
            let p_dp: Vec<(f32, f32)> = (0..d.t_keys)
                .map(|j| {
                    let p = (d.score(&host, row, head, i, j) - stats[at]).exp() / stats[at + 1];
                    (p, dot(d_out, d.key(&host.v, row, d.kv_head(head), j)))
                })
                .collect();
            stats[at + 2] = p_dp.iter().map(|(p, dp)| p * dp).sum();
            for (j, (p, dp)) in p_dp.iter().enumerate() {
                let ds = p * (dp - stats[at + 2]) * d.scale();
                dq[o..o + d.hd].iter_mut().zip(d.key(&host.k, row, d.kv_head(head), j)).for_each(|(g, k)| *g += ds * k);
            }
        }
        let stats_shape = [b, d.heads, d.t, STATS];
        let dq = Self::float_from_data(TensorData::new(dq, [b, d.t, d.heads, d.hd]), &device);
        (dq, Self::float_from_data(TensorData::new(stats, stats_shape), &device))
    }

    fn attention_backward_keys_values(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (d, b) = (Dims::of::<Self>(&q, &k, &bias), q.shape()[0]);
        let dk = key_side(q.clone(), k.clone(), Some(v), bias.clone(), stats.clone(), grad.clone());
        let dv = key_side(q, k, None, bias, stats, grad);
        let shape = [1, b, d.t_keys, d.kv_heads, d.hd];
        Self::float_cat(vec![Self::float_reshape(dk, shape.into()), Self::float_reshape(dv, shape.into())], 0)
    }
}

/// Each key's gradient `[b, t_keys, kv, hd]`, summed over the queries of every head of its group:
/// with `v`, d k = `scale sum_i p_ij (dO_i · v_j - D_i) q_i`; without, d v = `sum_i p_ij dO_i`.
fn key_side(
    q: FloatTensor<Flex>,
    k: FloatTensor<Flex>,
    v: Option<FloatTensor<Flex>>,
    bias: FloatTensor<Flex>,
    stats: FloatTensor<Flex>,
    grad: FloatTensor<Flex>,
) -> FloatTensor<Flex> {
    let (d, b, device) = (Dims::of::<Flex>(&q, &k, &bias), q.shape()[0], k.device());
    let keys = v.is_some();
    let (host, stats, grad) = (host(q, k, v, bias), values(stats), values(grad));
    let mut out = vec![0.0f32; host.k.len()];
    for (row, head, i) in d.queries(b) {
        let (at, o) = (d.stats_at(row, head, i), d.laid_out(row, head, i));
        let d_out = &grad[o..o + d.hd];
        let kv_head = d.kv_head(head);
        for j in 0..d.t_keys {
            let p = (d.score(&host, row, head, i, j) - stats[at]).exp() / stats[at + 1];
            let key_at = ((row * d.t_keys + j) * d.kv_heads + kv_head) * d.hd;
            let out = &mut out[key_at..key_at + d.hd];
            if keys {
                let ds = p * (dot(d_out, d.key(&host.v, row, kv_head, j)) - stats[at + 2]) * d.scale();
                out.iter_mut().zip(d.query(&host.q, row, head, i)).for_each(|(g, q)| *g += ds * q);
            } else {
                out.iter_mut().zip(d_out).for_each(|(g, dy)| *g += p * dy);
            }
        }
    }
    <Flex as FloatTensorOps<Flex>>::float_from_data(TensorData::new(out, [b, d.t_keys, d.kv_heads, d.hd]), &device)
}

/// The backward: the queries' pass first (it adds D to the stats), then the keys' and values'.
#[derive(Debug)]
struct AttentionBackward;

impl<B: Backend + AttentionKernels + RotationKernels> Backward<B, 3> for AttentionBackward {
    /// q, k, v (q and k rotated, when the op rotated them), the bias and the forward's stats; the
    /// rotation's cos and sin.
    type State = ([FloatTensor<B>; 5], Option<(FloatTensor<B>, FloatTensor<B>)>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let ([q, k, v, bias, stats], rope) = ops.state;
        let grad = grads.consume::<B>(&ops.node);
        let (dq, stats) = B::attention_backward_queries(q.clone(), k.clone(), v.clone(), bias.clone(), stats, grad.clone());
        // Each gradient is laid out [b, len, heads, hd]: seen in its input's shape by a swap.
        let seen = |t: FloatTensor<B>| B::float_swap_dims(t, 1, 2);
        let [q_parent, k_parent, v_parent] = ops.parents;
        let (k_shape, mut dk) = (k.shape(), None);
        if k_parent.is_some() || v_parent.is_some() {
            // One launch for both, `[2, b, t_keys, kv, hd]`; each half a view.
            let both = B::attention_backward_keys_values(q, k, v, bias, stats, grad);
            let half = |part: usize| {
                let [b, kv, t_keys, hd] = [k_shape[0], k_shape[1], k_shape[2], k_shape[3]];
                let slices =
                    [Slice::new(part as isize, Some(part as isize + 1), 1), Slice::full(), Slice::full(), Slice::full(), Slice::full()];
                B::float_reshape(B::float_slice(both.clone(), &slices), [b, t_keys, kv, hd].into())
            };
            if let Some(node) = v_parent {
                grads.register::<B>(node.id, seen(half(1)));
            }
            dk = k_parent.as_ref().map(|_| half(0));
        }
        // Rotated inputs: the gradients turned back by the opposite angles, both in one launch.
        let (dq, dk) = match (rope, dk) {
            (Some((cos, sin)), Some(dk)) => {
                let (dq, dk) = B::rotate_pair(seen(dq), seen(dk), cos, sin, true);
                (dq, Some(dk))
            }
            (Some((cos, sin)), None) => (B::rotate(seen(dq), cos, sin, true), None),
            (None, dk) => (dq, dk),
        };
        if let (Some(node), Some(dk)) = (k_parent, dk) {
            grads.register::<B>(node.id, seen(dk));
        }
        if let Some(node) = q_parent {
            grads.register::<B>(node.id, seen(dq));
        }
    }
}

impl<B: Backend + AttentionKernels + RotationKernels, C: CheckpointStrategy> AttentionKernels for Autodiff<B, C> {
    fn rotated_attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        cos: FloatTensor<Self>,
        sin: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        let (bias, cos, sin) = (Self::inner(bias), Self::inner(cos), Self::inner(sin));
        match AttentionBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (q, k) = rotated::<B>(q, k, cos.clone(), sin.clone());
                let (out, stats) = B::attention_forward(q.clone(), k.clone(), v.clone(), bias.clone());
                (prep.finish(([q, k, v, bias, stats.clone()], Some((cos, sin))), out), Self::from_inner(stats))
            }
            OpsKind::UnTracked(prep) => {
                let (out, stats) = B::rotated_attention_forward(q, k, v, bias, cos, sin);
                (prep.finish(out), Self::from_inner(stats))
            }
        }
    }

    fn attention_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (q, q_node) = q.into_parts();
        let (k, k_node) = k.into_parts();
        let (v, v_node) = v.into_parts();
        let bias = Self::inner(bias);
        match AttentionBackward.prepare::<C>([q_node, k_node, v_node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, stats) = B::attention_forward(q.clone(), k.clone(), v.clone(), bias.clone());
                (prep.finish(([q, k, v, bias, stats.clone()], None), out), Self::from_inner(stats))
            }
            OpsKind::UnTracked(prep) => {
                let (out, stats) = B::attention_forward(q, k, v, bias);
                (prep.finish(out), Self::from_inner(stats))
            }
        }
    }

    fn attention_backward_queries(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let i = Self::inner;
        let (dq, stats) = B::attention_backward_queries(i(q), i(k), i(v), i(bias), i(stats), i(grad));
        (Self::from_inner(dq), Self::from_inner(stats))
    }

    fn attention_backward_keys_values(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        grad: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let i = Self::inner;
        Self::from_inner(B::attention_backward_keys_values(i(q), i(k), i(v), i(bias), i(stats), i(grad)))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::module::attention as burn_attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use burn::tensor::{Device, Distribution, Tensor, TensorData};

    use crate::recompute::tests::{close, random};

    /// The kernels' arithmetic gives burn's attention and its gradients, with a causal mask, a
    /// padded key and a query that sees no key (its softmax uniform, as burn's), one bias row
    /// shared by the batch, keys not laid out contiguously, and grouped heads (each key/value head
    /// read by two query heads, against burn's attention on the repeated keys and values).
    #[test]
    fn the_kernels_attention_and_gradients_equal_burns_with_padded_causal_shared_masks_and_grouped_heads() {
        let device = Device::flex().autodiff();
        let ([b, h, t, hd], t_keys) = ([2, 4, 5, 8], 6);
        // Causal with one key of history; row 0's first key is padding; row 1's first query sees nothing.
        let per_row: Vec<f32> = (0..b)
            .flat_map(|row| {
                (0..t).flat_map(move |i| {
                    (0..t_keys).map(move |j| if j > i + 1 || (row == 0 && j == 0) || (row == 1 && i == 0) { -1e9 } else { 0.0 })
                })
            })
            .collect();
        let shared: Vec<f32> = per_row[..t * t_keys].to_vec();
        for kv in [h, h / 2] {
            let groups = h / kv;
            let (q, v) = (random([b, h, t, hd], &device), random([b, kv, t_keys, hd], &device));
            let k_laid = random([b, t_keys, kv, hd], &device);
            // Made anew for each pass: a backward consumes the graph that made it.
            let k = || k_laid.clone().swap_dims(1, 2);
            let repeated = |x: Tensor<4>| x.unsqueeze_dim::<5>(2).expand([b, kv, groups, t_keys, hd]).reshape([b, h, t_keys, hd]);
            let weights = Tensor::<4>::random([b, h, t, hd], Distribution::Normal(0.0, 1.0), &device);
            for (bias, rows) in [(per_row.clone(), b), (shared.clone(), 1)] {
                let what = format!("{kv} key/value heads, {rows} bias rows");
                let bias = Tensor::<4>::from_data(TensorData::new(bias, [rows, 1, t, t_keys]), &device);
                let ours = super::attention(q.clone(), k(), v.clone(), bias.clone());
                let grads = (ours.clone() * weights.clone()).sum().backward();
                let ours_grads = [q.grad(&grads).unwrap(), k_laid.grad(&grads).unwrap(), v.grad(&grads).unwrap()];
                let theirs =
                    burn_attention(q.clone(), repeated(k()), repeated(v.clone()), None, Some(bias), AttentionModuleOptions::default());
                let grads = (theirs.clone() * weights.clone()).sum().backward();
                let theirs_grads = [q.grad(&grads).unwrap(), k_laid.grad(&grads).unwrap(), v.grad(&grads).unwrap()];
                close(ours.inner(), theirs.inner(), &format!("output, {what}"), 1e-5);
                for ((ours, theirs), name) in ours_grads.into_iter().zip(theirs_grads).zip(["q", "k", "v"]) {
                    close(ours, theirs, &format!("d {name}, {what}"), 1e-5);
                }
            }
        }
    }

    /// The op that rotates `q` and `k` first gives the rotation's then the attention's values and
    /// gradients (burn's rotation on the CPU, then the kernels' attention), with grouped heads.
    #[test]
    fn the_rotated_attention_equals_rotating_then_attending_with_its_gradients() {
        use crate::rope::{RopeParameters, Rotary, apply_rope};
        use burn::tensor::Int;
        let device = Device::flex().autodiff();
        let ([b, h, t, hd], kv) = ([2, 4, 5, 8], 2);
        let rotary = Rotary { inv_freq: RopeParameters::default().inv_freq(10_000.0, hd) };
        let positions = Tensor::<2, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 3, 4, 0, 0, 1, 2, 3], [b, t]), &device);
        let rope = rotary.cos_sin(positions);
        let causal: Vec<f32> = (0..t).flat_map(|i| (0..t).map(move |j| if j > i { -1e9 } else { 0.0 })).collect();
        let bias = Tensor::<4>::from_data(TensorData::new(causal, [1, 1, t, t]), &device);
        // Laid out as the projections lay heads, seen with heads swapped in.
        let (q_laid, k_laid, v) = (random([b, t, h, hd], &device), random([b, t, kv, hd], &device), random([b, kv, t, hd], &device));
        let (q, k) = (|| q_laid.clone().swap_dims(1, 2), || k_laid.clone().swap_dims(1, 2));
        let weights = Tensor::<4>::random([b, h, t, hd], Distribution::Normal(0.0, 1.0), &device);
        let ours = super::rotated_attention(q(), k(), v.clone(), &rope, bias.clone());
        let theirs = super::attention(apply_rope(q(), &rope), apply_rope(k(), &rope), v.clone(), bias);
        close(ours.clone().inner(), theirs.clone().inner(), "output", 1e-5);
        let gradients = |out: Tensor<4>| {
            let grads = (out * weights.clone()).sum().backward();
            [q_laid.grad(&grads).unwrap(), k_laid.grad(&grads).unwrap(), v.grad(&grads).unwrap()]
        };
        for ((ours, theirs), name) in gradients(ours).into_iter().zip(gradients(theirs)).zip(["q", "k", "v"]) {
            close(ours, theirs, &format!("d {name}"), 1e-5);
        }
    }
}
