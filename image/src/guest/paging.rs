//! The guest's linear addresses as its own paging translates them, for L0's emulation:
//! fetching an instruction to emulate (MMIO) and L1's VMX-instruction memory operands. The
//! walk is `nested::paging` (pure, host-tested); this glue reads the processor state it needs
//! from the current VMCS: the real guest CR0, CR3, CR4 and EFER (CR0.PG is guest-owned, so
//! the read shadow is not what the hardware translates with) and, for PAE paging, the PDPTE
//! registers the VM exit saved (SDM 28.3.4).

use nested::arch::segment_ar;
use nested::guest::GuestMemory as PhysMemory;
use nested::paging::{self, Access, AccessKind, PagingMode, PagingRegs};
use nested::vmcs::{Vmcs, VmcsField as F};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;

/// The processor's physical-address width (CPUID 80000008H, EAX bits 7:0), which the guest sees.
fn maxphyaddr() -> u8 {
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
