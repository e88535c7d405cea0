//! The ACPI fixed-hardware power-management registers the FADT points at ([`crate::acpi`]):
//! the PM1a event block (PM1_STS, PM1_EN), the PM1a control block (PM1_CNT) and the 32-bit PM
//! timer, at I/O ports from [`PM_BASE`]. ACPI 6.5 sections 4.8.3.1-4.8.3.3 (PM1 event and
//! control registers, power-management timer) and 7.4.2 (`\_Sx` sleep types).
//!
//! Writing SLP_EN with SLP_TYP = [`SLP_TYP_S5`] (the value the DSDT's `\_S5_` package names)
//! reports [`PowerEvent::PowerOff`]: Linux's `poweroff`. The platform has no SMI command port,
//! so it is always in ACPI mode: SCI_EN reads 1. The SCI (IRQ 9, level, active high) is
//! asserted while a status bit and its enable are both set ([`Pm::sci`]): the power button
//! ([`Pm::press_power_button`]) and PM timer carry (bit 31 toggling).

/// First port of the block (as QEMU's ICH9 LPC places it).
pub const PM_BASE: u16 = 0x600;
/// PM1a event block: PM1_STS (16 bits) then PM1_EN (16 bits).
pub const PM1A_EVT_BLK: u16 = PM_BASE;
/// PM1_EVT_LEN.
pub const PM1_EVT_LEN: u8 = 4;
/// PM1a control block: PM1_CNT (16 bits).
pub const PM1A_CNT_BLK: u16 = PM_BASE + 4;
/// PM1_CNT_LEN.
pub const PM1_CNT_LEN: u8 = 2;
/// PM timer block: one 32-bit counter (FADT TMR_VAL_EXT set).
pub const PM_TMR_BLK: u16 = PM_BASE + 8;
/// PM_TMR_LEN.
pub const PM_TMR_LEN: u8 = 4;
/// The PM timer's frequency (ACPI 4.8.3.3).
pub const PM_TIMER_HZ: u64 = 3_579_545;
/// The SCI's ISA IRQ (FADT SCI_INT; level, active high in the MADT).
pub const SCI_IRQ: u8 = 9;
/// SLP_TYP value for S5 (soft off): the first element of the DSDT's `\_S5_` package.
pub const SLP_TYP_S5: u8 = 5;

/// PM1_STS / PM1_EN bits (ACPI Tables 4.16, 4.17).
pub mod pm1_evt {
    /// PM timer carry (bit 31 of the counter changed).
    pub const TMR: u16 = 1 << 0;
    /// Global lock release (the BIOS released the ACPI global lock; never raised here).
    pub const GBL: u16 = 1 << 5;
    /// Power button pressed.
    pub const PWRBTN: u16 = 1 << 8;
    /// RTC alarm (never raised here: the RTC's alarm goes to IRQ 8).
    pub const RTC: u16 = 1 << 10;
    /// The enable bits PM1_EN keeps: the events this block has, including those it never
    /// raises (OSPM enables GBL_EN and RTC_EN and checks that they read back).
    pub const ENABLES: u16 = TMR | GBL | PWRBTN | RTC;
    /// Woken (status only).
    pub const WAK: u16 = 1 << 15;
}

/// PM1_CNT bits (ACPI Table 4.18).
pub mod pm1_cnt {
    /// SCI_EN: the platform is in ACPI mode (read-only 1 here).
    pub const SCI_EN: u16 = 1 << 0;
    /// Bits 12:10: sleep type.
    pub const SLP_TYP_SHIFT: u32 = 10;
    pub const SLP_TYP_MASK: u16 = 7 << SLP_TYP_SHIFT;
    /// Write-only: enter the sleep state SLP_TYP names.
    pub const SLP_EN: u16 = 1 << 13;
    /// BM_RLD (bit 1), GBL_RLS (bit 2 write-only), SLP_TYP: what reads back.
    pub const STORED: u16 = (1 << 1) | SLP_TYP_MASK;
}

/// A platform-level request from a guest's register write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    /// S5: turn the machine off.
    PowerOff,
    /// Reset the machine (see [`crate::reset`]).
    Reset,
}

/// The PM1a event/control registers and the PM timer.
#[derive(Clone, Debug)]
pub struct Pm {
    tsc_hz: u64,
    sts: u16,
    en: u16,
    cnt: u16,
    /// Timer value (bit 31) when TMR_STS was last folded in.
    timer_msb_seen: bool,
}

impl Pm {
    /// Power-on state, converting TSC values at `tsc_hz` (0 is taken as 1).
    pub fn new(tsc_hz: u64) -> Self {
        Pm { tsc_hz: tsc_hz.max(1), sts: 0, en: 0, cnt: 0, timer_msb_seen: false }
    }

    /// True for the ports of the three blocks (600h-605h, 608h-60Bh).
    pub fn owns(port: u16) -> bool {
        let in_block = |base: u16, len: u8| port.wrapping_sub(base) < u16::from(len);
        in_block(PM1A_EVT_BLK, PM1_EVT_LEN)
            || in_block(PM1A_CNT_BLK, PM1_CNT_LEN)
            || in_block(PM_TMR_BLK, PM_TMR_LEN)
    }

    /// The PM timer's count at TSC `now` (32 bits, wrapping).
    pub fn timer(&self, now: u64) -> u32 {
        (u128::from(now) * u128::from(PM_TIMER_HZ) / u128::from(self.tsc_hz)) as u32
    }

    fn fold_timer(&mut self, now: u64) {
        let msb = self.timer(now) & (1 << 31) != 0;
        if msb != self.timer_msb_seen {
            self.timer_msb_seen = msb;
            self.sts |= pm1_evt::TMR;
        }
    }

    /// The SCI level: some status bit is set with its enable.
    pub fn sci(&mut self, now: u64) -> bool {
        self.fold_timer(now);
        self.sts & self.en != 0
    }

    /// A power-button press (the host asking the guest to shut down): PWRBTN_STS.
    pub fn press_power_button(&mut self) {
        self.sts |= pm1_evt::PWRBTN;
    }

    fn read_byte(&mut self, port: u16, now: u64) -> u8 {
        let word = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        match port.wrapping_sub(PM_BASE) {
            0 | 1 => {
                self.fold_timer(now);
                word(self.sts, port & 1 != 0)
            }
            2 | 3 => word(self.en, port & 1 != 0),
            4 | 5 => word(self.cnt | pm1_cnt::SCI_EN, port & 1 != 0),
            n @ 8..=11 => (self.timer(now) >> (8 * (n - 8))) as u8,
            _ => 0xff,
        }
    }

    /// A guest IN of `size` bytes (1, 2 or 4) at `port`; bytes outside the block read 0xff.
    pub fn read(&mut self, port: u16, size: u8, now: u64) -> u32 {
        (0..size.min(4)).fold(0, |acc, i| {
            acc | u32::from(self.read_byte(port.wrapping_add(u16::from(i)), now)) << (8 * i)
        })
    }

    /// A guest OUT of `size` bytes (1, 2 or 4) at `port`: PM1_STS bits are write-1-to-clear,
    /// PM1_EN is read/write, PM1_CNT keeps BM_RLD and SLP_TYP; SLP_EN with S5 powers off.
    pub fn write(&mut self, port: u16, size: u8, value: u32, now: u64) -> Option<PowerEvent> {
        self.fold_timer(now);
        let mut event = None;
        for i in 0..size.min(4) {
            let byte = (value >> (8 * i)) as u8;
            let p = port.wrapping_add(u16::from(i));
            let shift = if p & 1 != 0 { 8 } else { 0 };
            let bits = u16::from(byte) << shift;
            let lane = 0xffu16 << shift;
            match p.wrapping_sub(PM_BASE) {
                0 | 1 => self.sts &= !bits,
                2 | 3 => self.en = (self.en & !lane) | (bits & pm1_evt::ENABLES),
                4 | 5 => {
                    self.cnt = (self.cnt & !lane) | (bits & pm1_cnt::STORED);
                    if bits & pm1_cnt::SLP_EN != 0 {
                        let typ = (self.cnt & pm1_cnt::SLP_TYP_MASK) >> pm1_cnt::SLP_TYP_SHIFT;
                        if typ == u16::from(SLP_TYP_S5) {
                            event = Some(PowerEvent::PowerOff);
                        }
                    }
                }
                _ => {}
            }
        }
        event
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn s5_powers_off() {
        let mut pm = Pm::new(1_000_000);
        // Linux acpi_hw_legacy_sleep: write SLP_TYP, then SLP_TYP | SLP_EN (16-bit accesses).
        let typ = u32::from(SLP_TYP_S5) << 10;
        assert_eq!(pm.write(PM1A_CNT_BLK, 2, typ, 0), None);
        assert_eq!(pm.read(PM1A_CNT_BLK, 2, 0), typ | 1);
        assert_eq!(pm.write(PM1A_CNT_BLK, 2, typ | 1 << 13, 0), Some(PowerEvent::PowerOff));
        // SLP_EN reads 0; another sleep type does nothing.
        assert_eq!(pm.read(PM1A_CNT_BLK, 2, 0) & (1 << 13), 0);
        assert_eq!(pm.write(PM1A_CNT_BLK, 2, 3 << 10 | 1 << 13, 0), None);
        // Byte access to the high byte alone works too.
        assert_eq!(pm.write(PM1A_CNT_BLK + 1, 1, 0x20 | 5 << 2, 0), Some(PowerEvent::PowerOff));
    }

    #[test]
    fn global_lock_and_rtc_enables_read_back() {
        let mut pm = Pm::new(1_000_000);
        pm.write(PM1A_EVT_BLK + 2, 2, 0xffff, 0);
        assert_eq!(pm.read(PM1A_EVT_BLK + 2, 2, 0), u32::from(pm1_evt::ENABLES));
        assert_eq!(pm1_evt::ENABLES, 0x0521);
        assert!(!pm.sci(0), "nothing raised GBL_STS or RTC_STS");
    }

    #[test]
    fn power_button_raises_sci_until_cleared() {
        let mut pm = Pm::new(1_000_000);
        pm.press_power_button();
        assert!(!pm.sci(0), "not enabled");
        assert_eq!(pm.read(PM1A_EVT_BLK, 2, 0) & 0x100, 0x100);
        pm.write(PM1A_EVT_BLK + 2, 2, 0x100, 0);
        assert_eq!(pm.read(PM1A_EVT_BLK + 2, 2, 0), 0x100);
        assert!(pm.sci(0));
        // Write-1-to-clear; writing 0 changes nothing.
        pm.write(PM1A_EVT_BLK, 2, 0, 0);
        assert!(pm.sci(0));
        pm.write(PM1A_EVT_BLK, 4, 0x0100_0100, 0);
        assert!(!pm.sci(0));
        assert_eq!(pm.read(PM1A_EVT_BLK, 4, 0), 0x0100_0000);
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz() {
        let tsc_hz = 2_000_000_000;
        let mut pm = Pm::new(tsc_hz);
        assert_eq!(pm.read(PM_TMR_BLK, 4, 0), 0);
        assert_eq!(pm.read(PM_TMR_BLK, 4, tsc_hz), PM_TIMER_HZ as u32);
        assert_eq!(pm.read(PM_TMR_BLK + 1, 1, tsc_hz), (PM_TIMER_HZ >> 8) as u8 as u32);
        // Bit 31 flips after 2^31 counts: TMR_STS, an SCI if TMR_EN.
        pm.write(PM1A_EVT_BLK + 2, 2, 1, 0);
        let flip = ((1u64 << 31) * tsc_hz).div_ceil(PM_TIMER_HZ);
        assert!(!pm.sci(flip - tsc_hz));
        assert!(pm.sci(flip));
        assert!(Pm::owns(0x600) && Pm::owns(0x605) && Pm::owns(0x608) && Pm::owns(0x60b));
        assert!(!Pm::owns(0x606) && !Pm::owns(0x607) && !Pm::owns(0x60c) && !Pm::owns(0x5ff));
        assert_eq!(pm.read(0x606, 2, 0), 0xffff);
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(512))]

        #[test]
        fn fuzz_pm_never_panics(hz in any::<u64>(), ops in proptest::collection::vec((any::<bool>(), 0x5f0u16..0x610, 0u8..6, any::<u32>(), any::<u64>()), 0..64)) {
            let mut pm = Pm::new(hz);
            for (write, port, size, value, now) in ops {
                if write {
                    if pm.write(port, size, value, now) == Some(PowerEvent::PowerOff) {
                        prop_assert_eq!((pm.cnt >> 10) & 7, u16::from(SLP_TYP_S5));
                    }
                } else {
                    let _ = pm.read(port, size, now);
                }
                let _ = pm.sci(now);
            }
        }
    }
}
