//! Helpers for the driver tests: a runner in the background whose output is followed, and
//! one-datagram requests to the management endpoint (loopback only, bounded waits).

#![allow(dead_code)] // each test file uses a different subset

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// A runner started in the background, its stdout collected line by line.
pub struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
    /// The endpoint to tell `quit` if the test ends early, so the image (and the emulator,
    /// which outlives a killed runner) stops by itself.
    endpoint: Option<String>,
}

impl Background {
    /// Starts the runner with `args` and `--verbose`, so its stdout is the serial console.
    pub fn start(args: &[&str], endpoint: Option<&str>) -> Background {
        let mut child = Command::new(env!("CARGO_BIN_EXE_turtles"))
            .args(args)
            .arg("--verbose")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the runner starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Background { child, lines: rx, seen: Vec::new(), endpoint: endpoint.map(str::to_string) }
    }

    /// Waits (bounded) for a line containing `needle`.
    pub fn wait_for(&mut self, needle: &str, within: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < within {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(needle);
                self.seen.push(line);
                if hit {
                    return true;
                }
            }
        }
        false
    }

    /// Waits for the runner to end; returns its status and all of its output.
    pub fn finish(mut self, within: Duration) -> (i32, String) {
        let start = Instant::now();
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code().unwrap_or(-1);
            }
            if start.elapsed() > within {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break -1;
            }
            thread::sleep(Duration::from_millis(100));
        };
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(500)) {
            self.seen.push(line);
        }
        (code, self.seen.join("\n"))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            if let Some(addr) = &self.endpoint {
                if let Ok(socket) = UdpSocket::bind("127.0.0.1:0") {
                    let _ = socket.send_to(b"quit", addr.as_str());
                }
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(90) {
                    if let Ok(Some(_)) = self.child.try_wait() {
                        return;
                    }
                    thread::sleep(Duration::from_millis(200));
                }
            }
            // Only our own child, by handle.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One request, the datagrams of its answer joined (bounded wait).
pub fn ask(addr: &str, request: &[u8]) -> String {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    socket.send_to(request, addr).unwrap();
    let mut buf = [0u8; 4096];
    match socket.recv(&mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => format!("no answer: {e}"),
    }
}

/// Sends `request` every `retry` until an answer comes (the first may be lost while slirp
/// learns the guest's MAC) or `within` passes.
pub fn ask_until_answered(
    addr: &str,
    request: &[u8],
    retry: Duration,
    within: Duration,
) -> Option<String> {
    let socket = UdpSocket::bind("127.0.0.1:0").ok()?;
    socket.set_read_timeout(Some(retry)).ok()?;
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    while start.elapsed() < within {
        socket.send_to(request, addr).ok()?;
        if let Ok(n) = socket.recv(&mut buf) {
            return Some(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    None
}
