use crate::cli::{InspectArgs, ReportFormat};
use crate::error::{Error, Result};
use crate::runtime::{self, Discovery};
use crate::tf::{self, Native, TfLogs};

use super::runtime::runtime_error;
use super::Workspace;

pub fn run(workspace: &Workspace, args: &InspectArgs) -> Result<()> {
    let path = workspace.dir.join(&args.path);
    if !path.exists() {
        return Err(Error::usage(format!("{} does not exist", path.display()), "give a SavedModel directory or a .tar.gz package"));
    }
    let native = native_library(workspace)?;
    let is_archive = path.is_file();
    let inspection = if is_archive {
        let scratch = runtime::home().join("scratch");
        tf::inspect::inspect_archive_with(native, &path, &scratch, &args.allow_ops, args.limits.limits()).map_err(|e| {
            let help = e.help();
            Error::failed(e.to_string(), help)
        })?
    } else {
        tf::inspect(native, &path, &args.allow_ops).map_err(|e| Error::failed(e.to_string(), Some("is this a SavedModel directory (holding saved_model.pb)?".into())))?
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
    let found = runtime::discover(&settings, &root, &Discovery { install: true, progress: true }).map_err(runtime_error)?;
    let tf_dir = found.require_tensorflow_dir().map_err(runtime_error)?;
    let logs = if workspace.verbose >= 2 { TfLogs::Shown } else { TfLogs::Quiet };
    Native::load(tf_dir, &runtime::home().join("native"), logs).map_err(|e| {
        let help = e.help();
        Error::failed(e.to_string(), Some(help))
    })
}
