//! Where this crate's own kernels run, and what a GPU must offer them.
//!
//! The CPU backend always runs them. A GPU (cubecl's runtimes, in a build with the `cube` feature)
//! runs them unless the process has turned them off ([`use_own_gpu_kernels`]): then every layer
//! takes burn's own ops — the unfused path, slower but made of kernels burn itself tests on every
//! adapter. The edges turn them off when a GPU lacks a limit the kernels need
//! ([`own_kernels_fit`]) or when one of them fails on it (the agreement check at the GPU's start).
//!
//! Every kernel stays within WebGPU's default limits; what they need at most is stated here once.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::backend::DispatchDevice;
use burn::tensor::Device;

/// The widest workgroup a kernel launches (a row's reductions, an attention head of up to
/// [`MAX_HEAD_DIM`] values).
pub const WORKGROUP_THREADS: u32 = 256;
/// The most workgroup memory a kernel declares, in bytes (the adapters' rows: 64 threads by a rank
/// of up to 32, in f32).
#[cfg_attr(not(feature = "cube"), allow(dead_code))]
pub const WORKGROUP_BYTES: usize = 64 * 32 * 4;
/// The most tensors a kernel binds at once (three products of one input, with their outputs).
#[cfg_attr(not(feature = "cube"), allow(dead_code))]
pub const BINDINGS: u32 = 7;
/// The widest attention head the attention kernels take (a thread a value); a wider one takes
/// burn's ops.
pub const MAX_HEAD_DIM: usize = WORKGROUP_THREADS as usize;

static ON_GPU: AtomicBool = AtomicBool::new(true);

/// Turns this crate's kernels on or off for every GPU device in the process (the CPU keeps its
/// own). Decided before a model is loaded on the GPU: a loaded model keeps the choice its
/// layers made then (a packed head, for one).
pub fn use_own_gpu_kernels(on: bool) {
    ON_GPU.store(on, Ordering::Relaxed);
}

/// Whether GPUs run this crate's kernels now ([`use_own_gpu_kernels`]).
pub fn own_gpu_kernels() -> bool {
    ON_GPU.load(Ordering::Relaxed)
}

/// Why `device` cannot run this crate's kernels: the first limit it offers below what a kernel
/// needs, as a sentence. `Ok` for the CPU and for a GPU within every limit.
pub fn own_kernels_fit(device: &Device) -> Result<(), String> {
    match device.clone().inner().as_dispatch() {
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(cube) => {
            let client = cube.client();
            let hardware = &client.properties().hardware;
            let threads = hardware.max_units_per_cube.min(hardware.max_cube_dim.0);
            limits_fit(threads, hardware.max_shared_memory_size, hardware.max_bindings)
        }
        _ => Ok(()),
    }
}

/// [`own_kernels_fit`] on the figures a device states.
#[cfg_attr(not(feature = "cube"), allow(dead_code))]
fn limits_fit(threads: u32, workgroup_bytes: usize, bindings: u32) -> Result<(), String> {
    if threads < WORKGROUP_THREADS {
        return Err(format!("the adapter runs {threads} threads a workgroup, the kernels need {WORKGROUP_THREADS}"));
    }
    if workgroup_bytes < WORKGROUP_BYTES {
        return Err(format!("the adapter offers {workgroup_bytes} bytes of workgroup memory, the kernels need {WORKGROUP_BYTES}"));
    }
    if bindings < BINDINGS {
        return Err(format!("the adapter binds {bindings} storage buffers a kernel, the kernels need {BINDINGS}"));
    }
    Ok(())
}

/// Whether `device`'s backend runs this crate's own kernels ([`crate::packed::PackedOps`], the
/// fused AdamW): the CPU backend, and cubecl's runtimes in a build with this crate's `cube`
/// feature while [`own_gpu_kernels`]. Another backend (none the edges build today) takes burn's
/// own ops: a packed product on a widened `W`, which autodiff keeps until the backward.
pub(crate) fn has_own_kernels(device: &Device) -> bool {
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "cube")]
        DispatchDevice::Cube(_) => own_gpu_kernels(),
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Whether `device` (tracked or not) is one of cubecl's GPU runtimes running this crate's kernels.
pub(crate) fn on_gpu_kernels(device: &Device) -> bool {
    !matches!(device.clone().inner().as_dispatch(), DispatchDevice::Flex(_)) && has_own_kernels(device)
}

/// Whether the attention kernels take heads of `head_dim` values ([`MAX_HEAD_DIM`]).
pub(crate) fn attention_fits(head_dim: usize) -> bool {
    head_dim <= MAX_HEAD_DIM
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webgpus_default_limits_fit_the_kernels() {
        // WebGPU's defaults: 256 invocations, 16 KiB of workgroup memory, 8 storage buffers (one
        // kept by wgpu for its own use).
        assert_eq!(limits_fit(256, 16_384, 7), Ok(()));
    }

    #[test]
    fn a_limit_short_of_a_kernels_need_is_named() {
        assert!(limits_fit(128, 16_384, 7).unwrap_err().contains("128 threads a workgroup"));
        assert!(limits_fit(256, 4_096, 7).unwrap_err().contains("4096 bytes of workgroup memory"));
        assert!(limits_fit(256, 16_384, 3).unwrap_err().contains("binds 3 storage buffers"));
    }

    #[test]
    fn the_cpu_always_runs_the_own_kernels() {
        assert_eq!(own_kernels_fit(&Device::flex()), Ok(()));
        assert!(has_own_kernels(&Device::flex()) && !on_gpu_kernels(&Device::flex()));
    }
}
