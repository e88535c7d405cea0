//! Exit handling for L0's guest: each exit is snapshotted as an [`ExitInfo`], dispatched by
//! reason to a handler in this directory, and answered with an [`Action`] for the run loop.
//! An unknown reason stops the guest with a state dump; it never panics L0.

pub mod cpuid;
mod cr;
mod fault;
mod io;
mod mmio;
mod msr;
mod simple;

pub use msr::L2_PASSTHROUGH;

use nested::exits::{ExitInfo, ExitReason};
use nested::guest::Gpr;
use nested::vmcs::{Vmcs, VmcsField as F};

use super::hw_vmcs::HwVmcs;
use super::run::Guest;

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

/// Handles one exit.
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
        ExitReason::Cpuid => cpuid::handle(g),
        ExitReason::IoInstruction => io::handle(g, info),
        ExitReason::Rdmsr => msr::rdmsr(g, v),
        ExitReason::Wrmsr => msr::wrmsr(g, v),
        ExitReason::CrAccess => cr::handle(g, v, info),
        ExitReason::Hlt => simple::hlt(g, v),
        // L0 asked for it to inject an interrupt (interrupts::before_l1_entry).
        ExitReason::InterruptWindow => Action::Resume,
        ExitReason::ExternalInterrupt => simple::external_interrupt(info),
        ExitReason::ExceptionOrNmi => simple::exception_or_nmi(v, g, info),
        ExitReason::PreemptionTimer if g.irq.timer_was_apic() => Action::Resume,
        ExitReason::PreemptionTimer => g.watchdog.expired(),
        ExitReason::TripleFault => fault::triple_fault(v, g),
        ExitReason::EptViolation => match mmio::lapic(g, v, info) {
            Some(action) => action,
            None => fault::ept(v, g, info),
        },
        ExitReason::EptMisconfig => fault::ept(v, g, info),
        r if is_vmx_instruction(r) || r == ExitReason::Vmfunc => simple::vmx_instruction(v, r),
        ExitReason::Mwait | ExitReason::Monitor => Action::Inject(UD, None),
        ExitReason::Xsetbv => simple::xsetbv(g),
        ExitReason::InitSignal | ExitReason::StartupIpi => Action::Resume,
        _ => fault::unknown(v, g, info),
    }
}

/// A guest general-purpose register by its encoding number (SDM Table 28-3: 0 RAX, 1 RCX,
/// 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15). RSP lives in the VMCS.
pub fn gpr(g: &Guest, v: &HwVmcs, n: u64) -> u64 {
    g.regs.get(Gpr::from_index(n as u32)).unwrap_or_else(|| v.read(F::GuestRsp))
}

/// Writes a guest general-purpose register by encoding number.
pub fn set_gpr(g: &mut Guest, v: &mut HwVmcs, n: u64, value: u64) {
    match g.regs.slot(Gpr::from_index(n as u32)) {
        Some(slot) => *slot = value,
        None => v.write(F::GuestRsp, value),
    }
}

/// True for the exit reasons of VMX instructions (SDM Appendix C): #UD while nesting is off,
/// emulated for L1 when it is on.
pub fn is_vmx_instruction(reason: ExitReason) -> bool {
    matches!(
        reason,
        ExitReason::Vmcall
            | ExitReason::Vmclear
            | ExitReason::Vmlaunch
            | ExitReason::Vmptrld
            | ExitReason::Vmptrst
            | ExitReason::Vmread
            | ExitReason::Vmresume
            | ExitReason::Vmwrite
            | ExitReason::Vmxoff
            | ExitReason::Vmxon
            | ExitReason::Invept
            | ExitReason::Invvpid
    )
}

/// Logs the guest's state: for every exit that stops a guest.
pub fn dump(v: &HwVmcs, g: &Guest) {
    let r = &g.regs;
    log::error!(
        "guest state: rip={:#x} rsp={:#x} rflags={:#x} cr0={:#x} (shadow {:#x}) cr3={:#x} \
         cr4={:#x} (shadow {:#x}) efer={:#x}",
        v.read(F::GuestRip),
        v.read(F::GuestRsp),
        v.read(F::GuestRflags),
        v.read(F::GuestCr0),
        v.read(F::Cr0ReadShadow),
        v.read(F::GuestCr3),
        v.read(F::GuestCr4),
        v.read(F::Cr4ReadShadow),
        v.read(F::GuestIa32Efer)
    );
    log::error!(
        "guest state: cs={:#x} base={:#x} ar={:#x} ss={:#x} ar={:#x} tr-ar={:#x} \
         interruptibility={:#x} activity={} entry-controls={:#x}",
        v.read(F::GuestCsSelector),
        v.read(F::GuestCsBase),
        v.read(F::GuestCsArBytes),
        v.read(F::GuestSsSelector),
        v.read(F::GuestSsArBytes),
        v.read(F::GuestTrArBytes),
        v.read(F::GuestInterruptibilityInfo),
        v.read(F::GuestActivityState),
        v.read(F::VmEntryControls)
    );
    log::error!(
        "guest regs: rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        r.rbp
    );
}
