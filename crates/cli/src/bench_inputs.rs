//! What the benchmarks feed the models: token ids from a cheap deterministic hash (the figures need
//! varied ids, not good randomness), the same on every run and backend.

/// The prompt every benchmark's sampling starts from, in tokens.
pub(crate) const PROMPT_LEN: usize = 16;

/// `rows` rows of `len` ids below `vocab`; `salt` gives another set.
pub(crate) fn random_tokens(rows: usize, len: usize, vocab: usize, salt: usize) -> Vec<i64> {
    (0..rows * len).map(|i| ((i * 2_654_435_761 + salt * 40_503) % vocab) as i64).collect()
}

/// `batch` prompts of [`PROMPT_LEN`] ids.
pub(crate) fn prompts(batch: usize, vocab: usize) -> Vec<Vec<u32>> {
    let ids = random_tokens(batch, PROMPT_LEN, vocab, 7);
    ids.chunks(PROMPT_LEN).map(|row| row.iter().map(|&t| t as u32).collect()).collect()
}
