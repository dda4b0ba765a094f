//! Model folders as the CLI reads and writes them: one of ours, a Hugging Face folder, a `.gguf`
//! file, or a LoRA run's output (tinyrlhf's `adapter/`, or PEFT's layout as TRL saves it) on the
//! base it names, or on `--base`; the scalar (reward, value) models the same way.
//!
//! A model directory holds `config.json`, `model.safetensors`, `tokenizer.json` and
//! `tokenizer_config.json` (so it is loadable on its own, by us or by HF transformers), a
//! `manifest.json` saying how it was made, and — while training — `checkpoint/` with what
//! `--resume` needs.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use tinyrlhf_model::{ModelConfig, ScalarModel};
use tinyrlhf_rlhf::{AdapterFiles, LanguageModel, ModelFiles, OtherBase, Safetensors};
use tinyrlhf_tokenizer::{Tokenizer, TokenizerFiles};

use crate::files::{Result, read, read_large, regular_file, write_atomic};

/// A model directory's language model and tokenizer, checked against each other: one of ours, a
/// Hugging Face folder (`tokenizer_config.json`, `chat_template.jinja` when present), a `.gguf`,
/// or a LoRA run's output (its adapter on the base it names, merged as it loads).
pub fn load_model_dir(dir: &Path, device: &Device) -> Result<LanguageModel> {
    let model = load_language_model(dir, device, 0)?;
    if let Some(note) = model.tokenizer.template_note() {
        eprintln!("note: {}: {note}", dir.display());
    }
    Ok(model)
}

/// `--allow-other-base`: whether an adapter may load onto a base other than the one it records.
static OTHER_BASE: std::sync::OnceLock<OtherBase> = std::sync::OnceLock::new();

/// Says once, for the whole process, whether adapters may load onto other bases (`main`).
pub fn set_other_base(allowed: bool) {
    let _ = OTHER_BASE.set(if allowed { OtherBase::Allowed } else { OtherBase::Refused });
}

fn other_base() -> OtherBase {
    *OTHER_BASE.get().unwrap_or(&OtherBase::Refused)
}

/// `--base`: the base here of adapters whose `base_model_name_or_path` is not on this machine.
static LOCAL_BASE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();

/// Says once, for the whole process, where adapters trained elsewhere find their base (`main`).
pub fn set_local_base(base: Option<PathBuf>) {
    let _ = LOCAL_BASE.set(base);
}

/// The base `dir`'s adapter stands on: the one its config names (a path relative to `dir`, as
/// tinyrlhf writes it, or absolute), or `--base` when that is not here (a hub id, another
/// machine's path: TRL's and PEFT's adapters name their base so). `None`: the config names none.
fn named_base(dir: &Path, config: &serde_json::Value) -> Option<PathBuf> {
    let named = config.get("base_model_name_or_path")?.as_str().filter(|b| !b.is_empty())?;
    let here = dir.join(named);
    match LOCAL_BASE.get().and_then(Option::as_ref) {
        Some(local) if !here.exists() => Some(local.clone()),
        _ => Some(here),
    }
}

/// Where `dir`'s adapter config is: `adapter/` in a tinyrlhf run's folder, the folder itself in
/// PEFT's layout (what `save_pretrained` and TRL write). `None`: not an adapter folder.
fn adapter_file(dir: &Path, name: &str) -> Option<PathBuf> {
    if dir.join("model.safetensors").exists() {
        return None;
    }
    [dir.join("adapter").join(name), dir.join(name)].into_iter().find(|p| p.is_file())
}

/// An adapter folder's load error, naming the folder and its base.
fn adapter_error(dir: &Path, base: &Path, e: tinyrlhf_rlhf::ModelFilesError) -> String {
    // The library names a tinyrlhf run's files (`adapter/...`); PEFT's layout has them at the top.
    let e = e.to_string();
    let e = if dir.join("adapter").is_dir() { e.as_str() } else { e.strip_prefix("adapter/").unwrap_or(&e) };
    format!("{} (on its base {}): {e}", dir.display(), base.display())
}

/// A GGUF file read a slice at a time, its tensors taken as they complete: the file is never held
/// whole beside the weights it becomes (an F32 file's peak was twice its size).
fn read_gguf(path: &Path) -> Result<tinyrlhf_model::GgufModel> {
    let mut stream = tinyrlhf_model::GgufStream::new();
    in_slices(path, |slice| stream.push(slice))?;
    stream.finish().map_err(|e| format!("{}: {e}", path.display()))
}

/// A `model.safetensors` read the same way.
fn read_weights(path: &Path) -> Result<tinyrlhf_model::Weights> {
    let mut stream = tinyrlhf_model::WeightsStream::new();
    in_slices(path, |slice| stream.push(slice))?;
    stream.finish().map_err(|e| format!("{}: {e}", path.display()))
}

/// Hands `path`'s bytes to `take` 16 MiB at a time.
fn in_slices<E: std::fmt::Display>(path: &Path, mut take: impl FnMut(&[u8]) -> std::result::Result<(), E>) -> Result<()> {
    use std::io::Read;
    let failed = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    regular_file(path, &std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?)?;
    let mut file = std::fs::File::open(path).map_err(|e| failed(&e))?;
    let mut slice = vec![0; tinyrlhf_model::GgufStream::SLICE];
    loop {
        match file.read(&mut slice) {
            Ok(0) => return Ok(()),
            Ok(n) => take(&slice[..n]).map_err(|e| failed(&e))?,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(failed(&e)),
        }
    }
}

/// How many LoRA runs may stand on one another (each names the one before as its base); a folder
/// naming itself would otherwise never end.
const MAX_ADAPTER_DEPTH: usize = 16;

fn load_language_model(dir: &Path, device: &Device, depth: usize) -> Result<LanguageModel> {
    if is_gguf(dir) {
        return tinyrlhf_rlhf::load_gguf_model(read_gguf(dir)?, device).map_err(|e| format!("{}: {e}", dir.display()));
    }
    if dir.is_file() {
        return Err(format!(
            "{}: not a model: expected a GGUF file (its first bytes are `GGUF`) or a folder with config.json, \
             model.safetensors and tokenizer.json",
            dir.display()
        ));
    }
    if adapter_file(dir, PEFT_CONFIG).is_some() {
        return load_adapter_dir(dir, device, depth);
    }
    let (config_json, weights) = (read(&dir.join("config.json"))?, read_weights(&dir.join("model.safetensors"))?);
    let tokenizer = TokenizerBytes::read(dir)?;
    let files = ModelFiles { config_json: &config_json, safetensors: Safetensors::Read(weights), tokenizer: tokenizer.files() };
    tinyrlhf_rlhf::load_language_model(files, device).map_err(|e| format!("{}: {e}", dir.display()))
}

/// `path` and, when it is a LoRA run's folder, the bases it stands on (each adapter's
/// `base_model_name_or_path`, as far as they can be read): everything loading it reads.
pub fn model_and_bases(path: &Path) -> Vec<PathBuf> {
    let mut chain = vec![path.to_owned()];
    while chain.len() <= MAX_ADAPTER_DEPTH {
        let dir = chain.last().expect("one at least");
        let Some(config) = adapter_file(dir, PEFT_CONFIG) else { break };
        let named = std::fs::read(config).ok().and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let Some(base) = named.as_ref().and_then(|c| named_base(dir, c)) else { break };
        chain.push(base);
    }
    chain
}

/// Where a LoRA run keeps its adapter in PEFT's layout, inside its `--out`.
pub const ADAPTER_CONFIG: &str = "adapter/adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter/adapter_model.safetensors";
/// PEFT's names for the same files.
const PEFT_CONFIG: &str = "adapter_config.json";
const PEFT_WEIGHTS: &str = "adapter_model.safetensors";

/// A LoRA run's output: the base its `adapter_config.json` names (`base_model_name_or_path`, as
/// PEFT writes it) with the adapter beside it, and the run's tokenizer.
fn load_adapter_dir(dir: &Path, device: &Device, depth: usize) -> Result<LanguageModel> {
    let adapter = AdapterDir::read(dir, depth)?;
    let base_model = load_language_model(&adapter.base, device, depth + 1)
        .map_err(|e| format!("{} adapts {}, which cannot be loaded: {e}", dir.display(), adapter.base.display()))?;
    adapter.check_base(dir, &base_model)?;
    tinyrlhf_rlhf::with_adapter(base_model, adapter.files(), other_base()).map_err(|e| adapter_error(dir, &adapter.base, e))
}

/// A LoRA run's folder as read: its adapter's files and the base they name.
struct AdapterDir {
    config: Vec<u8>,
    weights: Vec<u8>,
    tokenizer: TokenizerBytes,
    base: PathBuf,
}

impl AdapterDir {
    fn read(dir: &Path, depth: usize) -> Result<Self> {
        let config_path = adapter_file(dir, PEFT_CONFIG).unwrap_or_else(|| dir.join(ADAPTER_CONFIG));
        let config = read(&config_path)?;
        let named: serde_json::Value = serde_json::from_slice(&config).map_err(|e| format!("{}: not JSON: {e}", config_path.display()))?;
        let Some(base) = named_base(dir, &named) else {
            return Err(format!(
                "{}: base_model_name_or_path does not name the model this adapter is for; put its path there, or give it with --base",
                config_path.display()
            ));
        };
        if !base.exists() {
            return Err(format!(
                "{}: its base {:?} (base_model_name_or_path) is not on this machine: give the folder of that model with --base PATH",
                config_path.display(),
                named["base_model_name_or_path"].as_str().unwrap_or_default()
            ));
        }
        if depth >= MAX_ADAPTER_DEPTH {
            return Err(format!(
                "{}: more than {MAX_ADAPTER_DEPTH} adapters stand on one another (does a base name itself?)",
                dir.display()
            ));
        }
        let weights_path = config_path.with_file_name(PEFT_WEIGHTS);
        // A tinyrlhf run keeps the tokenizer it trained with (SFT may have given the base a chat
        // template). PEFT's adapters change no tokenizer, and the one TRL saves beside them is
        // re-made by transformers from the model's class, not always the base's byte for byte:
        // the base's is the adapted model's.
        let own_tokenizer = config_path.starts_with(dir.join("adapter")) || !base.is_dir();
        let tokenizer_dir = if own_tokenizer { dir } else { base.as_path() };
        Ok(Self { weights: read_large(&weights_path)?, tokenizer: TokenizerBytes::read(tokenizer_dir)?, base, config })
    }

    /// Refuses `base` when the adapter records another one, saying the ways out.
    fn check_base(&self, dir: &Path, base: &LanguageModel) -> Result<()> {
        tinyrlhf_rlhf::check_adapter_base(&base.identity, &self.weights, other_base()).map_err(|e| {
            let way_out = "give the base it was trained on as its base_model_name_or_path, or pass --allow-other-base if you know the adapter fits this one";
            format!("{}; {way_out}", adapter_error(dir, &self.base, e))
        })
    }

    fn files(&self) -> AdapterFiles<'_> {
        AdapterFiles { adapter_config_json: &self.config, adapter_safetensors: &self.weights, tokenizer: self.tokenizer.files() }
    }
}

/// A model given as one GGUF file (llama.cpp's, Ollama's, LM Studio's) rather than a folder,
/// recognised by its first bytes whatever its name (Ollama's blobs have none).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    path.is_file() && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && tinyrlhf_model::is_gguf(&head)
}

/// A directory's tokenizer files: `tokenizer.json` (required), `tokenizer_config.json` and
/// `chat_template.jinja` (if there).
struct TokenizerBytes {
    json: Vec<u8>,
    config: Option<Vec<u8>>,
    template: Option<Vec<u8>>,
    generation: Option<Vec<u8>>,
}

impl TokenizerBytes {
    fn read(dir: &Path) -> Result<Self> {
        let optional = |name: &str| {
            let path = dir.join(name);
            if path.exists() { read(&path).map(Some) } else { Ok(None) }
        };
        Ok(Self {
            json: read(&dir.join("tokenizer.json"))?,
            config: optional("tokenizer_config.json")?,
            template: optional("chat_template.jinja")?,
            generation: optional("generation_config.json")?,
        })
    }

    fn files(&self) -> TokenizerFiles<'_> {
        TokenizerFiles {
            tokenizer_json: &self.json,
            tokenizer_config_json: self.config.as_deref(),
            chat_template_jinja: self.template.as_deref(),
            generation_config_json: self.generation.as_deref(),
        }
    }
}

/// A directory's tokenizer with its chat template.
pub fn read_tokenizer_dir(dir: &Path) -> Result<Tokenizer> {
    Tokenizer::from_files(TokenizerBytes::read(dir)?.files()).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Writes a loadable model directory (each file atomically, weights before the config that
/// describes them): a language model's or a scalar model's weights.
pub fn save_weights_dir(dir: &Path, config_json: &str, weights: &[u8], tokenizer: &Tokenizer, manifest: &serde_json::Value) -> Result<()> {
    save_tokenizer(dir, tokenizer)?;
    write_atomic(&dir.join("model.safetensors"), weights)?;
    write_atomic(&dir.join("config.json"), config_json.as_bytes())?;
    save_manifest(dir, manifest)
}

/// The tokenizer files of a model folder (its chat template inside `tokenizer_config.json`).
pub fn save_tokenizer(dir: &Path, tokenizer: &Tokenizer) -> Result<()> {
    write_atomic(&dir.join("tokenizer.json"), tokenizer.to_json().map_err(|e| e.to_string())?.as_bytes())?;
    write_atomic(&dir.join("tokenizer_config.json"), tokenizer.config_json().as_bytes())
}

pub fn save_manifest(dir: &Path, manifest: &serde_json::Value) -> Result<()> {
    write_atomic(&dir.join("manifest.json"), serde_json::to_string_pretty(manifest).expect("json").as_bytes())
}

/// A reward (or value) model directory: the scalar model and its tokenizer. A reward model trained
/// with adapters loads onto the base its adapter names; when that base is `policy`'s path (the
/// run's policy, loaded already), onto that model itself: one copy of the base for both.
pub fn load_scalar_dir(
    dir: &Path,
    device: &Device,
    policy: Option<(&Path, &LanguageModel)>,
) -> Result<(ModelConfig, ScalarModel, Tokenizer)> {
    if adapter_file(dir, PEFT_CONFIG).is_some() {
        let adapter = AdapterDir::read(dir, 0)?;
        let same_file = |a: &Path, b: &Path| std::fs::canonicalize(a).ok().zip(std::fs::canonicalize(b).ok()).is_some_and(|(a, b)| a == b);
        let base = match policy {
            Some((path, model)) if same_file(path, &adapter.base) => model.clone(),
            _ => load_language_model(&adapter.base, device, 1)
                .map_err(|e| format!("{} adapts {}, which cannot be loaded: {e}", dir.display(), adapter.base.display()))?,
        };
        adapter.check_base(dir, &base)?;
        return tinyrlhf_rlhf::scalar_with_adapter(base, adapter.files(), other_base()).map_err(|e| adapter_error(dir, &adapter.base, e));
    }
    let tokenizer = read_tokenizer_dir(dir)?;
    let (config, model) =
        tinyrlhf_model::load_scalar_model(&read(&dir.join("config.json"))?, &read_large(&dir.join("model.safetensors"))?, device)
            .map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok((config, model, tokenizer))
}
