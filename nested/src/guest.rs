//! What nested code sees of L1: its physical memory and its general-purpose registers.
//!
//! `image/` implements these over EPT01 and the vCPU's saved registers; tests use
//! [`VecMemory`] and [`Regs`]. Every access to L1 memory is fallible: addresses come from L1.

extern crate alloc;

use alloc::vec::Vec;

use crate::addr::L1Gpa;

/// An L1 physical access outside L1's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemError {
    /// First address of the failed access.
    pub gpa: L1Gpa,
}

/// L1 guest-physical memory (where vmcs12 regions, bitmaps, MSR lists and EPT12 live).
pub trait GuestMemory {
    /// Reads `buf.len()` bytes at `gpa`.
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError>;
    /// Writes `data` at `gpa`.
    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError>;

    /// Reads a little-endian `u64`.
    fn read_u64(&self, gpa: L1Gpa) -> Result<u64, MemError> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Reads a little-endian `u32`.
    fn read_u32(&self, gpa: L1Gpa) -> Result<u32, MemError> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads one byte.
    fn read_u8(&self, gpa: L1Gpa) -> Result<u8, MemError> {
        let mut b = [0; 1];
        self.read(gpa, &mut b)?;
        Ok(b[0])
    }

    /// Writes a little-endian `u32`.
    fn write_u32(&mut self, gpa: L1Gpa, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Writes a little-endian `u64`.
    fn write_u64(&mut self, gpa: L1Gpa, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }
}

/// L1 memory as a `Vec` starting at guest-physical 0 (tests, fuzzing).
#[derive(Clone, Debug, Default)]
pub struct VecMemory {
    pub bytes: Vec<u8>,
}

impl VecMemory {
    /// `size` zero bytes.
    pub fn new(size: usize) -> Self {
        Self { bytes: alloc::vec![0; size] }
    }

    fn range(&self, gpa: L1Gpa, len: usize) -> Result<core::ops::Range<usize>, MemError> {
        let start = usize::try_from(gpa.0).map_err(|_| MemError { gpa })?;
        let end = start.checked_add(len).ok_or(MemError { gpa })?;
        if end > self.bytes.len() {
            return Err(MemError { gpa });
        }
        Ok(start..end)
    }
}

impl GuestMemory for VecMemory {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        let r = self.range(gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// A general-purpose register, numbered as in instruction encodings and the VM-exit
/// instruction-information field (SDM Table 28-13: 0 = RAX … 15 = R15).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Gpr {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// The register numbered `n & 15`.
    pub const fn from_index(n: u32) -> Gpr {
        const ALL: [Gpr; 16] = [
            Gpr::Rax,
            Gpr::Rcx,
            Gpr::Rdx,
            Gpr::Rbx,
            Gpr::Rsp,
            Gpr::Rbp,
            Gpr::Rsi,
            Gpr::Rdi,
            Gpr::R8,
            Gpr::R9,
            Gpr::R10,
            Gpr::R11,
            Gpr::R12,
            Gpr::R13,
            Gpr::R14,
            Gpr::R15,
        ];
        ALL[(n & 15) as usize]
    }
}

/// The general-purpose registers of the guest that exited (RSP included; the image reads it
/// from the VMCS).
pub trait GuestRegs {
    /// Reads a register.
    fn gpr(&self, r: Gpr) -> u64;
    /// Writes a register.
    fn set_gpr(&mut self, r: Gpr, value: u64);
}

/// A plain register file (tests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs(pub [u64; 16]);

impl GuestRegs for Regs {
    fn gpr(&self, r: Gpr) -> u64 {
        self.0[r as usize]
    }

    fn set_gpr(&mut self, r: Gpr, value: u64) {
        self.0[r as usize] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_memory_bounds() {
        let mut m = VecMemory::new(16);
        m.write_u64(L1Gpa(8), 0x1122).unwrap();
        assert_eq!(m.read_u64(L1Gpa(8)), Ok(0x1122));
        assert!(m.read_u64(L1Gpa(9)).is_err());
        assert!(m.read_u8(L1Gpa(u64::MAX)).is_err());
        assert_eq!(Gpr::from_index(20), Gpr::Rsp);
    }
}

#[cfg(test)]
mod byte_order_tests {
    use super::*;

    #[test]
    fn little_endian_accessors_and_the_failing_address() {
        let mut m = VecMemory::new(16);
        m.write_u32(L1Gpa(4), 0x1234_5678).unwrap();
        assert_eq!(m.bytes[4..8], [0x78, 0x56, 0x34, 0x12]);
        assert_eq!(m.read_u8(L1Gpa(4)), Ok(0x78));
        assert_eq!(m.read_u8(L1Gpa(7)), Ok(0x12));
        assert_eq!(m.read_u32(L1Gpa(4)), Ok(0x1234_5678));
        assert_eq!(m.read_u32(L1Gpa(5)), Ok(0x0012_3456));
        m.write_u64(L1Gpa(8), 0x0102_0304_0506_0708).unwrap();
        assert_eq!(m.bytes[8..16], [8, 7, 6, 5, 4, 3, 2, 1]);
        assert_eq!(m.read_u64(L1Gpa(4)), Ok(0x0506_0708_1234_5678));
        // The last byte is in memory, one past it is not; a failure names the first address.
        assert_eq!(m.read_u8(L1Gpa(15)), Ok(1));
        assert_eq!(m.read_u8(L1Gpa(16)), Err(MemError { gpa: L1Gpa(16) }));
        assert_eq!(m.write_u32(L1Gpa(13), 0), Err(MemError { gpa: L1Gpa(13) }));
        assert_eq!(m.bytes[13..16], [3, 2, 1], "a failed write changes nothing");
        let mut r = Regs::default();
        for n in 0..16 {
            r.set_gpr(Gpr::from_index(n), 0x100 + u64::from(n));
        }
        assert_eq!(r.gpr(Gpr::Rax), 0x100);
        assert_eq!(r.gpr(Gpr::Rsp), 0x104, "RSP is register 4");
        assert_eq!(r.gpr(Gpr::R15), 0x10f);
        assert_eq!(Gpr::from_index(0x13), Gpr::Rbx, "only bits 3:0 count");
    }
}
