//! Real KVM (issue 12): the launcher (`launcher/`, a static VMM on /dev/kvm) and the KVM
//! initramfs (`src/linux_kvm.rs`), and turtles as a KVM guest: `kvm-l1-leaf` boots Debian's
//! Linux on bare Bochs, loads kvm_intel with nested=1 and runs turtles' `l1` image (L1) on
//! it, whose guest is the leaf (L2).

mod common;

use std::process::Command;

use common::turtles;

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

/// What every `kvm-l1-leaf` run shows: KVM loaded with nested VMX, the launcher booting the
/// `l1` image with the leaf as its module, turtles' L1 seeing VMX and KVM's signature, the
/// leaf's workload at depth 2 with its exits counted by L1, and status 0 passed from the leaf
/// through L1 and the launcher to the run.
fn expect_kvm_l1_leaf(run: &common::Run, shadowing: &str) {
    run.expect(
        0,
        &[
            "kvm: loaded: kvm-intel nested=1",
            "nested=Y ept=Y vpid=Y unrestricted_guest=Y",
            &format!("enable_shadow_vmcs={shadowing}"),
            "launcher: /turtles/image booted via Multiboot2 at 0x100038 with 1 module(s), 160 MiB, VMX shown",
            "L1| [L1 cpu0 INFO ] platform: hypervisor signature=\"KVMKVMKVM\"",
            "L1| [L1 cpu0 INFO ] vmx: revision=",
            "L1| [L1 cpu0 INFO ] vmx: VMXON done",
            "L1| L2| [L2 cpu0 INFO ] platform: hypervisor signature=\"turtles\"",
            "L1| L2| [L2 cpu0 INFO ] workload: cpuid rounds=1000 ",
            "L1| L2| [L2 cpu0 INFO ] workload: compute rounds=2000000 ",
            "result=0x6ff16ceb966783d4",
            "L1| L2| turtles: exit status=0",
            "L1| [L1 cpu0 INFO ] guest: exited with status 0",
            "L1| turtles: exit status=0",
            "kvm: launcher exited with status 0",
            "kvm: stats: exits=",
        ],
    );
    // Every exit-causing round trip of the leaf is one exit at L1, its hypervisor.
    for part in ["cpuid", "io", "hlt"] {
        let line = run.lines_with(&format!("workload: {part} rounds=1000 "));
        assert!(
            line.iter().any(|l| l.contains(" exits=1000 ")),
            "{part}: one L1 exit per round trip: {line:?}"
        );
    }
}

/// Bochs -> Linux KVM (L0, kvm_intel nested=1, VMCS shadowing on) -> turtles L1 -> leaf.
#[test]
fn kvm_l1_leaf_runs_turtles_as_l1_on_linux_kvm() {
    let run = turtles(&["run", "kvm-l1-leaf", "--timeout", "2400"]);
    expect_kvm_l1_leaf(&run, "Y");
}

/// The same with KVM's VMCS shadowing off (`kvm_intel.enable_shadow_vmcs=0` on Linux's
/// command line, which `/init` passes to kvm-intel): every VMREAD/VMWRITE of turtles' L1
/// exits to KVM. (KVM offers L1 VMCS shadowing either way: it emulates it for L1.)
#[test]
fn kvm_l1_leaf_runs_without_kvm_vmcs_shadowing() {
    let run = turtles(&[
        "run",
        "kvm-l1-leaf",
        "--timeout",
        "2400",
        "--cmdline",
        "kvm_intel.enable_shadow_vmcs=0",
    ]);
    expect_kvm_l1_leaf(&run, "N");
    run.expect(0, &["kvm: loaded: kvm-intel nested=1 enable_shadow_vmcs=0"]);
}
