//! Control-register accesses (exit reason 28; qualification SDM Table 28-3). Only writes that
//! change a bit L0 owns (CR0/CR4 guest/host masks) or forced CR3/CR8 exits land here. The
//! guest's view is kept in the read shadow, the real register gets VMX's fixed bits.

use nested::arch::{cr0, cr4, efer};
use nested::caps::entry;
use nested::exits::ExitInfo;
use nested::vmcs::{Vmcs, VmcsField as F};

use crate::ratelimit::RateLimit;
use crate::vmx::action::Action;
use crate::vmx::guest::{gpr, set_gpr};
use nested::vmx::Exception;

static REFUSED: RateLimit = RateLimit::new(8);

/// #GP(0) for a control-register write the processor would refuse, with a log line.
fn refuse(cr: u32, value: u64, why: &str) -> Action {
    if REFUSED.allow() {
        log::warn!("guest MOV to CR{cr} of {value:#x} refused ({why}): injecting #GP(0)");
    }
    Action::raise(Exception::GP0)
}
use crate::arch::vmcs::HwVmcs;
use crate::vmx::guest::Guest;
use crate::vmx::setup::{real_cr0, real_cr4};

const ENTRY_IA32E_MODE: u64 = entry::IA32E_MODE_GUEST as u64;

/// The guest's view of CR0 or CR4: its own bits from the register, the bits L0 owns (the
/// guest/host mask) from the read shadow (SDM 25.6.6).
fn guest_view(v: &HwVmcs, real: F, shadow: F, mask: F) -> u64 {
    let mask = v.read(mask);
    (v.read(real) & !mask) | (v.read(shadow) & mask)
}

/// The guest's CR4 as it believes it is: the bits it owns from the VMCS, the rest from the
/// read shadow.
pub fn guest_cr4(v: &HwVmcs) -> u64 {
    guest_view(v, F::GuestCr4, F::Cr4ReadShadow, F::Cr4GuestHostMask)
}

pub fn handle(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Action {
    let q = info.qualification;
    let cr = q & 15;
    let access = (q >> 4) & 3;
    let reg = (q >> 8) & 15;
    match (access, cr) {
        (0, 0) => mov_to_cr0(g, v, gpr(g, v, reg)),
        (0, 4) => mov_to_cr4(g, v, gpr(g, v, reg)),
        (0, 3) => {
            let value = gpr(g, v, reg);
            v.write(F::GuestCr3, value);
            Action::Skip
        }
        (1, 3) => {
            let value = v.read(F::GuestCr3);
            set_gpr(g, v, reg, value);
            Action::Skip
        }
        // CR8 is the guest's local APIC's TPR bits 7:4 (the model's, never the processor's,
        // which L0's own interrupts go through). CR8 exists only in 64-bit mode: operands
        // are 64-bit.
        (0, 8) => {
            let value = gpr(g, v, reg);
            match g.devices.with_lapic(|lapic| lapic.set_cr8(value)) {
                Ok(()) => Action::Skip,
                Err(_) => refuse(8, value, "reserved bits 63:4"),
            }
        }
        (1, 8) => {
            let value = g.devices.lapic().cr8();
            set_gpr(g, v, reg, value);
            Action::Skip
        }
        // CLTS and LMSW touch only bits L0 does not own; they cannot exit here.
        _ => Action::raise(Exception::GP0),
    }
}

/// L1's VMX capabilities while it is in VMX operation (after its VMXON): the CR0 and CR4
/// bits they fix cannot be changed then, a write that would is #GP(0) (SDM Vol. 3C 24.8).
fn in_vmx_operation(g: &Guest) -> Option<&nested::caps::VmxCaps> {
    g.nested.as_ref().filter(|n| n.vmx.vmxon).map(|n| &n.vmx.caps)
}

/// MOV to CR0 with the checks of the instruction reference (#GP for PG without PE, NW
/// without CD, reserved high bits) and the IA-32e mode switch the processor would do.
fn mov_to_cr0(g: &mut Guest, v: &mut HwVmcs, value: u64) -> Action {
    if value >> 32 != 0 || (value & cr0::PG != 0 && value & cr0::PE == 0) {
        return refuse(0, value, "reserved bits, or PG without PE");
    }
    if value & cr0::NW != 0 && value & cr0::CD == 0 {
        return refuse(0, value, "NW without CD");
    }
    if in_vmx_operation(g).is_some_and(|caps| !caps.cr0_fixed().verify(value)) {
        return refuse(0, value, "a bit fixed in VMX operation");
    }
    let old = guest_view(v, F::GuestCr0, F::Cr0ReadShadow, F::Cr0GuestHostMask);
    let efer = v.read(F::GuestIa32Efer);
    if value & cr0::PG != 0 && old & cr0::PG == 0 && efer & efer::LME != 0 {
        if guest_view(v, F::GuestCr4, F::Cr4ReadShadow, F::Cr4GuestHostMask) & cr4::PAE == 0 {
            return refuse(0, value, "long mode without PAE");
        }
        v.write(F::GuestIa32Efer, efer | efer::LMA);
        let entry = v.read(F::VmEntryControls);
        v.write(F::VmEntryControls, entry | ENTRY_IA32E_MODE);
    } else if value & cr0::PG == 0 && old & cr0::PG != 0 && efer & efer::LMA != 0 {
        v.write(F::GuestIa32Efer, efer & !efer::LMA);
        let entry = v.read(F::VmEntryControls);
        v.write(F::VmEntryControls, entry & !ENTRY_IA32E_MODE);
    }
    v.write(F::Cr0ReadShadow, value);
    v.write(F::GuestCr0, real_cr0(&g.caps, value));
    Action::Skip
}

/// MOV to CR4: VMXE is allowed only when VMX is exposed (the real CR4 always has it; the
/// guest sees its own value in the shadow); bits the processor lacks fault.
fn mov_to_cr4(g: &mut Guest, v: &mut HwVmcs, value: u64) -> Action {
    let fixed1 = g.caps.cr4_fixed().fixed1;
    let vmxe_ok = g.nested.is_some();
    if value & cr4::VMXE != 0 && !vmxe_ok {
        return refuse(4, value, "VMX is not exposed to this guest");
    }
    if value & !(fixed1 | cr4::VMXE) != 0 {
        return refuse(4, value, "bits the processor does not support");
    }
    if in_vmx_operation(g).is_some_and(|caps| !caps.cr4_fixed().verify(value)) {
        return refuse(4, value, "a bit fixed in VMX operation (CR4.VMXE after VMXON)");
    }
    v.write(F::Cr4ReadShadow, value);
    v.write(F::GuestCr4, real_cr4(&g.caps, value));
    Action::Skip
}
