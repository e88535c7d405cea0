//! `pc::decode::cmp_rflags` against the host CPU: random operands of each size, CMP executed
//! for real, the arithmetic flags compared.
#![cfg(target_arch = "x86_64")]

use pc::decode::cmp_rflags;
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

proptest! {
    #[test]
    fn cmp_flags_match_the_cpu(a: u64, b: u64, size in prop::sample::select(vec![1u8, 2, 4, 8])) {
        prop_assert_eq!(cmp_rflags(0x2, a, b, size) & ARITH, cpu_cmp(a, b, size), "{:#x} {:#x} {}", a, b, size);
        prop_assert_eq!(cmp_rflags(0x2, a, a, size) & ARITH, cpu_cmp(a, a, size));
    }
}
