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
