//! The single-level hypervisor under Bochs: L0 runs the leaf image and an unmodified
//! multiboot kernel as guests, and stays alive and reports when a guest misbehaves.

mod common;

use common::{build_test_kernel, turtles};

/// `cargo run -- run l0-leaf` with extra guest command-line words.
fn l0_leaf(guest_cmdline: &str) -> common::Run {
    turtles(&["run", "l0-leaf", "--timeout", "180", "--guest-cmdline", guest_cmdline])
}

#[test]
fn l0_runs_the_leaf_workload_to_completion() {
    let run = l0_leaf("");
    run.expect(
        0,
        &[
            "vmx: VMXON done",
            "guest: ",
            "booted via Multiboot2",
            "L1| [L1 cpu0 INFO ] platform: hypervisor signature=\"turtles\"",
            "L1| [L1 cpu0 INFO ] workload: cpuid rounds=1000",
            "L1| [L1 cpu0 INFO ] workload: io rounds=1000",
            "L1| [L1 cpu0 INFO ] workload: hlt rounds=1000",
            "result=0x6ff16ceb966783d4", // the compute checksum, the same at every depth
            "guest: exited with status 0",
            "exits: Cpuid=",
            "exits: IoInstruction=",
            "exits: Hlt=1000",
        ],
    );
    // Exactly one exit per CPUID, port write and HLT round trip.
    for part in ["cpuid", "io", "hlt"] {
        let line = run.lines_with(&format!("workload: {part} rounds=1000"));
        assert!(line.iter().any(|l| l.contains("exits=1000 ")), "{part}: {line:?}");
    }
}

#[test]
fn l0_boots_the_leaf_through_multiboot1_and_pvh_too() {
    l0_leaf("turtles.boot=multiboot1").expect(
        0,
        &[
            "booted via Multiboot1",
            "L1| [L1 cpu0 INFO ] boot: protocol=multiboot1",
            "exited with status 0",
        ],
    );
    l0_leaf("turtles.boot=pvh").expect(
        0,
        &["booted via Pvh", "L1| [L1 cpu0 INFO ] boot: protocol=pvh", "exited with status 0"],
    );
}

#[test]
fn l0_boots_an_unmodified_multiboot_kernel() {
    let kernel = build_test_kernel("hello32");
    let kernel = kernel.to_str().expect("utf-8 path");
    turtles(&["run", "l0-leaf", "--guest-image", kernel, "--guest-cmdline", "hello-arg x=1"])
        .expect(
            0,
            &[
                "booted via Multiboot1",
                "L1| hello32: a plain multiboot kernel, not turtles",
                "L1| hello32: multiboot magic ok",
                "L1| hello32: mem_upper=0x0000fc00 KiB", // 64 MiB guest: 63 MiB above 1 MiB
                "L1| hello32: cmdline=hello-arg x=1",
                "L1| hello32: mmap bytes=0x00000048", // three 24-byte entries
                "L1| hello32: done",
                "guest: exited with status 0",
                "exits: IoInstruction=",
            ],
        );
}

/// A foreign kernel with its own boot modules and memory size: `--guest-module` files reach
/// it in order with their command lines, and only those (not the config's inner levels);
/// `--guest-mem` is the memory its memory map shows.
#[test]
fn l0_gives_a_foreign_kernel_its_own_modules_and_memory_size() {
    let kernel = build_test_kernel("hello32");
    let dir = kernel.parent().expect("test-kernels directory").to_path_buf();
    let first = dir.join("module-5000.bin");
    let second = dir.join("module-100.bin");
    std::fs::write(&first, vec![0x5a; 5000]).expect("write module");
    std::fs::write(&second, vec![0xa5; 100]).expect("write module");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
    let run = turtles(&[
        "run",
        "l0-leaf",
        "--timeout",
        "180",
        "--guest-image",
        &path(&kernel),
        "--guest-module",
        &format!("{}=first arg=1", path(&first)),
        "--guest-module",
        &path(&second),
        "--guest-mem",
        "96",
    ]);
    run.expect(
        0,
        &[
            "guest: 96 MiB of memory (turtles.guest_mem_mib; the config says 64 MiB)",
            "L1| hello32: multiboot magic ok",
            "L1| hello32: mem_upper=0x00017c00 KiB", // 96 MiB guest: 95 MiB above 1 MiB
            "L1| hello32: mmap base=0x00100000 len=0x05f00000 type=0x00000001",
            "L1| hello32: modules=0x00000002",
            "L1| hello32: module bytes=0x00001388 cmdline=\"first arg=1\"",
            "L1| hello32: module bytes=0x00000064 cmdline=\"\"",
            "L1| hello32: done",
            "guest: exited with status 0",
        ],
    );
    // The leaf image (the config's own guest) is not one of them.
    assert_eq!(run.lines_with("L1| hello32: module bytes=").len(), 2, "{}", run.all());
}

#[test]
fn bad_guest_triple_fault_is_stopped_and_l0_lives() {
    l0_leaf("turtles.test=triplefault").expect(
        4,
        &[
            "self-test: triplefault",
            "guest triple fault: stopping the guest",
            "guest state: rip=",
            "exits: TripleFault=1",
            "L0 is still running after stopping its guest",
        ],
    );
}

/// A data load where the guest has neither RAM nor a device reads all ones, as on a PC.
#[test]
fn bad_guest_read_outside_its_memory_reads_all_ones() {
    l0_leaf("turtles.test=outside").expect(
        0,
        &[
            "guest access to guest-physical 0x80000000, where there is neither RAM nor a device",
            "self-test: read 0xffffffff at 2 GiB",
            "exits: EptViolation=1",
            "guest: exited with status 0",
        ],
    );
}

/// An instruction fetched from there reads all ones too: FF FF is a reserved opcode, so
/// the guest takes #UD at that RIP, as on bare Bochs (`tests/boot.rs`); its handler ends
/// the run with its failure status.
#[test]
fn bad_guest_fetch_outside_its_memory_is_ud() {
    l0_leaf("turtles.test=outside-fetch").expect(
        1,
        &[
            "guest instruction fetch at guest-physical 0x80000000, where there is neither RAM \
             nor a device: all ones, FF FF is #UD (rip 0x80000000)",
            "L1| EXCEPTION #UD (vector 6) error_code=0x0",
            "L1| rip=0x0000000080000000",
            "exits: EptViolation=1",
            "guest: exited with status 1",
        ],
    );
}

/// CR8 is the task-priority class of the guest's own local APIC (L0's model of it), both
/// ways, as on the bare processor (`tests/boot.rs` runs the same self-test on bare Bochs):
/// run natively it would be the processor's TPR, which L0's own interrupts go through.
#[test]
fn guest_cr8_is_its_local_apic_tpr() {
    l0_leaf("turtles.test=cr8").expect(
        0,
        &[
            "L1| [L1 cpu0 INFO ] self-test: CR8 5 gives TPR 0x50; TPR 0x30 gives CR8 0x3; 0 0x0",
            "exits: CrAccess=3",
            "guest: exited with status 0",
        ],
    );
}

#[test]
fn bad_guest_unknown_port_reads_all_ones_once_logged() {
    let run = l0_leaf("turtles.test=port");
    run.expect(
        0,
        &[
            "guest read of unknown I/O port 0x2f8: reads all-ones",
            "L1| [L1 cpu0 INFO ] self-test: port 0x2f8 reads 0xff",
            "guest: exited with status 0",
        ],
    );
    assert_eq!(run.lines_with("unknown I/O port 0x2f8").len(), 1, "logged once");
    run.expect_absent(&["unknown I/O port 0x21", "unknown I/O port 0xa1"]); // the PIC is emulated
}

#[test]
fn bad_guest_unknown_msr_gets_gp() {
    l0_leaf("turtles.test=msr").expect(
        1,
        &[
            "guest RDMSR of MSR 0x1234 (value 0x0) not allowed: injecting #GP(0)",
            "L1| EXCEPTION #GP (vector 13) error_code=0x0",
            "guest: exited with status 1",
            "exits: Rdmsr=",
        ],
    );
}

#[test]
fn bad_guest_vmx_instruction_gets_ud() {
    l0_leaf("turtles.test=vmx").expect(
        1,
        &[
            "guest executed Vmcall",
            "VMX is not exposed: injecting #UD",
            "L1| EXCEPTION #UD (vector 6)",
            "exits: Vmcall=1",
        ],
    );
}

#[test]
fn bad_guest_endless_loop_is_stopped_by_the_watchdog() {
    l0_leaf("turtles.test=loop").expect(
        4,
        &[
            "self-test: loop",
            "watchdog: the guest ran 600000000 ticks without a single exit",
            "exits: PreemptionTimer=3",
            "L0 is still running",
        ],
    );
}

/// A guest spinning with interrupts off while its APIC timer keeps firing: L0's preemption
/// timer exits for the timer's deadlines deliver nothing, and the watchdog counts them as
/// quiet time (issue 14, finding 15).
#[test]
fn guest_spinning_with_interrupts_off_and_its_apic_timer_armed_is_stopped_by_the_watchdog() {
    let kernel = build_test_kernel("spin32");
    let kernel = kernel.to_str().expect("utf-8 path");
    turtles(&["run", "l0-leaf", "--timeout", "300", "--guest-image", kernel]).expect(
        4,
        &[
            "L1| spin32: interrupts off, APIC timer armed, spinning",
            "watchdog: the guest ran 600000000 ticks without a single exit but its timer's, \
             taking no interrupt: stopping it",
            "L0 is still running",
        ],
    );
}

#[test]
fn l0_boots_its_guest_from_disk_and_writes_the_exit_report() {
    turtles(&["run", "l0-disk-bochs", "--timeout", "200"]).expect(
        0,
        &[
            "disk: guest image `leaf` loaded",
            "guest: `leaf` loaded from disk",
            "guest: exited with status 0",
            "disk: report written",
            "turtles: disk report: {\"type\":\"guest\",\"name\":\"leaf\",\"state\":\"exited\"}",
            "turtles: disk report: {\"type\":\"exit\",\"reason\":10,\"name\":\"Cpuid\",\"count\":",
            "turtles: disk report: {\"type\":\"exit\",\"reason\":12,\"name\":\"Hlt\",\"count\":1000}",
            "turtles: disk report: {\"type\":\"exit_status\",\"code\":0}",
        ],
    );
}
