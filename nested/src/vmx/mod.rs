//! Emulation of L1's VMX operation (SDM Vol. 3C ch. 24-26, 31; Vol. 2 VMX instruction
//! reference): the instructions, their outcomes, the capability MSRs L1 sees and the checks
//! a nested VM entry performs.

pub mod bitmaps;
pub mod checks;
pub mod for_l1;
mod instr;
mod inv;
#[cfg(test)]
mod kvm_loader_tests;
pub mod l1_caps;
mod launch;
pub mod merge;
pub mod msr_lists;
pub mod operand;
pub mod shadow12;
pub mod sync;
pub mod tsc;

pub use instr::{
    EntryChecked, Flush, L1Access, L1Cpu, NestedVmx, Parked, SHADOW_VMCS_INDICATOR, VmfuncOutcome,
};
pub use l1_caps::l1_caps;
pub use operand::{InstrInfo, MemOperand, Operand, Segment, SegmentCache};

use checks::EntryFailure;

use crate::arch::rflags;
use crate::vmcs::{DirtySet, VmcsField as F};

/// The fields besides [`sync::GUEST_RARE`] that the guest-state checks of rare fields
/// combine them with (segment rules depend on unrestricted guest, IA-32e mode, CR0.PE,
/// RFLAGS.VM, CS/SS access rights and the other segment bases; PDPTEs on EPT, CR0.PG and
/// CR4.PAE). While the rare fields are stale, a VM entry after L1 changed one of these
/// syncs them and runs every check ([`NestedVmx::needs_rare_sync`]).
pub const RARE_CHECK_INPUTS: DirtySet = DirtySet::of(&[
    F::PinBasedVmExecControl,
    F::CpuBasedVmExecControl,
    F::SecondaryVmExecControl,
    F::VmEntryControls,
    F::GuestCr0,
    F::GuestCr3,
    F::GuestCr4,
    F::GuestRflags,
    F::GuestCsArBytes,
    F::GuestSsArBytes,
    F::GuestEsBase,
    F::GuestCsBase,
    F::GuestSsBase,
    F::GuestDsBase,
]);

/// VM-instruction error numbers (SDM Vol. 3C 31.4, Table 31-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum VmInstructionError {
    VmcallInVmxRoot = 1,
    VmclearInvalidAddress = 2,
    VmclearVmxonPointer = 3,
    VmlaunchNonClearVmcs = 4,
    VmresumeNonLaunchedVmcs = 5,
    VmresumeAfterVmxoff = 6,
    EntryInvalidControlFields = 7,
    EntryInvalidHostStateFields = 8,
    VmptrldInvalidAddress = 9,
    VmptrldVmxonPointer = 10,
    VmptrldIncorrectRevision = 11,
    UnsupportedVmcsComponent = 12,
    VmwriteReadOnlyComponent = 13,
    VmxonInVmxRoot = 15,
    EntryInvalidExecutiveVmcsPointer = 16,
    EntryNonLaunchedExecutiveVmcs = 17,
    EntryExecutiveVmcsPointerNotVmxon = 18,
    VmcallNonClearVmcs = 19,
    VmcallInvalidExitControls = 20,
    VmcallIncorrectMsegRevision = 22,
    VmxoffUnderDualMonitor = 23,
    VmcallInvalidSmmMonitorFeatures = 24,
    EntryInvalidExecutiveControls = 25,
    EntryEventsBlockedByMovSs = 26,
    InvalidInveptInvvpidOperand = 28,
}

impl VmInstructionError {
    /// The number stored in the VM-instruction error field.
    pub const fn number(self) -> u32 {
        self as u32
    }
}

/// An exception the emulated instruction raises in L1 (the image injects it into L1 and does
/// not advance RIP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// For #PF: the faulting linear address, which the image loads into L1's CR2 before
    /// injecting (SDM Vol. 3A 6.15 "Interrupt 14"). VM entry does not load CR2.
    pub cr2: Option<u64>,
}

impl Exception {
    /// #UD.
    pub const UD: Exception = Exception { vector: 6, error_code: None, cr2: None };
    /// #GP(0).
    pub const GP0: Exception = Exception { vector: 13, error_code: Some(0), cr2: None };
    /// #SS(0).
    pub const SS0: Exception = Exception { vector: 12, error_code: Some(0), cr2: None };

    /// #PF at `linear` with `error_code` (SDM Vol. 3A 4.7).
    pub const fn page_fault(linear: u64, error_code: u32) -> Exception {
        Exception { vector: 14, error_code: Some(error_code), cr2: Some(linear) }
    }

    /// #GP(0), or #SS(0) when the segment is SS (a limit, canonical or type violation of a
    /// memory operand; SDM Vol. 3A 6.15 "Interrupt 12", Vol. 1 3.4.2).
    pub const fn segment_fault(segment: Segment) -> Exception {
        if matches!(segment, Segment::Ss) { Exception::SS0 } else { Exception::GP0 }
    }
}

/// Outcome of one emulated VMX instruction (SDM 31.2 conventions, Linux
/// `nested_vmx_succeed`/`failValid`/`failInvalid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxResult {
    /// VMsucceed: clear CF, PF, AF, ZF, SF, OF; advance RIP.
    Succeed,
    /// VMfailValid(error): set ZF, clear the others; the error number has been stored in the
    /// current vmcs12's VM-instruction error field (with VMCS shadowing, L0 copies it to the
    /// shadow VMCS too); advance RIP.
    FailValid(VmInstructionError),
    /// VMfailInvalid: set CF, clear the others; advance RIP.
    FailInvalid,
    /// Inject this exception into L1; do not advance RIP.
    Fault(Exception),
    /// VMLAUNCH/VMRESUME passed every check: merge vmcs12 into vmcs02 and run L2.
    /// (RFLAGS/RIP of L1 are not touched: L1 next runs at vmcs12's host RIP.)
    EnterL2 {
        /// True for VMLAUNCH (the launch state is now "launched").
        launch: bool,
    },
    /// The entry failed a guest-state or MSR-loading check (SDM 26.8): vmcs12's exit reason
    /// and qualification have been written; load L1's host state from vmcs12 and resume L1.
    EntryFailed(EntryFailure),
}

impl VmxResult {
    /// L1's RFLAGS after this outcome (SDM 31.2: VMsucceed, VMfailInvalid, VMfailValid);
    /// unchanged for faults and VM entries.
    pub const fn apply_rflags(&self, value: u64) -> u64 {
        match self {
            VmxResult::Succeed => value & !rflags::ARITH,
            VmxResult::FailInvalid => (value & !rflags::ARITH) | rflags::CF,
            VmxResult::FailValid(_) => (value & !rflags::ARITH) | rflags::ZF,
            VmxResult::Fault(_) | VmxResult::EnterL2 { .. } | VmxResult::EntryFailed(_) => value,
        }
    }

    /// True if L1's RIP advances past the instruction.
    pub const fn advances_rip(&self) -> bool {
        matches!(self, VmxResult::Succeed | VmxResult::FailValid(_) | VmxResult::FailInvalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rflags_conventions() {
        let f = rflags::ARITH | rflags::IF | 2;
        assert_eq!(VmxResult::Succeed.apply_rflags(f), rflags::IF | 2);
        assert_eq!(VmxResult::FailInvalid.apply_rflags(f), rflags::IF | 2 | rflags::CF);
        let fv = VmxResult::FailValid(VmInstructionError::UnsupportedVmcsComponent);
        assert_eq!(fv.apply_rflags(2), 2 | rflags::ZF);
        assert_eq!(VmxResult::Fault(Exception::UD).apply_rflags(f), f);
        assert!(fv.advances_rip());
        assert!(!VmxResult::EnterL2 { launch: true }.advances_rip());
        assert_eq!(VmInstructionError::InvalidInveptInvvpidOperand.number(), 28);
    }
}

/// SDM 31.2 with the flags as numbers (CF bit 0, PF 2, AF 4, ZF 6, SF 7, OF 11: 0x8d5), for
/// the cargo-mutants survivors of `arch::rflags::ARITH` (`docs/mutants.md`, "`arch.rs`"):
/// `rflags_conventions` builds its input from `ARITH` itself, so a flag missing from it
/// went unseen.
#[cfg(test)]
mod sdm_tests {
    use super::*;

    #[test]
    fn vmx_outcomes_rewrite_exactly_the_six_arithmetic_flags() {
        // Bits 21:0 all set (reserved bits too: the outcome leaves every other bit alone).
        let all = 0x3f_ffff;
        assert_eq!(VmxResult::Succeed.apply_rflags(all), 0x3f_f72a);
        assert_eq!(VmxResult::FailInvalid.apply_rflags(all), 0x3f_f72b);
        let fv = VmxResult::FailValid(VmInstructionError::VmwriteReadOnlyComponent);
        assert_eq!(fv.apply_rflags(all), 0x3f_f76a);
        assert_eq!(VmxResult::FailInvalid.apply_rflags(0x2), 0x3);
        assert_eq!(fv.apply_rflags(0x2), 0x42);
        assert_eq!(VmxResult::EnterL2 { launch: false }.apply_rflags(all), all);
    }
}
