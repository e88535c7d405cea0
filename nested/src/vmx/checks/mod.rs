//! Checks a nested VM entry performs on vmcs12 (SDM Vol. 3C 26.2 controls and host state,
//! 26.3 guest state, 26.4 MSR loading, 26.8 failure reporting).
//!
//! Each check has its own [`Check`] variant naming its SDM section (house style 7, after
//! Linux's `CC()`), so a failing entry says exactly which rule L1 broke. Control and
//! host-state failures become VMfailValid(7)/VMfailValid(8); guest-state and MSR-loading
//! failures become an [`EntryFailure`]: a VM exit to L1 with exit reason 33 or 34 and bit 31
//! set. Controls are checked against the capability MSRs *L1* sees, so vmcs02 never needs a
//! control L0 cannot merge.

use crate::addr::{L1Gpa, fits_phys_width, is_canonical};
use crate::arch::{cr0, cr4, efer, rflags};
use crate::caps::{VmxCaps, entry, exit, pin, proc1, proc2};
use crate::ept::eptp_valid;
use crate::exits::{EXIT_REASON_ENTRY_FAILURE, ExitReason, intr_info, routing::secondary_controls};
use crate::guest::GuestMemory;
use crate::vmcs::Vmcs12;

/// One VM-entry check. [`Check::section`] names the SDM section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    // 26.2.1.1 VM-execution control fields
    PinControls,
    ProcControls,
    SecondaryControls,
    Cr3TargetCount,
    IoBitmapAddress,
    MsrBitmapAddress,
    VirtualApicAddress,
    TprThresholdReserved,
    TprThresholdAboveVtpr,
    ApicAccessAddress,
    VirtualNmisWithoutNmiExiting,
    NmiWindowWithoutVirtualNmis,
    VpidZero,
    EptPointer,
    UnrestrictedGuestWithoutEpt,
    VmFunctionControls,
    EptpListAddress,
    PmlWithoutEpt,
    PmlAddress,
    VmreadVmwriteBitmapAddress,
    // 26.2.1.2 VM-exit control fields
    ExitControls,
    SavePreemptionTimerWithoutTimer,
    ExitMsrStoreAddress,
    ExitMsrLoadAddress,
    // 26.2.1.3 VM-entry control fields
    EntryControls,
    EventType,
    EventVector,
    EventDeliverErrorCode,
    EventReservedBits,
    EventErrorCode,
    EventInstructionLength,
    EntryMsrLoadAddress,
    // 26.2.2 host control registers and MSRs
    HostCr0,
    HostCr4,
    HostCr3,
    HostSysenterCanonical,
    HostPat,
    HostEfer,
    // 26.2.3 host segment and descriptor-table registers
    HostSelectorRplTi,
    HostCsNull,
    HostTrNull,
    HostSsNull,
    HostBaseCanonical,
    // 26.2.4 address-space size
    HostAddressSpaceSize,
    HostIa32eGuestOutsideIa32e,
    HostCr4Pae,
    HostRip,
    HostCr4Pcide,
    // 26.3.1.1 guest control registers, debug registers, MSRs
    GuestCr0,
    GuestCr0PgWithoutPe,
    GuestCr4,
    GuestDebugctl,
    GuestIa32eWithoutPaging,
    GuestPcideOutsideIa32e,
    GuestCr3,
    GuestDr7,
    GuestSysenterCanonical,
    GuestPat,
    GuestEfer,
    // 26.3.1.2 guest segment registers
    GuestTrTi,
    GuestLdtrTi,
    GuestSsRpl,
    GuestV86Segment,
    GuestSegmentBase,
    GuestCsType,
    GuestSsType,
    GuestDataSegmentType,
    GuestSegmentS,
    GuestCsDpl,
    GuestSsDpl,
    GuestDataSegmentDpl,
    GuestSegmentPresent,
    GuestSegmentReserved,
    GuestCsLongAndDefault,
    GuestSegmentGranularity,
    GuestTr,
    GuestLdtr,
    // 26.3.1.3 descriptor-table registers
    GuestDescriptorTable,
    // 26.3.1.4 RIP and RFLAGS
    GuestRip,
    GuestRflagsReserved,
    GuestRflagsVm,
    GuestRflagsIfForInterrupt,
    // 26.3.1.5 non-register state
    GuestActivityState,
    GuestActivityHltDpl,
    GuestActivityWithBlocking,
    GuestActivityEvent,
    GuestInterruptibilityReserved,
    GuestInterruptibilityStiMovSs,
    GuestInterruptibilityStiWithoutIf,
    GuestInterruptibilityEvent,
    GuestInterruptibilityNmiSti,
    GuestInterruptibilitySmi,
    GuestInterruptibilityNmi,
    GuestPendingDebugReserved,
    GuestPendingDebugBs,
    GuestVmcsLinkPointer,
    // 26.3.1.6 PDPTEs
    GuestPdpte,
    // 26.4 MSR loading
    MsrLoadEntry,
}

impl Check {
    /// The SDM Vol. 3C section that states this check.
    pub const fn section(self) -> &'static str {
        use Check::*;
        match self {
            PinControls
            | ProcControls
            | SecondaryControls
            | Cr3TargetCount
            | IoBitmapAddress
            | MsrBitmapAddress
            | VirtualApicAddress
            | TprThresholdReserved
            | TprThresholdAboveVtpr
            | ApicAccessAddress
            | VirtualNmisWithoutNmiExiting
            | NmiWindowWithoutVirtualNmis
            | VpidZero
            | EptPointer
            | UnrestrictedGuestWithoutEpt
            | VmFunctionControls
            | EptpListAddress
            | PmlWithoutEpt
            | PmlAddress
            | VmreadVmwriteBitmapAddress => "26.2.1.1",
            ExitControls
            | SavePreemptionTimerWithoutTimer
            | ExitMsrStoreAddress
            | ExitMsrLoadAddress => "26.2.1.2",
            EntryControls
            | EventType
            | EventVector
            | EventDeliverErrorCode
            | EventReservedBits
            | EventErrorCode
            | EventInstructionLength
            | EntryMsrLoadAddress => "26.2.1.3",
            HostCr0 | HostCr4 | HostCr3 | HostSysenterCanonical | HostPat | HostEfer => "26.2.2",
            HostSelectorRplTi | HostCsNull | HostTrNull | HostSsNull | HostBaseCanonical => {
                "26.2.3"
            }
            HostAddressSpaceSize
            | HostIa32eGuestOutsideIa32e
            | HostCr4Pae
            | HostRip
            | HostCr4Pcide => "26.2.4",
            GuestCr0
            | GuestCr0PgWithoutPe
            | GuestCr4
            | GuestDebugctl
            | GuestIa32eWithoutPaging
            | GuestPcideOutsideIa32e
            | GuestCr3
            | GuestDr7
            | GuestSysenterCanonical
            | GuestPat
            | GuestEfer => "26.3.1.1",
            GuestTrTi
            | GuestLdtrTi
            | GuestSsRpl
            | GuestV86Segment
            | GuestSegmentBase
            | GuestCsType
            | GuestSsType
            | GuestDataSegmentType
            | GuestSegmentS
            | GuestCsDpl
            | GuestSsDpl
            | GuestDataSegmentDpl
            | GuestSegmentPresent
            | GuestSegmentReserved
            | GuestCsLongAndDefault
            | GuestSegmentGranularity
            | GuestTr
            | GuestLdtr => "26.3.1.2",
            GuestDescriptorTable => "26.3.1.3",
            GuestRip | GuestRflagsReserved | GuestRflagsVm | GuestRflagsIfForInterrupt => {
                "26.3.1.4"
            }
            GuestActivityState
            | GuestActivityHltDpl
            | GuestActivityWithBlocking
            | GuestActivityEvent
            | GuestInterruptibilityReserved
            | GuestInterruptibilityStiMovSs
            | GuestInterruptibilityStiWithoutIf
            | GuestInterruptibilityEvent
            | GuestInterruptibilityNmiSti
            | GuestInterruptibilitySmi
            | GuestInterruptibilityNmi
            | GuestPendingDebugReserved
            | GuestPendingDebugBs
            | GuestVmcsLinkPointer => "26.3.1.5",
            GuestPdpte => "26.3.1.6",
            MsrLoadEntry => "26.4",
        }
    }
}

/// A VM entry that failed after the control and host-state checks (SDM 26.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFailure {
    /// [`ExitReason::EntryFailGuestState`] or [`ExitReason::EntryFailMsrLoading`].
    pub reason: ExitReason,
    /// Exit qualification (SDM 26.8): 0 default, 2 PDPTE loading, 3 NMI injection with
    /// blocking by STI, 4 invalid VMCS link pointer; for MSR loading the 1-based entry number.
    pub qualification: u64,
    /// The check that failed.
    pub check: Check,
}

impl EntryFailure {
    /// The exit-reason field L1 reads: the basic reason with bit 31 set.
    pub const fn exit_reason(&self) -> u32 {
        self.reason as u32 | EXIT_REASON_ENTRY_FAILURE
    }

    pub(crate) fn guest(check: Check, qualification: u64) -> Self {
        EntryFailure { reason: ExitReason::EntryFailGuestState, qualification, check }
    }
}
/// EFER bits a guest or host state may have set (SCE, LME, LMA, NXE; the rest reserved).
const EFER_VALID: u64 = efer::SCE | efer::LME | efer::LMA | efer::NXE;

fn ensure(ok: bool, check: Check) -> Result<(), Check> {
    if ok { Ok(()) } else { Err(check) }
}

fn page_addr_ok(addr: u64, maxphyaddr: u8) -> bool {
    addr & 0xfff == 0 && fits_phys_width(addr, maxphyaddr)
}

/// An MSR list of `count` 16-byte entries at `addr`: 16-byte aligned, last byte in range.
fn msr_list_ok(addr: u64, count: u32, maxphyaddr: u8) -> bool {
    if count == 0 {
        return true;
    }
    let Some(last) = addr.checked_add(u64::from(count) * 16 - 1) else { return false };
    addr & 0xf == 0 && fits_phys_width(addr, maxphyaddr) && fits_phys_width(last, maxphyaddr)
}

fn pat_ok(pat: u64) -> bool {
    pat.to_le_bytes().iter().all(|&b| matches!(b, 0 | 1 | 4 | 5 | 6 | 7))
}

/// VM-execution, VM-exit and VM-entry control fields (SDM 26.2.1). Failure: VMfailValid(7).
pub fn check_controls(v: &Vmcs12, caps: &VmxCaps, maxphyaddr: u8) -> Result<(), Check> {
    use Check::*;
    let pinc = v.pin_based_vm_exec_control;
    let p1 = v.cpu_based_vm_exec_control;
    let p2 = secondary_controls(v);
    ensure(caps.pin().verify(pinc), PinControls)?;
    ensure(caps.primary().verify(p1), ProcControls)?;
    if p1 & proc1::ACTIVATE_SECONDARY_CONTROLS != 0 {
        ensure(caps.secondary().verify(p2), SecondaryControls)?;
    }
    ensure(v.cr3_target_count <= caps.cr3_target_count(), Cr3TargetCount)?;
    if p1 & proc1::USE_IO_BITMAPS != 0 {
        ensure(
            page_addr_ok(v.io_bitmap_a, maxphyaddr) && page_addr_ok(v.io_bitmap_b, maxphyaddr),
            IoBitmapAddress,
        )?;
    }
    if p1 & proc1::USE_MSR_BITMAPS != 0 {
        ensure(page_addr_ok(v.msr_bitmap, maxphyaddr), MsrBitmapAddress)?;
    }
    if p1 & proc1::USE_TPR_SHADOW != 0 {
        ensure(page_addr_ok(v.virtual_apic_page_addr, maxphyaddr), VirtualApicAddress)?;
        if p2 & proc2::VIRTUAL_INTERRUPT_DELIVERY == 0 {
            ensure(v.tpr_threshold & !0xf == 0, TprThresholdReserved)?;
        }
        // The next check, TPR threshold against VTPR, reads L1 memory:
        // [`check_tpr_threshold_vtpr`].
    }
    if p2 & proc2::VIRTUALIZE_APIC_ACCESSES != 0 {
        ensure(page_addr_ok(v.apic_access_addr, maxphyaddr), ApicAccessAddress)?;
    }
    if pinc & pin::NMI_EXITING == 0 {
        ensure(pinc & pin::VIRTUAL_NMIS == 0, VirtualNmisWithoutNmiExiting)?;
    }
    if pinc & pin::VIRTUAL_NMIS == 0 {
        ensure(p1 & proc1::NMI_WINDOW_EXITING == 0, NmiWindowWithoutVirtualNmis)?;
    }
    if p2 & proc2::ENABLE_VPID != 0 {
        ensure(v.virtual_processor_id != 0, VpidZero)?;
    }
    if p2 & proc2::ENABLE_EPT != 0 {
        ensure(eptp_valid(v.ept_pointer, caps, maxphyaddr), EptPointer)?;
    }
    if p2 & proc2::UNRESTRICTED_GUEST != 0 {
        ensure(p2 & proc2::ENABLE_EPT != 0, UnrestrictedGuestWithoutEpt)?;
    }
    if p2 & proc2::ENABLE_PML != 0 {
        ensure(p2 & proc2::ENABLE_EPT != 0, PmlWithoutEpt)?;
        ensure(page_addr_ok(v.pml_address, maxphyaddr), PmlAddress)?;
    }
    if p2 & proc2::VMCS_SHADOWING != 0 {
        ensure(
            page_addr_ok(v.vmread_bitmap, maxphyaddr) && page_addr_ok(v.vmwrite_bitmap, maxphyaddr),
            VmreadVmwriteBitmapAddress,
        )?;
    }
    if p2 & proc2::ENABLE_VM_FUNCTIONS != 0 {
        ensure(v.vm_function_control & !caps.vmfunc == 0, VmFunctionControls)?;
        if v.vm_function_control & 1 != 0 {
            ensure(p2 & proc2::ENABLE_EPT != 0, VmFunctionControls)?;
            ensure(page_addr_ok(v.eptp_list_address, maxphyaddr), EptpListAddress)?;
        }
    }

    let ex = v.vm_exit_controls;
    ensure(caps.exit_controls().verify(ex), ExitControls)?;
    if pinc & pin::PREEMPTION_TIMER == 0 {
        ensure(ex & exit::SAVE_PREEMPTION_TIMER == 0, SavePreemptionTimerWithoutTimer)?;
    }
    ensure(
        msr_list_ok(v.vm_exit_msr_store_addr, v.vm_exit_msr_store_count, maxphyaddr),
        ExitMsrStoreAddress,
    )?;
    ensure(
        msr_list_ok(v.vm_exit_msr_load_addr, v.vm_exit_msr_load_count, maxphyaddr),
        ExitMsrLoadAddress,
    )?;

    ensure(caps.entry_controls().verify(v.vm_entry_controls), EntryControls)?;
    check_event_injection(v, caps, p2)?;
    ensure(
        msr_list_ok(v.vm_entry_msr_load_addr, v.vm_entry_msr_load_count, maxphyaddr),
        EntryMsrLoadAddress,
    )
}

/// Byte offset of VTPR, the virtual TPR, in the virtual-APIC page (SDM 29.1.1).
pub const VTPR_OFFSET: u64 = 0x80;

/// The TPR threshold against VTPR (SDM 26.2.1.1): with "use TPR shadow" 1 and "virtualize
/// APIC accesses" and "virtual-interrupt delivery" both 0, bits 3:0 of the TPR threshold must
/// not exceed bits 7:4 of VTPR (byte 0x80 of the virtual-APIC page, in L1 memory). Failure:
/// VMfailValid(7). The SDM lists it right after the TPR threshold's reserved bits in
/// [`check_controls`], which must have passed (the page address is valid); it stands apart
/// because L1 memory can change between entries whose control fields did not, so it runs at
/// every entry. A page outside L1's RAM reads as all ones, as unbacked memory does.
pub fn check_tpr_threshold_vtpr(v: &Vmcs12, mem: &impl GuestMemory) -> Result<(), Check> {
    let p2 = secondary_controls(v);
    if v.cpu_based_vm_exec_control & proc1::USE_TPR_SHADOW == 0
        || p2 & (proc2::VIRTUALIZE_APIC_ACCESSES | proc2::VIRTUAL_INTERRUPT_DELIVERY) != 0
    {
        return Ok(());
    }
    let at = L1Gpa(v.virtual_apic_page_addr.wrapping_add(VTPR_OFFSET));
    let vtpr = mem.read_u8(at).unwrap_or(0xff);
    ensure(v.tpr_threshold & 0xf <= u32::from(vtpr >> 4), Check::TprThresholdAboveVtpr)
}

/// VM-entry event injection (SDM 26.2.1.3, the interruption-information bullets).
fn check_event_injection(v: &Vmcs12, caps: &VmxCaps, p2: u32) -> Result<(), Check> {
    use Check::*;
    let info = v.vm_entry_intr_info_field;
    if info & intr_info::VALID == 0 {
        return Ok(());
    }
    let kind = intr_info::kind(info);
    let vec = intr_info::vector(info);
    ensure(kind != 1 << 8, EventType)?;
    if kind == intr_info::TYPE_OTHER_EVENT {
        ensure(caps.primary().can_set(proc1::MONITOR_TRAP_FLAG), EventType)?;
    }
    match kind {
        intr_info::TYPE_NMI => ensure(vec == 2, EventVector)?,
        intr_info::TYPE_HARD_EXCEPTION => ensure(vec <= 31, EventVector)?,
        intr_info::TYPE_OTHER_EVENT => ensure(vec == 0, EventVector)?,
        _ => {}
    }
    let protected = p2 & proc2::UNRESTRICTED_GUEST == 0 || v.guest_cr0 & cr0::PE != 0;
    let wants_code = kind == intr_info::TYPE_HARD_EXCEPTION
        && protected
        && matches!(vec, 8 | 10 | 11 | 12 | 13 | 14 | 17);
    ensure((info & intr_info::DELIVER_ERROR_CODE != 0) == wants_code, EventDeliverErrorCode)?;
    ensure(info & 0x7fff_f000 == 0, EventReservedBits)?;
    if info & intr_info::DELIVER_ERROR_CODE != 0 {
        ensure(v.vm_entry_exception_error_code & 0xffff_0000 == 0, EventErrorCode)?;
    }
    if matches!(
        kind,
        intr_info::TYPE_SOFT_INTERRUPT
            | intr_info::TYPE_PRIV_SOFT_EXCEPTION
            | intr_info::TYPE_SOFT_EXCEPTION
    ) {
        ensure((1..=15).contains(&v.vm_entry_instruction_len), EventInstructionLength)?;
    }
    Ok(())
}

/// Host-state area (SDM 26.2.2-26.2.4). `l1_ia32e` is L1's own EFER.LMA ("the processor is
/// in IA-32e mode" from L1's point of view). Failure: VMfailValid(8).
pub fn check_host_state(
    v: &Vmcs12,
    caps: &VmxCaps,
    maxphyaddr: u8,
    l1_ia32e: bool,
) -> Result<(), Check> {
    use Check::*;
    let host64 = v.vm_exit_controls & exit::HOST_ADDRESS_SPACE_SIZE != 0;
    ensure(caps.cr0_fixed().verify(v.host_cr0), HostCr0)?;
    ensure(caps.cr4_fixed().verify(v.host_cr4), HostCr4)?;
    ensure(fits_phys_width(v.host_cr3, maxphyaddr), HostCr3)?;
    ensure(
        is_canonical(v.host_ia32_sysenter_esp) && is_canonical(v.host_ia32_sysenter_eip),
        HostSysenterCanonical,
    )?;
    if v.vm_exit_controls & exit::LOAD_IA32_PAT != 0 {
        ensure(pat_ok(v.host_ia32_pat), HostPat)?;
    }
    if v.vm_exit_controls & exit::LOAD_IA32_EFER != 0 {
        let e = v.host_ia32_efer;
        ensure(
            e & !EFER_VALID == 0
                && (e & efer::LMA != 0) == host64
                && (e & efer::LME != 0) == host64,
            HostEfer,
        )?;
    }
    let sels = [
        v.host_es_selector,
        v.host_cs_selector,
        v.host_ss_selector,
        v.host_ds_selector,
        v.host_fs_selector,
        v.host_gs_selector,
        v.host_tr_selector,
    ];
    ensure(sels.iter().all(|s| s & 7 == 0), HostSelectorRplTi)?;
    ensure(v.host_cs_selector != 0, HostCsNull)?;
    ensure(v.host_tr_selector != 0, HostTrNull)?;
    if !host64 {
        ensure(v.host_ss_selector != 0, HostSsNull)?;
    }
    ensure(
        [v.host_fs_base, v.host_gs_base, v.host_gdtr_base, v.host_idtr_base, v.host_tr_base]
            .iter()
            .all(|&b| is_canonical(b)),
        HostBaseCanonical,
    )?;
    if l1_ia32e {
        ensure(host64, HostAddressSpaceSize)?;
    } else {
        ensure(v.vm_entry_controls & entry::IA32E_MODE_GUEST == 0, HostIa32eGuestOutsideIa32e)?;
        ensure(!host64, HostAddressSpaceSize)?;
    }
    if host64 {
        ensure(v.host_cr4 & cr4::PAE != 0, HostCr4Pae)?;
        ensure(is_canonical(v.host_rip), HostRip)
    } else {
        ensure(v.host_cr4 & cr4::PCIDE == 0, HostCr4Pcide)?;
        ensure(v.host_rip >> 32 == 0, HostRip)
    }
}

mod guest;

pub use guest::{check_guest_rip, check_guest_state, check_guest_state_hot};

#[cfg(test)]
mod tests;
