//! Every public async function of the published crates says what cancelling it does: its doc
//! comment has a `# Cancel safety` section (as tokio's docs have) with text under it. This
//! covers `pub async fn`s (those written inside `macro_rules!` bodies too) and the async
//! methods of public traits (the counter traits are `#[async_trait]`), so a new async
//! function without the section fails here instead of drifting.

#![expect(
    clippy::arithmetic_side_effects,
    clippy::indexing_slicing,
    reason = "a scanner of source text in a test binary: positions stay within the lines it \
              walks, and a bad index or overflow is a failed test"
)]

use std::path::{Path, PathBuf};

/// The source folders of the published crates.
const PUBLISHED: [&str; 5] = [
    "crates/distkit-core/src",
    "crates/distkit-counter/src",
    "crates/distkit-lock/src",
    "crates/distkit-ratelimit/src",
    "distkit/src",
];

/// One line of a source file: as written, and its code alone (comments removed, the insides
/// of string and char literals blanked, so their braces do not count).
struct Line {
    raw: String,
    code: String,
}

/// Splits `source` into [`Line`]s, following block comments and string literals (plain and
/// raw) across lines.
fn lines_of(source: &str) -> Vec<Line> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Block(usize),
        Str,
        RawStr(usize),
    }
    let mut state = State::Code;
    let mut lines = Vec::new();
    for raw in source.lines() {
        let chars: Vec<char> = raw.chars().collect();
        let mut code = String::new();
        let mut at = 0;
        while let Some(&c) = chars.get(at) {
            let next = chars.get(at + 1).copied();
            match state {
                State::Block(depth) => {
                    if c == '*' && next == Some('/') {
                        state = if depth == 1 {
                            State::Code
                        } else {
                            State::Block(depth - 1)
                        };
                        at += 2;
                        continue;
                    }
                    if c == '/' && next == Some('*') {
                        state = State::Block(depth + 1);
                        at += 2;
                        continue;
                    }
                }
                State::Str => {
                    if c == '\\' {
                        at += 2;
                        continue;
                    }
                    if c == '"' {
                        state = State::Code;
                        code.push('"');
                    }
                }
                State::RawStr(hashes) => {
                    if c == '"' && (1..=hashes).all(|offset| chars.get(at + offset) == Some(&'#')) {
                        state = State::Code;
                        code.push('"');
                        at += 1 + hashes;
                        continue;
                    }
                }
                State::Code => {
                    if c == '/' && next == Some('/') {
                        break;
                    }
                    if c == '/' && next == Some('*') {
                        state = State::Block(1);
                        at += 2;
                        continue;
                    }
                    if c == '"' {
                        state = State::Str;
                        code.push('"');
                    } else if c == 'r'
                        && matches!(next, Some('"' | '#'))
                        && !code
                            .chars()
                            .last()
                            .is_some_and(|last| last.is_alphanumeric() || last == '_')
                    {
                        let hashes = chars.iter().skip(at + 1).take_while(|&&h| h == '#').count();
                        if chars.get(at + 1 + hashes) == Some(&'"') {
                            state = State::RawStr(hashes);
                            code.push('"');
                            at += 2 + hashes;
                            continue;
                        }
                        code.push(c);
                    } else if c == '\'' {
                        // A char literal ('{', '\'', '\u{7b}'); a lifetime has no closing quote.
                        let close = if next == Some('\\') {
                            chars
                                .iter()
                                .skip(at + 2)
                                .position(|&q| q == '\'')
                                .map(|p| at + 2 + p)
                        } else {
                            (chars.get(at + 2) == Some(&'\'')).then_some(at + 2)
                        };
                        match close {
                            Some(close) => {
                                code.push_str("' '");
                                at = close + 1;
                                continue;
                            }
                            None => code.push(c),
                        }
                    } else {
                        code.push(c);
                    }
                }
            }
            at += 1;
        }
        lines.push(Line {
            raw: raw.to_owned(),
            code,
        });
    }
    lines
}

/// Whether `code` has `word` as a whole word.
fn has_word(code: &str, word: &str) -> bool {
    code.match_indices(word).any(|(at, _)| {
        let before = code.get(..at).and_then(|s| s.chars().last());
        let after = code.get(at + word.len()..).and_then(|s| s.chars().next());
        !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
            && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// The name of the function declared on `code`, if it declares a public async function
/// (`pub async fn`, not `pub(crate)`), or any async function when `in_public_trait`.
fn public_async_fn(code: &str, in_public_trait: bool) -> Option<String> {
    let words: Vec<&str> = code
        .split(|c: char| c.is_whitespace() || c == '(' || c == '<')
        .filter(|w| !w.is_empty())
        .collect();
    let at = words.windows(2).position(|w| w == ["async", "fn"])?;
    let public = in_public_trait || (at > 0 && words.get(at - 1) == Some(&"pub"));
    public.then(|| {
        words
            .get(at + 2)
            .map_or_else(String::new, |name| (*name).to_owned())
    })
}

/// The doc text above line `at`: its `///` lines and `#[doc = …]` attributes, walking up
/// over attributes and plain comments until the previous item or block.
fn docs_above(lines: &[Line], at: usize) -> Vec<String> {
    let mut docs = Vec::new();
    for line in lines[..at].iter().rev() {
        let raw = line.raw.trim();
        if let Some(text) = raw.strip_prefix("///") {
            docs.push(text.trim().to_owned());
            continue;
        }
        if raw.starts_with("#[doc") {
            docs.push(raw.to_owned());
            continue;
        }
        if raw.starts_with("//") {
            continue;
        }
        let code = line.code.trim();
        if raw.is_empty() || code.ends_with('{') || code.ends_with('}') || code.ends_with(';') {
            break;
        }
    }
    docs.reverse();
    docs
}

/// Whether `docs` has a `# Cancel safety` heading with text under it.
fn has_cancel_safety(docs: &[String]) -> bool {
    docs.iter()
        .position(|line| line == "# Cancel safety")
        .is_some_and(|heading| {
            docs.iter()
                .skip(heading + 1)
                .take_while(|line| !line.starts_with('#'))
                .any(|line| !line.is_empty())
        })
}

/// Every public async function in `source` (`file` names it in the report) with whether its
/// docs have the section.
fn scan(file: &str, source: &str) -> Vec<(String, bool)> {
    let lines = lines_of(source);
    let mut found = Vec::new();
    let mut depth = 0_usize;
    // The depths at which the blocks of public traits and of test modules opened.
    let mut trait_blocks: Vec<usize> = Vec::new();
    let mut skipped_blocks: Vec<usize> = Vec::new();
    let mut pending_trait = false;
    let mut pending_skip = false;
    let mut cfg_test = false;
    for (index, line) in lines.iter().enumerate() {
        let code = line.code.as_str();
        if line.raw.trim() == "#[cfg(test)]" {
            cfg_test = true;
        } else if has_word(code, "mod") && cfg_test {
            pending_skip = true;
            cfg_test = false;
        } else if !code.trim().is_empty() && !code.trim().starts_with("#[") {
            cfg_test = false;
        }
        if has_word(code, "trait") && has_word(code, "pub") && !code.contains("pub(") {
            pending_trait = true;
        }
        let in_trait = trait_blocks.last() == Some(&depth);
        if skipped_blocks.is_empty()
            && let Some(name) = public_async_fn(code, in_trait)
        {
            found.push((
                format!("{file}:{} {name}", index + 1),
                has_cancel_safety(&docs_above(&lines, index)),
            ));
        }
        for c in code.chars() {
            match c {
                '{' => {
                    depth += 1;
                    if pending_trait {
                        trait_blocks.push(depth);
                        pending_trait = false;
                    }
                    if pending_skip {
                        skipped_blocks.push(depth);
                        pending_skip = false;
                    }
                }
                '}' => {
                    if trait_blocks.last() == Some(&depth) {
                        trait_blocks.pop();
                    }
                    if skipped_blocks.last() == Some(&depth) {
                        skipped_blocks.pop();
                    }
                    depth = depth.saturating_sub(1);
                }
                ';' => {
                    // `pub trait X;` does not exist, but `mod tests;` does: nothing opens.
                    pending_skip = false;
                }
                _ => {}
            }
        }
    }
    found
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn every_public_async_fn_of_the_published_crates_says_what_cancelling_it_does() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    for dir in PUBLISHED {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut all = Vec::new();
    for file in &files {
        let Ok(source) = std::fs::read_to_string(file) else {
            continue;
        };
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        all.extend(scan(&name, &source));
    }
    // The scanner finds what it must: inherent methods, macro-written methods and the async
    // methods of the `#[async_trait]` counter traits.
    for expected in [
        "distkit-core/src/connect/mod.rs",
        "acquire.rs",
        "rwlock.rs",
        "counter_trait.rs",
        "semaphore/mod.rs",
        "gcra.rs",
    ] {
        assert!(
            all.iter().any(|(name, _)| name.contains(expected)),
            "no public async fn found in {expected}: the scanner is broken"
        );
    }
    assert!(all.len() > 80, "only {} public async fns found", all.len());
    let missing: Vec<&str> = all
        .iter()
        .filter(|(_, documented)| !documented)
        .map(|(name, _)| name.as_str())
        .collect();
    assert!(
        missing.is_empty(),
        "{} public async fns have no `# Cancel safety` section:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_scanner_sees_trait_methods_and_macro_bodies_and_skips_private_and_test_code() {
    let source = r#"
/// Doc.
///
/// # Cancel safety
///
/// Nothing is left behind.
pub async fn documented() {}

/// Doc without the section.
pub async fn undocumented() { let _ = "{"; let _ = '{'; }

pub(crate) async fn private() {}

/// A trait.
#[async_trait::async_trait]
pub trait Public {
    /// No section.
    async fn in_trait(&self);
}

trait Private {
    async fn hidden(&self);
}

impl Public for () {
    async fn in_trait(&self) {}
}

macro_rules! methods {
    () => {
        #[doc = concat!("Generated.")]
        ///
        /// # Cancel safety
        ///
        /// Safe.
        pub async fn generated(&self) {}
    };
}

#[cfg(test)]
mod tests {
    pub async fn test_helper() {}
}
"#;
    let found = scan("x.rs", source);
    let names: Vec<(String, bool)> = found
        .into_iter()
        .map(|(name, documented)| (name.rsplit(' ').next().unwrap_or("").to_owned(), documented))
        .collect();
    assert_eq!(
        names,
        [
            ("documented".to_owned(), true),
            ("undocumented".to_owned(), false),
            ("in_trait".to_owned(), false),
            ("generated".to_owned(), true),
        ]
    );
}
