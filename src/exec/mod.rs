//! The build engine: runs a plan's steps, in parallel where the DAG allows, each at most once
//! per key, with the outputs kept in the content-addressed cache (`crate::cache`).
//!
//! - `step.rs`: the [`StepRunner`] seam between the engine and the steps.
//! - `scheduler.rs`: the order, the parallelism (`-j`), failure propagation (a failed step
//!   stops its dependents only; `--keep-going`), cancellation (Ctrl-C), `--deny warnings`.
//! - `report.rs`: what the user sees — a progress line per running step and a summary, or one
//!   JSON event per line (`--format json`).
//! - `dist.rs`: `dist/` materialised from the cache after a build.

pub mod dist;
pub mod report;
pub mod scheduler;
mod step;

pub use report::{Ending, Event, Reporter, Source};
pub use scheduler::{execute, BuildOptions, BuildSummary, Engine, Slot, Status, StepResult};
pub use step::{Dependency, Phases, StepContext, StepError, StepInputs, StepOutcome, StepRunner, Warning};
