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
use crate::caps::{VmxCaps, entry, exit, pin, proc1, proc2};
use crate::ept::eptp_valid;
use crate::exits::{EXIT_REASON_ENTRY_FAILURE, ExitReason, intr_info, routing::secondary_controls};
use crate::guest::GuestMemory;
use crate::vmcs::Vmcs12;
use crate::vmx::instr::L1Access;

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
    VirtualNmisWithoutNmiExiting,
    NmiWindowWithoutVirtualNmis,
    VpidZero,
    EptPointer,
    UnrestrictedGuestWithoutEpt,
    VmFunctionControls,
    EptpListAddress,
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
    GuestInterruptibilitySmi,
    GuestInterruptibilityNmi,
    GuestPendingDebugReserved,
    GuestPendingDebugBs,
    GuestVmcsLinkPointer,
    // 26.3.1.6 PDPTEs
    GuestPdpte,
    // 26.4 MSR loading
    MsrLoadCount,
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
            | VirtualNmisWithoutNmiExiting
            | NmiWindowWithoutVirtualNmis
            | VpidZero
            | EptPointer
            | UnrestrictedGuestWithoutEpt
            | VmFunctionControls
            | EptpListAddress => "26.2.1.1",
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
            | GuestInterruptibilitySmi
            | GuestInterruptibilityNmi
            | GuestPendingDebugReserved
            | GuestPendingDebugBs
            | GuestVmcsLinkPointer => "26.3.1.5",
            GuestPdpte => "26.3.1.6",
            MsrLoadCount | MsrLoadEntry => "26.4",
        }
    }
}

/// A VM entry that failed after the control and host-state checks (SDM 26.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryFailure {
    /// [`ExitReason::EntryFailGuestState`] or [`ExitReason::EntryFailMsrLoading`].
    pub reason: ExitReason,
    /// Exit qualification (SDM 28.2.1): 0 default, 2 PDPTE loading, 3 NMI injection with
    /// blocking by NMI, 4 invalid VMCS link pointer; for MSR loading the 1-based entry number.
    pub qualification: u64,
    /// The check that failed.
    pub check: Check,
}

impl EntryFailure {
    /// The exit-reason field L1 reads: the basic reason with bit 31 set.
    pub const fn exit_reason(&self) -> u32 {
        self.reason as u32 | EXIT_REASON_ENTRY_FAILURE
    }

    fn guest(check: Check, qualification: u64) -> Self {
        EntryFailure { reason: ExitReason::EntryFailGuestState, qualification, check }
    }
}

const CR0_PE: u64 = 1;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const CR4_PCIDE: u64 = 1 << 17;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_VALID: u64 = 1 | EFER_LME | EFER_LMA | 1 << 11;
const RFLAGS_IF: u64 = 1 << 9;
const RFLAGS_TF: u64 = 1 << 8;
const RFLAGS_VM: u64 = 1 << 17;
const RFLAGS_RESERVED: u64 = !0x3f_ffff | 1 << 15 | 1 << 5 | 1 << 3;

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
    let protected = p2 & proc2::UNRESTRICTED_GUEST == 0 || v.guest_cr0 & CR0_PE != 0;
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
            e & !EFER_VALID == 0 && (e & EFER_LMA != 0) == host64 && (e & EFER_LME != 0) == host64,
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
        ensure(v.host_cr4 & CR4_PAE != 0, HostCr4Pae)?;
        ensure(is_canonical(v.host_rip), HostRip)
    } else {
        ensure(v.host_cr4 & CR4_PCIDE == 0, HostCr4Pcide)?;
        ensure(v.host_rip >> 32 == 0, HostRip)
    }
}

/// A guest segment register as the checks see it.
#[derive(Clone, Copy)]
struct Seg {
    sel: u16,
    base: u64,
    limit: u32,
    ar: u32,
}

impl Seg {
    const fn usable(self) -> bool {
        self.ar & (1 << 16) == 0
    }
    const fn ty(self) -> u32 {
        self.ar & 0xf
    }
    const fn s(self) -> bool {
        self.ar & (1 << 4) != 0
    }
    const fn dpl(self) -> u32 {
        (self.ar >> 5) & 3
    }
    const fn present(self) -> bool {
        self.ar & (1 << 7) != 0
    }
    const fn reserved_clear(self) -> bool {
        self.ar & 0xf00 == 0 && self.ar & 0xfffe_0000 == 0
    }
    const fn granularity_ok(self) -> bool {
        let g = self.ar & (1 << 15) != 0;
        (self.limit & 0xfff == 0xfff || !g) && (self.limit & 0xfff0_0000 == 0 || g)
    }
    const fn rpl(self) -> u32 {
        (self.sel & 3) as u32
    }
}

/// Guest-state area (SDM 26.3.1), including the VMCS link pointer and PDPTEs, which read L1
/// memory. Failure: VM-entry failure with exit reason 33.
pub fn check_guest_state(
    v: &Vmcs12,
    caps: &VmxCaps,
    maxphyaddr: u8,
    mem: &impl GuestMemory,
) -> Result<(), EntryFailure> {
    let fail = |c| EntryFailure::guest(c, 0);
    check_guest_registers(v, caps, maxphyaddr).map_err(fail)?;
    check_guest_segments(v).map_err(fail)?;
    check_guest_non_register(v, caps).map_err(fail)?;
    if v.vmcs_link_pointer != u64::MAX {
        let p = v.vmcs_link_pointer;
        let ok = page_addr_ok(p, maxphyaddr)
            && mem.read_u32(L1Gpa(p)).is_ok_and(|rev| rev == caps.revision_id());
        if !ok {
            return Err(EntryFailure::guest(Check::GuestVmcsLinkPointer, 4));
        }
    }
    check_pdptes(v, maxphyaddr, mem)
}

fn check_guest_registers(v: &Vmcs12, caps: &VmxCaps, maxphyaddr: u8) -> Result<(), Check> {
    use Check::*;
    let p2 = secondary_controls(v);
    let ug = p2 & proc2::UNRESTRICTED_GUEST != 0;
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    let mut cr0_fixed = caps.cr0_fixed();
    if ug {
        cr0_fixed.fixed0 &= !(CR0_PE | CR0_PG);
    }
    ensure(cr0_fixed.verify(v.guest_cr0), GuestCr0)?;
    ensure(v.guest_cr0 & CR0_PG == 0 || v.guest_cr0 & CR0_PE != 0, GuestCr0PgWithoutPe)?;
    ensure(caps.cr4_fixed().verify(v.guest_cr4), GuestCr4)?;
    let load_debug = v.vm_entry_controls & entry::LOAD_DEBUG_CONTROLS != 0;
    if load_debug {
        ensure(v.guest_ia32_debugctl & !0xffc3 == 0, GuestDebugctl)?;
    }
    if ia32e {
        ensure(v.guest_cr0 & CR0_PG != 0 && v.guest_cr4 & CR4_PAE != 0, GuestIa32eWithoutPaging)?;
    } else {
        ensure(v.guest_cr4 & CR4_PCIDE == 0, GuestPcideOutsideIa32e)?;
    }
    ensure(fits_phys_width(v.guest_cr3, maxphyaddr), GuestCr3)?;
    if load_debug {
        ensure(v.guest_dr7 >> 32 == 0, GuestDr7)?;
    }
    ensure(
        is_canonical(v.guest_sysenter_esp) && is_canonical(v.guest_sysenter_eip),
        GuestSysenterCanonical,
    )?;
    if v.vm_entry_controls & entry::LOAD_IA32_PAT != 0 {
        ensure(pat_ok(v.guest_ia32_pat), GuestPat)?;
    }
    if v.vm_entry_controls & entry::LOAD_IA32_EFER != 0 {
        let e = v.guest_ia32_efer;
        let lme_ok = v.guest_cr0 & CR0_PG == 0 || (e & EFER_LME != 0) == ia32e;
        ensure(e & !EFER_VALID == 0 && (e & EFER_LMA != 0) == ia32e && lme_ok, GuestEfer)?;
    }
    // 26.3.1.3
    ensure(
        is_canonical(v.guest_gdtr_base)
            && is_canonical(v.guest_idtr_base)
            && v.guest_gdtr_limit >> 16 == 0
            && v.guest_idtr_limit >> 16 == 0,
        GuestDescriptorTable,
    )?;
    // 26.3.1.4
    let cs_l = v.guest_cs_ar_bytes & (1 << 13) != 0;
    if ia32e && cs_l {
        ensure(is_canonical(v.guest_rip), GuestRip)?;
    } else {
        ensure(v.guest_rip >> 32 == 0, GuestRip)?;
    }
    let rf = v.guest_rflags;
    ensure(rf & RFLAGS_RESERVED == 0 && rf & 2 != 0, GuestRflagsReserved)?;
    if ia32e || v.guest_cr0 & CR0_PE == 0 {
        ensure(rf & RFLAGS_VM == 0, GuestRflagsVm)?;
    }
    let info = v.vm_entry_intr_info_field;
    if info & intr_info::VALID != 0 && intr_info::kind(info) == intr_info::TYPE_EXTERNAL_INTERRUPT {
        ensure(rf & RFLAGS_IF != 0, GuestRflagsIfForInterrupt)?;
    }
    Ok(())
}

fn check_guest_segments(v: &Vmcs12) -> Result<(), Check> {
    use Check::*;
    let seg = |sel, base, limit, ar| Seg { sel, base, limit, ar };
    let cs = seg(v.guest_cs_selector, v.guest_cs_base, v.guest_cs_limit, v.guest_cs_ar_bytes);
    let ss = seg(v.guest_ss_selector, v.guest_ss_base, v.guest_ss_limit, v.guest_ss_ar_bytes);
    let ds = seg(v.guest_ds_selector, v.guest_ds_base, v.guest_ds_limit, v.guest_ds_ar_bytes);
    let es = seg(v.guest_es_selector, v.guest_es_base, v.guest_es_limit, v.guest_es_ar_bytes);
    let fs = seg(v.guest_fs_selector, v.guest_fs_base, v.guest_fs_limit, v.guest_fs_ar_bytes);
    let gs = seg(v.guest_gs_selector, v.guest_gs_base, v.guest_gs_limit, v.guest_gs_ar_bytes);
    let tr = seg(v.guest_tr_selector, v.guest_tr_base, v.guest_tr_limit, v.guest_tr_ar_bytes);
    let ldtr =
        seg(v.guest_ldtr_selector, v.guest_ldtr_base, v.guest_ldtr_limit, v.guest_ldtr_ar_bytes);
    let ug = secondary_controls(v) & proc2::UNRESTRICTED_GUEST != 0;
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    let v86 = v.guest_rflags & RFLAGS_VM != 0;
    let pe = v.guest_cr0 & CR0_PE != 0;

    ensure(tr.sel & 4 == 0, GuestTrTi)?;
    if ldtr.usable() {
        ensure(ldtr.sel & 4 == 0, GuestLdtrTi)?;
    }
    if !v86 && !ug {
        ensure(ss.rpl() == cs.rpl(), GuestSsRpl)?;
    }
    // Bases.
    ensure(
        is_canonical(tr.base) && is_canonical(fs.base) && is_canonical(gs.base),
        GuestSegmentBase,
    )?;
    if ldtr.usable() {
        ensure(is_canonical(ldtr.base), GuestSegmentBase)?;
    }
    ensure(cs.base >> 32 == 0, GuestSegmentBase)?;
    for s in [ss, ds, es] {
        if s.usable() {
            ensure(s.base >> 32 == 0, GuestSegmentBase)?;
        }
    }
    if v86 {
        for s in [cs, ss, ds, es, fs, gs] {
            ensure(
                s.base == u64::from(s.sel) << 4 && s.limit == 0xffff && s.ar == 0xf3,
                GuestV86Segment,
            )?;
        }
    } else {
        let cs_ty = cs.ty();
        ensure(matches!(cs_ty, 9 | 11 | 13 | 15) || (ug && cs_ty == 3), GuestCsType)?;
        if ss.usable() {
            ensure(matches!(ss.ty(), 3 | 7), GuestSsType)?;
        }
        for s in [ds, es, fs, gs] {
            if s.usable() {
                ensure(
                    s.ty() & 1 != 0 && (s.ty() & 8 == 0 || s.ty() & 2 != 0),
                    GuestDataSegmentType,
                )?;
            }
        }
        ensure(cs.s(), GuestSegmentS)?;
        for s in [ss, ds, es, fs, gs] {
            if s.usable() {
                ensure(s.s(), GuestSegmentS)?;
            }
        }
        match cs_ty {
            3 => ensure(cs.dpl() == 0, GuestCsDpl)?,
            9 | 11 => ensure(cs.dpl() == ss.dpl(), GuestCsDpl)?,
            _ => ensure(cs.dpl() <= ss.dpl(), GuestCsDpl)?,
        }
        if !ug {
            ensure(ss.dpl() == ss.rpl(), GuestSsDpl)?;
        }
        if cs_ty == 3 || !pe {
            ensure(ss.dpl() == 0, GuestSsDpl)?;
        }
        if !ug {
            for s in [ds, es, fs, gs] {
                if s.usable() && s.ty() <= 11 {
                    ensure(s.dpl() >= s.rpl(), GuestDataSegmentDpl)?;
                }
            }
        }
        // CS is always checked; the others when usable.
        for (i, s) in [cs, ss, ds, es, fs, gs].into_iter().enumerate() {
            if i == 0 || s.usable() {
                ensure(s.present(), GuestSegmentPresent)?;
                ensure(s.reserved_clear(), GuestSegmentReserved)?;
                ensure(s.granularity_ok(), GuestSegmentGranularity)?;
            }
        }
        if ia32e && cs.ar & (1 << 13) != 0 {
            ensure(cs.ar & (1 << 14) == 0, GuestCsLongAndDefault)?;
        }
    }
    // TR and LDTR (checked in every mode).
    let tr_type_ok = tr.ty() == 11 || (tr.ty() == 3 && !ia32e);
    ensure(
        tr_type_ok
            && !tr.s()
            && tr.present()
            && tr.reserved_clear()
            && tr.granularity_ok()
            && tr.usable(),
        GuestTr,
    )?;
    if ldtr.usable() {
        ensure(
            ldtr.ty() == 2
                && !ldtr.s()
                && ldtr.present()
                && ldtr.reserved_clear()
                && ldtr.granularity_ok(),
            GuestLdtr,
        )?;
    }
    Ok(())
}

fn check_guest_non_register(v: &Vmcs12, caps: &VmxCaps) -> Result<(), Check> {
    use Check::*;
    let act = v.guest_activity_state;
    let intr = v.guest_interruptibility_info;
    let info = v.vm_entry_intr_info_field;
    let injecting = info & intr_info::VALID != 0;
    let kind = intr_info::kind(info);
    let vec = intr_info::vector(info);
    const STI: u32 = 1;
    const MOV_SS: u32 = 2;
    const SMI: u32 = 4;
    const NMI: u32 = 8;

    ensure(
        act <= 3 && (act == 0 || caps.activity_states() & (1 << (act - 1)) != 0),
        GuestActivityState,
    )?;
    if act == 1 {
        ensure((v.guest_ss_ar_bytes >> 5) & 3 == 0, GuestActivityHltDpl)?;
    }
    if intr & (STI | MOV_SS) != 0 {
        ensure(act == 0, GuestActivityWithBlocking)?;
    }
    if injecting && act != 0 {
        let ok = match act {
            1 => matches!(
                (kind, vec),
                (intr_info::TYPE_EXTERNAL_INTERRUPT, _)
                    | (intr_info::TYPE_NMI, _)
                    | (intr_info::TYPE_HARD_EXCEPTION, 1 | 18)
                    | (intr_info::TYPE_OTHER_EVENT, 0)
            ),
            2 => matches!(
                (kind, vec),
                (intr_info::TYPE_NMI, _) | (intr_info::TYPE_HARD_EXCEPTION, 18)
            ),
            _ => false,
        };
        ensure(ok, GuestActivityEvent)?;
    }
    ensure(intr & !0xf == 0, GuestInterruptibilityReserved)?;
    ensure(intr & (STI | MOV_SS) != (STI | MOV_SS), GuestInterruptibilityStiMovSs)?;
    if v.guest_rflags & RFLAGS_IF == 0 {
        ensure(intr & STI == 0, GuestInterruptibilityStiWithoutIf)?;
    }
    if injecting && matches!(kind, intr_info::TYPE_EXTERNAL_INTERRUPT | intr_info::TYPE_NMI) {
        ensure(intr & (STI | MOV_SS) == 0, GuestInterruptibilityEvent)?;
    }
    ensure(intr & SMI == 0, GuestInterruptibilitySmi)?;
    if injecting
        && kind == intr_info::TYPE_NMI
        && v.pin_based_vm_exec_control & pin::VIRTUAL_NMIS != 0
    {
        ensure(intr & NMI == 0, GuestInterruptibilityNmi)?;
    }
    let pd = v.guest_pending_dbg_exceptions;
    ensure(pd & !(0xf | 1 << 12 | 1 << 14 | 1 << 16) == 0, GuestPendingDebugReserved)?;
    if intr & (STI | MOV_SS) != 0 || act == 1 {
        let tf = v.guest_rflags & RFLAGS_TF != 0;
        let btf = v.guest_ia32_debugctl & 2 != 0;
        let bs = pd & (1 << 14) != 0;
        ensure(bs == (tf && !btf), GuestPendingDebugBs)?;
    }
    Ok(())
}

/// PDPTEs for PAE paging outside IA-32e mode (SDM 26.3.1.6): from vmcs12 with EPT, from the
/// page at guest CR3 in L1 memory without. Failure qualification 2.
fn check_pdptes(v: &Vmcs12, maxphyaddr: u8, mem: &impl GuestMemory) -> Result<(), EntryFailure> {
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    if v.guest_cr0 & CR0_PG == 0 || v.guest_cr4 & CR4_PAE == 0 || ia32e {
        return Ok(());
    }
    let fail = EntryFailure::guest(Check::GuestPdpte, 2);
    let pdptes = if secondary_controls(v) & proc2::ENABLE_EPT != 0 {
        [v.guest_pdptr0, v.guest_pdptr1, v.guest_pdptr2, v.guest_pdptr3]
    } else {
        let base = v.guest_cr3 & 0xffff_ffe0;
        let mut p = [0u64; 4];
        for (i, e) in p.iter_mut().enumerate() {
            *e = mem.read_u64(L1Gpa(base + 8 * i as u64)).map_err(|_| fail)?;
        }
        p
    };
    for e in pdptes {
        // Present entries: bits 2:1, 8:5 and 63:MAXPHYADDR are reserved.
        if e & 1 != 0 && (e & 0x1e6 != 0 || !fits_phys_width(e, maxphyaddr)) {
            return Err(fail);
        }
    }
    Ok(())
}

/// The VM-entry MSR-load list (SDM 26.4): entries are checked in order; the qualification
/// of a failure is the 1-based number of the failing entry. (The image performs the loads
/// after a successful entry.)
pub fn check_msr_load_list(
    v: &Vmcs12,
    caps: &VmxCaps,
    l1: &impl L1Access,
) -> Result<(), EntryFailure> {
    let count = v.vm_entry_msr_load_count;
    let max = caps.max_msr_list_len();
    let fail = |n: u32, check| EntryFailure {
        reason: ExitReason::EntryFailMsrLoading,
        qualification: u64::from(n),
        check,
    };
    for i in 0..count.min(max) {
        let at = L1Gpa(v.vm_entry_msr_load_addr.wrapping_add(u64::from(i) * 16));
        let (Ok(lo), Ok(value)) = (l1.read_u64(at), l1.read_u64(L1Gpa(at.0.wrapping_add(8))))
        else {
            return Err(fail(i + 1, Check::MsrLoadEntry));
        };
        let index = lo as u32;
        let bad = lo >> 32 != 0
            || index >> 8 == 0x8
            || index == 0x9e
            || index == 0x9b
            || !l1.msr_load_allowed(index, value);
        if bad {
            return Err(fail(i + 1, Check::MsrLoadEntry));
        }
    }
    if count > max {
        return Err(fail(max + 1, Check::MsrLoadCount));
    }
    Ok(())
}

#[cfg(test)]
#[path = "checks_tests.rs"]
mod tests;
