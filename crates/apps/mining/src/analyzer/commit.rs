//! Commit messages: what kind of change a commit is, and how readable its message is.
//!
//! The kind is `merge` (two or more parents, or git's "Merge ..." text), then a Conventional
//! Commits prefix when there is one (`feat:`, `fix(x):`, `chore:` ...), then keywords of
//! the first line: fixes, configuration and dependency changes, features; else `other`.
//! Readability is the Gunning fog index of the whole message, 0.4 x (words per sentence +
//! 100 x share of words of three or more syllables): roughly the years of schooling a reader
//! needs; `None` for a message without words.

/// A commit's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Joins histories.
    Merge,
    /// Adds behaviour.
    Feature,
    /// Repairs behaviour.
    Fix,
    /// Build, CI, dependency or configuration changes.
    Config,
    /// Anything else (docs, refactors, tests, formatting...).
    Other,
}

impl Kind {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Merge => "merge",
            Kind::Feature => "feature",
            Kind::Fix => "fix",
            Kind::Config => "config",
            Kind::Other => "other",
        }
    }
}

/// Classifies a commit from its message and its number of parents.
pub fn kind(message: &str, parents: usize) -> Kind {
    let first = message.lines().next().unwrap_or("").trim();
    let lower = first.to_lowercase();
    if parents > 1 || lower.starts_with("merge ") {
        return Kind::Merge;
    }
    if let Some(kind) = conventional(&lower) {
        return kind;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let has = |list: &[&str]| words.iter().any(|w| list.contains(w));
    if has(&[
        "fix",
        "fixes",
        "fixed",
        "fixing",
        "bug",
        "bugs",
        "bugfix",
        "hotfix",
        "patch",
        "repair",
        "resolve",
        "resolves",
        "crash",
        "regression",
    ]) {
        Kind::Fix
    } else if has(&[
        "config",
        "configuration",
        "configure",
        "bump",
        "bumps",
        "upgrade",
        "dependency",
        "dependencies",
        "deps",
        "ci",
        "build",
        "dockerfile",
        "makefile",
        "yml",
        "yaml",
        "toml",
        "settings",
    ]) {
        Kind::Config
    } else if has(&[
        "add",
        "adds",
        "added",
        "adding",
        "implement",
        "implements",
        "implemented",
        "introduce",
        "introduces",
        "new",
        "support",
        "supports",
        "feature",
        "create",
        "creates",
    ]) {
        Kind::Feature
    } else {
        Kind::Other
    }
}

/// `type(scope)!: ...` of Conventional Commits.
fn conventional(first: &str) -> Option<Kind> {
    let (head, _) = first.split_once(':')?;
    let kind = head.split(['(', '!']).next()?.trim();
    Some(match kind {
        "feat" | "feature" => Kind::Feature,
        "fix" | "bugfix" | "hotfix" => Kind::Fix,
        "build" | "ci" | "chore" | "config" | "deps" => Kind::Config,
        "docs" | "style" | "refactor" | "perf" | "test" | "tests" | "revert" => Kind::Other,
        _ => return None,
    })
}

/// The Gunning fog index of `text`, or `None` without words.
pub fn fog(text: &str) -> Option<f64> {
    let words: Vec<&str> = text
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphabetic()))
        .filter(|w| !w.is_empty())
        .collect();
    if words.is_empty() {
        return None;
    }
    let sentences = text
        .split(['.', '!', '?', '\n'])
        .filter(|s| s.chars().any(char::is_alphabetic))
        .count()
        .max(1);
    let complex = words.iter().filter(|w| syllables(w) >= 3).count();
    let n = words.len() as f64;
    Some(0.4 * (n / sentences as f64 + 100.0 * complex as f64 / n))
}

/// Syllables of an English word, by vowel groups (a silent final `e` does not count).
fn syllables(word: &str) -> usize {
    let lower = word.to_lowercase();
    let mut count = 0;
    let mut previous_vowel = false;
    for c in lower.chars() {
        let vowel = "aeiouy".contains(c);
        if vowel && !previous_vowel {
            count += 1;
        }
        previous_vowel = vowel;
    }
    if lower.ends_with('e') && !lower.ends_with("le") && count > 1 {
        count -= 1;
    }
    count.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_parents_prefixes_and_keywords() {
        assert_eq!(kind("Merge pull request #12 from a/b", 1), Kind::Merge);
        assert_eq!(kind("anything", 2), Kind::Merge);
        assert_eq!(kind("feat(api): paging", 1), Kind::Feature);
        assert_eq!(kind("fix!: off by one", 1), Kind::Fix);
        assert_eq!(kind("chore: release 1.2", 1), Kind::Config);
        assert_eq!(kind("docs: typo", 1), Kind::Other);
        assert_eq!(kind("Fixes the crash on empty input", 1), Kind::Fix);
        assert_eq!(kind("Bump serde from 1.0.1 to 1.0.2", 1), Kind::Config);
        assert_eq!(kind("Add a cache for answers", 1), Kind::Feature);
        assert_eq!(kind("Rename things", 1), Kind::Other);
    }

    #[test]
    fn fog_grows_with_long_words_and_long_sentences() {
        // 4 words, 1 sentence, no word of three syllables: 0.4 x 4.
        assert_eq!(fog("Add a new test."), Some(1.6));
        let hard =
            fog("Refactor the asynchronous initialization of configuration objects.").unwrap();
        assert!(hard > 20.0, "{hard}");
        assert_eq!(fog("123 ..."), None);
        assert_eq!(syllables("cache"), 1);
        assert_eq!(syllables("configuration"), 5);
    }
}
