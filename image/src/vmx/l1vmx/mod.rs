//! L1's emulated VMX (the Turtles design, on top of the `nested` crate): L1's VMX instructions
//! are emulated with `nested::vmx::NestedVmx`, L2 runs on vmcs02 = vmcs01's host state + L0's
//! must-haves + vmcs12 (`prepare_vmcs02`), each L2 exit is routed to L0 or reflected to L1
//! ([`l2_exit`]), and L2's memory goes through EPT02, the shadow of EPT12 and EPT01 filled on
//! EPT violations.
//!
//! The rooms: [`state`] (what L0 keeps: [`state::L1Vmx`]), [`shadow_vmcs`] (hardware VMCS
//! shadowing kept in step with vmcs12), [`vpid`] (nested VPIDs), [`l1_memory`] (L1's memory
//! and EPT01 as the emulator and shadow EPT see them), [`l2_exit`] (routing and reflecting
//! L2's exits); this file holds the entry points of the run loop: L1's VMX instructions and
//! the entry to L2.
//!
//! L2's general-purpose registers flow through unchanged, as on hardware: a VM exit leaves
//! them in the registers for L1's exit stub, and L1 loads L2's before VMRESUME.

pub mod io02;
pub mod l1_memory;
pub mod l2_exit;
pub mod l2_memory;
pub mod msr_lists;
pub mod shadow_vmcs;
pub mod state;
pub mod vpid;

use nested::addr::Hpa;
use nested::arch::segment_ar;
use nested::caps::{pin, proc1, proc2};
use nested::ept::shadow::eptp02_for;
use nested::exits::routing::secondary_controls;
use nested::exits::{ExitInfo, ExitReason};
use nested::vmcs::shadow::shadowed_for_read;
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::bitmaps::update_msr_passthrough;
use nested::vmx::merge::{L1State, Vmcs02Inputs, prepare_vmcs02, reads_l1_state};
use nested::vmx::sync::{load_l1_host_state, sync_vmcs12_rare};
use nested::vmx::{Exception, Flush, L1Cpu, VmxResult};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx as insn;
use crate::vmx::action::Action;
use crate::vmx::guest::Guest;
use crate::vmx::setup;
use l1_memory::{Frames, L1View};
use state::{FEATURE_CONTROL_VMX, L1Vmx};

/// L1's processor state for the instruction preconditions, from vmcs01's guest state.
/// VMREAD and VMWRITE (L1's most frequent trapped instructions without VMCS shadowing) look
/// only at CPL, RFLAGS, EFER and CS.L: for them CR0, CR4 and the MOV-SS blocking are not
/// read and left zero.
pub(super) fn l1_cpu(v: &HwVmcs, info: &ExitInfo) -> L1Cpu {
    let all = !matches!(info.exit_reason(), Some(ExitReason::Vmread | ExitReason::Vmwrite));
    let read_if = |f| if all { v.read(f) } else { 0 };
    L1Cpu {
        cpl: ((v.read(F::GuestSsArBytes) >> 5) & 3) as u8,
        cr0: read_if(F::Cr0ReadShadow),
        cr4: read_if(F::Cr4ReadShadow),
        efer: v.read(F::GuestIa32Efer),
        rflags: v.read(F::GuestRflags),
        cs_l: v.read(F::GuestCsArBytes) & segment_ar::L != 0,
        mov_ss_blocking: read_if(F::GuestInterruptibilityInfo) & 2 != 0,
        feature_control: FEATURE_CONTROL_VMX,
    }
}

/// What the run loop does after a nested step.
pub enum Step {
    Action(Action),
    /// VMLAUNCH/VMRESUME passed its checks: run L2 on vmcs02 next ([`enter_l2`]).
    EnterL2 {
        launch: bool,
    },
    /// VMLAUNCH/VMRESUME failed after its checks began (an entry failure, exit reason 33 or
    /// 34): L1 is at its host state; [`after_failed_entry`] finishes the exit.
    EntryFailed,
}

/// L1 executed a VMX instruction (L1 runs on vmcs01).
pub fn vmx_instruction(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Step {
    let Some(n) = g.nested.as_mut() else { return Step::Action(Action::raise(Exception::UD)) };
    let write = match info.exit_reason() {
        Some(ExitReason::Vmread) => false,
        Some(ExitReason::Vmwrite) => true,
        _ => return other_instruction(n, &mut g.regs, &mut g.memory, v, info),
    };
    // VMREAD/VMWRITE, L1's most frequent trapped instructions (every one without VMCS
    // shadowing): they change neither the current VMCS nor any translation, and the shadow
    // VMCS needs no copy-back first (they only reach L0 for fields it does not shadow).
    let cpu = l1_cpu(v, info);
    // SAFETY: vmcs01 is current while L1 runs; the view only touches its guest fields.
    let mut vmcs = unsafe { HwVmcs::current() };
    let mut view = L1View { regs: &mut g.regs, mem: &mut g.memory, v: &mut vmcs };
    if n.vmx.rare_stale && n.vmx.needs_rare_sync(info, &cpu, &view) {
        sync_rare(n);
    }
    let result = if write {
        // A VMWRITE that exits although L1 reads the field through the shadow (exit
        // information with "VMWRITE to any field") must reach the shadow too.
        let written = match &n.shadowing {
            Some(_) => n.vmx.accessed_field(info, &cpu, &view),
            None => None,
        };
        let result = n.vmx.vmwrite(info, &cpu, &mut view);
        if let (Some(f), VmxResult::Succeed) = (written, result)
            && let Some(s) = &n.shadowing
            && shadowed_for_read(f, s.vmwrite_any_field())
        {
            s.write(&n.vmx, f, n.vmx.vmcs12.get(f));
            if f.shadow() == nested::vmcs::Shadow::Ro {
                s.pass_exit_information();
            }
        }
        result
    } else {
        n.vmx.vmread(info, &cpu, &mut view)
    };
    finish(n, v, result, &cpu)
}

/// L1's VMX instructions but VMREAD/VMWRITE.
#[inline(always)]
fn other_instruction(
    n: &mut L1Vmx,
    regs: &mut crate::arch::vmx::GuestRegs,
    memory: &mut crate::guest::memory::GuestMemory,
    v: &mut HwVmcs,
    info: &ExitInfo,
) -> Step {
    // L1's VMWRITEs to shadowed fields are only in the shadow VMCS so far.
    if let Some(s) = &n.shadowing {
        s.store_vmcs12(&mut n.vmx);
    }
    let cpu = l1_cpu(v, info);
    let current_before = n.vmx.current;
    // SAFETY: vmcs01 is current while L1 runs; the view only touches its guest fields.
    let mut vmcs = unsafe { HwVmcs::current() };
    let mut view = L1View { regs, mem: memory, v: &mut vmcs };
    if n.vmx.rare_stale && n.vmx.needs_rare_sync(info, &cpu, &view) {
        sync_rare(n);
    }
    let Some((result, flush)) = n.vmx.emulate(info, &cpu, &mut view) else {
        return Step::Action(Action::raise(Exception::UD));
    };
    if let Some(flush) = flush {
        invalidate(n, flush);
    }
    // The shadow holds L1's latest VMWRITEs: copy vmcs12 over it only when it is another
    // VMCS now (VMPTRLD, VMCLEAR of the current one) or L0 wrote exit information; a VMCS
    // made current again from where L0 parked it keeps its shadow. (A VMfailValid's error
    // number reaches the shadow in `finish`, after this.)
    let failed = matches!(result, VmxResult::EntryFailed(_));
    if (failed || n.vmx.current != current_before)
        && let Some(s) = &n.shadowing
    {
        shadow_after_switch(s, &n.vmx, failed);
    }
    if matches!(info.exit_reason(), Some(ExitReason::Vmxon | ExitReason::Vmxoff))
        && let Some(s) = &n.shadowing
    {
        s.set_active(n.vmx.vmxon);
    }
    finish(n, v, result, &cpu)
}

/// The shadow VMCS after L1's current VMCS changed, or L0 wrote exit information into it
/// (`entry_failed`): copied in, or, for the VMCS L0 had parked, the shadow still mirroring it.
#[cold]
#[inline(never)]
fn shadow_after_switch(
    s: &shadow_vmcs::ShadowVmcs,
    vmx: &nested::vmx::NestedVmx,
    entry_failed: bool,
) {
    if !entry_failed && vmx.current.is_some() && vmx.unparked {
        s.switch_to(vmx);
    } else {
        s.load_vmcs12(vmx);
    }
}

/// Applies an emulated VMX instruction's outcome: VMsucceed/VMfail in L1's RFLAGS (the
/// error number of VMfailValid in the shadow VMCS too), an exception, entering L2, or L1 at
/// its host state after a failed VM entry.
#[inline(always)]
fn finish(n: &mut L1Vmx, v: &mut HwVmcs, result: VmxResult, cpu: &L1Cpu) -> Step {
    if let VmxResult::FailValid(e) = result {
        explain_failure(n, e);
        if let Some(s) = &n.shadowing {
            s.write(&n.vmx, F::VmInstructionError, u64::from(e.number()));
        }
    }
    match result {
        VmxResult::Succeed | VmxResult::FailValid(_) | VmxResult::FailInvalid => {
            set_vmx_flags(v, result, cpu);
            Step::Action(Action::Skip)
        }
        VmxResult::Fault(e) => Step::Action(Action::raise(e)),
        VmxResult::EnterL2 { launch } => Step::EnterL2 { launch },
        VmxResult::EntryFailed(_) => {
            // vmcs12 holds the entry-failure exit; L1 continues at its host RIP.
            let efer = v.read(F::GuestIa32Efer);
            load_l1_host_state(&n.vmx.vmcs12, v, &n.l0.hw, efer);
            Step::EntryFailed
        }
    }
}

/// VMsucceed, VMfailInvalid or VMfailValid in the RFLAGS of the level whose VMCS is `v`
/// (L1's, or L2's for a VMREAD/VMWRITE L0 performs on a shadow VMCS), as read for `cpu`
/// (the emulation does not change it); usually VMsucceed finds the flags clear already.
#[inline(always)]
pub(super) fn set_vmx_flags(v: &mut HwVmcs, result: VmxResult, cpu: &L1Cpu) {
    let rflags = result.apply_rflags(cpu.rflags);
    if rflags != cpu.rflags {
        v.write(F::GuestRflags, rflags);
    }
}

/// Logs which SDM check refused L1's VM entry (VMfailValid 7 or 8), rate-limited.
fn explain_failure(n: &L1Vmx, e: nested::vmx::VmInstructionError) {
    static FAILURES: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(16);
    if !FAILURES.allow() {
        return;
    }
    let v12 = &n.vmx.vmcs12;
    let check = match e.number() {
        // The one error-7 check that reads L1 memory is the TPR threshold against VTPR.
        7 => nested::vmx::checks::check_controls(v12, &n.vmx.caps, n.vmx.maxphyaddr)
            .err()
            .or(Some(nested::vmx::checks::Check::TprThresholdAboveVtpr)),
        8 => nested::vmx::checks::check_host_state(v12, &n.vmx.caps, n.vmx.maxphyaddr, true).err(),
        _ => None,
    };
    match check {
        Some(c) => log::warn!(
            "L1 VM instruction failed: {e:?} (error {}): check {c:?} (SDM {})",
            e.number(),
            c.section()
        ),
        None => log::warn!("L1 VM instruction failed: {e:?} (error {})", e.number()),
    }
}

/// L1's TSC was written while L2 runs (L2's WRMSR L1 does not intercept, or vmcs12's
/// VM-entry MSR-load list), `offset` from the processor's now: vmcs01 gets it (L1 reads it
/// back at once after L2's next exit) and vmcs02 (current) too, plus vmcs12's own offset;
/// the next merge keeps it there.
#[cold]
pub fn l1_tsc_written_in_l2(n: &mut L1Vmx, v02: &mut HwVmcs, offset: u64) {
    // SAFETY: vmcs01 and vmcs02 are our own VMCS regions; vmcs02 is made current again.
    unsafe {
        if insn::vmptrld(n.vmcs01).is_ok() {
            HwVmcs::current().write(F::TscOffset, offset);
        }
        let _ = insn::vmptrld(n.vmcs02);
    }
    v02.write(F::TscOffset, nested::vmx::tsc::vmcs02_offset(&n.vmx.vmcs12, offset));
    n.vmx.l1_tsc_changed();
}

/// The end of a VM entry that failed after L1's host state was loaded into vmcs01 (current):
/// the VM-exit MSR-load list, as at a VM exit (SDM 26.8); L1 resumes at its host RIP.
pub fn after_failed_entry(g: &mut Guest, v01: &mut HwVmcs) -> Action {
    match msr_lists::exit_load(g, v01) {
        Ok(()) => Action::Resume,
        Err(abort) => abort,
    }
}

/// Switches to vmcs02, merges vmcs12 into it and performs the VM-entry MSR-load list
/// (`launch`: the entry is a VMLAUNCH). The run loop then enters whichever level is current:
/// L2, or L1 at its host state on vmcs01 when the MSR-load list failed (SDM 26.8).
pub fn enter_l2(g: &mut Guest, v01: &mut HwVmcs, launch: bool) -> Result<(), &'static str> {
    let shift = g.irq.shift;
    let Some(n) = g.nested.as_mut() else { return Err("no nested state") };
    // L1's state is read only when the merge uses it (the common VMRESUME does not); a
    // fresh vmcs02 gets every field.
    let l1 = if !n.vmcs02_ready || reads_l1_state(&n.vmx.dirty) {
        L1State {
            efer: v01.read(F::GuestIa32Efer),
            pat: v01.read(F::GuestIa32Pat),
            dr7: v01.read(F::GuestDr7),
            debugctl: v01.read(F::GuestIa32Debugctl),
            tsc_offset: g.tsc_offset,
        }
    } else {
        L1State { tsc_offset: g.tsc_offset, ..L1State::default() }
    };
    let v12 = &n.vmx.vmcs12;
    let eptp = if secondary_controls(v12) & proc2::ENABLE_EPT != 0 {
        let root =
            n.shadow.root_for(v12.ept_pointer, &mut Frames).map_err(|_| "no frames for EPT02")?;
        let eptp02 = eptp02_for(root, v12.ept_pointer);
        // EPT12 flags L1 cleared since L2 last ran take effect now (ShadowEpt::recheck).
        if n.shadow.recheck(v12.ept_pointer, &g.memory, &mut Frames) {
            // SAFETY: in VMX root operation with INVEPT supported (EPT is in use).
            let _ = unsafe { insn::invept(2, 0) };
        }
        eptp02
    } else {
        n.eptp01
    };
    let virtual_apic = if v12.cpu_based_vm_exec_control & proc1::USE_TPR_SHADOW != 0 {
        Some(l1_page("virtual-APIC page", v12.virtual_apic_page_addr, &g.memory)?)
    } else {
        None
    };
    let apic_access = if secondary_controls(v12) & proc2::VIRTUALIZE_APIC_ACCESSES != 0 {
        Some(l1_page("APIC-access page", v12.apic_access_addr, &g.memory)?)
    } else {
        None
    };
    // SAFETY: vmcs02 is our own VMCS region with the right revision.
    unsafe { insn::vmptrld(n.vmcs02) }.map_err(|_| "VMPTRLD vmcs02 failed")?;
    // SAFETY: vmcs02 is now current.
    let mut v02 = unsafe { HwVmcs::current() };
    if !n.vmcs02_ready {
        setup::host_state(&mut v02);
        v02.write(F::VmcsLinkPointer, u64::MAX);
        n.vmcs02_ready = true;
        n.vmx.dirty = nested::vmcs::DirtySet::all();
    }
    let vpid02 = n.vpids.l2_vpid(&n.vmx.vmcs12);
    // L1 may change its bitmap between entries: while it uses one, follow it at every entry.
    // Without one (or after switching it off, once) every MSR exits and nothing is read.
    let l1_bitmap = n.vmx.vmcs12.cpu_based_vm_exec_control & proc1::USE_MSR_BITMAPS != 0;
    if l1_bitmap || n.msr_bitmap02_follows_l1 {
        // SAFETY: msr_bitmap02 is our own 4-KiB frame; nothing else references it now.
        let bitmap = unsafe { &mut *(n.msr_bitmap02 as *mut [u8; 4096]) };
        update_msr_passthrough(crate::vmx::exits::L2_PASSTHROUGH, &n.vmx.vmcs12, &g.memory, bitmap);
        n.msr_bitmap02_follows_l1 = l1_bitmap;
    }
    // Every port is a device L0 models: I/O exits unconditionally (the L0-or-L1 merge of
    // I/O bitmaps would be all ones); ports L1 passes through are performed for it. With an
    // assigned device L0 passes its ports through: vmcs02 gets L0's bitmaps OR L1's.
    let msr_bitmap = Some(Hpa(n.msr_bitmap02));
    let io_bitmaps = n.io02.as_mut().map(|io| io.for_entry(&n.vmx.vmcs12, &g.memory));
    let inputs = Vmcs02Inputs {
        eptp02: eptp,
        vpid02,
        msr_bitmap,
        io_bitmaps,
        virtual_apic,
        apic_access,
        l1,
    };
    prepare_vmcs02(&mut v02, &n.vmx.vmcs12, &n.vmx.dirty, &n.l0, &inputs);
    if vpid02 != n.vpids.vpid02 {
        v02.write(F::VirtualProcessorId, u64::from(vpid02));
        n.vpids.vpid02 = vpid02;
    }
    // The merge writes the EPTP only with the controls; an EPT02 rebuilt since (L1's INVEPT
    // dropped it) has a new root.
    if eptp != n.eptp02 {
        v02.write(F::EptPointer, eptp);
        n.eptp02 = eptp;
    }
    n.vmx.dirty.clear();
    // L1's own VMX-preemption timer starts counting at this VM entry (SDM 26.7.4).
    let v12 = &n.vmx.vmcs12;
    n.deadline12 = None;
    if v12.pin_based_vm_exec_control & pin::PREEMPTION_TIMER != 0
        && n.l0.pin & pin::PREEMPTION_TIMER == 0
    {
        let value = v12.vmx_preemption_timer_value;
        n.deadline12 = Some(cpu::rdtsc().wrapping_add(u64::from(value) << shift));
        // vmcs02 may hold what the timer had left at the last exit (it saves it).
        v02.write(F::VmxPreemptionTimerValue, u64::from(value));
    }
    n.in_l2 = true;
    match msr_lists::entry_load(g, &mut v02) {
        Ok(()) => Ok(()),
        Err(entry) => msr_load_failed(g, entry, launch),
    }
}

/// vmcs02's virtual-APIC page for vmcs12's TPR shadow, or its APIC-access page (`what`):
/// L1's own page at `addr` (its host address through EPT01). So the processor reads and
/// writes VTPR where L1 reads it, with no copying, and L2's accesses through EPT02 to the
/// page EPT12 maps to the APIC-access page are APIC accesses, as on hardware.
///
/// A page that is not L1 RAM (a device page L0 models, an assigned device's BAR, a hole)
/// stops L1, as other entries L0 cannot build do. On hardware the processor would simply
/// use that physical address (a hole reading all ones, writes dropped); emulating that
/// would need L0 to intercept L2's CR8 and the page's accesses and perform SDM 29.3-29.4
/// itself. A hypervisor puts these pages in RAM (the SDM asks for write-back memory), so
/// this is left as a known gap (README).
#[cold]
fn l1_page(
    what: &str,
    addr: u64,
    memory: &crate::guest::memory::GuestMemory,
) -> Result<Hpa, &'static str> {
    match l1_memory::ram_page(memory, nested::addr::L1Gpa(addr)) {
        Some(page) => Ok(page),
        None => {
            log::error!("vmcs12's {what} {addr:#x} is not L1 RAM: not emulated");
            Err("virtual-APIC or APIC-access page outside L1 RAM")
        }
    }
}

/// The VM-entry MSR-load list failed at `entry` (1-based), the last step of the entry: the
/// entry fails with exit reason 34 (SDM 26.4, 26.8). L2's state loaded so far is dropped,
/// except the MSRs of the entries before `entry` that L2 shares with L1; a VMLAUNCH leaves
/// vmcs12 clear. L1 continues at its host state, vmcs01 current.
fn msr_load_failed(g: &mut Guest, entry: u32, launch: bool) -> Result<(), &'static str> {
    let Some(n) = g.nested.as_mut() else { return Err("no nested state") };
    n.vmx.msr_load_failed(entry, launch);
    n.in_l2 = false;
    n.deadline12 = None;
    // SAFETY: vmcs01 is our own VMCS region.
    unsafe { insn::vmptrld(n.vmcs01) }.map_err(|_| "VMPTRLD vmcs01 failed")?;
    // SAFETY: vmcs01 is now current.
    let mut v01 = unsafe { HwVmcs::current() };
    let efer = v01.read(F::GuestIa32Efer);
    load_l1_host_state(&n.vmx.vmcs12, &mut v01, &n.l0.hw, efer);
    if let Some(s) = &n.shadowing {
        s.load_vmcs12(&n.vmx);
    }
    match after_failed_entry(g, &mut v01) {
        Action::Resume => Ok(()),
        _ => Err("VMX abort"),
    }
}

/// Carries out L1's INVEPT/INVVPID on what L0 built from L1's structures.
fn invalidate(n: &mut L1Vmx, flush: Flush) {
    match flush {
        // EPT02 tables are dropped (rebuilt on demand) and their cached translations
        // flushed: freed tables may come back as another EPT02's.
        Flush::EptSingle { eptp } => {
            n.shadow.invalidate(eptp, &mut Frames);
            // SAFETY: in VMX root operation with INVEPT supported (EPT is in use).
            let _ = unsafe { insn::invept(2, 0) };
        }
        Flush::EptAll => {
            n.shadow.invalidate_all(&mut Frames);
            // SAFETY: as above.
            let _ = unsafe { insn::invept(2, 0) };
        }
        // Individual-address and retaining-globals invalidations may flush more than
        // asked (SDM 29.4.3.3): L0 flushes the whole vpid02.
        Flush::VpidAddress { vpid12, .. }
        | Flush::VpidSingle { vpid12 }
        | Flush::VpidSingleRetainingGlobals { vpid12 } => n.vpids.invalidate(vpid12),
        Flush::VpidAll => n.vpids.invalidate_all(),
    }
}

/// Brings vmcs12's rare guest fields from vmcs02 (they stay there after a reflected exit
/// until L1 or L0 needs them: `NestedVmx::needs_rare_sync`). vmcs01 stays current.
fn sync_rare(n: &mut L1Vmx) {
    // SAFETY: vmcs02 and vmcs01 are our own VMCS regions; vmcs01 is made current again.
    unsafe {
        match insn::vmptrld(n.vmcs02) {
            Ok(()) => sync_vmcs12_rare(&HwVmcs::current(), &mut n.vmx.vmcs12),
            Err(e) => log::error!("VMPTRLD of vmcs02 failed: {e}"),
        }
        let _ = insn::vmptrld(n.vmcs01);
    }
    n.vmx.rare_stale = false;
}
