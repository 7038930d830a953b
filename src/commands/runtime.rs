use crate::cli::{ReportFormat, RuntimeAction, RuntimeArgs};
use crate::error::{Error, Result};
use crate::runtime::{self, Discovery, Runtime, RuntimeError};

use super::Workspace;

pub fn run(workspace: &Workspace, args: &RuntimeArgs) -> Result<()> {
    let (settings, root) = workspace.runtime_settings()?;
    match args.action {
        RuntimeAction::Install => {
            let found = runtime::discover(&settings, &root, &Discovery { install: true, progress: true }).map_err(runtime_error)?;
            print_status(&found);
            Ok(())
        }
        RuntimeAction::Status { format } => {
            match runtime::discover(&settings, &root, &Discovery { install: false, progress: false }) {
                Ok(found) => match format {
                    ReportFormat::Text => print_status(&found),
                    ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&found).expect("runtime serialises")),
                },
                Err(RuntimeError::Unusable { message, help }) if format == ReportFormat::Text => {
                    println!("runtime:  none usable: {message}");
                    println!("          {help}");
                    println!("home:     {}", runtime::home().display());
                }
                Err(e) => return Err(runtime_error(e)),
            }
            Ok(())
        }
    }
}

fn print_status(r: &Runtime) {
    let v = &r.versions;
    let or_missing = |s: &Option<String>| s.clone().unwrap_or_else(|| "not installed".into());
    println!("runtime:         {} ({})", r.choice, r.reason);
    println!("python:          {} ({})", r.python.display(), v.python);
    println!(
        "tensorflow:      {}{}",
        or_missing(&v.tensorflow),
        r.tensorflow_dir.as_ref().map(|d| format!("  ({})", d.display())).unwrap_or_default()
    );
    println!(
        "keras:           {}  (backend {}: the worker sets KERAS_BACKEND whatever your shell or ~/.keras/keras.json say)",
        or_missing(&v.keras),
        crate::runtime::worker::KERAS_BACKEND
    );
    println!("tf_keras:        {}", or_missing(&v.tf_keras));
    println!("tensorflow_hub:  {}", or_missing(&v.tensorflow_hub));
    println!("numpy:           {}", or_missing(&v.numpy));
    println!("home:            {}", runtime::home().display());
}

/// A runtime that cannot be had fails the command like a failed step (exit 1).
pub fn runtime_error(e: RuntimeError) -> Error {
    Error::from(e)
}
