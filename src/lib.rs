//! exportctl: trained TensorFlow/Keras models in, validated Reusable SavedModel packages out.
//!
//! The modules follow the data: [`manifest`] (text → validated [`manifest::Manifest`], with
//! spanned diagnostics) → [`plan`] (the DAG of steps) → the commands in `commands/`, which
//! only parse arguments (`cli`) and print.

pub mod atomic;
pub mod build;
pub mod cache;
pub mod cli;
pub mod commands;
pub mod error;
pub mod exec;
pub mod gzip;
pub mod hash;
pub mod kaggle;
pub mod lockfile;
pub mod manifest;
pub mod plan;
pub mod runtime;
pub mod scratch;
pub mod steps;
pub mod suggestion;
pub mod tf;
pub mod watch;

use std::process::ExitCode;

use clap::Parser as _;

/// The whole program: parse arguments, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    // Like cat or ls: output into a closed pipe (`exportctl plan | head`) ends the process
    // quietly instead of a panic about a broken pipe.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = cli::Cli::parse();
    match commands::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            error.print();
            ExitCode::from(error.exit_code())
        }
    }
}
