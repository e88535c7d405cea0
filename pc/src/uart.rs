//! A 16550A UART as a PC guest's serial driver sees it (National Semiconductor PC16550D data
//! sheet; the register map as in QEMU's `serial.c`): the divisor latch behind LCR.DLAB, IER,
//! IIR/FCR (FIFOs reported enabled when FCR bit 0 is set), LCR, MCR with loopback (the modem
//! outputs fed back to MSR, transmitted bytes into the 16-byte receive FIFO), LSR and the
//! scratch register, so drivers that probe the UART (the `uart_16550` crate, Linux's
//! `8250` autoconfig) accept it.
//!
//! There is no input: the transmitter is always empty (a byte leaves the moment it is
//! written). The interrupt line ([`Uart::irq`]) follows IIR (data sheet 8.5, Table 4): received
//! data available (IER bit 0, loopback bytes only) outranks transmitter holding register empty
//! (IER bit 1), which is raised when THR empties (at once after each write) or when IER bit 1
//! is set with THR empty, and cleared by reading IIR while it reports it or by writing THR,
//! as on the 16550 (and QEMU), so Linux's 8250 driver sends with THRE interrupts. The line is
//! not gated by MCR OUT2 (as QEMU). A transmitted byte is returned by [`Uart::write`]; the
//! caller prints it, and [`LineBuffer`] assembles such bytes into lines.

/// COM1's base port.
pub const COM1: u16 = 0x3f8;
/// Bytes in the receive FIFO of a 16550A.
pub const FIFO_SIZE: usize = 16;

/// Register offsets from the base port.
pub mod reg {
    /// Receive buffer (read) / transmit holding (write); divisor latch low with DLAB.
    pub const DATA: u8 = 0;
    /// Interrupt enable; divisor latch high with DLAB.
    pub const IER: u8 = 1;
    /// Interrupt identification (read) / FIFO control (write).
    pub const IIR_FCR: u8 = 2;
    pub const LCR: u8 = 3;
    pub const MCR: u8 = 4;
    pub const LSR: u8 = 5;
    pub const MSR: u8 = 6;
    pub const SCR: u8 = 7;
}

/// Line status register bits.
pub mod lsr {
    pub const DATA_READY: u8 = 0x01;
    pub const OVERRUN: u8 = 0x02;
    pub const THR_EMPTY: u8 = 0x20;
    pub const TRANSMITTER_EMPTY: u8 = 0x40;
}

const LCR_DLAB: u8 = 0x80;
const MCR_LOOPBACK: u8 = 0x10;
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;
/// IIR bit 0: no interrupt pending.
const IIR_NONE: u8 = 0x01;
/// IIR interrupt identification: transmitter holding register empty.
const IIR_THRE: u8 = 0x02;
/// IIR interrupt identification: received data available.
const IIR_RX: u8 = 0x04;
/// IER bit 0: received data available interrupt enable.
const IER_RX: u8 = 0x01;
/// IER bit 1: transmitter holding register empty interrupt enable.
const IER_THRE: u8 = 0x02;
/// IIR bits 7:6: FIFOs enabled.
const IIR_FIFOS: u8 = 0xc0;
/// MSR with a terminal attached and loopback off: DCD, DSR, CTS.
const MSR_TERMINAL: u8 = 0xb0;

/// One 16550A's registers.
#[derive(Clone, Debug)]
pub struct Uart {
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// Receive FIFO (filled only in loopback mode: there is no input).
    rx: [u8; FIFO_SIZE],
    rx_len: usize,
    /// A loopback byte was dropped on a full FIFO; cleared by reading LSR.
    overrun: bool,
    /// The THRE interrupt is pending (THR emptied since IIR last reported it).
    thre: bool,
}

impl Default for Uart {
    fn default() -> Self {
        Self::new()
    }
}

impl Uart {
    /// The reset state (divisor 1, everything else 0).
    pub const fn new() -> Self {
        Uart {
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 1,
            dlm: 0,
            rx: [0; FIFO_SIZE],
            rx_len: 0,
            overrun: false,
            thre: false,
        }
    }

    /// The pending interrupt's IIR identification (bits 3:0), highest priority first.
    fn identification(&self) -> u8 {
        if self.ier & IER_RX != 0 && self.rx_len > 0 {
            IIR_RX
        } else if self.ier & IER_THRE != 0 && self.thre {
            IIR_THRE
        } else {
            IIR_NONE
        }
    }

    /// The interrupt output (the IRQ line, COM1's IRQ 4 on a PC): some enabled interrupt is
    /// pending.
    pub fn irq(&self) -> bool {
        self.identification() != IIR_NONE
    }

    fn dlab(&self) -> bool {
        self.lcr & LCR_DLAB != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOPBACK != 0
    }

    /// A guest read of the register at `offset` (taken mod 8) from the base port.
    pub fn read(&mut self, offset: u8) -> u8 {
        match offset & 7 {
            reg::DATA if self.dlab() => self.dll,
            reg::DATA => self.receive(),
            reg::IER if self.dlab() => self.dlm,
            reg::IER => self.ier,
            reg::IIR_FCR => {
                let id = self.identification();
                // Reading IIR while it reports THRE clears that interrupt.
                if id == IIR_THRE {
                    self.thre = false;
                }
                id | if self.fcr & FCR_ENABLE != 0 { IIR_FIFOS } else { 0 }
            }
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => {
                let ready = if self.rx_len > 0 { lsr::DATA_READY } else { 0 };
                let overrun = if core::mem::take(&mut self.overrun) { lsr::OVERRUN } else { 0 };
                lsr::THR_EMPTY | lsr::TRANSMITTER_EMPTY | ready | overrun
            }
            reg::MSR if self.loopback() => {
                // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
                let m = self.mcr;
                ((m & 0x01) << 5) | ((m & 0x02) << 3) | ((m & 0x04) << 4) | ((m & 0x08) << 4)
            }
            reg::MSR => MSR_TERMINAL,
            _ => self.scr,
        }
    }

    /// A guest write of `value` to the register at `offset` (taken mod 8); returns the byte
    /// the UART transmits, if the write sent one.
    pub fn write(&mut self, offset: u8, value: u8) -> Option<u8> {
        match offset & 7 {
            reg::DATA if self.dlab() => self.dll = value,
            reg::DATA if self.loopback() => {
                // A full FIFO drops the byte (overrun), as the hardware would.
                if self.rx_len < FIFO_SIZE {
                    self.rx[self.rx_len] = value;
                    self.rx_len += 1;
                } else {
                    self.overrun = true;
                }
                self.thre = true;
            }
            reg::DATA => {
                // Sent at once: THR is empty again, which raises THRE.
                self.thre = true;
                return Some(value);
            }
            reg::IER if self.dlab() => self.dlm = value,
            reg::IER => {
                // Enabling THRE with THR empty raises it (as the 16550 and QEMU do).
                if value & IER_THRE != 0 && self.ier & IER_THRE == 0 {
                    self.thre = true;
                }
                self.ier = value & 0x0f;
            }
            reg::IIR_FCR => {
                if value & FCR_CLEAR_RX != 0 {
                    self.rx_len = 0;
                }
                // Bits 1 and 2 (clear FIFOs) self-clear.
                self.fcr = value & !0x06;
            }
            reg::LCR => self.lcr = value,
            reg::MCR => self.mcr = value & 0x1f,
            reg::LSR | reg::MSR => {}
            _ => self.scr = value,
        }
        None
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
}

/// Transmitted bytes assembled into lines of at most `N` bytes (CR dropped, LF ends a line,
/// a full buffer is emitted as a line of its own).
#[derive(Clone, Debug)]
pub struct LineBuffer<const N: usize> {
    line: [u8; N],
    len: usize,
}

impl<const N: usize> Default for LineBuffer<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> LineBuffer<N> {
    pub const fn new() -> Self {
        LineBuffer { line: [0; N], len: 0 }
    }

    /// Adds `byte`; calls `emit` with each line it completes.
    pub fn push(&mut self, byte: u8, emit: impl FnOnce(&str)) {
        match byte {
            b'\n' => self.flush(emit),
            b'\r' => {}
            _ => {
                if self.len == N {
                    self.flush(emit);
                }
                if let Some(slot) = self.line.get_mut(self.len) {
                    *slot = byte;
                    self.len += 1;
                }
            }
        }
    }

    /// Emits the pending line (possibly empty) and starts a new one.
    pub fn flush(&mut self, emit: impl FnOnce(&str)) {
        let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("<invalid UTF-8>");
        emit(text);
        self.len = 0;
    }

    /// True if a partial line is pending.
    pub fn pending(&self) -> bool {
        self.len > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lines<const N: usize>(buf: &mut LineBuffer<N>, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            buf.push(b, |s| out.push(s.to_string()));
        }
        out
    }

    #[test]
    fn transmits_outside_loopback_and_dlab() {
        let mut u = Uart::new();
        assert_eq!(u.write(reg::DATA, b'x'), Some(b'x'));
        u.write(reg::LCR, LCR_DLAB | 3);
        assert_eq!(u.write(reg::DATA, 0x0c), None);
        assert_eq!(u.write(reg::IER, 0x00), None);
        assert_eq!((u.read(reg::DATA), u.read(reg::IER)), (0x0c, 0));
        u.write(reg::LCR, 3);
        assert_eq!(u.read(reg::LCR), 3);
        u.write(reg::IER, 0xff);
        assert_eq!(u.read(reg::IER), 0x0f, "IER bits 7:4 are reserved");
        assert_eq!(u.write(reg::DATA, b'y'), Some(b'y'));
    }

    #[test]
    fn loopback_fifo_and_overrun() {
        let mut u = Uart::new();
        u.write(reg::MCR, MCR_LOOPBACK | 0x0f);
        assert_eq!(u.read(reg::MSR), 0xf0, "DTR, RTS, OUT1, OUT2 looped to DSR, CTS, RI, DCD");
        assert_eq!(u.read(reg::LSR) & lsr::DATA_READY, 0);
        for b in 0..=FIFO_SIZE as u8 {
            assert_eq!(u.write(reg::DATA, b), None, "loopback sends nothing out");
        }
        let status = u.read(reg::LSR);
        assert_eq!(status & (lsr::DATA_READY | lsr::OVERRUN), lsr::DATA_READY | lsr::OVERRUN);
        assert_eq!(u.read(reg::LSR) & lsr::OVERRUN, 0, "reading LSR clears OE");
        for b in 0..FIFO_SIZE as u8 {
            assert_eq!(u.read(reg::DATA), b);
        }
        assert_eq!(u.read(reg::LSR) & lsr::DATA_READY, 0);
        assert_eq!(u.read(reg::DATA), 0);
        u.write(reg::DATA, 7);
        u.write(reg::IIR_FCR, FCR_ENABLE | FCR_CLEAR_RX);
        assert_eq!(u.read(reg::LSR) & lsr::DATA_READY, 0, "FCR bit 1 clears the receive FIFO");
        u.write(reg::MCR, 0);
        assert_eq!(u.read(reg::MSR), MSR_TERMINAL);
    }

    #[test]
    fn scratch_iir_and_lsr() {
        let mut u = Uart::new();
        u.write(reg::SCR, 0x5a);
        assert_eq!(u.read(reg::SCR), 0x5a);
        assert_eq!(u.read(reg::IIR_FCR), IIR_NONE);
        u.write(reg::IIR_FCR, FCR_ENABLE | 0x06);
        assert_eq!(u.read(reg::IIR_FCR), IIR_NONE | IIR_FIFOS);
        assert_eq!(u.read(reg::LSR), lsr::THR_EMPTY | lsr::TRANSMITTER_EMPTY);
        u.write(reg::LSR, 0);
        u.write(reg::MSR, 0);
        assert_eq!(u.read(reg::LSR), lsr::THR_EMPTY | lsr::TRANSMITTER_EMPTY);
    }

    #[test]
    fn interrupts_thre_and_rx() {
        let mut u = Uart::new();
        assert!(!u.irq());
        u.write(reg::DATA, b'a');
        assert!(!u.irq(), "THRE pending but not enabled");
        u.write(reg::IER, IER_THRE);
        assert!(u.irq());
        assert_eq!(u.read(reg::IIR_FCR), IIR_THRE);
        assert!(!u.irq(), "reading IIR cleared THRE");
        assert_eq!(u.read(reg::IIR_FCR), IIR_NONE);
        assert_eq!(u.write(reg::DATA, b'b'), Some(b'b'));
        assert!(u.irq(), "THR emptied again");
        u.write(reg::IER, 0);
        assert!(!u.irq());
        u.write(reg::IER, IER_THRE);
        assert!(u.irq(), "enabling THRE with THR empty raises it");
        u.write(reg::IER, 0);
        // Received data (loopback) outranks THRE.
        u.write(reg::MCR, MCR_LOOPBACK);
        u.write(reg::DATA, 1);
        u.write(reg::IER, IER_RX | IER_THRE);
        assert_eq!(u.read(reg::IIR_FCR), IIR_RX);
        assert_eq!(u.read(reg::IIR_FCR), IIR_RX, "RX stays until the data is read");
        assert_eq!(u.read(reg::DATA), 1);
        assert_eq!(u.read(reg::IIR_FCR), IIR_THRE);
        assert!(!u.irq());
    }

    #[test]
    fn lines_split_on_newline_and_when_full() {
        let mut buf = LineBuffer::<4>::new();
        assert_eq!(lines(&mut buf, b"ab\r\ncdefg\n"), ["ab", "cdef", "g"]);
        assert!(!buf.pending());
        assert_eq!(lines(&mut buf, b"\xff\n"), ["<invalid UTF-8>"]);
        lines(&mut buf, b"z");
        assert!(buf.pending());
        let mut last = String::new();
        buf.flush(|s| last = s.to_string());
        assert_eq!(last, "z");
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(2000))]
        #[test]
        fn fuzz_never_panics(ops in proptest::collection::vec((any::<bool>(), any::<u8>(), any::<u8>()), 0..128)) {
            let mut u = Uart::new();
            let mut buf = LineBuffer::<8>::new();
            for (write, offset, value) in ops {
                if write {
                    if let Some(b) = u.write(offset, value) {
                        buf.push(b, |s| assert!(s.len() <= 8 || s == "<invalid UTF-8>"));
                    }
                } else {
                    u.read(offset);
                }
            }
        }
    }
}
