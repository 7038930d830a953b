//! What consumers of a package do, done for real: the `model.md` snippets run as written
//! (Keras 3's TFSMLayer, tf_keras' hub.KerasLayer, TensorFlow alone), and the Kaggle metadata
//! published through the official `kaggle` tool with its network cut
//! (`fixtures/offline_kaggle.py`). The `kaggle` package is installed from PyPI into
//! `target/kaggle-venv` on first use; a test fails, never skips, when it cannot be had.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::support::{repo, runtime, stderr, stdout, target_tmp, Project};

/// The `kaggle` release the metadata is checked against (and its SDK, pinned with it).
const KAGGLE: &[&str] = &["kaggle==2.2.5", "kagglesdk==0.1.38", "six"];

/// The ```python blocks of a markdown file, in order.
pub fn python_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```python") => current = Some(String::new()),
            (Some(_), "```") => blocks.push(current.take().unwrap()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// Runs the usage snippets of `<dir>/model.md` against `<dir>/saved_model`, each as its own
/// program (fresh globals, nothing shared but the process), in the order the file shows them:
/// Keras 3 first, then tf_keras, then TensorFlow alone. Returns what they printed.
pub fn run_model_md_snippets(dir: &Path) -> String {
    let md = std::fs::read_to_string(dir.join("model.md")).unwrap();
    // The generated `## Usage` section's, not those of the user's body.
    let usage = md.split_once("\n## Usage\n").unwrap_or_else(|| panic!("no ## Usage in {}:\n{md}", dir.display())).1;
    let usage = usage.split_once("\n## ").map_or(usage, |(section, _)| section);
    let blocks = python_blocks(usage);
    assert_eq!(blocks.len(), 3, "three usage snippets in {}:\n{md}", dir.display());
    assert!(
        blocks[0].contains("keras.layers.TFSMLayer(") || blocks[0].contains("class ServingLayer(keras.layers.TFSMLayer)"),
        "Keras 3 first:\n{}",
        blocks[0]
    );
    assert!(blocks[1].contains("hub.KerasLayer(path"), "tf_keras second:\n{}", blocks[1]);
    assert!(blocks[2].contains("tf.saved_model.load(path)"), "TensorFlow alone third:\n{}", blocks[2]);
    let scratch = tempfile::Builder::new().prefix("snippets-").tempdir_in(target_tmp()).unwrap();
    let saved_model = dir.join("saved_model").canonicalize().unwrap();
    let mut files = Vec::new();
    for (i, block) in blocks.iter().enumerate() {
        // `path` is where the package is: `path/to/saved_model`, or a download from
        // `asset-base-url` (nothing is served there in a test); the rest runs as written.
        assert_eq!(block.lines().filter(|l| l.starts_with("path = ")).count(), 1, "one `path = ...` line:\n{block}");
        let local = format!("path = {:?}", saved_model.to_string_lossy());
        let program: String = block.lines().map(|l| if l.starts_with("path = ") { local.clone() } else { l.to_string() } + "\n").collect();
        let file = scratch.path().join(format!("snippet_{i}.py"));
        std::fs::write(&file, program).unwrap();
        files.push(file);
    }
    let driver =
        "import runpy, sys\nfor f in sys.argv[1:]:\n    print(f'--- {f}', flush=True)\n    runpy.run_path(f, run_name='__main__')\n";
    let out = Command::new(&runtime().python)
        .arg("-c")
        .arg(driver)
        .args(&files)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env("KERAS_BACKEND", "tensorflow")
        .env_remove("TF_USE_LEGACY_KERAS")
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    let printed = stdout(&out);
    assert!(out.status.success(), "model.md's snippets failed for {}:\n{printed}\n{}", dir.display(), stderr(&out));
    assert_eq!(printed.matches("--- ").count(), 3, "{printed}");
    printed
}

/// A Python with the `kaggle` package: `target/kaggle-venv`, made from the managed runtime's
/// Python on first use (atomically: parallel test processes may race to make it).
pub fn kaggle_python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = repo().join("target").join("kaggle-venv");
        let python = venv.join("bin").join("python");
        let works = |python: &Path| {
            Command::new(python)
                .args(["-c", "import kaggle.cli, kagglesdk"])
                .envs([("KAGGLE_USERNAME", "offline"), ("KAGGLE_KEY", "offline"), ("KAGGLE_CONFIG_DIR", &target_tmp().to_string_lossy())])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if works(&python) {
            return python;
        }
        let staging = tempfile::Builder::new().prefix("kaggle-venv-").tempdir_in(repo().join("target")).unwrap();
        let made = Command::new(&runtime().python).args(["-m", "venv"]).arg(staging.path()).output().unwrap();
        assert!(made.status.success(), "cannot make a virtualenv for the kaggle package: {}", stderr(&made));
        let pip = Command::new(staging.path().join("bin").join("pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(KAGGLE)
            .output()
            .unwrap();
        assert!(
            pip.status.success(),
            "the kaggle package is required by this test and could not be installed from PyPI ({}):\n{}",
            KAGGLE.join(" "),
            stderr(&pip)
        );
        // Its Python finds the packages relative to itself: the folder can be moved in place.
        // Another test process may have moved its own there first; either serves.
        let staged = staging.keep();
        if std::fs::rename(&staged, &venv).is_err() {
            let _ = std::fs::remove_dir_all(&staged);
        }
        assert!(works(&python), "target/kaggle-venv cannot import kaggle");
        python
    })
}

/// `exportctl publish` run in `project` with the real `kaggle` tool on PATH, its network cut;
/// returns exportctl's output and what the tool would have sent, one JSON value per request
/// or upload.
pub fn publish_offline(project: &Project, args: &[&str]) -> (std::process::Output, Vec<Value>) {
    let python = kaggle_python();
    let scratch = tempfile::Builder::new().prefix("kaggle-").tempdir_in(target_tmp()).unwrap();
    let bin = scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let script = std::fs::read_to_string(repo().join("tests/integration/fixtures/offline_kaggle.py")).unwrap();
    let kaggle = bin.join("kaggle");
    std::fs::write(&kaggle, format!("#!{}\n{script}", python.display())).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&kaggle, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = scratch.path().join("requests.jsonl");
    let config = scratch.path().join("config");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut full = vec!["publish"];
    full.extend_from_slice(args);
    let out = project.run_with_env(
        &full,
        &[
            ("PATH", &path),
            ("KAGGLE_USERNAME", "offline-test"),
            ("KAGGLE_KEY", "offline-test"),
            ("KAGGLE_CONFIG_DIR", &config.to_string_lossy()),
            ("EXPORTCTL_TEST_KAGGLE_LOG", &log.to_string_lossy()),
        ],
    );
    let sent = std::fs::read_to_string(&log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (out, sent)
}

/// Publishes a built example's version 1 offline and checks what the `kaggle` tool read and
/// would send: each model created, then each of `pieces` (`model/piece`) created as a
/// TensorFlow 2 variation with its SavedModel (`variables/` archived whole).
pub fn assert_publishable(project: &Project, pieces: &[&str]) -> Vec<Value> {
    let (out, sent) = publish_offline(project, &[]);
    assert!(out.status.success(), "exportctl publish failed:\n{}", stderr(&out));
    let models: Vec<&str> = sent.iter().filter(|e| e["request"] == "create_model").map(|e| e["body"]["slug"].as_str().unwrap()).collect();
    let mut expected_models: Vec<&str> = pieces.iter().map(|p| p.split('/').next().unwrap()).collect();
    expected_models.dedup();
    assert_eq!(models, expected_models, "{sent:#?}");
    let instances: Vec<&Value> = sent.iter().filter(|e| e["request"] == "create_model_instance").collect();
    let created: Vec<String> = instances
        .iter()
        .map(|e| format!("{}/{}", e["body"]["modelSlug"].as_str().unwrap(), e["body"]["body"]["instanceSlug"].as_str().unwrap()))
        .collect();
    assert_eq!(created, pieces, "{sent:#?}");
    for instance in &instances {
        let body = &instance["body"]["body"];
        assert_eq!(body["framework"], "MODEL_FRAMEWORK_TENSOR_FLOW_2", "{body}");
        assert_eq!(body["licenseName"], "Apache 2.0", "{body}");
        let usage = body["usage"].as_str().unwrap();
        assert!(usage.contains("kagglehub.model_download(") && usage.contains("keras.layers.TFSMLayer"), "{usage}");
        let files: Vec<&str> = body["files"].as_array().unwrap().iter().map(|f| f["token"].as_str().unwrap()).collect();
        for file in ["saved_model.pb", "variables.zip", "fingerprint.pb"] {
            assert!(files.contains(&format!("offline-token:{file}").as_str()), "{file} uploaded: {files:?}");
        }
    }
    let archives: Vec<&Value> = sent.iter().filter(|e| e["upload"] == "variables.zip").collect();
    assert_eq!(archives.len(), pieces.len());
    for archive in archives {
        let members = archive["members"].as_array().unwrap();
        assert!(members.iter().any(|m| m == "variables.index"), "{archive}");
    }
    sent
}
