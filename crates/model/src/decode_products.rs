//! Decoding's products on a GPU as one kernel a group: a layer's query, key and value projections
//! (a kernel each where they have biases), the gated MLP's gate and up projections with the
//! activation between them, and its down projection with the residual sum after it. A decoded
//! token is a few rows, so each product is one dot product a thread, and three products cost one
//! launch where burn's matmuls, bias additions and element-wise ops were seven.
//!
//! These take f32 weights of the projections' own with no adapter beside them, or a packed base's
//! (q, k and v without biases, gate and up: one launch each group, each value read from its GGUF
//! block in the kernel); anything else (biases or a residual beside a packed base, LoRA factors,
//! many rows, a differentiated product) keeps `projection.rs`' path.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{FloatDType, Tensor, TensorData};

use crate::decode_attention::fused_for;
use crate::packed::{PackedOps, PackedWeight};
use crate::projection::Projection;
use crate::row_kernels::GateActivation;

/// Rows of `x` up to which decoding's products run as [`DecodeProducts`]' kernels.
const MAX_ROWS: usize = 8;

/// Each projection's f32 weight and bias when `x` is decoding's on a GPU and none carries an
/// adapter or a packed base; `None` otherwise.
fn plain_weights<const N: usize>(projections: [&Projection; N], x: &Tensor<2>) -> Option<[(Tensor<2>, Option<Tensor<1>>); N]> {
    let plain = |p: &&Projection| p.weight.is_some() && p.lora.is_none() && p.frozen.is_empty();
    if x.dims()[0] > MAX_ROWS || !projections.iter().all(plain) {
        return None;
    }
    let weights = projections.map(|p| (p.weight.as_ref().expect("checked").val(), p.bias.as_ref().map(|b| b.val())));
    let mut devices = vec![x.device()];
    devices.extend(weights.iter().flat_map(|(w, b)| std::iter::once(w.device()).chain(b.as_ref().map(|b| b.device()))));
    fused_for(&devices).then_some(weights)
}

/// Each projection's packed base (and bias) when `x` is decoding's on a GPU and none carries an
/// f32 weight or an adapter; `None` otherwise.
fn packed_weights<const N: usize>(projections: [&Projection; N], x: &Tensor<2>) -> Option<[(PackedWeight, Option<Tensor<1>>); N]> {
    if x.dims()[0] > MAX_ROWS || !projections.iter().all(|p| p.only_packed().is_some()) || !fused_for(&[x.device()]) {
        return None;
    }
    let biases: Vec<Tensor<1>> = projections.iter().filter_map(|p| p.bias.as_ref().map(|b| b.val())).collect();
    if !fused_for(&biases.iter().map(|b| b.device()).collect::<Vec<_>>()) {
        return None;
    }
    let mut weights = projections.iter().map(|p| p.packed.clone().map(|w| (w, p.bias.as_ref().map(|b| b.val()))));
    let weights: [Option<(PackedWeight, Option<Tensor<1>>)>; N] = std::array::from_fn(|_| weights.next().flatten());
    weights.iter().all(Option::is_some).then(|| weights.map(|w| w.expect("checked")))
}

/// The packed weights when none has a bias.
fn unbiased<const N: usize>(weights: [(PackedWeight, Option<Tensor<1>>); N]) -> Option<[PackedWeight; N]> {
    weights.iter().all(|(_, b)| b.is_none()).then(|| weights.map(|(w, _)| w))
}

/// Up to three projections of `x` `[n, d_in]`, `[n, d_out]` each, when [`plain_weights`] allows
/// (`None` otherwise): in one kernel without biases, a kernel each with them (seven tensors are the
/// most WebGPU's default limits bind at once). Three packed projections without biases: one kernel.
pub(crate) fn products<const N: usize>(projections: [&Projection; N], x: &Tensor<2>) -> Option<[Tensor<2>; N]> {
    if N == 0 || N > 3 {
        return None;
    }
    if let Some(packed) = packed_weights(projections, x) {
        if packed.iter().all(|(_, b)| b.is_some()) {
            let biased = |(w, b): (PackedWeight, Option<Tensor<1>>)| {
                let b = b.expect("checked: every part has a bias").into_dispatch();
                Tensor::from_dispatch(<Dispatch as DecodeProducts>::packed_plus(x.clone().into_dispatch(), b, w, false))
            };
            return Some(packed.map(biased));
        }
        let weights = unbiased(packed).filter(|_| N == 3)?;
        let mut weights = weights.into_iter();
        let parts = PackedParts(std::array::from_fn(|_| weights.next().expect("three weights")));
        let (o1, o2, o3) = <Dispatch as DecodeProducts>::packed_products(x.clone().into_dispatch(), parts);
        let mut outs = [o1, o2, o3].into_iter().map(Tensor::<2>::from_dispatch);
        return Some(std::array::from_fn(|_| outs.next().expect("three outputs")));
    }
    let weights = plain_weights(projections, x)?;
    if weights.iter().any(|(_, b)| b.is_some()) {
        if !weights.iter().all(|(_, b)| b.is_some()) {
            return None;
        }
        let biased = |(w, b): (Tensor<2>, Option<Tensor<1>>)| {
            let b = b.expect("checked: every part has a bias");
            Tensor::from_dispatch(<Dispatch as DecodeProducts>::biased_product(
                x.clone().into_dispatch(),
                w.into_dispatch(),
                b.into_dispatch(),
            ))
        };
        return Some(weights.map(biased));
    }
    let widths = std::array::from_fn(|i| weights.get(i).map_or(0, |(w, _)| w.dims()[1]));
    // A missing part is a value of its own, never read: WebGPU refuses a buffer bound twice in one
    // launch where a binding may write, so nothing here aliases a weight.
    let device = x.device();
    let mut parts = weights.into_iter().map(|(w, _)| w);
    let mut part = || parts.next().unwrap_or_else(|| Tensor::<2>::empty([1, 1], &device)).into_dispatch();
    let (w1, w2, w3) = (part(), part(), part());
    let (o1, o2, o3) = <Dispatch as DecodeProducts>::products(x.clone().into_dispatch(), w1, w2, w3, Parts { widths });
    let mut outs = [o1, o2, o3].into_iter().map(Tensor::<2>::from_dispatch);
    Some(std::array::from_fn(|_| outs.next().expect("three outputs")))
}

/// `act(x @ gate) * (x @ up)` in one kernel, when [`plain_weights`] or [`packed_weights`] allows;
/// `None` otherwise.
pub(crate) fn gated_product(gate: &Projection, up: &Projection, x: &Tensor<2>, act: GateActivation) -> Option<Tensor<2>> {
    if let Some([g, u]) = packed_weights([gate, up], x).and_then(unbiased) {
        return Some(Tensor::from_dispatch(<Dispatch as DecodeProducts>::packed_gated(
            x.clone().into_dispatch(),
            PackedGate { gate: g, up: u, act },
        )));
    }
    let [(g, None), (u, None)] = plain_weights([gate, up], x)? else { return None };
    Some(Tensor::from_dispatch(<Dispatch as DecodeProducts>::gated_product(
        x.clone().into_dispatch(),
        g.into_dispatch(),
        u.into_dispatch(),
        act,
    )))
}

/// `residual + x @ W` in one kernel, when [`plain_weights`] allows; `None` otherwise.
pub(crate) fn added_product(projection: &Projection, x: &Tensor<2>, residual: &Tensor<2>) -> Option<Tensor<2>> {
    if let Some([w]) = packed_weights([projection], x).and_then(unbiased)
        && fused_for(&[residual.device()])
    {
        let residual = residual.clone().into_dispatch();
        return Some(Tensor::from_dispatch(<Dispatch as DecodeProducts>::packed_plus(x.clone().into_dispatch(), residual, w, true)));
    }
    let [(w, None)] = plain_weights([projection], x)? else { return None };
    if !fused_for(&[residual.device()]) {
        return None;
    }
    Some(Tensor::from_dispatch(<Dispatch as DecodeProducts>::added_product(
        x.clone().into_dispatch(),
        w.into_dispatch(),
        residual.clone().into_dispatch(),
    )))
}

/// The widths of the (up to three) products, 0 for a missing one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Parts {
    pub widths: [usize; 3],
}

/// Three packed weights whose products with one input are taken in one launch.
#[derive(Debug, Clone)]
pub struct PackedParts(pub [PackedWeight; 3]);

/// A packed gate and up and the activation between them.
#[derive(Debug, Clone)]
pub struct PackedGate {
    pub gate: PackedWeight,
    pub up: PackedWeight,
    pub act: GateActivation,
}

/// Decoding's products of a few rows (see the module's comment).
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait DecodeProducts: Backend {
    /// `x @ w_i` for the parts whose width is above 0 (the others `[n, 1]`, never written).
    #[fusion(meta = |x, _w1, _w2, _w3, parts| products_meta(x, parts))]
    fn products(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        parts: Parts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `x @ w + b`.
    #[fusion(dtype = x, shape = [x[0], weight[1]].into())]
    fn biased_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self>;

    #[fusion(dtype = x, shape = [x[0], gate[1]].into())]
    fn gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self>;

    #[fusion(dtype = x, shape = residual.clone())]
    fn added_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, residual: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x @ W_i^T` for three packed weights, `[n, rows_i]` each.
    #[fusion(meta = |x, parts| packed_meta(x, parts))]
    fn packed_products(x: FloatTensor<Self>, parts: PackedParts) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);

    /// `x @ W^T + addend` for a packed `W`: `addend` a residual `[n, rows]` (`per_value`) or a
    /// bias `[rows]`.
    #[fusion(dtype = x, shape = [x[0], weight.shape()[0]].into())]
    fn packed_plus(x: FloatTensor<Self>, addend: FloatTensor<Self>, weight: PackedWeight, per_value: bool) -> FloatTensor<Self>;

    /// `act(x @ gate^T) * (x @ up^T)` for a packed gate and up.
    #[fusion(dtype = x, shape = [x[0], gated.gate.shape()[0]].into())]
    fn packed_gated(x: FloatTensor<Self>, gated: PackedGate) -> FloatTensor<Self>;
}

#[cfg(all(feature = "cube", feature = "fusion"))]
type Spec = burn::backend::fusion::custom::TensorSpec;

#[cfg(all(feature = "cube", feature = "fusion"))]
fn products_meta(x: &Spec, parts: &Parts) -> (Spec, Spec, Spec) {
    let spec = |width: usize| {
        let mut spec = x.clone();
        spec.shape = [x.shape[0], width.max(1)].into();
        spec
    };
    (spec(parts.widths[0]), spec(parts.widths[1]), spec(parts.widths[2]))
}

#[cfg(all(feature = "cube", feature = "fusion"))]
fn packed_meta(x: &Spec, parts: &PackedParts) -> (Spec, Spec, Spec) {
    let spec = |w: &PackedWeight| {
        let mut spec = x.clone();
        spec.shape = [x.shape[0], w.shape()[0]].into();
        spec
    };
    (spec(&parts.0[0]), spec(&parts.0[1]), spec(&parts.0[2]))
}

impl DecodeProducts for Flex {
    fn products(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        parts: Parts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let rows = x.shape()[0];
        let one = |w: FloatTensor<Self>, width: usize| {
            if width == 0 {
                return Self::float_zeros([rows, 1].into(), &x.device(), FloatDType::F32);
            }
            Self::float_matmul(x.clone(), w)
        };
        (one(w1, parts.widths[0]), one(w2, parts.widths[1]), one(w3, parts.widths[2]))
    }

    fn biased_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        let width = weight.shape()[1];
        Self::float_add(Self::float_matmul(x, weight), Self::float_reshape(bias, [1, width].into()))
    }

    fn gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self> {
        let (shape, device) = ([x.shape()[0], gate.shape()[1]], x.device());
        let values = |t: FloatTensor<Self>| -> Vec<f32> { t.into_data().try_to_vec().expect("f32 values") };
        let (g, u) = (values(Self::float_matmul(x.clone(), gate)), values(Self::float_matmul(x, up)));
        let gated = g.iter().zip(&u).map(|(&g, &u)| activated(act, g) * u).collect();
        Self::float_from_data(TensorData::new(gated, shape), &device)
    }

    fn added_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, residual: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::float_add(residual, Self::float_matmul(x, weight))
    }

    fn packed_products(x: FloatTensor<Self>, parts: PackedParts) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let [a, b, c] = parts.0.map(|w| Self::packed_matmul(x.clone(), w));
        (a, b, c)
    }

    fn packed_plus(x: FloatTensor<Self>, addend: FloatTensor<Self>, weight: PackedWeight, per_value: bool) -> FloatTensor<Self> {
        let rows = weight.shape()[0];
        let addend = if per_value { addend } else { Self::float_reshape(addend, [1, rows].into()) };
        Self::float_add(Self::packed_matmul(x, weight), addend)
    }

    fn packed_gated(x: FloatTensor<Self>, gated: PackedGate) -> FloatTensor<Self> {
        let (shape, device) = ([x.shape()[0], gated.gate.shape()[0]], x.device());
        let values = |t: FloatTensor<Self>| -> Vec<f32> { t.into_data().try_to_vec().expect("f32 values") };
        let (g, u) = (values(Self::packed_matmul(x.clone(), gated.gate)), values(Self::packed_matmul(x, gated.up)));
        let out = g.iter().zip(&u).map(|(&g, &u)| activated(gated.act, g) * u).collect();
        Self::float_from_data(TensorData::new(out, shape), &device)
    }
}

/// The gate's activation as the GPU's kernel computes it (silu, or gelu's tanh form).
fn activated(act: GateActivation, g: f32) -> f32 {
    match act {
        GateActivation::Silu => g / (1.0 + (-g).exp()),
        GateActivation::GeluTanh => 0.5 * g * (1.0 + (0.797_884_6 * (g + 0.044_715 * g * g * g)).tanh()),
    }
}

impl<B: Backend + DecodeProducts, C: CheckpointStrategy> DecodeProducts for Autodiff<B, C> {
    // Never reached with a tracked input (`fused_for`): the inner backend's forward.
    fn products(
        x: FloatTensor<Self>,
        w1: FloatTensor<Self>,
        w2: FloatTensor<Self>,
        w3: FloatTensor<Self>,
        parts: Parts,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let i = Self::inner;
        let (a, b, c) = B::products(i(x), i(w1), i(w2), i(w3), parts);
        (Self::from_inner(a), Self::from_inner(b), Self::from_inner(c))
    }

    fn biased_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, bias: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::biased_product(Self::inner(x), Self::inner(weight), Self::inner(bias)))
    }

    fn gated_product(x: FloatTensor<Self>, gate: FloatTensor<Self>, up: FloatTensor<Self>, act: GateActivation) -> FloatTensor<Self> {
        Self::from_inner(B::gated_product(Self::inner(x), Self::inner(gate), Self::inner(up), act))
    }

    fn added_product(x: FloatTensor<Self>, weight: FloatTensor<Self>, residual: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::from_inner(B::added_product(Self::inner(x), Self::inner(weight), Self::inner(residual)))
    }

    fn packed_products(x: FloatTensor<Self>, parts: PackedParts) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (a, b, c) = B::packed_products(Self::inner(x), parts);
        (Self::from_inner(a), Self::from_inner(b), Self::from_inner(c))
    }

    fn packed_plus(x: FloatTensor<Self>, addend: FloatTensor<Self>, weight: PackedWeight, per_value: bool) -> FloatTensor<Self> {
        Self::from_inner(B::packed_plus(Self::inner(x), Self::inner(addend), weight, per_value))
    }

    fn packed_gated(x: FloatTensor<Self>, gated: PackedGate) -> FloatTensor<Self> {
        Self::from_inner(B::packed_gated(Self::inner(x), gated))
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Distribution};

    use super::*;
    use crate::gguf_quants::GgmlType;

    /// The packed groups' arithmetic as the CPU states it (the GPU's kernels are checked against it
    /// at every start): each product the packed weight's own, the gate's activation between two,
    /// a bias or a residual added.
    #[test]
    fn the_packed_groups_are_their_products_with_the_activation_and_the_addends() {
        let device = Device::flex();
        let (n, d, rows) = (3, 64, 5);
        let weight = |seed: usize| {
            let values: Vec<f32> = (0..rows * d).map(|i| ((i * 7 + seed) % 13) as f32 / 6.0 - 1.0).collect();
            PackedWeight::quantized(GgmlType::Q8_0, &values, [rows, d]).expect("whole blocks")
        };
        let (gate, up) = (weight(1), weight(2));
        let x = Tensor::<2>::random([n, d], Distribution::Normal(0.0, 1.0), &device);
        let values = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().expect("f32");
        // The widened weights' products (`PackedWeight::matmul` decodes on the CPU in integers),
        // summed in another order than the rows' dot products: equal within f32's rounding.
        let dense = |w: &PackedWeight| values(x.clone().matmul(w.hf_tensor(&device).transpose()));
        let (g, u) = (dense(&gate), dense(&up));

        let act = GateActivation::Silu;
        let gated =
            <Dispatch as DecodeProducts>::packed_gated(x.clone().into_dispatch(), PackedGate { gate: gate.clone(), up: up.clone(), act });
        for ((out, g), u) in values(Tensor::from_dispatch(gated)).iter().zip(&g).zip(&u) {
            let expected = g / (1.0 + (-g).exp()) * u;
            assert!((out - expected).abs() < 1e-5 * expected.abs().max(1.0), "{out} against {g}, {u}");
        }

        let bias = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 5.0], [rows]), &device);
        let biased = <Dispatch as DecodeProducts>::packed_plus(x.clone().into_dispatch(), bias.into_dispatch(), gate.clone(), false);
        for (i, (out, g)) in values(Tensor::from_dispatch(biased)).iter().zip(&g).enumerate() {
            let expected = g + (i % rows + 1) as f32;
            assert!((out - expected).abs() < 1e-5 * expected.abs().max(1.0), "{out} against {expected}");
        }

        let residual = Tensor::<2>::ones([n, rows], &device);
        let added = <Dispatch as DecodeProducts>::packed_plus(x.into_dispatch(), residual.into_dispatch(), gate, true);
        for (out, g) in values(Tensor::from_dispatch(added)).iter().zip(&g) {
            assert!((out - g - 1.0).abs() < 1e-5 * (g + 1.0).abs().max(1.0), "{out} against {g} + 1");
        }
    }
}
