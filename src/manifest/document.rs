//! A format-neutral tree of the manifest with a byte span on every key and value.
//!
//! TOML and YAML manifests are parsed into the same [`Node`] tree so that every later
//! phase (shape check, resolution, JSON Schema) is written once. Spans are byte ranges into
//! the manifest's text; they are what lets every diagnostic point at the exact key or value.
//!
//! TOML comes from `toml`'s spanned `DeTable` parser. YAML comes from `saphyr-parser`'s
//! spanned event parser: `serde_yaml` only reports locations for syntax errors, never for
//! values, and a diagnostic about a value needs the value's span.

use std::ops::Range;

pub type Span = Range<usize>;

#[derive(Debug, Clone)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Debug, Clone)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
    Array(Vec<Node>),
    Table(Vec<Entry>),
    /// YAML `null` / `~` / an empty value.
    Null,
    /// A TOML date-time: valid TOML, never a valid manifest value.
    Datetime,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub node: Node,
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Null => "null",
            Value::Datetime => "a date-time",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self.value {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self.value {
            Value::Integer(i) => Some(i),
            _ => None,
        }
    }

    /// Integers are accepted where a float is expected (`atol = 1`).
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Float(f) => Some(f),
            Value::Integer(i) => Some(i as f64),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_table(&self) -> Option<&[Entry]> {
        match &self.value {
            Value::Table(entries) => Some(entries),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|e| &e.node)
    }

    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.as_table()?.iter().find(|e| e.key == key)
    }
}

pub use super::syntax::SyntaxError;

pub mod toml_format {
    use super::*;
    use toml::de::{DeTable, DeValue};
    use toml::Spanned;

    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            let raw = errors.iter().map(|e| (e.message().to_string(), e.span().unwrap_or(0..0))).collect();
            return Err(super::super::syntax::explain_toml(text, raw));
        }
        Ok(Node { value: table_value(table.get_ref()), span: 0..text.len() })
    }

    fn table_value(table: &DeTable<'_>) -> Value {
        Value::Table(
            table.iter().map(|(key, value)| Entry { key: key.get_ref().to_string(), key_span: key.span(), node: node(value) }).collect(),
        )
    }

    fn node(value: &Spanned<DeValue<'_>>) -> Node {
        let span = value.span();
        let value = match value.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(i) => Value::Integer(i),
                // Beyond i64: kept as the (huge) number it is, so that the range check reports it.
                Err(_) => Value::Float(i.as_str().parse().unwrap_or(f64::INFINITY)),
            },
            DeValue::Float(f) => Value::Float(f.as_str().parse().unwrap_or(f64::NAN)),
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(_) => Value::Datetime,
            DeValue::Array(items) => Value::Array(items.iter().map(node).collect()),
            DeValue::Table(table) => table_value(table),
        };
        Node { value, span }
    }
}

pub mod yaml_format {
    //! YAML through `saphyr-parser`'s spanned event parser, which gives every event a start and
    //! an end. Spans are the parser's, with three corrections: a quoted scalar's span runs on to
    //! the next token (past spaces and a comment), so it is cut at its closing quote; a block
    //! collection's end is empty, so a mapping spans from its first key to its last value; and
    //! a multi-line scalar is shown by its first line. Anchors and aliases are resolved (an
    //! alias copies its node, with the alias's span) up to a bounded expansion, nesting is
    //! bounded, duplicate keys are reported, and only the YAML core schema's tags are accepted.
    use super::*;
    use saphyr_parser::{Event, Parser, ScalarStyle, SpannedEventReceiver, Tag};

    use crate::manifest::syntax::{explain_yaml, line_around};

    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let offsets = CharOffsets::new(text);
        let mut builder = Builder {
            text,
            offsets: &offsets,
            stack: Vec::new(),
            too_deep: 0,
            anchors: Vec::new(),
            root: None,
            errors: Vec::new(),
            documents: 0,
            nodes: 0,
            max_nodes: MAX_NODES_BASE + MAX_NODES_PER_BYTE * text.len(),
        };
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, true) {
            return Err(vec![explain_yaml(text, e.info(), offsets.byte(e.marker().index()))]);
        }
        if !builder.errors.is_empty() {
            return Err(builder.errors);
        }
        match builder.root {
            Some(node) => Ok(node),
            // An empty file is an empty table: the shape check then says what to write.
            None => Ok(Node { value: Value::Table(Vec::new()), span: 0..0 }),
        }
    }

    /// Maps the parser's character indices to byte offsets.
    struct CharOffsets(Vec<usize>);

    impl CharOffsets {
        fn new(text: &str) -> Self {
            let mut offsets: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            offsets.push(text.len());
            CharOffsets(offsets)
        }

        fn byte(&self, char_index: usize) -> usize {
            self.0.get(char_index).copied().unwrap_or_else(|| *self.0.last().unwrap_or(&0))
        }
    }

    enum Open {
        Sequence { start: usize, items: Vec<Node>, anchor: usize },
        Mapping { start: usize, entries: Vec<Entry>, key: Option<Node>, anchor: usize },
    }

    /// Aliases may expand a document to at most this many nodes, plus [`MAX_NODES_PER_BYTE`]
    /// per byte of the file: a manifest's anchors save typing, never orders of magnitude, and
    /// the "billion laughs" (aliases of aliases, each ten times the one before) must not take
    /// the machine. serde_yaml and PyYAML's safe loader cap expansion the same way.
    const MAX_NODES_BASE: usize = 10_000;
    const MAX_NODES_PER_BYTE: usize = 4;

    /// Collections nest at most this deep (a manifest needs four or five levels); deeper, the
    /// parser would go on, but the tree it describes is refused.
    const MAX_DEPTH: usize = 64;

    struct Builder<'a> {
        text: &'a str,
        offsets: &'a CharOffsets,
        /// Open collections, each with whether it is a flow (`[...]`, `{...}`) collection.
        stack: Vec<(Open, bool)>,
        /// Collections open past [`MAX_DEPTH`], whose events are skipped.
        too_deep: usize,
        /// Anchored nodes with the number of nodes in each.
        anchors: Vec<(usize, Node, usize)>,
        root: Option<Node>,
        errors: Vec<SyntaxError>,
        documents: usize,
        /// Nodes built so far, aliases counted at their expanded size.
        nodes: usize,
        max_nodes: usize,
    }

    /// The nodes in `node`'s tree (stops counting past `limit`).
    fn tree_size(node: &Node, limit: usize) -> usize {
        let mut count = 1;
        match &node.value {
            Value::Array(items) => {
                for item in items {
                    count += tree_size(item, limit);
                    if count > limit {
                        break;
                    }
                }
            }
            Value::Table(entries) => {
                for entry in entries {
                    count += tree_size(&entry.node, limit) + 1;
                    if count > limit {
                        break;
                    }
                }
            }
            _ => {}
        }
        count
    }

    impl Builder<'_> {
        fn span(&self, span: saphyr_parser::Span) -> Span {
            self.offsets.byte(span.start.index())..self.offsets.byte(span.end.index())
        }

        /// A scalar's span as shown: quoted scalars end at their closing quote, multi-line ones
        /// with their first line; at least one character, so that a caret shows.
        fn scalar_span(&self, span: Span, style: ScalarStyle) -> Span {
            let text = &self.text[span.clone()];
            let len = match style {
                ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                    let quote = if style == ScalarStyle::SingleQuoted { '\'' } else { '"' };
                    // A tag may come first (`!!str "x"`).
                    text.find(quote).map_or(text.len(), |at| at + quoted_len(&text[at..], quote))
                }
                _ => text.split('\n').next().unwrap_or("").trim_end().len(),
            };
            let first = self.text[span.start..].chars().next().map_or(0, char::len_utf8);
            span.start..span.start + len.max(first)
        }

        fn push_node(&mut self, node: Node, anchor: usize) {
            if anchor > 0 {
                let size = tree_size(&node, self.max_nodes);
                self.anchors.push((anchor, node.clone(), size));
            }
            match self.stack.last_mut() {
                None if self.documents > 1 => {}
                None => self.root = Some(node),
                Some((Open::Sequence { items, .. }, _)) => items.push(node),
                Some((Open::Mapping { entries, key, .. }, _)) => match key.take() {
                    None => *key = Some(node),
                    Some(k) => {
                        let name = match &k.value {
                            Value::String(s) => s.clone(),
                            Value::Integer(i) => i.to_string(),
                            Value::Float(f) => f.to_string(),
                            Value::Bool(b) => b.to_string(),
                            Value::Null => "null".into(),
                            _ => {
                                self.errors.push(SyntaxError::new(
                                    k.span.clone(),
                                    "keys must be plain strings, not collections",
                                    "a collection as a key",
                                    "write the key as a plain word, e.g. `source:`",
                                ));
                                return;
                            }
                        };
                        if let Some(first) = entries.iter().find(|e| e.key == name) {
                            let (line, _) = line_col(self.text, first.key_span.start);
                            self.errors.push(SyntaxError::new(
                                k.span.clone(),
                                format!("duplicate key `{name}`"),
                                "set again",
                                format!("`{name}` is already set on line {line} of this mapping: keep one of the two (YAML does not merge them)"),
                            ));
                            return;
                        }
                        entries.push(Entry { key: name, key_span: k.span, node });
                    }
                },
            }
        }

        /// Opens a collection, unless the document already nests too deeply.
        fn open(&mut self, open: Open, span: &Span) -> bool {
            if self.too_deep > 0 || self.stack.len() >= MAX_DEPTH {
                if self.too_deep == 0 {
                    self.errors.push(SyntaxError::new(
                        span.start..span.start + 1,
                        "the value is nested too deeply",
                        format!("more than {MAX_DEPTH} levels"),
                        "check the brackets and indentation: a manifest nests a few levels at most",
                    ));
                }
                self.too_deep += 1;
                return false;
            }
            // The span of a flow collection's start ends with its bracket (after an anchor or a
            // tag); a block collection's is empty or holds only its anchor and tag.
            let flow = self.text[span.clone()].trim_end().ends_with(['[', '{']);
            let start = if flow { span.start + self.text[span.clone()].trim_end().len() - 1 } else { span.start };
            let open = match open {
                Open::Sequence { items, anchor, .. } => Open::Sequence { start, items, anchor },
                Open::Mapping { entries, key, anchor, .. } => Open::Mapping { start, entries, key, anchor },
            };
            self.stack.push((open, flow));
            true
        }

        /// The value of a scalar, by its tag or, untagged, by the YAML 1.2 core schema.
        fn scalar_value(&mut self, text: String, style: ScalarStyle, tag: Option<&Tag>, span: Span) -> Value {
            let Some(tag) = tag else {
                return if style == ScalarStyle::Plain { plain_scalar(text) } else { Value::String(text) };
            };
            let core = tag.handle == CORE_TAGS;
            let value = match tag.suffix.as_str() {
                "str" if core => return Value::String(text),
                "int" | "float" | "bool" | "null" if core => plain_scalar(text.clone()),
                _ => {
                    self.errors.push(unsupported_tag(tag, span));
                    return Value::Null;
                }
            };
            let fits = matches!(
                (tag.suffix.as_str(), &value),
                ("int", Value::Integer(_))
                    | ("float", Value::Float(_) | Value::Integer(_))
                    | ("bool", Value::Bool(_))
                    | ("null", Value::Null)
            );
            if !fits {
                self.errors.push(SyntaxError::new(
                    span,
                    format!("`{text}` is not a valid `!!{}`", tag.suffix),
                    format!("not a YAML {}", tag.suffix),
                    format!("write a {} after `!!{}`, or drop the tag", tag.suffix, tag.suffix),
                ));
            }
            match (tag.suffix.as_str(), value) {
                ("float", Value::Integer(i)) => Value::Float(i as f64),
                (_, value) => value,
            }
        }

        fn collection_tag(&mut self, tag: Option<&Tag>, span: &Span) {
            let Some(tag) = tag else { return };
            let core = tag.handle == CORE_TAGS && matches!(tag.suffix.as_str(), "map" | "seq");
            if !core {
                // The span starts at the anchor or the tag; the tag is the token with a `!`.
                let text = &self.text[span.clone()];
                let start = span.start + text.find('!').unwrap_or(0);
                let end = self.text[start..].find(char::is_whitespace).map_or(self.text.len(), |i| start + i);
                self.errors.push(unsupported_tag(tag, start..end));
            }
        }

        fn alias(&mut self, id: usize, span: Span) {
            let size = self.anchors.iter().rev().find(|(a, _, _)| *a == id).map(|(_, _, size)| *size);
            if let Some(size) = size {
                self.nodes = self.nodes.saturating_add(size);
                if self.nodes > self.max_nodes {
                    let name = self.text[span.clone()].trim_start_matches('*').to_string();
                    if self.errors.iter().all(|e| e.message != "YAML aliases expand too far") {
                        self.errors.push(SyntaxError::new(
                            span,
                            "YAML aliases expand too far",
                            format!("`*{name}` takes the expansion past {} nodes", self.max_nodes),
                            format!(
                                "anchor `&{name}` and its aliases repeat each other until the document is vastly larger than its file \
                                 (a \"billion laughs\"): write the values out, or use fewer nested aliases"
                            ),
                        ));
                    }
                    return;
                }
            }
            let found = self.anchors.iter().rev().find(|(a, _, _)| *a == id).map(|(_, n, _)| n.clone());
            match found {
                Some(mut node) => {
                    node.span = span;
                    self.push_node(node, 0);
                }
                None => self.errors.push(SyntaxError::new(
                    span,
                    "unknown YAML alias",
                    "no anchor of this name",
                    "define the anchor (`&name`) before the alias that uses it (`*name`)",
                )),
            }
        }
    }

    const CORE_TAGS: &str = "tag:yaml.org,2002:";

    fn unsupported_tag(tag: &Tag, span: Span) -> SyntaxError {
        let name = if tag.handle == CORE_TAGS { format!("!!{}", tag.suffix) } else { format!("{}{}", tag.handle, tag.suffix) };
        SyntaxError::new(
            span,
            format!("unsupported YAML tag `{name}`"),
            "not supported",
            "exportctl reads plain YAML: write the value itself, without a tag (no includes, no Python objects)",
        )
    }

    impl<'input> SpannedEventReceiver<'input> for Builder<'_> {
        fn on_event(&mut self, event: Event<'input>, span: saphyr_parser::Span) {
            let span = self.span(span);
            if self.too_deep > 0 {
                match event {
                    Event::SequenceStart(..) | Event::MappingStart(..) => self.too_deep += 1,
                    Event::SequenceEnd | Event::MappingEnd => self.too_deep -= 1,
                    _ => {}
                }
                return;
            }
            match event {
                Event::DocumentStart(_) => {
                    self.documents += 1;
                    if self.documents == 2 {
                        let line = line_around(self.text, span.start);
                        self.errors.push(SyntaxError::new(
                            span.start..line.end.max(span.start),
                            "a manifest holds one YAML document; found several",
                            "a second document starts here",
                            "remove the `---` line and merge the documents into one mapping",
                        ));
                    }
                }
                Event::Scalar(text, style, anchor, tag) => {
                    // An empty value is an empty span right after its `:` or `-` (the parser
                    // marks it at that indicator).
                    let span = if text.is_empty() && style == ScalarStyle::Plain && tag.is_none() {
                        let after = span.start + usize::from(matches!(self.text.as_bytes().get(span.start), Some(b':' | b'-')));
                        after..after
                    } else {
                        self.scalar_span(span, style)
                    };
                    let value = self.scalar_value(text.into_owned(), style, tag.as_deref(), span.clone());
                    self.push_node(Node { value, span }, anchor);
                }
                Event::SequenceStart(anchor, tag) => {
                    self.collection_tag(tag.as_deref(), &span);
                    self.open(Open::Sequence { start: 0, items: Vec::new(), anchor }, &span);
                }
                Event::MappingStart(anchor, tag) => {
                    self.collection_tag(tag.as_deref(), &span);
                    self.open(Open::Mapping { start: 0, entries: Vec::new(), key: None, anchor }, &span);
                }
                Event::SequenceEnd => {
                    if let Some((Open::Sequence { start, items, anchor }, flow)) = self.stack.pop() {
                        let end = match (flow, items.last()) {
                            (true, _) => (span.start + 1).min(self.text.len()),
                            (false, Some(last)) => last.span.end,
                            (false, None) => start,
                        };
                        self.push_node(Node { value: Value::Array(items), span: start..end.max(start) }, anchor);
                    }
                }
                Event::MappingEnd => {
                    if let Some((Open::Mapping { start, entries, anchor, .. }, flow)) = self.stack.pop() {
                        let span = match (flow, entries.first(), entries.last()) {
                            (true, ..) => start..(span.start + 1).min(self.text.len()),
                            (false, Some(first), Some(last)) => {
                                let start = first.key_span.start.min(start);
                                start..last.node.span.end.max(last.key_span.end)
                            }
                            _ => start..start,
                        };
                        self.push_node(Node { value: Value::Table(entries), span }, anchor);
                    }
                }
                Event::Alias(id) => self.alias(id, span),
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            }
        }
    }

    /// A quoted scalar's length up to its closing quote (the rest of the text when unclosed).
    /// In single quotes `''` is an escaped quote; in double quotes a backslash escapes.
    fn quoted_len(rest: &str, quote: char) -> usize {
        let mut chars = rest.char_indices().skip(1).peekable();
        while let Some((i, c)) = chars.next() {
            if quote == '"' && c == '\\' {
                chars.next();
            } else if c == quote {
                if quote == '\'' && chars.peek().is_some_and(|(_, next)| *next == '\'') {
                    chars.next();
                } else {
                    return i + 1;
                }
            }
        }
        rest.len()
    }

    fn line_col(text: &str, offset: usize) -> (usize, usize) {
        let before = &text[..offset.min(text.len())];
        (before.matches('\n').count() + 1, before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1)
    }

    /// The YAML 1.2 core schema for plain scalars.
    fn plain_scalar(text: String) -> Value {
        match text.as_str() {
            "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
            "true" | "True" | "TRUE" => return Value::Bool(true),
            "false" | "False" | "FALSE" => return Value::Bool(false),
            ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Value::Float(f64::INFINITY),
            "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
            ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
            _ => {}
        }
        let digits = text.strip_prefix(['-', '+']).unwrap_or(&text);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(i) = text.parse::<i64>() {
                return Value::Integer(i);
            }
        }
        if let Some(hex) = text.strip_prefix("0x") {
            if let Ok(i) = i64::from_str_radix(hex, 16) {
                return Value::Integer(i);
            }
        }
        if let Some(oct) = text.strip_prefix("0o") {
            if let Ok(i) = i64::from_str_radix(oct, 8) {
                return Value::Integer(i);
            }
        }
        let looks_numeric = digits.starts_with(|c: char| c.is_ascii_digit() || c == '.')
            && digits.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'));
        if looks_numeric {
            if let Ok(f) = text.parse::<f64>() {
                return Value::Float(f);
            }
        }
        Value::String(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str) -> Node {
        yaml_format::parse(text).unwrap_or_else(|e| panic!("{e:?}"))
    }

    /// The text a node's span covers.
    fn spanned<'t>(text: &'t str, node: &Node) -> &'t str {
        &text[node.span.clone()]
    }

    fn at<'n>(node: &'n Node, path: &[&str]) -> &'n Node {
        path.iter().fold(node, |n, key| n.get(key).unwrap_or_else(|| panic!("no `{key}`")))
    }

    #[test]
    fn yaml_plain_scalars_end_before_comments_and_colons() {
        let text = "a: models/x.keras   # the model\nb: build.py:build\nc: 1e-5\n";
        let tree = yaml(text);
        assert_eq!(spanned(text, at(&tree, &["a"])), "models/x.keras");
        assert_eq!(spanned(text, at(&tree, &["b"])), "build.py:build");
        assert_eq!(spanned(text, at(&tree, &["c"])), "1e-5");
        assert!(matches!(at(&tree, &["c"]).value, Value::Float(f) if f == 1e-5));
    }

    #[test]
    fn yaml_quoted_scalars_span_their_quotes_and_escapes() {
        let text = "a: \"say \\\"hi\\\"\" # c\nb: 'it''s'\nc: \"日本\"\n";
        let tree = yaml(text);
        assert_eq!(spanned(text, at(&tree, &["a"])), "\"say \\\"hi\\\"\"");
        assert_eq!(at(&tree, &["a"]).as_str(), Some("say \"hi\""));
        assert_eq!(spanned(text, at(&tree, &["b"])), "'it''s'");
        assert_eq!(at(&tree, &["b"]).as_str(), Some("it's"));
        assert_eq!(spanned(text, at(&tree, &["c"])), "\"日本\"");
    }

    #[test]
    fn yaml_flow_collections_span_their_brackets_and_items() {
        let text = "to: [a, \"b c\", d]\nbn: {momentum: 0.9, epsilon: 1e-3}\n";
        let tree = yaml(text);
        let to = at(&tree, &["to"]);
        assert_eq!(spanned(text, to), "[a, \"b c\", d]");
        let items: Vec<&str> = to.as_array().unwrap().iter().map(|i| spanned(text, i)).collect();
        assert_eq!(items, ["a", "\"b c\"", "d"]);
        assert_eq!(spanned(text, at(&tree, &["bn"])), "{momentum: 0.9, epsilon: 1e-3}");
        assert_eq!(spanned(text, at(&tree, &["bn", "epsilon"])), "1e-3");
    }

    #[test]
    fn yaml_block_mappings_span_from_their_first_key_to_their_last_value() {
        let text = "project:\n  name: vision   # the name\n  version: 2 # comment\n# trailing\nmodels: {}\n";
        let tree = yaml(text);
        assert_eq!(spanned(text, at(&tree, &["project"])), "name: vision   # the name\n  version: 2");
        let entry = tree.entry("project").unwrap();
        assert_eq!(&text[entry.key_span.clone()], "project");
        assert_eq!(tree.span.start, 0);
    }

    #[test]
    fn yaml_sequence_items_are_mappings_spanning_their_keys() {
        let text = "pieces:\n  - name: a\n    to: x\n  - name: b\n";
        let tree = yaml(text);
        let items = at(&tree, &["pieces"]).as_array().unwrap();
        assert_eq!(spanned(text, &items[0]), "name: a\n    to: x");
        assert_eq!(spanned(text, &items[1]), "name: b");
    }

    #[test]
    fn yaml_empty_values_sit_right_after_their_colon() {
        let text = "model:\n  source:   # todo\n  pieces:\n";
        let tree = yaml(text);
        let source = at(&tree, &["model", "source"]);
        assert!(matches!(source.value, Value::Null));
        assert_eq!(source.span, 16..16, "after `source:`, not at the next key");
        assert_eq!(at(&tree, &["model", "pieces"]).span.start, text.len() - 1);
    }

    #[test]
    fn a_billion_laughs_is_stopped_at_the_alias_that_goes_too_far() {
        let mut text = String::from("a: &a [\"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\", \"lol\"]\n");
        let names = ["b", "c", "d", "e", "f", "g", "h", "i"];
        let mut previous = "a";
        for name in names {
            let aliases = vec![format!("*{previous}"); 10].join(", ");
            text.push_str(&format!("{name}: &{name} [{aliases}]\n"));
            previous = name;
        }
        let errors = yaml_format::parse(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].message, "YAML aliases expand too far");
        assert!(errors[0].help.contains("billion laughs"), "{}", errors[0].help);
        assert!(errors[0].label.starts_with("`*"), "{}", errors[0].label);
    }

    #[test]
    fn yaml_aliases_copy_the_anchored_node_with_the_alias_span() {
        let text = "a: &v {atol: 0}\nb: *v\n";
        let tree = yaml(text);
        let b = at(&tree, &["b"]);
        assert_eq!(spanned(text, b), "*v");
        // The values inside keep the anchor's spans: that is where the fix goes.
        assert_eq!(spanned(text, at(b, &["atol"])), "0");
        assert_eq!(at(b, &["atol"]).span, at(&tree, &["a", "atol"]).span);
    }

    #[test]
    fn yaml_core_tags_are_read_and_other_tags_rejected_at_the_tag() {
        let tree = yaml("a: !!str 12\nb: !!int \"7\"\nc: !!float 1\n");
        assert_eq!(at(&tree, &["a"]).as_str(), Some("12"));
        assert_eq!(at(&tree, &["b"]).as_i64(), Some(7));
        assert!(matches!(at(&tree, &["c"]).value, Value::Float(f) if f == 1.0));

        let text = "a: !include other.yaml\nb: !!bool maybe\n";
        let errors = yaml_format::parse(text).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert_eq!(&text[errors[0].span.clone()], "!include other.yaml");
        assert!(errors[0].message.contains("`!include`"));
        assert!(errors[1].message.contains("not a valid `!!bool`"), "{}", errors[1].message);
    }

    #[test]
    fn yaml_duplicate_keys_name_the_first_one() {
        let text = "a: 1\nb: 2\na: 3\n";
        let errors = yaml_format::parse(text).unwrap_err();
        assert_eq!(errors[0].message, "duplicate key `a`");
        assert_eq!(errors[0].span, 10..11);
        assert!(errors[0].help.contains("line 1"), "{}", errors[0].help);
    }

    #[test]
    fn yaml_spans_are_byte_offsets_after_multibyte_text() {
        let text = "# ünïcödé 🦀\nname: vision\n";
        let tree = yaml(text);
        assert_eq!(spanned(text, at(&tree, &["name"])), "vision");
    }

    #[test]
    fn toml_integers_beyond_i64_are_kept_as_huge_numbers() {
        let tree = toml_format::parse("version = 99999999999999999999\n").unwrap();
        assert!(matches!(at(&tree, &["version"]).value, Value::Float(f) if f == 1e20));
    }

    #[test]
    fn toml_tables_span_their_headers() {
        let text = "[project]\nname = \"v\"\n\n[[models.m.pieces]]\nname = \"p\"\n";
        let tree = toml_format::parse(text).unwrap();
        assert_eq!(spanned(text, at(&tree, &["project"])), "[project]");
        let pieces = at(&tree, &["models", "m", "pieces"]).as_array().unwrap();
        assert_eq!(spanned(text, &pieces[0]), "[[models.m.pieces]]");
    }
}
