use crate::error::Result;
use crate::plan::Plan;

use super::Workspace;

pub fn run(workspace: &Workspace) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let plan = Plan::new(&manifest);
    let models = manifest.models.len();
    let pieces = manifest.piece_count();
    println!(
        "{}: ok ({models} model{}, {pieces} piece{}, {} steps)",
        manifest.source.name,
        if models == 1 { "" } else { "s" },
        if pieces == 1 { "" } else { "s" },
        plan.len()
    );
    Ok(())
}
