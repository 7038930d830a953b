//! The shape check: the parsed tree against the declared keys of [`super::schema`].
//!
//! Reports unknown keys (with did-you-mean), values of the wrong type, numbers out of range,
//! strings outside their set, and missing required keys. It knows nothing of the meaning of
//! values; `resolve.rs` does the checks that do. Help lines show the fix in the syntax of the
//! file being checked ([`Place`] knows whether that is TOML or YAML).

use super::diagnostic::ManifestError;
use super::document::{Node, Span, Value};
use super::schema::{self, Field, Ty};
use super::source::Format;
use crate::suggestion;

pub fn check(root: &Node, format: Format, errors: &mut Vec<ManifestError>) {
    let place = Place::root(format);
    match &root.value {
        Value::Table(entries) if entries.is_empty() => errors.push(empty_manifest(root, &place)),
        Value::Table(_) => check_table(root, schema::MANIFEST, &place, None, errors),
        _ => {
            let help = match format {
                Format::Toml => "start with a `[project]` table and a `[models.<name>]` table",
                Format::Yaml => "write the manifest's keys at the top level, without `- `: `project:` and `models:`",
            };
            errors.push(
                ManifestError::new(
                    "wrong-type",
                    root.span.clone(),
                    format!("a manifest must be {}, found {}", place.term("a table of keys"), place.term(root.type_name())),
                )
                .label(format!("{} here; expected `project` and `models` keys", place.term(root.type_name())))
                .help(help),
            )
        }
    }
}

/// A file with no keys at all (empty, or only comments): one error that says where to start,
/// rather than one per missing key.
fn empty_manifest(root: &Node, place: &Place) -> ManifestError {
    let start = match place.format() {
        Format::Toml => "a `[project]` table with `name = \"my-project\"`, and a `[models.<name>]` table",
        Format::Yaml => "`project:` (with `name: my-project` under it) and `models:`",
    };
    ManifestError::new("empty-manifest", root.span.start..root.span.start, "the manifest is empty")
        .label("no keys")
        .help(format!("run `exportctl init` to write a starting manifest, or start with {start}; Export.toml.example shows every key"))
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

    pub(crate) fn format(&self) -> Format {
        self.1
    }

    /// `key = value` in TOML, `key: value` in YAML.
    pub(crate) fn assign(&self, key: &str, value: &str) -> String {
        match self.1 {
            Format::Toml => format!("{key} = {value}"),
            Format::Yaml => format!("{key}: {value}"),
        }
    }

    /// How the table at this place is opened: `[models.x.validate]` in TOML, `validate:` in
    /// YAML (its keys indented under it).
    pub(crate) fn table_header(&self) -> String {
        match self.1 {
            Format::Toml => format!("`[{}]`", self.header_path()),
            Format::Yaml => format!("`{}:`", self.last_key()),
        }
    }

    /// One entry of the map at this place: a `[models.<name>]` table in TOML, a `<name>:`
    /// entry under `models:` in YAML.
    pub(crate) fn map_entry(&self) -> String {
        match self.1 {
            Format::Toml => format!("a `[{}.<name>]` table", self.header_path()),
            Format::Yaml => format!("a `<name>:` entry under `{}:`", self.last_key()),
        }
    }

    /// One entry of the list of tables at this place: a `[[models.x.pieces]]` table in TOML,
    /// a `- name: ...` item under `pieces:` in YAML.
    pub(crate) fn list_entry(&self) -> String {
        match self.1 {
            Format::Toml => format!("a `[[{}]]` table", self.header_path()),
            Format::Yaml => format!("a `- name: ...` item under `{}:`", self.last_key()),
        }
    }

    /// A type's name in the file's own vocabulary: YAML has mappings and lists where TOML
    /// has tables and arrays.
    pub(crate) fn term(&self, toml_term: &str) -> String {
        match self.1 {
            Format::Toml => toml_term.to_string(),
            Format::Yaml => toml_term.replace("an array", "a list").replace("tables", "mappings").replace("a table", "a mapping"),
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

    /// The dotted path as a TOML header writes it: list indexes dropped.
    fn header_path(&self) -> String {
        let mut path = String::new();
        let mut in_index = false;
        for c in self.0.chars() {
            match c {
                '[' => in_index = true,
                ']' => in_index = false,
                c if !in_index => path.push(c),
                _ => {}
            }
        }
        path
    }

    fn last_key(&self) -> String {
        let path = self.header_path();
        path.rsplit('.').next().unwrap_or("").to_string()
    }
}

/// `owner` is the span of the key this table is the value of, if any: in YAML, missing keys
/// are reported there (`classifier:`), since a block mapping has no header of its own.
fn check_table(node: &Node, fields: &'static [Field], place: &Place, owner: Option<&Span>, errors: &mut Vec<ManifestError>) {
    let Some(entries) = node.as_table() else { return };
    // Keys a did-you-mean pointed at: `model` → `models` makes "missing `models`" redundant.
    let mut suggested = Vec::new();
    for entry in entries {
        match fields.iter().find(|f| f.key == entry.key) {
            Some(field) => check_ty(&entry.node, &field.ty, field.key, &place.key(&entry.key), Some(&entry.key_span), errors),
            None => {
                let closest = suggestion::closest(&entry.key, fields.iter().map(|f| f.key));
                suggested.extend(closest);
                let help = match closest {
                    Some(name) => format!("did you mean `{name}`?"),
                    None => {
                        let keys: Vec<String> = fields.iter().map(|f| format!("`{}`", f.key)).collect();
                        format!("the keys of {} are {}", place.describe(), keys.join(", "))
                    }
                };
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
        if node.get(field.key).is_some() || suggested.contains(&field.key) {
            continue;
        }
        let (span, label) = if place.as_str().is_empty() {
            (0..0, format!("the manifest has no `{}`", field.key))
        } else {
            let span = match (place.format(), owner) {
                (Format::Yaml, Some(key)) => key.clone(),
                _ => node.span.clone(),
            };
            (span, format!("needs `{}`", field.key))
        };
        errors.push(
            ManifestError::new("missing-key", span, format!("missing required key `{}` in {}", field.key, place.describe()))
                .label(label)
                .help(missing_help(place, field)),
        );
    }
}

fn check_ty(node: &Node, ty: &'static Ty, key: &str, place: &Place, owner: Option<&Span>, errors: &mut Vec<ManifestError>) {
    let wrong_type = |expected: &str, help: String| {
        let (expected, found) = (place.term(expected), place.term(node.type_name()));
        ManifestError::new("wrong-type", node.span.clone(), format!("{} must be {expected}, found {found}", place.describe()))
            .label(format!("expected {expected}"))
            .help(help)
    };
    match ty {
        Ty::String | Ty::Path | Ty::Name => {
            let Some(s) = node.as_str() else {
                errors.push(wrong_type("a string", string_help(node, key, place)));
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
                errors.push(invalid_name(node.span.clone(), s, name_noun(place)));
            }
        }
        Ty::Bool => {
            if node.as_bool().is_none() {
                errors.push(wrong_type("a boolean", bool_help(node, key, place)));
            }
        }
        Ty::Integer { min } => match node.value {
            Value::Integer(i) if i < *min => errors.push(
                ManifestError::new("out-of-range", node.span.clone(), format!("{} must be at least {min}, found {i}", place.describe()))
                    .label(format!("must be >= {min}"))
                    .help(integer_range_help(key, *min, place)),
            ),
            Value::Integer(_) => {}
            Value::Float(x) if x.is_finite() && x.fract() == 0.0 && x.abs() >= i64::MAX as f64 => errors.push(
                ManifestError::new("out-of-range", node.span.clone(), format!("{} is too large: {}", place.describe(), format_whole(x)))
                    .label("too large")
                    .help(integer_range_help(key, *min, place)),
            ),
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
                    .help(number_range_help(key, *min, *min_exclusive, *max, place)),
                );
            }
        }
        Ty::Enum(values) => match node.as_str() {
            Some(s) if values.contains(&s) => {}
            Some(s) => {
                let list: Vec<String> = values.iter().map(|v| format!("`{v}`")).collect();
                let best = if key == "dtype" { schema::dtype_alias(s) } else { None };
                let help = match best.or_else(|| suggestion::closest(s, values.iter().copied())) {
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
            _ => {
                let help = match node.value {
                    Value::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("write `{}`, without a decimal point", x as i64),
                    _ => format!("write the shape as integers, -1 for any size: {}", place.assign("shape", "[-1, 224, 224, 3]")),
                };
                errors.push(
                    ManifestError::new(
                        "bad-shape",
                        node.span.clone(),
                        format!("a dimension in {} must be an integer, found {}", place.describe(), node.type_name()),
                    )
                    .label("expected an integer")
                    .help(help),
                )
            }
        },
        Ty::OneOrMany(inner) => match &node.value {
            Value::Array(items) if items.is_empty() => errors.push(
                ManifestError::new("empty-list", node.span.clone(), format!("{} is an empty list", place.describe()))
                    .label("empty")
                    .help(format!("name at least one layer, or remove `{key}` to use the model's outputs")),
            ),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check_ty(item, inner, key, &place.index(i), None, errors);
                }
            }
            _ => check_ty(node, inner, key, place, owner, errors),
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
                    check_ty(item, inner, key, &place.index(i), None, errors);
                }
            }
            _ => errors.push(wrong_type("an array", list_help(node, key, place))),
        },
        Ty::Table(fields) => match node.value {
            Value::Table(_) => check_table(node, fields, place, owner, errors),
            _ => {
                let help = match place.format() {
                    Format::Toml => format!("write a table: `{key} = {{ ... }}` or a {} section", place.table_header()),
                    Format::Yaml => format!("write a mapping: {} with its keys indented under it", place.table_header()),
                };
                errors.push(wrong_type("a table", help))
            }
        },
        Ty::Map { keys, value: inner } => {
            let Some(entries) = node.as_table() else {
                errors.push(wrong_type("a table", format!("write {} per entry", place.map_entry())));
                return;
            };
            if entries.is_empty() {
                errors.push(
                    ManifestError::new("empty-table", node.span.clone(), format!("{} has no entries", place.describe()))
                        .label("empty")
                        .help(format!("add {}", place.map_entry())),
                );
            }
            for entry in entries {
                match keys {
                    schema::Keys::Name if !schema::is_valid_name(&entry.key) => {
                        errors.push(invalid_name(entry.key_span.clone(), &entry.key, "model name"))
                    }
                    schema::Keys::TensorName if !schema::is_valid_tensor_name(&entry.key) => errors.push(
                        ManifestError::new("invalid-name", entry.key_span.clone(), format!("`{}` is not a valid input name", entry.key))
                            .label("invalid input name")
                            .help(tensor_name_help()),
                    ),
                    _ => {}
                }
                check_ty(&entry.node, inner, &entry.key, &place.key(&entry.key), Some(&entry.key_span), errors);
            }
        }
        Ty::TableList(fields) => match &node.value {
            Value::Array(items) if items.is_empty() => errors.push(
                ManifestError::new("empty-list", node.span.clone(), format!("{} is empty", place.describe()))
                    .label("no entries")
                    .help(format!("add {} with at least a `name`", place.list_entry())),
            ),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    match item.value {
                        Value::Table(_) => check_table(item, fields, &place.index(i), None, errors),
                        _ => errors.push(
                            ManifestError::new(
                                "wrong-type",
                                item.span.clone(),
                                format!(
                                    "{} must be {}, found {}",
                                    place.index(i).describe(),
                                    place.term("a table"),
                                    place.term(item.type_name())
                                ),
                            )
                            .label(format!("expected {}", place.term("a table")))
                            .help(format!("write each entry as {}", place.list_entry())),
                        ),
                    }
                }
            }
            Value::Table(_) => {
                let help = match place.format() {
                    Format::Toml => format!("a list of tables takes double brackets: write {} per entry", place.list_entry()),
                    Format::Yaml => "make it a list: start each entry with `- `, e.g. `- name: ...`".to_string(),
                };
                errors.push(wrong_type("an array of tables", help))
            }
            _ => errors.push(wrong_type("an array of tables", format!("write each entry as {}", place.list_entry()))),
        },
    }
}

/// What a name at `place` names, for messages: "`Feature Vector` is not a valid piece name".
fn name_noun(place: &Place) -> &'static str {
    let path = place.as_str();
    if path.ends_with("publisher") {
        "publisher name"
    } else if path == "project.name" {
        "project name"
    } else if path.contains("pieces[") {
        "piece name"
    } else {
        "name"
    }
}

fn invalid_name(span: Span, name: &str, noun: &str) -> ManifestError {
    let fixed: String = name
        .chars()
        .map(|c| match c {
            'A'..='Z' => c.to_ascii_lowercase(),
            'a'..='z' | '0'..='9' | '-' => c,
            _ => '-',
        })
        .collect::<String>()
        .split('-')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let help = if !fixed.is_empty() && schema::is_valid_name(&fixed) {
        format!("names use lowercase letters, digits and `-` (they become paths and targets): try `{fixed}`")
    } else {
        "names use lowercase letters, digits and `-` (they become paths and targets)".to_string()
    };
    ManifestError::new("invalid-name", span, format!("`{name}` is not a valid {noun}")).label("invalid name").help(help)
}

fn tensor_name_help() -> &'static str {
    "use the name of the model's input: TensorFlow names are letters, digits, `_`, `.` and `-`, not starting with a digit"
}

/// A string was expected: show the value as a string when that is what the user meant.
fn string_help(node: &Node, key: &str, place: &Place) -> String {
    match &node.value {
        Value::Integer(i) => format!("quote the value: {}", place.assign(key, &format!("\"{i}\""))),
        Value::Float(f) => format!("quote the value: {}", place.assign(key, &format!("\"{f}\""))),
        Value::Bool(b) => format!("quote the value: {}", place.assign(key, &format!("\"{b}\""))),
        Value::Null => format!("give `{key}` a value: {}", place.assign(key, "\"...\"")),
        Value::Table(entries) => match entries.iter().find_map(|e| e.node.as_str()) {
            Some(s) => format!("`{key}` takes the value itself, not a table: {}", place.assign(key, &format!("\"{s}\""))),
            None => format!("`{key}` takes a single string: {}", place.assign(key, "\"...\"")),
        },
        Value::Array(items) => match items.as_slice() {
            [one] => match one.as_str() {
                Some(s) => format!("`{key}` takes one string, without brackets: {}", place.assign(key, &format!("\"{s}\""))),
                None => format!("`{key}` takes a single string, not a list"),
            },
            _ => format!("`{key}` takes a single string, not a list"),
        },
        _ => format!("write a string: {}", place.assign(key, "\"...\"")),
    }
}

/// A list was expected: a quoted list loses its quotes, a single string gets brackets.
fn list_help(node: &Node, key: &str, place: &Place) -> String {
    match node.as_str().map(str::trim) {
        Some(s) if s.starts_with('[') && s.ends_with(']') => format!("remove the quotes: {}", place.assign(key, s)),
        Some(s) => format!("write a list, even of one: {}", place.assign(key, &format!("[\"{s}\"]"))),
        None => format!("write a list: {}", place.assign(key, "[...]")),
    }
}

fn bool_help(node: &Node, key: &str, place: &Place) -> String {
    let Some(s) = node.as_str() else {
        return format!("write `{}` or `{}`", place.assign(key, "true"), place.assign(key, "false"));
    };
    let meant = match s.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "0" => Some(false),
        _ => None,
    };
    let quoted = node.span.len() > s.len();
    match meant {
        Some(b) if quoted => format!("write a boolean without quotes: {}", place.assign(key, &b.to_string())),
        // YAML 1.2 reads `yes`/`on` as strings; only `true`/`false` are booleans.
        Some(b) => format!("`{s}` is a string in YAML 1.2; booleans are `true` and `false`: {}", place.assign(key, &b.to_string())),
        None => format!("write `{}` or `{}`", place.assign(key, "true"), place.assign(key, "false")),
    }
}

fn number_help(node: &Node, key: &str, place: &Place, integer: bool) -> String {
    match (&node.value, node.as_str().map(str::trim)) {
        (_, Some(s)) if s.parse::<f64>().is_ok() => format!("remove the quotes: {}", place.assign(key, s)),
        (Value::Float(x), _) if integer && x.fract() == 0.0 && x.abs() < 1e15 => {
            format!("write a whole number, without a decimal point: {}", place.assign(key, &(*x as i64).to_string()))
        }
        _ if integer => format!("write a whole number, e.g. {}", place.assign(key, "1")),
        _ => format!("write a number, e.g. {}", place.assign(key, "0.5")),
    }
}

/// How to add a missing required key, as the user would write it.
fn missing_help(place: &Place, field: &Field) -> String {
    let yaml = place.format() == Format::Yaml;
    match (place.as_str(), field.key) {
        ("", "project") if yaml => "add `project:` at the top level, with `name: my-project` indented under it".to_string(),
        ("", "project") => "start the manifest with a `[project]` table holding `name = \"my-project\"`".to_string(),
        ("", "models") if yaml => {
            "add `models:` at the top level, with one `<name>:` per model under it, each with a `source:` and a `pieces:` list".to_string()
        }
        ("", "models") => {
            "add a model: a `[models.my-model]` table with `source = \"models/model.keras\"`, and a `[[models.my-model.pieces]]` table with `name = \"full\"`".to_string()
        }
        (_, "source") => format!(
            "add `{}` (a .keras/.h5 file, a SavedModel directory or file.py:function)",
            place.assign("source", "\"models/model.keras\"")
        ),
        (_, "pieces") if yaml => "add a `pieces:` list with at least one piece, e.g. `- name: full` (no `to`: the whole model)".to_string(),
        (_, "pieces") => format!("add at least one piece: {} with `name = \"full\"` (no `to`: the whole model)", place.key("pieces").list_entry()),
        (_, "name") => format!("add `{}` ([a-z0-9-]+)", place.assign("name", "\"...\"")),
        (_, "shape") => format!("add `{}` (batch dimension first, -1 for any size)", place.assign("shape", "[-1, 224, 224, 3]")),
        (_, key) => format!("add `{key}`: {}", lowercase_first(field.doc)),
    }
}

fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn describe_range(min: f64, min_exclusive: bool, max: Option<(f64, bool)>) -> String {
    match (min_exclusive, max) {
        (true, None) if min == 0.0 => "positive".to_string(),
        (true, None) => format!("> {}", format_number(min)),
        (false, None) => format!(">= {}", format_number(min)),
        (lo, Some((hi, hi_excl))) => {
            format!("in {}{}, {}{}", if lo { "(" } else { "[" }, format_number(min), format_number(hi), if hi_excl { ")" } else { "]" })
        }
    }
}

fn integer_range_help(key: &str, min: i64, place: &Place) -> String {
    match key {
        "version" => format!("model versions count from 1, TF Hub style: {}", place.assign(key, "1")),
        "timeout" => format!("a number of seconds, e.g. {} (the default)", place.assign(key, "900")),
        "batch" => format!("a batch size of at least 1, e.g. {} (the default)", place.assign(key, "2")),
        "seed" => format!("a seed is an integer >= 0, e.g. {}", place.assign(key, "0")),
        _ => format!("use an integer >= {min}"),
    }
}

fn number_range_help(key: &str, min: f64, min_exclusive: bool, max: Option<(f64, bool)>, place: &Place) -> String {
    match key {
        "atol" | "rtol" => format!("tolerances are positive, e.g. {}", place.assign(key, "1e-5")),
        "epsilon" => format!("epsilon must be positive, e.g. {}", place.assign(key, "0.001")),
        "momentum" => format!("batch-norm momentum is a fraction in [0, 1], e.g. {}", place.assign(key, "0.99")),
        "dropout" => format!("a dropout rate is in [0, 1), e.g. {}", place.assign(key, "0.1")),
        _ => format!("use a value {}", describe_range(min, min_exclusive, max)),
    }
}

/// A huge integral number, in full (`100000000000000000000`), for "too large" messages.
fn format_whole(x: f64) -> String {
    format!("{x:.0}")
}

pub(crate) fn format_number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}
