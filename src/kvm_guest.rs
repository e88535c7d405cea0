//! A Linux KVM host as a turtles level's guest (a `linux-kvm` config at depth >= 1, e.g.
//! `l0-kvm-leaf`: Bochs -> turtles L0 -> Debian's Linux with kvm_intel nested=1 on L0's
//! emulated VMX -> the launcher on /dev/kvm -> the leaf). The runner builds the images of
//! the KVM config's own guest chain, packs them with the launcher into the KVM initramfs
//! ([`crate::linux_kvm`]) and hands the level above Debian's bzImage and that initramfs as a
//! Linux guest (boot modules `<name> <command line>` and `<name>-initrd`, as for `linux`).

use turtles_config::{ConfigSet, Role};

use crate::linux::LinuxFiles;
use crate::linux_kvm::{self, KvmGuest};
use crate::{images, progress};

/// If the outermost guest in `names` (the build order, innermost first, the config itself
/// last) is a `linux-kvm` config, takes it and its own guests out of `names` (they are not
/// images of the level's ISO), builds those guests' images and the KVM initramfs, and
/// returns the KVM config's name and the files it boots with.
pub fn take(
    set: &ConfigSet,
    names: &mut Vec<String>,
) -> Result<Option<(String, LinuxFiles)>, String> {
    let Some(at) = names.len().checked_sub(2) else { return Ok(None) };
    let kvm = set.get(&names[at])?;
    if kvm.role != Role::LinuxKvm {
        return Ok(None);
    }
    let kvm = kvm.clone();
    let inner: Vec<String> = names.drain(..=at).take(at).collect();
    if inner.is_empty() {
        return Err(format!("config `{}` names no guest to launch", kvm.name));
    }
    let paths = progress::build_images(&inner)?;
    let (image, chain) = images::split_chain(inner, paths)?;
    let guest = KvmGuest {
        name: kvm.name.clone(),
        image,
        modules: chain.into_iter().map(|b| (b.path, b.name)).collect(),
        cmdline: String::new(),
        mem_mib: kvm.guest_memory_mib,
        prefix: launcher_prefix(kvm.depth),
    };
    eprintln!("turtles: building the launcher and the KVM initramfs for `{}`", kvm.name);
    let files = linux_kvm::prepare(&guest)?;
    Ok(Some((kvm.name, files)))
}

/// What the launcher prints before each line of its guest: the guest's depth (the levels
/// above add their own prefixes, as turtles levels do).
fn launcher_prefix(kvm_depth: u32) -> String {
    format!("L{}| ", kvm_depth + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launched_guest_is_one_level_deeper() {
        assert_eq!(launcher_prefix(1), "L2| ");
        assert_eq!(launcher_prefix(2), "L3| ");
    }
}
