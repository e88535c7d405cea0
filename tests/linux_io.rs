//! I/O for a guest (issue 13) under Bochs: L0 offers Debian's Linux a virtio-blk (partition 3
//! of L0's ATA disk) and a virtio-net (switched with L0's own smoltcp endpoint on its e1000),
//! both virtio-mmio devices announced in an ACPI SSDT. The guest's `/init` loads the virtio
//! modules, prints the CRC-32 of its whole disk, which must match the run-time data the
//! runner wrote, and answers one UDP request (forwarded by Bochs' slirp to 10.0.2.16:7777)
//! with the request and that CRC; meanwhile L0's own endpoint still answers on the same
//! NIC. The guest then powers off.

mod common;
mod drivers_common;

use std::time::Duration;

use drivers_common::{Background, ask, ask_until_answered};

/// How long each request waits for its answer before it is sent again.
const RETRY: Duration = Duration::from_secs(3);

/// L0's endpoint and the guest's forwarded port (configs/l0-linux-io.toml).
const L0_ENDPOINT: &str = "127.0.0.1:15572";
const GUEST_PORT: &str = "127.0.0.1:15573";

#[test]
fn linux_reads_its_virtio_blk_and_answers_udp_over_its_virtio_net() {
    let mut run = Background::start(&["run", "l0-linux-io", "--timeout", "1200"], None);
    let wrote = run.wait_for("turtles: guest disk: ", Duration::from_secs(900));
    assert!(wrote, "the runner wrote no guest disk:\n{}", run.seen.join("\n"));
    let line = run.seen.last().cloned().unwrap_or_default();
    let crc = line.split("crc32 ").nth(1).unwrap_or_default().trim().to_string();
    assert_eq!(crc.len(), 8, "{line}");

    let waiting = run.wait_for("linux: io waiting for a udp request", Duration::from_secs(1200));
    assert!(waiting, "the guest never listened:\n{}", run.seen.join("\n"));
    // L0's own stack still answers on the NIC it shares with the guest.
    assert_eq!(ask(L0_ENDPOINT, b"ping 7"), "{\"type\":\"pong\",\"seq\":7}\n");
    let nonce = format!(
        "turtles-io-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    let answer = ask_until_answered(GUEST_PORT, nonce.as_bytes(), RETRY, Duration::from_secs(120));
    let (code, out) = run.finish(Duration::from_secs(300));
    assert_eq!(answer.as_deref(), Some(format!("{nonce} {crc}\n").as_str()), "{out}");
    assert_eq!(code, 0, "{out}");
    for needle in [
        "net: switch: guest virtio-net mac=52:54:00:12:34:57",
        "virtio: guest virtio-blk at 0xfeb00000 (GSI 16): 128 sectors of L0's disk",
        "virtio: guest virtio-net at 0xfeb01000 (GSI 17)",
        &format!("L1| linux: io vda-sectors=128 vda-crc32={crc}"),
        "L1| linux: io eth0 mac=52:54:00:12:34:57",
        "L1| linux: io udp answered",
        "guest: powered off (ACPI S5)",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }
}
