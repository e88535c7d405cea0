//! `cargo run -- bench net`: boots `net-qemu` and measures the management endpoint through
//! QEMU's user network from loopback: UDP round trips per second (`ping`) and bulk
//! throughput (`bulk N`: the image sends N datagrams of 1400 bytes). Prints a table.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::stats::Answer;

/// The config the benchmark boots and where its endpoint is forwarded.
const CONFIG: &str = "net-qemu";
const ADDR: &str = "127.0.0.1:15555";
const PINGS: u32 = 2000;
const BULK: u32 = 4000;

/// Stops the background runner when dropped: `quit` to the endpoint, then a bounded wait,
/// then kill (only our own child).
struct Runner(Child);

impl Drop for Runner {
    fn drop(&mut self) {
        if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
            let _ = socket.send_to(b"quit", ADDR);
        }
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(60) {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the benchmark and prints its table.
pub fn net() -> Result<i32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the runner: {e}"))?;
    let mut child = Command::new(exe)
        .args(["run", CONFIG, "--emulator", "qemu", "--timeout", "300", "--verbose"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the runner: {e}"))?;
    let stdout = child.stdout.take().ok_or("the runner has no stdout")?;
    let runner = Runner(child);
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
            Ok(line) if line.contains("net: endpoint listening") => break,
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("`{CONFIG}` ended before its endpoint came up"));
            }
        }
        if start.elapsed() > Duration::from_secs(600) {
            return Err(format!("`{CONFIG}`'s endpoint did not come up within 600 s"));
        }
    }
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    socket.connect(ADDR).map_err(|e| format!("{ADDR}: {e}"))?;
    socket.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;

    let (pings, lost, rtts) = ping(&socket)?;
    let bulk = bulk(&socket)?;
    drop(runner);

    let mut sorted = rtts.clone();
    sorted.sort();
    let pct = |p: usize| sorted.get(sorted.len().saturating_sub(1) * p / 100).copied();
    let total: Duration = rtts.iter().sum();
    let us = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| format!("{:.0}", d.as_secs_f64() * 1e6))
    };
    println!(
        "net benchmark: `{CONFIG}` under QEMU TCG, virtio-net, endpoint {ADDR} (loopback, user network)"
    );
    println!();
    println!("| measure | value |");
    println!("|---|---|");
    println!("| UDP round trips | {pings} ({lost} lost) |");
    if total > Duration::ZERO {
        println!("| round trips per second | {:.0} |", pings as f64 / total.as_secs_f64());
    }
    println!("| round trip median / p99 (us) | {} / {} |", us(pct(50)), us(pct(99)));
    println!("| bulk datagrams received | {} of {BULK} ({} bytes) |", bulk.datagrams, bulk.bytes);
    println!("| bulk time (ms) | {:.1} |", bulk.time.as_secs_f64() * 1e3);
    if bulk.time > Duration::ZERO {
        let mbit = bulk.bytes as f64 * 8.0 / bulk.time.as_secs_f64() / 1e6;
        println!("| bulk throughput (Mbit/s) | {mbit:.1} |");
    }
    Ok(crate::status::SUCCESS)
}

/// Sequential `ping`s: (answered, lost, round-trip times).
fn ping(socket: &UdpSocket) -> Result<(u32, u32, Vec<Duration>), String> {
    let mut buf = [0u8; 2048];
    let mut rtts = Vec::new();
    let mut lost = 0;
    for seq in 0..PINGS {
        let sent = Instant::now();
        socket.send(format!("ping {seq}").as_bytes()).map_err(|e| format!("send: {e}"))?;
        loop {
            match socket.recv(&mut buf) {
                Ok(n) if is_pong(&buf[..n], seq) => {
                    rtts.push(sent.elapsed());
                    break;
                }
                Ok(_) => {} // a late answer to an earlier ping
                Err(_) => {
                    lost += 1;
                    break;
                }
            }
        }
        if lost > 20 {
            return Err(format!("the endpoint stopped answering pings ({lost} lost)"));
        }
    }
    Ok((rtts.len() as u32, lost, rtts))
}

/// Whether a datagram is the `pong` answer to ping `seq`.
fn is_pong(datagram: &[u8], seq: u32) -> bool {
    let text = String::from_utf8_lossy(datagram);
    matches!(Answer::parse(text.trim_end()), Ok(Answer::Pong { seq: s }) if s == u64::from(seq))
}

/// Whether a datagram is the `end` line of a `bulk` answer.
fn is_bulk_end(datagram: &[u8]) -> bool {
    let text = String::from_utf8_lossy(datagram);
    matches!(Answer::parse(text.trim_end()), Ok(Answer::End { bulk: Some(_), .. }))
}

struct Bulk {
    datagrams: u32,
    bytes: u64,
    time: Duration,
}

/// One `bulk` request: datagrams and bytes received until the `end` line (or a timeout).
fn bulk(socket: &UdpSocket) -> Result<Bulk, String> {
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    socket.send(format!("bulk {BULK}").as_bytes()).map_err(|e| format!("send: {e}"))?;
    let mut result = Bulk { datagrams: 0, bytes: 0, time: Duration::ZERO };
    while let Ok(n) = socket.recv(&mut buf) {
        if is_bulk_end(&buf[..n]) {
            break;
        }
        result.datagrams += 1;
        result.bytes += n as u64;
        result.time = start.elapsed();
    }
    if result.datagrams == 0 {
        return Err("no bulk datagrams arrived".to_string());
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_pongs_and_the_end_of_bulk() {
        assert!(is_pong(b"{\"type\":\"pong\",\"seq\":41}\n", 41));
        assert!(!is_pong(b"{\"type\":\"pong\",\"seq\":40}\n", 41));
        assert!(!is_pong(b"\xff garbage", 41));
        assert!(is_bulk_end(b"{\"type\":\"end\",\"bulk\":4000}\n"));
        assert!(!is_bulk_end(b"{\"type\":\"bulk\",\"seq\":7,\"pad\":\"x\"}\n"));
    }
}
