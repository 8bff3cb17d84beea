//! Code metrics from tree-sitter syntax trees, for the fourteen languages the Frege POC
//! measured (lizard's thirteen and Python): one parse and one walk a file.
//!
//! Per file: lines (SLOC, PLOC, LLOC, CLOC, blank; and tokei's code/comments/blanks, so tokei
//! need not read the file again), functions, cyclomatic and cognitive complexity (summed
//! over the functions and the code outside them), Halstead's measures, the maintainability
//! index. Per function (at most [`FUNCTIONS_MAX`] listed): name, lines, parameters, exits,
//! cyclomatic and cognitive complexity, Halstead volume, maintainability index. What counts
//! as what, language by language, is in [`grammars`].
//!
//! Halstead: operators are a grammar's anonymous tokens (keywords, punctuation), operands
//! its named leaves (identifiers, literals), comments excluded. The maintainability index is
//! the 0-100 variant: `max(0, (171 - 5.2 ln V - 0.23 G - 16.2 ln L) * 100 / 171)` with V
//! the Halstead volume, G the cyclomatic complexity and L the lines.
//!
//! A file that is not valid in its language still gets metrics (tree-sitter recovers); its
//! report counts the `syntax_errors`. A file with NUL bytes is refused as binary, and a
//! parse over [`PARSE_TIME_MAX`] stops with an error.

mod grammars;
mod macros;

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rustc_hash::FxHashSet;
use serde_json::{Value, json};
use tree_sitter::{Node, ParseOptions, Parser, Tree};

use self::grammars::{Lang, Spec};
use super::{Analyzer, Output, Source, Summary};

/// Most functions listed per file (a generated file can have tens of thousands).
pub const FUNCTIONS_MAX: usize = 1_000;

/// Longest a file's parse may take.
pub const PARSE_TIME_MAX: Duration = Duration::from_secs(10);

/// Bytes looked at for a NUL, which marks a binary file.
const BINARY_SNIFF: usize = 8_000;

/// The tree-sitter analyzer.
pub struct Code;

impl Analyzer for Code {
    fn name(&self) -> &'static str {
        "tree-sitter"
    }

    fn serves(&self, language: &str) -> bool {
        grammars::lang_of(language).is_some()
    }

    fn analyze(&self, source: &Source<'_>) -> Result<Output, String> {
        let lang = grammars::lang_of(source.language)
            .ok_or_else(|| format!("no grammar for {}", source.language))?;
        let bytes = source.bytes;
        if bytes[..bytes.len().min(BINARY_SNIFF)].contains(&0) {
            return Err("a binary file (it has NUL bytes)".into());
        }
        let grammar = Grammar::get(lang);
        if grammar.rewrites_item_macros
            && let Some(output) = analyze_rewritten(grammar, bytes)?
        {
            return Ok(output);
        }
        let tree = parse(grammar, bytes)?;
        Ok(Walk::new(grammar, bytes).run(&tree))
    }
}

/// Measures a file whose item macros' headers were rewritten (see [`macros`]); `None`
/// when it has none, and the file is measured as written. A rewrite that was not one
/// (its module has a syntax error, or stands where items do not) is undone and the text
/// parsed again, at most twice; a file still in doubt is measured as written.
fn analyze_rewritten(grammar: &'static Grammar, bytes: &[u8]) -> Result<Option<Output>, String> {
    let Some(mut rewritten) = macros::rewrite(bytes) else {
        return Ok(None);
    };
    for _ in 0..3 {
        let tree = parse(grammar, &rewritten.text)?;
        let root = tree.root_node();
        let undo: Vec<usize> = if root.has_error() {
            rewritten
                .sites
                .iter()
                .copied()
                .filter(|&site| {
                    let module = root
                        .descendant_for_byte_range(site, site)
                        .and_then(|token| token.parent());
                    module.is_none_or(|m| m.kind() != "mod_item" || m.has_error())
                })
                .collect()
        } else {
            let mut walk = Walk::new(grammar, &rewritten.text);
            walk.sites.clone_from(&rewritten.sites);
            walk.verified = vec![false; walk.sites.len()];
            walk.walk(&tree);
            let undo: Vec<usize> = rewritten
                .sites
                .iter()
                .zip(&walk.verified)
                .filter(|(_, verified)| !**verified)
                .map(|(site, _)| *site)
                .collect();
            if undo.is_empty() {
                return Ok(Some(walk.finish()));
            }
            undo
        };
        if undo.is_empty() || !rewritten.undo(bytes, &undo) {
            break;
        }
    }
    Ok(None)
}

/// Parses with a reused parser of this thread, within [`PARSE_TIME_MAX`].
fn parse(grammar: &Grammar, bytes: &[u8]) -> Result<Tree, String> {
    thread_local! {
        static PARSER: RefCell<Parser> = RefCell::new(Parser::new());
    }
    PARSER.with_borrow_mut(|parser| {
        parser
            .set_language(&grammar.language)
            .map_err(|e| e.to_string())?;
        let deadline = Instant::now() + PARSE_TIME_MAX;
        // Returning true stops the parse.
        let mut past_deadline = |_: &tree_sitter::ParseState| Instant::now() > deadline;
        let options = ParseOptions::new().progress_callback(&mut past_deadline);
        let len = bytes.len();
        let tree = parser.parse_with_options(
            &mut |offset, _| if offset < len { &bytes[offset..] } else { &[] },
            None,
            Some(options),
        );
        // A stopped parse leaves state behind for a resumption that will not come.
        parser.reset();
        tree.ok_or_else(|| format!("the parse took over {} s", PARSE_TIME_MAX.as_secs()))
    })
}

// What a node kind is to the metrics: bits of `Grammar::roles`.
const FUNCTION: u32 = 1;
const LAMBDA: u32 = 1 << 1;
const IF: u32 = 1 << 2;
const ELIF: u32 = 1 << 3;
const BRANCH: u32 = 1 << 4;
const SWITCH: u32 = 1 << 5;
const CASE: u32 = 1 << 6;
const DECISION: u32 = 1 << 7;
const LOGICAL: u32 = 1 << 8;
const EXIT: u32 = 1 << 9;
const COMMENT: u32 = 1 << 10;
const STATEMENT: u32 = 1 << 11;
const ELSE: u32 = 1 << 12;
const ELSE_CLAUSE: u32 = 1 << 13;
const PARAMETER_LIST: u32 = 1 << 14;
const PARAMETER: u32 = 1 << 15;
const ITEM_MACRO: u32 = 1 << 16;
const ITEM_CONTAINER: u32 = 1 << 17;
const NAMED: u32 = 1 << 18;
const MOD_ITEM: u32 = 1 << 19;

/// Macro bodies parsed within macro bodies, at most.
const MACRO_DEPTH_MAX: usize = 3;

/// A language made ready: its grammar and each node kind's roles.
struct Grammar {
    language: tree_sitter::Language,
    /// By node kind id.
    roles: Vec<u32>,
    /// Functions need a body (see [`Spec::body_required`]).
    body_required: bool,
    /// Scala's operators are named nodes; their text says whether they are logical.
    logical_texts: &'static [&'static str],
    /// Each logical operator's kind id and its operator (1 + its place in the table's list):
    /// a token of another lexical state is the same operator, for runs of one operator.
    logical_ids: Vec<(u16, u8)>,
    /// Item macros are read in the file's one parse (Rust; see [`macros`]).
    rewrites_item_macros: bool,
}

impl Grammar {
    /// The grammar of `lang`, built on first use.
    fn get(lang: Lang) -> &'static Grammar {
        static GRAMMARS: [OnceLock<Grammar>; Lang::ALL.len()] =
            [const { OnceLock::new() }; Lang::ALL.len()];
        GRAMMARS[lang.index()].get_or_init(|| Grammar::new(lang.language(), &lang.spec()))
    }

    fn new(language: tree_sitter::Language, spec: &Spec) -> Self {
        let count = language.node_kind_count();
        let mut roles = vec![0u32; count];
        let mut logical_ids = Vec::new();
        for id in 0..count as u16 {
            let Some(kind) = language.node_kind_for_id(id) else {
                continue;
            };
            let named = language.node_kind_is_named(id);
            let has = |list: &[&str]| list.contains(&kind);
            let mut role = if named { NAMED } else { 0 };
            if named {
                for (list, bit) in [
                    (spec.functions, FUNCTION),
                    (spec.lambdas, LAMBDA),
                    (spec.ifs, IF),
                    (spec.elifs, ELIF),
                    (spec.branches, BRANCH),
                    (spec.switches, SWITCH),
                    (spec.cases, CASE),
                    (spec.decisions, DECISION),
                    (spec.exits, EXIT),
                    (spec.comments, COMMENT),
                    (spec.parameter_lists, PARAMETER_LIST),
                    (spec.parameters, PARAMETER),
                    (spec.statements, STATEMENT),
                    (spec.item_macros, ITEM_MACRO),
                    (spec.item_containers, ITEM_CONTAINER),
                ] {
                    if has(list) {
                        role |= bit;
                    }
                }
                if is_statement(kind) {
                    role |= STATEMENT;
                }
                if kind == "else_clause" {
                    role |= ELSE_CLAUSE;
                }
            } else if let Some(at) = spec.logical.iter().position(|op| *op == kind) {
                role |= LOGICAL;
                logical_ids.push((id, at as u8 + 1));
            }
            if kind == "else" {
                role |= ELSE;
            }
            if named && kind == "mod_item" {
                role |= MOD_ITEM;
            }
            roles[id as usize] = role;
        }
        // Scala: operators are `operator_identifier` nodes, told apart by their text.
        let logical_texts = if logical_ids.is_empty() {
            spec.logical
        } else {
            &[]
        };
        Self {
            language,
            roles,
            body_required: spec.body_required,
            logical_texts,
            logical_ids,
            rewrites_item_macros: spec.item_macros.contains(&"macro_invocation"),
        }
    }

    fn role(&self, node: Node<'_>) -> u32 {
        self.role_of(node.kind_id())
    }

    /// The roles of kind `id` (none for ERROR, whose id is past the table).
    fn role_of(&self, id: u16) -> u32 {
        self.roles.get(usize::from(id)).copied().unwrap_or(0)
    }
}

/// Whether a function node has a body: a `body` field, or Kotlin's `function_body` child.
fn has_body(node: Node<'_>) -> bool {
    if node.child_by_field_name("body").is_some() {
        return true;
    }
    let mut cursor = node.walk();
    node.children(&mut cursor)
        .any(|c| c.kind() == "function_body")
}

/// Statement kinds by the grammars' naming habits (for LLOC).
fn is_statement(kind: &str) -> bool {
    let suffixed = ["_statement", "_declaration", "_definition", "_item"]
        .iter()
        .any(|s| kind.ends_with(s));
    suffixed
        && !matches!(
            kind,
            "compound_statement" | "body_statement" | "empty_statement" | "block_statement"
        )
}

/// Halstead's counts over some tokens.
#[derive(Default)]
struct Halstead<'s> {
    operators: FxHashSet<u16>,
    operands: FxHashSet<&'s [u8]>,
    total_operators: u64,
    total_operands: u64,
}

impl<'s> Halstead<'s> {
    fn operator(&mut self, kind: u16) {
        self.operators.insert(kind);
        self.total_operators += 1;
    }

    fn operand(&mut self, text: &'s [u8]) {
        self.operands.insert(text);
        self.total_operands += 1;
    }

    /// `N log2 n`; zero for fewer than two distinct tokens.
    fn volume(&self) -> f64 {
        let vocabulary = (self.operators.len() + self.operands.len()) as f64;
        let length = (self.total_operators + self.total_operands) as f64;
        if vocabulary < 2.0 {
            0.0
        } else {
            length * vocabulary.log2()
        }
    }

    fn report(&self) -> Value {
        let (n1, n2) = (self.operators.len() as f64, self.operands.len() as f64);
        let (big_n1, big_n2) = (self.total_operators as f64, self.total_operands as f64);
        let volume = self.volume();
        let difficulty = if n2 > 0.0 {
            n1 / 2.0 * big_n2 / n2
        } else {
            0.0
        };
        let effort = difficulty * volume;
        json!({
            "n1": n1, "n2": n2, "N1": big_n1, "N2": big_n2,
            "vocabulary": n1 + n2, "length": big_n1 + big_n2,
            "volume": volume, "difficulty": difficulty, "effort": effort,
            "time": effort / 18.0, "bugs": volume / 3000.0,
        })
    }
}

/// The 0-100 maintainability index.
fn maintainability(volume: f64, cyclomatic: f64, lines: f64) -> f64 {
    let raw = 171.0 - 5.2 * volume.max(1.0).ln() - 0.23 * cyclomatic - 16.2 * lines.max(1.0).ln();
    (raw * 100.0 / 171.0).clamp(0.0, 100.0)
}

/// A function being measured (or the file's code outside functions).
struct Function<'s> {
    name: String,
    start_line: usize,
    end_line: usize,
    parameters: usize,
    exits: usize,
    /// Decisions; the function's cyclomatic complexity is one more.
    decisions: usize,
    cognitive: usize,
    nesting: usize,
    halstead: Halstead<'s>,
}

impl Function<'_> {
    fn row(&self) -> Value {
        let lines = self.end_line + 1 - self.start_line;
        let cyclomatic = self.decisions + 1;
        let volume = self.halstead.volume();
        json!({
            "name": self.name,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "sloc": lines,
            "nargs": self.parameters,
            "nexits": self.exits,
            "cyclomatic": cyclomatic,
            "cognitive": self.cognitive,
            "halstead_volume": volume,
            "mi": maintainability(volume, cyclomatic as f64, lines as f64),
        })
    }
}

/// An open node with children, on the walk's stack.
struct Frame<'t> {
    /// The node: its children's parent (asking a node for its parent walks down from the
    /// root, which made deeply nested files quadratic).
    node: Node<'t>,
    role: u32,
    /// It raised its function's nesting.
    nests: bool,
    /// It opened a function.
    function: bool,
    /// Its child just visited was an `else`.
    after_else: bool,
    /// The logical operator among its children (1 + index in `logical_ids`), if any.
    operator: u8,
    /// Its children's operators, for runs of one operator.
    child_operators: [u8; 2],
    /// A rewritten item macro ([`SITE`]) or its body ([`SITE_BODY`]), else 0.
    site: u8,
}

impl<'t> Frame<'t> {
    /// A frame of a macro's module or its body (see [`SITE`]), which count nothing.
    fn macro_part(node: Node<'t>, role: u32, site: u8) -> Self {
        Self {
            node,
            role,
            nests: false,
            function: false,
            after_else: false,
            operator: 0,
            child_operators: [0; 2],
            site,
        }
    }
}

/// A rewritten item macro's module: only its body is walked.
const SITE: u8 = 1;
/// Its body: walked as the macro's items, without its braces.
const SITE_BODY: u8 = 2;
/// The module a macro's body is parsed in (`Walk::macro_body`), as [`SITE`].
const WRAP_SITE: u8 = 3;

/// One walk over one file's tree.
struct Walk<'s> {
    grammar: &'static Grammar,
    bytes: &'s [u8],
    /// Open functions; the first is the code outside them.
    functions: Vec<Function<'s>>,
    rows: Vec<Value>,
    listed: usize,
    function_count: usize,
    cyclomatic: usize,
    cognitive: usize,
    file: Halstead<'s>,
    code_lines: Vec<bool>,
    comment_lines: Vec<bool>,
    statements: usize,
    syntax_errors: usize,
    /// Rows before the text being walked (a macro body's place in its file).
    row_offset: usize,
    /// Macro bodies entered.
    depth: usize,
    /// Where rewritten item macros start (see [`macros`]), in order.
    sites: Vec<usize>,
    /// Which rewrites were found to be item macros where items stand.
    verified: Vec<bool>,
    /// Bytes parsed before `bytes` (a macro's body is parsed after [`WRAP`]).
    shift: usize,
    /// The next module is the one a macro's body was wrapped in.
    wrapped: bool,
}

/// What a macro's body is parsed after: the body of a module.
const WRAP: &[u8] = b"mod x";

impl<'s> Walk<'s> {
    fn new(grammar: &'static Grammar, bytes: &'s [u8]) -> Self {
        // Lines as editors number them: a final newline ends the last line.
        let lines = bytes.iter().filter(|b| **b == b'\n').count()
            + usize::from(!bytes.is_empty() && !bytes.ends_with(b"\n"));
        Self {
            grammar,
            bytes,
            functions: vec![Function {
                name: String::new(),
                start_line: 1,
                end_line: lines,
                parameters: 0,
                exits: 0,
                decisions: 0,
                cognitive: 0,
                nesting: 0,
                halstead: Halstead::default(),
            }],
            rows: Vec::new(),
            listed: 0,
            function_count: 0,
            cyclomatic: 0,
            cognitive: 0,
            file: Halstead::default(),
            code_lines: vec![false; lines.max(1)],
            comment_lines: vec![false; lines.max(1)],
            statements: 0,
            syntax_errors: 0,
            row_offset: 0,
            depth: 0,
            sites: Vec::new(),
            verified: Vec::new(),
            shift: 0,
            wrapped: false,
        }
    }

    fn run(mut self, tree: &Tree) -> Output {
        self.walk(tree);
        self.finish()
    }

    /// Walks one tree (the file's, or a macro body's) into this walk's counts.
    fn walk(&mut self, tree: &Tree) {
        let mut cursor = tree.walk();
        let mut stack: Vec<Frame<'_>> = Vec::with_capacity(64);
        'walk: loop {
            let node = cursor.node();
            if self.enter(node, &mut stack) && cursor.goto_first_child() {
                continue;
            }
            loop {
                if cursor.goto_next_sibling() {
                    continue 'walk;
                }
                if !cursor.goto_parent() {
                    break 'walk;
                }
                if let Some(frame) = stack.pop() {
                    self.leave(frame, &mut stack);
                }
            }
        }
        while let Some(frame) = stack.pop() {
            self.leave(frame, &mut stack);
        }
    }

    /// Measures a macro call's `{ ... }` body as items, in place of its tokens; whether it
    /// could (a body that does not parse as items is left to be walked as tokens).
    fn macro_body(&mut self, node: Node<'_>) -> bool {
        let Some(body) = self.braced_body(node) else {
            return false;
        };
        // Parsed as a module's body (`mod x { ... }`), where items stand, as the file's one
        // parse reads a rewritten macro (see [`macros`]).
        let text = self.text(body);
        let mut wrapped = Vec::with_capacity(WRAP.len() + text.len());
        wrapped.extend_from_slice(WRAP);
        wrapped.extend_from_slice(text);
        let Ok(tree) = parse(self.grammar, &wrapped) else {
            return false;
        };
        if tree.root_node().has_error() {
            return false;
        }
        // The call's name and the closing brace are code; the body's lines are its own.
        for row in [node.start_position().row, node.end_position().row] {
            Self::mark(
                &mut self.code_lines,
                row + self.row_offset,
                row + self.row_offset,
            );
        }
        let saved = (self.bytes, self.row_offset, self.shift);
        self.bytes = text;
        self.shift = WRAP.len();
        self.row_offset += body.start_position().row;
        self.depth += 1;
        self.wrapped = true;
        self.walk(&tree);
        self.depth -= 1;
        (self.bytes, self.row_offset, self.shift) = saved;
        true
    }

    /// A macro call's `{ ... }` body.
    fn braced_body<'t>(&self, node: Node<'t>) -> Option<Node<'t>> {
        let body = node.named_child(node.named_child_count().saturating_sub(1))?;
        let text = self.text(body);
        (body.kind() == "token_tree" && text.len() >= 2 && text[0] == b'{').then_some(body)
    }

    fn text(&self, node: Node<'_>) -> &'s [u8] {
        let range = node.byte_range();
        range
            .start
            .checked_sub(self.shift)
            .and_then(|start| self.bytes.get(start..range.end - self.shift))
            .unwrap_or_default()
    }

    fn current(&mut self) -> &mut Function<'s> {
        self.functions.last_mut().expect("the file's own entry")
    }

    fn mark_node(&mut self, node: Node<'_>, comment: bool) {
        let (start, end) = (node.start_position().row, node.end_position().row);
        let lines = if comment {
            &mut self.comment_lines
        } else {
            &mut self.code_lines
        };
        Self::mark(lines, start + self.row_offset, end + self.row_offset);
    }

    fn mark(lines: &mut [bool], start: usize, end: usize) {
        let end = end.min(lines.len().saturating_sub(1));
        for line in lines.iter_mut().take(end + 1).skip(start) {
            *line = true;
        }
    }

    /// Takes in one node; whether to walk its children.
    fn enter<'t>(&mut self, node: Node<'t>, stack: &mut Vec<Frame<'t>>) -> bool {
        // Each call into the C library costs: a node's kind and children are asked once.
        let kind = node.kind_id();
        let role = self.grammar.role_of(kind);
        let parent = stack.last_mut();
        let (after_else, parent_role) = match parent {
            Some(parent) => {
                let after = parent.after_else;
                parent.after_else = role & ELSE != 0;
                (after, parent.role)
            }
            None => (false, 0),
        };
        // ERROR is the one kind past the grammar's table; a MISSING node is empty, and
        // only an empty node is asked whether it is one.
        if kind == u16::MAX {
            self.syntax_errors += 1;
        }
        if role & COMMENT != 0 {
            self.mark_node(node, true);
            return false;
        }
        if let Some(walk_it) = self.site(node, role, parent_role, stack) {
            return walk_it;
        }
        if role & ITEM_MACRO != 0
            && parent_role & ITEM_CONTAINER != 0
            && self.depth(stack) < MACRO_DEPTH_MAX
            && self.macro_body(node)
        {
            return false;
        }
        let function = role & FUNCTION != 0 && (!self.grammar.body_required || has_body(node));
        if function {
            let function = self.open_function(node, stack.last().map(|f| f.node));
            self.functions.push(function);
        }
        let mut nests = false;
        let nesting = self.current().nesting;
        let mut cognitive = 0;
        let mut decisions = 0;
        if role & IF != 0 {
            decisions += 1;
            if !after_else {
                cognitive += 1 + nesting;
                nests = true;
            }
        }
        if role & (BRANCH | SWITCH) != 0 {
            cognitive += 1 + nesting;
            nests = true;
        }
        if role & (BRANCH | ELIF | DECISION) != 0 {
            decisions += 1;
        }
        if role & ELIF != 0 {
            cognitive += 1;
        }
        if role & ELSE != 0 && parent_role & (IF | ELIF | ELSE_CLAUSE) != 0 {
            cognitive += 1;
        }
        if role & CASE != 0 && !self.is_default(node) {
            decisions += 1;
        }
        if role & LAMBDA != 0 {
            nests = true;
        }
        if role & STATEMENT != 0 {
            self.statements += 1;
        }
        let leaf = node.child_count() == 0;
        if leaf {
            let operator = self.logical_operator(node, kind, role);
            if operator != 0 {
                decisions += 1;
                if let Some(parent) = stack.last_mut() {
                    parent.operator = operator;
                }
            }
        }
        let current = self.current();
        current.decisions += decisions;
        current.cognitive += cognitive;
        if role & EXIT != 0 && self.is_exit(node) {
            self.current().exits += 1;
        }
        if leaf {
            self.token(node, kind, role);
            return false;
        }
        if nests {
            self.current().nesting += 1;
        }
        stack.push(Frame {
            node,
            role,
            nests,
            function,
            after_else: false,
            operator: 0,
            child_operators: [0; 2],
            site: 0,
        });
        true
    }

    /// In a file with rewritten item macros: takes a rewritten macro, or its header or
    /// braces, as [`Walk::macro_body`] takes the macro (whether to walk its children);
    /// `None` for any other node.
    fn site<'t>(
        &mut self,
        node: Node<'t>,
        role: u32,
        parent_role: u32,
        stack: &mut Vec<Frame<'t>>,
    ) -> Option<bool> {
        let parent_site = stack.last().map_or(0, |f| f.site);
        if parent_site == SITE || parent_site == WRAP_SITE {
            // `mod xxxx` are not tokens of the file; its body is the macro's items.
            let body = node.child_count() > 0;
            if body {
                stack.push(Frame::macro_part(node, role, SITE_BODY));
            }
            return Some(body);
        }
        if parent_site == SITE_BODY && role & NAMED == 0 && matches!(self.text(node), b"{" | b"}") {
            return Some(false);
        }
        if self.wrapped && role & MOD_ITEM != 0 {
            // The module a macro's body was wrapped in (`Walk::macro_body`).
            self.wrapped = false;
            stack.push(Frame::macro_part(node, 0, WRAP_SITE));
            return Some(true);
        }
        if self.sites.is_empty() || role & MOD_ITEM == 0 {
            return None;
        }
        if let Ok(index) = self.sites.binary_search(&node.start_byte()) {
            if parent_role & ITEM_CONTAINER == 0 || self.depth(stack) >= MACRO_DEPTH_MAX {
                // Not where items stand, or deeper than a macro's body is parsed: its
                // tokens were rewritten, so the file is parsed again without it.
                return Some(false);
            }
            self.verified[index] = true;
            // The call's name and the closing brace are code, as for a macro's body.
            for row in [node.start_position().row, node.end_position().row] {
                Self::mark(&mut self.code_lines, row, row);
            }
            stack.push(Frame::macro_part(node, 0, SITE));
            return Some(true);
        }
        None
    }

    /// Macro bodies the node is in: parsed again, or rewritten.
    fn depth(&self, stack: &[Frame<'_>]) -> usize {
        self.depth + stack.iter().filter(|f| f.site == SITE).count()
    }

    /// Closes one node with children.
    fn leave(&mut self, frame: Frame<'_>, stack: &mut [Frame<'_>]) {
        if frame.operator != 0 {
            // One run of one operator counts once: a child of the same operator continues it.
            let continued = frame
                .child_operators
                .iter()
                .filter(|o| **o == frame.operator)
                .count();
            self.current().cognitive += 1 - continued.min(1);
            if let Some(parent) = stack.last_mut()
                && let Some(slot) = parent.child_operators.iter_mut().find(|o| **o == 0)
            {
                *slot = frame.operator;
            }
        }
        if frame.nests {
            let current = self.current();
            current.nesting = current.nesting.saturating_sub(1);
        }
        if frame.function && self.functions.len() > 1 {
            let function = self.functions.pop().expect("an open function");
            self.function_count += 1;
            self.cyclomatic += function.decisions + 1;
            self.cognitive += function.cognitive;
            if self.listed < FUNCTIONS_MAX {
                self.listed += 1;
                self.rows.push(function.row());
            }
        }
    }

    /// A leaf: lines and Halstead.
    fn token(&mut self, node: Node<'_>, kind: u16, role: u32) {
        let range = node.byte_range();
        if range.is_empty() {
            if node.is_missing() {
                self.syntax_errors += 1;
            }
            return;
        }
        self.mark_node(node, false);
        if role & NAMED != 0 {
            let text = self.text(node);
            self.file.operand(text);
            self.current().halstead.operand(text);
        } else {
            self.file.operator(kind);
            self.current().halstead.operator(kind);
        }
    }

    /// A logical operator token's operator (1 + its place in the table's list), or 0.
    fn logical_operator(&self, node: Node<'_>, kind: u16, role: u32) -> u8 {
        let grammar = self.grammar;
        if role & LOGICAL != 0 {
            let found = grammar.logical_ids.iter().find(|(k, _)| *k == kind);
            return found.map_or(0, |(_, op)| *op);
        }
        if !grammar.logical_texts.is_empty() && role & NAMED != 0 {
            let text = self.text(node);
            let index = grammar
                .logical_texts
                .iter()
                .position(|t| t.as_bytes() == text);
            return index.map_or(0, |i| i as u8 + 1);
        }
        0
    }

    /// Whether a case arm is the default one (`default`, `else`, `_`).
    fn is_default(&self, node: Node<'_>) -> bool {
        let Some(first) = node.child(0) else {
            return false;
        };
        if matches!(first.kind(), "default" | "default_keyword" | "else") {
            return true;
        }
        node.named_child(0)
            .is_some_and(|n| self.text(n) == b"_" || n.kind() == "discard")
    }

    /// Swift's control transfers are exits only when they return or throw.
    fn is_exit(&self, node: Node<'_>) -> bool {
        node.kind() != "control_transfer_statement"
            || node
                .child(0)
                .is_some_and(|c| matches!(c.kind(), "return" | "throw_keyword"))
    }

    fn open_function(&self, node: Node<'_>, parent: Option<Node<'_>>) -> Function<'s> {
        Function {
            name: self.function_name(node, parent),
            start_line: node.start_position().row + 1 + self.row_offset,
            end_line: node.end_position().row + 1 + self.row_offset,
            parameters: self.parameters(node),
            exits: 0,
            decisions: 0,
            cognitive: 0,
            nesting: 0,
            halstead: Halstead::default(),
        }
    }

    /// The `name` field; or the end of the `declarator` chain (C, C++); or, for a function
    /// that is a value, the name it is bound to; or its first keyword (`init`).
    fn function_name(&self, node: Node<'_>, parent: Option<Node<'_>>) -> String {
        let text = |n: Node<'_>| String::from_utf8_lossy(self.text(n)).into_owned();
        if let Some(name) = node.child_by_field_name("name") {
            return text(name);
        }
        let mut declarator = node;
        while let Some(inner) = declarator.child_by_field_name("declarator") {
            declarator = inner;
        }
        if declarator != node {
            return text(declarator);
        }
        if let Some(parent) = parent {
            for field in ["name", "key", "left"] {
                if let Some(name) = parent.child_by_field_name(field)
                    && name != node
                {
                    return text(name);
                }
            }
        }
        let mut cursor = node.walk();
        let keyword = node
            .children(&mut cursor)
            .find(|c| !c.is_named() && c.kind().chars().all(|ch| ch.is_ascii_alphabetic()));
        keyword.map_or_else(|| "(anonymous)".to_owned(), |k| k.kind().to_owned())
    }

    /// The number of parameters in the function's list.
    fn parameters(&self, node: Node<'_>) -> usize {
        let grammar = self.grammar;
        if node.child_by_field_name("parameter").is_some() {
            return 1; // `x => x`
        }
        let mut list = node.child_by_field_name("parameters");
        let mut declarator = node;
        while list.is_none() {
            let Some(inner) = declarator.child_by_field_name("declarator") else {
                break;
            };
            list = inner.child_by_field_name("parameters");
            declarator = inner;
        }
        let mut cursor = node.walk();
        if list.is_none() {
            list = node
                .children(&mut cursor)
                .find(|c| grammar.role(*c) & PARAMETER_LIST != 0);
        }
        let Some(list) = list else {
            // Swift: the parameters are the function's own children.
            return node
                .children(&mut cursor)
                .filter(|c| grammar.role(*c) & PARAMETER != 0)
                .count();
        };
        let mut count = 0;
        for child in list.named_children(&mut cursor) {
            if grammar.role(child) & COMMENT != 0
                || matches!(
                    child.kind(),
                    "keyword_separator" | "positional_separator" | "attribute_item"
                )
            {
                continue;
            }
            // Go: `a, b int` is one declaration of two parameters.
            let mut names = child.walk();
            let named = child.children_by_field_name("name", &mut names).count();
            count += named.max(1);
        }
        // C: `f(void)` takes none.
        if count == 1
            && self
                .text(list)
                .split(|b| *b == b'(' || *b == b')')
                .any(|t| t == b"void")
        {
            return 0;
        }
        count
    }

    fn finish(mut self) -> Output {
        // The code outside functions: its decisions count in the file's sums.
        let outside = self.functions.swap_remove(0);
        let cyclomatic = (self.cyclomatic + outside.decisions) as f64;
        let cognitive = (self.cognitive + outside.cognitive) as f64;
        let lines = outside.end_line;
        let (mut code, mut comments, mut blanks, mut cloc) = (0, 0, 0, 0);
        let marks = self.code_lines.iter().zip(&self.comment_lines).take(lines);
        for (has_code, has_comment) in marks {
            match (has_code, has_comment) {
                (true, _) => code += 1,
                (false, true) => comments += 1,
                (false, false) => blanks += 1,
            }
            cloc += usize::from(*has_comment);
        }
        let sloc = lines;
        let volume = self.file.volume();
        let mi = maintainability(volume, cyclomatic, sloc as f64);
        let functions = self.function_count as f64;
        let report = json!({
            "loc": { "sloc": sloc, "ploc": code, "lloc": self.statements, "cloc": cloc,
                     "blank": blanks },
            "functions": self.rows,
            "functions_count": self.function_count,
            "functions_listed": self.listed,
            "cyclomatic": cyclomatic,
            "cognitive": cognitive,
            "halstead": self.file.report(),
            "mi": mi,
            "syntax_errors": self.syntax_errors,
        });
        Output {
            report,
            summary: Summary {
                code: Some(code as i64),
                comments: Some(comments as i64),
                blanks: Some(blanks as i64),
                sloc: Some(sloc as f64),
                ploc: Some(code as f64),
                lloc: Some(self.statements as f64),
                cloc: Some(cloc as f64),
                functions: Some(functions),
                cyclomatic: Some(cyclomatic),
                cognitive: Some(cognitive),
                mi: Some(mi),
            },
        }
    }
}

#[cfg(test)]
mod tests;
