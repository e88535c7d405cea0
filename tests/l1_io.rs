//! I/O for a turtles guest (issue 13) under Bochs: L0 offers turtles as L1 a virtio-blk
//! (partition 3 of L0's ATA disk, run-time data the runner wrote) and a virtio-net (switched
//! with L0's endpoint on its e1000), announced on L1's command line
//! (`turtles.virtio_mmio=...`). L1 drives them with virtio-drivers' MMIO transport: it logs
//! the CRC-32 of its disk, which must match the runner's, and serves its management endpoint
//! over its virtio-net (forwarded from udp 127.0.0.1:15571 to 10.0.2.16:7777) until told to
//! `quit`; then it runs the leaf. L0's own endpoint answers on the same NIC meanwhile.

mod common;
mod drivers_common;

use std::time::Duration;

use drivers_common::{Background, ask, ask_until_answered};

/// How long each request waits for its answer before it is sent again.
const RETRY: Duration = Duration::from_secs(5);

/// L0's endpoint and L1's forwarded one (configs/l0-l1-io.toml, configs/l1-io.toml).
const L0_ENDPOINT: &str = "127.0.0.1:15570";
const L1_ENDPOINT: &str = "127.0.0.1:15571";

#[test]
fn turtles_l1_reads_its_virtio_blk_and_answers_over_its_virtio_net() {
    let mut run = Background::start(&["run", "l0-l1-io", "--timeout", "1200"], None);
    let wrote = run.wait_for("turtles: guest disk: ", Duration::from_secs(900));
    assert!(wrote, "the runner wrote no guest disk:\n{}", run.seen.join("\n"));
    let line = run.seen.last().cloned().unwrap_or_default();
    let crc = line.split("crc32 ").nth(1).unwrap_or_default().trim().to_string();
    assert_eq!(crc.len(), 8, "{line}");

    let listening =
        run.wait_for("net: endpoint listening on udp 10.0.2.16:7777", Duration::from_secs(1200));
    assert!(listening, "L1 never listened:\n{}", run.seen.join("\n"));
    let pong = ask_until_answered(L1_ENDPOINT, b"ping 9", RETRY, Duration::from_secs(180));
    // L0's own stack still answers on the NIC it shares with L1.
    let l0 = ask(L0_ENDPOINT, b"ping 7");
    let quit = ask_until_answered(L1_ENDPOINT, b"quit", RETRY, Duration::from_secs(60));
    let (code, out) = run.finish(Duration::from_secs(600));
    assert_eq!(pong.as_deref(), Some("{\"type\":\"pong\",\"seq\":9}\n"), "{out}");
    assert_eq!(l0, "{\"type\":\"pong\",\"seq\":7}\n", "{out}");
    assert!(quit.is_some(), "L1 did not answer quit:\n{out}");
    assert_eq!(code, 0, "{out}");
    for needle in [
        "virtio: guest virtio-blk at 0xfeb00000 (GSI 16): 128 sectors of L0's disk",
        "virtio: guest virtio-net at 0xfeb01000 (GSI 17)",
        "turtles.virtio_mmio=0xfeb00000:16,0xfeb01000:17",
        "virtio-mmio: Block at 0xfeb00000 (GSI 16)",
        "virtio-mmio: Network at 0xfeb01000 (GSI 17)",
        &format!("disk: sectors=128 crc32={crc}"),
        "net: virtio-net mac=52:54:00:12:34:57 address=static",
        "net: endpoint stopped (quit requested)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}
