//! What the run loop does after an exit ([`Action`]), how a guest ends ([`GuestEnd`]), and
//! the VMCS updates that carry an action out: retiring the exiting instruction and injecting
//! an exception (SDM Vol. 3C 25.4.2, 26.6).

use nested::arch::{pending_after_emulation, rflags};
use nested::exits::ExitInfo;
use nested::vmcs::{Vmcs, VmcsField as F};

use crate::arch::vmcs::HwVmcs;

/// Exception vectors L0 injects.
pub const UD: u8 = 6;
pub const GP: u8 = 13;

/// What the run loop does after an exit.
#[derive(Debug)]
pub enum Action {
    /// Re-enter the guest at the same RIP.
    Resume,
    /// Re-enter after the exiting instruction (RIP += instruction length).
    Skip,
    /// Inject a hardware exception (vector, error code) and re-enter; RIP stays at the
    /// faulting instruction.
    Inject(u8, Option<u32>),
    /// The guest is done.
    Stop(GuestEnd),
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

/// Injects a hardware exception on the next entry (SDM 26.6: interruption type 3).
pub fn inject(v: &mut HwVmcs, vector: u8, error_code: Option<u32>) {
    let mut info = u64::from(vector) | (3 << 8) | (1 << 31);
    if let Some(code) = error_code {
        info |= 1 << 11;
        v.write(F::VmEntryExceptionErrorCode, u64::from(code));
    }
    v.write(F::VmEntryInterruptionInfo, info);
}
