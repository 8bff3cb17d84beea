//! rust-code-analysis: Mozilla's metrics for the languages its tree-sitter grammars parse
//! (C and C++, Java, JavaScript, TypeScript, Python, Rust). The report keeps the file's
//! whole `CodeMetrics` and a row per function (name, lines, complexity, arguments, exits),
//! at most [`FUNCTIONS_MAX`] of them.

use std::path::Path;

use rust_code_analysis::{FuncSpace, LANG, SpaceKind};
use serde_json::{Value, json};

use super::{Analyzer, Output, Source, Summary};

/// Most functions listed per file (a generated file can have tens of thousands).
pub const FUNCTIONS_MAX: usize = 1_000;

/// The rust-code-analysis analyzer.
pub struct Code;

/// The grammar for a tokei language name.
fn grammar(language: &str) -> Option<LANG> {
    Some(match language {
        "Rust" => LANG::Rust,
        "Python" => LANG::Python,
        "Java" => LANG::Java,
        "JavaScript" | "JSX" => LANG::Mozjs,
        "TypeScript" => LANG::Typescript,
        "TSX" => LANG::Tsx,
        "C" | "C Header" | "C++" | "C++ Header" | "Objective-C" | "Objective-C++" => LANG::Cpp,
        _ => return None,
    })
}

impl Analyzer for Code {
    fn name(&self) -> &'static str {
        "rust-code-analysis"
    }

    fn serves(&self, language: &str) -> bool {
        grammar(language).is_some()
    }

    fn analyze(&self, source: &Source<'_>) -> Result<Output, String> {
        let lang = grammar(source.language)
            .ok_or_else(|| format!("no grammar for {}", source.language))?;
        let space = rust_code_analysis::get_function_spaces(
            &lang,
            source.bytes.to_vec(),
            Path::new(source.path),
            None,
        )
        .ok_or("the file does not parse")?;
        let m = &space.metrics;
        let mut functions = Vec::new();
        collect_functions(&space, &mut functions);
        let listed = functions.len().min(FUNCTIONS_MAX);
        let report = json!({
            "metrics": serde_json::to_value(m).map_err(|e| e.to_string())?,
            "functions_listed": listed,
            "functions": functions.into_iter().take(FUNCTIONS_MAX).collect::<Vec<_>>(),
        });
        Ok(Output {
            report,
            summary: Summary {
                sloc: Some(m.loc.sloc()),
                ploc: Some(m.loc.ploc()),
                lloc: Some(m.loc.lloc()),
                cloc: Some(m.loc.cloc()),
                functions: Some(m.nom.functions_sum()),
                cyclomatic: Some(m.cyclomatic.cyclomatic_sum()),
                cognitive: Some(m.cognitive.cognitive_sum()),
                mi: Some(m.mi.mi_original()).filter(|v| v.is_finite()),
                ..Summary::default()
            },
        })
    }
}

/// Every function space, depth first, as one summary row each.
fn collect_functions(space: &FuncSpace, into: &mut Vec<Value>) {
    for inner in &space.spaces {
        if inner.kind == SpaceKind::Function {
            let m = &inner.metrics;
            into.push(json!({
                "name": inner.name,
                "start_line": inner.start_line,
                "end_line": inner.end_line,
                "sloc": m.loc.sloc(),
                "cyclomatic": m.cyclomatic.cyclomatic(),
                "cognitive": m.cognitive.cognitive(),
                "nargs": m.nargs.fn_args(),
                "nexits": m.nexits.exit(),
                "halstead_volume": finite(m.halstead.volume()),
                "mi": finite(m.mi.mi_original()),
            }));
        }
        collect_functions(inner, into);
    }
}

/// JSON has no NaN: an undefined metric (a function with no operands) is null.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyze(path: &str, language: &str, text: &str) -> Output {
        Code.analyze(&Source {
            path,
            language,
            bytes: text.as_bytes(),
        })
        .unwrap()
    }

    #[test]
    fn a_rust_branch_counts_in_cyclomatic_complexity() {
        let output = analyze(
            "a.rs",
            "Rust",
            "fn f(x: i32) -> i32 {\n    if x > 0 { 1 } else { 2 }\n}\n",
        );
        let functions = output.report["functions"].as_array().unwrap();
        assert_eq!(functions.len(), 1);
        assert_eq!(functions[0]["name"], "f");
        assert_eq!(functions[0]["cyclomatic"], 2.0);
        assert_eq!(functions[0]["nargs"], 1.0);
        assert_eq!(output.summary.functions, Some(1.0));
        assert_eq!(output.summary.sloc, Some(3.0));
    }

    #[test]
    fn python_functions_are_listed_with_their_arguments() {
        let output = analyze(
            "a.py",
            "Python",
            "def f(a, b):\n    for i in a:\n        if i:\n            return b\n    return a\n",
        );
        let functions = output.report["functions"].as_array().unwrap();
        assert_eq!(functions[0]["name"], "f");
        assert_eq!(functions[0]["nargs"], 2.0);
        assert_eq!(functions[0]["cyclomatic"], 3.0);
        assert_eq!(functions[0]["nexits"], 2.0);
    }

    #[test]
    fn languages_without_a_grammar_are_not_served() {
        assert!(Code.serves("C++"));
        assert!(!Code.serves("Markdown"));
    }
}
