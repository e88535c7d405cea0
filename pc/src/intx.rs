//! A forwarded INTx line: an assigned PCI function's interrupt, which the level below takes
//! on its own (real or virtual) I/O APIC and re-raises on the guest's virtual one at the same
//! GSI (issue 13). The line is level-triggered, so it must not fire again at the level below
//! until the guest has serviced it:
//!
//! 1. The level below takes the interrupt, masks its own I/O APIC entry for the GSI, EOIs its
//!    own local APIC and calls [`ForwardedLine::assert`]: the guest's I/O APIC sees the line
//!    asserted and sends the guest's vector (whatever the guest programmed) to its local APIC.
//! 2. The guest's driver services the device and EOIs the level-triggered vector; the local
//!    APIC's EOI broadcast reaches [`ForwardedLine::eoi`] (before [`IoApic::eoi`]), which
//!    deasserts the line and says the entry below may be unmasked. If the device still
//!    asserts, the I/O APIC below fires again and the cycle repeats.
//!
//! The guest's programming of its own I/O APIC never reaches the one below: only the
//! assertion state crosses. The wire is modelled as a PCI INTx line (active low, idle high)
//! in whatever polarity the guest chose: [`ForwardedLine::sync`] re-derives the electrical
//! level after each guest write to its I/O APIC, so a guest that programs the pin active high
//! sees it asserted exactly when the device asserts, too. A guest that programs the pin
//! edge-triggered gets one message per assertion but never a level EOI, so the line stays
//! asserted (and the entry below masked) until it switches the pin to level: PCI INTx is
//! level-triggered, and the guests here (Linux, turtles) program it so.

use crate::ioapic::{IOAPIC_PINS, IoApic, redir};

/// One forwarded INTx line on a guest's I/O APIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardedLine {
    gsi: u8,
    asserted: bool,
    /// Another source wired onto the same pin asserts it (the ACPI SCI shares IRQ 9 with
    /// PCI functions whose interrupt line firmware routed there, as on a PIIX): the pin is
    /// their wired OR.
    others: bool,
}

impl ForwardedLine {
    /// A line on pin `gsi` of `ioapic`, idle; `None` when the I/O APIC has no such pin (the
    /// function's interrupt line register named none, e.g. 0xff).
    pub fn new(gsi: u8, ioapic: &mut IoApic) -> Option<Self> {
        (gsi < IOAPIC_PINS).then(|| {
            let line = ForwardedLine { gsi, asserted: false, others: false };
            line.sync(ioapic);
            line
        })
    }

    /// The guest's GSI.
    pub fn gsi(&self) -> u8 {
        self.gsi
    }

    /// The device asserts the line (the level below took its interrupt and masked it there).
    pub fn is_asserted(&self) -> bool {
        self.asserted
    }

    /// The level below took the device's interrupt: the guest's pin is asserted (a message
    /// waits in `ioapic` if the guest's entry is unmasked and its remote IRR clear).
    pub fn assert(&mut self, ioapic: &mut IoApic) {
        self.asserted = true;
        self.sync(ioapic);
    }

    /// The guest's local APIC broadcast an EOI for level-triggered `vector`; call before
    /// [`IoApic::eoi`]. If this line's pin is asserted, awaiting that EOI (remote IRR) and
    /// programmed with `vector`, it is deasserted and the answer is true: the level below
    /// unmasks its entry (the device, if it still asserts, fires again there).
    pub fn eoi(&mut self, ioapic: &mut IoApic, vector: u8) -> bool {
        let Some(e) = ioapic.entry(self.gsi) else { return false };
        if !self.asserted || e & redir::REMOTE_IRR == 0 || (e & redir::VECTOR) as u8 != vector {
            return false;
        }
        self.asserted = false;
        self.sync(ioapic);
        true
    }

    /// The other sources sharing the pin assert it (`asserted`) or not.
    pub fn set_others(&mut self, ioapic: &mut IoApic, asserted: bool) {
        self.others = asserted;
        self.sync(ioapic);
    }

    /// Drives the pin's electrical level from the assertion state (this line's or the
    /// sharers') in the polarity the guest programmed (call after every guest write to its
    /// I/O APIC).
    pub fn sync(&self, ioapic: &mut IoApic) {
        let active_low = ioapic.entry(self.gsi).is_some_and(|e| e & redir::ACTIVE_LOW != 0);
        let high = (self.asserted || self.others) != active_low;
        if ioapic.line(self.gsi) != Some(high) {
            ioapic.set_line(self.gsi, high);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ioapic::Trigger;
    use crate::ioapic::tests::write_entry;
    use proptest::prelude::*;

    /// What Linux programs for a PCI INTx without _PRT (acpi_isa_register_gsi): level,
    /// active low.
    const LINUX: u64 = 0x61 | redir::LEVEL | redir::ACTIVE_LOW;

    #[test]
    fn assert_deliver_eoi_cycle() {
        let mut a = IoApic::new(0);
        let mut l = ForwardedLine::new(11, &mut a).expect("pin 11");
        // The idle line is no interrupt in either polarity, masked or not.
        write_entry(&mut a, 11, LINUX);
        l.sync(&mut a);
        assert_eq!(a.take(), None);
        write_entry(&mut a, 11, 0x61 | redir::LEVEL);
        l.sync(&mut a);
        assert_eq!(a.take(), None);
        write_entry(&mut a, 11, LINUX);
        l.sync(&mut a);
        l.assert(&mut a);
        let m = a.take().expect("the guest's vector");
        assert_eq!((m.pin, m.vector, m.trigger), (11, 0x61, Trigger::Level));
        // Another vector's EOI: nothing; the guest's: lowered, the level below unmasks.
        assert!(!l.eoi(&mut a, 0x62));
        assert!(l.is_asserted());
        assert!(l.eoi(&mut a, 0x61));
        a.eoi(0x61);
        assert!(!l.is_asserted());
        assert_eq!(a.take(), None, "deasserted before the EOI reached the I/O APIC");
        // The device fires again.
        l.assert(&mut a);
        assert_eq!(a.take().map(|m| m.vector), Some(0x61));
    }

    #[test]
    fn masked_guest_entry_holds_the_line() {
        let mut a = IoApic::new(0);
        let mut l = ForwardedLine::new(10, &mut a).expect("pin 10");
        l.assert(&mut a);
        assert_eq!(a.take(), None, "masked at reset");
        assert!(!l.eoi(&mut a, 0), "no remote IRR: the line stays asserted");
        // The guest unmasks (level, active low): the waiting assertion is delivered.
        write_entry(&mut a, 10, 0x70 | redir::LEVEL | redir::ACTIVE_LOW);
        l.sync(&mut a);
        assert_eq!(a.take().map(|m| m.vector), Some(0x70));
        assert!(l.eoi(&mut a, 0x70));
    }

    #[test]
    fn polarity_flip_keeps_the_assertion() {
        let mut a = IoApic::new(0);
        let mut l = ForwardedLine::new(5, &mut a).expect("pin 5");
        write_entry(&mut a, 5, 0x40 | redir::LEVEL | redir::MASKED);
        l.sync(&mut a);
        l.assert(&mut a);
        write_entry(&mut a, 5, 0x40 | redir::LEVEL | redir::ACTIVE_LOW);
        l.sync(&mut a);
        assert_eq!(a.take().map(|m| m.vector), Some(0x40));
    }

    #[test]
    fn shared_pin_is_a_wired_or() {
        let mut a = IoApic::new(0);
        let mut l = ForwardedLine::new(9, &mut a).expect("pin 9");
        // The SCI's programming (MADT: level, active high).
        write_entry(&mut a, 9, 0x49 | redir::LEVEL);
        l.sync(&mut a);
        l.set_others(&mut a, true);
        assert_eq!(a.take().map(|m| m.vector), Some(0x49));
        l.assert(&mut a);
        // The EOI ends the device's interrupt, but the SCI still asserts: sent again.
        assert!(l.eoi(&mut a, 0x49));
        a.eoi(0x49);
        assert_eq!(a.take().map(|m| m.vector), Some(0x49));
        l.set_others(&mut a, false);
        a.eoi(0x49);
        assert_eq!(a.take(), None);
        // The device alone.
        l.assert(&mut a);
        assert_eq!(a.take().map(|m| m.vector), Some(0x49));
    }

    #[test]
    fn no_such_pin() {
        let mut a = IoApic::new(0);
        assert_eq!(ForwardedLine::new(24, &mut a), None);
        assert_eq!(ForwardedLine::new(0xff, &mut a), None);
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(256))]

        /// Arbitrary guest programming, assertions and EOIs: the line is unmasked below
        /// (eoi true) only after an assertion, and never twice for one assertion; a message
        /// for the pin only while asserted.
        #[test]
        fn fuzz_forwarded_line(ops in proptest::collection::vec((0u8..4, any::<u64>()), 0..96)) {
            let mut a = IoApic::new(0);
            let mut l = ForwardedLine::new(9, &mut a).expect("pin 9");
            let mut masked_below = false;
            for (op, x) in ops {
                match op {
                    0 => { write_entry(&mut a, 9, x); l.sync(&mut a); }
                    1 => if !masked_below { l.assert(&mut a); masked_below = true; },
                    2 => {
                        let v = x as u8;
                        if l.eoi(&mut a, v) {
                            prop_assert!(masked_below);
                            masked_below = false;
                        }
                        a.eoi(v);
                    }
                    _ => while let Some(m) = a.take() {
                        if m.pin == 9 && m.trigger == Trigger::Level {
                            prop_assert!(l.is_asserted());
                        }
                    },
                }
            }
        }
    }
}
