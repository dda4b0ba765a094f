//! A person's rankings and demonstrations, with tinyrlhf's settings, as TRL's command line takes
//! them (`trl dpo`, `trl reward`, `trl grpo`, `trl rloo`, `trl sft`), for a model too large for
//! one machine: the datasets, one config per method and accelerate configs from one GPU to many
//! machines. The edges write the files; what goes in them is decided here, once.
//!
//! The rankings are split as the trainers split them ([`RankingSet::is_held_out`]) and expanded
//! into pairs as DPO and the reward model expand them ([`Ranking::pairs`]: every better answer over
//! every worse one). Prompts stay conversational (`[{"role": "user", ...}]`) so TRL applies the
//! model's own chat template, unless the base has none: then the prompt goes rendered by the
//! template tinyrlhf would use, as plain text.

use tinyrlhf_data::{Demonstration, Ranking};
use tinyrlhf_tokenizer::ChatTemplate;

use crate::checkpoint::TrainError;
use crate::data::rankings::RankingSet;
use crate::methods::dpo::DpoConfig;
use crate::methods::group::{GroupConfig, GroupMethod};
use crate::stages::reward::RewardConfig;
use crate::stages::supervised::SftSettings;
use crate::step::settings::TrainSettings;

/// The settings each method's config carries: tinyrlhf's defaults, or a run's.
#[derive(Debug, Clone, PartialEq)]
pub struct TrlSettings {
    pub dpo: DpoConfig,
    pub reward: RewardConfig,
    pub sft: SftSettings,
    pub grpo: GroupConfig,
    pub rloo: GroupConfig,
}

impl Default for TrlSettings {
    fn default() -> Self {
        Self {
            dpo: DpoConfig::default(),
            reward: RewardConfig::default(),
            sft: SftSettings::default(),
            grpo: GroupConfig::default(),
            rloo: GroupConfig { method: GroupMethod::Rloo, ..GroupConfig::default() },
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct TrlExport<'a> {
    /// Rankings (or TRL pairs read as rankings of two); empty: no preference methods.
    pub rankings: &'a [Ranking],
    /// A separate held-out set; `None`: every fifth ranking, as the trainers hold out.
    pub held_out: Option<&'a [Ranking]>,
    /// Demonstrations for `trl sft`; empty: no SFT config.
    pub demonstrations: &'a [Demonstration],
    /// The base as the training machines find it: a hub id or a path there.
    pub model: &'a str,
    /// The template to render prompts with when the base has no chat template of its own (TRL
    /// would find none to apply); `None`: conversational records.
    pub render_with: Option<&'a ChatTemplate>,
    /// The longest sequence (prompt and answer) in tokens: the model's context when known.
    pub max_length: Option<usize>,
    pub settings: TrlSettings,
}

/// One file of the export: its path inside the output folder and its bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportFile {
    pub path: String,
    pub bytes: Vec<u8>,
}

/// Where the datasets go inside the export (each a folder `datasets.load_dataset` reads, its
/// splits named by the files).
pub const PREFERENCES: &str = "data/preferences";
pub const PROMPTS: &str = "data/prompts";
pub const DEMONSTRATIONS: &str = "data/sft";

/// The export's files. Refused when there is nothing to export.
pub fn trl_files(export: &TrlExport) -> Result<Vec<ExportFile>, TrainError> {
    if export.rankings.is_empty() && export.demonstrations.is_empty() {
        return Err(TrainError::Unusable("nothing to export: no rankings and no demonstrations".into()));
    }
    let mut files = Vec::new();
    let mut add = |path: &str, text: String| files.push(ExportFile { path: path.into(), bytes: text.into_bytes() });
    if !export.rankings.is_empty() {
        let (train, test) = split(export.rankings, export.held_out);
        let has_test = !test.is_empty();
        add(&format!("{PREFERENCES}/train.jsonl"), preference_records(export, &train)?);
        if has_test {
            add(&format!("{PREFERENCES}/test.jsonl"), preference_records(export, &test)?);
        }
        add(&format!("{PROMPTS}/train.jsonl"), prompt_records(export, &train)?);
        add("dpo.yaml", dpo_yaml(export, has_test));
        add("reward.yaml", reward_yaml(export, has_test));
        add("grpo.yaml", group_yaml(export, &export.settings.grpo));
        add("rloo.yaml", group_yaml(export, &export.settings.rloo));
    }
    if !export.demonstrations.is_empty() {
        add(&format!("{DEMONSTRATIONS}/train.jsonl"), demonstration_records(export)?);
        add("sft.yaml", sft_yaml(export));
    }
    for (name, text) in accelerate_configs() {
        add(&format!("accelerate/{name}.yaml"), text);
    }
    Ok(files)
}

/// Every path an export may write (inside its folder): what an edge replacing an earlier export
/// removes, and nothing else. Read off an export that writes all of them.
pub fn trl_paths() -> Vec<String> {
    let ranking = [Ranking { prompt: "q".into(), completions: vec!["a".into(), "b".into()], ranking: vec![0, 1], finished: vec![] }];
    let demonstration = [Demonstration { prompt: "q".into(), response: "a".into() }];
    let every = TrlExport {
        rankings: &ranking,
        held_out: Some(&ranking),
        demonstrations: &demonstration,
        model: "",
        render_with: None,
        max_length: None,
        settings: TrlSettings::default(),
    };
    trl_files(&every).expect("an export of one ranking and one demonstration").into_iter().map(|f| f.path).collect()
}

/// The training and held-out rankings, valid ones only, split as [`RankingSet::prepare`] splits.
fn split<'a>(rankings: &'a [Ranking], held_out: Option<&'a [Ranking]>) -> (Vec<&'a Ranking>, Vec<&'a Ranking>) {
    let valid = |r: &&Ranking| r.check().is_ok();
    match held_out {
        Some(held_out) => (rankings.iter().filter(valid).collect(), held_out.iter().filter(valid).collect()),
        None => {
            let (test, train): (Vec<_>, Vec<_>) =
                rankings.iter().enumerate().partition(|(i, _)| RankingSet::is_held_out(*i, rankings.len()));
            let keep = |part: Vec<(usize, &'a Ranking)>| part.into_iter().map(|(_, r)| r).filter(valid).collect();
            (keep(train), keep(test))
        }
    }
}

/// A user turn as TRL reads it: the message list, or the rendered text for a base without a template.
fn prompt_value(export: &TrlExport, prompt: &str) -> Result<serde_json::Value, TrainError> {
    match export.render_with {
        Some(template) => Ok(template.prompt_text(prompt).map_err(|e| TrainError::Unusable(format!("the chat template: {e}")))?.into()),
        None => Ok(serde_json::json!([{"role": "user", "content": prompt}])),
    }
}

fn answer_value(export: &TrlExport, answer: &str) -> serde_json::Value {
    match export.render_with {
        Some(_) => answer.into(),
        None => serde_json::json!([{"role": "assistant", "content": answer}]),
    }
}

fn jsonl(records: impl IntoIterator<Item = serde_json::Value>) -> String {
    records.into_iter().map(|r| r.to_string() + "\n").collect()
}

/// TRL's preference records (`prompt`, `chosen`, `rejected`): every pair each ranking implies.
fn preference_records(export: &TrlExport, rankings: &[&Ranking]) -> Result<String, TrainError> {
    let mut records = Vec::new();
    for pair in rankings.iter().flat_map(|r| r.pairs()) {
        records.push(serde_json::json!({
            "prompt": prompt_value(export, &pair.prompt)?,
            "chosen": answer_value(export, &pair.chosen),
            "rejected": answer_value(export, &pair.rejected),
        }));
    }
    Ok(jsonl(records))
}

/// Prompt-only records for GRPO and RLOO: each training prompt once, in file order.
fn prompt_records(export: &TrlExport, rankings: &[&Ranking]) -> Result<String, TrainError> {
    let mut seen = std::collections::HashSet::new();
    let mut records = Vec::new();
    for r in rankings.iter().filter(|r| seen.insert(r.prompt.as_str())) {
        records.push(serde_json::json!({"prompt": prompt_value(export, &r.prompt)?}));
    }
    Ok(jsonl(records))
}

/// TRL's prompt-completion records, which SFT trains on the completion only (as tinyrlhf does).
fn demonstration_records(export: &TrlExport) -> Result<String, TrainError> {
    let mut records = Vec::new();
    for d in export.demonstrations {
        records.push(serde_json::json!({"prompt": prompt_value(export, &d.prompt)?, "completion": answer_value(export, &d.response)}));
    }
    Ok(jsonl(records))
}

/// A YAML file of `key: value` lines (JSON scalars and flow lists are YAML too) with comments.
#[derive(Default)]
struct Yaml(String);

impl Yaml {
    fn comment(&mut self, text: &str) -> &mut Self {
        for line in text.lines() {
            self.0 += &format!("# {line}\n");
        }
        self
    }

    fn set(&mut self, key: &str, value: impl std::fmt::Display) -> &mut Self {
        self.0 += &format!("{key}: {value}\n");
        self
    }

    fn text(&mut self, key: &str, value: &str) -> &mut Self {
        self.set(key, serde_json::Value::from(value))
    }

    /// A number as YAML 1.1 (PyYAML) reads it: `1e-4` without a dot would be a string there.
    fn number(&mut self, key: &str, value: f64) -> &mut Self {
        self.set(key, format_number(value))
    }
}

fn format_number(value: f64) -> String {
    let text = format!("{value}");
    if text.contains('.') || !value.is_finite() { text } else { format!("{text}.0") }
}

/// What every method's config says: the model, the data, the optimiser and LoRA.
struct Common<'a> {
    method: &'a str,
    dataset: &'a str,
    has_test: bool,
    train: &'a TrainSettings,
}

fn common(export: &TrlExport, c: Common) -> Yaml {
    let mut y = Yaml::default();
    y.comment(&format!("`trl {0} --config {0}.yaml`, from this folder: written by `tinyrlhf export` with tinyrlhf's settings.", c.method));
    y.text("model_name_or_path", export.model).text("dataset_name", c.dataset).text("output_dir", &format!("runs/{}", c.method));
    if c.has_test {
        y.text("eval_strategy", "epoch");
    }
    let t = c.train;
    y.number("learning_rate", t.lr).number("max_grad_norm", t.max_grad_norm).number("weight_decay", f64::from(t.weight_decay));
    y.set("seed", t.seed).set("logging_steps", 1).text("save_strategy", "epoch").text("report_to", "none");
    y.comment("tinyrlhf trains in float32; on GPUs with bfloat16, `bf16: true` halves the memory.");
    y.set("bf16", false);
    match &t.lora {
        Some(lora) => {
            y.comment("LoRA on every projection tinyrlhf adapts (PEFT's all-linear: not the head), no dropout.");
            y.set("use_peft", true).set("lora_r", lora.rank);
            if lora.alpha.fract() == 0.0 {
                y.set("lora_alpha", lora.alpha)
            } else {
                y.number("lora_alpha", lora.alpha)
            };
            y.number("lora_dropout", 0.0).text("lora_target_modules", "all-linear");
        }
        None => {
            y.comment("Every weight trains (tinyrlhf without --lora-rank).");
        }
    }
    y
}

fn dpo_yaml(export: &TrlExport, has_test: bool) -> String {
    let s = &export.settings.dpo;
    let mut y = common(export, Common { method: "dpo", dataset: PREFERENCES, has_test, train: &s.train });
    y.comment("tinyrlhf batches rankings (each K answers is K(K-1)/2 pairs); TRL batches pairs.");
    y.set("num_train_epochs", s.epochs).set("per_device_train_batch_size", s.batch_size).text("lr_scheduler_type", "linear");
    y.number("beta", s.beta).set("loss_type", serde_json::json!([s.loss]));
    max_length(&mut y, export);
    y.0
}

fn reward_yaml(export: &TrlExport, has_test: bool) -> String {
    let s = &export.settings.reward;
    let mut y = common(export, Common { method: "reward", dataset: PREFERENCES, has_test, train: &s.train });
    y.set("num_train_epochs", s.epochs).set("per_device_train_batch_size", s.batch_size);
    y.comment("Linear decay to 10% of the peak, no warm-up, as tinyrlhf's reward model.");
    y.text("lr_scheduler_type", "polynomial")
        .set("lr_scheduler_kwargs", format!("{{\"lr_end\": {}, \"power\": 1.0}}", format_number(s.train.lr * 0.1)));
    if s.center_coef > 0.0 {
        y.number("center_rewards_coefficient", s.center_coef);
    }
    if s.train.lora.is_some() {
        y.comment("The score head trains with the adapters, as tinyrlhf's does.");
        y.text("lora_task_type", "SEQ_CLS");
    }
    max_length(&mut y, export);
    y.0
}

fn group_yaml(export: &TrlExport, s: &GroupConfig) -> String {
    let method = s.method.name();
    let mut y = common(export, Common { method, dataset: PROMPTS, has_test: false, train: &s.train });
    y.comment("The reward model `trl reward --config reward.yaml` writes.");
    y.text("reward_model_name_or_path", "runs/reward");
    y.comment("One iteration: prompts_per_iteration prompts x num_generations answers, one optimiser step.");
    y.set("max_steps", s.iterations).set("per_device_train_batch_size", s.prompts_per_iteration * s.samples_per_prompt);
    y.set("num_generations", s.samples_per_prompt).text("lr_scheduler_type", "linear");
    y.number("temperature", f64::from(s.temperature)).set("max_completion_length", s.max_new_tokens);
    y.number("beta", s.beta()).number("epsilon", s.epsilon);
    if let Some(high) = s.epsilon_high {
        y.number("epsilon_high", high);
    }
    match s.method {
        GroupMethod::Grpo => {
            y.set("scale_rewards", serde_json::json!(s.scale_rewards)).set("loss_type", serde_json::json!(s.loss_type));
        }
        GroupMethod::Rloo => {
            y.set("normalize_advantages", s.normalize_advantages);
        }
    }
    y.comment(&format!(
        "Not in TRL: tinyrlhf's missing_eos_penalty ({}) and kl_limit ({}).",
        format_number(s.missing_eos_penalty),
        format_number(s.kl_limit)
    ));
    y.0
}

fn sft_yaml(export: &TrlExport) -> String {
    let s = &export.settings.sft;
    // SFT's optimiser as `SftSettings::supervised` sets it.
    let train = TrainSettings { weight_decay: 0.01, seed: s.seed, lora: s.lora.clone(), ..TrainSettings::with_lr(s.lr) };
    let mut y = common(export, Common { method: "sft", dataset: DEMONSTRATIONS, has_test: false, train: &train });
    y.comment("Warm-up over 5% of the steps, cosine decay to 10%, loss on the answers only.");
    y.set("max_steps", s.steps).set("per_device_train_batch_size", s.batch_size).number("warmup_steps", 0.05);
    y.text("lr_scheduler_type", "cosine_with_min_lr").set("lr_scheduler_kwargs", "{\"min_lr_rate\": 0.1}");
    y.set("completion_only_loss", true);
    max_length(&mut y, export);
    y.0
}

fn max_length(y: &mut Yaml, export: &TrlExport) {
    if let Some(length) = export.max_length {
        y.comment("The base's context.");
        y.set("max_length", length);
    }
}

/// Accelerate configs: a CPU try-out (two processes), one GPU, the GPUs of one machine, and many
/// machines under DeepSpeed ZeRO-3 or FSDP (each machine runs the same command with its own
/// `--machine_rank`).
fn accelerate_configs() -> Vec<(&'static str, String)> {
    let base = |kind: &str, processes: usize, machines: usize, precision: &str, extra: &str| {
        let mut y = Yaml::default();
        y.text("compute_environment", "LOCAL_MACHINE").text("distributed_type", kind).text("mixed_precision", precision);
        y.set("num_machines", machines).set("num_processes", processes).set("machine_rank", 0);
        if machines > 1 {
            y.comment("Every machine: its own --machine_rank, the first one's address and a free port.");
            y.text("main_process_ip", "FIRST_MACHINE_ADDRESS").set("main_process_port", 29500).text("rdzv_backend", "static");
            y.set("same_network", true);
        }
        y.0 + extra
    };
    let zero3 = "deepspeed_config:\n  zero_stage: 3\n  zero3_init_flag: true\n  zero3_save_16bit_model: true\n  \
                 offload_optimizer_device: none\n  offload_param_device: none\n  deepspeed_multinode_launcher: standard\n";
    let fsdp = "fsdp_config:\n  fsdp_version: 2\n  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP\n  fsdp_state_dict_type: \
                FULL_STATE_DICT\n  fsdp_cpu_ram_efficient_loading: true\n  fsdp_reshard_after_forward: true\n";
    // accelerate's MULTI_CPU launches through MPI; torchrun's processes (MULTI_GPU's launcher) train
    // on the CPU too when the trainer is told so (`--use_cpu true`), over gloo.
    let cpu =
        "# Two processes on this machine's CPU: `trl dpo --config dpo.yaml --accelerate_config accelerate/cpu.yaml --use_cpu true`.\n";
    vec![
        ("cpu", cpu.to_owned() + &base("MULTI_GPU", 2, 1, "no", "")),
        ("one-gpu", base("NO", 1, 1, "no", "")),
        ("multi-gpu", base("MULTI_GPU", 8, 1, "no", "gpu_ids: all\n")),
        ("multi-node-zero3", base("DEEPSPEED", 16, 2, "bf16", zero3)),
        ("multi-node-fsdp", base("FSDP", 16, 2, "bf16", fsdp)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(prompt: &str, k: usize) -> Ranking {
        Ranking {
            prompt: prompt.into(),
            completions: (0..k).map(|i| format!("answer {i}")).collect(),
            ranking: (0..k).rev().collect(),
            finished: vec![],
        }
    }

    fn export<'a>(rankings: &'a [Ranking]) -> TrlExport<'a> {
        TrlExport {
            rankings,
            held_out: None,
            demonstrations: &[],
            model: "Qwen/Qwen2.5-7B-Instruct",
            render_with: None,
            max_length: Some(512),
            settings: TrlSettings::default(),
        }
    }

    fn file<'a>(files: &'a [ExportFile], path: &str) -> Option<&'a str> {
        files.iter().find(|f| f.path == path).map(|f| std::str::from_utf8(&f.bytes).unwrap())
    }

    #[test]
    fn rankings_become_every_pair_split_as_the_trainers_split_them() {
        let rankings: Vec<Ranking> = (0..10).map(|i| ranking(&format!("q{i}"), 3)).collect();
        let files = trl_files(&export(&rankings)).unwrap();
        let lines =
            |path| file(&files, path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<serde_json::Value>>();
        let (train, test) = (lines("data/preferences/train.jsonl"), lines("data/preferences/test.jsonl"));
        assert_eq!((train.len(), test.len()), (8 * 3, 2 * 3), "K=3 is 3 pairs; every fifth ranking held out");
        assert_eq!(test[0]["prompt"], serde_json::json!([{"role": "user", "content": "q4"}]));
        assert_eq!(train[0]["chosen"], serde_json::json!([{"role": "assistant", "content": "answer 2"}]), "best first");
        assert_eq!(train[0]["rejected"][0]["content"], "answer 1");
        assert_eq!(lines("data/prompts/train.jsonl").len(), 8);
        assert!(file(&files, "data/sft/train.jsonl").is_none() && file(&files, "sft.yaml").is_none());
    }

    #[test]
    fn each_config_carries_tinyrlhfs_settings_in_trls_names() {
        let rankings: Vec<Ranking> = (0..3).map(|i| ranking(&format!("q{i}"), 2)).collect();
        let mut e = export(&rankings);
        e.settings.dpo.beta = 0.25;
        e.settings.dpo.train.lr = 5e-6;
        e.settings.dpo.train.lora = Some(tinyrlhf_model::LoraConfig { rank: 4, alpha: 8.0 });
        let files = trl_files(&e).unwrap();
        let dpo = file(&files, "dpo.yaml").unwrap();
        for line in [
            "model_name_or_path: \"Qwen/Qwen2.5-7B-Instruct\"",
            "beta: 0.25",
            "learning_rate: 0.000005",
            "loss_type: [\"sigmoid\"]",
            "num_train_epochs: 6",
            "use_peft: true",
            "lora_r: 4",
            "lora_alpha: 8",
            "max_length: 512",
        ] {
            assert!(dpo.lines().any(|l| l == line), "dpo.yaml lacks {line:?}:\n{dpo}");
        }
        assert!(!dpo.contains("eval_strategy"), "fewer than 10 rankings: nothing held out to evaluate");
        let grpo = file(&files, "grpo.yaml").unwrap();
        assert!(grpo.contains("num_generations: 4") && grpo.contains("loss_type: \"dapo\"") && grpo.contains("beta: 0.04"), "{grpo}");
        assert!(file(&files, "rloo.yaml").unwrap().contains("beta: 0.05"));
        assert!(file(&files, "accelerate/multi-node-zero3.yaml").unwrap().contains("zero_stage: 3"));
    }

    #[test]
    fn a_base_without_a_chat_template_gets_rendered_prompts_and_demonstrations_their_own_set() {
        let demos = [Demonstration { prompt: "Say hi.".into(), response: "Hi.".into() }];
        let template = ChatTemplate::new(
            "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
            "</s>",
            None,
        )
        .unwrap();
        let e = TrlExport { rankings: &[], demonstrations: &demos, render_with: Some(&template), ..export(&[]) };
        let files = trl_files(&e).unwrap();
        let record: serde_json::Value = serde_json::from_str(file(&files, "data/sft/train.jsonl").unwrap().trim()).unwrap();
        assert_eq!(record, serde_json::json!({"prompt": "<user>Say hi.<assistant>", "completion": "Hi."}));
        assert!(file(&files, "sft.yaml").unwrap().contains("completion_only_loss: true"));
        assert!(file(&files, "dpo.yaml").is_none());
    }

    #[test]
    fn nothing_to_export_is_refused() {
        let error = trl_files(&export(&[])).unwrap_err().to_string();
        assert!(error.contains("nothing to export"), "{error}");
    }

    #[test]
    fn numbers_read_as_numbers_in_yaml_1_1() {
        assert_eq!(format_number(1e-4), "0.0001");
        assert_eq!(format_number(1.0), "1.0");
        assert_eq!(format_number(0.25), "0.25");
    }
}
