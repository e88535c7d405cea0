//! Direct device assignment (issue 13) under Bochs: L0 assigns its e1000 to turtles as L1
//! (`l0-assign`): L1's RAM is 1:1 at 256 MiB (Bochs has no IOMMU, so the NIC's DMA addresses
//! must be host-physical), BAR0 is mapped through EPT01 and BAR1's ports pass through the I/O
//! bitmap, and L1 finds the e1000 on its PCI bus through L0's passthrough filter. L1 drives
//! it as on bare metal: its endpoint (10.0.2.15:5555, forwarded from udp 127.0.0.1:15580)
//! must answer `ping` with the sequence number the test chose and then `quit`; then L1 runs
//! the leaf workload and the run ends with status 0.

mod common;
mod drivers_common;

use std::time::Duration;

use drivers_common::{Background, ask_until_answered};

/// How long each request waits for its answer before it is sent again.
const RETRY: Duration = Duration::from_secs(5);

/// L1's endpoint on the assigned e1000 (configs/l0-assign.toml, configs/l1-assign.toml).
const L1_ENDPOINT: &str = "127.0.0.1:15580";

#[test]
fn l1_answers_over_the_e1000_l0_assigned_to_it() {
    let seq = std::process::id() % 10_000;
    let mut run = Background::start(&["run", "l0-assign", "--timeout", "1200"], Some(L1_ENDPOINT));
    let listening =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(1200));
    assert!(listening, "L1 never listened:\n{}", run.seen.join("\n"));
    let ping = format!("ping {seq}");
    let pong = ask_until_answered(L1_ENDPOINT, ping.as_bytes(), RETRY, Duration::from_secs(180));
    let quit = ask_until_answered(L1_ENDPOINT, b"quit", RETRY, Duration::from_secs(60));
    let (code, out) = run.finish(Duration::from_secs(600));
    assert_eq!(pong, Some(format!("{{\"type\":\"pong\",\"seq\":{seq}}}\n")), "{out}");
    assert!(quit.is_some(), "L1 did not answer quit:\n{out}");
    assert_eq!(code, 0, "{out}");
    // BAR1's ports reached the device (Bochs' e1000 reads 0 there), not L0's device model
    // (all-ones and an unknown-port warning).
    let io = out.lines().find(|l| l.contains("through BAR1's ports")).unwrap_or_default();
    assert!(io.contains("L1|") && !io.contains("0xffffffff through"), "{io}\n{out}");
    assert!(!out.contains("unknown I/O port 0xc04"), "{out}");
    for needle in [
        "net: the e1000 is assigned to the guest; this level does not drive it",
        "assign: guest RAM 1:1 at [0x10000000, 0x14000000)",
        "bar0: memory 0xc0000000, 0x20000 bytes, passed through 1:1",
        "pass through the I/O bitmap",
        // L1 (depth 1) found the device and drives it.
        "pci: 00:02.0 8086:100e",
        "net: e1000 mac=52:54:00:12:34:56 address=static",
        "net: endpoint stopped (quit requested)",
        "workload: total ticks=",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}

/// Two levels down (`l0-l1-assign`): L0 assigns the e1000 to turtles as L1 (1:1 at 256 MiB),
/// L1 assigns it on to its own guest (1:1 at 384 MiB in L1's RAM, so L2-physical is
/// host-physical). L0 composes: EPT02 maps L2's BAR0 to the device (EPT12's mapping of it
/// through EPT01's uncached one), vmcs02's I/O bitmaps are L0's OR L1's. L2's endpoint
/// (forwarded from udp 127.0.0.1:15581) must answer `ping` and `quit`. L2 also enables the
/// e1000's receive interrupt (`e1000_interrupts`): L0 forwards the INTx to L1's GSI, L1 on to
/// L2's, and L2 must have taken at least one.
#[test]
fn l2_answers_over_the_e1000_assigned_through_both_levels() {
    const L2_ENDPOINT: &str = "127.0.0.1:15581";
    let seq = 10_000 + std::process::id() % 10_000;
    let mut run =
        Background::start(&["run", "l0-l1-assign", "--timeout", "1500"], Some(L2_ENDPOINT));
    let listening =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(1500));
    assert!(listening, "L2 never listened:\n{}", run.seen.join("\n"));
    let ping = format!("ping {seq}");
    let pong = ask_until_answered(L2_ENDPOINT, ping.as_bytes(), RETRY, Duration::from_secs(180));
    let quit = ask_until_answered(L2_ENDPOINT, b"quit", RETRY, Duration::from_secs(60));
    let (code, out) = run.finish(Duration::from_secs(900));
    assert_eq!(pong, Some(format!("{{\"type\":\"pong\",\"seq\":{seq}}}\n")), "{out}");
    assert!(quit.is_some(), "L2 did not answer quit:\n{out}");
    assert_eq!(code, 0, "{out}");
    let io = out.lines().find(|l| l.contains("through BAR1's ports")).unwrap_or_default();
    assert!(io.contains("L2|") && !io.contains("0xffffffff through"), "{io}\n{out}");
    for needle in [
        "assign: guest RAM 1:1 at [0x10000000, 0x1c000000)",
        // L1 assigns it on, in its own 1:1 memory.
        "L1| [L1 cpu0 INFO ] assign: guest RAM 1:1 at [0x18000000, 0x1c000000)",
        "L1| [L1 cpu0 INFO ] assign: ports 0xc040-0xc07f pass through the I/O bitmap",
        "L2| [L2 cpu0 INFO ] pci: 00:02.0 8086:100e",
        "L2| [L2 cpu0 INFO ] net: e1000 mac=52:54:00:12:34:56 address=static",
        "L2| [L2 cpu0 INFO ] net: endpoint stopped (quit requested)",
        "L2| [L2 cpu0 INFO ] workload: total ticks=",
        // The e1000's INTx: L0 forwards it to L1's GSI, L1 on to L2's, where L2 takes it.
        "-> host vector 0x58, forwarded to the guest's GSI",
        "L1| [L1 cpu0 INFO ] assign: e1000 INTx GSI",
        "L2| [L2 cpu0 INFO ] e1000: receive interrupt on GSI",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let taken: u64 = out
        .split("L2| [L2 cpu0 INFO ] e1000: ")
        .filter_map(|s| s.split(" interrupts").next()?.trim().parse().ok())
        .next()
        .unwrap_or(0);
    assert!(taken > 0, "L2 took no e1000 interrupt:\n{out}");
}

/// A kernel that does not know turtles on the assigned e1000 (`l0-assign-linux`): Debian's
/// Linux as L1 in 1:1 memory loads its own e1000 driver, which receives only through the
/// device's interrupt. L0 routes the e1000's INTx at the real I/O APIC to a vector of its own
/// and forwards each one to the same GSI of Linux's virtual I/O APIC (masked below until
/// Linux's EOI). Linux's `/init` answers one UDP request (forwarded from udp
/// 127.0.0.1:15582) with the runner's nonce, which proves the interrupts arrived, and reports
/// the e1000's interrupt count.
#[test]
fn linux_answers_over_the_e1000_with_its_interrupt_forwarded() {
    const LINUX_PORT: &str = "127.0.0.1:15582";
    let mut run = Background::start(&["run", "l0-assign-linux", "--timeout", "1200"], None);
    let waiting =
        run.wait_for("linux: assign waiting for a udp request", Duration::from_secs(1200));
    assert!(waiting, "Linux never listened:\n{}", run.seen.join("\n"));
    let nonce = format!(
        "turtles-intx-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let answer = ask_until_answered(LINUX_PORT, nonce.as_bytes(), RETRY, Duration::from_secs(180));
    let (code, out) = run.finish(Duration::from_secs(300));
    assert_eq!(answer, Some(format!("{nonce} e1000 assigned\n")), "{out}");
    assert_eq!(code, 0, "{out}");
    let gsi = out
        .split("assign: e1000 INTx GSI ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or_else(|| panic!("no forwarding line in:\n{out}"));
    for needle in [
        "assign: guest RAM 1:1 at [0x10000000, 0x20000000)",
        &format!("-> host vector 0x58, forwarded to the guest's GSI {gsi}"),
        &format!("L1| linux: assign eth0 mac=52:54:00:12:34:56 irq={gsi}"),
        "L1| linux: assign udp answered",
        "guest: powered off (ACPI S5)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
    let count: u64 = out
        .split("linux: assign e1000 interrupts=")
        .nth(1)
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    assert!(count > 0, "Linux's e1000 took no interrupt:\n{out}");
}
