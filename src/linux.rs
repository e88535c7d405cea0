//! A Linux guest (a config with `role = "linux"`): Debian's packaged kernel, not a custom
//! build, and an initramfs of ours. The runner fetches the packages with `apt-get download`
//! (no root needed) into a cache under `target/linux/`, unpacks them with `dpkg-deb -x`, and
//! writes the initramfs as a newc cpio archive ([`newc`]): Debian's `busybox-static`, our
//! `/init` (`src/linux_init.sh`) and the one module it loads (`cpuid.ko`, for
//! `/dev/cpu/0/cpuid`, from which `/init` reads the hypervisor's CPUID leaves), plus what the
//! Linux bench (`src/linux_bench.rs`) runs: Debian's `tcc` with the C library it runs on
//! (from `libc6`), our C sources and the bench's parts (`src/linux_bench/`). For the
//! virtio-mmio devices a level may offer its guest (`guest_devices`), the initramfs also holds
//! the virtio modules ([`IO_MODULES`], loaded by `/init` only when the ACPI tables announce a
//! virtio-mmio device), the e1000 module ([`ASSIGN_MODULES`], loaded when the level below
//! assigned the guest its e1000) and `/bin/udp-answer` (`src/udp_answer.S`, assembled here with
//! binutils), which answers one UDP request.
//!
//! The kernel (`linux-image-amd64` resolved to the real `linux-image-<version>-amd64`
//! package) and busybox are fetched once; the initramfs is rebuilt when `/init` changes.
//! Fetches are serialized across processes (tests run in parallel) by a lock on
//! `target/linux/fetch.lock`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace_root;

/// The kernel command line the runner gives a Linux guest: the serial console (polled for
/// kernel messages, interrupt-driven for `/init`'s), no KASLR and no Spectre mitigations (a
/// shorter boot under Bochs), the TSC trusted (its rate is published in CPUID leaf 0x15), our
/// `/init`, and a panic that reboots at once (the hypervisor reports the reset with the
/// guest's last lines).
pub const CMDLINE: &str =
    "console=ttyS0 quiet mitigations=off nokaslr tsc=reliable panic=-1 rdinit=/init";

/// Added to [`CMDLINE`] for a Linux guest the level below assigned a PCI device: our ACPI
/// tables announce no PCI root bridge (their DSDT holds only `\_S5`), so with ACPI Linux
/// would enumerate no PCI bus; `pci=lastbus=1` makes it scan buses 0-1 through configuration
/// mechanism #1 (x86's peer-bus fixup), where the device sits next to the host bridge.
pub const ASSIGN_CMDLINE: &str = "pci=lastbus=1";

/// The init script packed as `/init`.
const INIT: &str = include_str!("linux_init.sh");
/// The UDP answering program packed as `/bin/udp-answer`.
const UDP_ANSWER: &str = include_str!("udp_answer.S");

/// The modules `/init` loads for virtio-mmio devices, in load order (each after those it
/// depends on), as paths under the kernel's `lib/modules/<release>/kernel/`.
pub const IO_MODULES: [&str; 7] = [
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_mmio.ko",
    "drivers/block/virtio_blk.ko",
    "net/core/failover.ko",
    "drivers/net/net_failover.ko",
    "drivers/net/virtio_net.ko",
];

/// The module `/init` loads when the level below assigned it an Intel 8254x (an e1000 at
/// PCI 8086:100e, `assign = ["e1000"]`), as a path under `lib/modules/<release>/kernel/`.
pub const ASSIGN_MODULES: [&str; 1] = ["drivers/net/ethernet/intel/e1000/e1000.ko"];

/// A module's file name (`virtio_mmio.ko`).
fn module_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The meta package that names the current kernel.
const KERNEL_META: &str = "linux-image-amd64";
const BUSYBOX: &str = "busybox-static";
const TCC: &str = "tcc";
const LIBC: &str = "libc6";

/// The files of the `tcc` and `libc6` packages the initramfs carries (package path ->
/// name in `target/linux/tcc/`): the compiler, its runtime library, and the shared C
/// library and loader it runs on (no headers: the bench compiles with `-nostdinc`).
const TCC_FILES: [(&str, &str); 7] = [
    ("usr/bin/tcc", "tcc"),
    ("usr/lib/x86_64-linux-gnu/tcc/libtcc1.a", "libtcc1.a"),
    ("lib/x86_64-linux-gnu/ld-linux-x86-64.so.2", "ld-linux-x86-64.so.2"),
    ("lib/x86_64-linux-gnu/libc.so.6", "libc.so.6"),
    ("lib/x86_64-linux-gnu/libm.so.6", "libm.so.6"),
    ("lib/x86_64-linux-gnu/libpthread.so.0", "libpthread.so.0"),
    ("lib/x86_64-linux-gnu/libdl.so.2", "libdl.so.2"),
];

/// What a Linux guest boots with.
#[derive(Clone, Debug)]
pub struct LinuxFiles {
    pub bzimage: PathBuf,
    pub initrd: PathBuf,
    /// The kernel package's version, e.g. `6.1.0-56-amd64`.
    pub release: String,
}

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target/linux")
}

/// Fetches (once) the kernel and busybox and builds the initramfs.
pub fn prepare() -> Result<LinuxFiles, String> {
    let dir = cache_dir();
    fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let lock_path = dir.join("fetch.lock");
    let lock = fs::File::create(&lock_path).map_err(|e| format!("{}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("{}: {e}", lock_path.display()))?;
    let release = fetch_kernel(&dir)?;
    fetch_busybox(&dir)?;
    fetch_tcc(&dir)?;
    let initrd = dir.join("initramfs.cpio");
    let archive = initramfs(&dir, &release)?;
    if fs::read(&initrd).ok().as_deref() != Some(&archive[..]) {
        write_atomically(&initrd, &archive)?;
    }
    drop(lock);
    Ok(LinuxFiles { bzimage: dir.join("vmlinuz"), initrd, release })
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let partial = path.with_extension("partial");
    fs::write(&partial, bytes).map_err(|e| format!("{}: {e}", partial.display()))?;
    fs::rename(&partial, path).map_err(|e| format!("{}: {e}", path.display()))
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: cannot run it: {e} (is it installed? see .ci/setup)"))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `apt-get download <package>` into `dir`; returns the .deb's path.
fn download(dir: &Path, package: &str) -> Result<PathBuf, String> {
    let debs = dir.join("debs");
    fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    run(
        Command::new("apt-get").arg("download").arg(package).current_dir(&debs),
        &format!("apt-get download {package}"),
    )?;
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = fs::read_dir(&debs)
        .map_err(|e| format!("{}: {e}", debs.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("apt-get download {package} left no .deb in {}", debs.display()))
}

/// The modules kept from the kernel package besides [`IO_MODULES`] (paths under
/// `lib/modules/<release>/kernel/`; the cache keeps each under its file name): `cpuid.ko` for
/// the Linux guest's `/init`, and KVM for the KVM initramfs ([`crate::linux_kvm`]). All are
/// kept with debug info stripped (`strip --strip-debug`: kvm.ko goes from megabytes to a few
/// hundred KiB).
pub const MODULES: [&str; 4] = [
    "arch/x86/kernel/cpuid.ko",
    "virt/lib/irqbypass.ko",
    "arch/x86/kvm/kvm.ko",
    "arch/x86/kvm/kvm-intel.ko",
];

/// Every module the cache keeps: [`MODULES`], [`IO_MODULES`] and [`ASSIGN_MODULES`].
fn kept_modules() -> impl Iterator<Item = &'static str> {
    MODULES.into_iter().chain(IO_MODULES).chain(ASSIGN_MODULES)
}

/// The kernel: `vmlinuz` and [`MODULES`] in `dir`, the release in `dir/release`.
pub(crate) fn fetch_kernel(dir: &Path) -> Result<String, String> {
    let stamp = dir.join("release");
    let vmlinuz = dir.join("vmlinuz");
    if let Ok(release) = fs::read_to_string(&stamp)
        && vmlinuz.is_file()
        && kept_modules().all(|m| dir.join(module_name(m)).is_file())
    {
        return Ok(release.trim().to_string());
    }
    eprintln!("turtles: fetching Debian's kernel ({KERNEL_META}) into {}", dir.display());
    let meta = download(dir, KERNEL_META)?;
    let depends = run(
        Command::new("dpkg-deb").arg("-f").arg(&meta).arg("Depends"),
        "dpkg-deb -f (kernel meta package)",
    )?;
    let package = kernel_package(&depends)
        .ok_or_else(|| format!("{KERNEL_META} depends on no linux-image package: {depends:?}"))?;
    let release = package.trim_start_matches("linux-image-").to_string();
    let deb = download(dir, &package)?;
    let unpacked = dir.join("kernel");
    let _ = fs::remove_dir_all(&unpacked);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked), "dpkg-deb -x (kernel)")?;
    let boot = unpacked.join(format!("boot/vmlinuz-{release}"));
    fs::copy(&boot, &vmlinuz).map_err(|e| format!("{}: {e}", boot.display()))?;
    for path in kept_modules() {
        let module = unpacked.join(format!("lib/modules/{release}/kernel/{path}"));
        let kept = dir.join(module_name(path));
        fs::copy(&module, &kept).map_err(|e| format!("{}: {e}", module.display()))?;
        run(Command::new("strip").arg("--strip-debug").arg(&kept), "strip --strip-debug")?;
    }
    // Only these files are kept: the unpacked package is ~400 MB of modules.
    let _ = fs::remove_dir_all(&unpacked);
    fs::write(&stamp, &release).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(release)
}

/// `/bin/udp-answer`: `src/udp_answer.S` assembled and linked (binutils) in `dir`.
fn udp_answer(dir: &Path) -> Result<Vec<u8>, String> {
    let source = dir.join("udp_answer.S");
    let object = dir.join("udp_answer.o");
    let program = dir.join("udp-answer");
    if fs::read_to_string(&source).ok().as_deref() != Some(UDP_ANSWER) || !program.is_file() {
        fs::write(&source, UDP_ANSWER).map_err(|e| format!("{}: {e}", source.display()))?;
        run(Command::new("as").arg("--64").arg("-o").arg(&object).arg(&source), "as --64")?;
        run(
            Command::new("ld").args(["-static", "-e", "_start", "-o"]).arg(&program).arg(&object),
            "ld (udp-answer)",
        )?;
    }
    fs::read(&program).map_err(|e| format!("{}: {e}", program.display()))
}

/// The real package a kernel meta package's Depends field names
/// (`linux-image-6.1.0-56-amd64 (= 6.1.192-2)` -> `linux-image-6.1.0-56-amd64`).
pub fn kernel_package(depends: &str) -> Option<String> {
    depends
        .split([',', '|'])
        .map(|d| d.split_whitespace().next().unwrap_or(""))
        .find(|name| name.starts_with("linux-image-") && name.len() > "linux-image-".len())
        .map(str::to_string)
}

/// `busybox` (the static one) in `dir`.
pub(crate) fn fetch_busybox(dir: &Path) -> Result<(), String> {
    let busybox = dir.join("busybox");
    if busybox.is_file() {
        return Ok(());
    }
    eprintln!("turtles: fetching {BUSYBOX} into {}", dir.display());
    let deb = download(dir, BUSYBOX)?;
    let unpacked = dir.join("busybox-pkg");
    let _ = fs::remove_dir_all(&unpacked);
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked), "dpkg-deb -x (busybox)")?;
    let bin = unpacked.join("bin/busybox");
    fs::copy(&bin, &busybox).map_err(|e| format!("{}: {e}", bin.display()))?;
    let _ = fs::remove_dir_all(&unpacked);
    Ok(())
}

/// `tcc` and the C library it runs on, in `dir/tcc/` ([`TCC_FILES`]).
fn fetch_tcc(dir: &Path) -> Result<(), String> {
    let out = dir.join("tcc");
    if TCC_FILES.iter().all(|(_, name)| out.join(name).is_file()) {
        return Ok(());
    }
    eprintln!("turtles: fetching {TCC} and {LIBC} into {}", dir.display());
    fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let unpacked = dir.join("tcc-pkg");
    let _ = fs::remove_dir_all(&unpacked);
    for package in [TCC, LIBC] {
        let deb = download(dir, package)?;
        run(
            Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&unpacked),
            &format!("dpkg-deb -x ({package})"),
        )?;
    }
    for (path, name) in TCC_FILES {
        let from = unpacked.join(path);
        fs::copy(&from, out.join(name)).map_err(|e| format!("{}: {e}", from.display()))?;
    }
    let _ = fs::remove_dir_all(&unpacked);
    Ok(())
}

/// The initramfs: directories, `/dev/console`, busybox, `/init`, `cpuid.ko`, the virtio
/// modules and `udp-answer`, and the Linux bench's compiler, sources and parts.
fn initramfs(dir: &Path, release: &str) -> Result<Vec<u8>, String> {
    let read = |name: &str| {
        let path = dir.join(name);
        fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let busybox = read("busybox")?;
    let cpuid = read("cpuid.ko")?;
    let init = INIT.replace("@RELEASE@", release);
    let mut cpio = newc::Writer::default();
    for d in
        ["bin", "dev", "proc", "sys", "lib", "lib/modules", "sbin", "usr", "usr/bin", "usr/sbin"]
    {
        cpio.dir(d);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, &busybox);
    cpio.file("lib/modules/cpuid.ko", 0o644, &cpuid);
    for m in IO_MODULES.into_iter().chain(ASSIGN_MODULES) {
        let name = module_name(m);
        cpio.file(&format!("lib/modules/{name}"), 0o644, &read(name)?);
    }
    cpio.file("bin/udp-answer", 0o755, &udp_answer(dir)?);
    cpio.file("init", 0o755, init.as_bytes());
    for d in ["lib/x86_64-linux-gnu", "lib64", "usr/lib", "usr/lib/x86_64-linux-gnu"] {
        cpio.dir(d);
    }
    cpio.dir("usr/lib/x86_64-linux-gnu/tcc");
    for (path, name) in TCC_FILES {
        let bytes = read(&format!("tcc/{name}"))?;
        let perm = if name.ends_with(".a") { 0o644 } else { 0o755 };
        cpio.file(path, perm, &bytes);
    }
    cpio.symlink("lib64/ld-linux-x86-64.so.2", "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2");
    cpio.dir("bench");
    for (name, text) in crate::linux_bench::guest_files() {
        cpio.file(&format!("bench/{name}"), 0o644, text.as_bytes());
    }
    Ok(cpio.finish())
}

/// The newc ("new ASCII", `070701`) cpio format the kernel's initramfs unpacker reads
/// (`Documentation/driver-api/early-userspace/buffer-format.rst`): per entry a 110-byte
/// header of the magic and 13 eight-digit hex fields, the name with its NUL padded to 4 bytes,
/// the data padded to 4 bytes; a `TRAILER!!!` entry ends the archive.
pub mod newc {
    const S_IFDIR: u32 = 0o040_000;
    const S_IFREG: u32 = 0o100_000;
    const S_IFCHR: u32 = 0o020_000;
    const S_IFLNK: u32 = 0o120_000;

    /// An archive being written.
    #[derive(Default)]
    pub struct Writer {
        out: Vec<u8>,
        ino: u32,
    }

    fn pad4(out: &mut Vec<u8>) {
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }

    impl Writer {
        fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
            self.ino += 1;
            let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
            let fields = [
                self.ino,
                mode,
                0, // uid
                0, // gid
                nlink,
                0, // mtime: fixed, so the archive is reproducible
                data.len() as u32,
                0,
                0,
                rdev.0,
                rdev.1,
                name.len() as u32 + 1,
                0, // check
            ];
            self.out.extend_from_slice(b"070701");
            for f in fields {
                self.out.extend_from_slice(format!("{f:08x}").as_bytes());
            }
            self.out.extend_from_slice(name.as_bytes());
            self.out.push(0);
            pad4(&mut self.out);
            self.out.extend_from_slice(data);
            pad4(&mut self.out);
        }

        pub fn dir(&mut self, name: &str) {
            self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
        }

        pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
            self.entry(name, S_IFREG | perm, (0, 0), data);
        }

        /// A symbolic link `name` -> `target` (the data is the target).
        pub fn symlink(&mut self, name: &str, target: &str) {
            self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
        }

        pub fn char_device(&mut self, name: &str, major: u32, minor: u32) {
            self.entry(name, S_IFCHR | 0o600, (major, minor), &[]);
        }

        /// The archive with its trailer.
        pub fn finish(mut self) -> Vec<u8> {
            self.ino = 0;
            self.entry("TRAILER!!!", 0, (0, 0), &[]);
            self.out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_package_from_depends() {
        assert_eq!(
            kernel_package("linux-image-6.1.0-56-amd64 (= 6.1.192-2)").as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(
            kernel_package("foo, linux-image-6.12.1-amd64 | bar").as_deref(),
            Some("linux-image-6.12.1-amd64")
        );
        assert_eq!(kernel_package("linux-image-"), None);
        assert_eq!(kernel_package(""), None);
    }

    #[test]
    fn newc_layout() {
        let mut w = newc::Writer::default();
        w.dir("bin");
        w.file("init", 0o755, b"#!/bin/sh\n");
        w.char_device("dev/console", 5, 1);
        let a = w.finish();
        assert!(a.starts_with(b"070701"));
        assert_eq!(a.len() % 4, 0);
        // First header: ino 1, directory mode, name "bin".
        let field = |at: usize, i: usize| {
            u32::from_str_radix(
                std::str::from_utf8(&a[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap(),
                16,
            )
            .unwrap()
        };
        assert_eq!(field(0, 0), 1);
        assert_eq!(field(0, 1), 0o040_755);
        assert_eq!(field(0, 11), 4);
        assert_eq!(&a[110..113], b"bin");
        // Second entry starts after 110 + 4 ("bin\0"), padded to 116.
        assert_eq!(&a[116..122], b"070701");
        assert_eq!(field(116, 6), 10);
        let text = String::from_utf8_lossy(&a);
        assert!(text.contains("dev/console") && text.ends_with("TRAILER!!!\0\0\0\0"), "{text:?}");
    }
}
