use crate::cli::{InspectArgs, ReportFormat};
use crate::error::{Error, Result};
use crate::outline::{self, ModelSource, Outline};
use crate::runtime::{self, Discovery};
use crate::tf::{self, Native, TfLogs};

use super::runtime::runtime_error;
use super::Workspace;

pub fn run(workspace: &Workspace, args: &InspectArgs) -> Result<()> {
    let text = args.path.to_string_lossy();
    if let Some(source) = ModelSource::recognise(&workspace.dir, &text) {
        return inspect_model(workspace, args, &source, &text);
    }
    let path = workspace.dir.join(&args.path);
    if !path.exists() {
        return Err(Error::usage(
            format!("{} does not exist", path.display()),
            "give a model (.keras, .h5, a Keras SavedModel directory, file.py:function) or a SavedModel package (directory or .tar.gz)",
        ));
    }
    let native = native_library(workspace)?;
    let is_archive = path.is_file();
    let inspection = if is_archive {
        let scratch = runtime::home().join("scratch");
        tf::inspect::inspect_archive_with(native, &path, &scratch, &args.allow_ops, args.limits.limits())
            .map_err(|e| Error::failed_from(&e))?
    } else {
        tf::inspect(native, &path, &args.allow_ops)
            .map_err(|e| Error::failed(e.to_string(), Some("is this a SavedModel directory (holding saved_model.pb)?".into())))?
    };
    match args.format {
        ReportFormat::Text => print!("{}", inspection.render_human()),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&inspection).expect("inspection serialises")),
    }
    Ok(())
}

/// The TensorFlow C library of the chosen runtime, loaded once. Installs the managed runtime
/// on first use; never starts Python for a runtime it knows.
pub fn native_library(workspace: &Workspace) -> Result<&'static Native> {
    let (settings, root) = workspace.runtime_settings()?;
    let found = runtime::discover(&settings, &root, &Discovery { install: true, progress: !workspace.quiet }).map_err(runtime_error)?;
    let tf_dir = found.require_tensorflow_dir().map_err(runtime_error)?;
    let logs = if workspace.verbose >= 2 { TfLogs::Shown } else { TfLogs::Quiet };
    Native::load(tf_dir, &runtime::home().join("native"), logs).map_err(|e| Error::failed_from(&e))
}

/// A model's layers, read by the Python worker.
fn inspect_model(workspace: &Workspace, args: &InspectArgs, source: &ModelSource, name: &str) -> Result<()> {
    let outline = read_outline(workspace, source)?;
    match args.format {
        ReportFormat::Text => print!("{}", outline.render_text(name)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&outline).expect("outline serialises")),
    }
    Ok(())
}

/// The outline of `source` in the project's runtime (the managed one outside a project),
/// with the custom objects of the manifest's model of that source, if there is one.
pub fn read_outline(workspace: &Workspace, source: &ModelSource) -> Result<Outline> {
    let (settings, root) = workspace.runtime_settings()?;
    let custom_objects: Vec<std::path::PathBuf> = workspace
        .load_manifest()
        .ok()
        .and_then(|m| {
            let wanted = std::path::absolute(source.path()).ok()?;
            let model =
                m.models.iter().find(|model| std::path::absolute(m.root.join(model.source.path())).ok().as_ref() == Some(&wanted))?;
            Some(model.custom_objects.iter().map(|p| m.root.join(p)).collect())
        })
        .unwrap_or_default();
    let found = runtime::discover(&settings, &root, &Discovery { install: true, progress: !workspace.quiet }).map_err(runtime_error)?;
    outline::outline(&found, source, &custom_objects, workspace.verbose)
}
