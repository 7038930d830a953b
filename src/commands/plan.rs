use crate::cli::PlanArgs;
use crate::error::{Error, Result};
use crate::plan::Plan;

use super::Workspace;

pub fn run(workspace: &Workspace, args: &PlanArgs) -> Result<()> {
    let manifest = workspace.load_manifest()?;
    let plan = Plan::new(&manifest).select(&args.targets).map_err(|e| Error::usage_from(&e).code("unknown-target"))?;
    print!("{}", plan.render(args.format));
    Ok(())
}
