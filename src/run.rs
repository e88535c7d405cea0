//! One run of a config: build its images, prepare the boot medium, boot the emulator and
//! return how it ended (shared by `cargo run -- run` and the benchmarks).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use turtles_config::Emulator;

use crate::session::{self, Launch, Outcome, QemuBoot};
use crate::summary::Summary;
use crate::{images, iso, kvm_guest, kvm_host, linux, progress, status, tools, workspace_root};

/// What the runner prints of the serial console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Console {
    /// A status line while it runs, then the summary (the log is in the run's directory).
    Summary,
    /// Every line as it comes (`--verbose`), then the summary.
    Stream,
    /// Only the status line (the caller reads the outcome: benchmarks).
    Quiet,
}

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
    /// The guest's own boot modules, in order (`--guest-module FILE[=CMDLINE]`). When given,
    /// or when `guest_image` is, the guest gets exactly these instead of the images of the
    /// config's inner levels.
    pub guest_modules: Vec<iso::IsoModule>,
    /// The guest's memory in MiB (`--guest-mem`), instead of the config's `guest_memory_mib`.
    pub guest_mem_mib: Option<u32>,
    /// No UART at COM1 (`--no-serial`): the image must boot and end without a console.
    pub no_serial: bool,
    /// A Linux guest's initrd instead of the one the runner builds (`--guest-initrd`).
    pub guest_initrd: Option<PathBuf>,
    /// Appended to the last module's command line (the innermost guest).
    pub leaf_cmdline: String,
    pub console: Console,
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
            guest_modules: Vec::new(),
            guest_mem_mib: None,
            no_serial: false,
            guest_initrd: None,
            leaf_cmdline: String::new(),
            console: Console::Summary,
        }
    }
}

static RUNS: AtomicU32 = AtomicU32::new(0);

/// Builds and boots `options.config`.
pub fn run(options: &RunOptions) -> Result<Outcome, String> {
    let set = images::configs()?;
    let config = set.get(&options.config)?;
    let kvm_guest_config = config.role == turtles_config::Role::LinuxKvm && config.depth > 0;
    if config.role == turtles_config::Role::Linux || kvm_guest_config {
        return Err(format!(
            "config `{}` is a Linux guest, not a turtles image: run a config whose guest it is \
             (l0-linux, l0-l1-linux, l0-kvm-leaf)",
            config.name
        ));
    }
    let emulator = options.emulator.unwrap_or(config.machine.emulator);
    tools::check(emulator)?;
    if config.role == turtles_config::Role::LinuxKvm {
        let work = work_dir(config, emulator)?;
        let (iso, memory_mib) = kvm_host::prepare(&set, config, options, &work)?;
        return boot(options, config, emulator, iso, String::new(), memory_mib, Vec::new(), work);
    }
    let mut names = images::build_chain_names(&set, config)?;
    // A Linux guest is the innermost: fetched and packed, not built. A Linux KVM host as the
    // guest (role linux-kvm) boots the same way, its own guests packed into its initramfs.
    let mut kvm_files = None;
    let linux_guest = match kvm_guest::take(&set, &mut names)? {
        Some((name, files)) => {
            kvm_files = Some(files);
            Some(name)
        }
        None => match names.first() {
            Some(first) if set.get(first)?.role == turtles_config::Role::Linux => {
                Some(names.remove(0))
            }
            _ => None,
        },
    };
    // Linux on an assigned e1000: the level's ACPI tables announce no PCI root bridge, so
    // Linux scans bus 0 itself (`linux::ASSIGN_CMDLINE`).
    let linux_assigned = linux_guest.as_ref().is_some_and(|name| {
        std::iter::once(config)
            .chain(names.iter().filter_map(|n| set.get(n).ok()))
            .any(|c| c.guest.as_deref() == Some(name.as_str()) && !c.assign.is_empty())
    });
    // The image the config's disk holds is built now too, with the others.
    let disk_guest = config.disk.as_ref().and_then(|d| d.guest.clone());
    let chain = names.len();
    names.extend(disk_guest);
    let mut paths = progress::build_images(&names)?;
    names.truncate(chain);
    paths.truncate(chain);
    let (image, guests) = images::split_chain(names, paths)?;
    let mut modules: Vec<iso::IsoModule> = guests
        .iter()
        .map(|g| iso::IsoModule { file: g.path.clone(), cmdline: g.name.clone() })
        .collect();
    if let Some(name) = &linux_guest {
        let files = match kvm_files {
            Some(files) => files,
            None => linux::prepare()?,
        };
        let extra = if linux_assigned { linux::ASSIGN_CMDLINE } else { "" };
        modules.push(iso::IsoModule {
            file: files.bzimage,
            cmdline: format!("{name} {} {extra}", linux::CMDLINE).trim_end().to_string(),
        });
        let initrd = match &options.guest_initrd {
            Some(path) if !path.is_file() => {
                return Err(format!("--guest-initrd {}: no such file", path.display()));
            }
            Some(path) => path.clone(),
            None => files.initrd,
        };
        modules.push(iso::IsoModule { file: initrd, cmdline: format!("{name}-initrd") });
    } else if options.guest_initrd.is_some() {
        return Err(format!("config `{}` runs no Linux guest: --guest-initrd", config.name));
    }
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
    // A foreign guest, or one given its own modules, gets those alone: the config's inner
    // levels are not its modules.
    // (A Linux guest of this level keeps its initrd, the module after its kernel.)
    if !modules.is_empty() && (options.guest_image.is_some() || !options.guest_modules.is_empty()) {
        let linux_here = linux_guest.is_some() && modules.len() == 2;
        modules.truncate(if linux_here { 2 } else { 1 });
        for module in &options.guest_modules {
            if !module.file.is_file() {
                return Err(format!("--guest-module {}: no such file", module.file.display()));
            }
            modules.push(iso::IsoModule {
                file: module.file.clone(),
                cmdline: module.cmdline.clone(),
            });
        }
    }
    if !options.leaf_cmdline.is_empty() {
        // A Linux guest's initrd comes after its kernel: the command line is the kernel's.
        let innermost = modules.len().saturating_sub(if linux_guest.is_some() { 2 } else { 1 });
        match modules.get_mut(innermost) {
            Some(last) => last.cmdline = format!("{} {}", last.cmdline, options.leaf_cmdline),
            None => return Err(format!("config `{}` runs no guest", config.name)),
        }
    }
    if modules.is_empty()
        && (options.guest_image.is_some()
            || !options.guest_cmdline.is_empty()
            || !options.guest_modules.is_empty()
            || options.guest_mem_mib.is_some())
    {
        return Err(format!("config `{}` runs no guest", config.name));
    }
    let mut cmdline = options.cmdline.clone();
    let mut memory_mib = config.machine.memory_mib;
    if let Some(mib) = options.guest_mem_mib {
        let (memory, line) = guest_memory(config, mib)?;
        memory_mib = memory;
        cmdline = format!("{cmdline} {line}").trim().to_string();
    }
    let work = work_dir(config, emulator)?;
    let boot_file: PathBuf = match (emulator, options.boot) {
        (Emulator::Bochs, _) => {
            let out = work.join("turtles.iso");
            iso::build(&image, &cmdline, &modules, &work, &out)?;
            out
        }
        (Emulator::Qemu, QemuBoot::Multiboot1) => image,
        (Emulator::Qemu, QemuBoot::Pvh) => {
            let out = work.join("turtles-pvh.elf");
            images::without_multiboot1(&image, &out)?;
            out
        }
    };
    boot(options, config, emulator, boot_file, cmdline, memory_mib, modules, work)
}

/// A new directory for one run's files under `target/run/`.
fn work_dir(config: &turtles_config::Config, emulator: Emulator) -> Result<PathBuf, String> {
    let work = workspace_root().join("target/run").join(format!(
        "{}-{}-{}-{}",
        config.name,
        emulator.as_str(),
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    Ok(work)
}

/// Boots the prepared medium and reports the outcome.
#[allow(clippy::too_many_arguments)]
fn boot(
    options: &RunOptions,
    config: &turtles_config::Config,
    emulator: Emulator,
    boot_file: PathBuf,
    cmdline: String,
    memory_mib: u32,
    modules: Vec<iso::IsoModule>,
    work: PathBuf,
) -> Result<Outcome, String> {
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
        cmdline,
        memory_mib,
        modules,
        work: work.clone(),
        no_serial: options.no_serial,
        stream: options.console == Console::Stream,
    })?;
    crate::devices::after_run(config);
    if options.console != Console::Quiet {
        println!(
            "\nsummary of `{}` under {} ({} serial lines):\n{}",
            config.name,
            emulator.as_str(),
            outcome.summary.lines,
            outcome.summary.render()
        );
        println!("full log: {} (--verbose prints it as it comes)", outcome.log.display());
    }
    eprintln!(
        "turtles: `{}` ended with status {}",
        config.name,
        describe(outcome.exit_code, &outcome.summary)
    );
    Ok(outcome)
}

/// Most memory `--guest-mem` may ask for: what the image can map for its guest below 4 GiB
/// with room for itself.
pub const MAX_GUEST_MEM_MIB: u32 = 3 * 1024;

/// The emulator memory (MiB) for a guest of `mib` MiB under `config`, keeping the headroom the
/// config leaves its hypervisor, and the command-line word that tells the image.
pub fn guest_memory(config: &turtles_config::Config, mib: u32) -> Result<(u32, String), String> {
    if !(16..=MAX_GUEST_MEM_MIB).contains(&mib) {
        return Err(format!("--guest-mem {mib}: allowed 16 to {MAX_GUEST_MEM_MIB} MiB"));
    }
    let headroom = config.machine.memory_mib.saturating_sub(config.guest_memory_mib);
    let memory = config.machine.memory_mib.max(mib + headroom);
    Ok((memory, format!("turtles.guest_mem_mib={mib}")))
}

/// The meaning of a runner exit status. A status that is not one of ours is a guest's own,
/// passed on by each level below it: its number, which guest wrote it and that guest's last
/// line, the clue to what it means.
pub fn describe(code: i32, summary: &Summary) -> String {
    let what = match code {
        status::SUCCESS => "success",
        status::FAILURE => "failure reported by the image",
        status::NO_VMX => "no VMX: guests cannot be run on this CPU",
        status::GUEST_STOPPED => "the guest misbehaved and was stopped by its hypervisor",
        status::TIMEOUT => "timeout",
        status::NO_MARKER => "the emulator stopped without an exit status",
        _ => return foreign(code, summary),
    };
    format!("{code} ({what})")
}

/// `code` as a guest wrote it: the deepest level that exited with it and what it wrote last.
fn foreign(code: i32, summary: &Summary) -> String {
    let writer =
        summary.levels.iter().rev().find(|(_, l)| l.exited == Some(code) || l.status == Some(code));
    match writer {
        Some((0, _)) => format!("{code}, as L0 wrote it"),
        Some((depth, l)) => {
            let last = l
                .last_line
                .as_deref()
                .map_or(String::new(), |line| format!("; its last line: \"{line}\""));
            format!("{code}, the status the L{depth} guest wrote to its exit port{last}")
        }
        None => format!("{code}, as the image wrote it"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(text: &str) -> Summary {
        Summary::of(&text.lines().map(str::to_string).collect::<Vec<_>>())
    }

    #[test]
    fn guest_memory_keeps_the_hypervisors_headroom() {
        let set = crate::images::configs().expect("configs load");
        let config = set.get("l0-leaf").expect("l0-leaf exists");
        let headroom = config.machine.memory_mib - config.guest_memory_mib;
        let (small, word) = guest_memory(config, 32).expect("32 MiB is allowed");
        assert_eq!(small, config.machine.memory_mib, "never less than the config's machine");
        assert_eq!(word, "turtles.guest_mem_mib=32");
        let (big, _) = guest_memory(config, 2560).expect("2.5 GiB is allowed");
        assert_eq!(big, 2560 + headroom);
        assert!(guest_memory(config, 8).is_err());
        assert!(guest_memory(config, MAX_GUEST_MEM_MIB + 1).is_err());
    }

    #[test]
    fn our_statuses_are_named() {
        let s = Summary::default();
        assert_eq!(describe(0, &s), "0 (success)");
        assert_eq!(describe(4, &s), "4 (the guest misbehaved and was stopped by its hypervisor)");
        assert_eq!(describe(124, &s), "124 (timeout)");
    }

    #[test]
    fn a_guests_own_status_names_the_guest_and_its_last_line() {
        let s = summary(
            "L1| hello32: checking the memory map\n\
             L1| hello32: mmap is wrong\n\
             [L0 cpu0 INFO ] guest: exited with status 16\n\
             [L0 cpu0 INFO ] exits: total=20 (guest console: 90 bytes)\n\
             turtles: exit status=16",
        );
        let d = describe(16, &s);
        assert_eq!(
            d,
            "16, the status the L1 guest wrote to its exit port; its last line: \
             \"hello32: mmap is wrong\""
        );
        assert!(!d.contains("unknown"));
        // Nested: the leaf's status passes through L1 and L0.
        let s = summary(
            "L1| L2| weird: bye\n\
             L1| [L1 cpu0 INFO ] guest: exited with status 42\n\
             L1| turtles: exit status=42\n\
             [L0 cpu0 INFO ] guest: exited with status 42\n\
             turtles: exit status=42",
        );
        assert!(describe(42, &s).starts_with("42, the status the L2 guest wrote"), "{s:?}");
        assert_eq!(describe(9, &Summary::default()), "9, as the image wrote it");
    }
}
