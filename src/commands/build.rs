//! `exportctl build`: plan, lock the project, run the steps through the engine, materialise
//! `dist/`, then write (or with `--locked`, check) `Export.lock`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::cache::{self, ProjectLock, SourceDigests, Store};
use crate::cli::{BuildArgs, Deny, MessageFormat};
use crate::error::{Error, Result};
use crate::exec::{self, report, BuildOptions, Engine, Reporter, Status};
use crate::lockfile::{self, LockFile};
use crate::plan::Plan;
use crate::runtime::{self, Discovery};

use super::runtime::runtime_error;
use super::Workspace;

/// Set by Ctrl-C: running steps finish, no new step starts. A second Ctrl-C exits at once
/// (what is half-written is in the cache's tmp/, which no build trusts).
static CANCELLED: AtomicBool = AtomicBool::new(false);

fn install_ctrl_c() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if CANCELLED.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping: letting running steps finish (Ctrl-C again to stop now)…");
        });
    });
}

pub fn run(workspace: &Workspace, args: &BuildArgs) -> Result<()> {
    let manifest = Arc::new(workspace.load_manifest()?);
    let plan = Plan::new(&manifest).select(&args.targets).map_err(|e| Error::usage(e.to_string(), e.help))?;
    let reporter: Box<dyn Reporter> = match args.message_format {
        MessageFormat::Human => Box::new(report::Human::new(workspace.verbose)),
        MessageFormat::Json => Box::new(report::Json::new()),
    };
    let cache_dir = cache::ensure(&manifest.root).map_err(|e| Error::failed(format!("cannot create .exportctl/: {e}"), None))?;
    let _lock = ProjectLock::acquire(&cache_dir, !args.no_wait, |holder| {
        let who = holder.map(|p| format!(" (pid {p})")).unwrap_or_default();
        reporter.note(&format!("waiting for another exportctl build in this project{who} to finish…"));
    })
    .map_err(|e| Error::failed(e.to_string(), Some("wait for it, or run without --no-wait".into())))?;

    let store = Store::open(&cache_dir).map_err(|e| Error::failed(format!("cannot open the cache: {e}"), None))?;
    let _ = store.clean_tmp();
    let progress = args.message_format == MessageFormat::Human;
    let runtime = runtime::discover(&manifest.runtime, &manifest.root, &Discovery { install: true, progress }).map_err(runtime_error)?;
    let steps = crate::steps::TfSteps::new(manifest.clone(), runtime.clone(), workspace.verbose);

    install_ctrl_c();
    let engine = Engine {
        root: &manifest.root,
        store: &store,
        runner: &steps,
        tool: cache::key::tool_version(),
        runtime: runtime.fingerprint(),
        reporter: reporter.as_ref(),
        cancelled: &CANCELLED,
    };
    let options = BuildOptions {
        jobs: args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        keep_going: args.keep_going,
        deny_warnings: args.deny == Some(Deny::Warnings),
    };
    let mut sources = SourceDigests::load(&cache_dir);
    let summary = exec::execute(&engine, &plan, &mut sources, &options);
    drop(steps); // stops the worker
    let _ = sources.save();
    exec::dist::materialize(&cache_dir, &manifest.out_dir(), manifest.project.version, &summary)
        .map_err(|e| Error::failed(format!("cannot write {}: {e}", manifest.out_dir().display()), None))?;
    reporter.summary(&summary);

    if summary.cancelled {
        return Err(Error::failed("the build was cancelled", Some("what finished is cached; run the build again to go on".into())));
    }
    if !summary.succeeded() {
        let failed: Vec<String> = summary.results.iter().filter(|r| matches!(r.status, Status::Failed(_))).map(|r| r.id.to_string()).collect();
        return Err(Error::failed(
            format!("{} step{} failed: {}", failed.len(), if failed.len() == 1 { "" } else { "s" }, failed.join(", ")),
            Some("the errors above say why; dist/ and the cache keep what they had for the failed pieces".into()),
        ));
    }

    let lock_path = manifest.root.join(lockfile::FILE_NAME);
    let previous = LockFile::read(&lock_path);
    let built = LockFile::from_build(&summary, previous.as_ref());
    if args.locked {
        let Some(locked) = previous else {
            return Err(Error::failed(
                format!("--locked: {} does not exist", lock_path.display()),
                Some("run `exportctl build` once without --locked and commit Export.lock".into()),
            ));
        };
        let differences = locked.differences(&built);
        if !differences.is_empty() {
            let list: Vec<String> = differences.iter().map(|d| format!("  {d}")).collect();
            return Err(Error::failed(
                format!("--locked: {} output{} differ from Export.lock:\n{}", differences.len(), if differences.len() == 1 { "" } else { "s" }, list.join("\n")),
                Some("if the change is intended, run `exportctl build` without --locked and commit the new Export.lock".into()),
            ));
        }
    } else {
        built.write(&lock_path).map_err(|e| Error::failed(format!("cannot write {}: {e}", lock_path.display()), None))?;
    }
    Ok(())
}
