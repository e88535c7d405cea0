//! Exits that end a guest: triple fault, VM-entry failure, EPT violations outside guest
//! memory, and unknown reasons. Each logs the cause and the guest state; L0 keeps running.

use nested::exits::ExitInfo;
use nested::vmcs::{Vmcs, VmcsField as F};

use crate::arch::vmcs::HwVmcs;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::guest::Guest;
use crate::vmx::guest::dump;

pub fn triple_fault(v: &HwVmcs, g: &Guest) -> Action {
    log::error!("guest triple fault: stopping the guest");
    dump(v, g);
    Action::Stop(GuestEnd::Failed("triple fault"))
}

/// VM-entry failure (exit reasons 33, 34, 41 with bit 31 set; SDM 27.8).
pub fn entry_failure(v: &HwVmcs, g: &Guest, info: &ExitInfo) -> Action {
    let what = match info.basic() {
        33 => "invalid guest state",
        34 => "MSR loading",
        41 => "machine-check event",
        _ => "unknown cause",
    };
    log::error!(
        "VM entry failed: {what} (reason {:#x}, qualification {:#x})",
        info.reason,
        info.qualification
    );
    dump(v, g);
    Action::Stop(GuestEnd::Failed("VM-entry failure"))
}

/// EPT violation or misconfiguration (48, 49; qualification SDM Table 28-7). EPT01 maps all of
/// guest RAM, so any violation is an access outside it (MMIO nobody emulates, or a wild
/// pointer): the guest is stopped.
pub fn ept(v: &HwVmcs, g: &Guest, info: &ExitInfo) -> Action {
    let q = info.qualification;
    let access = match (q & 1 != 0, q & 2 != 0, q & 4 != 0) {
        (_, true, _) => "write",
        (_, _, true) => "instruction fetch",
        _ => "read",
    };
    log::error!(
        "guest {access} at guest-physical {:#x} is outside its {} MiB of memory \
         (EPT {}, qualification {:#x}, linear {:#x}, rip {:#x})",
        info.guest_physical_address,
        g.memory_mib,
        if info.basic() == 48 { "violation" } else { "misconfiguration" },
        q,
        info.guest_linear_address,
        v.read(F::GuestRip)
    );
    dump(v, g);
    Action::Stop(GuestEnd::Failed("access outside guest memory"))
}

pub fn unknown(v: &HwVmcs, g: &Guest, info: &ExitInfo) -> Action {
    log::error!(
        "unhandled VM exit: reason {:#x} (basic {}), qualification {:#x}",
        info.reason,
        info.basic(),
        info.qualification
    );
    dump(v, g);
    Action::Stop(GuestEnd::Failed("unhandled VM exit"))
}
