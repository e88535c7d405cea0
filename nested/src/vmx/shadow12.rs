//! VMCS shadowing as L1 uses it for L2 (SDM Vol. 3C 25.10; Vol. 2 "VMREAD" and "VMWRITE" in
//! VMX non-root operation).
//!
//! When vmcs12 has the "VMCS shadowing" control, L2's VMREAD and VMWRITE exit to L1 only for
//! the fields vmcs12's VMREAD and VMWRITE bitmaps name; the others read and write the shadow
//! VMCS vmcs12's link pointer names, a VMCS region in L1 memory that L1 made with the
//! shadow-VMCS indicator. vmcs02 has no VMCS shadowing of its own, so every VMREAD and
//! VMWRITE of L2 exits to L0: [`l1_wants_exit`](crate::exits::l1_wants_exit) sends the
//! ones the bitmaps name to L1, and [`NestedVmx::l2_shadow_access`] performs the rest on the
//! region in L1 memory, field by field in the vmcs12 layout (the region is not L1's current
//! VMCS while L2 runs: the entry checks refuse a link pointer equal to it, so L0 holds no
//! cached copy of it).

use super::instr::{L1Access, L1Cpu, NestedVmx};
use super::{Exception, InstrInfo, VmxResult};
use crate::addr::L1Gpa;
use crate::caps::proc2;
use crate::exits::ExitInfo;
use crate::exits::routing::{secondary_controls, vmx_bitmap_wanted};
use crate::guest::GuestMemory;
use crate::vmcs::{Vmcs, VmcsField};

/// A VMCS region in L1 memory in the vmcs12 layout, accessed field by field (the shadow VMCS
/// of L2's VMREAD and VMWRITE). An access L1's memory cannot take reads 0 or is dropped: the
/// VM entry found the region's first word in L1 RAM.
pub struct InMemoryVmcs<'m, M: GuestMemory> {
    pub mem: &'m mut M,
    pub region: L1Gpa,
}

impl<M: GuestMemory> Vmcs for InMemoryVmcs<'_, M> {
    fn read(&self, field: VmcsField) -> u64 {
        let mut b = [0u8; 8];
        let at = L1Gpa(self.region.0 + field.vmcs12_offset() as u64);
        let _ = self.mem.read(at, &mut b[..field.width().bytes()]);
        u64::from_le_bytes(b)
    }

    fn write(&mut self, field: VmcsField, value: u64) {
        let at = L1Gpa(self.region.0 + field.vmcs12_offset() as u64);
        let _ = self.mem.write(at, &value.to_le_bytes()[..field.width().bytes()]);
    }
}

impl NestedVmx {
    /// L2 executed VMREAD (`write` false) or VMWRITE, which exited to L0 (vmcs02 has no VMCS
    /// shadowing). `cpu` and `l2` are L2's processor state, registers and memory operands,
    /// with L1's physical memory behind [`GuestMemory`]. `None`: the exit is L1's (vmcs12
    /// has no VMCS shadowing, the encoding has bits above 14, or its bitmap bit is set);
    /// otherwise the instruction's outcome on the shadow VMCS, in the SDM's order after the
    /// exit decision: #GP(0) at CPL > 0, VMfailInvalid without a shadow VMCS (link pointer
    /// FFFFFFFF_FFFFFFFFH), then as in VMX root operation but on the shadow (VMfailValid's
    /// error goes to the current VMCS, vmcs12).
    pub fn l2_shadow_access(
        &mut self,
        write: bool,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l2: &mut impl L1Access,
    ) -> Option<VmxResult> {
        let v12 = &self.vmcs12;
        let reg = l2.gpr(InstrInfo(exit.instruction_info).reg2());
        let encoding = if cpu.is_64bit_mode() { reg } else { reg & 0xffff_ffff };
        if secondary_controls(v12) & proc2::VMCS_SHADOWING == 0
            || vmx_bitmap_wanted(write, encoding, v12, &*l2)
        {
            return None;
        }
        if cpu.cpl > 0 {
            return Some(VmxResult::Fault(Exception::GP0));
        }
        let link = v12.vmcs_link_pointer;
        if link == u64::MAX {
            return Some(VmxResult::FailInvalid);
        }
        let shadow = super::instr::Target::Shadow(L1Gpa(link));
        Some(if write {
            self.vmwrite_on(shadow, exit, cpu, l2)
        } else {
            self.vmread_on(shadow, exit, cpu, l2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::proc1;
    use crate::exits::ExitReason;
    use crate::guest::{Gpr, GuestRegs};
    use crate::testutil::{TestL1, l1};
    use crate::vmcs::{VMCS12_REVISION, Vmcs12};
    use crate::vmx::{SHADOW_VMCS_INDICATOR, VmInstructionError};

    const VMCS12: u64 = 0x2000;
    const SHADOW: u64 = 0x5000;
    const READ_BITMAP: u64 = 0x6000;
    const WRITE_BITMAP: u64 = 0x7000;

    /// L1 in VMX operation running L2 from the vmcs12 at 0x2000, whose link pointer names a
    /// shadow VMCS at 0x5000 holding GUEST_RIP 0x1234 and whose bitmaps are all clear but
    /// the bit of GUEST_RSP (0x681c) in both.
    fn running_l2() -> (NestedVmx, TestL1) {
        let mut vmx = NestedVmx::new(l1(), 36);
        vmx.vmxon = true;
        vmx.current = Some(L1Gpa(VMCS12));
        vmx.vmcs12.cpu_based_vm_exec_control |= proc1::ACTIVATE_SECONDARY_CONTROLS;
        vmx.vmcs12.secondary_vm_exec_control |= proc2::VMCS_SHADOWING;
        vmx.vmcs12.vmcs_link_pointer = SHADOW;
        vmx.vmcs12.vmread_bitmap = READ_BITMAP;
        vmx.vmcs12.vmwrite_bitmap = WRITE_BITMAP;
        let mut mem = TestL1::new(0x10000);
        let mut shadow = Vmcs12::zeroed(VMCS12_REVISION | SHADOW_VMCS_INDICATOR);
        shadow.guest_rip = 0x1234;
        let mut page = [0u8; 4096];
        shadow.to_bytes(&mut page);
        mem.mem.write(L1Gpa(SHADOW), &page).unwrap();
        let rsp = VmcsField::GuestRsp.encoding() as u64;
        for bitmap in [READ_BITMAP, WRITE_BITMAP] {
            mem.mem.write(L1Gpa(bitmap + (rsp >> 3)), &[1 << (rsp & 7)]).unwrap();
        }
        (vmx, mem)
    }

    /// VMREAD/VMWRITE with the field in RAX and the value in register RBX (instruction
    /// information: register operand, reg1 RBX, reg2 RAX).
    fn exit(write: bool) -> ExitInfo {
        let reason = if write { ExitReason::Vmwrite } else { ExitReason::Vmread };
        ExitInfo {
            reason: u32::from(reason.number()),
            instruction_info: 1 << 10 | 3 << 3,
            ..ExitInfo::default()
        }
    }

    fn field(mem: &mut TestL1, encoding: u64) {
        mem.set(Gpr::Rax, encoding);
    }

    #[test]
    fn vmread_reads_the_shadow_vmcs_in_l1_memory() {
        let (mut vmx, mut mem) = running_l2();
        field(&mut mem, VmcsField::GuestRip.encoding() as u64);
        let cpu = L1Cpu::long_mode_ring0();
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(mem.gpr(Gpr::Rbx), 0x1234);
    }

    #[test]
    fn vmwrite_writes_the_shadow_not_vmcs12() {
        let (mut vmx, mut mem) = running_l2();
        field(&mut mem, VmcsField::GuestRip.encoding() as u64);
        mem.set(Gpr::Rbx, 0xabcd);
        let cpu = L1Cpu::long_mode_ring0();
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        let at = L1Gpa(SHADOW + VmcsField::GuestRip.vmcs12_offset() as u64);
        assert_eq!(mem.mem.read_u64(at), Ok(0xabcd));
        assert_eq!(vmx.vmcs12.guest_rip, 0, "vmcs12 untouched");
        assert!(vmx.dirty.contains(VmcsField::GuestRip), "dirty from `new`, not cleared");
        vmx.dirty.clear();
        // A 64-bit field's HIGH encoding writes bits 63:32 only.
        let eptp = VmcsField::EptPointer;
        field(&mut mem, eptp.encoding() as u64);
        mem.set(Gpr::Rbx, 0xabcd);
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        field(&mut mem, eptp.encoding() as u64 | 1);
        mem.set(Gpr::Rbx, 0x77);
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        let at = L1Gpa(SHADOW + eptp.vmcs12_offset() as u64);
        assert_eq!(mem.mem.read_u64(at), Ok(0x77_0000_abcd), "HIGH access: bits 63:32");
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(mem.gpr(Gpr::Rbx), 0x77, "HIGH read");
        assert!(vmx.dirty.is_empty(), "a shadow write dirties nothing of vmcs12");
    }

    #[test]
    fn the_bitmaps_and_high_encodings_send_the_exit_to_l1() {
        let (mut vmx, mut mem) = running_l2();
        let cpu = L1Cpu::long_mode_ring0();
        for write in [false, true] {
            field(&mut mem, VmcsField::GuestRsp.encoding() as u64);
            assert_eq!(vmx.l2_shadow_access(write, &exit(write), &cpu, &mut mem), None);
            field(&mut mem, 0x8000 | VmcsField::GuestRip.encoding() as u64);
            assert_eq!(vmx.l2_shadow_access(write, &exit(write), &cpu, &mut mem), None);
            // Bits 63:32 count in 64-bit mode only.
            field(&mut mem, 1 << 32 | VmcsField::GuestRip.encoding() as u64);
            assert_eq!(vmx.l2_shadow_access(write, &exit(write), &cpu, &mut mem), None);
            let mut compat = cpu;
            compat.cs_l = false;
            compat.efer = 0;
            assert!(vmx.l2_shadow_access(write, &exit(write), &compat, &mut mem).is_some());
        }
        vmx.vmcs12.secondary_vm_exec_control &= !proc2::VMCS_SHADOWING;
        field(&mut mem, VmcsField::GuestRip.encoding() as u64);
        assert_eq!(vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem), None);
    }

    /// A shadow VMCS L1 switched away from is parked in L0 (`NestedVmx::parked`): L2's
    /// VMREAD/VMWRITE work on that copy, not on the stale memory.
    #[test]
    fn a_parked_shadow_vmcs_is_used_from_l0s_copy() {
        let (mut vmx, mut mem) = running_l2();
        let mut cached = Vmcs12::zeroed(VMCS12_REVISION | SHADOW_VMCS_INDICATOR);
        cached.guest_rip = 0x5555;
        let parked = |ptr| crate::vmx::Parked {
            ptr: L1Gpa(ptr),
            vmcs12: cached.clone(),
            dirty: crate::vmcs::DirtySet::empty(),
            entry_checked: None,
        };
        let cpu = L1Cpu::long_mode_ring0();
        field(&mut mem, VmcsField::GuestRip.encoding() as u64);
        // Another VMCS parked: the shadow is read and written in memory.
        vmx.parked = Some(parked(VMCS12 + 0x1000));
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(mem.gpr(Gpr::Rbx), 0x1234);
        mem.set(Gpr::Rbx, 0x1234);
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(vmx.parked.as_ref().unwrap().vmcs12.guest_rip, 0x5555, "not the parked one");
        vmx.parked = Some(parked(SHADOW));
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(mem.gpr(Gpr::Rbx), 0x5555);
        mem.set(Gpr::Rbx, 0x6666);
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::Succeed)
        );
        assert_eq!(vmx.parked.as_ref().unwrap().vmcs12.guest_rip, 0x6666);
        let at = L1Gpa(SHADOW + VmcsField::GuestRip.vmcs12_offset() as u64);
        assert_eq!(mem.mem.read_u64(at), Ok(0x1234), "memory untouched");
    }

    /// The routing decision that comes first: L1's only for the fields the bitmaps name (and
    /// always without shadowing); the rest is L0's to perform ([`crate::exits::ExitRoute::ForL1`]).
    #[test]
    fn routing_wants_l1_only_for_the_named_fields() {
        use crate::exits::l1_wants_exit;
        let (mut vmx, mut mem) = running_l2();
        for write in [false, true] {
            field(&mut mem, VmcsField::GuestRip.encoding() as u64);
            assert_eq!(l1_wants_exit(&exit(write), &vmx.vmcs12, &mem, &mem), Ok(false));
            field(&mut mem, VmcsField::GuestRsp.encoding() as u64);
            assert_eq!(l1_wants_exit(&exit(write), &vmx.vmcs12, &mem, &mem), Ok(true));
            field(&mut mem, 0x1_0000 | VmcsField::GuestRip.encoding() as u64);
            assert_eq!(l1_wants_exit(&exit(write), &vmx.vmcs12, &mem, &mem), Ok(true));
        }
        vmx.vmcs12.vmread_bitmap = 0x10_0000; // outside L1's memory: counts as "exit"
        field(&mut mem, VmcsField::GuestRip.encoding() as u64);
        assert_eq!(l1_wants_exit(&exit(false), &vmx.vmcs12, &mem, &mem), Ok(true));
        vmx.vmcs12.secondary_vm_exec_control &= !proc2::VMCS_SHADOWING;
        assert_eq!(l1_wants_exit(&exit(true), &vmx.vmcs12, &mem, &mem), Ok(true));
    }

    #[test]
    fn cpl_link_pointer_and_field_errors_in_the_sdm_order() {
        let (mut vmx, mut mem) = running_l2();
        let mut cpu = L1Cpu::long_mode_ring0();
        field(&mut mem, 0x7777);
        cpu.cpl = 3;
        let gp = Some(VmxResult::Fault(Exception::GP0));
        assert_eq!(vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem), gp);
        cpu.cpl = 0;
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::FailValid(VmInstructionError::UnsupportedVmcsComponent))
        );
        assert_eq!(vmx.vmcs12.vm_instruction_error, 12, "stored in the current VMCS");
        // A read-only field without "VMWRITE to any field".
        let mut caps = vmx.caps;
        caps.misc &= !(1 << 29);
        vmx.set_caps(caps);
        field(&mut mem, VmcsField::VmExitReason.encoding() as u64);
        assert_eq!(
            vmx.l2_shadow_access(true, &exit(true), &cpu, &mut mem),
            Some(VmxResult::FailValid(VmInstructionError::VmwriteReadOnlyComponent))
        );
        vmx.vmcs12.vmcs_link_pointer = u64::MAX;
        assert_eq!(
            vmx.l2_shadow_access(false, &exit(false), &cpu, &mut mem),
            Some(VmxResult::FailInvalid)
        );
    }
}
