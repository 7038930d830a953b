//! exportctl's integration tests: one binary, one module per feature.

mod support;
mod nginx;
mod manifest_errors;
mod manifest_fuzz;
mod schema;
mod cli;
mod plan;
mod native;
mod runtime;
mod python;
mod build;
mod cache;
mod watch;
mod steps;
mod consumers;
mod backends;
mod examples;
mod publish;
mod litert;
mod report;
mod init;
mod reproducible;
mod remote;
mod hostile;
mod faults;
mod contract;
