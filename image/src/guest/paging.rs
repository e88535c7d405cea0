//! The guest's linear addresses as its own paging translates them, for L0's emulation:
//! fetching an instruction to emulate (MMIO), L1's VMX-instruction memory operands and string
//! I/O ([`access_linear`]). The
//! walk is `nested::paging` (pure, host-tested); this glue reads the processor state it needs
//! from the current VMCS: the real guest CR0, CR3, CR4 and EFER (CR0.PG is guest-owned, so
//! the read shadow is not what the hardware translates with) and, for PAE paging, the PDPTE
//! registers the VM exit saved (SDM 28.3.4).

use nested::addr::L1Gpa;
use nested::arch::segment_ar;
use nested::guest::{GuestMemory as PhysMemory, MemError};
use nested::paging::{self, Access, AccessKind, PagingMode, PagingRegs, WalkFault};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::Exception;

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;

/// The processor's physical-address width (CPUID 80000008H, EAX bits 7:0), which the guest sees.
pub fn maxphyaddr() -> u8 {
    match cpu::cpuid(0x8000_0008, 0)[0] as u8 {
        0 => 36,
        m => m,
    }
}

/// The paging state of the guest of the current VMCS.
pub fn paging_regs(v: &HwVmcs) -> PagingRegs {
    let regs = PagingRegs {
        cr0: v.read(F::GuestCr0),
        cr3: v.read(F::GuestCr3),
        cr4: v.read(F::GuestCr4),
        efer: v.read(F::GuestIa32Efer),
        maxphyaddr: maxphyaddr(),
        pdptes: None,
    };
    if regs.mode() != PagingMode::Pae {
        return regs;
    }
    let pdptes =
        [F::GuestPdpte0, F::GuestPdpte1, F::GuestPdpte2, F::GuestPdpte3].map(|f| v.read(f));
    PagingRegs { pdptes: Some(pdptes), ..regs }
}

/// True if the guest runs at CPL 3 (its accesses are user-mode accesses).
pub fn user_mode(v: &HwVmcs) -> bool {
    v.read(F::GuestSsArBytes) & segment_ar::DPL == segment_ar::DPL
}

/// Reads up to `buf.len()` bytes at guest-linear `linear` as an access of `kind`, page by
/// page; returns how many could be read (fewer when a page does not translate). `mem` is the
/// guest's physical memory: L1's, or L2's as EPT12 maps it (`nested::ept::l2_mmio::L2Memory`).
pub fn read_linear<M: PhysMemory>(
    v: &HwVmcs,
    mem: &M,
    linear: u64,
    kind: AccessKind,
    buf: &mut [u8],
) -> usize {
    let regs = paging_regs(v);
    let access = Access { kind, user: user_mode(v) };
    let mut done = 0;
    while done < buf.len() {
        let at = linear.wrapping_add(done as u64);
        let chunk = (4096 - (at & 0xfff) as usize).min(buf.len() - done);
        let Ok(w) = paging::walk(mem, &regs, at, access) else { break };
        if mem.read(w.gpa, &mut buf[done..done + chunk]).is_err() {
            break;
        }
        done += chunk;
    }
    done
}

/// An access of `len` bytes at guest-linear `linear` as the processor makes it: every page
/// translates (with `user`'s privilege) before any byte moves, so an access straddling into
/// an unmapped page faults whole; then each page gets its accessed/dirty flags and `f` is
/// called with its physical address, the offset into the access and the length. A failed
/// walk is the processor's fault: #PF with CR2 the page's linear address and the walk's error
/// code, or #GP(0) (non-canonical, a paging structure outside memory), as is a physical
/// access `f` cannot make.
pub fn access_linear<M: PhysMemory>(
    mem: &mut M,
    regs: &PagingRegs,
    user: bool,
    linear: u64,
    len: usize,
    kind: AccessKind,
    mut f: impl FnMut(&mut M, L1Gpa, usize, usize) -> Result<(), MemError>,
) -> Result<(), Exception> {
    let access = Access { kind, user };
    for commit in [false, true] {
        let mut done = 0;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
            let walk = paging::walk(&*mem, regs, at, access).map_err(|fault| match fault {
                WalkFault::PageFault { error_code } => Exception::page_fault(at, error_code),
                WalkFault::NonCanonical | WalkFault::Memory(_) => Exception::GP0,
            })?;
            if commit {
                walk.set_accessed_dirty(mem).map_err(|_| Exception::GP0)?;
                f(mem, walk.gpa, done, chunk).map_err(|_| Exception::GP0)?;
            }
            done += chunk;
        }
    }
    Ok(())
}
