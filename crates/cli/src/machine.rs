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
    pub simd: String,
    /// The caches' sizes as `gemm` reads them from the CPU (what its blocking is sized for): a
    /// virtual machine may hide or misreport them.
    pub caches: String,
}

impl Machine {
    pub fn here() -> Self {
        Self {
            cpu: cpu_model(),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            simd: simd_level(),
            caches: caches(),
        }
    }
}

impl std::fmt::Display for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}, {} threads; CPU kernels (gemm, pulp): {}; caches as gemm reads them: {}",
            self.cpu, self.threads, self.simd, self.caches
        )
    }
}

fn cpu_model() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |key: &str| cpuinfo.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_owned());
    field("model name").or_else(|| field("Model")).filter(|m| !m.is_empty()).unwrap_or_else(|| std::env::consts::ARCH.to_owned())
}

/// The level `gemm` dispatches to, by its own rule (`gemm-common`'s `init_gemm_fn`): AVX-512F when
/// built with its `x86-v4` feature (this crate's feature of that name turns it on in burn, and with
/// it `pulp`'s), else FMA (with AVX2), else scalar; NEON on 64-bit Arm. tinyrlhf's own passes take
/// `pulp::Arch`'s pick, which asks for a few more features (BMI1/2, LZCNT): named too where it differs.
fn simd_level() -> String {
    let gemm = gemm_level();
    // By name: which of `Arch`'s variants exist depends on pulp's features, not this crate's.
    let arch = format!("{:?}", pulp::Arch::new());
    let pulp = [("V4", "AVX-512"), ("V3", "AVX2 + FMA"), ("Neon", "NEON")]
        .into_iter()
        .find(|(variant, _)| arch.starts_with(variant))
        .map_or("scalar", |(_, level)| level);
    if gemm.starts_with(pulp) { gemm.to_owned() } else { format!("{gemm}; tinyrlhf's passes (pulp): {pulp}") }
}

fn gemm_level() -> &'static str {
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

/// `L1d 48 KiB, L2 1 MiB, L3 32 MiB`: a size of 0 is one the CPU did not report.
fn caches() -> String {
    let size = |bytes: usize| match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b => format!("{} KiB", b >> 10),
    };
    let [l1, l2, l3] = *gemm_common::cache::CACHE_INFO;
    format!("L1d {}, L2 {}, L3 {}", size(l1.cache_bytes), size(l2.cache_bytes), size(l3.cache_bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_machine_names_a_cpu_and_a_simd_level() {
        let machine = Machine::here();
        assert!(!machine.cpu.is_empty() && machine.threads >= 1);
        assert!(machine.to_string().contains(&machine.simd) && machine.to_string().contains(&machine.caches), "{machine}");
    }
}
