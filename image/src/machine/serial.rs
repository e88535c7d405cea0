//! An emulated 16550 UART at COM1 (0x3f8). Transmitted bytes are collected into lines and
//! printed on L0's console with the guest's depth (`L1| ...`). Loopback mode and the scratch
//! register work, so drivers that probe the UART (the `uart_16550` crate) accept it.

use crate::console;

const BASE: u16 = 0x3f8;
const LINE_MAX: usize = 256;
const FIFO_SIZE: usize = 16;

const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;
const LCR_DLAB: u8 = 0x80;
const MCR_LOOPBACK: u8 = 0x10;

pub struct Serial {
    depth: u32,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Receive FIFO (filled only in loopback mode: there is no input), 16 bytes like a
    /// 16550A's.
    rx: [u8; FIFO_SIZE],
    rx_len: usize,
    line: [u8; LINE_MAX],
    len: usize,
    /// Bytes the guest has sent in all.
    pub sent: u64,
}

impl Serial {
    pub fn new(depth: u32) -> Self {
        Serial {
            depth,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            rx: [0; FIFO_SIZE],
            rx_len: 0,
            line: [0; LINE_MAX],
            len: 0,
            sent: 0,
        }
    }

    pub fn owns(port: u16) -> bool {
        (BASE..BASE + 8).contains(&port)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match port - BASE {
            0 if dlab => self.dll,
            0 => self.receive(),
            1 if dlab => self.dlm,
            1 => self.ier,
            // IIR: no interrupt pending; FIFOs reported enabled when FCR bit 0 is set.
            2 => 0x01 | if self.fcr & 1 != 0 { 0xc0 } else { 0 },
            3 => self.lcr,
            4 => self.mcr,
            5 => {
                let ready = if self.rx_len > 0 { LSR_DATA_READY } else { 0 };
                LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY | ready
            }
            6 => {
                if self.mcr & MCR_LOOPBACK != 0 {
                    // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                    let m = self.mcr;
                    ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
                } else {
                    0xb0 // DCD, DSR, CTS: a terminal is attached
                }
            }
            _ => self.scr,
        }
    }

    pub fn write(&mut self, port: u16, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match port - BASE {
            0 if dlab => self.dll = value,
            0 if self.mcr & MCR_LOOPBACK != 0 => {
                // A full FIFO drops the byte (overrun), as the hardware would.
                if self.rx_len < FIFO_SIZE {
                    self.rx[self.rx_len] = value;
                    self.rx_len += 1;
                }
            }
            0 => self.transmit(value),
            1 if dlab => self.dlm = value,
            1 => self.ier = value & 0x0f,
            2 => self.fcr = value,
            3 => self.lcr = value,
            4 => self.mcr = value & 0x1f,
            5 | 6 => {}
            _ => self.scr = value,
        }
    }

    fn receive(&mut self) -> u8 {
        if self.rx_len == 0 {
            return 0;
        }
        let byte = self.rx[0];
        self.rx.copy_within(1..self.rx_len, 0);
        self.rx_len -= 1;
        byte
    }

    fn transmit(&mut self, byte: u8) {
        self.sent += 1;
        match byte {
            b'\n' => self.flush(),
            b'\r' => {}
            _ => {
                if self.len == LINE_MAX {
                    self.flush();
                }
                self.line[self.len] = byte;
                self.len += 1;
            }
        }
    }

    /// Prints the pending partial line, if any.
    pub fn flush(&mut self) {
        let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("<invalid UTF-8>");
        console::guest_line(self.depth, text);
        self.len = 0;
    }

    /// Flushes a partial line left when the guest stops.
    pub fn finish(&mut self) {
        if self.len > 0 {
            self.flush();
        }
    }
}
