//! A frozen weight kept as its file stores it (GGUF blocks of any type the reader knows, F16,
//! BF16), and its product with activations, dequantized one projection at a time.
//!
//! Written as `x @ dequantize(W)` with burn's own ops, autodiff would keep every layer's f32 `W`
//! from the forward until the backward (a matmul saves its right side for the input's gradient),
//! which is the f32 copy of the base this type exists to avoid. So the product is an op of its own
//! ([`PackedOps`]) whose backward dequantizes `W` again for `grad @ W^T`: between the two, only
//! the packed bytes are held. `W` never gets a gradient of its own: it is frozen.
//!
//! On the CPU backend (natively and in wasm) the op widens `W` as described below; on a GPU
//! (cubecl's runtimes: WebGPU, wgpu, CUDA) the bytes are uploaded once and each product widens `W`
//! there for itself (`packed_gpu.rs`), so there too a backward holds no layer's f32 weights.
//!
//! On the CPU the f32 a product widens is bounded, so a vocabulary-sized matrix (a tied head kept
//! packed: Qwen's 151,936 x 896) is never widened whole: many rows (training, scoring) go through
//! `W` a tile of rows at a time ([`TILE_VALUES`]); a few rows dot each row of `W` as it is widened,
//! a few rows at a time per thread, so `W` is read once and nothing of it is stored. Decoding (a few
//! rows, nothing differentiated) meets a block-quantized `W` unpacked to bytes instead
//! (`quant_dot.rs`), widening no row of it to f32.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, DispatchDevice, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Int, Slice, Tensor, TensorData};

use rayon::prelude::*;

use crate::few_rows::FEW_ROWS;
use crate::generating;
use crate::gguf_quants::{GgmlType, dequantize, dequantize_into, quantize};
use crate::own_kernels::{has_own_kernels, on_gpu_kernels};
use crate::quant_dot::has_packed_dot;
use crate::row_shards::Shards;

mod cpu;

pub(crate) use cpu::unpacked_products_of;
use cpu::{decode_products, few_rows_product, lay_out_rows, plain_rows};

/// At most this many values of `W` are widened at once by a product of many rows (16 MiB of f32).
const TILE_VALUES: usize = 1 << 22;

/// Rows of `W` a thread widens at once in a product of few rows (a few KiB each: they stay in cache).
const FEW_ROWS_STEP: usize = 64;

/// A frozen matrix in HF's `[out, in]` order, each row `in` values as whole blocks of its type
/// (GGUF's layout: a projection's output unit is a row). Clones share the bytes.
#[derive(Clone)]
pub struct PackedWeight(Arc<Packed>);

struct Packed {
    ggml_type: GgmlType,
    /// The rows this worker holds: all of them, unless `shards` holds the rest.
    bytes: Vec<u8>,
    /// Whether `bytes` are laid out for this CPU's decoding products rather than as the file has
    /// them (`packed/cpu.rs`, [`lay_out_rows`]); [`PackedWeight::plain_rows`] reads them back.
    in_lanes: bool,
    rows: usize,
    cols: usize,
    /// The rows past `rows`, held by other workers (`row_shards.rs`).
    shards: Option<Shards>,
    /// The bytes on the GPU the weight was last used on (`packed_gpu.rs`).
    #[cfg(feature = "cube")]
    on_gpu: std::sync::Mutex<Option<burn_cubecl::tensor::CubeTensor>>,
}

impl fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        write!(f, "PackedWeight({} [{}, {}], {} bytes", p.ggml_type.name(), p.rows, p.cols, p.bytes.len())?;
        match &p.shards {
            Some(shards) => write!(f, ", {shards:?})"),
            None => write!(f, ")"),
        }
    }
}

impl PackedWeight {
    /// `rows` x `cols` values of `ggml_type` in `bytes`; `None` unless the type is one the reader
    /// dequantizes and the bytes are exactly `rows` rows of whole blocks.
    pub fn new(ggml_type: GgmlType, mut bytes: Vec<u8>, [rows, cols]: [usize; 2]) -> Option<Self> {
        let row_bytes = ggml_type.bytes_for(cols as u64)?;
        let whole = ggml_type.is_read() && cols > 0 && (rows as u64).checked_mul(row_bytes) == Some(bytes.len() as u64);
        whole.then(|| {
            let in_lanes = lay_out_rows(ggml_type, &mut bytes, rows);
            Self(Arc::new(Packed {
                ggml_type,
                bytes,
                in_lanes,
                rows,
                cols,
                shards: None,
                #[cfg(feature = "cube")]
                on_gpu: Default::default(),
            }))
        })
    }

    /// Rows `start..start + len` of the rows held here, as a weight of their own.
    pub(crate) fn held_rows(&self, start: usize, len: usize) -> Self {
        Self::new(self.0.ggml_type, self.plain_rows(start, len).into_owned(), [len, self.0.cols]).expect("whole rows of a weight")
    }

    /// Rows `start..start + len` of the rows held here, as the file lays them out.
    fn plain_rows(&self, start: usize, len: usize) -> Cow<'_, [u8]> {
        let row_bytes = self.row_bytes();
        if self.0.in_lanes {
            return Cow::Owned(plain_rows(self.0.ggml_type, &self.0.bytes, row_bytes, start, len));
        }
        Cow::Borrowed(&self.0.bytes[start * row_bytes..(start + len) * row_bytes])
    }

    /// These rows as the first of a matrix whose other rows `shards` says where to find.
    pub(crate) fn with_shards(self, shards: Shards) -> Self {
        let p = Arc::try_unwrap(self.0).unwrap_or_else(|shared| Packed {
            ggml_type: shared.ggml_type,
            bytes: shared.bytes.clone(),
            in_lanes: shared.in_lanes,
            rows: shared.rows,
            cols: shared.cols,
            shards: None,
            #[cfg(feature = "cube")]
            on_gpu: Default::default(),
        });
        Self(Arc::new(Packed { shards: Some(shards), ..p }))
    }

    /// Where the rows past this worker's are, when other workers hold some.
    pub(crate) fn shards(&self) -> Option<&Shards> {
        self.0.shards.as_ref()
    }

    /// Bytes the whole matrix takes, wherever its rows are held.
    pub fn held_bytes(&self) -> u64 {
        let row_bytes = self.row_bytes();
        (row_bytes * self.shape()[0]) as u64
    }

    /// The bytes as they stand on `device`, put there by `upload` at their first use on it.
    #[cfg(feature = "cube")]
    pub(crate) fn on_device(
        &self,
        device: &burn_cubecl::CubeDevice,
        upload: impl FnOnce() -> burn_cubecl::tensor::CubeTensor,
    ) -> burn_cubecl::tensor::CubeTensor {
        let mut slot = self.0.on_gpu.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*slot {
            Some(words) if &words.device == device => words.clone(),
            _ => slot.insert(upload()).clone(),
        }
    }

    /// `values` (`[rows, cols]` row-major) written as `ggml_type` ([`quantize`]'s types); `None` if
    /// the type is not one written here or a row is not whole blocks of it.
    pub fn quantized(ggml_type: GgmlType, values: &[f32], shape: [usize; 2]) -> Option<Self> {
        let row_whole = ggml_type.bytes_for(shape[1] as u64).is_some();
        let bytes = quantize(ggml_type, values).filter(|_| row_whole)?;
        Self::new(ggml_type, bytes, shape)
    }

    pub fn ggml_type(&self) -> GgmlType {
        self.0.ggml_type
    }

    /// HF's `[out, in]`.
    pub fn shape(&self) -> [usize; 2] {
        [self.0.rows + self.0.shards.as_ref().map_or(0, Shards::rows), self.0.cols]
    }

    /// burn's `[in, out]`, the shape of the dense weight this stands for.
    pub fn dims(&self) -> [usize; 2] {
        let [rows, cols] = self.shape();
        [cols, rows]
    }

    /// The bytes of the rows held here (all of them, unless other workers hold some), as the file
    /// lays them out.
    pub fn bytes(&self) -> Cow<'_, [u8]> {
        self.plain_rows(0, self.0.rows)
    }

    /// Bytes a row takes.
    pub fn row_bytes(&self) -> usize {
        self.0.bytes.len() / self.0.rows.max(1)
    }

    /// The values, `[out, in]` row-major.
    pub fn values(&self) -> Vec<f32> {
        self.rows_values(0, self.shape()[0])
    }

    /// Rows `start..start + len` of `W`, `[len, in]` row-major; a large range widened in pieces on
    /// rayon's threads; rows other workers hold fetched from them.
    pub(crate) fn rows_values(&self, start: usize, len: usize) -> Vec<f32> {
        let held = self.0.rows;
        match &self.0.shards {
            Some(shards) if start + len > held => {
                let here = held.saturating_sub(start).min(len);
                let mut values = self.held_rows_values(start.min(held), here);
                values.extend(shards.rows_values(start + here - held, len - here, self.0.cols));
                values
            }
            _ => self.held_rows_values(start, len),
        }
    }

    /// [`Self::rows_values`] of rows held here.
    fn held_rows_values(&self, start: usize, len: usize) -> Vec<f32> {
        const PIECE_ROWS: usize = 256;
        if len <= PIECE_ROWS {
            return dequantize(self.0.ggml_type, &self.plain_rows(start, len));
        }
        let mut values = vec![0.0f32; len * self.0.cols];
        values.par_chunks_mut(PIECE_ROWS * self.0.cols).enumerate().for_each(|(piece, out)| {
            let rows = self.plain_rows(start + piece * PIECE_ROWS, out.len() / self.0.cols);
            dequantize_into(self.0.ggml_type, &rows, out);
        });
        values
    }

    /// Rows `start..start + len` of `W` widened, `[len, in]`, on `device` (not tracked): on the host
    /// for the CPU backend, on the GPU (a lookup of those rows) for a GPU's.
    pub fn rows_tensor(&self, start: usize, len: usize, device: &burn::tensor::Device) -> Tensor<2> {
        if on_gpu_kernels(device) {
            return self.rows(Tensor::arange(start as i64..(start + len) as i64, device));
        }
        Tensor::from_data(TensorData::new(self.rows_values(start, len), [len, self.0.cols]), device)
    }

    /// The most rows of `W` a product widens at once ([`TILE_VALUES`] values, at least one row).
    pub fn widest_tile_rows(&self) -> usize {
        (TILE_VALUES / self.0.cols.max(1)).max(1)
    }

    /// `(start, len)` of the tiles of the rows held here, at most `tile_values` values each (or one
    /// row), that a product of many rows widens one at a time.
    pub fn tiles(&self, tile_values: usize) -> impl Iterator<Item = (usize, usize)> + use<> {
        let (rows, step) = (self.0.rows, (tile_values / self.0.cols.max(1)).max(1));
        (0..rows).step_by(step).map(move |start| (start, step.min(rows - start)))
    }

    /// The dense `[out, in]` matrix on `device` (not tracked).
    pub fn hf_tensor(&self, device: &burn::tensor::Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(self.values(), self.shape()), device)
    }

    /// `x` `[n, in]` @ W `[in, out]` -> `[n, out]`; the input's gradient flows through, `W` gets none.
    pub fn matmul(&self, x: Tensor<2>) -> Tensor<2> {
        if !has_own_kernels(&x.device()) {
            let w = self.hf_tensor(&x.device()); // [out, in]
            return x.matmul(w.transpose());
        }
        if let Some([out]) = Self::decode_together([self], &x) {
            return out;
        }
        Tensor::from_dispatch(<Dispatch as PackedOps>::packed_matmul(x.into_dispatch(), self.clone()))
    }

    /// `x` `[n, in]` @ each of `weights` -> `[n, out]` each, in one parallel pass, when the products
    /// are decoding's on the CPU ([`Self::is_decoding`] for every one); `None` otherwise.
    pub fn decode_together<const N: usize>(weights: [&Self; N], x: &Tensor<2>) -> Option<[Tensor<2>; N]> {
        if !weights.iter().all(|w| w.is_decoding(x) && w.0.cols == weights[0].0.cols) {
            return None;
        }
        let (n, device) = (x.dims()[0], x.device());
        let values: Vec<f32> = x.clone().into_data().try_to_vec().expect("f32 activations");
        let mut outs = decode_products(&values, n, &weights).into_iter();
        Some(weights.map(|w| Tensor::from_data(TensorData::new(outs.next().expect("a product a weight"), [n, w.shape()[0]]), &device)))
    }

    /// Whether the product with `x` is decoding's on the CPU: a few rows (or any number, for a
    /// weight laid out in lanes while [`Generating`](crate::Generating): a prompt's prefill), a block-quantized `W`,
    /// the CPU backend, and nothing differentiated (training keeps its exact product, whose
    /// backward is written for it).
    fn is_decoding(&self, x: &Tensor<2>) -> bool {
        let device = x.device();
        (x.dims()[0] <= FEW_ROWS || self.0.in_lanes && generating::now())
            && has_packed_dot(self.0.ggml_type)
            && !device.is_autodiff()
            && matches!(device.inner().as_dispatch(), DispatchDevice::Flex(_))
    }

    /// The rows `ids` `[n]` of `W` -> `[n, in]` on `ids`' device, not tracked (an embedding lookup:
    /// only those rows are widened; an id past `W` reads a zero row).
    pub fn rows(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        if !has_own_kernels(&ids.device()) {
            let w = self.hf_tensor(&ids.device()); // [out, in]
            let last = self.0.rows as i64 - 1;
            let inside = ids.clone().lower_equal_elem(last).float().unsqueeze_dim::<2>(1); // [n, 1]
            return w.select(0, ids.clamp(0, last)) * inside;
        }
        Tensor::from_dispatch(<Dispatch as PackedOps>::packed_rows(ids.into_dispatch(), self.clone()))
    }

    /// `g` `[n, out]` @ W `[out, in]` -> `[n, in]`, not differentiated (a tied head's expected row).
    pub fn matmul_transposed(&self, g: Tensor<2>) -> Tensor<2> {
        if !has_own_kernels(&g.device()) {
            let w = self.hf_tensor(&g.device()); // [out, in]
            return g.matmul(w);
        }
        Tensor::from_dispatch(<Dispatch as PackedOps>::packed_matmul_transposed(g.detach().into_dispatch(), self.clone()))
    }
}

/// The product with a packed weight, and its transpose for the backward: on the CPU backend here,
/// on cubecl's GPU runtimes in `packed_gpu.rs`.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Fusion: cfg(all(feature = "cube", feature = "fusion")), Autodiff)]
pub trait PackedOps: Backend {
    /// `x` `[n, in]` @ W `[in, out]` -> `[n, out]`.
    #[fusion(dtype = x, shape = [x[0], weight.shape()[0]].into())]
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;

    /// `g` `[n, out]` @ W^T -> `[n, in]`.
    #[fusion(dtype = g, shape = [g[0], weight.shape()[1]].into())]
    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;

    /// Rows `ids` `[n]` of `W` -> `[n, in]`; an id past `W` reads zeros.
    #[fusion(dtype = burn::tensor::DType::F32, shape = [ids[0], weight.shape()[1]].into())]
    fn packed_rows(ids: IntTensor<Self>, weight: PackedWeight) -> FloatTensor<Self>;
}

impl PackedOps for Flex {
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let Some(shards) = weight.shards() else {
            return held_product(x, &weight);
        };
        let (n, device) = (x.shape()[0], x.device());
        let values: Vec<f32> = x.clone().into_data().try_to_vec().expect("f32 activations");
        let (mine, parts) = shards.product(&values, n, || held_product(x, &weight));
        let parts = parts.into_iter().map(|part| {
            let rows = part.len() / n.max(1);
            Self::float_from_data(TensorData::new(part, [n, rows]), &device)
        });
        Self::float_cat(std::iter::once(mine).chain(parts).collect(), 1)
    }

    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let Some(shards) = weight.shards() else {
            return tiled_product_transposed(g, &weight, TILE_VALUES);
        };
        let (n, device, cols) = (g.shape()[0], g.device(), weight.0.cols);
        let values: Vec<f32> = g.clone().into_data().try_to_vec().expect("f32 gradients");
        let (mine, parts) = shards.transposed(&values, n, weight.0.rows, cols, || tiled_product_transposed(g, &weight, TILE_VALUES));
        parts.into_iter().fold(mine, |sum, part| Self::float_add(sum, Self::float_from_data(TensorData::new(part, [n, cols]), &device)))
    }

    fn packed_rows(ids: IntTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let device = ids.device();
        let [rows, cols] = weight.shape();
        let ids: Vec<i64> = ids.into_data().iter::<i64>().collect();
        let values: Vec<f32> = ids
            .iter()
            .flat_map(|&id| match usize::try_from(id).ok().filter(|&row| row < rows) {
                Some(row) => weight.rows_values(row, 1),
                None => vec![0.0; cols],
            })
            .collect();
        Self::float_from_data(TensorData::new(values, [ids.len(), cols]), &device)
    }
}

/// `x` `[n, in]` @ W^T -> `[n, rows held here]`.
fn held_product(x: FloatTensor<Flex>, weight: &PackedWeight) -> FloatTensor<Flex> {
    let (n, device) = (x.shape()[0], x.device());
    if n > FEW_ROWS {
        return tiled_product(x, weight, TILE_VALUES);
    }
    let x: Vec<f32> = x.into_data().try_to_vec().expect("f32 activations");
    let out = few_rows_product(&x, weight);
    Flex::float_from_data(TensorData::new(out, [n, weight.0.rows]), &device)
}

/// `x` `[n, in]` @ W^T -> `[n, out]` (the rows held here), `W` widened a tile of at most
/// `tile_values` values at a time.
fn tiled_product(x: FloatTensor<Flex>, weight: &PackedWeight, tile_values: usize) -> FloatTensor<Flex> {
    let device = x.device();
    let tiles = weight.tiles(tile_values).map(|(start, len)| {
        let w = Flex::float_from_data(TensorData::new(weight.held_rows_values(start, len), [len, weight.0.cols]), &device); // [len, in]
        Flex::float_matmul(x.clone(), Flex::float_transpose(w)) // [n, len]
    });
    Flex::float_cat(tiles.collect(), 1)
}

/// `g` `[n, out]` @ W -> `[n, in]`, summed over tiles of `W`'s rows held here as [`tiled_product`]
/// cuts them (the other rows' share is their holders').
fn tiled_product_transposed(g: FloatTensor<Flex>, weight: &PackedWeight, tile_values: usize) -> FloatTensor<Flex> {
    let device = g.device();
    let tiles = weight.tiles(tile_values).map(|(start, len)| {
        let w = Flex::float_from_data(TensorData::new(weight.held_rows_values(start, len), [len, weight.0.cols]), &device); // [len, in]
        let g_tile = Flex::float_slice(g.clone(), &[Slice::full(), Slice::new(start as isize, Some((start + len) as isize), 1)]); // [n, len]
        Flex::float_matmul(g_tile, w) // [n, in]
    });
    tiles.reduce(Flex::float_add).expect("a weight has rows")
}

#[derive(Debug)]
struct PackedProductBackward;

impl<B: Backend + PackedOps> Backward<B, 1> for PackedProductBackward {
    type State = PackedWeight;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let weight = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| B::packed_matmul_transposed(grad, weight));
    }
}

impl<B: Backend + PackedOps, C: CheckpointStrategy> PackedOps for Autodiff<B, C> {
    fn packed_matmul(x: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let (primitive, node) = x.into_parts();
        match PackedProductBackward.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(weight.clone(), B::packed_matmul(primitive, weight)),
            OpsKind::UnTracked(prep) => prep.finish(B::packed_matmul(primitive, weight)),
        }
    }

    fn packed_matmul_transposed(g: FloatTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        let product = B::packed_matmul_transposed(Self::inner(g), weight);
        Self::from_inner(product)
    }

    fn packed_rows(ids: IntTensor<Self>, weight: PackedWeight) -> FloatTensor<Self> {
        Self::from_inner(B::packed_rows(ids, weight))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::int_dot::{IntDot, QuantizedRows};
    use crate::quant_dot::{UnpackedRow, dot_row};

    /// A Q8_0 `[rows, 64]` matrix of varied values (scale 1/64, values -64..64).
    fn q8_0(rows: usize) -> PackedWeight {
        let scale = half::f16::from_f32(1.0 / 64.0).to_le_bytes();
        let bytes = (0..rows * 2)
            .flat_map(|block| scale.into_iter().chain((0..32).map(move |i| ((block * 37 + i * 11) % 128) as i8 as u8 ^ 0x40)))
            .collect();
        PackedWeight::new(GgmlType::Q8_0, bytes, [rows, 64]).expect("whole blocks")
    }

    fn flex(values: Vec<f32>, shape: [usize; 2]) -> FloatTensor<Flex> {
        Flex::float_from_data(TensorData::new(values, shape), &Default::default())
    }

    fn values(t: FloatTensor<Flex>) -> Vec<f32> {
        t.into_data().try_to_vec().unwrap()
    }

    fn assert_close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}");
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{what}[{i}]: {x} vs {y}");
        }
    }

    #[test]
    fn products_by_tiles_of_rows_equal_the_product_with_the_whole_widened_matrix() {
        let (w, n) = (q8_0(37), 20);
        let x: Vec<f32> = (0..n * 64).map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.5).collect();
        let g: Vec<f32> = (0..n * 37).map(|i| ((i * 5) % 11) as f32 / 11.0 - 0.5).collect();
        let dense = flex(w.values(), [37, 64]);
        let whole = values(Flex::float_matmul(flex(x.clone(), [n, 64]), Flex::float_transpose(dense.clone())));
        let whole_t = values(Flex::float_matmul(flex(g.clone(), [n, 37]), dense));
        for tile_values in [64, 5 * 64, 1 << 22] {
            let tiled = values(tiled_product(flex(x.clone(), [n, 64]), &w, tile_values));
            assert_close(&tiled, &whole, &format!("x @ W^T in tiles of {tile_values}"));
            let tiled_t = values(tiled_product_transposed(flex(g.clone(), [n, 37]), &w, tile_values));
            assert_close(&tiled_t, &whole_t, &format!("g @ W in tiles of {tile_values}"));
        }
    }

    #[test]
    fn a_few_rows_dot_each_widened_row_as_the_whole_product_does() {
        let w = q8_0(FEW_ROWS_STEP * 2 + 5);
        let rows = w.shape()[0];
        for n in [1, 3] {
            let x: Vec<f32> = (0..n * 64).map(|i| ((i * 3) % 17) as f32 / 17.0 - 0.5).collect();
            let whole = values(Flex::float_matmul(flex(x.clone(), [n, 64]), Flex::float_transpose(flex(w.values(), [rows, 64]))));
            assert_close(&few_rows_product(&x, &w), &whole, &format!("{n} rows"));
        }
    }

    #[test]
    fn weights_decoded_together_give_each_weight_its_own_products_bits() {
        let (w, other) = (q8_0(FEW_ROWS_STEP * 2 + 5), q8_0(40));
        let device = burn::tensor::Device::flex();
        for n in [1, 3] {
            let x = Tensor::<2>::from_data(
                TensorData::new((0..n * 64).map(|i| ((i * 5) % 13) as f32 / 13.0 - 0.5).collect(), [n, 64]),
                &device,
            );
            let bits = |t: Tensor<2>| t.into_data().try_to_vec::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let [both_w, both_other] = PackedWeight::decode_together([&w, &other], &x).expect("decoding's products on the CPU");
            assert_eq!(bits(both_w), bits(w.matmul(x.clone())), "{n} rows");
            assert_eq!(bits(both_other), bits(other.matmul(x.clone())), "{n} rows");
        }
    }

    #[test]
    fn decoding_meets_a_quantized_weight_row_by_unpacked_row_as_the_widened_product_does() {
        let w = q8_0(FEW_ROWS_STEP * 2 + 5);
        let rows = w.shape()[0];
        let device = burn::tensor::Device::flex();
        for n in [1, 3] {
            let x: Vec<f32> = (0..n * 64).map(|i| ((i * 3) % 17) as f32 / 17.0 - 0.5).collect();
            let whole = values(Flex::float_matmul(flex(x.clone(), [n, 64]), Flex::float_transpose(flex(w.values(), [rows, 64]))));
            let decoded: Vec<f32> =
                w.matmul(Tensor::from_data(TensorData::new(x.clone(), [n, 64]), &device)).into_data().try_to_vec().unwrap();
            let alone = unpacked_products_of(&x, &[&w]).remove(0);
            assert_eq!(decoded, alone, "{n} rows");
            assert_close(&decoded, &whole, &format!("{n} rows, decoding"));
            let tracked = Tensor::<2>::from_data(TensorData::new(x.clone(), [n, 64]), &device.clone().autodiff());
            let trained: Vec<f32> = w.matmul(tracked).into_data().try_to_vec().unwrap();
            assert_close(&trained, &whole, &format!("{n} rows, differentiated"));
        }
    }

    /// Q4_0 and Q8_0 are laid out in groups of 16 rows on AVX-512 VNNI: 37 rows are two groups and 5 left.
    #[test]
    fn a_weight_laid_out_for_this_cpu_reads_and_decodes_as_the_files_rows_do() {
        let (rows, cols) = (37, 96);
        for ggml_type in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let file = ggml_type.example_bytes(rows * cols).unwrap();
            let w = PackedWeight::new(ggml_type, file.clone(), [rows, cols]).unwrap();
            assert_eq!(*w.bytes(), file[..]);
            assert_eq!(w.values(), dequantize(ggml_type, &file));
            assert_eq!(*w.held_rows(13, 20).bytes(), file[13 * w.row_bytes()..33 * w.row_bytes()]);
            for n in [1, 2, 5] {
                let x: Vec<f32> = (0..n * cols).map(|i| ((i * 3) % 17) as f32 / 17.0 - 0.5).collect();
                let xs = QuantizedRows::new(&x);
                let mut expected_t = vec![0.0f32; rows * n]; // [out, n]
                for (row, out) in file.chunks_exact(w.row_bytes()).zip(expected_t.chunks_exact_mut(n)) {
                    dot_row(ggml_type, row, &xs, out, &mut UnpackedRow::default(), IntDot::Portable);
                }
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                let found = unpacked_products_of(&x, &[&w]).remove(0);
                assert_eq!(bits(&found), bits(&cpu::transposed(expected_t, n)), "{} {n} rows", ggml_type.name());
            }
        }
    }

    /// A prompt's many rows, while generating, meet a weight laid out in lanes in decoding's
    /// products (each row's bits as when it is decoded in a few rows); otherwise, and on CPUs
    /// without the lanes, the widened product.
    #[test]
    fn a_prefill_while_generating_meets_a_weight_in_lanes_as_decoding_does() {
        let (rows, cols, n) = (37, 96, 3 * FEW_ROWS + 5);
        let device = burn::tensor::Device::flex();
        for ggml_type in [GgmlType::Q4_0, GgmlType::Q8_0] {
            let w = PackedWeight::new(ggml_type, ggml_type.example_bytes(rows * cols).unwrap(), [rows, cols]).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7) % 19) as f32 / 19.0 - 0.5).collect();
            let product = |x: &[f32]| {
                let x = Tensor::<2>::from_data(TensorData::new(x.to_vec(), [x.len() / cols, cols]), &device);
                w.matmul(x).into_data().try_to_vec::<f32>().unwrap()
            };
            let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            let decoded: Vec<f32> = x.chunks(FEW_ROWS * cols).flat_map(product).collect();
            let widened = product(&x);
            let generating = {
                let _generating = crate::Generating::start();
                product(&x)
            };
            assert_eq!(bits(&product(&x)), bits(&widened), "{}: the guard gone, the widened product again", ggml_type.name());
            if w.0.in_lanes {
                assert_eq!(bits(&generating), bits(&decoded), "{}", ggml_type.name());
                assert_close(&generating, &widened, ggml_type.name());
            } else {
                assert_eq!(bits(&generating), bits(&widened), "{}", ggml_type.name());
            }
        }
    }

    #[test]
    fn looked_up_rows_are_the_widened_matrix_rows_and_an_id_beyond_it_reads_zeros() {
        let w = q8_0(9);
        let all = w.values();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(vec![4i64, 0, 9, 4], [4]), &burn::tensor::Device::flex());
        let found: Vec<f32> = w.rows(ids).into_data().try_to_vec().unwrap();
        assert_eq!(found, [&all[4 * 64..5 * 64], &all[..64], &[0.0; 64], &all[4 * 64..5 * 64]].concat());
    }
}
