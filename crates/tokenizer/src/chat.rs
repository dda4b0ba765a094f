//! Chat templates the Hugging Face way: the Jinja `chat_template` of `tokenizer_config.json` (or of
//! transformers 5's `chat_template.jinja`), rendered with minijinja as `apply_chat_template` renders
//! it with jinja2: `trim_blocks` and `lstrip_blocks` on, `messages`, `add_generation_prompt`, the
//! special tokens by name and `raise_exception`, and Python's string methods (`.strip()`, ...).
//!
//! A conversation here is one user turn and, for training, one assistant answer. A template is only
//! usable if the conversation with the answer begins with the generation prompt (the text the model
//! continues): that is what lets an answer's tokens be cut off the rendered conversation.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind, context};
use serde::Serialize;

/// Our own models' template: `<|user|> {prompt}<|assistant|> {answer}<|eos|>`.
pub const TINYRLHF_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'user' %}<|user|> {{ message['content'] }}{% elif message['role'] == 'assistant' %}<|assistant|> {{ message['content'] }}{{ eos_token }}{% endif %}{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";

/// The template of a model that has none (a base model): the prompt as written and the answer
/// right after it, closed by EOS. `{prompt}{answer}<eos>`; the tokenizer adds BOS around the
/// prompt as its own `tokenizer.json` says (`Tokenizer::encode_prompt`).
pub const PLAIN_TEMPLATE: &str = "{% for message in messages %}{% if message['role'] == 'assistant' %}{{ message['content'] }}{{ eos_token }}{% else %}{{ message['content'] }}{% endif %}{% endfor %}";

/// The template SFT gives a model that has none: plain-text turns any vocabulary can write, after
/// the BOS (`{bos}User: {prompt}\nAssistant: {answer}<eos>\n`).
pub const TURNS_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}User: {{ message['content'] }}\n{% elif message['role'] == 'assistant' %}Assistant: {{ message['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}";

/// Said once to a person whose model has no chat template.
pub const PLAIN_TEMPLATE_NOTE: &str = "this model has no chat template (a base model): it continues each prompt as written, \
     after the BOS its tokenizer adds; SFT on demonstrations gives it a chat template (User:/Assistant: turns) and teaches it to answer and stop";

/// The work one rendering may do, in minijinja's fuel (about one unit per instruction and per byte
/// a value allocates): a real template uses thousands; a loop of loops or a string doubled until it
/// fills memory runs out long before it hangs the CLI or kills the tab.
pub const TEMPLATE_FUEL: u64 = 64_000_000;

/// What a template may write beyond the messages it is given: a real one adds a few hundred bytes
/// (a system turn, role markers).
pub const TEMPLATE_OVERHEAD_BYTES: usize = 64 << 10;

#[derive(Debug, Serialize)]
struct Message<'a> {
    role: &'a str,
    content: &'a str,
}

/// A template that cannot serve: it does not compile, does not render, or gives no assistant turn.
#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(pub String);

/// A compiled chat template and the special-token strings it may name.
#[derive(Clone, Debug)]
pub struct ChatTemplate {
    source: String,
    env: Environment<'static>,
    eos_token: String,
    bos_token: Option<String>,
    answer_lead: String,
}

impl ChatTemplate {
    /// Compiles `source` and checks, on a probe conversation, that the answer follows the
    /// generation prompt.
    pub fn new(source: &str, eos_token: &str, bos_token: Option<&str>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        let syntax = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().map_err(|e| TemplateError(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |message: String| -> Result<(), Error> {
            Err(Error::new(ErrorKind::InvalidOperation, message))
        });
        env.add_template_owned("chat", source.to_owned()).map_err(|e| TemplateError(describe(&e)))?;
        let mut template = Self {
            source: source.to_owned(),
            env,
            eos_token: eos_token.to_owned(),
            bos_token: bos_token.map(str::to_owned),
            answer_lead: String::new(),
        };
        let answer = "Probe answer 7.";
        let rest = template.answer_text("Probe question?", answer)?;
        if !rest.contains(answer) {
            return Err(TemplateError(format!(
                "it writes no assistant turn (a conversation with the answer {answer:?} renders without it)"
            )));
        }
        template.answer_lead = rest[..rest.find(answer).unwrap_or(0)].to_owned();
        Ok(template)
    }

    /// What the template writes between the generation prompt and the answer itself (our
    /// template's space; nothing for ChatML): a reader of the answer should not see it.
    pub fn answer_lead(&self) -> &str {
        &self.answer_lead
    }

    /// The Jinja source, as `tokenizer_config.json` carries it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The text the model continues: the user turn and the generation prompt.
    pub fn prompt_text(&self, prompt: &str) -> Result<String, TemplateError> {
        self.render(&[Message { role: "user", content: prompt }], true)
    }

    /// The whole conversation: the user turn and the assistant's answer.
    pub fn conversation_text(&self, prompt: &str, answer: &str) -> Result<String, TemplateError> {
        self.render(&[Message { role: "user", content: prompt }, Message { role: "assistant", content: answer }], false)
    }

    /// What the template writes after the generation prompt when the answer is given (the answer
    /// with whatever closes the turn).
    pub fn answer_text(&self, prompt: &str, answer: &str) -> Result<String, TemplateError> {
        let head = self.prompt_text(prompt)?;
        let whole = self.conversation_text(prompt, answer)?;
        whole.strip_prefix(&head).map(str::to_owned).ok_or_else(|| {
            TemplateError(format!(
                "the conversation with an answer ({whole:?}) does not begin with the generation prompt ({head:?}), so an answer cannot be cut from it"
            ))
        })
    }

    fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String, TemplateError> {
        let template = self.env.get_template("chat").map_err(|e| TemplateError(describe(&e)))?;
        let text = template
            .render(context! {
                messages => Serde(messages),
                add_generation_prompt => add_generation_prompt,
                eos_token => &self.eos_token,
                bos_token => self.bos_token.as_deref().unwrap_or(""),
            })
            .map_err(|e| match e.kind() {
                ErrorKind::OutOfFuel => TemplateError(format!(
                    "it does more work than a chat template needs (past its budget of {TEMPLATE_FUEL} units of minijinja's fuel): it loops or builds too much"
                )),
                _ => TemplateError(describe(&e)),
            })?;
        let given: usize = messages.iter().map(|m| m.content.len()).sum();
        if text.len() > given + TEMPLATE_OVERHEAD_BYTES {
            return Err(TemplateError(format!(
                "it writes {} bytes for messages of {given}: more than the {TEMPLATE_OVERHEAD_BYTES} bytes of its own a chat template adds",
                text.len()
            )));
        }
        Ok(text)
    }
}

/// minijinja's message with the template line it points at.
fn describe(error: &Error) -> String {
    match error.line() {
        Some(line) => format!("line {line}: {error}"),
        None => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_that_loops_or_builds_without_end_is_refused_at_load_naming_which() {
        let nested = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let message = ChatTemplate::new(nested, "<eos>", None).unwrap_err().to_string();
        assert!(message.contains("budget") && message.contains("fuel"), "{message}");
        // A string doubled 40 times would be 4 GiB: refused before it is allocated.
        let doubled = "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
        let message = ChatTemplate::new(doubled, "<eos>", None).unwrap_err().to_string();
        assert!(message.contains("fuel"), "{message}");
        // Within the budget but writing far more than the conversation: the length cap.
        let long = "{% for i in range(20000) %}0123456789{% endfor %}{% for m in messages %}{{ m['content'] }}{% endfor %}";
        let message = ChatTemplate::new(long, "<eos>", None).unwrap_err().to_string();
        assert!(message.contains("more than the 65536 bytes"), "{message}");
    }

    #[test]
    fn our_template_writes_the_layout_our_models_were_trained_on() {
        let t = ChatTemplate::new(TINYRLHF_TEMPLATE, "<|eos|>", None).unwrap();
        assert_eq!(t.prompt_text("hi there").unwrap(), "<|user|> hi there<|assistant|>");
        assert_eq!(t.conversation_text("hi there", "hello.").unwrap(), "<|user|> hi there<|assistant|> hello.<|eos|>");
        assert_eq!(t.answer_text("hi there", "hello.").unwrap(), " hello.<|eos|>");
        assert_eq!(t.answer_lead(), " ");
    }

    #[test]
    fn the_plain_template_continues_the_prompt_as_written() {
        let t = ChatTemplate::new(PLAIN_TEMPLATE, "</s>", None).unwrap();
        assert_eq!(t.prompt_text("2+2 =").unwrap(), "2+2 =");
        assert_eq!(t.conversation_text("2+2?", "4").unwrap(), "2+2?4</s>");
        assert_eq!(t.answer_text("2+2?", "4").unwrap(), "4</s>");
        assert_eq!(t.answer_lead(), "");
    }

    #[test]
    fn the_turns_template_opens_with_bos_and_ends_the_answer_with_eos() {
        let t = ChatTemplate::new(TURNS_TEMPLATE, "<eos>", Some("<bos>")).unwrap();
        assert_eq!(t.prompt_text("2+2?").unwrap(), "<bos>User: 2+2?\nAssistant:");
        assert_eq!(t.answer_text("2+2?", "4").unwrap(), " 4<eos>\n");
        assert_eq!(t.answer_lead(), " ");
    }

    #[test]
    fn python_string_methods_and_raise_exception_work_as_in_transformers() {
        let source = "{% if messages[0]['role'] != 'user' %}{{ raise_exception('user first') }}{% endif %}{% for m in messages %}[{{ m['role'].upper() }}] {{ m['content'].strip() }}\n{% endfor %}{% if add_generation_prompt %}[ASSISTANT]{% endif %}";
        let t = ChatTemplate::new(source, "<e>", None).unwrap();
        assert_eq!(t.conversation_text("  padded  ", "ok").unwrap(), "[USER] padded\n[ASSISTANT] ok\n");
    }

    #[test]
    fn a_template_that_does_not_compile_is_refused_with_its_line() {
        let err = ChatTemplate::new("{% for m in messages %}\n{{ m['content'] }", "<e>", None).unwrap_err();
        assert!(err.to_string().contains("line"), "{err}");
    }

    #[test]
    fn a_template_without_an_assistant_turn_is_refused() {
        let err =
            ChatTemplate::new("{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}", "<e>", None)
                .unwrap_err();
        assert!(err.to_string().contains("no assistant turn"), "{err}");
    }

    #[test]
    fn a_template_that_raises_is_refused_with_its_message() {
        let err = ChatTemplate::new("{{ raise_exception('roles must alternate') }}", "<e>", None).unwrap_err();
        assert!(err.to_string().contains("roles must alternate"), "{err}");
    }
}
