//! The GRUB ISO Bochs boots: GRUB loads the image with `multiboot2` and its guests' images
//! as `module2`, or ([`build_linux`]) a Linux bzImage with `linux` and its `initrd`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A module to pass to the kernel: file and its command line.
pub struct IsoModule {
    pub file: PathBuf,
    pub cmdline: String,
}

/// Builds `out` (an ISO) that boots `kernel` with `cmdline` and `modules`.
pub fn build(
    kernel: &Path,
    cmdline: &str,
    modules: &[IsoModule],
    work: &Path,
    out: &Path,
) -> Result<(), String> {
    let root = work.join("iso");
    let _ = fs::remove_dir_all(&root);
    let grub = root.join("boot/grub");
    fs::create_dir_all(&grub).map_err(|e| format!("{}: {e}", grub.display()))?;
    copy(kernel, &root.join("boot/turtles.elf"))?;
    let mut menu = format!(
        "set timeout=0\nset default=0\n\
         menuentry \"turtles\" {{\n  multiboot2 /boot/turtles.elf {cmdline}\n"
    );
    for (i, module) in modules.iter().enumerate() {
        let name = format!("module{i}.elf");
        copy(&module.file, &root.join("boot").join(&name))?;
        menu += &format!("  module2 /boot/{name} {}\n", module.cmdline);
    }
    menu += "  boot\n}\n";
    fs::write(grub.join("grub.cfg"), menu).map_err(|e| format!("grub.cfg: {e}"))?;
    mkrescue(&root, out)
}

fn mkrescue(root: &Path, out: &Path) -> Result<(), String> {
    let output = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(out)
        .arg(root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "grub-mkrescue failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// Builds `out` (an ISO) that boots the Linux `bzimage` with `cmdline` and `initrd` (GRUB's
/// `linux` and `initrd` commands: the Linux boot protocol).
pub fn build_linux(
    bzimage: &Path,
    cmdline: &str,
    initrd: &Path,
    work: &Path,
    out: &Path,
) -> Result<(), String> {
    let root = work.join("iso");
    let _ = fs::remove_dir_all(&root);
    let grub = root.join("boot/grub");
    fs::create_dir_all(&grub).map_err(|e| format!("{}: {e}", grub.display()))?;
    copy(bzimage, &root.join("boot/vmlinuz"))?;
    copy(initrd, &root.join("boot/initrd.cpio"))?;
    let menu = format!(
        "set timeout=0\nset default=0\n\
         menuentry \"linux\" {{\n  linux /boot/vmlinuz {cmdline}\n  initrd /boot/initrd.cpio\n  boot\n}}\n"
    );
    fs::write(grub.join("grub.cfg"), menu).map_err(|e| format!("grub.cfg: {e}"))?;
    mkrescue(&root, out)
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    fs::copy(from, to)
        .map(|_| ())
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}
