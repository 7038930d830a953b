//! How output looks: colour (`--color`, `NO_COLOR`, `CLICOLOR_FORCE`) and quietness (`-q`).
//!
//! Decided once, at start, from the global flags and the environment, and read by whatever
//! prints: errors, diagnostics, the build's progress.
//!
//! Colour follows the `NO_COLOR` and `CLICOLOR_FORCE` conventions other command-line tools
//! honour, in this order: `--color always|never` wins; with `auto` (the default) a non-empty `NO_COLOR`
//! turns colour off, a `CLICOLOR_FORCE` other than `0` turns it on, and otherwise colour is on
//! when stderr is a terminal. With colour off, diagnostics use the plain
//! `file:line:col: error[code]: message` form.

use std::ffi::OsStr;
use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};

static COLOR: AtomicBool = AtomicBool::new(false);
static QUIET: AtomicBool = AtomicBool::new(false);

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ColorChoice {
    /// Colour when stderr is a terminal, unless NO_COLOR is set (or CLICOLOR_FORCE forces it)
    #[default]
    Auto,
    /// Colour, even into a pipe or a file
    Always,
    /// No colour: diagnostics in the plain `file:line:col: error[code]: message` form
    Never,
}

/// Whether to colour, from the flag, `NO_COLOR`, `CLICOLOR_FORCE` and whether stderr is a
/// terminal.
pub fn resolve(choice: ColorChoice, no_color: Option<&OsStr>, clicolor_force: Option<&OsStr>, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if no_color.is_some_and(|v| !v.is_empty()) {
                false
            } else if clicolor_force.is_some_and(|v| !v.is_empty() && v != "0") {
                true
            } else {
                terminal
            }
        }
    }
}

/// Sets the process's output settings (once, at start).
pub fn init(choice: ColorChoice, quiet: bool) {
    let color = resolve(
        choice,
        std::env::var_os("NO_COLOR").as_deref(),
        std::env::var_os("CLICOLOR_FORCE").as_deref(),
        std::io::stderr().is_terminal(),
    );
    COLOR.store(color, Ordering::Relaxed);
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether output to stderr is coloured.
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// `-q`: only errors and warnings (and the data a command was asked for) are printed.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

fn paint(text: &str, style: anstyle::Style, color: bool) -> String {
    if color {
        format!("{}{text}{}", style.render(), style.render_reset())
    } else {
        text.to_string()
    }
}

/// `error` in bold red when colouring.
pub fn paint_error(text: &str, color: bool) -> String {
    paint(text, anstyle::AnsiColor::Red.on_default().bold(), color)
}

/// `warning[code]` in bold yellow when colouring.
pub fn paint_warning(text: &str, color: bool) -> String {
    paint(text, anstyle::AnsiColor::Yellow.on_default().bold(), color)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto(no_color: Option<&str>, force: Option<&str>, terminal: bool) -> bool {
        resolve(ColorChoice::Auto, no_color.map(OsStr::new), force.map(OsStr::new), terminal)
    }

    #[test]
    fn the_flag_wins_over_the_environment() {
        assert!(resolve(ColorChoice::Always, Some(OsStr::new("1")), None, false));
        assert!(!resolve(ColorChoice::Never, None, Some(OsStr::new("1")), true));
    }

    #[test]
    fn auto_follows_no_color_then_clicolor_force_then_the_terminal() {
        assert!(auto(None, None, true));
        assert!(!auto(None, None, false));
        assert!(!auto(Some("1"), None, true));
        assert!(!auto(Some("1"), Some("1"), true), "NO_COLOR wins over CLICOLOR_FORCE");
        assert!(auto(Some(""), None, true), "an empty NO_COLOR is not set");
        assert!(auto(None, Some("1"), false));
        assert!(!auto(None, Some("0"), false));
    }

    #[test]
    fn painting_without_colour_leaves_the_text() {
        assert_eq!(paint_error("error", false), "error");
        assert!(paint_error("error", true).starts_with("\u{1b}["));
    }
}
