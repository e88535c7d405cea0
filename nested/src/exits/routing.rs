//! Who handles an L2 exit: L0 or L1 (Turtles §3.3; SDM Vol. 3C 26.1-26.2 for what makes each
//! instruction or event exit; semantics of Linux `nested_vmx_l0_wants_exit` /
//! `nested_vmx_l1_wants_exit`).
//!
//! L0 asks [`l0_wants_exit`] first: what L0 handles for its own sake whatever vmcs12 says
//! (physical interrupts and NMIs, EPT02 faults, VMFUNC emulation, PML, its preemption timer).
//! Then [`l1_wants_exit`]: would this event have exited from L2 to L1 on a real processor
//! running vmcs12? If neither, the exit happened only because vmcs02 intercepts more than
//! either level asked for (unconditional I/O exiting, no MSR bitmap, CR bits the hardware's
//! fixed values make L0 own): on a real processor the access would have gone to L1's world
//! without any exit, so L0 performs it exactly as if L1 had executed the instruction itself
//! (port I/O against L1's devices, the MSR in L1's MSR view, the CR write into L2's state as
//! vmcs12 describes it) and resumes L2: [`ExitRoute::ForL1`].

use super::{ExitInfo, ExitReason, intr_info, vector};
use crate::addr::L1Gpa;
use crate::arch::cr0;
use crate::caps::{pin, proc1, proc2};
use crate::guest::{Gpr, GuestMemory, GuestRegs};
use crate::vmcs::Vmcs12;

/// What L0 intercepts in vmcs02 for its own reasons, independent of vmcs12.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct L0Intercepts {
    /// Exceptions L0 must see (e.g. #MC; #PF without EPT).
    pub exception_bitmap: u32,
    /// L0 runs the VMX-preemption timer in vmcs02 for its own scheduling.
    pub preemption_timer: bool,
}

/// The routing decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitRoute {
    /// L0's own exit (an interrupt, an EPT02 fault, VMFUNC, its timer): L0 handles it for
    /// its own sake and resumes L2.
    L0,
    /// Reflect the exit to L1: sync vmcs12, switch to vmcs01.
    L1,
    /// Neither level asked for this exit: the access belongs to L1's world. L0 performs it
    /// as if L1 itself had executed the instruction (against L1's devices, MSRs and L2's
    /// state as vmcs12 has it), never reflecting it, and resumes L2.
    ForL1,
}

/// Routing failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoutingError {
    /// The exit-reason field holds an undefined basic reason.
    UnknownReason(u32),
}

/// Does L0 handle this exit regardless of vmcs12?
pub fn l0_wants_exit(info: &ExitInfo, l0: &L0Intercepts) -> Result<bool, RoutingError> {
    use ExitReason::*;
    let reason = info.exit_reason().ok_or(RoutingError::UnknownReason(info.reason))?;
    Ok(match reason {
        ExceptionOrNmi => {
            let kind = intr_info::kind(info.intr_info);
            let vec = intr_info::vector(info.intr_info);
            // A physical NMI or machine check belongs to L0, as does anything it intercepts.
            kind == intr_info::TYPE_NMI
                || vec == vector::MC
                || (vec < 32 && l0.exception_bitmap & (1 << vec) != 0)
        }
        // Physical interrupts, L0's shadow-EPT faults (L0 walks EPT12 and reflects a
        // synthesized EPT violation/misconfiguration itself), SMIs, machine checks during
        // entry, PML (L0's dirty log), VMFUNC (emulated EPTP switching), bus locks and
        // notify exits are L0's.
        ExternalInterrupt
        | IoSmi
        | OtherSmi
        | EntryFailMachineCheck
        | EptViolation
        | EptMisconfig
        | PmlFull
        | Vmfunc
        | BusLock
        | InstructionTimeout => true,
        PreemptionTimer => l0.preemption_timer,
        _ => false,
    })
}

/// Would a processor running L2 under vmcs12 have exited to L1 for this event?
///
/// `regs` are L2's registers (ECX for RDMSR/WRMSR, CR-access source registers, EDX:EAX for
/// XSAVES); `mem` is L1 memory (I/O and MSR bitmaps). An unreadable bitmap counts as "exit",
/// the safe answer.
pub fn l1_wants_exit(
    info: &ExitInfo,
    vmcs12: &Vmcs12,
    regs: &impl GuestRegs,
    mem: &impl GuestMemory,
) -> Result<bool, RoutingError> {
    use ExitReason::*;
    let reason = info.exit_reason().ok_or(RoutingError::UnknownReason(info.reason))?;
    let p1 = vmcs12.cpu_based_vm_exec_control;
    let p2 = secondary_controls(vmcs12);
    let has1 = |bit: u32| p1 & bit != 0;
    let has2 = |bit: u32| p2 & bit != 0;
    Ok(match reason {
        ExceptionOrNmi => exception_wanted(info, vmcs12),
        ExternalInterrupt => {
            vmcs12.pin_based_vm_exec_control & pin::EXTERNAL_INTERRUPT_EXITING != 0
        }
        InterruptWindow => has1(proc1::INTERRUPT_WINDOW_EXITING),
        NmiWindow => has1(proc1::NMI_WINDOW_EXITING),
        Hlt => has1(proc1::HLT_EXITING),
        Invlpg => has1(proc1::INVLPG_EXITING),
        Rdpmc => has1(proc1::RDPMC_EXITING),
        Rdtsc | Rdtscp => has1(proc1::RDTSC_EXITING),
        CrAccess => cr_access_wanted(info.qualification, vmcs12, regs),
        DrAccess => has1(proc1::MOV_DR_EXITING),
        IoInstruction => io_wanted(info.qualification, vmcs12, mem),
        Rdmsr | Wrmsr => msr_wanted(reason == Wrmsr, regs.gpr(Gpr::Rcx) as u32, vmcs12, mem),
        Mwait => has1(proc1::MWAIT_EXITING),
        MonitorTrapFlag => has1(proc1::MONITOR_TRAP_FLAG),
        Monitor => has1(proc1::MONITOR_EXITING),
        Pause => has1(proc1::PAUSE_EXITING) || has2(proc2::PAUSE_LOOP_EXITING),
        TprBelowThreshold => has1(proc1::USE_TPR_SHADOW),
        GdtrIdtrAccess | LdtrTrAccess => has2(proc2::DESCRIPTOR_TABLE_EXITING),
        Wbinvd => has2(proc2::WBINVD_EXITING),
        Rdrand => has2(proc2::RDRAND_EXITING),
        Rdseed => has2(proc2::RDSEED_EXITING),
        Invpcid => has1(proc1::INVLPG_EXITING) && has2(proc2::ENABLE_INVPCID),
        Xsaves | Xrstors => {
            let mask = (regs.gpr(Gpr::Rdx) << 32) | (regs.gpr(Gpr::Rax) & 0xffff_ffff);
            has2(proc2::ENABLE_XSAVES) && vmcs12.xss_exit_bitmap & mask != 0
        }
        Encls => {
            let leaf = regs.gpr(Gpr::Rax).min(63);
            has2(proc2::ENCLS_EXITING) && vmcs12.encls_exiting_bitmap & (1 << leaf) != 0
        }
        PreemptionTimer => vmcs12.pin_based_vm_exec_control & pin::PREEMPTION_TIMER != 0,
        // With VMCS shadowing, L2's VMREAD/VMWRITE exit only for the fields vmcs12's bitmaps
        // name (the rest act on the shadow VMCS: `crate::vmx::shadow12`).
        Vmread | Vmwrite => {
            let encoding = regs.gpr(crate::vmx::InstrInfo(info.instruction_info).reg2());
            !has2(proc2::VMCS_SHADOWING)
                || vmx_bitmap_wanted(reason == Vmwrite, encoding & 0xffff_ffff, vmcs12, mem)
        }
        // UMWAIT/TPAUSE exit iff "enable user wait and pause" and "RDTSC exiting" (26.1.3).
        Umwait | Tpause => has2(proc2::ENABLE_USER_WAIT_PAUSE) && has1(proc1::RDTSC_EXITING),
        // Exits L0 always takes (l0_wants_exit) reach here only if the caller skipped it;
        // never reflect them blindly.
        IoSmi
        | OtherSmi
        | EntryFailMachineCheck
        | EptViolation
        | EptMisconfig
        | PmlFull
        | Vmfunc
        | BusLock
        | InstructionTimeout => false,
        // Unconditional exits (SDM 26.1.2) and exits whose only cause is a vmcs12 feature
        // (APIC virtualization, entry failures, task switches, VMX instructions in L2, …).
        TripleFault | InitSignal | StartupIpi | TaskSwitch | Cpuid | Getsec | Invd | Rsm
        | Vmcall | Vmclear | Vmlaunch | Vmptrld | Vmptrst | Vmresume | Vmxoff | Vmxon
        | EntryFailGuestState | EntryFailMsrLoading | ApicAccess | VirtualizedEoi | Invept
        | Invvpid | Xsetbv | ApicWrite | Pconfig | SppEvent | Loadiwkey | Enclv
        | EnqcmdPasidFail | EnqcmdsPasidFail | Seamcall | Tdcall | Rdmsrlist | Wrmsrlist => true,
    })
}

/// Decide: L0 first, then L1, else L0 performs the access for L1.
pub fn route(
    info: &ExitInfo,
    l0: &L0Intercepts,
    vmcs12: &Vmcs12,
    regs: &impl GuestRegs,
    mem: &impl GuestMemory,
) -> Result<ExitRoute, RoutingError> {
    if l0_wants_exit(info, l0)? {
        Ok(ExitRoute::L0)
    } else if l1_wants_exit(info, vmcs12, regs, mem)? {
        Ok(ExitRoute::L1)
    } else {
        Ok(ExitRoute::ForL1)
    }
}

/// Does the VMREAD (`write` false) or VMWRITE bitmap of vmcs12 make L2's access to the field
/// `encoding` exit (SDM Vol. 3C 25.1.3, 25.10)? Encodings above bit 14 always exit; an
/// unreadable bitmap counts as "exit". Outside 64-bit mode only bits 31:0 of the register
/// are the encoding; in 64-bit mode bits 63:32 set make it exit too, which the caller that
/// knows L2's mode checks ([`crate::vmx::shadow12`]).
pub fn vmx_bitmap_wanted(
    write: bool,
    encoding: u64,
    vmcs12: &Vmcs12,
    mem: &impl GuestMemory,
) -> bool {
    if encoding >> 15 != 0 {
        return true;
    }
    let bitmap = if write { vmcs12.vmwrite_bitmap } else { vmcs12.vmread_bitmap };
    mem.read_u8(L1Gpa(bitmap + (encoding >> 3))).map_or(true, |b| b & (1 << (encoding & 7)) != 0)
}

/// Secondary controls in effect (zero unless "activate secondary controls", SDM 25.6.2).
pub fn secondary_controls(vmcs12: &Vmcs12) -> u32 {
    if vmcs12.cpu_based_vm_exec_control & proc1::ACTIVATE_SECONDARY_CONTROLS != 0 {
        vmcs12.secondary_vm_exec_control
    } else {
        0
    }
}

/// Exception bitmap with the #PF error-code mask/match rule (SDM 25.6.3).
fn exception_wanted(info: &ExitInfo, vmcs12: &Vmcs12) -> bool {
    let kind = intr_info::kind(info.intr_info);
    let vec = intr_info::vector(info.intr_info);
    if kind == intr_info::TYPE_NMI {
        return vmcs12.pin_based_vm_exec_control & pin::NMI_EXITING != 0;
    }
    if vec >= 32 {
        return false;
    }
    let bit = vmcs12.exception_bitmap & (1 << vec) != 0;
    if vec == vector::PF {
        let matches = info.intr_error_code & vmcs12.page_fault_error_code_mask
            == vmcs12.page_fault_error_code_match;
        return if matches { bit } else { !bit };
    }
    bit
}

/// Control-register accesses (SDM 26.1.3, exit qualification Table 28-3).
fn cr_access_wanted(qual: u64, vmcs12: &Vmcs12, regs: &impl GuestRegs) -> bool {
    let cr = qual & 0xf;
    let access = (qual >> 4) & 3;
    let value = regs.gpr(Gpr::from_index((qual >> 8) as u32 & 0xf));
    let p1 = vmcs12.cpu_based_vm_exec_control;
    match (access, cr) {
        // MOV to CR0 / CR4: exit iff a host-owned bit would differ from its read shadow.
        (0, 0) => vmcs12.cr0_guest_host_mask & (value ^ vmcs12.cr0_read_shadow) != 0,
        (0, 4) => vmcs12.cr4_guest_host_mask & (value ^ vmcs12.cr4_read_shadow) != 0,
        (0, 3) => {
            if p1 & proc1::CR3_LOAD_EXITING == 0 {
                return false;
            }
            let targets = [
                vmcs12.cr3_target_value0,
                vmcs12.cr3_target_value1,
                vmcs12.cr3_target_value2,
                vmcs12.cr3_target_value3,
            ];
            let n = (vmcs12.cr3_target_count as usize).min(targets.len());
            !targets[..n].contains(&value)
        }
        (0, 8) => p1 & proc1::CR8_LOAD_EXITING != 0,
        (1, 3) => p1 & proc1::CR3_STORE_EXITING != 0,
        (1, 8) => p1 & proc1::CR8_STORE_EXITING != 0,
        // CLTS: exit iff CR0.TS is host-owned and its shadow is 1.
        (2, _) => {
            vmcs12.cr0_guest_host_mask & cr0::TS != 0 && vmcs12.cr0_read_shadow & cr0::TS != 0
        }
        // LMSW (source data in bits 31:16): touches CR0[3:0] but cannot clear PE.
        (3, _) => {
            let src = (qual >> 16) & 0xffff;
            let mask = vmcs12.cr0_guest_host_mask;
            let shadow = vmcs12.cr0_read_shadow;
            mask & 0xe & (src ^ shadow) != 0
                || (mask & cr0::PE != 0 && shadow & cr0::PE == 0 && src & cr0::PE != 0)
        }
        _ => false,
    }
}

/// I/O instructions (SDM 26.1.3, 25.6.4; qualification Table 28-5).
fn io_wanted(qual: u64, vmcs12: &Vmcs12, mem: &impl GuestMemory) -> bool {
    let p1 = vmcs12.cpu_based_vm_exec_control;
    if p1 & proc1::USE_IO_BITMAPS == 0 {
        return p1 & proc1::UNCONDITIONAL_IO_EXITING != 0;
    }
    let size = (qual & 7) + 1;
    let port = (qual >> 16) & 0xffff;
    (port..port + size).any(|p| {
        // An access that wraps past 0xffff always exits.
        p > 0xffff || io_bitmap_bit(p as u16, vmcs12, mem).unwrap_or(true)
    })
}

fn io_bitmap_bit(port: u16, vmcs12: &Vmcs12, mem: &impl GuestMemory) -> Option<bool> {
    let base = if port < 0x8000 { vmcs12.io_bitmap_a } else { vmcs12.io_bitmap_b };
    let byte = mem.read_u8(L1Gpa(base.checked_add(u64::from(port & 0x7fff) / 8)?)).ok()?;
    Some(byte & (1 << (port % 8)) != 0)
}

/// RDMSR/WRMSR (SDM 25.6.9: read bitmap low 0x000, high 0x400, write low 0x800, high 0xc00).
fn msr_wanted(write: bool, msr: u32, vmcs12: &Vmcs12, mem: &impl GuestMemory) -> bool {
    if vmcs12.cpu_based_vm_exec_control & proc1::USE_MSR_BITMAPS == 0 {
        return true;
    }
    let Some(bit) = msr_bitmap_bit(msr, write) else { return true };
    let Some(addr) = vmcs12.msr_bitmap.checked_add(bit / 8) else { return true };
    mem.read_u8(L1Gpa(addr)).map_or(true, |b| b & (1 << (bit % 8)) != 0)
}

/// Bit number of `msr` in a 4-KiB MSR bitmap, or `None` for MSRs outside both ranges
/// (which always exit).
pub const fn msr_bitmap_bit(msr: u32, write: bool) -> Option<u64> {
    let base = if write { 0x800 * 8 } else { 0 };
    match msr {
        0..=0x1fff => Some(base + msr as u64),
        0xc000_0000..=0xc000_1fff => Some(base + 0x400 * 8 + (msr - 0xc000_0000) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::{Regs, VecMemory};

    fn info(reason: u16) -> ExitInfo {
        ExitInfo { reason: reason.into(), ..Default::default() }
    }

    fn vmcs12() -> Vmcs12 {
        Vmcs12::default()
    }

    fn l1(i: &ExitInfo, v: &Vmcs12, regs: &Regs, mem: &VecMemory) -> bool {
        l1_wants_exit(i, v, regs, mem).unwrap()
    }

    #[test]
    fn unknown_reason_is_an_error() {
        let m = VecMemory::new(0);
        let r = Regs::default();
        assert_eq!(
            l0_wants_exit(&info(35), &L0Intercepts::default()),
            Err(RoutingError::UnknownReason(35))
        );
        assert!(l1_wants_exit(&info(200), &vmcs12(), &r, &m).is_err());
    }

    #[test]
    fn l0_takes_interrupts_nmis_and_ept() {
        let l0 = L0Intercepts::default();
        for r in [1u16, 48, 49, 59, 62] {
            assert!(l0_wants_exit(&info(r), &l0).unwrap(), "reason {r}");
        }
        for r in [10u16, 12, 18, 28, 30, 31] {
            assert!(!l0_wants_exit(&info(r), &l0).unwrap(), "reason {r}");
        }
        let mut nmi = info(0);
        nmi.intr_info = intr_info::VALID | intr_info::TYPE_NMI | 2;
        assert!(l0_wants_exit(&nmi, &l0).unwrap());
        let mut ud = info(0);
        ud.intr_info = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 6;
        assert!(!l0_wants_exit(&ud, &l0).unwrap());
        assert!(l0_wants_exit(&ud, &L0Intercepts { exception_bitmap: 1 << 6, ..l0 }).unwrap());
        // Vectors 32 and up are never in the exception bitmap, even when it is all ones.
        let all = L0Intercepts { exception_bitmap: u32::MAX, ..l0 };
        for vec in [31u32, 32, 0xff] {
            let mut e = info(0);
            e.intr_info = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | vec;
            assert_eq!(l0_wants_exit(&e, &all).unwrap(), vec < 32, "vector {vec:#x}");
        }
        assert!(!l0_wants_exit(&info(52), &l0).unwrap());
        assert!(l0_wants_exit(&info(52), &L0Intercepts { preemption_timer: true, ..l0 }).unwrap());
    }

    /// The three outcomes: L0's own exit, L1's exit, and an access neither asked for that
    /// L0 performs for L1 (a port and an MSR L1 passes through, a CR bit only L0 owns).
    #[test]
    fn route_has_three_outcomes() {
        let m = VecMemory::new(0x3000);
        let mut r = Regs::default();
        let l0 = L0Intercepts::default();
        let mut v = vmcs12();
        v.cpu_based_vm_exec_control = proc1::USE_IO_BITMAPS | proc1::USE_MSR_BITMAPS;
        v.io_bitmap_a = 0x1000;
        v.io_bitmap_b = 0x2000;
        v.msr_bitmap = 0;
        let go = |i: &ExitInfo, v: &Vmcs12, r: &Regs| route(i, &l0, v, r, &m).unwrap();
        assert_eq!(go(&info(1), &v, &r), ExitRoute::L0);
        assert_eq!(go(&info(10), &v, &r), ExitRoute::L1);
        let out = ExitInfo { qualification: 0x3f8 << 16, ..info(30) };
        assert_eq!(go(&out, &v, &r), ExitRoute::ForL1, "port passed through to L2");
        r.0[1] = 0x10;
        assert_eq!(go(&info(31), &v, &r), ExitRoute::ForL1, "MSR passed through to L2");
        v.cpu_based_vm_exec_control = proc1::UNCONDITIONAL_IO_EXITING;
        assert_eq!(go(&out, &v, &r), ExitRoute::L1);
        assert_eq!(go(&info(31), &v, &r), ExitRoute::L1, "no MSR bitmaps: every MSR exits");
        // MOV to CR4 changing only a bit L0 owns in vmcs02 (L1's mask clear).
        v.cr4_guest_host_mask = 0;
        let mov_cr4 = ExitInfo { qualification: 4 | 3 << 8, ..info(28) };
        assert_eq!(go(&mov_cr4, &v, &r), ExitRoute::ForL1);
        v.cr4_guest_host_mask = 1 << 13;
        r.0[3] = 0;
        v.cr4_read_shadow = 1 << 13;
        assert_eq!(go(&mov_cr4, &v, &r), ExitRoute::L1, "L1 owns VMXE and it differs");
    }

    #[test]
    fn unconditional_and_control_driven() {
        let m = VecMemory::new(0);
        let r = Regs::default();
        let mut v = vmcs12();
        assert!(l1(&info(10), &v, &r, &m), "CPUID always exits");
        assert!(l1(&info(24), &v, &r, &m), "VMRESUME in L2 exits to L1");
        assert!(!l1(&info(12), &v, &r, &m));
        v.cpu_based_vm_exec_control = proc1::HLT_EXITING;
        assert!(l1(&info(12), &v, &r, &m));
        // Secondary controls only count when activated.
        v.secondary_vm_exec_control = proc2::WBINVD_EXITING;
        assert!(!l1(&info(54), &v, &r, &m));
        v.cpu_based_vm_exec_control |= proc1::ACTIVATE_SECONDARY_CONTROLS;
        assert!(l1(&info(54), &v, &r, &m));
        assert!(!l1(&info(40), &v, &r, &m));
        v.secondary_vm_exec_control |= proc2::PAUSE_LOOP_EXITING;
        assert!(l1(&info(40), &v, &r, &m));
        assert!(!l1(&info(58), &v, &r, &m), "INVPCID needs INVLPG exiting too");
        v.secondary_vm_exec_control |= proc2::ENABLE_INVPCID;
        v.cpu_based_vm_exec_control |= proc1::INVLPG_EXITING;
        assert!(l1(&info(58), &v, &r, &m));
    }

    #[test]
    fn external_interrupts_follow_the_pin_control() {
        let m = VecMemory::new(0);
        let r = Regs::default();
        let mut v = vmcs12();
        v.pin_based_vm_exec_control = pin::NMI_EXITING;
        assert!(!l1(&info(1), &v, &r, &m));
        v.pin_based_vm_exec_control = pin::EXTERNAL_INTERRUPT_EXITING;
        assert!(l1(&info(1), &v, &r, &m));
    }

    /// ENCLS exits iff "ENCLS exiting" and the bitmap bit of EAX's leaf (leaves from 63 up
    /// share bit 63, SDM 25.6.16).
    #[test]
    fn encls_uses_the_leaf_bitmap() {
        let m = VecMemory::new(0);
        let mut r = Regs::default();
        let mut v = vmcs12();
        v.cpu_based_vm_exec_control = proc1::ACTIVATE_SECONDARY_CONTROLS;
        v.encls_exiting_bitmap = 1 << 5;
        r.0[0] = 5;
        assert!(!l1(&info(60), &v, &r, &m), "not enabled");
        v.secondary_vm_exec_control = proc2::ENCLS_EXITING;
        assert!(l1(&info(60), &v, &r, &m));
        r.0[0] = 4;
        assert!(!l1(&info(60), &v, &r, &m));
        r.0[0] = 1 << 40;
        assert!(!l1(&info(60), &v, &r, &m));
        v.encls_exiting_bitmap = 1 << 63;
        assert!(l1(&info(60), &v, &r, &m), "a leaf past 63 uses bit 63");
    }

    /// vmcs12's own preemption timer and UMWAIT/TPAUSE (which need RDTSC exiting too).
    #[test]
    fn preemption_timer_and_user_wait() {
        let m = VecMemory::new(0);
        let r = Regs::default();
        let mut v = vmcs12();
        v.pin_based_vm_exec_control = pin::NMI_EXITING;
        assert!(!l1(&info(52), &v, &r, &m));
        v.pin_based_vm_exec_control = pin::PREEMPTION_TIMER;
        assert!(l1(&info(52), &v, &r, &m));
        v.cpu_based_vm_exec_control = proc1::ACTIVATE_SECONDARY_CONTROLS;
        v.secondary_vm_exec_control = proc2::ENABLE_USER_WAIT_PAUSE;
        for reason in [67u16, 68] {
            assert!(!l1(&info(reason), &v, &r, &m), "{reason}: no RDTSC exiting");
        }
        v.cpu_based_vm_exec_control |= proc1::RDTSC_EXITING;
        for reason in [67u16, 68] {
            assert!(l1(&info(reason), &v, &r, &m), "{reason}");
        }
        v.secondary_vm_exec_control = 0;
        for reason in [67u16, 68] {
            assert!(!l1(&info(reason), &v, &r, &m), "{reason}: not enabled");
        }
    }

    /// XSAVES/XRSTORS exit iff enabled and the XSS-exiting bitmap meets EDX:EAX (SDM 26.1.3;
    /// IA32_XSS is the processor's business: L0 gives vmcs02 the same bitmap).
    #[test]
    fn xsaves_uses_edx_eax_against_the_bitmap() {
        let m = VecMemory::new(0);
        let mut r = Regs::default();
        let mut v = vmcs12();
        v.cpu_based_vm_exec_control = proc1::ACTIVATE_SECONDARY_CONTROLS;
        v.secondary_vm_exec_control = proc2::ENABLE_XSAVES;
        v.xss_exit_bitmap = 1 << 40;
        r.0[2] = 1 << 8; // EDX bit 8 is bit 40 of EDX:EAX
        assert!(l1(&info(63), &v, &r, &m));
        assert!(l1(&info(64), &v, &r, &m));
        r.0[2] = 0;
        r.0[0] = 0xffff_ffff_0000_0000; // only EAX counts of RAX
        assert!(!l1(&info(63), &v, &r, &m));
        v.xss_exit_bitmap = 1;
        assert!(!l1(&info(63), &v, &r, &m), "bit 0 not requested");
        r.0[0] = 1;
        assert!(l1(&info(63), &v, &r, &m));
        v.secondary_vm_exec_control = 0;
        assert!(!l1(&info(63), &v, &r, &m), "not enabled: XSAVES is #UD, no exit");
    }

    #[test]
    fn exceptions_and_page_fault_mask_match() {
        let m = VecMemory::new(0);
        let r = Regs::default();
        let mut v = vmcs12();
        let mut pf = info(0);
        pf.intr_info = intr_info::VALID | intr_info::TYPE_HARD_EXCEPTION | 14 | (1 << 11);
        pf.intr_error_code = 0b10;
        assert!(!l1(&pf, &v, &r, &m), "bit clear, mask 0 == match 0: no exit");
        v.exception_bitmap = 1 << 14;
        assert!(l1(&pf, &v, &r, &m));
        v.page_fault_error_code_mask = 0b10;
        v.page_fault_error_code_match = 0;
        assert!(!l1(&pf, &v, &r, &m), "mismatch inverts bit 14");
        v.exception_bitmap = 0;
        assert!(l1(&pf, &v, &r, &m));
        let mut nmi = info(0);
        nmi.intr_info = intr_info::VALID | intr_info::TYPE_NMI | 2;
        assert!(!l1(&nmi, &v, &r, &m));
        v.pin_based_vm_exec_control = pin::NMI_EXITING;
        assert!(l1(&nmi, &v, &r, &m));
    }

    #[test]
    fn cr_accesses() {
        let m = VecMemory::new(0);
        let mut r = Regs::default();
        let mut v = vmcs12();
        // MOV to CR0 from RBX (reg 3).
        let mov_cr0 = ExitInfo { qualification: 3 << 8, ..info(28) };
        v.cr0_guest_host_mask = 1 << 31;
        v.cr0_read_shadow = 1 << 31;
        r.0[3] = 1 << 31 | 1;
        assert!(!l1(&mov_cr0, &v, &r, &m), "owned bit equals shadow");
        r.0[3] = 1;
        assert!(l1(&mov_cr0, &v, &r, &m));
        // MOV to CR4 from RBX: only an owned bit that differs from its shadow exits.
        let mov_cr4 = ExitInfo { qualification: 4 | 3 << 8, ..info(28) };
        v.cr4_guest_host_mask = 1 << 13;
        v.cr4_read_shadow = 1 << 13;
        r.0[3] = 1 << 13 | 1 << 5;
        assert!(!l1(&mov_cr4, &v, &r, &m), "owned VMXE equals its shadow, PAE is L2's");
        r.0[3] = 1 << 5;
        assert!(l1(&mov_cr4, &v, &r, &m), "owned VMXE cleared");
        // MOV to CR3 with target list.
        let mov_cr3 = ExitInfo { qualification: 3 | 3 << 8, ..info(28) };
        r.0[3] = 0x5000;
        assert!(!l1(&mov_cr3, &v, &r, &m));
        v.cpu_based_vm_exec_control = proc1::CR3_LOAD_EXITING;
        assert!(l1(&mov_cr3, &v, &r, &m));
        v.cr3_target_count = 2;
        v.cr3_target_value1 = 0x5000;
        assert!(!l1(&mov_cr3, &v, &r, &m), "CR3-target hit");
        v.cr3_target_count = 1;
        assert!(l1(&mov_cr3, &v, &r, &m));
        v.cr3_target_count = 99;
        assert!(!l1(&mov_cr3, &v, &r, &m), "count clamps to 4 without panicking");
        // MOV to/from CR8 and from CR3: each only under its own control.
        let from_cr8 = ExitInfo { qualification: 8 | 1 << 4, ..info(28) };
        let to_cr8 = ExitInfo { qualification: 8, ..info(28) };
        let from_cr3 = ExitInfo { qualification: 3 | 1 << 4, ..info(28) };
        assert!(!l1(&from_cr8, &v, &r, &m));
        assert!(!l1(&to_cr8, &v, &r, &m));
        assert!(!l1(&from_cr3, &v, &r, &m), "CR3-load exiting does not make stores exit");
        v.cpu_based_vm_exec_control |= proc1::CR8_STORE_EXITING;
        assert!(l1(&from_cr8, &v, &r, &m));
        assert!(!l1(&to_cr8, &v, &r, &m));
        v.cpu_based_vm_exec_control |= proc1::CR8_LOAD_EXITING;
        assert!(l1(&to_cr8, &v, &r, &m));
        v.cpu_based_vm_exec_control |= proc1::CR3_STORE_EXITING;
        assert!(l1(&from_cr3, &v, &r, &m));
        v.cpu_based_vm_exec_control &= !(proc1::CR8_LOAD_EXITING | proc1::CR3_STORE_EXITING);
        // CLTS, LMSW.
        // CLTS exits only if L1 owns CR0.TS *and* its read shadow is 1 (SDM 26.1.3): each
        // half alone is not enough.
        let clts = ExitInfo { qualification: 2 << 4, ..info(28) };
        assert!(!l1(&clts, &v, &r, &m));
        v.cr0_guest_host_mask |= 8;
        assert!(!l1(&clts, &v, &r, &m), "TS owned, shadow 0: CLTS runs in L2");
        v.cr0_guest_host_mask &= !8;
        v.cr0_read_shadow |= 8;
        assert!(!l1(&clts, &v, &r, &m), "TS not owned: CLTS runs in L2");
        v.cr0_guest_host_mask |= 8;
        assert!(l1(&clts, &v, &r, &m));
        let lmsw = |src: u64| ExitInfo { qualification: 3 << 4 | src << 16, ..info(28) };
        v.cr0_guest_host_mask = 1;
        v.cr0_read_shadow = 1;
        assert!(!l1(&lmsw(0), &v, &r, &m), "LMSW cannot clear PE");
        v.cr0_read_shadow = 0;
        assert!(l1(&lmsw(1), &v, &r, &m), "LMSW setting owned PE");
        assert!(!l1(&lmsw(0), &v, &r, &m), "owned PE stays 0");
        v.cr0_guest_host_mask = 0;
        assert!(!l1(&lmsw(1), &v, &r, &m), "PE is L2's");
        // Owned MP/EM/TS: exit iff the source differs from the shadow in an owned bit; only
        // bits 15:0 of the qualification's source field count.
        v.cr0_guest_host_mask = 8;
        v.cr0_read_shadow = 8;
        assert!(!l1(&lmsw(8), &v, &r, &m));
        assert!(!l1(&lmsw(8 | 2), &v, &r, &m), "MP is L2's");
        assert!(l1(&lmsw(0), &v, &r, &m), "owned TS cleared");
        v.cr0_guest_host_mask = 2;
        v.cr0_read_shadow = 0;
        assert!(!l1(&lmsw(0), &v, &r, &m));
        assert!(l1(&lmsw(2), &v, &r, &m));
    }

    #[test]
    fn io_bitmaps() {
        let mut m = VecMemory::new(0x4000);
        let r = Regs::default();
        let mut v = vmcs12();
        let out =
            |port: u64, size: u64| ExitInfo { qualification: port << 16 | (size - 1), ..info(30) };
        assert!(!l1(&out(0x3f8, 1), &v, &r, &m));
        v.cpu_based_vm_exec_control = proc1::UNCONDITIONAL_IO_EXITING;
        assert!(l1(&out(0x3f8, 1), &v, &r, &m));
        v.cpu_based_vm_exec_control = proc1::USE_IO_BITMAPS;
        v.io_bitmap_a = 0x1000;
        v.io_bitmap_b = 0x2000;
        assert!(!l1(&out(0x3f8, 1), &v, &r, &m));
        m.bytes[0x1000 + 0x3f9 / 8] |= 1 << (0x3f9 % 8);
        assert!(!l1(&out(0x3f8, 1), &v, &r, &m));
        assert!(l1(&out(0x3f8, 2), &v, &r, &m), "second byte of a word access");
        // An access past 0xffff exits even though the bits of 0xfffe, 0xffff and (wrapped)
        // 0 and 1 are all clear (SDM 25.6.4).
        assert!(!l1(&out(0xfffe, 2), &v, &r, &m));
        assert!(!l1(&out(0x0, 2), &v, &r, &m));
        assert!(l1(&out(0xfffe, 4), &v, &r, &m), "wrap-around exits");
        assert!(l1(&out(0xffff, 2), &v, &r, &m), "wrap-around exits");
        m.bytes[0x2000 + 0x7fff / 8] |= 0x80;
        assert!(l1(&out(0xffff, 1), &v, &r, &m));
        v.io_bitmap_b = 0x10_0000;
        assert!(l1(&out(0x8000, 1), &v, &r, &m), "unreadable bitmap exits");
    }

    #[test]
    fn msr_bitmaps() {
        let mut m = VecMemory::new(0x2000);
        let mut r = Regs::default();
        let mut v = vmcs12();
        assert!(l1(&info(31), &v, &r, &m), "no bitmaps: every RDMSR exits");
        v.cpu_based_vm_exec_control = proc1::USE_MSR_BITMAPS;
        v.msr_bitmap = 0x1000;
        r.0[1] = 0xc000_0080; // EFER
        assert!(!l1(&info(31), &v, &r, &m));
        m.bytes[0x1000 + 0xc00 + 0x80 / 8] |= 1; // write-high bit for 0xc0000080
        assert!(!l1(&info(31), &v, &r, &m));
        assert!(l1(&info(32), &v, &r, &m));
        r.0[1] = 0x4000_0000;
        assert!(l1(&info(31), &v, &r, &m), "outside both ranges");
        r.0[1] = 0x10;
        m.bytes[0x1000 + 2] = 1; // read-low bit for 0x10
        assert!(l1(&info(31), &v, &r, &m));
        assert!(!l1(&info(32), &v, &r, &m));
        assert_eq!(msr_bitmap_bit(0x1fff, true), Some(0x800 * 8 + 0x1fff));
    }
}
