//! Real KVM (issue 12): the launcher (`launcher/`, a static VMM on /dev/kvm) and the KVM
//! initramfs (`src/linux_kvm.rs`), and turtles as a KVM guest: `kvm-l1-leaf` boots Debian's
//! Linux on bare Bochs, loads kvm_intel with nested=1 and runs turtles' `l1` image (L1) on
//! it, whose guest is the leaf (L2).

use std::process::Command;

use turtles::linux_kvm::{self, KvmGuest};

/// A file that is no kernel is refused before KVM is touched, with the file named and why
/// (this needs no /dev/kvm).
#[test]
fn launcher_refuses_a_bad_image_clearly() {
    let launcher = linux_kvm::build_launcher().expect("the launcher builds for musl");
    let dir = std::env::temp_dir().join(format!("turtles-kvm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.elf");
    std::fs::write(&junk, b"not a kernel at all").unwrap();
    let out = Command::new(&launcher).arg(&junk).output().expect("the launcher runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("junk.elf: cannot boot it: no multiboot1/multiboot2 header and no PVH note"),
        "{stderr}"
    );
    let out = Command::new(&launcher).arg(dir.join("missing")).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing: No such file"));
    let out = Command::new(&launcher).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no kernel image given"));
}

/// The KVM initramfs holds KVM's modules, busybox, the launcher, the images and an /init
/// that runs the launcher with them.
#[test]
fn kvm_initramfs_packs_kvm_the_launcher_and_the_images() {
    let dir = std::env::temp_dir().join(format!("turtles-kvm-initrd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let image = dir.join("kernel");
    let module = dir.join("module");
    std::fs::write(&image, b"IMAGE-BYTES").unwrap();
    std::fs::write(&module, b"MODULE-BYTES").unwrap();
    let guest = KvmGuest {
        name: "test-initramfs".into(),
        image,
        modules: vec![(module, "leaf".into())],
        cmdline: String::new(),
        mem_mib: 64,
        prefix: "L1| ".into(),
    };
    let files = linux_kvm::prepare(&guest).expect("the KVM initramfs is built");
    assert!(files.bzimage.is_file());
    let cpio = std::fs::read(&files.initrd).unwrap();
    let text = String::from_utf8_lossy(&cpio);
    for needle in [
        "lib/modules/irqbypass.ko",
        "lib/modules/kvm.ko",
        "lib/modules/kvm-intel.ko",
        "bin/busybox",
        "bin/turtles-launcher",
        "turtles/image",
        "IMAGE-BYTES",
        "turtles/module0",
        "MODULE-BYTES",
        "/bin/turtles-launcher --mem 64 --prefix 'L1| ' /turtles/image '/turtles/module0=leaf'",
        "TRAILER!!!",
    ] {
        assert!(text.contains(needle), "{needle} missing from {}", files.initrd.display());
    }
    // Small enough for the emulator's memory: kvm.ko and the launcher are stripped.
    assert!(cpio.len() < 8 << 20, "{} bytes", cpio.len());
    let _ = std::fs::remove_file(&files.initrd);
}
