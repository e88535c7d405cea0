//! What the run loop does after an exit ([`Action`]), how a guest ends ([`GuestEnd`]), and
//! the VMCS updates that carry an action out: retiring the exiting instruction and injecting
//! an exception (SDM Vol. 3C 25.4.2, 26.6).

use nested::arch::{BreakAccess, breakpoints_met, cr4, pending_after_emulation, rflags};
use nested::exits::ExitInfo;
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::Exception;

use crate::arch::vmcs::HwVmcs;

/// What the run loop does after an exit.
#[derive(Debug)]
pub enum Action {
    /// Re-enter the guest at the same RIP.
    Resume,
    /// Re-enter after the exiting instruction (RIP += instruction length).
    Skip,
    /// Raise a hardware exception in the guest and re-enter; RIP stays at the faulting
    /// instruction ([`Action::raise`]). For L2, an exception vmcs12 intercepts is an exit to
    /// L1 instead (`l1vmx::l2_exit`).
    Inject(Fault),
    /// The guest is done.
    Stop(GuestEnd),
}

// The hot path's return value: `Stop(GuestEnd::Failed(&str))` sets the floor at 24 bytes.
const _: () = assert!(core::mem::size_of::<Action>() <= 24);

impl Action {
    /// Raise `e` in the guest.
    pub const fn raise(e: Exception) -> Action {
        Action::Inject(Fault::of(e))
    }
}

/// An [`Exception`] packed into 16 bytes, so that [`Action`], which every exit handler
/// returns, stays as small as its largest other variant (a bigger one costs the hot path
/// ticks).
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    cr2: u64,
    error_code: u32,
    vector: u8,
    /// Bit 0: the error code is valid; bit 1: CR2 is.
    valid: u8,
}

impl Fault {
    pub const fn of(e: Exception) -> Fault {
        let (error_code, code_valid) = match e.error_code {
            Some(c) => (c, 1),
            None => (0, 0),
        };
        let (cr2, cr2_valid) = match e.cr2 {
            Some(a) => (a, 2),
            None => (0, 0),
        };
        Fault { cr2, error_code, vector: e.vector, valid: code_valid | cr2_valid }
    }

    pub const fn exception(self) -> Exception {
        Exception {
            vector: self.vector,
            error_code: if self.valid & 1 != 0 { Some(self.error_code) } else { None },
            cr2: if self.valid & 2 != 0 { Some(self.cr2) } else { None },
        }
    }
}

/// How a guest ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestEnd {
    /// It wrote its status to the exit port.
    Exited(u8),
    /// L0 stopped it; the reason was logged.
    Failed(&'static str),
}

/// Advances RIP past the exiting instruction and drops STI/MOV-SS blocking, as retiring the
/// instruction would (SDM 25.4.2).
#[inline(always)]
pub fn skip_instruction(v: &mut HwVmcs, info: &ExitInfo) {
    let rip = v.read(F::GuestRip);
    retire_instruction(v, rip.wrapping_add(u64::from(info.instruction_len)));
}

/// Completes an emulated instruction: RIP moves to `next_rip` and STI/MOV-SS blocking ends,
/// as retiring the instruction would (SDM 25.4.2); under RFLAGS.TF the single-step trap
/// the processor would take after it is left pending for the entry to deliver
/// ([`pending_after_emulation`]; an intercepted #DB then exits as on hardware).
#[inline(always)]
pub fn retire_instruction(v: &mut HwVmcs, next_rip: u64) {
    v.write(F::GuestRip, next_rip);
    let blocking = v.read(F::GuestInterruptibilityInfo);
    if blocking & 3 != 0 {
        v.write(F::GuestInterruptibilityInfo, blocking & !3);
    }
    let flags = v.read(F::GuestRflags);
    if flags & rflags::TF != 0 {
        single_step(v, flags);
    }
}

#[inline(never)]
fn single_step(v: &mut HwVmcs, flags: u64) {
    let pending = v.read(F::GuestPendingDebugExceptions);
    let debugctl = v.read(F::GuestIa32Debugctl);
    v.write(F::GuestPendingDebugExceptions, pending_after_emulation(flags, debugctl, pending));
}

/// An access L0 performed for the guest's instruction (`size` bytes at linear `address`, or
/// port `address`): the data or I/O breakpoints of the guest's DR7 and DR0-DR3 it meets
/// are left pending for the entry, which delivers the debug trap after the instruction as
/// the processor would (SDM Vol. 3B 18.2.4; `nested::arch::breakpoints_met`). Almost no
/// guest has a breakpoint enabled: that costs one VMREAD.
#[inline(always)]
pub fn breakpoints(v: &mut HwVmcs, access: BreakAccess, address: u64, size: u64) {
    let dr7 = v.read(F::GuestDr7);
    if dr7 & 0xff != 0 {
        pend_breakpoints(v, dr7, access, address, size);
    }
}

#[cold]
#[inline(never)]
fn pend_breakpoints(v: &mut HwVmcs, dr7: u64, access: BreakAccess, address: u64, size: u64) {
    let de = v.read(F::GuestCr4) & cr4::DE != 0;
    let met = breakpoints_met(dr7, crate::arch::cpu::debug_addresses(), de, access, address, size);
    if met != 0 {
        let pending = v.read(F::GuestPendingDebugExceptions);
        v.write(F::GuestPendingDebugExceptions, pending | met);
    }
}

/// Injects a hardware exception on the next entry (SDM 26.6: interruption type 3). A #PF
/// loads CR2 first: VM entry does not, and the guest's handler reads it (SDM 6.15).
pub fn inject(v: &mut HwVmcs, e: Exception) {
    if let Some(cr2) = e.cr2 {
        // SAFETY: L0 takes no page faults of its own between here and the entry; CR2 is
        // the guest's from here on.
        unsafe { crate::arch::cpu::write_cr2(cr2) };
    }
    let mut info = u64::from(e.vector) | (3 << 8) | (1 << 31);
    if let Some(code) = e.error_code {
        info |= 1 << 11;
        v.write(F::VmEntryExceptionErrorCode, u64::from(code));
    }
    v.write(F::VmEntryInterruptionInfo, info);
}
