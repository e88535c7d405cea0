//! Split virtqueues (virtio 1.2 section 2.7): the descriptor table, the driver area (available
//! ring) and the device area (used ring) in guest memory, as the device walks them. Every
//! index, address and length comes from the guest and is checked here or by [`GuestRam`]: a
//! bad ring is a [`QueueError`], never a panic. Indirect descriptors and event suppression are
//! not offered (their feature bits stay clear), so a chain is direct descriptors only.

use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::mem::{GuestRam, GuestRamExt, OutOfRange};

/// VIRTQ_DESC_F_NEXT: the chain goes on at `next`.
const DESC_F_NEXT: u16 = 1;
/// VIRTQ_DESC_F_WRITE: the buffer is device-writable.
const DESC_F_WRITE: u16 = 2;
/// VIRTQ_DESC_F_INDIRECT: the buffer is a table of descriptors (not negotiated).
const DESC_F_INDIRECT: u16 = 4;
/// Size of one descriptor (addr u64, len u32, flags u16, next u16).
const DESC_SIZE: u64 = 16;

/// Why a queue cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueError {
    /// The ring, a descriptor or a buffer lies outside guest RAM.
    Memory(OutOfRange),
    /// The available index ran more than a queue size ahead of the device.
    AvailIndex { avail: u16, seen: u16, size: u16 },
    /// A head or `next` index beyond the descriptor table.
    DescIndex(u16),
    /// A chain longer than the queue (a loop).
    ChainLoop,
    /// An indirect descriptor, which the device did not offer.
    Indirect,
    /// A device-readable descriptor after a device-writable one (section 2.7.4.2).
    ReadAfterWrite,
    /// A descriptor whose buffer wraps around the address space.
    BufferWraps { addr: u64, len: u32 },
    /// The driver made the queue ready with a size that is zero, not a power of two or above
    /// the device's maximum, or with a misaligned ring.
    BadLayout,
}

impl From<OutOfRange> for QueueError {
    fn from(e: OutOfRange) -> Self {
        QueueError::Memory(e)
    }
}

/// One buffer of a chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

/// A descriptor chain the device took from the available ring: its head (which the used ring
/// names) and its buffers, device-readable ones first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub head: u16,
    pub descs: Vec<Desc>,
}

impl Chain {
    /// Bytes in the device-readable buffers.
    pub fn readable_len(&self) -> u64 {
        self.descs.iter().filter(|d| !d.writable).map(|d| u64::from(d.len)).sum()
    }

    /// Bytes in the device-writable buffers.
    pub fn writable_len(&self) -> u64 {
        self.descs.iter().filter(|d| d.writable).map(|d| u64::from(d.len)).sum()
    }

    /// Copies device-readable bytes from byte `offset` of the readable part into `buf`;
    /// returns how many it copied (less than `buf.len()` at the end of the readable part).
    pub fn read_at(
        &self,
        mem: &dyn GuestRam,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, QueueError> {
        copy(self.descs.iter().filter(|d| !d.writable), offset, buf.len(), |addr, at, n| {
            mem.read(addr, &mut buf[at..at + n])
        })
    }

    /// Copies `data` into the device-writable buffers from byte `offset` of the writable part;
    /// returns how many bytes fit.
    pub fn write_at(
        &self,
        mem: &mut dyn GuestRam,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, QueueError> {
        copy(self.descs.iter().filter(|d| d.writable), offset, data.len(), |addr, at, n| {
            mem.write(addr, &data[at..at + n])
        })
    }
}

/// Walks `descs` as one byte stream from `offset`, calling `f(guest address, index into the
/// caller's buffer, length)` for each piece of at most `want` bytes.
fn copy<'a>(
    descs: impl Iterator<Item = &'a Desc>,
    mut offset: u64,
    want: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), OutOfRange>,
) -> Result<usize, QueueError> {
    let mut done = 0usize;
    for d in descs {
        if done == want {
            break;
        }
        let len = u64::from(d.len);
        if offset >= len {
            offset -= len;
            continue;
        }
        let n = (len - offset).min((want - done) as u64) as usize;
        // `Desc`s are checked not to wrap when the chain is read, so this cannot overflow.
        f(d.addr + offset, done, n)?;
        done += n;
        offset = 0;
    }
    Ok(done)
}

/// One virtqueue's configuration (written by the driver through the transport) and the
/// device's position in its rings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Queue {
    /// Queue size (QueueNum): entries in each ring.
    pub size: u16,
    /// QueueReady: the driver made the queue live.
    pub ready: bool,
    /// Guest-physical address of the descriptor table.
    pub desc: u64,
    /// Guest-physical address of the driver area (available ring).
    pub driver: u64,
    /// Guest-physical address of the device area (used ring).
    pub device: u64,
    /// The next available-ring entry the device will take.
    next_avail: u16,
    /// The used-ring index the device will publish next.
    next_used: u16,
}

impl Queue {
    /// A queue of `max` entries, not ready (what reset leaves).
    pub fn new(max: u16) -> Self {
        Queue { size: max, ..Queue::default() }
    }

    /// Checks the layout the driver set before it goes live: a power-of-two size up to `max`,
    /// the rings aligned as section 2.7 requires (16, 2 and 4 bytes).
    pub fn check_layout(&self, max: u16) -> Result<(), QueueError> {
        let ok = self.size != 0
            && self.size <= max
            && self.size.is_power_of_two()
            && self.desc.is_multiple_of(16)
            && self.driver.is_multiple_of(2)
            && self.device.is_multiple_of(4);
        if ok { Ok(()) } else { Err(QueueError::BadLayout) }
    }

    /// Takes the next chain the driver made available, `None` if there is none.
    pub fn pop(&mut self, mem: &dyn GuestRam) -> Result<Option<Chain>, QueueError> {
        if !self.ready || self.size == 0 {
            return Ok(None);
        }
        let avail = mem.read_u16(self.driver.wrapping_add(2))?;
        let pending = avail.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailIndex { avail, seen: self.next_avail, size: self.size });
        }
        // Read the ring entry only after the index that published it.
        fence(Ordering::Acquire);
        let slot = u64::from(self.next_avail % self.size);
        let head = mem.read_u16(self.driver.wrapping_add(4 + 2 * slot))?;
        self.next_avail = self.next_avail.wrapping_add(1);
        self.read_chain(mem, head).map(Some)
    }

    fn read_chain(&self, mem: &dyn GuestRam, head: u16) -> Result<Chain, QueueError> {
        let mut descs = Vec::new();
        let mut index = head;
        loop {
            if index >= self.size {
                return Err(QueueError::DescIndex(index));
            }
            if descs.len() >= usize::from(self.size) {
                return Err(QueueError::ChainLoop);
            }
            let at = self.desc.wrapping_add(DESC_SIZE * u64::from(index));
            let mut raw = [0u8; DESC_SIZE as usize];
            mem.read(at, &mut raw)?;
            let addr = u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]);
            let len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & DESC_F_INDIRECT != 0 {
                return Err(QueueError::Indirect);
            }
            if addr.checked_add(u64::from(len)).is_none() {
                return Err(QueueError::BufferWraps { addr, len });
            }
            let writable = flags & DESC_F_WRITE != 0;
            if !writable && descs.last().is_some_and(|d: &Desc| d.writable) {
                return Err(QueueError::ReadAfterWrite);
            }
            descs.push(Desc { addr, len, writable });
            if flags & DESC_F_NEXT == 0 {
                return Ok(Chain { head, descs });
            }
            index = next;
        }
    }

    /// Returns chain `head` to the driver with `len` bytes written into it (section 2.7.8).
    pub fn push_used(
        &mut self,
        mem: &mut dyn GuestRam,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        let slot = u64::from(self.next_used % self.size.max(1));
        let mut entry = [0u8; 8];
        entry[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        entry[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(self.device.wrapping_add(4 + 8 * slot), &entry)?;
        // The entry is visible before the index that publishes it.
        fence(Ordering::Release);
        self.next_used = self.next_used.wrapping_add(1);
        mem.write_u16(self.device.wrapping_add(2), self.next_used)?;
        Ok(())
    }
}

/// Building rings in a [`VecRam`](crate::mem::VecRam) the way a driver does, for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::mem::VecRam;

    /// A driver's view of one queue laid out at `base`: descriptors, then the available ring,
    /// then the used ring.
    pub struct DriverQueue {
        pub size: u16,
        pub desc: u64,
        pub avail: u64,
        pub used: u64,
        pub next_desc: u16,
        pub avail_idx: u16,
        pub used_seen: u16,
    }

    impl DriverQueue {
        pub fn new(base: u64, size: u16) -> Self {
            let desc = base;
            let avail = desc + 16 * u64::from(size);
            let used = (avail + 6 + 2 * u64::from(size) + 3) & !3;
            DriverQueue { size, desc, avail, used, next_desc: 0, avail_idx: 0, used_seen: 0 }
        }

        /// The device-side queue the transport would hold after the driver set it up.
        pub fn device_queue(&self) -> Queue {
            Queue {
                size: self.size,
                ready: true,
                desc: self.desc,
                driver: self.avail,
                device: self.used,
                ..Queue::default()
            }
        }

        /// Writes a chain of `(addr, len, writable)` buffers and makes it available; returns
        /// its head.
        pub fn add(&mut self, mem: &mut VecRam, bufs: &[(u64, u32, bool)]) -> u16 {
            let head = self.next_desc;
            for (i, &(addr, len, writable)) in bufs.iter().enumerate() {
                let index = (self.next_desc + i as u16) % self.size;
                let last = i + 1 == bufs.len();
                let mut flags = if writable { DESC_F_WRITE } else { 0 };
                if !last {
                    flags |= DESC_F_NEXT;
                }
                let next = (index + 1) % self.size;
                let at = self.desc + 16 * u64::from(index);
                mem.write(at, &addr.to_le_bytes()).unwrap();
                mem.write(at + 8, &len.to_le_bytes()).unwrap();
                mem.write(at + 12, &flags.to_le_bytes()).unwrap();
                mem.write(at + 14, &next.to_le_bytes()).unwrap();
            }
            self.next_desc = (self.next_desc + bufs.len() as u16) % self.size;
            let slot = u64::from(self.avail_idx % self.size);
            mem.write(self.avail + 4 + 2 * slot, &head.to_le_bytes()).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write(self.avail + 2, &self.avail_idx.to_le_bytes()).unwrap();
            head
        }

        /// The used entries the device published since the last call: (head, len).
        pub fn take_used(&mut self, mem: &VecRam) -> Vec<(u32, u32)> {
            let idx = mem.read_u16(self.used + 2).unwrap();
            let mut out = Vec::new();
            while self.used_seen != idx {
                let slot = u64::from(self.used_seen % self.size);
                let id = mem.read_u32(self.used + 4 + 8 * slot).unwrap();
                let len = mem.read_u32(self.used + 8 + 8 * slot).unwrap();
                out.push((id, len));
                self.used_seen = self.used_seen.wrapping_add(1);
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::DriverQueue;
    use super::*;
    use crate::mem::VecRam;

    #[test]
    fn a_chain_is_read_in_order_and_returned_through_the_used_ring() {
        let mut mem = VecRam::new(0x10000);
        let mut d = DriverQueue::new(0x1000, 8);
        let mut q = d.device_queue();
        q.check_layout(8).unwrap();
        let head = d.add(&mut mem, &[(0x4000, 4, false), (0x5000, 2, false), (0x6000, 8, true)]);
        mem.write(0x4000, b"abcd").unwrap();
        mem.write(0x5000, b"ef").unwrap();
        let chain = q.pop(&mem).unwrap().unwrap();
        assert_eq!(chain.head, head);
        assert_eq!((chain.readable_len(), chain.writable_len()), (6, 8));
        let mut buf = [0u8; 5];
        assert_eq!(chain.read_at(&mem, 1, &mut buf), Ok(5));
        assert_eq!(&buf, b"bcdef");
        assert_eq!(chain.write_at(&mut mem, 6, b"xyz"), Ok(2));
        assert_eq!(&mem.bytes[0x6006..0x6008], b"xy");
        q.push_used(&mut mem, chain.head, 8).unwrap();
        assert_eq!(d.take_used(&mem), [(u32::from(head), 8)]);
        assert_eq!(q.pop(&mem), Ok(None));
    }

    #[test]
    fn bad_rings_are_errors() {
        let mut mem = VecRam::new(0x10000);
        let mut d = DriverQueue::new(0x1000, 4);
        let mut q = d.device_queue();
        // The available index jumps ahead by more than the queue size.
        mem.write(d.avail + 2, &100u16.to_le_bytes()).unwrap();
        assert!(matches!(q.pop(&mem), Err(QueueError::AvailIndex { .. })));
        // A head beyond the table.
        let mut q = d.device_queue();
        mem.write(d.avail + 2, &1u16.to_le_bytes()).unwrap();
        mem.write(d.avail + 4, &9u16.to_le_bytes()).unwrap();
        assert_eq!(q.pop(&mem), Err(QueueError::DescIndex(9)));
        // A loop: descriptor 0 chains to itself.
        let mut q = d.device_queue();
        d.add(&mut mem, &[(0x4000, 4, false)]);
        mem.write(d.desc + 12, &DESC_F_NEXT.to_le_bytes()).unwrap();
        mem.write(d.desc + 14, &0u16.to_le_bytes()).unwrap();
        mem.write(d.avail + 4, &0u16.to_le_bytes()).unwrap();
        assert_eq!(q.pop(&mem), Err(QueueError::ChainLoop));
        // A buffer wrapping the address space; an indirect descriptor.
        let mut q = d.device_queue();
        mem.write(d.desc, &u64::MAX.to_le_bytes()).unwrap();
        mem.write(d.desc + 12, &0u16.to_le_bytes()).unwrap();
        assert!(matches!(q.pop(&mem), Err(QueueError::BufferWraps { .. })));
        let mut q = d.device_queue();
        mem.write(d.desc + 12, &DESC_F_INDIRECT.to_le_bytes()).unwrap();
        assert_eq!(q.pop(&mem), Err(QueueError::Indirect));
        // A ring outside guest memory.
        let mut q = Queue { driver: 0xffff_0000, ..d.device_queue() };
        assert!(matches!(q.pop(&mem), Err(QueueError::Memory(_))));
    }

    #[test]
    fn readable_after_writable_is_refused() {
        let mut mem = VecRam::new(0x10000);
        let mut d = DriverQueue::new(0x1000, 4);
        let mut q = d.device_queue();
        d.add(&mut mem, &[(0x4000, 4, true), (0x5000, 4, false)]);
        assert_eq!(q.pop(&mem), Err(QueueError::ReadAfterWrite));
    }

    #[test]
    fn layout_checks() {
        let q = |size, desc, driver, device| Queue { size, desc, driver, device, ..Queue::new(8) };
        assert!(q(8, 0x1000, 0x2000, 0x3000).check_layout(8).is_ok());
        assert!(q(0, 0x1000, 0x2000, 0x3000).check_layout(8).is_err());
        assert!(q(6, 0x1000, 0x2000, 0x3000).check_layout(8).is_err());
        assert!(q(16, 0x1000, 0x2000, 0x3000).check_layout(8).is_err());
        assert!(q(8, 0x1008, 0x2000, 0x3000).check_layout(8).is_err());
        assert!(q(8, 0x1000, 0x2001, 0x3000).check_layout(8).is_err());
        assert!(q(8, 0x1000, 0x2000, 0x3002).check_layout(8).is_err());
    }
}
