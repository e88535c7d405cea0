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
