//! Nested VMX in L0 (the Turtles design): L1's VMX instructions are emulated with
//! `nested::vmx::NestedVmx`, L2 runs on vmcs02 = vmcs01's host state + L0's must-haves +
//! vmcs12 (`prepare_vmcs02`), each L2 exit is routed (`nested::exits::route`) to L0 or
//! reflected to L1 (`sync_vmcs12`, then L1 resumes at vmcs12's host RIP on vmcs01), and L2's
//! memory goes through EPT02, the shadow of EPT12 and EPT01 filled on EPT violations.
//!
//! L2's general-purpose registers flow through unchanged, as on hardware: a VM exit leaves
//! them in the registers for L1's exit stub, and L1 loads L2's before VMRESUME.

use nested::addr::{Hpa, L1Gpa};
use nested::caps::{VmxCaps, entry, ept_vpid, exit, pin, proc1, proc2};
use nested::ept::shadow::{
    Ept01, Ept01Leaf, HostFrames, PmlLog, Resolution, ShadowEpt, VpidMap, eptp02_for,
};
use nested::ept::walk::PageSize;
use nested::exits::routing::secondary_controls;
use nested::exits::{ExitInfo, ExitReason, ExitRoute, L0Intercepts, route};
use nested::guest::{Gpr, GuestMemory as L1Memory, GuestRegs as L1Regs, MemError};
use nested::vmcs::shadow::{
    SHADOW_BITMAP_SIZE, copy_shadow_to_vmcs12, copy_vmcs12_to_shadow, shadow_bitmaps,
    shadowed_for_read,
};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::bitmaps::update_msr_passthrough;
use nested::vmx::merge::{L0Config, L1State, Vmcs02Inputs, prepare_vmcs02};
use nested::vmx::sync::{
    SyncScope, copy_reflected_to_shadow, load_l1_host_state, reinject_idt_vectoring, sync_vmcs12,
    sync_vmcs12_rare,
};
use nested::vmx::{
    Exception, Flush, L1Access, L1Cpu, MemOperand, Segment, SegmentCache, VmxResult, l1_caps,
};

use super::exits::{Action, GuestEnd};
use super::hw_vmcs::HwVmcs;
use super::insn::{self, GuestRegs};
use super::run::Guest;
use super::{VmxError, setup, zeroed_frame};
use crate::guest::memory::GuestMemory;
use crate::mm::frames;

/// IA32_FEATURE_CONTROL as L1 sees it when VMX is exposed: locked, VMX outside SMX on.
pub const FEATURE_CONTROL_VMX: u64 = 0x5;
/// L1's physical-address width as L0 reports it (our CPUID passes the host's through; 39
/// bits covers any L1 memory L0 gives).
const MAXPHYADDR: u8 = 39;

/// The hardware VPID of every L2 whose vmcs12 does not enable VPID: like a processor without
/// VPIDs, L0 flushes it on each VM entry to L2 (and L1's on each exit to L1).
const VPID_L2_UNTAGGED: u16 = setup::GUEST_VPID + 1;
/// First hardware VPID of the vpid12 → vpid02 map.
const VPID02_BASE: u16 = setup::GUEST_VPID + 2;

/// Hardware VMCS shadowing for L1 (SDM 25.10): L1's VMREAD/VMWRITE of the fields the bitmaps
/// clear go to this shadow VMCS without an exit.
struct Shadowing {
    shadow_vmcs: u64,
    vmwrite_any_field: bool,
}

/// L1's VMX state and L2's VMCS.
pub struct Nested {
    shadowing: Option<Shadowing>,
    pub vmx: nested::vmx::NestedVmx,
    vmcs01: u64,
    vmcs02: u64,
    vmcs02_ready: bool,
    /// vmcs02's MSR bitmap: all ones but the bits of [`super::exits::L2_PASSTHROUGH`], which
    /// follow L1's bitmap (re-read at every entry to L2).
    msr_bitmap02: u64,
    pub vmcs02_launched: bool,
    pub in_l2: bool,
    shadow: ShadowEpt,
    /// Nested VPIDs: L1's VPIDs for its L2s (vpid12) to hardware VPIDs (vpid02).
    vpids: VpidMap,
    /// The VPID vmcs02 holds (0: not written yet), and the vpid12 it was mapped from.
    vpid02: u16,
    vpid12: u16,
    l0: L0Config,
    eptp01: u64,
    /// L0 runs the VMX-preemption timer in vmcs02 (for L1's APIC timer or an immediate exit).
    pub timer02: bool,
    /// Exits L2 caused, and how many of them L1 got.
    pub l2_exits: u64,
    pub reflected: u64,
}

impl Nested {
    /// Sets up nesting for the guest of vmcs01 (which must be current). `shadowing` asks for
    /// hardware VMCS shadowing when the processor has it.
    pub fn new(hw: &VmxCaps, vmcs01: u64, eptp01: u64, shadowing: bool) -> Result<Self, VmxError> {
        let shadowing =
            if shadowing && hw.has_vmcs_shadowing() { Some(enable_shadowing(hw)?) } else { None };
        let vmcs02 = zeroed_frame("vmcs02")?;
        let msr_bitmap02 = zeroed_frame("vmcs02's MSR bitmap")?;
        // SAFETY: a fresh 4-KiB frame that is ours; every MSR access exits until a merge.
        unsafe { core::ptr::write_bytes(msr_bitmap02 as *mut u8, 0xff, 4096) };
        // SAFETY: the revision identifier goes in the first 4 bytes of a fresh VMCS region.
        unsafe { (vmcs02 as *mut u32).write(hw.revision_id()) };
        let (cr0_mask, cr4_mask) = setup::cr_masks(hw);
        Ok(Nested {
            shadowing,
            vmx: nested::vmx::NestedVmx::new(l1_caps(hw), MAXPHYADDR),
            vmcs01,
            vmcs02,
            vmcs02_ready: false,
            msr_bitmap02,
            vmcs02_launched: false,
            in_l2: false,
            shadow: ShadowEpt::new(),
            vpids: VpidMap::new(VPID02_BASE),
            vpid02: 0,
            vpid12: 0,
            // What L0 needs in vmcs02 whatever L1 asks: its own interrupts and NMIs, every
            // port access (L0 emulates all I/O below it), EPT (L2 stays inside L1's memory),
            // VPID (L2's TLB entries tagged apart from L1's), and its 64-bit host state.
            l0: L0Config {
                hw: *hw,
                pin: pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
                proc1: proc1::UNCONDITIONAL_IO_EXITING | proc1::ACTIVATE_SECONDARY_CONTROLS,
                proc2: proc2::ENABLE_EPT | proc2::ENABLE_VPID,
                exit: exit::HOST_ADDRESS_SPACE_SIZE | exit::SAVE_IA32_EFER | exit::LOAD_IA32_EFER,
                entry: entry::LOAD_IA32_EFER,
                exception_bitmap: 0,
                cr0_mask,
                cr4_mask,
            },
            eptp01,
            timer02: false,
            l2_exits: 0,
            reflected: 0,
        })
    }
}

/// Allocates the shadow VMCS and the VMREAD/VMWRITE bitmaps and turns shadowing on in vmcs01
/// (current). The link pointer stays FFFFFFFF_FFFFFFFFH until L1 has a current VMCS.
fn enable_shadowing(hw: &VmxCaps) -> Result<Shadowing, VmxError> {
    let shadow_vmcs = zeroed_frame("shadow VMCS")?;
    // SAFETY: revision identifier with bit 31 (shadow-VMCS indicator) in a fresh region.
    unsafe { (shadow_vmcs as *mut u32).write(hw.revision_id() | 1 << 31) };
    // SAFETY: in VMX root operation; the region is ours.
    unsafe { insn::vmclear(shadow_vmcs) }
        .map_err(|e| VmxError::Instruction("VMCLEAR shadow", e))?;
    let vmread = zeroed_frame("VMREAD bitmap")?;
    let vmwrite = zeroed_frame("VMWRITE bitmap")?;
    let any = hw.vmwrite_any_field();
    // SAFETY: two fresh, identity-mapped 4 KiB frames of ours.
    let (r, w) = unsafe {
        (
            &mut *(vmread as *mut [u8; SHADOW_BITMAP_SIZE]),
            &mut *(vmwrite as *mut [u8; SHADOW_BITMAP_SIZE]),
        )
    };
    shadow_bitmaps(any, r, w);
    // SAFETY: vmcs01 is current (Nested::new's contract).
    let mut v01 = unsafe { HwVmcs::current() };
    v01.write(F::VmreadBitmap, vmread);
    v01.write(F::VmwriteBitmap, vmwrite);
    let secondary = v01.read(F::SecondaryVmExecControl);
    v01.write(F::SecondaryVmExecControl, secondary | u64::from(proc2::VMCS_SHADOWING));
    log::info!("vmx: VMCS shadowing on for L1's VMREAD/VMWRITE");
    Ok(Shadowing { shadow_vmcs, vmwrite_any_field: any })
}

impl Nested {
    /// Makes the shadow VMCS current, runs `f` on it (with L1's VMX state and whether
    /// "VMWRITE to any field" is on), and makes vmcs01 current again. False without
    /// shadowing or when the shadow VMCS cannot be loaded (logged).
    fn on_shadow(
        &mut self,
        f: impl FnOnce(&mut HwVmcs, &mut nested::vmx::NestedVmx, bool),
    ) -> bool {
        let Some(s) = &self.shadowing else { return false };
        let (shadow_vmcs, any) = (s.shadow_vmcs, s.vmwrite_any_field);
        // SAFETY: the shadow VMCS and vmcs01 are our own regions; vmcs01 is made current
        // again before returning, and `f` only touches the shadow VMCS.
        unsafe {
            if let Err(e) = insn::vmptrld(shadow_vmcs) {
                log::error!("VMPTRLD of the shadow VMCS failed: {e}");
                return false;
            }
            f(&mut HwVmcs::current(), &mut self.vmx, any);
            let _ = insn::vmptrld(self.vmcs01);
        }
        true
    }

    /// Copies vmcs12's shadowed fields into the shadow VMCS (after L0 changed vmcs12), and
    /// points vmcs01's link pointer at it while L1 has a current VMCS. vmcs01 stays current.
    fn sync_to_shadow(&mut self) {
        let Some(link) = self.shadowing.as_ref().map(|s| s.shadow_vmcs) else { return };
        // SAFETY: vmcs01 is current whenever L1 runs; it is the VMCS these writes target.
        let mut v01 = unsafe { HwVmcs::current() };
        if self.vmx.current.is_none() {
            v01.write(F::VmcsLinkPointer, u64::MAX);
            return;
        }
        if self.on_shadow(|shadow, vmx, any| copy_vmcs12_to_shadow(&vmx.vmcs12, shadow, any)) {
            v01.write(F::VmcsLinkPointer, link);
        }
    }

    /// After a reflected exit: copies to the shadow VMCS exactly the vmcs12 fields a
    /// [`SyncScope::Hot`] sync may have changed (the shadow equals vmcs12 otherwise: L1's
    /// shadowed VMWRITEs were pulled in at its last VMRESUME, and L0 keeps the shadow up to
    /// date whenever it changes vmcs12 in between). vmcs01 stays current.
    fn sync_reflected_to_shadow(&mut self) {
        self.on_shadow(|shadow, vmx, any| copy_reflected_to_shadow(&vmx.vmcs12, shadow, any));
    }

    /// Brings vmcs12's rare guest fields from vmcs02 (they stay there after a reflected exit
    /// until L1 or L0 needs them: `NestedVmx::needs_rare_sync`). vmcs01 stays current.
    fn sync_rare(&mut self) {
        // SAFETY: vmcs02 and vmcs01 are our own VMCS regions; vmcs01 is made current again.
        unsafe {
            match insn::vmptrld(self.vmcs02) {
                Ok(()) => sync_vmcs12_rare(&HwVmcs::current(), &mut self.vmx.vmcs12),
                Err(e) => log::error!("VMPTRLD of vmcs02 failed: {e}"),
            }
            let _ = insn::vmptrld(self.vmcs01);
        }
        self.vmx.rare_stale = false;
    }

    /// Writes one field of the shadow VMCS (e.g. the VM-instruction error after VMfailValid).
    fn shadow_write(&mut self, field: F, value: u64) {
        if self.vmx.current.is_some() {
            self.on_shadow(|shadow, _, _| shadow.write(field, value));
        }
    }

    /// Pulls L1's shadowed VMWRITEs into vmcs12 (marking them dirty) before L0 uses vmcs12.
    fn sync_from_shadow(&mut self) {
        if self.vmx.current.is_some() {
            self.on_shadow(|shadow, vmx, _| {
                copy_shadow_to_vmcs12(shadow, &mut vmx.vmcs12, &mut vmx.dirty)
            });
        }
    }
}

impl Nested {
    /// Whether vmcs02 tags L2 with a VPID of its own (and L0 can INVVPID single contexts).
    fn vpid_enabled(&self) -> bool {
        self.l0.hw.secondary().can_set(proc2::ENABLE_VPID)
            && self.l0.hw.ept_vpid_has(ept_vpid::INVVPID_SINGLE_CONTEXT)
    }

    /// The vpid02 L2 runs with under the current vmcs12: L1's vpid12 mapped through
    /// [`VpidMap`] (a vpid02 (re)assigned to another vpid12 is flushed first), or, when vmcs12
    /// does not enable VPID, the untagged vpid02, flushed on every entry as SDM 29.4.3.1
    /// describes for VM entries without VPIDs.
    fn l2_vpid(&mut self) -> u16 {
        let v12 = &self.vmx.vmcs12;
        let tagged =
            secondary_controls(v12) & proc2::ENABLE_VPID != 0 && v12.virtual_processor_id != 0;
        let (vpid02, flush) = if tagged {
            let vpid12 = v12.virtual_processor_id;
            if self.vpid02 != 0 && self.vpid02 != VPID_L2_UNTAGGED && vpid12 == self.vpid12 {
                // The common VMRESUME: same vpid12, still mapped (only this function maps).
                return self.vpid02;
            }
            self.vpid12 = vpid12;
            let (vpid02, fresh) = self.vpids.vpid02(vpid12);
            if fresh {
                static ASSIGNED: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(8);
                if ASSIGNED.allow() {
                    log::info!(
                        "vmx: L1's VPID {vpid12} for its guest runs as hardware VPID {vpid02}"
                    );
                }
            }
            (vpid02, fresh)
        } else {
            (VPID_L2_UNTAGGED, true)
        };
        if flush {
            flush_vpid(vpid02);
        }
        vpid02
    }

    /// Carries out L1's INVEPT/INVVPID on what L0 built from L1's structures.
    fn invalidate(&mut self, flush: Flush) {
        match flush {
            // EPT02 tables are dropped (rebuilt on demand) and their cached translations
            // flushed: freed tables may come back as another EPT02's.
            Flush::EptSingle { eptp } => {
                self.shadow.invalidate(eptp, &mut Frames);
                // SAFETY: in VMX root operation with INVEPT supported (EPT is in use).
                let _ = unsafe { insn::invept(2, 0) };
            }
            Flush::EptAll => {
                self.shadow.invalidate_all(&mut Frames);
                // SAFETY: as above.
                let _ = unsafe { insn::invept(2, 0) };
            }
            // Individual-address and retaining-globals invalidations may flush more than
            // asked (SDM 29.4.3.3): L0 flushes the whole vpid02.
            Flush::VpidAddress { vpid12, .. }
            | Flush::VpidSingle { vpid12 }
            | Flush::VpidSingleRetainingGlobals { vpid12 } => {
                if let Some(vpid02) = self.vpids.lookup(vpid12) {
                    flush_vpid(vpid02);
                }
            }
            Flush::VpidAll => {
                for vpid02 in self.vpids.assigned() {
                    flush_vpid(vpid02);
                }
                flush_vpid(VPID_L2_UNTAGGED);
            }
        }
    }
}

impl Nested {
    /// Runs vmcs02's VMX-preemption timer for L0 with `value` (timer units; 0 exits right
    /// after entry), or stops it. L1's own use of the timer in vmcs12 takes precedence: L0
    /// then leaves vmcs02's timer to the merge and notices L1's interrupts at L2's next exit.
    pub fn set_timer02(&mut self, v02: &mut HwVmcs, value: Option<u32>) {
        if self.vmx.vmcs12.pin_based_vm_exec_control & pin::PREEMPTION_TIMER != 0 {
            self.timer02 = false;
            return;
        }
        let bit = u64::from(pin::PREEMPTION_TIMER);
        match value {
            None if !self.timer02 => {}
            None => {
                let pin = v02.read(F::PinBasedVmExecControl);
                v02.write(F::PinBasedVmExecControl, pin & !bit);
                self.timer02 = false;
            }
            Some(units) => {
                // A control merge since the last entry may have rewritten the pin controls.
                let pin = v02.read(F::PinBasedVmExecControl);
                if pin & bit == 0 {
                    v02.write(F::PinBasedVmExecControl, pin | bit);
                }
                v02.write(F::VmxPreemptionTimerValue, u64::from(units));
                self.timer02 = true;
            }
        }
    }
}

/// INVVPID single-context for `vpid`, when the processor has it.
fn flush_vpid(vpid: u16) {
    // SAFETY: in VMX root operation; INVVPID with an unsupported type only fails (VMfail),
    // and callers reach here only with VPIDs enabled (`Nested::vpid_enabled`).
    let _ = unsafe { insn::invvpid(1, vpid) };
}

/// L1's registers, memory and segments as the instruction emulator sees them.
struct L1View<'a> {
    regs: &'a mut GuestRegs,
    mem: &'a mut GuestMemory,
    v: &'a mut HwVmcs,
}

impl L1Regs for L1View<'_> {
    fn gpr(&self, r: Gpr) -> u64 {
        self.regs.get(r).unwrap_or_else(|| self.v.read(F::GuestRsp))
    }

    fn set_gpr(&mut self, r: Gpr, value: u64) {
        match self.regs.slot(r) {
            Some(slot) => *slot = value,
            None => self.v.write(F::GuestRsp, value),
        }
    }
}

impl L1Memory for GuestMemory {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let src = self.slice(gpa.0, buf.len() as u64).ok_or(MemError { gpa })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        if GuestMemory::write(self, gpa.0, data) { Ok(()) } else { Err(MemError { gpa }) }
    }
}

impl L1Memory for L1View<'_> {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        L1Memory::read(&*self.mem, gpa, buf)
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        L1Memory::write(&mut *self.mem, gpa, data)
    }
}

impl L1View<'_> {
    /// L1's linear address to L1-physical through L1's paging. A missing translation is the
    /// #PF a processor raises: CR2 the linear address, the error code of a supervisor
    /// (VMX instructions run at CPL 0) read or write to a not-present page (SDM Vol. 3A 4.7).
    fn translate(&self, linear: u64, write: bool) -> Result<u64, Exception> {
        const PF_WRITE: u32 = 1 << 1;
        crate::guest::paging::translate(self.v, self.mem, linear)
            .ok_or(Exception::page_fault(linear, if write { PF_WRITE } else { 0 }))
    }

    /// Copies between L1 linear memory and `buf`, page by page; every page translates
    /// before any byte moves (an operand straddling into an unmapped page faults whole).
    fn access(
        &mut self,
        linear: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&mut Self, u64, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), Exception> {
        let mut done = 0;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
            self.translate(at, write)?;
            done += chunk;
        }
        let mut done = 0;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
            let gpa = self.translate(at, write)?;
            f(self, gpa, done, chunk).map_err(|_| Exception::GP0)?;
            done += chunk;
        }
        Ok(())
    }
}

impl L1Access for L1View<'_> {
    fn segment_base(&self, seg: Segment) -> u64 {
        self.v.read(match seg {
            Segment::Es => F::GuestEsBase,
            Segment::Cs => F::GuestCsBase,
            Segment::Ss => F::GuestSsBase,
            Segment::Ds => F::GuestDsBase,
            Segment::Fs => F::GuestFsBase,
            Segment::Gs => F::GuestGsBase,
        })
    }

    fn segment(&self, seg: Segment) -> SegmentCache {
        let (limit, ar) = match seg {
            Segment::Es => (F::GuestEsLimit, F::GuestEsArBytes),
            Segment::Cs => (F::GuestCsLimit, F::GuestCsArBytes),
            Segment::Ss => (F::GuestSsLimit, F::GuestSsArBytes),
            Segment::Ds => (F::GuestDsLimit, F::GuestDsArBytes),
            Segment::Fs => (F::GuestFsLimit, F::GuestFsArBytes),
            Segment::Gs => (F::GuestGsLimit, F::GuestGsArBytes),
        };
        SegmentCache {
            base: self.segment_base(seg),
            limit: self.v.read(limit) as u32,
            ar: self.v.read(ar) as u32,
        }
    }

    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception> {
        self.access(op.linear, buf.len(), false, |s, gpa, at, n| {
            L1Memory::read(&*s.mem, L1Gpa(gpa), &mut buf[at..at + n])
        })
    }

    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception> {
        self.access(op.linear, data.len(), true, |s, gpa, at, n| {
            L1Memory::write(&mut *s.mem, L1Gpa(gpa), &data[at..at + n])
        })
    }
}

/// L1's processor state for the instruction preconditions, from vmcs01's guest state.
/// VMREAD and VMWRITE (L1's most frequent trapped instructions without VMCS shadowing) look
/// only at CPL, RFLAGS, EFER and CS.L: for them CR0, CR4 and the MOV-SS blocking are not
/// read and left zero.
fn l1_cpu(v: &HwVmcs, info: &ExitInfo) -> L1Cpu {
    let all = !matches!(info.exit_reason(), Some(ExitReason::Vmread | ExitReason::Vmwrite));
    let read_if = |f| if all { v.read(f) } else { 0 };
    L1Cpu {
        cpl: ((v.read(F::GuestSsArBytes) >> 5) & 3) as u8,
        cr0: read_if(F::Cr0ReadShadow),
        cr4: read_if(F::Cr4ReadShadow),
        efer: v.read(F::GuestIa32Efer),
        rflags: v.read(F::GuestRflags),
        cs_l: v.read(F::GuestCsArBytes) & (1 << 13) != 0,
        mov_ss_blocking: read_if(F::GuestInterruptibilityInfo) & 2 != 0,
        feature_control: FEATURE_CONTROL_VMX,
    }
}

/// What the run loop does after a nested step.
pub enum Step {
    Action(Action),
    /// VMLAUNCH/VMRESUME succeeded: run L2 on vmcs02 next.
    EnterL2,
}

/// L1 executed a VMX instruction (L1 runs on vmcs01).
pub fn vmx_instruction(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Step {
    let Some(n) = g.nested.as_mut() else { return Step::Action(Action::Inject(6, None)) };
    // L1's VMWRITEs to shadowed fields are only in the shadow VMCS so far.
    if !matches!(info.exit_reason(), Some(ExitReason::Vmread | ExitReason::Vmwrite)) {
        n.sync_from_shadow();
    }
    let cpu = l1_cpu(v, info);
    let current_before = n.vmx.current;
    // SAFETY: vmcs01 is current while L1 runs; the view only touches its guest fields.
    let mut vmcs = unsafe { HwVmcs::current() };
    let mut view = L1View { regs: &mut g.regs, mem: &mut g.memory, v: &mut vmcs };
    if n.vmx.rare_stale && n.vmx.needs_rare_sync(info, &cpu, &view) {
        n.sync_rare();
    }
    // A VMWRITE that exits although L1 reads the field through the shadow (exit information
    // with "VMWRITE to any field") must reach the shadow too.
    let written = match info.exit_reason() {
        Some(ExitReason::Vmwrite) if n.shadowing.is_some() => {
            n.vmx.accessed_field(info, &cpu, &view)
        }
        _ => None,
    };
    let Some((result, flush)) = n.vmx.emulate(info, &cpu, &mut view) else {
        return Step::Action(Action::Inject(6, None));
    };
    if let (Some(f), VmxResult::Succeed) = (written, result)
        && n.shadowing.as_ref().is_some_and(|s| shadowed_for_read(f, s.vmwrite_any_field))
    {
        n.shadow_write(f, n.vmx.vmcs12.get(f));
    }
    if let Some(flush) = flush {
        n.invalidate(flush);
    }
    if let VmxResult::FailValid(e) = result {
        explain_failure(n, e);
        n.shadow_write(F::VmInstructionError, u64::from(e.number()));
    }
    // The shadow holds L1's latest VMWRITEs: copy vmcs12 over it only when it is another
    // VMCS now (VMPTRLD, VMCLEAR of the current one) or L0 wrote exit information.
    if n.vmx.current != current_before || matches!(result, VmxResult::EntryFailed(_)) {
        n.sync_to_shadow();
    }
    match result {
        VmxResult::Succeed | VmxResult::FailValid(_) | VmxResult::FailInvalid => {
            // L1's RFLAGS as read for `cpu` (the emulation does not change it).
            v.write(F::GuestRflags, result.apply_rflags(cpu.rflags));
            Step::Action(Action::Skip)
        }
        VmxResult::Fault(e) => {
            if let Some(cr2) = e.cr2 {
                // SAFETY: not in a page-fault handler; CR2 is L1's from here to the entry.
                unsafe { crate::arch::cpu::write_cr2(cr2) };
            }
            Step::Action(Action::Inject(e.vector, e.error_code))
        }
        VmxResult::EnterL2 { .. } => Step::EnterL2,
        VmxResult::EntryFailed(_) => {
            // vmcs12 holds the entry-failure exit; L1 continues at its host RIP.
            let efer = v.read(F::GuestIa32Efer);
            load_l1_host_state(&n.vmx.vmcs12, v, &n.l0.hw, efer);
            Step::Action(Action::Resume)
        }
    }
}

/// Logs which SDM check refused L1's VM entry (VMfailValid 7 or 8), rate-limited.
fn explain_failure(n: &Nested, e: nested::vmx::VmInstructionError) {
    static FAILURES: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(16);
    if !FAILURES.allow() {
        return;
    }
    let v12 = &n.vmx.vmcs12;
    let check = match e.number() {
        7 => nested::vmx::checks::check_controls(v12, &n.vmx.caps, MAXPHYADDR).err(),
        8 => nested::vmx::checks::check_host_state(v12, &n.vmx.caps, MAXPHYADDR, true).err(),
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

/// Switches to vmcs02, merges vmcs12 into it and returns whether it was launched before.
pub fn enter_l2(g: &mut Guest, v01: &mut HwVmcs) -> Result<bool, &'static str> {
    let Some(n) = g.nested.as_mut() else { return Err("no nested state") };
    let l1 = L1State {
        efer: v01.read(F::GuestIa32Efer),
        pat: v01.read(F::GuestIa32Pat),
        dr7: v01.read(F::GuestDr7),
        debugctl: v01.read(F::GuestIa32Debugctl),
        tsc_offset: 0,
    };
    let v12 = &n.vmx.vmcs12;
    let eptp = if secondary_controls(v12) & proc2::ENABLE_EPT != 0 {
        let root =
            n.shadow.root_for(v12.ept_pointer, &mut Frames).map_err(|_| "no frames for EPT02")?;
        eptp02_for(root, v12.ept_pointer)
    } else {
        n.eptp01
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
    let vpid02 = if n.vpid_enabled() { n.l2_vpid() } else { 0 };
    // SAFETY: msr_bitmap02 is our own 4-KiB frame; nothing else references it now.
    let bitmap = unsafe { &mut *(n.msr_bitmap02 as *mut [u8; 4096]) };
    update_msr_passthrough(super::exits::L2_PASSTHROUGH, &n.vmx.vmcs12, &g.memory, bitmap);
    // Every port is a device L0 models: I/O exits unconditionally (the L0-or-L1 merge of
    // I/O bitmaps would be all ones); ports L1 passes through are performed for it.
    let msr_bitmap = Some(Hpa(n.msr_bitmap02));
    let inputs = Vmcs02Inputs { eptp02: eptp, vpid02, msr_bitmap, io_bitmaps: None, l1 };
    prepare_vmcs02(&mut v02, &n.vmx.vmcs12, &n.vmx.dirty, &n.l0, &inputs);
    if vpid02 != n.vpid02 {
        v02.write(F::VirtualProcessorId, u64::from(vpid02));
        n.vpid02 = vpid02;
    }
    n.vmx.dirty.clear();
    n.in_l2 = true;
    Ok(n.vmcs02_launched)
}

/// Handles an exit L2 caused: L0's own business, or reflected to L1.
pub fn l2_exit(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    let Some(n) = g.nested.as_mut() else {
        return Action::Stop(GuestEnd::Failed("no nested state"));
    };
    n.l2_exits += 1;
    let intercepts = L0Intercepts { exception_bitmap: 0, preemption_timer: n.timer02 };
    let view = RegsOnly(&g.regs);
    let decision = route(info, &intercepts, &n.vmx.vmcs12, &view, &g.memory);
    match decision {
        Ok(ExitRoute::L1) => reflect(g, v02, info),
        Ok(ExitRoute::L0) => l0_handles(g, v02, info),
        Ok(ExitRoute::ForL1) => for_l1(g, v02, info),
        Err(_) => {
            log::error!("L2 exit {:#x} cannot be routed: stopping the guest", info.reason);
            Action::Stop(GuestEnd::Failed("unroutable L2 exit"))
        }
    }
}

/// Exits L0 handles for L2 without L1: EPT02 fills, interrupts L0 owns.
fn l0_handles(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    let Some(n) = g.nested.as_mut() else { return Action::Resume };
    match info.exit_reason() {
        Some(ExitReason::EptViolation) => {
            let eptp12 = n.vmx.vmcs12.ept_pointer;
            let ept01 = Ept01View { base: g.memory.host_base(), size: g.memory.size() };
            let caps = n.vmx.caps;
            // L1's page-modification log, emulated on EPT12's dirty flags.
            let v12 = &mut n.vmx.vmcs12;
            let pml = (secondary_controls(v12) & proc2::ENABLE_PML != 0)
                .then_some(PmlLog { address: v12.pml_address, index: &mut v12.guest_pml_index });
            match n.shadow.handle_violation(
                eptp12,
                info,
                &mut g.memory,
                &ept01,
                &mut Frames,
                &caps,
                MAXPHYADDR,
                pml,
            ) {
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
                Ok(Resolution::L1Unmapped(gpa) | Resolution::L0Denied(gpa)) => {
                    // EPT12 maps L2 to L1-physical memory L1 does not have: nothing is mapped
                    // and L1 gets the EPT violation for its guest.
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
        Some(ExitReason::ExternalInterrupt) | Some(ExitReason::PreemptionTimer) => {
            reinject_idt_vectoring(v02, info);
            Action::Resume
        }
        // EPTP switching, which L1 is offered and L0 emulates (vmcs02's VM-function
        // controls are 0, so every VMFUNC exits here).
        Some(ExitReason::Vmfunc) => match n.vmx.vmfunc(&RegsOnly(&g.regs), &g.memory) {
            nested::vmx::VmfuncOutcome::Switched { eptp } => {
                match n.shadow.root_for(eptp, &mut Frames) {
                    Ok(root) => {
                        v02.write(F::EptPointer, eptp02_for(root, eptp));
                        Action::Skip
                    }
                    Err(_) => Action::Stop(GuestEnd::Failed("EPT02 cannot be built")),
                }
            }
            nested::vmx::VmfuncOutcome::Reflect => reflect(g, v02, info),
        },
        _ => reflect(g, v02, info),
    }
}

/// An exit neither level asked for (vmcs02 intercepts more than vmcs12 does): L0 performs
/// the access as if L1 had executed it and resumes L2. Port I/O goes to L1's devices and
/// RDMSR/WRMSR to L1's MSR view through the same handlers as L1's own exits (vmcs02 is
/// current, so the MSRs the VMCS holds are L2's, as on a processor running vmcs12); CR
/// accesses change L2's state as vmcs12 describes it.
fn for_l1(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    use nested::vmx::for_l1::{ForL1, cr_access};
    match info.exit_reason() {
        Some(ExitReason::IoInstruction | ExitReason::Rdmsr | ExitReason::Wrmsr) => {
            super::exits::handle(g, v02, info)
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
                ForL1::Fault(e) => Action::Inject(e.vector, e.error_code),
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

/// Reflects `info` to L1: vmcs12 gets the exit, L1 resumes on vmcs01 at its host RIP.
fn reflect(g: &mut Guest, v02: &mut HwVmcs, info: &ExitInfo) -> Action {
    let Some(n) = g.nested.as_mut() else { return Action::Resume };
    n.reflected += 1;
    // Hot fields only: the rare ones stay in vmcs02 until something needs them.
    sync_vmcs12(&*v02, &mut n.vmx.vmcs12, info, SyncScope::Hot);
    n.vmx.rare_stale = true;
    // SAFETY: vmcs01 is our own VMCS region.
    if unsafe { insn::vmptrld(n.vmcs01) }.is_err() {
        return Action::Stop(GuestEnd::Failed("VMPTRLD vmcs01 failed"));
    }
    n.in_l2 = false;
    if n.vpid02 == VPID_L2_UNTAGGED {
        // vmcs12 runs L2 without VPIDs: in L1's view the exit flushes its own mappings too.
        flush_vpid(setup::GUEST_VPID);
    }
    // SAFETY: vmcs01 is now current.
    let mut v01 = unsafe { HwVmcs::current() };
    let efer = v01.read(F::GuestIa32Efer);
    load_l1_host_state(&n.vmx.vmcs12, &mut v01, &n.l0.hw, efer);
    n.sync_reflected_to_shadow();
    Action::Resume
}

/// L1's interrupt arrived while L2 ran and vmcs12 has "external-interrupt exiting": a VM exit
/// to L1 with reason 1 and `intr_info` (the vector when vmcs12 acknowledges interrupts on
/// exit, else 0; SDM 27.2.2). vmcs01 is current afterwards.
pub fn interrupt_exit(g: &mut Guest, v02: &mut HwVmcs, intr_info: u32) -> Action {
    if let Some(n) = g.nested.as_mut() {
        n.l2_exits += 1;
    }
    let info = ExitInfo {
        reason: u32::from(ExitReason::ExternalInterrupt.number()),
        intr_info,
        ..ExitInfo::default()
    };
    reflect(g, v02, &info)
}

/// L2's registers for exit routing (which reads RCX for MSR exits and the GPR of a CR
/// access; RSP is never consulted there).
struct RegsOnly<'a>(&'a GuestRegs);

impl L1Regs for RegsOnly<'_> {
    fn gpr(&self, r: Gpr) -> u64 {
        self.0.get(r).unwrap_or(0)
    }

    fn set_gpr(&mut self, _: Gpr, _: u64) {}
}

/// EPT01 as the shadow-EPT code sees it: L1-physical `[0, size)` at host `base`, RWX.
struct Ept01View {
    base: u64,
    size: u64,
}

impl Ept01 for Ept01View {
    fn translate(&self, gpa: L1Gpa) -> Option<Ept01Leaf> {
        (gpa.0 < self.size).then(|| Ept01Leaf {
            hpa: Hpa(self.base + gpa.0),
            perms: 7,
            size: PageSize::Size4K,
            memtype: 6,
        })
    }
}

/// Frames for EPT02 tables.
struct Frames;

impl HostFrames for Frames {
    fn alloc_zeroed(&mut self) -> Option<Hpa> {
        let frame = frames::alloc(4096, 4096)?;
        // SAFETY: a fresh identity-mapped frame that is ours.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        Some(Hpa(frame))
    }

    fn free(&mut self, frame: Hpa) {
        frames::free(frame.0, 4096);
    }

    fn read_entry(&self, table: Hpa, index: usize) -> u64 {
        // SAFETY: `table` is a frame this allocator handed out; index < 512 by contract.
        unsafe { ((table.0 as *const u64).add(index & 511)).read() }
    }

    fn write_entry(&mut self, table: Hpa, index: usize, value: u64) {
        // SAFETY: as above.
        unsafe { ((table.0 as *mut u64).add(index & 511)).write(value) };
    }
}
