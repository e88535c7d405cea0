//! The turtles disk, written by the runner and read by the image with this same code:
//!
//! | where | what |
//! |---|---|
//! | sector 0 | MBR with partitions 1 and 2, type [`TYPE_TURTLES`] |
//! | partition 1 | guest image: one header sector ([`GUEST_MAGIC`], length, name), then the bytes |
//! | partition 2 | report: [`REPORT_MAGIC`], length, then that many bytes of JSON lines |
//! | partition 3 (optional) | the guest's own disk: raw sectors L0 serves to its guest as a virtio-blk device ([`add_guest_disk`]) |

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::mbr::{self, MbrError, Partition, TYPE_TURTLES};
use crate::{BlockDevice, BlockError, SECTOR};

pub const GUEST_MAGIC: &[u8; 8] = b"TRTLGST1";
pub const REPORT_MAGIC: &[u8; 8] = b"TRTLRPT1";
pub const GUEST_PARTITION: u8 = 1;
pub const REPORT_PARTITION: u8 = 2;
/// The partition L0 hands its guest as a disk of its own.
pub const GUEST_DISK_PARTITION: u8 = 3;
/// Size of the report partition: 64 KiB.
pub const REPORT_SECTORS: u64 = 128;
/// Longest guest name in the header.
pub const NAME_LEN: usize = 32;
/// Sectors moved per request.
const CHUNK_SECTORS: usize = 64;

/// Why the disk's layout cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayoutError {
    Block(BlockError),
    Mbr(MbrError),
    /// The partition table has no partition `n` of the turtles type.
    NoPartition(u8),
    /// The partition does not start with the expected magic.
    BadMagic(u8),
    /// The header says the image is longer than its partition.
    ImageTooBig {
        needs: u64,
        has: u64,
    },
    /// The guest name is not UTF-8.
    BadName,
    /// The report does not fit its partition.
    ReportTooBig {
        len: usize,
        has: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Block(e) => write!(f, "{e}"),
            LayoutError::Mbr(e) => write!(f, "partition table: {e}"),
            LayoutError::NoPartition(n) => {
                write!(f, "no turtles partition {n} (type {TYPE_TURTLES:#x})")
            }
            LayoutError::BadMagic(n) => {
                write!(f, "partition {n} does not start with the turtles header")
            }
            LayoutError::ImageTooBig { needs, has } => write!(
                f,
                "the guest image needs {needs} bytes but its partition holds {has}: the disk is smaller than the image"
            ),
            LayoutError::BadName => write!(f, "the guest name is not UTF-8"),
            LayoutError::ReportTooBig { len, has } => {
                write!(f, "a {len}-byte report does not fit the {has}-byte report partition")
            }
        }
    }
}

impl From<BlockError> for LayoutError {
    fn from(e: BlockError) -> Self {
        LayoutError::Block(e)
    }
}

impl From<MbrError> for LayoutError {
    fn from(e: MbrError) -> Self {
        LayoutError::Mbr(e)
    }
}

/// The partitions of a turtles disk.
pub fn partitions(dev: &mut dyn BlockDevice) -> Result<Vec<Partition>, LayoutError> {
    let mut sector0 = [0u8; SECTOR];
    dev.read(0, &mut sector0)?;
    Ok(mbr::parse(&sector0, dev.sectors())?)
}

fn find(parts: &[Partition], number: u8) -> Result<Partition, LayoutError> {
    parts
        .iter()
        .find(|p| p.number == number && p.kind == TYPE_TURTLES)
        .copied()
        .ok_or(LayoutError::NoPartition(number))
}

/// The guest header: name and length of the image that follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestHeader {
    pub name: String,
    pub len: u64,
}

/// Parses the header sector of the guest partition.
pub fn parse_guest_header(sector: &[u8]) -> Result<GuestHeader, LayoutError> {
    if sector.len() < 16 + NAME_LEN || &sector[..8] != GUEST_MAGIC {
        return Err(LayoutError::BadMagic(GUEST_PARTITION));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&sector[8..16]);
    let name = &sector[16..16 + NAME_LEN];
    let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(NAME_LEN)];
    let name = core::str::from_utf8(name).map_err(|_| LayoutError::BadName)?;
    Ok(GuestHeader { name: name.into(), len: u64::from_le_bytes(len) })
}

/// Reads the guest image: its name and bytes.
pub fn read_guest(dev: &mut dyn BlockDevice) -> Result<(String, Vec<u8>), LayoutError> {
    let part = find(&partitions(dev)?, GUEST_PARTITION)?;
    let mut header = [0u8; SECTOR];
    dev.read(part.start, &mut header)?;
    let header = parse_guest_header(&header)?;
    let has = part.sectors.saturating_sub(1) * SECTOR as u64;
    if header.len > has {
        return Err(LayoutError::ImageTooBig { needs: header.len, has });
    }
    let sectors = header.len.div_ceil(SECTOR as u64) as usize;
    let mut image = vec![0u8; sectors * SECTOR];
    for (i, chunk) in image.chunks_mut(CHUNK_SECTORS * SECTOR).enumerate() {
        dev.read(part.start + 1 + (i * CHUNK_SECTORS) as u64, chunk)?;
    }
    image.truncate(header.len as usize);
    Ok((header.name, image))
}

/// The partition holding the guest's own disk.
pub fn guest_disk(dev: &mut dyn BlockDevice) -> Result<Partition, LayoutError> {
    find(&partitions(dev)?, GUEST_DISK_PARTITION)
}

/// Writes `text` as the disk's report.
pub fn write_report(dev: &mut dyn BlockDevice, text: &[u8]) -> Result<(), LayoutError> {
    let part = find(&partitions(dev)?, REPORT_PARTITION)?;
    let has = part.sectors * SECTOR as u64;
    let total = 16 + text.len();
    if total as u64 > has {
        return Err(LayoutError::ReportTooBig { len: text.len(), has });
    }
    let mut bytes = vec![0u8; total.div_ceil(SECTOR) * SECTOR];
    bytes[..8].copy_from_slice(REPORT_MAGIC);
    bytes[8..16].copy_from_slice(&(text.len() as u64).to_le_bytes());
    bytes[16..total].copy_from_slice(text);
    for (i, chunk) in bytes.chunks(CHUNK_SECTORS * SECTOR).enumerate() {
        dev.write(part.start + (i * CHUNK_SECTORS) as u64, chunk)?;
    }
    Ok(())
}

/// The report text in the report partition's bytes, or `None` if none was written.
pub fn parse_report(partition: &[u8]) -> Option<&[u8]> {
    if partition.get(..8)? != REPORT_MAGIC {
        return None;
    }
    let len = u64::from_le_bytes(partition.get(8..16)?.try_into().ok()?);
    partition.get(16..16usize.checked_add(usize::try_from(len).ok()?)?)
}

/// A whole disk image: MBR, the guest partition (if any) and an empty report partition.
/// `size` (bytes, rounded down to sectors) cuts the disk short, as a too-small disk would be.
pub fn build_disk(guest: Option<(&str, &[u8])>, size: Option<usize>) -> Vec<u8> {
    let guest_sectors = guest.map_or(1, |(_, image)| 1 + image.len().div_ceil(SECTOR) as u64);
    let guest_part =
        Partition { number: GUEST_PARTITION, kind: TYPE_TURTLES, start: 1, sectors: guest_sectors };
    let report_part = Partition {
        number: REPORT_PARTITION,
        kind: TYPE_TURTLES,
        start: 1 + guest_sectors,
        sectors: REPORT_SECTORS,
    };
    let total = (report_part.start + REPORT_SECTORS) as usize * SECTOR;
    let mut disk = vec![0u8; total];
    disk[..SECTOR].copy_from_slice(&mbr::encode(&[guest_part, report_part]));
    if let Some((name, image)) = guest {
        let header = &mut disk[SECTOR..2 * SECTOR];
        header[..8].copy_from_slice(GUEST_MAGIC);
        header[8..16].copy_from_slice(&(image.len() as u64).to_le_bytes());
        let name = &name.as_bytes()[..name.len().min(NAME_LEN)];
        header[16..16 + name.len()].copy_from_slice(name);
        disk[2 * SECTOR..2 * SECTOR + image.len()].copy_from_slice(image);
    }
    if let Some(size) = size {
        disk.truncate((size / SECTOR).max(1) * SECTOR);
    }
    disk
}

/// Appends partition 3, the guest's own disk, holding `data` (zero-padded to whole sectors,
/// at least one) to a disk made by [`build_disk`] (not cut short).
pub fn add_guest_disk(disk: &mut Vec<u8>, data: &[u8]) -> Result<(), LayoutError> {
    let mut parts = mbr::parse(&disk[..SECTOR], (disk.len() / SECTOR) as u64)?;
    parts.retain(|p| p.number != GUEST_DISK_PARTITION);
    let start = parts.iter().map(|p| p.start + p.sectors).max().unwrap_or(1);
    let sectors = data.len().div_ceil(SECTOR).max(1) as u64;
    parts.push(Partition { number: GUEST_DISK_PARTITION, kind: TYPE_TURTLES, start, sectors });
    disk.resize((start + sectors) as usize * SECTOR, 0);
    let at = start as usize * SECTOR;
    disk[at..at + data.len()].copy_from_slice(data);
    disk[..SECTOR].copy_from_slice(&mbr::encode(&parts));
    Ok(())
}

/// The report partition's bytes of a whole disk image (for the runner).
pub fn report_of_disk(disk: &[u8]) -> Option<&[u8]> {
    let parts = mbr::parse(disk.get(..SECTOR)?, (disk.len() / SECTOR) as u64).ok()?;
    let part = find(&parts, REPORT_PARTITION).ok()?;
    let start = part.start as usize * SECTOR;
    parse_report(disk.get(start..start + part.sectors as usize * SECTOR)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::MemDisk;

    #[test]
    fn guest_and_report_round_trip() {
        let image: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let mut disk = MemDisk(build_disk(Some(("leaf", &image)), None));
        let (name, read) = read_guest(&mut disk).unwrap();
        assert_eq!(name, "leaf");
        assert_eq!(read, image);
        assert_eq!(report_of_disk(&disk.0), None);
        write_report(&mut disk, b"{\"type\":\"status\"}\n").unwrap();
        assert_eq!(report_of_disk(&disk.0), Some(&b"{\"type\":\"status\"}\n"[..]));
        let big = vec![b'x'; REPORT_SECTORS as usize * SECTOR];
        assert!(matches!(write_report(&mut disk, &big), Err(LayoutError::ReportTooBig { .. })));
    }

    #[test]
    fn the_guest_disk_partition_follows_the_report() {
        let mut bytes = build_disk(Some(("leaf", &[1u8; 1000])), None);
        add_guest_disk(&mut bytes, &[7u8; 700]).unwrap();
        let mut dev = MemDisk(bytes.clone());
        let part = guest_disk(&mut dev).unwrap();
        assert_eq!(part.sectors, 2);
        let at = part.start as usize * SECTOR;
        assert!(bytes[at..at + 700].iter().all(|&b| b == 7));
        assert!(bytes[at + 700..at + 1024].iter().all(|&b| b == 0));
        assert_eq!(bytes.len(), at + 1024);
        // The other partitions are still there.
        assert_eq!(read_guest(&mut dev).unwrap().1, vec![1u8; 1000]);
        write_report(&mut dev, b"ok").unwrap();
        assert!(guest_disk(&mut MemDisk(build_disk(None, None))).is_err());
    }

    #[test]
    fn a_disk_smaller_than_the_image_is_an_error() {
        let image = vec![7u8; 64 * 1024];
        let mut disk = MemDisk(build_disk(Some(("leaf", &image)), Some(16 * 1024)));
        let e = read_guest(&mut disk).unwrap_err();
        assert!(matches!(e, LayoutError::Mbr(MbrError::BeyondDisk { number: 1, .. })), "{e}");
        // A header that claims more than the partition holds.
        let mut disk = MemDisk(build_disk(Some(("leaf", &image)), None));
        disk.0[SECTOR + 8..SECTOR + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let e = read_guest(&mut disk).unwrap_err();
        assert!(matches!(e, LayoutError::ImageTooBig { needs, .. } if needs == 1 << 40), "{e}");
        assert!(e.to_string().contains("smaller than the image"), "{e}");
    }

    #[test]
    fn bad_headers_and_missing_partitions() {
        let mut disk = MemDisk(build_disk(None, None));
        assert_eq!(read_guest(&mut disk), Err(LayoutError::BadMagic(1)));
        let mut blank = MemDisk(vec![0u8; 8 * SECTOR]);
        assert_eq!(read_guest(&mut blank), Err(LayoutError::Mbr(MbrError::NoSignature)));
        let mut empty = MemDisk(Vec::new());
        assert!(matches!(
            read_guest(&mut empty),
            Err(LayoutError::Block(BlockError::OutOfRange { .. }))
        ));
        let mut header = [0u8; SECTOR];
        header[..8].copy_from_slice(GUEST_MAGIC);
        header[16] = 0xff;
        assert_eq!(parse_guest_header(&header), Err(LayoutError::BadName));
        assert_eq!(parse_report(&[0u8; 4]), None);
        let mut r = Vec::from(&REPORT_MAGIC[..]);
        r.extend_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(parse_report(&r), None, "a length beyond the partition");
    }
}
