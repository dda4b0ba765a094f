//! The README and every page of `docs/` link only to what exists: each relative link names a file of
//! the repository, and each `#anchor` a heading of the page it points to (GitHub's anchors).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the repository").to_path_buf()
}

/// The pages a reader follows: the README and `docs/*.md`.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md")];
    let docs = std::fs::read_dir(repo().join("docs")).expect("docs/ exists");
    let mut docs: Vec<PathBuf> =
        docs.map(|e| e.expect("docs/ lists").path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// Every link and image target of `text`.
fn links(text: &str) -> Vec<String> {
    Parser::new(text)
        .filter_map(|event| match event {
            Event::Start(Tag::Link { dest_url, .. } | Tag::Image { dest_url, .. }) => Some(dest_url.to_string()),
            _ => None,
        })
        .collect()
}

/// GitHub's anchor of a heading: lower case, punctuation dropped but for `-` and `_`, spaces as `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of `text`'s headings.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H6 => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) => {
                if let Some(h) = heading.as_mut() {
                    h.push_str(&t);
                }
            }
            Event::End(TagEnd::Heading(_)) => {
                if let Some(h) = heading.take() {
                    found.insert(anchor(&h));
                }
            }
            _ => {}
        }
    }
    found
}

#[test]
fn every_relative_link_of_the_readme_and_docs_resolves() {
    let mut broken = vec![];
    for page in pages() {
        let text = std::fs::read_to_string(&page).expect("a page reads");
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = link.split_once('#').map_or((link.as_str(), None), |(f, a)| (f, Some(a)));
            let target = if file.is_empty() { page.clone() } else { page.parent().expect("a page is in a folder").join(file) };
            if !target.exists() {
                broken.push(format!("{}: {link} (no such file)", page.display()));
                continue;
            }
            if let Some(fragment) = fragment {
                let text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&text).contains(fragment) {
                    broken.push(format!("{}: {link} (no heading with that anchor)", page.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_stays_a_page_a_newcomer_reads() {
    let readme = std::fs::read_to_string(repo().join("README.md")).expect("README.md reads");
    let lines = readme.lines().count();
    assert!(lines <= 250, "README.md has {lines} lines: move the detail into docs/ (250 at most)");
    for page in pages().iter().skip(1) {
        let name = page.file_name().expect("a file").to_string_lossy();
        assert!(readme.contains(&format!("docs/{name}")), "README.md does not link docs/{name}");
    }
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(anchor("GGUF files"), "gguf-files");
    assert_eq!(anchor("A real instruction model: SmolLM2-135M-Instruct"), "a-real-instruction-model-smollm2-135m-instruct");
    assert_eq!(anchor("Reward model and PPO"), "reward-model-and-ppo");
}
