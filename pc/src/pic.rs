//! The PC's two cascaded 8259A interrupt controllers (master at 20h/21h, slave at A0h/A1h on
//! the master's IRQ2), as a PC guest programs them: ICW1-ICW4 initialization (vector base from
//! ICW2, auto-EOI from ICW4), the interrupt mask (OCW1), non-specific and specific EOI (OCW2),
//! and IRR/ISR reads (OCW3). Edge-triggered, fully nested priority (IRQ0 highest); rotation,
//! special mask mode and poll mode are accepted and ignored. Intel 8259A data sheet; the PC
//! wiring as in KVM's `i8259.c`.
//!
//! At power-up both chips are fully masked with the BIOS's vector bases (08h and 70h); a guest
//! re-initializes them before unmasking anything.

const MASTER_COMMAND: u16 = 0x20;
const MASTER_DATA: u16 = 0x21;
const SLAVE_COMMAND: u16 = 0xa0;
const SLAVE_DATA: u16 = 0xa1;
/// The master's input the slave is wired to.
const CASCADE_IRQ: u8 = 2;

#[derive(Clone, Copy, Debug)]
struct Chip {
    imr: u8,
    irr: u8,
    isr: u8,
    /// Vector of IRQ 0 on this chip (ICW2 bits 7:3).
    base: u8,
    /// Initialization words still expected on the data port (ICW2, ICW3, ICW4).
    icw_left: u8,
    /// ICW1 said an ICW4 follows.
    icw4_needed: bool,
    auto_eoi: bool,
    /// OCW3: the command port reads the ISR (else the IRR).
    read_isr: bool,
}

impl Chip {
    const fn new(base: u8) -> Self {
        Chip {
            imr: 0xff,
            irr: 0,
            isr: 0,
            base,
            icw_left: 0,
            icw4_needed: false,
            auto_eoi: false,
            read_isr: false,
        }
    }

    /// The highest-priority requested, unmasked line not blocked by one in service at the
    /// same or higher priority (fully nested mode).
    fn pending(&self) -> Option<u8> {
        let requested = self.irr & !self.imr;
        let irq = (0..8).find(|&i| requested & (1 << i) != 0)?;
        let blocked = (0..=irq).any(|i| self.isr & (1 << i) != 0);
        (!blocked).then_some(irq)
    }

    fn acknowledge(&mut self, irq: u8) {
        let bit = 1u8 << (irq & 7);
        self.irr &= !bit;
        if !self.auto_eoi {
            self.isr |= bit;
        }
    }

    fn write_command(&mut self, value: u8) {
        if value & 0x10 != 0 {
            // ICW1: start initialization; IMR and ISR cleared, IRR kept (edge latch reset).
            *self = Chip { base: self.base, ..Chip::new(self.base) };
            self.imr = 0;
            self.icw4_needed = value & 1 != 0;
            self.icw_left = if self.icw4_needed { 3 } else { 2 };
            return;
        }
        if value & 0x08 != 0 {
            // OCW3: bits 1:0 = 10 read IRR, 11 read ISR.
            if value & 2 != 0 {
                self.read_isr = value & 1 != 0;
            }
            return;
        }
        // OCW2: bits 7:5 = 001 non-specific EOI, 011 specific EOI of level bits 2:0
        // (rotation variants 101/111 EOI the same way; set-priority commands are ignored).
        match value >> 5 {
            0b001 | 0b101 => {
                if let Some(i) = (0..8).find(|&i| self.isr & (1 << i) != 0) {
                    self.isr &= !(1 << i);
                }
            }
            0b011 | 0b111 => self.isr &= !(1 << (value & 7)),
            _ => {}
        }
    }

    fn write_data(&mut self, value: u8) {
        match self.icw_left {
            0 => self.imr = value,
            n => {
                let step = if self.icw4_needed { 4 - n } else { 3 - n };
                match step {
                    // ICW2: vector base.
                    1 => self.base = value & 0xf8,
                    // ICW4: bit 1 automatic EOI.
                    3 => self.auto_eoi = value & 2 != 0,
                    // ICW3: the cascade wiring is fixed on a PC.
                    _ => {}
                }
                self.icw_left = n - 1;
            }
        }
    }
}

/// Both 8259As of a PC.
#[derive(Clone, Debug)]
pub struct Pic {
    master: Chip,
    slave: Chip,
}

impl Default for Pic {
    fn default() -> Self {
        Self::new()
    }
}

impl Pic {
    /// Power-up state: everything masked, vector bases 08h and 70h.
    pub const fn new() -> Self {
        Pic { master: Chip::new(0x08), slave: Chip::new(0x70) }
    }

    /// True for the four ports of the pair.
    pub fn owns(port: u16) -> bool {
        matches!(port, MASTER_COMMAND | MASTER_DATA | SLAVE_COMMAND | SLAVE_DATA)
    }

    /// A guest IN: the data port reads the IMR, the command port the IRR or ISR (OCW3).
    pub fn read(&self, port: u16) -> u8 {
        let chip = if port >= SLAVE_COMMAND { &self.slave } else { &self.master };
        match port & 1 {
            1 => chip.imr,
            _ if chip.read_isr => chip.isr,
            _ => chip.irr,
        }
    }

    /// A guest OUT.
    pub fn write(&mut self, port: u16, value: u8) {
        let chip = if port >= SLAVE_COMMAND { &mut self.slave } else { &mut self.master };
        if port & 1 == 0 { chip.write_command(value) } else { chip.write_data(value) }
    }

    /// An edge on IRQ line `irq` (0-15; others are ignored).
    pub fn raise(&mut self, irq: u8) {
        match irq {
            0..=7 => self.master.irr |= 1 << irq,
            8..=15 => self.slave.irr |= 1 << (irq - 8),
            _ => {}
        }
    }

    /// Whether line `irq` would reach the processor if raised now (unmasked on its chip and,
    /// for the slave, on the cascade).
    pub fn unmasked(&self, irq: u8) -> bool {
        match irq {
            0..=7 => self.master.imr & (1 << irq) == 0,
            8..=15 => {
                self.slave.imr & (1 << (irq - 8)) == 0 && self.master.imr & (1 << CASCADE_IRQ) == 0
            }
            _ => false,
        }
    }

    /// Some IRQ is requested (masked or not): for a cheap "anything to do" check.
    pub fn has_requests(&self) -> bool {
        self.master.irr != 0 || self.slave.irr != 0
    }

    /// The vector the pair would present on INTA now, if any.
    pub fn pending(&self) -> Option<u8> {
        self.resolve().map(|(vector, _)| vector)
    }

    fn resolve(&self) -> Option<(u8, Option<u8>)> {
        let mut master = self.master;
        if self.slave.pending().is_some() {
            master.irr |= 1 << CASCADE_IRQ;
        }
        let irq = master.pending()?;
        if irq == CASCADE_IRQ
            && let Some(s) = self.slave.pending()
        {
            return Some((self.slave.base.wrapping_add(s), Some(s)));
        }
        Some((self.master.base.wrapping_add(irq), None))
    }

    /// INTA: the pending vector moves from request to in service (not with auto-EOI).
    pub fn acknowledge(&mut self) -> Option<u8> {
        let (vector, slave_irq) = self.resolve()?;
        match slave_irq {
            Some(s) => {
                self.slave.acknowledge(s);
                self.master.acknowledge(CASCADE_IRQ);
            }
            None => self.master.acknowledge(vector.wrapping_sub(self.master.base)),
        }
        Some(vector)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The usual PC initialization: vectors 20h/28h, cascade on IRQ2, 8086 mode.
    fn initialized() -> Pic {
        let mut p = Pic::new();
        for (port, v) in [(0x20, 0x11), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
            p.write(port, v);
        }
        for (port, v) in [(0xa0, 0x11), (0xa1, 0x28), (0xa1, 0x02), (0xa1, 0x01)] {
            p.write(port, v);
        }
        p
    }

    #[test]
    fn power_up_is_masked_and_quiet() {
        let mut p = Pic::new();
        assert_eq!((p.read(0x21), p.read(0xa1)), (0xff, 0xff));
        p.raise(0);
        assert!(p.has_requests());
        assert_eq!(p.pending(), None);
        assert!(!p.unmasked(0));
    }

    #[test]
    fn irq0_is_delivered_once_until_eoi() {
        let mut p = initialized();
        p.write(0x21, 0xfe);
        assert_eq!(p.read(0x21), 0xfe);
        p.raise(0);
        assert_eq!(p.pending(), Some(0x20));
        assert_eq!(p.acknowledge(), Some(0x20));
        assert_eq!(p.pending(), None);
        // In service blocks another IRQ0 until the EOI.
        p.raise(0);
        assert_eq!(p.pending(), None);
        p.write(0x20, 0x0b); // OCW3: read ISR
        assert_eq!(p.read(0x20), 1);
        p.write(0x20, 0x20); // non-specific EOI
        assert_eq!(p.read(0x20), 0);
        assert_eq!(p.acknowledge(), Some(0x20));
    }

    #[test]
    fn priority_and_masking() {
        let mut p = initialized();
        p.write(0x21, 0x00);
        p.raise(3);
        p.raise(1);
        assert_eq!(p.acknowledge(), Some(0x21));
        // IRQ3 is lower priority than IRQ1 in service.
        assert_eq!(p.pending(), None);
        p.write(0x20, 0x61); // specific EOI, level 1
        assert_eq!(p.acknowledge(), Some(0x23));
        p.write(0x21, 0x08);
        p.write(0x20, 0x20);
        p.raise(3);
        assert_eq!(p.pending(), None, "masked");
    }

    #[test]
    fn slave_cascades_through_irq2() {
        let mut p = initialized();
        p.write(0x21, 0xff); // ICW1 cleared the masks: mask the master again
        p.write(0xa1, 0xfe); // slave IRQ8 unmasked
        p.raise(8);
        assert_eq!(p.pending(), None, "cascade masked on the master");
        assert!(!p.unmasked(8));
        p.write(0x21, 0xfb);
        assert!(p.unmasked(8));
        assert_eq!(p.acknowledge(), Some(0x28));
        p.write(0xa0, 0x20);
        p.write(0x20, 0x20);
        p.raise(8);
        assert_eq!(p.pending(), Some(0x28));
    }

    #[test]
    fn auto_eoi_leaves_nothing_in_service() {
        let mut p = Pic::new();
        for (port, v) in [(0x20, 0x11), (0x21, 0x30), (0x21, 0x04), (0x21, 0x03)] {
            p.write(port, v);
        }
        p.write(0x21, 0xfe);
        p.raise(0);
        assert_eq!(p.acknowledge(), Some(0x30));
        p.raise(0);
        assert_eq!(p.acknowledge(), Some(0x30));
    }

    proptest! {
        #[test]
        fn fuzz_never_panics(ops in proptest::collection::vec((0u8..4, any::<u8>()), 0..64)) {
            let mut p = Pic::new();
            for (op, v) in ops {
                match op {
                    0 => p.write([0x20, 0x21, 0xa0, 0xa1][usize::from(v % 4)], v),
                    1 => p.raise(v),
                    2 => { let _ = p.acknowledge(); }
                    _ => { let _ = p.read([0x20, 0x21, 0xa0, 0xa1][usize::from(v % 4)]); }
                }
                if let Some(vector) = p.pending() {
                    prop_assert_eq!(p.clone().acknowledge(), Some(vector));
                }
            }
        }
    }
}
