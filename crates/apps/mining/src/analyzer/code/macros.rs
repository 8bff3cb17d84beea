//! Rust item macros (`cfg_rt! { pub fn ... }`, tokio's habit) in one parse.
//!
//! The walk measures such a macro's `{ }` body as items: parsed again on its own (see
//! `Walk::macro_body`), after the file's parse read it as a token tree. Here the header
//! `name! ` of each such macro that starts a line is rewritten, byte for byte in place, as
//! `mod xxxx `, so the file's one parse reads the body as items already; the walk then
//! measures each rewritten module exactly as the second parse would have measured the body
//! (its header and braces are not tokens of the file), and checks that every rewrite was
//! one: a module where items stand, within the nesting the second parse allows, without
//! syntax errors. A rewrite that was not one (the line was in a string, a `macro_rules!`
//! body or a function, or its body is not items) is undone and the text parsed again; a
//! file still in doubt (a syntax error outside the macros) is measured as written. On
//! tokio's `src` the second parses cost 13-15 % of the direct rate; 149 of its 164 files
//! with item macros are read in one parse. The test
//! `item_macros_measure_alike_either_way_on_real_code` holds both ways equal on tokio's and
//! this repository's sources.

/// The rewritten text and where each rewritten header starts, in order.
pub(super) struct Rewritten {
    pub text: Vec<u8>,
    pub sites: Vec<usize>,
}

impl Rewritten {
    /// Restores the headers at `sites` as `original` has them; whether any rewrite is left.
    pub fn undo(&mut self, original: &[u8], sites: &[usize]) -> bool {
        for &site in sites {
            let end = self.text[site..]
                .iter()
                .position(|b| *b == b'{')
                .map_or(self.text.len(), |at| site + at);
            self.text[site..end].copy_from_slice(&original[site..end]);
        }
        self.sites.retain(|site| !sites.contains(site));
        !self.sites.is_empty()
    }
}

/// The text with every candidate header rewritten; `None` without any.
pub(super) fn rewrite(bytes: &[u8]) -> Option<Rewritten> {
    let mut text: Option<Vec<u8>> = None;
    let mut sites = Vec::new();
    let mut line = 0;
    while line < bytes.len() {
        let end = bytes[line..]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(bytes.len(), |at| line + at);
        if let Some((start, brace)) = header(bytes, line, end) {
            let text = text.get_or_insert_with(|| bytes.to_vec());
            text[start..start + 4].copy_from_slice(b"mod ");
            text[start + 4..brace].fill(b'x');
            sites.push(start);
        }
        line = end + 1;
    }
    text.map(|text| Rewritten { text, sites })
}

/// In the line `bytes[line..end]`: `[ \t]* ident ! [ \t]* {`, with room for `mod x`; the
/// identifier's start and the brace's place.
fn header(bytes: &[u8], line: usize, end: usize) -> Option<(usize, usize)> {
    let mut at = line;
    while at < end && matches!(bytes[at], b' ' | b'\t') {
        at += 1;
    }
    let start = at;
    if at < end && (bytes[at].is_ascii_alphabetic() || bytes[at] == b'_') {
        at += 1;
    } else {
        return None;
    }
    while at < end && (bytes[at].is_ascii_alphanumeric() || bytes[at] == b'_') {
        at += 1;
    }
    let name = &bytes[start..at];
    if at >= end || bytes[at] != b'!' || name == b"macro_rules" {
        return None;
    }
    at += 1;
    while at < end && matches!(bytes[at], b' ' | b'\t') {
        at += 1;
    }
    (at < end && bytes[at] == b'{' && at - start >= 5).then_some((start, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_that_start_a_line_are_rewritten_in_place() {
        let source = b"cfg_rt! {\n    pin_project!  {\n\tfoo!{}\nm! {\nmacro_rules! a {\nx = cfg_rt! {\ncfg_rt!\n{\n";
        let rewritten = rewrite(source).expect("two headers");
        assert_eq!(rewritten.text.len(), source.len());
        assert_eq!(
            String::from_utf8(rewritten.text).unwrap(),
            "mod xxxx{\n    mod xxxxxxxxxx{\n\tfoo!{}\nm! {\nmacro_rules! a {\nx = cfg_rt! {\ncfg_rt!\n{\n"
        );
        assert_eq!(rewritten.sites, [0, 14]);
        assert!(rewrite(b"fn main() {}\n").is_none());
    }
}
