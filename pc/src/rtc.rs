//! The PC's MC146818 real-time clock and CMOS RAM at ports 70h (index, bit 7 = NMI disable)
//! and 71h (data). Motorola MC146818A datasheet: time, alarm and calendar registers 00h-09h in
//! BCD or binary (register B bit 2) with 12- or 24-hour hours (register B bit 1), register A
//! (UIP bit 7, divider bits 6:4, periodic rate bits 3:0), B (SET, PIE, AIE, UIE), C (IRQF,
//! PF, AF, UF; a read clears it) and D (VRT); the IBM PC's century byte at 32h; the rest is
//! 128 bytes of CMOS RAM with the memory-size bytes a BIOS sets (see [`Rtc::set_memory_size`]).
//!
//! Time comes in as parameters, as for the PIT: [`Rtc::new`] takes the wall-clock time
//! (seconds since the Unix epoch, UTC) at a TSC value, and every access takes `now` (a TSC
//! value). The guest setting the clock keeps an offset from that time. Interrupts (IRQ8): the
//! periodic, update-ended and alarm flags are set as time passes; [`Rtc::take_irq8`] reports
//! a new rising edge of IRQ8 and [`Rtc::next_event`] when the next flag would be set.
//! Simplifications: the divider bits are stored but the clock always runs (as with DV=010);
//! daylight-saving (register B bit 0) and the square-wave output are accepted and ignored.

/// Index port (bits 6:0 register, bit 7 NMI disable).
pub const PORT_INDEX: u16 = 0x70;
/// Data port.
pub const PORT_DATA: u16 = 0x71;

/// CMOS register indices.
pub mod reg {
    pub const SECONDS: u8 = 0x00;
    pub const SECONDS_ALARM: u8 = 0x01;
    pub const MINUTES: u8 = 0x02;
    pub const MINUTES_ALARM: u8 = 0x03;
    pub const HOURS: u8 = 0x04;
    pub const HOURS_ALARM: u8 = 0x05;
    /// Day of week, 1-7 (Sunday = 1).
    pub const DAY_OF_WEEK: u8 = 0x06;
    pub const DAY_OF_MONTH: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    /// Year within the century, 0-99.
    pub const YEAR: u8 = 0x09;
    pub const A: u8 = 0x0a;
    pub const B: u8 = 0x0b;
    pub const C: u8 = 0x0c;
    pub const D: u8 = 0x0d;
    /// IBM PC/AT century byte (what the ACPI FADT CENTURY field names).
    pub const CENTURY: u8 = 0x32;
}

/// Register A bits.
pub mod a {
    /// Update in progress (read-only).
    pub const UIP: u8 = 0x80;
    /// Bits 3:0: periodic interrupt rate select.
    pub const RATE: u8 = 0x0f;
}

/// Register B bits.
pub mod b {
    /// Halt updates so the time can be set.
    pub const SET: u8 = 0x80;
    /// Periodic interrupt enable.
    pub const PIE: u8 = 0x40;
    /// Alarm interrupt enable.
    pub const AIE: u8 = 0x20;
    /// Update-ended interrupt enable.
    pub const UIE: u8 = 0x10;
    /// Data mode: binary (else BCD).
    pub const DM_BINARY: u8 = 0x04;
    /// 24-hour mode (else 12-hour with bit 7 of the hours = PM).
    pub const HOURS_24: u8 = 0x02;
}

/// Register C bits (read-only; reading clears them).
pub mod c {
    pub const IRQF: u8 = 0x80;
    pub const PF: u8 = 0x40;
    pub const AF: u8 = 0x20;
    pub const UF: u8 = 0x10;
}

/// Register D bit 7: valid RAM and time.
const D_VRT: u8 = 0x80;
/// Register A's reset value: 32.768 kHz time base (DV = 010), rate 0110 (1024 Hz).
const A_DEFAULT: u8 = 0x26;
/// Register B's reset value as a PC BIOS leaves it: 24-hour BCD, no interrupts.
const B_DEFAULT: u8 = b::HOURS_24;
/// Length of the UIP window before each update (datasheet: 244 µs).
const UIP_MICROS: u64 = 244;
/// The time base the periodic rates divide.
const TIME_BASE_HZ: u64 = 32_768;
/// Alarm bytes with both top bits set match any value.
const ALARM_DONT_CARE: u8 = 0xc0;
const SECONDS_PER_DAY: i64 = 86_400;

/// Broken-down UTC time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// 1-7, Sunday = 1.
    weekday: u8,
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let m = i64::from(month.clamp(1, 12));
    let y = if m <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_seconds(t: i64) -> Civil {
    let days = t.div_euclid(SECONDS_PER_DAY);
    let secs = t.rem_euclid(SECONDS_PER_DAY);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let year = yoe + era * 400 + i64::from(month <= 2);
    Civil {
        year,
        month,
        day,
        hour: (secs / 3600) as u8,
        minute: (secs / 60 % 60) as u8,
        second: (secs % 60) as u8,
        // 1970-01-01 was a Thursday (5 with Sunday = 1).
        weekday: ((days + 4).rem_euclid(7) + 1) as u8,
    }
}

/// The MC146818 and its CMOS RAM.
#[derive(Clone, Debug)]
pub struct Rtc {
    tsc_hz: u64,
    /// Wall-clock seconds at TSC `base_tsc` (includes the guest's offset).
    base_seconds: i64,
    base_tsc: u64,
    /// The 128 bytes of the chip; time registers 00h-09h and 32h hold the guest's values
    /// only while SET halts updates (else they are derived from the clock).
    ram: [u8; 128],
    index: u8,
    nmi_disabled: bool,
    /// TSC up to which periodic/update/alarm events were folded into register C.
    seen_tsc: u64,
    /// IRQ8 went high since the last [`Rtc::take_irq8`].
    irq8_edge: bool,
}

impl Rtc {
    /// A clock reading `epoch_seconds` (Unix time, UTC) at TSC `now`, counting at `tsc_hz`
    /// (0 is taken as 1). CMOS RAM is zero but for the BIOS defaults of registers A-D.
    pub fn new(tsc_hz: u64, epoch_seconds: i64, now: u64) -> Self {
        let mut ram = [0; 128];
        ram[usize::from(reg::A)] = A_DEFAULT;
        ram[usize::from(reg::B)] = B_DEFAULT;
        ram[usize::from(reg::D)] = D_VRT;
        Rtc {
            tsc_hz: tsc_hz.max(1),
            base_seconds: epoch_seconds,
            base_tsc: now,
            ram,
            index: 0,
            nmi_disabled: false,
            seen_tsc: now,
            irq8_edge: false,
        }
    }

    /// True for ports 70h and 71h.
    pub fn owns(port: u16) -> bool {
        matches!(port, PORT_INDEX | PORT_DATA)
    }

    /// Port 70h bit 7 as last written: the guest wants NMIs masked.
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// Sets the memory-size bytes a PC BIOS leaves in CMOS for `bytes` of RAM: 15h/16h base
    /// memory (640 KiB), 17h/18h and 30h/31h extended memory between 1 MiB and 64 MiB in KiB,
    /// 34h/35h memory between 16 MiB and 4 GiB in 64 KiB units, 5Bh-5Dh memory above 4 GiB in
    /// 64 KiB units (QEMU/SeaBIOS), and the standard checksum at 2Eh/2Fh over 10h-2Dh.
    pub fn set_memory_size(&mut self, bytes: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        const FOUR_GIB: u64 = 4096 * MIB;
        let below_4g = bytes.min(FOUR_GIB);
        let base_kib = (below_4g / KIB).min(640) as u16;
        let ext_kib = (below_4g.saturating_sub(MIB) / KIB).min(0xfc00) as u16;
        let above_16m = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff) as u16;
        let above_4g = (bytes.saturating_sub(FOUR_GIB) / (64 * KIB)).min(0xff_ffff) as u32;
        let mut put16 = |at: usize, v: u16| self.ram[at..at + 2].copy_from_slice(&v.to_le_bytes());
        put16(0x15, base_kib);
        put16(0x17, ext_kib);
        put16(0x30, ext_kib);
        put16(0x34, above_16m);
        self.ram[0x5b..0x5e].copy_from_slice(&above_4g.to_le_bytes()[..3]);
        let sum = self.ram[0x10..0x2e].iter().map(|&b| u16::from(b)).sum::<u16>();
        self.ram[0x2e..0x30].copy_from_slice(&sum.to_be_bytes());
    }

    fn reg_b(&self) -> u8 {
        self.ram[usize::from(reg::B)]
    }

    /// Wall-clock seconds and TSC ticks into the current second at `now`.
    fn clock(&self, now: u64) -> (i64, u64) {
        let elapsed = now.saturating_sub(self.base_tsc);
        let secs = i64::try_from(elapsed / self.tsc_hz).unwrap_or(i64::MAX);
        (self.base_seconds.saturating_add(secs), elapsed % self.tsc_hz)
    }

    fn encode(&self, v: u8) -> u8 {
        if self.reg_b() & b::DM_BINARY != 0 { v } else { ((v / 10) << 4) | (v % 10) }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.reg_b() & b::DM_BINARY != 0 {
            v
        } else {
            (v >> 4).wrapping_mul(10).wrapping_add(v & 0xf)
        }
    }

    fn encode_hour(&self, hour: u8) -> u8 {
        if self.reg_b() & b::HOURS_24 != 0 {
            return self.encode(hour);
        }
        let h12 = match hour % 12 {
            0 => 12,
            h => h,
        };
        self.encode(h12) | if hour >= 12 { 0x80 } else { 0 }
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg_b() & b::HOURS_24 != 0 {
            return self.decode(v);
        }
        let h = self.decode(v & 0x7f) % 12;
        if v & 0x80 != 0 { h + 12 } else { h }
    }

    /// Writes the clock's time at `seconds` into the time registers (in the current format).
    fn latch_time(&mut self, seconds: i64) {
        let t = civil_from_seconds(seconds);
        let year = t.year.rem_euclid(100) as u8;
        let century = t.year.div_euclid(100).rem_euclid(100) as u8;
        for (r, v) in [
            (reg::SECONDS, self.encode(t.second)),
            (reg::MINUTES, self.encode(t.minute)),
            (reg::HOURS, self.encode_hour(t.hour)),
            (reg::DAY_OF_WEEK, self.encode(t.weekday)),
            (reg::DAY_OF_MONTH, self.encode(t.day)),
            (reg::MONTH, self.encode(t.month)),
            (reg::YEAR, self.encode(year)),
            (reg::CENTURY, self.encode(century)),
        ] {
            self.ram[usize::from(r)] = v;
        }
    }

    /// The time the registers hold, as seconds since the epoch (out-of-range fields carry over).
    fn registers_time(&self) -> i64 {
        let r = |i: u8| self.decode(self.ram[usize::from(i)]);
        let year = i64::from(r(reg::CENTURY)) * 100 + i64::from(r(reg::YEAR));
        let days = days_from_civil(year, r(reg::MONTH), 1) + i64::from(r(reg::DAY_OF_MONTH)) - 1;
        days * SECONDS_PER_DAY
            + i64::from(self.decode_hour(self.ram[usize::from(reg::HOURS)])) * 3600
            + i64::from(r(reg::MINUTES)) * 60
            + i64::from(r(reg::SECONDS))
    }

    fn is_time_register(index: u8) -> bool {
        matches!(
            index,
            reg::SECONDS | reg::MINUTES | reg::HOURS | reg::DAY_OF_WEEK..=reg::YEAR | reg::CENTURY
        )
    }

    /// Folds the events between `seen_tsc` and `now` into register C and IRQ8.
    fn update(&mut self, now: u64) {
        let from = self.seen_tsc;
        if now <= from {
            return;
        }
        self.seen_tsc = now;
        let mut flags = 0;
        if let Some(period) = self.periodic_ticks() {
            let since = |t: u64| t.saturating_sub(self.base_tsc) / period;
            if since(now) > since(from) {
                flags |= c::PF;
            }
        }
        if self.reg_b() & b::SET == 0 {
            let (s0, _) = self.clock(from);
            let (s1, _) = self.clock(now);
            if s1 > s0 {
                flags |= c::UF;
                if self.next_alarm(s0.saturating_add(1)).is_some_and(|t| t <= s1) {
                    flags |= c::AF;
                }
            }
        }
        self.set_flags(flags);
    }

    fn set_flags(&mut self, flags: u8) {
        // PF, AF and UF sit at the same bit positions as PIE, AIE and UIE.
        let enables = self.reg_b() & (b::PIE | b::AIE | b::UIE);
        let c_reg = &mut self.ram[usize::from(reg::C)];
        *c_reg |= flags;
        if *c_reg & enables != 0 && *c_reg & c::IRQF == 0 {
            *c_reg |= c::IRQF;
            self.irq8_edge = true;
        }
    }

    /// An alarm byte: `Some(None)` matches anything, `Some(Some(v))` only `v`, `None` never
    /// (a value no time encodes to in the current format).
    fn alarm_field(alarm: u8, range: u8, encode: impl Fn(u8) -> u8) -> Option<Option<i64>> {
        if alarm & ALARM_DONT_CARE == ALARM_DONT_CARE {
            return Some(None);
        }
        (0..range).find(|&x| encode(x) == alarm).map(|x| Some(i64::from(x)))
    }

    /// The first second at or after `from` whose hours, minutes and seconds match the alarm
    /// registers: each step satisfies one field or moves to the next larger unit.
    fn next_alarm(&self, from: i64) -> Option<i64> {
        let r = |i: u8| self.ram[usize::from(i)];
        let h = Self::alarm_field(r(reg::HOURS_ALARM), 24, |x| self.encode_hour(x))?;
        let m = Self::alarm_field(r(reg::MINUTES_ALARM), 60, |x| self.encode(x))?;
        let s = Self::alarm_field(r(reg::SECONDS_ALARM), 60, |x| self.encode(x))?;
        let mut t = from;
        for _ in 0..16 {
            let sod = t.rem_euclid(SECONDS_PER_DAY);
            let (hh, mm, ss) = (sod / 3600, sod / 60 % 60, sod % 60);
            let next = |start: i64, now: i64, want: i64, unit: i64, carry: i64| {
                let base = start.checked_add(want * unit)?;
                if now < want { Some(base) } else { base.checked_add(carry) }
            };
            t = match (h, m, s) {
                (Some(v), _, _) if hh != v => next(t - sod, hh, v, 3600, SECONDS_PER_DAY)?,
                (_, Some(v), _) if mm != v => next(t - mm * 60 - ss, mm, v, 60, 3600)?,
                (_, _, Some(v)) if ss != v => next(t - ss, ss, v, 1, 60)?,
                _ => return Some(t),
            };
        }
        None
    }

    /// TSC ticks per periodic interrupt, if the rate select enables one (rates 1 and 2
    /// behave as 8 and 9 with a 32.768 kHz time base).
    fn periodic_ticks(&self) -> Option<u64> {
        let rs = match self.ram[usize::from(reg::A)] & a::RATE {
            0 => return None,
            1 => 8,
            2 => 9,
            rs => rs,
        };
        let ticks = (u128::from(self.tsc_hz) << (rs - 1)) / u128::from(TIME_BASE_HZ);
        Some(u64::try_from(ticks).unwrap_or(u64::MAX).max(1))
    }

    /// A guest IN from port 70h (reads 0xff, as on most chipsets) or 71h.
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        if port != PORT_DATA {
            return 0xff;
        }
        self.update(now);
        let index = self.index;
        match index {
            reg::A => {
                let (_, into) = self.clock(now);
                let window = u128::from(self.tsc_hz) * u128::from(UIP_MICROS) / 1_000_000;
                let uip =
                    self.reg_b() & b::SET == 0 && u128::from(self.tsc_hz - into) <= window.max(1);
                self.ram[usize::from(reg::A)] | if uip { a::UIP } else { 0 }
            }
            reg::C => {
                let v = self.ram[usize::from(reg::C)];
                self.ram[usize::from(reg::C)] = 0;
                v
            }
            i if Self::is_time_register(i) && self.reg_b() & b::SET == 0 => {
                let (seconds, _) = self.clock(now);
                self.latch_time(seconds);
                self.ram[usize::from(i)]
            }
            i => self.ram[usize::from(i & 0x7f)],
        }
    }

    /// A guest OUT to port 70h (select a register, bit 7 disables NMI) or 71h.
    pub fn write(&mut self, port: u16, value: u8, now: u64) {
        match port {
            PORT_INDEX => {
                self.index = value & 0x7f;
                self.nmi_disabled = value & 0x80 != 0;
            }
            PORT_DATA => self.write_data(value, now),
            _ => {}
        }
    }

    fn write_data(&mut self, value: u8, now: u64) {
        self.update(now);
        let index = self.index;
        let halted = self.reg_b() & b::SET != 0;
        match index {
            reg::A => self.ram[usize::from(reg::A)] = value & !a::UIP,
            reg::B => {
                let (seconds, _) = self.clock(now);
                if !halted {
                    // Freeze the time in the current format before a format change or SET.
                    self.latch_time(seconds);
                }
                let value = if value & b::SET != 0 { value & !b::UIE } else { value };
                self.ram[usize::from(reg::B)] = value;
                if value & b::SET == 0 {
                    self.restart_clock(now, halted);
                }
                self.set_flags(0);
            }
            reg::C | reg::D => {}
            i if Self::is_time_register(i) => {
                if !halted {
                    let (seconds, _) = self.clock(now);
                    self.latch_time(seconds);
                }
                self.ram[usize::from(i)] = value;
                if !halted {
                    self.restart_clock(now, true);
                }
            }
            i => self.ram[usize::from(i)] = value,
        }
    }

    /// Restarts the clock from the time registers (after SET or a direct time write) at `now`;
    /// `from_registers` false keeps the running time (only a format change).
    fn restart_clock(&mut self, now: u64, from_registers: bool) {
        if from_registers {
            self.base_seconds = self.registers_time();
            self.base_tsc = now;
        }
        self.seen_tsc = now;
    }

    /// IRQ8 rose since the last call (register C's IRQF set): the caller raises IRQ8 on
    /// the 8259 / I/O APIC. Register C must be read for the next one.
    pub fn take_irq8(&mut self, now: u64) -> bool {
        self.update(now);
        core::mem::take(&mut self.irq8_edge)
    }

    /// TSC value at which the next enabled interrupt flag may be set, if an interrupt is
    /// enabled (the caller polls [`Self::take_irq8`] then; alarms are checked once a second).
    pub fn next_event(&self, now: u64) -> Option<u64> {
        let b_reg = self.reg_b();
        let mut next: Option<u64> = None;
        if b_reg & b::PIE != 0
            && let Some(period) = self.periodic_ticks()
        {
            let k = now.saturating_sub(self.base_tsc) / period + 1;
            next = Some(self.base_tsc.saturating_add(k.saturating_mul(period)));
        }
        if b_reg & (b::UIE | b::AIE) != 0 && b_reg & b::SET == 0 {
            let (_, into) = self.clock(now);
            let second = now.saturating_add(self.tsc_hz - into);
            next = Some(next.map_or(second, |n| n.min(second)));
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HZ: u64 = 1_000_000;
    /// 2026-11-27 15:04:05 UTC, a Friday.
    const T0: i64 = 1_795_791_845;

    fn read_reg(r: &mut Rtc, index: u8, now: u64) -> u8 {
        r.write(PORT_INDEX, index, now);
        r.read(PORT_DATA, now)
    }

    fn write_reg(r: &mut Rtc, index: u8, value: u8, now: u64) {
        r.write(PORT_INDEX, index, now);
        r.write(PORT_DATA, value, now);
    }

    #[test]
    fn civil_conversions() {
        assert_eq!(
            civil_from_seconds(0),
            Civil { year: 1970, month: 1, day: 1, hour: 0, minute: 0, second: 0, weekday: 5 }
        );
        assert_eq!(
            civil_from_seconds(T0),
            Civil { year: 2026, month: 11, day: 27, hour: 15, minute: 4, second: 5, weekday: 6 }
        );
        // 2000-02-29 (leap day) and 2100-03-01 (2100 is no leap year).
        assert_eq!(days_from_civil(2000, 2, 29), 11_016);
        assert_eq!(days_from_civil(2100, 3, 1) - days_from_civil(2100, 2, 28), 1);
        for t in [0, 951_782_400, T0, 4_102_444_800, -86_400] {
            let c = civil_from_seconds(t);
            let back = days_from_civil(c.year, c.month, c.day) * SECONDS_PER_DAY
                + i64::from(c.hour) * 3600
                + i64::from(c.minute) * 60
                + i64::from(c.second);
            assert_eq!(back, t);
        }
    }

    #[test]
    fn reads_time_in_bcd_24h_by_default() {
        let mut r = Rtc::new(HZ, T0, 1000);
        let regs = [reg::SECONDS, reg::MINUTES, reg::HOURS, reg::DAY_OF_WEEK, reg::DAY_OF_MONTH];
        let got: Vec<u8> = regs.iter().map(|&i| read_reg(&mut r, i, 1000)).collect();
        assert_eq!(got, [0x05, 0x04, 0x15, 0x06, 0x27]);
        assert_eq!(read_reg(&mut r, reg::MONTH, 1000), 0x11);
        assert_eq!(read_reg(&mut r, reg::YEAR, 1000), 0x26);
        assert_eq!(read_reg(&mut r, reg::CENTURY, 1000), 0x20);
        // 2.5 s later.
        assert_eq!(read_reg(&mut r, reg::SECONDS, 1000 + 2_500_000), 0x07);
        assert_eq!(read_reg(&mut r, reg::D, 0), 0x80);
        assert_eq!(read_reg(&mut r, reg::A, 1000) & 0x7f, 0x26);
        assert_eq!(r.read(PORT_INDEX, 0), 0xff);
        assert!(Rtc::owns(0x70) && Rtc::owns(0x71) && !Rtc::owns(0x72));
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let mut r = Rtc::new(HZ, T0, 0);
        write_reg(&mut r, reg::B, b::DM_BINARY, 0);
        assert_eq!(read_reg(&mut r, reg::HOURS, 0), 0x80 | 3, "3 PM, binary");
        assert_eq!(read_reg(&mut r, reg::MINUTES, 0), 4);
        assert_eq!(read_reg(&mut r, reg::YEAR, 0), 26);
        write_reg(&mut r, reg::B, 0, 0);
        assert_eq!(read_reg(&mut r, reg::HOURS, 0), 0x83, "3 PM, BCD");
        // Midnight and noon in 12-hour mode.
        let mut r = Rtc::new(HZ, 0, 0);
        write_reg(&mut r, reg::B, 0, 0);
        assert_eq!(read_reg(&mut r, reg::HOURS, 0), 0x12);
        let mut r = Rtc::new(HZ, 12 * 3600, 0);
        write_reg(&mut r, reg::B, 0, 0);
        assert_eq!(read_reg(&mut r, reg::HOURS, 0), 0x92);
        // Switching format keeps the time running.
        write_reg(&mut r, reg::B, b::HOURS_24, 5 * HZ);
        assert_eq!(read_reg(&mut r, reg::HOURS, 5 * HZ), 0x12);
        assert_eq!(read_reg(&mut r, reg::SECONDS, 5 * HZ), 0x05);
    }

    /// What `hwclock --systohc` and Linux `mc146818_set_time` do: SET, write, clear SET.
    #[test]
    fn setting_the_clock() {
        let mut r = Rtc::new(HZ, T0, 0);
        write_reg(&mut r, reg::B, b::SET | b::HOURS_24, 10);
        // Halted: the registers hold still.
        assert_eq!(read_reg(&mut r, reg::SECONDS, 10 * HZ), 0x05);
        assert_eq!(read_reg(&mut r, reg::A, 10 * HZ) & a::UIP, 0);
        for (i, v) in [
            (reg::SECONDS, 0x30),
            (reg::MINUTES, 0x59),
            (reg::HOURS, 0x23),
            (reg::DAY_OF_MONTH, 0x31),
            (reg::MONTH, 0x12),
            (reg::YEAR, 0x99),
            (reg::CENTURY, 0x19),
        ] {
            write_reg(&mut r, i, v, 10 * HZ);
        }
        write_reg(&mut r, reg::B, b::HOURS_24, 10 * HZ);
        // 1999-12-31 23:59:30 + 31 s = 2000-01-01 00:00:01.
        let t = 41 * HZ;
        assert_eq!(read_reg(&mut r, reg::SECONDS, t), 0x01);
        assert_eq!(read_reg(&mut r, reg::HOURS, t), 0x00);
        assert_eq!(read_reg(&mut r, reg::DAY_OF_MONTH, t), 0x01);
        assert_eq!(read_reg(&mut r, reg::MONTH, t), 0x01);
        assert_eq!(read_reg(&mut r, reg::YEAR, t), 0x00);
        assert_eq!(read_reg(&mut r, reg::CENTURY, t), 0x20);
        assert_eq!(read_reg(&mut r, reg::DAY_OF_WEEK, t), 0x07, "Saturday");
        // A direct write without SET takes effect at once.
        write_reg(&mut r, reg::MINUTES, 0x30, t);
        assert_eq!(read_reg(&mut r, reg::MINUTES, t + 1), 0x30);
        assert_eq!(read_reg(&mut r, reg::SECONDS, t + 1), 0x01);
    }

    #[test]
    fn uip_is_set_just_before_each_update() {
        let mut r = Rtc::new(HZ, T0, 0);
        assert_eq!(read_reg(&mut r, reg::A, 500_000) & a::UIP, 0);
        assert_eq!(read_reg(&mut r, reg::A, 999_800) & a::UIP, a::UIP);
        assert_eq!(read_reg(&mut r, reg::A, 1_000_000) & a::UIP, 0);
        // Register A's rate is writable, UIP is not.
        write_reg(&mut r, reg::A, 0xff, 0);
        assert_eq!(read_reg(&mut r, reg::A, 0), 0x7f);
    }

    #[test]
    fn periodic_interrupt_and_register_c() {
        let mut r = Rtc::new(1 << 20, T0, 0);
        // Rate 6: 1024 Hz = 1024 TSC ticks at 1 MiHz.
        write_reg(&mut r, reg::A, 0x26, 0);
        assert_eq!(r.next_event(0), None, "PIE off");
        write_reg(&mut r, reg::B, b::HOURS_24 | b::PIE, 0);
        assert_eq!(r.next_event(0), Some(1024));
        assert!(!r.take_irq8(1000));
        assert!(r.take_irq8(1024));
        assert!(!r.take_irq8(5000), "IRQF stays set until C is read");
        assert_eq!(read_reg(&mut r, reg::C, 5000), c::IRQF | c::PF);
        assert_eq!(read_reg(&mut r, reg::C, 5000), 0, "read clears");
        assert!(r.take_irq8(6144));
        // Rate 15: 2 Hz.
        write_reg(&mut r, reg::A, 0x2f, 6144);
        assert_eq!(r.next_event(6144), Some(1 << 19));
        // PF is set even with PIE clear, without IRQF.
        write_reg(&mut r, reg::B, b::HOURS_24, 6144);
        let _ = read_reg(&mut r, reg::C, 6144);
        assert!(!r.take_irq8(1 << 20));
        assert_eq!(read_reg(&mut r, reg::C, 1 << 20), c::PF | c::UF);
    }

    #[test]
    fn update_ended_and_alarm_interrupts() {
        let mut r = Rtc::new(HZ, T0, 0);
        write_reg(&mut r, reg::A, 0x20, 0); // no periodic flag
        write_reg(&mut r, reg::B, b::HOURS_24 | b::UIE, 0);
        assert_eq!(r.next_event(300_000), Some(HZ));
        assert!(!r.take_irq8(999_999));
        assert!(r.take_irq8(HZ));
        assert_eq!(read_reg(&mut r, reg::C, HZ), c::IRQF | c::UF);
        // Alarm at 15:05:00 (any hour via don't-care), checked across a jump of 2 minutes.
        write_reg(&mut r, reg::B, b::HOURS_24 | b::AIE, HZ);
        write_reg(&mut r, reg::SECONDS_ALARM, 0x00, HZ);
        write_reg(&mut r, reg::MINUTES_ALARM, 0x05, HZ);
        write_reg(&mut r, reg::HOURS_ALARM, 0xff, HZ);
        assert!(!r.take_irq8(50 * HZ));
        let _ = read_reg(&mut r, reg::C, 50 * HZ);
        assert!(r.take_irq8(170 * HZ));
        assert_eq!(read_reg(&mut r, reg::C, 170 * HZ), c::IRQF | c::AF | c::UF);
        // SET clears UIE and stops update interrupts.
        write_reg(&mut r, reg::B, b::SET | b::UIE, 170 * HZ);
        assert_eq!(read_reg(&mut r, reg::B, 170 * HZ), b::SET);
        assert!(!r.take_irq8(200 * HZ));
    }

    #[test]
    fn next_alarm_search() {
        let mut r = Rtc::new(HZ, 0, 0);
        let day = |d: i64, h: i64, m: i64, s: i64| d * SECONDS_PER_DAY + h * 3600 + m * 60 + s;
        let from = day(3, 15, 4, 5);
        for (alarm, want) in [
            ([0x10, 0x30, 0x15], Some(day(3, 15, 30, 10))),
            ([0x10, 0x03, 0x15], Some(day(4, 15, 3, 10))),
            ([0x05, 0x04, 0x15], Some(from)),
            ([0x04, 0x04, 0x15], Some(day(4, 15, 4, 4))),
            ([0x00, 0xc0, 0xc0], Some(day(3, 15, 5, 0))),
            ([0xff, 0xff, 0x09], Some(day(4, 9, 0, 0))),
            ([0xff, 0xff, 0xff], Some(from)),
            ([0x60, 0x00, 0x00], None),
            ([0x00, 0x00, 0x24], None),
        ] {
            for (i, v) in
                [reg::SECONDS_ALARM, reg::MINUTES_ALARM, reg::HOURS_ALARM].into_iter().zip(alarm)
            {
                write_reg(&mut r, i, v, 0);
            }
            assert_eq!(r.next_alarm(from), want, "alarm {alarm:x?}");
        }
        // 12-hour mode: 9 PM is 0x89.
        write_reg(&mut r, reg::B, 0, 0);
        write_reg(&mut r, reg::HOURS_ALARM, 0x89, 0);
        assert_eq!(r.next_alarm(from), Some(day(3, 21, 0, 0)));
        assert_eq!(r.next_alarm(i64::MAX - 10), None);
    }

    #[test]
    fn cmos_ram_and_memory_size() {
        let mut r = Rtc::new(HZ, T0, 0);
        write_reg(&mut r, 0x40, 0x5a, 0);
        assert_eq!(read_reg(&mut r, 0x40, 0), 0x5a);
        // NMI-disable bit selects the same register.
        r.write(PORT_INDEX, 0x80 | 0x40, 0);
        assert!(r.nmi_disabled());
        assert_eq!(r.read(PORT_DATA, 0), 0x5a);
        r.write(PORT_INDEX, 0x0d, 0);
        assert!(!r.nmi_disabled());
        // 6 GiB: 640 KiB base, 63 MiB extended, 4080 MiB above 16M, 2 GiB above 4G.
        r.set_memory_size(6 << 30);
        let word = |r: &mut Rtc, i: u8| {
            u16::from(read_reg(r, i, 0)) | u16::from(read_reg(r, i + 1, 0)) << 8
        };
        assert_eq!(word(&mut r, 0x15), 640);
        assert_eq!(word(&mut r, 0x17), 0xfc00);
        assert_eq!(word(&mut r, 0x30), 0xfc00);
        assert_eq!(word(&mut r, 0x34), 0xff00);
        assert_eq!(word(&mut r, 0x5b), 0x8000);
        let sum: u16 = (0x10..0x2e).map(|i| u16::from(read_reg(&mut r, i, 0))).sum();
        assert_eq!(
            u16::from(read_reg(&mut r, 0x2e, 0)) << 8 | u16::from(read_reg(&mut r, 0x2f, 0)),
            sum
        );
        // 32 MiB: 31 MiB extended, 16 MiB above 16M.
        r.set_memory_size(32 << 20);
        assert_eq!(word(&mut r, 0x17), 31 * 1024);
        assert_eq!(word(&mut r, 0x34), 256);
        assert_eq!(word(&mut r, 0x5b), 0);
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(512))]

        /// Arbitrary port accesses (garbage BCD, any format, SET toggles) at arbitrary, also
        /// decreasing, times and clock values: no panic, register D stays valid.
        #[test]
        fn fuzz_rtc_never_panics(
            hz in any::<u64>(),
            epoch in any::<i64>(),
            ops in proptest::collection::vec((0u8..5, any::<u8>(), any::<u64>()), 0..96),
        ) {
            let mut r = Rtc::new(hz, epoch, 0);
            for (op, v, now) in ops {
                match op {
                    0 => r.write(PORT_INDEX, v, now),
                    1 => r.write(PORT_DATA, v, now),
                    2 => { let _ = r.read(PORT_DATA, now); }
                    3 => { let _ = r.take_irq8(now); }
                    _ => { let _ = r.next_event(now); r.set_memory_size(now); }
                }
            }
            r.write(PORT_INDEX, reg::D, 0);
            prop_assert_eq!(r.read(PORT_DATA, u64::MAX), D_VRT);
        }
    }
}
