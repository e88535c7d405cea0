//! vmcs02 from vmcs01 + vmcs12, and vmcs12 back from vmcs02 (Turtles §3.2; SDM Vol. 3C
//! 26.3.2 guest-state loading, 27.3 guest-state saving, 27.5 host-state loading).
//!
//! * [`prepare_vmcs02`]: before entering L2. Guest state from vmcs12, controls = L0's
//!   must-haves OR'd with L1's requests (adjusted to the hardware), bitmaps and EPT/VPID from
//!   L0. Only fields in the dirty set are written (the paper's "copy only what changed").
//! * [`sync_vmcs12`]: on every exit reflected to L1. Exit information and guest state back
//!   into vmcs12.
//! * [`load_l1_host_state`]: then L1 resumes with vmcs12's host state (27.5) in vmcs01.
//! * [`merge_msr_bitmap`], [`merge_io_bitmaps`]: L2 never gets an access L0 denies L1.
//!
//! None of these allocate; all are generic over [`Vmcs`] (hardware, vmcs12, fake).

use crate::addr::{Hpa, L1Gpa};
use crate::caps::{VmxCaps, entry, exit, pin, proc1, proc2};
use crate::exits::{ExitInfo, intr_info, routing::secondary_controls};
use crate::guest::{GuestMemory, MemError};
use crate::vmcs::{DirtySet, Vmcs, Vmcs12, VmcsField as F};

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
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

/// Per-entry values L0 computed for vmcs02.
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
    pub l1: L1State,
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

/// The guest fields an L2 exit changes often (synced on every reflected exit in
/// [`SyncScope::Hot`]); the rest of [`GUEST_PLAIN`] changes rarely.
pub const GUEST_HOT: &[F] = &[
    F::GuestRip,
    F::GuestRsp,
    F::GuestRflags,
    F::GuestCr3,
    F::GuestInterruptibilityInfo,
    F::GuestActivityState,
    F::GuestPendingDebugExceptions,
    F::GuestCsArBytes,
    F::GuestSsArBytes,
];

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
    | proc2::ENABLE_XSAVES;

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
        if l0.proc1 & proc1::CR3_LOAD_EXITING != 0 {
            proc1 |= proc1::CR3_LOAD_EXITING;
        }
        let mut proc2 = l0.proc2 | (p12 & PASS_PROC2);
        if p12 & proc2::ENABLE_VM_FUNCTIONS != 0 {
            // VM-function controls stay 0 in vmcs02, so every VMFUNC exits to L0.
            proc2 |= proc2::ENABLE_VM_FUNCTIONS;
        }
        let mut exit = l0.exit;
        if l1_timer {
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
            cr0_forced &= !(CR0_PE | CR0_PG);
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
            f.fixed0 &= !(CR0_PE | CR0_PG);
        }
        f
    }
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
    let mut e = l1.efer & !(EFER_LMA | EFER_LME);
    if ia32e {
        e |= EFER_LMA | EFER_LME;
    } else if v12.guest_cr0 & CR0_PG == 0 {
        e |= l1.efer & EFER_LME;
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
    for &f in GUEST_PLAIN {
        if dirty.contains(f) {
            vmcs02.write(f, v12.get(f));
        }
    }
    let controls_dirty = dirty.intersects(&CONTROL_FIELDS);
    let c = Controls02::merge(v12, l0, inputs);
    if controls_dirty {
        write_controls(vmcs02, v12, l0, inputs, &c);
    }
    if dirty.intersects(&CR0_FIELDS) || controls_dirty {
        let f = c.cr0_fixed(&l0.hw);
        vmcs02.write(F::GuestCr0, f.adjust(v12.guest_cr0));
        vmcs02.write(F::Cr0GuestHostMask, c.cr0_mask);
        let view = l2_view(v12.guest_cr0, v12.cr0_guest_host_mask, v12.cr0_read_shadow);
        vmcs02.write(F::Cr0ReadShadow, view);
    }
    if dirty.intersects(&CR4_FIELDS) || controls_dirty {
        vmcs02.write(F::GuestCr4, l0.hw.cr4_fixed().adjust(v12.guest_cr4));
        vmcs02.write(F::Cr4GuestHostMask, c.cr4_mask);
        let view = l2_view(v12.guest_cr4, v12.cr4_guest_host_mask, v12.cr4_read_shadow);
        vmcs02.write(F::Cr4ReadShadow, view);
    }
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
    let mut tsc = inputs.l1.tsc_offset;
    if v12.cpu_based_vm_exec_control & proc1::USE_TSC_OFFSETTING != 0 {
        tsc = tsc.wrapping_add(v12.tsc_offset);
    }
    vmcs02.write(F::TscOffset, tsc);
    if let Some(b) = inputs.msr_bitmap {
        vmcs02.write(F::MsrBitmap, b.0);
    }
    if let Some((a, b)) = inputs.io_bitmaps {
        vmcs02.write(F::IoBitmapA, a.0);
        vmcs02.write(F::IoBitmapB, b.0);
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

/// How much guest state [`sync_vmcs12`] copies back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncScope {
    /// [`GUEST_HOT`] and the control registers: enough for L1 to handle the common exits
    /// (L2 can change segment state without exiting, so L0 must sync [`SyncScope::Full`]
    /// before L1 reads any other guest field).
    Hot,
    /// Every guest field (SDM 27.3).
    Full,
}

/// Writes an exit L0 reflects to L1 into vmcs12: exit information, guest state (per
/// `scope`), CR0/CR4 as L1 believes them, EFER/PAT/debug/timer per vmcs12's save controls,
/// the "IA-32e mode guest" entry control from EFER.LMA, and clears the valid bit of the
/// VM-entry interruption information (SDM 27.2-27.3).
pub fn sync_vmcs12<V: Vmcs>(vmcs02: &V, v12: &mut Vmcs12, exit: &ExitInfo, scope: SyncScope) {
    write_exit_info(v12, exit);
    let fields = match scope {
        SyncScope::Hot => GUEST_HOT,
        SyncScope::Full => GUEST_PLAIN,
    };
    for &f in fields {
        v12.set(f, vmcs02.read(f));
    }
    // CR0/CR4: bits L2 owns from hardware, bits L1 owns unchanged (L2 could not change them
    // without exiting to L1), bits only L0 owns from vmcs02's read shadow (L2's view).
    let mask02 = vmcs02.read(F::Cr0GuestHostMask);
    let cr0 = (vmcs02.read(F::GuestCr0) & !mask02)
        | (v12.guest_cr0 & v12.cr0_guest_host_mask)
        | (vmcs02.read(F::Cr0ReadShadow) & mask02 & !v12.cr0_guest_host_mask);
    v12.guest_cr0 = cr0;
    let mask02 = vmcs02.read(F::Cr4GuestHostMask);
    let cr4 = (vmcs02.read(F::GuestCr4) & !mask02)
        | (v12.guest_cr4 & v12.cr4_guest_host_mask)
        | (vmcs02.read(F::Cr4ReadShadow) & mask02 & !v12.cr4_guest_host_mask);
    v12.guest_cr4 = cr4;

    let efer = vmcs02.read(F::GuestIa32Efer);
    let saves = |bit| v12.vm_exit_controls & bit != 0;
    if saves(exit::SAVE_IA32_EFER) {
        v12.guest_ia32_efer = efer;
    }
    if efer & EFER_LMA != 0 {
        v12.vm_entry_controls |= entry::IA32E_MODE_GUEST;
    } else {
        v12.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
    }
    if saves(exit::SAVE_IA32_PAT) {
        v12.guest_ia32_pat = vmcs02.read(F::GuestIa32Pat);
    }
    if saves(exit::SAVE_DEBUG_CONTROLS) {
        v12.guest_dr7 = vmcs02.read(F::GuestDr7);
        v12.guest_ia32_debugctl = vmcs02.read(F::GuestIa32Debugctl);
    }
    if saves(exit::SAVE_PREEMPTION_TIMER) {
        v12.vmx_preemption_timer_value = vmcs02.read(F::VmxPreemptionTimerValue) as u32;
    }
    v12.vm_entry_intr_info_field &= !intr_info::VALID;
}

/// The exit-information fields of vmcs12 (SDM 28.2).
pub fn write_exit_info(v12: &mut Vmcs12, e: &ExitInfo) {
    v12.vm_exit_reason = e.reason;
    v12.exit_qualification = e.qualification;
    v12.guest_linear_address = e.guest_linear_address;
    v12.guest_physical_address = e.guest_physical_address;
    v12.vm_exit_intr_info = e.intr_info;
    v12.vm_exit_intr_error_code = e.intr_error_code;
    v12.idt_vectoring_info_field = e.idt_vectoring_info;
    v12.idt_vectoring_error_code = e.idt_vectoring_error_code;
    v12.vm_exit_instruction_len = e.instruction_len;
    v12.vmx_instruction_info = e.instruction_info;
}

/// For an exit L0 handles itself during event delivery to L2: re-inject the event through
/// vmcs02's VM-entry fields (SDM 28.2.4; the IDT-vectoring format is the entry format).
pub fn reinject_idt_vectoring<V: Vmcs>(vmcs02: &mut V, e: &ExitInfo) {
    if e.idt_vectoring_info & intr_info::VALID == 0 {
        return;
    }
    let info = e.idt_vectoring_info & !intr_info::NMI_UNBLOCKING;
    vmcs02.write(F::VmEntryInterruptionInfo, info.into());
    if info & intr_info::DELIVER_ERROR_CODE != 0 {
        vmcs02.write(F::VmEntryExceptionErrorCode, e.idt_vectoring_error_code.into());
    }
    let kind = intr_info::kind(info);
    if matches!(
        kind,
        intr_info::TYPE_SOFT_INTERRUPT
            | intr_info::TYPE_PRIV_SOFT_EXCEPTION
            | intr_info::TYPE_SOFT_EXCEPTION
    ) {
        vmcs02.write(F::VmEntryInstructionLen, e.instruction_len.into());
    }
}

/// Loads L1's state after a reflected exit or a failed nested entry: vmcs12's host-state area
/// into vmcs01's guest-state area (SDM 27.5.1-27.5.3). CR0/CR4 are adjusted to the hardware's
/// fixed bits with L1's values in the read shadows. Returns L1's new EFER. The VM-exit
/// MSR-store and MSR-load lists (27.4, 27.5.4) are the image's ([`read_msr_entry`]).
pub fn load_l1_host_state<V: Vmcs>(
    v12: &Vmcs12,
    vmcs01: &mut V,
    hw: &VmxCaps,
    l1_efer: u64,
) -> u64 {
    let host64 = v12.vm_exit_controls & exit::HOST_ADDRESS_SPACE_SIZE != 0;
    let loads = |bit| v12.vm_exit_controls & bit != 0;
    vmcs01.write(F::GuestCr0, hw.cr0_fixed().adjust(v12.host_cr0));
    vmcs01.write(F::Cr0ReadShadow, v12.host_cr0);
    let cr4 = if host64 { v12.host_cr4 | 1 << 5 } else { v12.host_cr4 };
    vmcs01.write(F::GuestCr4, hw.cr4_fixed().adjust(cr4));
    vmcs01.write(F::Cr4ReadShadow, cr4);
    vmcs01.write(F::GuestCr3, v12.host_cr3);
    vmcs01.write(F::GuestDr7, 0x400);
    vmcs01.write(F::GuestIa32Debugctl, 0);
    vmcs01.write(F::GuestSysenterCs, v12.host_ia32_sysenter_cs.into());
    vmcs01.write(F::GuestSysenterEsp, v12.host_ia32_sysenter_esp);
    vmcs01.write(F::GuestSysenterEip, v12.host_ia32_sysenter_eip);
    let efer = if loads(exit::LOAD_IA32_EFER) {
        v12.host_ia32_efer
    } else if host64 {
        l1_efer | EFER_LMA | EFER_LME
    } else {
        l1_efer & !(EFER_LMA | EFER_LME)
    };
    vmcs01.write(F::GuestIa32Efer, efer);
    let entry01 = vmcs01.read(F::VmEntryControls);
    let ia32e = u64::from(entry::IA32E_MODE_GUEST);
    vmcs01.write(
        F::VmEntryControls,
        if efer & EFER_LMA != 0 { entry01 | ia32e } else { entry01 & !ia32e },
    );
    if loads(exit::LOAD_IA32_PAT) {
        vmcs01.write(F::GuestIa32Pat, v12.host_ia32_pat);
    }
    // 27.5.2: segment registers.
    let cs_ar = 0xb | 1 << 4 | 1 << 7 | 1 << 15 | if host64 { 1 << 13 } else { 1 << 14 };
    vmcs01.write(F::GuestCsSelector, v12.host_cs_selector.into());
    vmcs01.write(F::GuestCsBase, 0);
    vmcs01.write(F::GuestCsLimit, 0xffff_ffff);
    vmcs01.write(F::GuestCsArBytes, cs_ar);
    let data_ar =
        |sel: u16| if sel == 0 { 1 << 16 } else { 0x3 | 1 << 4 | 1 << 7 | 1 << 14 | 1 << 15 };
    for (s, b, l, a, sel, base) in [
        (
            F::GuestSsSelector,
            F::GuestSsBase,
            F::GuestSsLimit,
            F::GuestSsArBytes,
            v12.host_ss_selector,
            0,
        ),
        (
            F::GuestDsSelector,
            F::GuestDsBase,
            F::GuestDsLimit,
            F::GuestDsArBytes,
            v12.host_ds_selector,
            0,
        ),
        (
            F::GuestEsSelector,
            F::GuestEsBase,
            F::GuestEsLimit,
            F::GuestEsArBytes,
            v12.host_es_selector,
            0,
        ),
        (
            F::GuestFsSelector,
            F::GuestFsBase,
            F::GuestFsLimit,
            F::GuestFsArBytes,
            v12.host_fs_selector,
            v12.host_fs_base,
        ),
        (
            F::GuestGsSelector,
            F::GuestGsBase,
            F::GuestGsLimit,
            F::GuestGsArBytes,
            v12.host_gs_selector,
            v12.host_gs_base,
        ),
    ] {
        vmcs01.write(s, sel.into());
        vmcs01.write(b, base);
        vmcs01.write(l, 0xffff_ffff);
        vmcs01.write(a, data_ar(sel));
    }
    vmcs01.write(F::GuestTrSelector, v12.host_tr_selector.into());
    vmcs01.write(F::GuestTrBase, v12.host_tr_base);
    vmcs01.write(F::GuestTrLimit, 0x67);
    vmcs01.write(F::GuestTrArBytes, 0xb | 1 << 7);
    vmcs01.write(F::GuestLdtrSelector, 0);
    vmcs01.write(F::GuestLdtrBase, 0);
    vmcs01.write(F::GuestLdtrLimit, 0);
    vmcs01.write(F::GuestLdtrArBytes, 1 << 16);
    vmcs01.write(F::GuestGdtrBase, v12.host_gdtr_base);
    vmcs01.write(F::GuestGdtrLimit, 0xffff);
    vmcs01.write(F::GuestIdtrBase, v12.host_idtr_base);
    vmcs01.write(F::GuestIdtrLimit, 0xffff);
    // 27.5.3: RIP, RSP, RFLAGS; no blocking, active.
    vmcs01.write(F::GuestRip, v12.host_rip);
    vmcs01.write(F::GuestRsp, v12.host_rsp);
    vmcs01.write(F::GuestRflags, 2);
    vmcs01.write(F::GuestInterruptibilityInfo, 0);
    vmcs01.write(F::GuestActivityState, 0);
    vmcs01.write(F::GuestPendingDebugExceptions, 0);
    efer
}

/// Entry `i` of a VM-exit/VM-entry MSR list at `base` in L1 memory: (index, value)
/// (SDM 25.7.2, Table 25-15).
pub fn read_msr_entry(mem: &impl GuestMemory, base: u64, i: u32) -> Result<(u32, u64), MemError> {
    let at = base.wrapping_add(u64::from(i) * 16);
    let index = mem.read_u32(L1Gpa(at))?;
    let value = mem.read_u64(L1Gpa(at.wrapping_add(8)))?;
    Ok((index, value))
}

/// vmcs02's MSR bitmap: an access exits if L0's bitmap for L1 or L1's for L2 says so; all
/// ones when L1 does not use MSR bitmaps (every access exits to L1). SDM 25.6.9.
pub fn merge_msr_bitmap(l0: &[u8; 4096], l1: Option<&[u8; 4096]>, out: &mut [u8; 4096]) {
    match l1 {
        Some(l1) => {
            for ((o, a), b) in out.iter_mut().zip(l0.iter()).zip(l1.iter()) {
                *o = a | b;
            }
        }
        None => out.fill(0xff),
    }
}

/// How L1 has L2's I/O instructions exit (SDM 25.6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Io<'a> {
    /// Neither bitmaps nor unconditional exiting: L2's I/O is L1's own I/O (L0's bitmap).
    PassThrough,
    /// Unconditional I/O exiting: everything exits.
    All,
    /// L1's bitmaps A and B.
    Bitmaps(&'a [u8; 4096], &'a [u8; 4096]),
}

/// vmcs02's I/O bitmaps A and B: L0's OR L1's.
pub fn merge_io_bitmaps(
    l0: (&[u8; 4096], &[u8; 4096]),
    l1: L1Io<'_>,
    out: (&mut [u8; 4096], &mut [u8; 4096]),
) {
    match l1 {
        L1Io::PassThrough => {
            out.0.copy_from_slice(l0.0);
            out.1.copy_from_slice(l0.1);
        }
        L1Io::All => {
            out.0.fill(0xff);
            out.1.fill(0xff);
        }
        L1Io::Bitmaps(a, b) => {
            for ((o, x), y) in out.0.iter_mut().zip(l0.0.iter()).zip(a.iter()) {
                *o = x | y;
            }
            for ((o, x), y) in out.1.iter_mut().zip(l0.1.iter()).zip(b.iter()) {
                *o = x | y;
            }
        }
    }
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
