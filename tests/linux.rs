//! Debian's packaged Linux kernel as a guest of turtles under Bochs (issue 11): the runner
//! fetches the kernel and busybox (`apt-get download`, cached in `target/linux/`) and packs
//! the initramfs; L0 boots the bzImage through the Linux boot protocol with ACPI tables, an
//! I/O APIC, the RTC, the PM block and the reset ports. `/init` prints values it computes at
//! run time and powers off (ACPI S5), which ends the run with status 0. A corrupt bzImage is
//! refused with a clear error while L0 lives; a kernel panic reboots (panic=-1), which L0
//! reports with the guest's last console lines. Depth 2 (L0 -> turtles L1 -> Linux) and
//! depth 3 boot the same kernel and initramfs.

mod common;

use std::process::Command;

use common::turtles;

/// `seq 1 20000 | md5sum` on the host: what the guest's workload must print.
fn expected_md5() -> String {
    let out = Command::new("sh")
        .args(["-c", "seq 1 20000 | md5sum"])
        .output()
        .expect("sh runs seq and md5sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

#[test]
fn l0_boots_debian_linux_which_powers_off() {
    let md5 = expected_md5();
    assert_eq!(md5.len(), 32, "host md5sum: {md5:?}");
    let run = turtles(&["run", "l0-linux", "--timeout", "900"]);
    run.expect(
        0,
        &[
            "Linux bzImage (boot protocol 2.15)",
            "L1| linux: init running on Linux 6.1",
            "L1| linux: hypervisor=turtles depth=1 cpuinfo-flag=yes",
            // No WARN at boot (it was "XSAVE consistency problem": CPUID.0DH.1:EBX).
            "L1| linux: warned=0",
            "L1| linux: cpus=1",
            "L1| linux: clocksource=tsc",
            &format!("L1| linux: workload seq-1-20000-md5={md5}"),
            "guest: powered off (ACPI S5)",
            "guest: exited with status 0",
        ],
    );
}

/// The Linux bench's workload (`bench linux`) at depth 1: tcc compiles and links our C
/// program, which computes the expected result; fork/exec, pipes and gzip/bzip2 on tmpfs give
/// theirs; L0 snapshots its TSC and exits at every mark and prints them at the end, so every
/// part has ticks and exits. (The figures themselves are not checked: this is no timed test.)
#[test]
fn l0_runs_the_linux_bench_workload() {
    let run =
        turtles(&["run", "l0-linux", "--timeout", "1500", "--leaf-cmdline", "turtles.bench=1"]);
    run.expect(
        0,
        &[
            "L1| bench: part=compile from=1 to=2 result=linked expected=linked ok",
            &format!(
                "L1| bench: part=compute from=2 to=3 result={0} expected={0} ok",
                turtles::linux_bench::PROGRAM_RESULT
            ),
            "L1| bench: part=processes ",
            "L1| bench: part=files ",
            "L1| bench: all parts passed their checks",
            "[L0 cpu0 INFO ] mark: tag=1 tsc=",
            "guest: powered off (ACPI S5)",
        ],
    );
    run.expect_absent(&["FAILED"]);
    let lines: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    let measured = turtles::linux_bench::parse_run("depth 1", 1, &lines);
    assert!(measured.passed(), "{measured:#?}");
    assert_eq!(measured.parts.len(), 4, "{measured:#?}");
    for part in &measured.parts {
        let ticks = measured.ticks(part).unwrap_or(0);
        assert!(ticks > 0, "{}: no ticks: {measured:#?}", part.name);
        assert!(measured.exit_total(0, part).unwrap_or(0) > 0, "{}: no exits", part.name);
    }
    assert!(measured.boot_ticks().unwrap_or(0) > 0, "{measured:#?}");
}

#[test]
fn l0_l1_boots_debian_linux_at_depth_2() {
    let md5 = expected_md5();
    let run = turtles(&["run", "l0-l1-linux", "--timeout", "1500"]);
    run.expect(
        0,
        &[
            "vmx: exposing VMX to the guest (nested)",
            "L1| [L1 cpu0 INFO ] guest: ",
            "KiB Linux bzImage (boot protocol 2.15)",
            "L1| L2| linux: hypervisor=turtles depth=2 cpuinfo-flag=yes",
            "L1| L2| linux: warned=0",
            &format!("L1| L2| linux: workload seq-1-20000-md5={md5}"),
            "L1| [L1 cpu0 INFO ] guest: powered off (ACPI S5)",
            "exits: nested: L2 caused",
        ],
    );
}

#[test]
fn l0_l1_l1_boots_debian_linux_at_depth_3() {
    let md5 = expected_md5();
    let run = turtles(&["run", "l0-l1-l1-linux", "--timeout", "1500"]);
    run.expect(
        0,
        &[
            "L1| L2| [L2 cpu0 INFO ] guest: ",
            "L1| L2| L3| linux: hypervisor=turtles depth=3 cpuinfo-flag=yes",
            "L1| L2| L3| linux: warned=0",
            &format!("L1| L2| L3| linux: workload seq-1-20000-md5={md5}"),
            "L1| L2| [L2 cpu0 INFO ] guest: powered off (ACPI S5)",
        ],
    );
}

#[test]
fn a_corrupt_bzimage_is_refused_and_l0_lives() {
    // The runner's cached kernel, cut in half.
    let files = turtles::linux::prepare().expect("the runner fetches the kernel");
    let bytes = std::fs::read(&files.bzimage).expect("read the cached bzImage");
    let dir = turtles::linux::cache_dir();
    let truncated = dir.join("vmlinuz.truncated");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write the truncated copy");
    let run = turtles(&[
        "run",
        "l0-linux",
        "--timeout",
        "300",
        "--guest-image",
        truncated.to_str().expect("utf-8 path"),
    ]);
    run.expect(
        4,
        &[
            "guest image: Linux bzImage refused: bzImage truncated",
            "L0 is still running after stopping its guest",
        ],
    );
    // A corrupt initrd (not a cpio archive) is refused the same way.
    let junk = dir.join("initrd.junk");
    std::fs::write(&junk, b"this is not a cpio archive").expect("write the junk initrd");
    turtles(&[
        "run",
        "l0-linux",
        "--timeout",
        "300",
        "--guest-initrd",
        junk.to_str().expect("utf-8 path"),
    ])
    .expect(
        4,
        &[
            "guest image: Linux bzImage refused: initrd is not a cpio archive",
            "L0 is still running after stopping its guest",
        ],
    );
}

#[test]
fn a_guest_kernel_panic_is_reported_with_its_last_lines() {
    // No /init and no root file system: "Kernel panic - not syncing", then panic=-1 reboots.
    let run =
        turtles(&["run", "l0-linux", "--timeout", "900", "--guest-cmdline", "rdinit=/nonexistent"]);
    run.expect(4, &["guest: reset the machine", "L1| [", "Kernel panic - not syncing: VFS"]);
    // L0's report repeats the guest's last lines, the panic message among them.
    let report = run.lines_with("guest: last console line: ");
    assert!(
        report.iter().any(|l| l.contains("Kernel panic - not syncing")),
        "the panic line is among the last lines L0 reports: {report:#?}"
    );
}
