//! Decoding VMX instruction operands from the VM-exit instruction-information field and the
//! exit qualification (SDM Vol. 3C 28.2.5, Tables 28-13 and 28-14; displacement in the exit
//! qualification per 28.2.1), and the segmentation checks of the access (SDM Vol. 3A 5.3
//! limits, 5.4.1 types; Vol. 1 3.4.2.1 and 3.3.7.1 for 64-bit mode; each VMX instruction's
//! "Protected Mode Exceptions"/"64-Bit Mode Exceptions" in Vol. 2).

use super::Exception;
use super::instr::L1Cpu;
use crate::addr::is_canonical;
use crate::guest::{Gpr, GuestRegs};

/// A segment register, numbered as in the instruction-information field (bits 17:15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// The VM-exit instruction-information field for VMCLEAR, VMPTRLD, VMPTRST, VMXON, VMREAD,
/// VMWRITE, INVEPT, INVVPID (the memory-operand layout is common to all of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstrInfo(pub u32);

impl InstrInfo {
    /// Bits 1:0: scaling (index is multiplied by 1 << scaling).
    pub const fn scaling(self) -> u32 {
        self.0 & 3
    }
    /// Bits 6:3: reg1 (VMREAD destination/VMWRITE source when the operand is a register).
    pub const fn reg1(self) -> Gpr {
        Gpr::from_index(self.0 >> 3)
    }
    /// Bits 9:7: address size (0 = 16-bit, 1 = 32-bit, 2 = 64-bit).
    pub const fn address_size(self) -> u32 {
        (self.0 >> 7) & 7
    }
    /// Bit 10: the operand is a register (VMREAD/VMWRITE only).
    pub const fn is_register(self) -> bool {
        self.0 & (1 << 10) != 0
    }
    /// Bits 17:15: segment register.
    pub const fn segment(self) -> Option<Segment> {
        match (self.0 >> 15) & 7 {
            0 => Some(Segment::Es),
            1 => Some(Segment::Cs),
            2 => Some(Segment::Ss),
            3 => Some(Segment::Ds),
            4 => Some(Segment::Fs),
            5 => Some(Segment::Gs),
            _ => None,
        }
    }
    /// Bits 21:18 (valid unless bit 22): index register.
    pub const fn index(self) -> Option<Gpr> {
        if self.0 & (1 << 22) != 0 { None } else { Some(Gpr::from_index(self.0 >> 18)) }
    }
    /// Bits 26:23 (valid unless bit 27): base register.
    pub const fn base(self) -> Option<Gpr> {
        if self.0 & (1 << 27) != 0 { None } else { Some(Gpr::from_index(self.0 >> 23)) }
    }
    /// Bits 31:28: reg2 (VMREAD/VMWRITE field encoding; INVEPT/INVVPID type).
    pub const fn reg2(self) -> Gpr {
        Gpr::from_index(self.0 >> 28)
    }
}

/// A segment register's hidden part as the VMCS guest-state area holds it (SDM Vol. 3C
/// 25.4.1): base, byte-granular limit, access rights in the VMCS format (type 3:0, S 4, DPL
/// 6:5, P 7, L 13, D/B 14, G 15, unusable 16).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentCache {
    pub base: u64,
    pub limit: u32,
    pub ar: u32,
}

/// Access-rights bits the checks use.
pub mod ar {
    /// Type bit 3: code segment.
    pub const CODE: u32 = 1 << 3;
    /// Type bit 2 of a data segment: expand-down.
    pub const EXPAND_DOWN: u32 = 1 << 2;
    /// Type bit 1: writable (data) or readable (code).
    pub const WRITABLE_OR_READABLE: u32 = 1 << 1;
    /// Bit 14: D/B (for an expand-down data segment, a 4-GiB upper bound).
    pub const DB: u32 = 1 << 14;
    /// Bit 16: the segment is unusable (null selector loaded).
    pub const UNUSABLE: u32 = 1 << 16;
    /// A flat read/write data segment (present, S, type 3, D/B, G).
    pub const FLAT_DATA: u32 = 0xc093;
    /// A flat execute/read code segment.
    pub const FLAT_CODE: u32 = 0xc09b;
}

impl SegmentCache {
    /// A flat 4-GiB segment at `base` (code for CS, read/write data otherwise).
    pub const fn flat(segment: Segment, base: u64) -> Self {
        let ar = if matches!(segment, Segment::Cs) { ar::FLAT_CODE } else { ar::FLAT_DATA };
        SegmentCache { base, limit: u32::MAX, ar }
    }
}

/// Checks an access of `size` bytes (1..=16) to `op` as the processor does before touching
/// memory, returning the fault to raise: in 64-bit mode every byte's linear address must be
/// canonical (#SS(0) through SS, else #GP(0)); in protected and compatibility mode the segment
/// must be usable, readable for reads and writable for writes, and every byte's offset within
/// its limit (expand-down: above the limit, up to 0xFFFF or 0xFFFF_FFFF per D/B).
pub fn check_access(
    op: &MemOperand,
    size: u64,
    write: bool,
    cpu: &L1Cpu,
    seg: &SegmentCache,
) -> Result<(), Exception> {
    let fault = Exception::segment_fault(op.segment);
    let last = size.max(1) - 1;
    if cpu.is_64bit_mode() {
        let end = op.linear.wrapping_add(last);
        // The range must not wrap through the non-canonical hole either.
        return if is_canonical(op.linear) && is_canonical(end) && end >= op.linear {
            Ok(())
        } else {
            Err(fault)
        };
    }
    if seg.ar & ar::UNUSABLE != 0 {
        return Err(fault);
    }
    let code = seg.ar & ar::CODE != 0;
    let rw = seg.ar & ar::WRITABLE_OR_READABLE != 0;
    // Writes need a writable data segment; reads fail only on an execute-only code segment.
    let allowed = if write { !code && rw } else { !code || rw };
    if !allowed {
        return Err(fault);
    }
    let limit = u64::from(seg.limit);
    let end = op.offset.saturating_add(last);
    let ok = if !code && seg.ar & ar::EXPAND_DOWN != 0 {
        let upper = if seg.ar & ar::DB != 0 { 0xffff_ffff } else { 0xffff };
        op.offset > limit && end <= upper
    } else {
        end <= limit
    };
    if ok { Ok(()) } else { Err(fault) }
}

/// A decoded memory operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemOperand {
    pub segment: Segment,
    /// Effective address (offset within the segment, truncated to the address size).
    pub offset: u64,
    /// Linear address: segment base + offset (the image checks limits and walks L1's paging).
    pub linear: u64,
}

/// A decoded operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    Register(Gpr),
    Memory(MemOperand),
}

/// Decodes the operand of a VMX instruction. `register_allowed` is true for VMREAD/VMWRITE
/// (bit 10 meaningful); for the others bit 10 is undefined and the operand is memory.
#[inline]
pub fn decode(
    info: InstrInfo,
    qualification: u64,
    register_allowed: bool,
    cpu: &L1Cpu,
    regs: &impl GuestRegs,
    segment_base: impl Fn(Segment) -> u64,
) -> Result<Operand, Exception> {
    if register_allowed && info.is_register() {
        return Ok(Operand::Register(info.reg1()));
    }
    let segment = info.segment().ok_or(Exception::UD)?;
    let mask = match info.address_size() {
        0 => 0xffff,
        1 => 0xffff_ffff,
        2 if cpu.is_64bit_mode() => u64::MAX,
        _ => return Err(Exception::UD),
    };
    let base = info.base().map_or(0, |r| regs.gpr(r));
    let index = info.index().map_or(0, |r| regs.gpr(r) << info.scaling());
    let offset = base.wrapping_add(index).wrapping_add(qualification) & mask;
    let linear = if cpu.is_64bit_mode() {
        let seg_base = match segment {
            Segment::Fs | Segment::Gs => segment_base(segment),
            _ => 0,
        };
        let la = seg_base.wrapping_add(offset);
        if !is_canonical(la) {
            return Err(Exception::segment_fault(segment));
        }
        la
    } else {
        segment_base(segment).wrapping_add(offset) & 0xffff_ffff
    };
    Ok(Operand::Memory(MemOperand { segment, offset, linear }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Regs;

    fn cpu64() -> L1Cpu {
        L1Cpu::long_mode_ring0()
    }

    #[test]
    fn register_operand() {
        let info = InstrInfo(1 << 10 | 5 << 3 | 7 << 28);
        assert_eq!(info.reg2(), Gpr::Rdi);
        let op = decode(info, 0, true, &cpu64(), &Regs::default(), |_| 0).unwrap();
        assert_eq!(op, Operand::Register(Gpr::Rbp));
        // Without register_allowed, bit 10 is ignored: memory via DS with no base/index.
        let info = InstrInfo(1 << 10 | 3 << 15 | 2 << 7 | 1 << 22 | 1 << 27);
        let op = decode(info, 0x1234, false, &cpu64(), &Regs::default(), |_| 0).unwrap();
        assert!(matches!(op, Operand::Memory(MemOperand { linear: 0x1234, .. })));
    }

    #[test]
    fn base_index_scale_displacement() {
        let mut regs = Regs::default();
        regs.0[3] = 0x1000; // RBX base
        regs.0[6] = 0x10; // RSI index
        // scale 8, 64-bit, GS, index RSI, base RBX.
        let info = InstrInfo(3 | 2 << 7 | 5 << 15 | 6 << 18 | 3 << 23);
        let op =
            decode(
                info,
                8,
                false,
                &cpu64(),
                &regs,
                |s| if s == Segment::Gs { 0x10_0000 } else { 0 },
            )
            .unwrap();
        assert_eq!(
            op,
            Operand::Memory(MemOperand { segment: Segment::Gs, offset: 0x1088, linear: 0x10_1088 })
        );
        // Negative displacement, DS base ignored in 64-bit mode.
        let info = InstrInfo(2 << 7 | 3 << 15 | 1 << 22 | 3 << 23);
        let op = decode(info, (-8i64) as u64, false, &cpu64(), &regs, |_| 0x5000).unwrap();
        assert!(matches!(op, Operand::Memory(MemOperand { linear: 0xff8, .. })));
        // 32-bit address size wraps.
        let info = InstrInfo(1 << 7 | 3 << 15 | 1 << 22 | 3 << 23);
        regs.0[3] = 0xffff_fff0;
        let op = decode(info, 0x20, false, &cpu64(), &regs, |_| 0).unwrap();
        assert!(matches!(op, Operand::Memory(MemOperand { offset: 0x10, .. })));
    }

    fn mem(segment: Segment, offset: u64, linear: u64) -> MemOperand {
        MemOperand { segment, offset, linear }
    }

    #[test]
    fn sixty_four_bit_mode_checks_every_byte_for_canonicality() {
        let cpu = cpu64();
        let flat = SegmentCache::flat(Segment::Ds, 0);
        // DS base, limit and type are ignored in 64-bit mode (Vol. 1 3.4.2.1).
        let broken = SegmentCache { base: 0x1234, limit: 0, ar: ar::UNUSABLE | ar::CODE };
        let low = mem(Segment::Ds, 0x1000, 0x1000);
        assert_eq!(check_access(&low, 16, false, &cpu, &broken), Ok(()));
        let top = 0x7fff_ffff_fff8;
        assert_eq!(check_access(&mem(Segment::Ds, top, top), 8, true, &cpu, &flat), Ok(()));
        assert_eq!(
            check_access(&mem(Segment::Ds, top, top), 16, false, &cpu, &flat),
            Err(Exception::GP0),
            "the descriptor's last byte is non-canonical"
        );
        assert_eq!(
            check_access(&mem(Segment::Ss, top, top), 16, false, &cpu, &flat),
            Err(Exception::SS0)
        );
        let wrap = u64::MAX - 7;
        assert_eq!(
            check_access(&mem(Segment::Ds, wrap, wrap), 16, false, &cpu, &flat),
            Err(Exception::GP0)
        );
        assert_eq!(check_access(&mem(Segment::Ds, wrap, wrap), 8, false, &cpu, &flat), Ok(()));
    }

    #[test]
    fn protected_mode_limits_types_and_expand_down() {
        let mut cpu = cpu64();
        cpu.efer = 0;
        cpu.cs_l = false;
        let small = SegmentCache { base: 0, limit: 0xfff, ar: ar::FLAT_DATA };
        let at = |o: u64| mem(Segment::Ds, o, o);
        assert_eq!(check_access(&at(0xff8), 8, false, &cpu, &small), Ok(()));
        assert_eq!(check_access(&at(0xff9), 8, false, &cpu, &small), Err(Exception::GP0));
        let ss = mem(Segment::Ss, 0xffc, 0xffc);
        assert_eq!(check_access(&ss, 8, true, &cpu, &small), Err(Exception::SS0));
        // Read-only data: reads fine, writes #GP.
        let ro = SegmentCache { ar: ar::FLAT_DATA & !ar::WRITABLE_OR_READABLE, ..small };
        assert_eq!(check_access(&at(0), 8, false, &cpu, &ro), Ok(()));
        assert_eq!(check_access(&at(0), 8, true, &cpu, &ro), Err(Exception::GP0));
        // Code: readable code reads, never writes; execute-only neither.
        let code = SegmentCache::flat(Segment::Cs, 0);
        let cs = mem(Segment::Cs, 0, 0);
        assert_eq!(check_access(&cs, 8, false, &cpu, &code), Ok(()));
        assert_eq!(check_access(&cs, 8, true, &cpu, &code), Err(Exception::GP0));
        let xo = SegmentCache { ar: ar::FLAT_CODE & !ar::WRITABLE_OR_READABLE, ..code };
        assert_eq!(check_access(&cs, 8, false, &cpu, &xo), Err(Exception::GP0));
        // Expand-down: valid offsets are above the limit, up to 0xFFFF without D/B.
        let down =
            SegmentCache { base: 0, limit: 0xfff, ar: (ar::FLAT_DATA | ar::EXPAND_DOWN) & !ar::DB };
        assert_eq!(check_access(&at(0xfff), 8, false, &cpu, &down), Err(Exception::GP0));
        assert_eq!(check_access(&at(0x1000), 8, false, &cpu, &down), Ok(()));
        assert_eq!(check_access(&at(0xfff8), 8, false, &cpu, &down), Ok(()));
        assert_eq!(check_access(&at(0xfff9), 8, false, &cpu, &down), Err(Exception::GP0));
        let big = SegmentCache { ar: down.ar | ar::DB, ..down };
        assert_eq!(check_access(&at(0xfff9), 8, false, &cpu, &big), Ok(()));
        // A null selector in DS: #GP(0).
        let null = SegmentCache { ar: ar::UNUSABLE, ..small };
        assert_eq!(check_access(&at(0), 8, false, &cpu, &null), Err(Exception::GP0));
    }

    /// Table 28-13: bits 17:15 number the segment registers ES, CS, SS, DS, FS, GS; bits 22
    /// and 27 mark the index and base fields invalid, and then their registers are not used.
    #[test]
    fn segment_numbers_and_invalid_base_and_index() {
        let all = [Segment::Es, Segment::Cs, Segment::Ss, Segment::Ds, Segment::Fs, Segment::Gs];
        for (n, s) in (0u32..).zip(all) {
            assert_eq!(InstrInfo(n << 15).segment(), Some(s));
        }
        assert_eq!(InstrInfo(6 << 15).segment(), None);
        assert_eq!(InstrInfo(3 << 23).base(), Some(Gpr::Rbx));
        assert_eq!(InstrInfo(1 << 27 | 3 << 23).base(), None);
        assert_eq!(InstrInfo(6 << 18).index(), Some(Gpr::Rsi));
        assert_eq!(InstrInfo(1 << 22 | 6 << 18).index(), None);
        let regs = Regs([0x1000; 16]);
        let info = InstrInfo(2 << 7 | 3 << 15 | 1 << 22 | 6 << 18 | 1 << 27 | 3 << 23);
        let op = decode(info, 0x40, false, &cpu64(), &regs, |_| 0).unwrap();
        assert!(matches!(op, Operand::Memory(MemOperand { offset: 0x40, linear: 0x40, .. })));
        // Outside 64-bit mode every segment's base counts (ES here); in it only FS's and GS's.
        let mut cpu32 = cpu64();
        cpu32.efer = 0;
        cpu32.cs_l = false;
        let es = InstrInfo(1 << 7 | 1 << 22 | 1 << 27);
        let op = decode(es, 0x40, false, &cpu32, &regs, |s| (s as u64 + 1) << 20).unwrap();
        let want = MemOperand { segment: Segment::Es, offset: 0x40, linear: 0x10_0040 };
        assert_eq!(op, Operand::Memory(want));
        let fs = InstrInfo(2 << 7 | 4 << 15 | 1 << 22 | 1 << 27);
        let op = decode(fs, 0x40, false, &cpu64(), &regs, |s| (s as u64 + 1) << 20).unwrap();
        assert!(matches!(op, Operand::Memory(MemOperand { linear: 0x50_0040, .. })));
    }

    /// A 16-bit address size (an address-size prefix in 32-bit code) wraps the effective
    /// address at 64 KiB.
    #[test]
    fn sixteen_bit_address_size_wraps() {
        let mut cpu32 = cpu64();
        cpu32.efer = 0;
        cpu32.cs_l = false;
        let mut regs = Regs::default();
        regs.0[3] = 0x1_fff0; // BX is 0xfff0
        let info = InstrInfo(3 << 15 | 1 << 22 | 3 << 23);
        let op = decode(info, 0x20, false, &cpu32, &regs, |_| 0x10_0000).unwrap();
        let want = MemOperand { segment: Segment::Ds, offset: 0x10, linear: 0x10_0010 };
        assert_eq!(op, Operand::Memory(want));
    }

    #[test]
    fn bad_encodings_fault() {
        let regs = Regs::default();
        let bad_seg = InstrInfo(2 << 7 | 7 << 15);
        assert_eq!(decode(bad_seg, 0, false, &cpu64(), &regs, |_| 0), Err(Exception::UD));
        let bad_size = InstrInfo(3 << 7 | 3 << 15);
        assert_eq!(decode(bad_size, 0, false, &cpu64(), &regs, |_| 0), Err(Exception::UD));
        let noncanon = InstrInfo(2 << 7 | 2 << 15 | 1 << 22 | 1 << 27);
        assert_eq!(
            decode(noncanon, 0x8000_0000_0000, false, &cpu64(), &regs, |_| 0),
            Err(Exception::SS0)
        );
        let mut cpu32 = cpu64();
        cpu32.efer = 0;
        cpu32.cs_l = false;
        let a64 = InstrInfo(2 << 7 | 3 << 15);
        assert_eq!(decode(a64, 0, false, &cpu32, &regs, |_| 0), Err(Exception::UD));
    }
}
