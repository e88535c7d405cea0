//! `l1_caps` as whole MSR values, written out as numbers: for three hardware shapes, every
//! IA32_VMX_* MSR L1 reads (SDM Vol. 3D, Appendix A). The cargo-mutants survivors of
//! `l1_caps.rs` (`docs/mutants.md`, "`vmx/l1_caps.rs`") changed one bit of one MSR; the tests
//! before compared single capabilities through the same constants `l1_caps` uses.
//!
//! How each expected value is made (bit numbers from SDM Tables 25-5 to 25-15 and A.1-A.11):
//!
//! - Control MSRs (A.3-A.5): allowed-0 (bits 31:0) are the default1 bits of A.2 (pin 0x16,
//!   primary 0x0401_e172, exit 0x0003_6dff, entry 0x11ff); the TRUE MSRs drop CR3-load/store
//!   exiting (primary bits 15 and 16), save debug controls (exit bit 2) and load debug
//!   controls (entry bit 2). Allowed-1 (bits 63:32) are the hardware's allowed-1 bits that
//!   L0 merges, plus the default1 bits.
//! - Pin-based: external-interrupt exiting (0), NMI exiting (3), virtual NMIs (5),
//!   preemption timer (6); not posted interrupts (7).
//! - Primary: every bit but 0, 17, 18 (the hardware has none of them), use TPR shadow (21)
//!   included.
//! - Exit: bits 2, 9, 15, 18-22 besides default1; not bit 12 (load PERF_GLOBAL_CTRL) nor 23.
//! - Entry: bits 2, 9, 14, 15 besides default1; not 10, 11 (SMM), 13 (PERF_GLOBAL_CTRL).
//! - Secondary: bits 1-3, 5-7, 10-13, 16 and 17 of what the hardware has; not 0, 4, 8, 9
//!   (APIC virtualization), 14 (VMCS shadowing), 18 (#VE). Unrestricted guest (7), PML (17)
//!   and VM functions (13) only with EPT (1); VM functions only with VMFUNC bit 0.
//! - EPT_VPID_CAP: with EPT, the hardware's bits among 0, 6, 8, 14, 16, 17, 21, plus INVEPT
//!   with both types (20, 25, 26), emulated; with VPID, INVVPID with every type (32, 40-43),
//!   emulated.
//! - BASIC: revision 0x7475_0001, size 4096 (bits 44:32), write-back (6 in bits 53:50), the
//!   hardware's bit 54, TRUE controls (bit 55).
//! - MISC: the hardware's bits 4:0 and 5, HLT (bit 6) as the only activity state, 4 CR3
//!   targets (bits 24:16), 512 MSRs (27:25 = 0), the hardware's bit 29.
//! - VMCS_ENUM: in bits 9:1 the highest index (23, the preemption-timer value) among the
//!   fields the offered controls give the VMCS (SDM Vol. 3D, Appendix B).

use super::tests::skylake;
use super::*;

/// MSR numbers 0x480-0x491 and what L1 must read from each.
fn assert_msrs(l1: &VmxCaps, want: &[(u32, u64)]) {
    for &(m, v) in want {
        assert_eq!(l1.msr(m), Some(v), "MSR {m:#x}: {:#018x}, want {v:#018x}", l1.msr(m).unwrap());
    }
}

/// The MSRs that are the same for the three shapes below (their control MSRs are equal).
const COMMON: &[(u32, u64)] = &[
    (0x481, 0x0000_007f_0000_0016),
    (0x482, 0xfff9_fffe_0401_e172),
    (0x483, 0x007f_efff_0003_6dff),
    (0x484, 0x0000_d3ff_0000_11ff),
    (0x486, 0x8000_0021),
    (0x487, 0xffff_ffff),
    (0x488, 0x2000),
    (0x489, 0x003f_77ff),
    (0x48a, 0x2e),
    (0x48d, 0x0000_007f_0000_0016),
    (0x48e, 0xfff9_fffe_0400_6172),
    (0x48f, 0x007f_efff_0003_6dfb),
    (0x490, 0x0000_d3ff_0000_11fb),
];

#[test]
fn skylake_msrs_as_l1_reads_them() {
    let l1 = l1_caps(&skylake());
    assert_msrs(&l1, COMMON);
    assert_msrs(
        &l1,
        &[
            (0x480, 0x00d8_1000_7475_0001),
            (0x485, 0x2004_0065),
            // Secondary: 1, 2, 3, 5, 6, 7, 10, 11, 12, 13, 16, 17.
            (0x48b, 0x0003_7cef_0000_0000),
            // The hardware's 0x0f01_0633_4141 is all offered.
            (0x48c, 0x0000_0f01_0633_4141),
            (0x491, 1),
        ],
    );
}

/// VPID but no EPT control: no unrestricted guest, PML or VM functions (they need EPT) though
/// the hardware has them, no EPT capability bits, and every INVVPID type even where the
/// hardware lacks one (individual-address 40 and retaining-globals 43 removed here).
#[test]
fn vpid_without_ept() {
    let mut hw = skylake();
    hw.procbased2 &= !(1 << (32 + 1));
    hw.ept_vpid &= !(1 << 40 | 1 << 43);
    let l1 = l1_caps(&hw);
    assert_msrs(&l1, COMMON);
    assert_msrs(
        &l1,
        &[
            (0x480, 0x00d8_1000_7475_0001),
            (0x485, 0x2004_0065),
            // Secondary: 2, 3, 5, 6, 10, 11, 12, 16.
            (0x48b, 0x0001_5c6d_0000_0000),
            (0x48c, 0x0000_0f01_0000_0000),
            (0x491, 0),
        ],
    );
}

/// EPT but no VPID control, an EPT capability with gaps (no execute-only, UC, 1-GiB pages or
/// INVEPT) and extras (bit 7, advanced VM-exit information 22, INVVPID), VMFUNC offering
/// only leaf 1, no INS/OUTS information, MISC with every other bit set.
#[test]
fn ept_without_vpid_and_partial_capabilities() {
    let mut hw = skylake();
    hw.procbased2 &= !(1 << (32 + 5));
    hw.ept_vpid = 1 << 6 | 1 << 7 | 1 << 14 | 1 << 16 | 1 << 21 | 1 << 22 | 1 << 32 | 0xf << 40;
    hw.vmfunc = 0b10;
    hw.basic &= !(1 << 54);
    hw.misc = 0x1f | 7 << 6 | 0x1ff << 16 | 7 << 25 | 1 << 28;
    let l1 = l1_caps(&hw);
    assert_msrs(&l1, COMMON);
    assert_msrs(
        &l1,
        &[
            (0x480, 0x0098_1000_7475_0001),
            (0x485, 0x0004_005f),
            // Secondary: 1, 2, 3, 6, 7, 10, 11, 12, 16, 17 (no VPID, no VM functions).
            (0x48b, 0x0003_5ccf_0000_0000),
            // 6, 14, 16, 21 from the hardware; 20, 25, 26 emulated.
            (0x48c, 0x0631_4040),
            (0x491, 0),
        ],
    );
}
