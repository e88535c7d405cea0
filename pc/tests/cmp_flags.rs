//! `pc::decode::cmp_rflags` and `pc::decode::alu` against the host CPU: random operands of
//! each size, CMP, ADD, SUB, OR, AND, XOR and TEST executed for real, the results and the
//! arithmetic flags compared (AF, undefined after the logical ops, excepted there).
#![cfg(target_arch = "x86_64")]

use pc::decode::{AluOp, alu, cmp_rflags};
use proptest::prelude::*;

/// The arithmetic flags: CF, PF, AF, ZF, SF, OF.
const ARITH: u64 = 1 | 1 << 2 | 1 << 4 | 1 << 6 | 1 << 7 | 1 << 11;

fn cpu_cmp(a: u64, b: u64, size: u8) -> u64 {
    let flags: u64;
    // SAFETY: CMP on registers and PUSHFQ/POP on our own stack; nothing else is touched.
    unsafe {
        match size {
            1 => {
                core::arch::asm!("cmp {a:l}, {b:l}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            2 => {
                core::arch::asm!("cmp {a:x}, {b:x}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            4 => {
                core::arch::asm!("cmp {a:e}, {b:e}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
            _ => {
                core::arch::asm!("cmp {a}, {b}", "pushfq", "pop {f}", a = in(reg) a, b = in(reg) b, f = out(reg) flags)
            }
        }
    }
    flags & ARITH
}

/// `a op b` executed by the CPU at `size` bytes: the result (in `a`'s register) and the
/// arithmetic flags.
macro_rules! cpu_op {
    ($insn:literal, $a:expr, $b:expr, $size:expr) => {{
        let (mut a, b): (u64, u64) = ($a, $b);
        let f: u64;
        // SAFETY: the ALU op on registers and PUSHFQ/POP on our own stack; nothing else is
        // touched.
        unsafe {
            match $size {
                1 => core::arch::asm!(concat!($insn, " {a:l}, {b:l}"), "pushfq", "pop {f}", a = inout(reg) a, b = in(reg) b, f = out(reg) f),
                2 => core::arch::asm!(concat!($insn, " {a:x}, {b:x}"), "pushfq", "pop {f}", a = inout(reg) a, b = in(reg) b, f = out(reg) f),
                4 => core::arch::asm!(concat!($insn, " {a:e}, {b:e}"), "pushfq", "pop {f}", a = inout(reg) a, b = in(reg) b, f = out(reg) f),
                _ => core::arch::asm!(concat!($insn, " {a}, {b}"), "pushfq", "pop {f}", a = inout(reg) a, b = in(reg) b, f = out(reg) f),
            }
        }
        let mask = if $size >= 8 { u64::MAX } else { (1u64 << (8 * $size)) - 1 };
        (a & mask, f & ARITH)
    }};
}

const AF: u64 = 1 << 4;

proptest! {
    #[test]
    fn alu_matches_the_cpu(a: u64, b: u64, size in prop::sample::select(vec![1u8, 2, 4, 8])) {
        let cases = [
            (AluOp::Add, cpu_op!("add", a, b, size), ARITH),
            (AluOp::Sub, cpu_op!("sub", a, b, size), ARITH),
            (AluOp::Or, cpu_op!("or", a, b, size), ARITH & !AF),
            (AluOp::And, cpu_op!("and", a, b, size), ARITH & !AF),
            (AluOp::Xor, cpu_op!("xor", a, b, size), ARITH & !AF),
        ];
        for (op, (result, flags), checked) in cases {
            let (ours, ours_flags) = alu(op, 0x2, a, b, size);
            prop_assert_eq!(ours, result, "{:?} {:#x} {:#x} {}", op, a, b, size);
            prop_assert_eq!(ours_flags & checked, flags & checked, "{:?} {:#x} {:#x} {}", op, a, b, size);
        }
        // TEST: AND's flags, the operand untouched.
        let (_, test_flags) = cpu_op!("test", a, b, size);
        prop_assert_eq!(alu(AluOp::And, 0x2, a, b, size).1 & ARITH & !AF, test_flags & !AF);
    }
}

proptest! {
    #[test]
    fn cmp_flags_match_the_cpu(a: u64, b: u64, size in prop::sample::select(vec![1u8, 2, 4, 8])) {
        prop_assert_eq!(cmp_rflags(0x2, a, b, size) & ARITH, cpu_cmp(a, b, size), "{:#x} {:#x} {}", a, b, size);
        prop_assert_eq!(cmp_rflags(0x2, a, a, size) & ARITH, cpu_cmp(a, a, size));
    }
}
