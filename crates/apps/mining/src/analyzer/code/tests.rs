//! The metrics against values worked out by hand, language by language, from the rules in
//! `grammars.rs`. Each fixture (in `fixtures/`) exercises its language's decisions; the
//! comments list what each function's numbers are made of. `syntax/` holds a file of current
//! syntax per language that must parse without an error node.

use super::*;
use crate::analyzer::language_of;
use std::path::Path;

fn analyze(path: &str, bytes: &[u8]) -> Output {
    let language = language_of(path).unwrap_or_else(|| panic!("no language for {path}"));
    Code.analyze(&Source {
        path,
        language,
        bytes,
    })
    .unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// (name, cyclomatic, cognitive, parameters, exits) per function, in source order.
type Row = (&'static str, u64, u64, u64, u64);

fn check(path: &str, bytes: &str, expected: &[Row]) {
    let output = analyze(path, bytes.as_bytes());
    let report = &output.report;
    assert_eq!(report["syntax_errors"], 0, "{path} parses cleanly");
    let rows: Vec<Row> = report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name: &'static str = f["name"].as_str().unwrap().to_owned().leak();
            let n = |k: &str| f[k].as_u64().unwrap();
            (
                name,
                n("cyclomatic"),
                n("cognitive"),
                n("nargs"),
                n("nexits"),
            )
        })
        .collect();
    assert_eq!(
        rows, expected,
        "{path}: (name, cyclomatic, cognitive, args, exits)"
    );
    assert_eq!(
        output.summary.functions,
        Some(expected.len() as f64),
        "{path}"
    );
    // The file's sums: its functions' plus any decision outside them (none in these).
    let cyclomatic: u64 = expected.iter().map(|r| r.1).sum();
    let cognitive: u64 = expected.iter().map(|r| r.2).sum();
    assert_eq!(output.summary.cyclomatic, Some(cyclomatic as f64), "{path}");
    assert_eq!(output.summary.cognitive, Some(cognitive as f64), "{path}");
    for f in report["functions"].as_array().unwrap() {
        let mi = f["mi"].as_f64().unwrap();
        assert!((0.0..=100.0).contains(&mi), "{path}: MI {mi}");
    }
    let mi = output.summary.mi.unwrap();
    assert!((0.0..=100.0).contains(&mi), "{path}: MI {mi}");
}

#[test]
fn c() {
    // classify: if, &&, else if, ||, for, case 1, case 2 (not default), ?: = 8, so 9.
    //   cognitive: if 1, && 1, else-if 1, || 1, else 1, for nested in the if 2, switch 1,
    //   ?: 1 = 9. Exits: five returns. main: while, do-while = 3; cognitive 1 + 2.
    check(
        "decisions.c",
        include_str!("fixtures/decisions.c"),
        &[("classify", 9, 9, 2, 5), ("main", 3, 3, 0, 1)],
    );
}

#[test]
fn cpp() {
    // area: range-for, if, &&, catch, the lambda's ?: = 5, so 6 (the lambda is part of
    //   area). cognitive: for 1, if in it 2, && 1, catch 1, ?: inside the lambda 1+1 = 7.
    //   Exits: return v, throw, the lambda's return, return f(..) = 4.
    check(
        "decisions.cpp",
        include_str!("fixtures/decisions.cpp"),
        &[
            ("area", 6, 7, 2, 4),
            ("~Shape", 1, 0, 0, 0),
            ("Shape2::size", 1, 0, 0, 1),
        ],
    );
}

#[test]
fn c_sharp() {
    // F: if, &&, foreach, while, case 1, case 2, case 3 (not default), ??, catch = 9, so 10.
    //   cognitive: if 1, && 1, foreach 1, while in it 2, switch 1, ?? 1, catch 1 = 8.
    // C (constructor): a switch expression's arm `1` (not `_`) = 2; cognitive: switch 1.
    check(
        "decisions.cs",
        include_str!("fixtures/decisions.cs"),
        &[("F", 10, 8, 2, 4), ("C", 2, 1, 0, 0)],
    );
}

#[test]
fn go() {
    // classify: if, &&, for, case i > 2, case ... ||, the func literal's if = 7 (default
    //   not), so 8. cognitive: if 1, && 1, for 1, switch in it 2, || 1, the literal's if at
    //   nesting 1: 2 = 8. Exits: five returns. `a, b int` is two parameters.
    // Run: select with one case besides default = 2; cognitive: select 1.
    check(
        "decisions.go",
        include_str!("fixtures/decisions.go"),
        &[("classify", 8, 8, 3, 5), ("Run", 2, 1, 0, 0)],
    );
}

#[test]
fn java() {
    // A (constructor): 1. f: if, &&, else if, for, while, case 1, case 2, ?:, catch = 9,
    //   so 10; cognitive: if 1, && 1, else-if 1, for 1, while in it 2, switch 1, ?: 1,
    //   catch 1 = 9; exits: return 1, throw, return 2, return ?:, return -1.
    // g: a switch expression with two cases besides default = 3; cognitive: switch 1.
    check(
        "Decisions.java",
        include_str!("fixtures/Decisions.java"),
        &[("A", 1, 0, 1, 0), ("f", 10, 9, 2, 5), ("g", 3, 1, 1, 1)],
    );
}

#[test]
fn javascript() {
    // classify: if, &&, ||, else if, ??, for-of, for-in, while, case 1 = 9, so 10.
    //   cognitive: if 1, `a && b || !a` two runs 2, else-if 1, ?? 1, for 1, for in it 2,
    //   while in both 3, switch 1 = 12.
    // add (an arrow function bound to a name): ?: = 2. method: catch = 2.
    check(
        "decisions.js",
        include_str!("fixtures/decisions.js"),
        &[
            ("classify", 10, 12, 2, 4),
            ("add", 2, 1, 2, 0),
            ("method", 2, 1, 1, 2),
        ],
    );
}

#[test]
fn typescript() {
    // As JavaScript, and typed: ?: = 2 with an optional parameter.
    check(
        "decisions.ts",
        include_str!("fixtures/decisions.ts"),
        &[
            ("classify", 10, 12, 2, 4),
            ("add", 2, 1, 2, 0),
            ("method", 2, 1, 1, 2),
            ("typed", 2, 1, 2, 1),
        ],
    );
}

#[test]
fn kotlin() {
    // classify: if, &&, else if, ||, for, while, do-while, ?:, when entries 1 and `2, 3`
    //   (not else) = 10, so 11. cognitive: if 1, && 1, else-if 1, || 1, for 1, while in it
    //   2, do 1, elvis 1, when 1 = 10. Exits: return 1, return -1, return when.
    // safe: catch = 2.
    check(
        "decisions.kt",
        include_str!("fixtures/decisions.kt"),
        &[("classify", 11, 10, 2, 3), ("safe", 2, 1, 1, 0)],
    );
}

#[test]
fn php() {
    // classify: if, &&, ||, elseif, foreach, while, case 1, ?:, ??, match arm 1, catch = 11
    //   (default arms not), so 12. cognitive: if 1, && and || 2, elseif 1, else 1, foreach
    //   1, while in it 2, switch 1, ?: 1, ?? 1, match 1, catch 1 = 13. Exits: five returns
    //   and a throw. method: its arrow function is part of it: 1.
    check(
        "decisions.php",
        include_str!("fixtures/decisions.php"),
        &[("classify", 12, 13, 2, 6), ("method", 1, 0, 1, 1)],
    );
}

#[test]
fn python() {
    // classify: if, and, or, elif, for, while, except, the conditional expression, case 1
    //   (not `_`) = 9, so 10. cognitive: if 1, `and`/`or` two runs 2, elif 1, else 1, for 1,
    //   while in it 2, conditional 1, except 1, match 1 = 11. Exits: four returns and a
    //   raise. Parameters: a, b=1, *args, **kw.
    // method: a comprehension's for and if = 2, so 3; they add no cognitive complexity.
    check(
        "decisions.py",
        include_str!("fixtures/decisions.py"),
        &[("classify", 10, 11, 4, 5), ("method", 3, 0, 1, 1)],
    );
}

#[test]
fn ruby() {
    // classify: if, &&, ||, elsif, ?:, while, the block's `if` modifier, when 1, when 2, 3,
    //   rescue = 10, so 11. cognitive: if 1, && and || 2, elsif 1, else 1, ?: 1, while 1,
    //   the modifier in a block 2, case 1, rescue 1 = 11. Parameters: a, b = 1, *rest,
    //   key:, &blk. build: `unless` modifier = 2.
    check(
        "decisions.rb",
        include_str!("fixtures/decisions.rb"),
        &[("classify", 11, 11, 5, 2), ("build", 2, 1, 0, 0)],
    );
}

#[test]
fn rust() {
    // classify: if, &&, else if, the let chain's &&, for, while, the closure's if, match
    //   arms Some(1), Some(_), None (not `_`) = 10, so 11. cognitive: if 1, && 1, else-if
    //   1, && 1, for 1, while in it 2, the closure's if 2 and else 1, match 1 = 11.
    // method: loop (not a decision), if, || = 3; cognitive: if in the loop... `loop` does
    //   not nest here: if 1, || 1 = 2. Parameters count `&self`.
    check(
        "decisions.rs",
        include_str!("fixtures/decisions.rs"),
        &[("classify", 11, 11, 2, 2), ("method", 3, 2, 2, 1)],
    );
}

#[test]
fn scala() {
    // classify: if, &&, else if, ||, for, while, case 1 (not `_`) = 7, so 8. cognitive: if
    //   1, && 1, else-if 1, || 1, else 1, for in the else 2, while in it 3, match in the
    //   else 2 = 12. safe: catch's one case = 2; cognitive: catch 1.
    check(
        "decisions.scala",
        include_str!("fixtures/decisions.scala"),
        &[("classify", 8, 12, 2, 0), ("safe", 2, 1, 1, 0)],
    );
}

#[test]
fn swift() {
    // classify: guard, if, &&, else if, ||, for, while, case 1, case 2, 3 (not default) =
    //   9, so 10. cognitive: guard 1, if 1, && 1, else-if 1, || 1, for 1, while in it 2,
    //   switch 1 = 9. Exits: six returns. init: 1. method: catch, ?: = 3; exits: a throw and
    //   a return.
    check(
        "decisions.swift",
        include_str!("fixtures/decisions.swift"),
        &[
            ("classify", 10, 9, 2, 6),
            ("init", 1, 0, 1, 0),
            ("method", 3, 2, 0, 2),
        ],
    );
}

#[test]
fn current_syntax_parses_without_error_nodes() {
    let files: [(&str, &str); 15] = [
        ("modern.c", include_str!("syntax/modern.c")),
        ("modern.cpp", include_str!("syntax/modern.cpp")),
        ("modern.cs", include_str!("syntax/modern.cs")),
        ("modern.go", include_str!("syntax/modern.go")),
        ("Modern.java", include_str!("syntax/Modern.java")),
        ("modern.js", include_str!("syntax/modern.js")),
        ("modern.ts", include_str!("syntax/modern.ts")),
        ("modern.tsx", include_str!("syntax/modern.tsx")),
        ("modern.kt", include_str!("syntax/modern.kt")),
        ("modern.php", include_str!("syntax/modern.php")),
        ("modern.py", include_str!("syntax/modern.py")),
        ("modern.rb", include_str!("syntax/modern.rb")),
        ("modern.rs", include_str!("syntax/modern.rs")),
        ("modern.scala", include_str!("syntax/modern.scala")),
        ("modern.swift", include_str!("syntax/modern.swift")),
    ];
    for (path, text) in files {
        let output = analyze(path, text.as_bytes());
        assert_eq!(output.report["syntax_errors"], 0, "{path} has error nodes");
        assert!(
            output.summary.functions.unwrap() >= 1.0,
            "{path}: no function found"
        );
    }
}

#[test]
fn this_repository_parses_without_error_nodes() {
    // Let chains and the rest of Rust 2024, as this workspace writes them.
    for path in ["src/analyzer/code/mod.rs", "src/jobs.rs", "src/api.rs"] {
        let bytes = std::fs::read(path).unwrap();
        let output = analyze(path, &bytes);
        assert_eq!(output.report["syntax_errors"], 0, "{path} has error nodes");
    }
}

#[test]
fn lines_are_counted_from_the_tree() {
    // 1 comment; 2 code; 3 blank; 4 code and a comment; 5-6 a string over two lines;
    // 7-8 another; 9 blank. A final newline ends line 9: it does not start a tenth.
    let text = "# one\nx = 1\n\ny = 2  # two\n\"\"\"doc\nstring\"\"\"\nz = '''a\nb'''\n\n";
    let output = analyze("a.py", text.as_bytes());
    let loc = &output.report["loc"];
    assert_eq!(loc["sloc"], 9, "{loc}");
    assert_eq!(loc["ploc"], 6, "{loc}");
    assert_eq!(loc["cloc"], 2, "{loc}");
    assert_eq!(loc["blank"], 2, "{loc}");
    assert_eq!(loc["lloc"], 4, "{loc}"); // four expression statements
    // tokei's columns, from the same tree: a line with code and a comment is code.
    let s = &output.summary;
    assert_eq!((s.code, s.comments, s.blanks), (Some(6), Some(1), Some(2)));
    assert_eq!(analyze("empty.py", b"").summary.sloc, Some(0.0));
}

#[test]
fn halstead_counts_operators_and_operands() {
    // `x = y + 1`: operators `=`, `+` (n1 = 2, N1 = 2); operands x, y, 1 (n2 = 3, N2 = 3).
    // volume = 5 log2 5; difficulty = n1/2 * N2/n2 = 1.
    let output = analyze("a.py", b"x = y + 1\n");
    let h = &output.report["halstead"];
    assert_eq!((h["n1"].as_f64(), h["n2"].as_f64()), (Some(2.0), Some(3.0)));
    assert_eq!((h["N1"].as_f64(), h["N2"].as_f64()), (Some(2.0), Some(3.0)));
    let volume = h["volume"].as_f64().unwrap();
    assert!((volume - 5.0 * 5f64.log2()).abs() < 1e-9, "{volume}");
    assert_eq!(h["difficulty"].as_f64(), Some(1.0));
}

#[test]
fn the_maintainability_index_stays_between_0_and_100() {
    // A one-line function: the raw formula would give over 100.
    let small = analyze("a.rs", b"fn f() {}\n");
    assert!(small.summary.mi.unwrap() <= 100.0);
    assert_eq!(maintainability(0.0, 0.0, 0.0), 100.0);
    // A 100,000-line function: the raw formula would give far below 0.
    let mut text = String::from("def f(x):\n");
    for i in 0..100_000 {
        text.push_str(&format!("    if x == {i}:\n        x += {i}\n"));
    }
    let big = analyze("big.py", text.as_bytes());
    let f = &big.report["functions"][0];
    assert_eq!(f["cyclomatic"], 100_001);
    assert_eq!(f["mi"], 0.0);
    assert_eq!(big.summary.mi, Some(0.0));
}

#[test]
fn bad_input_gives_a_result_or_an_error() {
    // Not Java at all: still measured, with its error nodes counted: as many as the
    // library's own `is_error`/`is_missing` find.
    let broken = b"class { void f( { if (x ) } } }}}\nint g() { return 1 + ; }\n";
    let output = analyze("Broken.java", broken);
    let tree = parse(Grammar::get(grammars::Lang::Java), broken).unwrap();
    fn count(node: Node<'_>) -> u64 {
        let own = u64::from(node.is_error() || node.is_missing());
        let mut cursor = node.walk();
        own + node.children(&mut cursor).map(count).sum::<u64>()
    }
    let expected = count(tree.root_node());
    assert!(expected > 0);
    assert_eq!(output.report["syntax_errors"], expected);
    // A binary file named `.c`.
    let error = Code
        .analyze(&Source {
            path: "blob.c",
            language: "C",
            bytes: &[0x7f, b'E', b'L', b'F', 0, 0, 1, 2, 3],
        })
        .unwrap_err();
    assert!(error.contains("binary"), "{error}");
    // Not UTF-8: measured as bytes.
    let output = analyze("latin1.c", b"int f(void) { return '\xe9'; }\n");
    assert_eq!(output.summary.functions, Some(1.0));
}

#[test]
fn functions_listed_are_bounded() {
    let mut text = String::new();
    for i in 0..(FUNCTIONS_MAX + 5) {
        text.push_str(&format!("fn f{i}() {{}}\n"));
    }
    let output = analyze("many.rs", text.as_bytes());
    assert_eq!(
        output.report["functions"].as_array().unwrap().len(),
        FUNCTIONS_MAX
    );
    assert_eq!(output.report["functions_count"], FUNCTIONS_MAX + 5);
    assert_eq!(output.summary.functions, Some((FUNCTIONS_MAX + 5) as f64));
}

#[test]
fn deeply_nested_functions_are_measured_in_one_walk() {
    // 20,000 anonymous functions, each inside the last (a generated or minified file). Each
    // is named from its parent, which the walk hands down: asking tree-sitter for a node's
    // parent searches down from the root, and made this quadratic (a 1 MB file of it ran
    // past the 10 s limit).
    let depth = 20_000;
    let text = format!(
        "var a = {}1{};\n",
        "[function(){ return ".repeat(depth),
        "}]".repeat(depth)
    );
    let output = analyze("deep.js", text.as_bytes());
    assert_eq!(output.summary.functions, Some(depth as f64));
    assert_eq!(output.report["syntax_errors"], 0);
    let rows = output.report["functions"].as_array().unwrap();
    assert_eq!(rows.len(), FUNCTIONS_MAX);
    // Bound to nothing, each takes its keyword's name.
    assert!(
        rows.iter().all(|r| r["name"] == "function"),
        "{:?}",
        rows[0]
    );
    // Named by what it is bound to, through the handed-down parent.
    let output = analyze(
        "bound.js",
        b"const outer = function () { const inner = () => 1; };\n",
    );
    let names: Vec<&str> = output.report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["inner", "outer"]);
}

#[test]
fn nested_named_functions_are_their_own() {
    // g's decisions are g's; f keeps its own if.
    let output = analyze(
        "n.py",
        b"def f(a):\n    def g(b):\n        if b and a:\n            return 1\n    if a:\n        return g\n",
    );
    let rows = output.report["functions"].as_array().unwrap();
    let pairs: Vec<(&str, u64)> = rows
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap(),
                f["cyclomatic"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(pairs, [("g", 3), ("f", 2)]);
}

#[test]
fn functions_inside_rust_item_macros_are_measured() {
    // tokio's habit: items inside `cfg_rt! { ... }`. The body is parsed as items, so spawn
    // (if, && = 3; cognitive if 1, && 1, else 1) and inner are functions with their own
    // lines; main's `println!(.., a && b)` stays tokens, whose && still counts.
    let text = include_str!("fixtures/macros.rs");
    check(
        "macros.rs",
        text,
        &[
            ("spawn", 3, 3, 1, 0),
            ("inner", 1, 0, 1, 0),
            ("main", 2, 1, 0, 0),
        ],
    );
    let output = analyze("macros.rs", text.as_bytes());
    let spawn = &output.report["functions"][0];
    assert_eq!(
        (spawn["start_line"].as_u64(), spawn["end_line"].as_u64()),
        (Some(3), Some(5))
    );
    assert_eq!(output.report["loc"]["ploc"], 10);
    // A body that is not items (`$x` patterns, expressions) is measured as tokens.
    let odd = analyze("odd.rs", b"m! { $x + 1 }\nfn f() {}\n");
    assert_eq!(odd.summary.functions, Some(1.0));
}

#[test]
fn declarations_without_a_body_are_not_functions() {
    // Interface and abstract methods declare; only bodies count (`=> expr` and Kotlin's
    // `= expr` are bodies).
    let cases: [(&str, &str, &[&str]); 4] = [
        (
            "Decl.java",
            "interface I { int a(); default int b() { return 1; } }\n\
             abstract class C { abstract void c(); C() {} }\n",
            &["b", "C"],
        ),
        (
            "decl.cs",
            "interface I { int A(); int B() => 1; }\n\
             abstract class C { public abstract void D(); public int E() { return 2; } }\n",
            &["B", "E"],
        ),
        (
            "decl.kt",
            "interface I {\n    fun a(): Int\n    fun b() = 1\n}\n\n\
             abstract class C {\n    abstract fun c()\n    fun d() {}\n}\n",
            &["b", "d"],
        ),
        (
            "decl.php",
            "<?php\ninterface I { public function a(); }\n\
             abstract class C { abstract public function b(); public function c() { } }\n",
            &["c"],
        ),
    ];
    for (path, text, names) in cases {
        let output = analyze(path, text.as_bytes());
        let found: Vec<&str> = output.report["functions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(output.report["syntax_errors"], 0, "{path} parses cleanly");
        assert_eq!(found, names, "{path}");
        assert_eq!(output.summary.functions, Some(names.len() as f64), "{path}");
    }
}

/// The file measured as written: item macros' bodies parsed a second time.
fn measured_as_written(bytes: &[u8]) -> Output {
    let grammar = Grammar::get(Lang::Rust);
    let tree = parse(grammar, bytes).unwrap();
    Walk::new(grammar, bytes).run(&tree)
}

#[test]
fn item_macros_read_in_one_parse_measure_as_parsed_twice() {
    // Each case: whether the file is read in one parse with some rewrite kept (a rewrite
    // that was not an item macro is undone); either way the same report.
    let cases: [(&str, bool); 10] = [
        (include_str!("fixtures/macros.rs"), true),
        // Nested past the depth a second parse allows: the innermost is undone and stays
        // tokens, as it would.
        (
            "aa1! {\n bb2! {\n  cc3! {\n   dd4! {\n    fn deep() { if x {} }\n   }\n   fn third() {}\n  }\n }\n}\n",
            true,
        ),
        (
            "impl S {\n    cfg_io! {\n        fn read(&self) -> u8 { 1 }\n    }\n}\n",
            true,
        ),
        // In a function: not where items stand.
        (
            "fn f() {\n    select! {\n        _ = a => {}\n    }\n}\n",
            false,
        ),
        // In a string, and in a macro_rules body.
        ("const S: &str = \"\ncfg_rt! {\n\";\nfn g() {}\n", false),
        (
            "macro_rules! m {\n    () => {\n        inner! {\n            fn x() {}\n        }\n    };\n}\n",
            false,
        ),
        // A body that is not items: undone; beside one that is, kept.
        ("cfg_rt! {\n    $x + 1\n}\nfn h() {}\n", false),
        (
            "cfg_rt! {\n    $x + 1\n}\ncfg_io! {\n    fn h() {}\n}\n",
            true,
        ),
        // A path the line scan does not rewrite is parsed again, beside a rewrite.
        (
            "cfg_rt! {\n    fn a() {}\n}\ncfg_if::cfg_if! {\n    fn b() {}\n}\n",
            true,
        ),
        // A syntax error outside the macros.
        ("cfg_rt! {\n    fn a() {}\n}\nfn broken( {\n", false),
    ];
    let grammar = Grammar::get(Lang::Rust);
    for (text, one_parse) in cases {
        let fast = analyze_rewritten(grammar, text.as_bytes()).unwrap();
        assert_eq!(fast.is_some(), one_parse, "{text}");
        let slow = measured_as_written(text.as_bytes());
        let measured = analyze("case.rs", text.as_bytes());
        assert_eq!(measured.report, slow.report, "{text}");
        assert_eq!(measured.summary, slow.summary, "{text}");
    }
    let deep = analyze("deep.rs", cases[1].0.as_bytes());
    let names: Vec<_> = deep.report["functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["third"], "three bodies deep; the fourth is tokens");
    let both = analyze("both.rs", cases[8].0.as_bytes());
    assert_eq!(both.summary.functions, Some(2.0));
}

#[test]
fn item_macros_measure_alike_either_way_on_real_code() {
    // This repository's Rust and, when the cargo registry holds it, tokio's sources (item
    // macros everywhere): every file read in one parse must measure as parsed twice.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..");
    let mut dirs = vec![root.join("crates")];
    let home = std::env::var_os("CARGO_HOME").map_or_else(
        || Path::new(&std::env::var_os("HOME").unwrap_or_default()).join(".cargo"),
        std::path::PathBuf::from,
    );
    let tokio = std::fs::read_dir(home.join("registry/src"))
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|index| {
            std::fs::read_dir(index.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tokio-1."))
        })
        .max();
    match tokio {
        Some(tokio) => dirs.push(tokio.join("src")),
        None => eprintln!("tokio's sources are not in the cargo registry: this repository only"),
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let grammar = Grammar::get(Lang::Rust);
    let (mut one_parse, mut candidates) = (0, 0);
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        candidates += usize::from(macros::rewrite(&bytes).is_some());
        let Some(fast) = analyze_rewritten(grammar, &bytes).unwrap() else {
            continue;
        };
        one_parse += 1;
        let slow = measured_as_written(&bytes);
        assert_eq!(fast.report, slow.report, "{}", path.display());
        assert_eq!(fast.summary, slow.summary, "{}", path.display());
    }
    eprintln!(
        "{} files, {candidates} with item macros, {one_parse} of them read in one parse",
        files.len()
    );
    assert!(one_parse > 0);
}
