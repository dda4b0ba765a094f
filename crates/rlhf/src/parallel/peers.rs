//! Data-parallel training: several identical copies of a trainer ("peers": the page's Web Workers,
//! each its own wasm instance on its own core) share each step's work and end it with the same
//! weights, bit for bit.
//!
//! Every peer runs the same step on the same data. Where the work splits, peer `rank` takes the
//! rows [`shard`] gives it; what the step needs whole afterwards (sampled answers and their scores,
//! log-probs for a loss computed on the host, gradients) goes through [`Peers::all_gather`], which
//! hands every peer the same list of parts in rank order. Gradients are summed in that order on
//! every peer, so each applies the same update with the same optimizer to the same weights. The
//! results are a function of the seed and the number of peers, never of which peer finished first.
//! Alone ([`Alone`]), a trainer exchanges nothing and reads nothing more than before.
//!
//! Boundary: bytes in and out; how they travel (postMessage between workers, or a test's queue)
//! is the caller's.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};

use crate::checkpoint::TrainError;

/// Every peer's part, in rank order, or why the exchange failed (a peer died).
pub type Gathered<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<u8>>, String>> + 'a>>;

/// The copies of a trainer that share its steps.
pub trait Peers {
    /// This copy's place, `0..count()`.
    fn rank(&self) -> usize;
    fn count(&self) -> usize;
    /// Every peer's `part` (this one's included), in rank order; every peer gets the same list.
    fn all_gather(&self, part: Vec<u8>) -> Gathered<'_>;
}

/// A trainer on its own: nothing to exchange.
#[derive(Debug, Default, Clone, Copy)]
pub struct Alone;

impl Peers for Alone {
    fn rank(&self) -> usize {
        0
    }

    fn count(&self) -> usize {
        1
    }

    fn all_gather(&self, part: Vec<u8>) -> Gathered<'_> {
        Box::pin(std::future::ready(Ok(vec![part])))
    }
}

/// Models above this size train on one worker: each worker holds its own copy of the four models
/// PPO needs, and at this size two copies already take over a gigabyte.
pub const MAX_SHARED_PARAMETERS: usize = 30_000_000;

/// How many workers the tab trains on, each with a copy of the models: `requested` (the page's
/// `?workers=N`) when given, else one per core, from 1 to 8 (the page's own thread only draws while
/// they train: leaving it a core left one of a laptop's two idle); one for a model over
/// [`MAX_SHARED_PARAMETERS`], whose workers share one base by rows instead ([`row_workers`]).
pub fn worker_count(cores: usize, requested: Option<usize>, parameters: usize) -> usize {
    if parameters > MAX_SHARED_PARAMETERS { 1 } else { wanted_workers(cores, requested) }
}

/// How many workers hold a GGUF base over [`MAX_SHARED_PARAMETERS`] between them, each a share of
/// every large packed matrix's rows and computing its share of each product
/// (`tinyrlhf_model::shard`): for such a model `requested` (the page's `?workers=N`) when given,
/// else one per core, from 1 to 8, as [`worker_count`] gives a small model; one otherwise.
pub fn row_workers(cores: usize, requested: Option<usize>, parameters: usize) -> usize {
    if parameters > MAX_SHARED_PARAMETERS { wanted_workers(cores, requested) } else { 1 }
}

/// `requested` when given, else one per core, from 1 to 8.
fn wanted_workers(cores: usize, requested: Option<usize>) -> usize {
    requested.unwrap_or(cores).clamp(1, 8)
}

/// The rows of `n` that peer `rank` of `count` works on: consecutive blocks, the first `n % count`
/// one row longer, so the blocks in rank order are `0..n`.
pub fn shard(n: usize, rank: usize, count: usize) -> Range<usize> {
    let count = count.max(1);
    let (base, extra) = (n / count, n % count);
    let start = rank * base + rank.min(extra);
    start..(start + base + usize::from(rank < extra)).min(n)
}

/// Every peer's `part`, checked to be one per peer.
pub(crate) async fn gather(peers: &dyn Peers, part: Vec<u8>) -> Result<Vec<Vec<u8>>, TrainError> {
    let parts = peers.all_gather(part).await.map_err(TrainError::Peers)?;
    if parts.len() != peers.count() {
        return Err(TrainError::Peers(format!("expected {} parts, got {}", peers.count(), parts.len())));
    }
    Ok(parts)
}

/// Every peer's rows, concatenated in rank order (alone: `own`, with no exchange).
pub(crate) async fn gather_rows(peers: &dyn Peers, own: Vec<Vec<f64>>) -> Result<Vec<Vec<f64>>, TrainError> {
    if peers.count() == 1 {
        return Ok(own);
    }
    let mut wire = Wire::default();
    wire.len(own.len());
    for row in &own {
        wire.f64s(row);
    }
    let mut rows = vec![];
    for part in gather(peers, wire.bytes()).await? {
        let mut reader = Reader::new(&part);
        for _ in 0..reader.len()? {
            rows.push(reader.f64s()?);
        }
    }
    Ok(rows)
}

/// A message between peers: lengths and numbers, little-endian.
#[derive(Default)]
pub(crate) struct Wire(Vec<u8>);

impl Wire {
    pub(crate) fn len(&mut self, n: usize) -> &mut Self {
        self.0.extend((n as u64).to_le_bytes());
        self
    }

    fn numbers<T: Copy, const W: usize>(&mut self, values: &[T], to_bytes: fn(T) -> [u8; W]) -> &mut Self {
        self.len(values.len());
        self.0.reserve(values.len() * W);
        for &x in values {
            self.0.extend_from_slice(&to_bytes(x));
        }
        self
    }

    pub(crate) fn f32s(&mut self, values: &[f32]) -> &mut Self {
        self.numbers(values, f32::to_le_bytes)
    }

    pub(crate) fn f64s(&mut self, values: &[f64]) -> &mut Self {
        self.numbers(values, f64::to_le_bytes)
    }

    pub(crate) fn u32s(&mut self, values: &[u32]) -> &mut Self {
        self.numbers(values, u32::to_le_bytes)
    }

    pub(crate) fn bytes(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// Reads a [`Wire`] message back, in the order it was written.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TrainError> {
        if self.0.len() < n {
            return Err(TrainError::Peers("a peer's message ended early".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    pub(crate) fn len(&mut self) -> Result<usize, TrainError> {
        let raw = self.take(8)?;
        let n = u64::from_le_bytes(raw.try_into().map_err(|_| TrainError::Peers("bad length".into()))?);
        usize::try_from(n).map_err(|_| TrainError::Peers(format!("a peer sent a length of {n}")))
    }

    fn items<const W: usize, T>(&mut self, from: fn([u8; W]) -> T) -> Result<Vec<T>, TrainError> {
        let n = self.len()?;
        let raw = self.take(n.checked_mul(W).ok_or_else(|| TrainError::Peers(format!("a peer sent {n} items")))?)?;
        Ok(raw.chunks_exact(W).map(|c| from(c.try_into().unwrap_or([0; W]))).collect())
    }

    pub(crate) fn f32s(&mut self) -> Result<Vec<f32>, TrainError> {
        self.items(f32::from_le_bytes)
    }

    pub(crate) fn f64s(&mut self) -> Result<Vec<f64>, TrainError> {
        self.items(f64::from_le_bytes)
    }

    pub(crate) fn u32s(&mut self) -> Result<Vec<u32>, TrainError> {
        self.items(u32::from_le_bytes)
    }
}

/// The gradients of one or more modules and some numbers, summed over the peers.
#[derive(Default)]
pub(crate) struct GradientExchange {
    /// Each present gradient, flattened, in visiting order.
    flat: Vec<Tensor<1>>,
    /// Per module, per float parameter in visiting order: its gradient's length, or `None`.
    layout: Vec<Vec<Option<usize>>>,
}

struct Flatten<'a> {
    grads: &'a GradientsParams,
    flat: &'a mut Vec<Tensor<1>>,
    layout: Vec<Option<usize>>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let grad = self.grads.get::<D>(param.id).map(|g| {
            let n = g.shape().num_elements();
            self.flat.push(g.reshape([n]));
            n
        });
        self.layout.push(grad);
    }
}

struct Unflatten<'a> {
    sums: std::vec::IntoIter<Option<Vec<f32>>>,
    grads: GradientsParams,
    device: &'a Device,
}

impl ModuleVisitor for Unflatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(Some(sum)) = self.sums.next() {
            let shape = param.val().dims();
            self.grads.register::<D>(param.id, Tensor::from_data(TensorData::new(sum, shape), self.device));
        }
    }
}

/// What came back: the summed gradients, to take module by module in the order they were added,
/// and every peer's numbers in rank order.
pub(crate) struct Summed {
    modules: std::vec::IntoIter<Vec<Option<Vec<f32>>>>,
    pub(crate) numbers: Vec<Vec<f32>>,
}

impl Summed {
    /// The next module's summed gradients (`module` must be the one added in that place).
    pub(crate) fn next<M: Module>(&mut self, module: &M, device: &Device) -> GradientsParams {
        let sums = self.modules.next().unwrap_or_default();
        let mut visitor = Unflatten { sums: sums.into_iter(), grads: GradientsParams::new(), device };
        module.visit(&mut visitor);
        visitor.grads
    }
}

impl GradientExchange {
    /// Adds `module`'s gradients (an empty [`GradientsParams`] for a peer whose shard was empty).
    pub(crate) fn add<M: Module>(&mut self, module: &M, grads: &GradientsParams) {
        let mut visitor = Flatten { grads, flat: &mut self.flat, layout: vec![] };
        module.visit(&mut visitor);
        self.layout.push(visitor.layout);
    }

    /// Reads the gradients and `numbers` back in one read, exchanges them, and sums each gradient
    /// over the peers in rank order (a peer without one adds nothing).
    pub(crate) async fn run(self, peers: &dyn Peers, numbers: Vec<Tensor<1>>) -> Result<Summed, TrainError> {
        let parts: Vec<Tensor<1>> = self.flat.into_iter().chain(numbers).collect();
        let host = if parts.is_empty() { vec![] } else { crate::step::read::values(Tensor::cat(parts, 0)).await? };
        let mut wire = Wire::default();
        wire.len(self.layout.len());
        for module in &self.layout {
            wire.len(module.len());
            for grad in module {
                // 0: no gradient; else its length + 1.
                wire.len(grad.map_or(0, |n| n + 1));
            }
        }
        wire.f32s(&host);
        let messages = gather(peers, wire.bytes()).await?;

        let mut modules: Vec<Vec<Option<Vec<f32>>>> = vec![];
        let mut numbers = vec![];
        for message in &messages {
            let mut reader = Reader::new(message);
            let mut layout: Vec<Vec<Option<usize>>> = vec![];
            for _ in 0..reader.len()? {
                let params = reader.len()?;
                layout.push((0..params).map(|_| reader.len().map(|n| n.checked_sub(1))).collect::<Result<_, _>>()?);
            }
            let values = reader.f32s()?;
            if modules.is_empty() {
                modules = layout.iter().map(|m| vec![None; m.len()]).collect();
            }
            if layout.len() != modules.len() || layout.iter().zip(&modules).any(|(a, b)| a.len() != b.len()) {
                return Err(TrainError::Peers("peers' models differ in shape".into()));
            }
            let mut offset = 0;
            for (module, sums) in layout.iter().zip(&mut modules) {
                for (len, sum) in module.iter().zip(sums.iter_mut()) {
                    let Some(len) = *len else { continue };
                    let grad =
                        values.get(offset..offset + len).ok_or_else(|| TrainError::Peers("a peer's gradients ended early".into()))?;
                    offset += len;
                    match sum {
                        None => *sum = Some(grad.to_vec()),
                        Some(sum) if sum.len() == len => sum.iter_mut().zip(grad).for_each(|(s, g)| *s += g),
                        Some(_) => return Err(TrainError::Peers("peers' gradients differ in shape".into())),
                    }
                }
            }
            numbers.push(values.get(offset..).unwrap_or_default().to_vec());
        }
        Ok(Summed { modules: modules.into_iter(), numbers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_the_rows_in_order() {
        for n in 0..20 {
            for count in 1..6 {
                let blocks: Vec<usize> = (0..count).flat_map(|r| shard(n, r, count)).collect();
                assert_eq!(blocks, (0..n).collect::<Vec<_>>(), "n {n} count {count}");
                let sizes: Vec<usize> = (0..count).map(|r| shard(n, r, count).len()).collect();
                assert!(sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0) <= 1);
            }
        }
    }

    #[test]
    fn workers_are_one_per_core_but_one_from_one_to_eight_unless_asked() {
        assert_eq!([1, 2, 4, 16].map(|cores| worker_count(cores, None, 1_000_000)), [1, 2, 4, 8]);
        assert_eq!(worker_count(16, None, 124_000_000), 1);
        assert_eq!([0, 2, 20].map(|n| worker_count(2, Some(n), 124_000_000)), [1, 1, 1]);
        assert_eq!([0, 2, 20].map(|n| row_workers(2, Some(n), 124_000_000)), [1, 2, 8]);
        assert_eq!([1, 2, 16].map(|cores| row_workers(cores, None, 124_000_000)), [1, 2, 8]);
        assert_eq!(row_workers(16, Some(4), 1_000_000), 1);
    }

    #[test]
    fn a_wire_message_reads_back_as_written_and_a_short_one_is_an_error() {
        let mut wire = Wire::default();
        wire.u32s(&[1, 2, 3]).f64s(&[0.1, -2.5]).f32s(&[f32::NAN, 1.5]).len(7);
        let bytes = wire.bytes();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u32s().unwrap(), vec![1, 2, 3]);
        assert_eq!(r.f64s().unwrap(), vec![0.1, -2.5]);
        let f = r.f32s().unwrap();
        assert!(f[0].is_nan() && f[1] == 1.5);
        assert_eq!(r.len().unwrap(), 7);
        let mut short = Reader::new(&bytes[..10]);
        assert!(matches!(short.u32s(), Err(TrainError::Peers(_))));
    }
}
