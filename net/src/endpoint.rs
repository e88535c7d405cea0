//! The management endpoint's protocol: one UDP datagram per request, answered with JSON lines
//! (one object per line, whole lines per datagram, the last line `{"type":"end",...}`).
//!
//! | request | answer |
//! |---|---|
//! | `status` | `status`, one `guest` line per guest, one `exit` line per exit reason seen, `end` |
//! | `ping N` | `{"type":"pong","seq":N}` |
//! | `bulk N` | N datagrams of [`BULK_BYTES`] bytes (`bulk` lines), then `end` |
//! | `quit` | `{"type":"bye"}`; the image stops serving and goes on |
//!
//! Anything else gets `{"type":"error","message":...}`. Pure: tested on the host.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write as _};

/// Largest UDP payload we send (fits a 1500-byte MTU with IPv4 and UDP headers).
pub const MAX_DATAGRAM: usize = 1472;
/// Payload bytes of each `bulk` datagram.
pub const BULK_BYTES: usize = 1400;
/// Most datagrams one `bulk` request may ask for.
pub const MAX_BULK: u32 = 100_000;

/// A parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Status,
    Ping(u64),
    Bulk(u32),
    Quit,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    NotUtf8,
    Empty,
    Unknown(String),
    BadArgument(String),
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::NotUtf8 => write!(f, "request is not UTF-8"),
            RequestError::Empty => write!(f, "empty request; known: status, ping N, bulk N, quit"),
            RequestError::Unknown(w) => {
                write!(f, "unknown request `{w}`; known: status, ping N, bulk N, quit")
            }
            RequestError::BadArgument(w) => write!(f, "bad argument `{w}`"),
        }
    }
}

/// Parses one request datagram.
pub fn parse_request(datagram: &[u8]) -> Result<Request, RequestError> {
    let text = core::str::from_utf8(datagram).map_err(|_| RequestError::NotUtf8)?;
    let mut words = text.split_whitespace();
    let verb = words.next().ok_or(RequestError::Empty)?;
    let arg = words.next();
    let number = |max: u64| -> Result<u64, RequestError> {
        let word = arg.unwrap_or("0");
        word.parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .ok_or_else(|| RequestError::BadArgument(clip(word)))
    };
    match verb {
        "status" => Ok(Request::Status),
        "ping" => Ok(Request::Ping(number(u64::MAX)?)),
        "bulk" => Ok(Request::Bulk(number(u64::from(MAX_BULK))? as u32)),
        "quit" => Ok(Request::Quit),
        other => Err(RequestError::Unknown(clip(other))),
    }
}

/// At most 32 characters of untrusted text for a message.
fn clip(word: &str) -> String {
    word.chars().take(32).collect()
}

/// One guest of this level and what it is doing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestStatus {
    pub name: String,
    pub state: String,
}

/// Exits of one basic exit reason (SDM Vol. 3D appendix C).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitCount {
    pub reason: u16,
    pub name: String,
    pub count: u64,
}

/// What `status` reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    pub config: String,
    pub role: String,
    pub depth: u32,
    pub uptime_tsc: u64,
    /// TSC ticks per second (0 if unknown).
    pub tsc_hz: u64,
    pub guests: Vec<GuestStatus>,
    pub exits: Vec<ExitCount>,
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Status {
    /// The status as JSON lines (each without its newline), `end` last.
    pub fn lines(&self) -> Vec<String> {
        let uptime_ms =
            (self.uptime_tsc as u128 * 1000).checked_div(self.tsc_hz as u128).unwrap_or(0);
        let mut lines = Vec::new();
        lines.push(format!(
            "{{\"type\":\"status\",\"config\":{},\"role\":{},\"depth\":{},\"uptime_tsc\":{},\
             \"tsc_hz\":{},\"uptime_ms\":{},\"guests\":{},\"exits\":{}}}",
            json_string(&self.config),
            json_string(&self.role),
            self.depth,
            self.uptime_tsc,
            self.tsc_hz,
            uptime_ms,
            self.guests.len(),
            self.exits.iter().map(|e| e.count).sum::<u64>()
        ));
        for g in &self.guests {
            lines.push(format!(
                "{{\"type\":\"guest\",\"name\":{},\"state\":{}}}",
                json_string(&g.name),
                json_string(&g.state)
            ));
        }
        for e in &self.exits {
            lines.push(format!(
                "{{\"type\":\"exit\",\"reason\":{},\"name\":{},\"count\":{}}}",
                e.reason,
                json_string(&e.name),
                e.count
            ));
        }
        lines.push(format!("{{\"type\":\"end\",\"lines\":{}}}", lines.len() + 1));
        lines
    }
}

/// `{"type":"error",...}` for a refused request.
pub fn error_line(e: &RequestError) -> String {
    format!("{{\"type\":\"error\",\"message\":{}}}", json_string(&format!("{e}")))
}

/// Packs lines into datagrams of whole lines, each at most `max` bytes (a longer line is cut
/// to fit, which keeps the datagram valid UTF-8 only if the line is ASCII, as ours are).
pub fn pack(lines: &[String], max: usize) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut current = Vec::new();
    for line in lines {
        let bytes = line.as_bytes();
        let bytes = &bytes[..bytes.len().min(max.saturating_sub(1))];
        if !current.is_empty() && current.len() + bytes.len() + 1 > max {
            out.push(core::mem::take(&mut current));
        }
        current.extend_from_slice(bytes);
        current.push(b'\n');
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The `seq`th datagram of a bulk answer: one `bulk` line padded to [`BULK_BYTES`].
pub fn bulk_datagram(seq: u32) -> Vec<u8> {
    let head = format!("{{\"type\":\"bulk\",\"seq\":{seq},\"pad\":\"");
    let mut out = Vec::with_capacity(BULK_BYTES);
    out.extend_from_slice(head.as_bytes());
    out.resize(BULK_BYTES - 3, b'x');
    out.extend_from_slice(b"\"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        assert_eq!(parse_request(b"status\n"), Ok(Request::Status));
        assert_eq!(parse_request(b"  ping 42 "), Ok(Request::Ping(42)));
        assert_eq!(parse_request(b"bulk 10"), Ok(Request::Bulk(10)));
        assert_eq!(parse_request(b"quit"), Ok(Request::Quit));
    }

    #[test]
    fn bad_requests_are_errors() {
        assert_eq!(parse_request(&[0xff, 0xfe]), Err(RequestError::NotUtf8));
        assert_eq!(parse_request(b" \n"), Err(RequestError::Empty));
        assert_eq!(parse_request(b"reboot"), Err(RequestError::Unknown("reboot".into())));
        assert_eq!(
            parse_request(b"bulk 999999999"),
            Err(RequestError::BadArgument("999999999".into()))
        );
        assert_eq!(parse_request(b"ping x"), Err(RequestError::BadArgument("x".into())));
        let long = [b'a'; 300];
        let Err(RequestError::Unknown(w)) = parse_request(&long) else { panic!() };
        assert_eq!(w.len(), 32);
        let line = error_line(&RequestError::Unknown("a\"b".into()));
        assert!(line.contains("unknown request `a\\\"b`"), "{line}");
    }

    #[test]
    fn status_lines_are_json_and_end_last() {
        let s = Status {
            config: "net-qemu".into(),
            role: "l0".into(),
            depth: 0,
            uptime_tsc: 3_000_000,
            tsc_hz: 1_000_000,
            guests: vec![GuestStatus { name: "leaf".into(), state: "running".into() }],
            exits: vec![ExitCount { reason: 10, name: "CPUID".into(), count: 7 }],
        };
        let lines = s.lines();
        assert_eq!(lines.len(), 4);
        assert!(
            lines[0].starts_with("{\"type\":\"status\",\"config\":\"net-qemu\""),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains("\"uptime_ms\":3000,") && lines[0].contains("\"exits\":7}"),
            "{}",
            lines[0]
        );
        assert_eq!(lines[1], "{\"type\":\"guest\",\"name\":\"leaf\",\"state\":\"running\"}");
        assert_eq!(lines[2], "{\"type\":\"exit\",\"reason\":10,\"name\":\"CPUID\",\"count\":7}");
        assert_eq!(lines[3], "{\"type\":\"end\",\"lines\":4}");
        assert_eq!(json_string("a\u{1}\n"), "\"a\\u0001\\n\"");
    }

    #[test]
    fn pack_keeps_lines_whole_and_bounded() {
        let lines: Vec<String> = (0..100).map(|i| format!("{{\"n\":{i}}}")).collect();
        let grams = pack(&lines, 64);
        assert!(grams.len() > 1);
        let mut joined = Vec::new();
        for g in &grams {
            assert!(g.len() <= 64 && g.ends_with(b"\n"));
            joined.extend_from_slice(g);
        }
        assert_eq!(String::from_utf8(joined).unwrap().lines().count(), 100);
        assert_eq!(pack(&["x".repeat(100)], 10), vec![b"xxxxxxxxx\n".to_vec()]);
        let b = bulk_datagram(7);
        assert_eq!(b.len(), BULK_BYTES);
        assert!(b.starts_with(b"{\"type\":\"bulk\",\"seq\":7,") && b.ends_with(b"\"}\n"));
    }
}
