//! A GGUF file's tokenizer (`tokenizer.ggml.*` metadata) as the `tokenizer.json` and
//! `tokenizer_config.json` a Hugging Face folder would carry, built as transformers 5.23 builds it
//! from the same file (`integrations/gguf/gguf_tokenizer_mapping.py`), control tokens (type 3) added
//! as special and user-defined ones (type 4) as plain added tokens:
//! - `gpt2`: byte-level BPE from the vocabulary and merges, with the named pre-tokenizer's split;
//! - `llama` (SentencePiece: Gemma, TinyLlama, Llama 2): BPE with byte fallback over `▁`-joined
//!   text, its merges recovered from the vocabulary (`sentencepiece_merges`), BOS added as
//!   `tokenizer.ggml.add_bos_token` says (absent: added, as llama.cpp does). Gemma's layout
//!   (spaces replaced, no prefix) is chosen by architecture, as transformers chooses it; the others
//!   get Llama's (a `▁` before the first word).
//!
//! Written as files so the rest of the pipeline, and the merged folder a run exports, are those of
//! any HF model.

use std::collections::{HashMap, HashSet};

use serde_json::json;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{
    AddedToken, DecoderWrapper, ModelWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    TokenizerBuilder,
};

/// The tokenizer as transformers serialises it: every part behind its wrapper.
type Builder = TokenizerBuilder<ModelWrapper, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

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

/// The architectures whose SentencePiece files transformers builds as Gemma's tokenizer.
const GEMMA_ARCHITECTURES: [&str; 3] = ["gemma", "gemma2", "gemma3"];

/// SentencePiece's word boundary.
const BOUNDARY: &str = "\u{2581}";

/// The tokenizer metadata of a GGUF file, as plain values.
#[derive(Debug, Clone, Default)]
pub struct GgufVocab {
    /// `general.architecture`: SentencePiece vocabularies are laid out by it.
    pub architecture: String,
    /// `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama` (SentencePiece BPE).
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`, one per token (empty when the file has none).
    pub token_types: Vec<i64>,
    /// `tokenizer.ggml.scores`, one per token (SentencePiece: the merge order).
    pub scores: Vec<f32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
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
        let mut tokenizer = match self.model.as_str() {
            "gpt2" => self.byte_level()?,
            "llama" => self.sentencepiece()?,
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(TokenizerError::InvalidFile(format!(
                    "the GGUF file's tokenizer.ggml.model is {shown:?}; tinyrlhf builds byte-level BPE (\"gpt2\": SmolLM2, \
                     Qwen2.5/3, Llama 3) and SentencePiece (\"llama\": Gemma, TinyLlama, Llama 2) tokenizers"
                )));
            }
        };
        let spelling = byte_spelling();
        let byte_level = self.model == "gpt2";
        let typed = |kind: i64| self.tokens.iter().zip(&self.token_types).filter(move |(_, t)| **t == kind).map(|(token, _)| token);
        // A control token spelled outside the byte alphabet is a llama.cpp mislabel (transformers skips it too).
        let control: Vec<AddedToken> = typed(CONTROL)
            .filter(|t| !byte_level || t.chars().all(|c| spelling.contains(&c)))
            .map(|t| AddedToken::from(t.clone(), true).normalized(false))
            .collect();
        tokenizer.add_special_tokens(control).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        // Only as the vocabulary spells them: Gemma's runs of spaces live there respelled with `▁`.
        let user: Vec<AddedToken> = typed(USER_DEFINED)
            .filter(|t| tokenizer.token_to_id(t).is_some())
            .map(|t| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        tokenizer.add_tokens(user).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        let json = tokenizer.to_string(false).map_err(|e| TokenizerError::Internal(e.to_string()))?;
        Ok(json.into_bytes())
    }

    /// Byte-level BPE from the file's vocabulary and merges.
    fn byte_level(&self) -> Result<tokenizers::Tokenizer, TokenizerError> {
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
        Builder::new()
            .with_model(bpe.into())
            .with_normalizer(None)
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_post_processor(None)
            .with_decoder(Some(ByteLevelDecoder::default().into()))
            .build()
            .map(tokenizers::Tokenizer::from)
            .map_err(|e| TokenizerError::Internal(e.to_string()))
    }

    /// SentencePiece BPE with byte fallback, as transformers' `LlamaTokenizer` (or, for Gemma's
    /// architectures, `GemmaTokenizer`) holds it.
    fn sentencepiece(&self) -> Result<tokenizers::Tokenizer, TokenizerError> {
        let gemma = GEMMA_ARCHITECTURES.contains(&self.architecture.as_str());
        // Without a score and a type per token the merges and the special tokens are guesses.
        for (key, count) in [("tokenizer.ggml.scores", self.scores.len()), ("tokenizer.ggml.token_type", self.token_types.len())] {
            if count != self.tokens.len() {
                return Err(TokenizerError::InvalidFile(format!(
                    "the GGUF file's {key} has {count} entries for {} tokens: a SentencePiece vocabulary needs one per token",
                    self.tokens.len()
                )));
            }
        }
        let tokens: Vec<String> = if gemma {
            // Gemma stores a token of spaces as spaces; its tokenizer looks them up as `▁`s.
            self.tokens
                .iter()
                .map(|t| if t.contains(' ') && t.chars().all(char::is_whitespace) { BOUNDARY.repeat(t.chars().count()) } else { t.clone() })
                .collect()
        } else {
            self.tokens.clone()
        };
        // Gemma's scores do not follow its merge order; the order of its tokens does.
        let rank: Vec<f64> =
            if gemma { (0..tokens.len()).map(|i| -(i as f64)).collect() } else { self.scores.iter().map(|&s| s.into()).collect() };
        let merges = sentencepiece_merges(&tokens, &rank);
        let vocab: tokenizers::models::bpe::Vocab = tokens.iter().enumerate().map(|(id, token)| (token.clone(), id as u32)).collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .unk_token("<unk>".into())
            .fuse_unk(true)
            .byte_fallback(true)
            .build()
            .map_err(|e| TokenizerError::InvalidFile(format!("the GGUF file's vocabulary does not make a BPE model: {e}")))?;
        let internal = |e: tokenizers::Error| TokenizerError::Internal(e.to_string());
        let replace = |from: &str, to: &str| Replace::new(from, to).map_err(internal);
        let mut decoders: Vec<DecoderWrapper> = vec![replace(BOUNDARY, " ")?.into(), ByteFallback::new().into(), Fuse::new().into()];
        let (normalizer, pre_tokenizer): (Option<NormalizerWrapper>, PreTokenizerWrapper) = if gemma {
            let split =
                Split::new(SplitPattern::String(" ".into()), SplitDelimiterBehavior::MergedWithPrevious, false).map_err(internal)?;
            (Some(replace(" ", BOUNDARY)?.into()), split.into())
        } else {
            decoders.push(Strip::new(' ', 1, 0).into());
            (None, Metaspace::new('\u{2581}', PrependScheme::First, false).into())
        };
        let bos = self.bos.and_then(|id| Some((self.tokens.get(id as usize)?.clone(), id)));
        let post_processor: Option<PostProcessorWrapper> = match bos {
            Some((token, id)) if self.add_bos.unwrap_or(true) => Some(
                TemplateProcessing::builder()
                    .try_single(format!("{token}:0 $A:0"))
                    .and_then(|b| b.try_pair(format!("{token}:0 $A:0 {token}:1 $B:1")))
                    .map_err(|e| TokenizerError::Internal(e.to_string()))?
                    .special_tokens(vec![(token, id)])
                    .build()
                    .map_err(|e| TokenizerError::Internal(e.to_string()))?
                    .into(),
            ),
            _ => None,
        };
        Builder::new()
            .with_model(bpe.into())
            .with_normalizer(normalizer)
            .with_pre_tokenizer(Some(pre_tokenizer))
            .with_post_processor(post_processor)
            .with_decoder(Some(DecoderSequence::new(decoders).into()))
            .build()
            .map(tokenizers::Tokenizer::from)
            .map_err(internal)
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

/// The merges a SentencePiece vocabulary implies, as transformers' `generate_merges` recovers them
/// (a GGUF file lists none): every split of a token into two tokens, best `rank` first (then the
/// longer left piece, then the longer right one), ties in the vocabulary's order. A token spelled
/// twice keeps its first place and its last id and rank, as Python's dicts there do.
fn sentencepiece_merges(tokens: &[String], rank: &[f64]) -> Vec<(String, String)> {
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(tokens.len());
    let mut order: Vec<&str> = Vec::with_capacity(tokens.len());
    let mut ranks: HashMap<&str, f64> = HashMap::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        if ids.insert(token, id).is_none() {
            order.push(token);
        }
        ranks.insert(token, rank[id]);
    }
    let mut merges: Vec<(&str, &str, f64)> = Vec::new();
    for token in order {
        let score = ranks[token];
        let mut local: Vec<(&str, &str, f64)> = token
            .char_indices()
            .skip(1)
            .map(|(at, _)| token.split_at(at))
            .filter(|(left, right)| ids.contains_key(left) && ids.contains_key(right))
            .map(|(left, right)| (left, right, score))
            .collect();
        local.sort_by_key(|(left, right, _)| (ids[left], ids[right]));
        merges.extend(local);
    }
    let key = |(left, right, score): &(&str, &str, f64)| (*score, left.chars().count(), right.chars().count());
    // Stable and descending, as Python's `sorted(..., reverse=True)`.
    merges.sort_by(|a, b| key(b).partial_cmp(&key(a)).unwrap_or(std::cmp::Ordering::Equal));
    merges.into_iter().map(|(left, right, _)| (left.to_owned(), right.to_owned())).collect()
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
    fn an_unknown_tokenizer_model_is_refused_naming_it_and_those_built() {
        let vocab = GgufVocab { model: "t5".into(), tokens: vec!["a".into()], ..GgufVocab::default() };
        let message = vocab.tokenizer_json().unwrap_err().to_string();
        assert!(message.contains("\"t5\"") && message.contains("SentencePiece") && message.contains("gpt2"), "{message}");
    }

    #[test]
    fn a_sentencepiece_vocabulary_without_a_score_or_type_per_token_is_refused_naming_the_key() {
        let tokens = vec!["a".to_owned(), "b".to_owned()];
        let whole = GgufVocab { model: "llama".into(), tokens, scores: vec![0.0; 2], token_types: vec![1; 2], ..GgufVocab::default() };
        assert!(whole.tokenizer_json().is_ok());
        for (vocab, key) in [
            (GgufVocab { scores: vec![0.0], ..whole.clone() }, "tokenizer.ggml.scores"),
            (GgufVocab { token_types: vec![], ..whole.clone() }, "tokenizer.ggml.token_type"),
        ] {
            let message = vocab.tokenizer_json().unwrap_err().to_string();
            assert!(message.contains(key), "{message}");
        }
    }

    #[test]
    fn merges_come_best_ranked_first_then_longer_pieces_then_vocabulary_order() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "abc", "bc"].map(String::from).to_vec();
        // "abc" splits as a+bc and ab+c (both pieces known); "ab" and "bc" once each.
        let merges = sentencepiece_merges(&tokens, &[0.0, 0.0, 0.0, -1.0, -2.0, -1.0]);
        let pairs: Vec<(&str, &str)> = merges.iter().map(|(l, r)| (l.as_str(), r.as_str())).collect();
        assert_eq!(pairs, [("a", "b"), ("b", "c"), ("ab", "c"), ("a", "bc")]);
    }
}
