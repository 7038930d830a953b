//! Models trained on any Keras backend export under TensorFlow, as long as their code is
//! backend-neutral; code tied to JAX or PyTorch fails with an error that names the layer and
//! says what to write instead (examples.rs builds the JAX-trained example itself).

use crate::support::{runtime, stderr, Project};

const MANIFEST: &str = r#"
[project]
name = "backends"

[models.m]
source = "model.py:build"

[[models.m.pieces]]
name = "all"
"#;

#[test]
fn a_layer_calling_jax_numpy_fails_naming_the_layer() {
    runtime();
    let model = r#"
import keras


class JaxSoftplus(keras.layers.Layer):
    def call(self, x):
        import jax.numpy as jnp

        return jnp.logaddexp(x, 0.0)


def build():
    inputs = keras.Input((4,), name="x")
    outputs = keras.layers.Dense(2, name="logits")(JaxSoftplus(name="softplus")(inputs))
    return keras.Model(inputs, outputs)
"#;
    let project = Project::new().file("Export.toml", MANIFEST).file("model.py", model);
    let out = project.run(&["build", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("layer `softplus` (JaxSoftplus) runs JAX code (`jax`) in its `call`, which cannot run on TensorFlow"), "{err}");
    assert!(err.contains("Write the layer with keras.ops instead"), "{err}");
    assert!(err.contains("JaxSoftplus.call is at model.py:7"), "{err}");
    assert!(!err.contains("Traceback"), "no traceback for people: {err}");
}

#[test]
fn a_model_file_importing_jax_fails_naming_the_import() {
    runtime();
    let model = "import jax\nimport keras\n\n\ndef build():\n    return None\n";
    let project = Project::new().file("Export.toml", MANIFEST).file("model.py", model);
    let out = project.run(&["build", "--color", "never"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("model.py:1 imports `jax` (JAX), which exportctl's TensorFlow runtime"), "{err}");
    assert!(err.contains("keras.ops"), "{err}");
}
