//! A frozen weight kept as its file stores it (GGUF blocks of any type the reader knows, F16,
//! BF16), and its product with activations, dequantized one projection at a time.
//!
//! Written as `x @ dequantize(W)` with burn's own ops, autodiff would keep every layer's f32 `W`
//! from the forward until the backward (a matmul saves its right side for the input's gradient),
//! which is the f32 copy of the base this type exists to avoid. So the product is an op of its own
//! ([`PackedMatmul`]) whose backward dequantizes `W` again for `grad @ W^T`: between the two, only
//! the packed bytes are held. `W` never gets a gradient of its own: it is frozen.
//!
//! The op runs on the CPU backend (natively and in wasm); on any other device (WebGPU) the product
//! falls back to burn's ops on a dequantized upload, which is correct but holds the f32 weights
//! through a backward.

use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Tensor, TensorData};

use crate::gguf_quants::{GgmlType, dequantize};

/// A frozen matrix in HF's `[out, in]` order, each row `in` values as whole blocks of its type
/// (GGUF's layout: a projection's output unit is a row). Clones share the bytes.
#[derive(Clone)]
pub struct PackedWeight(Arc<Packed>);

struct Packed {
    ggml_type: GgmlType,
    bytes: Vec<u8>,
    rows: usize,
    cols: usize,
}

impl fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        write!(f, "PackedWeight({} [{}, {}], {} bytes)", p.ggml_type.name(), p.rows, p.cols, p.bytes.len())
    }
}

impl PackedWeight {
    /// `rows` x `cols` values of `ggml_type` in `bytes`; `None` unless the type is one the reader
    /// dequantizes and the bytes are exactly `rows` rows of whole blocks.
    pub fn new(ggml_type: GgmlType, bytes: Vec<u8>, [rows, cols]: [usize; 2]) -> Option<Self> {
        let row_bytes = ggml_type.bytes_for(cols as u64)?;
        let whole = ggml_type.is_read() && cols > 0 && (rows as u64).checked_mul(row_bytes) == Some(bytes.len() as u64);
        whole.then(|| Self(Arc::new(Packed { ggml_type, bytes, rows, cols })))
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.0.ggml_type
    }

    /// HF's `[out, in]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.0.rows, self.0.cols]
    }

    /// burn's `[in, out]`, the shape of the dense weight this stands for.
    pub fn dims(&self) -> [usize; 2] {
        [self.0.cols, self.0.rows]
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0.bytes
    }

    /// Whether two handles share one copy of the bytes.
    pub fn shares_bytes_with(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The values, `[out, in]` row-major.
    pub fn values(&self) -> Vec<f32> {
        dequantize(self.0.ggml_type, &self.0.bytes)
    }

    /// The dense `[out, in]` matrix on `device` (not tracked).
    pub fn hf_tensor(&self, device: &burn::tensor::Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.values(), self.shape()), device)
    }

    /// `x` `[n, in]` @ W `[in, out]` -> `[n, out]`; the input's gradient flows through, `W` gets none.
    pub fn matmul(&self, x: Tensor<2>) -> Tensor<2> {
        if on_cpu_backend(&x) {
            Tensor::from_dispatch(<Dispatch as PackedMatmul>::packed_matmul(x.into_dispatch(), self.clone()))
        } else {
            let w = self.hf_tensor(&x.device()); // [out, in]
            x.matmul(w.transpose())
        }
    }
}

fn on_cpu_backend(x: &Tensor<2>) -> bool {
    matches!(x.device().inner().as_dispatch(), DispatchDevice::Flex(_))
}

/// The product with a packed weight, and its transpose for the backward.
#[backend_extension(Flex, Autodiff)]
pub trait PackedMatmul: Backend {
    /// `x` `[n, in]` @ W `[in, out]` -> `[n, out]`.
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;
    /// `g` `[n, out]` @ W^T -> `[n, in]`.
    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;
}

impl PackedMatmul for Flex {
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let w = Self::float_from_data(TensorData::new(weight.values(), weight.shape()), &x.device()); // [out, in]
        Self::float_matmul(x, Self::float_transpose(w))
    }

    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let w = Self::float_from_data(TensorData::new(weight.values(), weight.shape()), &g.device()); // [out, in]
        Self::float_matmul(g, w)
    }
}

#[derive(Debug)]
struct PackedMatmulBackward;

impl<B: Backend + PackedMatmul> Backward<B, 1> for PackedMatmulBackward {
    type State = PackedWeight;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let weight = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::packed_matmul_transposed(grad, weight));
    }
}

impl<B: Backend + PackedMatmul, C: CheckpointStrategy> PackedMatmul for Autodiff<B, C> {
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let (primitive, node) = x.into_parts();
        match PackedMatmulBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(weight.clone(), B::packed_matmul(primitive, weight)),
            OpsKind::UnTracked(prep) => prep.finish(B::packed_matmul(primitive, weight)),
        }
    }

    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let product = B::packed_matmul_transposed(Self::inner(g), weight);
        Self::from_inner(product)
    }
}
