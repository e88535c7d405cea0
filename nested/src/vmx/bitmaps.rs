//! MSR and I/O bitmaps for vmcs02 (SDM Vol. 3C 25.6.4, 25.6.9): L2 never gets an access L0
//! denies L1 (bitwise OR of the exit bitmaps), and MSR lists in L1 memory (25.7.2).

use crate::addr::L1Gpa;
use crate::caps::proc1;
use crate::guest::{GuestMemory, MemError};
use crate::vmcs::Vmcs12;

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

/// How vmcs12 has L2's I/O exit, with L1's bitmaps read from L1 memory into `a` and `b`
/// (an unreadable bitmap page counts as all ones: every port in it exits, the answer routing
/// gives for it too).
pub fn l1_io<'a>(
    v12: &Vmcs12,
    mem: &impl GuestMemory,
    a: &'a mut [u8; 4096],
    b: &'a mut [u8; 4096],
) -> L1Io<'a> {
    let p1 = v12.cpu_based_vm_exec_control;
    if p1 & proc1::USE_IO_BITMAPS == 0 {
        return if p1 & proc1::UNCONDITIONAL_IO_EXITING != 0 {
            L1Io::All
        } else {
            L1Io::PassThrough
        };
    }
    if mem.read(L1Gpa(v12.io_bitmap_a), a).is_err() {
        a.fill(0xff);
    }
    if mem.read(L1Gpa(v12.io_bitmap_b), b).is_err() {
        b.fill(0xff);
    }
    L1Io::Bitmaps(a, b)
}

/// L1's MSR bitmap for L2 read from L1 memory into `buf`, `None` when vmcs12 does not use
/// MSR bitmaps (every access exits to L1); an unreadable page reads as all ones.
pub fn l1_msr_bitmap<'a>(
    v12: &Vmcs12,
    mem: &impl GuestMemory,
    buf: &'a mut [u8; 4096],
) -> Option<&'a [u8; 4096]> {
    if v12.cpu_based_vm_exec_control & proc1::USE_MSR_BITMAPS == 0 {
        return None;
    }
    if mem.read(L1Gpa(v12.msr_bitmap), buf).is_err() {
        buf.fill(0xff);
    }
    Some(buf)
}

/// Sets or clears one MSR's read or write bit in a 4-KiB MSR bitmap (no-op for MSRs outside
/// both ranges, which always exit).
fn set_msr_bit(bitmap: &mut [u8; 4096], msr: u32, write: bool, exit: bool) {
    let Some(bit) = crate::exits::routing::msr_bitmap_bit(msr, write) else { return };
    let Some(byte) = bitmap.get_mut((bit / 8) as usize) else { return };
    let mask = 1u8 << (bit % 8);
    if exit {
        *byte |= mask;
    } else {
        *byte &= !mask;
    }
}

/// vmcs02's MSR bitmap when L0 itself needs every MSR access but those in `l0_passes`
/// (MSRs whose L2 value the hardware holds correctly for L1's world: VMCS-switched ones,
/// or ones L0 never uses): `out` starts all ones (every access exits) and only the bits of
/// `l0_passes` are recomputed, from vmcs12's bitmap in L1 memory. Cheap enough to run on
/// every nested VM entry, which it must: L1 may edit its bitmap without a VMWRITE, and the
/// processor reads the bitmap at each access (SDM 25.6.9). An unreadable L1 bitmap exits.
pub fn update_msr_passthrough(
    l0_passes: &[u32],
    v12: &Vmcs12,
    mem: &impl GuestMemory,
    out: &mut [u8; 4096],
) {
    let uses_bitmap = v12.cpu_based_vm_exec_control & proc1::USE_MSR_BITMAPS != 0;
    for &msr in l0_passes {
        for write in [false, true] {
            let l1_exits = !uses_bitmap
                || crate::exits::routing::msr_bitmap_bit(msr, write).is_none_or(|bit| {
                    v12.msr_bitmap
                        .checked_add(bit / 8)
                        .and_then(|a| mem.read_u8(L1Gpa(a)).ok())
                        .is_none_or(|b| b & (1 << (bit % 8)) != 0)
                });
            set_msr_bit(out, msr, write, l1_exits);
        }
    }
}
