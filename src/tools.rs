//! Host prerequisites: the emulators and ISO tools, with the exact install line when missing.

use std::env;
use std::path::{Path, PathBuf};

use turtles_config::Emulator;

/// The Debian packages that provide everything the runner uses.
pub const APT_INSTALL: &str = "apt-get install -y qemu-system-x86 bochs bochsbios vgabios \
                               bochs-term grub-pc-bin grub-common xorriso mtools binutils \
                               util-linux";

/// Files Bochs needs besides its binary.
pub const BOCHS_BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
pub const BOCHS_VGABIOS: &str = "/usr/share/vgabios/vgabios.bin";
const GRUB_PC_MODULES: &str = "/usr/lib/grub/i386-pc";

/// Finds `program` in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Checks what booting under `emulator` needs; the error lists what is missing and how to
/// install it.
pub fn check(emulator: Emulator) -> Result<(), String> {
    let (programs, files): (&[&str], &[&str]) = match emulator {
        // setpriv (util-linux) starts the emulators (`session::emulator`).
        Emulator::Qemu => (&["qemu-system-x86_64", "setpriv"], &[]),
        Emulator::Bochs => (
            &["bochs-bin", "grub-mkrescue", "xorriso", "setpriv"],
            &[BOCHS_BIOS, BOCHS_VGABIOS, GRUB_PC_MODULES],
        ),
    };
    let missing: Vec<&str> = programs
        .iter()
        .filter(|p| which(p).is_none())
        .chain(files.iter().filter(|f| !Path::new(f).exists()))
        .copied()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "missing for {}: {}\ninstall with: sudo {APT_INSTALL}",
            emulator.as_str(),
            missing.join(", ")
        ))
    }
}
