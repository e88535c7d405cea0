//! The image's own drivers under Bochs (our bare metal): the management endpoint answers over
//! the e1000 on Bochs' slirp backend, the guest image loads from the ATA disk, and the report
//! the image writes there at exit is read back by the runner.

mod common;
mod drivers_common;

use std::time::Duration;

use drivers_common::{Background, ask};

#[test]
fn bochs_endpoint_answers_over_e1000_and_guest_loads_from_ata() {
    let addr = "127.0.0.1:15556";
    let mut run = Background::start(&["run", "net-bochs", "--timeout", "240"], Some(addr));
    let up =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(400));
    assert!(up, "the endpoint never came up:\n{}", run.seen.join("\n"));

    common::turtles(&["stats", addr]).expect(
        0,
        &[
            "{\"type\":\"status\",\"config\":\"net-bochs\",\"role\":\"leaf\",\"depth\":0",
            "{\"type\":\"guest\",\"name\":\"leaf\",\"state\":\"loaded\"}",
            "{\"type\":\"end\",\"lines\":3}",
        ],
    );
    assert_eq!(ask(addr, b"ping 5"), "{\"type\":\"pong\",\"seq\":5}\n");
    let refused = ask(addr, b"format c:");
    assert!(refused.contains("unknown request `format`"), "{refused}");
    assert_eq!(ask(addr, b"quit"), "{\"type\":\"bye\"}\n");

    let (code, out) = run.finish(Duration::from_secs(240));
    assert_eq!(code, 0, "{out}");
    for needle in [
        "disk: ata with ",
        "disk: guest image `leaf` loaded: ",
        "pci: 00:02.0 8086:100e class 02.00",
        "net: e1000 mac=52:54:00:12:34:56 address=static",
        "net: endpoint stopped (quit requested):",
        "1 refused",
        "disk: report written",
        "turtles: disk report: {\"type\":\"status\",\"config\":\"net-bochs\"",
        "turtles: disk report: {\"type\":\"exit_status\",\"code\":0}",
        "turtles: exit status=0",
    ] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
}
