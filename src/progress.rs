//! The status line on the terminal while the runner builds and boots (indicatif, on stderr;
//! hidden when stderr is not a terminal) and the lines it leaves behind.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::images::{self, BuildEvent};

/// A spinner with a message, for one phase of a run.
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A spinner showing `message` and the time since it started.
    pub fn start(message: impl Into<String>) -> Progress {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message.into());
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress { bar }
    }

    pub fn set(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Prints a line to stderr above the spinner (also when the spinner is hidden).
    pub fn note(&self, line: &str) {
        self.bar.suspend(|| eprintln!("{line}"));
    }

    /// Prints a line to stdout above the spinner.
    pub fn out(&self, line: &str) {
        self.bar.suspend(|| println!("{line}"));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}

/// Builds the images of `names` with a status line: which image (n of m), the crate cargo
/// is compiling, and a line per image when it is ready.
pub fn build_images(names: &[String]) -> Result<Vec<PathBuf>, String> {
    let progress = Progress::start("building images");
    let mut current = String::new();
    let mut compiled = 0;
    let result = images::build_all(names, &mut |event| match event {
        BuildEvent::Waiting => {
            progress.set("waiting for another runner's build (target/image/build.lock)")
        }
        BuildEvent::Start { name, index, count } => {
            current = format!("image {index}/{count} `{name}`");
            compiled = 0;
            progress.set(format!("building {current}"));
        }
        BuildEvent::Cargo(line) => {
            if let Some(what) = compiling(line) {
                compiled += 1;
                progress.set(format!("building {current}: compiling {what} ({compiled} crates)"));
            }
        }
        BuildEvent::Done { fresh: true, .. } => {
            progress.note(&format!("turtles: {current} up to date"));
        }
        BuildEvent::Done { took, .. } => {
            progress.note(&format!("turtles: {current} built in {:.1} s", took.as_secs_f64()));
        }
    });
    progress.finish();
    result
}

/// The crate of a cargo `Compiling name vX.Y.Z (...)` line.
pub fn compiling(line: &str) -> Option<&str> {
    line.trim_start().strip_prefix("Compiling ")?.split_whitespace().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_crate_cargo_compiles() {
        assert_eq!(compiling("   Compiling smoltcp v0.14.0"), Some("smoltcp"));
        assert_eq!(
            compiling("   Compiling turtles-image v0.1.0 (/w/image)"),
            Some("turtles-image")
        );
        assert_eq!(compiling("    Finished `release` profile"), None);
        assert_eq!(compiling("Compiling "), None);
    }
}
