//! A packed base held once by several workers: each holds a contiguous range of the rows of every
//! large packed matrix, and a product is each worker's rows dotted at once, the parts put together.
//!
//! The tab's workers are separate wasm instances: their memories are not shared (wasm threads need
//! nightly Rust), so a worker holding a copy of a real model's base for each core would multiply
//! the largest thing the tab holds. Cut by rows instead, a matrix's product is each worker's rows
//! computed where they are: decoding's `x @ W^T` and training's forward are the parts side by side,
//! the backward's `g @ W` the parts' sum, an embedding lookup the rows of whichever part holds them.
//! The exchange is synchronous (a product returns its values), so this file only asks a
//! [`RowServer`] to carry request bytes to each helper and answer bytes back: the edge decides how
//! (the page blocks on a `SharedArrayBuffer` with `Atomics.wait`; the tests use threads).
//!
//! The worker that runs the model ("this worker") keeps the first rows and sends its request before
//! computing them, so the helpers' parts are computed meanwhile. Every value is computed as the
//! unsharded product computes it (the same rows, the same code on the same type), so products
//! of few rows keep their bits; a backward's sum adds the parts in order.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::TensorData;

use crate::gguf_quants::GgmlType;
use crate::packed::{PackedOps, PackedWeight, unpacked_products_of};

/// By default a matrix is cut only when each worker gets at least this many rows: a key projection
/// of a small model costs less to compute than to exchange.
const MIN_PART_ROWS: usize = 64;

/// What carries requests to the workers that hold the other rows (the helpers), and their answers
/// back. Helper `k` (from 0) holds the `k + 1`-th range of rows of each cut matrix.
pub trait RowServer: Send + Sync {
    /// How many helpers hold rows.
    fn helpers(&self) -> usize;

    /// Told the size of the model whose base is about to be cut, before its first matrix: what
    /// [`Self::helpers`] says from then on may depend on it (the edge's choice).
    fn size_known(&self, _parameters: usize) {}

    /// The fewest rows worth a part of their own: an exchange's cost over a row's.
    fn min_part_rows(&self) -> usize {
        MIN_PART_ROWS
    }

    /// The most bytes one request or one answer may take; larger exchanges are cut by rows.
    fn capacity(&self) -> usize;

    /// Gives `helper` its rows of matrix `id` to hold (before any request names it).
    fn hold(&self, helper: usize, id: u32, part: PackedWeight) -> Result<(), String>;

    /// Sends `request` to `helper`, whose answer `receive` waits for.
    fn send(&self, helper: usize, request: &[u8]);

    /// `helper`'s answer to the request last sent to it, or why there is none (it stopped).
    fn receive(&self, helper: usize) -> Result<Vec<u8>, String>;
}

impl fmt::Debug for dyn RowServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RowServer({} helpers)", self.helpers())
    }
}

/// Where the rows of a cut matrix past this worker's are: `parts[k]` rows at helper `k`.
#[derive(Clone)]
pub(crate) struct Shards {
    server: Arc<dyn RowServer>,
    id: u32,
    parts: Vec<usize>,
}

impl fmt::Debug for Shards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "matrix {} with {:?} rows at the helpers", self.id, self.parts)
    }
}

/// What a request asks of a helper's part of a matrix.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Op {
    /// Decoding's products of a few rows with each named part (`x` `[n, in]`): `[n, rows]` each.
    Decode = 1,
    /// `x` `[n, in]` @ part^T, differentiable's forward: `[n, rows]`.
    Product = 2,
    /// `g` `[n, rows]` @ part: `[n, in]`, a backward's share of the sum.
    Transposed = 3,
    /// The part's rows `ints`, widened: `[len, in]`.
    Rows = 4,
}

/// `weight` cut among this worker and `server`'s helpers as matrix `id`: this worker keeps the first
/// rows and each helper is handed its own; `weight` whole when it is too small to cut.
pub fn shard(weight: PackedWeight, server: &Arc<dyn RowServer>, id: u32) -> Result<PackedWeight, String> {
    let [rows, _] = weight.shape();
    let workers = server.helpers() + 1;
    if server.helpers() == 0 || rows / workers < server.min_part_rows().max(1) {
        return Ok(weight);
    }
    // Parts of whole fours of rows, as decoding's products take them, where there are enough.
    let align = if rows / workers >= 64 { 4 } else { 1 };
    let starts: Vec<usize> = (0..=workers).map(|k| if k == workers { rows } else { k * rows / workers / align * align }).collect();
    let parts: Vec<usize> = starts.windows(2).skip(1).map(|w| w[1] - w[0]).collect();
    if parts.contains(&0) {
        return Ok(weight);
    }
    for (helper, (&start, &len)) in starts.iter().skip(1).zip(&parts).enumerate() {
        server.hold(helper, id, weight.held_rows(start, len))?;
    }
    let shards = Shards { server: server.clone(), id, parts };
    Ok(weight.held_rows(0, starts[1]).with_shards(shards))
}

impl Shards {
    /// Rows the helpers hold.
    pub(crate) fn rows(&self) -> usize {
        self.parts.iter().sum()
    }

    /// `local()` here while each helper computes `x` `[n, width]` against its part of every matrix
    /// of `all` (the same server's) as `op`; each helper's answer `[n, rows of its part]` for each
    /// matrix, in `all`'s order. `x` goes in pieces of rows when the exchange would not fit.
    fn products<T>(all: &[&Shards], op: Op, x: &[f32], n: usize, local: impl FnOnce() -> T) -> (T, Vec<Vec<Vec<f32>>>) {
        let first = all[0];
        let width = x.len() / n.max(1);
        let widest = (0..first.parts.len()).map(|k| all.iter().map(|s| s.parts[k]).sum::<usize>()).max().unwrap_or(0);
        let step = piece_rows(first.server.capacity(), width.max(widest), n);
        let ids: Vec<u32> = all.iter().map(|s| s.id).collect();
        let mut answers = vec![vec![Vec::new(); all.len()]; first.parts.len()]; // [helper][matrix]
        let mut local = Some(local);
        let mut mine = None;
        for start in (0..n.max(1)).step_by(step) {
            let rows = step.min(n - start);
            let piece = &x[start * width..(start + rows) * width];
            let request = encode(op, rows, &ids, &[], piece);
            (0..first.parts.len()).for_each(|k| first.server.send(k, &request));
            if let Some(local) = local.take() {
                mine = Some(local());
            }
            for (k, answer) in answers.iter_mut().enumerate() {
                let values = first.receive(k);
                let mut at = 0;
                for (matrix, shards) in answer.iter_mut().zip(all) {
                    let len = rows * shards.parts[k];
                    matrix.extend_from_slice(&values[at..at + len]);
                    at += len;
                }
            }
        }
        (mine.expect("one piece at least"), answers)
    }

    /// `x` `[n, in]` @ W^T's parts, a differentiable forward's: `local()` (`[n, rows here]`) and each
    /// helper's `[n, rows]`.
    pub(crate) fn product<T>(&self, x: &[f32], n: usize, local: impl FnOnce() -> T) -> (T, Vec<Vec<f32>>) {
        let (mine, answers) = Self::products(&[self], Op::Product, x, n, local);
        (mine, answers.into_iter().map(|mut a| a.remove(0)).collect())
    }

    /// Decoding's products of `x` with several matrices of one server in one exchange each way.
    pub(crate) fn decode_together<T>(all: &[&Shards], x: &[f32], n: usize, local: impl FnOnce() -> T) -> (T, Vec<Vec<Vec<f32>>>) {
        Self::products(all, Op::Decode, x, n, local)
    }

    /// `g` `[n, rows]` @ W's helpers' shares `[n, in]` each, while `local()` computes this worker's:
    /// helper `k` gets `g`'s columns of its rows (`held` = the rows here come first).
    pub(crate) fn transposed<T>(&self, g: &[f32], n: usize, held: usize, cols: usize, local: impl FnOnce() -> T) -> (T, Vec<Vec<f32>>) {
        let width = g.len() / n.max(1);
        let step = piece_rows(self.server.capacity(), self.parts.iter().max().copied().unwrap_or(0).max(cols), n);
        let mut answers = vec![Vec::with_capacity(n * cols); self.parts.len()];
        let mut local = Some(local);
        let mut mine = None;
        for start in (0..n.max(1)).step_by(step) {
            let rows = step.min(n - start);
            let mut offset = held;
            for (k, &len) in self.parts.iter().enumerate() {
                let columns: Vec<f32> =
                    (start..start + rows).flat_map(|r| &g[r * width + offset..r * width + offset + len]).copied().collect();
                self.server.send(k, &encode(Op::Transposed, rows, &[self.id], &[], &columns));
                offset += len;
            }
            if let Some(local) = local.take() {
                mine = Some(local());
            }
            for (k, answer) in answers.iter_mut().enumerate() {
                answer.extend(self.receive(k));
            }
        }
        (mine.expect("one piece at least"), answers)
    }

    /// Rows `start..start + len` counted from the first row past this worker's, widened
    /// `[len, cols]`, from whichever helpers hold them.
    pub(crate) fn rows_values(&self, start: usize, len: usize, cols: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(len * cols);
        let mut first = 0;
        for (k, &part) in self.parts.iter().enumerate() {
            let (from, to) = (start.max(first), (start + len).min(first + part));
            let step = piece_rows(self.server.capacity(), cols, to.saturating_sub(from)).max(1);
            for piece in (from..to).step_by(step) {
                let rows: Vec<u32> = (piece - first..(piece + step).min(to) - first).map(|r| r as u32).collect();
                self.server.send(k, &encode(Op::Rows, rows.len(), &[self.id], &rows, &[]));
                out.extend(self.receive(k));
            }
            first += part;
        }
        out
    }

    /// `helper`'s answer as values. A helper that stopped leaves this worker's products without
    /// their rows: nothing can be computed, so the worker stops with why.
    fn receive(&self, helper: usize) -> Vec<f32> {
        match self.server.receive(helper) {
            Ok(bytes) => floats(&bytes),
            Err(why) => panic!("the worker holding part {} of matrix {} stopped: {why}", helper + 1, self.id),
        }
    }
}

/// Rows of `n` that fit `capacity` bytes, a request's header aside, when each row is `width`
/// values (at least one row).
fn piece_rows(capacity: usize, width: usize, n: usize) -> usize {
    const HEADER_ROOM: usize = 1024;
    (capacity.saturating_sub(HEADER_ROOM) / (4 * width.max(1))).clamp(1, n.max(1))
}

/// A request: `op`, the rows of activations (or of ids), the matrices' ids, integers, values.
fn encode(op: Op, n: usize, ids: &[u32], ints: &[u32], values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 4 * (ids.len() + ints.len() + values.len()));
    out.push(op as u8);
    for word in [n as u32, ids.len() as u32, ints.len() as u32].iter().chain(ids).chain(ints) {
        out.extend_from_slice(&word.to_le_bytes());
    }
    out.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    out
}

fn floats(bytes: &[u8]) -> Vec<f32> {
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// A helper's side: the parts of the cut matrices it was handed, and the answers to requests.
#[derive(Default)]
pub struct ShardServer {
    parts: HashMap<u32, PackedWeight>,
}

impl ShardServer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps part `id`: `rows` x `cols` values of `ggml_type` in `bytes`.
    pub fn hold(&mut self, id: u32, ggml_type: GgmlType, bytes: Vec<u8>, shape: [usize; 2]) -> Result<(), String> {
        let part =
            PackedWeight::new(ggml_type, bytes, shape).ok_or_else(|| format!("part {id}: not whole rows of {}", ggml_type.name()))?;
        self.parts.insert(id, part);
        Ok(())
    }

    /// Forgets every part (a new model is coming).
    pub fn clear(&mut self) {
        self.parts.clear();
    }

    /// Bytes the parts take.
    pub fn held_bytes(&self) -> u64 {
        self.parts.values().map(|p| p.bytes().len() as u64).sum()
    }

    /// The answer to `request`, or why it cannot be answered (a request this side cannot read).
    pub fn answer(&self, request: &[u8]) -> Result<Vec<u8>, String> {
        let bad = || "a request too short for what it says it holds".to_owned();
        let word =
            |i: usize| request.get(1 + 4 * i..5 + 4 * i).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).ok_or_else(bad);
        let (n, id_count, int_count) = (word(0)?, word(1)?, word(2)?);
        let words = |from: usize, count: usize| (from..from + count).map(word).collect::<Result<Vec<_>, _>>();
        let ids = words(3, id_count)?;
        let ints = words(3 + id_count, int_count)?;
        let values = floats(request.get(4 * (3 + id_count + int_count) + 1..).ok_or_else(bad)?);
        let parts = ids
            .iter()
            .map(|&id| self.parts.get(&(id as u32)).ok_or_else(|| format!("no part {id} is held here")))
            .collect::<Result<Vec<_>, _>>()?;
        let part = *parts.first().ok_or_else(bad)?;
        let [rows, cols] = part.shape();
        let tensor = |values: Vec<f32>, shape: [usize; 2]| Flex::float_from_data(TensorData::new(values, shape), &Default::default());
        let out: Vec<f32> = match request.first().copied() {
            Some(op) if op == Op::Decode as u8 => {
                if values.len() != n * cols {
                    return Err(bad());
                }
                unpacked_products_of(&values, &parts).concat()
            }
            Some(op) if op == Op::Product as u8 && values.len() == n * cols => {
                let out = Flex::packed_matmul(tensor(values, [n, cols]), part.clone());
                out.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?
            }
            Some(op) if op == Op::Transposed as u8 && values.len() == n * rows => {
                let out = Flex::packed_matmul_transposed(tensor(values, [n, rows]), part.clone());
                out.into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?
            }
            Some(op) if op == Op::Rows as u8 => {
                if let Some(&row) = ints.iter().find(|&&r| r >= rows) {
                    return Err(format!("row {row} is past part {}'s {rows} rows", ids[0]));
                }
                ints.iter().flat_map(|&r| part.rows_values(r, 1)).collect()
            }
            _ => return Err(bad()),
        };
        Ok(out.iter().flat_map(|v| v.to_le_bytes()).collect())
    }
}
