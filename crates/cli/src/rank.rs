//! `tinyrlhf rank`: turn a samples file into rankings. In the terminal a person reads the K answers
//! to each prompt and types their order; with `--labeler` a scripted labeler ranks instead.
//!
//! Nothing typed is lost: the rankings file is rewritten (atomically) after every answer, and a
//! second run over the same samples skips the prompts already ranked. Identical answers are shown
//! once: there is nothing to choose between them.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Args;
use tinyrlhf_data::{Labeler, Ranking, Samples, distinct, write_jsonl};

use crate::files::{self, Result};
use crate::outputs::{Out, Plan};

#[derive(Debug, Args)]
pub struct RankArgs {
    /// Samples to rank, JSONL of {"prompt", "completions"} (from `tinyrlhf sample`).
    #[arg(long)]
    samples: PathBuf,
    /// Rankings file to write (and to continue, if it exists): JSONL of {"prompt", "completions",
    /// "ranking"}.
    #[arg(long)]
    out: PathBuf,
    /// Rank with a scripted labeler instead of asking (concise, polite, enthusiastic, correct, or
    /// several joined by '+'). Completions it scores equally are kept once: ordering a tie would
    /// teach the reward model a coin flip.
    #[arg(long)]
    labeler: Option<Labeler>,
}

impl RankArgs {
    pub fn plan(&self) -> Plan<'_> {
        Plan { out: &self.out, kind: Out::ContinuedFile, inputs: vec![&self.samples], resume: false }
    }
}

fn key(prompt: &str, completions: &[String]) -> (String, Vec<String>) {
    let mut sorted = completions.to_vec();
    sorted.sort();
    (prompt.to_owned(), sorted)
}

pub fn rank(args: &RankArgs) -> Result<()> {
    let samples: Vec<Samples> = files::read_records(&args.samples)?;
    let mut rankings: Vec<Ranking> = if args.out.exists() { files::read_records(&args.out)? } else { vec![] };
    if let Some(labeler) = &args.labeler {
        let before = rankings.len();
        let mut ties = 0;
        for s in &samples {
            let (completions, finished) = distinct(&s.completions, &s.finished);
            match labeler.strict_ranking(&s.prompt, &completions, &finished) {
                Some(r) => rankings.push(r),
                None => ties += 1,
            }
        }
        let pairs: usize = rankings[before..].iter().map(|r| r.pairs().len()).sum();
        files::write_atomic(&args.out, write_jsonl(&rankings).as_bytes())?;
        eprintln!(
            "{}: labeler {labeler} ranked {} prompts ({pairs} pairs); {ties} had no two answers it could tell apart",
            args.out.display(),
            rankings.len() - before
        );
        return Ok(());
    }
    interactive(&samples, rankings, &args.out)
}

/// Reads an order such as `2 1 3` or `213` (best first, 1-based) for `k` answers.
pub fn parse_order(line: &str, k: usize) -> std::result::Result<Vec<usize>, String> {
    let digits: Vec<&str> = if line.contains([' ', ',']) {
        line.split([' ', ',']).filter(|s| !s.is_empty()).collect()
    } else {
        line.split("").filter(|s| !s.is_empty()).collect()
    };
    let order: Vec<usize> = digits
        .iter()
        .map(|d| d.parse::<usize>().ok().filter(|&i| i >= 1).ok_or_else(|| format!("{d:?} is not an answer number (they start at 1)")))
        .collect::<std::result::Result<_, _>>()?;
    // Said in the numbers the person typed (1-based), before the 0-based ranking is checked.
    let again = |n: usize| format!("(type each answer number 1..{k} once, best first; {n} numbers typed)");
    if let Some(&n) = order.iter().find(|&&n| n > k) {
        return Err(format!("{n} is out of range: there are {k} answers {}", again(order.len())));
    }
    if let Some((i, &n)) = order.iter().enumerate().find(|(i, n)| order[..*i].contains(n)) {
        return Err(format!(
            "{n} is typed twice (as number {} and {}) {}",
            order.iter().position(|&m| m == n).unwrap_or(0) + 1,
            i + 1,
            again(order.len())
        ));
    }
    // Only the order is checked here: stand-in answers, all different.
    let completions = (0..k).map(|i| i.to_string()).collect();
    let ranking =
        Ranking { prompt: String::new(), completions, ranking: order.iter().map(|&i| i.wrapping_sub(1)).collect(), finished: vec![] };
    ranking.check().map_err(|e| format!("{e} (type each answer number 1..{k} once, best first)"))?;
    Ok(ranking.ranking)
}

fn interactive(samples: &[Samples], mut rankings: Vec<Ranking>, out: &Path) -> Result<()> {
    let done: HashSet<(String, Vec<String>)> = rankings.iter().map(|r| key(&r.prompt, &r.completions)).collect();
    let todo: Vec<Samples> = samples
        .iter()
        .map(|s| {
            let (completions, finished) = distinct(&s.completions, &s.finished);
            Samples { prompt: s.prompt.clone(), completions, finished }
        })
        .filter(|s| s.completions.len() >= 2 && !done.contains(&key(&s.prompt, &s.completions)))
        .collect();
    eprintln!(
        "{} prompts to rank ({} already in {}). Type the answer numbers best first (e.g. 2 1 3); s skips, q saves and quits.",
        todo.len(),
        rankings.len(),
        out.display()
    );
    for (n, Samples { prompt, completions, finished }) in todo.iter().enumerate() {
        println!("\n[{}/{}] {prompt}", n + 1, todo.len());
        for (i, c) in completions.iter().enumerate() {
            println!("  {}. {c}", i + 1);
        }
        loop {
            print!("order> ");
            std::io::stdout().flush().ok();
            let Some(line) = files::stdin_line()? else {
                eprintln!("{} rankings saved in {}", rankings.len(), out.display());
                return Ok(());
            };
            let line = String::from_utf8_lossy(&line);
            match line.trim() {
                "q" => {
                    eprintln!("{} rankings saved in {}", rankings.len(), out.display());
                    return Ok(());
                }
                "s" | "" => break,
                typed => match parse_order(typed, completions.len()) {
                    Ok(order) => {
                        let (completions, finished) = (completions.clone(), finished.clone());
                        rankings.push(Ranking { prompt: prompt.clone(), completions, ranking: order, finished });
                        files::write_atomic(out, write_jsonl(&rankings).as_bytes())?;
                        break;
                    }
                    Err(e) => println!("  {e}"),
                },
            }
        }
    }
    eprintln!("{} rankings in {}", rankings.len(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_order;

    #[test]
    fn orders_are_typed_best_first_one_based() {
        assert_eq!(parse_order("2 1 3", 3), Ok(vec![1, 0, 2]));
        assert_eq!(parse_order("213", 3), Ok(vec![1, 0, 2]));
        assert_eq!(parse_order("2,1", 2), Ok(vec![1, 0]));
        // Said in the person's numbers, not the 0-based indices behind them.
        assert!(parse_order("1 1 2", 3).unwrap_err().starts_with("1 is typed twice (as number 1 and 2)"));
        assert!(parse_order("1 4 2", 3).unwrap_err().starts_with("4 is out of range: there are 3 answers"));
        assert!(parse_order("2 1", 3).unwrap_err().contains("1..3"));
        assert!(parse_order("x", 2).is_err());
    }
}
