//! What trainers learn from, as token ids: supervised examples, prompts within their budget,
//! rankings and their split, and the order batches visit them in.

pub mod examples;
pub mod order;
pub mod prompts;
pub mod rankings;
