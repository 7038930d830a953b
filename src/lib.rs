//! exportctl: trained TensorFlow/Keras models in, validated Reusable SavedModel packages out.
//!
//! The modules follow the data: [`manifest`] (text → validated [`manifest::Manifest`], with
//! spanned diagnostics) → [`plan`] (the DAG of steps) → the commands in `commands/`, which
//! only parse arguments (`cli`) and print.

// A step's errors carry what a person needs to act (the worker's traceback and log tail, the
// step's help): they are built once per failure, never in a hot path, so their size is no cost
// worth an allocation per `Result`.
#![allow(clippy::result_large_err)]

pub mod atomic;
pub mod build;
pub mod build_report;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod contract;
pub mod error;
pub mod exec;
pub mod gzip;
pub mod hash;
pub mod kaggle;
pub mod lockfile;
pub mod manifest;
pub mod outline;
pub mod plan;
pub mod publish;
pub mod runtime;
pub mod scratch;
pub mod steps;
pub mod suggestion;
pub mod terminal;
pub mod tf;
pub mod watch;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};

use crate::error::{Error, Format, Problem};

/// The whole program: parse arguments, run the command, map the outcome to an exit code
/// (`error.rs` has the table).
pub fn main() -> ExitCode {
    // Like cat or ls: output into a closed pipe (`exportctl plan | head`) ends the process
    // quietly instead of a panic about a broken pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args: Vec<OsString> = std::env::args_os().collect();
    let cli = match parse(&args) {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error, &args),
    };
    terminal::init(cli.global.color, cli.global.quiet);
    let format = cli.format();
    let result = commands::run(cli);
    // Every worker is gone and every unpacked archive dropped by now.
    scratch::remove_own();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.print(format);
            ExitCode::from(error.exit_code())
        }
    }
}

/// The arguments, parsed with clap's own messages coloured as `--color` says, even when the
/// arguments are wrong (clap otherwise decides before it has read the flag).
fn parse(args: &[OsString]) -> Result<cli::Cli, clap::Error> {
    let mut command = cli::Cli::command();
    let color = args.iter().enumerate().find_map(|(i, a)| {
        let a = a.to_string_lossy();
        match a.strip_prefix("--color") {
            Some("") => args.get(i + 1).map(|v| v.to_string_lossy().into_owned()),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        }
    });
    command = match color.as_deref() {
        Some("never") => command.color(clap::ColorChoice::Never),
        Some("always") => command.color(clap::ColorChoice::Always),
        _ => command,
    };
    let matches = command.try_get_matches_from(args)?;
    cli::Cli::from_arg_matches(&matches)
}

/// `--help` and `--version` print and exit 0; wrong arguments exit 2, as JSON when the
/// arguments ask for JSON output.
fn usage_error(error: &clap::Error, args: &[OsString]) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(error.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand) {
        let _ = error.print();
        return ExitCode::from(if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand { 2 } else { 0 });
    }
    if cli::wants_json(args) {
        let text = error.render().to_string();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let message = lines.next().unwrap_or("").trim_start_matches("error: ").to_string();
        let help = lines.map(str::trim).collect::<Vec<_>>().join("\n");
        Error::Usage(Problem { code: "usage", message, help: Some(help), shown: false }).print(Format::Json);
    } else {
        let _ = error.print();
    }
    ExitCode::from(2)
}
