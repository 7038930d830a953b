//! exportctl's integration tests: one binary, one module per feature.

mod backends;
mod build;
mod cache;
mod cli;
mod consumers;
mod contract;
mod examples;
mod faults;
mod hostile;
mod init;
mod litert;
mod manifest_errors;
mod manifest_fuzz;
mod native;
mod nginx;
mod plan;
mod publish;
mod python;
mod remote;
mod report;
mod reproducible;
mod runtime;
mod schema;
mod steps;
mod support;
mod watch;
