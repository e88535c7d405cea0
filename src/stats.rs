//! `cargo run -- stats <host:port>`: queries a running image's management endpoint (UDP, one
//! request per datagram, JSON lines back; see `net/src/endpoint.rs`).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

/// Sends `request` to the endpoint at `addr` and collects the answer's lines until the `end`
/// (or `pong`/`bye`/`error`) line, resending a few times while the image is still booting.
pub fn request(addr: &str, request: &str, wait: Duration) -> Result<Vec<String>, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
    socket.connect(addr).map_err(|e| format!("{addr}: {e}"))?;
    socket
        .set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| format!("{addr}: {e}"))?;
    let start = Instant::now();
    let mut lines = Vec::new();
    let mut buf = [0u8; 65536];
    let mut sent_at: Option<Instant> = None;
    while start.elapsed() < wait {
        if lines.is_empty() && sent_at.is_none_or(|t| t.elapsed() > Duration::from_secs(2)) {
            socket.send(request.as_bytes()).map_err(|e| format!("send to {addr}: {e}"))?;
            sent_at = Some(Instant::now());
        }
        let n = match socket.recv(&mut buf) {
            Ok(n) => n,
            // Nothing yet, or ICMP port unreachable while the emulator is starting.
            Err(_) => continue,
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        for line in text.lines().filter(|l| !l.is_empty()) {
            lines.push(line.to_string());
            if is_last(line) {
                return Ok(lines);
            }
        }
    }
    if lines.is_empty() {
        Err(format!("no answer from {addr} to `{request}` within {} s", wait.as_secs()))
    } else {
        Err(format!("incomplete answer from {addr} to `{request}`: {}", lines.join("\n")))
    }
}

fn is_last(line: &str) -> bool {
    ["\"type\":\"end\"", "\"type\":\"pong\"", "\"type\":\"bye\"", "\"type\":\"error\""]
        .iter()
        .any(|t| line.contains(t))
}

/// Queries the endpoint at `addr` and prints what it answers.
pub fn query(addr: &str) -> Result<i32, String> {
    for line in request(addr, "status", Duration::from_secs(10))? {
        println!("{line}");
    }
    Ok(crate::status::SUCCESS)
}
