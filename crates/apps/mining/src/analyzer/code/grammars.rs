//! What each language's syntax tree means to the metrics: which node kinds are functions,
//! decisions, nesting structures, exits and comments. Kind names are the grammars' own (see
//! each grammar crate's `node-types.json`); a name a grammar lacks is simply never seen.
//!
//! The rules every table follows (the tests work fixtures out by hand from them):
//! - **cyclomatic** = 1 + `ifs` + `elifs` + `branches` (loops, `catch`, ternaries, guards) +
//!   `cases` that are not a default (`default`, `else`, `_`) + `decisions` + each `logical`
//!   operator (`&&`, `||`, `??`, `and`, `or`, ...);
//! - **cognitive** (SonarSource's rules): +1 plus the nesting depth for `ifs`, `branches` and
//!   `switches`; +1 for `elifs`, for an `else` and for an `else if` (which adds no nesting);
//!   +1 for each run of one logical operator; `lambdas` and the structures above nest;
//! - **functions** are named units (methods, constructors); `lambdas` (closures, anonymous
//!   functions, blocks) belong to the function around them. In JavaScript and TypeScript,
//!   where functions are values, arrow functions and function expressions are functions;
//! - **exits**: `return` and `throw`/`raise`.

use tree_sitter::Language;

/// One language's node kinds, by role.
#[derive(Debug, Clone, Copy, Default)]
pub struct Spec {
    /// Named units with their own row.
    pub functions: &'static [&'static str],
    /// Anonymous functions: nest, counted in the function around them.
    pub lambdas: &'static [&'static str],
    /// `if` kinds: an `if` right after an `else` is an `else if`.
    pub ifs: &'static [&'static str],
    /// `else if` clauses of their own (`elif`, `elsif`, `elseif`).
    pub elifs: &'static [&'static str],
    /// Loops, `catch`, ternaries, guards: a decision that nests.
    pub branches: &'static [&'static str],
    /// `switch`/`match`/`when`/`case` statements: nest, counted by their arms.
    pub switches: &'static [&'static str],
    /// Arms of a switch: a decision unless a default.
    pub cases: &'static [&'static str],
    /// Decisions that do not nest (comprehension clauses).
    pub decisions: &'static [&'static str],
    /// Logical operators (anonymous tokens; or the text of an operator node, for Scala).
    pub logical: &'static [&'static str],
    /// `return` and `throw`.
    pub exits: &'static [&'static str],
    /// Comments.
    pub comments: &'static [&'static str],
    /// Parameter lists, where a function has no `parameters` field.
    pub parameter_lists: &'static [&'static str],
    /// Parameters that are children of the function itself (Swift).
    pub parameters: &'static [&'static str],
    /// Statements beyond the `*_statement`, `*_declaration`, `*_definition`, `*_item` kinds.
    pub statements: &'static [&'static str],
    /// Macro calls whose `{ ... }` body, where items may stand, holds items (Rust's
    /// `cfg_rt! { fn ... }`): the body is parsed as items and measured as code.
    pub item_macros: &'static [&'static str],
    /// Where items stand, for `item_macros`.
    pub item_containers: &'static [&'static str],
    /// A function node without a body (a `body` field or a `function_body` child) is a
    /// declaration, not a function: interface and abstract methods.
    pub body_required: bool,
}

/// No kind in any role: the rest of a table.
const NONE: Spec = Spec {
    functions: &[],
    lambdas: &[],
    ifs: &[],
    elifs: &[],
    branches: &[],
    switches: &[],
    cases: &[],
    decisions: &[],
    logical: &[],
    exits: &[],
    comments: &[],
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    item_macros: &[],
    item_containers: &[],
    body_required: false,
};

const C_LOGICAL: &[&str] = &["&&", "||"];
const C_COMMENTS: &[&str] = &["comment"];

const C_FAMILY: Spec = Spec {
    functions: &["function_definition"],
    lambdas: &["lambda_expression"],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &[
        "for_statement",
        "for_range_loop",
        "while_statement",
        "do_statement",
        "conditional_expression",
        "catch_clause",
    ],
    switches: &["switch_statement"],
    cases: &["case_statement"],
    decisions: &[],
    logical: &["&&", "||", "and", "or"],
    exits: &["return_statement", "throw_statement", "co_return_statement"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    ..NONE
};

const C_SHARP: Spec = Spec {
    functions: &[
        "method_declaration",
        "constructor_declaration",
        "destructor_declaration",
        "operator_declaration",
        "conversion_operator_declaration",
        "local_function_statement",
    ],
    lambdas: &["lambda_expression", "anonymous_method_expression"],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &[
        "for_statement",
        "foreach_statement",
        "while_statement",
        "do_statement",
        "conditional_expression",
        "catch_clause",
    ],
    switches: &["switch_statement", "switch_expression"],
    cases: &["switch_section", "switch_expression_arm"],
    decisions: &[],
    logical: &["&&", "||", "??"],
    exits: &["return_statement", "throw_statement", "throw_expression"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    body_required: true,
    ..NONE
};

const GO: Spec = Spec {
    functions: &["function_declaration", "method_declaration"],
    lambdas: &["func_literal"],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &["for_statement"],
    switches: &[
        "expression_switch_statement",
        "type_switch_statement",
        "select_statement",
    ],
    cases: &["expression_case", "type_case", "communication_case"],
    decisions: &[],
    logical: C_LOGICAL,
    exits: &["return_statement"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    ..NONE
};

const JAVA: Spec = Spec {
    functions: &[
        "method_declaration",
        "constructor_declaration",
        "compact_constructor_declaration",
    ],
    lambdas: &["lambda_expression"],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &[
        "for_statement",
        "enhanced_for_statement",
        "while_statement",
        "do_statement",
        "ternary_expression",
        "catch_clause",
    ],
    switches: &["switch_expression", "switch_statement"],
    cases: &["switch_label"],
    decisions: &[],
    logical: C_LOGICAL,
    exits: &["return_statement", "throw_statement"],
    comments: &["line_comment", "block_comment"],
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    body_required: true,
    ..NONE
};

const JAVASCRIPT: Spec = Spec {
    functions: &[
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "generator_function",
        "function",
        "arrow_function",
        "method_definition",
    ],
    lambdas: &[],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &[
        "for_statement",
        "for_in_statement",
        "while_statement",
        "do_statement",
        "ternary_expression",
        "catch_clause",
    ],
    switches: &["switch_statement"],
    cases: &["switch_case"],
    decisions: &[],
    logical: &["&&", "||", "??"],
    exits: &["return_statement", "throw_statement"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    ..NONE
};

const KOTLIN: Spec = Spec {
    functions: &["function_declaration", "secondary_constructor"],
    lambdas: &["lambda_literal", "anonymous_function"],
    ifs: &["if_expression"],
    elifs: &[],
    branches: &[
        "for_statement",
        "while_statement",
        "do_while_statement",
        "catch_block",
    ],
    switches: &["when_expression"],
    cases: &["when_entry"],
    decisions: &[],
    logical: &["&&", "||", "?:"],
    exits: &["return_expression", "throw_expression"],
    comments: &["line_comment", "block_comment"],
    parameter_lists: &["function_value_parameters"],
    parameters: &[],
    statements: &["assignment", "call_expression"],
    body_required: true,
    ..NONE
};

const PHP: Spec = Spec {
    functions: &["function_definition", "method_declaration"],
    lambdas: &["anonymous_function", "arrow_function"],
    ifs: &["if_statement"],
    elifs: &["else_if_clause"],
    branches: &[
        "for_statement",
        "foreach_statement",
        "while_statement",
        "do_statement",
        "conditional_expression",
        "catch_clause",
    ],
    switches: &["switch_statement", "match_expression"],
    cases: &["case_statement", "match_conditional_expression"],
    decisions: &[],
    logical: &["&&", "||", "??", "and", "or", "xor"],
    exits: &["return_statement", "throw_expression"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    body_required: true,
    ..NONE
};

const PYTHON: Spec = Spec {
    functions: &["function_definition"],
    lambdas: &["lambda"],
    ifs: &["if_statement"],
    elifs: &["elif_clause"],
    branches: &[
        "for_statement",
        "while_statement",
        "conditional_expression",
        "except_clause",
    ],
    switches: &["match_statement"],
    cases: &["case_clause"],
    decisions: &["for_in_clause", "if_clause"],
    logical: &["and", "or"],
    exits: &["return_statement", "raise_statement"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    ..NONE
};

const RUBY: Spec = Spec {
    functions: &["method", "singleton_method"],
    lambdas: &["block", "do_block", "lambda"],
    ifs: &["if", "unless"],
    elifs: &["elsif"],
    branches: &[
        "while",
        "until",
        "for",
        "if_modifier",
        "unless_modifier",
        "while_modifier",
        "until_modifier",
        "conditional",
        "rescue",
        "rescue_modifier",
    ],
    switches: &["case", "case_match"],
    cases: &["when", "in_clause"],
    decisions: &[],
    logical: &["&&", "||", "and", "or"],
    exits: &["return"],
    comments: C_COMMENTS,
    parameter_lists: &[],
    parameters: &[],
    statements: &[
        "assignment",
        "operator_assignment",
        "call",
        "return",
        "yield",
    ],
    ..NONE
};

const RUST: Spec = Spec {
    functions: &["function_item"],
    lambdas: &["closure_expression"],
    ifs: &["if_expression"],
    elifs: &[],
    branches: &["for_expression", "while_expression"],
    switches: &["match_expression"],
    cases: &["match_arm"],
    decisions: &[],
    logical: C_LOGICAL,
    exits: &["return_expression"],
    comments: &["line_comment", "block_comment"],
    parameter_lists: &[],
    parameters: &[],
    statements: &[],
    item_macros: &["macro_invocation"],
    item_containers: &["source_file", "declaration_list"],
    ..NONE
};

const SCALA: Spec = Spec {
    functions: &["function_definition"],
    lambdas: &["lambda_expression"],
    ifs: &["if_expression"],
    elifs: &[],
    branches: &["for_expression", "while_expression", "do_while_expression"],
    // A `catch` is a block of cases: its cases are the decisions.
    switches: &["match_expression", "catch_clause"],
    cases: &["case_clause"],
    decisions: &[],
    logical: C_LOGICAL,
    exits: &["return_expression", "throw_expression"],
    comments: &["comment", "block_comment"],
    parameter_lists: &[],
    parameters: &[],
    statements: &["val_definition", "var_definition", "call_expression"],
    ..NONE
};

const SWIFT: Spec = Spec {
    functions: &[
        "function_declaration",
        "init_declaration",
        "deinit_declaration",
    ],
    lambdas: &["lambda_literal"],
    ifs: &["if_statement"],
    elifs: &[],
    branches: &[
        "guard_statement",
        "for_statement",
        "while_statement",
        "repeat_while_statement",
        "ternary_expression",
        "catch_block",
    ],
    switches: &["switch_statement"],
    cases: &["switch_entry"],
    decisions: &[],
    logical: &["&&", "||", "??"],
    exits: &["control_transfer_statement"],
    comments: &["comment", "multiline_comment"],
    parameter_lists: &[],
    parameters: &["parameter"],
    statements: &["assignment", "call_expression"],
    ..NONE
};

/// The grammar for a language, by tokei's name.
pub(super) fn lang_of(language: &str) -> Option<Lang> {
    Some(match language {
        "C" => Lang::C,
        // Objective-C is not C++: its files are left to tokei's line counts, not measured
        // with a grammar that would see them as errors.
        "C Header" | "C++" | "C++ Header" => Lang::Cpp,
        "C#" => Lang::CSharp,
        "Go" => Lang::Go,
        "Java" => Lang::Java,
        "JavaScript" | "JSX" => Lang::JavaScript,
        "TypeScript" => Lang::TypeScript,
        "TSX" => Lang::Tsx,
        "Kotlin" => Lang::Kotlin,
        "PHP" => Lang::Php,
        "Python" => Lang::Python,
        "Ruby" => Lang::Ruby,
        "Rust" => Lang::Rust,
        "Scala" => Lang::Scala,
        "Swift" => Lang::Swift,
        _ => return None,
    })
}

/// One grammar (TypeScript and TSX are two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Lang {
    C,
    Cpp,
    CSharp,
    Go,
    Java,
    JavaScript,
    TypeScript,
    Tsx,
    Kotlin,
    Php,
    Python,
    Ruby,
    Rust,
    Scala,
    Swift,
}

impl Lang {
    /// Every grammar, in the order of [`Lang::index`].
    pub const ALL: [Lang; 15] = [
        Lang::C,
        Lang::Cpp,
        Lang::CSharp,
        Lang::Go,
        Lang::Java,
        Lang::JavaScript,
        Lang::TypeScript,
        Lang::Tsx,
        Lang::Kotlin,
        Lang::Php,
        Lang::Python,
        Lang::Ruby,
        Lang::Rust,
        Lang::Scala,
        Lang::Swift,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn spec(self) -> Spec {
        match self {
            Lang::C | Lang::Cpp => C_FAMILY,
            Lang::CSharp => C_SHARP,
            Lang::Go => GO,
            Lang::Java => JAVA,
            Lang::JavaScript | Lang::TypeScript | Lang::Tsx => JAVASCRIPT,
            Lang::Kotlin => KOTLIN,
            Lang::Php => PHP,
            Lang::Python => PYTHON,
            Lang::Ruby => RUBY,
            Lang::Rust => RUST,
            Lang::Scala => SCALA,
            Lang::Swift => SWIFT,
        }
    }

    pub fn language(self) -> Language {
        match self {
            Lang::C => tree_sitter_c::LANGUAGE.into(),
            Lang::Cpp => tree_sitter_cpp::LANGUAGE.into(),
            Lang::CSharp => tree_sitter_c_sharp::LANGUAGE.into(),
            Lang::Go => tree_sitter_go::LANGUAGE.into(),
            Lang::Java => tree_sitter_java::LANGUAGE.into(),
            Lang::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Lang::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            Lang::Tsx => tree_sitter_typescript::LANGUAGE_TSX.into(),
            Lang::Kotlin => tree_sitter_kotlin_ng::LANGUAGE.into(),
            Lang::Php => tree_sitter_php::LANGUAGE_PHP.into(),
            Lang::Python => tree_sitter_python::LANGUAGE.into(),
            Lang::Ruby => tree_sitter_ruby::LANGUAGE.into(),
            Lang::Rust => tree_sitter_rust::LANGUAGE.into(),
            Lang::Scala => tree_sitter_scala::LANGUAGE.into(),
            Lang::Swift => tree_sitter_swift::LANGUAGE.into(),
        }
    }
}
