//! EPT01: the guest's physical memory as L0 maps it (SDM Vol. 3C 29.3). Guest-physical
//! `[0, size)` maps to one host block with 2 MiB pages, read/write/execute, write-back.

use super::vmxon::{VmxError, zeroed_frame};

const READ_WRITE_EXECUTE: u64 = 0b111;
const MEMORY_TYPE_WB: u64 = 6 << 3;
const LARGE_PAGE: u64 = 1 << 7;
const PAGE_2M: u64 = 2 << 20;

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
        let pml4 = zeroed_frame("EPT PML4")?;
        let pdpt = zeroed_frame("EPT PDPT")?;
        // SAFETY: the frames are fresh and identity-mapped; entries are written in bounds.
        unsafe { (pml4 as *mut u64).write(pdpt | READ_WRITE_EXECUTE) };
        let mut gpa = 0;
        while gpa < size {
            let gib = (gpa >> 30) as usize;
            // SAFETY: `gib` < 512 because size <= 512 GiB; the PDPT frame is ours.
            let pdpte = unsafe { (pdpt as *mut u64).add(gib) };
            // SAFETY: as above.
            let pd = match unsafe { pdpte.read() } {
                0 => {
                    let pd = zeroed_frame("EPT page directory")?;
                    // SAFETY: as above.
                    unsafe { pdpte.write(pd | READ_WRITE_EXECUTE) };
                    pd
                }
                entry => entry & !0xfff,
            };
            let index = ((gpa >> 21) & 511) as usize;
            let entry = (host_base + gpa) | READ_WRITE_EXECUTE | MEMORY_TYPE_WB | LARGE_PAGE;
            // SAFETY: index < 512 inside the page directory frame we own.
            unsafe { (pd as *mut u64).add(index).write(entry) };
            gpa += PAGE_2M;
        }
        // EPTP: write-back paging structures, 4-level walk (SDM 25.6.11).
        Ok(Ept { eptp: pml4 | 6 | (3 << 3) })
    }
}
