//! One emulator run: start QEMU or Bochs, stream the serial console line by line with a
//! prefix, find the image's exit marker, stop at the timeout (killing only our own process).

use std::fs;
use std::io::{BufRead, BufReader, LineWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use turtles_config::{Config, Emulator};

use crate::progress::Progress;
use crate::status;
use crate::summary::Summary;
use crate::tools::{BOCHS_BIOS, BOCHS_VGABIOS};

/// The marker the image prints last (`image/src/exit.rs`).
pub const EXIT_MARKER: &str = "turtles: exit status=";

/// How the image is handed to QEMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuBoot {
    /// `-kernel` with the multiboot1 header (QEMU prefers it).
    Multiboot1,
    /// `-kernel` with the multiboot1 header cleared: QEMU uses the PVH note.
    Pvh,
}

/// What to run.
pub struct Launch<'a> {
    pub config: &'a Config,
    pub emulator: Emulator,
    pub timeout: Duration,
    /// Bochs: the GRUB ISO. QEMU: the kernel ELF.
    pub boot_file: PathBuf,
    /// QEMU only: the kernel command line.
    pub cmdline: String,
    /// QEMU only: boot modules (`-initrd`); Bochs gets them in the ISO.
    pub modules: Vec<crate::iso::IsoModule>,
    /// Directory for this run's files (bochsrc, serial log, Bochs log).
    pub work: PathBuf,
    /// Whether the serial lines are printed as they come (they are always collected and
    /// written to `work/console.log`).
    pub stream: bool,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The status the image printed, if it printed one.
    pub image_status: Option<i32>,
    pub timed_out: bool,
    /// What the runner should exit with.
    pub exit_code: i32,
    /// Every serial line, in order.
    pub lines: Vec<String>,
    /// What the lines say, per level.
    pub summary: Summary,
    /// The full console log (`<emulator>| ` + each serial line).
    pub log: PathBuf,
}

/// Runs the emulator to the end, printing every serial line with a prefix.
pub fn run(launch: &Launch<'_>) -> Result<Outcome, String> {
    fs::create_dir_all(&launch.work).map_err(|e| format!("{}: {e}", launch.work.display()))?;
    let (child, lines) = match launch.emulator {
        Emulator::Qemu => start_qemu(launch)?,
        Emulator::Bochs => start_bochs(launch)?,
    };
    Ok(supervise(launch, child, lines))
}

fn start_qemu(launch: &Launch<'_>) -> Result<(Child, mpsc::Receiver<String>), String> {
    let mut child = Command::new("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
        .args(["-m", &format!("{}M", launch.config.machine.memory_mib)])
        .args(["-display", "none", "-monitor", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-kernel")
        .arg(&launch.boot_file)
        .args(["-append", &launch.cmdline])
        .args(qemu_modules(&launch.modules))
        .args(crate::devices::qemu_args(launch.config))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start qemu-system-x86_64: {e}"))?;
    let stdout = child.stdout.take().ok_or("qemu has no stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok((child, rx))
}

/// QEMU's multiboot1 loader takes modules as `-initrd "file args,file args"`.
fn qemu_modules(modules: &[crate::iso::IsoModule]) -> Vec<String> {
    if modules.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> =
        modules.iter().map(|m| format!("{} {}", m.file.display(), m.cmdline)).collect();
    vec!["-initrd".to_string(), list.join(",")]
}

fn bochsrc(launch: &Launch<'_>, serial: &Path, log: &Path) -> String {
    let m = &launch.config.machine;
    format!(
        "megs: {megs}\n\
         cpu: model={cpu}, count=1, ips=100000000, reset_on_triple_fault=0\n\
         romimage: file={BOCHS_BIOS}\n\
         vgaromimage: file={BOCHS_VGABIOS}\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev={serial}\n\
         display_library: term\n\
         log: {log}\n\
         panic: action=fatal\n\
         clock: sync=none, time0=local\n{devices}",
        megs = m.memory_mib,
        cpu = m.bochs_cpu,
        iso = launch.boot_file.display(),
        serial = serial.display(),
        log = log.display(),
        devices = crate::devices::bochs_lines(launch.config),
    )
}

fn start_bochs(launch: &Launch<'_>) -> Result<(Child, mpsc::Receiver<String>), String> {
    let serial = launch.work.join("serial.txt");
    let log = launch.work.join("bochs.log");
    let rc = launch.work.join("bochsrc");
    let cont = launch.work.join("cont.rc");
    let write = |p: &Path, s: &str| fs::write(p, s).map_err(|e| format!("{}: {e}", p.display()));
    write(&serial, "")?;
    write(&rc, &bochsrc(launch, &serial, &log))?;
    write(&cont, "c\n")?;
    let screen = fs::File::create(launch.work.join("screen.txt"))
        .map_err(|e| format!("{}: {e}", launch.work.display()))?;
    let child = Command::new("bochs-bin")
        .current_dir(&launch.work)
        .env("TERM", "xterm")
        .arg("-q")
        .arg("-f")
        .arg(&rc)
        .arg("-rc")
        .arg(&cont)
        .stdin(Stdio::null())
        .stdout(screen)
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start bochs-bin: {e}"))?;
    // Bochs writes the serial port to a file: follow it like `tail -f`.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let Ok(mut file) = fs::File::open(&serial) else { return };
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match file.read(&mut buf) {
                Ok(0) => thread::sleep(Duration::from_millis(20)),
                Ok(n) => {
                    pending.extend_from_slice(&buf[..n]);
                    while let Some(at) = pending.iter().position(|&b| b == b'\n') {
                        let line: Vec<u8> = pending.drain(..=at).collect();
                        let line = String::from_utf8_lossy(&line).trim_end().to_string();
                        if tx.send(line).is_err() {
                            return;
                        }
                    }
                }
                Err(_) => return,
            }
        }
    });
    Ok((child, rx))
}

fn supervise(launch: &Launch<'_>, mut child: Child, lines: mpsc::Receiver<String>) -> Outcome {
    let prefix = format!("{}|", launch.emulator.as_str());
    let running = format!("{} running `{}`", launch.emulator.as_str(), launch.config.name);
    let bar = Progress::start(format!("{running}: starting"));
    let log = launch.work.join("console.log");
    let mut log_file = fs::File::create(&log).ok().map(LineWriter::new);
    let start = Instant::now();
    let mut image_status = None;
    let mut marker_at = None;
    let mut timed_out = false;
    let mut collected = Vec::new();
    let mut summary = Summary::default();
    let mut show = |line: String| {
        if launch.stream {
            bar.out(&format!("{prefix} {line}"));
        }
        if let Some(f) = log_file.as_mut() {
            let _ = writeln!(f, "{prefix} {line}");
        }
        summary.feed(&line);
        bar.set(format!("{running}: {}", summary.progress()));
        collected.push(line);
    };
    loop {
        match lines.recv_timeout(Duration::from_millis(50)) {
            Ok(line) => {
                if let Some(code) = line.trim().strip_prefix(EXIT_MARKER) {
                    image_status = code.trim().parse().ok();
                    marker_at = Some(Instant::now());
                }
                show(line);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        if child.try_wait().ok().flatten().is_some() {
            // Drain what the emulator wrote before it ended.
            while let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                if let Some(code) = line.trim().strip_prefix(EXIT_MARKER) {
                    image_status = code.trim().parse().ok();
                }
                show(line);
            }
            break;
        }
        // The image has said it is done; give the emulator a moment to stop by itself.
        if marker_at.is_some_and(|t| t.elapsed() > Duration::from_secs(3)) {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        if start.elapsed() > launch.timeout {
            timed_out = true;
            let pid = child.id();
            let _ = child.kill(); // SIGKILL: Bochs ignores SIGTERM
            let _ = child.wait();
            bar.note(&format!(
                "turtles: timeout after {} s: killed {} (pid {pid}); its files are in {}",
                launch.timeout.as_secs(),
                launch.emulator.as_str(),
                launch.work.display()
            ));
            break;
        }
    }
    bar.finish();
    let exit_code = match (image_status, timed_out) {
        (Some(code), _) => code,
        (None, true) => status::TIMEOUT,
        (None, false) => {
            eprintln!(
                "turtles: {} ended without the exit marker (see {})",
                launch.emulator.as_str(),
                launch.work.display()
            );
            status::NO_MARKER
        }
    };
    Outcome { image_status, timed_out, exit_code, lines: collected, summary, log }
}
