//! Unit tests: one per outcome of each emulated VMX instruction.

use super::*;
use crate::caps::{ept_vpid, proc2};
use crate::guest::Gpr;
use crate::testutil::{TestL1, l1, valid_vmcs12};
use crate::vmcs::VmcsField;
use crate::vmx::checks::Check;

const VMXON_REGION: u64 = 0x1000;
const VMCS_A: u64 = 0x2000;
const VMCS_B: u64 = 0x3000;
const OPERAND: u64 = 0x100;

/// Memory operand [RBX], 64-bit address size, DS.
fn mem_exit(reason: ExitReason) -> ExitInfo {
    ExitInfo {
        reason: reason as u32,
        instruction_info: 2 << 7 | 3 << 15 | 1 << 22 | 3 << 23,
        ..Default::default()
    }
}

/// Register operands: value in RAX (reg1), encoding in RDX (reg2).
fn reg_exit(reason: ExitReason) -> ExitInfo {
    ExitInfo { reason: reason as u32, instruction_info: 1 << 10 | 2 << 28, ..Default::default() }
}

struct Fx {
    vmx: NestedVmx,
    l1: TestL1,
    cpu: L1Cpu,
}

impl Fx {
    fn new() -> Self {
        let mut l1m = TestL1::new(0x10_0000);
        for r in [VMXON_REGION, VMCS_A, VMCS_B] {
            l1m.mem.write_u32(L1Gpa(r), VMCS12_REVISION).unwrap();
        }
        Fx { vmx: NestedVmx::new(l1(), 36), l1: l1m, cpu: L1Cpu::long_mode_ring0() }
    }

    fn ptr_op(&mut self, ptr: u64) {
        self.l1.mem.write_u64(L1Gpa(OPERAND), ptr).unwrap();
        self.l1.set(Gpr::Rbx, OPERAND);
    }

    fn run_ptr(&mut self, reason: ExitReason, ptr: u64) -> VmxResult {
        self.ptr_op(ptr);
        let mut exit = mem_exit(reason);
        if !self.cpu.is_64bit_mode() {
            exit.instruction_info ^= 3 << 7; // 32-bit address size
        }
        self.vmx.emulate(&exit, &self.cpu, &mut self.l1).unwrap().0
    }

    fn on(mut self) -> Self {
        assert_eq!(self.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Succeed);
        self
    }

    fn loaded(mut self) -> Self {
        assert_eq!(self.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
        self
    }

    fn vmwrite(&mut self, enc: u64, value: u64) -> VmxResult {
        self.l1.set(Gpr::Rdx, enc);
        self.l1.set(Gpr::Rax, value);
        self.vmx.vmwrite(&reg_exit(ExitReason::Vmwrite), &self.cpu, &mut self.l1)
    }

    fn vmread(&mut self, enc: u64) -> (VmxResult, u64) {
        self.l1.set(Gpr::Rdx, enc);
        let r = self.vmx.vmread(&reg_exit(ExitReason::Vmread), &self.cpu, &mut self.l1);
        (r, self.l1.gpr(Gpr::Rax))
    }
}

fn fail(e: VmInstructionError) -> VmxResult {
    VmxResult::FailValid(e)
}

#[test]
fn vmxon_preconditions() {
    let mut f = Fx::new();
    f.cpu.cr4 &= !(1 << 13);
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::UD));
    let mut f = Fx::new();
    f.cpu.cs_l = false;
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::UD));
    let mut f = Fx::new();
    f.cpu.cpl = 3;
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::GP0));
    let mut f = Fx::new();
    f.cpu.feature_control = 1;
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::GP0));
    let mut f = Fx::new();
    f.cpu.cr0 &= !(1 << 5); // NE is fixed to 1
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::GP0));
}

#[test]
fn vmxon_region_checks() {
    let mut f = Fx::new();
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION + 8), VmxResult::FailInvalid);
    assert_eq!(f.run_ptr(ExitReason::Vmxon, 1 << 40), VmxResult::FailInvalid, "beyond width");
    assert_eq!(f.run_ptr(ExitReason::Vmxon, 0x4000), VmxResult::FailInvalid, "revision 0");
    assert_eq!(f.run_ptr(ExitReason::Vmxon, 0x20_0000), VmxResult::FailInvalid, "outside RAM");
    assert!(!f.vmx.vmxon);
    // Operand read faults propagate.
    f.l1.set(Gpr::Rbx, 0x20_0000);
    let exit = mem_exit(ExitReason::Vmxon);
    assert!(matches!(f.vmx.vmxon(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(e) if e.vector == 14));
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Succeed);
    assert!(f.vmx.vmxon);
    assert_eq!(f.vmx.vmxon_ptr, L1Gpa(VMXON_REGION));
}

#[test]
fn vmxon_in_vmx_root() {
    let mut f = Fx::new().on();
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::FailInvalid);
    let mut f = f.loaded();
    assert_eq!(
        f.run_ptr(ExitReason::Vmxon, VMXON_REGION),
        fail(VmInstructionError::VmxonInVmxRoot)
    );
    assert_eq!(f.vmx.vmcs12.vm_instruction_error, 15);
    f.cpu.cpl = 3;
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::GP0));
}

#[test]
fn instructions_need_vmx_operation_and_cpl0() {
    let mut f = Fx::new();
    for r in [ExitReason::Vmclear, ExitReason::Vmptrld, ExitReason::Vmptrst] {
        assert_eq!(f.run_ptr(r, VMCS_A), VmxResult::Fault(Exception::UD), "{r:?}");
    }
    assert_eq!(f.vmx.vmxoff(&f.cpu, &mut f.l1), VmxResult::Fault(Exception::UD));
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::Fault(Exception::UD));
    let mut f = Fx::new().on();
    f.cpu.cpl = 1;
    for r in [ExitReason::Vmclear, ExitReason::Vmptrld, ExitReason::Vmptrst] {
        assert_eq!(f.run_ptr(r, VMCS_A), VmxResult::Fault(Exception::GP0), "{r:?}");
    }
    assert_eq!(f.vmwrite(0x681e, 0), VmxResult::Fault(Exception::GP0));
    f.cpu.cpl = 0;
    f.cpu.rflags |= 1 << 17;
    assert_eq!(f.vmread(0x681e).0, VmxResult::Fault(Exception::UD), "virtual-8086");
}

#[test]
fn vmxoff_writes_back_and_leaves() {
    let mut f = Fx::new().on().loaded();
    assert_eq!(f.vmwrite(0x681e, 0xabcd), VmxResult::Succeed);
    assert_eq!(f.vmx.vmxoff(&f.cpu, &mut f.l1), VmxResult::Succeed);
    assert!(!f.vmx.vmxon);
    assert_eq!(f.vmx.current, None);
    let rip = VMCS_A + VmcsField::GuestRip.vmcs12_offset() as u64;
    assert_eq!(f.l1.mem.read_u64(L1Gpa(rip)), Ok(0xabcd));
}

#[test]
fn vmclear_errors() {
    let mut f = Fx::new().on();
    assert_eq!(
        f.run_ptr(ExitReason::Vmclear, VMCS_A + 1),
        VmxResult::FailInvalid,
        "no current VMCS"
    );
    let mut f = f.loaded();
    assert_eq!(
        f.run_ptr(ExitReason::Vmclear, VMCS_A + 1),
        fail(VmInstructionError::VmclearInvalidAddress)
    );
    assert_eq!(
        f.run_ptr(ExitReason::Vmclear, 1 << 36),
        fail(VmInstructionError::VmclearInvalidAddress)
    );
    assert_eq!(
        f.run_ptr(ExitReason::Vmclear, VMXON_REGION),
        fail(VmInstructionError::VmclearVmxonPointer)
    );
    assert_eq!(f.vmx.vmcs12.vm_instruction_error, 3);
}

#[test]
fn vmclear_current_and_other() {
    let mut f = Fx::new().on().loaded();
    f.vmx.vmcs12.launch_state = 1;
    // Another VMCS marked launched in memory gets its launch word cleared.
    f.l1.mem.write_u32(L1Gpa(VMCS_B + 8), 1).unwrap();
    assert_eq!(f.run_ptr(ExitReason::Vmclear, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u32(L1Gpa(VMCS_B + 8)), Ok(0));
    assert_eq!(f.vmx.current, Some(L1Gpa(VMCS_A)));
    // The current one is written back clear and stops being current.
    assert_eq!(f.run_ptr(ExitReason::Vmclear, VMCS_A), VmxResult::Succeed);
    assert_eq!(f.vmx.current, None);
    assert_eq!(f.l1.mem.read_u32(L1Gpa(VMCS_A + 8)), Ok(0));
}

#[test]
fn vmptrld_errors() {
    let mut f = Fx::new().on();
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A + 0x10), VmxResult::FailInvalid);
    let mut f = f.loaded();
    assert_eq!(
        f.run_ptr(ExitReason::Vmptrld, VMCS_B + 0x10),
        fail(VmInstructionError::VmptrldInvalidAddress)
    );
    assert_eq!(
        f.run_ptr(ExitReason::Vmptrld, 0x20_0000),
        fail(VmInstructionError::VmptrldInvalidAddress)
    );
    assert_eq!(
        f.run_ptr(ExitReason::Vmptrld, VMXON_REGION),
        fail(VmInstructionError::VmptrldVmxonPointer)
    );
    assert_eq!(
        f.run_ptr(ExitReason::Vmptrld, 0x4000),
        fail(VmInstructionError::VmptrldIncorrectRevision)
    );
    f.l1.mem.write_u32(L1Gpa(0x4000), VMCS12_REVISION | 1 << 31).unwrap();
    let offered = f.vmx.caps;
    f.vmx.caps.procbased2 &= !(u64::from(crate::caps::proc2::VMCS_SHADOWING) << 32);
    assert_eq!(
        f.run_ptr(ExitReason::Vmptrld, 0x4000),
        fail(VmInstructionError::VmptrldIncorrectRevision),
        "shadow-VMCS indicator without shadowing"
    );
    assert_eq!(f.vmx.current, Some(L1Gpa(VMCS_A)));
    // Without shadowing an ordinary VMCS still loads.
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    // With VMCS shadowing offered a shadow VMCS can be made current, but not entered.
    f.vmx.set_caps(offered);
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, 0x4000), VmxResult::Succeed);
    assert_eq!(f.vmx.current, Some(L1Gpa(0x4000)));
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::FailInvalid);
    assert_eq!(f.vmx.vmlaunch(false, &f.cpu, &mut f.l1), VmxResult::FailInvalid);
}

#[test]
fn vmptrld_switches_and_writes_back() {
    let mut f = Fx::new().on().loaded();
    assert_eq!(f.vmwrite(0x681e, 0x1111), VmxResult::Succeed);
    f.vmx.dirty.clear();
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    assert!(f.vmx.dirty.is_empty(), "reloading the current VMCS keeps the cache");
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.vmx.dirty, DirtySet::all());
    assert_eq!(f.vmread(0x681e), (VmxResult::Succeed, 0));
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    assert_eq!(f.vmread(0x681e), (VmxResult::Succeed, 0x1111));
}

/// The VMCS switched away from stays active and parked in L0, not written to L1 memory; a
/// third VMPTRLD writes it back; VMPTRLD of it again needs no memory (SDM 25.11.1).
#[test]
fn vmptrld_parks_the_previous_vmcs() {
    const VMCS_C: u64 = 0x5000;
    let mut f = Fx::new().on().loaded();
    f.l1.mem.write_u32(L1Gpa(VMCS_C), VMCS12_REVISION).unwrap();
    let rip = VMCS_A + crate::vmcs::VmcsField::GuestRip.vmcs12_offset() as u64;
    assert_eq!(f.vmwrite(0x681e, 0x1111), VmxResult::Succeed);
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.vmx.parked.as_ref().map(|p| p.ptr), Some(L1Gpa(VMCS_A)));
    assert_eq!(f.l1.mem.read_u64(L1Gpa(rip)), Ok(0), "A is not written back yet");
    // A changed in memory while active: undefined, here not seen (A's data is cached).
    f.l1.mem.write_u64(L1Gpa(rip), 0x2222).unwrap();
    assert!(!f.vmx.unparked, "B came from memory");
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    assert!(f.vmx.unparked, "A came from L0's copy");
    assert_eq!(f.vmread(0x681e), (VmxResult::Succeed, 0x1111));
    assert_eq!(f.vmx.parked.as_ref().map(|p| p.ptr), Some(L1Gpa(VMCS_B)));
    // C: B (parked) goes to memory, A is parked.
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_C), VmxResult::Succeed);
    assert_eq!(f.vmx.parked.as_ref().map(|p| p.ptr), Some(L1Gpa(VMCS_A)));
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u64(L1Gpa(rip)), Ok(0x1111), "A written back when evicted");
    assert_eq!(f.vmx.parked.as_ref().map(|p| p.ptr), Some(L1Gpa(VMCS_C)));
    // VMXOFF writes back both.
    assert_eq!(f.vmwrite(0x681e, 0x3333), VmxResult::Succeed);
    let c_rip = VMCS_C + crate::vmcs::VmcsField::GuestRip.vmcs12_offset() as u64;
    f.l1.mem.write_u64(L1Gpa(c_rip), 0x4444).unwrap();
    let exit = ExitInfo { reason: ExitReason::Vmxoff as u32, ..Default::default() };
    assert_eq!(f.vmx.emulate(&exit, &f.cpu, &mut f.l1).unwrap().0, VmxResult::Succeed);
    let b_rip = VMCS_B + crate::vmcs::VmcsField::GuestRip.vmcs12_offset() as u64;
    assert_eq!(f.l1.mem.read_u64(L1Gpa(b_rip)), Ok(0x3333));
    assert_eq!(f.l1.mem.read_u64(L1Gpa(c_rip)), Ok(0), "C's cached data overwrote memory");
    assert!(f.vmx.parked.is_none() && f.vmx.current.is_none());
}

/// L1 writing its own TSC marks vmcs02's TSC offset for the next merge, from whichever VMCS
/// L1 enters next: the current one and the parked one.
#[test]
fn l1s_tsc_change_reaches_the_next_merge_of_either_vmcs() {
    let mut f = Fx::new().on().loaded();
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    f.vmx.dirty.clear();
    f.vmx.parked.as_mut().expect("A parked").dirty.clear();
    f.vmx.l1_tsc_changed();
    let tsc = crate::vmcs::VmcsField::TscOffset;
    assert!(f.vmx.dirty.contains(tsc));
    assert!(f.vmx.parked.as_ref().is_some_and(|p| p.dirty.contains(tsc)));
    // Nothing parked: the current VMCS only.
    let mut f = Fx::new().on().loaded();
    f.vmx.dirty.clear();
    f.vmx.l1_tsc_changed();
    assert!(f.vmx.dirty.contains(tsc) && f.vmx.parked.is_none());
}

/// A parked VMCS comes back with its dirty set only when vmcs02 was last merged from it;
/// VMCLEAR of a parked VMCS writes it back clear and forgets it.
#[test]
fn unparking_keeps_the_dirty_set_only_for_the_merged_vmcs() {
    let mut f = ready();
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: true });
    assert_eq!(f.vmx.merged, Some(L1Gpa(VMCS_A)));
    f.vmx.dirty.clear();
    assert_eq!(f.vmwrite(0x681e, 0x1234), VmxResult::Succeed);
    let dirty = f.vmx.dirty;
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    assert_eq!(f.vmx.dirty, DirtySet::all());
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    assert_eq!(f.vmx.dirty, dirty, "vmcs02 still holds A's merge");
    assert!(f.vmx.entry_checked.is_some(), "A's checks came back with it");
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_B), VmxResult::Succeed);
    f.vmx.merged = Some(L1Gpa(VMCS_B));
    assert_eq!(f.run_ptr(ExitReason::Vmptrld, VMCS_A), VmxResult::Succeed);
    assert_eq!(f.vmx.dirty, DirtySet::all(), "vmcs02 was merged from B since");
    // VMCLEAR of the parked B.
    let launch = VMCS_B + crate::vmcs::LAUNCH_STATE_OFFSET as u64;
    f.vmx.parked.as_mut().unwrap().vmcs12.launch_state = 1;
    assert_eq!(f.run_ptr(ExitReason::Vmclear, VMCS_B), VmxResult::Succeed);
    assert!(f.vmx.parked.is_none());
    assert_eq!(f.l1.mem.read_u32(L1Gpa(launch)), Ok(0));
    assert_eq!(f.vmx.current, Some(L1Gpa(VMCS_A)));
}

#[test]
fn vmptrst() {
    let mut f = Fx::new().on();
    f.l1.set(Gpr::Rbx, 0x200);
    let exit = mem_exit(ExitReason::Vmptrst);
    assert_eq!(f.vmx.vmptrst(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u64(L1Gpa(0x200)), Ok(u64::MAX));
    let mut f = f.loaded();
    f.l1.set(Gpr::Rbx, 0x200);
    assert_eq!(f.vmx.vmptrst(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u64(L1Gpa(0x200)), Ok(VMCS_A));
    f.l1.set(Gpr::Rbx, 0x20_0000);
    assert!(matches!(f.vmx.vmptrst(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(_)));
}

#[test]
fn vmread_vmwrite() {
    let mut f = Fx::new().on();
    assert_eq!(f.vmwrite(0x681e, 1), VmxResult::FailInvalid);
    assert_eq!(f.vmread(0x681e).0, VmxResult::FailInvalid);
    let mut f = f.loaded();
    f.vmx.dirty.clear();
    assert_eq!(f.vmwrite(0x681e, 0x1234), VmxResult::Succeed);
    assert!(f.vmx.dirty.contains(VmcsField::GuestRip));
    assert_eq!(f.vmread(0x681e), (VmxResult::Succeed, 0x1234));
    assert_eq!(f.vmwrite(0x1234, 0), fail(VmInstructionError::UnsupportedVmcsComponent));
    assert_eq!(f.vmread(0x681f).0, fail(VmInstructionError::UnsupportedVmcsComponent));
    assert_eq!(f.vmread(1 << 32 | 0x681e).0, fail(VmInstructionError::UnsupportedVmcsComponent));
    assert_eq!(f.vmx.vmcs12.vm_instruction_error, 12);
    // HIGH access of a 64-bit field.
    assert_eq!(f.vmwrite(0x201a, 0x1111_2222_3333_4444), VmxResult::Succeed);
    assert_eq!(f.vmread(0x201b), (VmxResult::Succeed, 0x1111_2222));
    assert_eq!(f.vmwrite(0x201b, 0x5555), VmxResult::Succeed);
    assert_eq!(f.vmx.vmcs12.ept_pointer, 0x5555_3333_4444);
    // Width truncation.
    assert_eq!(f.vmwrite(0x0802, 0x12_3456), VmxResult::Succeed);
    assert_eq!(f.vmread(0x0802), (VmxResult::Succeed, 0x3456));
}

/// A field of a feature L1 is not offered does not exist in its VMCS (SDM Vol. 3D, App. B):
/// VMREAD and VMWRITE are VMfailValid(12), HIGH accesses too, and from L2 on a shadow VMCS
/// alike; the field's feature offered, it exists.
#[test]
fn fields_of_features_not_offered_do_not_exist() {
    let mut f = Fx::new().on().loaded();
    assert!(!f.vmx.caps.has_posted_interrupts());
    let unsupported = fail(VmInstructionError::UnsupportedVmcsComponent);
    for enc in [0x0002, 0x2016, 0x2017, 0x0810, 0x201c, 0x2032, 0x2034, 0x0004, 0x202a] {
        assert_eq!(f.vmwrite(enc, 1), unsupported, "VMWRITE {enc:#x}");
        assert_eq!(f.vmread(enc).0, unsupported, "VMREAD {enc:#x}");
    }
    assert_eq!(f.vmx.vmcs12.posted_intr_desc_addr, 0, "nothing written");
    assert_eq!(f.vmread(0x482e).0, VmxResult::Succeed, "the preemption timer is offered");
    let mut caps = f.vmx.caps;
    caps.pinbased |= u64::from(crate::caps::pin::POSTED_INTERRUPTS) << 32;
    caps.true_pinbased |= u64::from(crate::caps::pin::POSTED_INTERRUPTS) << 32;
    f.vmx.set_caps(caps);
    assert_eq!(f.vmwrite(0x2016, 0x4000), VmxResult::Succeed, "offered: the field exists");
    assert_eq!(f.vmread(0x2017), (VmxResult::Succeed, 0));
}

#[test]
fn vmwrite_read_only_field() {
    let mut f = Fx::new().on().loaded();
    assert!(f.vmx.caps.vmwrite_any_field());
    assert_eq!(f.vmwrite(0x4402, 5), VmxResult::Succeed, "VMWRITE to any field offered");
    f.vmx.caps.misc &= !(1 << 29);
    assert_eq!(f.vmwrite(0x4402, 5), fail(VmInstructionError::VmwriteReadOnlyComponent));
    assert_eq!(f.vmx.vmcs12.vm_instruction_error, 13);
}

#[test]
fn vmread_vmwrite_memory_operands() {
    let mut f = Fx::new().on().loaded();
    f.vmx.vmcs12.guest_rsp = 0xfeed;
    let mut exit = mem_exit(ExitReason::Vmread);
    exit.instruction_info |= 2 << 28;
    f.l1.set(Gpr::Rdx, 0x681c);
    f.l1.set(Gpr::Rbx, 0x300);
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u64(L1Gpa(0x300)), Ok(0xfeed));
    f.l1.mem.write_u64(L1Gpa(0x308), 0xbeef).unwrap();
    f.l1.set(Gpr::Rbx, 0x308);
    exit.reason = ExitReason::Vmwrite as u32;
    assert_eq!(f.vmx.vmwrite(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    assert_eq!(f.vmx.vmcs12.guest_rsp, 0xbeef);
    f.l1.set(Gpr::Rbx, 0x20_0000);
    assert!(matches!(f.vmx.vmwrite(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(_)));
}

fn ready() -> Fx {
    let mut f = Fx::new().on().loaded();
    let launch = f.vmx.vmcs12.launch_state;
    f.vmx.vmcs12 = valid_vmcs12(&f.vmx.caps);
    f.vmx.vmcs12.launch_state = launch;
    f
}

#[test]
fn vmlaunch_outcomes() {
    let mut f = Fx::new().on();
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::FailInvalid);
    let mut f = ready();
    f.cpu.mov_ss_blocking = true;
    assert_eq!(
        f.vmx.vmlaunch(true, &f.cpu, &mut f.l1),
        fail(VmInstructionError::EntryEventsBlockedByMovSs)
    );
    f.cpu.mov_ss_blocking = false;
    assert_eq!(
        f.vmx.vmlaunch(false, &f.cpu, &mut f.l1),
        fail(VmInstructionError::VmresumeNonLaunchedVmcs)
    );
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: true });
    assert_eq!(f.vmx.vmcs12.launch(), LaunchState::Launched);
    assert_eq!(
        f.vmx.vmlaunch(true, &f.cpu, &mut f.l1),
        fail(VmInstructionError::VmlaunchNonClearVmcs)
    );
    assert_eq!(f.vmx.vmlaunch(false, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: false });
    f.cpu.cr0 &= !1;
    assert_eq!(f.vmx.vmlaunch(false, &f.cpu, &mut f.l1), VmxResult::Fault(Exception::UD));
}

/// The VMCS link pointer must not name the current VMCS (SDM 26.3.1.5): with a VMCS
/// region's revision there, the entry fails at the guest-state checks (reason 33,
/// qualification 4); a link pointer to another VMCS region enters.
#[test]
fn vmcs_link_pointer_is_not_the_current_vmcs() {
    let mut f = ready();
    f.l1.mem.write_u32(L1Gpa(VMCS_A), VMCS12_REVISION).unwrap();
    f.l1.mem.write_u32(L1Gpa(VMCS_B), VMCS12_REVISION).unwrap();
    f.vmx.vmcs12.vmcs_link_pointer = VMCS_A;
    let VmxResult::EntryFailed(failure) = f.vmx.vmlaunch(true, &f.cpu, &mut f.l1) else {
        panic!("entered with the link pointer at the current VMCS");
    };
    assert_eq!((f.vmx.vmcs12.vm_exit_reason, f.vmx.vmcs12.exit_qualification), (1 << 31 | 33, 4));
    assert_eq!(failure.check, crate::vmx::checks::Check::GuestVmcsLinkPointer);
    f.vmx.vmcs12.vmcs_link_pointer = VMCS_B;
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: true });
}

/// The control checks are skipped only while no control changed since they passed: a bad
/// control written after a successful entry fails the next VMRESUME (VMfailValid 7).
#[test]
fn a_control_changed_after_an_entry_is_checked_again() {
    let mut f = ready();
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: true });
    f.vmx.dirty.clear();
    assert_eq!(f.vmx.vmlaunch(false, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: false });
    f.vmx.dirty.clear();
    let bad = f.vmx.vmcs12.pin_based_vm_exec_control | crate::caps::pin::POSTED_INTERRUPTS;
    assert_eq!(f.vmwrite(0x4000, u64::from(bad)), VmxResult::Succeed);
    assert_eq!(
        f.vmx.vmlaunch(false, &f.cpu, &mut f.l1),
        fail(VmInstructionError::EntryInvalidControlFields)
    );
}

#[test]
fn vmlaunch_check_failures() {
    let mut f = ready();
    f.vmx.vmcs12.pin_based_vm_exec_control |= crate::caps::pin::POSTED_INTERRUPTS;
    assert_eq!(
        f.vmx.vmlaunch(true, &f.cpu, &mut f.l1),
        fail(VmInstructionError::EntryInvalidControlFields)
    );
    let mut f = ready();
    f.vmx.vmcs12.host_cs_selector = 0;
    assert_eq!(
        f.vmx.vmlaunch(true, &f.cpu, &mut f.l1),
        fail(VmInstructionError::EntryInvalidHostStateFields)
    );
    let mut f = ready();
    f.vmx.vmcs12.guest_rflags = 0;
    let r = f.vmx.vmlaunch(true, &f.cpu, &mut f.l1);
    let VmxResult::EntryFailed(e) = r else { panic!("{r:?}") };
    assert_eq!(e.check, Check::GuestRflagsReserved);
    assert_eq!(f.vmx.vmcs12.vm_exit_reason, 33 | 1 << 31);
    assert_eq!(f.vmx.vmcs12.launch(), LaunchState::Clear, "a failed entry does not launch");
    // The VM-entry MSR-load list is loaded after the checks and the merge (by the image,
    // `msr_lists::load`): a bad entry (IA32_SMBASE) does not fail the checks; the image's
    // failed load then makes the entry fail with reason 34 and the entry's number.
    let mut f = ready();
    f.vmx.vmcs12.vm_entry_msr_load_count = 1;
    f.vmx.vmcs12.vm_entry_msr_load_addr = 0x7000;
    f.l1.mem.write_u64(L1Gpa(0x7000), 0x9e).unwrap();
    let r = f.vmx.vmlaunch(true, &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::EnterL2 { launch: true });
    f.vmx.msr_load_failed(1, true);
    assert_eq!(f.vmx.vmcs12.vm_exit_reason, 34 | 1 << 31);
    assert_eq!(f.vmx.vmcs12.exit_qualification, 1);
    assert_eq!(f.vmx.vmcs12.launch(), LaunchState::Clear, "a failed entry does not launch");
}

fn inv_exit(reason: ExitReason) -> ExitInfo {
    let mut e = mem_exit(reason);
    e.instruction_info |= 1 << 28; // type in RCX
    e
}

#[test]
fn invept() {
    let mut f = Fx::new().on().loaded();
    let exit = inv_exit(ExitReason::Invept);
    let eptp = 0x6000 | 6 | 3 << 3;
    f.l1.mem.write_u64(L1Gpa(0x400), eptp).unwrap();
    f.l1.set(Gpr::Rbx, 0x400);
    f.l1.set(Gpr::Rcx, 1);
    assert_eq!(
        f.vmx.invept(&exit, &f.cpu, &mut f.l1),
        (VmxResult::Succeed, Some(Flush::EptSingle { eptp }))
    );
    f.l1.set(Gpr::Rcx, 2);
    assert_eq!(f.vmx.invept(&exit, &f.cpu, &mut f.l1), (VmxResult::Succeed, Some(Flush::EptAll)));
    f.l1.set(Gpr::Rcx, 3);
    assert_eq!(
        f.vmx.invept(&exit, &f.cpu, &mut f.l1).0,
        fail(VmInstructionError::InvalidInveptInvvpidOperand)
    );
    f.l1.set(Gpr::Rcx, 1);
    f.l1.mem.write_u64(L1Gpa(0x400), 0x6000 | 5 | 3 << 3).unwrap();
    assert_eq!(
        f.vmx.invept(&exit, &f.cpu, &mut f.l1).0,
        fail(VmInstructionError::InvalidInveptInvvpidOperand)
    );
    assert_eq!(f.vmx.vmcs12.vm_instruction_error, 28);
    f.vmx.caps.ept_vpid &= !ept_vpid::INVEPT;
    assert_eq!(f.vmx.invept(&exit, &f.cpu, &mut f.l1).0, VmxResult::Fault(Exception::UD));
}

#[test]
fn invvpid() {
    let mut f = Fx::new().on().loaded();
    let exit = inv_exit(ExitReason::Invvpid);
    let desc = |f: &mut Fx, lo: u64, hi: u64| {
        f.l1.mem.write_u64(L1Gpa(0x400), lo).unwrap();
        f.l1.mem.write_u64(L1Gpa(0x408), hi).unwrap();
        f.l1.set(Gpr::Rbx, 0x400);
    };
    let bad = fail(VmInstructionError::InvalidInveptInvvpidOperand);
    desc(&mut f, 5, 0x1000);
    f.l1.set(Gpr::Rcx, 0);
    assert_eq!(
        f.vmx.invvpid(&exit, &f.cpu, &mut f.l1),
        (VmxResult::Succeed, Some(Flush::VpidAddress { vpid12: 5, address: 0x1000 }))
    );
    desc(&mut f, 5, 0x8000_0000_0000);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, bad, "non-canonical address");
    desc(&mut f, 0, 0);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, bad, "VPID 0");
    f.l1.set(Gpr::Rcx, 1);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, bad, "single-context VPID 0");
    desc(&mut f, 1 << 16 | 5, 0);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, bad, "reserved bits");
    desc(&mut f, 5, 0);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).1, Some(Flush::VpidSingle { vpid12: 5 }));
    f.l1.set(Gpr::Rcx, 2);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).1, Some(Flush::VpidAll));
    f.l1.set(Gpr::Rcx, 3);
    assert_eq!(
        f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).1,
        Some(Flush::VpidSingleRetainingGlobals { vpid12: 5 })
    );
    f.l1.set(Gpr::Rcx, 4);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, bad, "unsupported type");
}

#[test]
fn vmcall() {
    let mut f = Fx::new();
    assert_eq!(f.vmx.vmcall(&f.cpu), None, "hypercall outside VMX operation");
    let mut f = f.on();
    assert_eq!(f.vmx.vmcall(&f.cpu), Some(VmxResult::FailInvalid));
    let mut f = f.loaded();
    assert_eq!(f.vmx.vmcall(&f.cpu), Some(fail(VmInstructionError::VmcallInVmxRoot)));
    f.vmx.vmcs12.launch_state = 1;
    assert_eq!(f.vmx.vmcall(&f.cpu), Some(fail(VmInstructionError::VmcallNonClearVmcs)));
}

#[test]
fn vmfunc_eptp_switching() {
    let mut f = ready();
    let mut regs = crate::guest::Regs::default();
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect, "VM functions off");
    f.vmx.vmcs12.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS;
    f.vmx.vmcs12.vm_function_control = 1;
    f.vmx.vmcs12.eptp_list_address = 0x8000;
    let eptp = 0x9000 | 6 | 3 << 3;
    f.l1.mem.write_u64(L1Gpa(0x8000 + 3 * 8), eptp).unwrap();
    regs.0[1] = 3;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Switched { eptp });
    assert_eq!(f.vmx.vmcs12.ept_pointer, eptp);
    regs.0[1] = 4;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect, "invalid EPTP in the list");
    regs.0[1] = 512;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect);
    regs.0[0] = 1;
    regs.0[1] = 3;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect, "leaf 1");
}

#[test]
fn emulate_ignores_other_reasons() {
    let mut f = Fx::new();
    let cpuid = ExitInfo { reason: 10, ..Default::default() };
    assert_eq!(f.vmx.emulate(&cpuid, &f.cpu, &mut f.l1), None);
}

#[test]
fn vmread_vmwrite_outside_64_bit_mode() {
    // A 32-bit protected-mode L1 (IA-32e off): 32-bit operands, 32-bit field encodings.
    let mut f = Fx::new();
    f.cpu.efer = 0;
    f.cpu.cs_l = false;
    let mut f = f.on().loaded();
    f.vmx.vmcs12.guest_rip = 0x1_2345_6789;
    f.l1.set(Gpr::Rdx, 0xdead_0000_0000_681e); // upper half ignored outside 64-bit mode
    let r = f.vmx.vmread(&reg_exit(ExitReason::Vmread), &f.cpu, &mut f.l1);
    assert_eq!((r, f.l1.gpr(Gpr::Rax)), (VmxResult::Succeed, 0x2345_6789));
    f.l1.set(Gpr::Rax, 0xffff_ffff_0000_1000);
    let r = f.vmx.vmwrite(&reg_exit(ExitReason::Vmwrite), &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Succeed);
    assert_eq!(f.vmx.vmcs12.guest_rip, 0x1000);
    // Memory operands are 32 bits wide.
    let mut exit = mem_exit(ExitReason::Vmread);
    exit.instruction_info = 1 << 7 | 3 << 15 | 1 << 22 | 3 << 23 | 2 << 28;
    f.l1.mem.write_u64(L1Gpa(0x500), u64::MAX).unwrap();
    f.l1.set(Gpr::Rbx, 0x500);
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    assert_eq!(f.l1.mem.read_u64(L1Gpa(0x500)), Ok(0xffff_ffff_0000_1000));
}

/// Finding: a VMREAD to a page L1 has not mapped took #GP(0); a CPU takes #PF with CR2 the
/// operand's linear address and the error code of a supervisor write to a not-present page.
#[test]
fn memory_operand_faults_are_architectural() {
    let mut f = Fx::new().on().loaded();
    let unmapped = 0x20_0000; // beyond TestL1's memory: its "page tables" have no entry
    f.l1.set(Gpr::Rbx, unmapped);
    f.l1.set(Gpr::Rdx, 0x681e);
    let mut exit = mem_exit(ExitReason::Vmread);
    exit.instruction_info |= 2 << 28;
    let r = f.vmx.vmread(&exit, &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 2)));
    let r = f.vmx.vmwrite(&exit, &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 0)));
    // VMPTRLD's and VMCLEAR's loads, VMPTRST's store, INVVPID's descriptor read alike.
    let r = f.vmx.vmptrld(&mem_exit(ExitReason::Vmptrld), &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 0)));
    let r = f.vmx.vmclear(&mem_exit(ExitReason::Vmclear), &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 0)));
    let r = f.vmx.vmptrst(&mem_exit(ExitReason::Vmptrst), &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 2)));
    f.l1.set(Gpr::Rcx, 2);
    let (r, _) = f.vmx.invvpid(&inv_exit(ExitReason::Invvpid), &f.cpu, &mut f.l1);
    assert_eq!(r, VmxResult::Fault(Exception::page_fault(unmapped, 0)));

    // Outside 64-bit mode: DS limit, read-only DS, and SS-relative accesses (#SS(0)).
    let mut f = Fx::new();
    f.cpu.efer = 0;
    f.cpu.cs_l = false;
    let mut f = f.on().loaded();
    let mut exit = mem_exit(ExitReason::Vmread);
    exit.instruction_info = 1 << 7 | 3 << 15 | 1 << 22 | 3 << 23 | 2 << 28;
    f.l1.set(Gpr::Rdx, 0x681e);
    f.l1.segments[Segment::Ds as usize].limit = 0xfff;
    f.l1.set(Gpr::Rbx, 0xffc);
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed);
    f.l1.set(Gpr::Rbx, 0xffd);
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(Exception::GP0));
    f.l1.segments[Segment::Ds as usize].ar &= !operand::ar::WRITABLE_OR_READABLE;
    f.l1.set(Gpr::Rbx, 0x10);
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(Exception::GP0));
    assert_eq!(f.vmx.vmwrite(&exit, &f.cpu, &mut f.l1), VmxResult::Succeed, "reads are fine");
    exit.instruction_info = (exit.instruction_info & !(7 << 15)) | 2 << 15; // SS
    f.l1.segments[Segment::Ss as usize].limit = 0xf;
    assert_eq!(f.vmx.vmread(&exit, &f.cpu, &mut f.l1), VmxResult::Fault(Exception::SS0));
}

/// Finding: INVVPID with a memory operand through DS in 64-bit mode took #GP(0) after about a
/// thousand good cases. In 64-bit mode DS's base, limit, type and even a null selector are
/// ignored (SDM Vol. 1 3.4.2.1): every descriptor placement in mapped memory, including ones
/// straddling a page boundary and 32-bit address-size wrap-around, completes or VMfails.
#[test]
fn invvpid_through_ds_in_64_bit_mode_never_faults_in_mapped_memory() {
    let mut f = Fx::new().on().loaded();
    f.l1.segments[Segment::Ds as usize] =
        SegmentCache { base: 0xdead_0000, limit: 0, ar: operand::ar::UNUSABLE };
    let exit = inv_exit(ExitReason::Invvpid);
    let mut a32 = inv_exit(ExitReason::Invvpid);
    a32.instruction_info ^= 3 << 7; // 32-bit address size: [EBX]
    for i in 0..4096u64 {
        let at = 0x4000 + i * 13; // crosses 4-KiB boundaries at every alignment
        f.l1.mem.write_u64(L1Gpa(at), 5).unwrap();
        f.l1.mem.write_u64(L1Gpa(at + 8), i << 12).unwrap();
        f.l1.set(Gpr::Rcx, i % 4);
        f.l1.set(Gpr::Rbx, at);
        let (r, flush) = f.vmx.invvpid(&exit, &f.cpu, &mut f.l1);
        assert!(matches!(r, VmxResult::Succeed), "case {i}: {r:?}");
        assert!(flush.is_some(), "case {i}");
        f.l1.set(Gpr::Rbx, 0xffff_ffff_0000_0000 | at);
        assert_eq!(f.vmx.invvpid(&a32, &f.cpu, &mut f.l1).0, VmxResult::Succeed, "case {i}");
    }
}

#[test]
fn vmxon_needs_protected_mode() {
    let mut f = Fx::new();
    f.cpu.cr0 &= !1;
    assert_eq!(f.run_ptr(ExitReason::Vmxon, VMXON_REGION), VmxResult::Fault(Exception::UD));
}

#[test]
fn vmresume_after_a_rip_change_checks_rip_and_after_other_changes_everything() {
    let mut f = ready();
    assert_eq!(f.vmx.vmlaunch(true, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: true });
    // What the image does after an entry, and after the reflected exit that follows.
    f.vmx.dirty.clear();
    f.vmx.rare_stale = true;
    // Only RIP changed: the RIP check still runs (a 64-bit guest needs a canonical RIP).
    f.vmx.vmcs12.guest_rip = 0x8000_0000_0000_0000;
    f.vmx.dirty.insert(crate::vmcs::VmcsField::GuestRip);
    let r = f.vmx.vmlaunch(false, &f.cpu, &mut f.l1);
    let VmxResult::EntryFailed(e) = r else { panic!("{r:?}") };
    assert_eq!(e.check, Check::GuestRip);
    // A good RIP enters again; then a change to another guest field runs the other checks.
    f.vmx.vmcs12.guest_rip = 0x1000;
    assert_eq!(f.vmx.vmlaunch(false, &f.cpu, &mut f.l1), VmxResult::EnterL2 { launch: false });
    f.vmx.dirty.clear();
    f.vmx.vmcs12.guest_rflags = 0;
    f.vmx.dirty.insert(crate::vmcs::VmcsField::GuestRflags);
    let r = f.vmx.vmlaunch(false, &f.cpu, &mut f.l1);
    let VmxResult::EntryFailed(e) = r else { panic!("{r:?}") };
    assert_eq!(e.check, Check::GuestRflagsReserved);
}

/// The image calls only `emulate`: each VMX instruction reaches its emulation through it,
/// and VMCALL outside VMX operation is L0's own hypercall.
#[test]
fn emulate_dispatches_each_vmx_instruction() {
    let mut f = Fx::new().on().loaded();
    let vmcall = ExitInfo { reason: ExitReason::Vmcall as u32, ..Default::default() };
    assert_eq!(
        f.vmx.emulate(&vmcall, &f.cpu, &mut f.l1),
        Some((fail(VmInstructionError::VmcallInVmxRoot), None))
    );
    // All-context INVEPT and INVVPID: the flush comes back with the result.
    f.l1.mem.write_u64(L1Gpa(0x400), 0).unwrap();
    f.l1.mem.write_u64(L1Gpa(0x408), 0).unwrap();
    f.l1.set(Gpr::Rbx, 0x400);
    f.l1.set(Gpr::Rcx, 2);
    assert_eq!(
        f.vmx.emulate(&inv_exit(ExitReason::Invept), &f.cpu, &mut f.l1),
        Some((VmxResult::Succeed, Some(Flush::EptAll)))
    );
    assert_eq!(
        f.vmx.emulate(&inv_exit(ExitReason::Invvpid), &f.cpu, &mut f.l1),
        Some((VmxResult::Succeed, Some(Flush::VpidAll)))
    );
    let vmxoff = ExitInfo { reason: ExitReason::Vmxoff as u32, ..Default::default() };
    assert_eq!(f.vmx.emulate(&vmxoff, &f.cpu, &mut f.l1), Some((VmxResult::Succeed, None)));
    assert!(!f.vmx.vmxon);
    assert_eq!(f.vmx.emulate(&vmcall, &f.cpu, &mut f.l1), None);
}

/// CS.L makes 64-bit mode only in IA-32e mode (SDM Vol. 3A 3.4.5: outside it the bit is
/// reserved): a 32-bit L1 whose CS has L set still has 32-bit VMREAD/VMWRITE operands.
#[test]
fn cs_l_outside_ia32e_mode_is_not_64_bit_mode() {
    let mut f = Fx::new();
    f.cpu.efer = 0;
    f.cpu.cs_l = true;
    assert!(!f.cpu.is_64bit_mode());
    let mut f = f.on().loaded();
    f.vmx.vmcs12.guest_rip = 0x1_2345_6789;
    f.l1.set(Gpr::Rdx, 0xdead_0000_0000_681e);
    let r = f.vmx.vmread(&reg_exit(ExitReason::Vmread), &f.cpu, &mut f.l1);
    assert_eq!((r, f.l1.gpr(Gpr::Rax)), (VmxResult::Succeed, 0x2345_6789));
}

/// `accessed_field` (the image asks it before a VMWRITE under VMCS shadowing) names the
/// field of the encoding in reg2, with the encoding's width the operand size.
#[test]
fn accessed_field_names_the_field_in_reg2() {
    let mut f = Fx::new().on().loaded();
    let exit = reg_exit(ExitReason::Vmwrite);
    f.l1.set(Gpr::Rdx, 0x681e);
    assert_eq!(f.vmx.accessed_field(&exit, &f.cpu, &f.l1), Some(VmcsField::GuestRip));
    f.l1.set(Gpr::Rdx, 0x1234);
    assert_eq!(f.vmx.accessed_field(&exit, &f.cpu, &f.l1), None);
    f.l1.set(Gpr::Rdx, 1 << 32 | 0x681e);
    assert_eq!(f.vmx.accessed_field(&exit, &f.cpu, &f.l1), None, "64-bit encoding");
    f.cpu.efer = 0;
    f.cpu.cs_l = false;
    assert_eq!(
        f.vmx.accessed_field(&exit, &f.cpu, &f.l1),
        Some(VmcsField::GuestRip),
        "32-bit encoding outside 64-bit mode"
    );
}

/// Outside 64-bit mode the INVEPT/INVVPID type register is 32 bits (SDM Vol. 2 INVEPT,
/// INVVPID: "register operand[31:0]"): garbage in RCX[63:32] does not make the type invalid.
#[test]
fn invalidation_type_is_32_bits_outside_64_bit_mode() {
    let mut f = Fx::new();
    f.cpu.efer = 0;
    f.cpu.cs_l = false;
    let mut f = f.on().loaded();
    f.l1.mem.write_u64(L1Gpa(0x400), 0).unwrap();
    f.l1.mem.write_u64(L1Gpa(0x408), 0).unwrap();
    f.l1.set(Gpr::Rbx, 0x400);
    f.l1.set(Gpr::Rcx, 0xffff_ffff_0000_0002);
    let mut ept = inv_exit(ExitReason::Invept);
    ept.instruction_info ^= 3 << 7; // 32-bit address size
    assert_eq!(f.vmx.invept(&ept, &f.cpu, &mut f.l1), (VmxResult::Succeed, Some(Flush::EptAll)));
    let mut vpid = inv_exit(ExitReason::Invvpid);
    vpid.instruction_info ^= 3 << 7;
    assert_eq!(f.vmx.invvpid(&vpid, &f.cpu, &mut f.l1), (VmxResult::Succeed, Some(Flush::VpidAll)));
}

/// INVVPID is #UD unless both "enable VPID" can be 1 and IA32_VMX_EPT_VPID_CAP bit 32 says
/// INVVPID is supported (SDM A.10); INVEPT likewise with "enable EPT" and bit 20.
#[test]
fn invvpid_and_invept_need_their_control_and_capability() {
    let exit = inv_exit(ExitReason::Invvpid);
    let mut f = Fx::new().on().loaded();
    f.l1.set(Gpr::Rcx, 2);
    f.vmx.caps.ept_vpid &= !ept_vpid::INVVPID;
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, VmxResult::Fault(Exception::UD));
    let mut f = Fx::new().on().loaded();
    f.l1.set(Gpr::Rcx, 2);
    f.vmx.caps.procbased2 &= !(u64::from(proc2::ENABLE_VPID) << 32);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1).0, VmxResult::Fault(Exception::UD));
    let exit = inv_exit(ExitReason::Invept);
    f.vmx.caps.procbased2 &= !(u64::from(proc2::ENABLE_EPT) << 32);
    assert_eq!(f.vmx.invept(&exit, &f.cpu, &mut f.l1).0, VmxResult::Fault(Exception::UD));
}

/// Every INVVPID type but all-context fails on VPID 0 (SDM Vol. 2 INVVPID: types 0, 1 and 3
/// VMfail when INVVPID_DESC[15:0] is 0); all-context ignores the VPID.
#[test]
fn invvpid_vpid_0() {
    let mut f = Fx::new().on().loaded();
    let exit = inv_exit(ExitReason::Invvpid);
    f.l1.mem.write_u64(L1Gpa(0x400), 0).unwrap();
    f.l1.mem.write_u64(L1Gpa(0x408), 0x1000).unwrap();
    f.l1.set(Gpr::Rbx, 0x400);
    for ty in [0, 1, 3] {
        f.l1.set(Gpr::Rcx, ty);
        assert_eq!(
            f.vmx.invvpid(&exit, &f.cpu, &mut f.l1),
            (fail(VmInstructionError::InvalidInveptInvvpidOperand), None),
            "type {ty}"
        );
    }
    f.l1.set(Gpr::Rcx, 2);
    assert_eq!(f.vmx.invvpid(&exit, &f.cpu, &mut f.l1), (VmxResult::Succeed, Some(Flush::VpidAll)));
}

/// VMFUNC's leaf is EAX and its EPTP index ECX (SDM Vol. 2 VMFUNC; 25.5.6.3): RAX[63:32] is
/// ignored; EPTP switching needs "enable VM functions" and bit 0 of the VM-function controls;
/// the EPTP-index field is written only under "EPT-violation #VE".
#[test]
fn vmfunc_leaf_controls_and_eptp_index() {
    let mut f = ready();
    f.vmx.vmcs12.vm_function_control = 1;
    f.vmx.vmcs12.eptp_list_address = 0x8000;
    let eptp = 0x9000 | 6 | 3 << 3;
    f.l1.mem.write_u64(L1Gpa(0x8000 + 3 * 8), eptp).unwrap();
    let mut regs = crate::guest::Regs::default();
    regs.0[1] = 3;
    // vmcs02 enables VM functions only when vmcs12 does (without them L2's VMFUNC is #UD in
    // hardware), so this is never reached from L2; it still must not switch.
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect, "VM functions off");
    f.vmx.vmcs12.secondary_vm_exec_control |= proc2::ENABLE_VM_FUNCTIONS;
    f.vmx.vmcs12.vm_function_control = 2;
    f.vmx.vmcs12.eptp_index = 7;
    regs.0[0] = 0xdead_0000_0000_0000;
    regs.0[1] = 0xffff_ffff_0000_0003;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Reflect, "EPTP switching off");
    f.vmx.vmcs12.vm_function_control = 1;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Switched { eptp });
    assert_eq!(f.vmx.vmcs12.eptp_index, 7, "no #VE: the EPTP index is not written");
    f.vmx.vmcs12.secondary_vm_exec_control |= proc2::EPT_VIOLATION_VE;
    assert_eq!(f.vmx.vmfunc(&regs, &f.l1), VmfuncOutcome::Switched { eptp });
    assert_eq!(f.vmx.vmcs12.eptp_index, 3);
}
