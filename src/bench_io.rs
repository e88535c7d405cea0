//! `cargo run -- bench io [--json FILE]`: the Figure 7 for the I/O paths that are
//! built. Each built row boots its config under Bochs and measures sequential UDP echo round
//! trips (`ping`) to the management endpoint of the innermost level: ticks per round trip
//! from that level's `status` (`uptime_tsc` before and after; under Bochs the TSC follows
//! emulated instructions, so idle spinning while the host answers counts too), L0's exits per
//! packet from L0's `status` (published every 4096 exits, so about ±4096/N), packets per
//! 10^9 ticks and the ratio to L0 alone. Rows not built yet are printed with the reason.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Round trips per built row.
const PINGS: u32 = 200;

/// One configuration of the figure.
struct Row {
    name: &'static str,
    /// The config booted, its innermost level's endpoint and listening line, and L0's
    /// endpoint if L0 is not the innermost level; or why the row is not built.
    setup: Result<Setup, &'static str>,
}

struct Setup {
    config: &'static str,
    endpoint: &'static str,
    listening: &'static str,
    l0: Option<&'static str>,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            name: "L0 alone (e1000)",
            setup: Ok(Setup {
                config: "net-bochs",
                endpoint: "127.0.0.1:15556",
                listening: "net: endpoint listening on udp 10.0.2.15:5555",
                l0: None,
            }),
        },
        Row {
            name: "L1, virtio-net from L0 (virtio-mmio)",
            setup: Ok(Setup {
                config: "l0-l1-io",
                endpoint: "127.0.0.1:15571",
                listening: "net: endpoint listening on udp 10.0.2.16:7777",
                l0: Some("127.0.0.1:15570"),
            }),
        },
        Row {
            name: "L1, assigned e1000",
            // L0 does not serve (the NIC is L1's): no L0 exits per packet.
            setup: Ok(Setup {
                config: "l0-assign",
                endpoint: "127.0.0.1:15580",
                listening: "net: endpoint listening on udp 10.0.2.15:5555",
                l0: None,
            }),
        },
        Row {
            name: "L2, virtio over virtio",
            setup: Err("not built: turtles as L1 does not offer devices to its guest yet"),
        },
        Row {
            name: "L2, virtio over assigned e1000",
            setup: Err("not built: no device assignment yet"),
        },
        Row {
            name: "L2, e1000 assigned through both levels",
            setup: Ok(Setup {
                config: "l0-l1-assign",
                endpoint: "127.0.0.1:15581",
                listening: "net: endpoint listening on udp 10.0.2.15:5555",
                l0: None,
            }),
        },
    ]
}

/// What one built row measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measured {
    pub round_trips: u32,
    pub lost: u32,
    pub ticks_per_round_trip: f64,
    /// L0's exits per packet (None when L0 is the innermost level: it has no guest).
    pub l0_exits_per_packet: Option<f64>,
}

impl Measured {
    /// Packets per 10^9 ticks.
    pub fn rate(&self) -> f64 {
        if self.ticks_per_round_trip > 0.0 { 1e9 / self.ticks_per_round_trip } else { 0.0 }
    }
}

/// Stops the background runner when dropped: `quit` to its endpoints, a bounded wait, then
/// kill (only our own child).
struct Runner(Child, Vec<&'static str>);

impl Drop for Runner {
    fn drop(&mut self) {
        if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
            for addr in &self.1 {
                let _ = socket.send_to(b"quit", addr);
            }
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(120) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(200));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `uptime_tsc` and total exits from an endpoint's `status`.
fn status(addr: &str) -> Result<(u64, u64), String> {
    let lines = crate::stats::request(addr, "status", Duration::from_secs(60))?;
    let first = lines.first().ok_or_else(|| format!("{addr}: empty status"))?;
    let v: serde_json::Value =
        serde_json::from_str(first).map_err(|e| format!("{addr}: status: {e}"))?;
    let get = |k: &str| v[k].as_u64().ok_or_else(|| format!("{addr}: status has no {k}: {first}"));
    Ok((get("uptime_tsc")?, get("exits")?))
}

fn measure(setup: &Setup) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the runner: {e}"))?;
    let mut child = Command::new(exe)
        .args(["run", setup.config, "--timeout", "1800", "--verbose"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the runner: {e}"))?;
    let stdout = child.stdout.take().ok_or("the runner has no stdout")?;
    let mut stop = vec![setup.endpoint];
    stop.extend(setup.l0);
    let runner = Runner(child, stop);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) if line.contains(setup.listening) => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("`{}` ended before its endpoint came up", setup.config));
            }
        }
        if start.elapsed() > Duration::from_secs(1500) {
            return Err(format!("`{}`'s endpoint did not come up within 1500 s", setup.config));
        }
    }
    thread::spawn(move || while rx.recv().is_ok() {});
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    socket.connect(setup.endpoint).map_err(|e| format!("{}: {e}", setup.endpoint))?;
    socket.set_read_timeout(Some(Duration::from_secs(5))).map_err(|e| e.to_string())?;
    // Warm up: the first datagrams may be lost while slirp learns the guest's MAC.
    let mut buf = [0u8; 2048];
    let warm = Instant::now();
    loop {
        socket.send(b"ping 0").map_err(|e| format!("send: {e}"))?;
        if matches!(socket.recv(&mut buf), Ok(n) if is_pong(&buf[..n], 0)) {
            break;
        }
        if warm.elapsed() > Duration::from_secs(300) {
            return Err(format!("{} never answered a ping", setup.endpoint));
        }
    }
    let (tsc0, _) = status(setup.endpoint)?;
    let l0_before = setup.l0.map(status).transpose()?;
    let (mut answered, mut lost) = (0u32, 0u32);
    for seq in 1..=PINGS {
        socket.send(format!("ping {seq}").as_bytes()).map_err(|e| format!("send: {e}"))?;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) if is_pong(&buf[..n], seq) => {
                    answered += 1;
                    break;
                }
                Ok(_) => {}
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        if lost > 20 {
            return Err(format!("{} stopped answering ({lost} lost)", setup.endpoint));
        }
    }
    let (tsc1, _) = status(setup.endpoint)?;
    let l0_after = setup.l0.map(status).transpose()?;
    drop(runner);
    let n = f64::from(answered.max(1));
    Ok(Measured {
        round_trips: answered,
        lost,
        ticks_per_round_trip: tsc1.saturating_sub(tsc0) as f64 / n,
        l0_exits_per_packet: match (l0_before, l0_after) {
            (Some((_, a)), Some((_, b))) => Some(b.saturating_sub(a) as f64 / n),
            _ => None,
        },
    })
}

fn is_pong(answer: &[u8], seq: u32) -> bool {
    answer == format!("{{\"type\":\"pong\",\"seq\":{seq}}}\n").as_bytes()
}

/// The table (markdown) and the JSON document for measured rows.
pub fn report(results: &[(&str, Result<Measured, String>)]) -> (String, serde_json::Value) {
    let base = results.first().and_then(|(_, r)| r.as_ref().ok()).map(Measured::rate);
    let mut table = String::from(
        "| configuration | round trips (lost) | ticks per round trip | L0 exits per packet | \
         packets per 10^9 ticks | ratio to L0 alone |\n|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    for (name, r) in results {
        match r {
            Ok(m) => {
                let ratio = base.filter(|b| *b > 0.0).map(|b| m.rate() / b);
                table.push_str(&format!(
                    "| {name} | {} ({}) | {:.0} | {} | {:.0} | {} |\n",
                    m.round_trips,
                    m.lost,
                    m.ticks_per_round_trip,
                    m.l0_exits_per_packet.map_or("-".to_string(), |e| format!("{e:.1}")),
                    m.rate(),
                    ratio.map_or("-".to_string(), |r| format!("{r:.3}")),
                ));
                rows.push(serde_json::json!({
                    "name": name, "built": true, "round_trips": m.round_trips, "lost": m.lost,
                    "ticks_per_round_trip": m.ticks_per_round_trip,
                    "exits_per_packet": {"L0": m.l0_exits_per_packet},
                    "packets_per_1e9_ticks": m.rate(), "ratio_to_l0": ratio,
                }));
            }
            Err(why) => {
                table.push_str(&format!("| {name} | {why} | | | | |\n"));
                rows.push(serde_json::json!({"name": name, "built": false, "reason": why}));
            }
        }
    }
    (table, serde_json::json!({"benchmark": "io", "pings_per_row": PINGS, "rows": rows}))
}

/// Runs the benchmark: each built row in turn (one Bochs at a time), then the table.
pub fn io(json: Option<&Path>) -> Result<i32, String> {
    let mut results = Vec::new();
    for row in rows() {
        let r = match &row.setup {
            Ok(setup) => {
                eprintln!("bench io: {} (`{}`)", row.name, setup.config);
                measure(setup)
            }
            Err(why) => Err((*why).to_string()),
        };
        results.push((row.name, r));
    }
    let (table, doc) = report(&results);
    println!("io benchmark: UDP echo (`ping`) to the innermost level's endpoint under Bochs");
    println!();
    print!("{table}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let measured = results.iter().filter(|(_, r)| r.is_ok()).count();
    Ok(if measured > 0 { crate::status::SUCCESS } else { crate::status::RUNNER_ERROR })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_ratios_and_unbuilt_rows() {
        let base = Measured {
            round_trips: 10,
            lost: 0,
            ticks_per_round_trip: 1e6,
            l0_exits_per_packet: None,
        };
        let l1 = Measured { ticks_per_round_trip: 4e6, l0_exits_per_packet: Some(7.5), ..base };
        let (table, doc) = report(&[
            ("L0 alone", Ok(base)),
            ("L1", Ok(l1)),
            ("L2", Err("not built: later".to_string())),
        ]);
        assert!(table.contains("| L1 | 10 (0) | 4000000 | 7.5 | 250 | 0.250 |"), "{table}");
        assert!(table.contains("| L2 | not built: later |"), "{table}");
        assert_eq!(doc["rows"][1]["ratio_to_l0"], 0.25);
        assert_eq!(doc["rows"][2]["built"], false);
        assert_eq!(doc["rows"][0]["exits_per_packet"]["L0"], serde_json::Value::Null);
    }
}
