//! The MMIO decoder against iced-x86 as an oracle: random encodings of the supported forms
//! (prefixes with LOCK, REX, every supported opcode, random ModRM/SIB/displacement/immediate
//! bytes) in every CPU mode. Whatever [`decode`] accepts, iced must decode to the same
//! instruction (MOV, MOVZX, MOVSX, CMP, TEST, XCHG, ADD, OR, AND, SUB, XOR): same length, a
//! memory operand on the same side, the same register, access size, extension and
//! immediate. Whatever iced decodes as one of them with a memory operand, [`decode`] must
//! accept (except the undocumented F6 /1, F7 /1 alias of TEST, which it refuses).

use iced_x86::{Decoder, DecoderOptions, Instruction, MemorySize, Mnemonic, OpKind, Register};
use proptest::prelude::*;

use crate::decode::{AluOp, CpuMode, MmioAccess, Operand, decode};

const PREFIXES: [u8; 9] = [0x66, 0x67, 0x26, 0x2e, 0x36, 0x3e, 0x64, 0x65, 0xf0];
const OPCODES: [&[u8]; 39] = [
    &[0x00],
    &[0x01],
    &[0x08],
    &[0x09],
    &[0x10],
    &[0x20],
    &[0x21],
    &[0x28],
    &[0x29],
    &[0x30],
    &[0x31],
    &[0x84],
    &[0x85],
    &[0x86],
    &[0x87],
    &[0xf6],
    &[0xf7],
    &[0x0f, 0xbe],
    &[0x0f, 0xbf],
    &[0x0f, 0xb1],
    &[0x38],
    &[0x39],
    &[0x3a],
    &[0x3b],
    &[0x80],
    &[0x81],
    &[0x83],
    &[0x88],
    &[0x89],
    &[0x8a],
    &[0x8b],
    &[0xc6],
    &[0xc7],
    &[0xa0],
    &[0xa1],
    &[0xa2],
    &[0xa3],
    &[0x0f, 0xb6],
    &[0x0f, 0xb7],
];
const MODES: [(CpuMode, u32); 4] = [
    (CpuMode::Real16, 16),
    (CpuMode::Protected16, 16),
    (CpuMode::Protected32, 32),
    (CpuMode::Long64, 64),
];

fn mask(size: u8) -> u64 {
    if size >= 8 { u64::MAX } else { (1u64 << (8 * size)) - 1 }
}

/// Our operand and its size in bytes for an iced general-purpose register (iced numbers
/// them AL..R15L, AX..R15W, EAX..R15D, RAX..R15; the 8-bit group is AL, CL, DL, BL, AH, CH,
/// DH, BH, SPL, BPL, SIL, DIL, R8L..R15L).
fn operand(r: Register) -> Option<(Operand, usize)> {
    let n = r as u32;
    let reg = |index: u32, high8: bool| Operand::Reg { index: index as u8, high8 };
    let from = |base: Register| n.checked_sub(base as u32).filter(|&i| i < 16);
    if let Some(i) = n.checked_sub(Register::AL as u32).filter(|&i| i < 20) {
        return Some(match i {
            0..=3 => (reg(i, false), 1),
            4..=7 => (reg(i - 4, true), 1),
            _ => (reg(i - 4, false), 1),
        });
    }
    [(Register::AX, 2), (Register::EAX, 4), (Register::RAX, 8)]
        .into_iter()
        .find_map(|(base, size)| from(base).map(|i| (reg(i, false), size)))
}

/// Bytes of a MOV or MOVZX memory operand.
fn memory_bytes(size: MemorySize) -> Option<u8> {
    match size {
        MemorySize::UInt8 | MemorySize::Int8 => Some(1),
        MemorySize::UInt16 | MemorySize::Int16 => Some(2),
        MemorySize::UInt32 => Some(4),
        MemorySize::UInt64 => Some(8),
        _ => None,
    }
}

fn memory_operand(ins: &Instruction) -> Option<u32> {
    (0..ins.op_count()).find(|&i| ins.op_kind(i) == OpKind::Memory)
}

proptest! {
    #![proptest_config(crate::fuzz_config(10_000))]

    #[test]
    fn decoder_matches_iced(
        mode in 0usize..4,
        prefixes in proptest::collection::vec(proptest::sample::select(&PREFIXES[..]), 0..4),
        rex in proptest::option::of(0x40u8..=0x4f),
        opcode in 0usize..OPCODES.len(),
        tail in proptest::array::uniform12(any::<u8>()),
    ) {
        let (mode, bitness) = MODES[mode];
        let mut bytes = prefixes.clone();
        bytes.extend(rex);
        bytes.extend_from_slice(OPCODES[opcode]);
        bytes.extend_from_slice(&tail);
        let ours = decode(&bytes, mode);
        let ins = Decoder::with_ip(bitness, &bytes, 0, DecoderOptions::NONE).decode();
        // F6 /1, F7 /1: an undocumented alias of TEST (SDM Vol. 2D Table A-6 leaves it
        // reserved), refused.
        let test_alias = matches!(OPCODES[opcode], [0xf6] | [0xf7]) && (tail[0] >> 3) & 7 == 1;
        let iced_mov = !ins.is_invalid()
            && !test_alias
            && matches!(
                ins.mnemonic(),
                Mnemonic::Mov
                    | Mnemonic::Movzx
                    | Mnemonic::Movsx
                    | Mnemonic::Cmp
                    | Mnemonic::Test
                    | Mnemonic::Xchg
                    | Mnemonic::Add
                    | Mnemonic::Or
                    | Mnemonic::And
                    | Mnemonic::Sub
                    | Mnemonic::Xor
            )
            && memory_operand(&ins).is_some();
        prop_assert_eq!(ours.is_ok(), iced_mov, "{:02x?} {:?}: ours {:?}, iced {:?}", bytes, mode, ours, ins);
        let Ok(d) = ours else { return Ok(()) };
        prop_assert_eq!(usize::from(d.len), ins.len(), "length of {:02x?} {:?} ({:?})", bytes, mode, ins);
        let mem_size = memory_bytes(ins.memory_size());
        match d.access {
            MmioAccess::Load { dest, size, zero_extend_to } => {
                prop_assert!(matches!(ins.mnemonic(), Mnemonic::Mov | Mnemonic::Movzx), "{:?}", ins);
                check_load(&ins, dest, size, zero_extend_to, mem_size)?;
            }
            MmioAccess::Compare { other, size, memory_first } => {
                prop_assert_eq!(ins.mnemonic(), Mnemonic::Cmp, "{:?}", ins);
                let memory_index = if memory_first { 0 } else { 1 };
                check_memory_and_other(&ins, memory_index, other, size, mem_size)?;
            }
            MmioAccess::LoadSignExtended { dest, size, extend_to } => {
                prop_assert_eq!(ins.mnemonic(), Mnemonic::Movsx, "{:?}", ins);
                check_load(&ins, dest, size, extend_to, mem_size)?;
            }
            MmioAccess::Test { other, size } => {
                prop_assert_eq!(ins.mnemonic(), Mnemonic::Test, "{:?}", ins);
                check_memory_and_other(&ins, 0, other, size, mem_size)?;
            }
            MmioAccess::Exchange { reg, size } => {
                prop_assert_eq!(ins.mnemonic(), Mnemonic::Xchg, "{:?}", ins);
                prop_assert!(matches!(reg, Operand::Reg { .. }), "{:?}", ins);
                check_memory_and_other(&ins, 0, reg, size, mem_size)?;
            }
            MmioAccess::Modify { op, src, size } => {
                let want = match op {
                    AluOp::Add => Mnemonic::Add,
                    AluOp::Or => Mnemonic::Or,
                    AluOp::And => Mnemonic::And,
                    AluOp::Sub => Mnemonic::Sub,
                    AluOp::Xor => Mnemonic::Xor,
                };
                prop_assert_eq!(ins.mnemonic(), want, "{:?}", ins);
                check_memory_and_other(&ins, 0, src, size, mem_size)?;
            }
            MmioAccess::Store { src, size } => {
                prop_assert_eq!(memory_operand(&ins), Some(0), "{:?}", ins);
                prop_assert_eq!(Some(size), mem_size, "{:?}", ins);
                match src {
                    Operand::Imm(v) => {
                        prop_assert!(ins.op_kind(1) != OpKind::Register, "{:?}", ins);
                        prop_assert_eq!(v & mask(size), ins.immediate(1) & mask(size), "{:?}", ins);
                    }
                    reg => {
                        let want = (reg, usize::from(size));
                        prop_assert_eq!(Some(want), operand(ins.op1_register()), "{:?}", ins);
                    }
                }
            }
        }
    }
}

/// A load into register `dest` of `size` bytes from memory (operand 1), widened to
/// `extend_to` bytes (MOV, MOVZX, MOVSX).
fn check_load(
    ins: &Instruction,
    dest: Operand,
    size: u8,
    extend_to: u8,
    mem_size: Option<u8>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(memory_operand(ins), Some(1), "{:?}", ins);
    let want = (dest, usize::from(extend_to));
    prop_assert_eq!(Some(want), operand(ins.op0_register()), "{:?}", ins);
    prop_assert_eq!(Some(size), mem_size, "{:?}", ins);
    Ok(())
}

/// An instruction with its memory operand at `memory_index` (0 or 1) and `other` (a
/// register or an immediate) as the other operand, both of `size` bytes (CMP, TEST, XCHG,
/// and the ALU ops with a memory destination).
fn check_memory_and_other(
    ins: &Instruction,
    memory_index: u32,
    other: Operand,
    size: u8,
    mem_size: Option<u8>,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(memory_operand(ins), Some(memory_index), "{:?}", ins);
    prop_assert_eq!(Some(size), mem_size, "{:?}", ins);
    match other {
        Operand::Imm(v) => {
            prop_assert!(ins.op_kind(1) != OpKind::Register, "{:?}", ins);
            prop_assert_eq!(v, ins.immediate(1) & mask(size), "{:?}", ins);
        }
        reg => {
            let want = (reg, usize::from(size));
            prop_assert_eq!(Some(want), operand(ins.op_register(1 - memory_index)), "{:?}", ins);
        }
    }
    Ok(())
}
