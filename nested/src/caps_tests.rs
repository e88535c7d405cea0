//! Tests of `caps.rs` with the SDM's bit positions and MSR layouts written out as numbers
//! (SDM Vol. 3D, Appendix A), so that a constant or accessor that drifts from the SDM fails
//! here even where the rest of the crate uses the same constant on both sides of a check.
//! Written for the cargo-mutants survivors listed in `docs/mutants.md` ("`caps.rs`").

use super::*;

/// IA32_VMX_EPT_VPID_CAP (SDM A.10), IA32_FEATURE_CONTROL (Vol. 4 Table 2-2, MSR 3AH) and the
/// one secondary control `arch_crosscheck.rs` cannot check (the `x86` crate lacks it).
#[test]
fn constants_at_sdm_bit_positions() {
    let ept: &[(u64, u32)] = &[
        (ept_vpid::EXECUTE_ONLY, 0),
        (ept_vpid::PAGE_WALK_4, 6),
        (ept_vpid::MEMTYPE_UC, 8),
        (ept_vpid::MEMTYPE_WB, 14),
        (ept_vpid::PAGE_2M, 16),
        (ept_vpid::PAGE_1G, 17),
        (ept_vpid::INVEPT, 20),
        (ept_vpid::ACCESSED_DIRTY, 21),
        (ept_vpid::ADVANCED_VIOLATION_INFO, 22),
        (ept_vpid::INVEPT_SINGLE_CONTEXT, 25),
        (ept_vpid::INVEPT_ALL_CONTEXT, 26),
        (ept_vpid::INVVPID, 32),
        (ept_vpid::INVVPID_INDIVIDUAL_ADDRESS, 40),
        (ept_vpid::INVVPID_SINGLE_CONTEXT, 41),
        (ept_vpid::INVVPID_ALL_CONTEXT, 42),
        (ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS, 43),
    ];
    for &(value, bit) in ept {
        assert_eq!(value, 1u64.wrapping_shl(bit), "IA32_VMX_EPT_VPID_CAP bit {bit}");
    }
    assert_eq!(feature_control::LOCK, 0x1);
    assert_eq!(feature_control::VMX_OUTSIDE_SMX, 0x4);
    // Table 25-7 bit 26: "enable user wait and pause".
    assert_eq!(proc2::ENABLE_USER_WAIT_PAUSE, 0x0400_0000);
}

#[test]
fn allowed_settings_from_an_msr_value() {
    // A.3: bits 31:0 allowed 0-settings (1 = must be 1), bits 63:32 allowed 1-settings.
    let a = Allowed::from_msr(0x0000_00ff_0000_0016);
    assert_eq!(a, Allowed { allowed0: 0x16, allowed1: 0xff });
    assert_eq!(a.to_msr(), 0x0000_00ff_0000_0016);
    assert!(a.can_set(0x80) && a.can_set(0x96) && a.can_set(0));
    assert!(!a.can_set(0x100), "bit 8 may not be 1");
    assert!(!a.can_set(0x180), "one bit of two may not be 1");
    // `adjust` ORs the must-be-1 bits in, even when some are already set.
    assert_eq!(a.adjust(0x02), 0x16);
    assert_eq!(a.adjust(0x116), 0x16);
    let f = FixedBits { fixed0: 0x21, fixed1: 0xff };
    assert_eq!(f.adjust(0x01), 0x21);
    assert_eq!(f.adjust(0x121), 0x21);
}

/// Each capability MSR gets a value of its own; `read` must store each in its field, and
/// `msr` must answer each number with it.
#[test]
fn read_stores_every_msr_and_msr_answers_it() {
    let value = |m: u32| -> u64 {
        match m {
            // TRUE controls (bit 55).
            0x480 => 1 << 55 | 0x480,
            // Secondary controls may be activated (bit 63 = allowed-1 of bit 31).
            0x482 => 1 << 63 | 0x482,
            // EPT (bit 1), VPID (bit 5), VM functions (bit 13) may be 1.
            0x48b => (0x2022_u64 << 32) | 0x48b,
            m => u64::from(m) << 40 | u64::from(m),
        }
    };
    let mut log = Vec::new();
    let caps = VmxCaps::read(|m| {
        log.push(m);
        value(m)
    });
    for m in 0x480..=0x491 {
        assert!(log.contains(&m), "MSR {m:#x} not read");
        assert_eq!(caps.msr(m), Some(value(m)), "MSR {m:#x}");
    }
    assert_eq!(caps.basic, value(0x480));
    assert_eq!(caps.pinbased, value(0x481));
    assert_eq!(caps.procbased, value(0x482));
    assert_eq!(caps.exit, value(0x483));
    assert_eq!(caps.entry, value(0x484));
    assert_eq!(caps.misc, value(0x485));
    assert_eq!(caps.cr0_fixed0, value(0x486));
    assert_eq!(caps.cr0_fixed1, value(0x487));
    assert_eq!(caps.cr4_fixed0, value(0x488));
    assert_eq!(caps.cr4_fixed1, value(0x489));
    assert_eq!(caps.vmcs_enum, value(0x48a));
    assert_eq!(caps.procbased2, value(0x48b));
    assert_eq!(caps.ept_vpid, value(0x48c));
    assert_eq!(caps.true_pinbased, value(0x48d));
    assert_eq!(caps.true_procbased, value(0x48e));
    assert_eq!(caps.true_exit, value(0x48f));
    assert_eq!(caps.true_entry, value(0x490));
    assert_eq!(caps.vmfunc, value(0x491));
    for m in [0x47f, 0x492, 0x3a, 0] {
        assert_eq!(caps.msr(m), None, "MSR {m:#x} is no VMX capability MSR");
    }
}

/// A.10: IA32_VMX_EPT_VPID_CAP exists if EPT *or* VPID may be enabled; A.11: IA32_VMX_VMFUNC
/// only if VM functions may.
#[test]
fn ept_vpid_cap_is_read_for_ept_or_vpid() {
    for (secondary_allowed1, reads_cap) in [(1u64 << 1, true), (1 << 5, true), (1 << 13, false)] {
        let mut log = Vec::new();
        let caps = VmxCaps::read(|m| {
            log.push(m);
            match m {
                0x482 => 1 << 63,
                0x48b => secondary_allowed1 << 32,
                _ => 0,
            }
        });
        assert_eq!(log.contains(&0x48c), reads_cap, "secondary {secondary_allowed1:#x}");
        assert_eq!(log.contains(&0x491), secondary_allowed1 == 1 << 13);
        assert_eq!(caps.procbased2, secondary_allowed1 << 32);
    }
}

/// IA32_VMX_BASIC (A.1), IA32_VMX_MISC (A.6) and IA32_VMX_VMCS_ENUM (A.9) fields, each with
/// the bits around it set so that a wrong mask or shift shows.
#[test]
fn basic_misc_and_vmcs_enum_fields() {
    let mut c = VmxCaps { basic: 0x8000_0000_1234_5678, ..Default::default() };
    assert_eq!(c.revision_id(), 0x1234_5678, "bit 31 is not part of the revision");
    c.basic = 0xffff_ffff_ffff_ffff;
    assert_eq!(c.revision_id(), 0x7fff_ffff);
    assert_eq!(c.vmcs_size(), 0x1fff);
    assert_eq!(c.vmcs_memory_type(), 0xf);
    c.basic = 1 << 54;
    assert!(c.has_ins_outs_info() && !c.has_true_controls());
    assert_eq!((c.revision_id(), c.vmcs_size(), c.vmcs_memory_type()), (0, 0, 0));
    c.basic = 1 << 55;
    assert!(!c.has_ins_outs_info() && c.has_true_controls());
    c.basic = !(1 << 54 | 1 << 55);
    assert!(!c.has_ins_outs_info() && !c.has_true_controls());
    c.basic = 0x0001_2000_0000_0001 | 6 << 50 | 0x800 << 32;
    assert_eq!((c.revision_id(), c.vmcs_size(), c.vmcs_memory_type()), (1, 0x800, 6));

    // MISC: 4:0 timer rate, 8:6 activity states, 24:16 CR3 targets, 27:25 MSR-list size,
    // 29 VMWRITE to exit-information fields.
    c.misc = 0x13 | 7 << 6 | 0x1ff << 16 | 7 << 25 | 1 << 29;
    assert_eq!(c.preemption_timer_shift(), 0x13);
    assert_eq!(c.activity_states(), 7);
    assert_eq!(c.cr3_target_count(), 0x1ff);
    assert_eq!(c.max_msr_list_len(), 4096);
    assert!(c.vmwrite_any_field());
    c.misc = !(0x1f | 7 << 6 | 0x1ff << 16 | 7 << 25 | 1 << 29);
    assert_eq!(c.preemption_timer_shift(), 0);
    assert_eq!(c.activity_states(), 0);
    assert_eq!(c.cr3_target_count(), 0);
    assert_eq!(c.max_msr_list_len(), 512, "N = 0: 512 entries");
    assert!(!c.vmwrite_any_field());
    c.misc = 1 << 6 | 4 << 16 | 1 << 25;
    assert_eq!((c.activity_states(), c.cr3_target_count(), c.max_msr_list_len()), (1, 4, 1024));
    c.misc = 2 << 25;
    assert_eq!(c.max_msr_list_len(), 1536);

    // VMCS_ENUM bits 9:1: highest index; bit 0 and bits above 9 are not part of it.
    c.vmcs_enum = 0x2e;
    assert_eq!(c.max_vmcs_index(), 0x17);
    c.vmcs_enum = 0xffff_ffff_ffff_fc01 | 0x2e;
    assert_eq!(c.max_vmcs_index(), 0x17);
}

/// A.3.1: with IA32_VMX_BASIC bit 55 the TRUE MSRs give the allowed settings; without it
/// the ordinary ones.
#[test]
fn true_controls_choose_the_msr() {
    let mut c = VmxCaps {
        pinbased: 0x11 << 32 | 0x1,
        procbased: 0x22 << 32 | 0x2,
        exit: 0x33 << 32 | 0x3,
        entry: 0x44 << 32 | 0x4,
        true_pinbased: 0x55 << 32 | 0x5,
        true_procbased: 0x66 << 32 | 0x6,
        true_exit: 0x77 << 32 | 0x7,
        true_entry: 0x88 << 32 | 0x8,
        procbased2: 0x99 << 32,
        cr0_fixed0: 0x21,
        cr0_fixed1: 0xffff_ffff,
        cr4_fixed0: 0x2000,
        cr4_fixed1: 0x3f_77ff,
        ..Default::default()
    };
    let a = |lo: u32, hi: u32| Allowed { allowed0: lo, allowed1: hi };
    assert_eq!(c.pin(), a(0x1, 0x11));
    assert_eq!(c.primary(), a(0x2, 0x22));
    assert_eq!(c.exit_controls(), a(0x3, 0x33));
    assert_eq!(c.entry_controls(), a(0x4, 0x44));
    assert_eq!(c.secondary(), a(0, 0x99));
    c.basic = 1 << 55;
    assert_eq!(c.pin(), a(0x5, 0x55));
    assert_eq!(c.primary(), a(0x6, 0x66));
    assert_eq!(c.exit_controls(), a(0x7, 0x77));
    assert_eq!(c.entry_controls(), a(0x8, 0x88));
    assert_eq!(c.secondary(), a(0, 0x99));
    assert_eq!(c.cr0_fixed(), FixedBits { fixed0: 0x21, fixed1: 0xffff_ffff });
    assert_eq!(c.cr4_fixed(), FixedBits { fixed0: 0x2000, fixed1: 0x3f_77ff });
}

/// The feature predicates, each with its capability present and absent (secondary bits 1
/// EPT, 5 VPID, 7 unrestricted guest, 13 VM functions, 14 VMCS shadowing; pin-based bits 6
/// preemption timer, 7 posted interrupts; EPT_VPID_CAP bits 6 and 14; VMFUNC bit 0).
#[test]
fn feature_predicates_each_way() {
    let with = |secondary: u64, pin: u64, ept_vpid: u64, vmfunc: u64| VmxCaps {
        procbased2: secondary << 32,
        pinbased: pin << 32,
        ept_vpid,
        vmfunc,
        ..Default::default()
    };
    let walk_wb = 1 << 6 | 1 << 14;
    assert!(with(1 << 1, 0, walk_wb, 0).has_ept());
    assert!(!with(0, 0, walk_wb, 0).has_ept(), "EPT control not allowed");
    assert!(!with(1 << 1, 0, 1 << 6, 0).has_ept(), "no write-back paging structures");
    assert!(!with(1 << 1, 0, 1 << 14, 0).has_ept(), "no 4-level walk");
    assert!(with(1 << 1, 0, 0x41 | walk_wb, 0).has_ept());

    let c = with(0x41, 0, 0x41, 0);
    assert!(c.ept_vpid_has(0x40) && c.ept_vpid_has(0x41) && c.ept_vpid_has(0));
    assert!(!c.ept_vpid_has(0x42) && !c.ept_vpid_has(0x2));

    assert!(with(1 << 5, 0, 0, 0).has_vpid());
    assert!(!with(!(1 << 5) & 0xffff_ffff, 0, 0, 0).has_vpid());

    assert!(with(1 << 7 | 1 << 1, 0, walk_wb, 0).has_unrestricted_guest());
    assert!(!with(1 << 1, 0, walk_wb, 0).has_unrestricted_guest(), "control not allowed");
    assert!(!with(1 << 7, 0, walk_wb, 0).has_unrestricted_guest(), "no EPT");

    assert!(with(1 << 14, 0, 0, 0).has_vmcs_shadowing());
    assert!(!with(!(1 << 14) & 0xffff_ffff, 0, 0, 0).has_vmcs_shadowing());

    assert!(with(0, 1 << 6, 0, 0).has_preemption_timer());
    assert!(!with(0, 1 << 7, 0, 0).has_preemption_timer());
    assert!(with(0, 1 << 7, 0, 0).has_posted_interrupts());
    assert!(!with(0, 1 << 6, 0, 0).has_posted_interrupts());

    assert!(with(1 << 13, 0, 0, 1).has_eptp_switching());
    assert!(!with(1 << 13, 0, 0, 0b10).has_eptp_switching(), "VMFUNC leaf 1 only");
    assert!(!with(1 << 13, 0, 0, 0).has_eptp_switching());
    assert!(!with(0, 0, 0, 1).has_eptp_switching(), "VM functions not allowed");
}

/// What a VMCS field's existence depends on (SDM Vol. 3D, Appendix B notes), with the SDM's
/// bit numbers written out.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Gate {
    Pin(u32),
    Primary(u32),
    Secondary(u32),
    Exit(u32),
    Entry(u32),
    /// VM functions (secondary bit 13) with EPTP switching (IA32_VMX_VMFUNC bit 0).
    EptpSwitching,
}

/// Every field the SDM ties to a feature, with each control whose 1-setting makes it exist.
const GATED: &[(VmcsField, Gate)] = {
    use Gate::*;
    use VmcsField as F;
    &[
        (F::VirtualProcessorId, Secondary(5)),
        (F::PostedInterruptNotificationVector, Pin(7)),
        (F::PostedInterruptDescAddr, Pin(7)),
        (F::EptpIndex, Secondary(18)),
        (F::VeInformationAddress, Secondary(18)),
        (F::GuestInterruptStatus, Secondary(9)),
        (F::EoiExitBitmap0, Secondary(9)),
        (F::EoiExitBitmap1, Secondary(9)),
        (F::EoiExitBitmap2, Secondary(9)),
        (F::EoiExitBitmap3, Secondary(9)),
        (F::GuestPmlIndex, Secondary(17)),
        (F::PmlAddress, Secondary(17)),
        (F::MsrBitmap, Primary(28)),
        (F::VirtualApicPageAddr, Primary(21)),
        (F::TprThreshold, Primary(21)),
        (F::ApicAccessAddr, Secondary(0)),
        (F::VmFunctionControl, Secondary(13)),
        (F::EptpListAddress, EptpSwitching),
        (F::EptPointer, Secondary(1)),
        (F::GuestPhysicalAddress, Secondary(1)),
        (F::GuestPdpte0, Secondary(1)),
        (F::GuestPdpte1, Secondary(1)),
        (F::GuestPdpte2, Secondary(1)),
        (F::GuestPdpte3, Secondary(1)),
        (F::VmreadBitmap, Secondary(14)),
        (F::VmwriteBitmap, Secondary(14)),
        (F::XssExitingBitmap, Secondary(20)),
        (F::EnclsExitingBitmap, Secondary(15)),
        (F::SubPagePermissionTablePointer, Secondary(23)),
        (F::TscMultiplier, Secondary(25)),
        (F::TertiaryProcBasedControls, Primary(17)),
        (F::EnclvExitingBitmap, Secondary(28)),
        (F::SecondaryVmExecControl, Primary(31)),
        (F::PleGap, Secondary(10)),
        (F::PleWindow, Secondary(10)),
        (F::NotifyWindow, Secondary(31)),
        (F::VmxPreemptionTimerValue, Pin(6)),
        (F::GuestIa32Pat, Entry(14)),
        (F::GuestIa32Pat, Exit(18)),
        (F::HostIa32Pat, Exit(19)),
        (F::GuestIa32Efer, Entry(15)),
        (F::GuestIa32Efer, Exit(20)),
        (F::HostIa32Efer, Exit(21)),
        (F::GuestIa32PerfGlobalCtrl, Entry(13)),
        (F::GuestIa32PerfGlobalCtrl, Exit(30)),
        (F::HostIa32PerfGlobalCtrl, Exit(12)),
        (F::GuestIa32Bndcfgs, Entry(16)),
        (F::GuestIa32Bndcfgs, Exit(23)),
        (F::GuestIa32RtitCtl, Entry(18)),
        (F::GuestIa32RtitCtl, Exit(25)),
        (F::GuestIa32LbrCtl, Entry(21)),
        (F::GuestIa32LbrCtl, Exit(26)),
        (F::GuestIa32Pkrs, Entry(22)),
        (F::HostIa32Pkrs, Exit(29)),
        (F::GuestSCet, Entry(20)),
        (F::GuestSsp, Entry(20)),
        (F::GuestInterruptSspTableAddr, Entry(20)),
        (F::HostSCet, Exit(28)),
        (F::HostSsp, Exit(28)),
        (F::HostInterruptSspTableAddr, Exit(28)),
    ]
};

/// Capabilities whose allowed-1 settings are exactly `gate` (a secondary control with
/// "activate secondary controls"; EPTP switching with VM functions), and the gates that
/// makes open.
fn only(gate: Gate) -> (VmxCaps, Vec<Gate>) {
    let allowed1 = |bit: u32| (1u64 << bit) << 32;
    let mut c = VmxCaps::default();
    let mut open = vec![gate];
    match gate {
        Gate::Pin(b) => c.pinbased = allowed1(b),
        Gate::Primary(b) => c.procbased = allowed1(b),
        Gate::Secondary(b) => {
            c.procbased = allowed1(31);
            c.procbased2 = allowed1(b);
            open.push(Gate::Primary(31));
        }
        Gate::Exit(b) => c.exit = allowed1(b),
        Gate::Entry(b) => c.entry = allowed1(b),
        Gate::EptpSwitching => {
            c.procbased = allowed1(31);
            c.procbased2 = allowed1(13);
            c.vmfunc = 1;
            open.extend([Gate::Primary(31), Gate::Secondary(13)]);
        }
    }
    (c, open)
}

/// SDM Vol. 3D, Appendix B: a field the notes tie to a feature exists exactly when one of its
/// controls can be 1; every other field exists on every processor. VMCS_ENUM's highest index
/// follows.
#[test]
fn fields_exist_with_their_features() {
    let none = VmxCaps::default();
    for &f in VmcsField::ALL {
        let gated = GATED.iter().any(|(g, _)| *g == f);
        assert_eq!(none.has_field(f), !gated, "{} with no control allowed", f.name());
    }
    for &(field, gate) in GATED {
        let (caps, open) = only(gate);
        assert!(caps.has_field(field), "{} with {gate:?}", field.name());
        for &(other, _) in GATED {
            let opened = GATED.iter().any(|(f, g)| *f == other && open.contains(g));
            assert_eq!(caps.has_field(other), opened, "{} with {gate:?}", other.name());
        }
    }
    // A secondary control counts only with "activate secondary controls".
    let mut c = only(Gate::Secondary(5)).0;
    c.procbased = 0;
    assert!(!c.has_field(VmcsField::VirtualProcessorId));
    // EPTP switching needs VMFUNC bit 0 as well.
    let mut c = only(Gate::EptpSwitching).0;
    c.vmfunc = 0b10;
    assert!(!c.has_field(VmcsField::EptpListAddress));
    assert!(c.has_field(VmcsField::VmFunctionControl));
    // VMCS_ENUM: the highest index among the fields that exist (bits 9:1 of the encoding).
    assert_eq!(none.highest_field_index(), 0x15, "0x482a guest IA32_SYSENTER_CS");
    assert_eq!(only(Gate::Pin(6)).0.highest_field_index(), 0x17, "0x482e preemption timer");
    assert_eq!(only(Gate::Secondary(28)).0.highest_field_index(), 0x1b, "0x2036 ENCLV");
}
