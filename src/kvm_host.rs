//! A `linux-kvm` config: Debian's Linux as the top level under Bochs, a KVM host acting as
//! L0. The runner builds the images of the config's guest chain (the `guest` config's image
//! for the launcher, its guests' images as its boot modules, outermost first, each named by
//! its config as a turtles L0 names them), packs them into the KVM initramfs
//! ([`crate::linux_kvm`]) and boots Linux from a GRUB ISO with `linux` and `initrd`. The
//! options a turtles L0 takes for its guest apply to the launched image: `--guest-image`,
//! `--guest-module`, `--guest-cmdline`, `--leaf-cmdline` (the innermost module's line) and
//! `--guest-mem`; `--cmdline` is appended to Linux's command line (for example
//! `kvm_intel.enable_shadow_vmcs=0`, which `/init` passes to kvm-intel).

use std::path::{Path, PathBuf};

use turtles_config::{Config, ConfigSet};

use crate::linux_kvm::{self, KvmGuest};
use crate::run::RunOptions;
use crate::{images, iso, linux, progress};

/// Builds everything and writes the ISO; returns it and the machine's memory in MiB.
pub fn prepare(
    set: &ConfigSet,
    config: &Config,
    options: &RunOptions,
    work: &Path,
) -> Result<(PathBuf, u32), String> {
    let mut names = images::build_chain_names(set, config)?;
    names.pop(); // the config itself: Linux, fetched, not built
    let paths = progress::build_images(&names)?;
    // Outermost first: the launched image, then its modules.
    let mut chain: Vec<(String, PathBuf)> = names.into_iter().zip(paths).rev().collect();
    if chain.is_empty() {
        return Err(format!("config `{}` names no guest to launch", config.name));
    }
    let (_, mut image) = chain.remove(0);
    let mut modules: Vec<(PathBuf, String)> =
        chain.into_iter().map(|(name, path)| (path, name)).collect();
    if let Some(path) = &options.guest_image {
        if !path.is_file() {
            return Err(format!("--guest-image {}: no such file", path.display()));
        }
        image = path.clone();
        modules.clear();
    }
    if !options.guest_modules.is_empty() {
        modules.clear();
        for m in &options.guest_modules {
            if !m.file.is_file() {
                return Err(format!("--guest-module {}: no such file", m.file.display()));
            }
            modules.push((m.file.clone(), m.cmdline.clone()));
        }
    }
    let mut cmdline = options.guest_cmdline.clone();
    if !options.leaf_cmdline.is_empty() {
        let innermost = match modules.last_mut() {
            Some((_, line)) => line,
            None => &mut cmdline,
        };
        *innermost = format!("{innermost} {}", options.leaf_cmdline).trim().to_string();
    }
    let mem_mib = options.guest_mem_mib.unwrap_or(config.guest_memory_mib);
    let headroom = config.machine.memory_mib.saturating_sub(config.guest_memory_mib);
    let memory_mib = config.machine.memory_mib.max(mem_mib + headroom);
    if options.guest_initrd.is_some() {
        return Err(format!("config `{}` runs no Linux guest: --guest-initrd", config.name));
    }
    eprintln!("turtles: building the launcher and the KVM initramfs for `{}`", config.name);
    let guest = KvmGuest {
        name: config.name.clone(),
        image,
        modules,
        cmdline,
        mem_mib,
        prefix: "L1| ".to_string(),
    };
    let files = linux_kvm::prepare(&guest)?;
    let line = format!("{} {}", linux::CMDLINE, options.cmdline).trim().to_string();
    let out = work.join("linux-kvm.iso");
    iso::build_linux(&files.bzimage, &line, &files.initrd, work, &out)?;
    Ok((out, memory_mib))
}
