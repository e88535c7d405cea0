//! An exit L2 caused (SDM Vol. 3C 25.2, 27; the Turtles paper's exit multiplexing): routed by
//! `nested::exits::route` to L0 alone (EPT02 fills, interrupts L0 owns, VMFUNC), reflected to
//! L1 (`sync_vmcs12` into vmcs12, then L1 resumes on vmcs01 at vmcs12's host state), or, when
//! neither level asked for it, performed by L0 as L1 would have (its devices, its MSRs, L2's
//! CRs as vmcs12 has them; [`for_l1`]). L1's own interrupt arriving while L2 runs becomes a
//! reflected exit too ([`interrupt_exit`]).

use nested::caps::{proc1, proc2};
use nested::ept::l2_mmio::l2_mmio_target;
use nested::ept::shadow::{Resolution, eptp02_for};
use nested::exits::routing::secondary_controls;
use nested::exits::{
    ExitInfo, ExitReason, ExitRoute, L0Intercepts, intr_info, l1_wants_exit, route,
};
use nested::guest::{Gpr, GuestRegs as L1Regs};
use nested::vmcs::Vmcs;
use nested::vmcs::VmcsField as F;
use nested::vmx::for_l1::{ForL1, cr_access, exception_exit};
use nested::vmx::sync::{SyncScope, load_l1_host_state, reinject_idt_vectoring, sync_vmcs12};
use nested::vmx::{Exception, VmfuncOutcome, VmxResult};

use super::l1_memory::{Ept01View, Frames, L1View};
use super::vpid::{VPID_L2_UNTAGGED, flush_vpid};
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::{self as insn, GuestRegs};
use crate::vmx::action::{Action, GuestEnd, skip_instruction};
use crate::vmx::guest::Guest;
use crate::vmx::setup;

/// Handles an exit L2 caused: L0's own business, or reflected to L1.
pub fn l2_exit(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    let Some(n) = g.nested.as_mut() else {
        return Action::Stop(GuestEnd::Failed("no nested state"));
    };
    n.l2_exits += 1;
    let timer = info.basic() == ExitReason::PreemptionTimer.number();
    if !timer {
        g.watchdog.other_exit();
    }
    let intercepts = L0Intercepts { exception_bitmap: 0, preemption_timer: n.timer02 };
    let view = RegsOnly(&g.regs, v02);
    let decision = route(info, &intercepts, &n.vmx.vmcs12, &view, &g.memory);
    let action = match decision {
        Ok(ExitRoute::L1) => return reflect(g, v02, info),
        Ok(ExitRoute::L0) => l0_handles(g, v02, info),
        Ok(ExitRoute::ForL1) => for_l1(g, v02, info),
        Err(_) => {
            log::error!("L2 exit {:#x} cannot be routed: stopping the guest", info.reason);
            return Action::Stop(GuestEnd::Failed("unroutable L2 exit"));
        }
    };
    match action {
        Action::Inject(f) => raise_in_l2(g, v02, info, f.exception()),
        Action::Skip if monitor_trap12(g) => {
            skip_instruction(v02, info);
            pending_mtf(v02);
            Action::Resume
        }
        action => action,
    }
}

/// vmcs12 runs L2 with the monitor trap flag.
fn monitor_trap12(g: &Guest) -> bool {
    g.nested
        .as_ref()
        .is_some_and(|n| n.vmx.vmcs12.cpu_based_vm_exec_control & proc1::MONITOR_TRAP_FLAG != 0)
}

/// After L0 performed L2's access to a device page of L1's: `Resume` means the instruction
/// retired, so vmcs12's monitor trap flag exits after it.
fn device_access_done(g: &Guest, v02: &mut HwVmcs, action: Action) -> Action {
    if matches!(action, Action::Resume) && monitor_trap12(g) {
        pending_mtf(v02);
    }
    action
}

/// L0 completed an instruction of L2's under vmcs12's monitor trap flag: the MTF VM exit the
/// processor takes on the boundary after it (SDM 25.5.2) is made pending by the entry
/// (interruption type 7, vector 0, SDM 26.6.2), so the hardware exits at once and the exit
/// goes to L1 (vmcs02 has the control from vmcs12), with a single-step trap left pending
/// saved alongside, as on the processor.
#[cold]
fn pending_mtf(v02: &mut HwVmcs) {
    if v02.read(F::VmEntryInterruptionInfo) & u64::from(intr_info::VALID) == 0 {
        let mtf = intr_info::VALID | intr_info::TYPE_OTHER_EVENT;
        v02.write(F::VmEntryInterruptionInfo, u64::from(mtf));
    }
}

/// An exception L2's instruction raises while L0 performs it for L1 (a refused WRMSR, a CR
/// write the processor faults, a #PF in string I/O): on hardware it arises in L2, so when
/// vmcs12's exception bitmap intercepts it (with the #PF error-code mask and match) it is a
/// VM exit to L1 (`nested::vmx::for_l1::exception_exit`; CR2 unchanged), otherwise it is
/// delivered to L2. An event L0 injects with VM entry would bypass vmcs02's bitmap.
#[cold]
#[inline(never)]
fn raise_in_l2(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo, e: Exception) -> Action {
    let Some(n) = g.nested.as_ref() else { return Action::raise(e) };
    let exit = exception_exit(&e, info.instruction_len);
    match l1_wants_exit(&exit, &n.vmx.vmcs12, &RegsOnly(&g.regs, v02), &g.memory) {
        Ok(true) => reflect(g, v02, &exit),
        _ => Action::raise(e),
    }
}

/// Exits L0 handles for L2 without L1: EPT02 fills, interrupts L0 owns.
fn l0_handles(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    let Some(n) = g.nested.as_mut() else { return Action::Resume };
    match info.exit_reason() {
        // Without EPT in vmcs12, vmcs02 runs on EPT01: L2's physical addresses are L1's, and
        // a violation is an access to L1's device pages (or outside its memory), handled as
        // L1's own.
        Some(ExitReason::EptViolation)
            if secondary_controls(&n.vmx.vmcs12) & proc2::ENABLE_EPT == 0 =>
        {
            let action = crate::vmx::exits::handle(g, v02, info);
            device_access_done(g, v02, action)
        }
        Some(ExitReason::EptViolation) => {
            let eptp12 = n.vmx.vmcs12.ept_pointer;
            let ept01 = Ept01View::of(&g.memory, g.devices.assigned_mmio());
            let maxphyaddr = n.vmx.maxphyaddr;
            match n.fill_ept02(info, &mut g.memory, &ept01) {
                Ok(Resolution::Fixed) => {
                    // The fault may have interrupted an event delivery (e.g. L1's injected
                    // interrupt meeting an unfilled IDT page): deliver it again (SDM 28.2.4).
                    reinject_idt_vectoring(v02, info);
                    Action::Resume
                }
                Ok(Resolution::ReflectViolation { qualification }) => {
                    let mut e = *info;
                    e.qualification = qualification;
                    reflect(g, v02, &e)
                }
                Ok(Resolution::PmlFull) => {
                    // Exit qualification: only NMI unblocking due to IRET (SDM 28.2.1).
                    let mut e = *info;
                    e.reason = u32::from(ExitReason::PmlFull.number());
                    e.qualification = info.qualification & (1 << 12);
                    reflect(g, v02, &e)
                }
                Ok(Resolution::ReflectMisconfig) => {
                    let mut e = *info;
                    e.reason = u32::from(ExitReason::EptMisconfig.number());
                    e.qualification = 0;
                    reflect(g, v02, &e)
                }
                Ok(r @ (Resolution::L1Unmapped(gpa) | Resolution::L0Denied(gpa))) => {
                    // EPT12 maps L2 to a device L0 models for L1 (its local APIC, the I/O
                    // APIC): the access reaches that device, as on hardware; a data access
                    // where L1 has neither RAM nor a device reads all ones or is dropped.
                    if l2_mmio_target(info.guest_physical_address, Some(&r)).is_some() {
                        let caps = n.vmx.caps;
                        if let Some(action) = crate::vmx::exits::l2_device(
                            g, v02, gpa.0, eptp12, &caps, maxphyaddr, info,
                        ) {
                            return device_access_done(g, v02, action);
                        }
                    }
                    // An instruction that starts where L1 has neither RAM nor a device:
                    // #UD in L2, as L1's own (the bytes are all ones).
                    if matches!(r, Resolution::L1Unmapped(_))
                        && let Some(action) = crate::vmx::exits::unbacked_fetch(g, v02, gpa.0, info)
                    {
                        return action;
                    }
                    // One that ran into such a page from RAM (not emulated): nothing is
                    // mapped and L1 gets the EPT violation for its guest.
                    static OUTSIDE: crate::ratelimit::RateLimit =
                        crate::ratelimit::RateLimit::new(8);
                    if OUTSIDE.allow() {
                        log::warn!(
                            "EPT12 maps L2 guest-physical {:#x} to L1-physical {:#x}, outside \
                             L1's memory: reflecting an EPT violation to L1",
                            info.guest_physical_address,
                            gpa.0
                        );
                    }
                    reflect(g, v02, info)
                }
                Err(e) => {
                    log::error!("EPT02 for L2: {e:?}: stopping the guest");
                    Action::Stop(GuestEnd::Failed("EPT02 cannot be built"))
                }
            }
        }
        Some(ExitReason::ExternalInterrupt) => {
            reinject_idt_vectoring(v02, info);
            // The assigned function's INTx is L1's (L1 routes it on to L2 or not).
            crate::vmx::intx::host_interrupt(g, info.intr_info as u8);
            Action::Resume
        }
        // L0's timer for L1's next interrupt deadline: the watchdog counts it as quiet time
        // unless L2 exits or takes an interrupt meanwhile (L2 spinning with interrupts off).
        Some(ExitReason::PreemptionTimer) => {
            reinject_idt_vectoring(v02, info);
            g.watchdog.deadline(crate::arch::cpu::rdtsc())
        }
        // EPTP switching, which L1 is offered and L0 emulates (vmcs02's VM-function
        // controls are 0, so every VMFUNC exits here).
        Some(ExitReason::Vmfunc) => match n.vmx.vmfunc(&RegsOnly(&g.regs, v02), &g.memory) {
            VmfuncOutcome::Switched { eptp } => match n.shadow.root_for(eptp, &mut Frames) {
                Ok(root) => {
                    v02.write(F::EptPointer, eptp02_for(root, eptp));
                    Action::Skip
                }
                Err(_) => Action::Stop(GuestEnd::Failed("EPT02 cannot be built")),
            },
            VmfuncOutcome::Reflect => reflect(g, v02, info),
        },
        _ => reflect(g, v02, info),
    }
}

/// I/O exit qualification bit 4: string instruction (SDM Table 28-5).
const IO_STRING: u64 = 1 << 4;

/// An exit neither level asked for (vmcs02 intercepts more than vmcs12 does): L0 performs
/// the access as if L1 had executed it and resumes L2. Port I/O goes to L1's devices and
/// RDMSR/WRMSR to L1's MSR view through the same handlers as L1's own exits (vmcs02 is
/// current, so the MSRs the VMCS holds are L2's, as on a processor running vmcs12); CR
/// accesses change L2's state as vmcs12 describes it (`nested::vmx::for_l1`).
fn for_l1(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    match info.exit_reason() {
        // String I/O through L2's memory as EPT12 maps it (without EPT12 L2's physical
        // memory is L1's, and the I/O handler does it as for L1).
        Some(ExitReason::IoInstruction)
            if info.qualification & IO_STRING != 0
                && g.nested.as_ref().is_some_and(|n| {
                    secondary_controls(&n.vmx.vmcs12) & proc2::ENABLE_EPT != 0
                }) =>
        {
            super::l2_memory::string_io(g, v02, info, reflect)
        }
        Some(ExitReason::IoInstruction | ExitReason::Rdmsr | ExitReason::Wrmsr) => {
            crate::vmx::exits::handle(g, v02, info)
        }
        // MOV to/from CR8 without a TPR shadow in vmcs12 reaches the TPR of L1's local APIC,
        // as L1's own CR8 does. (With one, vmcs02 has it too and no CR8 exiting of L0's:
        // the processor performs L2's CR8 on VTPR in L1's page, `merge::tpr_shadow_proc1`.)
        Some(ExitReason::CrAccess) if info.qualification & 0xf == 8 => {
            crate::vmx::exits::handle(g, v02, info)
        }
        // VMREAD/VMWRITE under vmcs12's VMCS shadowing on a field its bitmaps let through:
        // on L1's shadow VMCS, as the processor would (`nested::vmx::shadow12`).
        Some(ExitReason::Vmread | ExitReason::Vmwrite) => {
            // vmcs02 is current: this is L2's processor state.
            let cpu = super::l1_cpu(v02, info);
            match super::l2_memory::shadow_vmcs_access(g, v02, info, &cpu) {
                Ok(Some(VmxResult::Fault(e))) => Action::raise(e),
                Ok(Some(result)) => {
                    // VMfailValid's error is in vmcs12; L1 reads it through L0's shadow. A
                    // VMWRITE to a parked shadow VMCS changed L0's copy of it.
                    if let Some(n) = g.nested.as_ref()
                        && let Some(s) = &n.shadowing
                    {
                        match result {
                            VmxResult::FailValid(e) => {
                                s.write_error_in_l2(n.vmcs02, u64::from(e.number()))
                            }
                            VmxResult::Succeed
                                if matches!(info.exit_reason(), Some(ExitReason::Vmwrite)) =>
                            {
                                s.forget(n.vmx.vmcs12.vmcs_link_pointer)
                            }
                            _ => {}
                        }
                    }
                    super::set_vmx_flags(v02, result, &cpu);
                    Action::Skip
                }
                Ok(None) => reflect(g, v02, info),
                Err(exit) => reflect(g, v02, &exit),
            }
        }
        // L0's own interrupt window for an interrupt L2 could not take yet (vmcs12 does not
        // ask for one, or the exit would be L1's): the window is open, the next entry
        // delivers it (`interrupts::before_l2_entry`).
        Some(ExitReason::InterruptWindow) => {
            crate::vmx::interrupts::set_primary(v02, proc1::INTERRUPT_WINDOW_EXITING, false);
            Action::Resume
        }
        Some(ExitReason::CrAccess) => {
            let Some(n) = g.nested.as_mut() else { return Action::Resume };
            // SAFETY: vmcs02 is current; this second handle only reads and writes L2's RSP
            // for a CR access that names it.
            let mut rsp = unsafe { HwVmcs::current() };
            let mut regs = L1View { regs: &mut g.regs, mem: &mut g.memory, v: &mut rsp };
            let caps = n.vmx.caps;
            match cr_access(info.qualification, &mut n.vmx.vmcs12, v02, &mut regs, &n.l0.hw, &caps)
            {
                ForL1::Done => Action::Skip,
                ForL1::Fault(e) => Action::raise(e),
                ForL1::NotEmulated => reflect(g, v02, info),
            }
        }
        _ => {
            static OTHER: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(8);
            if OTHER.allow() {
                log::warn!("L2 exit {:#x} wanted by neither level: reflecting it", info.reason);
            }
            reflect(g, v02, info)
        }
    }
}

/// Reflects `info` to L1: vmcs12 gets the exit, L1 resumes on vmcs01 at its host RIP (after
/// vmcs12's VM-exit MSR-store and MSR-load lists, when it has them).
fn reflect(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    if let Err(abort) = super::msr_lists::exit_store(g, v02) {
        return abort;
    }
    let Some(n) = g.nested.as_mut() else { return Action::Resume };
    n.reflected += 1;
    if let Some(deadline) = n.deadline12.take()
        && n.timer02
    {
        // vmcs02's timer ran for L0: what L1's timer has left is what the exit saves.
        let left = deadline.saturating_sub(crate::arch::cpu::rdtsc()) >> g.irq.shift;
        v02.write(F::VmxPreemptionTimerValue, left.min(u64::from(u32::MAX)));
    }
    // Hot fields only: the rare ones stay in vmcs02 until something needs them.
    sync_vmcs12(&*v02, &mut n.vmx.vmcs12, info, SyncScope::Hot);
    n.vmx.rare_stale = true;
    // SAFETY: vmcs01 is our own VMCS region.
    if unsafe { insn::vmptrld(n.vmcs01) }.is_err() {
        return Action::Stop(GuestEnd::Failed("VMPTRLD vmcs01 failed"));
    }
    n.in_l2 = false;
    if n.vpids.vpid02 == VPID_L2_UNTAGGED {
        // vmcs12 runs L2 without VPIDs: in L1's view the exit flushes its own mappings too.
        flush_vpid(setup::GUEST_VPID);
    }
    // SAFETY: vmcs01 is now current.
    let mut v01 = unsafe { HwVmcs::current() };
    let efer = v01.read(F::GuestIa32Efer);
    load_l1_host_state(&n.vmx.vmcs12, &mut v01, &n.l0.hw, efer);
    if let Some(s) = &n.shadowing {
        s.load_reflected(&n.vmx);
    }
    match super::msr_lists::exit_load(g, &mut v01) {
        Ok(()) => Action::Resume,
        Err(abort) => abort,
    }
}

/// L1's interrupt arrived while L2 ran and vmcs12 has "external-interrupt exiting": a VM exit
/// to L1 with reason 1 and `intr_info` (the vector when vmcs12 acknowledges interrupts on
/// exit, else 0; SDM 27.2.2). vmcs01 is current afterwards.
pub fn interrupt_exit(g: &mut Guest, v02: &mut HwVmcs, intr_info: u32) -> Action {
    signal_exit(g, v02, ExitReason::ExternalInterrupt, intr_info)
}

/// A signal for L1 that arrived while L2 ran and exits to L1 (SDM 26.2): INIT (reason 3,
/// always), or an NMI under "NMI exiting" (reason 0 with `intr_info`). vmcs01 is current
/// afterwards.
pub fn signal_exit(g: &mut Guest, v02: &mut HwVmcs, reason: ExitReason, intr_info: u32) -> Action {
    if let Some(n) = g.nested.as_mut() {
        n.l2_exits += 1;
        n.exit_tsc = crate::arch::cpu::rdtsc();
    }
    g.watchdog.other_exit();
    let info = ExitInfo { reason: u32::from(reason.number()), intr_info, ..ExitInfo::default() };
    reflect(g, v02, &info)
}

/// L2's registers for exit routing (which reads RCX for MSR exits, the GPR of a CR access,
/// and the encoding register of VMREAD/VMWRITE, RSP included: from vmcs02).
struct RegsOnly<'a>(&'a GuestRegs, &'a HwVmcs);

impl L1Regs for RegsOnly<'_> {
    fn gpr(&self, r: Gpr) -> u64 {
        self.0.get(r).unwrap_or_else(|| self.1.read(F::GuestRsp))
    }

    fn set_gpr(&mut self, _: Gpr, _: u64) {}
}
