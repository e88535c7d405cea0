//! vmcs02 from vmcs01 + vmcs12, and vmcs12 back from vmcs02 (Turtles §3.2; SDM Vol. 3C
//! 26.3.2 guest-state loading, 27.3 guest-state saving, 27.5 host-state loading).
//!
//! * [`prepare_vmcs02`]: before entering L2. Guest state from vmcs12, controls = L0's
//!   must-haves OR'd with L1's requests (adjusted to the hardware), bitmaps and EPT/VPID from
//!   L0. Only fields in the dirty set are written (the paper's "copy only what changed").
//!
//! The way back (vmcs12 sync, L1 host state) is in [`super::sync`], bitmap merging in
//! [`super::bitmaps`]. None of these allocate; all are generic over [`Vmcs`].

use crate::addr::Hpa;
use crate::arch::{cr0, efer};
use crate::caps::{VmxCaps, entry, exit, pin, proc1, proc2};
use crate::exits::routing::secondary_controls;
use crate::vmcs::{DirtySet, Vmcs, Vmcs12, VmcsField as F};
const PF_BIT: u32 = 1 << 14;

/// What L0 requires in every vmcs02, whatever L1 asks (its own exiting needs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L0Config {
    /// The hardware's capabilities (vmcs02 controls are adjusted to these).
    pub hw: VmxCaps,
    pub pin: u32,
    pub proc1: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    pub exception_bitmap: u32,
    /// CR0/CR4 bits L0 owns for its own reasons (the hardware's fixed bits are added).
    pub cr0_mask: u64,
    pub cr4_mask: u64,
}

/// L1's state that L2 inherits when vmcs12 does not load its own (a snapshot of vmcs01's
/// guest state taken before vmcs02 became current).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L1State {
    pub efer: u64,
    pub pat: u64,
    pub dr7: u64,
    pub debugctl: u64,
    /// L0's TSC offset for L1 (vmcs01).
    pub tsc_offset: u64,
}

/// Per-entry values L0 computed for vmcs02. [`prepare_vmcs02`] only looks at them when a
/// related vmcs12 field is dirty, so when one changes L0 marks that field: `EptPointer` for
/// `eptp02`, `VirtualProcessorId` for `vpid02`, `MsrBitmap`/`IoBitmapA` for the bitmaps,
/// `TscOffset` for `l1.tsc_offset`, `VmEntryControls` for L1's EFER/PAT/debug state,
/// `VirtualApicPageAddr` for `virtual_apic`, `ApicAccessAddr` for `apic_access`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Vmcs02Inputs {
    /// EPTP of the EPT02 (shadow of EPT12) or of EPT01 when L1 does not use EPT.
    pub eptp02: u64,
    /// VPID for L2 (from [`crate::ept::shadow::VpidMap`] when L1 uses VPID).
    pub vpid02: u16,
    /// Host address of the merged MSR bitmap, `None` to exit on every MSR access.
    pub msr_bitmap: Option<Hpa>,
    /// Host addresses of the merged I/O bitmaps, `None` to exit on every I/O access.
    pub io_bitmaps: Option<(Hpa, Hpa)>,
    /// Host address of vmcs12's virtual-APIC page (L1's own page, so VTPR is shared with
    /// L1 as on hardware) when vmcs12 uses a TPR shadow; `None` without one.
    pub virtual_apic: Option<Hpa>,
    /// Host address of vmcs12's APIC-access page (L1's own page, so that L2's accesses to
    /// it through EPT02 are the processor's APIC accesses: exits 44 for L1, VTPR reads and
    /// writes virtualized) when vmcs12 virtualizes APIC accesses; `None` without.
    pub apic_access: Option<Hpa>,
    pub l1: L1State,
}

/// Whether [`prepare_vmcs02`] reads [`Vmcs02Inputs::l1`] for this dirty set: only when it
/// writes L2's EFER, PAT and debug state. Otherwise the caller may pass a default
/// [`L1State`] and save reading vmcs01.
#[inline]
pub fn reads_l1_state(dirty: &DirtySet) -> bool {
    dirty.intersects(&EFER_PAT_DEBUG_FIELDS)
}

/// Guest-state fields copied from vmcs12 to vmcs02 unchanged (and back on exit).
pub const GUEST_PLAIN: &[F] = &[
    F::GuestEsSelector,
    F::GuestCsSelector,
    F::GuestSsSelector,
    F::GuestDsSelector,
    F::GuestFsSelector,
    F::GuestGsSelector,
    F::GuestLdtrSelector,
    F::GuestTrSelector,
    F::GuestEsLimit,
    F::GuestCsLimit,
    F::GuestSsLimit,
    F::GuestDsLimit,
    F::GuestFsLimit,
    F::GuestGsLimit,
    F::GuestLdtrLimit,
    F::GuestTrLimit,
    F::GuestGdtrLimit,
    F::GuestIdtrLimit,
    F::GuestEsArBytes,
    F::GuestCsArBytes,
    F::GuestSsArBytes,
    F::GuestDsArBytes,
    F::GuestFsArBytes,
    F::GuestGsArBytes,
    F::GuestLdtrArBytes,
    F::GuestTrArBytes,
    F::GuestEsBase,
    F::GuestCsBase,
    F::GuestSsBase,
    F::GuestDsBase,
    F::GuestFsBase,
    F::GuestGsBase,
    F::GuestLdtrBase,
    F::GuestTrBase,
    F::GuestGdtrBase,
    F::GuestIdtrBase,
    F::GuestInterruptibilityInfo,
    F::GuestActivityState,
    F::GuestSysenterCs,
    F::GuestSysenterEsp,
    F::GuestSysenterEip,
    F::GuestCr3,
    F::GuestRsp,
    F::GuestRip,
    F::GuestRflags,
    F::GuestPendingDebugExceptions,
    F::GuestPdpte0,
    F::GuestPdpte1,
    F::GuestPdpte2,
    F::GuestPdpte3,
];

/// [`GUEST_PLAIN`] as a set.
const GUEST_PLAIN_SET: DirtySet = DirtySet::of(GUEST_PLAIN);

crate::vmcs::field_list!(
    /// The guest fields an L2 exit changes often (synced on every reflected exit in
    /// [`SyncScope::Hot`](super::sync::SyncScope::Hot)), and every guest field of
    /// [`GUEST_PLAIN`] that L1 reads through the shadow VMCS without an exit; the rest,
    /// [`GUEST_RARE`](super::sync::GUEST_RARE), changes rarely and is synced on demand.
    pub GUEST_HOT, for_each_guest_hot: [
        GuestRip,
        GuestRsp,
        GuestRflags,
        GuestCr3,
        GuestInterruptibilityInfo,
        GuestActivityState,
        GuestPendingDebugExceptions,
        GuestCsArBytes,
        GuestSsArBytes,
        GuestEsBase,
        GuestCsBase,
        GuestSsBase,
        GuestDsBase,
    ]
);

/// vmcs12 fields whose change requires recomputing the merged controls.
const CONTROL_FIELDS: DirtySet = DirtySet::of(&[
    F::PinBasedVmExecControl,
    F::CpuBasedVmExecControl,
    F::SecondaryVmExecControl,
    F::VmExitControls,
    F::VmEntryControls,
    F::ExceptionBitmap,
    F::PageFaultErrorCodeMask,
    F::PageFaultErrorCodeMatch,
    F::Cr3TargetCount,
    F::Cr3TargetValue0,
    F::Cr3TargetValue1,
    F::Cr3TargetValue2,
    F::Cr3TargetValue3,
    F::TscOffset,
    F::MsrBitmap,
    F::IoBitmapA,
    F::IoBitmapB,
    F::EptPointer,
    F::VirtualProcessorId,
    F::VmFunctionControl,
    F::VirtualApicPageAddr,
    F::TprThreshold,
    F::ApicAccessAddr,
    F::XssExitingBitmap,
    F::PleGap,
    F::PleWindow,
    F::VmxPreemptionTimerValue,
]);
const CR0_FIELDS: DirtySet = DirtySet::of(&[
    F::GuestCr0,
    F::Cr0GuestHostMask,
    F::Cr0ReadShadow,
    F::CpuBasedVmExecControl,
    F::SecondaryVmExecControl,
]);
const CR4_FIELDS: DirtySet = DirtySet::of(&[F::GuestCr4, F::Cr4GuestHostMask, F::Cr4ReadShadow]);
const EFER_PAT_DEBUG_FIELDS: DirtySet = DirtySet::of(&[
    F::GuestIa32Efer,
    F::GuestIa32Pat,
    F::GuestIa32Debugctl,
    F::GuestDr7,
    F::GuestCr0,
    F::VmEntryControls,
]);
const EVENT_FIELDS: DirtySet = DirtySet::of(&[
    F::VmEntryInterruptionInfo,
    F::VmEntryExceptionErrorCode,
    F::VmEntryInstructionLen,
]);

/// Pin-based controls L1's value contributes to vmcs02.
const PASS_PIN: u32 = pin::NMI_EXITING | pin::VIRTUAL_NMIS;
/// Primary controls L1's value contributes (the bitmap controls are L0's, merged).
const PASS_PROC1: u32 = proc1::INTERRUPT_WINDOW_EXITING
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
    | proc1::NMI_WINDOW_EXITING
    | proc1::MOV_DR_EXITING
    | proc1::MONITOR_TRAP_FLAG
    | proc1::MONITOR_EXITING
    | proc1::PAUSE_EXITING;
/// Secondary controls L1's value contributes (EPT and VPID are L0's: EPT02 and vpid02).
const PASS_PROC2: u32 = proc2::DESCRIPTOR_TABLE_EXITING
    | proc2::ENABLE_RDTSCP
    | proc2::WBINVD_EXITING
    | proc2::UNRESTRICTED_GUEST
    | proc2::PAUSE_LOOP_EXITING
    | proc2::RDRAND_EXITING
    | proc2::ENABLE_INVPCID
    | proc2::RDSEED_EXITING
    | proc2::ENABLE_XSAVES
    | proc2::ENABLE_USER_WAIT_PAUSE;

/// The merged control values of a vmcs02 (pure; [`prepare_vmcs02`] writes them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Controls02 {
    pub pin: u32,
    pub proc1: u32,
    pub proc2: u32,
    pub exit: u32,
    pub entry: u32,
    pub exception_bitmap: u32,
    pub pf_mask: u32,
    pub pf_match: u32,
    pub cr0_mask: u64,
    pub cr4_mask: u64,
}

impl Controls02 {
    /// L0's must-haves OR'd with what L1 asked for, adjusted to the hardware.
    pub fn merge(v12: &Vmcs12, l0: &L0Config, inputs: &Vmcs02Inputs) -> Self {
        let hw = &l0.hw;
        let l1_timer = v12.pin_based_vm_exec_control & pin::PREEMPTION_TIMER != 0
            && l0.pin & pin::PREEMPTION_TIMER == 0;
        let mut pin = l0.pin | (v12.pin_based_vm_exec_control & PASS_PIN);
        if l1_timer {
            pin |= pin::PREEMPTION_TIMER;
        }
        let p12 = secondary_controls(v12);
        let mut proc1 = l0.proc1
            | (v12.cpu_based_vm_exec_control & PASS_PROC1)
            | proc1::ACTIVATE_SECONDARY_CONTROLS;
        proc1 &= !(proc1::USE_MSR_BITMAPS | proc1::USE_IO_BITMAPS);
        if inputs.msr_bitmap.is_some() {
            proc1 |= proc1::USE_MSR_BITMAPS;
        }
        match inputs.io_bitmaps {
            Some(_) => proc1 = (proc1 | proc1::USE_IO_BITMAPS) & !proc1::UNCONDITIONAL_IO_EXITING,
            None => proc1 |= proc1::UNCONDITIONAL_IO_EXITING,
        }
        if inputs.virtual_apic.is_some()
            && v12.cpu_based_vm_exec_control & proc1::USE_TPR_SHADOW != 0
        {
            proc1 = tpr_shadow_proc1(proc1, v12.cpu_based_vm_exec_control);
        }
        let mut proc2 = l0.proc2 | (p12 & PASS_PROC2);
        if p12 & proc2::ENABLE_VM_FUNCTIONS != 0 {
            // VM-function controls stay 0 in vmcs02, so every VMFUNC exits to L0.
            proc2 |= proc2::ENABLE_VM_FUNCTIONS;
        }
        if p12 & proc2::VIRTUALIZE_APIC_ACCESSES != 0 && inputs.apic_access.is_some() {
            // On L1's page: the processor makes L2's accesses to it APIC accesses (29.4).
            proc2 |= proc2::VIRTUALIZE_APIC_ACCESSES;
        }
        let mut exit = l0.exit;
        if l1_timer && hw.exit_controls().can_set(exit::SAVE_PREEMPTION_TIMER) {
            // L1's timer keeps counting across exits L0 handles alone (L0 restarts it with
            // vmcs12's value at L1's own VM entries); vmcs12 gets the saved value only if L1
            // asked for it (`sync`).
            exit |= exit::SAVE_PREEMPTION_TIMER;
        } else if l1_timer {
            exit |= v12.vm_exit_controls & exit::SAVE_PREEMPTION_TIMER;
        }
        // L0 always loads L2's EFER, PAT and debug state (its own or L1's, see prepare).
        let entry = (l0.entry & !entry::IA32E_MODE_GUEST)
            | (v12.vm_entry_controls & entry::IA32E_MODE_GUEST)
            | entry::LOAD_IA32_EFER
            | entry::LOAD_IA32_PAT
            | entry::LOAD_DEBUG_CONTROLS;
        let pin = hw.pin().adjust(pin);
        let proc1 = hw.primary().adjust(proc1);
        let proc2 = hw.secondary().adjust(proc2);
        let ug = proc2 & proc2::UNRESTRICTED_GUEST != 0;

        let exception_bitmap = l0.exception_bitmap | v12.exception_bitmap;
        let (pf_mask, pf_match) = if l0.exception_bitmap & PF_BIT != 0 {
            (0, 0) // L0 needs every #PF.
        } else {
            (v12.page_fault_error_code_mask, v12.page_fault_error_code_match)
        };
        let mut cr0_forced = hw.cr0_fixed0 | !hw.cr0_fixed1;
        if ug {
            cr0_forced &= !(cr0::PE | cr0::PG);
        }
        let cr4_forced = hw.cr4_fixed0 | !hw.cr4_fixed1;
        Controls02 {
            pin,
            proc1,
            proc2,
            exit: hw.exit_controls().adjust(exit),
            entry: hw.entry_controls().adjust(entry),
            exception_bitmap,
            pf_mask,
            pf_match,
            cr0_mask: (l0.cr0_mask | cr0_forced | v12.cr0_guest_host_mask) & 0xffff_ffff,
            cr4_mask: (l0.cr4_mask | cr4_forced | v12.cr4_guest_host_mask) & 0xffff_ffff,
        }
    }

    fn cr0_fixed(&self, hw: &VmxCaps) -> crate::caps::FixedBits {
        let mut f = hw.cr0_fixed();
        if self.proc2 & proc2::UNRESTRICTED_GUEST != 0 {
            f.fixed0 &= !(cr0::PE | cr0::PG);
        }
        f
    }
}

/// vmcs02's primary controls when vmcs12 (primary controls `p12`) uses a TPR shadow and its
/// virtual-APIC page is L1 RAM (SDM 29.3): the processor virtualizes L2's CR8 on VTPR in
/// that page, so L0's own CR8-load and CR8-store exiting (which otherwise perform L2's CR8
/// on L1's local APIC model, as for a processor without TPR shadow) are dropped; vmcs12's
/// own CR8 exiting stays, and takes precedence over the shadow, as on hardware (the exit
/// then goes to L1). Without a page (`Vmcs02Inputs::virtual_apic` is `None`) vmcs02 has
/// no TPR shadow and L0's CR8 exiting stays.
const fn tpr_shadow_proc1(proc1: u32, p12: u32) -> u32 {
    const CR8: u32 = proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING;
    (proc1 & !CR8) | (p12 & CR8) | proc1::USE_TPR_SHADOW
}

/// The CR0/CR4 value L2 believes it has (SDM 26.3.2.1 with the read shadow: bits L1 owns read
/// from vmcs12's shadow, the rest from vmcs12's guest value). This is vmcs02's read shadow.
pub const fn l2_view(guest: u64, mask12: u64, shadow12: u64) -> u64 {
    (guest & !mask12) | (shadow12 & mask12)
}

/// EFER for L2 when vmcs12 does not load it (SDM 26.3.2.1: LMA and, with paging, LME follow
/// "IA-32e mode guest").
fn l2_efer(v12: &Vmcs12, l1: &L1State) -> u64 {
    if v12.vm_entry_controls & entry::LOAD_IA32_EFER != 0 {
        return v12.guest_ia32_efer;
    }
    let ia32e = v12.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    let mut e = l1.efer & !(efer::LMA | efer::LME);
    if ia32e {
        e |= efer::LMA | efer::LME;
    } else if v12.guest_cr0 & cr0::PG == 0 {
        e |= l1.efer & efer::LME;
    }
    e
}

/// Writes vmcs02 from vmcs12 for the fields in `dirty` (all of them the first time: pass
/// [`DirtySet::all`]). vmcs02's host state is L0's and is written once by the image.
/// The caller clears `dirty` afterwards.
pub fn prepare_vmcs02<V: Vmcs>(
    vmcs02: &mut V,
    v12: &Vmcs12,
    dirty: &DirtySet,
    l0: &L0Config,
    inputs: &Vmcs02Inputs,
) {
    dirty.intersection(&GUEST_PLAIN_SET).for_each(|f| vmcs02.write(f, v12.get(f)));
    let controls_dirty = dirty.intersects(&CONTROL_FIELDS);
    let cr0_dirty = dirty.intersects(&CR0_FIELDS) || controls_dirty;
    let cr4_dirty = dirty.intersects(&CR4_FIELDS) || controls_dirty;
    if !(controls_dirty || cr0_dirty || cr4_dirty) {
        // The common VMRESUME: only guest fields changed; skip the control merge.
        write_efer_pat_debug_and_events(vmcs02, v12, dirty, inputs);
        return;
    }
    let c = Controls02::merge(v12, l0, inputs);
    if controls_dirty {
        write_controls(vmcs02, v12, l0, inputs, &c);
    }
    if cr0_dirty {
        let f = c.cr0_fixed(&l0.hw);
        vmcs02.write(F::GuestCr0, f.adjust(v12.guest_cr0));
        vmcs02.write(F::Cr0GuestHostMask, c.cr0_mask);
        let view = l2_view(v12.guest_cr0, v12.cr0_guest_host_mask, v12.cr0_read_shadow);
        vmcs02.write(F::Cr0ReadShadow, view);
    }
    if cr4_dirty {
        vmcs02.write(F::GuestCr4, l0.hw.cr4_fixed().adjust(v12.guest_cr4));
        vmcs02.write(F::Cr4GuestHostMask, c.cr4_mask);
        let view = l2_view(v12.guest_cr4, v12.cr4_guest_host_mask, v12.cr4_read_shadow);
        vmcs02.write(F::Cr4ReadShadow, view);
    }
    write_efer_pat_debug_and_events(vmcs02, v12, dirty, inputs);
}

fn write_efer_pat_debug_and_events<V: Vmcs>(
    vmcs02: &mut V,
    v12: &Vmcs12,
    dirty: &DirtySet,
    inputs: &Vmcs02Inputs,
) {
    if dirty.intersects(&EFER_PAT_DEBUG_FIELDS) {
        let load = |bit| v12.vm_entry_controls & bit != 0;
        vmcs02.write(F::GuestIa32Efer, l2_efer(v12, &inputs.l1));
        let pat = if load(entry::LOAD_IA32_PAT) { v12.guest_ia32_pat } else { inputs.l1.pat };
        vmcs02.write(F::GuestIa32Pat, pat);
        let (dr7, dbg) = if load(entry::LOAD_DEBUG_CONTROLS) {
            (v12.guest_dr7, v12.guest_ia32_debugctl)
        } else {
            (inputs.l1.dr7, inputs.l1.debugctl)
        };
        vmcs02.write(F::GuestDr7, dr7);
        vmcs02.write(F::GuestIa32Debugctl, dbg);
    }
    if dirty.intersects(&EVENT_FIELDS) {
        vmcs02.write(F::VmEntryInterruptionInfo, v12.vm_entry_intr_info_field.into());
        vmcs02.write(F::VmEntryExceptionErrorCode, v12.vm_entry_exception_error_code.into());
        vmcs02.write(F::VmEntryInstructionLen, v12.vm_entry_instruction_len.into());
    }
}

fn write_controls<V: Vmcs>(
    vmcs02: &mut V,
    v12: &Vmcs12,
    l0: &L0Config,
    inputs: &Vmcs02Inputs,
    c: &Controls02,
) {
    vmcs02.write(F::PinBasedVmExecControl, c.pin.into());
    vmcs02.write(F::CpuBasedVmExecControl, c.proc1.into());
    vmcs02.write(F::SecondaryVmExecControl, c.proc2.into());
    vmcs02.write(F::VmExitControls, c.exit.into());
    vmcs02.write(F::VmEntryControls, c.entry.into());
    vmcs02.write(F::ExceptionBitmap, c.exception_bitmap.into());
    vmcs02.write(F::PageFaultErrorCodeMask, c.pf_mask.into());
    vmcs02.write(F::PageFaultErrorCodeMatch, c.pf_match.into());
    let p12 = secondary_controls(v12);
    // CR3-target values only help while L0 itself does not intercept CR3 loads.
    let count =
        if l0.proc1 & proc1::CR3_LOAD_EXITING == 0 { v12.cr3_target_count.min(4) } else { 0 };
    vmcs02.write(F::Cr3TargetCount, count.into());
    for (f, v) in [
        (F::Cr3TargetValue0, v12.cr3_target_value0),
        (F::Cr3TargetValue1, v12.cr3_target_value1),
        (F::Cr3TargetValue2, v12.cr3_target_value2),
        (F::Cr3TargetValue3, v12.cr3_target_value3),
    ]
    .into_iter()
    .take(count as usize)
    {
        vmcs02.write(f, v);
    }
    vmcs02.write(F::TscOffset, super::tsc::vmcs02_offset(v12, inputs.l1.tsc_offset));
    if let Some(b) = inputs.msr_bitmap {
        vmcs02.write(F::MsrBitmap, b.0);
    }
    if let Some((a, b)) = inputs.io_bitmaps {
        vmcs02.write(F::IoBitmapA, a.0);
        vmcs02.write(F::IoBitmapB, b.0);
    }
    if c.proc1 & proc1::USE_TPR_SHADOW != 0
        && let Some(page) = inputs.virtual_apic
    {
        vmcs02.write(F::VirtualApicPageAddr, page.0);
        vmcs02.write(F::TprThreshold, v12.tpr_threshold.into());
    }
    if c.proc2 & proc2::VIRTUALIZE_APIC_ACCESSES != 0
        && let Some(page) = inputs.apic_access
    {
        vmcs02.write(F::ApicAccessAddr, page.0);
    }
    if c.proc2 & proc2::ENABLE_EPT != 0 {
        vmcs02.write(F::EptPointer, inputs.eptp02);
    }
    if c.proc2 & proc2::ENABLE_VPID != 0 {
        vmcs02.write(F::VirtualProcessorId, inputs.vpid02.into());
    }
    if c.proc2 & proc2::ENABLE_VM_FUNCTIONS != 0 {
        vmcs02.write(F::VmFunctionControl, 0);
    }
    if c.proc2 & proc2::ENABLE_XSAVES != 0 && p12 & proc2::ENABLE_XSAVES != 0 {
        vmcs02.write(F::XssExitingBitmap, v12.xss_exit_bitmap);
    }
    if c.proc2 & proc2::PAUSE_LOOP_EXITING != 0 && p12 & proc2::PAUSE_LOOP_EXITING != 0 {
        vmcs02.write(F::PleGap, v12.ple_gap.into());
        vmcs02.write(F::PleWindow, v12.ple_window.into());
    }
    if c.pin & pin::PREEMPTION_TIMER != 0 && l0.pin & pin::PREEMPTION_TIMER == 0 {
        vmcs02.write(F::VmxPreemptionTimerValue, v12.vmx_preemption_timer_value.into());
    }
    vmcs02.write(F::VmcsLinkPointer, u64::MAX);
}

#[cfg(test)]
#[path = "merge_tests.rs"]
pub(crate) mod tests;
