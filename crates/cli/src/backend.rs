//! The one place the CLI names a backend: `--backend cpu` is burn's flex, `--backend wgpu` is
//! burn's wgpu runtime (Vulkan, Metal or DX12) when the binary was built with `--features wgpu`.

use burn::tensor::Device;
use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// burn's flex CPU backend (always available).
    Cpu,
    /// A GPU through wgpu (needs a build with `--features wgpu` and a Vulkan/Metal/DX12 adapter).
    Wgpu,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Cpu => "cpu (flex)",
            Backend::Wgpu => "wgpu",
        })
    }
}

impl Backend {
    /// The device for this backend, or why there is none.
    pub fn device(self) -> Result<Device, String> {
        match self {
            Backend::Cpu => Ok(Device::flex()),
            Backend::Wgpu => wgpu_device(),
        }
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, String> {
    Device::wgpu_options().init().map_err(|e| format!("no wgpu adapter could be initialised: {e}"))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, String> {
    Err("this binary was built without GPU support; rebuild with `cargo build --release -p tinyrlhf-cli --features wgpu`".into())
}
