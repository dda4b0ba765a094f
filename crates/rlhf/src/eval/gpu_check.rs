//! A GPU's start: which kernels it runs, and whether it computes what the CPU does.
//!
//! The project's own kernels run where the adapter offers every limit they need and none of them
//! fails on it; otherwise the GPU runs burn's unfused ops and says why (a launch that fails is the
//! adapter's, never a reason to give up the GPU while burn's own ops still agree). A GPU whose
//! numbers differ from the CPU's with no failure reported is refused: a kernel that computes
//! garbage quietly cannot be told from a broken driver, and neither may train a model.
//!
//! Boundary: configs and two devices in, the path and the agreements out; the edges phrase them.

use burn::tensor::Device;
use serde::Serialize;
use tinyrlhf_model::{ModelConfig, own_kernels_fit, use_own_gpu_kernels};

use crate::TrainError;
use crate::eval::agreement::{Agreement, agreement};

/// Which kernels a GPU runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "path", rename_all = "snake_case")]
pub enum GpuKernels {
    /// The project's fused kernels.
    Own,
    /// burn's own ops, one per step of the math, and why.
    Unfused { why: String },
}

impl std::fmt::Display for GpuKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuKernels::Own => f.write_str("fused kernels"),
            GpuKernels::Unfused { why } => write!(f, "unfused kernels ({why})"),
        }
    }
}

/// What a GPU's start found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GpuCheck {
    pub kernels: GpuKernels,
    /// Each config's miniature, in the order given, with its architecture.
    pub agreements: Vec<(String, Agreement)>,
    /// Every miniature agrees: the GPU may be kept.
    pub agrees: bool,
}

/// Chooses the kernels `device` can run from the limits it states, for every GPU in the process
/// ([`use_own_gpu_kernels`]): the project's own where they fit, burn's otherwise.
pub fn kernels_by_limits(device: &Device) -> GpuKernels {
    let kernels = match own_kernels_fit(device) {
        Ok(()) => GpuKernels::Own,
        Err(why) => GpuKernels::Unfused { why },
    };
    use_own_gpu_kernels(kernels == GpuKernels::Own);
    kernels
}

/// Chooses `candidate`'s kernels ([`kernels_by_limits`]) and compares it with `reference` on each
/// config's miniature ([`agreement`]). A failure on the own kernels — a read that returns an error,
/// or one `failures` reports (WebGPU only logs a kernel it could not build: the page hears of it as
/// a device error) — turns them off and compares again; a failure on burn's ops is the error.
pub async fn check_gpu(
    configs: &[ModelConfig],
    reference: &Device,
    candidate: &Device,
    mut failures: impl AsyncFnMut() -> Option<String>,
) -> Result<GpuCheck, TrainError> {
    let mut kernels = kernels_by_limits(candidate);
    loop {
        let mut agreements = Vec::with_capacity(configs.len());
        let mut failed = None;
        for config in configs {
            match agreement(config, reference, candidate).await {
                Ok(found) => agreements.push((config.architecture().to_string(), found)),
                Err(e) => {
                    let e = match e {
                        TrainError::Device(e) => e,
                        other => other.to_string(),
                    };
                    failed = Some(format!("the {} miniature: {}", config.architecture(), in_brief(&e)));
                    break;
                }
            }
        }
        let failed = match failed {
            Some(failed) => Some(failed),
            None => failures().await,
        };
        match (failed, &kernels) {
            (None, _) => {
                let agrees = agreements.iter().all(|(_, found)| found.agrees);
                return Ok(GpuCheck { kernels, agreements, agrees });
            }
            (Some(why), GpuKernels::Own) => {
                kernels = GpuKernels::Unfused { why: format!("a fused kernel failed on this adapter: {why}") };
                use_own_gpu_kernels(false);
            }
            (Some(why), GpuKernels::Unfused { .. }) => return Err(TrainError::Device(why)),
        }
    }
}

/// A runtime's failure, which may run over many lines (every op it skipped, backtraces), as one
/// line of what it says: the first line and the cause it ends on.
fn in_brief(failure: &str) -> String {
    const NOISE: [&str; 6] = ["Caused by", "skipped", "(", "Backtrace", "No backtrace", "Asked at"];
    let said: Vec<&str> = failure.lines().map(str::trim).filter(|l| !l.is_empty() && !NOISE.iter().any(|n| l.starts_with(n))).collect();
    match said.as_slice() {
        [] => String::new(),
        [only] => only.to_string(),
        [first, ..] if said.len() > 4 => format!("{first} ... {}", said[said.len() - 3..].join(" ")),
        all => all.join(" "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Vec<ModelConfig> {
        vec![ModelConfig::preset("tiny", 256).expect("a preset")]
    }

    #[test]
    fn the_cpu_against_itself_keeps_the_fused_kernels_and_agrees() {
        let device = Device::flex();
        let found = pollster::block_on(check_gpu(&tiny(), &device, &device, async || None)).unwrap();
        assert_eq!(found.kernels, GpuKernels::Own);
        assert!(found.agrees, "{:?}", found.agreements);
        assert_eq!(found.agreements.len(), 1);
    }

    #[test]
    fn a_failure_reported_on_the_fused_kernels_turns_them_off_and_checks_again() {
        let device = Device::flex();
        let mut reports = vec![Some("shader `rows_kernel` failed to compile".to_string()), None].into_iter();
        let found = pollster::block_on(check_gpu(&tiny(), &device, &device, async || reports.next().flatten())).unwrap();
        match &found.kernels {
            GpuKernels::Unfused { why } => assert!(why.contains("rows_kernel"), "{why}"),
            own => panic!("kept {own:?}"),
        }
        assert!(found.agrees);
        use_own_gpu_kernels(true);
    }

    #[test]
    fn a_runtimes_long_failure_is_said_in_one_line_with_its_cause() {
        let failure = "An error happened during execution\nCaused by:\n  Several failures at once\nCaused by:\n  The bytes were never written (failure #474)\n  skipped `PairKernel`: it needed memory\n  (5 older skip record(s) were dropped)\nCaused by:\n  A launch error happened\nCaused by:\n  Too many resources were requested during launch\nToo much shared memory requested.\nRequested 8388608 bytes, maximum 32768 bytes available.\nBacktrace\nNo backtrace available";
        assert_eq!(
            in_brief(failure),
            "An error happened during execution ... Too many resources were requested during launch Too much shared memory requested. Requested 8388608 bytes, maximum 32768 bytes available."
        );
        assert_eq!(in_brief("the device was lost"), "the device was lost");
    }

    #[test]
    fn a_failure_on_the_unfused_kernels_is_the_error() {
        let device = Device::flex();
        let failed = pollster::block_on(check_gpu(&tiny(), &device, &device, async || Some("the device was lost".into())));
        assert!(failed.unwrap_err().to_string().contains("the device was lost"));
        use_own_gpu_kernels(true);
    }
}
