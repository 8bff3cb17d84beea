//! The data set out: every file with its metrics, or every function, as NDJSON or CSV,
//! streamed a page of files at a time (never the whole set in memory), for
//! `GET /api/mining/export` and `conveyor mining export`.

use conveyor_queue::Store;
use futures_util::Stream;
use serde_json::{Value, json};

use crate::db::{self, FileFilter, FileRow, FileState};

/// Files read from the database at a time.
pub const PAGE: i64 = 200;

/// How rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line.
    Ndjson,
    /// Comma-separated values with a header line (RFC 4180 quoting).
    Csv,
}

impl Format {
    /// `ndjson` or `csv`.
    ///
    /// # Errors
    /// Naming the formats.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "ndjson" => Ok(Self::Ndjson),
            "csv" => Ok(Self::Csv),
            other => Err(format!("format must be ndjson or csv, not {other:?}")),
        }
    }

    /// The media type.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::Ndjson => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }
}

/// One row per file, or one per function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// A file's counts and summed metrics.
    File,
    /// Each function an analyzer listed, with its file.
    Function,
}

impl Level {
    /// `file` or `function`.
    ///
    /// # Errors
    /// Naming the levels.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "file" => Ok(Self::File),
            "function" => Ok(Self::Function),
            other => Err(format!("level must be file or function, not {other:?}")),
        }
    }

    fn columns(self) -> &'static [&'static str] {
        match self {
            Self::File => &FILE_COLUMNS,
            Self::Function => &FUNCTION_COLUMNS,
        }
    }
}

const FILE_COLUMNS: [&str; 18] = [
    "id",
    "repository",
    "path",
    "language",
    "bytes",
    "state",
    "error",
    "code",
    "comments",
    "blanks",
    "sloc",
    "ploc",
    "lloc",
    "cloc",
    "functions",
    "cyclomatic",
    "cognitive",
    "mi",
];

const FUNCTION_COLUMNS: [&str; 15] = [
    "file_id",
    "repository",
    "path",
    "language",
    "analyzer",
    "name",
    "start_line",
    "end_line",
    "sloc",
    "cyclomatic",
    "cognitive",
    "nargs",
    "nexits",
    "halstead_volume",
    "mi",
];

/// What to export.
#[derive(Debug, Clone)]
pub struct Export {
    /// Which files.
    pub filter: FileFilter,
    /// Leave out failed files (`failed=false`).
    pub skip_failed: bool,
    /// Rows of files or of functions.
    pub level: Level,
    /// How rows are written.
    pub format: Format,
}

impl Export {
    /// The header line, if the format has one.
    pub fn header(&self) -> Option<String> {
        (self.format == Format::Csv).then(|| self.level.columns().join(",") + "\n")
    }

    /// The rows of one file, written; and how many (a CSV cell may hold a line break, so
    /// lines are not rows).
    pub fn rows(&self, file: &FileRow) -> (String, usize) {
        let mut out = String::new();
        let values = self.values(file);
        let count = values.len();
        for row in values {
            match self.format {
                Format::Ndjson => {
                    let object: serde_json::Map<String, Value> = self
                        .level
                        .columns()
                        .iter()
                        .map(|c| (*c).to_owned())
                        .zip(row)
                        .collect();
                    out.push_str(&Value::Object(object).to_string());
                }
                Format::Csv => {
                    let cells: Vec<String> = row.iter().map(csv_cell).collect();
                    out.push_str(&cells.join(","));
                }
            }
            out.push('\n');
        }
        (out, count)
    }

    fn values(&self, file: &FileRow) -> Vec<Vec<Value>> {
        match self.level {
            Level::File => vec![vec![
                json!(file.id),
                json!(file.repo_id),
                json!(file.path),
                json!(file.language),
                json!(file.bytes),
                json!(file.state.as_str()),
                json!(file.error),
                json!(file.code),
                json!(file.comments),
                json!(file.blanks),
                json!(file.sloc),
                json!(file.ploc),
                json!(file.lloc),
                json!(file.cloc),
                json!(file.functions),
                json!(file.cyclomatic),
                json!(file.cognitive),
                json!(file.mi),
            ]],
            Level::Function => {
                let reports: Value = file
                    .metrics
                    .as_deref()
                    .and_then(|m| serde_json::from_str(m).ok())
                    .unwrap_or(Value::Null);
                let mut rows = Vec::new();
                for (analyzer, report) in reports.as_object().into_iter().flatten() {
                    for function in report["functions"].as_array().into_iter().flatten() {
                        let mut row = vec![
                            json!(file.id),
                            json!(file.repo_id),
                            json!(file.path),
                            json!(file.language),
                            json!(analyzer),
                        ];
                        row.extend(FUNCTION_COLUMNS[5..].iter().map(|c| function[*c].clone()));
                        rows.push(row);
                    }
                }
                rows
            }
        }
    }

    /// Every row, a page of files at a time: the header, then each page's rows as one chunk.
    pub fn stream(self, store: Store) -> impl Stream<Item = Result<String, sqlx::Error>> {
        let first = self.header();
        futures_util::stream::try_unfold(
            (self, store, first, Some(None::<i64>)),
            |(export, store, header, next)| async move {
                if let Some(header) = header {
                    return Ok(Some((header, (export, store, None, next))));
                }
                let Some(after) = next else {
                    return Ok(None);
                };
                let filter = FileFilter {
                    after,
                    ..export.filter.clone()
                };
                let files = db::files(&store, &filter, PAGE).await?;
                let more = (files.len() as i64 == PAGE).then(|| files.last().map(|f| f.id));
                let mut chunk = String::new();
                for file in &files {
                    if export.skip_failed && file.state == FileState::Failed {
                        continue;
                    }
                    chunk.push_str(&export.rows(file).0);
                }
                Ok(Some((chunk, (export, store, None, more))))
            },
        )
    }
}

/// A CSV cell: numbers and text as they are, quoted when they hold a comma, a quote or a
/// line break; null as empty.
fn csv_cell(value: &Value) -> String {
    let text = match value {
        Value::Null => return String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        let mut quoted = String::with_capacity(text.len() + 2);
        quoted.push('"');
        for c in text.chars() {
            if c == '"' {
                quoted.push('"');
            }
            quoted.push(c);
        }
        quoted.push('"');
        quoted
    } else {
        text
    }
}

/// How many files `filter` selects (for a progress bar).
///
/// # Errors
/// The database's.
pub async fn count(store: &Store, filter: &FileFilter) -> sqlx::Result<i64> {
    db::count_files(store, filter).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_only_when_needed() {
        assert_eq!(csv_cell(&json!("plain")), "plain");
        assert_eq!(csv_cell(&json!("a,b")), "\"a,b\"");
        assert_eq!(csv_cell(&json!("say \"hi\"")), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell(&json!(null)), "");
        assert_eq!(csv_cell(&json!(2.5)), "2.5");
        assert_eq!(csv_cell(&json!("line\nbreak")), "\"line\nbreak\"");
    }

    #[test]
    fn formats_and_levels_are_named() {
        assert_eq!(Format::parse("csv"), Ok(Format::Csv));
        assert!(Format::parse("xml").unwrap_err().contains("ndjson or csv"));
        assert_eq!(Level::parse("function"), Ok(Level::Function));
        assert!(
            Level::parse("repo")
                .unwrap_err()
                .contains("file or function")
        );
    }
}
