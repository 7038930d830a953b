//! exportctl's integration tests: one binary, one module per feature.

mod support;
mod manifest_errors;
mod schema;
mod cli;
mod plan;
mod native;
