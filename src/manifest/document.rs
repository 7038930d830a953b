//! A format-neutral tree of the manifest with a byte span on every key and value.
//!
//! TOML and YAML manifests are parsed into the same [`Node`] tree so that every later
//! phase (shape check, resolution, JSON Schema) is written once. Spans are byte ranges into
//! the manifest's text; they are what lets every diagnostic point at the exact key or value.
//!
//! TOML comes from `toml`'s spanned `DeTable` parser. YAML comes from `yaml-rust2`'s marked
//! event parser: `serde_yaml` only reports locations for syntax errors, never for values, and
//! a diagnostic about a value needs the value's span.

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

/// A syntax error of the manifest file, before any tree exists.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    pub message: String,
    pub span: Span,
}

pub mod toml_format {
    use super::*;
    use toml::de::{DeTable, DeValue};
    use toml::Spanned;

    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let (table, errors) = DeTable::parse_recoverable(text);
        if !errors.is_empty() {
            return Err(errors
                .iter()
                .map(|e| SyntaxError {
                    message: tidy_message(e.message()),
                    span: e.span().unwrap_or(0..0),
                })
                .collect());
        }
        let span = 0..text.len();
        Ok(Node {
            value: table_value(table.get_ref()),
            span,
        })
    }

    fn tidy_message(message: &str) -> String {
        message.trim().trim_end_matches('.').to_string()
    }

    fn table_value(table: &DeTable<'_>) -> Value {
        Value::Table(
            table
                .iter()
                .map(|(key, value)| Entry {
                    key: key.get_ref().to_string(),
                    key_span: key.span(),
                    node: node(value),
                })
                .collect(),
        )
    }

    fn node(value: &Spanned<DeValue<'_>>) -> Node {
        let span = value.span();
        let value = match value.get_ref() {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(i) => Value::Integer(i),
                // Out of range for i64: no manifest key accepts such a number anyway.
                Err(_) => Value::Float(f64::INFINITY),
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
    //! YAML through `yaml-rust2`'s event parser. Markers give the start of each event as a
    //! character index; a scalar's end is found by scanning its text, a collection ends where
    //! its closing event starts. Anchors and aliases are resolved (an alias copies its node,
    //! with the alias's span), duplicate keys are reported, tags other than the core ones are
    //! rejected.
    use super::*;
    use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
    use yaml_rust2::scanner::{Marker, TScalarStyle};

    pub fn parse(text: &str) -> Result<Node, Vec<SyntaxError>> {
        let offsets = CharOffsets::new(text);
        let mut builder = Builder {
            text,
            offsets: &offsets,
            stack: Vec::new(),
            anchors: Vec::new(),
            root: None,
            errors: Vec::new(),
            documents: 0,
        };
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut builder, true) {
            let at = offsets.byte(e.marker().index());
            return Err(vec![SyntaxError {
                message: e.info().to_string(),
                span: at..at,
            }]);
        }
        if !builder.errors.is_empty() {
            return Err(builder.errors);
        }
        match builder.root {
            Some(node) => Ok(node),
            // An empty file is an empty table: the resolver then reports the missing keys.
            None => Ok(Node {
                value: Value::Table(Vec::new()),
                span: 0..0,
            }),
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
            self.0
                .get(char_index)
                .copied()
                .unwrap_or_else(|| *self.0.last().unwrap_or(&0))
        }
    }

    enum Open {
        Sequence { start: usize, items: Vec<Node>, anchor: usize },
        Mapping { start: usize, entries: Vec<Entry>, key: Option<Node>, anchor: usize },
    }

    struct Builder<'a> {
        text: &'a str,
        offsets: &'a CharOffsets,
        stack: Vec<(Open, usize)>,
        anchors: Vec<(usize, Node)>,
        root: Option<Node>,
        errors: Vec<SyntaxError>,
        documents: usize,
    }

    impl Builder<'_> {
        fn scalar_end(&self, start: usize, style: TScalarStyle) -> usize {
            let rest = &self.text[start.min(self.text.len())..];
            let len = match style {
                TScalarStyle::SingleQuoted | TScalarStyle::DoubleQuoted => {
                    let quote = if style == TScalarStyle::SingleQuoted { '\'' } else { '"' };
                    let mut escaped = false;
                    let mut end = rest.len();
                    for (i, c) in rest.char_indices().skip(1) {
                        if style == TScalarStyle::DoubleQuoted && c == '\\' && !escaped {
                            escaped = true;
                            continue;
                        }
                        if c == quote && !escaped {
                            end = i + 1;
                            break;
                        }
                        escaped = false;
                    }
                    end
                }
                TScalarStyle::Plain => {
                    let line = rest.split('\n').next().unwrap_or("");
                    let mut end = line.len();
                    for (i, c) in line.char_indices() {
                        let in_flow = self.stack.iter().any(|(_, flow)| *flow > 0);
                        if (c == '#' && i > 0 && line[..i].ends_with([' ', '\t']))
                            || (in_flow && matches!(c, ',' | ']' | '}'))
                            || (c == ':' && line[i + 1..].starts_with([' ', '\t']))
                            || (c == ':' && i + 1 == line.len())
                        {
                            end = i;
                            break;
                        }
                    }
                    line[..end].trim_end().len()
                }
                _ => rest.split('\n').next().unwrap_or("").trim_end().len(),
            };
            start + len.max(if rest.is_empty() { 0 } else { 1 })
        }

        fn push_node(&mut self, node: Node, anchor: usize) {
            if anchor > 0 {
                self.anchors.push((anchor, node.clone()));
            }
            match self.stack.last_mut() {
                None => {
                    if self.documents > 1 {
                        self.errors.push(SyntaxError {
                            message: "a manifest holds one YAML document; found several".into(),
                            span: node.span.clone(),
                        });
                    } else {
                        self.root = Some(node);
                    }
                }
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
                                self.errors.push(SyntaxError {
                                    message: "keys must be plain strings, not collections".into(),
                                    span: k.span.clone(),
                                });
                                return;
                            }
                        };
                        if entries.iter().any(|e| e.key == name) {
                            self.errors.push(SyntaxError {
                                message: format!("duplicate key `{name}`"),
                                span: k.span.clone(),
                            });
                            return;
                        }
                        entries.push(Entry {
                            key: name,
                            key_span: k.span,
                            node,
                        });
                    }
                },
            }
        }

        fn is_flow(&self, start: usize) -> bool {
            matches!(self.text.as_bytes().get(start), Some(b'[' | b'{'))
        }
    }

    impl MarkedEventReceiver for Builder<'_> {
        fn on_event(&mut self, event: Event, mark: Marker) {
            let at = self.offsets.byte(mark.index());
            match event {
                Event::DocumentStart => self.documents += 1,
                Event::Scalar(text, style, anchor, tag) => {
                    let end = self.scalar_end(at, style);
                    let value = if let Some(tag) = &tag {
                        if tag.handle == "!!" && tag.suffix == "str" {
                            Value::String(text)
                        } else {
                            self.errors.push(SyntaxError {
                                message: format!(
                                    "unsupported YAML tag `{}{}`",
                                    tag.handle, tag.suffix
                                ),
                                span: at..end,
                            });
                            Value::Null
                        }
                    } else if style != TScalarStyle::Plain {
                        Value::String(text)
                    } else {
                        plain_scalar(text)
                    };
                    self.push_node(Node { value, span: at..end }, anchor);
                }
                Event::SequenceStart(anchor, _) => {
                    let flow = usize::from(self.is_flow(at));
                    self.stack.push((Open::Sequence { start: at, items: Vec::new(), anchor }, flow));
                }
                Event::MappingStart(anchor, _) => {
                    let flow = usize::from(self.is_flow(at));
                    self.stack.push((
                        Open::Mapping { start: at, entries: Vec::new(), key: None, anchor },
                        flow,
                    ));
                }
                Event::SequenceEnd => {
                    if let Some((Open::Sequence { start, items, anchor }, flow)) = self.stack.pop() {
                        let end = collection_end(self.text, at, flow > 0);
                        self.push_node(Node { value: Value::Array(items), span: start..end }, anchor);
                    }
                }
                Event::MappingEnd => {
                    if let Some((Open::Mapping { start, entries, anchor, .. }, flow)) = self.stack.pop() {
                        let end = collection_end(self.text, at, flow > 0);
                        self.push_node(Node { value: Value::Table(entries), span: start..end }, anchor);
                    }
                }
                Event::Alias(id) => {
                    let found = self.anchors.iter().rev().find(|(a, _)| *a == id).map(|(_, n)| n.clone());
                    match found {
                        Some(mut node) => {
                            node.span = at..self.scalar_end(at, TScalarStyle::Plain);
                            self.push_node(node, 0);
                        }
                        None => self.errors.push(SyntaxError {
                            message: "unknown YAML alias".into(),
                            span: at..at + 1,
                        }),
                    }
                }
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            }
        }
    }

    /// A block collection's closing event is reported at the next token, often lines later:
    /// end the span at the last non-blank character before it.
    fn collection_end(text: &str, at: usize, flow: bool) -> usize {
        let at = at.min(text.len());
        if flow {
            return (at + 1).min(text.len());
        }
        let before = &text[..at];
        let mut end = before.trim_end().len();
        // Drop a trailing comment line from the span.
        while let Some(line_start) = text[..end].rfind('\n').map(|i| i + 1) {
            if text[line_start..end].trim_start().starts_with('#') {
                end = text[..line_start].trim_end().len();
            } else {
                break;
            }
        }
        end
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
