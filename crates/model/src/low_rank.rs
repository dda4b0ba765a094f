//! A projection with its adapter, `x W + scale · (x a) b` with `W` frozen, as one op on a GPU:
//! forward the base's product and one kernel for the whole update; backward the base's product
//! for `d x`, one kernel for `d h` with the adapter's share of `d x` added to it, one for `d a` and
//! `d b`. As burn's ops the update was two more products forward, three products and a sum
//! backward, and a sum for `x`'s two gradients: with seven adapted projections a layer, a third of
//! a LoRA step's launches. The rank (8, say) is the inner size of every sum here, or the row count
//! of what is summed over, so a workgroup a row (its threads splitting the model's width) or a
//! thread an output value serves where a tiled product buys nothing. The CPU keeps burn's ops (its
//! numbers are the project's reference); so do a rank above [`MAX_RANK`], a trained `W` and
//! adapters stacked on frozen ones.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::own_kernels::on_gpu_kernels;
use crate::packed::{PackedOps, PackedWeight};
use crate::projection::{LoraFactors, Projection};

/// The largest rank the kernels take: a row's workgroup sums `rank` values per thread in
/// workgroup memory (64 threads x 32 x 4 bytes = 8 KiB, half of WebGPU's default).
pub(crate) const MAX_RANK: usize = 32;

/// `projection` (one adapter beside a frozen weight) on `x` `[n, d_in]` -> `[n, d_out]` as one op
/// on a GPU; `None` where burn's ops apply instead.
pub(crate) fn adapted(projection: &Projection, x: &Tensor<2>) -> Option<Tensor<2>> {
    let lora = projection.lora.as_ref().filter(|_| projection.frozen.is_empty())?;
    if !on_gpu_kernels(&x.device()) || lora.a.val().dims()[1] > MAX_RANK {
        return None;
    }
    let (x, a, b, scale) = (x.clone().into_dispatch(), lora.a.val().into_dispatch(), lora.b.val().into_dispatch(), lora.scale as f32);
    let out = match (&projection.weight, &projection.packed) {
        (Some(weight), _) if !weight.val().is_require_grad() => {
            <Dispatch as AdapterKernels>::adapted_dense(x, weight.val().into_dispatch(), a, b, scale)
        }
        (None, Some(packed)) => <Dispatch as AdapterKernels>::adapted_packed(x, packed.clone(), a, b, scale),
        _ => return None,
    };
    let out = Tensor::from_dispatch(out);
    Some(match &projection.bias {
        Some(bias) => out + bias.val().unsqueeze(),
        None => out,
    })
}

/// `out + scale · (x a) b` as burn's ops (the CPU's reference, and what a GPU falls back to).
pub(crate) fn add_low_rank(out: Tensor<2>, x: Tensor<2>, lora: &LoraFactors) -> Tensor<2> {
    out + x.matmul(lora.a.val()).matmul(lora.b.val()).mul_scalar(lora.scale)
}

/// The adapted product and the kernels it is made of.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait AdapterKernels: Backend {
    /// `x W + scale · (x a) b` for `x` `[n, in]`, the frozen `W` `[in, out]`, `a` `[in, rank]`,
    /// `b` `[rank, out]`.
    #[fusion(dtype = x, shape = [x[0], weight[1]].into())]
    fn adapted_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// [`AdapterKernels::adapted_dense`] on a packed `W` (HF's `[out, in]`).
    #[fusion(dtype = x, shape = [x[0], weight.shape()[0]].into())]
    fn adapted_packed(
        x: FloatTensor<Self>,
        weight: PackedWeight,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self>;

    /// `(base + scale · h b, h)` with `h = x a` `[n, rank]`.
    #[fusion(meta = |base, x, a, _b, _scale| (base.clone(), rows_by_rank(x, a)))]
    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(d x, d h)` from the output's gradient `grad`: `d h = scale · grad b^T`, `d x = dx_base +
    /// d h a^T` (when `with_dx`; otherwise `dx_base` is only a stand-in and `d x` is not written).
    #[fusion(meta = |grad, dx_base, a, _b, _scale, _with_dx| (dx_base.clone(), rows_by_rank(grad, a)))]
    fn adapter_backward_rows(
        grad: FloatTensor<Self>,
        dx_base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        with_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// `(d a, d b)` = `(x^T d h, scale · h^T grad)`.
    #[fusion(meta = |x, h, _dh, grad, _scale| factor_specs(x, h, grad))]
    fn adapter_backward_columns(
        x: FloatTensor<Self>,
        h: FloatTensor<Self>,
        dh: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);
}

#[cfg(all(feature = "cube", feature = "fusion"))]
type Spec = burn::backend::fusion::custom::TensorSpec;

/// `[rows of x, rank of a]`.
#[cfg(all(feature = "cube", feature = "fusion"))]
fn rows_by_rank(x: &Spec, a: &Spec) -> Spec {
    let mut spec = x.clone();
    spec.shape = [x.shape[0], a.shape[1]].into();
    spec
}

/// `a`'s `[in, rank]` and `b`'s `[rank, out]`.
#[cfg(all(feature = "cube", feature = "fusion"))]
fn factor_specs(x: &Spec, h: &Spec, grad: &Spec) -> (Spec, Spec) {
    let (mut a, mut b) = (x.clone(), x.clone());
    a.shape = [x.shape[1], h.shape[1]].into();
    b.shape = [h.shape[1], grad.shape[1]].into();
    (a, b)
}

/// The frozen weight an adapter stands beside.
#[derive(Clone, Debug)]
pub(crate) enum Frozen<B: Backend> {
    /// `[in, out]` f32.
    Dense(FloatTensor<B>),
    Packed(PackedWeight),
}

impl<B: Backend + PackedOps> Frozen<B> {
    /// `x W` -> `[n, out]`.
    fn product(&self, x: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Self::Dense(w) => B::float_matmul(x, w.clone()),
            Self::Packed(w) => B::packed_matmul(x, w.clone()),
        }
    }

    /// `g W^T` -> `[n, in]`.
    fn transposed_product(&self, g: FloatTensor<B>) -> FloatTensor<B> {
        match self {
            Self::Dense(w) => B::float_matmul(g, B::float_transpose(w.clone())),
            Self::Packed(w) => B::packed_matmul_transposed(g, w.clone()),
        }
    }
}

/// The adapted product on a backend that differentiates nothing.
pub(crate) fn forward<B: AdapterKernels + PackedOps>(
    x: FloatTensor<B>,
    frozen: Frozen<B>,
    a: FloatTensor<B>,
    b: FloatTensor<B>,
    scale: f32,
) -> FloatTensor<B> {
    let base = frozen.product(x.clone());
    B::adapter_forward(base, x, a, b, scale).0
}

fn values(t: FloatTensor<Flex>) -> Vec<f32> {
    t.into_data().try_to_vec().expect("f32 values")
}

/// The kernels' arithmetic on the host, for the tests (the CPU itself takes burn's ops).
impl AdapterKernels for Flex {
    fn adapted_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        forward::<Self>(x, Frozen::Dense(weight), a, b, scale)
    }

    fn adapted_packed(
        x: FloatTensor<Self>,
        weight: PackedWeight,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        forward::<Self>(x, Frozen::Packed(weight), a, b, scale)
    }

    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (device, n, d_in, rank) = (x.device(), x.shape()[0], x.shape()[1], a.shape()[1]);
        let (base, x, a, b) = (values(base), values(x), values(a), values(b));
        let d_out = base.len() / n.max(1);
        let h: Vec<f32> = (0..n * rank).map(|k| (0..d_in).map(|i| x[k / rank * d_in + i] * a[i * rank + k % rank]).sum()).collect();
        let out: Vec<f32> = (0..n * d_out)
            .map(|k| base[k] + scale * (0..rank).map(|r| h[k / d_out * rank + r] * b[r * d_out + k % d_out]).sum::<f32>())
            .collect();
        (Self::float_from_data(TensorData::new(out, [n, d_out]), &device), Self::float_from_data(TensorData::new(h, [n, rank]), &device))
    }

    fn adapter_backward_rows(
        grad: FloatTensor<Self>,
        dx_base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        with_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (device, n, d_out, d_in, rank) = (grad.device(), grad.shape()[0], grad.shape()[1], a.shape()[0], a.shape()[1]);
        let dx_shape = dx_base.shape();
        let (grad, mut dx, a, b) = (values(grad), values(dx_base), values(a), values(b));
        let dh: Vec<f32> =
            (0..n * rank).map(|k| scale * (0..d_out).map(|j| grad[k / rank * d_out + j] * b[k % rank * d_out + j]).sum::<f32>()).collect();
        if with_dx {
            for (k, dx) in dx.iter_mut().enumerate() {
                *dx += (0..rank).map(|r| dh[k / d_in * rank + r] * a[k % d_in * rank + r]).sum::<f32>();
            }
        }
        (Self::float_from_data(TensorData::new(dx, dx_shape), &device), Self::float_from_data(TensorData::new(dh, [n, rank]), &device))
    }

    fn adapter_backward_columns(
        x: FloatTensor<Self>,
        h: FloatTensor<Self>,
        dh: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (device, n, d_in, rank, d_out) = (x.device(), x.shape()[0], x.shape()[1], h.shape()[1], grad.shape()[1]);
        let (x, h, dh, grad) = (values(x), values(h), values(dh), values(grad));
        let da: Vec<f32> = (0..d_in * rank).map(|k| (0..n).map(|row| x[row * d_in + k / rank] * dh[row * rank + k % rank]).sum()).collect();
        let db: Vec<f32> = (0..rank * d_out)
            .map(|k| scale * (0..n).map(|row| h[row * rank + k / d_out] * grad[row * d_out + k % d_out]).sum::<f32>())
            .collect();
        (
            Self::float_from_data(TensorData::new(da, [d_in, rank]), &device),
            Self::float_from_data(TensorData::new(db, [rank, d_out]), &device),
        )
    }
}

/// The adapted product's backward: `W` is frozen, so only `x`, `a` and `b` take gradients.
#[derive(Debug)]
struct AdaptedBackward(f32);

impl<B: Backend + AdapterKernels + PackedOps> Backward<B, 3> for AdaptedBackward {
    /// `x`, `h = x a`, `a`, `b`, `W`.
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, Frozen<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let (x, h, a, b, frozen) = ops.state;
        let scale = self.0;
        let grad = grads.consume::<B>(&ops.node);
        let [x_parent, a_parent, b_parent] = ops.parents;
        let dx_base = x_parent.as_ref().map(|_| frozen.transposed_product(grad.clone()));
        let with_dx = dx_base.is_some();
        let (dx, dh) = B::adapter_backward_rows(grad.clone(), dx_base.unwrap_or_else(|| grad.clone()), a, b, scale, with_dx);
        if a_parent.is_some() || b_parent.is_some() {
            let (da, db) = B::adapter_backward_columns(x, h, dh, grad, scale);
            if let Some(node) = a_parent {
                grads.register::<B>(node.id, da);
            }
            if let Some(node) = b_parent {
                grads.register::<B>(node.id, db);
            }
        }
        if let Some(node) = x_parent {
            grads.register::<B>(node.id, dx);
        }
    }
}

/// The adapted product under autodiff: tracked, it keeps `x`, `h` and the factors for the backward.
fn tracked<B: Backend + AdapterKernels + PackedOps, C: CheckpointStrategy>(
    x: FloatTensor<Autodiff<B, C>>,
    frozen: Frozen<B>,
    a: FloatTensor<Autodiff<B, C>>,
    b: FloatTensor<Autodiff<B, C>>,
    scale: f32,
) -> FloatTensor<Autodiff<B, C>> {
    let (x, x_node) = x.into_parts();
    let (a, a_node) = a.into_parts();
    let (b, b_node) = b.into_parts();
    match AdaptedBackward(scale).prepare::<C>([x_node, a_node, b_node]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let base = frozen.product(x.clone());
            let (out, h) = B::adapter_forward(base, x.clone(), a.clone(), b.clone(), scale);
            prep.finish((x, h, a, b, frozen), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x, frozen, a, b, scale)),
    }
}

impl<B: Backend + AdapterKernels + PackedOps, C: CheckpointStrategy> AdapterKernels for Autodiff<B, C> {
    fn adapted_dense(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, Frozen::Dense(Self::inner(weight)), a, b, scale)
    }

    fn adapted_packed(
        x: FloatTensor<Self>,
        weight: PackedWeight,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> FloatTensor<Self> {
        tracked::<B, C>(x, Frozen::Packed(weight), a, b, scale)
    }

    fn adapter_forward(
        base: FloatTensor<Self>,
        x: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (out, h) = B::adapter_forward(Self::inner(base), Self::inner(x), Self::inner(a), Self::inner(b), scale);
        (Self::from_inner(out), Self::from_inner(h))
    }

    fn adapter_backward_rows(
        grad: FloatTensor<Self>,
        dx_base: FloatTensor<Self>,
        a: FloatTensor<Self>,
        b: FloatTensor<Self>,
        scale: f32,
        with_dx: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (dx, dh) = B::adapter_backward_rows(Self::inner(grad), Self::inner(dx_base), Self::inner(a), Self::inner(b), scale, with_dx);
        (Self::from_inner(dx), Self::from_inner(dh))
    }

    fn adapter_backward_columns(
        x: FloatTensor<Self>,
        h: FloatTensor<Self>,
        dh: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let (da, db) = B::adapter_backward_columns(Self::inner(x), Self::inner(h), Self::inner(dh), Self::inner(grad), scale);
        (Self::from_inner(da), Self::from_inner(db))
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::{Device, Distribution, Tensor};

    use super::*;
    use crate::gguf_quants::GgmlType;

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    /// The largest gap against the largest value: two f32 sums in another order part by rounding
    /// of their terms' size, which a value that cancels to near zero does not show.
    fn worst(a: Vec<f32>, b: Vec<f32>) -> f32 {
        let scale = 1.0 + b.iter().fold(0.0f32, |m, y| m.max(y.abs()));
        a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max) / scale
    }

    /// The one op (the kernels' arithmetic, on the host) gives burn's products' values and the
    /// gradients of `x`, `a` and `b`, beside a dense and a packed frozen weight.
    #[test]
    fn the_adapted_product_and_its_gradients_equal_burns_products() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (n, d_in, d_out, rank, scale) = (5, 64, 7, 3, 2.5f32);
        let hf: Vec<f32> = values(random([d_out, d_in]));
        let packed = PackedWeight::quantized(GgmlType::Q8_0, &hf, [d_out, d_in]).unwrap();
        let dense = packed.hf_tensor(&device).transpose(); // the packed weight's own values, [in, out]
        let weights = random([n, d_out]);
        for base in ["dense", "packed"] {
            let (x, a, b) = (random([n, d_in]).require_grad(), random([d_in, rank]).require_grad(), random([rank, d_out]).require_grad());
            let projection = Projection {
                weight: (base == "dense").then(|| Param::from_tensor(dense.clone())),
                packed: (base == "packed").then(|| packed.clone()),
                bias: None,
                lora: Some(LoraFactors { a: Param::from_tensor(a.clone()), b: Param::from_tensor(b.clone()), scale: f64::from(scale) }),
                frozen: vec![],
            };
            let (xd, ad, bd) = (x.clone().into_dispatch(), a.clone().into_dispatch(), b.clone().into_dispatch());
            let ours = Tensor::<2>::from_dispatch(match &projection.packed {
                Some(p) => <Dispatch as AdapterKernels>::adapted_packed(xd, p.clone(), ad, bd, scale),
                None => <Dispatch as AdapterKernels>::adapted_dense(xd, dense.clone().into_dispatch(), ad, bd, scale),
            });
            let theirs = x.clone().matmul(dense.clone()) + x.clone().matmul(a.clone()).matmul(b.clone()).mul_scalar(scale);
            assert!(worst(values(ours.clone()), values(theirs.clone())) < 1e-5, "{base}");
            let gradients = |out: Tensor<2>| {
                let grads = (out * weights.clone()).sum().backward();
                [&x, &a, &b].map(|t| values(t.grad(&grads).unwrap()))
            };
            for ((ours, theirs), name) in gradients(ours).into_iter().zip(gradients(theirs)).zip(["x", "a", "b"]) {
                let gap = worst(ours, theirs);
                assert!(gap < 1e-5, "{base}: d {name} {gap}");
            }
        }
    }

    /// With `x` not tracked (a frozen layer's output), `a` and `b` still get their gradients.
    #[test]
    fn the_factors_train_when_the_input_is_frozen() {
        let device = Device::flex().autodiff();
        let random = |shape: [usize; 2]| Tensor::<2>::random(shape, Distribution::Normal(0.0, 1.0), &device);
        let (x, w) = (random([4, 6]), random([6, 5]));
        let (a, b) = (random([6, 2]).require_grad(), random([2, 5]).require_grad());
        let ours = Tensor::<2>::from_dispatch(<Dispatch as AdapterKernels>::adapted_dense(
            x.clone().into_dispatch(),
            w.clone().into_dispatch(),
            a.clone().into_dispatch(),
            b.clone().into_dispatch(),
            0.5,
        ));
        let theirs = x.clone().matmul(w) + x.matmul(a.clone()).matmul(b.clone()).mul_scalar(0.5);
        let (ours, theirs) = (ours.sum().backward(), theirs.sum().backward());
        for t in [&a, &b] {
            assert!(worst(values(t.grad(&ours).unwrap()), values(t.grad(&theirs).unwrap())) < 1e-5);
        }
    }
}
