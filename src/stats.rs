//! `cargo run -- stats <host:port>`: queries a running image's management endpoint (UDP, one
//! request per datagram, JSON lines back; see `net/src/endpoint.rs`).

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use serde::Deserialize;

/// One line of the endpoint's answer, by its `type`. Fields the runner does not use are
/// ignored; a line of another type is [`Answer::Other`].
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Answer {
    Status {
        config: String,
        role: String,
        depth: u32,
        #[serde(default)]
        uptime_ms: u64,
        #[serde(default)]
        exits: u64,
    },
    Guest {
        name: String,
        state: String,
    },
    Exit {
        reason: u32,
        name: String,
        count: u64,
    },
    Pong {
        seq: u64,
    },
    /// One datagram of a `bulk` answer (its padding ignored).
    Bulk {
        seq: u64,
    },
    Bye,
    Error {
        message: String,
    },
    End {
        #[serde(default)]
        lines: Option<u64>,
        #[serde(default)]
        bulk: Option<u64>,
    },
    #[serde(other)]
    Other,
}

impl Answer {
    /// Parses one JSON line.
    pub fn parse(line: &str) -> Result<Answer, String> {
        serde_json::from_str(line).map_err(|e| format!("not an endpoint line ({e}): {line}"))
    }

    /// Whether this line ends an answer.
    pub fn is_last(&self) -> bool {
        matches!(
            self,
            Answer::End { .. } | Answer::Pong { .. } | Answer::Bye | Answer::Error { .. }
        )
    }
}

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
            if Answer::parse(line)?.is_last() {
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

/// Queries the endpoint at `addr` and prints what it answers: each line as the image wrote
/// it, then a one-line reading of it.
pub fn query(addr: &str) -> Result<i32, String> {
    let lines = request(addr, "status", Duration::from_secs(10))?;
    let mut exits = Vec::new();
    let mut guests = Vec::new();
    let mut head = None;
    for line in &lines {
        println!("{line}");
        match Answer::parse(line)? {
            Answer::Status { config, role, depth, uptime_ms, exits: total } => {
                head = Some(format!(
                    "`{config}` ({role}, depth {depth}), up {:.1} s, {total} exits",
                    uptime_ms as f64 / 1000.0
                ));
            }
            Answer::Guest { name, state } => guests.push(format!("{name} {state}")),
            Answer::Exit { name, count, .. } => exits.push(format!("{name} {count}")),
            _ => {}
        }
    }
    if let Some(head) = head {
        let guests = if guests.is_empty() { "none".to_string() } else { guests.join(", ") };
        let exits = if exits.is_empty() { "none".to_string() } else { exits.join(", ") };
        println!("{head}; guests: {guests}; exits: {exits}");
    }
    Ok(crate::status::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_endpoint_lines() {
        let status = Answer::parse(
            r#"{"type":"status","config":"net-qemu","role":"leaf","depth":0,"uptime_tsc":5,"tsc_hz":100,"uptime_ms":1500,"guests":1,"exits":0}"#,
        )
        .expect("status");
        assert_eq!(
            status,
            Answer::Status {
                config: "net-qemu".to_string(),
                role: "leaf".to_string(),
                depth: 0,
                uptime_ms: 1500,
                exits: 0
            }
        );
        assert!(!status.is_last());
        assert_eq!(
            Answer::parse(r#"{"type":"exit","reason":10,"name":"Cpuid","count":7}"#),
            Ok(Answer::Exit { reason: 10, name: "Cpuid".to_string(), count: 7 })
        );
        assert!(Answer::parse(r#"{"type":"pong","seq":41}"#).expect("pong").is_last());
        assert!(Answer::parse(r#"{"type":"end","lines":3}"#).expect("end").is_last());
        assert!(Answer::parse(r#"{"type":"end","bulk":4000}"#).expect("end").is_last());
        assert!(Answer::parse(r#"{"type":"bye"}"#).expect("bye").is_last());
        assert!(
            Answer::parse(r#"{"type":"error","message":"unknown request `x`"}"#)
                .expect("error")
                .is_last()
        );
        assert_eq!(
            Answer::parse(r#"{"type":"bulk","seq":7,"pad":"xx"}"#),
            Ok(Answer::Bulk { seq: 7 })
        );
        assert_eq!(Answer::parse(r#"{"type":"later","x":1}"#), Ok(Answer::Other));
        assert!(Answer::parse("not json").is_err());
        assert!(Answer::parse(r#"{"no":"type"}"#).is_err());
    }
}
