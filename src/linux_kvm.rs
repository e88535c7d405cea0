//! The KVM initramfs: Debian's Linux as a KVM host (L0 under bare Bochs, or L1 on a turtles
//! L0) that runs our launcher (`launcher/`, a static musl binary) on /dev/kvm with turtles
//! images. Beside `src/linux.rs`'s guest initramfs, from the same cache: the kernel package's
//! `irqbypass.ko`, `kvm.ko` and `kvm-intel.ko` (debug info stripped), `busybox-static`, the
//! launcher, the images it boots and `/init` (`src/linux_kvm_init.sh`), which loads
//! kvm_intel with `nested=1`, runs
//!
//! ```text
//! /bin/turtles-launcher --mem MIB --prefix PREFIX [--cmdline TEXT] /turtles/image /turtles/module0=CMDLINE ...
//! ```
//!
//! and prints the launcher's status as the run's exit marker (`turtles: exit status=N`)
//! before powering off. Reuse: fill a [`KvmGuest`] and call [`prepare`]; the result boots
//! like any Linux guest (`vmlinuz` with [`crate::linux::CMDLINE`] and the initrd).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::linux::{self, LinuxFiles};
use crate::workspace_root;

const INIT: &str = include_str!("linux_kvm_init.sh");
/// The launcher's cargo package and binary, and the target it is built for.
const LAUNCHER: &str = "turtles-launcher";
const MUSL: &str = "x86_64-unknown-linux-musl";

/// What the launcher in the initramfs boots.
#[derive(Clone, Debug)]
pub struct KvmGuest {
    /// Names the cached initrd (`target/linux/kvm-<name>.cpio`); one per config.
    pub name: String,
    /// The kernel the launcher boots (a turtles image, or any multiboot/PVH kernel).
    pub image: PathBuf,
    /// Its boot modules in order: file and command line.
    pub modules: Vec<(PathBuf, String)>,
    /// Its command line.
    pub cmdline: String,
    /// Its memory in MiB.
    pub mem_mib: u32,
    /// Printed before each of its lines: `L1| ` when Linux is the top level (the guest is
    /// at depth 1), `L2| ` under a turtles L0 (which adds its own `L1| `).
    pub prefix: String,
}

/// The launcher binary, built (cargo decides whether anything changed) for musl.
pub fn build_launcher() -> Result<PathBuf, String> {
    let root = workspace_root();
    let target_dir = root.join("target/launcher");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    linux::run(
        Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--release", "--quiet", "-p", LAUNCHER, "--target", MUSL])
            .arg("--target-dir")
            .arg(&target_dir),
        &format!("{cargo} build -p {LAUNCHER} --target {MUSL} (see .ci/setup for the target)"),
    )?;
    let built = target_dir.join(MUSL).join("release").join(LAUNCHER);
    if !built.is_file() {
        return Err(format!(
            "the launcher build said it succeeded but {} is missing",
            built.display()
        ));
    }
    Ok(built)
}

/// Fetches (once) the kernel and busybox, builds the launcher and writes the KVM initramfs
/// for `guest` (rewritten only when its bytes change).
pub fn prepare(guest: &KvmGuest) -> Result<LinuxFiles, String> {
    let launcher = build_launcher()?;
    let dir = linux::cache_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock_path = dir.join("fetch.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let release = linux::fetch_kernel(&dir)?;
    linux::fetch_busybox(&dir)?;
    // The launcher without its debug info (the release profile keeps some).
    let stripped = dir.join("turtles-launcher");
    fs::copy(&launcher, &stripped).map_err(|e| format!("{}: {e}", stripped.display()))?;
    linux::run(Command::new("strip").arg(&stripped), "strip (the launcher)")?;
    let archive = initramfs(&dir, &release, guest)?;
    let initrd = dir.join(format!("kvm-{}.cpio", guest.name));
    if fs::read(&initrd).ok().as_deref() != Some(&archive[..]) {
        linux::write_atomically(&initrd, &archive)?;
    }
    drop(lock);
    Ok(LinuxFiles { bzimage: dir.join("vmlinuz"), initrd, release })
}

/// `s` as one word for `sh`.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The launcher's arguments for `guest`, with its files where the initramfs puts them.
pub fn launcher_args(guest: &KvmGuest) -> String {
    let mut args = vec![
        "--mem".to_string(),
        guest.mem_mib.to_string(),
        "--prefix".to_string(),
        quote(&guest.prefix),
    ];
    if !guest.cmdline.is_empty() {
        args.extend(["--cmdline".to_string(), quote(&guest.cmdline)]);
    }
    args.push("/turtles/image".to_string());
    for (i, (_, cmdline)) in guest.modules.iter().enumerate() {
        args.push(quote(&format!("/turtles/module{i}={cmdline}")));
    }
    args.join(" ")
}

fn initramfs(dir: &Path, release: &str, guest: &KvmGuest) -> Result<Vec<u8>, String> {
    let read = |path: &Path| fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
    let init = INIT.replace("@RELEASE@", release).replace("@ARGS@", &launcher_args(guest));
    let mut cpio = linux::newc::Writer::default();
    for d in ["bin", "dev", "proc", "sys", "lib", "lib/modules", "sbin", "usr", "usr/bin"] {
        cpio.dir(d);
    }
    cpio.dir("usr/sbin");
    cpio.dir("turtles");
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &read(&dir.join("busybox"))?);
    cpio.file("bin/turtles-launcher", 0o755, &read(&dir.join("turtles-launcher"))?);
    for name in ["irqbypass.ko", "kvm.ko", "kvm-intel.ko"] {
        cpio.file(&format!("lib/modules/{name}"), 0o644, &read(&dir.join(name))?);
    }
    cpio.file("turtles/image", 0o644, &read(&guest.image)?);
    for (i, (file, _)) in guest.modules.iter().enumerate() {
        cpio.file(&format!("turtles/module{i}"), 0o644, &read(file)?);
    }
    cpio.file("init", 0o755, init.as_bytes());
    Ok(cpio.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launcher_command_line_quotes_what_it_must() {
        let guest = KvmGuest {
            name: "t".into(),
            image: "/x/l1".into(),
            modules: vec![
                ("/x/leaf".into(), "leaf turtles.x=1".into()),
                ("/y".into(), "it's".into()),
            ],
            cmdline: String::new(),
            mem_mib: 160,
            prefix: "L1| ".into(),
        };
        assert_eq!(
            launcher_args(&guest),
            r"--mem 160 --prefix 'L1| ' /turtles/image '/turtles/module0=leaf turtles.x=1' '/turtles/module1=it'\''s'"
        );
        let with_line = KvmGuest { cmdline: "a b".into(), modules: vec![], ..guest };
        assert!(launcher_args(&with_line).contains("--cmdline 'a b' /turtles/image"));
    }

    #[test]
    fn init_runs_the_launcher_and_reports_its_status() {
        assert!(INIT.contains("insmod /lib/modules/kvm-intel.ko $params"));
        assert!(INIT.contains("/bin/turtles-launcher @ARGS@"));
        assert!(INIT.contains("echo \"turtles: exit status=$status\""));
        assert!(INIT.contains("poweroff -f"));
    }
}
