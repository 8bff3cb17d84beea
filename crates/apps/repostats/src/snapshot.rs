//! The immutable view every API request reads: built from the database when its version
//! changes, swapped atomically (`arc-swap`), never locked by a request.

use std::collections::BTreeMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::model::{Item, Languages};

/// One repository as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct RepoView {
    /// `owner/name`.
    pub full_name: String,
    /// Owner's login.
    pub owner: String,
    /// Name.
    pub repository: String,
    /// Languages by bytes: `{"Rust": {"bytes": 1234}}`; null until fetched.
    pub languages: Option<BTreeMap<String, LanguageBytes>>,
    /// GitHub's id.
    pub id: i64,
    /// ISO 8601.
    pub created_at: String,
    /// Primary language.
    pub language: Option<String>,
    /// License key and SPDX id.
    pub license: Option<crate::model::License>,
    /// Description.
    pub description: Option<String>,
    /// Stars.
    pub stargazers_count: i64,
    /// Open issues.
    pub open_issues_count: i64,
    /// Forking allowed.
    pub allow_forking: bool,
    /// Issues on.
    pub has_issues: bool,
    /// Projects on.
    pub has_projects: bool,
    /// Downloads on.
    pub has_downloads: bool,
    /// Wiki on.
    pub has_wiki: bool,
    /// Pages on.
    pub has_pages: bool,
    /// Discussions on.
    pub has_discussions: bool,
    /// A fork.
    pub fork: bool,
    /// Archived.
    pub archived: bool,
    /// When its languages were fetched (ms since the epoch).
    pub languages_fetched_at: Option<i64>,
}

/// Bytes of one language.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LanguageBytes {
    /// Bytes.
    pub bytes: u64,
}

impl RepoView {
    /// A view of `item` with its languages.
    pub fn new(item: Item, languages: Option<Languages>, languages_at: Option<i64>) -> Self {
        Self {
            full_name: item.full_name,
            owner: item.owner.login,
            repository: item.name,
            languages: languages.map(|l| {
                l.into_iter()
                    .map(|(name, bytes)| (name, LanguageBytes { bytes }))
                    .collect()
            }),
            id: item.id,
            created_at: item.created_at,
            language: item.language,
            license: item.license,
            description: item.description,
            stargazers_count: item.stargazers_count,
            open_issues_count: item.open_issues_count,
            allow_forking: item.allow_forking,
            has_issues: item.has_issues,
            has_projects: item.has_projects,
            has_downloads: item.has_downloads,
            has_wiki: item.has_wiki,
            has_pages: item.has_pages,
            has_discussions: item.has_discussions,
            fork: item.fork,
            archived: item.archived,
            languages_fetched_at: languages_at,
        }
    }

    fn flag(&self, name: &str) -> bool {
        match name {
            "allow_forking" => self.allow_forking,
            "has_open_issues" => self.open_issues_count > 0,
            "has_issues" => self.has_issues,
            "has_projects" => self.has_projects,
            "has_downloads" => self.has_downloads,
            "has_wiki" => self.has_wiki,
            "has_pages" => self.has_pages,
            "has_discussions" => self.has_discussions,
            "fork" => self.fork,
            "archived" => self.archived,
            _ => false,
        }
    }

    /// Uses `language` (case-insensitive): in its languages map, or as its primary language.
    pub fn uses(&self, language: &str) -> bool {
        self.language
            .as_deref()
            .is_some_and(|l| l.eq_ignore_ascii_case(language))
            || self
                .languages
                .as_ref()
                .is_some_and(|m| m.keys().any(|k| k.eq_ignore_ascii_case(language)))
    }
}

/// The boolean filters, by query name.
pub const FLAGS: [&str; 10] = [
    "allow_forking",
    "has_open_issues",
    "has_issues",
    "has_projects",
    "has_downloads",
    "has_wiki",
    "has_pages",
    "has_discussions",
    "fork",
    "archived",
];

/// How `/repos` orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first (default).
    Newest,
    /// Oldest first.
    Oldest,
    /// Most stars first.
    Stars,
    /// By name.
    Name,
    /// Most bytes of code first.
    Bytes,
}

/// A parsed, checked set of filters.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Substring of `full_name`, lower case.
    pub name: Option<String>,
    /// A language used.
    pub language: Option<String>,
    /// A license key or SPDX id, lower case.
    pub license: Option<String>,
    /// Required values of boolean fields.
    pub flags: Vec<(&'static str, bool)>,
    /// At most this many.
    pub limit: Option<usize>,
    /// After skipping this many (paging).
    pub offset: usize,
    /// Order.
    pub sort: Option<Sort>,
}

impl Filter {
    /// Parses query pairs; an unknown parameter or a bad value is an error naming it.
    ///
    /// # Errors
    /// The message to answer with a 400.
    pub fn parse<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut filter = Filter::default();
        for (key, value) in pairs {
            let key_lower = key.to_ascii_lowercase();
            match key_lower.as_str() {
                "name" => filter.name = Some(value.to_lowercase()),
                "language" => filter.language = Some(value.to_owned()),
                "license" => filter.license = Some(value.to_lowercase()),
                "limit" => {
                    let limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1000).contains(n))
                        .ok_or_else(|| {
                            format!("limit must be an integer from 1 to 1000, not {value:?}")
                        })?;
                    filter.limit = Some(limit);
                }
                "offset" => {
                    filter.offset = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n <= 100_000)
                        .ok_or_else(|| {
                            format!("offset must be an integer from 0 to 100000, not {value:?}")
                        })?;
                }
                "sort" => {
                    filter.sort = Some(match value.to_ascii_lowercase().as_str() {
                        "newest" | "created" => Sort::Newest,
                        "oldest" => Sort::Oldest,
                        "stars" => Sort::Stars,
                        "name" => Sort::Name,
                        "bytes" => Sort::Bytes,
                        _ => {
                            return Err(format!(
                                "sort must be newest, oldest, stars, name or bytes, not {value:?}"
                            ));
                        }
                    });
                }
                flag => {
                    let Some(name) = FLAGS.iter().find(|f| **f == flag) else {
                        return Err(format!("unknown parameter {key:?}"));
                    };
                    let wanted = match value.to_ascii_lowercase().as_str() {
                        "true" | "1" | "yes" => true,
                        "false" | "0" | "no" => false,
                        _ => return Err(format!("{key} must be true or false, not {value:?}")),
                    };
                    filter.flags.push((name, wanted));
                }
            }
        }
        Ok(filter)
    }

    fn keeps(&self, repo: &RepoView) -> bool {
        if let Some(name) = &self.name
            && !repo.full_name.to_lowercase().contains(name)
        {
            return false;
        }
        if let Some(language) = &self.language
            && !repo.uses(language)
        {
            return false;
        }
        if let Some(license) = &self.license {
            let matches = repo.license.as_ref().is_some_and(|l| {
                l.key.eq_ignore_ascii_case(license)
                    || l.spdx_id
                        .as_deref()
                        .is_some_and(|s| s.eq_ignore_ascii_case(license))
            });
            if !matches {
                return false;
            }
        }
        self.flags
            .iter()
            .all(|(flag, wanted)| repo.flag(flag) == *wanted)
    }
}

/// Per-language statistics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LanguageStats {
    /// Bytes over the repositories counted.
    pub bytes: u64,
    /// Share of all bytes counted, 0 to 1.
    pub share: f64,
    /// Repositories using it.
    pub repositories: usize,
}

/// `/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// By language, largest first in bytes.
    pub languages: BTreeMap<String, LanguageStats>,
    /// Repositories by license key (`none` without one).
    pub licenses: BTreeMap<String, usize>,
    /// Repositories counted.
    pub repositories: usize,
    /// Of which with languages fetched.
    pub with_languages: usize,
    /// Bytes over all languages.
    pub bytes: u64,
}

/// What every request reads.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The database version it was built from.
    pub version: i64,
    /// When the list of repositories was last refreshed (ms since the epoch).
    pub refreshed_at: Option<i64>,
    /// Newest first.
    pub repos: Vec<RepoView>,
    /// Answers already rendered from this snapshot: a repeated query costs a lookup, not a
    /// filter and a serialisation. Dropped with the snapshot.
    pub rendered: Answers,
}

/// Most answers one snapshot keeps rendered (queries beyond are answered uncached).
pub const RENDERED_MAX: usize = 1024;

/// One rendered answer: its body and its ETag.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The JSON body.
    pub body: bytes::Bytes,
    /// Its quoted entity tag.
    pub etag: axum::http::HeaderValue,
}

/// Rendered answers by route, then raw query. Two levels so that a lookup borrows the
/// request's query instead of copying it; a read lock, so the serving threads never wait on
/// each other (only a first rendering writes).
#[derive(Debug, Default)]
pub struct Answers(
    std::sync::RwLock<
        std::collections::HashMap<&'static str, std::collections::HashMap<String, Answer>>,
    >,
);

impl Answers {
    /// The answer to `route` with `query`, if rendered.
    pub fn get(&self, route: &str, query: &str) -> Option<Answer> {
        let answers = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        answers.get(route)?.get(query).cloned()
    }

    /// Keeps `answer` unless [`RENDERED_MAX`] answers are kept already.
    pub fn insert(&self, route: &'static str, query: &str, answer: Answer) {
        let mut answers = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if answers
            .values()
            .map(std::collections::HashMap::len)
            .sum::<usize>()
            < RENDERED_MAX
        {
            answers
                .entry(route)
                .or_default()
                .insert(query.to_owned(), answer);
        }
    }
}

impl Snapshot {
    /// The repositories `filter` keeps, in its order, at most its limit.
    pub fn select(&self, filter: &Filter) -> Vec<&RepoView> {
        let mut kept: Vec<&RepoView> = self.repos.iter().filter(|r| filter.keeps(r)).collect();
        let bytes = |r: &RepoView| -> u64 {
            r.languages
                .as_ref()
                .map_or(0, |m| m.values().map(|b| b.bytes).sum())
        };
        match filter.sort.unwrap_or(Sort::Newest) {
            Sort::Newest => {}
            Sort::Oldest => kept.reverse(),
            Sort::Stars => kept.sort_by_key(|r| std::cmp::Reverse(r.stargazers_count)),
            Sort::Name => kept.sort_by_key(|r| r.full_name.to_lowercase()),
            Sort::Bytes => kept.sort_by_key(|r| std::cmp::Reverse(bytes(r))),
        }
        if filter.offset > 0 {
            kept.drain(..filter.offset.min(kept.len()));
        }
        if let Some(limit) = filter.limit {
            kept.truncate(limit);
        }
        kept
    }

    /// Statistics over the repositories `filter` keeps. Language names are grouped
    /// case-insensitively under the spelling GitHub's languages endpoint uses.
    pub fn stats(&self, filter: &Filter) -> Stats {
        let kept = self.select(&Filter {
            limit: None,
            offset: 0,
            ..filter.clone()
        });
        let mut by_lower: BTreeMap<String, (String, u64, usize)> = BTreeMap::new();
        let mut licenses = BTreeMap::new();
        let mut total = 0u64;
        let mut with_languages = 0;
        for repo in &kept {
            let key = repo
                .license
                .as_ref()
                .map_or("none".to_owned(), |l| l.key.clone());
            *licenses.entry(key).or_insert(0) += 1;
            if let Some(languages) = &repo.languages {
                with_languages += 1;
                for (name, bytes) in languages {
                    let entry = by_lower
                        .entry(name.to_lowercase())
                        .or_insert_with(|| (name.clone(), 0, 0));
                    entry.1 += bytes.bytes;
                    entry.2 += 1;
                    total += bytes.bytes;
                }
            }
        }
        let languages = by_lower
            .into_values()
            .map(|(name, bytes, repositories)| {
                let share = if total == 0 {
                    0.0
                } else {
                    bytes as f64 / total as f64
                };
                (
                    name,
                    LanguageStats {
                        bytes,
                        share,
                        repositories,
                    },
                )
            })
            .collect();
        Stats {
            languages,
            licenses,
            repositories: kept.len(),
            with_languages,
            bytes: total,
        }
    }
}

/// The current snapshot, swapped whole.
#[derive(Debug, Clone, Default)]
pub struct SnapshotCell(Arc<ArcSwap<Snapshot>>);

impl SnapshotCell {
    /// The snapshot now.
    pub fn load(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// Replaces it.
    pub fn store(&self, snapshot: Snapshot) {
        self.0.store(Arc::new(snapshot));
    }
}
