//! Rankings files as the stages that learn from them (`reward`, `dpo`) read them: parsed strictly,
//! tokenized and split by the library's [`RankingSet`], every skipped record reported with its
//! file and line.

use std::path::Path;

use tinyrlhf_data::Ranking;
use tinyrlhf_rlhf::RankingSet;
use tinyrlhf_tokenizer::Tokenizer;

use crate::files::{self, Result};

/// Rankings (or TRL pairs) from `path`; an error names the file, the line and the field.
pub fn read_rankings(path: &Path) -> Result<Vec<Ranking>> {
    let rankings = tinyrlhf_data::read_preferences(&path.display().to_string(), &files::read(path)?).map_err(|e| e.to_string())?;
    if rankings.is_empty() {
        return Err(format!("{} holds no rankings", path.display()));
    }
    Ok(rankings)
}

/// The file line of the `index`-th record of `text` (blank lines are skipped by the reader).
fn record_line(path: &Path, text: &str, index: usize) -> String {
    let line = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()).nth(index).map_or(0, |(i, _)| i + 1);
    format!("{}:{line}", path.display())
}

/// The rankings of `path` ready to train on (held out: `held_out`'s, else every fifth), with a note
/// on standard error for each record skipped (`file:line: why`), for cut prompts and for a missing
/// held-out set.
pub fn load(path: &Path, held_out: Option<&Path>, tokenizer: &Tokenizer, context: usize) -> Result<RankingSet> {
    let rankings = read_rankings(path)?;
    let held_out = held_out.map(read_rankings).transpose()?;
    let set = RankingSet::prepare(tokenizer, &rankings, held_out.as_deref(), context);
    // The file is read again only when there is something to point at in it.
    let text = if set.skipped.is_empty() { String::new() } else { files::read_text(path).unwrap_or_default() };
    for (index, why) in &set.skipped {
        eprintln!("note: skipped {}: {why}", record_line(path, &text, *index));
    }
    if set.prompts_cut > 0 {
        eprintln!("note: {} prompts were longer than the context allows and lost their beginning", set.prompts_cut);
    }
    if set.held_out.is_empty() {
        eprintln!("note: fewer than {} rankings and no --held-out; no held-out accuracy will be reported", RankingSet::SPLIT_FROM);
    }
    set.check_trainable(&path.display().to_string()).map_err(|e| e.to_string())?;
    Ok(set)
}
