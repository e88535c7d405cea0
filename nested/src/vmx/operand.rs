//! Decoding VMX instruction operands from the VM-exit instruction-information field and the
//! exit qualification (SDM Vol. 3C 28.2.5, Tables 28-13 and 28-14; displacement in the exit
//! qualification per 28.2.1).

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
            return Err(if segment == Segment::Ss { Exception::SS0 } else { Exception::GP0 });
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
