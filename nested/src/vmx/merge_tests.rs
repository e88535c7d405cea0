//! Unit tests for vmcs02 preparation (merge.rs), vmcs12 sync and host-state loading
//! (sync.rs) and bitmap merging (bitmaps.rs).

use super::*;
use crate::addr::L1Gpa;
use crate::caps::exit as exitc;
use crate::exits::{ExitInfo, intr_info};
use crate::guest::GuestMemory;
use crate::testutil::{l1, skylake, valid_vmcs12};
use crate::vmcs::{FakeVmcs, Op};
use crate::vmx::bitmaps::*;
use crate::vmx::sync::*;

pub(crate) fn l0() -> L0Config {
    L0Config {
        hw: skylake(),
        pin: pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
        proc1: proc1::RDPMC_EXITING,
        proc2: proc2::ENABLE_EPT | proc2::ENABLE_VPID,
        exit: exitc::HOST_ADDRESS_SPACE_SIZE
            | exitc::ACK_INTERRUPT_ON_EXIT
            | exitc::SAVE_IA32_EFER
            | exitc::LOAD_IA32_EFER
            | exitc::SAVE_IA32_PAT
            | exitc::LOAD_IA32_PAT,
        entry: entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT,
        exception_bitmap: 1 << 18,
        cr0_mask: 0,
        cr4_mask: 0,
    }
}

pub(crate) fn inputs() -> Vmcs02Inputs {
    Vmcs02Inputs {
        eptp02: 0x77000 | 6 | 3 << 3,
        vpid02: 9,
        msr_bitmap: Some(Hpa(0x10000)),
        io_bitmaps: Some((Hpa(0x11000), Hpa(0x12000))),
        virtual_apic: None,
        apic_access: None,
        l1: L1State {
            efer: 0xd01,
            pat: 0x0007_0406_0007_0406,
            dr7: 0x400,
            debugctl: 0,
            tsc_offset: 100,
        },
    }
}

#[test]
fn full_prepare_merges_controls_and_copies_guest_state() {
    let v12 = valid_vmcs12(&l1());
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    let pinc = v02.peek(F::PinBasedVmExecControl) as u32;
    assert_eq!(pinc & l0().pin, l0().pin);
    let p1 = v02.peek(F::CpuBasedVmExecControl) as u32;
    assert!(p1 & proc1::HLT_EXITING != 0, "L1's HLT exiting");
    assert!(p1 & proc1::RDPMC_EXITING != 0, "L0's RDPMC exiting");
    assert!(p1 & proc1::USE_MSR_BITMAPS != 0 && p1 & proc1::USE_IO_BITMAPS != 0);
    assert!(skylake().primary().verify(p1));
    let p2 = v02.peek(F::SecondaryVmExecControl) as u32;
    assert!(p2 & proc2::UNRESTRICTED_GUEST != 0);
    assert!(skylake().secondary().verify(p2));
    assert_eq!(v02.peek(F::EptPointer), inputs().eptp02);
    assert_eq!(v02.peek(F::VirtualProcessorId), 9);
    assert_eq!(v02.peek(F::MsrBitmap), 0x10000);
    assert_eq!(v02.peek(F::VmcsLinkPointer), u64::MAX);
    assert_eq!(v02.peek(F::ExceptionBitmap) & (1 << 18), 1 << 18);
    assert_eq!(v02.peek(F::TscOffset), 100, "L1 does not offset: L0's offset only");
    assert!(v02.peek(F::VmEntryControls) & u64::from(entry::IA32E_MODE_GUEST) != 0);
    for &f in GUEST_PLAIN {
        assert_eq!(v02.peek(f), v12.get(f), "{}", f.name());
    }
    assert_eq!(v02.peek(F::GuestCr0), v12.guest_cr0);
    assert_eq!(v02.peek(F::GuestIa32Efer), v12.guest_ia32_efer);
    assert_eq!(v02.peek(F::GuestIa32Pat), inputs().l1.pat, "L1 does not load PAT");
}

#[test]
fn dirty_only_prepare_touches_only_what_changed() {
    let v12 = valid_vmcs12(&l1());
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    v02.clear_log();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::empty(), &l0(), &inputs());
    assert!(v02.log().is_empty(), "nothing dirty, nothing written: {:?}", v02.log());
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::GuestRip, F::GuestRsp]), &l0(), &inputs());
    assert_eq!(v02.writes(), [F::GuestRsp, F::GuestRip]);
    v02.clear_log();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::VmEntryInterruptionInfo]), &l0(), &inputs());
    assert_eq!(v02.writes().len(), 3, "the three event-injection fields");
    v02.clear_log();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::ExceptionBitmap]), &l0(), &inputs());
    assert!(v02.writes().contains(&F::ExceptionBitmap));
    assert!(v02.writes().len() < 40, "controls, not the guest state");
}

#[test]
fn l1_tsc_offset_and_pf_mask_match() {
    let mut v12 = valid_vmcs12(&l1());
    v12.cpu_based_vm_exec_control |= proc1::USE_TSC_OFFSETTING;
    v12.tsc_offset = 5;
    v12.exception_bitmap = 1 << 14;
    v12.page_fault_error_code_mask = 2;
    v12.page_fault_error_code_match = 2;
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::TscOffset), 105);
    assert_eq!(v02.peek(F::PageFaultErrorCodeMask), 2);
    let mut l0pf = l0();
    l0pf.exception_bitmap |= 1 << 14;
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0pf, &inputs());
    assert_eq!((v02.peek(F::PageFaultErrorCodeMask), v02.peek(F::PageFaultErrorCodeMatch)), (0, 0));
}

#[test]
fn cr0_ownership_and_fixed_bits() {
    let mut v12 = valid_vmcs12(&l1());
    // L2 runs with NE clear (legal under L1's view only if L0 fixes it up) and L1 owns TS.
    v12.guest_cr0 = 0x8000_0011 | 1 << 3;
    v12.cr0_guest_host_mask = 1 << 3;
    v12.cr0_read_shadow = 0;
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::GuestCr0) & (1 << 5), 1 << 5, "NE forced by the hardware");
    let mask02 = v02.peek(F::Cr0GuestHostMask);
    assert!(mask02 & (1 << 5) != 0 && mask02 & (1 << 3) != 0);
    assert_eq!(
        v02.peek(F::Cr0ReadShadow) & (1 << 5 | 1 << 3),
        0,
        "L2 sees NE=0, TS per L1's shadow"
    );
    // L2 flips a bit it owns (WP, bit 16) without exiting; L0 round-trips the rest.
    v02.poke(F::GuestCr0, v02.peek(F::GuestCr0) | 1 << 16);
    let e = ExitInfo { reason: 10, ..Default::default() };
    let before = v12.guest_cr0;
    sync_vmcs12(&v02, &mut v12, &e, SyncScope::Full);
    assert_eq!(v12.guest_cr0, before | 1 << 16);
}

#[test]
fn sync_writes_exit_info_and_state() {
    let mut v12 = valid_vmcs12(&l1());
    v12.vm_entry_intr_info_field = intr_info::VALID | 0x20;
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    v02.poke(F::GuestRip, 0x2000);
    v02.poke(F::GuestDsSelector, 0x2b);
    v02.poke(F::GuestIa32Efer, 0);
    let e = ExitInfo {
        reason: 12,
        qualification: 3,
        instruction_len: 1,
        idt_vectoring_info: intr_info::VALID | 0x30,
        guest_physical_address: 0x1234,
        ..Default::default()
    };
    sync_vmcs12(&v02, &mut v12, &e, SyncScope::Hot);
    assert_eq!(
        (v12.vm_exit_reason, v12.exit_qualification, v12.vm_exit_instruction_len),
        (12, 3, 1)
    );
    assert_eq!(v12.idt_vectoring_info_field, intr_info::VALID | 0x30);
    assert_eq!(v12.guest_physical_address, 0x1234);
    assert_eq!(v12.guest_rip, 0x2000);
    assert_eq!(v12.guest_ds_selector, 0x10, "rare fields wait for a full sync");
    assert_eq!(v12.vm_entry_intr_info_field & intr_info::VALID, 0);
    assert_eq!(v12.guest_ia32_efer, 0, "SAVE_IA32_EFER");
    assert_eq!(v12.vm_entry_controls & entry::IA32E_MODE_GUEST, 0, "IA-32e mode guest tracks LMA");
    sync_vmcs12(&v02, &mut v12, &e, SyncScope::Full);
    assert_eq!(v12.guest_ds_selector, 0x2b);
}

#[test]
fn reinjection_of_idt_vectoring() {
    let mut v02 = FakeVmcs::new();
    let e = ExitInfo {
        reason: 48,
        idt_vectoring_info: intr_info::VALID
            | intr_info::TYPE_HARD_EXCEPTION
            | 14
            | 1 << 11
            | 1 << 12,
        idt_vectoring_error_code: 6,
        ..Default::default()
    };
    reinject_idt_vectoring(&mut v02, &e);
    assert_eq!(
        v02.peek(F::VmEntryInterruptionInfo),
        u64::from(intr_info::VALID | 3 << 8 | 14 | 1 << 11)
    );
    assert_eq!(v02.peek(F::VmEntryExceptionErrorCode), 6);
    let mut v02 = FakeVmcs::new();
    reinject_idt_vectoring(&mut v02, &ExitInfo::default());
    assert!(v02.log().is_empty());
}

#[test]
fn host_state_load() {
    let v12 = valid_vmcs12(&l1());
    let mut v01 = FakeVmcs::new();
    v01.poke(F::VmEntryControls, 0x11ff);
    let efer = load_l1_host_state(&v12, &mut v01, &skylake(), 0);
    assert_eq!(efer, v12.host_ia32_efer);
    assert_eq!(v01.peek(F::GuestRip), v12.host_rip);
    assert_eq!(v01.peek(F::GuestRsp), v12.host_rsp);
    assert_eq!(v01.peek(F::GuestRflags), 2);
    assert_eq!(v01.peek(F::GuestDr7), 0x400);
    assert_eq!(v01.peek(F::GuestCsArBytes), 0xa09b);
    assert_eq!(v01.peek(F::GuestFsArBytes), 1 << 16, "null FS is unusable");
    assert_eq!(v01.peek(F::GuestSsArBytes), 0xc093);
    assert_eq!(v01.peek(F::GuestTrArBytes), 0x8b);
    assert_eq!(v01.peek(F::GuestGdtrLimit), 0xffff);
    assert!(v01.peek(F::VmEntryControls) & u64::from(entry::IA32E_MODE_GUEST) != 0);
    assert!(v01.log().iter().any(|op| matches!(op, Op::Read(F::VmEntryControls))));
}

#[test]
fn bitmap_merges() {
    let mut l0b = [0u8; 4096];
    let mut l1b = [0u8; 4096];
    l0b[1] = 0x10;
    l1b[2] = 0x01;
    let mut out = [0u8; 4096];
    merge_msr_bitmap(&l0b, Some(&l1b), &mut out);
    assert_eq!((out[1], out[2], out[3]), (0x10, 0x01, 0));
    merge_msr_bitmap(&l0b, None, &mut out);
    assert!(out.iter().all(|&b| b == 0xff));
    let (mut oa, mut ob) = ([0u8; 4096], [0u8; 4096]);
    merge_io_bitmaps((&l0b, &l1b), L1Io::PassThrough, (&mut oa, &mut ob));
    assert_eq!((oa[1], ob[2]), (0x10, 0x01));
    merge_io_bitmaps((&l0b, &l0b), L1Io::Bitmaps(&l1b, &l1b), (&mut oa, &mut ob));
    assert_eq!((oa[1], oa[2], ob[1], ob[2]), (0x10, 0x01, 0x10, 0x01));
    merge_io_bitmaps((&l0b, &l0b), L1Io::All, (&mut oa, &mut ob));
    assert!(oa.iter().chain(ob.iter()).all(|&b| b == 0xff));
}

#[test]
fn msr_list_entries() {
    let mut m = crate::guest::VecMemory::new(0x100);
    m.write_u32(L1Gpa(0x20), 0x174).unwrap();
    m.write_u64(L1Gpa(0x28), 0x10).unwrap();
    assert_eq!(read_msr_entry(&m, 0x10, 1), Ok((0x174, 0x10)));
    assert!(read_msr_entry(&m, 0x10, 100).is_err());
}

/// L1's own VMX-preemption timer: vmcs02 runs it with vmcs12's value and always saves what is
/// left at an exit, so exits L0 handles alone do not restart L1's timer; vmcs12 receives the
/// saved value only when L1 asked for it.
#[test]
fn l1_preemption_timer_is_saved_in_vmcs02_whether_or_not_l1_asked() {
    for l1_saves in [false, true] {
        let mut v12 = valid_vmcs12(&l1());
        v12.pin_based_vm_exec_control |= pin::PREEMPTION_TIMER;
        v12.vmx_preemption_timer_value = 1234;
        if l1_saves {
            v12.vm_exit_controls |= exitc::SAVE_PREEMPTION_TIMER;
        } else {
            v12.vm_exit_controls &= !exitc::SAVE_PREEMPTION_TIMER;
        }
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
        assert_ne!(v02.peek(F::PinBasedVmExecControl) as u32 & pin::PREEMPTION_TIMER, 0);
        assert_ne!(v02.peek(F::VmExitControls) as u32 & exitc::SAVE_PREEMPTION_TIMER, 0);
        assert_eq!(v02.peek(F::VmxPreemptionTimerValue), 1234);
        // The exit saved 77 units left: vmcs12 sees them only if L1 asked.
        v02.write(F::VmxPreemptionTimerValue, 77);
        let exit = ExitInfo { reason: 52, ..ExitInfo::default() };
        sync_vmcs12(&v02, &mut v12, &exit, SyncScope::Full);
        let expect = if l1_saves { 77 } else { 1234 };
        assert_eq!(v12.vmx_preemption_timer_value, expect, "L1 saves: {l1_saves}");
    }
    // Without L1's timer, vmcs02 saves nothing for it.
    let v12 = valid_vmcs12(&l1());
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::VmExitControls) as u32 & exitc::SAVE_PREEMPTION_TIMER, 0);
}

#[test]
fn host_state_load_follows_the_host_address_space_size() {
    // SDM 27.5.1: without "load IA32_EFER", EFER.LMA and EFER.LME take the value of "host
    // address-space size" and the rest of L1's EFER stays; CR4.PAE is set for a 64-bit host;
    // "IA-32e mode guest" of vmcs01 follows EFER.LMA, its other entry controls stay.
    let hw = skylake();
    let ia32e = u64::from(entry::IA32E_MODE_GUEST);
    let (lme, lma) = (1 << 8, 1 << 10);
    let l1_efer = 1 | 1 << 11;
    let mut v12 = valid_vmcs12(&l1());
    v12.vm_exit_controls &= !exit::LOAD_IA32_EFER;
    v12.host_cr4 = 0x2000;
    let mut v01 = FakeVmcs::new();
    v01.poke(F::VmEntryControls, 0x11ff | ia32e);
    assert_eq!(load_l1_host_state(&v12, &mut v01, &hw, l1_efer), l1_efer | lme | lma);
    assert_eq!(v01.peek(F::Cr4ReadShadow), 0x2020);
    assert_eq!(v01.peek(F::GuestCr4) & 0x20, 0x20);
    assert_eq!(v01.peek(F::VmEntryControls), 0x11ff | ia32e);
    // A 32-bit host: LMA and LME cleared, CR4 as L1 wrote it, CS.D instead of CS.L.
    v12.vm_exit_controls &= !exit::HOST_ADDRESS_SPACE_SIZE;
    let mut v01 = FakeVmcs::new();
    v01.poke(F::VmEntryControls, 0x11ff | ia32e);
    assert_eq!(load_l1_host_state(&v12, &mut v01, &hw, l1_efer | lme | lma), l1_efer);
    assert_eq!(v01.peek(F::Cr4ReadShadow), 0x2000);
    assert_eq!(v01.peek(F::GuestCsArBytes), 0xc09b);
    assert_eq!(v01.peek(F::VmEntryControls), 0x11ff);
    // SDM 27.5.2: LDTR is unusable after every VM exit.
    assert_eq!(v01.peek(F::GuestLdtrArBytes), 1 << 16);
    // A 64-bit host whose CR4.PAE, EFER.LMA and EFER.LME are already 1 keeps them.
    v12.vm_exit_controls |= exit::HOST_ADDRESS_SPACE_SIZE;
    v12.host_cr4 = 0x2020;
    let mut v01 = FakeVmcs::new();
    assert_eq!(load_l1_host_state(&v12, &mut v01, &hw, l1_efer | lme | lma), l1_efer | lme | lma);
    assert_eq!(v01.peek(F::Cr4ReadShadow), 0x2020);
}

/// The controls L1's vmcs12 contributes to vmcs02, one bit at a time, with an L0 that asks for
/// nothing itself: each listed bit reaches vmcs02 when L1 sets it and stays clear when L1 does
/// not (SDM 25.6: the controls decide which instructions and events exit; L0 adds its own
/// and reflects the rest). The lists are written out here, not taken from `merge.rs`.
#[test]
fn each_control_l1_passes_reaches_vmcs02_alone() {
    let hw = skylake();
    let mut l0c = l0();
    (l0c.pin, l0c.proc1, l0c.proc2) = (0, 0, 0);
    let mut base = valid_vmcs12(&l1());
    base.pin_based_vm_exec_control = 0;
    base.cpu_based_vm_exec_control = proc1::ACTIVATE_SECONDARY_CONTROLS;
    base.secondary_vm_exec_control = 0;
    let bitmaps =
        proc1::USE_MSR_BITMAPS | proc1::USE_IO_BITMAPS | proc1::ACTIVATE_SECONDARY_CONTROLS;
    let none = Controls02::merge(&base, &l0c, &inputs());
    assert_eq!(none.pin, hw.pin().adjust(0), "L1 asks for no pin-based control");
    assert_eq!(none.proc1, hw.primary().adjust(bitmaps), "only the bitmaps L0 merges");
    assert_eq!(none.proc2, hw.secondary().adjust(0));
    for bit in [pin::NMI_EXITING, pin::NMI_EXITING | pin::VIRTUAL_NMIS] {
        let mut v12 = base.clone();
        v12.pin_based_vm_exec_control = bit;
        assert_eq!(Controls02::merge(&v12, &l0c, &inputs()).pin, hw.pin().adjust(bit));
    }
    // External interrupts and posted interrupts are L0's to decide.
    let mut v12 = base.clone();
    v12.pin_based_vm_exec_control = pin::EXTERNAL_INTERRUPT_EXITING | pin::POSTED_INTERRUPTS;
    assert_eq!(Controls02::merge(&v12, &l0c, &inputs()).pin, hw.pin().adjust(0));
    let passed1 = [
        proc1::INTERRUPT_WINDOW_EXITING,
        proc1::USE_TSC_OFFSETTING,
        proc1::HLT_EXITING,
        proc1::INVLPG_EXITING,
        proc1::MWAIT_EXITING,
        proc1::RDPMC_EXITING,
        proc1::RDTSC_EXITING,
        proc1::CR3_LOAD_EXITING,
        proc1::CR3_STORE_EXITING,
        proc1::CR8_LOAD_EXITING,
        proc1::CR8_STORE_EXITING,
        proc1::NMI_WINDOW_EXITING,
        proc1::MOV_DR_EXITING,
        proc1::MONITOR_TRAP_FLAG,
        proc1::MONITOR_EXITING,
        proc1::PAUSE_EXITING,
    ];
    for bit in passed1 {
        let mut v12 = base.clone();
        v12.cpu_based_vm_exec_control |= bit;
        let c = Controls02::merge(&v12, &l0c, &inputs());
        assert_eq!(c.proc1, hw.primary().adjust(bitmaps | bit), "primary bit {bit:#x}");
    }
    // L1's TPR shadow without a virtual-APIC page from L0 (`Vmcs02Inputs::virtual_apic`)
    // and its bitmap controls are not vmcs02's (L0 merges the bitmaps).
    let mut v12 = base.clone();
    v12.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW | proc1::UNCONDITIONAL_IO_EXITING;
    assert_eq!(Controls02::merge(&v12, &l0c, &inputs()).proc1, hw.primary().adjust(bitmaps));
    let passed2 = [
        proc2::DESCRIPTOR_TABLE_EXITING,
        proc2::ENABLE_RDTSCP,
        proc2::WBINVD_EXITING,
        proc2::UNRESTRICTED_GUEST,
        proc2::PAUSE_LOOP_EXITING,
        proc2::RDRAND_EXITING,
        proc2::ENABLE_INVPCID,
        proc2::RDSEED_EXITING,
        proc2::ENABLE_XSAVES,
        proc2::ENABLE_USER_WAIT_PAUSE,
        // VM functions stay enabled with their controls 0: every VMFUNC exits to L0.
        proc2::ENABLE_VM_FUNCTIONS,
    ];
    for bit in passed2 {
        let mut v12 = base.clone();
        v12.secondary_vm_exec_control = bit;
        let c = Controls02::merge(&v12, &l0c, &inputs());
        assert_eq!(c.proc2, hw.secondary().adjust(bit), "secondary bit {bit:#x}");
        // Without "activate secondary controls" L1's secondary controls are 0.
        v12.cpu_based_vm_exec_control &= !proc1::ACTIVATE_SECONDARY_CONTROLS;
        let c = Controls02::merge(&v12, &l0c, &inputs());
        assert_eq!(c.proc2, hw.secondary().adjust(0), "secondary bit {bit:#x} not activated");
    }
    let mut v12 = base.clone();
    v12.secondary_vm_exec_control = proc2::VIRTUALIZE_APIC_ACCESSES | proc2::ENABLE_PML;
    assert_eq!(Controls02::merge(&v12, &l0c, &inputs()).proc2, hw.secondary().adjust(0));
    let mut v02 = FakeVmcs::new();
    v12.secondary_vm_exec_control = proc2::ENABLE_VM_FUNCTIONS;
    v12.vm_function_control = 1;
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0c, &inputs());
    assert_eq!(v02.peek(F::VmFunctionControl), 0);
    // L0's own "activate secondary controls" stays set.
    l0c.proc1 = proc1::ACTIVATE_SECONDARY_CONTROLS;
    assert_ne!(
        Controls02::merge(&base, &l0c, &inputs()).proc1 & proc1::ACTIVATE_SECONDARY_CONTROLS,
        0
    );
}

/// SDM 26.3.2.1: L0 always loads L2's EFER, PAT and debug controls (its own or L1's values);
/// "IA-32e mode guest" is vmcs12's, every other entry control L0's.
#[test]
fn entry_controls_are_l0s_but_ia32e_mode_guest() {
    let hw = skylake();
    let mut l0c = l0();
    l0c.entry = entry::IA32E_MODE_GUEST;
    let loads = entry::LOAD_IA32_EFER | entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS;
    let mut v12 = valid_vmcs12(&l1());
    v12.vm_entry_controls = entry::LOAD_DEBUG_CONTROLS | entry::DEACTIVATE_DUAL_MONITOR;
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.entry, hw.entry_controls().adjust(loads));
    v12.vm_entry_controls |= entry::IA32E_MODE_GUEST;
    l0c.entry = 0;
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.entry, hw.entry_controls().adjust(loads | entry::IA32E_MODE_GUEST));
    // L0 asking for the loads itself changes nothing.
    l0c.entry = loads;
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.entry, hw.entry_controls().adjust(loads | entry::IA32E_MODE_GUEST));
}

/// L1's preemption timer on hardware that cannot save it at exits: vmcs02 saves it only if
/// L1 asked ("save VMX-preemption-timer value" is vmcs12's then), and L0's exit controls stay.
#[test]
fn l1_preemption_timer_without_hardware_save() {
    let mut hw = skylake();
    hw.true_exit &= !(u64::from(exitc::SAVE_PREEMPTION_TIMER) << 32);
    hw.exit &= !(u64::from(exitc::SAVE_PREEMPTION_TIMER) << 32);
    let mut l0c = l0();
    l0c.hw = hw;
    let mut v12 = valid_vmcs12(&l1());
    v12.pin_based_vm_exec_control |= pin::PREEMPTION_TIMER;
    v12.vm_exit_controls = exitc::SAVE_PREEMPTION_TIMER | exitc::SAVE_DEBUG_CONTROLS;
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.exit, hw.exit_controls().adjust(l0c.exit | exitc::SAVE_PREEMPTION_TIMER));
    v12.vm_exit_controls = exitc::SAVE_DEBUG_CONTROLS;
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.exit, hw.exit_controls().adjust(l0c.exit));
}

/// [`reads_l1_state`] says exactly when [`prepare_vmcs02`] reads L1's EFER/PAT/debug state: a
/// default [`L1State`] gives the same vmcs02 when it says no.
#[test]
fn reads_l1_state_matches_what_prepare_reads() {
    let v12 = valid_vmcs12(&l1());
    for f in [
        F::GuestIa32Efer,
        F::GuestIa32Pat,
        F::GuestIa32Debugctl,
        F::GuestDr7,
        F::GuestCr0,
        F::VmEntryControls,
    ] {
        assert!(reads_l1_state(&DirtySet::of(&[f])), "{}", f.name());
    }
    for dirty in [DirtySet::of(&[F::GuestRip, F::GuestRsp]), DirtySet::of(&[F::ExceptionBitmap])] {
        assert!(!reads_l1_state(&dirty));
        let (mut a, mut b) = (FakeVmcs::new(), FakeVmcs::new());
        let mut blank = inputs();
        blank.l1 = L1State { tsc_offset: blank.l1.tsc_offset, ..L1State::default() };
        prepare_vmcs02(&mut a, &v12, &dirty, &l0(), &inputs());
        prepare_vmcs02(&mut b, &v12, &dirty, &l0(), &blank);
        assert_eq!(a.log(), b.log());
    }
}

/// With unrestricted guest, CR0.PE and CR0.PG may be 0 in vmcs02 (SDM 26.3.1.1), so L0 owns
/// them only if L1 does: L2 switches paging without exits. Without it they are fixed to 1.
#[test]
fn unrestricted_guest_leaves_pe_and_pg_to_l2() {
    let pe_pg = cr0::PE | cr0::PG;
    let mut v12 = valid_vmcs12(&l1());
    v12.cr0_guest_host_mask = 0;
    let c = Controls02::merge(&v12, &l0(), &inputs());
    assert_eq!(c.proc2 & proc2::UNRESTRICTED_GUEST, proc2::UNRESTRICTED_GUEST);
    assert_eq!(c.cr0_mask & pe_pg, 0);
    assert_eq!(c.cr0_mask & (1 << 5), 1 << 5, "NE stays fixed");
    v12.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST;
    let c = Controls02::merge(&v12, &l0(), &inputs());
    assert_eq!(c.cr0_mask & pe_pg, pe_pg);
}

/// vmcs02's CR4 guest/host mask is exactly L0's bits, the bits the hardware fixes and the bits
/// L1 owns (cut to 32 bits, as the field is natural-width and CR4's upper bits are reserved):
/// an L2 write to any other CR4 bit does not exit.
#[test]
fn cr4_mask_is_l0s_fixed_and_l1s_bits_only() {
    let hw = skylake();
    let mut v12 = valid_vmcs12(&l1());
    v12.cr4_guest_host_mask = 1 << 7; // PGE
    let mut l0c = l0();
    l0c.cr4_mask = 1 << 18; // OSXSAVE
    let c = Controls02::merge(&v12, &l0c, &inputs());
    let fixed = (hw.cr4_fixed0 | !hw.cr4_fixed1) & 0xffff_ffff;
    assert_eq!(c.cr4_mask, fixed | 1 << 7 | 1 << 18);
    assert_eq!(c.cr4_mask & (1 << 9), 0, "OSFXSR is L2's");
}

/// SDM 26.3.2.1 without "load IA32_EFER": L2 keeps L1's EFER except that LMA takes the value
/// of "IA-32e mode guest", and LME too when CR0.PG is 1; with the control, vmcs12's EFER.
#[test]
fn l2_efer_without_load_efer_follows_ia32e_mode_guest() {
    let (lme, lma) = (efer::LME, efer::LMA);
    let mut inp = inputs();
    let l1_efer = efer::SCE | efer::NXE;
    let efer02 = |v12: &Vmcs12, inp: &Vmcs02Inputs| {
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, v12, &DirtySet::of(&[F::VmEntryControls]), &l0(), inp);
        v02.peek(F::GuestIa32Efer)
    };
    let mut v12 = valid_vmcs12(&l1());
    v12.guest_ia32_efer = lme | lma;
    assert_eq!(efer02(&v12, &inp), lme | lma, "loaded from vmcs12");
    v12.vm_entry_controls &= !entry::LOAD_IA32_EFER;
    inp.l1.efer = l1_efer;
    assert_eq!(efer02(&v12, &inp), l1_efer | lme | lma, "64-bit L2, L1's other bits");
    v12.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
    inp.l1.efer = l1_efer | lme | lma;
    assert_eq!(efer02(&v12, &inp), l1_efer, "paging on: LME follows IA-32e mode guest");
    v12.guest_cr0 &= !cr0::PG;
    assert_eq!(efer02(&v12, &inp), l1_efer | lme, "paging off: L1's LME stays, LMA 0");
    inp.l1.efer = l1_efer | lma;
    assert_eq!(efer02(&v12, &inp), l1_efer);
}

/// vmcs02's CR0 satisfies the hardware's fixed bits, PE and PG exempt only under unrestricted
/// guest (SDM 26.3.1.1), whatever vmcs12 holds.
#[test]
fn vmcs02_cr0_follows_the_hardware_fixed_bits() {
    let mut v12 = valid_vmcs12(&l1());
    v12.guest_cr0 = 0x11; // PE and ET; PG 0, NE 0
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::GuestCr0), 0x31, "NE forced, PG left to L2");
    v12.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST;
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::GuestCr0), 0x8000_0031, "PG forced without unrestricted guest");
}

/// A vmcs12 whose CR4 alone changed rewrites vmcs02's CR4, its mask and its read shadow.
#[test]
fn cr4_fields_alone_are_written() {
    let mut v12 = valid_vmcs12(&l1());
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    v02.clear_log();
    v12.guest_cr4 |= 1 << 7;
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::GuestCr4]), &l0(), &inputs());
    let mut w = v02.writes();
    w.sort_by_key(|f| f.name());
    assert_eq!(w, [F::Cr4GuestHostMask, F::Cr4ReadShadow, F::GuestCr4]);
    assert_eq!(v02.peek(F::GuestCr4) & 1 << 7, 1 << 7);
    // Likewise CR0 alone (its fields are also in the EFER/PAT/debug set).
    v02.clear_log();
    v12.guest_cr0 |= 1 << 16;
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::GuestCr0]), &l0(), &inputs());
    for f in [F::GuestCr0, F::Cr0GuestHostMask, F::Cr0ReadShadow] {
        assert!(v02.writes().contains(&f), "{}", f.name());
    }
    assert_eq!(v02.peek(F::GuestCr0) & 1 << 16, 1 << 16);
}

/// SDM 26.3.2.1: PAT, DR7 and IA32_DEBUGCTL come from vmcs12 only under "load IA32_PAT" and
/// "load debug controls"; otherwise L2 keeps L1's.
#[test]
fn pat_and_debug_state_load_only_under_their_controls() {
    let mut v12 = valid_vmcs12(&l1());
    v12.guest_ia32_pat = 0x0606_0606_0606_0606;
    (v12.guest_dr7, v12.guest_ia32_debugctl) = (0x401, 1);
    let mut inp = inputs();
    (inp.l1.dr7, inp.l1.debugctl) = (0x402, 2);
    let state = |v12: &Vmcs12| {
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, v12, &DirtySet::all(), &l0(), &inp);
        [F::GuestIa32Pat, F::GuestDr7, F::GuestIa32Debugctl].map(|f| v02.peek(f))
    };
    v12.vm_entry_controls &= !(entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS);
    assert_eq!(state(&v12), [inp.l1.pat, 0x402, 2]);
    v12.vm_entry_controls |= entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS;
    assert_eq!(state(&v12), [0x0606_0606_0606_0606, 0x401, 1]);
}

/// TSC offset (SDM 25.6.5): L0's offset for L1, plus vmcs12's only under "use TSC
/// offsetting". CR3-target values (25.6.7) pass through only while L0 does not intercept
/// CR3 loads itself, at most 4.
#[test]
fn tsc_offset_and_cr3_targets() {
    let mut v12 = valid_vmcs12(&l1());
    v12.cpu_based_vm_exec_control &= !proc1::USE_TSC_OFFSETTING;
    v12.tsc_offset = 5;
    v12.cr3_target_count = 2;
    (v12.cr3_target_value0, v12.cr3_target_value1) = (0x1000, 0x2000);
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::TscOffset), 100, "vmcs12's offset unused");
    assert_eq!(v02.peek(F::Cr3TargetCount), 2);
    assert_eq!((v02.peek(F::Cr3TargetValue0), v02.peek(F::Cr3TargetValue1)), (0x1000, 0x2000));
    let mut l0c = l0();
    l0c.proc1 |= proc1::CR3_LOAD_EXITING;
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0c, &inputs());
    assert_eq!(v02.peek(F::Cr3TargetCount), 0);
    assert!(!v02.writes().contains(&F::Cr3TargetValue0));
}

/// vmcs02 fields that belong to a control are written only when vmcs02 has the control and,
/// for those L1 supplies (XSS-exiting bitmap, PLE gap and window, preemption-timer value),
/// only when L1 asked for it: with L0 running its own XSAVES, PLE or preemption timer, L1's
/// values must not replace L0's.
#[test]
fn control_fields_are_written_only_for_their_controls() {
    let written = |v12: &Vmcs12, l0c: &L0Config| {
        let mut v02 = FakeVmcs::new();
        prepare_vmcs02(&mut v02, v12, &DirtySet::all(), l0c, &inputs());
        v02.writes()
    };
    let mut v12 = valid_vmcs12(&l1());
    v12.secondary_vm_exec_control &= !(proc2::ENABLE_XSAVES | proc2::PAUSE_LOOP_EXITING);
    v12.pin_based_vm_exec_control &= !pin::PREEMPTION_TIMER;
    let mut l0c = l0();
    l0c.hw.procbased2 |= u64::from(proc2::ENABLE_XSAVES) << 32;
    let l0_xsaves = l0c;
    l0c.proc2 = proc2::ENABLE_XSAVES | proc2::PAUSE_LOOP_EXITING;
    l0c.pin |= pin::PREEMPTION_TIMER;
    let w = written(&v12, &l0c);
    for f in [
        F::EptPointer,
        F::VirtualProcessorId,
        F::VmFunctionControl,
        F::XssExitingBitmap,
        F::PleGap,
        F::PleWindow,
        F::VmxPreemptionTimerValue,
    ] {
        assert!(!w.contains(&f), "{}", f.name());
    }
    // L1 asks for all three while L0 has them too: vmcs12's values go in, but never the
    // preemption-timer value over L0's own timer.
    v12.secondary_vm_exec_control |= proc2::ENABLE_XSAVES | proc2::PAUSE_LOOP_EXITING;
    v12.pin_based_vm_exec_control |= pin::PREEMPTION_TIMER;
    let w = written(&v12, &l0c);
    for f in [F::XssExitingBitmap, F::PleGap, F::PleWindow] {
        assert!(w.contains(&f), "{}", f.name());
    }
    assert!(!w.contains(&F::VmxPreemptionTimerValue));
    // L1 asks for them and L0 does not: vmcs02 gets them from vmcs12.
    let w = written(&v12, &l0_xsaves);
    for f in [F::XssExitingBitmap, F::PleGap, F::PleWindow, F::VmxPreemptionTimerValue] {
        assert!(w.contains(&f), "{}", f.name());
    }
    // Hardware without XSAVES (the recorded Skylake's secondary controls): vmcs02 cannot
    // have it, and its XSS-exiting bitmap is not written.
    assert!(!written(&v12, &l0()).contains(&F::XssExitingBitmap));
    // Likewise PLE on hardware without it, and no timer value when neither L0 nor L1 has
    // the preemption timer.
    let mut no_ple = l0();
    no_ple.hw.procbased2 &= !(u64::from(proc2::PAUSE_LOOP_EXITING) << 32);
    assert!(!written(&v12, &no_ple).contains(&F::PleGap));
    v12.pin_based_vm_exec_control &= !pin::PREEMPTION_TIMER;
    assert!(!written(&v12, &l0()).contains(&F::VmxPreemptionTimerValue));
}

/// Exceptions and CR bits both L0 and L1 intercept stay intercepted (a union, not a
/// difference): the exception bitmap, and CR0/CR4 bits L1 owns that L0 or the hardware's
/// fixed bits also own.
#[test]
fn shared_intercepts_stay_in_vmcs02() {
    let hw = skylake();
    let mut v12 = valid_vmcs12(&l1());
    v12.exception_bitmap = 1 << 18 | 1 << 6;
    v12.cr0_guest_host_mask = 1 << 5 | 1 << 16; // NE (fixed), WP
    v12.cr4_guest_host_mask = 1 << 13 | 1 << 18; // VMXE (fixed), OSXSAVE
    let mut l0c = l0();
    (l0c.cr0_mask, l0c.cr4_mask) = (1 << 16, 1 << 18);
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!(c.exception_bitmap, 1 << 18 | 1 << 6);
    let cr0_fixed = (hw.cr0_fixed0 | !hw.cr0_fixed1) & 0xffff_ffff & !(cr0::PE | cr0::PG);
    assert_eq!(c.cr0_mask, cr0_fixed | 1 << 5 | 1 << 16);
    let cr4_fixed = (hw.cr4_fixed0 | !hw.cr4_fixed1) & 0xffff_ffff;
    assert_eq!(c.cr4_mask, cr4_fixed | 1 << 13 | 1 << 18);
    // L0 itself naming a fixed bit.
    (v12.cr0_guest_host_mask, v12.cr4_guest_host_mask) = (0, 0);
    (l0c.cr0_mask, l0c.cr4_mask) = (1 << 5, 1 << 13);
    let c = Controls02::merge(&v12, &l0c, &inputs());
    assert_eq!((c.cr0_mask, c.cr4_mask), (cr0_fixed, cr4_fixed));
}

/// vmcs12's TPR shadow (SDM 29.3) in vmcs02: on L1's page (the host address L0 found), with
/// vmcs12's TPR threshold; L0's CR8 exiting dropped (the processor virtualizes L2's CR8 on
/// VTPR), vmcs12's own CR8 exiting kept (it takes precedence: the exit is L1's).
#[test]
fn tpr_shadow_points_vmcs02_at_l1s_page_and_drops_l0s_cr8_exiting() {
    const CR8: u32 = proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING;
    // L0's CR8 exiting, as the image's vmcs02 has it (`L1Vmx::l0`).
    let l0c = L0Config { proc1: l0().proc1 | CR8, ..l0() };
    let page = Vmcs02Inputs { virtual_apic: Some(Hpa(0x0432_1000)), ..inputs() };
    let mut v12 = valid_vmcs12(&l1());
    v12.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW;
    v12.virtual_apic_page_addr = 0x5000;
    v12.tpr_threshold = 2;

    // Without TPR shadow in vmcs12 (or without a page): CR8 exits to L0, no shadow.
    let mut plain = v12.clone();
    plain.cpu_based_vm_exec_control &= !proc1::USE_TPR_SHADOW;
    for (v, i) in [(&plain, &page), (&v12, &inputs())] {
        let p1 = Controls02::merge(v, &l0c, i).proc1;
        assert_eq!(p1 & (CR8 | proc1::USE_TPR_SHADOW), CR8);
    }

    // With it: the shadow, no CR8 exiting; the page and threshold written.
    let p1 = Controls02::merge(&v12, &l0c, &page).proc1;
    assert_eq!(p1 & (CR8 | proc1::USE_TPR_SHADOW), proc1::USE_TPR_SHADOW);
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0c, &page);
    assert_eq!(v02.peek(F::VirtualApicPageAddr), 0x0432_1000, "host address, not vmcs12's");
    assert_eq!(v02.peek(F::TprThreshold), 2);
    assert_eq!(v02.peek(F::CpuBasedVmExecControl) as u32 & CR8, 0);

    // vmcs12's own CR8 exiting stays (each alone, and both).
    for bits in [proc1::CR8_LOAD_EXITING, proc1::CR8_STORE_EXITING, CR8] {
        let mut v = v12.clone();
        v.cpu_based_vm_exec_control |= bits;
        let p1 = Controls02::merge(&v, &l0c, &page).proc1;
        assert_eq!(p1 & (CR8 | proc1::USE_TPR_SHADOW), bits | proc1::USE_TPR_SHADOW, "{bits:#x}");
    }

    // Dirty-driven: L1's VMWRITE of the threshold or the address reaches vmcs02 at the next
    // entry; an entry that changed neither writes neither.
    for f in [F::TprThreshold, F::VirtualApicPageAddr] {
        let mut v02 = FakeVmcs::new();
        let mut v = v12.clone();
        v.tpr_threshold = 1;
        let moved = Vmcs02Inputs { virtual_apic: Some(Hpa(0x0876_5000)), ..page };
        prepare_vmcs02(&mut v02, &v, &DirtySet::of(&[f]), &l0c, &moved);
        assert_eq!(v02.peek(F::TprThreshold), 1, "{f:?}");
        assert_eq!(v02.peek(F::VirtualApicPageAddr), 0x0876_5000, "{f:?}");
    }
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::GuestRip]), &l0c, &page);
    let writes = v02.writes();
    assert!(!writes.contains(&F::TprThreshold) && !writes.contains(&F::VirtualApicPageAddr));
}

/// vmcs12's VMCS shadowing never reaches vmcs02: the processor would let L2's VMREAD/VMWRITE
/// through to vmcs02's link pointer (FFFFFFFF_FFFFFFFFH: VMfailInvalid) instead of exiting to
/// L0, which performs them on L1's shadow VMCS (`shadow12`).
#[test]
fn vmcs12_vmcs_shadowing_stays_out_of_vmcs02() {
    let mut v12 = valid_vmcs12(&l1());
    v12.secondary_vm_exec_control |= proc2::VMCS_SHADOWING;
    v12.vmcs_link_pointer = 0x5000;
    v12.vmread_bitmap = 0x6000;
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &inputs());
    assert_eq!(v02.peek(F::SecondaryVmExecControl) as u32 & proc2::VMCS_SHADOWING, 0);
    assert_eq!(v02.peek(F::VmcsLinkPointer), u64::MAX);
}

/// vmcs12's "virtualize APIC accesses" (SDM 29.4) in vmcs02: on L1's page (the host address
/// L0 found), so the processor's APIC-access exits and virtualized VTPR accesses happen on
/// what EPT02 maps for it; without a page from L0 vmcs02 does not virtualize (the image stops
/// L1 instead: a page outside L1 RAM is not emulated). A changed address reaches vmcs02 at
/// the next entry.
#[test]
fn apic_access_page_is_l1s_page_in_vmcs02() {
    let page = Vmcs02Inputs { apic_access: Some(Hpa(0x0765_4000)), ..inputs() };
    let mut v12 = valid_vmcs12(&l1());
    v12.secondary_vm_exec_control |= proc2::VIRTUALIZE_APIC_ACCESSES;
    v12.apic_access_addr = 0x9000;
    let p2 = Controls02::merge(&v12, &l0(), &page).proc2;
    assert_ne!(p2 & proc2::VIRTUALIZE_APIC_ACCESSES, 0);
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0(), &page);
    assert_eq!(v02.peek(F::ApicAccessAddr), 0x0765_4000, "host address, not vmcs12's");
    assert_eq!(
        Controls02::merge(&v12, &l0(), &inputs()).proc2 & proc2::VIRTUALIZE_APIC_ACCESSES,
        0
    );
    let mut plain = v12.clone();
    plain.secondary_vm_exec_control &= !proc2::VIRTUALIZE_APIC_ACCESSES;
    assert_eq!(Controls02::merge(&plain, &l0(), &page).proc2 & proc2::VIRTUALIZE_APIC_ACCESSES, 0);
    let moved = Vmcs02Inputs { apic_access: Some(Hpa(0x0111_2000)), ..page };
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::of(&[F::ApicAccessAddr]), &l0(), &moved);
    assert_eq!(v02.peek(F::ApicAccessAddr), 0x0111_2000);
}
