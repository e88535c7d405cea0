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
