//! Command-line arguments. Commands only parse arguments here and call an operation in
//! `commands/`; nothing here does work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::error::Format;
use crate::plan::PlanFormat;
use crate::terminal::ColorChoice;

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
  exportctl inspect models/classifier.keras   a model's layers: where a piece can be cut
  exportctl init models/classifier.keras   propose an Export.toml from the model's structure
  exportctl check                          validate the manifest (no TensorFlow needed)
  exportctl plan --format dot | dot -Tsvg > plan.svg
  exportctl plan mobilenet/feature-vector  what building one piece involves
  exportctl publish --dry-run              the `kaggle` commands that publish to Kaggle Models

Exit codes:
  0    success
  1    a step failed, or --locked found an output that differs from Export.lock
  2    bad usage, or an invalid or missing manifest (nothing was run)
  130  interrupted (Ctrl-C), also in --watch";

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

    /// Print only errors, warnings and the data asked for (no progress, no summary)
    #[arg(short = 'q', long = "quiet", global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// When to colour output (NO_COLOR and CLICOLOR_FORCE are honoured with auto)
    #[arg(long = "color", value_name = "WHEN", value_enum, default_value = "auto", global = true)]
    pub color: ColorChoice,
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
    Check(CheckArgs),

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

    /// List a model's layers (where to cut), or show a SavedModel's signatures and variables
    #[command(long_about = "List a model's layers, or show a SavedModel's signatures and variables.\n\n\
        For a model (a .keras or .h5 file, a Keras SavedModel directory or `file.py:function`): \
        every layer in graph order with its type, output shape and parameters, which layers are \
        dropout or batch-norm, and the final activation: the names `from` and `to` can cut at. \
        Loaded by the Python worker.\n\n\
        For a SavedModel package (a directory holding saved_model.pb, or a packaged .tar.gz): \
        its tags, signatures (inputs and outputs with dtypes and shapes), variables (count and \
        size), whether optimizer state is present, and its file sizes, read through TensorFlow's \
        C API: Python is never started.")]
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

    /// Write a starting Export.toml, with pieces proposed from the model's structure
    #[command(long_about = "Write a commented starting Export.toml in the current directory (or -C DIR).\n\n\
        With MODEL_FILE (a .keras or .h5 file, a Keras SavedModel directory or `file.py:function`), \
        the model is read by the Python worker, as `exportctl inspect` does, and the manifest \
        proposes pieces from its structure: the logits before a final softmax, a feature \
        vector at the last pooling layer. It declares the model's inputs, and the dropout and \
        batch-norm settings only when the model has such layers.")]
    Init(InitArgs),

    /// Publish the built packages to Kaggle Models with the `kaggle` tool
    #[command(long_about = "Publish the built packages to Kaggle Models with the official `kaggle` command-line tool.\n\n\
        Each model becomes a Kaggle model (`[kaggle] owner`/model name) and each of its pieces a \
        TensorFlow 2 variation named after the piece. Version 1 (`project.version`) creates the \
        model and its variations; a later version updates the model card and each variation's \
        documentation, then uploads the variation's new version with `[kaggle] version-notes`. \
        Reads what `exportctl build` wrote in dist/ and builds nothing; every file is checked \
        before the first command runs.\n\n\
        With --dry-run, prints the commands and runs nothing. Without it, runs them: that needs \
        the `kaggle` command on PATH (`pip install kaggle`) and credentials ($KAGGLE_USERNAME and \
        $KAGGLE_KEY, $KAGGLE_API_TOKEN, or ~/.kaggle/kaggle.json), and says which is missing. \
        docs/publishing.md walks through it.")]
    Publish(PublishArgs),

    /// Open the last build's HTML report (or print where it is)
    #[command(long_about = "Open the last build's HTML report, or print where it is.\n\n\
        Every build that ran a step writes .exportctl/reports/latest.html (and keeps the last 10 \
        as build-<time>.html): a timeline of the steps, each step's phases, the plan as a graph \
        coloured by outcome, and per piece validate's checks, sizes, parameters and warnings. \
        The page is self-contained (no network). The path is always printed on stdout; the page \
        is also opened in a browser (xdg-open, or open on macOS) when stdout is a terminal, a \
        display is available and --print is not given.")]
    Report(ReportArgs),

    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    #[command(long_about = "Print a completion script for SHELL on stdout.\n\n\
        bash:  exportctl completions bash > ~/.local/share/bash-completion/completions/exportctl\n\
        zsh:   exportctl completions zsh > ~/.zfunc/_exportctl   (with fpath+=~/.zfunc)\n\
        fish:  exportctl completions fish > ~/.config/fish/completions/exportctl.fish")]
    Completions(CompletionsArgs),

    /// Print the manual page (roff), for `man`
    #[command(long_about = "Print exportctl's manual page in roff on stdout, or COMMAND's.\n\n\
        exportctl man | man -l -\n\
        exportctl man > ~/.local/share/man/man1/exportctl.1")]
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Output format
    #[arg(long, value_enum, default_value = "text")]
    pub format: ReportFormat,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// `model` or `model/piece`; default: every piece
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,

    /// Print the `kaggle` commands, run nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Only print the report's path, never open a browser
    #[arg(long)]
    pub print: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A command's page instead of exportctl's (e.g. `build`, `runtime`)
    #[arg(value_name = "COMMAND")]
    pub command: Option<String>,
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

    /// Build the K-th of N shares of the pieces (CI: N jobs through a shared remote cache, then one `--locked` job assembles dist/)
    #[arg(long, value_name = "K/N", conflicts_with = "watch")]
    pub shard: Option<crate::plan::Shard>,

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
    #[arg(long = "format", visible_alias = "message-format", value_name = "FORMAT", value_enum, default_value = "human")]
    pub format: MessageFormat,

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
    #[value(alias = "text")]
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
    /// A model (.keras, .h5, Keras SavedModel directory, file.py:function) or a SavedModel package (directory or .tar.gz)
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
    /// The managed runtimes installed: pins, size, last use, the projects that use them
    List {
        /// Output format
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
    },
    /// Remove managed runtimes unused for DAYS days, or not matching the current pins
    #[command(long_about = "Remove managed runtimes that were not used for DAYS days, or (with --stale) \
        that do not match the pins this exportctl installs.\n\n\
        Safe while other exportctl processes run: a runtime in use by one of them is kept, and \
        nothing is removed while a runtime is being installed.")]
    Prune {
        /// Remove runtimes not used for this many days
        #[arg(long, value_name = "DAYS", default_value_t = 30)]
        older_than: u64,
        /// Also remove every runtime whose pins differ from what this exportctl installs
        #[arg(long)]
        stale: bool,
        /// Say what would be removed, remove nothing
        #[arg(long)]
        dry_run: bool,
    },
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
    /// The model to read: a .keras/.h5 file, a Keras SavedModel directory or file.py:function
    #[arg(value_name = "MODEL_FILE")]
    pub model: Option<String>,

    /// Overwrite an existing manifest
    #[arg(long)]
    pub force: bool,
}

impl Cli {
    /// How the command prints, errors included.
    pub fn format(&self) -> Format {
        let json = match &self.command {
            Command::Build(args) => args.format == MessageFormat::Json,
            Command::Check(args) => args.format == ReportFormat::Json,
            Command::Plan(args) => args.format == PlanFormat::Json,
            Command::Inspect(args) => args.format == ReportFormat::Json,
            Command::Validate(args) => args.format == ReportFormat::Json,
            Command::Runtime(RuntimeArgs { action: RuntimeAction::Status { format } | RuntimeAction::List { format } }) => {
                *format == ReportFormat::Json
            }
            _ => false,
        };
        if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// Whether raw arguments ask for JSON output (`--format json`, `--format=json`,
/// `--message-format json`): how an error in the arguments themselves is printed.
pub fn wants_json<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> bool {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect();
    args.iter().enumerate().any(|(i, a)| match a.as_str() {
        "--format" | "--message-format" => args.get(i + 1).is_some_and(|v| v == "json"),
        _ => a == "--format=json" || a == "--message-format=json",
    })
}
