//! `exportctl completions SHELL` and `exportctl man`: generated from the same clap definition
//! the arguments are parsed with (clap_complete, clap_mangen), so they never drift from it.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::error::{Error, Result};

pub fn completions(args: &CompletionsArgs) -> Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "exportctl", &mut std::io::stdout());
    Ok(())
}

pub fn man(args: &ManArgs) -> Result<()> {
    let command = Cli::command();
    let page = match &args.command {
        None => command,
        Some(name) => {
            let Some(sub) = command.get_subcommands().find(|c| c.get_name() == name) else {
                let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
                return Err(Error::usage(format!("no command `{name}`"), format!("one of: {}", names.join(", "))));
            };
            // The page of `exportctl build` is named exportctl-build, as git's and cargo's are.
            sub.clone().name(format!("exportctl-{name}")).bin_name(format!("exportctl {name}"))
        }
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page).render(&mut out).map_err(|e| Error::failed(format!("cannot render the manual page: {e}"), None))?;
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(&out);
    Ok(())
}
