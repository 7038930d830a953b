//! `exportctl build`: parse, then hand over to `crate::build` (or `crate::watch`).

use std::sync::atomic::{AtomicBool, Ordering};

use crate::build::{BuildRequest, Builder};
use crate::cli::{BuildArgs, Deny, MessageFormat};
use crate::error::Result;
use crate::exec::{report, BuildOptions, Reporter};

use super::Workspace;

/// Set by Ctrl-C: running steps finish, no new step starts (and `--watch` stops). A second
/// Ctrl-C exits at once: what is half-written is in the cache's tmp/, which no build trusts.
pub static CANCELLED: AtomicBool = AtomicBool::new(false);

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
    let reporter: Box<dyn Reporter> = match args.format {
        MessageFormat::Human => Box::new(report::Human::new(workspace.verbose).explaining(args.explain)),
        MessageFormat::Json => Box::new(report::Json::new()),
    };
    let request = BuildRequest {
        dir: workspace.dir.clone(),
        manifest: workspace.manifest_arg.clone(),
        targets: args.targets.clone(),
        shard: args.shard,
        options: BuildOptions {
            jobs: args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            keep_going: args.keep_going,
            deny_warnings: args.deny == Some(Deny::Warnings),
        },
        locked: args.locked,
        wait_for_lock: !args.no_wait,
        verbose: workspace.verbose,
        progress: args.format == MessageFormat::Human && !workspace.quiet,
    };
    install_ctrl_c();
    let mut builder = Builder::new(request, reporter.as_ref(), &CANCELLED);
    if args.watch {
        return crate::watch::run(&mut builder, args.format == MessageFormat::Json);
    }
    builder.build().map(|_| ())
}
