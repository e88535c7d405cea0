//! The way back from L2 to L1: vmcs12 from vmcs02 on a reflected exit (SDM Vol. 3C 27.2-27.3,
//! 28.2), L1's host state into vmcs01 (27.5), and re-injection of an interrupted event delivery
//! for exits L0 handles itself (28.2.4).

use super::merge::for_each_guest_hot;
#[cfg(doc)]
use super::merge::{GUEST_HOT, GUEST_PLAIN};
use crate::arch::{cr4, efer};
use crate::caps::{VmxCaps, entry, exit};
use crate::exits::{ExitInfo, intr_info};
use crate::vmcs::{DirtySet, Vmcs, Vmcs12, VmcsField as F};

/// How much guest state [`sync_vmcs12`] copies back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncScope {
    /// [`GUEST_HOT`] and the control registers: enough for L1 to handle the common exits.
    /// L2 can change the [`GUEST_RARE`] fields (segments, descriptor tables, SYSENTER MSRs,
    /// PDPTEs) without exiting, so after a hot sync vmcs12's rare fields are stale and their
    /// values are still in vmcs02: L0 must [`sync_vmcs12_rare`] before anything reads or
    /// writes them (Linux `need_sync_vmcs02_to_vmcs12_rare`; see
    /// [`NestedVmx::rare_stale`](super::NestedVmx::rare_stale)).
    Hot,
    /// Every guest field (SDM 27.3).
    Full,
}

/// The guest fields of [`GUEST_PLAIN`] not in [`GUEST_HOT`]: what a [`SyncScope::Hot`] sync
/// leaves in vmcs02. None of them is shadowed (L1's VMREAD/VMWRITE of one always exits to L0,
/// which syncs them first).
pub const GUEST_RARE: &[F] = &[
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
    F::GuestDsArBytes,
    F::GuestFsArBytes,
    F::GuestGsArBytes,
    F::GuestLdtrArBytes,
    F::GuestTrArBytes,
    F::GuestFsBase,
    F::GuestGsBase,
    F::GuestLdtrBase,
    F::GuestTrBase,
    F::GuestGdtrBase,
    F::GuestIdtrBase,
    F::GuestSysenterCs,
    F::GuestSysenterEsp,
    F::GuestSysenterEip,
    F::GuestPdpte0,
    F::GuestPdpte1,
    F::GuestPdpte2,
    F::GuestPdpte3,
];

/// [`GUEST_RARE`] as a set.
pub const GUEST_RARE_SET: DirtySet = DirtySet::of(GUEST_RARE);

crate::vmcs::field_list!(
    /// The exit-information fields [`write_exit_info`] writes.
    pub EXIT_INFO_FIELDS, for_each_exit_info_field: [
        VmExitReason,
        ExitQualification,
        GuestLinearAddress,
        GuestPhysicalAddress,
        VmExitInterruptionInfo,
        VmExitInterruptionErrorCode,
        IdtVectoringInfo,
        IdtVectoringErrorCode,
        VmExitInstructionLen,
        VmxInstructionInfo,
    ]
);

/// Every vmcs12 field besides [`EXIT_INFO_FIELDS`] and [`GUEST_HOT`] that [`sync_vmcs12`]
/// may change: after a [`SyncScope::Hot`] sync, L0 copies exactly these three lists to the
/// shadow VMCS.
pub const SYNC_EXTRA_FIELDS: &[F] = &[
    F::GuestCr0,
    F::GuestCr4,
    F::GuestIa32Efer,
    F::VmEntryControls,
    F::GuestIa32Pat,
    F::GuestDr7,
    F::GuestIa32Debugctl,
    F::VmxPreemptionTimerValue,
    F::VmEntryInterruptionInfo,
];

crate::vmcs::field_list!(
    /// The fields of [`GUEST_HOT`] and [`SYNC_EXTRA_FIELDS`] L1 reads and writes through the
    /// shadow VMCS: with [`EXIT_INFO_FIELDS`] (all read-only, shadowed only with "VMWRITE to
    /// any field"), what L0 copies to the shadow after a [`SyncScope::Hot`] sync.
    pub REFLECT_SHADOW_RW, for_each_reflect_shadow_rw: [
        GuestRip,
        GuestRsp,
        GuestRflags,
        GuestCr3,
        GuestInterruptibilityInfo,
        GuestCsArBytes,
        GuestSsArBytes,
        GuestEsBase,
        GuestCsBase,
        GuestSsBase,
        GuestDsBase,
        GuestCr0,
        GuestCr4,
        GuestIa32Efer,
        GuestDr7,
        VmxPreemptionTimerValue,
        VmEntryInterruptionInfo,
    ]
);

/// vmcs12 → shadow VMCS after a [`SyncScope::Hot`] sync: exactly the fields it may have
/// changed that L1 reads through the shadow. If the shadow equalled vmcs12 on every shadowed
/// field before the sync, it does again afterwards.
pub fn copy_reflected_to_shadow<V: Vmcs>(v12: &Vmcs12, shadow: &mut V, vmwrite_any_field: bool) {
    for_each_reflect_shadow_rw(|f| shadow.write(f, v12.get(f)));
    if vmwrite_any_field {
        for_each_exit_info_field(|f| shadow.write(f, v12.get(f)));
    }
}

/// vmcs12's [`GUEST_RARE`] fields from vmcs02: completes a [`SyncScope::Hot`] sync (the two
/// together equal a [`SyncScope::Full`] one as long as vmcs02's rare fields did not change in
/// between, which holds while L1 runs: only L2 changes them).
pub fn sync_vmcs12_rare<V: Vmcs>(vmcs02: &V, v12: &mut Vmcs12) {
    for &f in GUEST_RARE {
        v12.set(f, vmcs02.read(f));
    }
}

/// Writes an exit L0 reflects to L1 into vmcs12: exit information, guest state (per
/// `scope`), CR0/CR4 as L1 believes them, EFER/PAT/debug/timer per vmcs12's save controls,
/// the "IA-32e mode guest" entry control from EFER.LMA, and clears the valid bit of the
/// VM-entry interruption information (SDM 27.2-27.3).
pub fn sync_vmcs12<V: Vmcs>(vmcs02: &V, v12: &mut Vmcs12, exit: &ExitInfo, scope: SyncScope) {
    write_exit_info(v12, exit);
    for_each_guest_hot(|f| v12.set(f, vmcs02.read(f)));
    if scope == SyncScope::Full {
        sync_vmcs12_rare(vmcs02, v12);
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
    if efer & efer::LMA != 0 {
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
/// MSR-store and MSR-load lists (27.4, 27.5.4) are the image's ([`read_msr_entry`](super::bitmaps::read_msr_entry)).
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
    let cr4 = if host64 { v12.host_cr4 | cr4::PAE } else { v12.host_cr4 };
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
        l1_efer | efer::LMA | efer::LME
    } else {
        l1_efer & !(efer::LMA | efer::LME)
    };
    vmcs01.write(F::GuestIa32Efer, efer);
    let entry01 = vmcs01.read(F::VmEntryControls);
    let ia32e = u64::from(entry::IA32E_MODE_GUEST);
    vmcs01.write(
        F::VmEntryControls,
        if efer & efer::LMA != 0 { entry01 | ia32e } else { entry01 & !ia32e },
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcs::Shadow;
    use crate::vmcs::shadow::shadowed_for_read;
    use crate::vmx::merge::{GUEST_HOT, GUEST_PLAIN};

    #[test]
    fn reflect_shadow_lists_cover_what_a_hot_sync_changes() {
        for &f in EXIT_INFO_FIELDS {
            assert_eq!(f.shadow(), Shadow::Ro, "{}", f.name());
        }
        let mut listed = Vec::new();
        for_each_reflect_shadow_rw(|f| listed.push(f));
        assert_eq!(listed, REFLECT_SHADOW_RW);
        for &f in GUEST_HOT.iter().chain(SYNC_EXTRA_FIELDS) {
            let listed = REFLECT_SHADOW_RW.contains(&f);
            assert_eq!(shadowed_for_read(f, true), listed, "{}", f.name());
            assert_ne!(f.shadow(), Shadow::Ro, "{}", f.name());
        }
        for &f in REFLECT_SHADOW_RW {
            assert!(GUEST_HOT.contains(&f) || SYNC_EXTRA_FIELDS.contains(&f), "{}", f.name());
        }
    }

    #[test]
    fn hot_and_rare_split_the_plain_guest_fields() {
        let hot = DirtySet::of(GUEST_HOT);
        assert!(!hot.intersects(&GUEST_RARE_SET), "hot and rare overlap");
        assert_eq!(hot.union(&GUEST_RARE_SET), DirtySet::of(GUEST_PLAIN));
        assert_eq!(GUEST_RARE_SET.len(), GUEST_RARE.len(), "a rare field is listed twice");
    }

    #[test]
    fn rare_fields_are_never_shadowed_and_shadowed_guest_fields_are_hot() {
        for &f in GUEST_RARE {
            assert_eq!(f.shadow(), Shadow::None, "{} is rare but shadowed", f.name());
        }
        for &f in GUEST_PLAIN {
            if shadowed_for_read(f, true) {
                assert!(GUEST_HOT.contains(&f), "{} is shadowed but not hot", f.name());
            }
        }
    }
}
