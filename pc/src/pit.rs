//! The 8254 programmable interval timer (ports 40h-43h) and the PC's port 61h (channel 2's
//! gate and output, the refresh toggle), as Intel's 82C54 datasheet and the PC/AT define them.
//!
//! Time is the TSC (`now`); the PIT runs at [`PIT_HZ`], so `elapsed TSC * PIT_HZ / tsc_hz`
//! PIT clocks have passed (u128 arithmetic). The model keeps, per channel, when counting
//! started and derives the count and OUT from the elapsed clocks, as QEMU and KVM do, so a
//! guest polling a count or port 61h sees it move without any timer in L0.
//!
//! Channels 0 and 1 have their gate tied high; channel 0's OUT is IRQ0 ([`Pit::take_irq0`]).
//! Channel 2's gate is port 61h bit 0 and its OUT reads back as port 61h bit 5: enough for
//! Linux's `pit_calibrate_tsc` and `quick_pit_calibrate`. Simplifications: BCD counting
//! (control word bit 0) is accepted and reported in the status byte but counts in binary; a
//! new count written to a running mode 2/3 counter restarts it at once instead of at the end
//! of the current period; mode 3 with an odd count divides the period as `(n + 1) / 2` high
//! and `(n - 1) / 2` low.

/// The PIT input clock (Hz).
pub const PIT_HZ: u64 = 1_193_182;
/// Control word register.
const PORT_CONTROL: u16 = 0x43;
/// PC/AT system control port B (port 61h).
const PORT_61: u16 = 0x61;
/// Port 61h bits the guest can write: channel 2 gate, speaker data, parity/IOCHK disables.
const PORT_61_WRITABLE: u8 = 0x0f;
/// Port 61h bit 4 toggles about every 15 µs (18 PIT clocks, the DRAM refresh period).
const REFRESH_CLOCKS: u64 = 18;

/// One counter (82C54 "counter 0/1/2").
#[derive(Clone, Copy, Debug)]
struct Channel {
    /// Mode 0-5 (6 and 7 alias 2 and 3).
    mode: u8,
    bcd: bool,
    /// Read/write access: 1 LSB, 2 MSB, 3 LSB then MSB.
    access: u8,
    /// The count register as last written (1..=65536; 0 means 65536).
    reload: u32,
    /// The LSB of an LSB-then-MSB write, waiting for its MSB.
    write_lsb: Option<u8>,
    /// Read flip-flop: the next LSB-then-MSB read returns the MSB.
    read_msb: bool,
    /// Output latch (counter latch or read-back command), held until read.
    latch: Option<u16>,
    /// Latched status byte (read-back command), read before the count.
    status: Option<u8>,
    /// The counting element holds a count (mode 0/2/3/4: written; 1/5: triggered).
    counting: bool,
    /// PIT clock at which counting last (re)started, `None` while the gate stops it.
    running_since: Option<u64>,
    /// Clocks counted before `running_since` (a gate pause in modes 0/4).
    elapsed_before: u64,
    /// The count reads this while not counting.
    held: u16,
    /// Gate input (tied high on channels 0 and 1).
    gate: bool,
    /// Null count: a count was written but not yet loaded into the counting element.
    null_count: bool,
    /// A complete count was written since the control word (what a mode 1/5 trigger loads).
    written: bool,
}

impl Channel {
    fn new() -> Self {
        Channel {
            mode: 0,
            bcd: false,
            access: 3,
            reload: 0x10000,
            write_lsb: None,
            read_msb: false,
            latch: None,
            status: None,
            counting: false,
            running_since: None,
            elapsed_before: 0,
            held: 0,
            gate: true,
            null_count: false,
            written: false,
        }
    }

    /// Clocks counted since the count was loaded, while counting.
    fn elapsed(&self, t: u64) -> Option<u64> {
        let running = self.running_since.map_or(0, |s| t.saturating_sub(s));
        self.counting.then(|| self.elapsed_before.saturating_add(running))
    }

    /// The counting element's value at PIT clock `t`.
    fn count(&self, t: u64) -> u16 {
        let Some(d) = self.elapsed(t) else { return self.held };
        let n = u64::from(self.reload);
        let c = match self.mode {
            2 => n - d % n,
            3 => n - (d.wrapping_mul(2) % n),
            _ => n.wrapping_sub(d),
        };
        c as u16
    }

    /// The OUT pin at PIT clock `t`.
    fn out(&self, t: u64) -> bool {
        let Some(d) = self.elapsed(t) else { return self.mode != 0 };
        let n = u64::from(self.reload);
        match self.mode {
            0 | 1 => d >= n,
            2 => !self.gate || d % n != n - 1,
            3 => !self.gate || d % n < n.div_ceil(2),
            _ => d != n,
        }
    }

    /// Rising edges of OUT with elapsed clocks in `(d0, d1]` (gate high throughout).
    fn rising_edges(&self, d0: u64, d1: u64) -> u64 {
        if d1 <= d0 {
            return 0;
        }
        let n = u64::from(self.reload);
        let once = |at: u64| u64::from(d0 < at && at <= d1);
        match self.mode {
            0 | 1 => once(n),
            2 | 3 => d1 / n - d0 / n,
            _ => once(n + 1),
        }
    }

    /// Elapsed clocks of the first rising edge after `d0`, if there is one.
    fn next_edge(&self, d0: u64) -> Option<u64> {
        let n = u64::from(self.reload);
        match self.mode {
            0 | 1 => (d0 < n).then_some(n),
            2 | 3 => (d0 / n).checked_add(1)?.checked_mul(n),
            _ => (d0 <= n).then_some(n + 1),
        }
    }

    fn status_byte(&self, t: u64) -> u8 {
        u8::from(self.out(t)) << 7
            | u8::from(self.null_count) << 6
            | self.access << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    /// Starts counting `reload` from zero elapsed clocks (stopped while the gate is low).
    fn start(&mut self, t: u64) {
        self.counting = true;
        self.null_count = false;
        self.elapsed_before = 0;
        self.running_since = self.gate.then_some(t);
    }

    /// Control word for this counter: mode, access and BCD; resets the counter's logic.
    fn control(&mut self, value: u8, t: u64) {
        self.held = self.count(t);
        self.access = (value >> 4) & 3;
        let mode = (value >> 1) & 7;
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = value & 1 != 0;
        self.write_lsb = None;
        self.read_msb = false;
        self.latch = None;
        self.status = None;
        self.counting = false;
        self.running_since = None;
        self.elapsed_before = 0;
        self.null_count = true;
        self.written = false;
    }

    /// A data-port write: a count byte per the access mode. True if counting (re)started.
    fn write(&mut self, value: u8, t: u64) -> bool {
        let count = match (self.access, self.write_lsb.take()) {
            (1, _) => u32::from(value),
            (2, _) => u32::from(value) << 8,
            (_, Some(lsb)) => u32::from(lsb) | u32::from(value) << 8,
            (_, None) => {
                self.write_lsb = Some(value);
                if self.mode == 0 {
                    // Writing the first byte stops a mode 0 count and drives OUT low.
                    self.held = self.count(t);
                    self.counting = false;
                }
                return false;
            }
        };
        self.reload = if count == 0 { 0x10000 } else { count };
        self.null_count = true;
        self.written = true;
        // Modes 1 and 5 wait for a gate trigger; the others load now.
        let start = !matches!(self.mode, 1 | 5);
        if start {
            self.start(t);
        }
        start
    }

    /// A data-port read: status, then a latched count, then the live count, per access.
    fn read(&mut self, t: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        let value = self.latch.unwrap_or_else(|| self.count(t));
        let (byte, done) = match self.access {
            1 => (value as u8, true),
            2 => ((value >> 8) as u8, true),
            _ => {
                self.read_msb = !self.read_msb;
                if self.read_msb { (value as u8, false) } else { ((value >> 8) as u8, true) }
            }
        };
        if done {
            self.latch = None;
        }
        byte
    }

    /// Counter latch: freezes the count for reading (ignored while a latch is pending).
    fn latch_count(&mut self, t: u64) {
        if self.latch.is_none() {
            self.latch = Some(self.count(t));
        }
    }

    /// New gate level (channel 2 only).
    fn set_gate(&mut self, gate: bool, t: u64) {
        if gate == self.gate {
            return;
        }
        self.gate = gate;
        match (self.mode, gate) {
            // Modes 1 and 5: a rising edge (re)triggers the loaded count.
            (1 | 5, true) if self.written => self.start(t),
            (1 | 5, _) => {}
            // Modes 2 and 3: gate low stops counting with OUT high; rising reloads.
            (2 | 3, true) if self.counting => self.start(t),
            // Modes 0 and 4: gate low suspends counting; rising resumes.
            (_, true) if self.counting => self.running_since = Some(t),
            (_, false) if self.counting => {
                self.elapsed_before = self.elapsed(t).unwrap_or(0);
                self.running_since = None;
            }
            _ => {}
        }
    }
}

/// The 8254 and port 61h.
#[derive(Clone, Debug)]
pub struct Pit {
    tsc_hz: u64,
    channels: [Channel; 3],
    /// Port 61h bits 3:0 as written.
    port61: u8,
    /// Channel 0: elapsed clocks up to which IRQ0 edges were counted.
    irq0_seen: u64,
    /// Channel 0 edges counted but not yet taken.
    irq0_pending: u64,
}

impl Pit {
    /// A PIT whose counters wait for programming, converting TSC values at `tsc_hz` (0 is
    /// taken as 1). PIT clock `c` begins at TSC `ceil(c * tsc_hz / PIT_HZ)`, so elapsed clocks
    /// never drift from the TSC however often the guest reads.
    pub fn new(tsc_hz: u64) -> Self {
        let mut channels = [Channel::new(); 3];
        // Channel 2's gate (port 61h bit 0) starts low.
        channels[2].gate = false;
        Pit { tsc_hz: tsc_hz.max(1), channels, port61: 0, irq0_seen: 0, irq0_pending: 0 }
    }

    /// True for the ports this device decodes: 40h-43h and 61h.
    pub fn owns(port: u16) -> bool {
        matches!(port, 0x40..=0x43 | PORT_61)
    }

    /// PIT clocks from TSC 0 to `now`.
    fn clocks(&self, now: u64) -> u64 {
        let c = u128::from(now) * u128::from(PIT_HZ) / u128::from(self.tsc_hz);
        u64::try_from(c).unwrap_or(u64::MAX)
    }

    /// The first TSC value at which [`Self::clocks`] reaches `clock`.
    fn tsc_of(&self, clock: u64) -> u64 {
        let t = (u128::from(clock) * u128::from(self.tsc_hz)).div_ceil(u128::from(PIT_HZ));
        u64::try_from(t).unwrap_or(u64::MAX)
    }

    /// Counts channel 0's edges up to `t` into `irq0_pending` (before channel 0 changes).
    fn accumulate_irq0(&mut self, t: u64) {
        let ch = &self.channels[0];
        if let Some(d) = ch.elapsed(t) {
            let edges = ch.rising_edges(self.irq0_seen, d);
            self.irq0_pending = self.irq0_pending.saturating_add(edges);
            self.irq0_seen = self.irq0_seen.max(d);
        }
    }

    /// Reads a port this device owns (others, and the write-only control port, read 0xff).
    pub fn read(&mut self, port: u16, now: u64) -> u8 {
        let t = self.clocks(now);
        match port {
            PORT_61 => {
                let refresh = (t / REFRESH_CLOCKS) & 1 != 0;
                let out2 = self.channels[2].out(t);
                self.port61 | u8::from(refresh) << 4 | u8::from(out2) << 5
            }
            0x40..=0x42 => match self.channels.get_mut(usize::from(port - 0x40)) {
                Some(ch) => ch.read(t),
                None => 0xff,
            },
            _ => 0xff,
        }
    }

    /// Writes a port this device owns (others are ignored).
    pub fn write(&mut self, port: u16, value: u8, now: u64) {
        let t = self.clocks(now);
        self.accumulate_irq0(t);
        match port {
            PORT_61 => {
                self.port61 = value & PORT_61_WRITABLE;
                self.channels[2].set_gate(value & 1 != 0, t);
            }
            PORT_CONTROL => self.control(value, t),
            0x40..=0x42 => {
                let i = usize::from(port - 0x40);
                let started = self.channels.get_mut(i).is_some_and(|ch| ch.write(value, t));
                if started && i == 0 {
                    self.irq0_seen = 0;
                }
            }
            _ => {}
        }
    }

    /// Port 43h: a control word, a counter latch command or a read-back command.
    fn control(&mut self, value: u8, t: u64) {
        let sc = usize::from(value >> 6);
        if sc == 3 {
            // Read-back: bit 5 clear latches counts, bit 4 clear latches status; bits 3:1
            // select channels 0-2.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if value & (2 << i) == 0 {
                    continue;
                }
                if value & 0x20 == 0 {
                    ch.latch_count(t);
                }
                if value & 0x10 == 0 && ch.status.is_none() {
                    ch.status = Some(ch.status_byte(t));
                }
            }
            return;
        }
        let Some(ch) = self.channels.get_mut(sc) else { return };
        if value & 0x30 == 0 {
            ch.latch_count(t);
        } else {
            ch.control(value, t);
            if sc == 0 {
                self.irq0_seen = 0;
            }
        }
    }

    /// Rising edges of channel 0's OUT (IRQ0) since the last call; the caller raises IRQ0
    /// on the 8259 if nonzero (edges between calls coalesce there anyway).
    pub fn take_irq0(&mut self, now: u64) -> u32 {
        let t = self.clocks(now);
        self.accumulate_irq0(t);
        let n = u32::try_from(self.irq0_pending).unwrap_or(u32::MAX);
        self.irq0_pending = 0;
        n
    }

    /// TSC value of channel 0's next rising edge: `now` if edges are waiting for
    /// [`Self::take_irq0`], `None` if channel 0 is not counting towards one (e.g. a mode 0
    /// count that already expired).
    pub fn next_irq0(&self, now: u64) -> Option<u64> {
        if self.irq0_pending != 0 {
            return Some(now);
        }
        let ch = &self.channels[0];
        let since = ch.running_since.filter(|_| ch.counting)?;
        let edge = ch.next_edge(self.irq0_seen)?;
        let clock = since.saturating_add(edge.saturating_sub(ch.elapsed_before));
        Some(self.tsc_of(clock))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One PIT clock per TSC tick keeps the arithmetic readable.
    fn pit() -> Pit {
        Pit::new(PIT_HZ)
    }

    fn read16(p: &mut Pit, port: u16, now: u64) -> u16 {
        let lo = p.read(port, now);
        u16::from(lo) | u16::from(p.read(port, now)) << 8
    }

    #[test]
    fn owns_ports() {
        for port in [0x40, 0x41, 0x42, 0x43, 0x61] {
            assert!(Pit::owns(port));
        }
        for port in [0x3f, 0x44, 0x60, 0x62, 0x20] {
            assert!(!Pit::owns(port));
        }
    }

    /// Linux `pit_calibrate_tsc`: gate channel 2, mode 0, poll port 61h bit 5.
    #[test]
    fn channel2_mode0_calibration_loop() {
        let tsc_hz = 3_000_000_000;
        let mut p = Pit::new(tsc_hz);
        let latch: u16 = 59659; // 50 ms
        let t0 = 1_000_000;
        let port61 = p.read(0x61, t0);
        p.write(0x61, (port61 & !0x02) | 0x01, t0);
        p.write(0x43, 0xb0, t0);
        p.write(0x42, latch as u8, t0);
        p.write(0x42, (latch >> 8) as u8, t0);
        assert_eq!(p.read(0x61, t0) & 0x21, 0x01);
        // 50 ms of TSC minus a little: still low; at 50 ms: high, and it stays high.
        let end = t0 + (u64::from(latch) * tsc_hz).div_ceil(PIT_HZ);
        assert_eq!(p.read(0x61, end - 3000) & 0x20, 0);
        assert_eq!(p.read(0x61, end) & 0x20, 0x20);
        assert_eq!(p.read(0x61, end + tsc_hz) & 0x20, 0x20);
        // Speaker bit stored, refresh bit toggles over time.
        p.write(0x61, 0x03, end);
        assert_eq!(p.read(0x61, end) & 0x03, 0x03);
        let r: Vec<u8> = (0..8).map(|i| p.read(0x61, i * 15 * tsc_hz / 1_000_000) & 0x10).collect();
        assert!(r.contains(&0) && r.contains(&0x10));
    }

    /// Linux `quick_pit_calibrate`: live (unlatched) reads in LSB-then-MSB order.
    #[test]
    fn live_reads_count_down() {
        let mut p = pit();
        p.write(0x61, 1, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, 0xff, 0);
        p.write(0x42, 0xff, 0);
        assert_eq!(read16(&mut p, 0x42, 0), 0xffff);
        assert_eq!(read16(&mut p, 0x42, 0x100), 0xfeff);
        // Mode 0 keeps counting through 0 (wrapping).
        assert_eq!(read16(&mut p, 0x42, 0x1_0000), 0xffff);
        // Gate low suspends mode 0, gate high resumes.
        p.write(0x61, 0, 0x1_0010);
        assert_eq!(read16(&mut p, 0x42, 0x2_0000), 0xffef);
        p.write(0x61, 1, 0x2_0000);
        assert_eq!(read16(&mut p, 0x42, 0x2_0001), 0xffee);
    }

    #[test]
    fn latch_freezes_count_until_read() {
        let mut p = pit();
        p.write(0x43, 0x34, 0); // channel 0, LSB/MSB, mode 2
        p.write(0x40, 0x00, 0);
        p.write(0x40, 0x10, 0); // 0x1000
        p.write(0x43, 0x00, 0x234); // latch channel 0
        p.write(0x43, 0x00, 0x500); // ignored: already latched
        assert_eq!(p.read(0x40, 0x800), 0xcc);
        assert_eq!(p.read(0x40, 0x900), 0x0d);
        // Latch released: live count.
        assert_eq!(read16(&mut p, 0x40, 0xa00), 0x0600);
        // LSB-only and MSB-only access modes.
        p.write(0x43, 0x54, 0); // channel 1, LSB only, mode 2
        p.write(0x41, 200, 0);
        assert_eq!(p.read(0x41, 50), 150);
        p.write(0x43, 0x64, 0); // channel 1, MSB only, mode 2
        p.write(0x41, 0x20, 0);
        p.write(0x43, 0x40, 0x100);
        assert_eq!(p.read(0x41, 0x300), 0x1f);
        assert_eq!(p.read(0x41, 0x300), 0x1d);
    }

    #[test]
    fn read_back_command() {
        let mut p = pit();
        p.write(0x61, 1, 0);
        p.write(0x43, 0xb0, 0); // channel 2, mode 0
        p.write(0x42, 100, 0);
        p.write(0x42, 0, 0);
        // Latch status and count of channel 2.
        p.write(0x43, 0xc8, 30);
        assert_eq!(p.read(0x42, 500), 0x30); // OUT low, count loaded, LSB/MSB, mode 0
        assert_eq!(read16(&mut p, 0x42, 500), 70);
        // Status only, after expiry: OUT high.
        p.write(0x43, 0xe8, 200);
        assert_eq!(p.read(0x42, 200), 0xb0);
        // Status right after a control word: null count.
        p.write(0x43, 0x36, 300); // channel 0 mode 3
        p.write(0x43, 0xe2, 300);
        assert_eq!(p.read(0x40, 300), 0x40 | 0x80 | 0x36);
        // Modes 6 and 7 alias 2 and 3; BCD reported.
        p.write(0x43, 0x7d, 300); // channel 1, LSB/MSB, mode 6, BCD
        p.write(0x43, 0xe4, 300);
        assert_eq!(p.read(0x41, 300) & 0x3f, 0x35);
    }

    #[test]
    fn channel0_periodic_irq0() {
        let tsc_hz = 2 * PIT_HZ;
        let mut p = Pit::new(tsc_hz);
        assert_eq!(p.next_irq0(0), None);
        p.write(0x43, 0x34, 1000); // mode 2
        p.write(0x40, 100, 1000);
        p.write(0x40, 0, 1000);
        // 100 PIT clocks = 200 TSC ticks per period.
        assert_eq!(p.next_irq0(1000), Some(1200));
        assert_eq!(p.take_irq0(1199), 0);
        assert_eq!(p.take_irq0(1200), 1);
        assert_eq!(p.next_irq0(1200), Some(1400));
        assert_eq!(p.take_irq0(1350), 0);
        assert_eq!(p.take_irq0(2000), 4);
        assert_eq!(p.next_irq0(2000), Some(2200));
        // Edges before reprogramming are kept; the new mode 3 period starts at the write.
        p.write(0x43, 0x36, 2300);
        assert_eq!(p.next_irq0(2300), Some(2300));
        assert_eq!(p.take_irq0(2300), 1);
        p.write(0x40, 50, 2300);
        p.write(0x40, 0, 2300);
        assert_eq!(p.next_irq0(2300), Some(2400));
        assert!(p.read(0x43, 2300) == 0xff);
        assert_eq!(p.take_irq0(2450), 1);
        assert_eq!(p.take_irq0(3000), 6);
        // Mode 0 one-shot: one edge, then none.
        p.write(0x43, 0x30, 3000);
        p.write(0x40, 10, 3000);
        p.write(0x40, 0, 3000);
        assert_eq!(p.next_irq0(3000), Some(3020));
        assert_eq!(p.take_irq0(10_000), 1);
        assert_eq!(p.next_irq0(10_000), None);
        assert_eq!(p.take_irq0(20_000), 0);
    }

    #[test]
    fn mode3_square_wave_and_reload_zero() {
        let mut p = pit();
        p.write(0x61, 1, 0);
        p.write(0x43, 0xb6, 0); // channel 2, mode 3
        p.write(0x42, 0, 0);
        p.write(0x42, 0, 0); // 65536
        assert_eq!(p.read(0x61, 0) & 0x20, 0x20);
        assert_eq!(p.read(0x61, 32767) & 0x20, 0x20);
        assert_eq!(p.read(0x61, 32768) & 0x20, 0);
        assert_eq!(p.read(0x61, 65536) & 0x20, 0x20);
        // Count decrements by two, twice per period.
        assert_eq!(read16(&mut p, 0x42, 1), 0xfffe);
        // Gate low forces OUT high.
        p.write(0x61, 0, 40000);
        assert_eq!(p.read(0x61, 40000) & 0x20, 0x20);
    }

    #[test]
    fn mode1_and_mode5_need_a_gate_trigger() {
        let mut p = pit();
        p.write(0x43, 0xb2, 0); // channel 2, mode 1
        p.write(0x42, 10, 0);
        p.write(0x42, 0, 0);
        assert_eq!(p.read(0x61, 100) & 0x20, 0x20);
        p.write(0x61, 1, 100);
        assert_eq!(p.read(0x61, 105) & 0x20, 0);
        assert_eq!(p.read(0x61, 110) & 0x20, 0x20);
        // Retrigger.
        p.write(0x61, 0, 120);
        p.write(0x61, 1, 121);
        assert_eq!(p.read(0x61, 125) & 0x20, 0);
        // Mode 5: strobe low for one clock after the count.
        p.write(0x61, 0, 200);
        p.write(0x43, 0xba, 200);
        p.write(0x42, 5, 200);
        p.write(0x42, 0, 200);
        p.write(0x61, 1, 300);
        assert_eq!(p.read(0x61, 304) & 0x20, 0x20);
        assert_eq!(p.read(0x61, 305) & 0x20, 0);
        assert_eq!(p.read(0x61, 306) & 0x20, 0x20);
    }

    #[test]
    fn mode4_software_strobe_on_channel0() {
        let mut p = pit();
        p.write(0x43, 0x38, 0);
        p.write(0x40, 10, 0);
        p.write(0x40, 0, 0);
        assert_eq!(p.next_irq0(0), Some(11));
        assert_eq!(p.take_irq0(10), 0);
        assert_eq!(p.take_irq0(11), 1);
        assert_eq!(p.next_irq0(11), None);
    }

    #[test]
    fn mode0_first_byte_stops_counting() {
        let mut p = pit();
        p.write(0x61, 1, 0);
        p.write(0x43, 0xb0, 0);
        p.write(0x42, 5, 0);
        p.write(0x42, 0, 0);
        assert_eq!(p.read(0x61, 10) & 0x20, 0x20);
        p.write(0x42, 20, 10);
        assert_eq!(p.read(0x61, 10) & 0x20, 0);
        assert_eq!(p.read(0x61, 100) & 0x20, 0);
        p.write(0x42, 0, 100);
        assert_eq!(p.read(0x61, 119) & 0x20, 0);
        assert_eq!(p.read(0x61, 120) & 0x20, 0x20);
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(512))]

        /// Arbitrary port sequences, times (also going backwards) and TSC rates: no panic.
        #[test]
        fn fuzz_pit_never_panics(
            tsc_hz in prop_oneof![Just(0u64), Just(1), any::<u64>(), 1_000_000u64..5_000_000_000],
            ops in prop::collection::vec((0u16..0x70, any::<u8>(), any::<u64>(), any::<bool>()), 0..64),
        ) {
            let mut p = Pit::new(tsc_hz);
            for (port, value, now, write) in ops {
                let port = match port % 6 { 4 => 0x61, 5 => port, n => 0x40 + n };
                if write {
                    p.write(port, value, now);
                } else {
                    let _ = p.read(port, now);
                }
                let _ = p.take_irq0(now);
                let _ = p.next_irq0(now);
            }
        }
    }
}
