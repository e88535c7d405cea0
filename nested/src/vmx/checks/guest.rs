//! Guest-state checks (SDM Vol. 3C 26.3.1.1-26.3.1.6) and the VM-entry MSR-load list
//! (26.4). Failures are VM-entry failures reported to L1 with exit reason 33 or 34.

use super::*;
use crate::vmx::SHADOW_VMCS_INDICATOR;

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

/// The RIP check of SDM 26.3.1.4 alone: canonical in 64-bit mode (IA-32e guest with CS.L),
/// bits 63:32 clear otherwise. For a VM entry whose only guest-state change since the last
/// one that passed every check is RIP (see `launch.rs`).
pub fn check_guest_rip(v: &Vmcs12) -> Result<(), EntryFailure> {
    rip_ok(v).map_err(|c| EntryFailure::guest(c, 0))
}

fn rip_ok(v: &Vmcs12) -> Result<(), Check> {
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    let cs_l = v.guest_cs_ar_bytes & (1 << 13) != 0;
    if ia32e && cs_l {
        ensure(is_canonical(v.guest_rip), Check::GuestRip)
    } else {
        ensure(v.guest_rip >> 32 == 0, Check::GuestRip)
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
    check_guest_state_scoped(v, caps, maxphyaddr, mem, true)
}

/// The guest-state checks that read no [`GUEST_RARE`](crate::vmx::sync::GUEST_RARE) field
/// (everything but the segment registers, GDTR/IDTR, the SYSENTER MSRs and, with EPT, the
/// PDPTEs). For a VMRESUME while vmcs12's rare fields are stale in vmcs02: L1 has not
/// changed them (its VMWRITE of one would have synced them), nor any field the rare checks
/// combine them with ([`RARE_CHECK_INPUTS`](crate::vmx::RARE_CHECK_INPUTS)), so they hold
/// what L2's last VM exit saved, and the processor checks them again when L0 enters vmcs02,
/// where a failure is a VM-entry failure reflected to L1 as from this check (Linux likewise
/// leaves those checks to the hardware).
pub fn check_guest_state_hot(
    v: &Vmcs12,
    caps: &VmxCaps,
    maxphyaddr: u8,
    mem: &impl GuestMemory,
) -> Result<(), EntryFailure> {
    check_guest_state_scoped(v, caps, maxphyaddr, mem, false)
}

fn check_guest_state_scoped(
    v: &Vmcs12,
    caps: &VmxCaps,
    maxphyaddr: u8,
    mem: &impl GuestMemory,
    rare: bool,
) -> Result<(), EntryFailure> {
    let fail = |c| EntryFailure::guest(c, 0);
    check_guest_registers(v, caps, maxphyaddr, rare).map_err(fail)?;
    if rare {
        check_guest_segments(v).map_err(fail)?;
    }
    check_guest_non_register(v, caps).map_err(|c| {
        // SDM 26.8: "an attempt to inject an NMI into a guest that is blocking events
        // through the STI blocking bit" has its own qualification.
        EntryFailure::guest(c, if c == Check::GuestInterruptibilityNmiSti { 3 } else { 0 })
    })?;
    if v.vmcs_link_pointer != u64::MAX {
        // Bits 30:0 the revision, bit 31 the "VMCS shadowing" control: a shadow VMCS exactly
        // when shadowing is on. (Not the current VMCS: `NestedVmx::vmlaunch` checks that.)
        let p = v.vmcs_link_pointer;
        let shadowing = secondary_controls(v) & proc2::VMCS_SHADOWING != 0;
        let want = caps.revision_id() | if shadowing { SHADOW_VMCS_INDICATOR } else { 0 };
        let ok = page_addr_ok(p, maxphyaddr) && mem.read_u32(L1Gpa(p)).is_ok_and(|rev| rev == want);
        if !ok {
            return Err(EntryFailure::guest(Check::GuestVmcsLinkPointer, 4));
        }
    }
    // With EPT the PDPTEs are vmcs12 fields (rare); without, they are read at guest CR3.
    if rare || secondary_controls(v) & proc2::ENABLE_EPT == 0 {
        check_pdptes(v, maxphyaddr, mem)?;
    }
    Ok(())
}

fn check_guest_registers(
    v: &Vmcs12,
    caps: &VmxCaps,
    maxphyaddr: u8,
    rare: bool,
) -> Result<(), Check> {
    use Check::*;
    let p2 = secondary_controls(v);
    let ug = p2 & proc2::UNRESTRICTED_GUEST != 0;
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    let mut cr0_fixed = caps.cr0_fixed();
    if ug {
        cr0_fixed.fixed0 &= !(cr0::PE | cr0::PG);
    }
    ensure(cr0_fixed.verify(v.guest_cr0), GuestCr0)?;
    ensure(v.guest_cr0 & cr0::PG == 0 || v.guest_cr0 & cr0::PE != 0, GuestCr0PgWithoutPe)?;
    ensure(caps.cr4_fixed().verify(v.guest_cr4), GuestCr4)?;
    let load_debug = v.vm_entry_controls & entry::LOAD_DEBUG_CONTROLS != 0;
    if load_debug {
        ensure(v.guest_ia32_debugctl & !0xffc3 == 0, GuestDebugctl)?;
    }
    if ia32e {
        ensure(v.guest_cr0 & cr0::PG != 0 && v.guest_cr4 & cr4::PAE != 0, GuestIa32eWithoutPaging)?;
    } else {
        ensure(v.guest_cr4 & cr4::PCIDE == 0, GuestPcideOutsideIa32e)?;
    }
    ensure(fits_phys_width(v.guest_cr3, maxphyaddr), GuestCr3)?;
    if load_debug {
        ensure(v.guest_dr7 >> 32 == 0, GuestDr7)?;
    }
    if rare {
        ensure(
            is_canonical(v.guest_sysenter_esp) && is_canonical(v.guest_sysenter_eip),
            GuestSysenterCanonical,
        )?;
    }
    if v.vm_entry_controls & entry::LOAD_IA32_PAT != 0 {
        ensure(pat_ok(v.guest_ia32_pat), GuestPat)?;
    }
    if v.vm_entry_controls & entry::LOAD_IA32_EFER != 0 {
        let e = v.guest_ia32_efer;
        let lme_ok = v.guest_cr0 & cr0::PG == 0 || (e & efer::LME != 0) == ia32e;
        ensure(e & !EFER_VALID == 0 && (e & efer::LMA != 0) == ia32e && lme_ok, GuestEfer)?;
    }
    // 26.3.1.3
    if rare {
        ensure(
            is_canonical(v.guest_gdtr_base)
                && is_canonical(v.guest_idtr_base)
                && v.guest_gdtr_limit >> 16 == 0
                && v.guest_idtr_limit >> 16 == 0,
            GuestDescriptorTable,
        )?;
    }
    // 26.3.1.4
    rip_ok(v)?;
    let rf = v.guest_rflags;
    ensure(rf & rflags::RESERVED == 0 && rf & rflags::FIXED_1 != 0, GuestRflagsReserved)?;
    if ia32e || v.guest_cr0 & cr0::PE == 0 {
        ensure(rf & rflags::VM == 0, GuestRflagsVm)?;
    }
    let info = v.vm_entry_intr_info_field;
    if info & intr_info::VALID != 0 && intr_info::kind(info) == intr_info::TYPE_EXTERNAL_INTERRUPT {
        ensure(rf & rflags::IF != 0, GuestRflagsIfForInterrupt)?;
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
    let v86 = v.guest_rflags & rflags::VM != 0;
    let pe = v.guest_cr0 & cr0::PE != 0;

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
    if v.guest_rflags & rflags::IF == 0 {
        ensure(intr & STI == 0, GuestInterruptibilityStiWithoutIf)?;
    }
    if injecting && matches!(kind, intr_info::TYPE_EXTERNAL_INTERRUPT | intr_info::TYPE_NMI) {
        ensure(intr & MOV_SS == 0, GuestInterruptibilityEvent)?;
        if kind == intr_info::TYPE_NMI {
            // A processor may refuse this (SDM 26.3.1.5); ours does, as Intel's do.
            ensure(intr & STI == 0, GuestInterruptibilityNmiSti)?;
        } else {
            ensure(intr & STI == 0, GuestInterruptibilityEvent)?;
        }
    }
    ensure(intr & SMI == 0, GuestInterruptibilitySmi)?;
    if injecting
        && kind == intr_info::TYPE_NMI
        && v.pin_based_vm_exec_control & pin::VIRTUAL_NMIS != 0
    {
        ensure(intr & NMI == 0, GuestInterruptibilityNmi)?;
    }
    let pd = v.guest_pending_dbg_exceptions;
    use crate::arch::{debugctl, pending_dbg};
    let known =
        pending_dbg::B0_3 | pending_dbg::ENABLED_BREAKPOINT | pending_dbg::BS | pending_dbg::RTM;
    ensure(pd & !known == 0, GuestPendingDebugReserved)?;
    if intr & (STI | MOV_SS) != 0 || act == 1 {
        let tf = v.guest_rflags & rflags::TF != 0;
        let btf = v.guest_ia32_debugctl & debugctl::BTF != 0;
        let bs = pd & pending_dbg::BS != 0;
        ensure(bs == (tf && !btf), GuestPendingDebugBs)?;
    }
    Ok(())
}

/// PDPTEs for PAE paging outside IA-32e mode (SDM 26.3.1.6): from vmcs12 with EPT, from the
/// page at guest CR3 in L1 memory without. Failure qualification 2.
fn check_pdptes(v: &Vmcs12, maxphyaddr: u8, mem: &impl GuestMemory) -> Result<(), EntryFailure> {
    let ia32e = v.vm_entry_controls & entry::IA32E_MODE_GUEST != 0;
    if v.guest_cr0 & cr0::PG == 0 || v.guest_cr4 & cr4::PAE == 0 || ia32e {
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
