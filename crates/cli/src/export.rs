//! `tinyrlhf export`: rankings and demonstrations, with a run's settings, as TRL's command line
//! takes them, for a model that needs more than one machine. What the files hold is the library's
//! ([`tinyrlhf_rlhf::trl_files`]); this edge reads the inputs, says what it wrote and how to run it.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use tinyrlhf_data::Demonstration;
use tinyrlhf_model::LoraConfig;
use tinyrlhf_rlhf::{DpoConfig, GroupConfig, TrlExport, TrlSettings};

use crate::files::{self, Result};
use crate::model_dirs;
use crate::outputs::{Out, Plan};

/// The engines an export is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Engine {
    /// TRL's command line (`trl dpo`, `trl reward`, `trl grpo`, `trl rloo`, `trl sft`) on accelerate.
    Trl,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum, default_value_t = Engine::Trl)]
    to: Engine,
    /// Rankings (from `tinyrlhf rank` or the page) or TRL pairs: preference data for DPO and the
    /// reward model, and prompts for GRPO and RLOO.
    #[arg(long, required_unless_present = "demos")]
    rankings: Option<PathBuf>,
    /// Held-out rankings; without it every fifth ranking is held out, as the trainers do.
    #[arg(long, requires = "rankings")]
    held_out: Option<PathBuf>,
    /// Demonstrations (`{"prompt", "response"}` JSONL) for SFT.
    #[arg(long)]
    demos: Option<PathBuf>,
    /// The base to train: a model folder here (its context and chat template are read, and its
    /// absolute path is written), or a hub id or a path on the machines that will train.
    #[arg(long)]
    model: String,
    /// A tinyrlhf run's folder (`sft`, `reward`, `dpo`, `grpo`, `rloo`) whose settings its method's
    /// config carries; the other methods get tinyrlhf's defaults.
    #[arg(long)]
    from_run: Option<PathBuf>,
    /// Folder to write the datasets and configs to.
    #[arg(long)]
    out: PathBuf,
}

impl ExportArgs {
    pub fn plan(&self) -> Plan<'_> {
        let inputs = [self.rankings.as_ref(), self.held_out.as_ref(), self.demos.as_ref(), self.from_run.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .chain(Some(Path::new(&self.model)).filter(|m| m.exists()))
            .collect();
        Plan { out: &self.out, kind: Out::ExportDir, inputs, resume: false }
    }
}

pub fn export(args: &ExportArgs) -> Result<()> {
    let Engine::Trl = args.to;
    let settings = match &args.from_run {
        Some(run) => settings_of_run(run)?,
        None => TrlSettings::default(),
    };
    let rankings = args.rankings.as_deref().map(crate::rankings::read_rankings).transpose()?.unwrap_or_default();
    let held_out = args.held_out.as_deref().map(crate::rankings::read_rankings).transpose()?;
    let demonstrations: Vec<Demonstration> = args.demos.as_deref().map(files::read_records).transpose()?.unwrap_or_default();
    let local = Path::new(&args.model);
    if local.is_file() {
        return Err(format!(
            "--model {}: a file (a GGUF?), but TRL trains a transformers folder: give the folder or the hub id of the same model",
            local.display()
        ));
    }
    let (model, max_length, tokenizer) = if local.is_dir() {
        let config: serde_json::Value = serde_json::from_slice(&files::read(&local.join("config.json"))?)
            .map_err(|e| format!("{}: not JSON: {e}", local.join("config.json").display()))?;
        let context = ["max_position_embeddings", "n_positions", "n_ctx"].iter().find_map(|k| config.get(k)?.as_u64());
        let absolute = local.canonicalize().map_err(|e| format!("{}: {e}", local.display()))?;
        (absolute.display().to_string(), context.map(|c| c as usize), Some(model_dirs::read_tokenizer_dir(local)?))
    } else {
        (args.model.clone(), None, None)
    };
    // A base with no chat template of its own: TRL would find none to apply, so the prompts go
    // rendered by the template tinyrlhf's SFT teaches such a base.
    let instructions =
        tokenizer.filter(|t| t.continues_as_written()).map(|t| t.for_instructions()).transpose().map_err(|e| e.to_string())?;
    let export = TrlExport {
        rankings: &rankings,
        held_out: held_out.as_deref(),
        demonstrations: &demonstrations,
        model: &model,
        render_with: instructions.as_ref().map(|t| t.chat_template()),
        max_length,
        settings,
    };
    let written = tinyrlhf_rlhf::trl_files(&export).map_err(|e| e.to_string())?;
    for file in &written {
        files::write_atomic(&args.out.join(&file.path), &file.bytes)?;
    }
    let configs: Vec<&str> = written.iter().map(|f| f.path.as_str()).filter(|p| !p.contains('/')).collect();
    eprintln!("{}: {} files for TRL ({})", args.out.display(), written.len(), configs.join(", "));
    if instructions.is_some() {
        eprintln!("note: {} has no chat template: prompts are written rendered as text", args.model);
    }
    eprintln!("run one from there: cd {} && trl dpo --config dpo.yaml --accelerate_config accelerate/one-gpu.yaml", args.out.display());
    Ok(())
}

/// tinyrlhf's defaults with one method's settings from the run in `dir` (its `manifest.json`;
/// LoRA from its adapter's `adapter_config.json`).
fn settings_of_run(dir: &Path) -> Result<TrlSettings> {
    let path = dir.join("manifest.json");
    let manifest: serde_json::Value =
        serde_json::from_slice(&files::read(&path)?).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let stage = manifest.get("stage").and_then(|s| s.as_str()).unwrap_or_default();
    let field = |name: &str| format!("{}: field `{name}`", path.display());
    let settings_field = || manifest.get("settings").cloned().ok_or_else(|| format!("{}: missing", field("settings")));
    let mut settings = TrlSettings::default();
    let lora = lora_of_run(dir)?;
    match stage {
        "dpo" => {
            settings.dpo = serde_json::from_value::<DpoConfig>(settings_field()?).map_err(|e| format!("{}: {e}", field("settings")))?
        }
        "grpo" | "rloo" => {
            let group = serde_json::from_value::<GroupConfig>(settings_field()?).map_err(|e| format!("{}: {e}", field("settings")))?;
            if stage == "grpo" { settings.grpo = group } else { settings.rloo = group }
        }
        "reward" => {
            let r = &mut settings.reward;
            read_number(&manifest, "epochs", &field, |v| r.epochs = v as usize)?;
            read_number(&manifest, "batch", &field, |v| r.batch_size = v as usize)?;
            read_number(&manifest, "lr", &field, |v| r.train.lr = v)?;
            read_number(&manifest, "seed", &field, |v| r.train.seed = v as u64)?;
            r.train.lora = lora;
        }
        "sft" => {
            let s = &mut settings.sft;
            read_number(&manifest, "steps", &field, |v| s.steps = v as usize)?;
            read_number(&manifest, "batch", &field, |v| s.batch_size = v as usize)?;
            read_number(&manifest, "lr", &field, |v| s.lr = v)?;
            read_number(&manifest, "seed", &field, |v| s.seed = v as u64)?;
            s.lora = lora;
        }
        "ppo" => return Err(format!("{}: a PPO run: TRL has no PPO trainer now; export a dpo, grpo or rloo run", dir.display())),
        other => return Err(format!("{}: {other:?} is not a run whose settings TRL takes (sft, reward, dpo, grpo, rloo)", field("stage"))),
    }
    Ok(settings)
}

fn read_number(manifest: &serde_json::Value, name: &str, field: &dyn Fn(&str) -> String, set: impl FnOnce(f64)) -> Result<()> {
    let value = manifest.get(name).and_then(|v| v.as_f64()).ok_or_else(|| format!("{}: missing or not a number", field(name)))?;
    set(value);
    Ok(())
}

/// The rank and alpha of a LoRA run's adapter, `None` for a run that trained every weight.
fn lora_of_run(dir: &Path) -> Result<Option<LoraConfig>> {
    let path = dir.join(model_dirs::ADAPTER_CONFIG);
    if !path.exists() {
        return Ok(None);
    }
    let config: serde_json::Value =
        serde_json::from_slice(&files::read(&path)?).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let (rank, alpha) = (config.get("r").and_then(|v| v.as_u64()), config.get("lora_alpha").and_then(|v| v.as_f64()));
    match (rank, alpha) {
        (Some(rank), Some(alpha)) => Ok(Some(LoraConfig { rank: rank as usize, alpha })),
        _ => Err(format!("{}: fields `r` and `lora_alpha` must be numbers", path.display())),
    }
}
