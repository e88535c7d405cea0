//! vmcs01: L0's VMCS for its guest (SDM Vol. 3C ch. 25). Host state is L0's own, guest state
//! is the boot protocol's entry state (32-bit protected mode, paging off: possible with
//! unrestricted guest, 26.3.1.1), controls come from [`nested::vmcs01::choose`].

use nested::arch::{cr0, cr4};
use nested::caps::{VmxCaps, msr, proc2};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmcs01::Vmcs01Controls;
use x86_64::registers::control::{Cr0, Cr4};

use super::vmxon::{VmxError, zeroed_frame};
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::{self as insn, turtles_vm_exit};
use crate::arch::{cpu, gdt, idt};

const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

/// The VPID L0 gives its (single) guest.
pub const GUEST_VPID: u16 = 1;

/// Bits of CR0 and CR4 the guest may not own: those VMX fixes (except PE and PG, free with
/// unrestricted guest) and those the processor does not support. Writes that change them exit
/// (SDM 25.6.6) and are emulated; reads see the shadow.
pub fn cr_masks(caps: &VmxCaps) -> (u64, u64) {
    let cr0 = caps.cr0_fixed();
    let cr4 = caps.cr4_fixed();
    let cr0_mask = (cr0.fixed0 & !(cr0::PE | cr0::PG)) | (!cr0.fixed1 & 0xffff_ffff);
    let cr4_mask = cr4.fixed0 | !cr4.fixed1;
    (cr0_mask, cr4_mask)
}

/// The real CR0 for a guest value: the guest's bits plus VMX's fixed ones.
pub fn real_cr0(caps: &VmxCaps, guest: u64) -> u64 {
    let fixed = caps.cr0_fixed();
    (guest | (fixed.fixed0 & !(cr0::PE | cr0::PG))) & fixed.fixed1
}

/// The real CR4 for a guest value.
pub fn real_cr4(caps: &VmxCaps, guest: u64) -> u64 {
    caps.cr4_fixed().adjust(guest)
}

/// Creates vmcs01, makes it current and fills every field.
pub fn create(
    caps: &VmxCaps,
    controls: &Vmcs01Controls,
    eptp: u64,
    entry: u64,
    preemption_timer: u32,
) -> Result<u64, VmxError> {
    let vmcs = zeroed_frame("vmcs01")?;
    // SAFETY: the revision identifier goes in the first 4 bytes of a fresh VMCS region.
    unsafe { (vmcs as *mut u32).write(caps.revision_id()) };
    // SAFETY: in VMX root operation (after `enable`); the region is ours.
    unsafe { insn::vmclear(vmcs) }.map_err(|e| VmxError::Instruction("VMCLEAR vmcs01", e))?;
    // SAFETY: as above.
    unsafe { insn::vmptrld(vmcs) }.map_err(|e| VmxError::Instruction("VMPTRLD vmcs01", e))?;
    // SAFETY: vmcs01 was just made current and stays current in the run loop.
    let mut v = unsafe { HwVmcs::current() };
    host_state(&mut v);
    guest_state(&mut v, caps, entry);
    v.write(F::PinBasedVmExecControl, u64::from(controls.pin));
    v.write(F::CpuBasedVmExecControl, u64::from(controls.primary));
    v.write(F::SecondaryVmExecControl, u64::from(controls.secondary));
    v.write(F::VmExitControls, u64::from(controls.exit));
    v.write(F::VmEntryControls, u64::from(controls.entry));
    for f in [
        F::ExceptionBitmap,
        F::PageFaultErrorCodeMask,
        F::PageFaultErrorCodeMatch,
        F::Cr3TargetCount,
        F::VmExitMsrStoreCount,
        F::VmExitMsrLoadCount,
        F::VmEntryMsrLoadCount,
        F::VmEntryInterruptionInfo,
        F::TscOffset,
    ] {
        v.write(f, 0);
    }
    let (cr0_mask, cr4_mask) = cr_masks(caps);
    v.write(F::Cr0GuestHostMask, cr0_mask);
    v.write(F::Cr4GuestHostMask, cr4_mask);
    v.write(F::EptPointer, eptp);
    if controls.secondary & proc2::ENABLE_VPID != 0 {
        v.write(F::VirtualProcessorId, u64::from(GUEST_VPID));
    }
    v.write(F::VmxPreemptionTimerValue, u64::from(preemption_timer));
    Ok(vmcs)
}

/// L0's own state as the host state of a VMCS (vmcs01 and vmcs02 alike).
pub fn host_state(v: &mut HwVmcs) {
    let (tr, tss_base) = gdt::tss();
    v.write(F::HostCr0, Cr0::read_raw());
    v.write(F::HostCr3, cpu::cr3());
    v.write(F::HostCr4, Cr4::read_raw());
    v.write(F::HostCsSelector, u64::from(gdt::code_selector().0));
    for f in [F::HostSsSelector, F::HostDsSelector, F::HostEsSelector] {
        v.write(f, u64::from(gdt::data_selector().0));
    }
    v.write(F::HostFsSelector, 0);
    v.write(F::HostGsSelector, 0);
    v.write(F::HostTrSelector, u64::from(tr.0));
    v.write(F::HostFsBase, 0);
    v.write(F::HostGsBase, 0);
    v.write(F::HostTrBase, tss_base);
    v.write(F::HostGdtrBase, gdt::gdt_base());
    v.write(F::HostIdtrBase, idt::idt_base());
    v.write(F::HostIa32SysenterCs, 0);
    v.write(F::HostIa32SysenterEsp, 0);
    v.write(F::HostIa32SysenterEip, 0);
    v.write(F::HostIa32Efer, cpu::rdmsr(msr::IA32_EFER));
    v.write(F::HostIa32Pat, cpu::rdmsr(msr::IA32_PAT));
    v.write(F::HostRip, turtles_vm_exit as *const () as u64);
}

/// The entry state of the multiboot, PVH and Linux 32-bit protocols: flat 32-bit code and
/// data segments, CR0.PE set and paging off, EFLAGS with only bit 1 (interrupts off), EIP at
/// the entry point.
fn guest_state(v: &mut HwVmcs, caps: &VmxCaps, entry: u64) {
    let cr0 = cr0::PE | cr0::ET;
    v.write(F::GuestCr0, real_cr0(caps, cr0));
    v.write(F::Cr0ReadShadow, cr0);
    v.write(F::GuestCr4, real_cr4(caps, 0));
    v.write(F::Cr4ReadShadow, 0);
    debug_assert_eq!(real_cr4(caps, 0) & cr4::VMXE, cr4::VMXE);
    v.write(F::GuestCr3, 0);
    v.write(F::GuestDr7, 0x400);
    v.write(F::GuestRsp, 0);
    v.write(F::GuestRip, entry);
    v.write(F::GuestRflags, 0x2);
    let segments = [
        (F::GuestCsSelector, F::GuestCsBase, F::GuestCsLimit, F::GuestCsArBytes, 0x08, 0xc09b),
        (F::GuestSsSelector, F::GuestSsBase, F::GuestSsLimit, F::GuestSsArBytes, 0x10, 0xc093),
        (F::GuestDsSelector, F::GuestDsBase, F::GuestDsLimit, F::GuestDsArBytes, 0x10, 0xc093),
        (F::GuestEsSelector, F::GuestEsBase, F::GuestEsLimit, F::GuestEsArBytes, 0x10, 0xc093),
        (F::GuestFsSelector, F::GuestFsBase, F::GuestFsLimit, F::GuestFsArBytes, 0x10, 0xc093),
        (F::GuestGsSelector, F::GuestGsBase, F::GuestGsLimit, F::GuestGsArBytes, 0x10, 0xc093),
    ];
    for (selector, base, limit, access, sel, ar) in segments {
        v.write(selector, sel);
        v.write(base, 0);
        v.write(limit, 0xffff_ffff);
        v.write(access, ar);
    }
    // TR: a busy 32-bit TSS at 0 (must be usable, 26.3.1.2); LDTR unusable.
    v.write(F::GuestTrSelector, 0);
    v.write(F::GuestTrBase, 0);
    v.write(F::GuestTrLimit, 0xffff);
    v.write(F::GuestTrArBytes, 0x8b);
    v.write(F::GuestLdtrSelector, 0);
    v.write(F::GuestLdtrBase, 0);
    v.write(F::GuestLdtrLimit, 0);
    v.write(F::GuestLdtrArBytes, 1 << 16);
    for (base, limit) in
        [(F::GuestGdtrBase, F::GuestGdtrLimit), (F::GuestIdtrBase, F::GuestIdtrLimit)]
    {
        v.write(base, 0);
        v.write(limit, 0xffff);
    }
    v.write(F::GuestIa32Efer, 0);
    v.write(F::GuestIa32Pat, PAT_DEFAULT);
    v.write(F::GuestIa32Debugctl, 0);
    v.write(F::GuestSysenterCs, 0);
    v.write(F::GuestSysenterEsp, 0);
    v.write(F::GuestSysenterEip, 0);
    v.write(F::VmcsLinkPointer, u64::MAX);
    v.write(F::GuestInterruptibilityInfo, 0);
    v.write(F::GuestActivityState, 0);
    v.write(F::GuestPendingDebugExceptions, 0);
}
