//! The image's own drivers under QEMU: the management endpoint answers over virtio-net
//! (status, ping, a malformed request, quit) and the image goes on to finish its run.

mod common;

mod drivers_common;

use std::time::Duration;

use drivers_common::{Background, ask};

#[test]
fn qemu_endpoint_answers_over_virtio_net() {
    let addr = "127.0.0.1:15555";
    let mut run = Background::start(
        &["run", "net-qemu", "--emulator", "qemu", "--timeout", "120"],
        Some(addr),
    );
    let up =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(400));
    assert!(up, "the endpoint never came up:\n{}", run.seen.join("\n"));

    let stats = common::turtles(&["stats", addr]);
    stats.expect(
        0,
        &[
            "{\"type\":\"status\",\"config\":\"net-qemu\",\"role\":\"leaf\"",
            "\"tsc_hz\":",
            "{\"type\":\"end\"",
        ],
    );
    assert_eq!(ask(addr, b"ping 41"), "{\"type\":\"pong\",\"seq\":41}\n");
    let refused = ask(addr, &[0xff, 0xfe, 0x00]);
    assert!(
        refused.starts_with("{\"type\":\"error\",\"message\":\"request is not UTF-8"),
        "{refused}"
    );
    let unknown = ask(addr, b"reboot now");
    assert!(unknown.contains("unknown request `reboot`"), "{unknown}");
    assert_eq!(ask(addr, b"quit"), "{\"type\":\"bye\"}\n");

    let (code, out) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    for needle in [
        "pci: 00:02.0 1af4:1041 class 02.00",
        "net: virtio-net mac=52:54:00:12:34:56 address=static",
        "endpoint: refused a request from 10.0.2.2:",
        "net: endpoint stopped (quit requested):",
        "2 refused",
        "workload: total ticks=",
        "turtles: exit status=0",
    ] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
}

#[test]
fn qemu_guest_image_loads_from_virtio_blk_and_report_is_read_back() {
    let run = common::turtles(&["run", "disk-qemu", "--emulator", "qemu", "--timeout", "120"]);
    run.expect(
        0,
        &[
            "pci: 00:03.0 1af4:1042 class 01.00",
            "disk: virtio-blk with ",
            "disk: partition 1 type 0xda sectors 1+",
            "disk: guest image `leaf` loaded: ",
            "bytes, ELF entry 0x",
            "disk: report written",
            "turtles: disk report: {\"type\":\"status\",\"config\":\"disk-qemu\"",
            "turtles: disk report: {\"type\":\"guest\",\"name\":\"leaf\",\"state\":\"loaded\"}",
            "turtles: disk report: {\"type\":\"exit_status\",\"code\":0}",
            "turtles: disk report: {\"type\":\"end\",\"lines\":4}",
        ],
    );
    let leaf = std::fs::metadata(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/image/leaf/turtles-image"),
    )
    .expect("the runner built the leaf image for the disk");
    let loaded = format!("disk: guest image `leaf` loaded: {} bytes", leaf.len());
    run.expect(0, &[&loaded]);
}

#[test]
fn qemu_disk_smaller_than_the_image_is_reported_and_the_image_goes_on() {
    common::turtles(&["run", "disk-small-qemu", "--emulator", "qemu", "--timeout", "120"])
        .expect(
            0,
            &[
                "disk: virtio-blk with 128 sectors",
                "disk: partition table: partition 1 ends at sector",
                "beyond the disk's 128 sectors",
                "disk: cannot load guest image `leaf`: partition table",
                "disk: cannot write the report: partition table",
                "workload: total ticks=",
                "turtles: disk report: none written",
                "turtles: exit status=0",
            ],
        )
        .expect_absent(&["PANIC", "guest image `leaf` loaded"]);
}

#[test]
fn qemu_endpoint_answers_on_a_dhcp_address() {
    let addr = "127.0.0.1:15557";
    let mut run = Background::start(
        &["run", "net-dhcp-qemu", "--emulator", "qemu", "--timeout", "120"],
        Some(addr),
    );
    let up =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(400));
    assert!(up, "the endpoint never came up:\n{}", run.seen.join("\n"));
    assert_eq!(ask(addr, b"ping 3"), "{\"type\":\"pong\",\"seq\":3}\n");
    assert_eq!(ask(addr, b"quit"), "{\"type\":\"bye\"}\n");
    let (code, out) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    for needle in ["address=dhcp", "net: DHCP address 10.0.2.15/24 router 10.0.2.2"] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
}

#[test]
fn qemu_legacy_virtio_blk_loads_the_guest_image_and_takes_the_report() {
    common::turtles(&["run", "legacy-qemu", "--emulator", "qemu", "--timeout", "120"]).expect(
        0,
        &[
            "pci: 00:03.0 1af4:1001 class 01.00",
            "no modern interface",
            "trying legacy",
            "disk: guest image `leaf` loaded: ",
            "disk: report written",
            "turtles: disk report: {\"type\":\"exit_status\",\"code\":0}",
        ],
    );
}

#[test]
fn qemu_endpoint_answers_over_legacy_virtio_net() {
    let addr = "127.0.0.1:15559";
    let mut run = Background::start(
        &["run", "legacy-net-qemu", "--emulator", "qemu", "--timeout", "120"],
        Some(addr),
    );
    let up =
        run.wait_for("net: endpoint listening on udp 10.0.2.15:5555", Duration::from_secs(400));
    assert!(up, "the endpoint never came up:\n{}", run.seen.join("\n"));
    common::turtles(&["stats", addr])
        .expect(0, &["{\"type\":\"status\",\"config\":\"legacy-net-qemu\",\"role\":\"leaf\""]);
    assert_eq!(ask(addr, b"quit"), "{\"type\":\"bye\"}\n");
    let (code, out) = run.finish(Duration::from_secs(120));
    assert_eq!(code, 0, "{out}");
    for needle in [
        "pci: 00:02.0 1af4:1000 class 02.00", // the legacy (transitional) device ID
        "net: virtio-net at 00:02.0 through the legacy interface",
        "turtles: exit status=0",
    ] {
        assert!(out.contains(needle), "`{needle}` missing:\n{out}");
    }
}
