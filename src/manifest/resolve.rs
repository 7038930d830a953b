//! From the shape-checked tree to a [`Manifest`]: defaults applied, inheritance resolved,
//! and the checks that need meaning: paths on disk that must stay inside the project, the
//! kind of model source (and that a builder's function is named in its file), unique piece
//! names, `from` without `to`, `batch` with `samples`. Help lines suggest what exists: the
//! nearest existing path, checkpoint prefix or Python function.
//!
//! It runs even when the shape check found errors, so that one run reports everything; a
//! value of the wrong type reads as absent here (the shape check already reported it).

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::diagnostic::ManifestError;
use super::document::{Node, Span, Value};
use super::model::*;
use super::shape::Place;
use super::source::ManifestSource;
use crate::suggestion;

pub fn resolve(source: Arc<ManifestSource>, root: &Path, tree: &Node, errors: &mut Vec<ManifestError>) -> Option<Manifest> {
    let mut cx = Resolver { root, source: &source, errors };
    let empty = Node { value: Value::Table(Vec::new()), span: 0..0 };
    let project_node = tree.get("project");
    let project = cx.project(project_node.unwrap_or(&empty));
    let runtime = cx.runtime(tree.get("runtime").unwrap_or(&empty));
    let cache = cx.cache(tree.get("cache").unwrap_or(&empty));
    let kaggle = project.as_ref().map(|p| cx.kaggle(tree.get("kaggle").unwrap_or(&empty), &p.publisher));
    let defaults = tree.get("defaults").filter(|n| n.as_table().is_some());
    let mut models = Vec::new();
    if let Some(entries) = tree.get("models").and_then(Node::as_table) {
        for entry in entries {
            if entry.node.as_table().is_none() {
                continue;
            }
            if let Some(model) = cx.model(&entry.key, entry.key_span.clone(), &entry.node, defaults, runtime.keras) {
                models.push(model);
            }
        }
    }
    let (project, kaggle) = (project?, kaggle?);
    if !cx.errors.is_empty() {
        return None;
    }
    let root = root.to_path_buf();
    Some(Manifest { source, root, project, runtime, cache, kaggle, models })
}

struct Resolver<'a> {
    root: &'a Path,
    source: &'a ManifestSource,
    errors: &'a mut Vec<ManifestError>,
}

/// The tables a setting is looked up in, most specific first (piece, model, `[defaults]`).
struct Layers<'n>(Vec<&'n Node>);

impl<'n> Layers<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.0.iter().find_map(|n| n.get(key))
    }

    fn sub(&self, key: &str) -> Layers<'n> {
        Layers(self.0.iter().filter_map(|n| n.get(key)).filter(|n| n.as_table().is_some()).collect())
    }

    fn bool(&self, key: &str) -> Option<bool> {
        self.get(key).and_then(Node::as_bool)
    }

    fn f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Node::as_f64)
    }

    fn str(&self, key: &str) -> Option<&'n str> {
        self.get(key).and_then(Node::as_str)
    }
}

/// What a path must name.
#[derive(Clone, Copy, PartialEq)]
enum Expect {
    File,
    FileOrDir,
    /// A directory exportctl writes (`out-dir`): only checked to stay inside the project.
    Output,
    /// A checkpoint prefix (`ckpt/ckpt-7`): its files have suffixes, the caller checks them.
    Prefix,
}

impl Resolver<'_> {
    fn error(&mut self, error: ManifestError) {
        self.errors.push(error);
    }

    /// `key = value` or `key: value`, as the manifest's format writes it.
    fn assign(&self, key: &str, value: &str) -> String {
        Place::root(self.source.format).assign(key, value)
    }

    fn project(&mut self, node: &Node) -> Option<Project> {
        let name = node.get("name").and_then(Node::as_str).map(str::to_string);
        let version = node.get("version").and_then(Node::as_i64).unwrap_or(1);
        let publisher = node.get("publisher").and_then(Node::as_str).map(str::to_string);
        let out_dir = match node.get("out-dir") {
            Some(n) => self.out_dir(n),
            None => Some(PathBuf::from("dist")),
        };
        let asset_base_url = node.get("asset-base-url").and_then(|n| {
            let url = n.as_str()?;
            let ok = ["https://", "http://", "gs://"].iter().any(|p| url.starts_with(p) && url.len() > p.len());
            if !ok {
                let example = match url.split_once("://") {
                    None if !url.trim().is_empty() => format!("\"https://{}\"", url.trim_start_matches('/')),
                    _ => "\"https://storage.example.com/models\"".to_string(),
                };
                self.error(
                    ManifestError::new("bad-url", n.span.clone(), format!("`{url}` is not an http(s) or gs URL"))
                        .label("expected https://, http:// or gs://")
                        .help(format!("write the URL the archives will be served from: {}", self.assign("asset-base-url", &example))),
                );
            }
            Some(url.trim_end_matches('/').to_string())
        });
        if let Some(dir) = &out_dir {
            let span = node.get("out-dir").map_or_else(|| node.span.clone(), |n| n.span.clone());
            self.out_dir_links(dir, span);
        }
        let name = name?;
        Some(Project {
            publisher: publisher.unwrap_or_else(|| name.clone()),
            name,
            version: u32::try_from(version).unwrap_or(u32::MAX),
            out_dir: out_dir?,
            asset_base_url,
        })
    }

    /// The output directory, and every folder on the way to it, must not be a symbolic link:
    /// exportctl deletes and replaces what it writes there, and never through a link.
    fn out_dir_links(&mut self, dir: &Path, span: Span) {
        let mut path = self.root.to_path_buf();
        for component in dir.components() {
            let Component::Normal(part) = component else { continue };
            path.push(part);
            match path.symlink_metadata() {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let shown = path.strip_prefix(self.root).unwrap_or(&path).display().to_string();
                    self.error(
                        ManifestError::new("bad-out-dir", span, format!("`{shown}` is a symbolic link"))
                            .label("packages are written here")
                            .help(format!(
                                "exportctl deletes and replaces what it writes in the output directory and never follows a link to do so: \
                                 replace `{shown}` by a real folder, or choose another one: {}",
                                self.assign("out-dir", "\"dist\"")
                            )),
                    );
                    return;
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn out_dir(&mut self, node: &Node) -> Option<PathBuf> {
        let path = self.project_path(node, Expect::Output)?;
        let reserved = match path.components().next() {
            None | Some(Component::CurDir) => Some("the project directory itself"),
            Some(Component::Normal(first)) if first == ".exportctl" => Some("inside `.exportctl`, exportctl's cache"),
            Some(Component::Normal(first)) if first == ".git" => Some("inside `.git`"),
            _ => None,
        };
        if let Some(reserved) = reserved {
            self.error(
                ManifestError::new("bad-out-dir", node.span.clone(), format!("`out-dir` cannot be {reserved}")).label("reserved").help(
                    format!(
                        "`exportctl clean` deletes the output directory: give packages a folder of their own, e.g. {}",
                        self.assign("out-dir", "\"dist\"")
                    ),
                ),
            );
            return None;
        }
        let full = self.root.join(&path);
        if full.is_file() {
            self.error(
                ManifestError::new("bad-out-dir", node.span.clone(), format!("`out-dir` names a file: {}", path.display()))
                    .label("a file, not a directory")
                    .help("choose a directory name"),
            );
            return None;
        }
        Some(path)
    }

    fn cache(&mut self, node: &Node) -> CacheSettings {
        let max_size = node.get("max-size").and_then(|n| {
            let text = n.as_str()?;
            match crate::cache::limit::parse_size(text) {
                Ok(bytes) => Some(bytes),
                Err(message) => {
                    self.error(
                        ManifestError::new("bad-size", n.span.clone(), message)
                            .label("expected a size")
                            .help(format!("write a number and a unit: {}", self.assign("max-size", "\"20GB\""))),
                    );
                    None
                }
            }
        });
        let remote = node.get("remote").and_then(|n| {
            let url = n.as_str()?.trim_end_matches('/');
            let ok = ["https://", "http://"].iter().any(|p| url.starts_with(p) && url.len() > p.len());
            if !ok {
                self.error(
                    ManifestError::new("bad-url", n.span.clone(), format!("`{url}` is not an http(s) URL"))
                        .label("expected http:// or https://")
                        .help(format!(
                            "the remote cache speaks HTTP: {}",
                            self.assign("remote", "\"http://cache.internal:8080/exportctl\"")
                        )),
                );
                return None;
            }
            Some(url.to_string())
        });
        let remote_upload = node.get("remote-upload").and_then(Node::as_bool).unwrap_or(true);
        CacheSettings { max_size, remote, remote_upload }
    }

    fn kaggle(&mut self, node: &Node, publisher: &str) -> KaggleSettings {
        let owner = match node.get("owner") {
            Some(n) => {
                let owner = n.as_str().unwrap_or_default();
                if !crate::kaggle::is_owner_slug(owner) {
                    let example = crate::kaggle::to_slug(owner);
                    let example = if example.is_empty() { "my-team".to_string() } else { example };
                    self.error(
                        ManifestError::new("bad-slug", n.span.clone(), format!("`{owner}` is not a Kaggle owner slug"))
                            .label("lowercase letters and digits, joined by single `-` or `_`")
                            .help(format!(
                                "write the owner as it appears in its Kaggle URL: {}",
                                self.assign("owner", &format!("\"{example}\""))
                            )),
                    );
                }
                owner.to_string()
            }
            None => publisher.to_string(),
        };
        KaggleSettings {
            owner,
            private: node.get("private").and_then(Node::as_bool).unwrap_or(true),
            version_notes: node.get("version-notes").and_then(Node::as_str).map(str::to_string),
        }
    }

    fn runtime(&mut self, node: &Node) -> RuntimeSettings {
        let python = match node.get("python") {
            Some(n) => {
                match n.as_str() {
                    Some("auto") | None => None,
                    Some(p) => {
                        let path = PathBuf::from(p);
                        let full = if path.is_absolute() { path.clone() } else { self.root.join(&path) };
                        if !full.is_file() {
                            self.error(
                            ManifestError::new("not-found", n.span.clone(), format!("python executable `{p}` does not exist"))
                                .label("no such file")
                                .help("give the path to a python executable (e.g. `.venv/bin/python`), or \"auto\" to let exportctl choose"),
                        );
                        }
                        Some(path)
                    }
                }
            }
            None => None,
        };
        let tensorflow = match node.get("tensorflow") {
            Some(n) => match n.as_str() {
                Some(v) => {
                    let ok = v.split('.').count() >= 2 && v.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                    if !ok {
                        self.error(
                            ManifestError::new("bad-version", n.span.clone(), format!("`{v}` is not a TensorFlow version"))
                                .label("expected a version like 2.21.0")
                                .help(format!("pin an exact release: {}", self.assign("tensorflow", &format!("\"{DEFAULT_TENSORFLOW}\"")))),
                        );
                    }
                    v.to_string()
                }
                None => DEFAULT_TENSORFLOW.to_string(),
            },
            None => DEFAULT_TENSORFLOW.to_string(),
        };
        let keras = node.get("keras").and_then(Node::as_str).and_then(KerasFlavour::parse).unwrap_or(KerasFlavour::Auto);
        let timeout_secs = node.get("timeout").and_then(Node::as_i64).unwrap_or(900).max(1) as u64;
        RuntimeSettings { python, tensorflow, keras, timeout_secs }
    }

    fn model(&mut self, name: &str, name_span: Span, node: &Node, defaults: Option<&Node>, keras_default: KerasFlavour) -> Option<Model> {
        let layers = Layers([Some(node), defaults].into_iter().flatten().collect());
        let source = node.get("source").and_then(|n| self.source(n));
        let checkpoint = node.get("checkpoint").and_then(|n| {
            let path = self.checkpoint(n)?;
            Some((path, n.span.clone()))
        });
        let restore = node.get("restore").and_then(|n| Some((n.as_str()?.to_string(), n.span.clone())));
        let source = match source {
            Some(Source::Builder { path, function, .. }) => {
                if let (Some((_, span)), None) = (&restore, &checkpoint) {
                    self.error(
                        ManifestError::new(
                            "restore-without-checkpoint",
                            span.clone(),
                            "`restore` names a checkpoint attribute, but there is no `checkpoint`",
                        )
                        .label("needs `checkpoint`")
                        .help(format!("add `{}`, or remove `restore`", self.assign("checkpoint", "\"path/to/ckpt-N\""))),
                    );
                }
                Some(Source::Builder { path, function, checkpoint: checkpoint.map(|c| c.0), restore: restore.map(|r| r.0) })
            }
            other => {
                // Judged from what `source` says, so that a missing `.keras` file does not hide it.
                let not_a_builder = node.get("source").and_then(Node::as_str).is_some_and(|s| !names_a_builder(s));
                for key in ["checkpoint", "restore"] {
                    if let (Some(n), true) = (node.get(key), not_a_builder) {
                        self.error(
                            ManifestError::new(
                                "needs-builder",
                                n.span.clone(),
                                format!("`{key}` is only read with a builder source (`file.py:function`)"),
                            )
                            .label("not used with this source")
                            .help(
                                "a .keras/.h5 file or a SavedModel already holds its weights: remove this key, or use a builder function",
                            ),
                        );
                    }
                }
                other
            }
        };
        let custom_objects = node
            .get("custom-objects")
            .and_then(Node::as_array)
            .unwrap_or(&[])
            .iter()
            .filter_map(|n| {
                let path = self.project_path(n, Expect::File)?;
                if path.extension().is_none_or(|e| e != "py") {
                    self.error(
                        ManifestError::new(
                            "not-python",
                            n.span.clone(),
                            format!("custom-objects file `{}` is not a .py file", path.display()),
                        )
                        .label("expected a .py file")
                        .help("list Python files that define (and register) your custom layers"),
                    );
                }
                Some(path)
            })
            .collect();
        let keras = node.get("keras").and_then(Node::as_str).and_then(KerasFlavour::parse).unwrap_or(keras_default);
        let export = ExportSettings {
            include_optimizer: layers.bool("include-optimizer").unwrap_or(false),
            dropout: layers.f64("dropout"),
            batch_norm: batch_norm(&layers.sub("batch-norm")),
        };
        let inputs = self.inputs(node.get("inputs"));
        let trainable = layers.bool("trainable").unwrap_or(true);
        let is_saved_model = matches!(source, Some(Source::SavedModel { .. }));
        let mut pieces: Vec<Piece> = Vec::new();
        for piece_node in node.get("pieces").and_then(Node::as_array).unwrap_or(&[]) {
            if piece_node.as_table().is_none() {
                continue;
            }
            let Some(piece) = self.piece(piece_node, node, defaults, trainable, is_saved_model) else { continue };
            if let Some(first) = pieces.iter().find(|p| p.name == piece.name) {
                let (line, _) = self.line_of(first.name_span.start);
                self.error(
                    ManifestError::new(
                        "duplicate-name",
                        piece.name_span.clone(),
                        format!("model `{name}` has two pieces named `{}`", piece.name),
                    )
                    .label("second piece with this name")
                    .help(format!("the first is on line {line}; piece names must be unique within a model")),
                );
                continue;
            }
            pieces.push(piece);
        }
        let allow_ops =
            node.get("allow-ops").and_then(Node::as_array).unwrap_or(&[]).iter().filter_map(|n| n.as_str().map(str::to_string)).collect();
        let title = node.get("title").and_then(Node::as_str).map(str::to_string);
        // Without the body: each piece checks it (and reports a missing file once per piece).
        let docs = self.docs(&layers.sub("docs"), false);
        Some(Model {
            name: name.to_string(),
            name_span,
            title,
            source: source?,
            custom_objects,
            keras,
            export,
            inputs,
            allow_ops,
            docs,
            pieces,
        })
    }

    fn line_of(&self, offset: usize) -> (usize, usize) {
        self.source.line_col(offset)
    }

    fn piece(&mut self, node: &Node, model: &Node, defaults: Option<&Node>, model_trainable: bool, is_saved_model: bool) -> Option<Piece> {
        let name_node = node.get("name")?;
        let name = name_node.as_str()?.to_string();
        let layers = Layers([Some(node), Some(model), defaults].into_iter().flatten().collect());
        let from = node.get("from").and_then(|n| Some(LayerRef { name: n.as_str()?.to_string(), span: n.span.clone() }));
        let to: Vec<LayerRef> = match node.get("to") {
            Some(n) => match &n.value {
                Value::String(s) => vec![LayerRef { name: s.clone(), span: n.span.clone() }],
                Value::Array(items) => {
                    items.iter().filter_map(|i| Some(LayerRef { name: i.as_str()?.to_string(), span: i.span.clone() })).collect()
                }
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        for (i, layer) in to.iter().enumerate() {
            if to[..i].iter().any(|earlier| earlier.name == layer.name) {
                self.error(
                    ManifestError::new("duplicate-name", layer.span.clone(), format!("layer `{}` is listed twice in `to`", layer.name))
                        .label("listed already")
                        .help("each output layer is named once"),
                );
            }
        }
        if let (Some(from), true) = (&from, node.get("to").is_none()) {
            self.error(
                ManifestError::new("from-without-to", from.span.clone(), format!("piece `{name}` has `from` but no `to`"))
                    .label("a cut needs both ends")
                    .help(format!(
                        "add `{}`, the layer whose output ends the piece (or remove `from` to start at the model's inputs)",
                        self.assign("to", "\"<layer>\"")
                    )),
            );
        }
        if is_saved_model {
            if let Some(span) = node.get("from").or(node.get("to")).map(|n| n.span.clone()) {
                self.error(
                    ManifestError::new("cannot-cut", span, format!("piece `{name}` cuts a SavedModel source by layer names"))
                        .label("a SavedModel has no layers to cut at")
                        .help("a SavedModel source is packaged whole: remove `from`/`to`, or export from the Keras model instead"),
                );
            }
        }
        let trainable = node.get("trainable").and_then(Node::as_bool).unwrap_or(model_trainable);
        let validate = self.validate(&layers.sub("validate"));
        let docs = self.docs(&layers.sub("docs"), true);
        let litert = self.litert(&layers);
        Some(Piece {
            name,
            name_span: name_node.span.clone(),
            cut: Cut { from, to },
            trainable,
            dropout: layers.f64("dropout"),
            batch_norm: batch_norm(&layers.sub("batch-norm")),
            validate,
            docs,
            litert,
        })
    }

    /// `formats` (the most specific table that sets it) and, when it has `litert`, the
    /// `[…litert]` settings, key by key from the most specific table.
    fn litert(&mut self, layers: &Layers<'_>) -> Option<LitertSettings> {
        let Some(formats_node) = layers.get("formats") else {
            self.unused_litert(layers);
            return None;
        };
        let formats: Vec<(&str, &Node)> = formats_node.as_array()?.iter().filter_map(|n| Some((n.as_str()?, n))).collect();
        for (i, (format, node)) in formats.iter().enumerate() {
            if formats[..i].iter().any(|(earlier, _)| earlier == format) {
                self.error(
                    ManifestError::new("duplicate-format", node.span.clone(), format!("format `{format}` is listed twice"))
                        .label("listed already")
                        .help("list each format once"),
                );
            }
        }
        if !formats.iter().any(|(f, _)| *f == "saved-model") {
            let mut fixed: Vec<&str> = vec!["saved-model"];
            for (format, _) in &formats {
                if !fixed.contains(format) {
                    fixed.push(format);
                }
            }
            let written = fixed.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ");
            self.error(
                ManifestError::new("no-saved-model", formats_node.span.clone(), "`formats` must include \"saved-model\"")
                    .label("no \"saved-model\" here")
                    .help(format!(
                        "the other formats are converted from the traced SavedModel and validated against its golden outputs, so it is always built: write {}",
                        self.assign("formats", &format!("[{written}]"))
                    )),
            );
        }
        if !formats.iter().any(|(f, _)| *f == "litert") {
            self.unused_litert(layers);
            return None;
        }
        let table = layers.sub("litert");
        let quantize = table.str("quantize").and_then(Quantize::parse).unwrap_or(Quantize::None);
        let (atol, rtol) = quantize.default_tolerances();
        Some(LitertSettings { quantize, atol: table.f64("atol").unwrap_or(atol), rtol: table.f64("rtol").unwrap_or(rtol) })
    }

    /// `litert` settings on a piece that is not built as LiteRT: a forgotten `formats`.
    /// (`[defaults.litert]` or a model's may serve other pieces, so only the piece's own count.)
    fn unused_litert(&mut self, layers: &Layers<'_>) {
        if let Some(entry) = layers.0.first().and_then(|piece| piece.entry("litert")) {
            self.error(
                ManifestError::new(
                    "litert-without-format",
                    entry.key_span.clone(),
                    "`litert` settings on a piece that is not built as LiteRT",
                )
                .label("never used")
                .help(format!(
                    "add \"litert\" to the piece's formats ({}), or remove the `litert` table",
                    self.assign("formats", "[\"saved-model\", \"litert\"]")
                )),
            );
        }
    }

    fn validate(&mut self, layers: &Layers<'_>) -> ValidateSettings {
        // The most specific table that sets `batch` or `samples` decides how inputs are made.
        let mut golden = GoldenInputs::Random { batch: 2, seed: 0 };
        for table in &layers.0 {
            let (batch, samples) = (table.get("batch"), table.get("samples"));
            if let (Some(b), Some(s)) = (batch, samples) {
                let line_hint = if b.span.start < s.span.start { "`batch` above" } else { "`batch` below" };
                self.error(
                    ManifestError::new("batch-and-samples", s.span.clone(), "`samples` and `batch` are both set")
                        .label("conflicts with `batch`")
                        .help(format!("golden inputs come either from a file (`samples`) or are random with a batch size (`batch`): remove `samples` or {line_hint}")),
                );
            }
            if let Some(s) = samples {
                if let Some(path) = self.project_path(s, Expect::File) {
                    if path.extension().is_none_or(|e| e != "npz") {
                        self.error(
                            ManifestError::new("not-npz", s.span.clone(), format!("samples file `{}` is not a .npz file", path.display()))
                                .label("expected a .npz file")
                                .help("save the inputs with numpy: np.savez(\"samples.npz\", input_name=array, ...)"),
                        );
                    }
                    golden = GoldenInputs::Samples { path };
                }
                break;
            }
            if let Some(b) = batch.and_then(Node::as_i64) {
                golden = GoldenInputs::Random { batch: b.clamp(1, u32::MAX as i64) as u32, seed: 0 };
                break;
            }
        }
        if let GoldenInputs::Random { seed, .. } = &mut golden {
            *seed = layers.get("seed").and_then(Node::as_i64).unwrap_or(0).max(0) as u64;
        }
        ValidateSettings {
            golden,
            atol: layers.f64("atol").unwrap_or(1e-5),
            rtol: layers.f64("rtol").unwrap_or(1e-5),
            fine_tune_step: layers.bool("fine-tune-step").unwrap_or(true),
        }
    }

    fn docs(&mut self, layers: &Layers<'_>, with_body: bool) -> DocsSettings {
        let string = |key: &str| layers.str(key).map(str::to_string);
        let body = if with_body { layers.get("body").and_then(|n| self.project_path(n, Expect::File)) } else { None };
        let training_data = match layers.get("training-data").map(|n| &n.value) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
            _ => Vec::new(),
        };
        DocsSettings {
            description: string("description"),
            body,
            task: string("task"),
            license: string("license"),
            dataset: string("dataset"),
            network_architecture: string("network-architecture"),
            language: string("language"),
            fine_tunable: layers.bool("fine-tunable"),
            training_data,
            evaluation: string("evaluation"),
            limitations: string("limitations"),
            citation: string("citation"),
        }
    }

    fn inputs(&mut self, node: Option<&Node>) -> Vec<InputSpec> {
        let Some(entries) = node.and_then(Node::as_table) else { return Vec::new() };
        entries
            .iter()
            .map(|e| InputSpec {
                name: e.key.clone(),
                shape: e.node.get("shape").and_then(Node::as_array).unwrap_or(&[]).iter().filter_map(Node::as_i64).collect(),
                dtype: e.node.get("dtype").and_then(Node::as_str).unwrap_or("float32").to_string(),
            })
            .collect()
    }

    fn source(&mut self, node: &Node) -> Option<Source> {
        let text = node.as_str()?;
        // `path/to/file.py:function` — split at the last colon when a Python file precedes it.
        if let Some((file, function)) = text.rsplit_once(':').filter(|(f, _)| f.ends_with(".py")) {
            let path_node = Node { value: Value::String(file.to_string()), span: self.sub_span(node, 0..file.len()) };
            let path = self.project_path(&path_node, Expect::File)?;
            let function_span = self.sub_span(node, file.len() + 1..text.len());
            return self.builder_function(&path, function, function_span).map(|function| Source::Builder {
                path,
                function,
                checkpoint: None,
                restore: None,
            });
        }
        if text.ends_with(".py") {
            let defined = self.project_path(node, Expect::File).map(|path| python_functions(&self.root.join(path))).unwrap_or_default();
            let example = defined.first().map_or("build_model", String::as_str);
            let help = match defined.len() {
                0 | 1 => format!("write `{text}:{example}`, naming the function that returns the Keras model"),
                _ => format!(
                    "write `{text}:<function>`, naming the function that returns the Keras model; it defines {}",
                    backticked(&defined)
                ),
            };
            self.error(
                ManifestError::new("bad-source", node.span.clone(), "a Python source needs the builder function's name")
                    .label("which function builds the model?")
                    .help(help),
            );
            return None;
        }
        let path = self.project_path(node, Expect::FileOrDir)?;
        let full = self.root.join(&path);
        if full.is_dir() {
            if full.join("saved_model.pb").is_file() || full.join("saved_model.pbtxt").is_file() {
                return Some(Source::SavedModel { path });
            }
            self.error(
                ManifestError::new("bad-source", node.span.clone(), format!("`{}` is a directory but not a SavedModel", path.display()))
                    .label("no saved_model.pb inside")
                    .help("point `source` at a SavedModel directory (holding saved_model.pb), a .keras/.h5 file, or `file.py:function`"),
            );
            return None;
        }
        match path.extension().and_then(|e| e.to_str()) {
            Some("keras" | "h5" | "hdf5") => Some(Source::KerasFile { path }),
            _ => {
                self.error(
                    ManifestError::new(
                        "bad-source",
                        node.span.clone(),
                        format!("`{}` is not a model format exportctl reads", path.display()),
                    )
                    .label("unsupported source")
                    .help("use a .keras or .h5 file, a SavedModel directory, or `file.py:function`"),
                );
                None
            }
        }
    }

    /// The `function` of a `file.py:function` source: a Python identifier the file defines.
    fn builder_function(&mut self, path: &Path, function: &str, span: Span) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join(path)).unwrap_or_default();
        let defined = python_functions_in(&text);
        let suggestion = suggestion::closest(function, defined.iter().map(String::as_str));
        let is_identifier = function.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && function.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !is_identifier {
            let help = match suggestion {
                Some(name) => format!("did you mean `{}:{name}`?", path.display()),
                None => "write the builder as `path/to/file.py:function_name` (letters, digits and `_`)".to_string(),
            };
            self.error(
                ManifestError::new("bad-source", span, format!("`{function}` is not a Python function name"))
                    .label("not a Python identifier")
                    .help(help),
            );
            return None;
        }
        // A name that appears nowhere in the file cannot be one of its attributes (unless a
        // star import brings it in). Anything subtler is left to Python.
        let mentioned = text.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|word| word == function);
        if !mentioned && !text.contains("import *") {
            let help = match suggestion {
                Some(name) => format!("did you mean `{name}`?"),
                None if defined.is_empty() => format!("define `def {function}():` in `{}`, returning the Keras model", path.display()),
                None => format!("`{}` defines {}", path.display(), backticked(&defined)),
            };
            self.error(
                ManifestError::new("not-found", span, format!("`{}` has no function `{function}`", path.display()))
                    .label("not defined in the file")
                    .help(help),
            );
            return None;
        }
        Some(function.to_string())
    }

    /// The span of `range` (bytes of a string value) inside the value's span, when the text
    /// between the quotes is the value itself (no escapes); the whole value's span otherwise.
    fn sub_span(&self, node: &Node, range: std::ops::Range<usize>) -> Span {
        let Some(value) = node.as_str() else { return node.span.clone() };
        let raw = self.source.text.get(node.span.clone()).unwrap_or("");
        let quote = usize::from(raw.starts_with(['"', '\'']));
        match raw.get(quote..quote + value.len()) {
            Some(inner)
                if inner == value
                    && range.end <= value.len()
                    && value.is_char_boundary(range.start)
                    && value.is_char_boundary(range.end) =>
            {
                node.span.start + quote + range.start..node.span.start + quote + range.end
            }
            _ => node.span.clone(),
        }
    }

    /// A TensorFlow checkpoint is a prefix: `ckpt/ckpt-7` names `ckpt/ckpt-7.index` and data files.
    fn checkpoint(&mut self, node: &Node) -> Option<PathBuf> {
        let path = self.project_path(node, Expect::Prefix)?;
        let full = self.root.join(&path);
        let index = PathBuf::from(format!("{}.index", full.display()));
        if index.is_file() || full.is_file() {
            return Some(path);
        }
        if full.is_dir() {
            self.error(
                ManifestError::new("not-found", node.span.clone(), format!("`{}` is a directory, not a checkpoint prefix", path.display()))
                    .label("a directory")
                    .help(format!("name the checkpoint prefix inside it, e.g. `{}/ckpt-1` (the part before `.index`)", path.display())),
            );
            return None;
        }
        let help = match nearby_path(self.root, &path, true) {
            Some(near) => format!("did you mean `{near}`?"),
            None => format!("expected `{}.index` beside its data files; name the prefix tf.train.Checkpoint.save returned", path.display()),
        };
        self.error(
            ManifestError::new("not-found", node.span.clone(), format!("checkpoint `{}` does not exist", path.display()))
                .label("no such checkpoint")
                .help(help),
        );
        None
    }

    /// A path relative to the project root that must stay inside it (lexically and after
    /// following symlinks) and, unless it is `Created` later, exist.
    fn project_path(&mut self, node: &Node, expect: Expect) -> Option<PathBuf> {
        let text = node.as_str()?;
        if text.trim().is_empty() {
            return None; // reported by the shape check
        }
        let path = PathBuf::from(text);
        if path.is_absolute() || text.starts_with('~') {
            self.error(
                ManifestError::new("path-outside-project", node.span.clone(), format!("`{text}` is an absolute path"))
                    .label("absolute path")
                    .help("paths are relative to the manifest's directory, so that the project builds the same on any machine: move the file into the project"),
            );
            return None;
        }
        let mut depth: i32 = 0;
        let mut normal = PathBuf::new();
        for component in path.components() {
            match component {
                Component::ParentDir => {
                    depth -= 1;
                    normal.pop();
                }
                Component::Normal(part) => {
                    depth += 1;
                    normal.push(part);
                }
                _ => {}
            }
            if depth < 0 {
                self.error(
                    ManifestError::new("path-outside-project", node.span.clone(), format!("`{text}` leaves the project directory"))
                        .label("goes above the manifest's directory")
                        .help(self.outside_help(expect)),
                );
                return None;
            }
        }
        let full = self.root.join(&normal);
        let created_later = matches!(expect, Expect::Output | Expect::Prefix);
        match full.symlink_metadata() {
            Err(_) if created_later => return Some(normal),
            Err(_) => {
                let help = nearby_path(self.root, &normal, false)
                    .map_or_else(|| "paths are relative to the manifest's directory".to_string(), |near| format!("did you mean `{near}`?"));
                self.error(
                    ManifestError::new("not-found", node.span.clone(), format!("`{text}` does not exist"))
                        .label("no such file or directory")
                        .help(help),
                );
                return None;
            }
            Ok(_) => {}
        }
        // Symlinks: the real location must be inside the real project root as well.
        if let (Ok(real), Ok(real_root)) = (full.canonicalize(), self.root.canonicalize()) {
            if !real.starts_with(&real_root) {
                self.error(
                    ManifestError::new(
                        "path-outside-project",
                        node.span.clone(),
                        format!("`{text}` leads outside the project through a symlink"),
                    )
                    .label(format!("resolves to {}", relative_to(&real_root, &real).display()))
                    .help(self.outside_help(expect)),
                );
                return None;
            }
        } else if !created_later {
            self.error(
                ManifestError::new("not-found", node.span.clone(), format!("`{text}` cannot be resolved (a broken symlink?)"))
                    .label("cannot be resolved")
                    .help("check that the path and every symlink on it exist"),
            );
            return None;
        }
        let is_file = full.is_file();
        let wrong = match expect {
            Expect::File if !is_file => Some("a file"),
            _ => None,
        };
        if let Some(wanted) = wrong {
            self.error(
                ManifestError::new("wrong-kind", node.span.clone(), format!("`{text}` is not {wanted}"))
                    .label(format!("expected {wanted}"))
                    .help(format!("point this key at {wanted}")),
            );
            return None;
        }
        Some(normal)
    }

    fn outside_help(&self, expect: Expect) -> String {
        match expect {
            Expect::Output => format!("packages are written inside the project: choose a directory under it, e.g. {}", self.assign("out-dir", "\"dist\"")),
            _ => "everything a build reads must live inside the project (the manifest's directory): copy the file in instead of pointing or linking outside".to_string(),
        }
    }
}

/// The existing path closest to a missing one, fixing each component in turn against its
/// directory's entries (`doc/body.md` → `docs/body.md`). With `checkpoint`, the last component
/// is matched against checkpoint prefixes (`ckpt-1` for `ckpt-1.index`).
fn nearby_path(root: &Path, missing: &Path, checkpoint: bool) -> Option<String> {
    let parts: Vec<&str> = missing.iter().map(|p| p.to_str()).collect::<Option<_>>()?;
    let mut found = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let entries: Vec<String> = std::fs::read_dir(root.join(&found))
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let name = e.file_name().into_string().ok()?;
                match (last, checkpoint) {
                    (true, true) => name.strip_suffix(".index").map(str::to_string),
                    (false, _) => e.path().is_dir().then_some(name),
                    (true, false) => Some(name),
                }
            })
            .collect();
        let next = if entries.iter().any(|e| e == part) { part } else { suggestion::closest(part, entries.iter().map(String::as_str))? };
        found.push(next);
    }
    (found != missing).then(|| found.display().to_string())
}

/// `file.py:function`, or a `.py` file whose function is still to be named.
fn names_a_builder(source: &str) -> bool {
    source.ends_with(".py") || source.rsplit_once(':').is_some_and(|(file, _)| file.ends_with(".py"))
}

/// The functions a Python file defines at its top level, in order.
fn python_functions(path: &Path) -> Vec<String> {
    python_functions_in(&std::fs::read_to_string(path).unwrap_or_default())
}

fn python_functions_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("def ").or_else(|| line.strip_prefix("async def ")))
        .filter_map(|rest| rest.split(['(', ':', ' ']).next())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect()
}

fn backticked(names: &[String]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// `to` as seen from `from` (both absolute): `../../shared/model.keras`. Diagnostics show this
/// rather than an absolute path, which says little about the project and differs per machine.
fn relative_to(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = from[common..].iter().map(|_| Component::ParentDir).collect();
    path.extend(&to[common..]);
    path
}

fn batch_norm(layers: &Layers<'_>) -> BatchNorm {
    BatchNorm { momentum: layers.f64("momentum"), epsilon: layers.f64("epsilon") }
}

pub const DEFAULT_TENSORFLOW: &str = "2.21.0";
