//! End-to-end: one reflected L2 CPUID exit through every piece, as the crate docs describe
//! it, with fake VMCSs standing in for the hardware.

use crate::addr::{Hpa, L1Gpa};
use crate::exits::{ExitInfo, ExitRoute, L0Intercepts, route};
use crate::guest::{Gpr, GuestMemory, GuestRegs};
use crate::testutil::{TestL1, l1, valid_vmcs12};
use crate::vmcs::{DirtySet, FakeVmcs, VMCS12_REVISION, VmcsField as F};
use crate::vmx::merge::{L1State, Vmcs02Inputs, prepare_vmcs02};
use crate::vmx::sync::{SyncScope, load_l1_host_state, sync_vmcs12};
use crate::vmx::{L1Cpu, NestedVmx, VmxResult};

fn reg_exit(reason: u32) -> ExitInfo {
    // Value register RAX (reg1), encoding register RDX (reg2).
    ExitInfo { reason, instruction_info: 1 << 10 | 2 << 28, ..Default::default() }
}

fn mem_exit(reason: u32) -> ExitInfo {
    ExitInfo {
        reason,
        instruction_info: 2 << 7 | 3 << 15 | 1 << 22 | 3 << 23,
        ..Default::default()
    }
}

#[test]
fn reflected_cpuid_round_trip_copies_only_dirty_fields() {
    let caps = l1();
    let mut vmx = NestedVmx::new(caps, 36);
    let mut l1m = TestL1::new(0x10_0000);
    let cpu = L1Cpu::long_mode_ring0();
    l1m.mem.write_u32(L1Gpa(0x1000), VMCS12_REVISION).unwrap();
    l1m.mem.write_u32(L1Gpa(0x2000), VMCS12_REVISION).unwrap();

    // L1: VMXON, VMPTRLD, VMWRITE the whole vmcs12, VMLAUNCH.
    for (reason, ptr) in [(27, 0x1000), (21, 0x2000)] {
        l1m.mem.write_u64(L1Gpa(0x100), ptr).unwrap();
        l1m.set(Gpr::Rbx, 0x100);
        assert_eq!(vmx.emulate(&mem_exit(reason), &cpu, &mut l1m).unwrap().0, VmxResult::Succeed);
    }
    let wanted = valid_vmcs12(&caps);
    for &f in F::ALL {
        if wanted.get(f) != 0 && !f.is_read_only() {
            l1m.set(Gpr::Rdx, f.encoding().into());
            l1m.set(Gpr::Rax, wanted.get(f));
            assert_eq!(vmx.emulate(&reg_exit(25), &cpu, &mut l1m).unwrap().0, VmxResult::Succeed);
        }
    }
    let launch = vmx.emulate(&reg_exit(20), &cpu, &mut l1m).unwrap().0;
    assert_eq!(launch, VmxResult::EnterL2 { launch: true });

    // L0: full merge into a fresh vmcs02.
    let l0 = crate::vmx::merge::tests::l0();
    let inputs = Vmcs02Inputs {
        eptp02: 0x5_5000 | 6 | 3 << 3,
        vpid02: 2,
        msr_bitmap: Some(Hpa(0x9000)),
        io_bitmaps: None,
        virtual_apic: None,
        apic_access: None,
        l1: L1State::default(),
    };
    let mut vmcs02 = FakeVmcs::new();
    prepare_vmcs02(&mut vmcs02, &vmx.vmcs12, &vmx.dirty, &l0, &inputs);
    vmx.dirty.clear();
    assert_eq!(vmcs02.peek(F::GuestRip), 0x1000);

    // L2 executes CPUID: the hardware exits to L0 with vmcs02 current.
    vmcs02.poke(F::VmExitReason, 10);
    vmcs02.poke(F::VmExitInstructionLen, 2);
    let info = ExitInfo::read(&vmcs02);
    let regs = crate::guest::Regs::default();
    let r = route(&info, &L0Intercepts::default(), &vmx.vmcs12, &regs, &l1m).unwrap();
    assert_eq!(r, ExitRoute::L1);

    // Reflect: sync vmcs12 (hot fields), load L1's host state into vmcs01.
    vmcs02.clear_log();
    sync_vmcs12(&vmcs02, &mut vmx.vmcs12, &info, SyncScope::Hot);
    let reads = vmcs02.log().len();
    assert!(reads <= 20, "a hot sync reads {reads} fields");
    let mut vmcs01 = FakeVmcs::new();
    load_l1_host_state(&vmx.vmcs12, &mut vmcs01, &l0.hw, 0xd01);
    assert_eq!(vmcs01.peek(F::GuestRip), wanted.host_rip);

    // L1 handles CPUID: reads the exit reason and RIP, advances RIP, VMRESUMEs.
    l1m.set(Gpr::Rdx, F::VmExitReason.encoding().into());
    assert_eq!(vmx.emulate(&reg_exit(23), &cpu, &mut l1m).unwrap().0, VmxResult::Succeed);
    assert_eq!(l1m.gpr(Gpr::Rax), 10);
    l1m.set(Gpr::Rdx, F::GuestRip.encoding().into());
    l1m.set(Gpr::Rax, 0x1002);
    assert_eq!(vmx.emulate(&reg_exit(25), &cpu, &mut l1m).unwrap().0, VmxResult::Succeed);
    let resume = vmx.emulate(&reg_exit(24), &cpu, &mut l1m).unwrap().0;
    assert_eq!(resume, VmxResult::EnterL2 { launch: false });

    // L0 merges only what L1 changed.
    assert_eq!(vmx.dirty, DirtySet::of(&[F::GuestRip]));
    vmcs02.clear_log();
    prepare_vmcs02(&mut vmcs02, &vmx.vmcs12, &vmx.dirty, &l0, &inputs);
    vmx.dirty.clear();
    assert_eq!(vmcs02.writes(), [F::GuestRip]);
    assert_eq!(vmcs02.peek(F::GuestRip), 0x1002);

    // An external interrupt while L2 runs is L0's.
    let ext = ExitInfo { reason: 1, ..Default::default() };
    let r = route(&ext, &L0Intercepts::default(), &vmx.vmcs12, &regs, &l1m).unwrap();
    assert_eq!(r, ExitRoute::L0);
}

/// The lazy path: a hot sync leaves the rare guest fields in vmcs02; VMRESUME without
/// touching them checks only the rest; a VMREAD of a rare field, a VM entry after a change
/// to what the rare checks depend on, and VMPTRLD/VMCLEAR/VMXOFF ask for the rare sync first,
/// after which L1 reads what the VM exit saved.
#[test]
fn lazy_rare_sync_is_asked_for_exactly_when_needed() {
    use crate::vmx::sync::sync_vmcs12_rare;
    let caps = l1();
    let mut vmx = NestedVmx::new(caps, 36);
    let mut l1m = TestL1::new(0x10_0000);
    let cpu = L1Cpu::long_mode_ring0();
    vmx.vmxon = true;
    vmx.vmxon_ptr = L1Gpa(0x1000);
    vmx.current = Some(L1Gpa(0x2000));
    vmx.vmcs12 = valid_vmcs12(&caps);
    vmx.vmcs12.launch_state = 1;
    vmx.dirty.clear();

    // L2 ran and changed a rare field (FS base) and RIP; the exit is reflected lazily.
    let mut vmcs02 = FakeVmcs::new();
    for &f in F::ALL {
        vmcs02.poke(f, vmx.vmcs12.get(f));
    }
    vmcs02.poke(F::GuestFsBase, 0xfeed_0000);
    vmcs02.poke(F::GuestRip, 0x1234);
    let info = ExitInfo { reason: 10, instruction_len: 2, ..Default::default() };
    sync_vmcs12(&vmcs02, &mut vmx.vmcs12, &info, SyncScope::Hot);
    vmx.rare_stale = true;
    assert_eq!(vmx.vmcs12.guest_rip, 0x1234);
    assert_ne!(vmx.vmcs12.guest_fs_base, 0xfeed_0000, "rare field left in vmcs02");

    // VMREAD of a hot field or of a control: no sync; of a rare field: sync.
    let read = |field: F, l1m: &mut TestL1| {
        l1m.set(Gpr::Rdx, field.encoding().into());
        reg_exit(23)
    };
    let e = read(F::GuestRip, &mut l1m);
    assert!(!vmx.needs_rare_sync(&e, &cpu, &l1m));
    let e = read(F::EptPointer, &mut l1m);
    assert!(!vmx.needs_rare_sync(&e, &cpu, &l1m));
    let e = read(F::GuestFsBase, &mut l1m);
    assert!(vmx.needs_rare_sync(&e, &cpu, &l1m));
    l1m.set(Gpr::Rdx, u64::from(F::GuestPdpte1.encoding()) | 1);
    assert!(vmx.needs_rare_sync(&reg_exit(25), &cpu, &l1m), "HIGH access of a rare field");
    for reason in [21, 19, 26] {
        assert!(vmx.needs_rare_sync(&mem_exit(reason), &cpu, &l1m), "reason {reason}");
    }
    assert!(!vmx.needs_rare_sync(&mem_exit(22), &cpu, &l1m), "VMPTRST writes no vmcs12");

    // VMRESUME after L1 advanced RIP: no sync, the hot checks pass, L2 runs.
    vmx.vmcs12.guest_rip = 0x1236;
    vmx.dirty.insert(F::GuestRip);
    assert!(!vmx.needs_rare_sync(&reg_exit(24), &cpu, &l1m));
    let r = vmx.emulate(&reg_exit(24), &cpu, &mut l1m).unwrap().0;
    assert_eq!(r, VmxResult::EnterL2 { launch: false });
    // ... but after a change of CR0 or the entry controls the rare fields are synced first.
    for f in [F::GuestCr0, F::VmEntryControls, F::SecondaryVmExecControl, F::GuestCsArBytes] {
        vmx.dirty.insert(f);
        assert!(vmx.needs_rare_sync(&reg_exit(24), &cpu, &l1m), "{}", f.name());
        vmx.dirty.clear();
    }

    // The sync brings L2's rare state; then nothing more is needed.
    sync_vmcs12_rare(&vmcs02, &mut vmx.vmcs12);
    vmx.rare_stale = false;
    let e = read(F::GuestFsBase, &mut l1m);
    assert!(!vmx.needs_rare_sync(&e, &cpu, &l1m));
    assert_eq!(vmx.emulate(&e, &cpu, &mut l1m).unwrap().0, VmxResult::Succeed);
    assert_eq!(l1m.gpr(Gpr::Rax), 0xfeed_0000);
}

/// The control and host-state checks are skipped only while nothing they read changed since
/// they last passed: a field L1 writes, or the VM-entry controls L0 updates, runs them again.
#[test]
fn entry_check_cache_never_hides_a_change() {
    use crate::vmx::VmInstructionError;
    let caps = l1();
    let mut vmx = NestedVmx::new(caps, 36);
    let mut l1m = TestL1::new(0x10_0000);
    let cpu = L1Cpu::long_mode_ring0();
    vmx.vmxon = true;
    vmx.vmxon_ptr = L1Gpa(0x1000);
    vmx.current = Some(L1Gpa(0x2000));
    vmx.vmcs12 = valid_vmcs12(&caps);
    vmx.vmcs12.launch_state = 1;
    let resume = |vmx: &mut NestedVmx, l1m: &mut TestL1| {
        let r = vmx.emulate(&reg_exit(24), &cpu, l1m).unwrap().0;
        if r == (VmxResult::EnterL2 { launch: false }) {
            vmx.dirty.clear(); // what prepare_vmcs02's caller does
        }
        r
    };
    let write = |vmx: &mut NestedVmx, l1m: &mut TestL1, f: F, v: u64| {
        l1m.set(Gpr::Rdx, f.encoding().into());
        l1m.set(Gpr::Rax, v);
        assert_eq!(vmx.emulate(&reg_exit(25), &cpu, l1m).unwrap().0, VmxResult::Succeed);
    };
    assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });
    assert!(vmx.entry_checked.is_some());
    assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });

    let good_cr0 = vmx.vmcs12.host_cr0;
    write(&mut vmx, &mut l1m, F::HostCr0, 0);
    let bad_host = VmxResult::FailValid(VmInstructionError::EntryInvalidHostStateFields);
    assert_eq!(resume(&mut vmx, &mut l1m), bad_host);
    assert_eq!(resume(&mut vmx, &mut l1m), bad_host, "a failure is not cached");
    write(&mut vmx, &mut l1m, F::HostCr0, good_cr0);
    assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });

    write(&mut vmx, &mut l1m, F::PinBasedVmExecControl, 0);
    let bad_controls = VmxResult::FailValid(VmInstructionError::EntryInvalidControlFields);
    assert_eq!(resume(&mut vmx, &mut l1m), bad_controls);
    write(
        &mut vmx,
        &mut l1m,
        F::PinBasedVmExecControl,
        valid_vmcs12(&caps).pin_based_vm_exec_control.into(),
    );
    assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });

    // L0 changes the VM-entry controls at a reflected exit without marking them dirty.
    vmx.vmcs12.vm_entry_controls = 0;
    assert_eq!(resume(&mut vmx, &mut l1m), bad_controls);
}

/// Finding "offer every control L0 can honor, honor every control it offers": each
/// instruction-intercept control is offered to L1 when the hardware has it, passes the
/// VM-entry checks, reaches vmcs02 and routes its exit to L1; without it, the same exit is
/// not L1's.
#[test]
fn every_offered_intercept_control_is_honored() {
    use crate::caps::{proc1 as p1, proc2 as p2};
    use crate::vmx::checks::check_controls;
    let mut hw = crate::testutil::skylake();
    // A processor with XSAVES and user wait/pause as well (Bochs lacks both).
    hw.procbased2 |= u64::from(p2::ENABLE_XSAVES | p2::ENABLE_USER_WAIT_PAUSE) << 32;
    let caps = crate::vmx::l1_caps(&hw);
    let l0 = crate::vmx::merge::tests::l0();
    let l0 = crate::vmx::merge::L0Config { hw, proc1: 0, ..l0 };
    // (primary bits, secondary bits, exit reason, the bit whose absence means no L1 exit)
    let table: &[(u32, u32, u32, (u32, u32))] = &[
        (p1::HLT_EXITING, 0, 12, (p1::HLT_EXITING, 0)),
        (p1::INVLPG_EXITING, 0, 14, (p1::INVLPG_EXITING, 0)),
        (p1::RDPMC_EXITING, 0, 15, (p1::RDPMC_EXITING, 0)),
        (p1::RDTSC_EXITING, 0, 16, (p1::RDTSC_EXITING, 0)),
        (p1::MOV_DR_EXITING, 0, 29, (p1::MOV_DR_EXITING, 0)),
        (p1::MWAIT_EXITING, 0, 36, (p1::MWAIT_EXITING, 0)),
        (p1::MONITOR_EXITING, 0, 39, (p1::MONITOR_EXITING, 0)),
        (p1::PAUSE_EXITING, 0, 40, (p1::PAUSE_EXITING, 0)),
        (0, p2::PAUSE_LOOP_EXITING, 40, (0, p2::PAUSE_LOOP_EXITING)),
        (0, p2::DESCRIPTOR_TABLE_EXITING, 46, (0, p2::DESCRIPTOR_TABLE_EXITING)),
        (0, p2::DESCRIPTOR_TABLE_EXITING, 47, (0, p2::DESCRIPTOR_TABLE_EXITING)),
        (p1::RDTSC_EXITING, p2::ENABLE_RDTSCP, 51, (p1::RDTSC_EXITING, 0)),
        (0, p2::WBINVD_EXITING, 54, (0, p2::WBINVD_EXITING)),
        (0, p2::RDRAND_EXITING, 57, (0, p2::RDRAND_EXITING)),
        (p1::INVLPG_EXITING, p2::ENABLE_INVPCID, 58, (p1::INVLPG_EXITING, 0)),
        (0, p2::RDSEED_EXITING, 61, (0, p2::RDSEED_EXITING)),
        (0, p2::ENABLE_XSAVES, 63, (0, p2::ENABLE_XSAVES)),
        (p1::RDTSC_EXITING, p2::ENABLE_USER_WAIT_PAUSE, 67, (p1::RDTSC_EXITING, 0)),
        (p1::RDTSC_EXITING, p2::ENABLE_USER_WAIT_PAUSE, 68, (p1::RDTSC_EXITING, 0)),
    ];
    let mut regs = crate::guest::Regs::default();
    regs.0[0] = 1; // XSAVES component 0
    let mem = crate::guest::VecMemory::new(0);
    for &(b1, b2, reason, (off1, off2)) in table {
        assert!(caps.primary().can_set(b1), "reason {reason}: primary {b1:#x} offered");
        assert!(caps.secondary().can_set(b2), "reason {reason}: secondary {b2:#x} offered");
        let mut v12 = valid_vmcs12(&caps);
        v12.cpu_based_vm_exec_control |= b1 | crate::caps::proc1::ACTIVATE_SECONDARY_CONTROLS;
        v12.secondary_vm_exec_control |= b2;
        v12.xss_exit_bitmap = 1;
        assert_eq!(check_controls(&v12, &caps, 36), Ok(()), "reason {reason}");
        let mut v02 = FakeVmcs::new();
        let inputs = crate::vmx::merge::tests::inputs();
        prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0, &inputs);
        assert_eq!(v02.peek(F::CpuBasedVmExecControl) as u32 & b1, b1, "reason {reason}");
        assert_eq!(v02.peek(F::SecondaryVmExecControl) as u32 & b2, b2, "reason {reason}");
        let exit = ExitInfo { reason, ..Default::default() };
        let l0i = L0Intercepts::default();
        assert_eq!(route(&exit, &l0i, &v12, &regs, &mem), Ok(ExitRoute::L1), "reason {reason}");
        v12.cpu_based_vm_exec_control &= !off1;
        v12.secondary_vm_exec_control &= !off2;
        if reason == 40 {
            // PAUSE has two controls: clear both.
            v12.cpu_based_vm_exec_control &= !p1::PAUSE_EXITING;
            v12.secondary_vm_exec_control &= !p2::PAUSE_LOOP_EXITING;
        }
        assert_eq!(route(&exit, &l0i, &v12, &regs, &mem), Ok(ExitRoute::ForL1), "reason {reason}");
    }
}

/// "Use TPR shadow", offered and honored (SDM 26.2.1.1, 29.3): offered on the recorded
/// Skylake, checked at entry (VTPR read from L1 memory), merged into vmcs02 on the host
/// page L0 found for L1's virtual-APIC page with L0's CR8 exiting dropped, and its
/// TPR-below-threshold exit (43, trap-like, qualification 0) routed to L1; without it the
/// same L2 CR8 access is L0's to perform on L1's local APIC model (`ForL1`).
#[test]
fn tpr_shadow_is_offered_checked_merged_and_routed() {
    use crate::caps::proc1;
    use crate::vmx::checks::{check_controls, check_tpr_threshold_vtpr};
    const CR8: u32 = proc1::CR8_LOAD_EXITING | proc1::CR8_STORE_EXITING;
    let caps = l1();
    assert!(caps.primary().can_set(proc1::USE_TPR_SHADOW));
    let mut mem = crate::guest::VecMemory::new(0x10_0000);
    mem.write(L1Gpa(0x7080), &[0x50]).unwrap();
    let mut v12 = valid_vmcs12(&caps);
    v12.cpu_based_vm_exec_control |= proc1::USE_TPR_SHADOW;
    v12.virtual_apic_page_addr = 0x7000;
    v12.tpr_threshold = 5;
    assert_eq!(check_controls(&v12, &caps, 36), Ok(()));
    assert_eq!(check_tpr_threshold_vtpr(&v12, &mem), Ok(()));
    v12.tpr_threshold = 6;
    assert_eq!(
        check_tpr_threshold_vtpr(&v12, &mem),
        Err(crate::vmx::checks::Check::TprThresholdAboveVtpr)
    );
    v12.tpr_threshold = 5;

    let l0 = crate::vmx::merge::tests::l0();
    let l0 = crate::vmx::merge::L0Config { proc1: l0.proc1 | CR8, ..l0 };
    let inputs =
        Vmcs02Inputs { virtual_apic: Some(Hpa(0x1234_5000)), ..crate::vmx::merge::tests::inputs() };
    let mut v02 = FakeVmcs::new();
    prepare_vmcs02(&mut v02, &v12, &DirtySet::all(), &l0, &inputs);
    let p02 = v02.peek(F::CpuBasedVmExecControl) as u32;
    assert_eq!(p02 & (proc1::USE_TPR_SHADOW | CR8), proc1::USE_TPR_SHADOW);
    assert_eq!(v02.peek(F::VirtualApicPageAddr), 0x1234_5000);
    assert_eq!(v02.peek(F::TprThreshold), 5);

    let regs = crate::guest::Regs::default();
    let l0i = L0Intercepts::default();
    let tpr_exit = ExitInfo { reason: 43, ..Default::default() };
    assert_eq!(route(&tpr_exit, &l0i, &v12, &regs, &mem), Ok(ExitRoute::L1));
    // MOV to CR8 from RAX (qualification 8): L1's only under its CR8-load exiting.
    let to_cr8 = ExitInfo { reason: 28, qualification: 8, ..Default::default() };
    assert_eq!(route(&to_cr8, &l0i, &v12, &regs, &mem), Ok(ExitRoute::ForL1));
    v12.cpu_based_vm_exec_control |= proc1::CR8_LOAD_EXITING;
    assert_eq!(route(&to_cr8, &l0i, &v12, &regs, &mem), Ok(ExitRoute::L1));
}
