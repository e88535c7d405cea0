//! INVEPT, INVVPID, VMCALL and VMFUNC emulation (SDM Vol. 2 instruction reference; Vol. 3C
//! 29.4.3 invalidation types, 25.5.6 VM functions).

use super::instr::{Flush, L1Access, L1Cpu, NestedVmx, VmfuncOutcome};
use super::operand::InstrInfo;
use super::{Exception, VmInstructionError, VmxResult};
use crate::addr::{L1Gpa, is_canonical};
use crate::caps::{ept_vpid, proc2};
use crate::ept::eptp_valid;
use crate::exits::{ExitInfo, routing::secondary_controls};
use crate::guest::{Gpr, GuestMemory, GuestRegs};
use crate::vmcs::LaunchState;

impl NestedVmx {
    fn invalidation_type(&self, exit: &ExitInfo, cpu: &L1Cpu, l1: &impl L1Access) -> u64 {
        let t = l1.gpr(InstrInfo(exit.instruction_info).reg2());
        if cpu.is_64bit_mode() { t } else { t & 0xffff_ffff }
    }

    fn read_descriptor(
        &self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> Result<(u64, u64), Exception> {
        let m = self.mem_operand(exit, cpu, l1)?;
        let mut b = [0u8; 16];
        super::instr::read_mem(l1, cpu, &m, &mut b)?;
        let lo = u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        let hi = u64::from_le_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]);
        Ok((lo, hi))
    }

    /// INVEPT (SDM Vol. 2, INVEPT): error 28 for unsupported types and invalid EPTPs.
    pub fn invept(
        &mut self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> (VmxResult, Option<Flush>) {
        let has = self.caps.secondary().can_set(proc2::ENABLE_EPT)
            && self.caps.ept_vpid_has(ept_vpid::INVEPT);
        if !has {
            return (VmxResult::Fault(Exception::UD), None);
        }
        if let Err(e) = self.root_checks(cpu) {
            return (VmxResult::Fault(e), None);
        }
        let ty = self.invalidation_type(exit, cpu, l1);
        let supported = match ty {
            1 => self.caps.ept_vpid_has(ept_vpid::INVEPT_SINGLE_CONTEXT),
            2 => self.caps.ept_vpid_has(ept_vpid::INVEPT_ALL_CONTEXT),
            _ => false,
        };
        if !supported {
            return (self.fail(VmInstructionError::InvalidInveptInvvpidOperand), None);
        }
        let (eptp, _) = match self.read_descriptor(exit, cpu, l1) {
            Ok(d) => d,
            Err(e) => return (VmxResult::Fault(e), None),
        };
        if ty == 1 {
            if !eptp_valid(eptp, &self.caps, self.maxphyaddr) {
                return (self.fail(VmInstructionError::InvalidInveptInvvpidOperand), None);
            }
            (VmxResult::Succeed, Some(Flush::EptSingle { eptp }))
        } else {
            (VmxResult::Succeed, Some(Flush::EptAll))
        }
    }

    /// INVVPID (SDM Vol. 2, INVVPID): error 28 for unsupported types, reserved descriptor
    /// bits, VPID 0 and non-canonical addresses.
    pub fn invvpid(
        &mut self,
        exit: &ExitInfo,
        cpu: &L1Cpu,
        l1: &mut impl L1Access,
    ) -> (VmxResult, Option<Flush>) {
        let has = self.caps.has_vpid() && self.caps.ept_vpid_has(ept_vpid::INVVPID);
        if !has {
            return (VmxResult::Fault(Exception::UD), None);
        }
        if let Err(e) = self.root_checks(cpu) {
            return (VmxResult::Fault(e), None);
        }
        let ty = self.invalidation_type(exit, cpu, l1);
        let bit = match ty {
            0 => ept_vpid::INVVPID_INDIVIDUAL_ADDRESS,
            1 => ept_vpid::INVVPID_SINGLE_CONTEXT,
            2 => ept_vpid::INVVPID_ALL_CONTEXT,
            3 => ept_vpid::INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS,
            _ => 0,
        };
        if bit == 0 || !self.caps.ept_vpid_has(bit) {
            return (self.fail(VmInstructionError::InvalidInveptInvvpidOperand), None);
        }
        let (lo, address) = match self.read_descriptor(exit, cpu, l1) {
            Ok(d) => d,
            Err(e) => return (VmxResult::Fault(e), None),
        };
        if lo >> 16 != 0 {
            return (self.fail(VmInstructionError::InvalidInveptInvvpidOperand), None);
        }
        let vpid12 = lo as u16;
        let flush = match ty {
            0 if vpid12 == 0 || !is_canonical(address) => None,
            0 => Some(Flush::VpidAddress { vpid12, address }),
            1 if vpid12 == 0 => None,
            1 => Some(Flush::VpidSingle { vpid12 }),
            3 if vpid12 == 0 => None,
            3 => Some(Flush::VpidSingleRetainingGlobals { vpid12 }),
            _ => Some(Flush::VpidAll),
        };
        match flush {
            Some(f) => (VmxResult::Succeed, Some(f)),
            None => (self.fail(VmInstructionError::InvalidInveptInvvpidOperand), None),
        }
    }

    /// VMCALL executed by L1. Outside VMX operation it is L0's own hypercall (`None`). In
    /// VMX root operation, with no dual-monitor treatment offered (IA32_VMX_BASIC bit 49 = 0),
    /// the SDM pseudocode ends in VMfail: VMfailInvalid without a current VMCS, error 19 if
    /// it is launched, else error 1.
    pub fn vmcall(&mut self, cpu: &L1Cpu) -> Option<VmxResult> {
        if !self.vmxon {
            return None;
        }
        if let Err(e) = self.root_checks(cpu) {
            return Some(VmxResult::Fault(e));
        }
        Some(match self.current {
            None => VmxResult::FailInvalid,
            Some(_) if self.vmcs12.launch() == LaunchState::Launched => {
                self.fail(VmInstructionError::VmcallNonClearVmcs)
            }
            Some(_) => self.fail(VmInstructionError::VmcallInVmxRoot),
        })
    }

    /// VMFUNC executed by L2 (L0 always intercepts it): leaf 0, EPTP switching, from the
    /// EPTP list in L1 memory (SDM 25.5.6.3). Anything else is reflected to L1.
    pub fn vmfunc(&mut self, regs: &impl GuestRegs, mem: &impl GuestMemory) -> VmfuncOutcome {
        let v = &self.vmcs12;
        let leaf = regs.gpr(Gpr::Rax) & 0xffff_ffff;
        let index = regs.gpr(Gpr::Rcx) & 0xffff_ffff;
        if secondary_controls(v) & proc2::ENABLE_VM_FUNCTIONS == 0
            || leaf != 0
            || v.vm_function_control & 1 == 0
            || index >= 512
        {
            return VmfuncOutcome::Reflect;
        }
        let Ok(eptp) = mem.read_u64(L1Gpa(v.eptp_list_address.wrapping_add(index * 8))) else {
            return VmfuncOutcome::Reflect;
        };
        if !eptp_valid(eptp, &self.caps, self.maxphyaddr) {
            return VmfuncOutcome::Reflect;
        }
        self.vmcs12.ept_pointer = eptp;
        self.entry_checked = None;
        if secondary_controls(&self.vmcs12) & proc2::EPT_VIOLATION_VE != 0 {
            self.vmcs12.eptp_index = index as u16;
        }
        VmfuncOutcome::Switched { eptp }
    }
}
