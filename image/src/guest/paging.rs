//! The guest's linear addresses as its own paging translates them (SDM Vol. 3A ch. 4), for
//! L0's emulation: fetching an instruction to emulate (MMIO) and L1's VMX-instruction memory
//! operands. Read-only: accessed and dirty bits are left to the guest's next real access.

use nested::vmcs::{Vmcs, VmcsField as F};

use super::memory::GuestMemory;
use crate::arch::vmcs::HwVmcs;

const PTE_PRESENT: u64 = 1;
const PTE_LARGE: u64 = 1 << 7;
const PTE_ADDR: u64 = 0x000f_ffff_ffff_f000;
const CR0_PG: u64 = 1 << 31;
const CR4_PSE: u64 = 1 << 4;
const CR4_PAE: u64 = 1 << 5;

/// The guest's CR4 as it believes it is (bits it owns from the VMCS, the rest from the read
/// shadow).
pub fn guest_cr4(v: &HwVmcs) -> u64 {
    let mask = v.read(F::Cr4GuestHostMask);
    (v.read(F::GuestCr4) & !mask) | (v.read(F::Cr4ReadShadow) & mask)
}

/// Guest-linear to guest-physical for the guest of the current VMCS: identity with paging
/// off, a 4-level walk in IA-32e mode or with CR4.PAE, else 32-bit paging (4 MiB pages with
/// CR4.PSE). `None` when a level is not present or outside guest memory.
pub fn translate(v: &HwVmcs, mem: &GuestMemory, linear: u64) -> Option<u64> {
    if v.read(F::Cr0ReadShadow) & CR0_PG == 0 {
        return Some(linear & 0xffff_ffff);
    }
    let cr4 = guest_cr4(v);
    let cr3 = v.read(F::GuestCr3);
    let read = |gpa: u64| -> Option<u64> {
        let b = mem.slice(gpa, 8)?;
        Some(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
    };
    if cr4 & CR4_PAE == 0 {
        // 32-bit paging: page directory, then a page table or a 4 MiB page.
        let linear = linear & 0xffff_ffff;
        let pde = read((cr3 & 0xffff_f000) + (linear >> 22) * 4)? & 0xffff_ffff;
        if pde & PTE_PRESENT == 0 {
            return None;
        }
        if pde & PTE_LARGE != 0 && cr4 & CR4_PSE != 0 {
            return Some((pde & 0xffc0_0000) | (linear & 0x3f_ffff));
        }
        let pte = read((pde & 0xffff_f000) + ((linear >> 12) & 0x3ff) * 4)? & 0xffff_ffff;
        if pte & PTE_PRESENT == 0 {
            return None;
        }
        return Some((pte & 0xffff_f000) | (linear & 0xfff));
    }
    let mut table = cr3 & PTE_ADDR;
    for level in (0..4).rev() {
        let index = (linear >> (12 + 9 * level)) & 511;
        let entry = read(table + index * 8)?;
        if entry & PTE_PRESENT == 0 {
            return None;
        }
        if level > 0 && level < 3 && entry & PTE_LARGE != 0 {
            let size = 1u64 << (12 + 9 * level);
            return Some((entry & PTE_ADDR & !(size - 1)) | (linear & (size - 1)));
        }
        table = entry & PTE_ADDR;
    }
    Some(table | (linear & 0xfff))
}

/// Reads up to `buf.len()` bytes at guest-linear `linear`, page by page; returns how many
/// could be read (fewer when a page is not mapped).
pub fn read_linear(v: &HwVmcs, mem: &GuestMemory, linear: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let at = linear.wrapping_add(done as u64);
        let chunk = (4096 - (at & 0xfff) as usize).min(buf.len() - done);
        let Some(src) = translate(v, mem, at).and_then(|gpa| mem.slice(gpa, chunk as u64)) else {
            break;
        };
        buf[done..done + chunk].copy_from_slice(src);
        done += chunk;
    }
    done
}
