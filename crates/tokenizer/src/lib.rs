//! Byte-level BPE for tinyrlhf, built on the `tokenizers` crate.
//!
//! Boundary: text in, token ids out (and back). This crate knows the four special tokens and the
//! chat template; it knows nothing of tensors, models or files — `tokenizer.json` comes and goes as
//! bytes, so the same code runs natively and in the browser.
//!
//! The tokenizer is GPT-2's recipe: byte-level pre-tokenisation (so every UTF-8 string round-trips
//! exactly), BPE merges learnt from a corpus, no normaliser. The `tokenizer.json` it writes is the
//! Hugging Face format, so Python's `tokenizers` gives the same ids.

use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

/// Padding. Never produced by the model; distinct from EOS so that "ended" and "filler" differ.
pub const PAD: &str = "<|pad|>";
/// End of a response.
pub const EOS: &str = "<|eos|>";
/// Starts the user's turn in the chat template.
pub const USER: &str = "<|user|>";
/// Starts the assistant's turn in the chat template.
pub const ASSISTANT: &str = "<|assistant|>";

/// The special tokens in the order they take ids 0..4 in a trained tokenizer.
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, EOS, USER, ASSISTANT];

/// Everything that can go wrong reading, training or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.json is not a valid tokenizer file: {0}")]
    InvalidFile(String),
    #[error("tokenizer.json has no special token {0:?}; tinyrlhf needs {SPECIAL_TOKENS:?}")]
    MissingSpecialToken(&'static str),
    #[error("tokenizer.json maps {PAD} and {EOS} to the same id {0}; they must differ")]
    PadIsEos(u32),
    #[error("vocabulary size {0} is too small: it must exceed 256 byte tokens + 4 special tokens")]
    VocabTooSmall(usize),
    #[error("tokenizer failed: {0}")]
    Internal(String),
}

type Result<T> = std::result::Result<T, TokenizerError>;

fn internal(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Internal(e.to_string())
}

/// Ids of the special tokens, looked up once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub eos: u32,
    pub user: u32,
    pub assistant: u32,
}

/// A byte-level BPE tokenizer with tinyrlhf's special tokens.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialIds,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer").field("vocab_size", &self.vocab_size()).field("special", &self.special).finish()
    }
}

impl Tokenizer {
    /// Learns BPE merges from `texts` until the vocabulary (bytes + merges + special tokens) reaches
    /// `vocab_size`. Deterministic: the same texts give the same tokenizer.
    pub fn train<I, S>(texts: I, vocab_size: usize) -> Result<Self>
    where
        I: Iterator<Item = S> + Send,
        S: AsRef<str> + Send,
    {
        if vocab_size <= 256 + SPECIAL_TOKENS.len() {
            return Err(TokenizerError::VocabTooSmall(vocab_size));
        }
        let specials = SPECIAL_TOKENS.iter().map(|t| AddedToken::from(*t, true)).collect();
        let mut trainer = BpeTrainerBuilder::new()
            .show_progress(false)
            .vocab_size(vocab_size)
            .min_frequency(2)
            .special_tokens(specials)
            // Every byte gets a token even if the corpus never shows it: that is what makes
            // arbitrary UTF-8 (emoji, accents) round-trip.
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .build();
        // GPT-2's regex split keeps merges inside words; no prefix space keeps decode(encode(s)) == s.
        let byte_level = ByteLevel::new(false, true, true);
        let mut typed = TokenizerBuilder::new()
            .with_model(BPE::default())
            .with_normalizer(None::<tokenizers::NormalizerWrapper>)
            .with_pre_tokenizer(Some(byte_level))
            .with_post_processor(Some(byte_level))
            .with_decoder(Some(byte_level))
            .build()
            .map_err(internal)?;
        typed.train(&mut trainer, texts).map_err(internal)?;
        let json = typed.to_string(false).map_err(internal)?;
        Self::from_json_bytes(json.as_bytes())
    }

    /// Reads a Hugging Face `tokenizer.json`; refuses files without tinyrlhf's special tokens.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        // tokenizers 0.23 panics instead of erring on some bad files (`expect("Helper")` in its
        // decoder reader when the JSON is malformed inside the decoder; `expect("Precompiled")`
        // on a bad charsmap), and a panic kills the page's wasm. Well-formed JSON first, and no
        // Precompiled normalizer (SentencePiece's, which no GPT-2-style tokenizer has).
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| TokenizerError::InvalidFile(e.to_string()))?;
        if value.pointer("/normalizer").is_some_and(has_precompiled) {
            return Err(TokenizerError::InvalidFile("a Precompiled (SentencePiece) normalizer is not supported".into()));
        }
        let inner: tokenizers::Tokenizer = serde_json::from_value(value).map_err(|e| TokenizerError::InvalidFile(e.to_string()))?;
        let id = |token: &'static str| inner.token_to_id(token).ok_or(TokenizerError::MissingSpecialToken(token));
        let special = SpecialIds { pad: id(PAD)?, eos: id(EOS)?, user: id(USER)?, assistant: id(ASSISTANT)? };
        if special.pad == special.eos {
            return Err(TokenizerError::PadIsEos(special.pad));
        }
        Ok(Self { inner, special })
    }

    /// The `tokenizer.json` text (Hugging Face format).
    pub fn to_json(&self) -> Result<String> {
        self.inner.to_string(true).map_err(internal)
    }

    pub fn special_ids(&self) -> SpecialIds {
        self.special
    }

    /// Number of ids, special tokens included: the model's embedding table must be this large.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Encodes text. Special-token strings written in the text become their special ids, as in
    /// Hugging Face, so that rendered chat transcripts re-encode to the same ids.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, false).map_err(internal)?.get_ids().to_vec())
    }

    /// Decodes ids back to text, special tokens included: `decode(encode(s)) == s` for any `s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(internal)
    }

    /// Decodes ids, dropping special tokens: what a person should read of a response.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(internal)
    }

    /// The chat template as text: `<|user|> {prompt}<|assistant|> {response}<|eos|>`.
    /// Special tokens carry no spaces of their own; the space before prompt and response is part of
    /// their first word's token, as GPT-2 writes words.
    pub fn render_chat(prompt: &str, response: &str) -> String {
        format!("{USER} {prompt}{ASSISTANT} {response}{EOS}")
    }

    /// Ids of the template up to and including `<|assistant|>`: what the model continues.
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.special.user];
        ids.extend(self.encode(&format!(" {prompt}"))?);
        ids.push(self.special.assistant);
        Ok(ids)
    }

    /// [`Tokenizer::encode_prompt`] cut to at most `max_len` ids, and whether it was cut. The cut
    /// drops the oldest text but keeps `<|user|>` and the end of the prompt with `<|assistant|>`:
    /// what the model must continue.
    pub fn encode_prompt_within(&self, prompt: &str, max_len: usize) -> Result<(Vec<u32>, bool)> {
        let mut ids = self.encode_prompt(prompt)?;
        let max = max_len.max(2);
        if ids.len() <= max {
            return Ok((ids, false));
        }
        let tail = ids.split_off(ids.len() - (max - 1));
        ids.truncate(1);
        ids.extend(tail);
        Ok((ids, true))
    }

    /// Ids of a response as the template writes it after the prompt, ending with `<|eos|>`.
    pub fn encode_response(&self, response: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(&format!(" {response}"))?;
        ids.push(self.special.eos);
        Ok(ids)
    }

    /// A response's ids back to the text a person reads: up to the first EOS, without the
    /// template's leading space.
    pub fn decode_response(&self, ids: &[u32]) -> Result<String> {
        let end = ids.iter().position(|&t| t == self.special.eos).unwrap_or(ids.len());
        let text = self.decode_text(&ids[..end])?;
        Ok(text.strip_prefix(' ').map(str::to_owned).unwrap_or(text))
    }
}

/// Whether a normalizer (or a sequence of them, at any depth) is SentencePiece's Precompiled.
fn has_precompiled(normalizer: &serde_json::Value) -> bool {
    match normalizer {
        serde_json::Value::Object(o) => o.get("type").is_some_and(|t| t == "Precompiled") || o.values().any(has_precompiled),
        serde_json::Value::Array(items) => items.iter().any(has_precompiled),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORPUS: &[&str] = &[
        "the cat sat on the mat. the dog ate a red apple.",
        "two plus three is five. the sun is warm today!",
        "a small bird sings in the green tree.",
    ];

    fn trained() -> Tokenizer {
        Tokenizer::train(CORPUS.iter().cycle().take(60), 300).unwrap()
    }

    #[test]
    fn special_tokens_take_the_first_ids_and_pad_differs_from_eos() {
        let tok = trained();
        let s = tok.special_ids();
        assert_eq!((s.pad, s.eos, s.user, s.assistant), (0, 1, 2, 3));
        assert!(tok.vocab_size() <= 300 && tok.vocab_size() > 260, "{}", tok.vocab_size());
    }

    #[test]
    fn round_trip_is_lossless_on_arbitrary_utf8() {
        let tok = trained();
        for text in [
            "",
            "the cat sat",
            "  leading and   runs of   spaces\t\ttabs\n\nnewlines  ",
            "café naïve façade Ærøskøbing",
            "emoji 🐈‍⬛ 👩🏽‍🚀 and CJK 漢字かな",
            "\u{0} control \u{7f} chars \u{200b}",
            "special-looking <|not a token|> text",
        ] {
            let ids = tok.encode(text).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), text, "ids {ids:?}");
        }
    }

    #[test]
    fn chat_template_ids_equal_encoding_the_rendered_text() {
        let tok = trained();
        let mut ids = tok.encode_prompt("what is two plus three?").unwrap();
        ids.extend(tok.encode_response("five!").unwrap());
        let rendered = Tokenizer::render_chat("what is two plus three?", "five!");
        assert_eq!(tok.encode(&rendered).unwrap(), ids);
        assert_eq!(tok.decode(&ids).unwrap(), rendered);
        let s = tok.special_ids();
        assert_eq!(ids[0], s.user);
        assert_eq!(*ids.last().unwrap(), s.eos);
    }

    #[test]
    fn decode_response_stops_at_eos_and_drops_the_template_space() {
        let tok = trained();
        let mut ids = tok.encode_response("the dog ate").unwrap();
        ids.extend(tok.encode(" garbage after eos").unwrap());
        assert_eq!(tok.decode_response(&ids).unwrap(), "the dog ate");
    }

    #[test]
    fn json_round_trip_gives_the_same_ids() {
        let tok = trained();
        let again = Tokenizer::from_json_bytes(tok.to_json().unwrap().as_bytes()).unwrap();
        let text = "the green bird ate five apples 🍎";
        assert_eq!(tok.encode(text).unwrap(), again.encode(text).unwrap());
    }

    #[test]
    fn training_is_deterministic() {
        assert_eq!(trained().to_json().unwrap(), trained().to_json().unwrap());
    }

    #[test]
    fn a_file_that_is_not_json_is_refused() {
        let err = Tokenizer::from_json_bytes(b"not json at all").unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidFile(_)), "{err}");
    }

    #[test]
    fn a_tokenizer_without_the_special_tokens_is_refused_by_name() {
        let json = trained().to_json().unwrap().replace(ASSISTANT, "<|bot|>");
        let err = Tokenizer::from_json_bytes(json.as_bytes()).unwrap_err();
        assert!(matches!(err, TokenizerError::MissingSpecialToken(ASSISTANT)), "{err}");
        assert!(err.to_string().contains("<|assistant|>"));
    }

    #[test]
    fn a_vocabulary_without_room_for_merges_is_refused() {
        let err = Tokenizer::train(CORPUS.iter(), 100).unwrap_err();
        assert!(matches!(err, TokenizerError::VocabTooSmall(100)));
    }
}
