//! MSR and I/O bitmaps for vmcs02 (SDM Vol. 3C 25.6.4, 25.6.9): L2 never gets an access L0
//! denies L1 (bitwise OR of the exit bitmaps), and MSR lists in L1 memory (25.7.2).

use crate::addr::L1Gpa;
use crate::guest::{GuestMemory, MemError};

/// Entry `i` of a VM-exit/VM-entry MSR list at `base` in L1 memory: (index, value)
/// (SDM 25.7.2, Table 25-15).
pub fn read_msr_entry(mem: &impl GuestMemory, base: u64, i: u32) -> Result<(u32, u64), MemError> {
    let at = base.wrapping_add(u64::from(i) * 16);
    let index = mem.read_u32(L1Gpa(at))?;
    let value = mem.read_u64(L1Gpa(at.wrapping_add(8)))?;
    Ok((index, value))
}

/// vmcs02's MSR bitmap: an access exits if L0's bitmap for L1 or L1's for L2 says so; all
/// ones when L1 does not use MSR bitmaps (every access exits to L1). SDM 25.6.9.
pub fn merge_msr_bitmap(l0: &[u8; 4096], l1: Option<&[u8; 4096]>, out: &mut [u8; 4096]) {
    match l1 {
        Some(l1) => {
            for ((o, a), b) in out.iter_mut().zip(l0.iter()).zip(l1.iter()) {
                *o = a | b;
            }
        }
        None => out.fill(0xff),
    }
}

/// How L1 has L2's I/O instructions exit (SDM 25.6.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L1Io<'a> {
    /// Neither bitmaps nor unconditional exiting: L2's I/O is L1's own I/O (L0's bitmap).
    PassThrough,
    /// Unconditional I/O exiting: everything exits.
    All,
    /// L1's bitmaps A and B.
    Bitmaps(&'a [u8; 4096], &'a [u8; 4096]),
}

/// vmcs02's I/O bitmaps A and B: L0's OR L1's.
pub fn merge_io_bitmaps(
    l0: (&[u8; 4096], &[u8; 4096]),
    l1: L1Io<'_>,
    out: (&mut [u8; 4096], &mut [u8; 4096]),
) {
    match l1 {
        L1Io::PassThrough => {
            out.0.copy_from_slice(l0.0);
            out.1.copy_from_slice(l0.1);
        }
        L1Io::All => {
            out.0.fill(0xff);
            out.1.fill(0xff);
        }
        L1Io::Bitmaps(a, b) => {
            for ((o, x), y) in out.0.iter_mut().zip(l0.0.iter()).zip(a.iter()) {
                *o = x | y;
            }
            for ((o, x), y) in out.1.iter_mut().zip(l0.1.iter()).zip(b.iter()) {
                *o = x | y;
            }
        }
    }
}
