//! Command-line arguments. Commands only parse arguments here and call an operation in
//! `commands/`; nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::plan::PlanFormat;

const ABOUT: &str = "Turn trained TensorFlow/Keras models into validated, documented, reusable SavedModel packages";

const LONG_ABOUT: &str = "\
Turn trained TensorFlow/Keras models into validated, documented, reusable SavedModel packages
for TensorFlow Hub / Kaggle Models and TF Serving.

Describe your models in Export.toml (or export.yaml): which pieces to cut by layer name, the
dropout and batch-norm settings consumers should get, the documentation. `exportctl build`
runs export -> slice -> trace -> validate -> package for every piece, only where something
changed.";

const AFTER_HELP: &str = "\
Examples:
  exportctl init models/classifier.keras   write a starting Export.toml for a model
  exportctl check                          validate the manifest (no TensorFlow needed)
  exportctl plan --format dot | dot -Tsvg > plan.svg
  exportctl plan mobilenet/feature-vector  what building one piece involves

Exit codes: 0 success, 1 a step failed, 2 bad usage or manifest.";

#[derive(Debug, Parser)]
#[command(name = "exportctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = AFTER_HELP)]
#[command(propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Run as if started in DIR (where the manifest is looked up)
    #[arg(short = 'C', long = "directory", value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,

    /// Use this manifest file instead of ./Export.toml or ./export.yaml
    #[arg(short = 'm', long = "manifest", value_name = "MANIFEST", global = true)]
    pub manifest: Option<PathBuf>,

    /// Say more (repeat for TensorFlow's own logs)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Export, validate and package every piece whose inputs changed
    #[command(long_about = "Export, slice, trace, validate and package the pieces of the manifest.\n\n\
        Only steps whose inputs changed run; the others come from the cache in .exportctl/. \
        Packages land in dist/<model>/<piece>/<version>/ and every step's output digest in \
        Export.lock. With TARGETs, only those steps and what they depend on.")]
    Build(BuildArgs),

    /// Validate the manifest and its plan, without running anything
    #[command(long_about = "Validate the manifest and its plan, without running anything.\n\n\
        Reports every problem of the file at once, each with the line and column it is at and \
        how to fix it. Needs no TensorFlow. Exit code 0 when the manifest is valid, 2 when not.")]
    Check,

    /// Print the steps a build runs, and what each depends on
    #[command(long_about = "Print the steps a build runs, and what each depends on.\n\n\
        Steps are `model:export` and `model/piece:slice|trace|validate|package`. With TARGETs, \
        only those steps and the steps they depend on.")]
    Plan(PlanArgs),

    /// Remove the packages in dist/ (and with --cache, the build cache)
    #[command(long_about = "Remove the package folders exportctl wrote in dist/ (anything else there stays).\n\n\
        With --cache, the build cache in .exportctl/ too. With --gc, nothing but what the cache's \
        size limit ([cache] max-size, EXPORTCTL_CACHE_MAX_SIZE, default 20GB) says must go: the \
        least recently used entries, never one Export.lock names.")]
    Clean(CleanArgs),

    /// Check the build cache's files against their digests
    Cache(CacheArgs),

    /// Print the manifest's JSON Schema (the same as schemas/export.schema.json)
    Schema,

    /// Show a SavedModel's signatures, variables and size (natively, without Python)
    #[command(long_about = "Show a SavedModel's tags, signatures (inputs and outputs with dtypes and shapes), \
        variables (count and size), whether optimizer state is present, and its file sizes.\n\n\
        PATH is a SavedModel directory or a packaged .tar.gz. Reads it through TensorFlow's C API: \
        Python is never started.")]
    Inspect(InspectArgs),

    /// Check a SavedModel with both loaders, as a build validates every package
    #[command(long_about = "Check a SavedModel with both loaders, as a build validates every package.\n\n\
        PATH is a SavedModel directory or a packaged .tar.gz. Native: load with tag serve through \
        TensorFlow's C API, check serving_default, run it, look for optimizer state. Python: the \
        Reusable SavedModel API (__call__ with training=True/False, variables, regularization \
        losses, one fine-tuning step), then as consumers use it: hub.KerasLayer in a tf_keras model \
        and keras.layers.TFSMLayer in a Keras 3 model, each fitted one step. Without --golden, the inputs are seeded \
        random tensors for serving_default and the native outputs are the reference Python must \
        match. Exit code 0 when every check passes, 1 when one fails.")]
    Validate(ValidateArgs),

    /// Show or install the managed Python + TensorFlow runtime
    #[command(long_about = "Show or install the Python + TensorFlow runtime that export, slice and trace run in.\n\n\
        The runtime is, in order: the manifest's `runtime.python`, $EXPORTCTL_PYTHON, an active \
        virtualenv that has TensorFlow, else the managed runtime: a virtualenv exportctl installs \
        under $EXPORTCTL_HOME (default ~/.cache/exportctl) on first use.")]
    Runtime(RuntimeArgs),

    /// Write a commented starting Export.toml
    #[command(long_about = "Write a commented starting Export.toml in the current directory (or -C DIR).\n\n\
        With MODEL_FILE (a .keras or .h5 file, a SavedModel directory or `file.py:function`), \
        the manifest gets a model entry for it.")]
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `model`, `model/piece` or `model/piece:step`; default: everything
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Steps to run at once (default: the number of cores)
    #[arg(short = 'j', long = "jobs", value_name = "N")]
    pub jobs: Option<usize>,

    /// After the build, watch the manifest and every input and rebuild what changed
    #[arg(long)]
    pub watch: bool,

    /// Fail if an output differs from Export.lock (reproducible builds in CI)
    #[arg(long)]
    pub locked: bool,

    /// Go on with the steps that do not depend on a failed one
    #[arg(long)]
    pub keep_going: bool,

    /// Say why each step that runs could not come from the cache (a setting, a file, a dependency…)
    #[arg(long)]
    pub explain: bool,

    /// Treat warnings (lints) as errors
    #[arg(long, value_name = "WHAT", value_enum)]
    pub deny: Option<Deny>,

    /// How to report progress: for people, or one JSON event per line on stdout
    #[arg(long, value_enum, default_value = "human")]
    pub message_format: MessageFormat,

    /// Fail at once if another build holds the project's lock, instead of waiting
    #[arg(long)]
    pub no_wait: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Deny {
    Warnings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MessageFormat {
    Human,
    Json,
}

/// `exportctl clean`.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Remove the cache (.exportctl/) too
    #[arg(long, conflicts_with = "gc")]
    pub cache: bool,

    /// Only trim the cache to its size limit now (least recently used entries first),
    /// keeping what Export.lock names
    #[arg(long)]
    pub gc: bool,
}

/// `exportctl cache`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub action: CacheAction,
}

#[derive(Debug, Subcommand)]
pub enum CacheAction {
    /// Hash every cached file and compare it with the digest its entry records; evict what changed
    Verify,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// A SavedModel directory or a .tar.gz package
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// A directory holding golden.json and its arrays (a trace step's golden/)
    #[arg(long, value_name = "DIR")]
    pub golden: Option<PathBuf>,

    /// Batch size of the generated inputs
    #[arg(long, default_value_t = 2)]
    pub batch: usize,

    /// Seed of the generated inputs
    #[arg(long, default_value_t = 0)]
    pub seed: u64,

    /// Absolute tolerance of output comparisons
    #[arg(long, default_value_t = 1e-5)]
    pub atol: f64,

    /// Relative tolerance of output comparisons
    #[arg(long, default_value_t = 1e-5)]
    pub rtol: f64,

    /// Accept optimizer state in the SavedModel
    #[arg(long)]
    pub allow_optimizer: bool,

    /// Skip the one-step fine-tuning check
    #[arg(long)]
    pub no_fine_tune_step: bool,

    /// Let an op the scan refuses run anyway (e.g. PrintV2); repeat for several
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,

    #[command(flatten)]
    pub limits: ArchiveLimitArgs,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// A SavedModel directory or a .tar.gz package
    #[arg(value_name = "PATH")]
    pub path: PathBuf,

    /// Load the SavedModel natively even though the op scan refuses this op; repeat for several
    #[arg(long = "allow-op", value_name = "OP")]
    pub allow_ops: Vec<String>,

    #[command(flatten)]
    pub limits: ArchiveLimitArgs,

    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct RuntimeArgs {
    #[command(subcommand)]
    pub action: RuntimeAction,
}

#[derive(Debug, Subcommand)]
pub enum RuntimeAction {
    /// Which Python and TensorFlow exportctl uses, and why
    Status {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
    /// Install the managed runtime now (a build does it on first use)
    Install,
}

/// How much a `.tar.gz` may unpack to (a decompression bomb stops early).
#[derive(Debug, Args)]
pub struct ArchiveLimitArgs {
    /// Most bytes an archive may unpack to (e.g. 64GB)
    #[arg(long, value_name = "SIZE", default_value = "64GiB", value_parser = parse_size)]
    pub max_unpacked_size: u64,

    /// Most members (files and directories) an archive may hold
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub max_members: u64,

    /// Most bytes unpacked per byte of archive (model weights barely compress)
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_ratio: u64,
}

impl ArchiveLimitArgs {
    pub fn limits(&self) -> crate::tf::archive::Limits {
        crate::tf::archive::Limits { max_bytes: self.max_unpacked_size, max_members: self.max_members, max_ratio: self.max_ratio }
    }
}

fn parse_size(text: &str) -> Result<u64, String> {
    crate::cache::limit::parse_size(text)
}

/// Output format of reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: PlanFormat,

    /// `model`, `model/piece` or `model/piece:step`; default: everything
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The model to fill in: a .keras/.h5 file, a SavedModel directory or file.py:function
    #[arg(value_name = "MODEL_FILE")]
    pub model: Option<String>,

    /// Overwrite an existing manifest
    #[arg(long)]
    pub force: bool,
}
