//! The ways a PC guest resets the machine: the reset control register at port CF9h (Intel
//! ICH/PCH datasheets, "Reset Control Register": bit 2 RST_CPU starts the reset, bit 1
//! SYS_RST and bit 3 FULL_RST choose its kind; the FADT's RESET_REG names it with value 06h),
//! the 8042 keyboard controller's "pulse output port" command FEh at port 64h, and the fast
//! reset bit 0 of system control port A (92h). Linux `reboot=` tries them (`native_machine_emergency_restart`).
//!
//! Only what a reset needs: the 8042 status register reads 0 (input buffer empty, so
//! `kb_wait` returns at once); its other commands and port 60h are not modelled. Port 92h
//! keeps bit 1 (A20, always on here) for reads.

use crate::pm::PowerEvent;

/// Reset control register.
pub const PORT_RESET_CONTROL: u16 = 0xcf9;
/// 8042 command (write) / status (read) port.
pub const PORT_KBC_COMMAND: u16 = 0x64;
/// System control port A.
pub const PORT_SYSTEM_CONTROL_A: u16 = 0x92;
/// CF9h bit 2: reset the CPU (with SYS_RST/FULL_RST: the platform).
const RST_CPU: u8 = 1 << 2;
/// CF9h bits the register keeps: SYS_RST (1) and FULL_RST (3).
const CF9_STORED: u8 = (1 << 1) | (1 << 3);
/// 8042 command: pulse output port bit 0 (the CPU reset line).
const KBC_PULSE_RESET: u8 = 0xfe;
/// Port 92h bit 0: fast reset; bit 1: A20 gate.
const FAST_RESET: u8 = 1 << 0;
const A20: u8 = 1 << 1;

/// The reset sources' small state.
#[derive(Clone, Debug, Default)]
pub struct Reset {
    cf9: u8,
}

impl Reset {
    pub const fn new() -> Self {
        Reset { cf9: 0 }
    }

    /// True for ports CF9h, 64h and 92h.
    pub fn owns(port: u16) -> bool {
        matches!(port, PORT_RESET_CONTROL | PORT_KBC_COMMAND | PORT_SYSTEM_CONTROL_A)
    }

    /// A guest byte IN.
    pub fn read(&self, port: u16) -> u8 {
        match port {
            PORT_RESET_CONTROL => self.cf9,
            PORT_SYSTEM_CONTROL_A => A20,
            PORT_KBC_COMMAND => 0,
            _ => 0xff,
        }
    }

    /// A guest byte OUT: [`PowerEvent::Reset`] for CF9h with RST_CPU set (06h, 0Eh), 8042
    /// command FEh, or port 92h with bit 0 set.
    pub fn write(&mut self, port: u16, value: u8) -> Option<PowerEvent> {
        let reset = match port {
            PORT_RESET_CONTROL => {
                self.cf9 = value & CF9_STORED;
                value & RST_CPU != 0
            }
            PORT_KBC_COMMAND => value == KBC_PULSE_RESET,
            PORT_SYSTEM_CONTROL_A => value & FAST_RESET != 0,
            _ => false,
        };
        reset.then_some(PowerEvent::Reset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_sources() {
        let mut r = Reset::new();
        // Linux reboot=pci: 02h (SYS_RST), then 06h; the FADT RESET_VALUE 06h alone.
        assert_eq!(r.write(0xcf9, 0x02), None);
        assert_eq!(r.read(0xcf9), 0x02);
        assert_eq!(r.write(0xcf9, 0x06), Some(PowerEvent::Reset));
        assert_eq!(r.write(0xcf9, 0x0e), Some(PowerEvent::Reset));
        assert_eq!(r.read(0xcf9), 0x0a);
        // reboot=kbd: wait for the input buffer, then FEh.
        assert_eq!(r.read(0x64) & 0x02, 0);
        assert_eq!(r.write(0x64, 0xfe), Some(PowerEvent::Reset));
        assert_eq!(r.write(0x64, 0xd1), None);
        // Port 92h fast reset; A20 stays on.
        assert_eq!(r.read(0x92), 0x02);
        assert_eq!(r.write(0x92, 0x02), None);
        assert_eq!(r.write(0x92, 0x03), Some(PowerEvent::Reset));
        assert!(Reset::owns(0xcf9) && Reset::owns(0x64) && Reset::owns(0x92) && !Reset::owns(0x60));
        for port in 0..=u16::MAX {
            for value in [0u8, 0xff] {
                let _ = (r.write(port, value), r.read(port));
            }
        }
    }
}
