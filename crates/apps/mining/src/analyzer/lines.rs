//! tokei's line counts: code, comments and blank lines, for the languages tokei knows and no
//! grammar of [`super::code`] parses (the syntax tree gives those their counts).

use serde_json::json;

use super::{Analyzer, Output, Source, Summary};

/// The tokei analyzer.
#[derive(Default)]
pub struct Lines {
    config: tokei::Config,
}

impl Analyzer for Lines {
    fn name(&self) -> &'static str {
        "tokei"
    }

    fn serves(&self, language: &str) -> bool {
        language.parse::<tokei::LanguageType>().is_ok() && !super::code::Code.serves(language)
    }

    fn analyze(&self, source: &Source<'_>) -> Result<Output, String> {
        let language: tokei::LanguageType = source
            .language
            .parse()
            .map_err(|_| format!("tokei does not know {}", source.language))?;
        let stats = language.parse_from_slice(source.bytes, &self.config);
        let (code, comments, blanks) = (
            stats.code as i64,
            stats.comments as i64,
            stats.blanks as i64,
        );
        Ok(Output {
            report: json!({ "code": code, "comments": comments, "blanks": blanks,
                            "lines": code + comments + blanks }),
            summary: Summary {
                code: Some(code),
                comments: Some(comments),
                blanks: Some(blanks),
                ..Summary::default()
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_lines_are_counted_by_kind() {
        let source = Source {
            path: "a.sh",
            language: "Shell",
            bytes: b"# comment\n\nf() {\n    echo x  # trailing\n}\n",
        };
        let output = Lines::default().analyze(&source).unwrap();
        assert_eq!(output.summary.code, Some(3));
        assert_eq!(output.summary.comments, Some(1));
        assert_eq!(output.summary.blanks, Some(1));
    }
}
