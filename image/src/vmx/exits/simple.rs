//! Small exits: HLT, external interrupts, NMIs, VMX instructions while nesting is off.

use nested::arch::rflags;
use nested::caps::proc1;
use nested::exits::{ExitInfo, ExitReason};
use nested::vmcs::{Vmcs, VmcsField as F};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::guest::Guest;
use nested::vmx::Exception;

static INTERRUPTS: RateLimit = RateLimit::new(8);
static VMX_INSNS: RateLimit = RateLimit::new(8);

/// HLT (exit reason 12). With interrupts enabled the guest sleeps until its local APIC has an
/// interrupt for it ([`interrupts::halt`](crate::vmx::interrupts::halt)), which the next entry
/// injects. With interrupts disabled nothing L0 models can wake it (no NMI or INIT sources):
/// the guest is stopped.
pub fn hlt(g: &mut Guest, v: &HwVmcs) -> Action {
    if v.read(F::GuestRflags) & rflags::IF == 0 {
        log::warn!("guest executed HLT with interrupts disabled: it can never wake up");
        return Action::Stop(GuestEnd::Failed("HLT with interrupts disabled"));
    }
    crate::vmx::interrupts::halt(g);
    Action::Skip
}

/// NMI window (exit reason 8): L0 asked for it to deliver a blocked NMI
/// (`interrupts::before_l1_entry`), which the entry now injects; the control is cleared.
#[cold]
pub fn nmi_window(v: &mut HwVmcs) -> Action {
    crate::vmx::interrupts::set_primary(v, proc1::NMI_WINDOW_EXITING, false);
    Action::Resume
}

/// External interrupt (exit reason 1), acknowledged on exit: the assigned function's
/// forwarded INTx ([`crate::vmx::intx`]) goes to the guest; L0 masks its PICs and enables no
/// other interrupt source, so anything else is unexpected: it is acknowledged and logged.
pub fn external_interrupt(g: &mut Guest, info: &ExitInfo) -> Action {
    let vector = info.intr_info & 0xff;
    if crate::vmx::intx::host_interrupt(g, vector as u8) {
        return Action::Resume;
    }
    if INTERRUPTS.allow() {
        log::warn!("external interrupt vector {vector} while the guest ran: acknowledged");
    }
    // SAFETY: EOI to both 8259s is harmless when they are masked or idle.
    unsafe {
        cpu::outb(0xa0, 0x20);
        cpu::outb(0x20, 0x20);
    }
    Action::Resume
}

/// Exception or NMI (exit reason 0). The exception bitmap is empty, so only NMIs arrive: they
/// belong to the guest and are delivered to it as an NMI (interruption type 2, which blocks
/// further NMIs until IRET) when it can take one (`interrupts::before_l1_entry`).
pub fn exception_or_nmi(v: &HwVmcs, g: &mut Guest, info: &ExitInfo) -> Action {
    let kind = (info.intr_info >> 8) & 7;
    let vector = (info.intr_info & 0xff) as u8;
    if kind == 2 {
        g.irq.nmi = true;
        g.irq.armed = true;
        return Action::Resume;
    }
    log::error!("unexpected exception {vector} intercepted (the exception bitmap is empty)");
    crate::vmx::guest::dump(v, g);
    Action::Stop(GuestEnd::Failed("unexpected intercepted exception"))
}

/// A VMX instruction: VMX is not offered to this guest (CPUID.1:ECX.VMX is clear), so the
/// processor it sees would raise #UD.
pub fn vmx_instruction(v: &HwVmcs, reason: ExitReason) -> Action {
    if VMX_INSNS.allow() {
        log::warn!(
            "guest executed {reason:?} at rip {:#x} but VMX is not exposed: injecting #UD",
            v.read(F::GuestRip)
        );
    }
    Action::raise(Exception::UD)
}
