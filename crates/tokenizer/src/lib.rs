//! Byte-level BPE tokenizers and their chat templates, built on the `tokenizers` and `minijinja`
//! crates.
//!
//! Boundary: text in, token ids out (and back). This crate knows special tokens and chat
//! templates; it knows nothing of tensors, models or files — `tokenizer.json`,
//! `tokenizer_config.json` and `chat_template.jinja` come and go as bytes, so the same code runs
//! natively and in the browser.
//!
//! Two kinds of tokenizer load here. Our own (GPT-2's recipe: byte-level pre-tokenisation, BPE
//! merges learnt from a corpus, no normaliser) with four special tokens and [`TINYRLHF_TEMPLATE`].
//! And any Hugging Face folder's: its EOS (and pad, if it has one) named by `tokenizer_config.json`,
//! its Jinja chat template rendered as transformers renders it. A tokenizer without a pad token
//! pads with EOS, as GPT-2 does: nothing downstream tells padding by its id.

pub mod chat;
mod gguf_vocab;

use serde_json::{Value, json};
use tokenizers::models::bpe::{BPE, BpeTrainerBuilder};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, TokenizerBuilder};

pub use chat::{ChatTemplate, PLAIN_TEMPLATE, PLAIN_TEMPLATE_NOTE, TINYRLHF_TEMPLATE, TURNS_TEMPLATE, TemplateError};
pub use gguf_vocab::GgufVocab;

/// Padding in our own tokenizers. Never produced by the model.
pub const PAD: &str = "<|pad|>";
/// End of a response.
pub const EOS: &str = "<|eos|>";
/// Starts the user's turn in our chat template.
pub const USER: &str = "<|user|>";
/// Starts the assistant's turn in our chat template.
pub const ASSISTANT: &str = "<|assistant|>";

/// Our special tokens in the order they take ids 0..4 in a trained tokenizer.
pub const SPECIAL_TOKENS: [&str; 4] = [PAD, EOS, USER, ASSISTANT];

/// The largest vocabulary [`Tokenizer::train`] builds.
pub const MAX_TRAINED_VOCAB: usize = 1 << 20;

/// Everything that can go wrong reading, training or using a tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer.json is not a valid tokenizer file: {0}")]
    InvalidFile(String),
    #[error("tokenizer.json has no special token {0:?} and no tokenizer_config.json names its EOS token")]
    MissingSpecialToken(&'static str),
    #[error("tokenizer_config.json: {0}")]
    Config(String),
    #[error("chat_template.jinja is not UTF-8 text")]
    TemplateNotText,
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("vocabulary size {0} is too small: it must exceed 256 byte tokens + 4 special tokens")]
    VocabTooSmall(usize),
    #[error("vocabulary size {0} is too large: at most {MAX_TRAINED_VOCAB} (the largest real models use about 260,000)")]
    VocabTooLarge(usize),
    #[error("tokenizer failed: {0}")]
    Internal(String),
}

type Result<T> = std::result::Result<T, TokenizerError>;

fn internal(e: impl std::fmt::Display) -> TokenizerError {
    TokenizerError::Internal(e.to_string())
}

/// Ids of the tokens the pipeline needs. `pad == eos` when the tokenizer has no pad token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub eos: u32,
}

/// A model folder's tokenizer files, as bytes. Only `tokenizer.json` is required; without
/// `tokenizer_config.json` it must be one of ours (the four special tokens).
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenizerFiles<'a> {
    pub tokenizer_json: &'a [u8],
    pub tokenizer_config_json: Option<&'a [u8]>,
    /// transformers 5 writes the template to its own file; older folders keep it in the config.
    pub chat_template_jinja: Option<&'a [u8]>,
    /// `generation_config.json`: its `eos_token_id`/`pad_token_id`/`bos_token_id` stand in for
    /// tokens `tokenizer_config.json` does not name (a list of EOS ids: the first).
    pub generation_config_json: Option<&'a [u8]>,
}

/// A byte-level BPE tokenizer, its special tokens and its chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special: SpecialIds,
    eos_token: String,
    /// `None`: padding uses EOS.
    pad_token: Option<String>,
    bos_token: Option<String>,
    template: ChatTemplate,
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
        // The trainer sizes its tables by the asked vocabulary before it reads a word.
        if vocab_size > MAX_TRAINED_VOCAB {
            return Err(TokenizerError::VocabTooLarge(vocab_size));
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

    /// One of our own `tokenizer.json` files (the four special tokens, our template).
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_files(TokenizerFiles { tokenizer_json: bytes, ..TokenizerFiles::default() })
    }

    /// A model folder's tokenizer. With `tokenizer_config.json`: its `eos_token`, `pad_token`
    /// (absent: pad with EOS) and `chat_template` (or `chat_template.jinja`), the ids of
    /// `generation_config.json` for tokens it does not name; a folder without a template gets ours
    /// if the vocabulary has our turn tokens, else [`PLAIN_TEMPLATE`].
    pub fn from_files(files: TokenizerFiles) -> Result<Self> {
        let inner = parse_tokenizer_json(files.tokenizer_json)?;
        let parse = |bytes: Option<&[u8]>, what: &str| match bytes {
            Some(bytes) => serde_json::from_slice::<Value>(bytes)
                .map(Some)
                .map_err(|e| TokenizerError::Config(format!("{what} is not valid JSON: {e}"))),
            None => Ok(None),
        };
        let config = parse(files.tokenizer_config_json, "tokenizer_config.json")?;
        let generation = parse(files.generation_config_json, "generation_config.json")?;
        let ours = SPECIAL_TOKENS.iter().all(|t| inner.token_to_id(t).is_some());
        let by_id = |key: &str| {
            let id =
                generation.as_ref().map(|g| &g[format!("{key}_id")]).and_then(|v| v.as_array().and_then(|ids| ids.first()).or(Some(v)));
            id.and_then(Value::as_u64).and_then(|id| u32::try_from(id).ok()).and_then(|id| inner.id_to_token(id))
        };
        let token = |key: &str| config.as_ref().and_then(|c| token_string(&c[key])).or_else(|| by_id(key));
        let named = config.is_some() || generation.is_some();
        let (eos_token, pad_token) = match (named, token("eos_token")) {
            (true, Some(eos)) => (eos, token("pad_token")),
            (true, None) if !ours => {
                return Err(TokenizerError::Config("no `eos_token`: the pipeline must know how an answer ends".into()));
            }
            _ => {
                if let Some(missing) = SPECIAL_TOKENS.iter().find(|t| inner.token_to_id(t).is_none()) {
                    return Err(TokenizerError::MissingSpecialToken(missing));
                }
                (EOS.to_owned(), Some(PAD.to_owned()))
            }
        };
        let id = |field: &str, token: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                TokenizerError::Config(format!(
                    "`{field}` {token:?} is not in tokenizer.json's vocabulary ({} ids)",
                    inner.get_vocab_size(true)
                ))
            })
        };
        let eos = id("eos_token", &eos_token)?;
        let pad = match &pad_token {
            Some(pad_token) => id("pad_token", pad_token)?,
            None => eos,
        };
        let bos_token = token("bos_token");
        let source = match (files.chat_template_jinja, config.as_ref().and_then(|c| template_string(&c["chat_template"]))) {
            (Some(bytes), _) => std::str::from_utf8(bytes).map_err(|_| TokenizerError::TemplateNotText)?.to_owned(),
            (None, Some(source)) => source,
            (None, None) if ours => TINYRLHF_TEMPLATE.to_owned(),
            (None, None) => PLAIN_TEMPLATE.to_owned(),
        };
        let template = ChatTemplate::new(&source, &eos_token, bos_token.as_deref())?;
        Ok(Self { inner, special: SpecialIds { pad, eos }, eos_token, pad_token, bos_token, template })
    }

    /// The `tokenizer_config.json` that goes beside `tokenizer.json`, so that transformers (and
    /// this crate) see the same EOS, pad and chat template.
    pub fn config_json(&self) -> String {
        let mut config = json!({
            "chat_template": self.template.source(),
            "eos_token": self.eos_token,
            "tokenizer_class": "PreTrainedTokenizerFast",
        });
        if let Some(pad) = &self.pad_token {
            config["pad_token"] = pad.as_str().into();
        }
        if let Some(bos) = &self.bos_token {
            config["bos_token"] = bos.as_str().into();
        }
        serde_json::to_string_pretty(&config).unwrap_or_default()
    }

    /// The chat template.
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.template
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

    /// Ids of `text` with what the tokenizer itself puts around a text (BOS, where its
    /// `tokenizer.json` post-processor adds one): what a model without a chat template continues.
    pub fn encode_continuation(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.inner.encode(text, true).map_err(internal)?.get_ids().to_vec())
    }

    /// Decodes ids back to text, special tokens included: `decode(encode(s)) == s` for any `s`.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(internal)
    }

    /// Decodes ids, dropping special tokens: what a person should read of a response.
    pub fn decode_text(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, true).map_err(internal)
    }

    /// The whole conversation as the template writes it: prompt, answer and what closes the turn.
    pub fn render_chat(&self, prompt: &str, response: &str) -> Result<String> {
        Ok(self.template.conversation_text(prompt, response)?)
    }

    /// Ids of the template up to its generation prompt: what the model continues. Without a chat
    /// template, the prompt as written with what the tokenizer adds around a text (its BOS).
    pub fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>> {
        let text = self.template.prompt_text(prompt)?;
        if self.continues_as_written() { self.encode_continuation(&text) } else { self.encode(&text) }
    }

    /// Whether the model has no chat template and continues prompts as written ([`PLAIN_TEMPLATE`]).
    pub fn continues_as_written(&self) -> bool {
        self.template.source() == PLAIN_TEMPLATE
    }

    /// The tokenizer SFT teaches a model with: its own, or for a model without a chat template
    /// [`TURNS_TEMPLATE`], so the tuned model answers in turns and stops (and its folder says how).
    pub fn for_instructions(&self) -> Result<Self> {
        if !self.continues_as_written() {
            return Ok(self.clone());
        }
        let template = ChatTemplate::new(TURNS_TEMPLATE, &self.eos_token, self.bos_token.as_deref())?;
        Ok(Self { template, ..self.clone() })
    }

    /// What to tell a person once about how their prompts reach this model: [`PLAIN_TEMPLATE_NOTE`]
    /// for a model without a chat template.
    pub fn template_note(&self) -> Option<&'static str> {
        self.continues_as_written().then_some(PLAIN_TEMPLATE_NOTE)
    }

    /// [`Tokenizer::encode_prompt`] cut to at most `max_len` ids, and whether it was cut. The cut
    /// drops the oldest text but keeps the first token (the template's opening) and the end of the
    /// prompt with the generation prompt: what the model must continue.
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

    /// Ids of an answer to `prompt` as the template writes it after the generation prompt, ending
    /// with EOS (what follows EOS in the template, such as a newline, is not the model's to write).
    pub fn encode_response(&self, prompt: &str, response: &str) -> Result<Vec<u32>> {
        let mut ids = self.encode(&self.template.answer_text(prompt, response)?)?;
        match ids.iter().position(|&t| t == self.special.eos) {
            Some(end) => ids.truncate(end + 1),
            None => ids.push(self.special.eos),
        }
        Ok(ids)
    }

    /// A response's ids back to the text a person reads: up to the first EOS, without what the
    /// template writes before every answer (our template's space; a ChatML answer keeps its own).
    pub fn decode_response(&self, ids: &[u32]) -> Result<String> {
        let end = ids.iter().position(|&t| t == self.special.eos).unwrap_or(ids.len());
        let text = self.decode_text(&ids[..end])?;
        Ok(text.strip_prefix(self.template.answer_lead()).map(str::to_owned).unwrap_or(text))
    }
}

fn parse_tokenizer_json(bytes: &[u8]) -> Result<tokenizers::Tokenizer> {
    // tokenizers 0.23 panics instead of erring on some bad files (`expect("Helper")` in its
    // decoder reader when the JSON is malformed inside the decoder; `expect("Precompiled")`
    // on a bad charsmap), and a panic kills the page's wasm. Well-formed JSON first, and no
    // Precompiled normalizer (SentencePiece's, which no GPT-2-style tokenizer has).
    let value: Value = serde_json::from_slice(bytes).map_err(|e| TokenizerError::InvalidFile(e.to_string()))?;
    if value.pointer("/normalizer").is_some_and(has_precompiled) {
        return Err(TokenizerError::InvalidFile("a Precompiled (SentencePiece) normalizer is not supported".into()));
    }
    serde_json::from_value(value).map_err(|e| TokenizerError::InvalidFile(e.to_string()))
}

/// A special token as `tokenizer_config.json` writes it: a string, or an AddedToken object.
fn token_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// `chat_template` as a string, or the `default` of a list of named templates.
fn template_string(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named.iter().find(|t| t["name"] == "default").and_then(|t| t["template"].as_str()).map(str::to_owned),
        _ => None,
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
        assert_eq!(tok.special_ids(), SpecialIds { pad: 0, eos: 1 });
        assert_eq!(tok.encode(&SPECIAL_TOKENS.concat()).unwrap(), [0, 1, 2, 3]);
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
        let prompt = "what is two plus three?";
        let mut ids = tok.encode_prompt(prompt).unwrap();
        ids.extend(tok.encode_response(prompt, "five!").unwrap());
        let rendered = tok.render_chat(prompt, "five!").unwrap();
        assert_eq!(rendered, "<|user|> what is two plus three?<|assistant|> five!<|eos|>");
        assert_eq!(tok.encode(&rendered).unwrap(), ids);
        assert_eq!(tok.decode(&ids).unwrap(), rendered);
        assert_eq!(ids[0], tok.encode(USER).unwrap()[0]);
        assert_eq!(*ids.last().unwrap(), tok.special_ids().eos);
    }

    #[test]
    fn decode_response_stops_at_eos_and_drops_the_template_space() {
        let tok = trained();
        let mut ids = tok.encode_response("what did it do?", "the dog ate").unwrap();
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

    /// A folder as transformers writes it for a tokenizer that is not ours: `</s>` ends answers,
    /// no pad token, a template of its own.
    fn foreign(config: Value) -> Result<Tokenizer> {
        let json = trained().to_json().unwrap().replace(EOS, "</s>").replace(PAD, "<unk>");
        Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: json.as_bytes(),
            tokenizer_config_json: Some(config.to_string().as_bytes()),
            ..TokenizerFiles::default()
        })
    }

    #[test]
    fn a_tokenizer_without_a_pad_token_pads_with_eos_and_uses_its_config_template() {
        let template = "{% for m in messages %}{% if m['role'] == 'user' %}Q: {{ m['content'] }}\n{% else %}A: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}A:{% endif %}";
        let tok = foreign(json!({"eos_token": {"content": "</s>", "special": true}, "chat_template": template})).unwrap();
        let eos = tok.encode("</s>").unwrap()[0];
        assert_eq!(tok.special_ids(), SpecialIds { pad: eos, eos });
        assert_eq!(tok.render_chat("the cat?", "sat.").unwrap(), "Q: the cat?\nA: sat.</s>\n");
        // The newline after EOS is the template's, not the answer's.
        let answer = tok.encode_response("the cat?", "sat.").unwrap();
        assert_eq!(tok.decode(&answer).unwrap(), " sat.</s>");
        assert_eq!(tok.decode_response(&answer).unwrap(), "sat.");
        // What we write back reads as the same tokenizer.
        let config = tok.config_json();
        let again = Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: tok.to_json().unwrap().as_bytes(),
            tokenizer_config_json: Some(config.as_bytes()),
            ..TokenizerFiles::default()
        })
        .unwrap();
        assert_eq!(again.special_ids(), tok.special_ids());
        assert_eq!(again.encode_prompt("the cat?").unwrap(), tok.encode_prompt("the cat?").unwrap());
    }

    #[test]
    fn generation_config_ids_stand_in_for_tokens_tokenizer_config_does_not_name() {
        let json = trained().to_json().unwrap().replace(EOS, "</s>").replace(PAD, "<unk>");
        let reference = foreign(json!({"eos_token": "</s>", "pad_token": "<unk>"})).unwrap().special_ids();
        // As Qwen2.5 and Llama 3 write it: a list of EOS ids, the first is the one answers end with.
        let generation = json!({"eos_token_id": [reference.eos, reference.pad], "pad_token_id": reference.pad}).to_string();
        let tok = Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: json.as_bytes(),
            tokenizer_config_json: Some(b"{}"),
            generation_config_json: Some(generation.as_bytes()),
            ..TokenizerFiles::default()
        })
        .unwrap();
        assert_eq!(tok.special_ids(), reference);
        // tokenizer_config.json's own tokens win.
        let tok = Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: json.as_bytes(),
            tokenizer_config_json: Some(br#"{"eos_token": "</s>"}"#),
            generation_config_json: Some(br#"{"eos_token_id": 0, "pad_token_id": 0}"#),
            ..TokenizerFiles::default()
        })
        .unwrap();
        assert_eq!(tok.special_ids().eos, reference.eos);
        let err = Tokenizer::from_files(TokenizerFiles {
            tokenizer_json: json.as_bytes(),
            generation_config_json: Some(b"{"),
            ..TokenizerFiles::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("generation_config.json is not valid JSON"), "{err}");
    }

    #[test]
    fn a_folder_without_a_template_continues_prompts_as_written_and_says_so() {
        let tok = foreign(json!({"eos_token": "</s>"})).unwrap();
        assert_eq!(tok.chat_template().source(), PLAIN_TEMPLATE);
        assert_eq!(tok.render_chat("the cat", " sat.").unwrap(), "the cat sat.</s>");
        assert_eq!(tok.encode_prompt("the cat").unwrap(), tok.encode("the cat").unwrap(), "no BOS: its tokenizer adds none");
        assert_eq!(tok.template_note(), Some(PLAIN_TEMPLATE_NOTE));
        // SFT gives it turns; a model that has a template keeps it.
        let taught = tok.for_instructions().unwrap();
        assert_eq!((taught.chat_template().source(), taught.template_note()), (TURNS_TEMPLATE, None));
        assert_eq!(taught.render_chat("the cat?", "sat.").unwrap(), "User: the cat?\nAssistant: sat.</s>\n");
        assert_eq!(taught.for_instructions().unwrap().chat_template().source(), TURNS_TEMPLATE);
        assert_eq!(
            foreign(json!({"eos_token": "</s>", "chat_template": "{% for m in messages %}{{ m['content'] }}|{% endfor %}"}))
                .unwrap()
                .template_note(),
            None
        );
    }

    #[test]
    fn an_eos_token_outside_the_vocabulary_is_refused_naming_the_field() {
        let err = foreign(json!({"eos_token": "<|endoftext|>"})).unwrap_err();
        assert!(matches!(err, TokenizerError::Config(_)), "{err}");
        assert!(err.to_string().contains("`eos_token` \"<|endoftext|>\" is not in tokenizer.json's vocabulary"), "{err}");
        let err = foreign(json!({"eos_token": "</s>", "pad_token": "<pad>"})).unwrap_err();
        assert!(err.to_string().contains("`pad_token`"), "{err}");
    }

    #[test]
    fn a_config_without_eos_for_a_foreign_tokenizer_is_refused() {
        let err = foreign(json!({"bos_token": "</s>"})).unwrap_err();
        assert!(err.to_string().contains("no `eos_token`"), "{err}");
    }

    #[test]
    fn our_tokenizer_writes_a_config_that_reads_back_as_ours() {
        let tok = trained();
        let config: Value = serde_json::from_str(&tok.config_json()).unwrap();
        assert_eq!(config["chat_template"], TINYRLHF_TEMPLATE);
        assert_eq!((config["eos_token"].as_str(), config["pad_token"].as_str()), (Some(EOS), Some(PAD)));
    }

    #[test]
    fn a_vocabulary_without_room_for_merges_is_refused() {
        let err = Tokenizer::train(CORPUS.iter(), 100).unwrap_err();
        assert!(matches!(err, TokenizerError::VocabTooSmall(100)));
    }

    #[test]
    fn a_vocabulary_larger_than_any_model_uses_is_refused_before_the_trainer_allocates() {
        let err = Tokenizer::train(CORPUS.iter(), 1_000_000_000).unwrap_err();
        assert!(matches!(err, TokenizerError::VocabTooLarge(1_000_000_000)), "{err}");
        assert!(err.to_string().contains("at most 1048576"), "{err}");
    }
}
