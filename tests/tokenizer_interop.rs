//! The `tokenizer.json` we write is Hugging Face's format in fact, not just in name: Python's
//! `tokenizers` package reads it and gives the same ids, and decodes them to the same text.
//!
//! Needs a Python with `tokenizers` (tests/python/requirements.txt): `$TINYRLHF_PYTHON`, else the
//! repository's `.venv`, which the README's test command creates. Missing Python is a failure, not a
//! skip, so CI cannot pass without running it.

use std::path::PathBuf;
use std::process::Command;

use tinyrlhf_tokenizer::Tokenizer;

fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("TINYRLHF_PYTHON") {
        return python.into();
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(
        venv.exists(),
        "no Python for the interop test: run the README's test command (it creates .venv), \
         or set TINYRLHF_PYTHON to a python with `pip install -r tests/python/requirements.txt`"
    );
    venv
}

const CORPUS: &str = "the little cat sat on the warm mat. the big dog ran to the park!
what is two plus three? two plus three is five. please tell me a story about a red fox.
the fox was happy. the sun was bright and the sky was blue. thank you so much!";

#[test]
fn python_tokenizers_reads_our_file_and_gives_identical_ids() {
    let lines: Vec<&str> = CORPUS.lines().collect();
    let tokenizer = Tokenizer::train(lines.iter().cycle().take(300), 400).unwrap();
    let strings = [
        "the cat ran to the park",
        "what is two plus three?",
        "",
        "  spaces   and\ttabs\nnewline ",
        "café 🦊 漢字 naïve",
        &tokenizer.render_chat("tell me a story", "the fox was happy.").unwrap(),
        "<|pad|><|eos|> written inside text",
    ];
    let dir = std::env::temp_dir().join(format!("tinyrlhf-interop-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_json().unwrap()).unwrap();
    std::fs::write(dir.join("strings.json"), serde_json::to_string(&strings).unwrap()).unwrap();

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python/tokenizer_peer.py");
    let out =
        Command::new(python()).arg(script).arg(dir.join("tokenizer.json")).arg(dir.join("strings.json")).output().expect("python runs");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    let peer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();

    for (i, s) in strings.iter().enumerate() {
        let ours = tokenizer.encode(s).unwrap();
        let theirs: Vec<u32> = serde_json::from_value(peer["ids"][i].clone()).unwrap();
        assert_eq!(ours, theirs, "ids differ for {s:?}");
        assert_eq!(peer["decoded"][i].as_str().unwrap(), *s, "python decodes {s:?} differently");
    }
    std::fs::remove_dir_all(dir).ok();
}
