//! The image's storage: block drivers (virtio-blk through `virtio-drivers`, ATA PIO for the
//! disk Bochs emulates) behind one [`BlockDevice`] trait, the MBR partition table ([`mbr`]) and
//! the turtles disk layout ([`layout`]: a guest image partition and a report partition), which
//! the runner writes and reads with the same code. `no_std`, tested on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod ata;
pub mod layout;
pub mod mbr;
pub mod virtio;

use core::fmt;

/// Bytes per sector.
pub const SECTOR: usize = 512;

/// A disk read and written in whole sectors, polled.
pub trait BlockDevice {
    /// Capacity in sectors.
    fn sectors(&self) -> u64;
    /// Reads `buf.len() / SECTOR` sectors from `lba`.
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Writes `buf.len() / SECTOR` sectors at `lba`.
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Short name for logs (`virtio-blk`, `ata`).
    fn kind(&self) -> &'static str;
}

/// Why a block operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockError {
    /// No disk answers where one was expected.
    NoDisk,
    /// The device there is not a disk (e.g. an ATAPI CD-ROM).
    NotADisk,
    /// The request reaches past the end of the disk.
    OutOfRange { lba: u64, sectors: u64, capacity: u64 },
    /// The buffer is not a whole number of sectors.
    Unaligned(usize),
    /// The device did not complete the request within the polling bound.
    Timeout,
    /// The device was declared stopped earlier and is not used again.
    Dead,
    /// The device reported an error (ATA status and error registers).
    Device { status: u8, error: u8 },
    /// The virtio driver reported an error.
    Virtio(virtio_drivers::Error),
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::NoDisk => write!(f, "no disk is attached"),
            BlockError::NotADisk => write!(f, "the device is not a disk (ATAPI?)"),
            BlockError::OutOfRange { lba, sectors, capacity } => write!(
                f,
                "sectors {lba}..{} are beyond the disk's {capacity} sectors",
                lba.saturating_add(*sectors)
            ),
            BlockError::Unaligned(n) => write!(f, "{n}-byte buffer is not whole sectors"),
            BlockError::Timeout => write!(f, "the disk stopped answering (request timed out)"),
            BlockError::Dead => write!(f, "the disk is no longer used after it stopped answering"),
            BlockError::Device { status, error } => {
                write!(f, "the disk reported an error (status {status:#04x}, error {error:#04x})")
            }
            BlockError::Virtio(e) => write!(f, "virtio: {e}"),
        }
    }
}

impl From<virtio_drivers::Error> for BlockError {
    fn from(e: virtio_drivers::Error) -> Self {
        BlockError::Virtio(e)
    }
}

/// How many polls a driver waits for a device before declaring it stopped.
pub const POLL_BOUND: u32 = 50_000_000;

/// Checks that `len` bytes at `lba` are whole sectors inside a disk of `capacity` sectors;
/// returns the sector count.
pub fn check_range(lba: u64, len: usize, capacity: u64) -> Result<u64, BlockError> {
    if !len.is_multiple_of(SECTOR) {
        return Err(BlockError::Unaligned(len));
    }
    let sectors = (len / SECTOR) as u64;
    match lba.checked_add(sectors) {
        Some(end) if end <= capacity => Ok(sectors),
        _ => Err(BlockError::OutOfRange { lba, sectors, capacity }),
    }
}

/// A disk in memory, for tests (here and in the runner's).
#[cfg(test)]
pub(crate) mod mem {
    use super::*;

    pub struct MemDisk(pub Vec<u8>);

    impl BlockDevice for MemDisk {
        fn sectors(&self) -> u64 {
            (self.0.len() / SECTOR) as u64
        }
        fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            check_range(lba, buf.len(), self.sectors())?;
            let at = lba as usize * SECTOR;
            buf.copy_from_slice(&self.0[at..at + buf.len()]);
            Ok(())
        }
        fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            check_range(lba, buf.len(), self.sectors())?;
            let at = lba as usize * SECTOR;
            self.0[at..at + buf.len()].copy_from_slice(buf);
            Ok(())
        }
        fn kind(&self) -> &'static str {
            "mem"
        }
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(check_range(0, 1024, 2), Ok(2));
        assert_eq!(
            check_range(1, 1024, 2),
            Err(BlockError::OutOfRange { lba: 1, sectors: 2, capacity: 2 })
        );
        assert_eq!(check_range(0, 100, 2), Err(BlockError::Unaligned(100)));
        assert!(check_range(u64::MAX, 512, 2).is_err());
    }
}
