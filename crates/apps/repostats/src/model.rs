//! What we keep of a GitHub repository: the fields the API filters and shows, read from a
//! search item, plus its languages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A repository's license as GitHub names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct License {
    /// GitHub's key, e.g. `mit`, `other`.
    pub key: String,
    /// The SPDX id, e.g. `MIT`, `NOASSERTION`.
    #[serde(default)]
    pub spdx_id: Option<String>,
}

/// The owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Owner {
    /// Login.
    pub login: String,
}

/// A search item, the fields we use.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Item {
    /// GitHub's id.
    pub id: i64,
    /// `owner/name`.
    pub full_name: String,
    /// The name.
    pub name: String,
    /// The owner.
    pub owner: Owner,
    /// ISO 8601.
    pub created_at: String,
    /// The primary language, if GitHub detected one.
    #[serde(default)]
    pub language: Option<String>,
    /// The license, if any.
    #[serde(default)]
    pub license: Option<License>,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Stars.
    #[serde(default)]
    pub stargazers_count: i64,
    /// Open issues.
    #[serde(default)]
    pub open_issues_count: i64,
    /// Forking allowed.
    #[serde(default)]
    pub allow_forking: bool,
    /// Issues on.
    #[serde(default)]
    pub has_issues: bool,
    /// Projects on.
    #[serde(default)]
    pub has_projects: bool,
    /// Downloads on.
    #[serde(default)]
    pub has_downloads: bool,
    /// Wiki on.
    #[serde(default)]
    pub has_wiki: bool,
    /// Pages on.
    #[serde(default)]
    pub has_pages: bool,
    /// Discussions on.
    #[serde(default)]
    pub has_discussions: bool,
    /// A fork.
    #[serde(default)]
    pub fork: bool,
    /// Archived.
    #[serde(default)]
    pub archived: bool,
}

/// Languages by bytes, as `/repos/{owner}/{repo}/languages` answers.
pub type Languages = BTreeMap<String, u64>;
