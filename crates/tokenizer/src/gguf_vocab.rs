//! A GGUF file's tokenizer (`tokenizer.ggml.*` metadata) as the `tokenizer.json` and
//! `tokenizer_config.json` a Hugging Face folder would carry, built as transformers builds it from
//! the same file (`integrations/gguf/gguf_tokenizer_mapping.py`): byte-level BPE from the vocabulary
//! and merges, the split of the named pre-tokenizer, control tokens (type 3) added as special and
//! user-defined ones (type 4) as plain added tokens. Written as files so the rest of the pipeline,
//! and the merged folder a run exports, are those of any HF model.

use std::collections::HashSet;

use serde_json::json;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, PreTokenizerWrapper, SplitDelimiterBehavior, TokenizerBuilder};

use crate::TokenizerError;

/// Llama 3's split (llama.cpp's `llama-bpe`); Qwen2's differs only in splitting digits one by one.
const LLAMA3_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer names (`tokenizer.ggml.pre`) with their own split, as transformers maps them;
/// any other name splits as GPT-2 does (SmolLM2's `smollm`, `gpt2`, `default`).
const SPLITS: [(&str, &str); 13] = [
    ("llama3", LLAMA3_SPLIT),
    ("llama-v3", LLAMA3_SPLIT),
    ("llama-bpe", LLAMA3_SPLIT),
    ("falcon3", LLAMA3_SPLIT),
    ("dbrx", LLAMA3_SPLIT),
    ("smaug-bpe", LLAMA3_SPLIT),
    ("pixtral", LLAMA3_SPLIT),
    ("lfm2", LLAMA3_SPLIT),
    ("qwen2", QWEN2_SPLIT),
    ("deepseek-r1-qwen", QWEN2_SPLIT),
    ("megrez", QWEN2_SPLIT),
    ("kormo", QWEN2_SPLIT),
    ("f2llmv2", QWEN2_SPLIT),
];

const CONTROL: i64 = 3;
const USER_DEFINED: i64 = 4;

/// The tokenizer metadata of a GGUF file, as plain values.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: only `gpt2` (byte-level BPE) is built.
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (empty when the file has none).
    pub token_types: Vec<i64>,
    /// `tokenizer.ggml.merges`: "left right" pairs, highest priority first.
    pub merges: Vec<String>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// `tokenizer.json` for this vocabulary.
    pub fn tokenizer_json(&self) -> Result<Vec<u8>, TokenizerError> {
        if self.model != "gpt2" {
            let shown: String = self.model.chars().take(40).collect();
            return Err(TokenizerError::InvalidFile(format!(
                "the GGUF file's tokenizer.ggml.model is {shown:?}; tinyrlhf builds byte-level BPE (\"gpt2\") tokenizers, \
                 which SmolLM2, Qwen2.5/3 and Llama 3 use (SentencePiece ones such as TinyLlama's are not read)"
            )));
        }
        let spelling = byte_spelling();
        let vocab: tokenizers::models::bpe::Vocab =
            self.tokens.iter().enumerate().map(|(id, token)| (respelled(token, &spelling), id as u32)).collect();
        let merges = self
            .merges
            .iter()
            .enumerate()
            .map(|(line, merge)| {
                merge.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| {
                    TokenizerError::InvalidFile(format!(
                        "the GGUF file's tokenizer.ggml.merges item {line} is not two tokens: {merge:.60?}"
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| TokenizerError::InvalidFile(format!("the GGUF file's vocabulary and merges do not make a BPE model: {e}")))?;
        let pre_tokenizer: PreTokenizerWrapper = match SPLITS.iter().find(|(name, _)| Some(*name) == self.pre.as_deref()) {
            Some((_, split)) => {
                let split = Split::new(SplitPattern::Regex((*split).to_owned()), SplitDelimiterBehavior::Isolated, false)
                    .map_err(|e| TokenizerError::Internal(e.to_string()))?;
                Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]).into()
            }
            None => ByteLevel::new(false, true, true).into(),
        };
        let mut tokenizer = TokenizerBuilder::new()
            .with_model(bpe)
            .with_normalizer(None::<tokenizers::NormalizerWrapper>)
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_post_processor(None::<tokenizers::PostProcessorWrapper>)
            .with_decoder(Some(ByteLevelDecoder::default()))
            .build()
            .map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let typed = |kind: i64| self.tokens.iter().zip(&self.token_types).filter(move |(_, t)| **t == kind).map(|(token, _)| token);
        // A control token spelled outside the byte alphabet is a llama.cpp mislabel (transformers skips it too).
        let control: Vec<AddedToken> = typed(CONTROL)
            .filter(|t| t.chars().all(|c| spelling.contains(&c)))
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tokenizer.add_special_tokens(control).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let user: Vec<AddedToken> = typed(USER_DEFINED).map(|t| AddedToken::from(t.clone(), false).normalized(false)).collect();
        tokenizer.add_tokens(user).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let json = tokenizer.to_string(false).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        Ok(json.into_bytes())
    }

    /// `tokenizer_config.json`: the special tokens by name and the chat template.
    pub fn tokenizer_config_json(&self) -> Vec<u8> {
        let token = |id: Option<u32>| id.and_then(|id| self.tokens.get(id as usize)).cloned();
        let mut config = json!({ "eos_token": token(self.eos) });
        if let Some(bos) = token(self.bos) {
            config["bos_token"] = bos.into();
        }
        if let Some(pad) = token(self.pad) {
            config["pad_token"] = pad.into();
        }
        if let Some(template) = &self.chat_template {
            config["chat_template"] = template.as_str().into();
        }
        serde_json::to_vec_pretty(&config).expect("a JSON value serialises")
    }
}

/// GPT-2's byte alphabet: the printable characters standing for the 256 bytes.
fn byte_spelling() -> HashSet<char> {
    ByteLevel::alphabet().into_iter().collect()
}

/// A token spelled in the byte alphabet as the vocabulary must be; llama.cpp writes a few (added
/// tokens) as plain text, which is spelled byte by byte as transformers does.
fn respelled(token: &str, alphabet: &HashSet<char>) -> String {
    if token.chars().all(|c| alphabet.contains(&c)) {
        return token.to_owned();
    }
    let mut by_byte: Vec<char> = alphabet.iter().copied().collect();
    by_byte.sort_by_key(|&c| byte_of(c));
    token.bytes().map(|b| by_byte[b as usize]).collect()
}

/// The byte a character of GPT-2's alphabet stands for (`bytes_to_unicode`'s inverse).
fn byte_of(c: char) -> u32 {
    let c = c as u32;
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    if printable(c) {
        return c;
    }
    // The other bytes, in order, were given 256, 257, ...
    let n = c - 256;
    (0..256).filter(|b| !printable(*b)).nth(n as usize).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respelled_tokens_use_the_byte_alphabet() {
        let alphabet = byte_spelling();
        assert_eq!(respelled("hello", &alphabet), "hello");
        // A space is byte 32, spelled 'Ġ'.
        assert_eq!(respelled(" \n", &alphabet), "ĠĊ");
    }

    #[test]
    fn a_sentencepiece_vocabulary_is_refused_naming_the_model() {
        let vocab = GgufVocab { model: "llama".into(), ..GgufVocab::default() };
        let message = vocab.tokenizer_json().unwrap_err().to_string();
        assert!(message.contains("\"llama\"") && message.contains("SentencePiece"), "{message}");
    }
}
