//! `cargo run -- ...`: the turtles runner. With no arguments it boots the default stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use turtles::session::{self, Launch, QemuBoot};
use turtles::{images, iso, status, tools, workspace_root};
use turtles_config::Emulator;

/// The config `cargo run` boots when given no command.
const DEFAULT_CONFIG: &str = "l0";

#[derive(Parser)]
#[command(name = "turtles", version, about = "Build and boot turtles images under QEMU or Bochs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the image for a config (and its guests' images) and boot it.
    Run(RunArgs),
    /// List the configs.
    List,
    /// Query a running image's management endpoint (JSON lines over UDP).
    Stats {
        /// host:port of the endpoint, e.g. 127.0.0.1:5555.
        addr: String,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// Config name: a file configs/<name>.toml.
    config: String,
    /// Emulator (default: the config's machine.emulator).
    #[arg(long, value_enum)]
    emulator: Option<EmulatorArg>,
    /// Seconds before the emulator is killed.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
    /// QEMU only: boot protocol.
    #[arg(long, value_enum, default_value_t = BootArg::Multiboot1)]
    boot: BootArg,
    /// Extra kernel command line (e.g. `turtles.test=panic`).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Extra command line for the config's guest (appended to its boot module's line).
    #[arg(long, default_value = "")]
    guest_cmdline: String,
    /// Boot this kernel instead of the guest image the config names (any multiboot or PVH
    /// kernel).
    #[arg(long)]
    guest_image: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum EmulatorArg {
    Bochs,
    Qemu,
}

#[derive(Clone, Copy, ValueEnum)]
enum BootArg {
    /// QEMU -kernel through the multiboot1 header.
    Multiboot1,
    /// QEMU -kernel through the PVH note.
    Pvh,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(RunArgs {
            config: DEFAULT_CONFIG.to_string(),
            emulator: None,
            timeout: 120,
            boot: BootArg::Multiboot1,
            cmdline: String::new(),
            guest_cmdline: String::new(),
            guest_image: None,
        }),
        Some(Cmd::Run(args)) => run(args),
        Some(Cmd::List) => list(),
        Some(Cmd::Stats { addr }) => turtles::stats::query(&addr),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(u8::MAX)),
        Err(message) => {
            eprintln!("turtles: {message}");
            ExitCode::from(status::RUNNER_ERROR as u8)
        }
    }
}

fn list() -> Result<i32, String> {
    let set = images::configs()?;
    for config in set.configs.values() {
        println!(
            "{:<16} {:<5} {:<6} {}",
            config.name,
            config.role.as_str(),
            config.machine.emulator.as_str(),
            config.description
        );
    }
    Ok(status::SUCCESS)
}

fn run(args: RunArgs) -> Result<i32, String> {
    let set = images::configs()?;
    let config = set.get(&args.config)?;
    let emulator = match args.emulator {
        Some(EmulatorArg::Bochs) => Emulator::Bochs,
        Some(EmulatorArg::Qemu) => Emulator::Qemu,
        None => config.machine.emulator,
    };
    tools::check(emulator)?;
    eprintln!("turtles: building the image for config `{}`", config.name);
    let (image, guests) = images::build(&set, config)?;
    let mut modules: Vec<iso::IsoModule> = guests
        .iter()
        .map(|g| iso::IsoModule { file: g.path.clone(), cmdline: g.name.clone() })
        .collect();
    if let Some(first) = modules.first_mut() {
        if let Some(image) = &args.guest_image {
            if !image.is_file() {
                return Err(format!("--guest-image {}: no such file", image.display()));
            }
            first.file = image.clone();
        }
        if !args.guest_cmdline.is_empty() {
            first.cmdline = format!("{} {}", first.cmdline, args.guest_cmdline);
        }
    } else if args.guest_image.is_some() || !args.guest_cmdline.is_empty() {
        return Err(format!("config `{}` runs no guest", config.name));
    }
    let work = workspace_root().join("target/run").join(format!(
        "{}-{}-{}",
        config.name,
        emulator.as_str(),
        std::process::id()
    ));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let boot_file: PathBuf = match (emulator, args.boot) {
        (Emulator::Bochs, _) => {
            let out = work.join("turtles.iso");
            iso::build(&image, &args.cmdline, &modules, &work, &out)?;
            out
        }
        (Emulator::Qemu, BootArg::Multiboot1) => image,
        (Emulator::Qemu, BootArg::Pvh) => {
            let out = work.join("turtles-pvh.elf");
            images::without_multiboot1(&image, &out)?;
            out
        }
    };
    let qemu_boot = match args.boot {
        BootArg::Multiboot1 => QemuBoot::Multiboot1,
        BootArg::Pvh => QemuBoot::Pvh,
    };
    eprintln!(
        "turtles: booting `{}` under {}{} (timeout {} s)",
        config.name,
        emulator.as_str(),
        if emulator == Emulator::Qemu { format!(" via {qemu_boot:?}") } else { String::new() },
        args.timeout
    );
    let outcome = session::run(&Launch {
        config,
        emulator,
        timeout: Duration::from_secs(args.timeout),
        boot_file,
        cmdline: args.cmdline,
        modules,
        work,
    })?;
    eprintln!("turtles: `{}` ended with status {}", config.name, describe(outcome.exit_code));
    Ok(outcome.exit_code)
}

fn describe(code: i32) -> String {
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
