//! The guest's COM1: the pure 16550A model (`pc::uart`) at 0x3f8, its transmitted bytes
//! collected into lines and printed on L0's console with the guest's depth (`L1| ...`). The
//! last few lines are kept, so a guest that ends badly (a reset after a kernel panic) can be
//! reported with them.

use alloc::collections::VecDeque;
use alloc::string::String;

use pc::uart::{COM1, LineBuffer, Uart};

use crate::console;

const LINE_MAX: usize = 256;
/// Lines kept for [`Serial::recent`]: enough for a Linux panic's message, call trace and
/// what follows it.
const RECENT: usize = 32;

pub struct Serial {
    depth: u32,
    uart: Uart,
    line: LineBuffer<LINE_MAX>,
    /// Bytes the guest has sent in all.
    pub sent: u64,
    /// The last [`RECENT`] lines, oldest first.
    recent: VecDeque<String>,
}

/// Prints a guest line and keeps it among the recent ones.
fn emit(depth: u32, recent: &mut VecDeque<String>, text: &str) {
    console::guest_line(depth, text);
    if recent.len() == RECENT {
        recent.pop_front();
    }
    recent.push_back(String::from(text));
}

impl Serial {
    pub fn new(depth: u32) -> Self {
        Serial {
            depth,
            uart: Uart::new(),
            line: LineBuffer::new(),
            sent: 0,
            recent: VecDeque::with_capacity(RECENT),
        }
    }

    pub fn owns(port: u16) -> bool {
        (COM1..COM1 + 8).contains(&port)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        self.uart.read(port.wrapping_sub(COM1) as u8)
    }

    pub fn write(&mut self, port: u16, value: u8) {
        if let Some(byte) = self.uart.write(port.wrapping_sub(COM1) as u8, value) {
            self.sent += 1;
            let (depth, recent) = (self.depth, &mut self.recent);
            self.line.push(byte, |text| emit(depth, recent, text));
        }
    }

    /// The UART's interrupt line (COM1's IRQ 4).
    pub fn irq(&self) -> bool {
        self.uart.irq()
    }

    /// The guest's last console lines, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &str> {
        self.recent.iter().map(String::as_str)
    }

    /// Flushes a partial line left when the guest stops.
    pub fn finish(&mut self) {
        if self.line.pending() {
            let (depth, recent) = (self.depth, &mut self.recent);
            self.line.flush(|text| emit(depth, recent, text));
        }
    }
}
