//! The MBR partition table: four 16-byte entries at offset 446, signature 0x55 0xAA at 510
//! (only LBA fields are used; CHS is ignored). Parsing checks every entry against the disk.

use alloc::vec::Vec;
use core::fmt;

use crate::SECTOR;

/// Partition type the turtles layout uses for its partitions ("non-FS data").
pub const TYPE_TURTLES: u8 = 0xda;

/// One used partition entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Partition {
    /// 1 to 4.
    pub number: u8,
    pub kind: u8,
    pub start: u64,
    pub sectors: u64,
}

/// Why a partition table cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MbrError {
    /// Fewer than 512 bytes given.
    Short(usize),
    /// No 0x55AA signature: not partitioned (or not a turtles disk).
    NoSignature,
    /// An entry starts at sector 0 (over the table itself).
    OverTable(u8),
    /// An entry reaches past the end of the disk.
    BeyondDisk { number: u8, end: u64, capacity: u64 },
    /// Two entries overlap.
    Overlap(u8, u8),
}

impl fmt::Display for MbrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MbrError::Short(n) => write!(f, "partition table needs 512 bytes, got {n}"),
            MbrError::NoSignature => {
                write!(f, "no MBR signature (0x55aa): the disk is not partitioned")
            }
            MbrError::OverTable(n) => write!(f, "partition {n} starts at sector 0, over the table"),
            MbrError::BeyondDisk { number, end, capacity } => write!(
                f,
                "partition {number} ends at sector {end}, beyond the disk's {capacity} sectors"
            ),
            MbrError::Overlap(a, b) => write!(f, "partitions {a} and {b} overlap"),
        }
    }
}

/// The used entries of `sector0` on a disk of `capacity` sectors.
pub fn parse(sector0: &[u8], capacity: u64) -> Result<Vec<Partition>, MbrError> {
    let table = sector0.get(..SECTOR).ok_or(MbrError::Short(sector0.len()))?;
    if table[510] != 0x55 || table[511] != 0xaa {
        return Err(MbrError::NoSignature);
    }
    let mut parts: Vec<Partition> = Vec::new();
    for (i, entry) in table[446..510].chunks_exact(16).enumerate() {
        let number = i as u8 + 1;
        let kind = entry[4];
        let start = u64::from(u32::from_le_bytes([entry[8], entry[9], entry[10], entry[11]]));
        let sectors = u64::from(u32::from_le_bytes([entry[12], entry[13], entry[14], entry[15]]));
        if kind == 0 || sectors == 0 {
            continue;
        }
        if start == 0 {
            return Err(MbrError::OverTable(number));
        }
        let end = start + sectors;
        if end > capacity {
            return Err(MbrError::BeyondDisk { number, end, capacity });
        }
        if let Some(other) = parts.iter().find(|p| start < p.start + p.sectors && p.start < end) {
            return Err(MbrError::Overlap(other.number, number));
        }
        parts.push(Partition { number, kind, start, sectors });
    }
    Ok(parts)
}

/// A table holding `parts` (at most four; `number` gives the slot).
pub fn encode(parts: &[Partition]) -> [u8; SECTOR] {
    let mut table = [0u8; SECTOR];
    for p in parts.iter().filter(|p| (1..=4).contains(&p.number)) {
        let at = 446 + 16 * usize::from(p.number - 1);
        let entry = &mut table[at..at + 16];
        entry[4] = p.kind;
        entry[8..12].copy_from_slice(&(p.start as u32).to_le_bytes());
        entry[12..16].copy_from_slice(&(p.sectors as u32).to_le_bytes());
    }
    table[510] = 0x55;
    table[511] = 0xaa;
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(number: u8, start: u64, sectors: u64) -> Partition {
        Partition { number, kind: TYPE_TURTLES, start, sectors }
    }

    #[test]
    fn round_trip() {
        let parts = [part(1, 1, 100), part(2, 101, 8)];
        assert_eq!(parse(&encode(&parts), 109), Ok(parts.to_vec()));
        assert_eq!(parse(&encode(&[]), 1), Ok(Vec::new()));
    }

    #[test]
    fn bad_tables_are_rejected() {
        assert_eq!(parse(&[0u8; 100], 10), Err(MbrError::Short(100)));
        assert_eq!(parse(&[0u8; 512], 10), Err(MbrError::NoSignature));
        assert_eq!(parse(&encode(&[part(1, 0, 4)]), 10), Err(MbrError::OverTable(1)));
        assert_eq!(
            parse(&encode(&[part(1, 1, 100)]), 50),
            Err(MbrError::BeyondDisk { number: 1, end: 101, capacity: 50 })
        );
        assert_eq!(
            parse(&encode(&[part(1, 1, 10), part(3, 5, 10)]), 50),
            Err(MbrError::Overlap(1, 3))
        );
        // 32-bit fields cannot overflow the u64 sum.
        let mut t = encode(&[part(1, 1, 1)]);
        t[446 + 8..446 + 16].fill(0xff);
        assert!(parse(&t, u64::MAX).is_ok());
        assert!(matches!(parse(&t, 1000), Err(MbrError::BeyondDisk { .. })));
    }

    #[test]
    fn random_tables_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut t = [0u8; 512];
            for b in t.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            t[510] = 0x55;
            t[511] = 0xaa;
            let _ = parse(&t, x % 100_000);
        }
    }
}
