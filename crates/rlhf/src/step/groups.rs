//! A step's sequences in groups whose activations fit a budget: a trainer that learns from
//! rankings (the reward model, DPO) sends a batch through its model a group at a time and sums the
//! groups' gradients, so a large model's step holds one group's activations rather than the whole
//! batch's. Whole rankings are grouped (each ranking's loss is its own); a ranking larger than the
//! budget is cut into parts of answers, scored first without the graph.

use std::ops::Range;

use tinyrlhf_model::{LoraConfig, ModelConfig};

use crate::checkpoint::TrainError;
use crate::data::rankings::TokenRanking;

/// How many tokens (sequences times their padded length) one backward pass may hold: what
/// `budget_mib` of activations come to for `config`'s model, one token at the least.
pub(crate) fn group_tokens(config: &ModelConfig, budget_mib: u64) -> usize {
    let per_token = crate::memory::sizes::training_step_bytes(config, 1, 1).max(1);
    (budget_mib.saturating_mul(1 << 20) / per_token).max(1) as usize
}

/// The tokens a step on `rankings` in groups of `budget_mib` may hold ([`group_tokens`]), after
/// the run's checks: its LoRA rank, and one group's activations (no more sequences than the budget
/// allows and a batch of `batch_size` rankings has, one at the least, each as long as the longest)
/// within the memory at hand; `what` names the step in a refusal.
pub(crate) fn checked_group_tokens(
    config: &ModelConfig,
    lora: Option<&LoraConfig>,
    rankings: &[TokenRanking],
    batch_size: usize,
    budget_mib: u64,
    what: &str,
) -> Result<usize, TrainError> {
    crate::memory::sizes::check_lora_rank(config, lora)?;
    let widest = rankings.iter().map(|r| r.sequences.len()).max().unwrap_or(0);
    let longest = rankings.iter().flat_map(|r| &r.sequences).map(Vec::len).max().unwrap_or(0).max(1);
    let tokens = group_tokens(config, budget_mib);
    let rows = (batch_size.saturating_mul(widest)).min((tokens / longest).max(1));
    crate::memory::sizes::check_training_step(config, rows, longest, what)?;
    Ok(tokens)
}

/// `items` in order, in groups of whole rankings (`ranking` of each) whose sequences (each as long
/// as the group's longest) fit `budget` tokens together; a ranking larger than that alone.
pub(crate) fn ranking_groups<'a, T>(items: &[&'a T], budget: usize, ranking: impl Fn(&T) -> &TokenRanking) -> Vec<Vec<&'a T>> {
    let sizes = items.iter().map(|item| {
        let sequences = &ranking(item).sequences;
        (sequences.len(), sequences.iter().map(Vec::len).max().unwrap_or(0))
    });
    fitting_runs(sizes, budget).into_iter().map(|run| items[run].to_vec()).collect()
}

/// Sequences of `lengths` cut into contiguous parts that (each as long as its part's longest) fit
/// `budget` tokens; one sequence a part at the least.
pub(crate) fn sequence_parts(lengths: impl IntoIterator<Item = usize>, budget: usize) -> Vec<Range<usize>> {
    fitting_runs(lengths.into_iter().map(|len| (1, len)), budget)
}

/// Contiguous runs of `items`, each `(sequences, longest)`, whose sequences padded to the run's
/// longest fit `budget` tokens together, filled greedily in order; one item a run at the least.
fn fitting_runs(items: impl IntoIterator<Item = (usize, usize)>, budget: usize) -> Vec<Range<usize>> {
    let mut runs: Vec<Range<usize>> = vec![];
    let (mut sequences, mut longest) = (0, 0);
    for (i, (n, len)) in items.into_iter().enumerate() {
        match runs.last_mut() {
            Some(run) if (sequences + n) * longest.max(len) <= budget => {
                run.end = i + 1;
                (sequences, longest) = (sequences + n, longest.max(len));
            }
            _ => {
                runs.push(i..i + 1);
                (sequences, longest) = (n, len);
            }
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranking(answers: usize) -> TokenRanking {
        let sequences = (0..answers).map(|a| [vec![2, 4, 3], vec![7; a + 1], vec![1]].concat()).collect();
        TokenRanking { sequences, order: (0..answers).collect(), prompt_len: 3 }
    }

    #[test]
    fn rankings_group_whole_within_the_budget_and_a_larger_ranking_splits_by_answers() {
        let rankings: Vec<TokenRanking> = [2, 3, 2].into_iter().map(ranking).collect();
        let refs: Vec<&TokenRanking> = rankings.iter().collect();
        // Answers of 5, 6 (and 7) tokens: the rankings take 2 x 6, 3 x 7 and 2 x 6 tokens alone,
        // the first two 5 x 7 together.
        let sizes = |budget| ranking_groups(&refs, budget, |r| r).iter().map(Vec::len).collect::<Vec<_>>();
        assert_eq!(sizes(1000), [3]);
        assert_eq!(sizes(21), [1, 1, 1]);
        assert_eq!(sizes(35), [2, 1]);
        let lengths = || rankings[1].sequences.iter().map(Vec::len);
        assert_eq!(sequence_parts(lengths(), 13), [0..2, 2..3]);
        assert_eq!(sequence_parts(lengths(), 1), [0..1, 1..2, 2..3]);
    }
}
