//! Architectural register bits, defined once for the image and the nested logic: CR0 and CR4
//! (SDM Vol. 3A 2.5), IA32_EFER (Vol. 3A 2.2.1, Vol. 4 Table 2-2) and RFLAGS (Vol. 1 3.4.3).
//! `arch_crosscheck.rs` checks every one against the `x86` and `x86_64` crates. Use sites
//! name these bits; they never retype them as hex.

/// CR0 bits (SDM Vol. 3A 2.5, Figure 2-7).
pub mod cr0 {
    pub const PE: u64 = 1 << 0;
    pub const MP: u64 = 1 << 1;
    pub const EM: u64 = 1 << 2;
    pub const TS: u64 = 1 << 3;
    pub const ET: u64 = 1 << 4;
    pub const NE: u64 = 1 << 5;
    pub const WP: u64 = 1 << 16;
    pub const AM: u64 = 1 << 18;
    pub const NW: u64 = 1 << 29;
    pub const CD: u64 = 1 << 30;
    pub const PG: u64 = 1 << 31;
}

/// CR4 bits (SDM Vol. 3A 2.5, Figure 2-8).
pub mod cr4 {
    pub const VME: u64 = 1 << 0;
    pub const PVI: u64 = 1 << 1;
    pub const TSD: u64 = 1 << 2;
    pub const DE: u64 = 1 << 3;
    pub const PSE: u64 = 1 << 4;
    pub const PAE: u64 = 1 << 5;
    pub const MCE: u64 = 1 << 6;
    pub const PGE: u64 = 1 << 7;
    pub const PCE: u64 = 1 << 8;
    pub const OSFXSR: u64 = 1 << 9;
    pub const OSXMMEXCPT: u64 = 1 << 10;
    pub const UMIP: u64 = 1 << 11;
    pub const LA57: u64 = 1 << 12;
    pub const VMXE: u64 = 1 << 13;
    pub const SMXE: u64 = 1 << 14;
    pub const FSGSBASE: u64 = 1 << 16;
    pub const PCIDE: u64 = 1 << 17;
    pub const OSXSAVE: u64 = 1 << 18;
    pub const SMEP: u64 = 1 << 20;
    pub const SMAP: u64 = 1 << 21;
    pub const PKE: u64 = 1 << 22;
}

/// IA32_EFER bits (SDM Vol. 4, Table 2-2, MSR C000_0080H).
pub mod efer {
    pub const SCE: u64 = 1 << 0;
    pub const LME: u64 = 1 << 8;
    pub const LMA: u64 = 1 << 10;
    pub const NXE: u64 = 1 << 11;
}

/// RFLAGS bits (SDM Vol. 1 3.4.3, Figure 3-8).
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    /// Bit 1 is reserved and always 1.
    pub const FIXED_1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const NT: u64 = 1 << 14;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    pub const VIF: u64 = 1 << 19;
    pub const VIP: u64 = 1 << 20;
    pub const ID: u64 = 1 << 21;
    /// The six arithmetic flags VMsucceed/VMfail rewrite (SDM Vol. 3C 31.2).
    pub const ARITH: u64 = CF | PF | AF | ZF | SF | OF;
    /// Bits 3, 5, 15 and 22-63 are reserved (0).
    pub const RESERVED: u64 = !0x3f_ffff | 1 << 15 | 1 << 5 | 1 << 3;
}

/// The VMCS's pending debug exceptions (SDM Vol. 3C 25.4.2, Table 25-4).
pub mod pending_dbg {
    /// B3-B0: the breakpoint conditions met.
    pub const B0_3: u64 = 0xf;
    /// An enabled breakpoint was met.
    pub const ENABLED_BREAKPOINT: u64 = 1 << 12;
    /// BS: a single-step debug trap (RFLAGS.TF).
    pub const BS: u64 = 1 << 14;
    /// RTM: a debug exception in an RTM region.
    pub const RTM: u64 = 1 << 16;
}

/// IA32_DEBUGCTL bits (SDM Vol. 3B 18.4.1, 18.4.4).
pub mod debugctl {
    pub const LBR: u64 = 1 << 0;
    /// Single-step on branches: with TF, a debug trap follows only branches.
    pub const BTF: u64 = 1 << 1;
}

/// The pending debug exceptions after L0 emulated one instruction of a guest that began it
/// with `rflags` and IA32_DEBUGCTL `debugctl` (SDM Vol. 3B 18.3.1.4): with RFLAGS.TF set and
/// DEBUGCTL.BTF clear the processor takes a single-step debug trap after the instruction,
/// which for the guest is BS in its pending debug exceptions, delivered after the VM entry
/// (Vol. 3C 26.7.3). With BTF only branches trap, and L0 emulates none.
pub const fn pending_after_emulation(rflags: u64, debugctl: u64, pending: u64) -> u64 {
    if rflags & rflags::TF != 0 && debugctl & debugctl::BTF == 0 {
        pending | pending_dbg::BS
    } else {
        pending
    }
}

/// What an emulated instruction did that a DR0-DR3 breakpoint can match (SDM Vol. 3B 18.2.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakAccess {
    /// A data load at a linear address.
    Read,
    /// A data store at a linear address.
    Write,
    /// An I/O port access (IN, OUT).
    Io,
}

/// The breakpoints of DR7 `dr7` and DR0-DR3 `dr` an access of `size` bytes at `address`
/// (linear, or the port for [`BreakAccess::Io`]) meets: the pending debug exceptions bits
/// B3-B0 plus [`pending_dbg::ENABLED_BREAKPOINT`], or 0 (SDM Vol. 3B 18.2.4, 18.2.5; Vol. 3C
/// 25.4.2). Only enabled breakpoints (L*n* or G*n*) count. R/W*n* 01 matches stores, 11 loads
/// and stores, 10 I/O ports when CR4.DE is set (`debug_extensions`; without it 10 is
/// undefined and matches nothing here); 00 (instruction execution) never matches a data
/// access. LEN*n* 00, 01, 11 and 10 cover 1, 2, 4 and 8 bytes at DR*n* aligned down to that
/// size, and the access matches if any byte of it falls in the range.
pub fn breakpoints_met(
    dr7: u64,
    dr: [u64; 4],
    debug_extensions: bool,
    access: BreakAccess,
    address: u64,
    size: u64,
) -> u64 {
    let mut met = 0;
    for (n, &bp) in dr.iter().enumerate() {
        if dr7 >> (2 * n) & 3 == 0 {
            continue;
        }
        let rw = dr7 >> (16 + 4 * n) & 3;
        let matches_kind = match (rw, access) {
            (1, BreakAccess::Write) | (3, BreakAccess::Read | BreakAccess::Write) => true,
            (2, BreakAccess::Io) => debug_extensions,
            _ => false,
        };
        if !matches_kind {
            continue;
        }
        let len = match dr7 >> (18 + 4 * n) & 3 {
            0 => 1,
            1 => 2,
            2 => 8,
            _ => 4,
        };
        let start = bp & !(len - 1);
        if address < start.wrapping_add(len) && start < address.wrapping_add(size) {
            met |= 1 << n;
        }
    }
    if met != 0 { met | pending_dbg::ENABLED_BREAKPOINT } else { 0 }
}

/// Segment access rights as the VMCS holds them (SDM Vol. 3C 25.4.1, Table 25-2): bits 15:8
/// of the descriptor's second dword shifted down by 8, so bit `n` here is descriptor bit
/// `n + 40` (Vol. 3A 3.4.5).
pub mod segment_ar {
    /// Descriptor privilege level, bits 6:5 (the CPL for SS).
    pub const DPL_SHIFT: u64 = 5;
    pub const DPL: u64 = 3 << DPL_SHIFT;
    /// 64-bit code segment (CS.L).
    pub const L: u64 = 1 << 13;
    /// Default operation size (CS.D) / big (SS.B): 32-bit when set.
    pub const DB: u64 = 1 << 14;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// DR7 as the SDM lays it out (Vol. 3B Figure 18-1): L0 bit 0, G1 bit 3, R/W0 bits 17:16,
    /// LEN0 bits 19:18, R/W1 bits 21:20, LEN1 bits 23:22, and so on.
    #[test]
    fn data_and_io_breakpoints_follow_dr7() {
        use BreakAccess::*;
        let enabled = 1 << 12;
        // DR0: I/O, 1 byte at port 0x80, locally enabled.
        let io0 = 1 | 0b10 << 16;
        let dr = [0x80, 0x1004, 0x2000, 0x3000];
        assert_eq!(breakpoints_met(io0, dr, true, Io, 0x80, 1), 1 | enabled);
        assert_eq!(breakpoints_met(io0, dr, false, Io, 0x80, 1), 0, "R/W 10 needs CR4.DE");
        assert_eq!(breakpoints_met(io0, dr, true, Io, 0x81, 1), 0);
        // A word at 0x7f covers 0x80.
        assert_eq!(breakpoints_met(io0, dr, true, Io, 0x7f, 2), 1 | enabled);
        assert_eq!(breakpoints_met(io0, dr, true, Write, 0x80, 1), 0, "an I/O breakpoint");
        assert_eq!(breakpoints_met(io0 & !1, dr, true, Io, 0x80, 1), 0, "disabled");
        // DR1: writes, 4 bytes (LEN 11) at 0x1004, globally enabled (G1, bit 3).
        let w1 = 1 << 3 | 0b01 << 20 | 0b11 << 22;
        assert_eq!(breakpoints_met(w1, dr, true, Write, 0x1007, 1), 2 | enabled);
        assert_eq!(breakpoints_met(w1, dr, true, Write, 0x1000, 4), 0);
        assert_eq!(breakpoints_met(w1, dr, true, Write, 0x1000, 8), 2 | enabled);
        assert_eq!(breakpoints_met(w1, dr, true, Read, 0x1004, 4), 0, "R/W 01: stores only");
        // DR2: reads or writes, 8 bytes (LEN 10) at 0x2000; DR3: execution, never data.
        let rw2 = 1 << 4 | 0b11 << 24 | 0b10 << 26 | 1 << 6;
        assert_eq!(breakpoints_met(rw2, dr, true, Read, 0x2007, 1), 4 | enabled);
        assert_eq!(breakpoints_met(rw2, dr, true, Read, 0x3000, 4), 0, "DR3 is R/W 00");
        // LEN 01: a word at DR0 aligned down (0x80-0x81).
        let word0 = 1 | 0b10 << 16 | 0b01 << 18;
        assert_eq!(breakpoints_met(word0, dr, true, Io, 0x81, 1), 1 | enabled);
        assert_eq!(breakpoints_met(word0, dr, true, Io, 0x82, 1), 0);
        // Two at once.
        let dr = [0x80, 0x80, 0, 0];
        let both = io0 | 1 << 2 | 0b10 << 20;
        assert_eq!(breakpoints_met(both, dr, true, Io, 0x80, 1), 3 | enabled);
    }

    /// Bit positions from the SDM written out: TF is RFLAGS bit 8, BTF is DEBUGCTL bit 1, BS
    /// is bit 14 of the pending debug exceptions.
    #[test]
    fn an_emulated_instruction_under_tf_leaves_a_single_step_trap_pending() {
        let (tf, btf, bs) = (0x100, 0x2, 0x4000);
        assert_eq!(pending_after_emulation(0x2 | tf, 0, 0), bs);
        // Bits already pending stay (a data breakpoint B0 met by the same instruction).
        assert_eq!(pending_after_emulation(0x2 | tf, 0x1, 0x1), bs | 0x1);
        // BS already pending stays set.
        assert_eq!(pending_after_emulation(0x2 | tf, 0, bs), bs);
        // No TF, or TF with BTF (only branches trap): nothing new.
        assert_eq!(pending_after_emulation(0x2, 0, 0), 0);
        assert_eq!(pending_after_emulation(0x2 | tf, btf, 0), 0);
        assert_eq!(pending_after_emulation(0x2 | tf, 0x1, 0), bs, "LBR alone is not BTF");
        assert_eq!(pending_after_emulation(!tf, 0, 0x1000), 0x1000);
    }
}
