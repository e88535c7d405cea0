//! VMX bring-up (SDM Vol. 3C 24.7, 24.8, 24.11.5): why L0 cannot use VMX ([`VmxError`]), the
//! zeroed frames VMX structures live in, and VMXON.

use core::fmt;

use nested::arch::cr4;
use nested::caps::feature_control::{LOCK, VMX_OUTSIDE_SMX};
use nested::caps::{VmxCaps, msr};
use nested::vmcs01::MissingCapability;
use x86_64::registers::control::{Cr0, Cr4};

use crate::arch::cpu;
use crate::arch::vmx::{self as insn, VmFail};
use crate::mm::frames;

/// Why L0 cannot use VMX.
#[derive(Debug)]
pub enum VmxError {
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled (firmware setting).
    LockedOff,
    /// A control L0 needs is missing.
    Missing(MissingCapability),
    /// No memory for VMX structures or guest RAM.
    NoMemory(&'static str),
    /// A VMX instruction failed during set-up.
    Instruction(&'static str, VmFail),
    /// The guest's physical layout cannot be built as asked (assigned devices, 1:1 RAM).
    Layout(&'static str),
}

impl fmt::Display for VmxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmxError::LockedOff => f.write_str(
                "IA32_FEATURE_CONTROL is locked with VMX disabled: enable VT-x in the firmware",
            ),
            VmxError::Missing(m) => write!(f, "{m}"),
            VmxError::NoMemory(what) => write!(f, "out of memory for {what}"),
            VmxError::Instruction(what, e) => write!(f, "{what} failed: {e}"),
            VmxError::Layout(what) => write!(f, "guest layout: {what}"),
        }
    }
}

/// Allocates one zeroed 4 KiB frame.
pub fn zeroed_frame(what: &'static str) -> Result<u64, VmxError> {
    let frame = frames::alloc(4096, 4096).ok_or(VmxError::NoMemory(what))?;
    // SAFETY: a fresh, identity-mapped frame that is ours.
    unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
    Ok(frame)
}

/// Enters VMX root operation (SDM Vol. 3C 24.7, 24.8): enables VMX in IA32_FEATURE_CONTROL if
/// it is unlocked, applies the fixed CR0/CR4 bits and executes VMXON.
pub fn enable(caps: &VmxCaps) -> Result<(), VmxError> {
    let control = cpu::rdmsr(msr::IA32_FEATURE_CONTROL);
    if control & LOCK != 0 && control & VMX_OUTSIDE_SMX == 0 {
        return Err(VmxError::LockedOff);
    }
    if control & LOCK == 0 {
        // SAFETY: setting the lock with VMX enabled is what firmware would do; the MSR exists
        // because CPUID reports VMX.
        unsafe { cpu::wrmsr(msr::IA32_FEATURE_CONTROL, control | LOCK | VMX_OUTSIDE_SMX) };
    }
    let cr0 = caps.cr0_fixed().adjust(Cr0::read_raw());
    let cr4 = caps.cr4_fixed().adjust(Cr4::read_raw() | cr4::VMXE);
    // SAFETY: the fixed bits VMX requires (NE, PE, PG in CR0; VMXE in CR4) leave paging and
    // protection as they are: PE and PG are already set in long mode.
    unsafe {
        Cr0::write_raw(cr0);
        Cr4::write_raw(cr4);
    }
    let region = zeroed_frame("the VMXON region")?;
    // SAFETY: the first 4 bytes of the VMXON region hold the revision identifier (24.11.5).
    unsafe { (region as *mut u32).write(caps.revision_id()) };
    // SAFETY: CR4.VMXE is set, CR0/CR4 satisfy the fixed bits, the feature control MSR allows
    // VMX and the region is a fresh frame that stays allocated.
    unsafe { insn::vmxon(region) }.map_err(|e| VmxError::Instruction("VMXON", e))?;
    log::info!("vmx: VMXON done (region {region:#x}, revision {:#x})", caps.revision_id());
    Ok(())
}
