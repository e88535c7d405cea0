//! L0's device model for its guest: the port I/O it emulates (SDM Vol. 3C 28.1: unconditional
//! I/O exiting sends every port access here), and the local APIC (its xAPIC page through EPT
//! violations, its x2APIC MSRs through the MSR exits, its interrupts through
//! [`crate::vmx::interrupts`]). The APIC and the PIT are pure models from
//! the `pc` crate; this module feeds them the ports and the time (the TSC).

pub mod serial;

use pc::lapic::{LocalApic, reg};
use pc::pic::Pic;
use pc::pit::Pit;

use crate::arch::cpu;
use crate::ratelimit::RateLimit;
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
    /// The two 8259As, behind the local APIC's LINT0 (virtual wire).
    pic: Pic,
    /// The 8254 timer and port 61h (channel 2's gate and output); channel 0 drives IRQ0.
    pit: Pit,
    /// The guest's local APIC (changed only through [`Self::with_lapic`], which keeps
    /// `work` current).
    lapic: LocalApic,
    /// Some interrupt source may need attention ([`Self::interrupt_work`]): recomputed after
    /// every change to the APIC, PIC or PIT so the check before each VM entry is one load.
    work: bool,
    /// TSC of the next PIT IRQ0 edge the guest could receive (channel 0 counting and IRQ0
    /// unmasked at the PIC); kept current on PIT and PIC writes.
    irq0_deadline: Option<u64>,
    pci_address: u32,
    /// Ports already reported as unknown (one bit per port), so each is logged once.
    reported: [u64; 1024],
}

static UNKNOWN_PORTS: RateLimit = RateLimit::new(32);

impl Devices {
    /// The devices of a guest at `depth` whose local APIC has `apic_id`; `tsc_hz` converts
    /// the TSC to PIT time.
    pub fn new(depth: u32, apic_id: u32, tsc_hz: u64) -> Self {
        let mut lapic = LocalApic::new(apic_id);
        // The state PC firmware hands over (SeaBIOS smp.c): the APIC software-enabled in
        // virtual-wire mode, the 8259s' output through LINT0 (ExtINT) and NMIs on LINT1.
        lapic.write_mmio(reg::SVR, 0x1ff, 0);
        lapic.write_mmio(reg::LVT_LINT0, 0x700, 0);
        lapic.write_mmio(reg::LVT_LINT1, 0x400, 0);
        Devices {
            com1: Serial::new(depth),
            pic: Pic::new(),
            pit: Pit::new(tsc_hz),
            lapic,
            work: false,
            irq0_deadline: None,
            pci_address: 0,
            reported: [0; 1024],
        }
    }

    /// Anything that may interrupt the guest: an APIC request or armed timer, a PIC request
    /// or a coming IRQ0 edge. Cheap: checked before every VM entry.
    #[inline(always)]
    pub fn interrupt_work(&self) -> bool {
        self.work
    }

    fn refresh_work(&mut self) {
        self.work =
            self.lapic.has_work() || self.pic.has_requests() || self.irq0_deadline.is_some();
    }

    /// The guest's local APIC, read-only.
    pub fn lapic(&self) -> &LocalApic {
        &self.lapic
    }

    /// Runs `f` on the guest's local APIC (a register or MSR access) and notes what it
    /// changed for interrupt delivery.
    pub fn with_lapic<R>(&mut self, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        let r = f(&mut self.lapic);
        self.refresh_work();
        r
    }

    /// Brings the interrupt sources up to `now`: the APIC timer, and PIT edges into IRQ0.
    pub fn poll_interrupts(&mut self, now: u64) {
        self.lapic.tick(now);
        if self.irq0_deadline.is_some_and(|t| now >= t) {
            if self.pit.take_irq0(now) > 0 {
                self.pic.raise(0);
            }
            self.refresh_irq0(now);
        }
        self.refresh_work();
    }

    /// The vector the guest's processor would take now: the APIC's, else the 8259s' when
    /// the APIC passes them through (virtual wire or APIC disabled).
    pub fn pending_interrupt(&self) -> Option<u8> {
        self.lapic.pending().or_else(|| self.pic_passes().then(|| self.pic.pending()).flatten())
    }

    /// Interrupt acknowledge for [`Self::pending_interrupt`]'s vector.
    pub fn acknowledge_interrupt(&mut self) -> Option<u8> {
        let vector = if self.lapic.pending().is_some() {
            self.lapic.acknowledge()
        } else if self.pic_passes() {
            self.pic.acknowledge()
        } else {
            None
        };
        self.refresh_work();
        vector
    }

    /// The TSC at which the next interrupt source fires (APIC timer, IRQ0 edge).
    pub fn next_interrupt_deadline(&self) -> Option<u64> {
        let irq0 = self.irq0_deadline.filter(|_| self.pic_passes());
        match (self.lapic.next_deadline(), irq0) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn pic_passes(&self) -> bool {
        self.lapic.accepts_pic_intr()
    }

    fn refresh_irq0(&mut self, now: u64) {
        self.irq0_deadline = if self.pic.unmasked(0) { self.pit.next_irq0(now) } else { None };
        self.refresh_work();
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
            p if Pic::owns(p) => {
                self.pic.write(p, value as u8);
                self.refresh_irq0(cpu::rdtsc());
            }
            p if Pit::owns(p) => {
                let now = cpu::rdtsc();
                self.pit.write(p, value as u8, now);
                self.refresh_irq0(now);
            }
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
