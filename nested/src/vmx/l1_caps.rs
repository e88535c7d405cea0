//! The IA32_VMX_* capability MSRs L0 exposes to L1 (SDM Vol. 3D Appendix A).
//!
//! A pure function of the hardware's [`VmxCaps`] and of what L0 emulates: L1 may set a
//! control only if the hardware has it *and* L0 knows how to merge it into vmcs02. Every
//! vmcs12 control is checked at nested VM entry against exactly these values, so L0 never
//! has to cope with a control it does not understand.
//!
//! Exposed: EPT (4-level, 2M/1G, UC/WB, execute-only and accessed/dirty flags if the
//! hardware has them, INVEPT single and all-context), VPID and INVVPID, unrestricted guest,
//! EPTP switching (emulated by L0), the preemption timer, NMI exiting and virtual NMIs, every
//! instruction-intercept control the hardware has (HLT, INVLPG, MWAIT, MONITOR, RDPMC,
//! RDTSC, PAUSE and PAUSE-loop, CR3/CR8, MOV DR, descriptor-table, WBINVD, RDRAND, RDSEED,
//! XSAVES, RDTSCP and INVPCID enables, user wait/pause), MSR and I/O bitmaps, EFER/PAT
//! load/save, page-modification logging (emulated by L0 on EPT12's dirty flags), use TPR
//! shadow (vmcs02 points the processor at L1's own virtual-APIC page, so L2's CR8 reads and
//! writes VTPR there: [`super::merge`]), VMCS shadowing (L2's VMREAD/VMWRITE that vmcs12's
//! bitmaps let through are performed by L0 on the shadow VMCS in L1 memory:
//! [`super::shadow12`]), virtualize APIC accesses (vmcs02 uses L1's own APIC-access page, so
//! L2's accesses to it are the processor's APIC accesses, exit 44 for L1). Not exposed (yet):
//! the rest of APIC virtualization (virtualize x2APIC mode, APIC-register virtualization,
//! virtual-interrupt delivery), posted interrupts, #VE, TSC scaling, SPP, PT,
//! ENCLS/ENCLV (no SGX), tertiary controls.

use crate::caps::{Allowed, VmxCaps, ept_vpid, exit, pin, proc1, proc2};
use crate::vmcs::{VMCS12_REVISION, VMCS12_SIZE};

/// Pin-based controls L0 can merge.
pub const L1_PIN: u32 =
    pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING | pin::VIRTUAL_NMIS | pin::PREEMPTION_TIMER;

/// Primary processor-based controls L0 can merge.
pub const L1_PROC1: u32 = proc1::INTERRUPT_WINDOW_EXITING
    | proc1::USE_TSC_OFFSETTING
    | proc1::HLT_EXITING
    | proc1::INVLPG_EXITING
    | proc1::MWAIT_EXITING
    | proc1::RDPMC_EXITING
    | proc1::RDTSC_EXITING
    | proc1::CR3_LOAD_EXITING
    | proc1::CR3_STORE_EXITING
    | proc1::CR8_LOAD_EXITING
    | proc1::CR8_STORE_EXITING
    | proc1::USE_TPR_SHADOW
    | proc1::NMI_WINDOW_EXITING
    | proc1::MOV_DR_EXITING
    | proc1::UNCONDITIONAL_IO_EXITING
    | proc1::USE_IO_BITMAPS
    | proc1::MONITOR_TRAP_FLAG
    | proc1::USE_MSR_BITMAPS
    | proc1::MONITOR_EXITING
    | proc1::PAUSE_EXITING
    | proc1::ACTIVATE_SECONDARY_CONTROLS;

/// Secondary processor-based controls L0 can merge.
pub const L1_PROC2: u32 = proc2::ENABLE_EPT
    | proc2::DESCRIPTOR_TABLE_EXITING
    | proc2::ENABLE_RDTSCP
    | proc2::ENABLE_VPID
    | proc2::WBINVD_EXITING
    | proc2::UNRESTRICTED_GUEST
    | proc2::PAUSE_LOOP_EXITING
    | proc2::RDRAND_EXITING
    | proc2::ENABLE_INVPCID
    | proc2::ENABLE_VM_FUNCTIONS
    | proc2::RDSEED_EXITING
    | proc2::ENABLE_XSAVES
    | proc2::ENABLE_USER_WAIT_PAUSE
    | proc2::ENABLE_PML
    | proc2::VMCS_SHADOWING
    | proc2::VIRTUALIZE_APIC_ACCESSES;

/// VM-exit controls L0 can honour when it loads L1's host state.
pub const L1_EXIT: u32 = exit::SAVE_DEBUG_CONTROLS
    | exit::HOST_ADDRESS_SPACE_SIZE
    | exit::ACK_INTERRUPT_ON_EXIT
    | exit::SAVE_IA32_PAT
    | exit::LOAD_IA32_PAT
    | exit::SAVE_IA32_EFER
    | exit::LOAD_IA32_EFER
    | exit::SAVE_PREEMPTION_TIMER;

/// VM-entry controls L0 can honour.
pub const L1_ENTRY: u32 = crate::caps::entry::LOAD_DEBUG_CONTROLS
    | crate::caps::entry::IA32E_MODE_GUEST
    | crate::caps::entry::LOAD_IA32_PAT
    | crate::caps::entry::LOAD_IA32_EFER;

/// IA32_VMX_EPT_VPID_CAP bits L0 can honour when shadowing EPT12.
pub const L1_EPT_VPID: u64 = ept_vpid::EXECUTE_ONLY
    | ept_vpid::ACCESSED_DIRTY
    | ept_vpid::PAGE_WALK_4
    | ept_vpid::MEMTYPE_UC
    | ept_vpid::MEMTYPE_WB
    | ept_vpid::PAGE_2M
    | ept_vpid::PAGE_1G
    | ept_vpid::INVEPT
    | ept_vpid::INVEPT_SINGLE_CONTEXT
    | ept_vpid::INVEPT_ALL_CONTEXT
    | ept_vpid::INVVPID
    | ept_vpid::INVVPID_INDIVIDUAL_ADDRESS
    | ept_vpid::INVVPID_SINGLE_CONTEXT
    | ept_vpid::INVVPID_ALL_CONTEXT
    | ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS;

/// Default1 bits (SDM A.2): the non-TRUE MSRs report them as must-be-1.
const PIN_DEFAULT1: u32 = 0x16;
const PROC1_DEFAULT1: u32 = 0x0401_e172;
const EXIT_DEFAULT1: u32 = 0x0003_6dff;
const ENTRY_DEFAULT1: u32 = 0x0000_11ff;
/// Default1 bits the TRUE MSRs allow to be 0 (A.3.2: CR3 load/store exiting; A.4/A.5: save
/// and load debug controls).
const PROC1_TRUE_FLEXIBLE: u32 = proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING;
const EXIT_TRUE_FLEXIBLE: u32 = exit::SAVE_DEBUG_CONTROLS;
const ENTRY_TRUE_FLEXIBLE: u32 = crate::caps::entry::LOAD_DEBUG_CONTROLS;

fn ctl(hw: Allowed, default1: u32, supported: u32, flexible: u32) -> (u64, u64) {
    let allowed1 = (hw.allowed1 & supported) | default1;
    let normal = Allowed { allowed0: default1, allowed1 };
    let true_ = Allowed { allowed0: default1 & !flexible, allowed1 };
    (normal.to_msr(), true_.to_msr())
}

/// The capability MSRs L1 reads, given the hardware's.
pub fn l1_caps(hw: &VmxCaps) -> VmxCaps {
    let (pinbased, true_pinbased) = ctl(hw.pin(), PIN_DEFAULT1, L1_PIN, 0);
    let (procbased, true_procbased) =
        ctl(hw.primary(), PROC1_DEFAULT1, L1_PROC1, PROC1_TRUE_FLEXIBLE);
    let (exit, true_exit) = ctl(hw.exit_controls(), EXIT_DEFAULT1, L1_EXIT, EXIT_TRUE_FLEXIBLE);
    let (entry, true_entry) =
        ctl(hw.entry_controls(), ENTRY_DEFAULT1, L1_ENTRY, ENTRY_TRUE_FLEXIBLE);

    let mut p2 = hw.secondary().allowed1 & L1_PROC2;
    // EPT needs the walk L0 shadows; unrestricted guest needs EPT (26.2.1.1).
    if !hw.has_ept() {
        p2 &= !(proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST);
    }
    // PML is emulated on EPT12's dirty flags ([`crate::ept::shadow::PmlLog`]): it needs EPT
    // and the A/D flags that feed it.
    if p2 & proc2::ENABLE_EPT == 0 || !hw.ept_vpid_has(ept_vpid::ACCESSED_DIRTY) {
        p2 &= !proc2::ENABLE_PML;
    }
    // Only EPTP switching is emulated, and only when L1 can have EPT.
    if !hw.has_eptp_switching() || p2 & proc2::ENABLE_EPT == 0 {
        p2 &= !proc2::ENABLE_VM_FUNCTIONS;
    }
    let procbased2 = u64::from(p2) << 32;

    let mut ept = 0;
    if p2 & proc2::ENABLE_EPT != 0 {
        ept |= hw.ept_vpid
            & L1_EPT_VPID
            & !(ept_vpid::INVVPID
                | ept_vpid::INVVPID_INDIVIDUAL_ADDRESS
                | ept_vpid::INVVPID_SINGLE_CONTEXT
                | ept_vpid::INVVPID_ALL_CONTEXT
                | ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS);
        // INVEPT is emulated entirely by L0 (it drops EPT02), so both types are offered.
        ept |= ept_vpid::INVEPT | ept_vpid::INVEPT_SINGLE_CONTEXT | ept_vpid::INVEPT_ALL_CONTEXT;
    }
    if p2 & proc2::ENABLE_VPID != 0 {
        // INVVPID is emulated on vpid02, so every type is offered.
        ept |= ept_vpid::INVVPID
            | ept_vpid::INVVPID_INDIVIDUAL_ADDRESS
            | ept_vpid::INVVPID_SINGLE_CONTEXT
            | ept_vpid::INVVPID_ALL_CONTEXT
            | ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS;
    }

    // IA32_VMX_BASIC: our revision and size, write-back, INS/OUTS info as the hardware,
    // TRUE controls always (A.1).
    let basic = u64::from(VMCS12_REVISION)
        | (VMCS12_SIZE as u64) << 32
        | 6 << 50
        | (hw.basic & (1 << 54))
        | 1 << 55;
    // IA32_VMX_MISC (A.6): the hardware's timer rate and LMA store, activity state HLT only,
    // 4 CR3 targets, 512 MSRs per list, VMWRITE-any-field as the hardware (the shadow VMCS
    // needs it to hold exit information).
    let misc = (hw.misc & 0x1f) | (hw.misc & (1 << 5)) | 1 << 6 | 4 << 16 | (hw.misc & (1 << 29));

    let mut caps = VmxCaps {
        basic,
        pinbased,
        procbased,
        exit,
        entry,
        misc,
        cr0_fixed0: hw.cr0_fixed0,
        cr0_fixed1: hw.cr0_fixed1,
        cr4_fixed0: hw.cr4_fixed0,
        cr4_fixed1: hw.cr4_fixed1,
        vmcs_enum: 0,
        procbased2,
        ept_vpid: ept,
        true_pinbased,
        true_procbased,
        true_exit,
        true_entry,
        vmfunc: if p2 & proc2::ENABLE_VM_FUNCTIONS != 0 { 1 } else { 0 },
    };
    // IA32_VMX_VMCS_ENUM (A.9): the highest index among the fields these controls give.
    caps.vmcs_enum = u64::from(caps.highest_field_index()) << 1;
    caps
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::caps::{entry, msr};
    use crate::vmcs::VmcsField;

    /// Recorded shape of Bochs `corei7_skylake_x` (what the design doc measured).
    pub(crate) fn skylake() -> VmxCaps {
        VmxCaps::read(|m| match m {
            msr::IA32_VMX_BASIC => (1 << 55) | (1 << 54) | (6 << 50) | (0x1000 << 32) | 0x1,
            msr::IA32_VMX_PINBASED_CTLS => (0x7f_u64 << 32) | 0x16,
            msr::IA32_VMX_TRUE_PINBASED_CTLS => (0x7f_u64 << 32) | 0x16,
            msr::IA32_VMX_PROCBASED_CTLS => (0xfff9_fffe_u64 << 32) | 0x0401_e172,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS => (0xfff9_fffe_u64 << 32) | 0x0400_6172,
            msr::IA32_VMX_EXIT_CTLS => (0x00ff_ffff_u64 << 32) | 0x0003_6dff,
            msr::IA32_VMX_TRUE_EXIT_CTLS => (0x00ff_ffff_u64 << 32) | 0x0003_6dfb,
            msr::IA32_VMX_ENTRY_CTLS => (0x0000_ffff_u64 << 32) | 0x11ff,
            msr::IA32_VMX_TRUE_ENTRY_CTLS => (0x0000_ffff_u64 << 32) | 0x11fb,
            msr::IA32_VMX_MISC => 0x5 | (1 << 5) | (7 << 6) | (4 << 16) | (1 << 29),
            msr::IA32_VMX_CR0_FIXED0 => 0x8000_0021,
            msr::IA32_VMX_CR0_FIXED1 => 0xffff_ffff,
            msr::IA32_VMX_CR4_FIXED0 => 0x2000,
            msr::IA32_VMX_CR4_FIXED1 => 0x003f_77ff,
            msr::IA32_VMX_VMCS_ENUM => 0x2e,
            msr::IA32_VMX_PROCBASED_CTLS2 => 0x0007_7fff_u64 << 32,
            msr::IA32_VMX_EPT_VPID_CAP => 0x0f01_0633_4141,
            msr::IA32_VMX_VMFUNC => 1,
            _ => 0,
        })
    }

    #[test]
    fn l1_gets_what_l0_can_merge() {
        let hw = skylake();
        let l1 = l1_caps(&hw);
        assert_eq!(l1.revision_id(), VMCS12_REVISION);
        assert_eq!(l1.vmcs_size(), 4096);
        assert!(l1.has_true_controls());
        assert!(l1.has_ept() && l1.has_vpid() && l1.has_unrestricted_guest());
        assert!(l1.has_vmcs_shadowing(), "L2's VMREAD/VMWRITE performed on L1's shadow VMCS");
        let mut no_shadow = hw;
        no_shadow.procbased2 &= !(u64::from(proc2::VMCS_SHADOWING) << 32);
        assert!(!l1_caps(&no_shadow).has_vmcs_shadowing(), "not without hw");
        assert!(!l1.has_posted_interrupts());
        assert!(l1.secondary().can_set(proc2::ENABLE_PML), "PML, emulated on EPT A/D");
        assert!(l1.has_eptp_switching());
        // TPR shadow and the APIC-access page, but none of the APIC virtualization that
        // needs L0 to virtualize APIC registers or deliver virtual interrupts.
        assert!(l1.primary().can_set(proc1::USE_TPR_SHADOW));
        assert!(l1.secondary().can_set(proc2::VIRTUALIZE_APIC_ACCESSES));
        for bit in [
            proc2::VIRTUALIZE_X2APIC_MODE,
            proc2::APIC_REGISTER_VIRTUALIZATION,
            proc2::VIRTUAL_INTERRUPT_DELIVERY,
        ] {
            assert!(!l1.secondary().can_set(bit), "{bit:#x}");
        }
        let mut no_tpr = hw;
        no_tpr.procbased &= !(u64::from(proc1::USE_TPR_SHADOW) << 32);
        no_tpr.true_procbased &= !(u64::from(proc1::USE_TPR_SHADOW) << 32);
        assert!(!l1_caps(&no_tpr).primary().can_set(proc1::USE_TPR_SHADOW), "not without hw");
        assert!(l1.primary().can_set(proc1::HLT_EXITING | proc1::USE_MSR_BITMAPS));
        assert!(l1.ept_vpid_has(ept_vpid::INVEPT_SINGLE_CONTEXT | ept_vpid::INVVPID_ALL_CONTEXT));
        assert!(l1.ept_vpid_has(ept_vpid::ACCESSED_DIRTY), "the recorded Skylake has EPT A/D");
        let mut no_ad = hw;
        no_ad.ept_vpid &= !ept_vpid::ACCESSED_DIRTY;
        assert!(!l1_caps(&no_ad).ept_vpid_has(ept_vpid::ACCESSED_DIRTY));
        assert!(!l1_caps(&no_ad).secondary().can_set(proc2::ENABLE_PML), "PML needs A/D");
        assert_eq!(l1.cr3_target_count(), 4);
        // VMCS_ENUM: the highest index among the fields L1's VMCS has. The preemption-timer
        // value (0x482e, index 0x17) is the highest: the fields above it (the ENCLS and
        // ENCLV bitmaps, SPP, TSC multiplier, tertiary controls) belong to controls not
        // offered.
        assert_eq!(l1.max_vmcs_index(), 0x17);
        assert_eq!(l1.max_vmcs_index(), l1.highest_field_index());
        assert!(l1.max_vmcs_index() < VmcsField::max_index());
        for (field, offered) in [
            (VmcsField::VmxPreemptionTimerValue, true),
            (VmcsField::VmreadBitmap, true),
            (VmcsField::EptpListAddress, true),
            (VmcsField::GuestPmlIndex, true),
            (VmcsField::ApicAccessAddr, true),
            (VmcsField::TprThreshold, true),
            (VmcsField::GuestPdpte3, true),
            (VmcsField::GuestIa32Efer, true),
            (VmcsField::GuestSmbase, true),
            (VmcsField::PostedInterruptDescAddr, false),
            (VmcsField::PostedInterruptNotificationVector, false),
            (VmcsField::GuestInterruptStatus, false),
            (VmcsField::EoiExitBitmap2, false),
            (VmcsField::EptpIndex, false),
            (VmcsField::VeInformationAddress, false),
            (VmcsField::TscMultiplier, false),
            (VmcsField::TertiaryProcBasedControls, false),
            (VmcsField::EnclvExitingBitmap, false),
            (VmcsField::GuestSCet, false),
            (VmcsField::HostIa32Pkrs, false),
            (VmcsField::GuestIa32Bndcfgs, false),
        ] {
            assert_eq!(l1.has_field(field), offered, "{}", field.name());
        }
        // The hardware's own VMCS has what its controls give: virtual-interrupt delivery on
        // the recorded Skylake, but no posted interrupts.
        assert!(hw.has_field(VmcsField::GuestInterruptStatus));
        assert!(!hw.has_field(VmcsField::PostedInterruptDescAddr));
        assert!(!no_shadow_caps_have_bitmaps(&hw));
        // TRUE MSRs relax exactly the flexible default1 bits.
        assert!(l1.primary().verify(PROC1_DEFAULT1 & !PROC1_TRUE_FLEXIBLE));
        assert!(!Allowed::from_msr(l1.procbased).verify(PROC1_DEFAULT1 & !PROC1_TRUE_FLEXIBLE));
        assert!(l1.entry_controls().can_set(entry::IA32E_MODE_GUEST | entry::LOAD_IA32_EFER));
        // Every L1 capability is a hardware capability.
        assert_eq!(l1.pin().allowed1 & !hw.pin().allowed1, 0);
        assert_eq!(l1.primary().allowed1 & !hw.primary().allowed1, 0);
        assert_eq!(l1.secondary().allowed1 & !hw.secondary().allowed1, 0);
        assert_eq!(l1.exit_controls().allowed1 & !hw.exit_controls().allowed1, 0);
        assert_eq!(l1.entry_controls().allowed1 & !hw.entry_controls().allowed1, 0);
    }

    /// The VMREAD/VMWRITE bitmap fields of L1's VMCS when the hardware has no shadowing.
    fn no_shadow_caps_have_bitmaps(hw: &VmxCaps) -> bool {
        let mut no_shadow = *hw;
        no_shadow.procbased2 &= !(u64::from(proc2::VMCS_SHADOWING) << 32);
        l1_caps(&no_shadow).has_field(VmcsField::VmwriteBitmap)
    }

    #[test]
    fn no_ept_no_unrestricted_guest_no_vmfunc() {
        let mut hw = skylake();
        hw.ept_vpid = 0;
        let l1 = l1_caps(&hw);
        assert!(!l1.secondary().can_set(proc2::ENABLE_EPT));
        assert!(!l1.secondary().can_set(proc2::UNRESTRICTED_GUEST));
        assert!(!l1.secondary().can_set(proc2::ENABLE_VM_FUNCTIONS));
        assert_eq!(l1.vmfunc, 0);
        // Nor their fields.
        for f in [
            VmcsField::EptPointer,
            VmcsField::GuestPhysicalAddress,
            VmcsField::GuestPdpte0,
            VmcsField::VmFunctionControl,
            VmcsField::EptpListAddress,
            VmcsField::GuestPmlIndex,
        ] {
            assert!(!l1.has_field(f), "{}", f.name());
        }
    }

    #[test]
    fn msr_lookup() {
        let l1 = l1_caps(&skylake());
        assert_eq!(l1.msr(msr::IA32_VMX_BASIC), Some(l1.basic));
        assert_eq!(l1.msr(msr::IA32_VMX_TRUE_ENTRY_CTLS), Some(l1.true_entry));
        assert_eq!(l1.msr(0x10), None);
    }
}

#[cfg(test)]
#[path = "l1_caps_sdm_tests.rs"]
mod sdm_tests;
