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
    /// The machine's memory in MiB (the config's `machine.memory_mib` unless `--guest-mem`
    /// asked for more).
    pub memory_mib: u32,
    /// QEMU only: boot modules (`-initrd`); Bochs gets them in the ISO.
    pub modules: Vec<crate::iso::IsoModule>,
    /// Directory for this run's files (bochsrc, serial log, Bochs log).
    pub work: PathBuf,
    /// No UART at COM1 (QEMU `-serial none`, Bochs `com1: enabled=0`): the image must run
    /// silently; its status comes from QEMU's isa-debug-exit code.
    pub no_serial: bool,
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

/// The command that starts `program`, an emulator, through `setpriv --pdeathsig KILL`
/// (util-linux): the emulator is killed when the runner dies. Without it an emulator whose
/// runner was killed (a test that gives up on a run kills the runner) ran on as an orphan,
/// spinning or blocked on its display's pty, and took a core from every later test.
fn emulator(program: &str) -> Command {
    let mut command = Command::new("setpriv");
    command.args(["--pdeathsig", "KILL", "--", program]);
    command
}

fn start_qemu(launch: &Launch<'_>) -> Result<(Child, mpsc::Receiver<String>), String> {
    let mut child = emulator("qemu-system-x86_64")
        .args(["-machine", "q35", "-accel", "tcg", "-cpu", "max"])
        .args(["-m", &format!("{}M", launch.memory_mib)])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .args(["-serial", if launch.no_serial { "none" } else { "stdio" }])
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
        .map_err(|e| format!("cannot start qemu-system-x86_64 through setpriv: {e}"))?;
    let stdout = child.stdout.take().ok_or("qemu has no stdout")?;
    let (tx, rx) = mpsc::channel();
    // Bytes, not `lines()`: a byte that is not UTF-8 on the serial line must not end the log.
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            line.clear();
            if tx.send(text).is_err() {
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
    // A comma inside one module's line is written twice (QEMU's option escaping).
    let list: Vec<String> = modules
        .iter()
        .map(|m| format!("{} {}", m.file.display(), m.cmdline).trim_end().replace(',', ",,"))
        .collect();
    vec!["-initrd".to_string(), list.join(",")]
}

/// Bochs' memory line: `megs` up to 2048 MiB, beyond that guest memory with a 2048 MiB host
/// allocation (Bochs maps the rest in on demand).
fn bochs_memory(mib: u32) -> String {
    if mib <= 2048 { format!("megs: {mib}") } else { format!("memory: guest={mib}, host=2048") }
}

fn bochsrc(launch: &Launch<'_>, serial: &Path, log: &Path) -> String {
    let m = &launch.config.machine;
    format!(
        "{memory}\n\
         cpu: model={cpu}, count=1, ips=100000000, reset_on_triple_fault=0\n\
         romimage: file={BOCHS_BIOS}\n\
         vgaromimage: file={BOCHS_VGABIOS}\n\
         ata0-master: type=cdrom, path={iso}, status=inserted\n\
         boot: cdrom\n\
         com1: enabled={com1}, mode=file, dev={serial}\n\
         display_library: term\n\
         log: {log}\n\
         panic: action=fatal\n\
         clock: sync=none, time0=local\n{devices}",
        memory = bochs_memory(launch.memory_mib),
        cpu = m.bochs_cpu,
        iso = launch.boot_file.display(),
        com1 = u8::from(!launch.no_serial),
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
    let child = emulator("bochs-bin")
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
        .map_err(|e| format!("cannot start bochs-bin through setpriv: {e}"))?;
    drain_display_pty(child.id());
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

/// Bochs' `term` display draws the guest's text screen through a pseudo-terminal it opens
/// itself when its standard output is not a terminal (`/dev/ptmx`). Nothing reads the other
/// end, so once that pty's buffer is full (a guest that writes its VGA text screen a lot, as
/// Linux KVM under turtles does at power-off) Bochs blocks in the write for ever, the run
/// hangs and ends in the runner's timeout. This thread finds the pty among Bochs' open files
/// (`/proc/PID/fd`, `fdinfo` names the slave) and reads it away until Bochs exits.
fn drain_display_pty(pid: u32) {
    thread::spawn(move || {
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let slave = loop {
            if let Some(slave) = display_pty(&proc_dir) {
                break slave;
            }
            if !proc_dir.exists() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        };
        // Raw and without echo: no line discipline between Bochs' writes and these reads.
        let _ = Command::new("stty")
            .arg("-F")
            .arg(&slave)
            .args(["raw", "-echo"])
            .stderr(Stdio::null())
            .status();
        // O_NOCTTY: the pty must not become the runner's controlling terminal.
        const O_NOCTTY: i32 = 0o400;
        use std::os::unix::fs::OpenOptionsExt;
        let Ok(mut tty) = fs::OpenOptions::new().read(true).custom_flags(O_NOCTTY).open(&slave)
        else {
            return;
        };
        let mut buf = [0u8; 4096];
        while matches!(tty.read(&mut buf), Ok(n) if n > 0) {}
    });
}

/// The slave (`/dev/pts/N`) of the pseudo-terminal the process at `proc_dir` holds open as
/// its master, if any.
fn display_pty(proc_dir: &Path) -> Option<PathBuf> {
    let fds = fs::read_dir(proc_dir.join("fd")).ok()?;
    let master = fds
        .flatten()
        .find(|fd| fs::read_link(fd.path()).is_ok_and(|to| to == Path::new("/dev/ptmx")))?;
    let info = fs::read_to_string(proc_dir.join("fdinfo").join(master.file_name())).ok()?;
    let index = info.lines().find_map(|l| l.strip_prefix("tty-index:"))?.trim();
    Some(PathBuf::from(format!("/dev/pts/{index}")))
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
    let mut emulator_status = None;
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
                if let Some(status) = child.try_wait().ok().flatten() {
                    emulator_status = status.code();
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
        }
        if let Some(status) = child.try_wait().ok().flatten() {
            emulator_status = status.code();
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
    // Without the marker (no serial console), QEMU's isa-debug-exit code carries the status
    // the image wrote to port 0xf4: (status << 1) | 1.
    if image_status.is_none() && launch.emulator == Emulator::Qemu {
        image_status = emulator_status.filter(|c| c & 1 == 1).map(|c| c >> 1);
        if let Some(code) = image_status {
            bar.note(&format!("turtles: no exit marker; QEMU's isa-debug-exit says status {code}"));
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bochs_memory_beyond_2048_mib_uses_the_memory_line() {
        assert_eq!(bochs_memory(256), "megs: 256");
        assert_eq!(bochs_memory(2048), "megs: 2048");
        assert_eq!(bochs_memory(2752), "memory: guest=2752, host=2048");
    }

    #[test]
    fn qemu_modules_keep_their_order_and_escape_commas() {
        let m = |file: &str, cmdline: &str| crate::iso::IsoModule {
            file: PathBuf::from(file),
            cmdline: cmdline.to_string(),
        };
        assert_eq!(
            qemu_modules(&[m("/a", "leaf x=1,2"), m("/b", "")]),
            ["-initrd", "/a leaf x=1,,2,/b"]
        );
        assert!(qemu_modules(&[]).is_empty());
    }
}
