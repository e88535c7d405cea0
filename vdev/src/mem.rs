//! The guest's memory as a device sees it: guest-physical reads and writes that are checked
//! against the guest's RAM and fail instead of reaching anything else. The image implements
//! [`GuestRam`] on its guest memory block; tests use [`VecRam`].

use alloc::vec;
use alloc::vec::Vec;

/// A guest-physical range outside the guest's RAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange {
    pub gpa: u64,
    pub len: u64,
}

/// Guest-physical memory, bounds-checked.
pub trait GuestRam {
    /// Reads `buf.len()` bytes at `gpa`; an error if any of them is outside guest RAM.
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange>;
    /// Writes `data` at `gpa`; an error (and nothing written) if any byte is outside guest RAM.
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange>;
}

/// Little-endian helpers on top of [`GuestRam`].
pub trait GuestRamExt: GuestRam {
    fn read_u16(&self, gpa: u64) -> Result<u16, OutOfRange> {
        let mut b = [0; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    fn read_u32(&self, gpa: u64) -> Result<u32, OutOfRange> {
        let mut b = [0; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn read_u64(&self, gpa: u64) -> Result<u64, OutOfRange> {
        let mut b = [0; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn write_u16(&mut self, gpa: u64, v: u16) -> Result<(), OutOfRange> {
        self.write(gpa, &v.to_le_bytes())
    }
    fn write_u32(&mut self, gpa: u64, v: u32) -> Result<(), OutOfRange> {
        self.write(gpa, &v.to_le_bytes())
    }
}

impl<T: GuestRam + ?Sized> GuestRamExt for T {}

/// Guest RAM in a vector, from guest-physical 0 (tests, and the host side of anything that
/// wants a model guest).
#[derive(Clone, Debug)]
pub struct VecRam {
    pub bytes: Vec<u8>,
}

impl VecRam {
    /// `size` zero bytes of guest RAM.
    pub fn new(size: usize) -> Self {
        VecRam { bytes: vec![0; size] }
    }

    fn range(&self, gpa: u64, len: usize) -> Result<core::ops::Range<usize>, OutOfRange> {
        let err = OutOfRange { gpa, len: len as u64 };
        let start = usize::try_from(gpa).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(start..end)
    }
}

impl GuestRam for VecRam {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), OutOfRange> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), OutOfRange> {
        let r = self.range(gpa, data.len())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vec_ram_refuses_what_reaches_past_its_end() {
        let mut m = VecRam::new(16);
        assert!(m.write(12, &[1, 2, 3, 4]).is_ok());
        assert_eq!(m.read_u32(12), Ok(0x0403_0201));
        assert!(m.write(13, &[1, 2, 3, 4]).is_err());
        assert!(m.read_u16(u64::MAX).is_err());
        assert!(m.read(u64::MAX - 1, &mut [0; 4]).is_err());
    }
}
