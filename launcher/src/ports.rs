//! The port I/O the launcher handles in user space (KVM's in-kernel irqchip and PIT take the
//! 8259s, the 8254 and port 61h): COM1 as a 16550A (`pc::uart`, with loopback and scratch so
//! the image's UART probe accepts it), the exit port 0xf4 (the guest's status), the reset
//! sources (`pc::reset`: CF9h, the 8042's FEh, port 92h), and every other port reading
//! all-ones (no device), as on a PC without the device and as a turtles L0 answers them. Pure: the run loop feeds it exits and
//! acts on the [`PortAction`] it returns, so the tests need no /dev/kvm.

use pc::reset::Reset;
use pc::uart::{COM1, LineBuffer, Uart};

/// The exit device: a write ends the run with the byte as the guest's status (turtles L0's
/// exit port and QEMU's isa-debug-exit).
pub const EXIT_PORT: u16 = 0xf4;
/// COM1's eight registers.
const COM1_PORTS: core::ops::RangeInclusive<u16> = COM1..=COM1 + 7;
/// Longest guest line before it is printed in pieces.
pub const LINE_MAX: usize = 512;

/// What the run loop does after a port write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortAction {
    /// Resume the guest.
    Continue,
    /// The guest wrote its status to the exit port: stop and exit with it.
    Exit(u8),
    /// The guest reset the machine.
    Reset,
}

/// The user-space ports of one guest.
pub struct Ports {
    uart: Uart,
    reset: Reset,
    line: LineBuffer<LINE_MAX>,
    /// Complete lines the guest printed, waiting to be written out.
    lines: Vec<String>,
}

impl Default for Ports {
    fn default() -> Self {
        Ports { uart: Uart::new(), reset: Reset::new(), line: LineBuffer::new(), lines: Vec::new() }
    }
}

impl Ports {
    /// A guest IN of `data.len()` bytes from `port`.
    pub fn read(&mut self, port: u16, data: &mut [u8]) {
        match port {
            p if COM1_PORTS.contains(&p) && data.len() == 1 => {
                data[0] = self.uart.read((p - COM1) as u8);
            }
            p if Reset::owns(p) && data.len() == 1 => data[0] = self.reset.read(p),
            _ => data.fill(0xff),
        }
    }

    /// A guest OUT of `data` to `port`.
    pub fn write(&mut self, port: u16, data: &[u8]) -> PortAction {
        let Some(&first) = data.first() else { return PortAction::Continue };
        match port {
            EXIT_PORT => PortAction::Exit(first),
            p if Reset::owns(p) && data.len() == 1 => match self.reset.write(p, first) {
                Some(_) => PortAction::Reset,
                None => PortAction::Continue,
            },
            p if COM1_PORTS.contains(&p) && data.len() == 1 => {
                if let Some(byte) = self.uart.write((p - COM1) as u8, first) {
                    let lines = &mut self.lines;
                    self.line.push(byte, |l| lines.push(l.to_string()));
                }
                PortAction::Continue
            }
            _ => PortAction::Continue,
        }
    }

    /// COM1's interrupt line (IRQ 4).
    pub fn uart_irq(&self) -> bool {
        self.uart.irq()
    }

    /// The lines completed since the last call.
    pub fn take_lines(&mut self) -> Vec<String> {
        std::mem::take(&mut self.lines)
    }

    /// A partial last line, if the guest left one (printed when the run ends).
    pub fn take_partial(&mut self) -> Option<String> {
        if !self.line.pending() {
            return None;
        }
        let mut out = None;
        self.line.flush(|l| out = Some(l.to_string()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pc::uart::{lsr, reg};

    fn out(p: &mut Ports, port: u16, byte: u8) -> PortAction {
        p.write(port, &[byte])
    }

    fn inb(p: &mut Ports, port: u16) -> u8 {
        let mut b = [0];
        p.read(port, &mut b);
        b[0]
    }

    #[test]
    fn uart_lines_come_out_whole() {
        let mut p = Ports::default();
        for b in b"hello\r\nwor" {
            assert_eq!(out(&mut p, COM1, *b), PortAction::Continue);
        }
        assert_eq!(p.take_lines(), ["hello"]);
        assert!(p.take_lines().is_empty());
        assert_eq!(p.take_partial().as_deref(), Some("wor"));
        assert_eq!(p.take_partial(), None);
        assert_ne!(inb(&mut p, COM1 + u16::from(reg::LSR)) & lsr::THR_EMPTY, 0);
    }

    #[test]
    fn uart_probe_sees_scratch_and_loopback() {
        let mut p = Ports::default();
        out(&mut p, COM1 + u16::from(reg::SCR), 0x5a);
        assert_eq!(inb(&mut p, COM1 + u16::from(reg::SCR)), 0x5a);
        // Loopback: a byte sent comes back in the receive buffer and is not printed.
        out(&mut p, COM1 + u16::from(reg::MCR), 0x1e);
        out(&mut p, COM1, 0xae);
        assert_ne!(inb(&mut p, COM1 + u16::from(reg::LSR)) & lsr::DATA_READY, 0);
        assert_eq!(inb(&mut p, COM1), 0xae);
        assert_eq!(p.take_partial(), None);
    }

    #[test]
    fn uart_interrupt_follows_ier() {
        let mut p = Ports::default();
        assert!(!p.uart_irq());
        out(&mut p, COM1 + u16::from(reg::IER), 0x02); // THRE
        assert!(p.uart_irq());
        inb(&mut p, COM1 + u16::from(reg::IIR_FCR)); // reading IIR clears THRE
        assert!(!p.uart_irq());
    }

    #[test]
    fn exit_reset_and_absent_ports() {
        let mut p = Ports::default();
        assert_eq!(out(&mut p, EXIT_PORT, 42), PortAction::Exit(42));
        assert_eq!(p.write(EXIT_PORT, &[7, 0, 0, 0]), PortAction::Exit(7));
        assert_eq!(out(&mut p, 0xcf9, 0x02), PortAction::Continue);
        assert_eq!(out(&mut p, 0xcf9, 0x06), PortAction::Reset);
        assert_eq!(out(&mut p, 0x64, 0xfe), PortAction::Reset);
        assert_eq!(out(&mut p, 0x80, 1), PortAction::Continue);
        assert_eq!(p.write(0x80, &[]), PortAction::Continue);
        let mut d = [0u8; 4];
        p.read(0xcfc, &mut d);
        assert_eq!(d, [0xff; 4]);
        // A wide access to COM1 is not a UART access.
        let mut w = [0u8; 2];
        p.read(COM1, &mut w);
        assert_eq!(w, [0xff; 2]);
    }
}
