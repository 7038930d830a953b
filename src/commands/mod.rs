//! One file per command. Each takes its parsed arguments and a [`Workspace`] and does the
//! work through the library; printing is the only thing done here.

mod build;
mod cache;
mod check;
mod clean;
mod completions;
mod init;
mod inspect;
mod plan;
mod publish;
mod report;
mod runtime;
mod schema;
mod validate;

use std::path::{Path, PathBuf};

use crate::cli::{Cli, Command, GlobalArgs};
use crate::error::Result;
use crate::manifest::{self, KerasFlavour, Manifest, RuntimeSettings};

/// Where the command runs: the directory from `-C` and the manifest from `-m`.
pub struct Workspace {
    pub dir: PathBuf,
    pub manifest_arg: Option<PathBuf>,
    pub verbose: u8,
    /// `-q`: no progress, no summary, no "wrote …" lines.
    pub quiet: bool,
}

impl Workspace {
    fn new(global: &GlobalArgs) -> Workspace {
        Workspace {
            dir: global.directory.clone().unwrap_or_else(|| PathBuf::from(".")),
            manifest_arg: global.manifest.clone(),
            verbose: global.verbose,
            quiet: global.quiet,
        }
    }

    /// Finds, reads and validates the manifest.
    pub fn load_manifest(&self) -> Result<Manifest> {
        let path = manifest::locate(&self.dir, self.manifest_arg.as_deref())?;
        Ok(manifest::load(&path, &display_name(&path))?)
    }
}

impl Workspace {
    /// The runtime settings of the manifest when there is one, else the defaults: runtime
    /// commands work outside a project too.
    pub fn runtime_settings(&self) -> Result<(RuntimeSettings, PathBuf)> {
        match manifest::locate(&self.dir, self.manifest_arg.as_deref()) {
            Ok(_) => {
                let manifest = self.load_manifest()?;
                Ok((manifest.runtime.clone(), manifest.root.clone()))
            }
            Err(_) => Ok((
                RuntimeSettings { python: None, tensorflow: "2.21.0".into(), keras: KerasFlavour::Auto, timeout_secs: 900 },
                self.dir.clone(),
            )),
        }
    }
}

/// How diagnostics name a file: as the user would type it from where they stand.
fn display_name(path: &Path) -> String {
    let shown = path.strip_prefix(".").unwrap_or(path);
    shown.display().to_string()
}

pub fn run(cli: Cli) -> Result<()> {
    let workspace = Workspace::new(&cli.global);
    match cli.command {
        Command::Build(args) => build::run(&workspace, &args),
        Command::Check(args) => check::run(&workspace, &args),
        Command::Clean(args) => clean::run(&workspace, &args),
        Command::Cache(args) => cache::run(&workspace, &args),
        Command::Plan(args) => plan::run(&workspace, &args),
        Command::Schema => schema::run(),
        Command::Init(args) => init::run(&workspace, &args),
        Command::Runtime(args) => runtime::run(&workspace, &args),
        Command::Inspect(args) => inspect::run(&workspace, &args),
        Command::Validate(args) => validate::run(&workspace, &args),
        Command::Publish(args) => publish::run(&workspace, &args),
        Command::Report(args) => report::run(&workspace, &args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man(args) => completions::man(&args),
    }
}
