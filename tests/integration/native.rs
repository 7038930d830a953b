//! The native loader against real SavedModels: TensorFlow's C API loaded from the pip wheel,
//! checked against what Python's TensorFlow says about the same models.
//!
//! The SavedModels are made once per checkout by the venv's Python (the `python` next to the
//! TensorFlow package: `<tensorflow dir>/../../../../bin/python`) running [`MAKE_MODELS`] into
//! `target/test-tmp/native-models/`; they are remade when the script changes. Each model comes
//! with `inputs/<key>.npy` and `outputs/<key>.npy`: the outputs are what Python's
//! `tf.saved_model.load(...).signatures["serving_default"]` returned for those inputs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use exportctl::error::help_text;
use exportctl::tf::{self, Array, DType, Native, NativeError, TfLogs};

use crate::support::target_tmp;

/// The `tensorflow` package directory of the Python environment the tests use.
///
/// For now it comes from `EXPORTCTL_TEST_TF_DIR`; it will be the managed runtime's.
fn tensorflow_dir() -> PathBuf {
    crate::support::runtime().require_tensorflow_dir().expect("the managed runtime has TensorFlow").to_path_buf()
}

fn python() -> PathBuf {
    let python = tensorflow_dir().join("../../../../bin/python");
    assert!(python.exists(), "no Python at {} (expected next to the TensorFlow package)", python.display());
    python
}

fn native() -> &'static Native {
    static NATIVE: OnceLock<&'static Native> = OnceLock::new();
    NATIVE.get_or_init(|| {
        Native::load(&tensorflow_dir(), &target_tmp().join("native-cache"), TfLogs::Quiet)
            .unwrap_or_else(|e| panic!("{e}\n  help: {}", help_text(&e).unwrap_or_default()))
    })
}

/// The directory of generated models (made on first use).
fn models() -> &'static Path {
    static MODELS: OnceLock<PathBuf> = OnceLock::new();
    MODELS.get_or_init(|| {
        let dir = target_tmp().join("native-models");
        let stamp = dir.join("made-by.py");
        if std::fs::read_to_string(&stamp).ok().as_deref() == Some(MAKE_MODELS) {
            return dir;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("make_models.py");
        std::fs::write(&script, MAKE_MODELS).unwrap();
        let output = Command::new(python())
            .arg(&script)
            .arg(&dir)
            .env("TF_CPP_MIN_LOG_LEVEL", "3")
            .env_remove("TF_USE_LEGACY_KERAS")
            .output()
            .expect("python runs");
        assert!(output.status.success(), "making the test models failed:\n{}", String::from_utf8_lossy(&output.stderr));
        std::fs::write(&stamp, MAKE_MODELS).unwrap();
        dir
    })
}

/// A generated model: its SavedModel directory, golden inputs and Python's outputs.
struct Model {
    root: PathBuf,
}

impl Model {
    fn named(name: &str) -> Model {
        let root = models().join(name);
        assert!(root.join("saved_model").is_dir(), "model {name} was not generated");
        Model { root }
    }

    fn saved_model(&self) -> PathBuf {
        self.root.join("saved_model")
    }

    fn arrays(&self, kind: &str) -> Vec<(String, Array)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.root.join(kind)).unwrap().map(|e| e.unwrap().path()).collect();
        files.sort();
        files.iter().map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), tf::npy::read(p).unwrap())).collect()
    }

    fn inputs(&self) -> Vec<(String, Array)> {
        self.arrays("inputs")
    }

    fn python_outputs(&self) -> Vec<(String, Array)> {
        self.arrays("outputs")
    }

    fn inspect(&self) -> tf::Inspection {
        tf::inspect(native(), &self.saved_model(), &[]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn run(&self) -> Result<Vec<(String, Array)>, tf::ModelError> {
        tf::run_signature(native(), &self.saved_model(), "serving_default", &self.inputs())
    }

    /// Runs `serving_default` natively and checks every output against Python's.
    fn assert_native_matches_python(&self) {
        let got = self.run().unwrap_or_else(|e| panic!("{e}\n  help: {:?}", help_text(&e)));
        let expected = self.python_outputs();
        let names = |v: &[(String, Array)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&expected), "the same outputs as Python");
        for ((name, got), (_, expected)) in got.iter().zip(&expected) {
            let comparison = tf::compare(expected, got, 1e-6, 1e-6);
            assert!(comparison.ok, "{}: output '{name}' differs from Python: {comparison}", self.root.display());
        }
    }
}

#[test]
fn keras3_export_loads_and_matches_python() {
    let model = Model::named("keras3_export");
    model.assert_native_matches_python();
    let inspection = model.inspect();
    assert_eq!(inspection.native_load, tf::inspect::NativeLoad::Ok);
    assert_eq!(inspection.meta_graphs, vec![vec!["serve".to_owned()]]);
    let keys: Vec<_> = inspection.signatures.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(keys, vec!["serve", "serving_default"], "no __saved_model_init_op");
    let serving = &inspection.signatures[1];
    assert_eq!(serving.inputs[0].key, "features");
    assert_eq!(serving.inputs[0].dtype, DType::Float32);
    assert_eq!(serving.inputs[0].shape, Some(vec![-1, 4]));
    assert_eq!(serving.outputs[0].key, "output_0");
    assert_eq!(serving.outputs[0].shape, Some(vec![-1, 3]));
    assert!(!inspection.optimizer.present);
    // Keras 3's export stores each of the 4 weights twice (`variables` and `_all_variables`).
    assert_eq!(inspection.variables.count, 8);
    assert_eq!(inspection.variables.parameters, 2 * (4 * 8 + 8 + 8 * 3 + 3));
    assert_eq!(inspection.variables.repeated_names, vec!["hidden/bias", "hidden/kernel", "logits/bias", "logits/kernel"]);
    assert!(inspection.files.variables > 0 && inspection.files.total > inspection.files.saved_model_pb);
}

#[test]
fn tf_keras_saved_without_optimizer_has_no_optimizer_state() {
    let model = Model::named("tfkeras_noopt");
    model.assert_native_matches_python();
    let inspection = model.inspect();
    assert!(!inspection.optimizer.present, "{:#?}", inspection.optimizer);
    assert!(inspection.variables.list.iter().all(|v| !v.optimizer));
    assert_eq!(inspection.variables.trainable, 6, "2 dense kernels and biases, batch-norm gamma and beta");
}

#[test]
fn tf_keras_saved_with_optimizer_is_caught() {
    let model = Model::named("tfkeras_opt");
    model.assert_native_matches_python();
    let optimizer = model.inspect().optimizer;
    assert!(optimizer.present);
    assert_eq!(optimizer.objects.len(), 1);
    assert_eq!(optimizer.objects[0].path, "optimizer");
    assert_eq!(optimizer.objects[0].evidence, "saved as a Keras optimizer ('experimentalOptimizer')");
    // Adam's m and v for 6 trainable weights, plus the iteration counter and learning rate.
    assert_eq!(optimizer.slots, 12);
    assert_eq!(optimizer.variables.len(), 14);
    assert!(optimizer.variables.iter().any(|v| v.name == "Adam/m/d1/kernel" && v.kind == "slot"));
}

#[test]
fn tf_keras_legacy_optimizer_slots_are_caught() {
    let optimizer = Model::named("tfkeras_legacy_adam").inspect().optimizer;
    assert!(optimizer.present);
    assert_eq!(optimizer.objects[0].evidence, "holds 4 slot variable reference(s)");
    assert_eq!(optimizer.slots, 4, "m and v of a kernel and a bias");
    let slot = optimizer.variables.iter().find(|v| v.name == "Adam/dense/kernel/m").unwrap();
    assert_eq!(slot.path.as_deref(), Some("layer_with_weights-0/kernel/.OPTIMIZER_SLOT/m"));
}

#[test]
fn keras3_optimizer_is_caught_by_its_structure() {
    // Adam: momentum and velocity of a kernel and a bias; RMSprop: their velocities.
    for (name, slots) in [("keras3_holder_with_optimizer", 4), ("keras3_direct_rmsprop", 2)] {
        let optimizer = Model::named(name).inspect().optimizer;
        assert!(optimizer.present, "{name}");
        assert_eq!(optimizer.objects[0].evidence, "has a Keras optimizer's `_iterations` counter and `_variables` list");
        assert_eq!(optimizer.slots, slots, "{name}");
        assert_eq!(optimizer.variables.len(), slots + 2, "{name}: plus the iteration counter and learning rate");
    }
}

/// FACTS.md: a SavedModel holding the Keras 3 model object loads in Python but its variables
/// are not restored by the C API. The native check must say so, and what to do.
#[test]
fn keras3_model_object_fails_natively_with_advice() {
    let err = Model::named("keras3_holder_with_optimizer").run().unwrap_err();
    assert!(err.to_string().contains("Could not find variable logits/"), "{err}"); // kernel or bias: whichever op ran first
    assert!(help_text(&err).unwrap().contains("v.value"), "{:?}", help_text(&err));
}

#[test]
fn reusable_keras3_wrapper_matches_python() {
    let model = Model::named("keras3_reusable");
    model.assert_native_matches_python();
    let inspection = model.inspect();
    assert!(!inspection.optimizer.present);
    assert_eq!(inspection.variables.trainable, 4);
}

#[test]
fn the_guides_mul_model_runs() {
    let model = Model::named("mymul");
    model.assert_native_matches_python();
    let out = tf::run_signature(native(), &model.saved_model(), "serving_default", &[("inputs".into(), Array::vector(vec![10f32, 20.0]))])
        .unwrap();
    assert_eq!(out, vec![("output_0".to_owned(), Array::vector(vec![20f32, 40.0]))]);
    let inspection = model.inspect();
    let input = &inspection.signatures[0].inputs[0];
    assert_eq!(input.shape, None, "TensorSpec(shape=None) is an unknown rank");
    let names: Vec<_> = inspection.variables.list.iter().map(|v| (v.name.as_str(), v.path.as_deref())).collect();
    assert_eq!(names, vec![("Variable", Some("v")), ("save_counter", Some("save_counter"))]);
    assert!(!inspection.optimizer.present);
}

#[test]
fn every_supported_dtype_goes_in_and_out() {
    let model = Model::named("dtypes");
    model.assert_native_matches_python();
    let dtypes: Vec<_> = model.run().unwrap().iter().map(|(n, a)| format!("{n}: {a}")).collect();
    assert_eq!(
        dtypes,
        vec![
            "count: int32[1]",
            "ids64: int64[3]",
            "not_flag: bool[3]",
            "pixels_plus: uint8[2, 3]",
            "scalar: float64[]",
            "y: float64[3, 2]"
        ]
    );
}

#[test]
fn wrong_inputs_are_explained_before_tensorflow_sees_them() {
    let model = Model::named("dtypes");
    let mut inputs = model.inputs();
    inputs.retain(|(name, _)| name != "ids");
    let err = tf::run_signature(native(), &model.saved_model(), "serving_default", &inputs).unwrap_err();
    assert_eq!(err.to_string(), "signature 'serving_default' needs input 'ids' (its inputs: flag, ids, pixels, x)");
    let err = tf::run_signature(native(), &model.saved_model(), "serving", &inputs).unwrap_err();
    assert_eq!(err.to_string(), "no signature 'serving'; the SavedModel has serving_default");
}

#[test]
fn archives_are_inspected_like_directories() {
    let model = Model::named("keras3_export");
    let scratch = tempfile::Builder::new().prefix("native-archive-").tempdir_in(target_tmp()).unwrap();
    let archive = scratch.path().join("model.tar.gz");
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(".", model.saved_model()).unwrap();
    tar.into_inner().unwrap().finish().unwrap();

    let unpack_into = scratch.path().join("scratch");
    let from_archive = tf::inspect_archive(native(), &archive, &unpack_into, &[]).unwrap();
    let from_dir = model.inspect();
    assert_eq!(from_archive.path, archive);
    assert_eq!(from_archive.signatures, from_dir.signatures);
    assert_eq!(from_archive.variables, from_dir.variables);
    assert_eq!(from_archive.files.total, from_dir.files.total);
    assert!(from_archive.files.archive.is_some());
    // What stays is this process's scratch folder, holding only its lock.
    let left: Vec<_> = walk_files(&unpack_into);
    assert_eq!(left, vec![format!("{}/.lock", std::process::id())], "the unpacked copy is removed");
}

#[test]
fn npy_files_we_write_are_what_numpy_reads() {
    let dir = tempfile::Builder::new().prefix("native-npy-").tempdir_in(target_tmp()).unwrap();
    let arrays = [
        ("f32", Array::new(vec![2, 3], vec![1.5f32, -2.0, 0.0, 3.25, f32::NAN, f32::INFINITY]).unwrap()),
        ("i64", Array::vector(vec![i64::MIN, 0, i64::MAX])),
        ("u8", Array::new(vec![2, 2], vec![0u8, 1, 254, 255]).unwrap()),
        ("b", Array::vector(vec![true, false])),
        ("scalar", Array::new(vec![], vec![2.5f64]).unwrap()),
    ];
    for (name, array) in &arrays {
        tf::npy::write(&dir.path().join(format!("{name}.npy")), array).unwrap();
    }
    let check = r#"
import sys, numpy as np
d = sys.argv[1]
for name in ["f32", "i64", "u8", "b", "scalar"]:
    a = np.load(f"{d}/{name}.npy", allow_pickle=False)
    print(name, a.dtype, a.shape, a.tolist())
"#;
    let output = Command::new(python()).args(["-c", check]).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "f32 float32 (2, 3) [[1.5, -2.0, 0.0], [3.25, nan, inf]]\n\
         i64 int64 (3,) [-9223372036854775808, 0, 9223372036854775807]\n\
         u8 uint8 (2, 2) [[0, 1], [254, 255]]\n\
         b bool (2,) [True, False]\n\
         scalar float64 () 2.5\n"
    );
}

#[test]
fn a_second_tensorflow_is_refused_and_a_missing_one_explained() {
    native();
    let missing = Native::load(Path::new("/nonexistent/site-packages/tensorflow"), &target_tmp(), TfLogs::Quiet).unwrap_err();
    assert!(matches!(missing, NativeError::PackageMissing { .. }), "{missing}");

    let other = tempfile::Builder::new().prefix("native-other-tf-").tempdir_in(target_tmp()).unwrap();
    for library in [tf::native::CC_LIBRARY, tf::native::FRAMEWORK_LIBRARY] {
        std::fs::write(other.path().join(library), b"").unwrap();
    }
    let err = Native::load(other.path(), &target_tmp().join("native-cache"), TfLogs::Quiet).unwrap_err();
    assert!(matches!(err, NativeError::AlreadyLoaded { .. }), "{err}");
    let again = Native::load(&tensorflow_dir(), &target_tmp().join("native-cache"), TfLogs::Quiet).unwrap();
    assert!(std::ptr::eq(again, native()), "the same TensorFlow is returned, not loaded twice");
    assert_eq!(again.version(), "2.21.0");
}

/// Makes the test SavedModels with Python TensorFlow; see the module documentation.
const MAKE_MODELS: &str = r#"
import json, os, shutil, sys
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import tensorflow as tf

out = sys.argv[1]
rng = np.random.default_rng(0)


def fresh(name):
    d = os.path.join(out, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(os.path.join(d, "inputs"))
    os.makedirs(os.path.join(d, "outputs"))
    return os.path.join(d, "saved_model")


def golden(name, inputs):
    """Saves the inputs, and the outputs Python's loader gives for them."""
    d = os.path.join(out, name)
    for key, value in inputs.items():
        np.save(os.path.join(d, "inputs", key + ".npy"), value, allow_pickle=False)
    serving = tf.saved_model.load(os.path.join(d, "saved_model")).signatures["serving_default"]
    for key, value in serving(**{k: tf.constant(v) for k, v in inputs.items()}).items():
        np.save(os.path.join(d, "outputs", key + ".npy"), value.numpy(), allow_pickle=False)


def trained(model, optimizer, n_in, n_out):
    model.compile(optimizer=optimizer, loss="mse")
    model.fit(rng.normal(size=(16, n_in)).astype("float32"), rng.normal(size=(16, n_out)).astype("float32"), verbose=0)
    return model


import keras
import tf_keras

# Keras 3: model.export(), which loads natively.
keras.utils.set_random_seed(1)
inp = keras.Input((4,), name="features")
hidden = keras.layers.Dense(8, activation="relu", name="hidden")(inp)
m = trained(keras.Model(inp, keras.layers.Dense(3, name="logits")(hidden)), "adam", 4, 3)
m.export(fresh("keras3_export"), verbose=False)
golden("keras3_export", {"features": rng.normal(size=(2, 4)).astype("float32")})

# Keras 3 model object and its Adam held by a tf.train.Checkpoint: the optimizer is saved
# (as a generic object) and the C API does not restore the Keras variables.
keras.utils.set_random_seed(1)
inp = keras.Input((4,), name="features")
m = trained(keras.Model(inp, keras.layers.Dense(3, name="logits")(inp)), "adam", 4, 3)
holder = tf.train.Checkpoint()
holder.model = m
holder.optimizer = m.optimizer


@tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="features")])
def serve_holder(features):
    return {"logits": m(features)}


holder.serve = serve_holder
tf.saved_model.save(holder, fresh("keras3_holder_with_optimizer"), signatures={"serving_default": holder.serve})
golden("keras3_holder_with_optimizer", {"features": rng.normal(size=(2, 4)).astype("float32")})

# Keras 3 model saved directly: it tracks its optimizer.
m = trained(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="dense")]), keras.optimizers.RMSprop(), 4, 3)
tf.saved_model.save(m, fresh("keras3_direct_rmsprop"))
golden("keras3_direct_rmsprop", {"inputs": rng.normal(size=(2, 4)).astype("float32")})

# tf_keras model.save with and without the (current) optimizer, and with a legacy one.
for name, include in (("tfkeras_noopt", False), ("tfkeras_opt", True)):
    tf_keras.utils.set_random_seed(1)
    inp = tf_keras.Input((5,), name="x")
    h = tf_keras.layers.Dense(6, activation="relu", name="d1", kernel_regularizer=tf_keras.regularizers.l2(1e-3))(inp)
    h = tf_keras.layers.BatchNormalization()(tf_keras.layers.Dropout(0.2)(h))
    m = trained(tf_keras.Model(inp, tf_keras.layers.Dense(2, name="out")(h)), tf_keras.optimizers.Adam(), 5, 2)
    m.save(fresh(name), save_format="tf", include_optimizer=include)
    golden(name, {"x": rng.normal(size=(3, 5)).astype("float32")})

m = tf_keras.Sequential([tf_keras.Input((4,)), tf_keras.layers.Dense(3, name="dense")])
m = trained(m, tf_keras.optimizers.legacy.Adam(), 4, 3)
m.save(fresh("tfkeras_legacy_adam"), save_format="tf")
golden("tfkeras_legacy_adam", {"input_1": rng.normal(size=(2, 4)).astype("float32")})


# The TF Hub guide's MyMulModel, with a serving signature.
class MyMulModel(tf.train.Checkpoint):
    def __init__(self, v_init):
        super().__init__()
        self.v = tf.Variable(v_init)
        self.variables = [self.v]
        self.trainable_variables = [self.v]
        self.regularization_losses = [tf.function(input_signature=[])(lambda: 0.001 * self.v ** 2)]

    @tf.function(input_signature=[tf.TensorSpec(shape=None, dtype=tf.float32)])
    def __call__(self, inputs):
        return tf.multiply(inputs, self.v)


mul = MyMulModel(2.0)
tf.saved_model.save(mul, fresh("mymul"), signatures={"serving_default": mul.__call__.get_concrete_function()})
golden("mymul", {"inputs": np.array([10.0, 20.0, -1.5], dtype=np.float32)})


# The Reusable SavedModel wrapper of FACTS.md around a Keras 3 model: tf.Variables only.
def regularization_loss(var):
    return tf.function(input_signature=[])(lambda: 1e-3 * tf.reduce_sum(tf.square(var)))


class Reusable(tf.train.Checkpoint):
    def __init__(self, model):
        super().__init__()
        self.variables = [v.value for v in model.variables]
        self.trainable_variables = [v.value for v in model.trainable_variables]
        self.regularization_losses = [regularization_loss(model.get_layer("trunk").kernel.value)]

        @tf.function
        def call(inputs, training=False):
            return model(inputs, training=training)

        spec = tf.TensorSpec([None, 6], tf.float32)
        call.get_concrete_function(spec, training=True)
        call.get_concrete_function(spec, training=False)
        self.__call__ = call

        @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32, name="x")])
        def serve(x):
            return {"head": model(x, training=False)}

        self.serve = serve


keras.utils.set_random_seed(3)
inp = keras.Input((6,), name="x")
h = keras.layers.Dropout(0.3)(keras.layers.Dense(5, activation="relu", name="trunk")(inp))
wrapper = Reusable(keras.Model(inp, keras.layers.Dense(2, name="head")(h)))
tf.saved_model.save(wrapper, fresh("keras3_reusable"), signatures={"serving_default": wrapper.serve})
golden("keras3_reusable", {"x": rng.normal(size=(4, 6)).astype("float32")})


# Every dtype the native check feeds and fetches.
class Dtypes(tf.Module):
    def __init__(self):
        super().__init__()
        self.scale = tf.Variable(np.array([1.5, -2.0]))
        self.offset = tf.Variable(np.int64(7))

    @tf.function(input_signature=[
        tf.TensorSpec([None, 2], tf.float64, name="x"),
        tf.TensorSpec([None], tf.int32, name="ids"),
        tf.TensorSpec([None], tf.bool, name="flag"),
        tf.TensorSpec([None, None], tf.uint8, name="pixels"),
    ])
    def serve(self, x, ids, flag, pixels):
        return {
            "y": x * self.scale,
            "ids64": tf.cast(ids, tf.int64) + self.offset,
            "not_flag": tf.logical_not(flag),
            "pixels_plus": pixels + 1,
            "count": tf.shape(ids, out_type=tf.int32),
            "scalar": tf.reduce_sum(x),
        }


d = Dtypes()
tf.saved_model.save(d, fresh("dtypes"), signatures={"serving_default": d.serve})
golden("dtypes", {
    "x": rng.normal(size=(3, 2)),
    "ids": np.array([1, -5, 2 ** 30], dtype=np.int32),
    "flag": np.array([True, False, True]),
    "pixels": np.array([[0, 254, 255], [1, 2, 3]], dtype=np.uint8),
})
"#;

/// The files under `root`, as sorted relative paths.
fn walk_files(root: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                stack.push(entry.path());
            } else {
                files.push(entry.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    files.sort();
    files
}
