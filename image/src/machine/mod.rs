//! L0's device model for its guest: the port I/O it emulates (SDM Vol. 3C 28.1: unconditional
//! I/O exiting sends every port access here), the local APIC (its xAPIC page through EPT
//! violations, its x2APIC MSRs through the MSR exits, its interrupts through
//! [`crate::vmx::interrupts`]) and the I/O APIC (its page at 0xfec00000 through EPT
//! violations). The APIC, I/O APIC, PICs, PIT, RTC, ACPI PM block, reset ports and UART are
//! pure models from the `pc` crate; this module feeds them the ports and the time (the TSC)
//! and wires their interrupt lines: ISA IRQ n goes to the 8259s' input n and to I/O APIC pin
//! n, except IRQ 0 (the PIT), which reaches pin 2 as the MADT's override says (the RTC's
//! IRQ 8 edges go to input 8 of the slave 8259 and pin 8, as on a PC); I/O APIC
//! messages (fixed or lowest-priority, one processor) land in the local APIC's IRR, a
//! level-triggered one with its TMR bit, whose EOI goes back to the I/O APIC (the ACPI SCI on
//! IRQ 9 is level-triggered).

pub mod assigned;
pub mod serial;
pub mod virtio;

use pc::ioapic::{DeliveryMode, IoApic, Trigger, redir};
use pc::lapic::{LocalApic, reg};
use pc::pci::PciConfig;
use pc::pic::Pic;
use pc::pit::Pit;
use pc::pm::{Pm, PowerEvent};
use pc::reset::Reset;
use pc::rtc::Rtc;

use crate::arch::cpu;
use crate::ratelimit::RateLimit;
use assigned::Assigned;
use serial::Serial;
use virtio::{GuestIo, Window};

/// The guest's exit device (QEMU's isa-debug-exit convention): a write ends the guest.
pub const EXIT_PORT: u16 = 0xf4;
/// POST code port, used by firmware and kernels as an I/O delay.
const POST_PORT: u16 = 0x80;
/// Bochs' shutdown port; a guest writing it is ignored (only the exit port ends a guest).
const BOCHS_SHUTDOWN: u16 = 0x8900;
/// Ports of PC devices this machine does not have, which guests probe: COM3 and COM4, the
/// Super I/O configuration indices (2Eh/4Eh), the DMA page registers and PCI mechanism #2's
/// CFAh/CFBh. They read all-ones (nothing there) without a warning. (COM2 is left to the
/// unknown-port warning, which the bad-guest tests use.)
const ABSENT: [core::ops::RangeInclusive<u16>; 6] =
    [0x3e8..=0x3ef, 0x2e8..=0x2ef, 0x2e..=0x2f, 0x4e..=0x4f, 0x81..=0x8f, 0xcfa..=0xcfb];

/// COM1's ISA IRQ.
const COM1_IRQ: u8 = 4;
/// The I/O APIC pin the PIT's IRQ 0 reaches (the MADT's interrupt source override).
const PIT_GSI: u8 = 2;
/// The RTC's ISA IRQ (the slave 8259's input 0; I/O APIC pin 8, no override).
const RTC_IRQ: u8 = 8;
/// The guest's wall clock at power-on: 2026-01-01 00:00:00 UTC, the same every run.
const RTC_EPOCH: i64 = 1_767_225_600;

/// What a port write asked of L0.
pub enum PortEffect {
    None,
    /// The guest wrote its exit status to [`EXIT_PORT`].
    Exit(u8),
    /// The guest entered ACPI S5 (PM1a control SLP_EN with SLP_TYP 5): powered off.
    PowerOff,
    /// The guest reset the machine (CF9h, the 8042's pulse or port 92h): a reboot.
    Reset,
}

/// The devices of one guest.
pub struct Devices {
    pub com1: Serial,
    /// The two 8259As, behind the local APIC's LINT0 (virtual wire).
    pic: Pic,
    /// The 8254 timer and port 61h (channel 2's gate and output); channel 0 drives IRQ0.
    pit: Pit,
    /// The I/O APIC at 0xfec00000 (its page is left out of EPT01).
    ioapic: IoApic,
    /// RTC and CMOS RAM at 70h/71h.
    rtc: Rtc,
    /// ACPI PM1a event/control blocks and the PM timer at 600h.
    pm: Pm,
    /// The reset sources: CF9h, the 8042's command port, port 92h.
    reset: Reset,
    /// I/O APIC pin 2 (the PIT's IRQ 0) is unmasked; kept current by `refresh_irq0`.
    irq0_ioapic: bool,
    /// COM1's interrupt line as last seen (edges raise IRQ 4 at the 8259).
    com1_irq: bool,
    /// The ACPI SCI line as last seen.
    sci: bool,
    /// The guest's local APIC (changed only through [`Self::with_lapic`], which keeps
    /// `work` current).
    lapic: LocalApic,
    /// Some interrupt source may need attention ([`Self::interrupt_work`]): recomputed after
    /// every change to the APIC, PIC or PIT so the check before each VM entry is one load.
    work: bool,
    /// TSC of the next PIT IRQ0 edge the guest could receive (channel 0 counting and IRQ0
    /// unmasked at the PIC); kept current on PIT and PIC writes.
    irq0_deadline: Option<u64>,
    /// TSC at which the RTC may next raise IRQ 8 (an interrupt enabled in register B); kept
    /// current on RTC accesses and when it fires.
    rtc_deadline: Option<u64>,
    /// PCI configuration mechanism #1 with the host bridge.
    pci: PciConfig,
    /// A physical function assigned to the guest, reached through `pci` (boxed: most guests
    /// have none, and `Devices` stays the size the exit paths were tuned with).
    assigned: Option<alloc::boxed::Box<Assigned>>,
    /// Ports already reported as unknown (one bit per port), so each is logged once.
    reported: [u64; 1024],
    /// The virtio-mmio devices the config offers (`guest_devices`), and their interrupt lines
    /// as last seen.
    virtio: GuestIo,
    virtio_lines: [bool; 2],
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
            ioapic: IoApic::new(0),
            rtc: Rtc::new(tsc_hz, RTC_EPOCH, cpu::rdtsc()),
            pm: Pm::new(tsc_hz),
            reset: Reset::new(),
            irq0_ioapic: false,
            com1_irq: false,
            sci: false,
            lapic,
            work: false,
            irq0_deadline: None,
            rtc_deadline: None,
            pci: PciConfig::new(),
            assigned: None,
            reported: [0; 1024],
            virtio: GuestIo::new(),
            virtio_lines: [false; 2],
        }
    }

    /// Puts a physical function on the guest's PCI bus (see [`assigned`]); with `intx`, its
    /// interrupt is forwarded to that GSI of the guest's I/O APIC (`vmx::intx`).
    pub fn assign(&mut self, mut function: Assigned, intx: Option<u8>) {
        function.intx = intx.and_then(|gsi| pc::intx::ForwardedLine::new(gsi, &mut self.ioapic));
        self.assigned = Some(alloc::boxed::Box::new(function));
    }

    /// The guest's GSI the assigned function's INTx is forwarded to.
    pub fn intx_gsi(&self) -> Option<u8> {
        self.assigned.as_ref()?.intx.map(|l| l.gsi())
    }

    /// The level below took the assigned function's interrupt (and masked it there): its GSI
    /// is asserted on the guest's I/O APIC.
    pub fn intx_assert(&mut self) {
        if let Some(line) = self.assigned.as_mut().and_then(|a| a.intx.as_mut()) {
            line.assert(&mut self.ioapic);
            self.route_ioapic();
            self.refresh_work();
        }
    }

    /// The guest's EOI broadcast for level-triggered `vector`, before the I/O APIC sees it:
    /// if it ends the forwarded line's interrupt, the line is deasserted and the entry below
    /// unmasked (the device fires again if it still asserts).
    fn intx_eoi(&mut self, vector: u8) {
        if let Some(line) = self.assigned.as_mut().and_then(|a| a.intx.as_mut())
            && line.eoi(&mut self.ioapic, vector)
        {
            crate::arch::apic::ioapic_set_masked(line.gsi(), false);
        }
    }

    /// The assigned function's memory BARs (address, size), which EPT01 maps 1:1.
    pub fn assigned_mmio(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.assigned.iter().flat_map(|a| a.filter().bars()).filter(|b| !b.3).map(|b| (b.1, b.2))
    }

    /// The assigned function, if CONFIG_DATA port `port` reaches it now, and the offset.
    fn assigned_target(&mut self, port: u16) -> Option<(&mut Assigned, u16)> {
        let (bus, device, function, offset) = self.pci.target(port)?;
        let a = self.assigned.as_deref_mut().filter(|a| a.is(bus, device, function))?;
        Some((a, offset))
    }

    /// Anything that may interrupt the guest: an APIC request or armed timer, a PIC request
    /// or a coming IRQ0 edge. Cheap: checked before every VM entry.
    #[inline(always)]
    pub fn interrupt_work(&self) -> bool {
        self.work
    }

    fn refresh_work(&mut self) {
        self.work = self.lapic.has_work()
            || self.pic.has_requests()
            || self.irq0_deadline.is_some()
            || self.rtc_deadline.is_some();
    }

    /// The guest's local APIC, read-only.
    pub fn lapic(&self) -> &LocalApic {
        &self.lapic
    }

    /// Runs `f` on the guest's local APIC (a register or MSR access) and notes what it
    /// changed for interrupt delivery.
    pub fn with_lapic<R>(&mut self, f: impl FnOnce(&mut LocalApic) -> R) -> R {
        let r = f(&mut self.lapic);
        if let Some(icr) = self.lapic.take_unsupported_ipi() {
            static NOT_HONORED: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(8);
            if NOT_HONORED.allow() {
                log::warn!(
                    "local APIC: IPI not honored (ICR {icr:#x}: SMI, a reserved delivery mode, \
                     or a mode other than fixed with the self or all-including-self shorthand)"
                );
            }
        }
        // The EOI of a level-triggered vector goes back to the I/O APIC, which may resend.
        let mut eoi = false;
        while let Some(vector) = self.lapic.take_level_eoi() {
            self.intx_eoi(vector);
            self.ioapic.eoi(vector);
            eoi = true;
        }
        if eoi {
            self.route_ioapic();
        }
        self.refresh_work();
        r
    }

    /// Brings the interrupt sources up to `now`: the APIC timer, and PIT edges into IRQ0.
    pub fn poll_interrupts(&mut self, now: u64) {
        self.lapic.tick(now);
        if self.irq0_deadline.is_some_and(|t| now >= t) {
            self.fire_irq0(now);
        }
        if self.rtc_deadline.is_some_and(|t| now >= t) {
            self.refresh_rtc_irq(now);
        }
        self.refresh_work();
    }

    /// Raises IRQ 8 for a new edge of the RTC's interrupt line (register C's IRQF set) at
    /// the 8259s' input 8 and I/O APIC pin 8, and notes when the RTC may fire next.
    #[inline(never)]
    fn refresh_rtc_irq(&mut self, now: u64) {
        if self.rtc.take_irq8(now) {
            self.pic.raise(RTC_IRQ);
            self.ioapic.pulse(RTC_IRQ);
            self.route_ioapic();
        }
        self.rtc_deadline = self.rtc.next_event(now);
        self.refresh_work();
    }

    /// The PIT's IRQ 0 deadline passed: its edges go to the 8259s and I/O APIC pin 2.
    #[inline(never)]
    fn fire_irq0(&mut self, now: u64) {
        if self.pit.take_irq0(now) > 0 {
            self.pic.raise(0);
            self.ioapic.pulse(PIT_GSI);
            self.route_ioapic();
        }
        self.refresh_irq0(now);
    }

    /// Hands the I/O APIC's waiting messages to the local APIC (one processor: every
    /// destination is it). ExtINT is the 8259s' path, which reaches the APIC through LINT0
    /// already; SMI, NMI, INIT and reserved modes are not delivered.
    fn route_ioapic(&mut self) {
        while let Some(m) = self.ioapic.take() {
            match (m.mode, m.trigger) {
                (DeliveryMode::Fixed | DeliveryMode::LowestPriority, Trigger::Edge) => {
                    self.lapic.raise(m.vector)
                }
                (DeliveryMode::Fixed | DeliveryMode::LowestPriority, Trigger::Level) => {
                    self.lapic.raise_level(m.vector)
                }
                _ => {}
            }
        }
    }

    /// I/O APIC pin `pin` is unmasked.
    fn ioapic_unmasked(&self, pin: u8) -> bool {
        self.ioapic.entry(pin).is_some_and(|e| e & redir::MASKED == 0)
    }

    /// Follows COM1's interrupt line after a UART access: a rising edge raises IRQ 4 at the
    /// 8259s, and the level drives I/O APIC pin 4.
    fn refresh_com1_irq(&mut self) {
        let level = self.com1.irq();
        if level != self.com1_irq {
            if level {
                self.pic.raise(COM1_IRQ);
            }
            self.com1_irq = level;
            self.ioapic.set_line(COM1_IRQ, level);
            self.route_ioapic();
            self.refresh_work();
        }
    }

    /// Follows the ACPI SCI (level, active high on IRQ 9) after a PM register access: a
    /// status bit with its enable set asserts it until the guest clears the status.
    fn refresh_sci(&mut self, now: u64) {
        let level = self.pm.sci(now);
        if level != self.sci {
            if level {
                self.pic.raise(pc::pm::SCI_IRQ);
            }
            self.sci = level;
            match self.assigned.as_mut().and_then(|a| a.intx.as_mut()) {
                // The assigned function's INTx shares the pin: their wired OR.
                Some(line) if line.gsi() == pc::pm::SCI_IRQ => {
                    line.set_others(&mut self.ioapic, level)
                }
                _ => self.ioapic.set_line(pc::pm::SCI_IRQ, level),
            }
            self.route_ioapic();
            self.refresh_work();
        }
    }

    /// The I/O APIC's page is the guest-physical page of `gpa`.
    pub fn ioapic_owns(gpa: u64) -> bool {
        IoApic::owns(gpa)
    }

    /// A guest read of the I/O APIC register at `offset` in its page.
    pub fn ioapic_read(&self, offset: u32) -> u32 {
        self.ioapic.read_mmio(offset)
    }

    /// A guest write of the I/O APIC register at `offset` in its page: unmasking may send a
    /// waiting message, and pin 2's mask gates the PIT's IRQ 0 deadline.
    pub fn ioapic_write(&mut self, offset: u32, value: u32) {
        self.ioapic.write_mmio(offset, value);
        if let Some(line) = self.assigned.as_ref().and_then(|a| a.intx) {
            // The line keeps its assertion state in whatever polarity the guest programs.
            line.sync(&mut self.ioapic);
        }
        self.route_ioapic();
        self.refresh_irq0(cpu::rdtsc());
    }

    /// The virtio-mmio window `gpa` is in, if the guest has that device.
    pub fn virtio_owns(&self, gpa: u64) -> Option<Window> {
        self.virtio.owns(gpa)
    }

    /// A guest load of `size` bytes at `gpa` in virtio window `w`.
    pub fn virtio_read(&self, w: Window, gpa: u64, size: u8) -> u64 {
        self.virtio.read(w, gpa, size)
    }

    /// A guest store to virtio window `w`: may serve queues (guest memory `mem`) and change
    /// the device's interrupt line.
    pub fn virtio_write(
        &mut self,
        mem: &mut dyn vdev::mem::GuestRam,
        w: Window,
        gpa: u64,
        size: u8,
        value: u64,
    ) {
        self.virtio.write(mem, w, gpa, size, value);
        self.refresh_virtio();
    }

    /// Frames that arrived for the guest's virtio-net go into its receive buffers (called
    /// after L0 polled its NIC).
    pub fn virtio_poll(&mut self, mem: &mut dyn vdev::mem::GuestRam) {
        if self.virtio.is_empty() {
            return;
        }
        self.virtio.exchange(mem);
        self.refresh_virtio();
    }

    /// Follows the virtio devices' interrupt lines onto their I/O APIC pins (level-triggered:
    /// an EOI while the line is high delivers again).
    fn refresh_virtio(&mut self) {
        let mut changed = false;
        for (seen, (gsi, level)) in self.virtio_lines.iter_mut().zip(self.virtio.lines()) {
            if *seen != level {
                *seen = level;
                self.ioapic.set_line(gsi, level);
                changed = true;
            }
        }
        if changed {
            self.route_ioapic();
            self.refresh_work();
        }
    }

    /// An NMI and an INIT the guest's APIC sent to its own processor (`pc::lapic`), taken.
    pub fn take_signals(&mut self) -> (bool, bool) {
        let signals = (self.lapic.take_nmi(), self.lapic.take_init());
        self.refresh_work();
        signals
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

    /// The TSC at which the next interrupt source fires (APIC timer, IRQ0 edge, RTC).
    pub fn next_interrupt_deadline(&self) -> Option<u64> {
        let irq0 = self.irq0_deadline.filter(|_| self.pic_passes() || self.irq0_ioapic);
        [self.lapic.next_deadline(), irq0, self.rtc_deadline].into_iter().flatten().min()
    }

    fn pic_passes(&self) -> bool {
        self.lapic.accepts_pic_intr()
    }

    fn refresh_irq0(&mut self, now: u64) {
        self.irq0_ioapic = self.ioapic_unmasked(PIT_GSI);
        self.irq0_deadline =
            if self.pic.unmasked(0) || self.irq0_ioapic { self.pit.next_irq0(now) } else { None };
        self.refresh_work();
    }

    /// A guest IN of `size` bytes from `port`.
    #[inline]
    pub fn read(&mut self, port: u16, size: u8) -> u32 {
        // The POST port is the I/O round trip the workload measures: kept off the device
        // dispatch.
        if port == POST_PORT {
            return 0;
        }
        self.read_device(port, size)
    }

    #[inline(never)]
    fn read_device(&mut self, port: u16, size: u8) -> u32 {
        match port {
            EXIT_PORT => 0,
            p if Serial::owns(p) => {
                let value = self.com1.read(p);
                self.refresh_com1_irq();
                u32::from(value)
            }
            p if Pic::owns(p) => u32::from(self.pic.read(p)),
            p if Pit::owns(p) => u32::from(self.pit.read(p, cpu::rdtsc())),
            p if Rtc::owns(p) => {
                let now = cpu::rdtsc();
                let value = self.rtc.read(p, now);
                self.refresh_rtc_irq(now);
                u32::from(value)
            }
            p if Pm::owns(p) => self.pm.read(p, size, cpu::rdtsc()),
            p if Reset::owns(p) => u32::from(self.reset.read(p)),
            p if PciConfig::owns(p, size) => match self.assigned_target(p) {
                Some((a, offset)) => a.read(offset, size),
                None => self.pci.read(p, size),
            },
            p if ABSENT.iter().any(|r| r.contains(&p)) => ones(size),
            _ => {
                self.unknown(port, "read");
                ones(size)
            }
        }
    }

    /// A guest OUT of `size` bytes of `value` to `port`.
    #[inline]
    pub fn write(&mut self, port: u16, size: u8, value: u32) -> PortEffect {
        // As in `read`: the POST port stays off the device dispatch.
        if port == POST_PORT {
            return PortEffect::None;
        }
        self.write_device(port, size, value)
    }

    #[inline(never)]
    fn write_device(&mut self, port: u16, size: u8, value: u32) -> PortEffect {
        match port {
            BOCHS_SHUTDOWN => {}
            EXIT_PORT => return PortEffect::Exit(value as u8),
            p if Serial::owns(p) => {
                self.com1.write(p, value as u8);
                self.refresh_com1_irq();
            }
            p if Pic::owns(p) => {
                self.pic.write(p, value as u8);
                self.refresh_irq0(cpu::rdtsc());
            }
            p if Pit::owns(p) => {
                let now = cpu::rdtsc();
                self.pit.write(p, value as u8, now);
                self.refresh_irq0(now);
            }
            p if Rtc::owns(p) => {
                let now = cpu::rdtsc();
                self.rtc.write(p, value as u8, now);
                self.refresh_rtc_irq(now);
            }
            p if Pm::owns(p) => {
                let now = cpu::rdtsc();
                let effect = power(self.pm.write(p, size, value, now));
                self.refresh_sci(now);
                return effect;
            }
            p if Reset::owns(p) => return power(self.reset.write(p, value as u8)),
            p if PciConfig::owns(p, size) => match self.assigned_target(p) {
                Some((a, offset)) => a.write(offset, size, value),
                None => self.pci.write(p, value),
            },
            p if ABSENT.iter().any(|r| r.contains(&p)) => {}
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

fn power(event: Option<PowerEvent>) -> PortEffect {
    match event {
        None => PortEffect::None,
        Some(PowerEvent::PowerOff) => PortEffect::PowerOff,
        Some(PowerEvent::Reset) => PortEffect::Reset,
    }
}

fn ones(size: u8) -> u32 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        _ => 0xffff_ffff,
    }
}
