//! EPT01: the guest's physical memory as L0 maps it (SDM Vol. 3C 29.3). Guest RAM is mapped
//! with 2 MiB pages, read/write/execute, write-back: one block at guest-physical 0, or the
//! blocks of 1:1 memory ([`crate::guest::memory`]). An assigned device's memory BARs are
//! mapped 1:1 with 4 KiB pages, uncached (29.3.7: the EPT memory type of MMIO must be UC).

use super::vmxon::{VmxError, zeroed_frame};
use crate::guest::memory::GuestMemory;

const READ_WRITE_EXECUTE: u64 = 0b111;
const MEMORY_TYPE_WB: u64 = 6 << 3;
/// Memory type 0: uncacheable (bits 5:3 of a leaf entry).
const MEMORY_TYPE_UC: u64 = 0;
/// Bit 6 of a leaf: ignore the guest's PAT (the EPT memory type is the effective one).
const IGNORE_PAT: u64 = 1 << 6;
const LARGE_PAGE: u64 = 1 << 7;
const PAGE_2M: u64 = 2 << 20;
const PAGE_4K: u64 = 4096;
const ADDRESS: u64 = 0x000f_ffff_ffff_f000;

/// An EPT hierarchy and its EPT pointer.
pub struct Ept {
    pub eptp: u64,
}

impl Ept {
    /// Points the mapping of guest-physical `[0, 2 MiB)` at host `hpa` (a self-test that
    /// gives the level below a wild EPT).
    pub fn remap_first_2m(&self, hpa: u64) {
        let pml4 = self.eptp & !0xfff;
        // SAFETY: the tables were built by `identity_offset` in frames we own; entry 0 of
        // each level exists because guest memory starts at 0.
        unsafe {
            let pdpt = (pml4 as *const u64).read() & !0xfff;
            let pd = (pdpt as *const u64).read() & !0xfff;
            (pd as *mut u64).write(hpa | READ_WRITE_EXECUTE | MEMORY_TYPE_WB | LARGE_PAGE);
        }
    }
}

impl Ept {
    /// Maps guest-physical `[0, size)` to host `[host_base, host_base + size)` (both 2 MiB
    /// aligned, `size` at most 512 GiB).
    pub fn identity_offset(host_base: u64, size: u64) -> Result<Self, VmxError> {
        let ept = Ept::empty()?;
        let mut gpa = 0;
        while gpa < size {
            ept.map_2m(gpa, host_base + gpa)?;
            gpa += PAGE_2M;
        }
        Ok(ept)
    }

    /// Maps every block of `memory` (2 MiB aligned, below 512 GiB).
    pub fn for_memory(memory: &GuestMemory) -> Result<Self, VmxError> {
        let ept = Ept::empty()?;
        for b in memory.blocks() {
            let mut offset = 0;
            while offset < b.size {
                ept.map_2m(b.gpa + offset, b.host + offset)?;
                offset += PAGE_2M;
            }
        }
        Ok(ept)
    }

    /// Maps `[address, address + size)` (an assigned device's memory BAR, page-aligned) to the
    /// same host-physical addresses, uncached, with 4 KiB pages. Fails if guest RAM is
    /// mapped there already.
    pub fn map_mmio_identity(&self, address: u64, size: u64) -> Result<(), VmxError> {
        let mut gpa = address & !(PAGE_4K - 1);
        while gpa < address.saturating_add(size) {
            let pt = self.table(gpa, 3)?;
            let index = ((gpa >> 12) & 511) as usize;
            let entry = gpa | READ_WRITE_EXECUTE | MEMORY_TYPE_UC | IGNORE_PAT;
            // SAFETY: index < 512 inside a page table frame we own.
            unsafe { (pt as *mut u64).add(index).write(entry) };
            gpa += PAGE_4K;
        }
        Ok(())
    }

    /// A fresh PML4; EPTP: write-back paging structures, 4-level walk (SDM 25.6.11).
    fn empty() -> Result<Self, VmxError> {
        let pml4 = zeroed_frame("EPT PML4")?;
        Ok(Ept { eptp: pml4 | 6 | (3 << 3) })
    }

    fn map_2m(&self, gpa: u64, hpa: u64) -> Result<(), VmxError> {
        let pd = self.table(gpa, 2)?;
        let index = ((gpa >> 21) & 511) as usize;
        let entry = hpa | READ_WRITE_EXECUTE | MEMORY_TYPE_WB | LARGE_PAGE;
        // SAFETY: index < 512 inside the page directory frame we own.
        unsafe { (pd as *mut u64).add(index).write(entry) };
        Ok(())
    }

    /// The table at `depth` (1 PDPT, 2 page directory, 3 page table) that maps `gpa`,
    /// created on the way. A large page in the way is an error (RAM where a BAR should be).
    fn table(&self, gpa: u64, depth: u32) -> Result<u64, VmxError> {
        let mut table = self.eptp & ADDRESS;
        for level in 0..depth {
            let shift = 39 - 9 * level;
            let index = ((gpa >> shift) & 511) as usize;
            // SAFETY: index < 512 inside a table frame of ours (the PML4 or one made here).
            let slot = unsafe { (table as *mut u64).add(index) };
            // SAFETY: as above.
            let entry = unsafe { slot.read() };
            table = match entry {
                0 => {
                    let next = zeroed_frame("EPT paging structure")?;
                    // SAFETY: as above.
                    unsafe { slot.write(next | READ_WRITE_EXECUTE) };
                    next
                }
                e if e & LARGE_PAGE != 0 => {
                    return Err(VmxError::Layout("a BAR overlaps guest RAM"));
                }
                e => e & ADDRESS,
            };
        }
        Ok(table)
    }
}
