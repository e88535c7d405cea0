//! Boots the real image under QEMU (multiboot1 and PVH) and Bochs (GRUB, multiboot2) through
//! the runner binary and checks what the image printed and the status the runner returned.

mod common;

use common::turtles;

#[test]
fn qemu_multiboot1_prints_memory_map_and_no_vmx_message() {
    turtles(&["run", "l0", "--emulator", "qemu", "--timeout", "60"]).expect(
        3,
        &[
            "boot: protocol=multiboot1",
            "memory: [0x000000100000-",
            ") Available",
            "heap 8 MiB",
            "vmx=no",
            "no VMX on this CPU: turtles cannot run guests here",
            "turtles: exit status=3",
            "ended with status 3 (no VMX",
        ],
    );
}

/// Without `--verbose` the runner prints a summary per level and where the full log is, not
/// the console; the log holds every line.
#[test]
fn runner_summarizes_and_keeps_the_full_log() {
    let run = common::turtles_as_is(&["run", "leaf", "--emulator", "qemu", "--timeout", "60"]);
    run.expect(
        0,
        &[
            "summary of `leaf` under qemu (",
            "L1  exit status 0 (success)",
            "workload cpuid ",
            "workload compute ",
            "full log: ",
            "ended with status 0 (success)",
        ],
    )
    .expect_absent(&["qemu| ", "boot: protocol="]);
    let log = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("full log: "))
        .and_then(|l| l.split(" (").next())
        .expect("the log's path");
    let log = std::fs::read_to_string(log).expect("the log file exists");
    assert!(log.contains("qemu| [L1 cpu0 INFO ] boot: protocol=multiboot1"), "{log}");
    assert!(log.contains("qemu| turtles: exit status=0"), "{log}");
}

#[test]
fn qemu_pvh_boots_the_same_image() {
    turtles(&["run", "leaf", "--emulator", "qemu", "--boot", "pvh", "--cmdline", "pvh-args"])
        .expect(
            0,
            &[
                "boot: protocol=pvh cmdline=\"pvh-args\"",
                "memory: [0x000000100000-",
                "[L1 cpu0 INFO ]",
                "not available and not needed by role leaf",
                "turtles: exit status=0",
            ],
        );
}

/// Without a UART at COM1 (`-serial none`: nothing answers at 0x3f8) the image boots
/// silently and still ends with its status through isa-debug-exit: the runner gets 0 for the
/// leaf's workload and 1 for a deliberate panic, with no serial line at all.
#[test]
fn qemu_without_a_uart_boots_silently_and_exits_with_its_status() {
    turtles(&["run", "leaf", "--emulator", "qemu", "--no-serial", "--timeout", "90"])
        .expect(0, &["isa-debug-exit says status 0", "ended with status 0 (success)"])
        .expect_absent(&["qemu| ", "turtles: exit status="]);
    turtles(&[
        "run",
        "leaf",
        "--emulator",
        "qemu",
        "--no-serial",
        "--cmdline",
        "turtles.test=panic",
    ])
    .expect(1, &["isa-debug-exit says status 1", "ended with status 1"])
    .expect_absent(&["qemu| "]);
}

/// A 16550 whose loopback mode does not echo (some VMMs' serial ports): the console's probe
/// gives up after a bounded wait and uses the UART without its self-test; the image boots,
/// prints and ends as usual. `turtles.test=console-no-loopback` runs the probe with loopback
/// mode off, so QEMU's UART sends the test byte out and nothing comes back, as on such a port.
#[test]
fn qemu_uart_without_loopback_does_not_hang_the_boot() {
    turtles(&[
        "run",
        "leaf",
        "--emulator",
        "qemu",
        "--timeout",
        "90",
        "--cmdline",
        "turtles.test=console-no-loopback",
    ])
    .expect(
        0,
        &[
            "console: COM1 does not loop back its test byte: used without the self-test",
            "self-test: console-no-loopback",
            "workload: cpuid",
            "turtles: exit status=0",
        ],
    );
}

#[test]
fn qemu_invalid_opcode_prints_registers_and_fails() {
    turtles(&["run", "l0", "--emulator", "qemu", "--cmdline", "turtles.test=exception"]).expect(
        1,
        &["self-test: exception", "EXCEPTION #UD (vector 6) error_code=0x0", "rip=0x", "r15=0x"],
    );
}

#[test]
fn qemu_page_fault_reports_cr2_and_fails() {
    turtles(&["run", "l0", "--emulator", "qemu", "--cmdline", "turtles.test=pagefault"]).expect(
        1,
        &["EXCEPTION #PF (vector 14) error_code=0x0 cr2=0x4000000000", "turtles: exit status=1"],
    );
}

#[test]
fn qemu_panic_prints_message_and_location_and_fails() {
    turtles(&["run", "l0", "--emulator", "qemu", "--cmdline", "turtles.test=panic"]).expect(
        1,
        &["PANIC: panicked at image/src/main.rs:", "deliberate panic", "turtles: exit status=1"],
    );
}

#[test]
fn runner_kills_a_hung_emulator_at_the_timeout() {
    let run = turtles(&[
        "run",
        "l0",
        "--emulator",
        "qemu",
        "--timeout",
        "5",
        "--cmdline",
        "turtles.test=hang",
    ]);
    run.expect(124, &["self-test: hang", "timeout after 5 s: killed qemu (pid"]);
}

#[test]
fn runner_names_the_configs_when_one_is_unknown() {
    let run = turtles(&["run", "no-such-config"]);
    run.expect(2, &["no config `no-such-config`; the configs are: "]);
    let all = run.all();
    let listed: Vec<&str> = all
        .split("the configs are: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .map(|line| line.split(", ").collect())
        .unwrap_or_default();
    for name in ["l0", "l0-leaf", "l0-l1-leaf", "l0-l1-l1-leaf", "l1", "l1-nest", "leaf"] {
        assert!(listed.contains(&name), "`{name}` not listed: {listed:?}");
    }
    let mut sorted = listed.clone();
    sorted.sort_unstable();
    assert_eq!(listed, sorted, "configs are listed in order");
}

#[test]
fn bochs_grub_multiboot2_reports_vmx_capabilities() {
    turtles(&["run", "l0", "--emulator", "bochs", "--timeout", "120"]).expect(
        0,
        &[
            "boot: protocol=multiboot2",
            "memory: [0x000000100000-",
            "vendor=GenuineIntel",
            "vmx=yes",
            "ept=yes vpid=yes unrestricted-guest=yes vmcs-shadowing=yes preemption-timer=yes \
             posted-interrupts=no",
            "turtles: exit status=0",
        ],
    );
}

/// The reference for `tests/l0.rs`'s CR8 test: on the bare (emulated) processor, CR8 is
/// bits 7:4 of the local APIC's TPR, both ways.
#[test]
fn bochs_cr8_is_the_local_apic_tpr() {
    turtles(&["run", "l0", "--emulator", "bochs", "--cmdline", "turtles.test=cr8"]).expect(
        0,
        &["self-test: CR8 5 gives TPR 0x50; TPR 0x30 gives CR8 0x3; 0 0x0", "exit status=0"],
    );
}

/// The reference for `tests/l0.rs`'s unbacked-fetch test: on the bare (emulated) PC, code
/// fetched where there is no memory is all ones, FF FF, a reserved opcode: #UD.
#[test]
fn bochs_fetch_where_nothing_is_is_ud() {
    turtles(&["run", "l0", "--emulator", "bochs", "--cmdline", "turtles.test=outside-fetch"])
        .expect(1, &["EXCEPTION #UD (vector 6)", "rip=0x0000000080000000", "exit status=1"]);
}

#[test]
fn bochs_exception_and_panic_end_with_failure() {
    turtles(&["run", "l0", "--emulator", "bochs", "--cmdline", "turtles.test=exception"])
        .expect(1, &["boot: protocol=multiboot2", "EXCEPTION #UD (vector 6)", "exit status=1"]);
    turtles(&["run", "l0", "--emulator", "bochs", "--cmdline", "turtles.test=panic"])
        .expect(1, &["PANIC: panicked at", "deliberate panic", "exit status=1"]);
}
