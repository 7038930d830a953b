use serde_json::json;

use crate::cli::{CheckArgs, ReportFormat};
use crate::error::Result;
use crate::plan::Plan;

use super::Workspace;

pub fn run(workspace: &Workspace, args: &CheckArgs) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let plan = Plan::new(&manifest);
    let models = manifest.models.len();
    let pieces = manifest.piece_count();
    match args.format {
        ReportFormat::Json => {
            println!("{}", json!({ "ok": true, "manifest": manifest.source.name, "models": models, "pieces": pieces, "steps": plan.len() }))
        }
        ReportFormat::Text if workspace.quiet => {}
        ReportFormat::Text => println!(
            "{}: ok ({models} model{}, {pieces} piece{}, {} steps)",
            manifest.source.name,
            if models == 1 { "" } else { "s" },
            if pieces == 1 { "" } else { "s" },
            plan.len()
        ),
    }
    Ok(())
}
