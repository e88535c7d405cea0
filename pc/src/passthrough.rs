//! The PCI passthrough filter: a guest's configuration-space accesses to a function assigned to
//! it go to the real function, except the registers the level below must keep or virtualize
//! (PCI Local Bus 3.0 section 6.1, the type 0 header; PCI-to-PCI bridges are not assigned):
//!
//! - **BARs** (10h-24h): the guest sees the real BARs' addresses and sizes. Sizing works as on
//!   hardware (write all-ones, read the size mask, write the address back) against a virtual
//!   copy: the real BAR is never written. With 1:1 guest memory the BARs stay where the
//!   firmware put them, so a write of any other address is refused ([`Refused::WildBar`], for
//!   the caller to log) and the BAR reads back its real address: the device never moves.
//! - **Command** (04h): the guest owns I/O space, memory space, bus master and INTx disable
//!   ([`GUEST_COMMAND`]); the other bits keep the value the level below found (SERR#, parity
//!   response and the rest stay under its control).
//! - **Interrupt line** (3Ch) is a guest-writable byte, initially what the caller says
//!   (the GSI it routes the function's INTx to); the interrupt pin (3Dh) reads the real one.
//! - **Expansion ROM** (30h) is hidden (reads 0, writes ignored).
//! - **Capabilities**: with `hide_msi`, MSI and MSI-X are unlinked from the list (the next
//!   pointers and 34h are virtual) and their registers read 0 and refuse writes
//!   ([`Refused::HiddenCapability`]), so the guest uses INTx; status bit 4 follows the
//!   filtered list.
//! - The IDs, class, header type, BIST, subsystem IDs and CardBus pointer are read-only to
//!   the guest; status (06h, write-1-to-clear), cache line size, latency timer and the device
//!   specific registers from 40h pass through.
//!
//! Accesses may be 1 to 4 bytes at any offset (an access through CFCh-CFFh at an odd lane, or
//! one crossing a dword): they are handled byte by byte and the pass-through bytes go to the
//! real function as naturally aligned 1-, 2- or 4-byte writes (so a byte write to status never
//! clears a bit the guest did not name). Offsets from 100h (PCI Express extended space, which
//! the legacy mechanism cannot reach) read all-ones and refuse writes.

/// The real function's configuration space (the level below's access mechanism).
pub trait ConfigSpace {
    /// The dword at `offset` (a multiple of 4, below 100h).
    fn read32(&mut self, offset: u8) -> u32;
    /// A `size`-byte write (1, 2 or 4) at `offset`, naturally aligned, below 100h.
    fn write(&mut self, offset: u8, size: u8, value: u32);
}

/// Register offsets of the type 0 header (PCI 3.0 figure 6-1).
pub mod reg {
    pub const VENDOR_ID: u8 = 0x00;
    pub const COMMAND: u8 = 0x04;
    pub const STATUS: u8 = 0x06;
    pub const CACHE_LINE_SIZE: u8 = 0x0c;
    pub const LATENCY_TIMER: u8 = 0x0d;
    pub const BAR0: u8 = 0x10;
    pub const EXPANSION_ROM: u8 = 0x30;
    pub const CAPABILITIES: u8 = 0x34;
    pub const INTERRUPT_LINE: u8 = 0x3c;
    pub const INTERRUPT_PIN: u8 = 0x3d;
    /// The first device-specific register.
    pub const DEVICE_SPECIFIC: u8 = 0x40;
}

/// Command register bits (PCI 3.0 6.2.2).
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status bit 4: the function has a capabilities list at 34h.
const STATUS_CAP_LIST: u8 = 1 << 4;
/// Capability IDs (PCI 3.0 appendix H).
pub const CAP_MSI: u8 = 0x05;
pub const CAP_MSIX: u8 = 0x11;
/// The command bits a guest owns.
pub const GUEST_COMMAND: u16 =
    command::IO_SPACE | command::MEMORY_SPACE | command::BUS_MASTER | command::INTX_DISABLE;
/// BAR bit 0: I/O space.
const BAR_IO: u32 = 1;
/// Memory BAR bits 2:1 = 10b: 64-bit.
const BAR_MEM64: u32 = 0b100;
/// At most this many capabilities are followed (a looping list ends there).
const MAX_CAPS: usize = 48;
const BARS: usize = 6;

/// A guest write the filter did not pass on (the caller logs it, rate-limited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// BAR `index` was written `value`, neither all-ones (sizing) nor its real address.
    WildBar { index: u8, value: u32 },
    /// A write to the registers of a capability hidden from the guest.
    HiddenCapability { offset: u16 },
    /// A write beyond the 256 bytes of configuration space.
    OutOfRange { offset: u16 },
    /// An access of a size other than 1 to 4 bytes.
    BadSize { size: u8 },
}

/// What one BAR dword is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BarKind {
    Absent,
    Io,
    Mem32,
    Mem64Low,
    Mem64High,
}

/// One BAR dword as the guest sees it.
#[derive(Clone, Copy, Debug)]
struct Bar {
    kind: BarKind,
    /// The bits that hold an address (what sizing reads back, less `flags`).
    mask: u32,
    /// The read-only low bits (space, type, prefetchable).
    flags: u32,
    /// The real address bits.
    real: u32,
    /// The guest wrote all-ones and has not written an address since.
    sizing: bool,
    /// The dword as the guest last wrote it (bytes merge here before the write is judged).
    written: u32,
}

impl Bar {
    const ABSENT: Bar =
        Bar { kind: BarKind::Absent, mask: 0, flags: 0, real: 0, sizing: false, written: 0 };

    fn read(&self) -> u32 {
        match (self.kind, self.sizing) {
            (BarKind::Absent, _) => 0,
            (_, true) => self.mask | self.flags,
            (_, false) => (self.real & self.mask) | self.flags,
        }
    }
}

/// A capability in the real list.
#[derive(Clone, Copy, Debug)]
struct Cap {
    id: u8,
    offset: u8,
    /// Bytes of registers (only needed, and only exact, for hidden ones).
    len: u8,
    hidden: bool,
}

/// What a guest access to one byte does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Byte {
    /// Reads and writes the real byte.
    Pass,
    /// Reads the real byte, writes are dropped.
    ReadOnly,
    /// Reads 0, writes are dropped.
    Zero,
    Command,
    Status,
    Bar,
    CapPointer,
    /// The next pointer of a kept capability.
    CapNext,
    InterruptLine,
    Hidden,
    Beyond,
}

/// The filter for one assigned function.
#[derive(Clone, Debug)]
pub struct Passthrough {
    bars: [Bar; BARS],
    /// The command register as the level below set it.
    l0_command: u16,
    /// The command register as the guest last wrote it.
    guest_command: u16,
    interrupt_line: u8,
    caps: [Cap; MAX_CAPS],
    ncaps: usize,
}

impl Passthrough {
    /// Learns the function's BARs (sizing them with decoding briefly off, then restoring
    /// them and the command register) and its capabilities; `interrupt_line` is what the guest
    /// first reads at 3Ch; with `hide_msi` MSI and MSI-X are hidden.
    pub fn new(real: &mut impl ConfigSpace, interrupt_line: u8, hide_msi: bool) -> Self {
        let l0_command = read16(real, reg::COMMAND);
        let mut p = Passthrough {
            bars: [Bar::ABSENT; BARS],
            l0_command,
            guest_command: l0_command,
            interrupt_line,
            caps: [Cap { id: 0, offset: 0, len: 0, hidden: false }; MAX_CAPS],
            ncaps: 0,
        };
        real.write(
            reg::COMMAND,
            2,
            u32::from(l0_command & !(command::IO_SPACE | command::MEMORY_SPACE)),
        );
        let mut i = 0;
        while i < BARS {
            let offset = reg::BAR0 + 4 * i as u8;
            let (original, size) = probe(real, offset);
            let kind = match original & BAR_IO {
                _ if size == 0 => BarKind::Absent,
                BAR_IO => BarKind::Io,
                _ if original & 0b110 == BAR_MEM64 && i + 1 < BARS => BarKind::Mem64Low,
                _ => BarKind::Mem32,
            };
            let flags = match kind {
                BarKind::Io => original & 0b11,
                _ => original & 0b1111,
            };
            p.bars[i] = match kind {
                BarKind::Absent => Bar::ABSENT,
                _ => {
                    Bar { kind, mask: size & !flags, flags, real: original & !flags, ..Bar::ABSENT }
                }
            };
            p.bars[i].written = p.bars[i].read();
            if kind == BarKind::Mem64Low {
                let (high, high_size) = probe(real, offset + 4);
                let bar =
                    Bar { kind: BarKind::Mem64High, mask: high_size, real: high, ..Bar::ABSENT };
                p.bars[i + 1] = Bar { written: bar.read(), ..bar };
                i += 1;
            }
            i += 1;
        }
        real.write(reg::COMMAND, 2, u32::from(l0_command));
        p.find_caps(real, hide_msi);
        p
    }

    fn find_caps(&mut self, real: &mut impl ConfigSpace, hide_msi: bool) {
        if read8(real, reg::STATUS) & STATUS_CAP_LIST == 0 {
            return;
        }
        let mut next = read8(real, reg::CAPABILITIES) & 0xfc;
        while next >= reg::DEVICE_SPECIFIC && self.ncaps < MAX_CAPS {
            let header = real.read32(next);
            let (id, following) = (header as u8, (header >> 8) as u8 & 0xfc);
            let hidden = hide_msi && (id == CAP_MSI || id == CAP_MSIX);
            let len = match id {
                // Message control bit 7: 64-bit address; bit 8: per-vector masking.
                CAP_MSI => {
                    let control = header >> 16;
                    10 + if control & 1 << 7 != 0 { 4 } else { 0 }
                        + if control & 1 << 8 != 0 { 10 } else { 0 }
                }
                CAP_MSIX => 12,
                _ => 2,
            };
            self.caps[self.ncaps] = Cap { id, offset: next, len, hidden };
            self.ncaps += 1;
            next = following;
        }
    }

    fn caps(&self) -> &[Cap] {
        &self.caps[..self.ncaps]
    }

    /// The first kept capability at or after list position `from`.
    fn kept_from(&self, from: usize) -> u8 {
        self.caps().iter().skip(from).find(|c| !c.hidden).map_or(0, |c| c.offset)
    }

    /// The capability IDs the guest sees, in list order.
    pub fn visible_capabilities(&self) -> impl Iterator<Item = u8> + '_ {
        self.caps().iter().filter(|c| !c.hidden).map(|c| c.id)
    }

    /// The real BARs: (index, guest-physical = host-physical address, size, is I/O) for each
    /// present BAR (a 64-bit BAR once, at its low index).
    pub fn bars(&self) -> impl Iterator<Item = (u8, u64, u64, bool)> + '_ {
        self.bars.iter().enumerate().filter_map(|(i, b)| {
            let high = self.bars.get(i + 1).filter(|h| h.kind == BarKind::Mem64High);
            let (mask, real) = match (b.kind, high) {
                (BarKind::Absent | BarKind::Mem64High, _) => return None,
                (BarKind::Mem64Low, Some(h)) => (
                    u64::from(h.mask) << 32 | u64::from(b.mask),
                    u64::from(h.real) << 32 | u64::from(b.real),
                ),
                // I/O BARs may leave bits 31:16 read-only zero: ports are 16 bits.
                (BarKind::Io, _) => (u64::from(b.mask) | !0xffff, u64::from(b.real)),
                _ => (u64::from(b.mask) | !0xffff_ffff, u64::from(b.real)),
            };
            Some((i as u8, real & mask, (!mask).wrapping_add(1), b.kind == BarKind::Io))
        })
    }

    /// The interrupt line the guest last wrote.
    pub fn interrupt_line(&self) -> u8 {
        self.interrupt_line
    }

    fn classify(&self, offset: u16) -> Byte {
        let Ok(o) = u8::try_from(offset) else { return Byte::Beyond };
        match o {
            0x00..=0x03 | 0x08..=0x0b | 0x0e..=0x0f | 0x28..=0x2f | 0x3d..=0x3f => Byte::ReadOnly,
            0x04..=0x05 => Byte::Command,
            0x06..=0x07 => Byte::Status,
            reg::CACHE_LINE_SIZE | reg::LATENCY_TIMER => Byte::Pass,
            0x10..=0x27 => Byte::Bar,
            reg::CAPABILITIES => Byte::CapPointer,
            0x30..=0x3b => Byte::Zero,
            reg::INTERRUPT_LINE => Byte::InterruptLine,
            _ => {
                for c in self.caps() {
                    let start = u16::from(c.offset);
                    if c.hidden && (start..start + u16::from(c.len)).contains(&offset) {
                        return Byte::Hidden;
                    }
                    if !c.hidden && offset == start + 1 {
                        return Byte::CapNext;
                    }
                }
                Byte::Pass
            }
        }
    }

    /// A guest read of `size` bytes (1 to 4) at `offset`; any other size reads all-ones.
    pub fn read(&mut self, real: &mut impl ConfigSpace, offset: u16, size: u8) -> u32 {
        if !(1..=4).contains(&size) {
            return u32::MAX;
        }
        let mut value = 0;
        let mut cached: Option<(u16, u32)> = None;
        for i in 0..u16::from(size) {
            let at = offset.saturating_add(i);
            let mut real_byte = |at: u16| {
                let dword = at & !3;
                let v = match cached {
                    Some((d, v)) if d == dword => v,
                    _ => {
                        let v = real.read32(dword as u8);
                        cached = Some((dword, v));
                        v
                    }
                };
                (v >> (8 * (at & 3))) as u8
            };
            let byte = match self.classify(at) {
                Byte::Pass | Byte::ReadOnly => real_byte(at),
                Byte::Zero | Byte::Hidden => 0,
                Byte::Beyond => 0xff,
                Byte::Command => {
                    let mixed = (read_word_bytes(real_byte(4), real_byte(5)) & !GUEST_COMMAND)
                        | (self.guest_command & GUEST_COMMAND);
                    (mixed >> (8 * (at - 4))) as u8
                }
                Byte::Status if at == u16::from(reg::STATUS) => {
                    let cap_list = if self.kept_from(0) != 0 { STATUS_CAP_LIST } else { 0 };
                    (real_byte(at) & !STATUS_CAP_LIST) | cap_list
                }
                Byte::Status => real_byte(at),
                Byte::Bar => {
                    let index = usize::from((at - u16::from(reg::BAR0)) / 4);
                    (self.bars[index].read() >> (8 * (at & 3))) as u8
                }
                Byte::CapPointer => self.kept_from(0),
                Byte::CapNext => {
                    let position = self.caps().iter().position(|c| u16::from(c.offset) + 1 == at);
                    position.map_or(0, |p| self.kept_from(p + 1))
                }
                Byte::InterruptLine => self.interrupt_line,
            };
            value |= u32::from(byte) << (8 * i);
        }
        value
    }

    /// A guest write of the low `size` bytes (1 to 4) of `value` at `offset`. What passes
    /// goes to `real`; the first refusal is returned (the rest of the access still applies).
    pub fn write(
        &mut self,
        real: &mut impl ConfigSpace,
        offset: u16,
        size: u8,
        value: u32,
    ) -> Result<(), Refused> {
        if !(1..=4).contains(&size) {
            return Err(Refused::BadSize { size });
        }
        let mut refused = None;
        let mut pass = [0u8; 4];
        let mut pass_at = 0u16;
        let mut pass_len = 0usize;
        let (mut command_touched, mut bars_touched) = (false, [false; BARS]);
        for i in 0..u16::from(size) {
            let Some(at) = offset.checked_add(i) else { break };
            let byte = (value >> (8 * i)) as u8;
            match self.classify(at) {
                Byte::Pass | Byte::Status => {
                    if pass_len == 0 {
                        pass_at = at;
                    }
                    pass[pass_len] = byte;
                    pass_len += 1;
                    continue;
                }
                Byte::ReadOnly | Byte::Zero | Byte::CapPointer | Byte::CapNext => {}
                Byte::Command => {
                    let shift = 8 * (at - 4);
                    self.guest_command =
                        (self.guest_command & !(0xff << shift)) | u16::from(byte) << shift;
                    command_touched = true;
                }
                Byte::Bar => {
                    let index = usize::from((at - u16::from(reg::BAR0)) / 4);
                    let shift = 8 * (at & 3);
                    let bar = &mut self.bars[index];
                    bar.written = (bar.written & !(0xff << shift)) | u32::from(byte) << shift;
                    bars_touched[index] = true;
                }
                Byte::InterruptLine => self.interrupt_line = byte,
                Byte::Hidden => {
                    refused.get_or_insert(Refused::HiddenCapability { offset: at });
                }
                Byte::Beyond => {
                    refused.get_or_insert(Refused::OutOfRange { offset: at });
                }
            }
            flush(real, pass_at, &pass[..pass_len]);
            pass_len = 0;
        }
        flush(real, pass_at, &pass[..pass_len]);
        if command_touched {
            let command = (self.l0_command & !GUEST_COMMAND) | (self.guest_command & GUEST_COMMAND);
            real.write(reg::COMMAND, 2, u32::from(command));
        }
        for (index, _) in bars_touched.iter().enumerate().filter(|(_, t)| **t) {
            if let Err(e) = self.judge_bar(index) {
                refused.get_or_insert(e);
            }
        }
        refused.map_or(Ok(()), Err)
    }

    /// After the guest wrote BAR `index`: all-ones starts sizing, the real address ends it,
    /// anything else is refused and the BAR keeps its real address.
    fn judge_bar(&mut self, index: usize) -> Result<(), Refused> {
        let bar = &mut self.bars[index];
        if bar.kind == BarKind::Absent {
            return Ok(());
        }
        let address = bar.written & bar.mask;
        if address == bar.mask {
            bar.sizing = true;
            return Ok(());
        }
        bar.sizing = false;
        if address == bar.real & bar.mask {
            return Ok(());
        }
        let value = bar.written;
        bar.written = bar.read();
        Err(Refused::WildBar { index: index as u8, value })
    }
}

/// Writes the run of pass-through bytes `bytes` starting at `at` as naturally aligned
/// 1-, 2- or 4-byte writes.
fn flush(real: &mut impl ConfigSpace, at: u16, bytes: &[u8]) {
    let mut i = 0;
    while i < bytes.len() {
        let offset = at + i as u16;
        let left = bytes.len() - i;
        let size = if offset.is_multiple_of(4) && left >= 4 {
            4
        } else if offset.is_multiple_of(2) && left >= 2 {
            2
        } else {
            1
        };
        let value = bytes[i..i + size]
            .iter()
            .enumerate()
            .fold(0u32, |v, (k, b)| v | u32::from(*b) << (8 * k));
        if let Ok(offset) = u8::try_from(offset) {
            real.write(offset, size as u8, value);
        }
        i += size;
    }
}

fn read_word_bytes(low: u8, high: u8) -> u16 {
    u16::from(low) | u16::from(high) << 8
}

fn read8(real: &mut impl ConfigSpace, offset: u8) -> u8 {
    (real.read32(offset & 0xfc) >> (8 * (offset & 3))) as u8
}

fn read16(real: &mut impl ConfigSpace, offset: u8) -> u16 {
    (real.read32(offset & 0xfc) >> (8 * (offset & 2))) as u16
}

/// The BAR dword at `offset` and what it reads after all-ones is written (then restored).
fn probe(real: &mut impl ConfigSpace, offset: u8) -> (u32, u32) {
    let original = real.read32(offset);
    real.write(offset, 4, u32::MAX);
    let size = real.read32(offset);
    real.write(offset, 4, original);
    (original, size)
}

#[cfg(test)]
#[path = "passthrough_tests.rs"]
mod tests;
