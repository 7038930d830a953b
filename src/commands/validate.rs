//! `exportctl validate PATH`: the two loaders a build validates with, on any SavedModel directory or archive.

use std::time::Duration;

use crate::cli::{ReportFormat, ValidateArgs};
use crate::error::{Error, Result};
use crate::runtime::worker::WorkerOptions;
use crate::runtime::{self, Discovery, Worker};
use crate::steps::validate::{self, Standalone};
use crate::tf;

use super::inspect::native_library;
use super::runtime::runtime_error;
use super::Workspace;

pub fn run(workspace: &Workspace, args: &ValidateArgs) -> Result<()> {
    let path = workspace.dir.join(&args.path);
    if !path.exists() {
        return Err(Error::usage(format!("{} does not exist", path.display()), "give a SavedModel directory or a .tar.gz package"));
    }
    let golden = args.golden.as_ref().map(|g| workspace.dir.join(g));
    if let Some(dir) = &golden {
        if !dir.join("golden.json").is_file() {
            return Err(Error::usage(
                format!("{} holds no golden.json", dir.display()),
                "--golden names a directory like a trace step's golden/ (golden.json, inputs/, outputs/)",
            ));
        }
    }
    let native = native_library(workspace)?;
    let (settings, root) = workspace.runtime_settings()?;
    let found = runtime::discover(&settings, &root, &Discovery { install: true, progress: !workspace.quiet }).map_err(runtime_error)?;
    let mut worker = Worker::new(&found, WorkerOptions { timeout: Duration::from_secs(settings.timeout_secs), verbose: workspace.verbose });

    let scratch = runtime::home().join("scratch");
    let extracted = if path.is_file() {
        Some(tf::archive::extract_archive_with(&path, &scratch, args.limits.limits()).map_err(|e| Error::failed_from(&e))?)
    } else {
        None
    };
    let dir = extracted.as_ref().map_or(path.as_path(), |e| e.path());
    let options = Standalone {
        golden: golden.as_deref(),
        batch: args.batch.max(1),
        seed: args.seed,
        atol: args.atol,
        rtol: args.rtol,
        allow_optimizer: args.allow_optimizer,
        fine_tune_step: !args.no_fine_tune_step,
        scratch: &scratch,
        allow_ops: &args.allow_ops,
    };
    // Messages name the archive, never the scratch folder it was unpacked into.
    let unscratch = |text: String| match &extracted {
        Some(e) => text.replace(&e.path().display().to_string(), &path.display().to_string()),
        None => text,
    };
    let report = validate::validate_saved_model(native, &mut worker, dir, &options)
        .map_err(|e| Error::failed(unscratch(e.message), e.help.map(unscratch)))?;
    worker.shutdown();
    let report: validate::Report =
        serde_json::from_str(&unscratch(serde_json::to_string(&report).expect("reports serialise"))).expect("the same report");

    let error = (!report.ok).then(|| {
        let failed = report.native.checks.iter().chain(&report.reusable.checks).filter(|c| !c.ok).count();
        Error::failed(
            format!("{} is not a valid package: {failed} check{} failed", path.display(), if failed == 1 { "" } else { "s" }),
            Some("the report above names each failed check and why".into()),
        )
    });
    match args.format {
        ReportFormat::Text => {
            println!("{}", path.display());
            print!("{}", validate::render_report(&report));
            error.map_or(Ok(()), Err)
        }
        // One document on stdout: a failed validation's error is the report's `error`.
        ReportFormat::Json => {
            let mut value = serde_json::to_value(&report).expect("reports serialise");
            value["error"] = error.as_ref().map_or(serde_json::Value::Null, Error::to_json);
            println!("{}", serde_json::to_string_pretty(&value).expect("reports serialise"));
            error.map_or(Ok(()), |e| Err(e.shown()))
        }
    }
}
