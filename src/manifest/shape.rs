//! The shape check: the parsed tree against the declared keys of [`super::schema`].
//!
//! Reports unknown keys (with did-you-mean), values of the wrong type, numbers out of range,
//! strings outside their set, and missing required keys. It knows nothing of the meaning of
//! values; `resolve.rs` does the checks that do.

use super::diagnostic::ManifestError;
use super::document::{Node, Value};
use super::schema::{self, Field, Ty};
use super::source::Format;
use crate::suggestion;

pub fn check(root: &Node, format: Format, errors: &mut Vec<ManifestError>) {
    match root.value {
        Value::Table(_) => check_table(root, schema::MANIFEST, &Place::root(format), errors),
        _ => errors.push(
            ManifestError::new("wrong-type", root.span.clone(), format!("a manifest must be a table of keys, found {}", root.type_name()))
                .help("start with `[project]` (TOML) or `project:` (YAML)"),
        ),
    }
}

/// Where a value sits, for messages (`defaults`, `models.mobilenet.pieces[1]`), and the
/// file's format, so that help lines show the fix in the syntax the user writes.
#[derive(Clone)]
pub(crate) struct Place(String, Format);

impl Place {
    pub(crate) fn root(format: Format) -> Self {
        Place(String::new(), format)
    }

    pub(crate) fn key(&self, key: &str) -> Place {
        if self.0.is_empty() {
            Place(key.to_string(), self.1)
        } else {
            Place(format!("{}.{key}", self.0), self.1)
        }
    }

    pub(crate) fn index(&self, i: usize) -> Place {
        Place(format!("{}[{i}]", self.0), self.1)
    }

    /// `key = value` in TOML, `key: value` in YAML.
    pub(crate) fn assign(&self, key: &str, value: &str) -> String {
        match self.1 {
            Format::Toml => format!("{key} = {value}"),
            Format::Yaml => format!("{key}: {value}"),
        }
    }

    /// How a table at `path` is opened: `[path]` in TOML, `path:` (nested) in YAML.
    pub(crate) fn table(&self, path: &str) -> String {
        match self.1 {
            Format::Toml => format!("[{path}]"),
            Format::Yaml => format!("{path}:"),
        }
    }

    /// How an entry of a list of tables is opened: `[[path]]` in TOML, `- name: ...` in YAML.
    pub(crate) fn list_entry(&self, path: &str) -> String {
        match self.1 {
            Format::Toml => format!("[[{path}]]"),
            Format::Yaml => format!("`- name: ...` under `{path}`"),
        }
    }

    pub(crate) fn describe(&self) -> String {
        if self.0.is_empty() {
            "the manifest's top level".to_string()
        } else {
            format!("`{}`", self.0)
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

fn check_table(node: &Node, fields: &'static [Field], place: &Place, errors: &mut Vec<ManifestError>) {
    let Some(entries) = node.as_table() else { return };
    for entry in entries {
        match fields.iter().find(|f| f.key == entry.key) {
            Some(field) => check_value(&entry.node, field, &place.key(&entry.key), errors),
            None => {
                let known = fields.iter().map(|f| f.key);
                let help = suggestion::did_you_mean(&entry.key, known).unwrap_or_else(|| {
                    let keys: Vec<String> = fields.iter().map(|f| format!("`{}`", f.key)).collect();
                    format!("the keys of {} are {}", place.describe(), keys.join(", "))
                });
                errors.push(
                    ManifestError::new(
                        "unknown-key",
                        entry.key_span.clone(),
                        format!("unknown key `{}` in {}", entry.key, place.describe()),
                    )
                    .label("unknown key")
                    .help(help),
                );
            }
        }
    }
    for field in fields.iter().filter(|f| f.required) {
        if node.get(field.key).is_none() {
            let header_end = header_span(node);
            errors.push(
                ManifestError::new(
                    "missing-key",
                    header_end,
                    format!("missing required key `{}` in {}", field.key, place.describe()),
                )
                .label(format!("`{}` is required here", field.key))
                .help(missing_help(place, field)),
            );
        }
    }
}

/// A table's span can be its whole body; a missing key is reported on its first line only.
fn header_span(node: &Node) -> std::ops::Range<usize> {
    let start = node.span.start;
    node.span.clone().start..start
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn check_value(node: &Node, field: &'static Field, place: &Place, errors: &mut Vec<ManifestError>) {
    check_ty(node, &field.ty, field.key, place, errors)
}

fn check_ty(node: &Node, ty: &'static Ty, key: &str, place: &Place, errors: &mut Vec<ManifestError>) {
    let wrong_type = |expected: &str, help: String| {
        ManifestError::new(
            "wrong-type",
            node.span.clone(),
            format!("{} must be {expected}, found {}", place.describe(), node.type_name()),
        )
        .label(format!("expected {expected}"))
        .help(help)
    };
    match ty {
        Ty::String | Ty::Path | Ty::Name => {
            let Some(s) = node.as_str() else {
                let shown = match &node.value {
                    Value::Integer(i) => i.to_string(),
                    Value::Float(f) => f.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => "...".to_string(),
                };
                errors.push(wrong_type("a string", format!("quote the value: {}", place.assign(key, &format!("\"{shown}\"")))));
                return;
            };
            if matches!(ty, Ty::Path) && s.trim().is_empty() {
                errors.push(
                    ManifestError::new("empty-path", node.span.clone(), format!("{} is an empty path", place.describe()))
                        .label("empty")
                        .help("give a path relative to the manifest, or remove the key"),
                );
            }
            if matches!(ty, Ty::Name) && !schema::is_valid_name(s) {
                errors.push(invalid_name(node, s, place));
            }
        }
        Ty::Bool => {
            if node.as_bool().is_none() {
                let help = match node.as_str() {
                    Some(s @ ("true" | "false" | "yes" | "no" | "on" | "off")) => {
                        let b = matches!(s, "true" | "yes" | "on");
                        format!("write a boolean without quotes: {}", place.assign(key, &b.to_string()))
                    }
                    _ => format!("write `{}` or `{}`", place.assign(key, "true"), place.assign(key, "false")),
                };
                errors.push(wrong_type("a boolean", help));
            }
        }
        Ty::Integer { min } => match node.value {
            Value::Integer(i) if i < *min => errors.push(
                ManifestError::new(
                    "out-of-range",
                    node.span.clone(),
                    format!("{} must be at least {min}, found {i}", place.describe()),
                )
                .label(format!("must be >= {min}"))
                .help(format!("use an integer >= {min}")),
            ),
            Value::Integer(_) => {}
            _ => errors.push(wrong_type("an integer", number_help(node, key, place, true))),
        },
        Ty::Number { min, min_exclusive, max } => {
            let Some(x) = node.as_f64() else {
                errors.push(wrong_type("a number", number_help(node, key, place, false)));
                return;
            };
            let range = describe_range(*min, *min_exclusive, *max);
            let below = if *min_exclusive { x <= *min } else { x < *min };
            let above = match max {
                Some((m, true)) => x >= *m,
                Some((m, false)) => x > *m,
                None => false,
            };
            if !x.is_finite() || below || above {
                let code = if *min_exclusive && *min == 0.0 && x <= 0.0 { "not-positive" } else { "out-of-range" };
                errors.push(
                    ManifestError::new(
                        code,
                        node.span.clone(),
                        format!("{} must be {range}, found {}", place.describe(), format_number(x)),
                    )
                    .label(format!("must be {range}"))
                    .help(number_range_help(key, *min, *min_exclusive, *max)),
                );
            }
        }
        Ty::Enum(values) => match node.as_str() {
            Some(s) if values.contains(&s) => {}
            Some(s) => {
                let list: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                let help = match suggestion::closest(s, values.iter().copied()) {
                    Some(best) => format!("did you mean `{best}`? expected one of {}", list.join(", ")),
                    None => format!("expected one of {}", list.join(", ")),
                };
                errors.push(
                    ManifestError::new(
                        if key == "dtype" { "unsupported-dtype" } else { "unknown-value" },
                        node.span.clone(),
                        format!("{} does not accept `{s}`", place.describe()),
                    )
                    .label("not a supported value")
                    .help(help),
                );
            }
            None => {
                let list: Vec<String> = values.iter().map(|v| format!("\"{v}\"")).collect();
                errors.push(wrong_type("a string", format!("expected one of {}", list.join(", "))));
            }
        },
        Ty::Dimension => match node.value {
            Value::Integer(-1) => {}
            Value::Integer(i) if i >= 1 => {}
            Value::Integer(i) => errors.push(
                ManifestError::new("bad-shape", node.span.clone(), format!("{i} is not a valid dimension in {}", place.describe()))
                    .label("a dimension is -1 or a positive size")
                    .help("use -1 for a dimension of any size (such as the batch), or a size >= 1"),
            ),
            _ => errors.push(
                ManifestError::new(
                    "bad-shape",
                    node.span.clone(),
                    format!("a dimension in {} must be an integer, found {}", place.describe(), node.type_name()),
                )
                .label("expected an integer")
                .help(format!("write the shape as integers, -1 for any size: {}", place.assign("shape", "[-1, 224, 224, 3]"))),
            ),
        },
        Ty::OneOrMany(inner) => match &node.value {
            Value::Array(items) if items.is_empty() => errors.push(
                ManifestError::new("empty-list", node.span.clone(), format!("{} is an empty list", place.describe()))
                    .label("empty")
                    .help(format!("name at least one layer, or remove `{key}` to use the model's outputs")),
            ),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_ty(item, inner, key, &place.index(i), errors);
                }
            }
            _ => check_ty(node, inner, key, place, errors),
        },
        Ty::List(inner) => match &node.value {
            Value::Array(items) => {
                if matches!(inner, Ty::Dimension) && items.is_empty() {
                    errors.push(
                        ManifestError::new("bad-shape", node.span.clone(), format!("{} is an empty shape", place.describe()))
                            .label("no dimensions")
                            .help(format!("give the batch dimension at least: {}", place.assign("shape", "[-1, 128]"))),
                    );
                }
                for (i, item) in items.iter().enumerate() {
                    check_ty(item, inner, key, &place.index(i), errors);
                }
            }
            _ => errors.push(wrong_type("an array", format!("write a list: {}", place.assign(key, "[...]")))),
        },
        Ty::Table(fields) => match node.value {
            Value::Table(_) => check_table(node, fields, place, errors),
            _ => errors.push(wrong_type("a table", format!("write `{}` with keys under it", place.table(place.as_str())))),
        },
        Ty::Map { keys, value: inner } => {
            let Some(entries) = node.as_table() else {
                errors.push(wrong_type("a table", format!("write one `{}` table per entry", place.table(&format!("{}.<name>", place.as_str())))));
                return;
            };
            if entries.is_empty() {
                errors.push(
                    ManifestError::new("empty-table", node.span.clone(), format!("{} has no entries", place.describe()))
                        .label("empty")
                        .help(format!("add at least one `{}` table", place.table(&format!("{}.<name>", place.as_str())))),
                );
            }
            for entry in entries {
                let as_node = Node { value: Value::String(entry.key.clone()), span: entry.key_span.clone() };
                match keys {
                    schema::Keys::Name if !schema::is_valid_name(&entry.key) => {
                        errors.push(invalid_name(&as_node, &entry.key, &place.key(&entry.key)))
                    }
                    schema::Keys::TensorName if !schema::is_valid_tensor_name(&entry.key) => errors.push(
                        ManifestError::new("invalid-name", entry.key_span.clone(), format!("`{}` is not a valid input name", entry.key))
                            .label("invalid input name")
                            .help("input names are TensorFlow names: letters, digits, `_`, `.` and `-`, not starting with a digit"),
                    ),
                    _ => {}
                }
                check_ty(&entry.node, inner, &entry.key, &place.key(&entry.key), errors);
            }
        }
        Ty::TableList(fields) => match &node.value {
            Value::Array(items) if items.is_empty() => errors.push(
                ManifestError::new("empty-list", node.span.clone(), format!("{} is empty", place.describe()))
                    .label("no entries")
                    .help(format!("add a {} entry with at least a `name`", place.list_entry(place.as_str()))),
            ),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.value {
                        Value::Table(_) => check_table(item, fields, &place.index(i), errors),
                        _ => errors.push(
                            ManifestError::new(
                                "wrong-type",
                                item.span.clone(),
                                format!("{} must be a table, found {}", place.index(i).describe(), item.type_name()),
                            )
                            .label("expected a table")
                            .help(format!("write each entry as a {} table", place.list_entry(place.as_str()))),
                        ),
                    }
                }
            }
            _ => errors.push(wrong_type("an array of tables", format!("write each entry as a {} table", place.list_entry(place.as_str())))),
        },
    }
}

fn invalid_name(node: &Node, name: &str, place: &Place) -> ManifestError {
    let fixed: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect::<String>()
        .trim_matches('-')
        .to_string();
    let help = if !fixed.is_empty() && schema::is_valid_name(&fixed) {
        format!("names use lowercase letters, digits and `-` (they become paths and targets): try `{fixed}`")
    } else {
        "names use lowercase letters, digits and `-` (they become paths and targets)".to_string()
    };
    ManifestError::new("invalid-name", node.span.clone(), format!("`{name}` is not a valid name for {}", place.describe()))
        .label("invalid name")
        .help(help)
}

fn number_help(node: &Node, key: &str, place: &Place, integer: bool) -> String {
    match node.as_str().map(str::trim) {
        Some(s) if s.parse::<f64>().is_ok() => format!("remove the quotes: {}", place.assign(key, s)),
        _ if integer => format!("write a whole number, e.g. {}", place.assign(key, "1")),
        _ => format!("write a number, e.g. {}", place.assign(key, "0.5")),
    }
}

/// How to add a missing required key, as the user would write it.
fn missing_help(place: &Place, field: &Field) -> String {
    let key = field.key;
    match (place.as_str(), key) {
        ("", "project") => format!("start the manifest with `{}` and `{}`", place.table("project"), place.assign("name", "\"my-project\"")),
        ("", "models") => format!(
            "add a model: `{}` with `{}` and one {} entry",
            place.table("models.my-model"),
            place.assign("source", "\"models/model.keras\""),
            place.list_entry("models.my-model.pieces")
        ),
        (_, "source") => format!("add `{}` (a .keras/.h5 file, a SavedModel directory or file.py:function)", place.assign("source", "\"models/model.keras\"")),
        (_, "pieces") => format!(
            "add at least one piece: a {} entry with `{}` (no `to`: the whole model)",
            place.list_entry(&format!("{}.pieces", place.as_str())),
            place.assign("name", "\"full\"")
        ),
        (_, "name") => format!("add `{}` ([a-z0-9-]+)", place.assign("name", "\"...\"")),
        (_, "shape") => format!("add `{}` (batch dimension first, -1 for any size)", place.assign("shape", "[-1, 224, 224, 3]")),
        _ => format!("add `{key}`: {}", lowercase_first(field.doc)),
    }
}

fn describe_range(min: f64, min_exclusive: bool, max: Option<(f64, bool)>) -> String {
    match (min_exclusive, max) {
        (true, None) if min == 0.0 => "positive".to_string(),
        (true, None) => format!("> {}", format_number(min)),
        (false, None) => format!(">= {}", format_number(min)),
        (lo, Some((hi, hi_excl))) => format!(
            "in {}{}, {}{}",
            if lo { "(" } else { "[" },
            format_number(min),
            format_number(hi),
            if hi_excl { ")" } else { "]" }
        ),
    }
}

fn number_range_help(key: &str, min: f64, min_exclusive: bool, max: Option<(f64, bool)>) -> String {
    match (key, min_exclusive, max) {
        ("atol" | "rtol", ..) => "tolerances are positive, e.g. 1e-5".to_string(),
        ("epsilon", ..) => "epsilon must be positive, e.g. 0.001".to_string(),
        ("dropout", ..) => "a dropout rate is in [0, 1), e.g. 0.1".to_string(),
        (_, _, Some(_)) => format!("use a value {}", describe_range(min, min_exclusive, max)),
        _ => format!("use a value {}", describe_range(min, min_exclusive, max)),
    }
}

pub(crate) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}
