//! The guest's COM1: the pure 16550A model (`pc::uart`) at 0x3f8, its transmitted bytes
//! collected into lines and printed on L0's console with the guest's depth (`L1| ...`).

use pc::uart::{COM1, LineBuffer, Uart};

use crate::console;

const LINE_MAX: usize = 256;

pub struct Serial {
    depth: u32,
    uart: Uart,
    line: LineBuffer<LINE_MAX>,
    /// Bytes the guest has sent in all.
    pub sent: u64,
}

impl Serial {
    pub fn new(depth: u32) -> Self {
        Serial { depth, uart: Uart::new(), line: LineBuffer::new(), sent: 0 }
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
            let depth = self.depth;
            self.line.push(byte, |text| console::guest_line(depth, text));
        }
    }

    /// Flushes a partial line left when the guest stops.
    pub fn finish(&mut self) {
        if self.line.pending() {
            let depth = self.depth;
            self.line.flush(|text| console::guest_line(depth, text));
        }
    }
}
