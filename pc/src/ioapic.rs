//! The 82093AA I/O APIC at 0xfec00000 as a PC guest sees it: the indirect register window
//! (IOREGSEL at offset 00h, IOWIN at 10h), the ID, version (11h, 24 pins) and arbitration
//! registers, and 24 redirection-table entries. Intel 82093AA I/O Advanced Programmable
//! Interrupt Controller (IOAPIC) datasheet, sections 3.1-3.2; remote IRR and EOI broadcast as in
//! SDM Vol. 3A 11.8.5 and KVM's `ioapic.c`.
//!
//! Pins are driven with [`IoApic::set_line`] (the electrical level; the entry's polarity
//! decides whether that is "asserted"). An edge-triggered pin sends one message per
//! assertion edge while unmasked (an edge arriving masked is lost, as on the 82093AA); a
//! level-triggered pin sends while asserted, unmasked and its remote IRR is clear, sets remote
//! IRR when the local APIC accepts the message ([`IoApic::take`]), and sends again after the
//! local APIC's EOI for its vector ([`IoApic::eoi`]) if the line is still asserted.
//!
//! There is one local APIC behind this I/O APIC: [`IoApic::take`] reports the message
//! (vector, trigger mode, delivery mode, destination) and the caller hands fixed and
//! lowest-priority messages to that local APIC (and must set its TMR bit for a level message
//! so the EOI is broadcast back here). Delivery status (bit 12) reads 1 while a message waits.

/// Guest-physical base of the I/O APIC's register window (MP spec / ACPI MADT default).
pub const IOAPIC_BASE: u64 = 0xfec0_0000;
/// Size of the decoded window (one page).
pub const IOAPIC_SIZE: u64 = 0x1000;
/// Number of input pins (redirection-table entries).
pub const IOAPIC_PINS: u8 = 24;
/// The 82093AA's version number (IOAPICVER bits 7:0).
pub const IOAPIC_VERSION: u8 = 0x11;

/// Window offsets (82093AA 3.1).
pub mod offset {
    /// I/O register select (bits 7:0 name the register IOWIN accesses).
    pub const IOREGSEL: u32 = 0x00;
    /// I/O window: the selected 32-bit register.
    pub const IOWIN: u32 = 0x10;
}

/// Register indices selected through IOREGSEL (82093AA 3.2).
pub mod reg {
    /// IOAPICID: bits 27:24 the APIC ID.
    pub const ID: u8 = 0x00;
    /// IOAPICVER: bits 23:16 maximum redirection entry, bits 7:0 version.
    pub const VER: u8 = 0x01;
    /// IOAPICARB: bits 27:24 arbitration ID (read-only).
    pub const ARB: u8 = 0x02;
    /// IOREDTBL0 low dword; entry `n` is at `0x10 + 2n` (low) and `0x11 + 2n` (high).
    pub const REDTBL: u8 = 0x10;
}

/// Redirection-table entry bits (82093AA 3.2.4).
pub mod redir {
    /// Bits 7:0: interrupt vector.
    pub const VECTOR: u64 = 0xff;
    /// Bits 10:8: delivery mode.
    pub const DELIVERY_MODE_SHIFT: u32 = 8;
    /// Bit 11: destination mode (1 = logical).
    pub const DEST_LOGICAL: u64 = 1 << 11;
    /// Bit 12: delivery status (read-only: a message is waiting to be sent).
    pub const DELIVERY_STATUS: u64 = 1 << 12;
    /// Bit 13: input pin polarity (1 = active low).
    pub const ACTIVE_LOW: u64 = 1 << 13;
    /// Bit 14: remote IRR (read-only; level-triggered: accepted by a local APIC, no EOI yet).
    pub const REMOTE_IRR: u64 = 1 << 14;
    /// Bit 15: trigger mode (1 = level).
    pub const LEVEL: u64 = 1 << 15;
    /// Bit 16: interrupt mask.
    pub const MASKED: u64 = 1 << 16;
    /// Bits 63:56: destination field.
    pub const DEST_SHIFT: u32 = 56;
    /// The bits a guest can write (not delivery status, remote IRR or reserved bits 55:17).
    pub const WRITABLE: u64 = 0xff00_0000_0001_afff;
}

/// Delivery mode of a redirection entry (82093AA 3.2.4, bits 10:8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: deliver on the INTR signal of the destination processors.
    Fixed,
    /// 001: to the lowest-priority processor among the destinations.
    LowestPriority,
    /// 010: SMI (vector ignored).
    Smi,
    /// 100: NMI (vector ignored, edge).
    Nmi,
    /// 101: INIT.
    Init,
    /// 111: the external (8259) controller's vector, as an INTA cycle.
    ExtInt,
    /// 011 and 110: reserved encodings.
    Reserved(u8),
}

impl DeliveryMode {
    fn from_bits(bits: u8) -> Self {
        match bits & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            7 => DeliveryMode::ExtInt,
            other => DeliveryMode::Reserved(other),
        }
    }
}

/// Trigger mode of a message (what the local APIC records in its TMR).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Edge,
    Level,
}

/// One interrupt message the I/O APIC sends to the local APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Message {
    /// The input pin (0-23) it came from.
    pub pin: u8,
    pub vector: u8,
    pub trigger: Trigger,
    pub mode: DeliveryMode,
    /// Destination field (bits 63:56): an APIC ID (physical) or a logical mask.
    pub destination: u8,
    /// Destination mode bit 11.
    pub logical: bool,
}

/// The I/O APIC's state.
#[derive(Clone, Debug)]
pub struct IoApic {
    /// IOAPICID bits 27:24.
    id: u8,
    /// The register IOWIN accesses.
    ioregsel: u8,
    /// Redirection entries as written (read-only bits kept out: see `remote_irr`, `waiting`).
    table: [u64; IOAPIC_PINS as usize],
    /// Electrical level of each pin (bit n = pin n high).
    lines: u32,
    /// Remote IRR per pin.
    remote_irr: u32,
    /// Pins with a message waiting for [`IoApic::take`] (delivery status).
    waiting: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new(0)
    }
}

impl IoApic {
    /// Reset state (82093AA 3.0): every entry masked, all other bits zero; `id` is the APIC
    /// ID firmware would program (bits 3:0 used).
    pub const fn new(id: u8) -> Self {
        IoApic {
            id: id & 0xf,
            ioregsel: 0,
            table: [redir::MASKED; IOAPIC_PINS as usize],
            lines: 0,
            remote_irr: 0,
            waiting: 0,
        }
    }

    /// True if `address` falls in the I/O APIC's page at [`IOAPIC_BASE`].
    pub fn owns(address: u64) -> bool {
        address.wrapping_sub(IOAPIC_BASE) < IOAPIC_SIZE
    }

    /// The electrical level input `pin` is driven to, or `None` for a pin beyond 23.
    pub fn line(&self, pin: u8) -> Option<bool> {
        (pin < IOAPIC_PINS).then(|| self.lines & (1 << pin) != 0)
    }

    /// The redirection entry of `pin` as the guest reads it (with delivery status and remote
    /// IRR), or `None` for a pin number beyond 23.
    pub fn entry(&self, pin: u8) -> Option<u64> {
        let e = *self.table.get(usize::from(pin))?;
        let bit = 1u32 << pin;
        let mut e = e & redir::WRITABLE;
        if self.waiting & bit != 0 {
            e |= redir::DELIVERY_STATUS;
        }
        if self.remote_irr & bit != 0 {
            e |= redir::REMOTE_IRR;
        }
        Some(e)
    }

    /// A 32-bit read at `offset` into the window (other offsets read 0).
    pub fn read_mmio(&self, offset: u32) -> u32 {
        match offset {
            offset::IOREGSEL => u32::from(self.ioregsel),
            offset::IOWIN => self.read_register(self.ioregsel),
            _ => 0,
        }
    }

    /// A 32-bit write at `offset` into the window (other offsets are ignored).
    pub fn write_mmio(&mut self, offset: u32, value: u32) {
        match offset {
            offset::IOREGSEL => self.ioregsel = value as u8,
            offset::IOWIN => self.write_register(self.ioregsel, value),
            _ => {}
        }
    }

    fn read_register(&self, index: u8) -> u32 {
        match index {
            reg::ID => u32::from(self.id) << 24,
            reg::VER => u32::from(IOAPIC_PINS - 1) << 16 | u32::from(IOAPIC_VERSION),
            reg::ARB => u32::from(self.id) << 24,
            _ => match Self::redir_index(index)
                .and_then(|(pin, high)| Some((self.entry(pin)?, high)))
            {
                Some((e, true)) => (e >> 32) as u32,
                Some((e, false)) => e as u32,
                None => 0,
            },
        }
    }

    fn write_register(&mut self, index: u8, value: u32) {
        if index == reg::ID {
            self.id = ((value >> 24) & 0xf) as u8;
            return;
        }
        let Some((pin, high)) = Self::redir_index(index) else { return };
        let Some(slot) = self.table.get_mut(usize::from(pin)) else { return };
        let old = *slot;
        let new = if high {
            (old & 0xffff_ffff) | u64::from(value) << 32
        } else {
            (old & !0xffff_ffff) | u64::from(value)
        };
        *slot = new & redir::WRITABLE;
        let bit = 1u32 << pin;
        if new & redir::LEVEL == 0 {
            // An edge-triggered entry has no remote IRR (KVM does the same on a mode change).
            self.remote_irr &= !bit;
        }
        if (old ^ new) & redir::ACTIVE_LOW != 0 && new & redir::LEVEL == 0 {
            // A polarity flip on an edge pin can look like an edge: don't send for it.
            return;
        }
        self.evaluate(pin);
    }

    /// (pin, high dword) of a redirection-table register index.
    fn redir_index(index: u8) -> Option<(u8, bool)> {
        let n = index.checked_sub(reg::REDTBL)?;
        let pin = n / 2;
        (pin < IOAPIC_PINS).then_some((pin, n & 1 != 0))
    }

    fn asserted(&self, pin: u8) -> bool {
        let high = self.lines & (1 << pin) != 0;
        let active_low = self.table[usize::from(pin)] & redir::ACTIVE_LOW != 0;
        high != active_low
    }

    /// Queues a level pin's message if it is asserted, unmasked and not awaiting an EOI.
    fn evaluate(&mut self, pin: u8) {
        let e = self.table[usize::from(pin)];
        let bit = 1u32 << pin;
        if e & redir::LEVEL != 0
            && e & redir::MASKED == 0
            && self.remote_irr & bit == 0
            && self.asserted(pin)
        {
            self.waiting |= bit;
        }
    }

    /// Drives input `pin` to electrical level `high` (pins beyond 23 are ignored). An
    /// assertion edge on an unmasked edge-triggered pin queues one message; a level-triggered
    /// pin queues while asserted (see the module doc).
    pub fn set_line(&mut self, pin: u8, high: bool) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let bit = 1u32 << pin;
        let was = self.asserted(pin);
        if high {
            self.lines |= bit;
        } else {
            self.lines &= !bit;
        }
        let e = self.table[usize::from(pin)];
        if e & redir::LEVEL == 0 {
            if !was && self.asserted(pin) && e & redir::MASKED == 0 {
                self.waiting |= bit;
            }
        } else {
            self.evaluate(pin);
        }
    }

    /// An edge-triggered source's pulse on `pin` (asserted, then released), as the PIT's
    /// OUT or an ISA device's IRQ reaches the I/O APIC: released, asserted, released, in
    /// the entry's polarity.
    pub fn pulse(&mut self, pin: u8) {
        let active_low = self.entry(pin).is_some_and(|e| e & redir::ACTIVE_LOW != 0);
        self.set_line(pin, active_low);
        self.set_line(pin, !active_low);
        self.set_line(pin, active_low);
    }

    /// Some message waits for [`Self::take`].
    pub fn has_message(&self) -> bool {
        self.waiting != 0
    }

    /// The next waiting message (lowest pin first), as the local APIC accepts it: a level
    /// message sets the pin's remote IRR. A pin masked after its message was queued sends
    /// nothing.
    pub fn take(&mut self) -> Option<Message> {
        while self.waiting != 0 {
            let pin = self.waiting.trailing_zeros() as u8;
            let bit = 1u32 << pin;
            self.waiting &= !bit;
            let e = self.table[usize::from(pin)];
            if e & redir::MASKED != 0 {
                continue;
            }
            let level = e & redir::LEVEL != 0;
            if level {
                if !self.asserted(pin) {
                    continue;
                }
                self.remote_irr |= bit;
            }
            return Some(Message {
                pin,
                vector: (e & redir::VECTOR) as u8,
                trigger: if level { Trigger::Level } else { Trigger::Edge },
                mode: DeliveryMode::from_bits((e >> redir::DELIVERY_MODE_SHIFT) as u8),
                destination: (e >> redir::DEST_SHIFT) as u8,
                logical: e & redir::DEST_LOGICAL != 0,
            });
        }
        None
    }

    /// The local APIC's EOI broadcast for a level-triggered `vector` (SDM 11.8.5): every
    /// level pin with remote IRR set and that vector clears remote IRR and, if still
    /// asserted and unmasked, sends again.
    pub fn eoi(&mut self, vector: u8) {
        for pin in 0..IOAPIC_PINS {
            let bit = 1u32 << pin;
            let e = self.table[usize::from(pin)];
            if self.remote_irr & bit != 0 && (e & redir::VECTOR) as u8 == vector {
                self.remote_irr &= !bit;
                self.evaluate(pin);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Programs redirection entry `pin` as a driver does: high half, then low half.
    pub(crate) fn write_entry(a: &mut IoApic, pin: u8, e: u64) {
        a.write_mmio(offset::IOREGSEL, u32::from(reg::REDTBL + 2 * pin + 1));
        a.write_mmio(offset::IOWIN, (e >> 32) as u32);
        a.write_mmio(offset::IOREGSEL, u32::from(reg::REDTBL + 2 * pin));
        a.write_mmio(offset::IOWIN, e as u32);
    }

    fn read_reg(a: &mut IoApic, index: u8) -> u32 {
        a.write_mmio(offset::IOREGSEL, u32::from(index));
        a.read_mmio(offset::IOWIN)
    }

    #[test]
    fn identification_registers() {
        let mut a = IoApic::new(2);
        assert_eq!(read_reg(&mut a, reg::ID), 2 << 24);
        assert_eq!(read_reg(&mut a, reg::VER), 0x0017_0011);
        assert_eq!(read_reg(&mut a, reg::ARB), 2 << 24);
        a.write_mmio(offset::IOREGSEL, u32::from(reg::ID));
        a.write_mmio(offset::IOWIN, 0xffff_ffff);
        assert_eq!(a.read_mmio(offset::IOWIN), 0x0f00_0000);
        assert_eq!(a.read_mmio(offset::IOREGSEL), u32::from(reg::ID));
        // Read-only registers and unimplemented indices.
        for index in [reg::VER, reg::ARB, 0x03, 0x0f, 0x40, 0xff] {
            let before = read_reg(&mut a, index);
            a.write_mmio(offset::IOWIN, 0x1234_5678);
            assert_eq!(a.read_mmio(offset::IOWIN), before, "index {index:#x}");
        }
        assert_eq!(read_reg(&mut a, 0x40), 0);
        assert_eq!(a.read_mmio(0x20), 0);
        assert!(IoApic::owns(IOAPIC_BASE) && IoApic::owns(IOAPIC_BASE + 0xfff));
        assert!(!IoApic::owns(IOAPIC_BASE - 1) && !IoApic::owns(IOAPIC_BASE + 0x1000));
    }

    #[test]
    fn reset_masks_everything_and_reserved_bits_read_zero() {
        let mut a = IoApic::new(0);
        for pin in 0..IOAPIC_PINS {
            assert_eq!(read_reg(&mut a, reg::REDTBL + 2 * pin), 1 << 16);
            assert_eq!(read_reg(&mut a, reg::REDTBL + 2 * pin + 1), 0);
        }
        write_entry(&mut a, 3, u64::MAX);
        assert_eq!(a.entry(3), Some(redir::WRITABLE));
        assert_eq!(read_reg(&mut a, reg::REDTBL + 7), 0xff00_0000);
        assert_eq!(a.entry(24), None);
        // Masked pins send nothing.
        a.set_line(5, true);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn edge_pin_sends_once_per_edge() {
        let mut a = IoApic::new(0);
        write_entry(&mut a, 2, 0x30 | 1 << 56);
        a.pulse(2);
        assert!(a.has_message());
        assert_eq!(a.entry(2).map(|e| e & redir::DELIVERY_STATUS), Some(redir::DELIVERY_STATUS));
        let m = a.take().expect("edge message");
        assert_eq!(
            m,
            Message {
                pin: 2,
                vector: 0x30,
                trigger: Trigger::Edge,
                mode: DeliveryMode::Fixed,
                destination: 1,
                logical: false
            }
        );
        assert_eq!(a.take(), None);
        // Holding the line high is no new edge; two pulses coalesce until taken.
        a.set_line(2, true);
        a.set_line(2, true);
        assert_eq!(a.take().map(|m| m.vector), Some(0x30));
        assert_eq!(a.take(), None);
        a.set_line(2, false);
        a.pulse(2);
        a.pulse(2);
        assert!(a.take().is_some() && a.take().is_none());
        // An edge while masked is lost; unmasking does not bring it back.
        write_entry(&mut a, 2, 0x30 | redir::MASKED);
        a.pulse(2);
        write_entry(&mut a, 2, 0x30);
        assert_eq!(a.take(), None);
        // No remote IRR for edge pins; EOI does nothing.
        a.pulse(2);
        assert!(a.take().is_some());
        assert_eq!(a.entry(2).map(|e| e & redir::REMOTE_IRR), Some(0));
        a.eoi(0x30);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn level_pin_waits_for_eoi() {
        let mut a = IoApic::new(0);
        // SCI: GSI 9, level, active high, vector 0x41, lowest priority, logical destination.
        write_entry(&mut a, 9, 0x41 | 1 << 8 | redir::LEVEL | redir::DEST_LOGICAL | 0xff << 56);
        a.set_line(9, true);
        let m = a.take().expect("level message");
        assert_eq!(
            (m.vector, m.trigger, m.mode),
            (0x41, Trigger::Level, DeliveryMode::LowestPriority)
        );
        assert!(m.logical);
        assert_eq!(m.destination, 0xff);
        assert_eq!(a.entry(9).map(|e| e & redir::REMOTE_IRR), Some(redir::REMOTE_IRR));
        // Still asserted, but remote IRR holds it back.
        a.set_line(9, true);
        assert_eq!(a.take(), None);
        // EOI of another vector: nothing; of its vector: sent again since still asserted.
        a.eoi(0x42);
        assert_eq!(a.take(), None);
        a.eoi(0x41);
        assert_eq!(a.take().map(|m| m.pin), Some(9));
        // The device deasserts before the EOI: nothing more.
        a.set_line(9, false);
        a.eoi(0x41);
        assert_eq!(a.take(), None);
        assert_eq!(a.entry(9).map(|e| e & redir::REMOTE_IRR), Some(0));
    }

    #[test]
    fn level_pin_masked_then_unmasked_sends() {
        let mut a = IoApic::new(0);
        write_entry(&mut a, 11, 0x50 | redir::LEVEL | redir::MASKED);
        a.set_line(11, true);
        assert_eq!(a.take(), None);
        write_entry(&mut a, 11, 0x50 | redir::LEVEL);
        assert_eq!(a.take().map(|m| m.vector), Some(0x50));
        // Queued, then masked before the local APIC took it: dropped, no remote IRR.
        a.eoi(0x50);
        assert!(a.has_message());
        write_entry(&mut a, 11, 0x50 | redir::LEVEL | redir::MASKED);
        assert_eq!(a.take(), None);
        assert_eq!(a.entry(11).map(|e| e & redir::REMOTE_IRR), Some(0));
        // Switching to edge clears remote IRR.
        write_entry(&mut a, 11, 0x50 | redir::LEVEL);
        assert!(a.take().is_some());
        write_entry(&mut a, 11, 0x50);
        assert_eq!(a.entry(11).map(|e| e & redir::REMOTE_IRR), Some(0));
    }

    #[test]
    fn polarity() {
        let mut a = IoApic::new(0);
        // Active-low level pin (a PCI INTx line): low is asserted.
        write_entry(&mut a, 16, 0x60 | redir::LEVEL | redir::ACTIVE_LOW);
        assert_eq!(a.take().map(|m| m.vector), Some(0x60), "line idle low = asserted");
        a.set_line(16, true);
        a.eoi(0x60);
        assert_eq!(a.take(), None, "released (high)");
        a.set_line(16, false);
        assert_eq!(a.take().map(|m| m.vector), Some(0x60));
        // Active-low edge pin: a falling edge is the assertion; pulse follows the polarity.
        write_entry(&mut a, 4, 0x61 | redir::ACTIVE_LOW);
        a.set_line(4, true);
        assert_eq!(a.take(), None);
        a.set_line(4, false);
        assert_eq!(a.take().map(|m| m.vector), Some(0x61));
        a.pulse(4);
        assert_eq!(a.take().map(|m| m.vector), Some(0x61));
        assert_eq!(a.take(), None);
        // Flipping an edge pin's polarity is no edge.
        write_entry(&mut a, 4, 0x61);
        assert_eq!(a.take(), None);
    }

    #[test]
    fn delivery_modes_and_order() {
        let mut a = IoApic::new(0);
        for (pin, mode) in [(1u8, 2u8), (0, 7), (3, 4), (5, 5), (6, 3)] {
            write_entry(&mut a, pin, 0x20 | u64::from(mode) << 8);
            a.pulse(pin);
        }
        let got: Vec<_> = core::iter::from_fn(|| a.take()).map(|m| (m.pin, m.mode)).collect();
        assert_eq!(
            got,
            [
                (0, DeliveryMode::ExtInt),
                (1, DeliveryMode::Smi),
                (3, DeliveryMode::Nmi),
                (5, DeliveryMode::Init),
                (6, DeliveryMode::Reserved(3))
            ]
        );
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(512))]

        /// Arbitrary window accesses, line changes, takes and EOIs: no panic; every message
        /// comes from an unmasked pin with the entry's vector; level messages set remote IRR.
        #[test]
        fn fuzz_ioapic_never_panics(ops in proptest::collection::vec((0u8..6, any::<u32>(), any::<u32>()), 0..128)) {
            let mut a = IoApic::new(0);
            for (op, x, y) in ops {
                match op {
                    0 => a.write_mmio(x % 0x20, y),
                    1 => { let _ = a.read_mmio(x); }
                    2 => a.set_line(x as u8 % 32, y & 1 != 0),
                    3 => a.pulse(x as u8),
                    4 => a.eoi(x as u8),
                    _ => {
                        if let Some(m) = a.take() {
                            let e = a.entry(m.pin).expect("pin in range");
                            prop_assert_eq!(e & redir::MASKED, 0);
                            prop_assert_eq!((e & redir::VECTOR) as u8, m.vector);
                            if m.trigger == Trigger::Level {
                                prop_assert_ne!(e & redir::REMOTE_IRR, 0);
                            }
                        }
                    }
                }
            }
        }
    }
}
