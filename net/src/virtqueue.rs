//! Split-virtqueue descriptor chains (virtio 1.2 section 2.7.5), parsed defensively: a chain
//! whose `next` loops or leaves the table, or whose buffers point outside memory, is an error
//! with the offending descriptor, never a hang or a panic. This is what a device model (L0
//! emulating virtio for its guest) must check on every guest-supplied chain. Pure: tested on
//! the host.

use alloc::vec::Vec;
use core::fmt;

/// Bytes per descriptor.
pub const DESC_SIZE: usize = 16;
/// Flag: the chain continues at `next`.
pub const F_NEXT: u16 = 1;
/// Flag: the device writes this buffer.
pub const F_WRITE: u16 = 2;
/// Flag: the buffer is an indirect descriptor table.
pub const F_INDIRECT: u16 = 4;

/// One descriptor as the driver wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub flags: u16,
    pub next: u16,
}

/// One buffer of a checked chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub addr: u64,
    pub len: u32,
    pub device_writes: bool,
}

/// Why a chain is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainError {
    /// The table is not a whole number of descriptors or larger than a queue may be.
    BadTable(usize),
    /// The head or a `next` index is outside the table.
    OutOfTable { index: u16, size: u16 },
    /// The chain visits a descriptor twice (or is longer than the table).
    Loop { index: u16 },
    /// A buffer reaches outside guest memory (or wraps around the address space).
    OutsideMemory { index: u16, addr: u64, len: u32 },
    /// A device-readable buffer follows a device-writable one (2.7.4.2).
    ReadAfterWrite { index: u16 },
    /// Indirect tables are not accepted (the feature is not offered).
    Indirect { index: u16 },
}

impl fmt::Display for ChainError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainError::BadTable(n) => {
                write!(f, "{n}-byte descriptor table is not 1 to 32768 descriptors")
            }
            ChainError::OutOfTable { index, size } => {
                write!(f, "descriptor index {index} is outside the {size}-entry table")
            }
            ChainError::Loop { index } => write!(f, "descriptor chain loops at {index}"),
            ChainError::OutsideMemory { index, addr, len } => {
                write!(f, "descriptor {index} points outside memory ({len} bytes at {addr:#x})")
            }
            ChainError::ReadAfterWrite { index } => {
                write!(f, "descriptor {index} is device-readable after a device-writable one")
            }
            ChainError::Indirect { index } => {
                write!(f, "descriptor {index} is indirect (not offered)")
            }
        }
    }
}

/// Parses a descriptor table (little-endian, 16 bytes each).
pub fn parse_table(bytes: &[u8]) -> Result<Vec<Desc>, ChainError> {
    if bytes.is_empty() || !bytes.len().is_multiple_of(DESC_SIZE) || bytes.len() / DESC_SIZE > 32768
    {
        return Err(ChainError::BadTable(bytes.len()));
    }
    Ok(bytes
        .chunks_exact(DESC_SIZE)
        .map(|d| Desc {
            addr: u64::from_le_bytes([d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]]),
            len: u32::from_le_bytes([d[8], d[9], d[10], d[11]]),
            flags: u16::from_le_bytes([d[12], d[13]]),
            next: u16::from_le_bytes([d[14], d[15]]),
        })
        .collect())
}

/// Walks the chain starting at `head` in a guest with `memory` bytes of RAM at address 0.
pub fn walk_chain(table: &[Desc], head: u16, memory: u64) -> Result<Vec<Segment>, ChainError> {
    let size = u16::try_from(table.len()).unwrap_or(u16::MAX);
    let mut seen = alloc::vec![false; table.len()];
    let mut segments = Vec::new();
    let mut index = head;
    let mut writing = false;
    loop {
        let desc = *table.get(usize::from(index)).ok_or(ChainError::OutOfTable { index, size })?;
        if core::mem::replace(&mut seen[usize::from(index)], true) {
            return Err(ChainError::Loop { index });
        }
        if desc.flags & F_INDIRECT != 0 {
            return Err(ChainError::Indirect { index });
        }
        let end = desc.addr.checked_add(u64::from(desc.len));
        if end.is_none_or(|end| end > memory) {
            return Err(ChainError::OutsideMemory { index, addr: desc.addr, len: desc.len });
        }
        let device_writes = desc.flags & F_WRITE != 0;
        if writing && !device_writes {
            return Err(ChainError::ReadAfterWrite { index });
        }
        writing |= device_writes;
        segments.push(Segment { addr: desc.addr, len: desc.len, device_writes });
        if desc.flags & F_NEXT == 0 {
            return Ok(segments);
        }
        index = desc.next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(addr: u64, len: u32, flags: u16, next: u16) -> Desc {
        Desc { addr, len, flags, next }
    }

    fn bytes(table: &[Desc]) -> Vec<u8> {
        let mut out = Vec::new();
        for x in table {
            out.extend_from_slice(&x.addr.to_le_bytes());
            out.extend_from_slice(&x.len.to_le_bytes());
            out.extend_from_slice(&x.flags.to_le_bytes());
            out.extend_from_slice(&x.next.to_le_bytes());
        }
        out
    }

    #[test]
    fn a_good_chain_is_walked() {
        let table = [
            d(0x1000, 16, F_NEXT, 2),
            d(0, 0, 0, 0),
            d(0x2000, 512, F_NEXT | F_WRITE, 3),
            d(0x3000, 1, F_WRITE, 0),
        ];
        let parsed = parse_table(&bytes(&table)).unwrap();
        assert_eq!(parsed, table);
        let chain = walk_chain(&parsed, 0, 1 << 20).unwrap();
        assert_eq!(chain.len(), 3);
        assert_eq!(chain[1], Segment { addr: 0x2000, len: 512, device_writes: true });
    }

    #[test]
    fn loops_are_refused() {
        let table = [d(0x1000, 1, F_NEXT, 1), d(0x1000, 1, F_NEXT, 0)];
        assert_eq!(walk_chain(&table, 0, 1 << 20), Err(ChainError::Loop { index: 0 }));
        let self_loop = [d(0x1000, 1, F_NEXT, 0)];
        assert_eq!(walk_chain(&self_loop, 0, 1 << 20), Err(ChainError::Loop { index: 0 }));
    }

    #[test]
    fn pointers_outside_memory_or_table_are_refused() {
        let table = [d(0xff_f000, 0x2000, 0, 0)];
        assert_eq!(
            walk_chain(&table, 0, 1 << 24),
            Err(ChainError::OutsideMemory { index: 0, addr: 0xff_f000, len: 0x2000 })
        );
        let wrap = [d(u64::MAX - 1, 4, 0, 0)];
        assert!(matches!(walk_chain(&wrap, 0, u64::MAX), Err(ChainError::OutsideMemory { .. })));
        let table = [d(0x1000, 1, F_NEXT, 7)];
        assert_eq!(
            walk_chain(&table, 0, 1 << 20),
            Err(ChainError::OutOfTable { index: 7, size: 1 })
        );
        assert_eq!(
            walk_chain(&table, 3, 1 << 20),
            Err(ChainError::OutOfTable { index: 3, size: 1 })
        );
        let table = [d(0x1000, 1, F_WRITE | F_NEXT, 1), d(0x2000, 1, 0, 0)];
        assert_eq!(walk_chain(&table, 0, 1 << 20), Err(ChainError::ReadAfterWrite { index: 1 }));
        let table = [d(0x1000, 32, F_INDIRECT, 0)];
        assert_eq!(walk_chain(&table, 0, 1 << 20), Err(ChainError::Indirect { index: 0 }));
        assert_eq!(parse_table(&[0u8; 15]), Err(ChainError::BadTable(15)));
        assert_eq!(parse_table(&[]), Err(ChainError::BadTable(0)));
    }

    #[test]
    fn random_tables_always_terminate() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..500 {
            let table: Vec<Desc> = (0..64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    d(
                        x % (1 << 21),
                        (x >> 24) as u32 % 8192,
                        (x >> 40) as u16 & 3,
                        (x >> 48) as u16 % 70,
                    )
                })
                .collect();
            for head in 0..70 {
                if let Ok(chain) = walk_chain(&table, head, 1 << 21) {
                    assert!(chain.len() <= table.len());
                }
            }
        }
    }
}
