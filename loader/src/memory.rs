//! Guest-physical memory as the loader writes it.

use alloc::vec::Vec;

/// A write outside guest memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutOfRange;

/// Guest RAM: guest-physical `[0, size())`.
pub trait GuestMemory {
    /// Bytes of guest RAM.
    fn size(&self) -> u64;
    /// Copies `bytes` to `gpa`.
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange>;
    /// Sets `len` bytes at `gpa` to `byte`.
    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfRange>;
    /// Where RAM above the legacy hole starts: 1 MiB, or higher for a guest in 1:1 memory
    /// whose `[1 MiB, ram_start)` is a hole (the memory map says reserved there).
    fn ram_start(&self) -> u64 {
        crate::info::HIGH_RAM_START
    }
}

/// Guest memory as a `Vec` (tests, fuzzing, host-side tools).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VecMemory {
    pub bytes: Vec<u8>,
}

impl VecMemory {
    /// `size` zero bytes.
    pub fn new(size: usize) -> Self {
        VecMemory { bytes: alloc::vec![0; size] }
    }

    fn range(&self, gpa: u64, len: u64) -> Result<core::ops::Range<usize>, OutOfRange> {
        let start = usize::try_from(gpa).map_err(|_| OutOfRange)?;
        let len = usize::try_from(len).map_err(|_| OutOfRange)?;
        let end = start.checked_add(len).ok_or(OutOfRange)?;
        if end > self.bytes.len() {
            return Err(OutOfRange);
        }
        Ok(start..end)
    }

    /// The bytes at `[gpa, gpa + len)`, if inside.
    pub fn get(&self, gpa: u64, len: u64) -> Option<&[u8]> {
        self.range(gpa, len).ok().map(|r| &self.bytes[r])
    }
}

impl GuestMemory for VecMemory {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        let r = self.range(gpa, bytes.len() as u64)?;
        self.bytes[r].copy_from_slice(bytes);
        Ok(())
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfRange> {
        let r = self.range(gpa, len)?;
        self.bytes[r].fill(byte);
        Ok(())
    }
}
