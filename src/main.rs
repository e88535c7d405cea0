//! `cargo run -- ...`: the turtles runner. With no arguments it boots the default stack.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use turtles::run::{Console, RunOptions};
use turtles::session::QemuBoot;
use turtles::{images, status};
use turtles_config::Emulator;

/// The config `cargo run` boots when given no command.
const DEFAULT_CONFIG: &str = "l0-l1-leaf";

#[derive(Parser)]
#[command(name = "turtles", version, about = "Build and boot turtles images under QEMU or Bochs")]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// Print every serial line as it comes (otherwise a status line, then a summary per
    /// level; the full log is in the run's directory either way).
    #[arg(long, short, global = true)]
    verbose: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the image for a config (and its guests' images) and boot it.
    Run(RunArgs),
    /// List the configs.
    List,
    /// Run a benchmark under Bochs and print its table.
    Bench {
        #[command(subcommand)]
        which: BenchCmd,
    },
    /// Fuzz L0 from a hostile guest level (`fuzz l1 --seed S --programs N`).
    Fuzz {
        #[command(subcommand)]
        which: turtles::fuzz::FuzzCmd,
    },
    /// Query a running image's management endpoint (JSON lines over UDP).
    Stats {
        /// host:port of the endpoint, e.g. 127.0.0.1:5555.
        addr: String,
    },
}

#[derive(Subcommand)]
enum BenchCmd {
    /// Depth 1 against no hypervisor: exits and Bochs ticks per CPUID, port I/O and HLT
    /// round trip, and the leaf workload's ticks.
    Single {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Depth 1, 2 (with and without VMCS shadowing) and optionally 3: L0 exits per reflected
    /// exit, ticks per round trip, the workload's overhead, L0 exits by reason (table and SVG).
    Nested {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where to write the SVG plot (default target/bench-nested.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Also measure depth 3 (l0-l1-l1-leaf).
        #[arg(long)]
        depth3: bool,
    },
    /// The leaf on real Linux KVM against turtles, at depth 1 (kvm-leaf vs l0-leaf) and 2
    /// (kvm-l1-leaf vs l0-l1-leaf): ticks per round trip and the KVM/turtles ratio.
    VsKvm {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Debian's Linux running a kernbench stand-in (tcc compiles and runs a C program,
    /// fork/exec and pipes, gzip/bzip2 on tmpfs) at depth 1 and 2 (optionally 3): ticks and
    /// exits per level by reason per part, overhead vs depth 1 in ticks and with the
    /// transition model, beside the paper's Table 2; plus an SVG.
    Linux {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Where to write the SVG (default: next to the JSON, else target/bench-linux.svg).
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Also measure depth 3 (l0-l1-l1-linux).
        #[arg(long)]
        depth3: bool,
        /// Record the figures in bench/linux.json and regenerate the README's Linux table.
        #[arg(long)]
        readme: bool,
    },
    /// UDP round trips per second and bulk throughput through the management endpoint
    /// (`net-qemu` under QEMU, virtio-net).
    Net,
    /// I/O for guests (issue 13): UDP echo to the innermost level's endpoint under Bochs, L0
    /// alone and L1 on virtio-net from L0; ticks and L0 exits per packet, packets per 10^9
    /// ticks, ratio to L0 alone; rows not built yet say why.
    Io {
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Also write a bar chart of the rows as SVG to this file.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Measure only the rows of this config (repeatable; e.g. `l0-l1-io`).
        #[arg(long)]
        only: Vec<String>,
        /// Measure nothing: print the table (and write --json/--svg) of a stored run's JSON.
        #[arg(long, conflicts_with = "only")]
        from_json: Option<PathBuf>,
    },
    /// Measure what `single` and `nested` measure (no hypervisor, depth 1, depth 2 with and
    /// without VMCS shadowing) and compare ticks and L0 exits per round trip with
    /// bench/baseline.json; fails on a regression beyond the baseline's tolerance.
    Check {
        /// Record the figures as the new baseline and regenerate the README's table.
        #[arg(long)]
        update: bool,
    },
    /// Regenerate the README's figures from bench/baseline.json (no emulator run).
    Readme,
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
    /// kernel, or a Linux bzImage).
    #[arg(long)]
    guest_image: Option<PathBuf>,
    /// A boot module for the guest, FILE or FILE=CMDLINE (repeatable, passed in order as
    /// multiboot1/multiboot2 or PVH modules). With this or --guest-image the guest gets only
    /// the modules named, not the images of the config's inner levels.
    #[arg(long = "guest-module", value_name = "FILE[=CMDLINE]")]
    guest_modules: Vec<String>,
    /// The guest's memory in MiB (default: the config's guest_memory_mib); the runner gives
    /// the emulator enough memory for it.
    #[arg(long = "guest-mem", value_name = "MIB")]
    guest_mem: Option<u32>,
    /// Give the machine no UART at COM1 (QEMU `-serial none`, Bochs `com1: enabled=0`): the
    /// image runs silently; under QEMU its status still comes back through isa-debug-exit.
    #[arg(long)]
    no_serial: bool,
    /// A Linux guest's initrd instead of the initramfs the runner builds.
    #[arg(long)]
    guest_initrd: Option<PathBuf>,
    /// Extra command line for the innermost guest (the last boot module), e.g. the leaf of a
    /// nested stack.
    #[arg(long, default_value = "")]
    leaf_cmdline: String,
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
        None => run(
            RunArgs {
                config: DEFAULT_CONFIG.to_string(),
                emulator: None,
                timeout: 120,
                boot: BootArg::Multiboot1,
                cmdline: String::new(),
                guest_cmdline: String::new(),
                guest_image: None,
                guest_modules: Vec::new(),
                guest_mem: None,
                no_serial: false,
                guest_initrd: None,
                leaf_cmdline: String::new(),
            },
            cli.verbose,
        ),
        Some(Cmd::Run(args)) => run(args, cli.verbose),
        Some(Cmd::List) => list(),
        Some(Cmd::Bench { which: BenchCmd::Single { json } }) => {
            turtles::bench::single(json.as_deref())
        }
        Some(Cmd::Bench { which: BenchCmd::Nested { json, svg, depth3 } }) => {
            turtles::bench::nested(json.as_deref(), svg.as_deref(), depth3)
        }
        Some(Cmd::Bench { which: BenchCmd::VsKvm { json } }) => {
            turtles::bench_kvm::vs_kvm(json.as_deref())
        }
        Some(Cmd::Bench { which: BenchCmd::Linux { json, svg, depth3, readme } }) => {
            turtles::linux_bench::command(json.as_deref(), svg.as_deref(), depth3, readme)
        }
        Some(Cmd::Bench { which: BenchCmd::Net }) => turtles::bench_net::net(),
        Some(Cmd::Bench { which: BenchCmd::Io { json, svg, only, from_json } }) => {
            turtles::bench_io::io(json.as_deref(), svg.as_deref(), &only, from_json.as_deref())
        }
        Some(Cmd::Bench { which: BenchCmd::Check { update } }) => turtles::baseline::check(update),
        Some(Cmd::Bench { which: BenchCmd::Readme }) => turtles::readme::command(),
        Some(Cmd::Stats { addr }) => turtles::stats::query(&addr),
        Some(Cmd::Fuzz { which }) => turtles::fuzz::command(which, cli.verbose),
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

fn run(args: RunArgs, verbose: bool) -> Result<i32, String> {
    let options = RunOptions {
        config: args.config,
        emulator: args.emulator.map(|e| match e {
            EmulatorArg::Bochs => Emulator::Bochs,
            EmulatorArg::Qemu => Emulator::Qemu,
        }),
        timeout: args.timeout,
        boot: match args.boot {
            BootArg::Multiboot1 => QemuBoot::Multiboot1,
            BootArg::Pvh => QemuBoot::Pvh,
        },
        cmdline: args.cmdline,
        guest_cmdline: args.guest_cmdline,
        guest_image: args.guest_image,
        guest_modules: args.guest_modules.iter().map(|m| guest_module(m)).collect(),
        guest_mem_mib: args.guest_mem,
        no_serial: args.no_serial,
        guest_initrd: args.guest_initrd,
        leaf_cmdline: args.leaf_cmdline,
        console: if verbose { Console::Stream } else { Console::Summary },
    };
    Ok(turtles::run::run(&options)?.exit_code)
}

/// `FILE` or `FILE=CMDLINE` of `--guest-module`.
fn guest_module(arg: &str) -> turtles::iso::IsoModule {
    let (file, cmdline) = arg.split_once('=').unwrap_or((arg, ""));
    turtles::iso::IsoModule { file: PathBuf::from(file), cmdline: cmdline.to_string() }
}
