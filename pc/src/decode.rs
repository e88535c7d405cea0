//! x86 instruction decoder for trapped MMIO accesses: only the forms guests use for device
//! registers (SDM Vol. 2A ch. 2 "Instruction Format"; the instructions in Vol. 2A/2B).
//!
//! An EPT violation on a device page gives L0 the guest-physical address but not the data
//! or the register: L0 fetches the bytes at the guest's RIP, [`decode`]s them, performs the
//! access, then updates the register with [`apply_load`] (or takes the data from
//! [`store_value`]) and advances RIP by [`Decoded::len`]. The address itself comes from the
//! exit, so the decoder only needs the ModRM/SIB/displacement *lengths*, not their values.
//!
//! Supported: prefixes 66, 67, segment overrides, REX in 64-bit mode, LOCK on the
//! read-modify-write forms (XCHG and the ALU ops with a memory destination; on any other
//! instruction LOCK is #UD on the processor, so it is rejected as unsupported);
//! opcodes 88/89/8A/8B (MOV r/m ↔ r), C6 /0 and C7 /0 (MOV r/m, imm), A0-A3 (MOV AL/eAX ↔
//! moffs), 0F B6/B7 (MOVZX), 0F BE/BF (MOVSX), with memory operands only; the CMP forms
//! compilers fold a register read into (38/39 CMP r/m, r; 3A/3B CMP r, r/m; 80 /7, 81 /7,
//! 83 /7 CMP r/m, imm), which read the register and set the arithmetic flags
//! ([`cmp_rflags`]); TEST (84/85 TEST r/m, r; F6 /0, F7 /0 TEST r/m, imm), which sets them
//! from an AND; XCHG r/m, r (86/87); and the read-modify-write ALU ops with a memory
//! destination ([`AluOp`]: 00/01 ADD, 08/09 OR, 20/21 AND, 28/29 SUB, 30/31 XOR r/m, r; 80,
//! 81, 83 /0 /1 /4 /5 /6 r/m, imm), computed by [`alu`]. Not supported: string instructions
//! (MOVS, STOS, ...), ADC/SBB, NOT/NEG/INC/DEC, BT*, CMPXCHG, XADD, MOVSXD.

/// Maximum length of an x86 instruction (SDM Vol. 2A 2.3.11).
pub const MAX_INSN_LEN: usize = 15;

/// The processor mode the instruction runs in, which sets default operand and address
/// sizes (SDM Vol. 1 3.6): the caller derives it from CR0.PE, EFER.LMA with CS.L, and CS.D.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// Real or virtual-8086 mode: 16-bit operands and addresses.
    Real16,
    /// Protected mode (or compatibility mode) with CS.D = 0.
    Protected16,
    /// Protected mode (or compatibility mode) with CS.D = 1.
    Protected32,
    /// 64-bit mode (EFER.LMA and CS.L): 32-bit operands, 64-bit addresses, REX.
    Long64,
}

/// A register or immediate operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// General-purpose register `index` in SDM order (0 RAX, 1 RCX, 2 RDX, 3 RBX, 4 RSP,
    /// 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15). `high8`: AH/CH/DH/BH (bits 15:8 of register
    /// `index` 0-3), the 8-bit encodings 4-7 without a REX prefix.
    Reg { index: u8, high8: bool },
    /// An immediate, already sign-extended as the instruction defines (imm32 to 64 bits for
    /// a 64-bit store).
    Imm(u64),
}

/// The memory access the instruction makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioAccess {
    /// Read `size` bytes into `dest` (always a register), zero-extended to `zero_extend_to`
    /// bytes: equal to `size` for MOV, the operand size (2, 4 or 8) for MOVZX.
    Load { dest: Operand, size: u8, zero_extend_to: u8 },
    /// Write `size` bytes taken from `src` (see [`store_value`]).
    Store { src: Operand, size: u8 },
    /// Read `size` bytes and compare them with `other` (a register's low `size` bytes or an
    /// immediate): the flags of `memory - other` if `memory_first`, else `other - memory`
    /// ([`cmp_rflags`]). Nothing else changes.
    Compare { other: Operand, size: u8, memory_first: bool },
    /// Read `size` bytes, sign-extend them to `extend_to` bytes (the operand size, 2, 4 or
    /// 8) and write them to `dest` (MOVSX; see [`sign_extend`] and [`apply_load`]).
    LoadSignExtended { dest: Operand, size: u8, extend_to: u8 },
    /// Read `size` bytes and set the flags of `memory AND other` ([`alu`] with
    /// [`AluOp::And`]); nothing else changes (TEST).
    Test { other: Operand, size: u8 },
    /// XCHG: read `size` bytes, write the register's low `size` bytes ([`store_value`]) to
    /// the same address, and load the old memory value into the register ([`apply_load`]).
    /// Always locked on the processor.
    Exchange { reg: Operand, size: u8 },
    /// Read `size` bytes, compute `memory op src` ([`alu`]), write the result to the same
    /// address and set the arithmetic flags: one load then one store of `size` bytes.
    Modify { op: AluOp, src: Operand, size: u8 },
}

/// A read-modify-write ALU operation, numbered as the ModRM reg field of group 1 (80/81/83)
/// and bits 5:3 of the one-byte opcodes 00/08/20/28/30 (SDM Vol. 2D Table A-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AluOp {
    Add,
    Or,
    And,
    Sub,
    Xor,
}

impl AluOp {
    /// The operation with group-1 number `n` (0 ADD, 1 OR, 4 AND, 5 SUB, 6 XOR); `None` for
    /// 2 ADC, 3 SBB and 7 CMP.
    pub fn from_group1(n: u8) -> Option<AluOp> {
        match n {
            0 => Some(AluOp::Add),
            1 => Some(AluOp::Or),
            4 => Some(AluOp::And),
            5 => Some(AluOp::Sub),
            6 => Some(AluOp::Xor),
            _ => None,
        }
    }
}

/// A decoded instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// What the instruction reads or writes.
    pub access: MmioAccess,
    /// Instruction length in bytes (RIP advances by this much).
    pub len: u8,
}

/// Why an instruction could not be decoded (the caller usually reports it and injects #UD or
/// stops the guest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does (fetch more, or the fetch crossed into an
    /// unmapped page).
    Truncated,
    /// Not one of the supported forms, or a register (mod = 11) operand. Holds the opcode
    /// byte; for a two-byte opcode 0F xx, the second byte. A REP prefix reports 0xf2/0xf3.
    Unsupported(u8),
    /// More than [`MAX_INSN_LEN`] bytes (SDM: #GP).
    TooLong,
}

/// Reads the instruction bytes in order, enforcing the 15-byte limit before the fetch limit.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    /// Consumes `n` bytes and returns them as a little-endian value (n ≤ 8).
    fn take(&mut self, n: usize) -> Result<u64, DecodeError> {
        let end = self.pos.saturating_add(n);
        if end > MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        let slice = self.bytes.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice.iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b)))
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)? as u8)
    }
}

/// Bytes of the ModRM memory operand after the ModRM byte (SIB and displacement) are
/// consumed; returns the ModRM reg field (bits 5:3). `op` names the instruction for errors.
/// 16-bit addressing: SDM Table 2-1; 32/64-bit: Tables 2-2 and 2-3.
fn modrm(c: &mut Cursor<'_>, op: u8, addr_size: u8) -> Result<u8, DecodeError> {
    let m = c.byte()?;
    let (md, rm) = (m >> 6, m & 7);
    if md == 3 {
        return Err(DecodeError::Unsupported(op));
    }
    let disp = if addr_size == 2 {
        match md {
            0 if rm == 6 => 2,
            0 => 0,
            1 => 1,
            _ => 2,
        }
    } else {
        let mut disp = match md {
            0 => 0,
            1 => 1,
            _ => 4,
        };
        if rm == 4 {
            // SIB; base 101 with mod 00 means disp32 and no base.
            let sib = c.byte()?;
            if md == 0 && sib & 7 == 5 {
                disp = 4;
            }
        } else if md == 0 && rm == 5 {
            // disp32 (RIP-relative in 64-bit mode).
            disp = 4;
        }
        disp
    };
    c.take(disp)?;
    Ok((m >> 3) & 7)
}

/// The register operand for encoding `n` (REX.R already folded in) at `size` bytes.
fn reg_operand(n: u8, size: u8, rex: bool) -> Operand {
    if size == 1 && !rex && (4..8).contains(&n) {
        Operand::Reg { index: n - 4, high8: true }
    } else {
        Operand::Reg { index: n, high8: false }
    }
}

/// Decodes the MMIO instruction at the start of `bytes` (up to 15 bytes of it are needed).
pub fn decode(bytes: &[u8], mode: CpuMode) -> Result<Decoded, DecodeError> {
    let mut c = Cursor { bytes, pos: 0 };
    let (mut opsize_prefix, mut addr_prefix, mut lock, mut rex) = (false, false, false, 0u8);
    let op = loop {
        let b = c.byte()?;
        match b {
            0x66 => opsize_prefix = true,
            0x67 => addr_prefix = true,
            0x26 | 0x2e | 0x36 | 0x3e | 0x64 | 0x65 => {}
            // Checked against the instruction below (SDM Vol. 2A LOCK).
            0xf0 => lock = true,
            0x40..=0x4f if mode == CpuMode::Long64 => {
                rex = b;
                continue;
            }
            _ => break b,
        }
        // A REX prefix counts only immediately before the opcode (SDM Vol. 2A 2.2.1).
        rex = 0;
    };
    let default16 = matches!(mode, CpuMode::Real16 | CpuMode::Protected16);
    let osz: u8 = if rex & 8 != 0 {
        8
    } else if default16 != opsize_prefix {
        2
    } else {
        4
    };
    let asz: u8 = match (mode, addr_prefix) {
        (CpuMode::Real16 | CpuMode::Protected16, false) | (CpuMode::Protected32, true) => 2,
        (CpuMode::Long64, false) => 8,
        _ => 4,
    };
    let has_rex = rex != 0;
    let rex_r = (rex & 4) << 1;
    let access = match op {
        0x88..=0x8b => {
            let size = if op & 1 == 0 { 1 } else { osz };
            let reg = reg_operand(modrm(&mut c, op, asz)? | rex_r, size, has_rex);
            if op & 2 == 0 {
                MmioAccess::Store { src: reg, size }
            } else {
                MmioAccess::Load { dest: reg, size, zero_extend_to: size }
            }
        }
        0xc6 | 0xc7 => {
            let size = if op == 0xc6 { 1 } else { osz };
            if modrm(&mut c, op, asz)? != 0 {
                return Err(DecodeError::Unsupported(op));
            }
            let raw = c.take(usize::from(size.min(4)))?;
            // imm32 is sign-extended to a 64-bit operand.
            let imm = if size == 8 { raw as u32 as i32 as i64 as u64 } else { raw };
            MmioAccess::Store { src: Operand::Imm(imm), size }
        }
        0xa0..=0xa3 => {
            c.take(usize::from(asz))?;
            let size = if op & 1 == 0 { 1 } else { osz };
            let rax = Operand::Reg { index: 0, high8: false };
            if op & 2 == 0 {
                MmioAccess::Load { dest: rax, size, zero_extend_to: size }
            } else {
                MmioAccess::Store { src: rax, size }
            }
        }
        0x0f => {
            let op2 = c.byte()?;
            let size = match op2 {
                0xb6 | 0xbe => 1,
                0xb7 | 0xbf => 2,
                _ => return Err(DecodeError::Unsupported(op2)),
            };
            let dest = reg_operand(modrm(&mut c, op2, asz)? | rex_r, osz, has_rex);
            if op2 & 8 == 0 {
                MmioAccess::Load { dest, size, zero_extend_to: osz }
            } else {
                MmioAccess::LoadSignExtended { dest, size, extend_to: osz }
            }
        }
        0x38..=0x3b => {
            let size = if op & 1 == 0 { 1 } else { osz };
            let reg = reg_operand(modrm(&mut c, op, asz)? | rex_r, size, has_rex);
            MmioAccess::Compare { other: reg, size, memory_first: op & 2 == 0 }
        }
        0x80 | 0x81 | 0x83 => {
            let size = if op == 0x80 { 1 } else { osz };
            // /7 is CMP, /2 ADC and /3 SBB are not supported; the others modify memory.
            let n = modrm(&mut c, op, asz)?;
            let imm = if op == 0x81 { imm_operand(&mut c, size)? } else { imm8(&mut c)? };
            let imm = Operand::Imm(imm & mask(size));
            match (n, AluOp::from_group1(n)) {
                (7, _) => MmioAccess::Compare { other: imm, size, memory_first: true },
                (_, Some(op)) => MmioAccess::Modify { op, src: imm, size },
                _ => return Err(DecodeError::Unsupported(op)),
            }
        }
        0x00 | 0x01 | 0x08 | 0x09 | 0x20 | 0x21 | 0x28 | 0x29 | 0x30 | 0x31 => {
            let size = if op & 1 == 0 { 1 } else { osz };
            let src = reg_operand(modrm(&mut c, op, asz)? | rex_r, size, has_rex);
            let alu = AluOp::from_group1(op >> 3).ok_or(DecodeError::Unsupported(op))?;
            MmioAccess::Modify { op: alu, src, size }
        }
        0x84..=0x87 => {
            let size = if op & 1 == 0 { 1 } else { osz };
            let reg = reg_operand(modrm(&mut c, op, asz)? | rex_r, size, has_rex);
            if op & 2 == 0 {
                MmioAccess::Test { other: reg, size }
            } else {
                MmioAccess::Exchange { reg, size }
            }
        }
        0xf6 | 0xf7 => {
            let size = if op == 0xf6 { 1 } else { osz };
            // /0 is TEST (/1 an undocumented alias, not supported); the others are unary
            // ops, MUL and DIV.
            if modrm(&mut c, op, asz)? != 0 {
                return Err(DecodeError::Unsupported(op));
            }
            let imm = if op == 0xf6 { imm8(&mut c)? } else { imm_operand(&mut c, size)? };
            MmioAccess::Test { other: Operand::Imm(imm & mask(size)), size }
        }
        _ => return Err(DecodeError::Unsupported(op)),
    };
    // LOCK is #UD unless the instruction is a read-modify-write of memory.
    if lock && !matches!(access, MmioAccess::Exchange { .. } | MmioAccess::Modify { .. }) {
        return Err(DecodeError::Unsupported(0xf0));
    }
    Ok(Decoded { access, len: c.pos as u8 })
}

/// An imm8 sign-extended to 64 bits (group 1 83, and 80/F6 where it is the whole operand).
fn imm8(c: &mut Cursor<'_>) -> Result<u64, DecodeError> {
    Ok(c.byte()? as i8 as i64 as u64)
}

/// The immediate of a `size`-byte operation with a full-size immediate (81, C7, F7): imm16 or
/// imm32, and imm32 sign-extended for a 64-bit operand.
fn imm_operand(c: &mut Cursor<'_>, size: u8) -> Result<u64, DecodeError> {
    let raw = c.take(usize::from(size.min(4)))?;
    Ok(match size {
        2 => raw as u16 as i16 as i64 as u64,
        _ => raw as u32 as i32 as i64 as u64,
    })
}

/// RFLAGS after `CMP a, b` on `size`-byte operands (SDM Vol. 2A CMP; SUB's flags): CF, PF,
/// AF, ZF, SF and OF set from `a - b`, every other bit of `rflags` kept.
pub fn cmp_rflags(rflags: u64, a: u64, b: u64, size: u8) -> u64 {
    alu(AluOp::Sub, rflags, a, b, size).1
}

/// The result of `a op b` on `size`-byte operands (the low `size` bytes) and RFLAGS after it
/// (SDM Vol. 2A ADD, AND; Vol. 2B OR, SUB, XOR): PF, ZF and SF from the result; for ADD and
/// SUB, CF the carry or borrow, AF that of bit 3, OF the signed overflow; for the logical ops
/// CF = OF = 0 and AF, which the SDM leaves undefined, 0 here. Every other bit of `rflags` is
/// kept. TEST sets the flags of AND, CMP those of SUB.
pub fn alu(op: AluOp, rflags: u64, a: u64, b: u64, size: u8) -> (u64, u64) {
    const CF: u64 = 1;
    const PF: u64 = 1 << 2;
    const AF: u64 = 1 << 4;
    const ZF: u64 = 1 << 6;
    const SF: u64 = 1 << 7;
    const OF: u64 = 1 << 11;
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = match op {
        AluOp::Add => a.wrapping_add(b),
        AluOp::Sub => a.wrapping_sub(b),
        AluOp::Or => a | b,
        AluOp::And => a & b,
        AluOp::Xor => a ^ b,
    } & m;
    let sign = 1u64 << (u32::from(size.clamp(1, 8)) * 8 - 1);
    let mut f = rflags & !(CF | PF | AF | ZF | SF | OF);
    let (carry, overflow) = match op {
        // r < a: the sum wrapped; both operands of one sign, the result of the other.
        AluOp::Add => (r < a, (a ^ r) & (b ^ r) & sign != 0),
        // a < b: a borrow; operands of different signs, the result's that of b.
        AluOp::Sub => (a < b, (a ^ b) & (a ^ r) & sign != 0),
        AluOp::Or | AluOp::And | AluOp::Xor => (false, false),
    };
    if carry {
        f |= CF;
    }
    if overflow {
        f |= OF;
    }
    if matches!(op, AluOp::Add | AluOp::Sub) && (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    if r == 0 {
        f |= ZF;
    }
    if r & sign != 0 {
        f |= SF;
    }
    (r, f)
}

/// `value`'s low `size` bytes sign-extended to 64 bits (MOVSX; [`apply_load`] then keeps the
/// operand size's bytes).
pub fn sign_extend(value: u64, size: u8) -> u64 {
    match size {
        1 => value as u8 as i8 as i64 as u64,
        2 => value as u16 as i16 as i64 as u64,
        4 => value as u32 as i32 as i64 as u64,
        _ => value,
    }
}

/// Mask of the low `size` bytes (8 or more: all).
fn mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// The new 64-bit value of register `dest` (old value `old`) after loading `value`, of which
/// the low `size` bytes count, zero-extended to `zero_extend_to` bytes. x86 rules (SDM Vol. 1
/// 3.4.1.1): 8- and 16-bit writes merge into the old value (a high8 register writes bits
/// 15:8), a 32-bit write zero-extends to 64 bits, a 64-bit write replaces. An `Imm` `dest`
/// (never produced by [`decode`]) leaves `old`.
pub fn apply_load(old: u64, dest: Operand, size: u8, zero_extend_to: u8, value: u64) -> u64 {
    let v = value & mask(size);
    match dest {
        Operand::Imm(_) => old,
        Operand::Reg { high8: true, .. } => (old & !0xff00) | (v & 0xff) << 8,
        Operand::Reg { .. } => match zero_extend_to {
            1 | 2 => (old & !mask(zero_extend_to)) | (v & mask(zero_extend_to)),
            4 => v & 0xffff_ffff,
            _ => v,
        },
    }
}

/// The value a store of `size` bytes from `src` writes: the register's low `size` bytes
/// (`reg_value` is its full 64-bit value; bits 15:8 for a high8 register), or the immediate
/// truncated to `size`.
pub fn store_value(reg_value: u64, src: Operand, size: u8) -> u64 {
    match src {
        Operand::Reg { high8: true, .. } => (reg_value >> 8) & 0xff,
        Operand::Reg { .. } => reg_value & mask(size),
        Operand::Imm(v) => v & mask(size),
    }
}

#[cfg(test)]
mod tests {
    use super::CpuMode::*;
    use super::*;
    use proptest::prelude::*;

    const fn r(index: u8) -> Operand {
        Operand::Reg { index, high8: false }
    }

    #[test]
    fn cmp_forms_decode_and_set_flags() {
        // cmp dword [rax+rcx*4+0x40], 0 (what virtio-drivers' QueueReady check compiles to)
        let d = decode(&[0x83, 0x7c, 0x88, 0x40, 0x00, 0x0f], Long64).unwrap();
        assert_eq!(d.len, 5);
        assert_eq!(
            d.access,
            MmioAccess::Compare { other: Operand::Imm(0), size: 4, memory_first: true }
        );
        let d = decode(&[0x48, 0x81, 0x38, 0xff, 0xff, 0xff, 0xff], Long64).unwrap();
        assert_eq!(
            d.access,
            MmioAccess::Compare { other: Operand::Imm(u64::MAX), size: 8, memory_first: true }
        );
        let d = decode(&[0x3b, 0x08], Long64).unwrap();
        assert_eq!(
            d.access,
            MmioAccess::Compare {
                other: Operand::Reg { index: 1, high8: false },
                size: 4,
                memory_first: false
            }
        );
        // adc dword [rax], 1: refused.
        assert_eq!(decode(&[0x83, 0x10, 0x01], Long64), Err(DecodeError::Unsupported(0x83)));
        assert_eq!(cmp_rflags(0x2, 5, 5, 4), 0x2 | 1 << 6 | 1 << 2);
        assert_eq!(cmp_rflags(0x2, 1, 2, 4) & 0x8c1, 1 | 1 << 7);
        assert_eq!(cmp_rflags(0x2, 0x80, 1, 1) & 0x800, 0x800);
        assert_eq!(cmp_rflags(0x2 | 0x200, 3, 1, 8), 0x202);
    }

    fn access(bytes: &[u8], mode: CpuMode, want: MmioAccess) {
        let d = decode(bytes, mode).unwrap();
        assert_eq!(d.access, want, "{bytes:02x?} {mode:?}");
        assert_eq!(usize::from(d.len), bytes.len(), "{bytes:02x?} {mode:?}");
    }

    #[test]
    fn read_modify_write_forms() {
        use AluOp::*;
        use MmioAccess::{Exchange, LoadSignExtended, Modify, Test};
        let imm = Operand::Imm;
        // xchg %eax, 0xfee00080 (32-bit); with LOCK; xchg %cl, (%rax); xchg %r9, (%rbx)
        access(&[0x87, 0x05, 0x80, 0, 0xe0, 0xfe], Protected32, Exchange { reg: r(0), size: 4 });
        access(
            &[0xf0, 0x87, 0x05, 0x80, 0, 0xe0, 0xfe],
            Protected32,
            Exchange { reg: r(0), size: 4 },
        );
        access(&[0x86, 0x08], Long64, Exchange { reg: r(1), size: 1 });
        access(&[0x4c, 0x87, 0x0b], Long64, Exchange { reg: r(9), size: 8 });
        // xchg %ax, (%bx) in real mode; xchg %bh, (%bx)
        access(&[0x87, 0x07], Real16, Exchange { reg: r(0), size: 2 });
        access(
            &[0x86, 0x3f],
            Real16,
            Exchange { reg: Operand::Reg { index: 3, high8: true }, size: 1 },
        );
        // orl $0x10, 0xfee00080 (83 /1 ib); andl $~0x10 (83 /4 ib, sign-extended)
        let b = [0x83, 0x0d, 0x80, 0, 0xe0, 0xfe, 0x10];
        access(&b, Protected32, Modify { op: Or, src: imm(0x10), size: 4 });
        let b = [0x83, 0x25, 0x80, 0, 0xe0, 0xfe, 0xef];
        access(&b, Protected32, Modify { op: And, src: imm(0xffff_ffef), size: 4 });
        // lock addq $-1, (%rdi): imm8 sign-extended to 64 bits
        access(
            &[0xf0, 0x48, 0x83, 0x07, 0xff],
            Long64,
            Modify { op: Add, src: imm(u64::MAX), size: 8 },
        );
        // subw $0x1234, 2(%si) (81 /5 iw); xorb $0x80, (%bx,%di) (80 /6 ib)
        let b = [0x81, 0x6c, 0x02, 0x34, 0x12];
        access(&b, Real16, Modify { op: Sub, src: imm(0x1234), size: 2 });
        access(&[0x80, 0x31, 0x80], Protected16, Modify { op: Xor, src: imm(0x80), size: 1 });
        // 81 /0 with a 64-bit operand: imm32 sign-extended
        let b = [0x48, 0x81, 0x00, 0, 0, 0, 0x80];
        access(&b, Long64, Modify { op: Add, src: imm(0xffff_ffff_8000_0000), size: 8 });
        // or %eax, (%rdx); and %r10b, (%rax); xor %dx, (%rax); sub %ah, (%rax); add %ecx, (%ebx) via 67
        access(&[0x09, 0x02], Long64, Modify { op: Or, src: r(0), size: 4 });
        access(&[0x44, 0x20, 0x10], Long64, Modify { op: And, src: r(10), size: 1 });
        access(&[0x66, 0x31, 0x10], Long64, Modify { op: Xor, src: r(2), size: 2 });
        let ah = Operand::Reg { index: 0, high8: true };
        access(&[0x28, 0x20], Long64, Modify { op: Sub, src: ah, size: 1 });
        access(&[0x67, 0x01, 0x0b], Long64, Modify { op: Add, src: r(1), size: 4 });
        // 66 in 16-bit mode: 32-bit operand.
        access(&[0x66, 0xf0, 0x09, 0x07], Real16, Modify { op: Or, src: r(0), size: 4 });
        // testl $0x100, 0xfee000f0 (f7 /0 id); testb $1, (%rax); testw $0x8000, (%bx)
        let b = [0xf7, 0x05, 0xf0, 0, 0xe0, 0xfe, 0, 1, 0, 0];
        access(&b, Protected32, Test { other: imm(0x100), size: 4 });
        access(&[0xf6, 0x00, 0x01], Long64, Test { other: imm(1), size: 1 });
        access(&[0xf7, 0x07, 0x00, 0x80], Real16, Test { other: imm(0x8000), size: 2 });
        // test %ecx, (%rax); test %bl, (%eax) in 32-bit mode; testq $-1, (%rax)
        access(&[0x85, 0x08], Long64, Test { other: r(1), size: 4 });
        access(&[0x84, 0x18], Protected32, Test { other: r(3), size: 1 });
        let b = [0x48, 0xf7, 0x00, 0xff, 0xff, 0xff, 0xff];
        access(&b, Long64, Test { other: imm(u64::MAX), size: 8 });
        // movsbl 0xfee00020, %eax; movswl (%bx), %ecx (16-bit with 66); movsbq (%rax), %r8;
        // movsbw (%rax), %ax
        let b = [0x0f, 0xbe, 0x05, 0x20, 0, 0xe0, 0xfe];
        access(&b, Protected32, LoadSignExtended { dest: r(0), size: 1, extend_to: 4 });
        let b = [0x66, 0x0f, 0xbf, 0x0f];
        access(&b, Real16, LoadSignExtended { dest: r(1), size: 2, extend_to: 4 });
        let b = [0x4c, 0x0f, 0xbe, 0x00];
        access(&b, Long64, LoadSignExtended { dest: r(8), size: 1, extend_to: 8 });
        let b = [0x66, 0x0f, 0xbe, 0x00];
        access(&b, Long64, LoadSignExtended { dest: r(0), size: 1, extend_to: 2 });
        // LOCK where it is #UD: TEST, CMP, MOVSX; register operands.
        assert_eq!(decode(&[0xf0, 0x85, 0x08], Long64), Err(DecodeError::Unsupported(0xf0)));
        assert_eq!(decode(&[0xf0, 0x83, 0x38, 0], Long64), Err(DecodeError::Unsupported(0xf0)));
        let b = [0xf0, 0x0f, 0xbe, 0x00];
        assert_eq!(decode(&b, Long64), Err(DecodeError::Unsupported(0xf0)));
        assert_eq!(decode(&[0x87, 0xc8], Long64), Err(DecodeError::Unsupported(0x87)));
        assert_eq!(decode(&[0x83, 0xc0, 1], Long64), Err(DecodeError::Unsupported(0x83)));
    }

    #[test]
    fn alu_results_and_flags() {
        use AluOp::*;
        const CF: u64 = 1;
        const PF: u64 = 1 << 2;
        const AF: u64 = 1 << 4;
        const ZF: u64 = 1 << 6;
        const SF: u64 = 1 << 7;
        const OF: u64 = 1 << 11;
        let all = CF | PF | AF | ZF | SF | OF;
        // 0x7f + 1 on a byte: signed overflow, AF, SF.
        assert_eq!(alu(Add, 0x2, 0x7f, 1, 1), (0x80, 0x2 | OF | AF | SF));
        // 0xffff + 1 on a word: carry, zero, AF, PF.
        assert_eq!(alu(Add, 0x2, 0xffff, 1, 2), (0, 0x2 | CF | ZF | AF | PF));
        // 0 - 1 on a dword: borrow, SF, AF, PF.
        assert_eq!(alu(Sub, 0x2, 0, 1, 4), (0xffff_ffff, 0x2 | CF | SF | AF | PF));
        // Logical ops clear CF, OF and AF, keep the other RFLAGS bits.
        assert_eq!(alu(Or, 0x202 | all, 0x1ff, 0x10, 4), (0x1ff, 0x202 | PF));
        assert_eq!(alu(And, 0x2 | all, 0x1ff, !0x10, 4), (0x1ef, 0x2));
        assert_eq!(alu(And, 0x2, 0x1ff, 0x100, 4).1, 0x2 | PF);
        assert_eq!(alu(And, 0x2, 0xff, 0x100, 4).1, 0x2 | ZF | PF);
        assert_eq!(alu(Xor, 0x2, u64::MAX, 1, 8), (u64::MAX - 1, 0x2 | SF));
        // Operands beyond the size are ignored.
        assert_eq!(alu(Add, 0x2, 0x1_0000_0001, 0x1_0000_0001, 4).0, 2);
        assert_eq!(sign_extend(0x80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sign_extend(0x7f80, 1), 0xffff_ffff_ffff_ff80);
        assert_eq!(sign_extend(0x7fff, 2), 0x7fff);
        assert_eq!(sign_extend(0x8000, 2), 0xffff_ffff_ffff_8000);
        // movswl then the 32-bit write zero-extends to 64.
        let v = sign_extend(0xfffe, 2);
        assert_eq!(apply_load(u64::MAX, r(0), 4, 4, v), 0xffff_fffe);
        assert_eq!(apply_load(u64::MAX, r(0), 2, 2, sign_extend(0x80, 1)), 0xffff_ffff_ffff_ff80);
    }

    fn load(bytes: &[u8], mode: CpuMode, dest: Operand, size: u8, zx: u8) {
        let d = decode(bytes, mode).unwrap();
        assert_eq!(d.access, MmioAccess::Load { dest, size, zero_extend_to: zx }, "{bytes:02x?}");
        assert_eq!(usize::from(d.len), bytes.len(), "{bytes:02x?}");
    }

    fn store(bytes: &[u8], mode: CpuMode, src: Operand, size: u8) {
        let d = decode(bytes, mode).unwrap();
        assert_eq!(d.access, MmioAccess::Store { src, size }, "{bytes:02x?}");
        assert_eq!(usize::from(d.len), bytes.len(), "{bytes:02x?}");
    }

    #[test]
    fn protected32_forms() {
        // mov eax, [0xfee00020]
        load(&[0x8b, 0x05, 0x20, 0x00, 0xe0, 0xfe], Protected32, r(0), 4, 4);
        load(&[0xa1, 0x20, 0x00, 0xe0, 0xfe], Protected32, r(0), 4, 4);
        // movl $0, 0xfee000b0
        store(&[0xc7, 0x05, 0xb0, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], Protected32, Operand::Imm(0), 4);
        // mov %ecx, 0xfee00380(,%eax,4)
        store(&[0x89, 0x0c, 0x85, 0x80, 0x03, 0xe0, 0xfe], Protected32, r(1), 4);
        // mov %dx, 0x10(%ebx)
        store(&[0x66, 0x89, 0x53, 0x10], Protected32, r(2), 2);
        // mov (%esi,%edi), %bl
        load(&[0x8a, 0x1c, 0x3e], Protected32, r(3), 1, 1);
        // movzbl 0x20(%ebp), %eax
        load(&[0x0f, 0xb6, 0x45, 0x20], Protected32, r(0), 1, 4);
        // mov 0x0(,%eax,1), %eax: SIB base 101 with mod 00 → disp32.
        load(&[0x8b, 0x04, 0x05, 0, 0, 0, 0], Protected32, r(0), 4, 4);
        // 16-bit addressing via 67: mov eax, [bx+si+0x1234]
        load(&[0x67, 0x8b, 0x80, 0x34, 0x12], Protected32, r(0), 4, 4);
        // REX bytes are INC/DEC outside 64-bit mode.
        assert_eq!(decode(&[0x44, 0x8b, 0x00], Protected32), Err(DecodeError::Unsupported(0x44)));
    }

    #[test]
    fn long64_forms() {
        // mov %ecx, 0xfffffffffee00380 (SIB, no base, no index)
        store(&[0x89, 0x0c, 0x25, 0x80, 0x03, 0xe0, 0xfe], Long64, r(1), 4);
        // mov 0x320(%rax), %r8d
        load(&[0x44, 0x8b, 0x80, 0x20, 0x03, 0, 0], Long64, r(8), 4, 4);
        // mov 0x12345678(%rip), %eax
        load(&[0x8b, 0x05, 0x78, 0x56, 0x34, 0x12], Long64, r(0), 4, 4);
        // mov %ah, (%rsp)
        store(&[0x88, 0x24, 0x24], Long64, Operand::Reg { index: 0, high8: true }, 1);
        // mov %sil, 0x10(%rdi): with REX, encoding 6 is SIL.
        store(&[0x40, 0x88, 0x77, 0x10], Long64, r(6), 1);
        // movl $0, 0xb0(%rdx)
        store(&[0xc7, 0x82, 0xb0, 0, 0, 0, 0, 0, 0, 0], Long64, Operand::Imm(0), 4);
        // movq $-1, 0x380(%rbx,%rcx,8): imm32 sign-extended.
        let b = [0x48, 0xc7, 0x84, 0xcb, 0x80, 0x03, 0, 0, 0xff, 0xff, 0xff, 0xff];
        store(&b, Long64, Operand::Imm(u64::MAX), 8);
        // movw $0x1234, (%r9)
        store(&[0x66, 0x41, 0xc7, 0x01, 0x34, 0x12], Long64, Operand::Imm(0x1234), 2);
        // movb $0x5a, -8(%rbp)
        store(&[0xc6, 0x45, 0xf8, 0x5a], Long64, Operand::Imm(0x5a), 1);
        // movzbl 0x20(%rax), %eax; movzwq (%rax), %r11; movzbw (%rax), %ax
        load(&[0x0f, 0xb6, 0x40, 0x20], Long64, r(0), 1, 4);
        load(&[0x4c, 0x0f, 0xb7, 0x18], Long64, r(11), 2, 8);
        load(&[0x66, 0x0f, 0xb6, 0x00], Long64, r(0), 1, 2);
        // mov %ax, 0x10(%rax)
        store(&[0x66, 0x89, 0x40, 0x10], Long64, r(0), 2);
        // movabs 0xfee00030, %eax / %al: moffs64.
        load(&[0xa1, 0x30, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], Long64, r(0), 4, 4);
        store(&[0xa2, 0x30, 0x00, 0xe0, 0xfe, 0, 0, 0, 0], Long64, r(0), 1);
        // 67 a1: moffs32; 48 a3: store RAX.
        load(&[0x67, 0xa1, 0x30, 0x00, 0xe0, 0xfe], Long64, r(0), 4, 4);
        store(&[0x48, 0xa3, 0, 0, 0, 0, 0, 0, 0, 0], Long64, r(0), 8);
        // mov %eax, %fs:(%rax); with LOCK it is #UD, not a store.
        store(&[0x64, 0x89, 0x00], Long64, r(0), 4);
        assert_eq!(decode(&[0xf0, 0x64, 0x89, 0x00], Long64), Err(DecodeError::Unsupported(0xf0)));
        // mov 0(%rbp), %eax; mov 0(%r13), %eax; mov (%r12), %eax
        load(&[0x8b, 0x45, 0x00], Long64, r(0), 4, 4);
        load(&[0x41, 0x8b, 0x45, 0x00], Long64, r(0), 4, 4);
        load(&[0x41, 0x8b, 0x04, 0x24], Long64, r(0), 4, 4);
        // REX.R for the register; REX before a legacy prefix is ignored.
        load(&[0x4c, 0x8b, 0x38], Long64, r(15), 8, 8);
        load(&[0x4c, 0x66, 0x8b, 0x38], Long64, r(7), 2, 2);
    }

    #[test]
    fn real16_forms() {
        // mov 0x20, %ax
        load(&[0xa1, 0x20, 0x00], Real16, r(0), 2, 2);
        // movl $1, 0x1234(%bx,%si)
        store(&[0x66, 0xc7, 0x80, 0x34, 0x12, 1, 0, 0, 0], Real16, Operand::Imm(1), 4);
        // mov 0(%bp), %al (mod 01: disp8); mov [0x1234], ax (mod 00 rm 110: disp16)
        load(&[0x8a, 0x46, 0x00], Real16, r(0), 1, 1);
        load(&[0x8b, 0x06, 0x34, 0x12], Protected16, r(0), 2, 2);
        // mov %eax, (%eax) with 67 66
        store(&[0x67, 0x66, 0x89, 0x00], Real16, r(0), 4);
        // movw $7, 3(%di)
        store(&[0xc7, 0x45, 0x03, 0x07, 0x00], Real16, Operand::Imm(7), 2);
        // mov %ah, 0x40(%bx)
        store(&[0x88, 0x67, 0x40], Real16, Operand::Reg { index: 0, high8: true }, 1);
        // movzbl (%si), %ecx
        load(&[0x66, 0x0f, 0xb6, 0x0c], Real16, r(1), 1, 4);
        // 67 a1 in 16-bit mode: moffs32.
        load(&[0x67, 0xa1, 0, 0, 0, 0], Real16, r(0), 2, 2);
    }

    #[test]
    fn errors() {
        assert_eq!(decode(&[], Long64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x66, 0x67], Long64), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x8b, 0x05, 0x20], Protected32), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x8b, 0x04], Long64), Err(DecodeError::Truncated));
        // Register operands are not MMIO.
        assert_eq!(decode(&[0x89, 0xc8], Long64), Err(DecodeError::Unsupported(0x89)));
        assert_eq!(decode(&[0x0f, 0xb6, 0xc0], Long64), Err(DecodeError::Unsupported(0xb6)));
        // c7 /1, other opcodes, REP.
        assert_eq!(decode(&[0xc7, 0x08, 0, 0, 0, 0], Long64), Err(DecodeError::Unsupported(0xc7)));
        assert_eq!(decode(&[0x0f, 0xaf, 0x00], Long64), Err(DecodeError::Unsupported(0xaf)));
        assert_eq!(decode(&[0x11, 0x00], Long64), Err(DecodeError::Unsupported(0x11)));
        assert_eq!(decode(&[0xf7, 0x18], Long64), Err(DecodeError::Unsupported(0xf7)));
        assert_eq!(decode(&[0x0f, 0xb1, 0x00], Long64), Err(DecodeError::Unsupported(0xb1)));
        assert_eq!(decode(&[0xab], Long64), Err(DecodeError::Unsupported(0xab)));
        assert_eq!(decode(&[0xf3, 0xa5], Long64), Err(DecodeError::Unsupported(0xf3)));
        // 14 prefixes + 8b 00 = 16 bytes.
        let mut b = [0x3e; 16];
        b[14] = 0x8b;
        b[15] = 0x00;
        assert_eq!(decode(&b, Long64), Err(DecodeError::TooLong));
        // 13 prefixes + 8b 00 = 15 bytes: fine.
        assert_eq!(decode(&b[1..], Long64).map(|d| d.len), Ok(15));
        // Too long beats truncated.
        assert_eq!(decode(&[0x3e; 15], Long64), Err(DecodeError::TooLong));
        // 14 bytes needed, 12 given.
        let b = [0x3e, 0x3e, 0x48, 0xc7, 0x84, 0xcb, 0, 0, 0, 0, 0, 0];
        assert_eq!(decode(&b, Long64), Err(DecodeError::Truncated));
    }

    #[test]
    fn load_and_store_values() {
        let old = 0x1122_3344_5566_7788;
        let ah = Operand::Reg { index: 0, high8: true };
        assert_eq!(apply_load(old, r(0), 1, 1, 0xabcd), 0x1122_3344_5566_77cd);
        assert_eq!(apply_load(old, ah, 1, 1, 0xabcd), 0x1122_3344_5566_cd88);
        assert_eq!(apply_load(old, r(0), 2, 2, 0xffff_abcd), 0x1122_3344_5566_abcd);
        assert_eq!(apply_load(old, r(0), 4, 4, 0xffff_ffff_dead_beef), 0xdead_beef);
        assert_eq!(apply_load(old, r(0), 8, 8, 0xffff_ffff_dead_beef), 0xffff_ffff_dead_beef);
        assert_eq!(apply_load(old, r(0), 1, 2, 0xabcd), 0x1122_3344_5566_00cd);
        assert_eq!(apply_load(old, r(0), 2, 4, 0xffff_abcd), 0xabcd);
        assert_eq!(apply_load(old, r(0), 1, 8, 0xabcd), 0xcd);
        assert_eq!(apply_load(old, Operand::Imm(0), 4, 4, 0), old);
        assert_eq!(store_value(old, r(0), 1), 0x88);
        assert_eq!(store_value(old, ah, 1), 0x77);
        assert_eq!(store_value(old, r(0), 2), 0x7788);
        assert_eq!(store_value(old, r(0), 4), 0x5566_7788);
        assert_eq!(store_value(old, r(0), 8), old);
        assert_eq!(store_value(old, Operand::Imm(u64::MAX), 2), 0xffff);
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(2048))]

        /// Arbitrary bytes in every mode: no panic, and a decoded length fits in the bytes
        /// and the architectural limit.
        #[test]
        fn fuzz_decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..20), m in 0u8..4) {
            let mode = [Real16, Protected16, Protected32, Long64][usize::from(m)];
            if let Ok(d) = decode(&bytes, mode) {
                prop_assert!(usize::from(d.len) <= bytes.len().min(MAX_INSN_LEN));
                if let MmioAccess::Load { dest, size, zero_extend_to } = d.access {
                    let reg_ok = matches!(dest, Operand::Reg { index: 0..=15, .. });
                    prop_assert!(reg_ok);
                    prop_assert!(zero_extend_to >= size);
                }
            }
        }
    }
}
