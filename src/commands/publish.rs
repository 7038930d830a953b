//! `exportctl publish`: prints or runs the `kaggle` commands that publish the built packages.

use crate::cli::PublishArgs;
use crate::error::{Error, Result};
use crate::kaggle;
use crate::publish;

use super::Workspace;

pub fn run(workspace: &Workspace, args: &PublishArgs) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let publications = publish::publications(&manifest, &args.targets)?;
    let commands = kaggle::commands(&publications, manifest.project.version, &publish::version_notes(&manifest));
    if args.dry_run {
        for command in &commands {
            println!("# {}", command.what);
            println!("{}", command.shell());
        }
        return Ok(());
    }
    let missing = publish::missing_prerequisites();
    if !missing.is_empty() {
        return Err(Error::failed(
            format!("cannot run the kaggle tool:\n  {}", missing.join("\n  ")),
            Some("`exportctl publish --dry-run` prints the commands without running them".into()),
        )
        .code("kaggle-unavailable"));
    }
    publish::run(&commands, std::path::Path::new("."))?;
    if !workspace.quiet {
        eprintln!(
            "published version {} of {} variation(s)",
            manifest.project.version,
            publications.iter().map(|p| p.variations.len()).sum::<usize>()
        );
    }
    Ok(())
}
