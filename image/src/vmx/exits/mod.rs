//! Exit handling for L0's guest: each exit is snapshotted as an [`ExitInfo`], dispatched by
//! reason to a handler in this directory, and answered with an [`Action`] for the run loop.
//! An unknown reason stops the guest with a state dump; it never panics L0. This file only
//! dispatches: what the handlers share ([`Action`], [`Guest`], register access) lives below
//! them, in `vmx/action.rs` and `vmx/guest.rs`.

pub mod cpuid;
mod cr;
mod fault;
pub mod io;
pub mod mark;
mod mmio;
pub mod msr;
mod simple;

pub use mmio::{l2_device, unbacked_fetch};
pub use msr::L2_PASSTHROUGH;

use nested::exits::{ExitInfo, ExitReason};

use super::action::Action;
use super::guest::Guest;
use crate::arch::vmcs::HwVmcs;
use nested::vmx::Exception;

/// Handles one exit (inlined into the run loop, its only caller: no call, no `Action`
/// through memory on the exit path).
#[inline(always)]
pub fn handle(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Action {
    if info.is_entry_failure() {
        return fault::entry_failure(v, g, info);
    }
    let Some(reason) = info.exit_reason() else {
        return fault::unknown(v, g, info);
    };
    if reason != ExitReason::PreemptionTimer {
        g.watchdog.other_exit();
    }
    match reason {
        ExitReason::Cpuid => cpuid::handle(g, v),
        ExitReason::IoInstruction => io::handle(g, v, info),
        ExitReason::Rdmsr => msr::rdmsr(g, v),
        ExitReason::Wrmsr => msr::wrmsr(g, v),
        ExitReason::CrAccess => cr::handle(g, v, info),
        ExitReason::Hlt => simple::hlt(g, v),
        // L0 asked for it to inject an interrupt (interrupts::before_l1_entry).
        ExitReason::InterruptWindow => Action::Resume,
        ExitReason::NmiWindow => simple::nmi_window(v),
        ExitReason::ExternalInterrupt => simple::external_interrupt(g, info),
        ExitReason::ExceptionOrNmi => simple::exception_or_nmi(v, g, info),
        ExitReason::PreemptionTimer if g.irq.timer_was_apic() => {
            g.watchdog.deadline(crate::arch::cpu::rdtsc())
        }
        ExitReason::PreemptionTimer => g.watchdog.expired(crate::arch::cpu::rdtsc()),
        ExitReason::TripleFault => fault::triple_fault(v, g),
        ExitReason::EptViolation => match mmio::device(g, v, info) {
            Some(action) => action,
            None => match mmio::unbacked_fetch(g, v, info.guest_physical_address, info) {
                Some(action) => action,
                None => fault::ept(v, g, info),
            },
        },
        ExitReason::EptMisconfig => fault::ept(v, g, info),
        r if r.is_vmx_instruction() || r == ExitReason::Vmfunc => simple::vmx_instruction(v, r),
        ExitReason::Mwait | ExitReason::Monitor => Action::raise(Exception::UD),
        ExitReason::Xsetbv => cpuid::xsetbv(g),
        ExitReason::InitSignal | ExitReason::StartupIpi => Action::Resume,
        _ => fault::unknown(v, g, info),
    }
}
