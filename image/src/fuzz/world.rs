//! The fuzzer's own memory and the valid vmcs12 every mutation starts from: the VMXON region,
//! three VMCS regions, a junk page (a wrong revision), the VM-entry MSR-load area, EPT12
//! (four levels mapping L2's 2 MiB to a block of ours with 4 KiB pages, SDM Vol. 3C 29.3) and
//! L2's memory block. Everything lives in fixed frames allocated once and rewritten per program.

use nested::caps::{VmxCaps, pin, proc2};
use nested::vmcs::VmcsField as F;
use nested::vmcs01::Vmcs01Controls;
use x86_64::registers::control::{Cr0, Cr4};

use super::l2::{self, Snippet};
use super::rng::Rng;
use crate::arch::vmx_probe::{self as insn, Outcome};
use crate::arch::{cpu, gdt, idt};
use crate::mm::frames;
use crate::vmx::setup;

pub const VMCS_REGIONS: usize = 3;
/// An L1-physical address inside MAXPHYADDR but outside the memory L0 gives us (64 MiB).
pub const BEYOND_RAM: u64 = 0x4000_0000;
const EPT_RWX: u64 = 0b111;
const EPT_WB: u64 = 6 << 3;
const PAT_DEFAULT: u64 = 0x0007_0406_0007_0406;

pub struct World {
    pub caps: VmxCaps,
    pub controls: Vmcs01Controls,
    pub maxphyaddr: u8,
    pub vmxon: u64,
    pub vmcs: [u64; VMCS_REGIONS],
    pub junk: u64,
    pub msr_area: u64,
    /// EPT12: PML4, PDPT, PD, PT.
    pub ept: [u64; 4],
    /// L2's memory (2 MiB, 2 MiB-aligned).
    pub block: u64,
}

fn frame(bytes: u64) -> Option<u64> {
    let f = frames::alloc(bytes, bytes.max(4096))?;
    // SAFETY: a fresh, identity-mapped allocation that is ours.
    unsafe { core::ptr::write_bytes(f as *mut u8, 0, bytes as usize) };
    Some(f)
}

/// Writes `value` at physical address `at` (ours, identity-mapped).
pub fn poke(at: u64, value: u64) {
    // SAFETY: callers only name addresses inside the frames of a `World`.
    unsafe { (at as *mut u64).write_volatile(value) };
}

impl World {
    pub fn new(caps: VmxCaps, controls: Vmcs01Controls, maxphyaddr: u8) -> Option<Self> {
        let mut vmcs = [0; VMCS_REGIONS];
        for v in &mut vmcs {
            *v = frame(4096)?;
        }
        let ept = [frame(4096)?, frame(4096)?, frame(4096)?, frame(4096)?];
        Some(World {
            caps,
            controls,
            maxphyaddr,
            vmxon: frame(4096)?,
            vmcs,
            junk: frame(4096)?,
            msr_area: frame(4096)?,
            ept,
            block: frame(l2::MAPPED_BYTES)?,
        })
    }

    /// Fresh regions: zeroed, with the revision identifier (the junk page a wrong one).
    pub fn reset_regions(&self, rng: &mut Rng) {
        let rev = self.caps.revision_id();
        for &r in self.vmcs.iter().chain([&self.vmxon, &self.junk, &self.msr_area]) {
            // SAFETY: our own frames.
            unsafe { core::ptr::write_bytes(r as *mut u8, 0, 4096) };
        }
        for &r in self.vmcs.iter().chain([&self.vmxon]) {
            poke(r, u64::from(rev));
        }
        let wrong = match rng.below(3) {
            0 => rev ^ 1,
            1 => rev | 1 << 31,
            _ => (rng.next() as u32 & 0x7fff_ffff) | u32::from(rng.next() as u32 == rev),
        };
        poke(self.junk, u64::from(if wrong == rev { rev + 1 } else { wrong }));
    }

    /// EPT12 mapping L2's `[0, 2 MiB)` to the block, 4 KiB pages, RWX, write-back.
    pub fn build_ept(&self) {
        let [pml4, pdpt, pd, pt] = self.ept;
        for t in self.ept {
            // SAFETY: our own frames.
            unsafe { core::ptr::write_bytes(t as *mut u8, 0, 4096) };
        }
        poke(pml4, pdpt | EPT_RWX);
        poke(pdpt, pd | EPT_RWX);
        poke(pd, pt | EPT_RWX);
        for i in 0..512 {
            poke(pt + i * 8, (self.block + i * 4096) | EPT_RWX | EPT_WB);
        }
    }

    pub fn eptp(&self) -> u64 {
        self.ept[0] | 6 | (3 << 3)
    }

    /// L2's memory: zeroed IDT page, the snippet's code, zeroed data.
    pub fn load_l2(&self, s: &Snippet) {
        // SAFETY: the block is ours; the code fits in the code page.
        unsafe {
            core::ptr::write_bytes(self.block as *mut u8, 0, 3 * 4096);
            core::ptr::copy_nonoverlapping(
                s.code.as_ptr(),
                (self.block + l2::CODE_GPA) as *mut u8,
                s.len,
            );
        }
    }

    /// Fills the current VMCS with a valid vmcs12 running `s`: L1's own host state, L2 in
    /// flat 32-bit protected mode without paging (unrestricted guest) at the code page,
    /// controls chosen from the capability MSRs L0 offers. Returns the first VMWRITE that
    /// did not succeed.
    pub fn write_vmcs12(&self, rng: &mut Rng, timer: Option<u32>) -> Result<(), (F, Outcome)> {
        let w = |f: F, value: u64| match insn::vmwrite(u64::from(f.encoding()), value) {
            Outcome::Succeed => Ok(()),
            other => Err((f, other)),
        };
        let (tr, tss_base) = gdt::tss();
        let data = u64::from(gdt::data_selector().0);
        for (f, value) in [
            (F::HostCr0, Cr0::read_raw()),
            (F::HostCr3, cpu::cr3()),
            (F::HostCr4, Cr4::read_raw()),
            (F::HostCsSelector, u64::from(gdt::code_selector().0)),
            (F::HostSsSelector, data),
            (F::HostDsSelector, data),
            (F::HostEsSelector, data),
            (F::HostFsSelector, 0),
            (F::HostGsSelector, 0),
            (F::HostTrSelector, u64::from(tr.0)),
            (F::HostFsBase, 0),
            (F::HostGsBase, 0),
            (F::HostTrBase, tss_base),
            (F::HostGdtrBase, gdt::gdt_base()),
            (F::HostIdtrBase, idt::idt_base()),
            (F::HostIa32SysenterCs, 0),
            (F::HostIa32SysenterEsp, 0),
            (F::HostIa32SysenterEip, 0),
            (F::HostIa32Efer, cpu::rdmsr(0xc000_0080)),
            (F::HostIa32Pat, cpu::rdmsr(0x277)),
            (F::HostRip, insn::fuzz_vm_exit as *const () as u64),
        ] {
            w(f, value)?;
        }
        let caps = &self.caps;
        let c = &self.controls;
        let pin_value = match timer {
            Some(_) => c.pin | pin::PREEMPTION_TIMER,
            None => c.pin & !pin::PREEMPTION_TIMER,
        };
        let exception_bitmap = match rng.below(3) {
            0 => 0,
            1 => 1 << 6,
            _ => rng.next() & 0xffff_ffff,
        };
        let (cr0_mask, cr4_mask) = setup::cr_masks(caps);
        for (f, value) in [
            (F::PinBasedVmExecControl, u64::from(caps.pin().adjust(pin_value))),
            (F::CpuBasedVmExecControl, u64::from(c.primary)),
            (F::SecondaryVmExecControl, u64::from(c.secondary)),
            (F::VmExitControls, u64::from(c.exit)),
            (F::VmEntryControls, u64::from(c.entry)),
            (F::ExceptionBitmap, exception_bitmap),
            (F::PageFaultErrorCodeMask, 0),
            (F::PageFaultErrorCodeMatch, 0),
            (F::Cr3TargetCount, 0),
            (F::VmExitMsrStoreCount, 0),
            (F::VmExitMsrLoadCount, 0),
            (F::VmEntryMsrLoadCount, 0),
            (F::VmEntryInterruptionInfo, 0),
            (F::TscOffset, 0),
            (F::Cr0GuestHostMask, cr0_mask),
            (F::Cr4GuestHostMask, cr4_mask),
            (F::EptPointer, self.eptp()),
            (F::VmxPreemptionTimerValue, u64::from(timer.unwrap_or(0))),
        ] {
            w(f, value)?;
        }
        if c.secondary & proc2::ENABLE_VPID != 0 {
            w(F::VirtualProcessorId, 1 + rng.below(0xfffe))?;
        }
        let cr0 = 0x11; // PE | ET
        for (f, value) in [
            (F::GuestCr0, setup::real_cr0(caps, cr0)),
            (F::Cr0ReadShadow, cr0),
            (F::GuestCr4, setup::real_cr4(caps, 0)),
            (F::Cr4ReadShadow, 0),
            (F::GuestCr3, 0),
            (F::GuestDr7, 0x400),
            (F::GuestRsp, 0x8000),
            (F::GuestRip, l2::CODE_GPA),
            (F::GuestRflags, 0x2),
            (F::GuestTrSelector, 0),
            (F::GuestTrBase, 0),
            (F::GuestTrLimit, 0xffff),
            (F::GuestTrArBytes, 0x8b),
            (F::GuestLdtrSelector, 0),
            (F::GuestLdtrBase, 0),
            (F::GuestLdtrLimit, 0),
            (F::GuestLdtrArBytes, 1 << 16),
            (F::GuestGdtrBase, 0),
            (F::GuestGdtrLimit, 0xffff),
            (F::GuestIdtrBase, 0),
            (F::GuestIdtrLimit, 0x7ff),
            (F::GuestIa32Efer, 0),
            (F::GuestIa32Pat, PAT_DEFAULT),
            (F::GuestIa32Debugctl, 0),
            (F::GuestSysenterCs, 0),
            (F::GuestSysenterEsp, 0),
            (F::GuestSysenterEip, 0),
            (F::VmcsLinkPointer, u64::MAX),
            (F::GuestInterruptibilityInfo, 0),
            (F::GuestActivityState, 0),
            (F::GuestPendingDebugExceptions, 0),
        ] {
            w(f, value)?;
        }
        let segments = [
            (F::GuestCsSelector, F::GuestCsBase, F::GuestCsLimit, F::GuestCsArBytes, 0x08, 0xc09b),
            (F::GuestSsSelector, F::GuestSsBase, F::GuestSsLimit, F::GuestSsArBytes, 0x10, 0xc093),
            (F::GuestDsSelector, F::GuestDsBase, F::GuestDsLimit, F::GuestDsArBytes, 0x10, 0xc093),
            (F::GuestEsSelector, F::GuestEsBase, F::GuestEsLimit, F::GuestEsArBytes, 0x10, 0xc093),
            (F::GuestFsSelector, F::GuestFsBase, F::GuestFsLimit, F::GuestFsArBytes, 0x10, 0xc093),
            (F::GuestGsSelector, F::GuestGsBase, F::GuestGsLimit, F::GuestGsArBytes, 0x10, 0xc093),
        ];
        for (selector, base, limit, access, sel, ar) in segments {
            w(selector, sel)?;
            w(base, 0)?;
            w(limit, 0xffff_ffff)?;
            w(access, ar)?;
        }
        Ok(())
    }
}
