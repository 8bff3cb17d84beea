//! Analyzers: file bytes in, metrics out. They know nothing of SQL or the queue.
//!
//! - [`code`]: metrics from tree-sitter syntax trees (lines, functions, cyclomatic and
//!   cognitive complexity, Halstead, maintainability index), per file and per function, for
//!   the fourteen languages with a grammar; one parse and one walk a file.
//! - [`lines`]: tokei's code / comment / blank counts, for the other languages tokei knows.
//! - [`commit`]: commit messages: a type (merge, feature, fix, config, other) and a
//!   readability score.
//!
//! Languages are tokei's names (`Rust`, `Python`, `C++`, ...), detected from the path by
//! [`language_of`]. Several analyzers may serve one language; [`Analyzers::analyze`] merges
//! their outputs under each analyzer's name. Adding one is a new file implementing
//! [`Analyzer`] and a line in [`Analyzers::standard`].

pub mod code;
pub mod commit;
pub mod lines;

use std::sync::Arc;

use serde_json::{Map, Value};

/// One file to analyze.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// Path inside the repository.
    pub path: &'a str,
    /// tokei's name of its language.
    pub language: &'a str,
    /// Contents.
    pub bytes: &'a [u8],
}

/// The columns every analysis may fill (for aggregates); `None` where no analyzer measured it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Lines of code (tokei).
    pub code: Option<i64>,
    /// Comment lines (tokei).
    pub comments: Option<i64>,
    /// Blank lines (tokei).
    pub blanks: Option<i64>,
    /// Source lines (tree-sitter).
    pub sloc: Option<f64>,
    /// Physical lines of code.
    pub ploc: Option<f64>,
    /// Logical lines of code.
    pub lloc: Option<f64>,
    /// Comment lines.
    pub cloc: Option<f64>,
    /// Functions (NOM).
    pub functions: Option<f64>,
    /// Cyclomatic complexity, summed over the file's spaces.
    pub cyclomatic: Option<f64>,
    /// Cognitive complexity, summed.
    pub cognitive: Option<f64>,
    /// Maintainability index (0-100).
    pub mi: Option<f64>,
}

/// What one analyzer found in one file.
#[derive(Debug, Clone, Default)]
pub struct Output {
    /// Its whole report, stored as JSON under its name.
    pub report: Value,
    /// The columns it measured.
    pub summary: Summary,
}

/// An analyzer of files.
pub trait Analyzer: Send + Sync {
    /// Its name, the key of its report.
    fn name(&self) -> &'static str;
    /// Whether it measures files of `language`.
    fn serves(&self, language: &str) -> bool;
    /// Measures one file.
    ///
    /// # Errors
    /// A message when the file cannot be measured (it does not parse, say).
    fn analyze(&self, source: &Source<'_>) -> Result<Output, String>;
}

/// Every analyzer's merged output for one file.
#[derive(Debug, Clone, Default)]
pub struct Analysis {
    /// By analyzer name: its report, or `{"error": ...}`.
    pub reports: Map<String, Value>,
    /// The columns, each from the analyzer that measured it.
    pub summary: Summary,
    /// Analyzers that failed, with why.
    pub errors: Vec<String>,
}

/// The analyzers a process runs.
#[derive(Clone)]
pub struct Analyzers {
    list: Vec<Arc<dyn Analyzer>>,
}

impl std::fmt::Debug for Analyzers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.list.iter().map(|a| a.name()).collect();
        f.debug_struct("Analyzers").field("list", &names).finish()
    }
}

impl Analyzers {
    /// These analyzers (the standard ones are [`Analyzers::standard`]).
    pub fn new(list: Vec<Arc<dyn Analyzer>>) -> Self {
        Self { list }
    }

    /// The tree-sitter metrics, and tokei's line counts where no grammar serves.
    pub fn standard() -> Self {
        Self {
            list: vec![Arc::new(code::Code), Arc::new(lines::Lines::default())],
        }
    }

    /// Whether any analyzer serves `language`.
    pub fn serves(&self, language: &str) -> bool {
        self.list.iter().any(|a| a.serves(language))
    }

    /// Runs every analyzer serving the file's language and merges what they report.
    pub fn analyze(&self, source: &Source<'_>) -> Analysis {
        // UTF-16 text (Windows editors write it, with its byte order mark) is measured by
        // every analyzer as the same text in UTF-8; its NUL bytes are not a binary file's.
        let transcoded = from_utf16(source.bytes);
        let source = &Source {
            bytes: transcoded.as_deref().unwrap_or(source.bytes),
            ..*source
        };
        let mut analysis = Analysis::default();
        for analyzer in self.list.iter().filter(|a| a.serves(source.language)) {
            match analyzer.analyze(source) {
                Ok(output) => {
                    analysis
                        .reports
                        .insert(analyzer.name().to_owned(), output.report);
                    merge(&mut analysis.summary, output.summary);
                }
                Err(error) => {
                    analysis
                        .errors
                        .push(format!("{}: {error}", analyzer.name()));
                    analysis.reports.insert(
                        analyzer.name().to_owned(),
                        serde_json::json!({ "error": error }),
                    );
                }
            }
        }
        analysis
    }
}

/// Text that starts with a UTF-16 byte order mark, as UTF-8 (without the mark); `None`
/// for anything else. Units that are not UTF-16 become U+FFFD.
fn from_utf16(bytes: &[u8]) -> Option<Vec<u8>> {
    let big_endian = match bytes {
        [0xFF, 0xFE, ..] => false,
        [0xFE, 0xFF, ..] => true,
        _ => return None,
    };
    let units = bytes[2..].chunks_exact(2).map(|pair| {
        let pair = [pair[0], pair[1]];
        if big_endian {
            u16::from_be_bytes(pair)
        } else {
            u16::from_le_bytes(pair)
        }
    });
    let text: String = char::decode_utf16(units)
        .map(|unit| unit.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect();
    Some(text.into_bytes())
}

/// Takes every column `from` measured that `into` has not.
fn merge(into: &mut Summary, from: Summary) {
    macro_rules! take {
        ($($field:ident),*) => { $( if into.$field.is_none() { into.$field = from.$field; } )* };
    }
    take!(
        code, comments, blanks, sloc, ploc, lloc, cloc, functions, cyclomatic, cognitive, mi
    );
}

/// tokei's name for the language of `path`, from its extension or file name.
pub fn language_of(path: &str) -> Option<&'static str> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let extension = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => ext.to_ascii_lowercase(),
        _ => name.to_ascii_lowercase(),
    };
    tokei::LanguageType::from_file_extension(&extension).map(|l| l.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_extensions() {
        assert_eq!(language_of("src/main.rs"), Some("Rust"));
        assert_eq!(language_of("a/b/setup.py"), Some("Python"));
        assert_eq!(language_of("x.CPP"), Some("C++"));
        assert_eq!(language_of("lib/index.js"), Some("JavaScript"));
        assert_eq!(language_of("README"), None);
        assert_eq!(language_of("picture.png"), None);
    }

    #[test]
    fn outputs_merge_under_each_analyzer() {
        let analyzers = Analyzers::standard();
        let source = Source {
            path: "a.rs",
            language: "Rust",
            bytes: b"// one\nfn main() {\n    if true { println!(\"x\"); }\n}\n",
        };
        let analysis = analyzers.analyze(&source);
        assert!(analysis.errors.is_empty(), "{:?}", analysis.errors);
        // One pass: the tree gives the line counts too, so tokei does not read the file.
        assert!(!analysis.reports.contains_key("tokei"));
        assert!(analysis.reports.contains_key("tree-sitter"));
        assert_eq!(analysis.summary.code, Some(3));
        assert_eq!(analysis.summary.comments, Some(1));
        assert_eq!(analysis.summary.functions, Some(1.0));
        // Shell has no grammar: tokei counts its lines.
        let shell = analyzers.analyze(&Source {
            path: "run.sh",
            language: "Shell",
            bytes: b"# run\n\necho hi\n",
        });
        assert!(shell.reports.contains_key("tokei"));
        assert!(!shell.reports.contains_key("tree-sitter"));
        assert_eq!(shell.summary.code, Some(1));
        assert_eq!(shell.summary.functions, None);
        // Objective-C is not C++: tokei counts its lines, no grammar misreads it.
        let objc = analyzers.analyze(&Source {
            path: "A.m",
            language: "Objective-C",
            bytes: b"@implementation A\n- (int)f { return 1; }\n@end\n",
        });
        assert!(objc.reports.contains_key("tokei"));
        assert!(!objc.reports.contains_key("tree-sitter"));
        assert_eq!(objc.summary.code, Some(3));
    }

    #[test]
    fn utf16_text_is_measured_as_its_text() {
        // UTF-16 with its byte order mark, either order: the same text's metrics.
        let text = "class A {\n  int F(int x) { return x > 0 ? 1 : 0; }\n}\n";
        let analyzers = Analyzers::standard();
        let analyze = |bytes: &[u8]| {
            let analysis = analyzers.analyze(&Source {
                path: "A.cs",
                language: "C#",
                bytes,
            });
            assert!(analysis.errors.is_empty(), "{:?}", analysis.errors);
            analysis
        };
        let utf8 = analyze(text.as_bytes());
        for big_endian in [false, true] {
            let mut bytes = if big_endian {
                vec![0xFE, 0xFF]
            } else {
                vec![0xFF, 0xFE]
            };
            for unit in text.encode_utf16() {
                bytes.extend(if big_endian {
                    unit.to_be_bytes()
                } else {
                    unit.to_le_bytes()
                });
            }
            let output = analyze(&bytes);
            assert_eq!(output.summary, utf8.summary, "big endian: {big_endian}");
            assert_eq!(output.reports, utf8.reports);
            assert_eq!(output.summary.cyclomatic, Some(2.0));
        }
        // tokei's languages too: one code line, one comment, one blank.
        let mut shell = vec![0xFF, 0xFE];
        shell.extend(
            "# run\n\necho hi\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes),
        );
        let analysis = analyzers.analyze(&Source {
            path: "run.sh",
            language: "Shell",
            bytes: &shell,
        });
        let s = &analysis.summary;
        assert_eq!((s.code, s.comments, s.blanks), (Some(1), Some(1), Some(1)));
    }
}
