//! The JSONL files of the pipeline, one JSON object per line:
//!
//! | record | fields |
//! |---|---|
//! | prompt | `{"prompt"}` |
//! | demonstration | `{"prompt", "response"}` |
//! | samples | `{"prompt", "completions": [..]}` |
//! | ranking | `{"prompt", "completions": [..], "ranking": [best .. worst indices]}` |
//! | pair (TRL) | `{"prompt", "chosen", "rejected"}` |
//!
//! Reading is all or nothing: the first bad line is an error naming the file, the line and the
//! field, and no record is returned. Blank lines are skipped. Extra fields are ignored, so files
//! written by other tools (TRL's own columns, a `family` tag) read fine.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptRecord {
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Demonstration {
    pub prompt: String,
    pub response: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Samples {
    pub prompt: String,
    pub completions: Vec<String>,
    /// Per completion: it ended with EOS (false: it was cut at the token limit). Empty: not known,
    /// every completion taken as ended (files written before this field, TRL's data).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranking {
    pub prompt: String,
    pub completions: Vec<String>,
    /// Indices into `completions`, best first; a permutation of 0..K, K >= 2.
    pub ranking: Vec<usize>,
    /// As in [`Samples::finished`]: a cut answer is learnt from as the sampler left it, without an
    /// EOS it never wrote, which is how PPO, GRPO and RLOO score a cut rollout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finished: Vec<bool>,
}

/// A TRL-style preference pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// A line that is not the record it should be (`line` 0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct FormatError {
    pub file: String,
    pub line: usize,
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// The completions with exact repeats removed, first occurrence kept, each with its `finished`
/// flag (none when `finished` is empty): what a person is asked to rank (there is nothing to choose
/// between two copies of one answer).
pub fn distinct(completions: &[String], finished: &[bool]) -> (Vec<String>, Vec<bool>) {
    let mut seen = std::collections::HashSet::new();
    let kept: Vec<usize> = (0..completions.len()).filter(|&i| seen.insert(completions[i].as_str())).collect();
    keep(&kept, completions, finished)
}

/// Completions `kept` (indices), each with its `finished` flag (none when `finished` is empty).
pub(crate) fn keep(kept: &[usize], completions: &[String], finished: &[bool]) -> (Vec<String>, Vec<bool>) {
    let flags = if finished.len() == completions.len() { kept.iter().map(|&i| finished[i]).collect() } else { vec![] };
    (kept.iter().map(|&i| completions[i].clone()).collect(), flags)
}

/// A record type that can be read from one JSON object, checking each field.
pub trait Record: Sized + Serialize {
    fn from_object(object: &Map<String, Value>) -> Result<Self, (Option<String>, String)>;
}

fn string(object: &Map<String, Value>, field: &str) -> Result<String, (Option<String>, String)> {
    match object.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err((Some(field.into()), format!("expected a string, found {}", kind(other)))),
        None => Err((Some(field.into()), "missing".into())),
    }
}

fn strings(object: &Map<String, Value>, field: &str) -> Result<Vec<String>, (Option<String>, String)> {
    let Some(value) = object.get(field) else { return Err((Some(field.into()), "missing".into())) };
    let Value::Array(items) = value else {
        return Err((Some(field.into()), format!("expected a list of strings, found {}", kind(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::String(s) => Ok(s.clone()),
            other => Err((Some(format!("{field}[{i}]")), format!("expected a string, found {}", kind(other)))),
        })
        .collect()
}

/// An optional list of booleans (absent or null: empty).
fn bools(object: &Map<String, Value>, field: &str) -> Result<Vec<bool>, (Option<String>, String)> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| v.as_bool().ok_or_else(|| (Some(format!("{field}[{i}]")), format!("expected true or false, found {}", kind(v)))))
            .collect(),
        Some(other) => Err((Some(field.into()), format!("expected a list of true/false, found {}", kind(other)))),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

impl Record for PromptRecord {
    fn from_object(o: &Map<String, Value>) -> Result<Self, (Option<String>, String)> {
        Ok(Self { prompt: string(o, "prompt")? })
    }
}

impl Record for Demonstration {
    fn from_object(o: &Map<String, Value>) -> Result<Self, (Option<String>, String)> {
        Ok(Self { prompt: string(o, "prompt")?, response: string(o, "response")? })
    }
}

impl Record for Samples {
    fn from_object(o: &Map<String, Value>) -> Result<Self, (Option<String>, String)> {
        let samples = Self { prompt: string(o, "prompt")?, completions: strings(o, "completions")?, finished: bools(o, "finished")? };
        if !samples.finished.is_empty() && samples.finished.len() != samples.completions.len() {
            let message = format!("{} flags for {} completions", samples.finished.len(), samples.completions.len());
            return Err((Some("finished".into()), message));
        }
        Ok(samples)
    }
}

impl Record for Pair {
    fn from_object(o: &Map<String, Value>) -> Result<Self, (Option<String>, String)> {
        let pair = Self { prompt: string(o, "prompt")?, chosen: string(o, "chosen")?, rejected: string(o, "rejected")? };
        Ranking::from(pair.clone()).validate().map_err(|(_, message)| (Some("rejected".to_owned()), message))?;
        Ok(pair)
    }
}

impl Record for Ranking {
    fn from_object(o: &Map<String, Value>) -> Result<Self, (Option<String>, String)> {
        let prompt = string(o, "prompt")?;
        let completions = strings(o, "completions")?;
        let field = || Some("ranking".to_owned());
        let Some(Value::Array(items)) = o.get("ranking") else {
            return Err((field(), "missing, or not a list of indices".into()));
        };
        // Bounded against K before any conversion, so a huge index cannot wrap to a valid one on
        // a 32-bit target (wasm32).
        let k = completions.len() as u64;
        let ranking: Vec<usize> = items
            .iter()
            .map(|v| match v.as_u64() {
                Some(i) if i < k => Ok(i as usize),
                Some(i) => Err((field(), format!("index {i} is out of range for {k} completions"))),
                None => Err((field(), format!("{v} is not an index"))),
            })
            .collect::<Result<_, _>>()?;
        let ranking = Ranking { prompt, completions, ranking, finished: bools(o, "finished")? };
        ranking.validate()?;
        Ok(ranking)
    }
}

impl Ranking {
    /// The most answers one ranking may order (InstructGPT's K was 4 to 9).
    pub const MAX_COMPLETIONS: usize = 9;

    /// What makes a ranking usable, decided once for the CLI and the page: 2 to
    /// [`Self::MAX_COMPLETIONS`] different completions, and `ranking` a permutation of their
    /// indices. Errors name the field (`completions` or `ranking`).
    pub fn validate(&self) -> Result<(), (Option<String>, String)> {
        let (completions, ranking) = (|| Some("completions".to_owned()), || Some("ranking".to_owned()));
        let k = self.completions.len();
        if k < 2 {
            return Err((completions(), format!("a ranking needs at least 2 completions, found {k}")));
        }
        if k > Self::MAX_COMPLETIONS {
            return Err((completions(), format!("{k} completions; a ranking orders at most {}", Self::MAX_COMPLETIONS)));
        }
        for (i, a) in self.completions.iter().enumerate() {
            if let Some(j) = self.completions[i + 1..].iter().position(|b| b == a) {
                // Ordering two copies of one answer would teach the reward model a coin flip.
                return Err((
                    completions(),
                    format!("completions {i} and {} are the same text; a ranking orders different answers", i + 1 + j),
                ));
            }
        }
        if !self.finished.is_empty() && self.finished.len() != k {
            return Err((Some("finished".into()), format!("{} flags for {k} completions", self.finished.len())));
        }
        if self.ranking.len() != k {
            return Err((ranking(), format!("ranks {} completions but there are {k}", self.ranking.len())));
        }
        let mut seen = vec![false; k];
        for &i in &self.ranking {
            if i >= k {
                return Err((ranking(), format!("index {i} is out of range for {k} completions")));
            }
            if std::mem::replace(&mut seen[i], true) {
                return Err((ranking(), format!("index {i} appears twice; a ranking is a permutation of 0..{k}")));
            }
        }
        Ok(())
    }

    /// Whether completion `i` ended with EOS (true when not known).
    pub fn ended(&self, i: usize) -> bool {
        self.finished.get(i).copied().unwrap_or(true)
    }

    /// [`Self::validate`] as one line of text, for records that come from no file.
    pub fn check(&self) -> Result<(), String> {
        self.validate().map_err(|(field, message)| match field {
            Some(f) => format!("field `{f}`: {message}"),
            None => message,
        })
    }

    /// All C(K, 2) preference pairs the ranking implies, better one chosen.
    pub fn pairs(&self) -> Vec<Pair> {
        let mut pairs = Vec::new();
        for (i, &better) in self.ranking.iter().enumerate() {
            for &worse in &self.ranking[i + 1..] {
                pairs.push(Pair {
                    prompt: self.prompt.clone(),
                    chosen: self.completions[better].clone(),
                    rejected: self.completions[worse].clone(),
                });
            }
        }
        pairs
    }
}

impl From<Pair> for Ranking {
    /// A pair is a ranking of two.
    fn from(pair: Pair) -> Self {
        Ranking { prompt: pair.prompt, completions: vec![pair.chosen, pair.rejected], ranking: vec![0, 1], finished: vec![] }
    }
}

/// The largest file the readers accept: far above any real rankings file, small enough that a
/// mistaken pick (a video, a disk image) is refused before it is held in memory twice.
pub const MAX_FILE_BYTES: usize = 64 << 20;

/// The longest line read (a record, a prompt, a typed order): a prompt or an answer far longer
/// than any model's context, small enough that tokenizing it cannot exhaust the memory (a 60 MB
/// one-line prompt took 6.9 GB to tokenize).
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// Refuses a line of `file` longer than [`MAX_LINE_BYTES`] (`number` counts from 1).
fn check_line_length(file: &str, number: usize, line: &str) -> Result<(), FormatError> {
    if line.len() <= MAX_LINE_BYTES {
        return Ok(());
    }
    Err(FormatError {
        file: file.to_owned(),
        line: number,
        field: None,
        message: format!(
            "{} KiB long; lines of at most {} KiB are read (one record, prompt or answer a line)",
            line.len() >> 10,
            MAX_LINE_BYTES >> 10
        ),
    })
}

/// A file's bytes as text, strictly: a file over [`MAX_FILE_BYTES`] or with invalid UTF-8 is an
/// error naming the file and the line, never silently replaced characters.
pub fn decode_text<'a>(file: &str, bytes: &'a [u8]) -> Result<&'a str, FormatError> {
    let error = |line, message| FormatError { file: file.to_owned(), line, field: None, message };
    if bytes.len() > MAX_FILE_BYTES {
        return Err(error(0, format!("{} MiB; files of at most {} MiB are read", bytes.len() >> 20, MAX_FILE_BYTES >> 20)));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = 1 + bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count();
        error(line, format!("not valid UTF-8 (byte {} of the file)", e.valid_up_to() + 1))
    })?;
    // Windows editors start UTF-8 files with a byte-order mark: it is not part of the first line.
    Ok(text.strip_prefix('\u{feff}').unwrap_or(text))
}

/// A JSON parse error in words a person reads (serde's "expected ident" is the parser's, not theirs).
fn json_problem(e: &serde_json::Error) -> String {
    match e.classify() {
        serde_json::error::Category::Eof => format!("not valid JSON: the line ends at column {} before its object does", e.column()),
        _ => format!("not valid JSON from column {}: each line must be one JSON object", e.column()),
    }
}

/// Parses JSONL `text` (read from `file`, named in errors) into records; all or nothing.
pub fn read_jsonl<T: Record>(file: &str, text: &str) -> Result<Vec<T>, FormatError> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        check_line_length(file, i + 1, line)?;
        let error = |field: Option<String>, message: String| FormatError { file: file.to_owned(), line: i + 1, field, message };
        let value: Value = serde_json::from_str(line).map_err(|e| error(None, json_problem(&e)))?;
        let Value::Object(object) = value else {
            return Err(error(None, format!("expected a JSON object, found {}", kind(&value))));
        };
        records.push(T::from_object(&object).map_err(|(field, message)| error(field, message))?);
    }
    Ok(records)
}

/// Rankings from a file of rankings or of TRL pairs (each pair a ranking of two), told apart by
/// the first record's fields. The bytes are decoded with [`decode_text`].
pub fn read_preferences(file: &str, bytes: &[u8]) -> Result<Vec<Ranking>, FormatError> {
    let text = decode_text(file, bytes)?;
    let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    if first.contains("\"chosen\"") && !first.contains("\"ranking\"") {
        Ok(read_jsonl::<Pair>(file, text)?.into_iter().map(Ranking::from).collect())
    } else {
        read_jsonl(file, text)
    }
}

/// Prompts from a JSONL file of `{"prompt"}` records or a plain text file of one prompt per line,
/// told apart by the first non-blank line (a JSON object or not). Blank lines are skipped; a file
/// with no prompt is an error.
pub fn read_prompts(file: &str, bytes: &[u8]) -> Result<Vec<String>, FormatError> {
    let text = decode_text(file, bytes)?;
    let first = text.lines().find(|l| !l.trim().is_empty());
    let prompts: Vec<String> = match first {
        Some(line) if line.trim_start().starts_with('{') => read_jsonl::<PromptRecord>(file, text)?.into_iter().map(|p| p.prompt).collect(),
        _ => {
            // Text, one prompt a line: a control character means the file is something else (a
            // binary file that happens to be valid UTF-8), not prompts.
            if let Some((i, c)) =
                text.lines().enumerate().find_map(|(i, l)| l.chars().find(|c| c.is_control() && *c != '\t').map(|c| (i, c)))
            {
                let message =
                    format!("holds the control character U+{:04X}: prompts are text, one a line (is this the right file?)", c as u32);
                return Err(FormatError { file: file.to_owned(), line: i + 1, field: None, message });
            }
            for (i, line) in text.lines().enumerate() {
                check_line_length(file, i + 1, line)?;
            }
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
        }
    };
    if prompts.is_empty() {
        return Err(FormatError { file: file.to_owned(), line: 0, field: None, message: "holds no prompt".into() });
    }
    Ok(prompts)
}

/// Demonstrations (`{"prompt", "response"}` JSONL) from a file's bytes, decoded strictly.
pub fn read_demonstrations(file: &str, bytes: &[u8]) -> Result<Vec<Demonstration>, FormatError> {
    let demos = read_jsonl::<Demonstration>(file, decode_text(file, bytes)?)?;
    if demos.is_empty() {
        return Err(FormatError { file: file.to_owned(), line: 0, field: None, message: "holds no demonstration".into() });
    }
    Ok(demos)
}

/// One JSON object per line, each line ending in a newline.
pub fn write_jsonl<T: Serialize>(records: &[T]) -> String {
    records.iter().map(|r| serde_json::to_string(r).expect("records serialise") + "\n").collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_order_mark_is_skipped_so_jsonl_prompts_stay_jsonl() {
        let bytes = "\u{feff}{\"prompt\": \"hi there\"}\n".as_bytes();
        assert_eq!(read_prompts("p.jsonl", bytes).unwrap(), vec!["hi there".to_owned()]);
        assert_eq!(decode_text("t.txt", "\u{feff}a".as_bytes()).unwrap(), "a");
    }

    fn ranking(completions: &[&str], order: &[usize]) -> Ranking {
        Ranking {
            prompt: "p".into(),
            completions: completions.iter().map(|s| s.to_string()).collect(),
            ranking: order.to_vec(),
            finished: vec![],
        }
    }

    #[test]
    fn records_round_trip_through_jsonl() {
        let rankings = vec![ranking(&["a", "b", "c"], &[2, 0, 1])];
        assert_eq!(read_jsonl::<Ranking>("r.jsonl", &write_jsonl(&rankings)).unwrap(), rankings);
        let demos = vec![Demonstration { prompt: "hi \"there\"\n".into(), response: "é 🦊".into() }];
        assert_eq!(read_jsonl::<Demonstration>("d.jsonl", &write_jsonl(&demos)).unwrap(), demos);
    }

    #[test]
    fn which_answers_were_cut_travels_with_samples_and_rankings_and_repeats_take_their_flag_along() {
        let mut cut = ranking(&["a", "b"], &[1, 0]);
        cut.finished = vec![true, false];
        let text = write_jsonl(&[cut.clone()]);
        assert!(text.contains("\"finished\":[true,false]"), "{text}");
        assert_eq!(read_jsonl::<Ranking>("r.jsonl", &text).unwrap(), vec![cut.clone()]);
        assert!((cut.ended(0), cut.ended(1), ranking(&["a", "b"], &[0, 1]).ended(1)) == (true, false, true));
        // Absent (older files): not written, read as unknown.
        assert!(!write_jsonl(&[ranking(&["a", "b"], &[0, 1])]).contains("finished"));
        let err =
            read_jsonl::<Ranking>("r.jsonl", "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"ranking\":[0,1],\"finished\":[true]}")
                .unwrap_err();
        assert_eq!((err.field.as_deref(), err.message.as_str()), (Some("finished"), "1 flags for 2 completions"));
        let err = read_jsonl::<Samples>("s.jsonl", "{\"prompt\":\"p\",\"completions\":[\"a\"],\"finished\":[1]}").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("finished[0]"));
        let texts: Vec<String> = ["x", "y", "x"].iter().map(|s| s.to_string()).collect();
        assert_eq!(distinct(&texts, &[false, true, true]), (vec!["x".to_owned(), "y".to_owned()], vec![false, true]));
        assert_eq!(distinct(&texts, &[]).1, Vec::<bool>::new());
    }

    #[test]
    fn a_ranking_of_k_gives_all_k_choose_2_pairs_better_first() {
        let pairs = ranking(&["a", "b", "c", "d"], &[2, 0, 3, 1]).pairs();
        assert_eq!(pairs.len(), 6);
        assert_eq!((pairs[0].chosen.as_str(), pairs[0].rejected.as_str()), ("c", "a"));
        assert_eq!((pairs[5].chosen.as_str(), pairs[5].rejected.as_str()), ("d", "b"));
    }

    #[test]
    fn bad_json_names_file_and_line() {
        let err = read_jsonl::<Demonstration>("demos.jsonl", "{\"prompt\":\"a\",\"response\":\"b\"}\n\n{oops\n").unwrap_err();
        assert_eq!((err.file.as_str(), err.line, err.field.clone()), ("demos.jsonl", 3, None));
        assert!(err.to_string().starts_with("demos.jsonl:3: not valid JSON"), "{err}");
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named() {
        let err = read_jsonl::<Demonstration>("d.jsonl", "{\"prompt\":\"a\"}").unwrap_err();
        assert_eq!(err.to_string(), "d.jsonl:1: field `response`: missing");
        let err = read_jsonl::<Samples>("s.jsonl", "{\"prompt\":\"a\",\"completions\":[\"x\",3]}").unwrap_err();
        assert_eq!(err.field.as_deref(), Some("completions[1]"));
    }

    #[test]
    fn a_ranking_that_is_not_a_permutation_is_refused() {
        for (order, needle) in [("[0,0]", "appears twice"), ("[0,2]", "out of range"), ("[0]", "ranks 1"), ("[0,-1]", "not an index")] {
            let line = format!("{{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"ranking\":{order}}}");
            let err = read_jsonl::<Ranking>("r.jsonl", &line).unwrap_err();
            assert_eq!(err.field.as_deref(), Some("ranking"));
            assert!(err.message.contains(needle), "{order}: {err}");
        }
        let line = "{\"prompt\":\"p\",\"completions\":[\"a\"],\"ranking\":[0]}";
        assert!(read_jsonl::<Ranking>("r.jsonl", line).unwrap_err().message.contains("at least 2"));
    }

    #[test]
    fn identical_completions_and_too_many_are_refused_naming_completions() {
        let line = "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\",\"a\"],\"ranking\":[0,1,2]}";
        let err = read_jsonl::<Ranking>("r.jsonl", line).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("completions"));
        assert!(err.message.contains("completions 0 and 2 are the same text"), "{err}");
        let ten = ranking(&["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"], &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let err = read_jsonl::<Ranking>("r.jsonl", &write_jsonl(&[ten])).unwrap_err();
        assert!(err.message.contains("at most 9"), "{err}");
        let pair = "{\"prompt\":\"p\",\"chosen\":\"x\",\"rejected\":\"x\"}";
        assert!(read_preferences("pairs.jsonl", pair.as_bytes()).unwrap_err().message.contains("same text"));
    }

    #[test]
    fn an_index_past_32_bits_does_not_wrap_to_a_valid_one() {
        // 2^32 + 1 would be index 1 after a cast to a 32-bit usize (wasm32).
        let line = "{\"prompt\":\"p\",\"completions\":[\"a\",\"b\"],\"ranking\":[0,4294967297]}";
        let err = read_jsonl::<Ranking>("r.jsonl", line).unwrap_err();
        assert!(err.message.contains("4294967297 is out of range"), "{err}");
    }

    #[test]
    fn invalid_utf8_is_refused_naming_the_line_and_a_huge_file_is_refused_whole() {
        let mut bytes = b"{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n{\"prompt\":\"".to_vec();
        bytes.extend([0xff, 0xfe]);
        bytes.extend(b"\",\"chosen\":\"a\",\"rejected\":\"b\"}\n");
        let err = read_preferences("pairs.jsonl", &bytes).unwrap_err();
        assert_eq!(err.line, 2);
        assert!(err.to_string().starts_with("pairs.jsonl:2: not valid UTF-8"), "{err}");
        let err = decode_text("big.jsonl", &vec![b' '; MAX_FILE_BYTES + 1]).unwrap_err();
        assert!(err.to_string().starts_with("big.jsonl: 64 MiB; files of at most 64 MiB"), "{err}");
    }

    #[test]
    fn prompts_read_from_jsonl_or_one_per_line() {
        let jsonl = "{\"prompt\":\"first\"}\n\n{\"prompt\":\"second\",\"family\":\"x\"}\n";
        assert_eq!(read_prompts("p.jsonl", jsonl.as_bytes()).unwrap(), ["first", "second"]);
        assert_eq!(read_prompts("p.txt", b"  what is 2+2?\n\nname a colour \n").unwrap(), ["what is 2+2?", "name a colour"]);
        let err = read_prompts("p.jsonl", b"{\"prompt\":\"a\"}\n{\"text\":\"b\"}\n").unwrap_err();
        assert_eq!(err.to_string(), "p.jsonl:2: field `prompt`: missing");
        assert_eq!(read_prompts("empty.txt", b"\n  \n").unwrap_err().to_string(), "empty.txt: holds no prompt");
    }

    #[test]
    fn a_file_that_is_not_prompts_is_refused_in_words_with_its_line() {
        let junk = read_prompts("model.safetensors", b"\x08\0\0\0\0\0\0\0{}\nmore").unwrap_err();
        assert_eq!(junk.line, 1);
        assert!(junk.to_string().contains("control character U+0008: prompts are text"), "{junk}");
        let json = read_prompts("p.jsonl", b"{\"prompt\":\"a\"}\n{prompt: b}\n").unwrap_err();
        assert_eq!(json.to_string(), "p.jsonl:2: not valid JSON from column 2: each line must be one JSON object");
        let cut = read_prompts("p.jsonl", b"{\"prompt\":\"a\"").unwrap_err();
        assert_eq!(cut.to_string(), "p.jsonl:1: not valid JSON: the line ends at column 13 before its object does");
    }

    #[test]
    fn demonstrations_name_the_line_and_field_and_an_empty_file_is_refused() {
        let err =
            read_demonstrations("d.jsonl", b"{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"c\",\"response\":7}\n").unwrap_err();
        assert_eq!(err.to_string(), "d.jsonl:2: field `response`: expected a string, found a number");
        assert!(read_demonstrations("d.jsonl", b"").is_err());
    }

    #[test]
    fn trl_pairs_read_as_rankings_of_two() {
        let text = "{\"prompt\":\"p\",\"chosen\":\"good\",\"rejected\":\"bad\",\"extra\":1}\n";
        let rankings = read_preferences("pairs.jsonl", text.as_bytes()).unwrap();
        assert_eq!(
            rankings,
            vec![ranking(&["good", "bad"], &[0, 1])]
                .into_iter()
                .map(|mut r| {
                    r.prompt = "p".into();
                    r
                })
                .collect::<Vec<_>>()
        );
    }
}
