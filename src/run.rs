//! One run of a config: build its images, prepare the boot medium, boot the emulator and
//! return how it ended (shared by `cargo run -- run` and the benchmarks).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use turtles_config::Emulator;

use crate::session::{self, Launch, Outcome, QemuBoot};
use crate::{images, iso, status, tools, workspace_root};

/// What to run and how.
pub struct RunOptions {
    pub config: String,
    /// `None`: the config's `machine.emulator`.
    pub emulator: Option<Emulator>,
    pub timeout: u64,
    pub boot: QemuBoot,
    pub cmdline: String,
    pub guest_cmdline: String,
    pub guest_image: Option<PathBuf>,
    /// Appended to the last module's command line (the innermost guest).
    pub leaf_cmdline: String,
    /// Do not print the serial console (the outcome still holds it).
    pub quiet: bool,
}

impl RunOptions {
    /// Defaults for `config`: its own emulator, 120 s, multiboot1, no extra command line.
    pub fn new(config: &str) -> Self {
        RunOptions {
            config: config.to_string(),
            emulator: None,
            timeout: 120,
            boot: QemuBoot::Multiboot1,
            cmdline: String::new(),
            guest_cmdline: String::new(),
            guest_image: None,
            leaf_cmdline: String::new(),
            quiet: false,
        }
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Builds and boots `options.config`.
pub fn run(options: &RunOptions) -> Result<Outcome, String> {
    let set = images::configs()?;
    let config = set.get(&options.config)?;
    let emulator = options.emulator.unwrap_or(config.machine.emulator);
    tools::check(emulator)?;
    eprintln!("turtles: building the image for config `{}`", config.name);
    let (image, guests) = images::build(&set, config)?;
    let mut modules: Vec<iso::IsoModule> = guests
        .iter()
        .map(|g| iso::IsoModule { file: g.path.clone(), cmdline: g.name.clone() })
        .collect();
    if let Some(first) = modules.first_mut() {
        if let Some(image) = &options.guest_image {
            if !image.is_file() {
                return Err(format!("--guest-image {}: no such file", image.display()));
            }
            first.file = image.clone();
        }
        if !options.guest_cmdline.is_empty() {
            first.cmdline = format!("{} {}", first.cmdline, options.guest_cmdline);
        }
    }
    if !options.leaf_cmdline.is_empty() {
        match modules.last_mut() {
            Some(last) => last.cmdline = format!("{} {}", last.cmdline, options.leaf_cmdline),
            None => return Err(format!("config `{}` runs no guest", config.name)),
        }
    }
    if modules.is_empty() && (options.guest_image.is_some() || !options.guest_cmdline.is_empty()) {
        return Err(format!("config `{}` runs no guest", config.name));
    }
    let work = workspace_root().join("target/run").join(format!(
        "{}-{}-{}-{}",
        config.name,
        emulator.as_str(),
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let boot_file: PathBuf = match (emulator, options.boot) {
        (Emulator::Bochs, _) => {
            let out = work.join("turtles.iso");
            iso::build(&image, &options.cmdline, &modules, &work, &out)?;
            out
        }
        (Emulator::Qemu, QemuBoot::Multiboot1) => image,
        (Emulator::Qemu, QemuBoot::Pvh) => {
            let out = work.join("turtles-pvh.elf");
            images::without_multiboot1(&image, &out)?;
            out
        }
    };
    eprintln!(
        "turtles: booting `{}` under {}{} (timeout {} s)",
        config.name,
        emulator.as_str(),
        if emulator == Emulator::Qemu { format!(" via {:?}", options.boot) } else { String::new() },
        options.timeout
    );
    let outcome = session::run(&Launch {
        config,
        emulator,
        timeout: Duration::from_secs(options.timeout),
        boot_file,
        cmdline: options.cmdline.clone(),
        modules,
        work,
        quiet: options.quiet,
    })?;
    crate::devices::after_run(config);
    eprintln!("turtles: `{}` ended with status {}", config.name, describe(outcome.exit_code));
    Ok(outcome)
}

/// The meaning of a runner exit status.
pub fn describe(code: i32) -> String {
    let what = match code {
        status::SUCCESS => "success",
        status::FAILURE => "failure reported by the image",
        status::NO_VMX => "no VMX: guests cannot be run on this CPU",
        status::GUEST_STOPPED => "the guest misbehaved and was stopped by its hypervisor",
        status::TIMEOUT => "timeout",
        status::NO_MARKER => "the emulator stopped without an exit status",
        _ => "unknown",
    };
    format!("{code} ({what})")
}
