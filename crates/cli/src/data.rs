//! `tinyrlhf data` writes the instruction world to files; `tinyrlhf tokenizer` learns a BPE from them.

use std::path::PathBuf;

use clap::Args;
use tinyrlhf_data::{Demonstration, write_jsonl};
use tinyrlhf_tokenizer::Tokenizer;

use crate::files::{self, Result};
use crate::outputs::{Out, Plan};

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Directory for pretrain.txt, demos.jsonl, prompts.jsonl and heldout.jsonl.
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Lines of pretraining text (about 150 bytes each).
    #[arg(long, default_value_t = 20_000, value_parser = crate::at_most::<{ tinyrlhf_data::MAX_CORPUS_LINES }>)]
    pretrain_lines: usize,
    /// Demonstrations (prompt + styled answer) for SFT.
    #[arg(long, default_value_t = 20_000, value_parser = crate::at_most::<{ tinyrlhf_data::MAX_RECORDS }>)]
    demos: usize,
    /// Training prompts, for sampling, ranking and PPO.
    #[arg(long, default_value_t = 2_000, value_parser = crate::at_most::<{ tinyrlhf_data::MAX_RECORDS }>)]
    prompts: usize,
    /// Held-out prompts, for evaluation; never among the demonstrations or training prompts.
    #[arg(long, default_value_t = 200, value_parser = crate::at_most::<{ tinyrlhf_data::MAX_RECORDS }>)]
    heldout: usize,
}

impl DataArgs {
    pub fn plan(&self) -> Plan<'_> {
        Plan { out: &self.out, kind: Out::DataDir, inputs: vec![], resume: false }
    }
}

pub fn data(args: &DataArgs) -> Result<()> {
    let corpus = tinyrlhf_data::pretraining_corpus(args.seed, args.pretrain_lines).join("\n") + "\n";
    let demos = tinyrlhf_data::demonstrations(args.seed, args.demos);
    let prompts = tinyrlhf_data::training_prompts(args.seed, args.prompts);
    let heldout = tinyrlhf_data::held_out_prompts(args.seed, args.heldout);
    files::write_atomic(&args.out.join("pretrain.txt"), corpus.as_bytes())?;
    files::write_atomic(&args.out.join("demos.jsonl"), write_jsonl(&demos).as_bytes())?;
    files::write_atomic(&args.out.join("prompts.jsonl"), write_jsonl(&prompts).as_bytes())?;
    files::write_atomic(&args.out.join("heldout.jsonl"), write_jsonl(&heldout).as_bytes())?;
    eprintln!(
        "{}: pretrain.txt ({:.1} MB), {} demonstrations, {} training prompts, {} held-out prompts",
        args.out.display(),
        corpus.len() as f64 / 1e6,
        demos.len(),
        prompts.len(),
        heldout.len()
    );
    Ok(())
}

#[derive(Debug, Args)]
pub struct TokenizerArgs {
    /// Plain text to learn from, one document per line.
    #[arg(long)]
    corpus: PathBuf,
    /// Demonstrations to learn from too, so chat text tokenises well.
    #[arg(long)]
    demos: Option<PathBuf>,
    /// Vocabulary size, special tokens included.
    #[arg(long, default_value_t = 1024)]
    vocab: usize,
    /// Where to write tokenizer.json.
    #[arg(long)]
    out: PathBuf,
}

impl TokenizerArgs {
    pub fn plan(&self) -> Plan<'_> {
        Plan {
            out: &self.out,
            kind: Out::File,
            inputs: [Some(&self.corpus), self.demos.as_ref()].into_iter().flatten().map(|p| p.as_path()).collect(),
            resume: false,
        }
    }
}

pub fn tokenizer(args: &TokenizerArgs) -> Result<()> {
    let corpus = files::read_text(&args.corpus)?;
    let mut texts: Vec<String> = corpus.lines().map(str::to_owned).collect();
    if let Some(path) = &args.demos {
        let demos: Vec<Demonstration> = files::read_records(path)?;
        texts.extend(demos.iter().map(|d| format!(" {} {}", d.prompt, d.response)));
    }
    let tokenizer = Tokenizer::train(texts.iter(), args.vocab).map_err(|e| e.to_string())?;
    files::write_atomic(&args.out, tokenizer.to_json().map_err(|e| e.to_string())?.as_bytes())?;
    eprintln!("{}: {} tokens", args.out.display(), tokenizer.vocab_size());
    Ok(())
}
