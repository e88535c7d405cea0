//! L0's device model for its guest: the port I/O it emulates (SDM Vol. 3C 28.1: unconditional
//! I/O exiting sends every port access here), and the local APIC (its xAPIC page through EPT
//! violations, its x2APIC MSRs through the MSR exits, its interrupts through
//! [`crate::vmx::interrupts`]). The APIC and the PIT are pure models from
//! `nested::devices`; this module feeds them the ports and the time (the TSC).

pub mod pic;
pub mod serial;

use nested::devices::lapic::LocalApic;
use nested::devices::pit::Pit;

use crate::arch::cpu;
use crate::ratelimit::RateLimit;
use pic::Pic;
use serial::Serial;

/// The guest's exit device (QEMU's isa-debug-exit convention): a write ends the guest.
pub const EXIT_PORT: u16 = 0xf4;
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: core::ops::RangeInclusive<u16> = 0xcfc..=0xcff;
/// POST code port, used by firmware and kernels as an I/O delay.
const POST_PORT: u16 = 0x80;
/// Bochs' shutdown port; a guest writing it is ignored (only the exit port ends a guest).
const BOCHS_SHUTDOWN: u16 = 0x8900;

/// What a port write asked of L0.
pub enum PortEffect {
    None,
    /// The guest wrote its exit status to [`EXIT_PORT`].
    Exit(u8),
}

/// The devices of one guest.
pub struct Devices {
    pub com1: Serial,
    pic: Pic,
    /// The 8254 timer and port 61h (channel 2's gate and output).
    pit: Pit,
    /// The guest's local APIC.
    pub lapic: LocalApic,
    pci_address: u32,
    /// Ports already reported as unknown (one bit per port), so each is logged once.
    reported: [u64; 1024],
}

static UNKNOWN_PORTS: RateLimit = RateLimit::new(32);

impl Devices {
    /// The devices of a guest at `depth` whose local APIC has `apic_id`; `tsc_hz` converts
    /// the TSC to PIT time.
    pub fn new(depth: u32, apic_id: u32, tsc_hz: u64) -> Self {
        Devices {
            com1: Serial::new(depth),
            pic: Pic::new(),
            pit: Pit::new(tsc_hz),
            lapic: LocalApic::new(apic_id),
            pci_address: 0,
            reported: [0; 1024],
        }
    }

    /// A guest IN of `size` bytes from `port`.
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        match port {
            p if Serial::owns(p) => u32::from(self.com1.read(p)),
            p if Pic::owns(p) => u32::from(self.pic.read(p)),
            p if Pit::owns(p) => u32::from(self.pit.read(p, cpu::rdtsc())),
            PCI_CONFIG_ADDRESS => self.pci_address,
            // No PCI devices: every configuration read returns all-ones ("no device").
            p if PCI_CONFIG_DATA.contains(&p) => ones(size),
            POST_PORT | EXIT_PORT => 0,
            _ => {
                self.unknown(port, "read");
                ones(size)
            }
        }
    }

    /// A guest OUT of `size` bytes of `value` to `port`.
    pub fn write(&mut self, port: u16, size: u8, value: u32) -> PortEffect {
        match port {
            p if Serial::owns(p) => self.com1.write(p, value as u8),
            p if Pic::owns(p) => self.pic.write(p, value as u8),
            p if Pit::owns(p) => self.pit.write(p, value as u8, cpu::rdtsc()),
            EXIT_PORT => return PortEffect::Exit(value as u8),
            PCI_CONFIG_ADDRESS if size == 4 => self.pci_address = value,
            p if PCI_CONFIG_DATA.contains(&p) => {}
            POST_PORT | BOCHS_SHUTDOWN => {}
            _ => self.unknown(port, "write"),
        }
        PortEffect::None
    }

    fn unknown(&mut self, port: u16, what: &str) {
        let (word, bit) = (usize::from(port / 64), port % 64);
        if self.reported[word] & (1 << bit) == 0 {
            self.reported[word] |= 1 << bit;
            if UNKNOWN_PORTS.allow() {
                log::warn!(
                    "guest {what} of unknown I/O port {port:#x}: reads all-ones, writes ignored"
                );
            }
        }
    }
}

fn ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}
