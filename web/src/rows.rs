//! A real model's base held once by the tab's workers: this worker keeps the first rows of each
//! large packed matrix and row-helper workers hold the rest (`tinyrlhf_model::shard`), each
//! computing its rows of every product while this one computes its own.
//!
//! The products are synchronous, so the exchange is too: the worker script (`rows.ts`) defines
//! `tinyrlhfRows` before the module runs, whose `send` writes a request into a helper's
//! `SharedArrayBuffer` and wakes it, and whose `receive` blocks in `Atomics.wait` until the answer
//! is there. A helper is the same module answering with a [`RowHelper`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tinyrlhf_model::{GgmlType, PackedWeight, RowServer, ShardServer};
use wasm_bindgen::prelude::*;

use crate::js;

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = tinyrlhfRows, js_name = hold, catch)]
    fn rows_hold(helper: usize, id: u32, ggml_type: u32, rows: usize, cols: usize, bytes: &[u8]) -> Result<(), JsValue>;

    #[wasm_bindgen(js_namespace = tinyrlhfRows, js_name = send)]
    fn rows_send(helper: usize, request: &[u8]);

    #[wasm_bindgen(js_namespace = tinyrlhfRows, js_name = receive, catch)]
    fn rows_receive(helper: usize) -> Result<Vec<u8>, JsValue>;

    #[wasm_bindgen(js_namespace = tinyrlhfRows, js_name = capacity)]
    fn rows_capacity() -> usize;
}

/// The row helpers as the library sees them: how many hold the base being loaded is decided once
/// its size is known, from the cores and the page's `?workers=N`.
pub(crate) struct PageRows {
    cores: usize,
    requested: Option<usize>,
    helpers: AtomicUsize,
}

impl PageRows {
    pub(crate) fn new(cores: usize, requested: Option<usize>) -> Arc<Self> {
        Arc::new(Self { cores, requested, helpers: AtomicUsize::new(0) })
    }

    /// Workers holding the base, this one included.
    pub(crate) fn workers(&self) -> usize {
        self.helpers.load(Ordering::Relaxed) + 1
    }
}

fn why(e: JsValue) -> String {
    e.as_string().or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message()))).unwrap_or_else(|| format!("{e:?}"))
}

impl RowServer for PageRows {
    fn helpers(&self) -> usize {
        self.helpers.load(Ordering::Relaxed)
    }

    fn size_known(&self, parameters: usize) {
        let workers = tinyrlhf_rlhf::parallel::peers::row_workers(self.cores, self.requested, parameters);
        self.helpers.store(workers - 1, Ordering::Relaxed);
    }

    fn capacity(&self) -> usize {
        rows_capacity()
    }

    fn hold(&self, helper: usize, id: u32, part: PackedWeight) -> Result<(), String> {
        let [rows, cols] = part.shape();
        rows_hold(helper, id, part.ggml_type().id(), rows, cols, &part.bytes()).map_err(why)
    }

    fn send(&self, helper: usize, request: &[u8]) {
        rows_send(helper, request);
    }

    fn receive(&self, helper: usize) -> Result<Vec<u8>, String> {
        rows_receive(helper).map_err(why)
    }
}

/// A row helper's side: the rows it was handed, and its answers to the worker's requests.
#[wasm_bindgen]
#[derive(Default)]
pub struct RowHelper {
    server: ShardServer,
}

#[wasm_bindgen]
impl RowHelper {
    #[wasm_bindgen(constructor)]
    pub fn new() -> RowHelper {
        RowHelper::default()
    }

    /// Keeps part `id` of a matrix: `rows` x `cols` values of ggml type `ggml_type` in `bytes`.
    pub fn hold(&mut self, id: u32, ggml_type: u32, rows: usize, cols: usize, bytes: Vec<u8>) -> Result<(), JsError> {
        let ggml_type = GgmlType::from_id(ggml_type).ok_or_else(|| js(format!("part {id}: ggml type {ggml_type} is not one read here")))?;
        self.server.hold(id, ggml_type, bytes, [rows, cols]).map_err(js)
    }

    /// The answer to a request of the worker holding the first rows.
    pub fn answer(&self, request: &[u8]) -> Result<Vec<u8>, JsError> {
        self.server.answer(request).map_err(js)
    }

    /// Bytes of the rows held here.
    #[wasm_bindgen(js_name = heldBytes)]
    pub fn held_bytes(&self) -> f64 {
        self.server.held_bytes() as f64
    }
}
