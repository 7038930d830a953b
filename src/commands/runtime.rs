use serde_json::json;

use crate::build_report::utc_display;
use crate::cli::{ReportFormat, RuntimeAction, RuntimeArgs};
use crate::error::{Error, Result};
use crate::runtime::{self, managed, Discovery, Runtime};
use crate::tf::inspect::human_bytes;

use super::Workspace;

pub fn run(workspace: &Workspace, args: &RuntimeArgs) -> Result<()> {
    match args.action {
        RuntimeAction::Install => {
            let (settings, root) = workspace.runtime_settings()?;
            let found =
                runtime::discover(&settings, &root, &Discovery { install: true, progress: !workspace.quiet }).map_err(runtime_error)?;
            if !workspace.quiet {
                print_status(&found);
            }
            Ok(())
        }
        // No usable runtime is an error (exit 1) whatever the format: a script can test for it.
        RuntimeAction::Status { format } => {
            let (settings, root) = workspace.runtime_settings()?;
            let found = runtime::discover(&settings, &root, &Discovery { install: false, progress: false }).map_err(runtime_error)?;
            match format {
                ReportFormat::Text => print_status(&found),
                ReportFormat::Json => {
                    let mut status = serde_json::to_value(&found).expect("runtime serialises");
                    status["keras_backend"] = json!(crate::runtime::worker::KERAS_BACKEND);
                    println!("{}", serde_json::to_string_pretty(&status).expect("status serialises"));
                }
            }
            Ok(())
        }
        RuntimeAction::List { format } => {
            let all = managed::installed();
            match format {
                ReportFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "home": runtime::home(), "runtimes": all })).expect("list serialises")
                ),
                ReportFormat::Text => print_list(&all),
            }
            Ok(())
        }
        RuntimeAction::Prune { older_than, stale, dry_run } => {
            let pruned = managed::prune(older_than, stale, dry_run).map_err(|e| Error::failed_from(&e))?;
            let mut freed = 0;
            for p in &pruned {
                let size = human_bytes(p.runtime.bytes);
                match &p.kept_because {
                    None => {
                        freed += p.runtime.bytes;
                        println!("removed {} ({size}): {}", p.runtime.name, p.reason);
                    }
                    Some(why) => println!("kept {} ({size}, {}): {why}", p.runtime.name, p.reason),
                }
            }
            if !workspace.quiet {
                if pruned.is_empty() {
                    println!("nothing to prune (runtimes unused for {older_than} days{})", if stale { " or stale" } else { "" });
                } else {
                    println!("freed {}", human_bytes(freed));
                }
            }
            Ok(())
        }
    }
}

fn print_list(all: &[managed::Installed]) {
    if all.is_empty() {
        println!("no managed runtime in {}", runtime::home().join("runtimes").display());
        return;
    }
    for r in all {
        println!("{}{}", r.name, if r.current { "" } else { "  (stale: not the pins this exportctl installs)" });
        println!("  pins:      {}", r.requirements.join(", "));
        println!("  size:      {}", human_bytes(r.bytes));
        println!("  last used: {}", utc_display(r.last_used));
        if r.projects.is_empty() {
            println!("  projects:  none recorded");
        } else {
            println!("  projects:  {}", r.projects.join("\n             "));
        }
    }
}

fn print_status(r: &Runtime) {
    let v = &r.versions;
    let or_missing = |s: &Option<String>| s.clone().unwrap_or_else(|| "not installed".into());
    println!("runtime:         {} ({})", r.choice, r.reason);
    println!("python:          {} ({})", r.python.display(), v.python.as_deref().unwrap_or("version unknown"));
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
    match &r.litert {
        Some(version) => println!("ai_edge_litert:  {version}  (for pieces with formats = [.., \"litert\"])"),
        None if r.choice == runtime::Choice::Managed => println!(
            "ai_edge_litert:  not installed  (installed into this runtime by the first build of a piece with formats = [.., \"litert\"])"
        ),
        None => {
            println!("ai_edge_litert:  not installed  (pieces with formats = [.., \"litert\"] need `pip install {}`)", managed_litert())
        }
    }
    println!("home:            {}", runtime::home().display());
}

fn managed_litert() -> String {
    format!("{}=={}", runtime::managed::LITERT.package, runtime::managed::LITERT.version)
}

/// A runtime that cannot be had fails the command like a failed step (exit 1).
pub fn runtime_error(e: runtime::RuntimeError) -> Error {
    Error::from(e)
}
