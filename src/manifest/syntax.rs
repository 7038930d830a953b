//! Syntax errors, explained.
//!
//! The TOML and YAML parsers say what they expected at an offset ("missing comma between array
//! elements, expected `,`"). That is exact, but often not what the user did: an array left
//! open on one line is reported on the next line as a missing comma, followed by one error per
//! token the runaway array swallowed. This module turns the parsers' errors into what a user
//! needs: the first error of a cascade, placed where the fix goes, with a help line that shows
//! the fix. A message it does not recognise keeps the parser's words and a general help.

use super::document::Span;
use super::source::floor_char_boundary;

/// A syntax error of the manifest file, before any tree exists.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
    /// A short text under the carets.
    pub label: String,
    pub help: String,
}

impl SyntaxError {
    pub fn new(span: Span, message: impl Into<String>, label: impl Into<String>, help: impl Into<String>) -> Self {
        SyntaxError { message: message.into(), span, label: label.into(), help: help.into() }
    }
}

/// The TOML parser's errors, in the order it found them, explained.
pub fn explain_toml(text: &str, raw: Vec<(String, Span)>) -> Vec<SyntaxError> {
    let mut explained: Vec<SyntaxError> = Vec::new();
    let mut lines_seen = Vec::new();
    for (message, span) in raw {
        let span = clamp(text, span);
        if let Some(open) = runaway_collection(text, &message, &span) {
            // Everything after an unclosed array was read into it: later errors are echoes.
            explained.push(open);
            break;
        }
        // The first error on a line is its cause; later ones on that line are its echoes.
        let line = line_number(text, span.start);
        if lines_seen.contains(&line) {
            continue;
        }
        lines_seen.push(line);
        let stop = message.starts_with("cannot recurse further");
        explained.push(explain_toml_error(text, &message, span));
        if stop {
            break;
        }
    }
    explained.sort_by_key(|e| e.span.start);
    explained
}

fn explain_toml_error(text: &str, message: &str, span: Span) -> SyntaxError {
    let (what, expected) = split_expected(message);
    let label = expected.map_or_else(|| "here".to_string(), |e| format!("expected {e}"));
    let line = line_around(text, span.start);
    let rest_of_line = text[span.start..line.end].trim();
    let general = |help: &str| SyntaxError::new(span.clone(), what, label.clone(), help);
    match what {
        "duplicate key" => duplicate_toml_key(text, span),
        m if m.starts_with("invalid multi-line") && rest_of_line.is_empty() => {
            let quotes = if m.contains("literal") { "'''" } else { "\"\"\"" };
            let open = text[..span.start].rfind(quotes).unwrap_or(span.start);
            SyntaxError::new(
                open..open + quotes.len().min(text.len() - open),
                "unclosed multi-line string",
                "this string is never closed",
                format!("end the string with `{quotes}`"),
            )
        }
        m if (m.starts_with("invalid basic string") || m.starts_with("invalid literal string")) && rest_of_line.is_empty() => {
            let quote = if m.contains("literal") { '\'' } else { '"' };
            let value_start = text[line.start..span.start].find('=').map_or(line.start, |i| line.start + i);
            let open = text[value_start..span.start].find(quote).map_or(span.start, |i| value_start + i);
            SyntaxError::new(
                open..text[..line.end].trim_end().len().max(open),
                "unclosed string",
                format!("no closing `{quote}`"),
                format!("end the string with `{quote}` on the same line; a string over several lines is written between `{quote}{quote}{quote}`"),
            )
        }
        m if m.starts_with("missing escaped value") || m.starts_with("too few unicode") || m.contains("escape") => {
            invalid_escape(text, span, line)
        }
        m if m.starts_with("unclosed table") || m.starts_with("unclosed array table") => {
            let header = strip_comment(&text[line.clone()]).trim();
            let close = if header.starts_with("[[") { "]]" } else { "]" };
            let help = if header.contains(']') || header.contains(' ') {
                "a table name is made of bare keys (letters, digits, `-`, `_`) joined by `.`; quote a name that needs other characters"
                    .to_string()
            } else {
                format!("close the header: `{header}{close}`")
            };
            SyntaxError::new(span, "unclosed table header", format!("expected `{close}`"), help)
        }
        m if m.starts_with("key with no value") => {
            let statement = strip_comment(&text[line.clone()]).trim();
            let bare_key = |key: &str| {
                key.chars().any(char::is_alphanumeric) && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.'))
            };
            let help = match statement.split_once(char::is_whitespace) {
                _ if statement.len() > 80 => "write `key = value`".to_string(),
                Some((key, value)) if bare_key(key) && !value.trim().is_empty() => format!("write `{key} = {}`", value.trim()),
                None if bare_key(statement) => format!("give the key a value: `{statement} = ...`"),
                _ => "write `key = value`".to_string(),
            };
            SyntaxError::new(span, "a key without `=`", "expected `=`", help)
        }
        m if m.starts_with("string values must be quoted") => {
            let value = text[span.clone()].trim();
            if value.is_empty() {
                SyntaxError::new(
                    span,
                    "missing value",
                    "expected a value after `=`",
                    "write a value after `=`: a \"string\", a number, `true`/`false`, a [list] or an { inline = \"table\" }",
                )
            } else if ["yes", "no", "on", "off"].contains(&value.to_ascii_lowercase().as_str()) {
                SyntaxError::new(
                    span,
                    format!("`{value}` is not a TOML value"),
                    "not a boolean",
                    "TOML booleans are `true` and `false`; quote text: \"...\"",
                )
            } else {
                SyntaxError::new(span, "unquoted string", "strings are quoted in TOML", format!("quote it: `\"{value}\"`"))
            }
        }
        m if m.starts_with("invalid boolean") => SyntaxError::new(
            span.clone(),
            format!("`{}` is not a TOML boolean", &text[span]),
            label,
            "TOML booleans are `true` and `false`, in lowercase; quote text: \"...\"",
        ),
        m if m.starts_with("cannot recurse further") => SyntaxError::new(
            span,
            "the value is nested too deeply",
            "too many levels",
            "check the brackets: a manifest nests a few levels at most",
        ),
        m if m.starts_with("cannot extend value") => {
            general("this key already holds a value on an earlier line; a key cannot be both a value and a table")
        }
        m if m.starts_with("extra comma") => general("remove the extra `,`"),
        m if m.starts_with("unclosed array") => general("close the array with `]`"),
        m if m.starts_with("unclosed inline table") => general("close the inline table with `}`"),
        m if m.starts_with("missing comma between array elements") => general("separate the elements of an array with `,`"),
        m if m.starts_with("unexpected key or value") || m.starts_with("unexpected content") => {
            general("one `key = value` per line: put what follows on a line of its own, or start a comment with `#`")
        }
        _ => general("check this line against TOML's syntax: `key = value`, `[table]`, `[[list-of-tables]]`, strings in quotes"),
    }
}

/// A backslash in a "double-quoted" string that is not a TOML escape: most often a Windows
/// path, which the manifest writes with `/` anyway.
fn invalid_escape(text: &str, span: Span, line: Span) -> SyntaxError {
    let backslash = text[line.start..span.start].rfind('\\').map_or(span.start, |i| line.start + i);
    let open = text[line.start..backslash].rfind('"').map(|i| line.start + i + 1);
    let close = text[backslash..line.end].find('"').map(|i| backslash + i);
    let help = match (open, close) {
        (Some(open), Some(close)) => format!(
            "paths are written with `/` on every platform: `\"{}\"`; elsewhere write `\\\\` for a backslash, or use 'single quotes', where backslashes are plain text",
            text[open..close].replace('\\', "/")
        ),
        _ => "write `\\\\` for a backslash, or use 'single quotes', where backslashes are plain text".to_string(),
    };
    let end = text[span.start..line.end].chars().next().map_or(span.start, |c| span.start + c.len_utf8());
    SyntaxError::new(backslash..end.max(backslash), "invalid escape in a \"double-quoted\" string", "not an escape", help)
}

/// An array or inline table left open: the parser reports a missing comma at the start of the
/// next statement (`trainable = false` read as an element). Reported where the `]` belongs.
fn runaway_collection(text: &str, message: &str, span: &Span) -> Option<SyntaxError> {
    let (kind, close) = if message.starts_with("missing comma between array elements") {
        ("array", ']')
    } else if message.starts_with("missing comma between key-value pairs") || message.starts_with("missing key for inline table element") {
        ("inline table", '}')
    } else {
        return None;
    };
    let line = line_around(text, span.start);
    let at_line_start = text[line.start..span.start].trim().is_empty();
    if !at_line_start || !starts_statement(&text[span.start..line.end]) {
        return None;
    }
    let before = text[..line.start].trim_end();
    let previous_line = line_around(text, before.len());
    let end = previous_line.start + strip_comment(&text[previous_line.start..before.len()]).trim_end().len();
    Some(SyntaxError::new(
        end..end,
        format!("unclosed {kind}: `{close}` is missing"),
        format!("expected `{close}` here"),
        format!("an {kind} may span several lines, so the lines after it were read as part of it: close it with `{close}`"),
    ))
}

/// `key = ...` or `[header]`: the start of a TOML statement, not an array element.
fn starts_statement(line: &str) -> bool {
    let line = line.trim_start();
    if line.starts_with('[') {
        return true;
    }
    match line.split_once('=') {
        Some((key, _)) => {
            let key = key.trim();
            !key.is_empty() && key.chars().all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '"' | '\'' | ' '))
        }
        None => false,
    }
}

/// "duplicate key": a table defined twice (`[project]` … `[project]`) or a key set twice.
fn duplicate_toml_key(text: &str, span: Span) -> SyntaxError {
    let line = line_around(text, span.start);
    let statement = strip_comment(&text[line.clone()]).trim();
    let line_no = line_number(text, span.start);
    let earlier: Vec<(usize, &str)> = text.lines().enumerate().take(line_no - 1).map(|(i, l)| (i + 1, strip_comment(l).trim())).collect();
    if statement.starts_with('[') {
        let first = earlier.iter().find(|(_, l)| *l == statement).map(|(n, _)| *n);
        let help = match first {
            Some(n) => format!("the first `{statement}` is on line {n}: move these keys into it"),
            None => "a table is defined once: merge these keys into its first definition (an earlier header, inline table or dotted key)"
                .to_string(),
        };
        return SyntaxError::new(span, format!("table `{statement}` is defined twice"), "defined again", help);
    }
    let key = text[span.clone()].trim_matches(['"', '\'']);
    // The first definition: the same key earlier in this table (after the last header).
    let first = earlier
        .iter()
        .rev()
        .take_while(|(_, l)| !l.starts_with('['))
        .filter(|(_, l)| l.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with(['=', '.'])))
        .last()
        .map(|(n, _)| *n);
    let help = match first {
        Some(n) => format!("`{key}` is already set on line {n}: keep one of the two"),
        None => format!("`{key}` is set once per table: keep one of the two"),
    };
    SyntaxError::new(span, format!("duplicate key `{key}`"), "set again", help)
}

/// The YAML parser's error at byte offset `at`, explained.
pub fn explain_yaml(text: &str, message: &str, at: usize) -> SyntaxError {
    let at = floor_char_boundary(text, at.min(text.len()));
    let line = line_around(text, at);
    let one_char = at..text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
    let general = |help: &str| SyntaxError::new(one_char.clone(), message, "here", help);
    // A `[` or `{` left open is often only noticed lines later, as bad indentation: point at
    // the bracket that closed the wrong thing, or at the end of the line that opened it.
    if !message.starts_with("while parsing a flow") {
        if let Some((open, at)) = unclosed_flow(text, at) {
            let (kind, close, what) = if open == '[' { ("`[` list", ']', "items") } else { ("`{` mapping", '}', "entries") };
            let one = at..text[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            return SyntaxError::new(
                one,
                format!("unclosed {kind}"),
                format!("expected `,` or `{close}` before this"),
                format!("close the {kind} with `{close}`, separating its {what} with `,`"),
            );
        }
    }
    match message {
        "mapping values are not allowed in this context" => SyntaxError::new(
            one_char.clone(),
            "unexpected `:`",
            "a `key:` cannot start here",
            "if this line is a key, indent it exactly like the keys around it (otherwise it continues the value above); if a value contains `: `, quote it",
        ),
        m if m.contains("tab") => {
            let tab = text[line.start..line.end].find('\t').map_or(at, |i| line.start + i);
            SyntaxError::new(tab..tab + 1, "a tab in the indentation", "tab", "YAML indents with spaces only: replace the tab with spaces")
        }
        "invalid trailing content after double-quoted scalar" => SyntaxError::new(
            one_char.clone(),
            "text after a closing quote",
            "after the closing `\"`",
            "quote the whole value, or start a comment with ` #`",
        ),
        m if m.starts_with("unexpected character") => {
            // yaml-rust2 writes "unexpected character: `c'".
            let c = m.split_once('`').map_or("", |(_, rest)| rest.strip_suffix('\'').unwrap_or(rest));
            SyntaxError::new(
                one_char.clone(),
                format!("unexpected character '{c}'"),
                "cannot start a value",
                "quote the value: some characters (`@`, `` ` ``, `%`, `|`, `>`) cannot start an unquoted YAML value",
            )
        }
        m if m.contains("quoted scalar") && !m.contains("escape") && !m.contains("hexadecimal") => {
            let end = text[..line.end].trim_end().len().max(at);
            SyntaxError::new(at..end, "unclosed quoted string", "this string is never closed", "end the string with its closing quote on the same line")
        }
        m if m.contains("escape") || m.contains("hexadecimal") => general("in \"double quotes\" a backslash starts an escape: write `\\\\` for a backslash, or use 'single quotes'"),
        m if m.starts_with("while parsing a flow sequence") => SyntaxError::new(
            one_char.clone(),
            "unclosed `[` list",
            "expected `,` or `]` before this",
            "close the `[` list with `]`, separating its items with `,`",
        ),
        m if m.starts_with("while parsing a flow mapping") => SyntaxError::new(
            one_char.clone(),
            "unclosed `{` mapping",
            "expected `,` or `}` before this",
            "close the `{` mapping with `}`, separating its entries with `,`",
        ),
        m if m.starts_with("while parsing a block mapping") => {
            general("indent this line like the keys of the mapping it belongs to (keys of one mapping start in the same column)")
        }
        m if m.starts_with("while parsing a block collection") => general("items of a list start with `- `, all at the same indentation"),
        "block sequence entries are not allowed in this context" => {
            general("a `- ` list item cannot follow a value: put the list under a key of its own, its items indented below it")
        }
        m if m.contains("did not find expected node content") => SyntaxError::new(
            one_char.clone(),
            "missing value",
            "expected a value here",
            "write a value, or close the `[` or `{` opened before it",
        ),
        m if m.starts_with("simple key expect") => SyntaxError::new(
            one_char.clone(),
            "expected `:` after a key",
            "here",
            "a key is followed by `:` and a space (`key: value`); check this line and the one above for an unfinished key or value",
        ),
        m if m.contains("expected <document start>") => SyntaxError::new(
            one_char.clone(),
            "content after the end of the document",
            "unexpected here",
            "a manifest is one YAML document: remove stray `---` or `...` lines, and check that the line above is complete",
        ),
        m if m.contains("unknown anchor") => general("define the anchor (`&name`) before the alias that uses it (`*name`)"),
        m if m.starts_with("recursion limit") => general("check the brackets and indentation: a manifest nests a few levels at most"),
        m if m.contains("cannot start any token") => {
            general("quote the value: some characters (`@`, `` ` ``, `%`, `|`, `>`) cannot start an unquoted YAML value")
        }
        _ => general("check this line against YAML's syntax: `key: value`, `- item`, indentation with spaces"),
    }
}

/// The flow collection left open before `at`, if any: its bracket, and where to point — the
/// closing bracket that does not match it, else the end of the line that opened it.
fn unclosed_flow(text: &str, at: usize) -> Option<(char, usize)> {
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut previous = '\n';
    for (i, c) in text[..at.min(text.len())].char_indices() {
        if comment {
            comment = c != '\n';
        } else if let Some(q) = quote {
            if c == q {
                quote = None;
            }
        } else {
            match c {
                '"' | '\'' if !previous.is_alphanumeric() => quote = Some(c),
                '#' if previous.is_whitespace() => comment = true,
                '[' | '{' => open.push((c, i)),
                ']' | '}' => match open.pop() {
                    Some((o, _)) if (o == '[') == (c == ']') => {}
                    Some((o, _)) => return Some((o, i)),
                    None => return None,
                },
                _ => {}
            }
        }
        previous = c;
    }
    // Still open where the parser stopped: blamed only when that is on a later line (an error
    // inside the brackets' own line is about something else).
    let (bracket, start) = open.pop()?;
    let line_end = text[start..].find('\n').map_or(text.len(), |n| start + n);
    (at > line_end).then(|| (bracket, text[..line_end].trim_end().len()))
}

/// `"missing comma, expected `,`"` → (`"missing comma"`, `Some("`,`")`).
fn split_expected(message: &str) -> (&str, Option<&str>) {
    let message = message.trim().trim_end_matches('.');
    match message.split_once(", expected ") {
        Some((what, expected)) => (what, Some(expected)),
        None => (message, None),
    }
}

fn clamp(text: &str, span: Span) -> Span {
    let start = floor_char_boundary(text, span.start.min(text.len()));
    let end = floor_char_boundary(text, span.end.clamp(start, text.len()));
    start..end
}

/// The byte range of the line holding `offset`, without its `\n` (a `\r` before it stays).
pub(crate) fn line_around(text: &str, offset: usize) -> Span {
    let offset = floor_char_boundary(text, offset.min(text.len()));
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    start..end
}

fn line_number(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// A line without its `# comment` (a `#` outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '#') => return &line[..i],
            _ => {}
        }
    }
    line
}
