//! The native side: TensorFlow's C API, loaded from the pip wheel, without Python.
//!
//! This is the only module that touches the `tensorflow` crate, and it does so in two files:
//! [`native`] (loading the C library once per process) and [`model`] (loading a SavedModel
//! into a session and running a signature). Everything else here is plain Rust over files:
//!
//! | file | what |
//! |---|---|
//! | [`native`] | `Native::load`: a link directory in the cache, dlopen once |
//! | [`saved_model_pb`], [`proto`] | reading `saved_model.pb` (tags, signatures, object graph) with a small wire-format reader |
//! | [`parts`] | digests of `saved_model.pb`'s parts (functions, graph, object graph…), for `Export.lock` |
//! | [`variables`] | stored variables and optimizer-state detection (the design notes are there) |
//! | [`inspect`] | `exportctl inspect`: [`Inspection`], human and JSON reports |
//! | [`model`] | [`LoadedModel`], [`run_signature`]: validate's native check |
//! | [`array`], [`npy`], [`compare`] | golden arrays: the `.npy` files the worker writes, and the tolerance rule |
//! | [`archive`] | unpacking a packaged `.tar.gz` safely (TF Hub's rules) |
//! | [`scan`] | ops that touch files, hosts or Python, found before anything runs |
//!
//! Using it:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use exportctl::tf::{self, Native, TfLogs};
//! use std::path::Path;
//!
//! let native = Native::load(Path::new(".venv/lib/python3.11/site-packages/tensorflow"), Path::new("cache"), TfLogs::Quiet)?;
//! let inspection = tf::inspect(native, Path::new("saved_model"), &[])?;
//! print!("{}", inspection.render_human());
//!
//! let x = tf::npy::read(Path::new("golden/inputs/x.npy"))?;
//! let outputs = tf::run_signature(native, Path::new("saved_model"), "serving_default", &[("x".into(), x)])?;
//! for (name, got) in &outputs {
//!     let expected = tf::npy::read(&Path::new("golden/outputs").join(format!("{name}.npy")))?;
//!     let comparison = tf::compare(&expected, got, 1e-5, 1e-5);
//!     println!("{name}: {comparison}");
//! }
//! # Ok(())
//! # }
//! ```

pub mod archive;
pub mod array;
pub mod compare;
pub mod dtype;
pub mod inspect;
pub mod model;
pub mod native;
pub mod npy;
pub mod parts;
pub mod proto;
pub mod saved_model_pb;
pub mod scan;
pub mod signature;
pub mod variables;

pub use archive::{extract_archive, ArchiveError, ExtractedArchive};
pub use array::{Array, ArrayData};
pub use compare::{compare, Comparison, Point};
pub use dtype::DType;
pub use inspect::{inspect, inspect_archive, InspectError, Inspection};
pub use model::{run_signature, LoadedModel, ModelError};
pub use native::{Native, NativeError, TfLogs};
pub use parts::SavedModelParts;
pub use saved_model_pb::SavedModelError;
pub use signature::{Signature, TensorSpec};
