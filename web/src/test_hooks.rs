//! What only the browser tests call: a deliberate trap and a heap filled to its limit, so they can
//! prove the page recovers from a dead worker and from a tab out of memory.

use wasm_bindgen::prelude::*;

/// Traps the module on purpose (a wasm `unreachable`, as any panic would), so the browser tests can
/// prove the page recovers from a dead worker. Nothing calls it but those tests.
#[wasm_bindgen(js_name = trapForTests)]
pub fn trap_for_tests() {
    std::process::abort()
}

/// Takes every free block of the module's heap of at least 64 KiB and keeps it, so that the next
/// large allocation fails as a large model's would: the memory grown to the browser's limit alone
/// left the heap's own free blocks (a PPO iteration's freed activations) for the next iteration to
/// reuse, and whether it fitted there depended on the run. Nothing calls it but the browser tests.
#[wasm_bindgen(js_name = fillHeapForTests)]
pub fn fill_heap_for_tests() -> usize {
    let (mut taken, mut size) = (0, 1usize << 30);
    while size >= 1 << 16 {
        let mut block: Vec<u8> = Vec::new();
        if block.try_reserve_exact(size).is_ok() {
            std::mem::forget(block);
            taken += size;
        } else {
            size /= 2;
        }
    }
    taken
}
