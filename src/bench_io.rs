//! `cargo run -- bench io [--json FILE] [--svg FILE] [--only CONFIG]...`: the Figure 7 for the I/O
//! paths that are built. Each built configuration boots once under Bochs and gives two kinds
//! of rows:
//! - **UDP echo**: sequential round trips (`ping`) to the management endpoint of the innermost
//!   level: ticks per round trip from that level's `status` (`uptime_tsc` before and after;
//!   under Bochs the TSC follows emulated instructions, so idle spinning while the host
//!   answers counts too), L0's exits per packet from L0's `status` (published at each of L0's
//!   NIC polls), packets per 10^9 ticks and the ratio to L0 alone.
//! - **virtio-blk sequential read**: the innermost level reads its whole disk (64 KiB in
//!   page-sized requests) at boot and logs the ticks it took (`disk: ... read-ticks=T
//!   requests=R`); the levels below snapshot their exits at marks around that read
//!   (`vmx::exits::mark`, tags [`READ_MARK_BEGIN`]/[`READ_MARK_END`]), printed at the end of
//!   the run. L0's own read of the same partition (`disk: guest disk ...`) is the baseline.
//!
//! Rows not built yet are printed with the reason; a row becomes built by giving it a
//! `Setup` (one entry in `rows`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::linux_bench::{Mark, level_line, parse_mark};

/// Round trips per built row.
const PINGS: u32 = 200;

/// The marks around the timed disk read (`image/src/drivers/disk.rs`).
pub const READ_MARK_BEGIN: u32 = 900;
pub const READ_MARK_END: u32 = 901;

/// One configuration of the figure: its UDP echo row and, where its innermost level reads a
/// virtio disk, its sequential-read row.
struct Row {
    name: &'static str,
    /// The config booted and how to reach its innermost level; or why the row is not built.
    setup: Result<Setup, &'static str>,
}

struct Setup {
    config: &'static str,
    /// The innermost level's endpoint and the line that says it listens.
    endpoint: &'static str,
    listening: &'static str,
    /// L0's endpoint if L0 is not the innermost level.
    l0: Option<&'static str>,
    /// The read rows this run gives: (row name, the level that reads, the log line's
    /// start). Level 0 is L0's own read of the guest's partition (no marks).
    reads: &'static [(&'static str, u32, &'static str)],
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
                reads: &[],
            }),
        },
        Row {
            name: "L1, virtio-net from L0 (virtio-mmio)",
            setup: Ok(Setup {
                config: "l0-l1-io",
                endpoint: "127.0.0.1:15571",
                listening: "net: endpoint listening on udp 10.0.2.16:7777",
                l0: Some("127.0.0.1:15570"),
                reads: &[
                    ("L0's own disk (ATA PIO)", 0, "disk: guest disk sectors="),
                    ("L1, virtio-blk from L0", 1, "disk: sectors="),
                ],
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
                reads: &[],
            }),
        },
        Row {
            name: "L2, virtio over virtio",
            setup: Ok(Setup {
                config: "l0-l1-l2-io",
                endpoint: "127.0.0.1:15575",
                listening: "net: endpoint listening on udp 10.0.2.16:7777",
                l0: Some("127.0.0.1:15574"),
                reads: &[("L2, virtio-blk over virtio-blk", 2, "disk: sectors=")],
            }),
        },
        Row {
            name: "L2, virtio over assigned e1000",
            // L1 drives the e1000 L0 assigned to it and switches L2's virtio-net on it; L0
            // does not serve (no L0 exits per packet).
            setup: Ok(Setup {
                config: "l0-assign-virtio",
                endpoint: "127.0.0.1:15585",
                listening: "net: endpoint listening on udp 10.0.2.16:7777",
                l0: None,
                reads: &[],
            }),
        },
        Row {
            name: "L2, e1000 assigned through both levels",
            setup: Ok(Setup {
                config: "l0-l1-assign",
                endpoint: "127.0.0.1:15581",
                listening: "net: endpoint listening on udp 10.0.2.15:5555",
                l0: None,
                reads: &[],
            }),
        },
    ]
}

/// What one built UDP row measured.
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

/// What one sequential read measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Read {
    pub sectors: u64,
    pub requests: u64,
    pub ticks: u64,
    /// Exits per level (0 = L0) below the reading level between the marks.
    pub exits: BTreeMap<u32, u64>,
}

impl Read {
    pub fn ticks_per_request(&self) -> f64 {
        self.ticks as f64 / self.requests.max(1) as f64
    }
    pub fn ticks_per_mib(&self) -> f64 {
        self.ticks as f64 * f64::from(1u32 << 20) / (self.sectors.max(1) * 512) as f64
    }
}

/// The read a run's `lines` show for the level `level` that logs `prefix`: its own line
/// (`<prefix>N crc32=X read-ticks=T requests=R`) and the marks of the levels below it.
pub fn parse_read(lines: &[String], level: u32, prefix: &str) -> Result<Read, String> {
    let mut marks: BTreeMap<u32, BTreeMap<u32, Mark>> = BTreeMap::new();
    let mut own = None;
    for line in lines {
        let Some((l, text)) = level_line(line) else { continue };
        if let Some(mark) = text.strip_prefix("mark: ").and_then(parse_mark) {
            marks.entry(l).or_default().insert(mark.tag, mark);
        } else if l == level && text.starts_with(prefix) {
            own = Some(text.to_string());
        }
    }
    let own = own.ok_or_else(|| format!("no `{prefix}` line from L{level}"))?;
    let f: BTreeMap<&str, &str> =
        own.split_whitespace().filter_map(|w| w.split_once('=')).collect();
    let number = |k: &str| -> Result<u64, String> {
        f.get(k).and_then(|v| v.parse().ok()).ok_or_else(|| format!("no {k} in `{own}`"))
    };
    let mut exits = BTreeMap::new();
    for below in 0..level {
        let at = |tag| marks.get(&below).and_then(|m| m.get(&tag));
        let (Some(a), Some(b)) = (at(READ_MARK_BEGIN), at(READ_MARK_END)) else {
            return Err(format!("L{below} printed no marks around L{level}'s read"));
        };
        let total = |m: &Mark| m.reasons.values().sum::<u64>();
        exits.insert(below, total(b).saturating_sub(total(a)));
    }
    Ok(Read {
        sectors: number("sectors")?,
        requests: number("requests")?,
        ticks: number("read-ticks")?,
        exits,
    })
}

/// Stops the background runner when dropped: `quit` to its endpoints, a bounded wait (the
/// levels print their marks at the end), then kill (only our own child).
struct Runner(Child, Vec<&'static str>);

impl Drop for Runner {
    fn drop(&mut self) {
        if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
            for addr in &self.1 {
                let _ = socket.send_to(b"quit", addr);
            }
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(900) {
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

/// Boots `setup.config`, measures its UDP row, ends the run and parses its read rows.
fn measure(setup: &Setup) -> (Result<Measured, String>, Vec<Result<Read, String>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let udp = measure_udp(setup, &lines);
    let lines = lines.lock().map(|l| l.clone()).unwrap_or_default();
    let reads = setup.reads.iter().map(|(_, level, prefix)| parse_read(&lines, *level, prefix));
    (udp, reads.collect())
}

fn measure_udp(setup: &Setup, seen: &Arc<Mutex<Vec<String>>>) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the runner: {e}"))?;
    let mut child = Command::new(exe)
        .args(["run", setup.config, "--timeout", "2400", "--verbose"])
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
    let keep = Arc::clone(seen);
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Ok(mut all) = keep.lock() {
                all.push(line.clone());
            }
            let _ = tx.send(line);
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
        if start.elapsed() > Duration::from_secs(2000) {
            return Err(format!("`{}`'s endpoint did not come up within 2000 s", setup.config));
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

/// Everything measured: the UDP rows and the read rows, each by name.
#[derive(Debug)]
pub struct Results {
    pub udp: Vec<(String, Result<Measured, String>)>,
    pub reads: Vec<(String, Result<Read, String>)>,
}

/// The tables (markdown) and the JSON document.
pub fn report(results: &Results) -> (String, serde_json::Value) {
    let base = results.udp.first().and_then(|(_, r)| r.as_ref().ok()).map(Measured::rate);
    let mut table = String::from(
        "| configuration | round trips (lost) | ticks per round trip | L0 exits per packet | \
         packets per 10^9 ticks | ratio to L0 alone |\n|---|---|---|---|---|---|\n",
    );
    let mut rows = Vec::new();
    for (name, r) in &results.udp {
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
    let read_base = results.reads.first().and_then(|(_, r)| r.as_ref().ok());
    table.push_str(
        "\n| sequential read | requests (sectors) | ticks per request | ticks per MiB | \
         exits per request (L0, L1) | ratio to L0's own disk |\n|---|---|---|---|---|---|\n",
    );
    let mut reads = Vec::new();
    for (name, r) in &results.reads {
        match r {
            Ok(m) => {
                let ratio = read_base
                    .filter(|b| b.ticks > 0)
                    .map(|b| b.ticks_per_mib() / m.ticks_per_mib().max(1.0));
                let per_request: BTreeMap<String, f64> = m
                    .exits
                    .iter()
                    .map(|(l, n)| (format!("L{l}"), *n as f64 / m.requests.max(1) as f64))
                    .collect();
                let exits = if per_request.is_empty() {
                    "-".to_string()
                } else {
                    per_request.values().map(|e| format!("{e:.1}")).collect::<Vec<_>>().join(", ")
                };
                table.push_str(&format!(
                    "| {name} | {} ({}) | {:.0} | {:.0} | {exits} | {} |\n",
                    m.requests,
                    m.sectors,
                    m.ticks_per_request(),
                    m.ticks_per_mib(),
                    ratio.map_or("-".to_string(), |r| format!("{r:.3}")),
                ));
                reads.push(serde_json::json!({
                    "name": name, "built": true, "requests": m.requests, "sectors": m.sectors,
                    "ticks": m.ticks, "ticks_per_request": m.ticks_per_request(),
                    "ticks_per_mib": m.ticks_per_mib(), "exits_per_request": per_request,
                    "ratio_to_l0": ratio,
                }));
            }
            Err(why) => {
                table.push_str(&format!("| {name} | {why} | | | | |\n"));
                reads.push(serde_json::json!({"name": name, "built": false, "reason": why}));
            }
        }
    }
    let doc = serde_json::json!({
        "benchmark": "io", "pings_per_row": PINGS, "rows": rows, "reads": reads,
    });
    (table, doc)
}

/// The results a JSON document of [`report`] holds (`bench io --from-json`: the table and the
/// chart again without measuring).
pub fn parse(doc: &serde_json::Value) -> Result<Results, String> {
    let list = |key: &str| {
        doc.get(key).and_then(|v| v.as_array()).ok_or(format!("no `{key}` list in the JSON"))
    };
    let name = |row: &serde_json::Value| row["name"].as_str().unwrap_or("?").to_string();
    let why =
        |row: &serde_json::Value| row["reason"].as_str().unwrap_or("not measured").to_string();
    let num = |row: &serde_json::Value, key: &str| {
        row[key].as_f64().ok_or(format!("row {:?}: no number `{key}`", name(row)))
    };
    let mut results = Results { udp: Vec::new(), reads: Vec::new() };
    for row in list("rows")? {
        let measured = if row["built"].as_bool() == Some(true) {
            Ok(Measured {
                round_trips: num(row, "round_trips")? as u32,
                lost: num(row, "lost")? as u32,
                ticks_per_round_trip: num(row, "ticks_per_round_trip")?,
                l0_exits_per_packet: row["exits_per_packet"]["L0"].as_f64(),
            })
        } else {
            Err(why(row))
        };
        results.udp.push((name(row), measured));
    }
    for row in list("reads")? {
        let read = if row["built"].as_bool() == Some(true) {
            let requests = num(row, "requests")? as u64;
            let mut exits = BTreeMap::new();
            if let Some(per) = row["exits_per_request"].as_object() {
                for (level, e) in per {
                    let level = level
                        .trim_start_matches('L')
                        .parse::<u32>()
                        .map_err(|_| format!("row {:?}: exits of level {level:?}", name(row)))?;
                    exits.insert(
                        level,
                        (e.as_f64().unwrap_or(0.0) * requests as f64).round() as u64,
                    );
                }
            }
            Ok(Read {
                sectors: num(row, "sectors")? as u64,
                requests,
                ticks: num(row, "ticks")? as u64,
                exits,
            })
        } else {
            Err(why(row))
        };
        results.reads.push((name(row), read));
    }
    Ok(results)
}

/// The chart: packets per 10^9 ticks per UDP row and MiB per 10^9 ticks per read row (higher
/// is better), each annotated with its ratio to L0 alone.
pub fn svg(results: &Results) -> String {
    let mut groups = Vec::new();
    let base = results.udp.first().and_then(|(_, r)| r.as_ref().ok()).map(Measured::rate);
    for (name, r) in &results.udp {
        let bar = r.as_ref().ok().map(|m| {
            let ratio = base.filter(|b| *b > 0.0).map_or(0.0, |b| m.rate() / b);
            (m.rate(), format!("{:.0} packets ({ratio:.3})", m.rate()))
        });
        let label = match r {
            Ok(_) => name.clone(),
            Err(why) if why.starts_with("not built") => format!("{name} (not built)"),
            Err(why) if why.starts_with("skipped") => format!("{name} (skipped)"),
            Err(_) => format!("{name} (failed)"),
        };
        groups.push(crate::svg::Group { label, bars: vec![bar, None] });
    }
    let mib = |m: &Read| 1e9 / m.ticks_per_mib().max(1.0);
    let read_base = results.reads.first().and_then(|(_, r)| r.as_ref().ok()).map(mib);
    for (name, r) in &results.reads {
        let bar = r.as_ref().ok().map(|m| {
            let ratio = read_base.filter(|b| *b > 0.0).map_or(0.0, |b| mib(m) / b);
            (mib(m), format!("{:.1} MiB ({ratio:.3})", mib(m)))
        });
        groups.push(crate::svg::Group { label: name.clone(), bars: vec![None, bar] });
    }
    crate::svg::grouped_bars(
        "turtles bench io: per 10^9 ticks under Bochs (ratio to L0 alone)",
        &groups,
        &["UDP echo: packets".to_string(), "virtio-blk sequential read: MiB".to_string()],
        crate::svg::Scale::PerSeries,
    )
}

/// Runs the benchmark: each built row in turn (one Bochs at a time), then the tables. `only`:
/// measure just the rows of these configs (the others are listed as skipped).
pub fn io(
    json: Option<&Path>,
    svg_out: Option<&Path>,
    only: &[String],
    from_json: Option<&Path>,
) -> Result<i32, String> {
    let results = match from_json {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let doc =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            parse(&doc).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => measure_rows(only),
    };
    let (table, doc) = report(&results);
    println!("io benchmark: UDP echo (`ping`) to the innermost level's endpoint and a virtio-blk");
    println!("sequential read (64 KiB in 4 KiB requests), under Bochs");
    println!();
    print!("{table}");
    if let Some(path) = json {
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = svg_out {
        std::fs::write(path, svg(&results)).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("bench io: SVG written to {}", path.display());
    }
    let measured = results.udp.iter().filter(|(_, r)| r.is_ok()).count();
    Ok(if measured > 0 { crate::status::SUCCESS } else { crate::status::RUNNER_ERROR })
}

/// Measures each built row in turn (one Bochs at a time); `only`: just these configs' rows.
fn measure_rows(only: &[String]) -> Results {
    let mut results = Results { udp: Vec::new(), reads: Vec::new() };
    for row in rows() {
        match &row.setup {
            Ok(setup) if !only.is_empty() && !only.iter().any(|c| c == setup.config) => {
                let skipped = format!("skipped (--only {})", only.join(","));
                results.udp.push((row.name.to_string(), Err(skipped.clone())));
                for (name, _, _) in setup.reads {
                    results.reads.push((name.to_string(), Err(skipped.clone())));
                }
            }
            Ok(setup) => {
                eprintln!("bench io: {} (`{}`)", row.name, setup.config);
                let (udp, reads) = measure(setup);
                results.udp.push((row.name.to_string(), udp));
                for ((name, _, _), read) in setup.reads.iter().zip(reads) {
                    results.reads.push((name.to_string(), read));
                }
            }
            Err(why) => results.udp.push((row.name.to_string(), Err((*why).to_string()))),
        }
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> Results {
        let base = Measured {
            round_trips: 10,
            lost: 0,
            ticks_per_round_trip: 1e6,
            l0_exits_per_packet: None,
        };
        let l1 = Measured { ticks_per_round_trip: 4e6, l0_exits_per_packet: Some(7.5), ..base };
        let read = |ticks, exits: &[(u32, u64)]| Read {
            sectors: 128,
            requests: 16,
            ticks,
            exits: exits.iter().copied().collect(),
        };
        Results {
            udp: vec![
                ("L0 alone".into(), Ok(base)),
                ("L1".into(), Ok(l1)),
                ("L2".into(), Err("not built: later".to_string())),
                ("L3".into(), Err("never answered a ping".to_string())),
            ],
            reads: vec![
                ("L0 disk".into(), Ok(read(1_600_000, &[]))),
                ("L2 read".into(), Ok(read(6_400_000, &[(0, 320), (1, 64)]))),
            ],
        }
    }

    #[test]
    fn report_has_ratios_and_unbuilt_rows() {
        let (table, doc) = report(&results());
        assert!(table.contains("| L1 | 10 (0) | 4000000 | 7.5 | 250 | 0.250 |"), "{table}");
        assert!(table.contains("| L2 | not built: later |"), "{table}");
        assert_eq!(doc["rows"][1]["ratio_to_l0"], 0.25);
        assert_eq!(doc["rows"][2]["built"], false);
        assert_eq!(doc["rows"][0]["exits_per_packet"]["L0"], serde_json::Value::Null);
        // 64 KiB in 1.6M ticks is 25.6M ticks per MiB; 16 requests.
        assert!(
            table.contains("| L0 disk | 16 (128) | 100000 | 25600000 | - | 1.000 |"),
            "{table}"
        );
        assert!(
            table.contains("| L2 read | 16 (128) | 400000 | 102400000 | 20.0, 4.0 | 0.250 |"),
            "{table}"
        );
        assert_eq!(doc["reads"][1]["exits_per_request"]["L0"], 20.0);
        let s = svg(&results());
        assert!(s.contains(">L2 (not built)</text>") && s.contains("1000 packets (1.000)"), "{s}");
        assert!(s.contains(">L3 (failed)</text>"), "{s}");
        assert!(s.contains("MiB (0.250)"), "{s}");
    }

    #[test]
    fn a_stored_run_gives_back_its_table_and_chart() {
        let (table, doc) = report(&results());
        let again = parse(&doc).expect("parsed");
        let (table2, doc2) = report(&again);
        assert_eq!(table, table2);
        assert_eq!(doc, doc2);
        assert_eq!(svg(&again), svg(&results()));
        assert!(parse(&serde_json::json!({"rows": []})).unwrap_err().contains("reads"));
        let bad = serde_json::json!({"rows": [{"name": "x", "built": true}], "reads": []});
        assert!(parse(&bad).unwrap_err().contains("round_trips"));
    }

    #[test]
    fn reads_come_from_the_reading_level_and_the_marks_below() {
        let lines: Vec<String> = [
            "bochs| [L0 cpu0 INFO ] disk: guest disk sectors=128 crc32=1 read-ticks=999 requests=16",
            "bochs| L1| L2| [L2 cpu0 INFO ] disk: sectors=128 crc32=1 read-ticks=5000 requests=16",
            "bochs| L1| [L1 cpu0 INFO ] mark: tag=900 tsc=1 l2-exits=0 reflected=0 Cpuid=2",
            "bochs| L1| [L1 cpu0 INFO ] mark: tag=901 tsc=9 l2-exits=0 reflected=0 Cpuid=3 EptViolation=40",
            "bochs| [L0 cpu0 INFO ] mark: tag=900 tsc=1 l2-exits=0 reflected=0 Cpuid=10",
            "bochs| [L0 cpu0 INFO ] mark: tag=901 tsc=9 l2-exits=0 reflected=0 Cpuid=11 EptViolation=200",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let r = parse_read(&lines, 2, "disk: sectors=").expect("parsed");
        assert_eq!((r.sectors, r.requests, r.ticks), (128, 16, 5000));
        assert_eq!(r.exits, BTreeMap::from([(0, 201), (1, 41)]));
        let own = parse_read(&lines, 0, "disk: guest disk sectors=").expect("parsed");
        assert_eq!((own.ticks, own.exits.len()), (999, 0));
        assert!(parse_read(&lines[..2], 2, "disk: sectors=").is_err(), "no marks");
    }
}
