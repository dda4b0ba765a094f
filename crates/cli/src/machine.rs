//! Where a figure was measured: the CPU's model, its threads, and the SIMD level of the CPU
//! backend's kernels — its matrix products (the `gemm` crate) and tinyrlhf's element-wise passes
//! (`crates/model/src/row_kernels.rs`, through `pulp`, gemm's own dispatcher), both picked at run
//! time from the CPU's features, not its maker — so every speed the bench prints says what made it.

/// The machine a benchmark ran on.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    /// The CPU's model name (`/proc/cpuinfo` on Linux; else the architecture).
    pub cpu: String,
    pub threads: usize,
    /// The kernels' SIMD level on this CPU.
    pub simd: &'static str,
}

impl Machine {
    pub fn here() -> Self {
        Self { cpu: cpu_model(), threads: std::thread::available_parallelism().map_or(1, |n| n.get()), simd: simd_level() }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, {} threads; CPU kernels (gemm, pulp): {}", self.cpu, self.threads, self.simd)
    }
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| cpuinfo.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned());
    field("model name").or_else(|| field("Model")).filter(|m| !m.is_empty()).unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// The level `gemm` dispatches to, by its own rule (`gemm-common`'s `init_gemm_fn`): AVX-512F when
/// built with its `x86-v4` feature (this crate's feature of that name turns it on in burn, and with
/// it `pulp`'s), else FMA (with AVX2), else scalar; NEON on 64-bit Arm. `pulp::Arch` picks the same
/// levels.
fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        if cfg!(feature = "x86-v4") && avx512 {
            "AVX-512 (x86-64-v4 kernels)"
        } else if avx512 {
            "AVX2 + FMA (x86-64-v3 kernels: built without x86-v4 on a CPU with AVX-512)"
        } else if std::arch::is_x86_feature_detected!("fma") {
            "AVX2 + FMA (x86-64-v3 kernels)"
        } else {
            "scalar (no FMA)"
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        "NEON"
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        "scalar"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_names_a_cpu_and_a_simd_level() {
        let machine = Machine::here();
        assert!(!machine.cpu.is_empty() && machine.threads >= 1);
        assert!(machine.to_string().contains(machine.simd), "{machine}");
    }
}
