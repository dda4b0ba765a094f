//! The page's workers as [`Peers`]: the worker hands the session a JS function that sends this
//! worker's part of an exchange to the others and resolves to every worker's part, in rank order.
//! Which worker is which, and how the parts travel, is the worker script's business.

use std::rc::Rc;

use tinyrlhf_rlhf::parallel::peers::{Gathered, Peers};
use wasm_bindgen::prelude::*;

use crate::{Session, js};

struct WorkerPeers {
    rank: usize,
    count: usize,
    /// `(part: Uint8Array) => Promise<Uint8Array[]>`
    exchange: js_sys::Function,
}

impl Peers for WorkerPeers {
    fn rank(&self) -> usize {
        self.rank
    }

    fn count(&self) -> usize {
        self.count
    }

    fn all_gather(&self, part: Vec<u8>) -> Gathered<'_> {
        Box::pin(async move {
            let why = |e: JsValue| {
                e.as_string()
                    .or_else(|| e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())))
                    .unwrap_or_else(|| format!("{e:?}"))
            };
            let promise = self.exchange.call1(&JsValue::NULL, &js_sys::Uint8Array::from(part.as_slice())).map_err(why)?;
            let parts = wasm_bindgen_futures::JsFuture::from(js_sys::Promise::from(promise)).await.map_err(why)?;
            let parts: js_sys::Array = parts.dyn_into().map_err(|_| "the exchange did not resolve to a list".to_string())?;
            parts
                .iter()
                .map(|p| p.dyn_into::<js_sys::Uint8Array>().map(|a| a.to_vec()).map_err(|_| "a part is not bytes".to_string()))
                .collect()
        })
    }
}

#[wasm_bindgen]
impl Session {
    /// Trains the runs started from now on together with `count` workers, this one being `rank`
    /// (0-based); `exchange(part: Uint8Array)` must resolve to every worker's part in rank order,
    /// or reject when a worker has stopped. `count` 1: this worker trains alone.
    #[wasm_bindgen(js_name = setPeers)]
    pub fn set_peers(&self, rank: usize, count: usize, exchange: js_sys::Function) -> Result<(), JsError> {
        if count == 0 || rank >= count {
            return Err(js(format!("worker {rank} of {count} does not exist")));
        }
        let peers: Option<Rc<dyn Peers>> = (count > 1).then(|| Rc::new(WorkerPeers { rank, count, exchange }) as Rc<dyn Peers>);
        self.state.borrow_mut().peers = peers;
        Ok(())
    }
}

/// How many workers the tab trains on (see [`tinyrlhf_rlhf::parallel::peers::worker_count`]).
#[wasm_bindgen(js_name = workerCount)]
pub fn worker_count(cores: usize, requested: Option<usize>, parameters: usize) -> usize {
    tinyrlhf_rlhf::parallel::peers::worker_count(cores, requested, parameters)
}
