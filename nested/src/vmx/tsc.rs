//! The time-stamp counter as a level in VMX non-root operation reads it (SDM Vol. 3C 25.3
//! "RDTSC", "RDTSCP" and "RDMSR" under "use TSC offsetting"; 25.6.5; 26.x): RDTSC, RDTSCP
//! and RDMSR of IA32_TSC return the TSC plus the VMCS's TSC offset when its primary
//! processor-based controls have "use TSC offsetting", else the TSC itself. TSC scaling is
//! not offered to L1, so the offset is all there is.
//!
//! The IA32_TSC a VM exit stores in the VM-exit MSR-store list is the MSR itself, not a
//! guest's view: vmcs12's offset does not apply there (SDM 27.4). On L1's processor the MSR
//! is the hardware TSC plus L1's own offset (L0's, for L1's writes of IA32_TSC), which
//! [`vmcs02_offset`] puts under vmcs12's.

use crate::caps::proc1;
use crate::vmcs::{Vmcs, Vmcs12, VmcsField as F};

/// vmcs02's TSC offset: L1's own (`l1_offset`, what L0 adds for L1's writes of IA32_TSC: L1's
/// TSC is the processor's plus it) plus vmcs12's when vmcs12 uses TSC offsetting, so that L2
/// reads what it would read on L1's processor.
#[inline]
pub fn vmcs02_offset(v12: &Vmcs12, l1_offset: u64) -> u64 {
    if v12.cpu_based_vm_exec_control & proc1::USE_TSC_OFFSETTING != 0 {
        l1_offset.wrapping_add(v12.tsc_offset)
    } else {
        l1_offset
    }
}

/// What RDTSC, RDTSCP or RDMSR of IA32_TSC returns to the guest of `v` when the TSC is
/// `tsc`. The offset field is read only when offsetting is on.
#[inline]
pub fn guest_tsc(v: &impl Vmcs, tsc: u64) -> u64 {
    if v.read(F::CpuBasedVmExecControl) as u32 & proc1::USE_TSC_OFFSETTING != 0 {
        tsc.wrapping_add(v.read(F::TscOffset))
    } else {
        tsc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcs::{FakeVmcs, Op};

    fn vmcs(primary: u32, offset: u64) -> FakeVmcs {
        let mut v = FakeVmcs::default();
        v.write(F::CpuBasedVmExecControl, primary.into());
        v.write(F::TscOffset, offset);
        v
    }

    #[test]
    fn vmcs02_adds_vmcs12s_offset_to_l1s_when_offsetting() {
        let mut v12 = Vmcs12::zeroed(0);
        v12.tsc_offset = 5;
        assert_eq!(vmcs02_offset(&v12, 1 << 32), 1 << 32, "vmcs12 offset without the control");
        v12.cpu_based_vm_exec_control = proc1::USE_TSC_OFFSETTING | proc1::HLT_EXITING;
        assert_eq!(vmcs02_offset(&v12, 1 << 32), (1 << 32) + 5);
        v12.tsc_offset = 10u64.wrapping_neg();
        assert_eq!(vmcs02_offset(&v12, 4), 6u64.wrapping_neg(), "wraps as the processor adds");
    }

    #[test]
    fn without_offsetting_the_tsc_itself() {
        // An offset in the field counts only with the control set.
        assert_eq!(guest_tsc(&vmcs(proc1::HLT_EXITING, 1 << 32), 1234), 1234);
        assert_eq!(guest_tsc(&vmcs(0, 0), u64::MAX), u64::MAX);
        // One VMREAD: the offset is not read when it does not count.
        let v = vmcs(0, 5);
        v.clear_log();
        guest_tsc(&v, 1);
        assert_eq!(v.log(), [Op::Read(F::CpuBasedVmExecControl)]);
    }

    #[test]
    fn with_offsetting_the_tsc_plus_the_offset() {
        let v = vmcs(proc1::USE_TSC_OFFSETTING, 1 << 32);
        assert_eq!(guest_tsc(&v, 0x1234), (1 << 32) + 0x1234);
        // A negative offset (two's complement) and wrap-around, as the processor adds.
        let v = vmcs(proc1::USE_TSC_OFFSETTING | proc1::HLT_EXITING, 100u64.wrapping_neg());
        assert_eq!(guest_tsc(&v, 150), 50);
        assert_eq!(guest_tsc(&v, 10), 10u64.wrapping_sub(100));
    }

    proptest::proptest! {
        #[test]
        fn offset_added_iff_control_set(primary: u32, offset: u64, tsc: u64) {
            let want = if primary & proc1::USE_TSC_OFFSETTING != 0 {
                tsc.wrapping_add(offset)
            } else {
                tsc
            };
            proptest::prop_assert_eq!(guest_tsc(&vmcs(primary, offset), tsc), want);
        }
    }
}
