//! The one place the CLI names a backend: `--backend cpu` is burn's flex, `--backend wgpu` is
//! burn's wgpu runtime (Vulkan, Metal or DX12) and `--backend cuda` burn's CUDA runtime, each when
//! the binary was built with its cargo feature. A GPU backend is tried once before any work
//! starts, so a missing driver is a message naming the backend, not a panic halfway through.

use burn::tensor::{Device, Tensor, TensorData};
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// burn's flex CPU backend (always available).
    Cpu,
    /// A GPU through wgpu (needs a build with `--features wgpu` and a Vulkan/Metal/DX12 adapter).
    Wgpu,
    /// An NVIDIA GPU through CUDA (needs a build with `--features cuda`, the driver and NVRTC).
    Cuda,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu (flex)",
            gpu => gpu.name(),
        })
    }
}

impl Backend {
    /// The name `--backend` takes and `bench --json` prints.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Cpu => "cpu",
            Backend::Wgpu => "wgpu",
            Backend::Cuda => "cuda",
        }
    }

    /// The device for this backend, or why there is none: a GPU is checked by one small round trip,
    /// then by [`agrees_with_cpu`] (as the page checks WebGPU before keeping it).
    pub fn device(self) -> Result<Device, String> {
        // Decoding's products: split over the CPU's threads; on a GPU one launch each.
        tinyrlhf_model::split_few_row_products(self == Backend::Cpu);
        let device = match self {
            Backend::Cpu => return Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(),
            Backend::Cuda => cuda_device(),
        }
        .map_err(|why| format!("--backend {}: {why}; `--backend cpu` runs everything on the CPU", self.name()))?;
        probe(&device).map_err(|why| {
            format!("--backend {}: the GPU could not run a first operation ({why}); check its driver, or use `--backend cpu`", self.name())
        })?;
        agrees_with_cpu(&device).map_err(|why| format!("--backend {}: {why}; `--backend cpu` computes the same run", self.name()))?;
        Ok(device)
    }
}

/// Whether `device` computes what burn's CPU backend does on miniatures of both architectures
/// (logits, seeded sampling, training steps: `tinyrlhf_rlhf::check_gpu`, which also chooses the
/// GPU's kernels): a GPU whose kernels return wrong numbers (a fused kernel a driver miscompiles)
/// would otherwise train without a word. Says what it found on stderr, the kernels first.
fn agrees_with_cpu(device: &Device) -> Result<(), String> {
    let configs: Vec<_> = ["tiny", "llama-tiny"]
        .into_iter()
        .map(|preset| tinyrlhf_model::ModelConfig::preset(preset, 256).expect("a preset the model crate names"))
        .collect();
    let found = pollster::block_on(tinyrlhf_rlhf::check_gpu(&configs, &Device::flex(), device, async || None))
        .map_err(|e| format!("the check against the CPU failed: {e}"))?;
    eprintln!("the GPU runs {}", found.kernels);
    for (architecture, agreement) in &found.agreements {
        if !agreement.agrees {
            return Err(format!("the GPU does not compute what the CPU does on a {architecture} miniature ({agreement})"));
        }
        eprintln!("the GPU agrees with the CPU on a {architecture} miniature ({agreement})");
    }
    Ok(())
}

/// Runs one tiny upload, add and read on `device`. burn's GPU runtimes panic when their driver is
/// missing or broken; that panic becomes the error here.
fn probe(device: &Device) -> Result<(), String> {
    let device = device.clone();
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(move || {
        let t = Tensor::<1>::from_data(TensorData::new(vec![1.0f32, 2.0], [2]), &device);
        (t + 1.0).into_data().try_to_vec::<f32>().map_err(|e| format!("{e:?}"))
    });
    std::panic::set_hook(quiet);
    match outcome {
        Ok(Ok(values)) if values == [2.0, 3.0] => Ok(()),
        Ok(Ok(values)) => Err(format!("1 + [1, 2] gave {values:?}")),
        Ok(Err(e)) => Err(e),
        Err(panic) => {
            Err(panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default())
        }
    }
}

#[cfg(feature = "wgpu-without-fusion")]
fn wgpu_device() -> Result<Device, String> {
    Device::wgpu_options().init().map_err(|e| format!("no wgpu adapter could be initialised: {e}"))
}

#[cfg(not(feature = "wgpu-without-fusion"))]
fn wgpu_device() -> Result<Device, String> {
    Err("this binary was built without wgpu; rebuild with `cargo build --release -p tinyrlhf-cli --features wgpu`".into())
}

#[cfg(feature = "cuda")]
fn cuda_device() -> Result<Device, String> {
    Ok(Device::cuda(0))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device() -> Result<Device, String> {
    Err("this binary was built without CUDA; rebuild with `cargo build --release -p tinyrlhf-cli --features cuda`".into())
}
