//! Unit tests: each VM-entry check fails on a targeted corruption of a valid vmcs12, and
//! legal variants pass.

use super::*;
use crate::testutil::{TestL1, l1, valid_vmcs12};

const MAXPHY: u8 = 36;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Stage {
    Controls,
    Host,
    Guest,
}

fn run(v: &Vmcs12, l1m: &TestL1) -> Result<(), (Stage, Check)> {
    let caps = l1();
    check_controls(v, &caps, MAXPHY).map_err(|c| (Stage::Controls, c))?;
    check_tpr_threshold_vtpr(v, l1m).map_err(|c| (Stage::Controls, c))?;
    check_host_state(v, &caps, MAXPHY, true).map_err(|c| (Stage::Host, c))?;
    check_guest_state(v, &caps, MAXPHY, l1m).map_err(|f| (Stage::Guest, f.check))
}

fn mem() -> TestL1 {
    let mut m = TestL1::new(0x10_0000);
    m.mem.write_u32(L1Gpa(0x9000), crate::vmcs::VMCS12_REVISION).unwrap();
    // A shadow VMCS (indicator bit 31).
    m.mem.write_u32(L1Gpa(0x1e000), crate::vmcs::VMCS12_REVISION | 1 << 31).unwrap();
    m
}

type Mutation = fn(&mut Vmcs12);

const SOFT_INT: u32 = intr_info::VALID | intr_info::TYPE_SOFT_INTERRUPT | 0x80;
const GP_INJ: u32 = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 13 | 1 << 11;
const NMI_INJ: u32 = intr_info::VALID | intr_info::TYPE_NMI | 2;
const EXT_INJ: u32 = intr_info::VALID | 0x20;

/// A virtual-8086 guest (SDM 26.3.1.2: each of CS, SS, DS, ES, FS, GS has base selector * 16,
/// limit 0xffff and access rights 0xf3), under protected mode without paging.
fn v86(v: &mut Vmcs12) {
    v.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
    v.guest_ia32_efer = 0;
    v.guest_cr0 = 0x31;
    v.guest_rflags |= rflags::VM;
    for (i, (sel, base, limit, ar)) in [
        (
            &mut v.guest_cs_selector,
            &mut v.guest_cs_base,
            &mut v.guest_cs_limit,
            &mut v.guest_cs_ar_bytes,
        ),
        (
            &mut v.guest_ss_selector,
            &mut v.guest_ss_base,
            &mut v.guest_ss_limit,
            &mut v.guest_ss_ar_bytes,
        ),
        (
            &mut v.guest_ds_selector,
            &mut v.guest_ds_base,
            &mut v.guest_ds_limit,
            &mut v.guest_ds_ar_bytes,
        ),
        (
            &mut v.guest_es_selector,
            &mut v.guest_es_base,
            &mut v.guest_es_limit,
            &mut v.guest_es_ar_bytes,
        ),
        (
            &mut v.guest_fs_selector,
            &mut v.guest_fs_base,
            &mut v.guest_fs_limit,
            &mut v.guest_fs_ar_bytes,
        ),
        (
            &mut v.guest_gs_selector,
            &mut v.guest_gs_base,
            &mut v.guest_gs_limit,
            &mut v.guest_gs_ar_bytes,
        ),
    ]
    .into_iter()
    .enumerate()
    {
        *sel = 0x1000 + i as u16;
        *base = u64::from(*sel) << 4;
        *limit = 0xffff;
        *ar = 0xf3;
    }
}

#[rustfmt::skip]
const FAILING: &[(Mutation, Stage, Check)] = {
    use Check::*;
    use Stage::*;
    &[
        (|v| v.pin_based_vm_exec_control = 0, Controls, PinControls),
        (|v| v.pin_based_vm_exec_control |= pin::POSTED_INTERRUPTS, Controls, PinControls),
        (|v| v.cpu_based_vm_exec_control |= 1 << 18, Controls, ProcControls),
        // APIC virtualization is not offered, with or without TPR shadow.
        (|v| v.secondary_vm_exec_control |= proc2::VIRTUALIZE_X2APIC_MODE, Controls, SecondaryControls),
        (|v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 0x9010; }, Controls, ApicAccessAddress),
        (|v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 1 << 40; }, Controls, ApicAccessAddress),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.secondary_vm_exec_control |= proc2::VIRTUAL_INTERRUPT_DELIVERY; }, Controls, SecondaryControls),
        // TPR shadow (SDM 26.2.1.1): the virtual-APIC address page-aligned and inside
        // MAXPHYADDR, TPR threshold bits 31:4 zero, bits 3:0 at most VTPR bits 7:4 (VTPR at
        // 0xe080 is 0x20, at 0xf080 0x2f, at 0x0080 0).
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe800; }, Controls, VirtualApicAddress),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe001; }, Controls, VirtualApicAddress),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 1 << MAXPHY; }, Controls, VirtualApicAddress),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 0x10; }, Controls, TprThresholdReserved),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 1 << 31; }, Controls, TprThresholdReserved),
        // Bits 3:0 within VTPR but bits 31:4 set: the reserved bits are checked first.
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 0x12; }, Controls, TprThresholdReserved),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 3; }, Controls, TprThresholdAboveVtpr),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0; v.tpr_threshold = 1; }, Controls, TprThresholdAboveVtpr),
        // The address is checked before the threshold (a bad address, a bad threshold).
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe004; v.tpr_threshold = 0x13; }, Controls, VirtualApicAddress),
        (|v| v.secondary_vm_exec_control |= proc2::VIRTUALIZE_X2APIC_MODE, Controls, SecondaryControls),
        (|v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 0x9010; }, Controls, ApicAccessAddress),
        (|v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 1 << 40; }, Controls, ApicAccessAddress),
        (|v| { v.secondary_vm_exec_control |= proc2::VMCS_SHADOWING; v.vmread_bitmap = 0x5010; v.vmwrite_bitmap = 0x6000; }, Controls, VmreadVmwriteBitmapAddress),
        (|v| { v.secondary_vm_exec_control |= proc2::VMCS_SHADOWING; v.vmread_bitmap = 0x5000; v.vmwrite_bitmap = 1 << 40; }, Controls, VmreadVmwriteBitmapAddress),
        (|v| { v.secondary_vm_exec_control |= proc2::ENABLE_PML; v.pml_address = 0x1234; }, Controls, PmlAddress),
        (|v| { v.secondary_vm_exec_control = (v.secondary_vm_exec_control | proc2::ENABLE_PML) & !(proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST); v.pml_address = 0x5000; }, Controls, PmlWithoutEpt),
        (|v| v.cr3_target_count = 5, Controls, Cr3TargetCount),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_IO_BITMAPS; v.io_bitmap_a = 0x10; }, Controls, IoBitmapAddress),
        (|v| { v.cpu_based_vm_exec_control |= proc1::USE_IO_BITMAPS; v.io_bitmap_b = 1 << 40; }, Controls, IoBitmapAddress),
        (|v| v.msr_bitmap = 0x5008, Controls, MsrBitmapAddress),
        (|v| v.pin_based_vm_exec_control = (v.pin_based_vm_exec_control & !pin::NMI_EXITING) | pin::VIRTUAL_NMIS, Controls, VirtualNmisWithoutNmiExiting),
        (|v| v.cpu_based_vm_exec_control |= proc1::NMI_WINDOW_EXITING, Controls, NmiWindowWithoutVirtualNmis),
        (|v| v.virtual_processor_id = 0, Controls, VpidZero),
        (|v| v.ept_pointer = 0x6000 | 1 | 3 << 3, Controls, EptPointer),
        (|v| v.ept_pointer = 0x6000 | 6 | 4 << 3, Controls, EptPointer),
        (|v| v.ept_pointer = 0x6000 | 6 | 3 << 3 | 1 << 7, Controls, EptPointer),
        (|v| v.ept_pointer = 0x6000 | 6 | 3 << 3 | 1 << 8, Controls, EptPointer),
        (|v| v.ept_pointer = 1 << 40 | 6 | 3 << 3, Controls, EptPointer),
        (|v| v.secondary_vm_exec_control &= !proc2::ENABLE_EPT, Controls, UnrestrictedGuestWithoutEpt),
        (|v| { v.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS; v.vm_function_control = 2; }, Controls, VmFunctionControls),
        (|v| { v.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS; v.vm_function_control = 1; v.eptp_list_address = 0x8001; }, Controls, EptpListAddress),
        (|v| { v.secondary_vm_exec_control = (v.secondary_vm_exec_control | proc2::ENABLE_VM_FUNCTIONS) & !(proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST); v.vm_function_control = 1; v.eptp_list_address = 0x8000; }, Controls, VmFunctionControls),
        (|v| v.vm_exit_controls |= 1 << 24, Controls, ExitControls),
        (|v| v.vm_exit_controls |= exit::SAVE_PREEMPTION_TIMER, Controls, SavePreemptionTimerWithoutTimer),
        (|v| { v.vm_exit_msr_store_count = 1; v.vm_exit_msr_store_addr = 0x7008; }, Controls, ExitMsrStoreAddress),
        (|v| { v.vm_exit_msr_load_count = 2; v.vm_exit_msr_load_addr = 0xf_ffff_fff0; }, Controls, ExitMsrLoadAddress),
        // Three entries (48 bytes) from 32 bytes below the top of a 36-bit space.
        (|v| { v.vm_exit_msr_store_count = 3; v.vm_exit_msr_store_addr = 0xf_ffff_ffe0; }, Controls, ExitMsrStoreAddress),
        (|v| v.vm_entry_controls |= entry::ENTRY_TO_SMM, Controls, EntryControls),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | 1 << 8, Controls, EventType),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_OTHER_EVENT | 1, Controls, EventVector),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_NMI | 3, Controls, EventVector),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 32, Controls, EventVector),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 13, Controls, EventDeliverErrorCode),
        (|v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 6 | 1 << 11, Controls, EventDeliverErrorCode),
        (|v| { v.guest_cr0 = 0x30; v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.vm_entry_intr_info_field = GP_INJ; }, Controls, EventDeliverErrorCode),
        // Without unrestricted guest an injected #GP delivers an error code even if guest
        // CR0.PE is 0 (which the guest-state checks reject later: controls come first).
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_cr0 = 0x30; v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.vm_entry_intr_info_field = GP_INJ & !(1 << 11); }, Controls, EventDeliverErrorCode),
        (|v| v.vm_entry_intr_info_field = GP_INJ | 1 << 20, Controls, EventReservedBits),
        (|v| { v.vm_entry_intr_info_field = GP_INJ; v.vm_entry_exception_error_code = 1 << 16; }, Controls, EventErrorCode),
        (|v| { v.vm_entry_intr_info_field = SOFT_INT; v.vm_entry_instruction_len = 0; }, Controls, EventInstructionLength),
        (|v| { v.vm_entry_intr_info_field = SOFT_INT; v.vm_entry_instruction_len = 16; }, Controls, EventInstructionLength),
        (|v| { v.vm_entry_msr_load_count = 1; v.vm_entry_msr_load_addr = 0x7004; }, Controls, EntryMsrLoadAddress),
        (|v| v.host_cr0 &= !(1 << 5), Host, HostCr0),
        (|v| v.host_cr4 &= !(1 << 13), Host, HostCr4),
        (|v| v.host_cr3 = 1 << 40, Host, HostCr3),
        (|v| v.host_ia32_sysenter_eip = 1 << 47, Host, HostSysenterCanonical),
        (|v| { v.vm_exit_controls |= exit::LOAD_IA32_PAT; v.host_ia32_pat = 2; }, Host, HostPat),
        (|v| v.host_ia32_efer &= !(1 << 10), Host, HostEfer),
        (|v| v.host_ia32_efer &= !(1 << 8), Host, HostEfer),
        (|v| v.host_ia32_efer |= 1 << 3, Host, HostEfer),
        (|v| v.host_ss_selector = 0x13, Host, HostSelectorRplTi),
        (|v| v.host_tr_selector = 0x1c, Host, HostSelectorRplTi),
        (|v| v.host_cs_selector = 0, Host, HostCsNull),
        (|v| v.host_tr_selector = 0, Host, HostTrNull),
        (|v| v.host_gs_base = 0x8000_0000_0000, Host, HostBaseCanonical),
        (|v| { v.vm_exit_controls &= !(exit::HOST_ADDRESS_SPACE_SIZE | exit::LOAD_IA32_EFER); }, Host, HostAddressSpaceSize),
        (|v| v.host_cr4 &= !(1 << 5), Host, HostCr4Pae),
        (|v| v.host_rip = 0x8000_0000_0000, Host, HostRip),
        (|v| v.guest_cr0 &= !(1 << 5), Guest, GuestCr0),
        (|v| v.guest_cr0 = 0x8000_0030, Guest, GuestCr0PgWithoutPe),
        (|v| v.guest_cr4 &= !(1 << 13), Guest, GuestCr4),
        (|v| { v.vm_entry_controls |= entry::LOAD_DEBUG_CONTROLS; v.guest_ia32_debugctl = 1 << 2; }, Guest, GuestDebugctl),
        (|v| v.guest_cr4 &= !(1 << 5), Guest, GuestIa32eWithoutPaging),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr4 |= 1 << 17; }, Guest, GuestPcideOutsideIa32e),
        (|v| v.guest_cr3 = 1 << 40, Guest, GuestCr3),
        (|v| { v.vm_entry_controls |= entry::LOAD_DEBUG_CONTROLS; v.guest_dr7 = 1 << 32; }, Guest, GuestDr7),
        (|v| v.guest_sysenter_esp = 0x8000_0000_0000, Guest, GuestSysenterCanonical),
        (|v| { v.vm_entry_controls |= entry::LOAD_IA32_PAT; v.guest_ia32_pat = 3; }, Guest, GuestPat),
        (|v| v.guest_ia32_efer = 1 << 8, Guest, GuestEfer),
        // With paging, EFER.LME must equal "IA-32e mode guest" (SDM 26.3.1.1).
        (|v| v.guest_ia32_efer = 1 << 10, Guest, GuestEfer),
        // An IA-32e guest without CR0.PG (CR4.PAE is cleared in the case above).
        (|v| v.guest_cr0 = 0x31, Guest, GuestIa32eWithoutPaging),
        (|v| v.guest_tr_selector = 0x1c, Guest, GuestTrTi),
        (|v| { v.guest_ldtr_ar_bytes = 0x82; v.guest_ldtr_selector = 4; }, Guest, GuestLdtrTi),
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_ss_selector = 0x13; }, Guest, GuestSsRpl),
        (|v| v.guest_fs_base = 0x8000_0000_0000, Guest, GuestSegmentBase),
        (|v| v.guest_cs_base = 1 << 32, Guest, GuestSegmentBase),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.guest_rflags |= rflags::VM; }, Guest, GuestV86Segment),
        // Virtual-8086 segments: base, limit and access rights each checked.
        (|v| { v86(v); v.guest_ds_base += 1; }, Guest, GuestV86Segment),
        (|v| { v86(v); v.guest_es_limit = 0xfffe; }, Guest, GuestV86Segment),
        (|v| { v86(v); v.guest_fs_ar_bytes = 0xf2; }, Guest, GuestV86Segment),
        // RFLAGS.VM with CR0.PE 0 (real mode under unrestricted guest).
        (|v| { v86(v); v.guest_cr0 = 0x30; }, Guest, GuestRflagsVm),
        // Bits 63:32 of a usable DS base.
        (|v| v.guest_ds_base = 1 << 32, Guest, GuestSegmentBase),
        // Real mode (CR0.PE 0): SS.DPL must be 0 even with CS.DPL equal to it.
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr0 = 0x30; v.guest_cs_ar_bytes = 0xfb; v.guest_cs_limit = 0xffff; v.guest_ss_ar_bytes = 0xf3; v.guest_ss_limit = 0xffff; }, Guest, GuestSsDpl),
        // CS.DPL rules by CS type (SDM 26.3.1.2): type 3 needs DPL 0, types 9 and 11 need
        // DPL equal to SS.DPL (here 0 against 3).
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr0 = 0x31; v.guest_cs_ar_bytes = 0xc0b3; v.guest_ss_ar_bytes = 0xc0b3; }, Guest, GuestCsDpl),
        (|v| v.guest_ss_ar_bytes = 0xc0f3, Guest, GuestCsDpl),
        // CS type 3 (unrestricted guest, protected mode): SS.DPL must be 0.
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr0 = 0x31; v.guest_cs_ar_bytes = 0xc093; v.guest_ss_ar_bytes = 0xc0b3; }, Guest, GuestSsDpl),
        // Without unrestricted guest, a usable data or readable non-conforming code segment
        // (types 0-11) needs DPL >= RPL.
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_es_ar_bytes = 0xc09b; v.guest_es_selector = 0x13; }, Guest, GuestDataSegmentDpl),
        (|v| v.guest_cs_ar_bytes = 0xa091, Guest, GuestCsType),
        (|v| v.guest_ss_ar_bytes = 0xc09b, Guest, GuestSsType),
        (|v| v.guest_ds_ar_bytes = 0xc092, Guest, GuestDataSegmentType),
        (|v| v.guest_es_ar_bytes = 0xc099, Guest, GuestDataSegmentType),
        (|v| v.guest_cs_ar_bytes = 0xa08b, Guest, GuestSegmentS),
        (|v| v.guest_cs_ar_bytes = 0xa0bb, Guest, GuestCsDpl),
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_ss_ar_bytes = 0xc0b3; v.guest_cs_ar_bytes = 0xa0bb; }, Guest, GuestSsDpl),
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_ds_selector = 0x13; }, Guest, GuestDataSegmentDpl),
        (|v| v.guest_gs_ar_bytes = 0xc013, Guest, GuestSegmentPresent),
        (|v| v.guest_fs_ar_bytes = 0xc193, Guest, GuestSegmentReserved),
        (|v| v.guest_cs_ar_bytes = 0xe09b, Guest, GuestCsLongAndDefault),
        (|v| v.guest_ds_ar_bytes = 0x4093, Guest, GuestSegmentGranularity),
        (|v| v.guest_tr_ar_bytes = 0x83, Guest, GuestTr),
        (|v| v.guest_tr_ar_bytes = 0x1008b, Guest, GuestTr),
        (|v| v.guest_ldtr_ar_bytes = 0x83, Guest, GuestLdtr),
        (|v| v.guest_gdtr_limit = 0x1_0000, Guest, GuestDescriptorTable),
        (|v| v.guest_rip = 0x8000_0000_0000, Guest, GuestRip),
        // Compatibility mode (IA-32e guest, CS.L 0) and legacy mode with CS.L 1: bits 63:32
        // of RIP must be 0 (SDM 26.3.1.4).
        (|v| { v.guest_cs_ar_bytes = 0xc09b; v.guest_rip = 1 << 32; }, Guest, GuestRip),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_rip = 1 << 32; }, Guest, GuestRip),
        // Without unrestricted guest CR0.PE is fixed to 1.
        (|v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_cr0 = 0x30; v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; }, Guest, GuestCr0),
        (|v| v.guest_rflags = 2 | 1 << 15, Guest, GuestRflagsReserved),
        (|v| v.guest_rflags |= rflags::VM, Guest, GuestRflagsVm),
        (|v| v.vm_entry_intr_info_field = EXT_INJ, Guest, GuestRflagsIfForInterrupt),
        (|v| v.guest_activity_state = 2, Guest, GuestActivityState),
        (|v| v.guest_activity_state = 9, Guest, GuestActivityState),
        (|v| { v.guest_activity_state = 1; v.guest_ss_ar_bytes = 0xc0f3; v.guest_cs_ar_bytes = 0xa0fb; v.guest_ss_selector = 0x13; v.guest_cs_selector = 0xb; }, Guest, GuestActivityHltDpl),
        (|v| { v.guest_activity_state = 1; v.guest_interruptibility_info = 2; }, Guest, GuestActivityWithBlocking),
        (|v| { v.guest_activity_state = 1; v.vm_entry_intr_info_field = GP_INJ; }, Guest, GuestActivityEvent),
        (|v| v.guest_interruptibility_info = 1 << 5, Guest, GuestInterruptibilityReserved),
        (|v| { v.guest_rflags |= rflags::IF; v.guest_interruptibility_info = 3; }, Guest, GuestInterruptibilityStiMovSs),
        (|v| v.guest_interruptibility_info = 1, Guest, GuestInterruptibilityStiWithoutIf),
        (|v| { v.guest_rflags |= rflags::IF; v.guest_interruptibility_info = 2; v.vm_entry_intr_info_field = EXT_INJ; }, Guest, GuestInterruptibilityEvent),
        (|v| v.guest_interruptibility_info = 4, Guest, GuestInterruptibilitySmi),
        (|v| { v.pin_based_vm_exec_control |= pin::VIRTUAL_NMIS; v.guest_interruptibility_info = 8; v.vm_entry_intr_info_field = NMI_INJ; }, Guest, GuestInterruptibilityNmi),
        (|v| v.guest_pending_dbg_exceptions = 1 << 4, Guest, GuestPendingDebugReserved),
        (|v| { v.guest_activity_state = 1; v.guest_rflags |= rflags::TF; }, Guest, GuestPendingDebugBs),
        (|v| { v.guest_activity_state = 1; v.guest_pending_dbg_exceptions = 1 << 14; }, Guest, GuestPendingDebugBs),
        // Blocking by MOV SS with RFLAGS.TF and no pending single-step (BS).
        (|v| { v.guest_rflags |= rflags::TF; v.guest_interruptibility_info = 2; }, Guest, GuestPendingDebugBs),
        (|v| v.vmcs_link_pointer = 0x9008, Guest, GuestVmcsLinkPointer),
        (|v| v.vmcs_link_pointer = 0xa000, Guest, GuestVmcsLinkPointer),
        // The indicator must equal the "VMCS shadowing" control.
        (|v| v.vmcs_link_pointer = 0x1e000, Guest, GuestVmcsLinkPointer),
        (|v| { v.secondary_vm_exec_control |= proc2::VMCS_SHADOWING; v.vmread_bitmap = 0x5000; v.vmwrite_bitmap = 0x6000; v.vmcs_link_pointer = 0x9000; }, Guest, GuestVmcsLinkPointer),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.guest_pdptr2 = 1 | 1 << 5; }, Guest, GuestPdpte),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.secondary_vm_exec_control = 0; v.guest_cr3 = 0xb000; }, Guest, GuestPdpte),
        (|v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.secondary_vm_exec_control = 0; v.guest_cr3 = 0xd000; }, Guest, GuestPdpte),
        // The VM-entry MSR-load list is not checked here: the image loads it after the
        // merge, entry by entry (`msr_lists::load`, tested there).
    ]
};

#[rustfmt::skip]
const PASSING: &[Mutation] = &[
    |_| {},
    // EPT accessed/dirty flags (offered when the hardware has them).
    |v| v.ept_pointer |= 1 << 6,
    // Page-modification logging (emulated).
    |v| { v.secondary_vm_exec_control |= proc2::ENABLE_PML; v.pml_address = 0x5000; },
    // Unrestricted guest: real mode with paging off.
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr0 = 0x30; v.guest_cs_ar_bytes = 0x9b; v.guest_cs_limit = 0xffff; v.guest_ss_ar_bytes = 0x93; v.guest_ss_limit = 0xffff; },
    // CS type 3 with unrestricted guest.
    |v| { v.guest_cs_ar_bytes = 0xa093; v.guest_cs_ar_bytes = 0xc093; v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cr0 = 0x31; },
    // Unusable data segments are not checked.
    |v| { v.guest_ds_ar_bytes = 1 << 16; v.guest_fs_ar_bytes = 1 << 16 | 0xf00; },
    // Events that are legal to inject.
    |v| { v.guest_rflags |= rflags::IF; v.vm_entry_intr_info_field = EXT_INJ; },
    |v| v.vm_entry_intr_info_field = GP_INJ,
    |v| { v.vm_entry_intr_info_field = SOFT_INT; v.vm_entry_instruction_len = 2; },
    |v| v.vm_entry_intr_info_field = NMI_INJ,
    // HLT with an external interrupt, interrupt-window with STI blocking and IF.
    |v| { v.guest_activity_state = 1; v.guest_rflags |= rflags::IF; v.vm_entry_intr_info_field = EXT_INJ; },
    |v| { v.guest_rflags |= rflags::IF | rflags::TF; v.guest_interruptibility_info = 1; v.guest_pending_dbg_exceptions = 1 << 14; },
    // CR3-target list, I/O bitmaps, valid link pointer, MSR-load list, exit MSR lists.
    |v| { v.cr3_target_count = 4; v.cpu_based_vm_exec_control |= proc1::USE_IO_BITMAPS; v.io_bitmap_a = 0x1000; v.io_bitmap_b = 0x2000; },
    |v| v.vmcs_link_pointer = 0x9000,
    // The APIC-access address is checked only when APIC accesses are virtualized.
    |v| v.apic_access_addr = 0x9010,
    // The APIC-access page, with and without the TPR shadow.
    |v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 0x9000; },
    |v| { v.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES; v.apic_access_addr = 0x9000; v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 3; },
    // The VMREAD/VMWRITE bitmap addresses are checked only with VMCS shadowing on.
    |v| { v.vmread_bitmap = 0x5010; v.vmwrite_bitmap = 1 << 40; },
    // VMCS shadowing: bitmaps, a shadow VMCS or none.
    |v| { v.secondary_vm_exec_control |= proc2::VMCS_SHADOWING; v.vmread_bitmap = 0x5000; v.vmwrite_bitmap = 0x6000; v.vmcs_link_pointer = 0x1e000; },
    |v| { v.secondary_vm_exec_control |= proc2::VMCS_SHADOWING; v.vmread_bitmap = 0x5000; v.vmwrite_bitmap = 0x6000; },
    |v| { v.vm_entry_msr_load_count = 1; v.vm_entry_msr_load_addr = 0x7100; },
    |v| { v.vm_exit_msr_store_count = 3; v.vm_exit_msr_store_addr = 0x7200; },
    // An MSR list whose last byte is the last byte of a 36-bit physical-address space.
    |v| { v.vm_exit_msr_store_count = 3; v.vm_exit_msr_store_addr = 0xf_ffff_ffd0; },
    // Bitmap addresses are checked only when their control is 1 (SDM 26.2.1.1).
    |v| { v.cpu_based_vm_exec_control &= !proc1::USE_MSR_BITMAPS; v.msr_bitmap = 0x5008; v.io_bitmap_a = 0x10; v.io_bitmap_b = 1 << 40; },
    // PAT loaded on entry and exit with every legal memory type (0, 1, 4, 5, 6, 7).
    |v| { v.vm_exit_controls |= exit::LOAD_IA32_PAT; v.vm_entry_controls |= entry::LOAD_IA32_PAT; v.host_ia32_pat = 0x0706_0504_0100_0706; v.guest_ia32_pat = 0x0001_0405_0607_0001; },
    // PAE paging with valid PDPTEs in memory (no EPT).
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.secondary_vm_exec_control = 0; v.guest_cr3 = 0xc000; },
    // EPTP switching with a list.
    |v| { v.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS; v.vm_function_control = 1; v.eptp_list_address = 0x8000; },
    // Virtual NMIs with NMI-window exiting.
    |v| { v.pin_based_vm_exec_control |= pin::VIRTUAL_NMIS; v.cpu_based_vm_exec_control |= proc1::NMI_WINDOW_EXITING; },
    // Controls whose address or ID fields are checked only when the control is 1 (SDM
    // 26.2.1.1): VPID 0, an invalid EPTP, PML and EPTP-list addresses, VM-function controls.
    |v| { v.secondary_vm_exec_control &= !proc2::ENABLE_VPID; v.virtual_processor_id = 0; },
    |v| { v.secondary_vm_exec_control &= !(proc2::ENABLE_EPT | proc2::UNRESTRICTED_GUEST); v.ept_pointer = 0x6001; v.pml_address = 0x5001; v.vm_function_control = 2; v.eptp_list_address = 0x8001; },
    // VM functions on, EPTP switching off: the EPTP-list address is not checked.
    |v| { v.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS; v.vm_function_control = 0; v.eptp_list_address = 0x8001; },
    // An event field without the valid bit is not checked (SDM 26.2.1.3).
    |v| v.vm_entry_intr_info_field = 1 << 8 | 1 << 20,
    // The error-code field is checked only if an error code is delivered.
    |v| { v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 6; v.vm_entry_exception_error_code = 1 << 16; },
    // PAT and EFER values are checked only if they are loaded (SDM 26.2.2, 26.3.1.1).
    |v| { v.host_ia32_pat = 2; v.guest_ia32_pat = 3; },
    |v| { v.vm_exit_controls &= !exit::LOAD_IA32_EFER; v.vm_entry_controls &= !entry::LOAD_IA32_EFER; v.host_ia32_efer = 1 << 3; v.guest_ia32_efer = 1 << 3; },
    // A canonical RIP above 4 GiB in 64-bit mode.
    |v| v.guest_rip = 0xffff_8000_0000_1000,
    // DEBUGCTL and DR7 are checked only when the debug controls are loaded.
    |v| { v.guest_ia32_debugctl = 1 << 2; v.guest_dr7 = 1 << 32; },
    // EFER.LME need not match "IA-32e mode guest" while CR0.PG is 0.
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_cr0 = 0x31; v.guest_ia32_efer = 1 << 8; },
    // A virtual-8086 guest.
    v86,
    // Outside IA-32e mode: CS.L and CS.D both 1, a busy 16-bit TSS (type 3) in TR.
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xe09b; v.guest_tr_ar_bytes = 0x83; },
    // With unrestricted guest SS.RPL need not equal CS.RPL.
    |v| v.guest_ss_selector = 0x13,
    // A read-only data segment in DS and a readable code segment in GS.
    |v| { v.guest_ds_ar_bytes = 0xc091; v.guest_gs_ar_bytes = 0xc09b; },
    // Conforming CS (type 15) with CS.DPL equal to SS.DPL.
    |v| v.guest_cs_ar_bytes = 0xa09f,
    // Without unrestricted guest: the DPL >= RPL rule skips unusable segments and
    // conforming code segments (types 12-15).
    |v| { v.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST; v.guest_ds_ar_bytes = 1 << 16; v.guest_ds_selector = 0x13; v.guest_es_ar_bytes = 0xc09f; v.guest_es_selector = 0x13; },
    // Compatibility mode: IA-32e guest with CS.L 0 and CS.D 1.
    |v| v.guest_cs_ar_bytes = 0xc09b,
    // A usable LDT.
    |v| { v.guest_ldtr_ar_bytes = 0x82; v.guest_ldtr_selector = 0x28; v.guest_ldtr_limit = 0xfff; },
    // Blocking by NMI (SDM 26.3.1.5) is refused only with virtual NMIs *and* an injected
    // NMI: not without an injection, not with another event, not without virtual NMIs.
    |v| { v.pin_based_vm_exec_control |= pin::VIRTUAL_NMIS; v.guest_interruptibility_info = 8; },
    |v| { v.pin_based_vm_exec_control |= pin::VIRTUAL_NMIS; v.guest_interruptibility_info = 8; v.vm_entry_intr_info_field = GP_INJ; },
    |v| { v.guest_interruptibility_info = 8; v.vm_entry_intr_info_field = NMI_INJ; },
    |v| { v.pin_based_vm_exec_control |= pin::VIRTUAL_NMIS; v.vm_entry_intr_info_field = NMI_INJ; },
    // Pending debug exceptions B0-B3, enabled breakpoint (12) and RTM (16).
    |v| v.guest_pending_dbg_exceptions = 0xf | 1 << 12 | 1 << 16,
    // RFLAGS.TF without STI/MOV-SS blocking or HLT: BS is not checked.
    |v| v.guest_rflags |= rflags::TF,
    // PDPTEs are checked only under PAE paging outside IA-32e mode.
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.guest_cr0 = 0x31; v.guest_pdptr2 = 1 | 1 << 5; },
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.guest_cr4 = 0x2000; v.guest_pdptr2 = 1 | 1 << 5; },
    |v| v.guest_pdptr2 = 1 | 1 << 5,
    // Non-present PDPTEs may have reserved bits set.
    |v| { v.vm_entry_controls &= !entry::IA32E_MODE_GUEST; v.guest_ia32_efer = 0; v.guest_cs_ar_bytes = 0xc09b; v.guest_pdptr2 = 1 << 5 | 1 << 1; },
    // An MSR-load list of exactly the maximum length (512 entries; index 0, value 0).
    |v| { v.vm_entry_msr_load_count = 512; v.vm_entry_msr_load_addr = 0x20000; },
    // Hardware exception 31, the highest vector one may inject.
    |v| v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 31,
    // Neither NMI exiting nor virtual NMIs.
    |v| v.pin_based_vm_exec_control &= !(pin::NMI_EXITING | pin::VIRTUAL_NMIS),
    // Preemption timer saved.
    |v| { v.pin_based_vm_exec_control |= pin::PREEMPTION_TIMER; v.vm_exit_controls |= exit::SAVE_PREEMPTION_TIMER; },
    // TPR shadow: threshold up to VTPR bits 7:4 (2 at 0xe000, 2 at 0xf000 whose bits 3:0
    // do not count, 0 at 0), with or without CR8 exiting.
    |v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xe000; v.tpr_threshold = 2; },
    |v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = 0xf000; v.tpr_threshold = 2; },
    |v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW | proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING; v.virtual_apic_page_addr = 0; },
    // The last page below MAXPHYADDR; a page outside L1's memory reads as all ones.
    |v| { v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW; v.virtual_apic_page_addr = (1 << MAXPHY) - 0x1000; v.tpr_threshold = 15; },
    // Without TPR shadow the address and threshold are not checked, nor CR8 exiting.
    |v| { v.virtual_apic_page_addr = 0xe004; v.tpr_threshold = 0xffff_ffff; v.cpu_based_vm_exec_control &= !(proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING); },
];

fn memory_for_cases() -> TestL1 {
    let mut m = mem();
    // MSR-load entry 0x7000: SMBASE (illegal). 0x7100: IA32_SYSENTER_CS (legal).
    m.mem.write_u64(L1Gpa(0x7000), 0x9e).unwrap();
    m.mem.write_u64(L1Gpa(0x7100), 0x174).unwrap();
    // 0x7300: IA32_SYSENTER_CS with bit 32 set. 0x7310: the x2APIC TPR (0x808).
    m.mem.write_u64(L1Gpa(0x7300), 1 << 32 | 0x174).unwrap();
    m.mem.write_u64(L1Gpa(0x7310), 0x808).unwrap();
    // PDPTEs: page 0xb000 has a reserved bit set in entry 1, page 0xc000 is clean.
    m.mem.write_u64(L1Gpa(0xb008), 1 | 1 << 7).unwrap();
    m.mem.write_u64(L1Gpa(0xc000), 0x1001).unwrap();
    // Page 0xd000: entry 3 (the last) has reserved bit 2 set.
    m.mem.write_u64(L1Gpa(0xd018), 1 | 1 << 2).unwrap();
    // VTPR of virtual-APIC pages 0xe000 and 0xf000.
    m.mem.write(L1Gpa(0xe000 + VTPR_OFFSET), &[0x20]).unwrap();
    m.mem.write(L1Gpa(0xf000 + VTPR_OFFSET), &[0x2f]).unwrap();
    m
}

#[test]
fn each_check_fails_on_its_corruption() {
    let m = memory_for_cases();
    let mut wrong = Vec::new();
    for (i, (mutate, stage, check)) in FAILING.iter().enumerate() {
        let mut v = valid_vmcs12(&l1());
        mutate(&mut v);
        let got = run(&v, &m);
        if got != Err((*stage, *check)) {
            wrong.push(format!("case {i}: want {check:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn legal_variants_pass() {
    let m = memory_for_cases();
    let mut wrong = Vec::new();
    for (i, mutate) in PASSING.iter().enumerate() {
        let mut v = valid_vmcs12(&l1());
        mutate(&mut v);
        if let Err(e) = run(&v, &m) {
            wrong.push(format!("case {i}: {e:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn host_address_space_outside_ia32e() {
    let caps = l1();
    let mut v = valid_vmcs12(&caps);
    // L1 in legacy mode may not launch a 64-bit host or IA-32e guest.
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Err(Check::HostIa32eGuestOutsideIa32e));
    v.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Err(Check::HostAddressSpaceSize));
    v.vm_exit_controls &= !(exit::HOST_ADDRESS_SPACE_SIZE | exit::LOAD_IA32_EFER);
    v.host_rip = 0x1000;
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Ok(()));
    v.host_cr4 |= 1 << 17;
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Err(Check::HostCr4Pcide));
    v.host_cr4 &= !(1 << 17);
    v.host_ss_selector = 0;
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Err(Check::HostSsNull));
    v.host_ss_selector = 0x10;
    v.host_rip = 1 << 32;
    assert_eq!(check_host_state(&v, &caps, MAXPHY, false), Err(Check::HostRip));
}

#[test]
fn qualifications_and_sections() {
    let caps = l1();
    let m = memory_for_cases();
    let mut v = valid_vmcs12(&caps);
    v.vmcs_link_pointer = 0x9008;
    let f = check_guest_state(&v, &caps, MAXPHY, &m).unwrap_err();
    assert_eq!((f.qualification, f.exit_reason()), (4, 33 | 1 << 31));
    v.vmcs_link_pointer = u64::MAX;
    v.guest_pdptr0 = 1 | 1 << 1;
    v.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
    v.guest_ia32_efer = 0;
    v.guest_cs_ar_bytes = 0xc09b;
    assert_eq!(check_guest_state(&v, &caps, MAXPHY, &m).unwrap_err().qualification, 2);
    // Blocking by STI with an injected NMI: qualification 3 (SDM 26.8); with an external
    // interrupt, or blocking by MOV SS, the default 0.
    let mut v = valid_vmcs12(&caps);
    v.guest_rflags |= rflags::IF;
    for (intr, info, check, qualification) in [
        (1, NMI_INJ, Check::GuestInterruptibilityNmiSti, 3),
        (1, EXT_INJ, Check::GuestInterruptibilityEvent, 0),
        (2, NMI_INJ, Check::GuestInterruptibilityEvent, 0),
    ] {
        v.guest_interruptibility_info = intr;
        v.vm_entry_intr_info_field = info;
        let f = check_guest_state(&v, &caps, MAXPHY, &m).unwrap_err();
        assert_eq!((f.check, f.qualification), (check, qualification), "{intr} {info:#x}");
    }
    assert_eq!(Check::GuestInterruptibilityNmiSti.section(), "26.3.1.5");
    assert_eq!(Check::GuestPdpte.section(), "26.3.1.6");
    assert_eq!(Check::HostEfer.section(), "26.2.2");
    assert_eq!(Check::MsrLoadEntry.section(), "26.4");
}

#[test]
fn other_event_injection_needs_monitor_trap_flag() {
    // SDM 26.2.1.3: type 7 (other event) is legal only if the monitor-trap-flag control
    // may be 1; no other type depends on it.
    let mut caps = l1();
    let mtf = u64::from(proc1::MONITOR_TRAP_FLAG) << 32;
    caps.procbased &= !mtf;
    caps.true_procbased &= !mtf;
    let mut v = valid_vmcs12(&caps);
    v.vm_entry_intr_info_field = intr_info::VALID | intr_info::TYPE_OTHER_EVENT;
    assert_eq!(check_controls(&v, &caps, MAXPHY), Err(Check::EventType));
    assert_eq!(check_controls(&v, &l1(), MAXPHY), Ok(()));
    for info in [NMI_INJ, GP_INJ, EXT_INJ] {
        v.vm_entry_intr_info_field = info;
        assert_eq!(check_controls(&v, &caps, MAXPHY), Ok(()), "{info:#x}");
    }
    v.vm_entry_intr_info_field = SOFT_INT;
    v.vm_entry_instruction_len = 2;
    assert_eq!(check_controls(&v, &caps, MAXPHY), Ok(()));
}

#[test]
fn shutdown_and_wait_for_sipi_when_offered() {
    // L1 is offered HLT only; under capabilities that also offer shutdown (IA32_VMX_MISC bit
    // 7) and wait-for-SIPI (bit 8) those states are legal, and each takes only its own events
    // (SDM 26.3.1.5): shutdown NMI and #MC, wait-for-SIPI none.
    let mut caps = l1();
    let m = memory_for_cases();
    let state =
        |v: &Vmcs12, caps: &VmxCaps| check_guest_state(v, caps, MAXPHY, &m).map_err(|f| f.check);
    let mut v = valid_vmcs12(&caps);
    v.guest_activity_state = 2;
    assert_eq!(state(&v, &caps), Err(Check::GuestActivityState));
    caps.misc |= 1 << 7;
    assert_eq!(state(&v, &caps), Ok(()));
    let mc = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 18;
    for (info, ok) in [(NMI_INJ, true), (mc, true), (EXT_INJ, false), (GP_INJ, false)] {
        v.vm_entry_intr_info_field = info;
        v.guest_rflags |= rflags::IF;
        let want = if ok { Ok(()) } else { Err(Check::GuestActivityEvent) };
        assert_eq!(state(&v, &caps), want, "shutdown, event {info:#x}");
    }
    v.vm_entry_intr_info_field = 0;
    v.guest_activity_state = 3;
    assert_eq!(state(&v, &caps), Err(Check::GuestActivityState));
    caps.misc |= 1 << 8;
    assert_eq!(state(&v, &caps), Ok(()));
    v.vm_entry_intr_info_field = NMI_INJ;
    assert_eq!(state(&v, &caps), Err(Check::GuestActivityEvent));
}

/// The threshold-against-VTPR rule holds only while "virtualize APIC accesses" and
/// "virtual-interrupt delivery" are both 0 (SDM 26.2.1.1); with either, a threshold above
/// VTPR passes this check (those controls have rules of their own, and L0 offers neither).
#[test]
fn tpr_threshold_against_vtpr_only_without_apic_virtualization() {
    let mut m = TestL1::new(0x10_0000);
    m.mem.write(L1Gpa(0xe000 + VTPR_OFFSET), &[0x20]).unwrap();
    let mut v = valid_vmcs12(&l1());
    v.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW | proc1::ACTIVATE_SECONDARY_CONTROLS;
    v.virtual_apic_page_addr = 0xe000;
    v.tpr_threshold = 3;
    assert_eq!(check_tpr_threshold_vtpr(&v, &m), Err(Check::TprThresholdAboveVtpr));
    for control in [proc2::VIRTUALIZE_APIC_ACCESSES, proc2::VIRTUAL_INTERRUPT_DELIVERY] {
        let mut w = v.clone();
        w.secondary_vm_exec_control |= control;
        assert_eq!(check_tpr_threshold_vtpr(&w, &m), Ok(()), "{control:#x}");
    }
    v.tpr_threshold = 2;
    assert_eq!(check_tpr_threshold_vtpr(&v, &m), Ok(()));
}
