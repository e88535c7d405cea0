//! virtio-blk (virtio 1.2 section 5.2): one request queue; each request is a 16-byte header
//! (type, reserved, sector) in device-readable buffers, the data, and a status byte at the end
//! of the device-writable buffers. The disk behind it is a [`DiskSlice`]: a window of a
//! [`BlockDevice`] (a partition of the level's own disk), so the guest reaches nothing else.
//! Data moves in bounded chunks, never in a buffer sized by the guest.

use storage::{BlockDevice, BlockError, SECTOR};

use crate::feature::VERSION_1;
use crate::mem::GuestRam;
use crate::mmio::{Device, DeviceError};
use crate::queue::{Chain, Queue, QueueError};

/// Virtio device ID of a block device.
pub const DEVICE_ID: u32 = 2;
/// VIRTIO_BLK_F_RO: the disk is read-only.
pub const F_RO: u64 = 1 << 5;
/// VIRTIO_BLK_F_FLUSH: the device takes flush requests.
pub const F_FLUSH: u64 = 1 << 9;
/// Request types.
const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;
/// Status byte values.
const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;
/// Header bytes.
const HEADER: u64 = 16;
/// Queue size offered.
pub const QUEUE_MAX: u16 = 128;
/// Sectors moved per backend call.
const CHUNK_SECTORS: usize = 8;

/// Sectors `[start, start + len)` of `disk`, seen as a disk of its own.
pub struct DiskSlice<B> {
    pub disk: B,
    start: u64,
    len: u64,
}

impl<B: BlockDevice> DiskSlice<B> {
    /// The window `[start, start + len)` of `disk`, cut to the disk's end.
    pub fn new(disk: B, start: u64, len: u64) -> Self {
        let end = start.saturating_add(len).min(disk.sectors());
        let start = start.min(end);
        DiskSlice { disk, start, len: end - start }
    }

    fn check(&self, lba: u64, bytes: usize) -> Result<u64, BlockError> {
        if !bytes.is_multiple_of(SECTOR) {
            return Err(BlockError::Unaligned(bytes));
        }
        let sectors = (bytes / SECTOR) as u64;
        match lba.checked_add(sectors) {
            Some(end) if end <= self.len => Ok(self.start + lba),
            _ => Err(BlockError::OutOfRange { lba, sectors, capacity: self.len }),
        }
    }
}

impl<B: BlockDevice> BlockDevice for DiskSlice<B> {
    fn sectors(&self) -> u64 {
        self.len
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let at = self.check(lba, buf.len())?;
        self.disk.read(at, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let at = self.check(lba, buf.len())?;
        self.disk.write(at, buf)
    }
    fn kind(&self) -> &'static str {
        self.disk.kind()
    }
}

/// Counters of what the guest asked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlkStats {
    pub reads: u64,
    pub writes: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    /// Requests answered with IOERR or UNSUPP.
    pub errors: u64,
}

/// A virtio block device serving `disk`.
pub struct Blk<B> {
    pub disk: B,
    read_only: bool,
    pub stats: BlkStats,
    /// The last request refused and why, for the level's log.
    pub last_error: Option<&'static str>,
    /// What the disk behind said when it last failed a read or write.
    pub last_disk_error: Option<BlockError>,
}

impl<B: BlockDevice> Blk<B> {
    pub fn new(disk: B, read_only: bool) -> Self {
        Blk { disk, read_only, stats: BlkStats::default(), last_error: None, last_disk_error: None }
    }

    /// Serves one request; returns the bytes written into the guest's buffers (data and
    /// status byte).
    fn request(&mut self, chain: &Chain, mem: &mut dyn GuestRam) -> Result<u32, QueueError> {
        let writable = chain.writable_len();
        if writable == 0 {
            // Nowhere to put the status: nothing can be answered.
            self.fail("request without a status byte");
            return Ok(0);
        }
        let mut header = [0u8; HEADER as usize];
        let (status, data) = if chain.read_at(mem, 0, &mut header)? < header.len() {
            (self.fail("request header shorter than 16 bytes"), 0)
        } else {
            let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
            let sector = u64::from_le_bytes([
                header[8], header[9], header[10], header[11], header[12], header[13], header[14],
                header[15],
            ]);
            match kind {
                T_IN => self.read(chain, mem, sector, writable - 1)?,
                T_OUT => self.write(chain, mem, sector, chain.readable_len() - HEADER)?,
                T_FLUSH => (S_OK, 0),
                T_GET_ID => (self.unsupported("GET_ID is not supported"), 0),
                _ => (self.unsupported("unknown request type"), 0),
            }
        };
        chain.write_at(mem, writable - 1, &[status])?;
        Ok((data + 1) as u32)
    }

    /// Notes a refused request; its status is IOERR.
    fn fail(&mut self, why: &'static str) -> u8 {
        self.stats.errors += 1;
        self.last_error = Some(why);
        S_IOERR
    }

    /// Notes a request of a kind the device does not serve; its status is UNSUPP.
    fn unsupported(&mut self, why: &'static str) -> u8 {
        self.fail(why);
        S_UNSUPP
    }

    /// A read of `len` bytes from `sector` into the writable buffers: (status, bytes written).
    fn read(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestRam,
        sector: u64,
        len: u64,
    ) -> Result<(u8, u64), QueueError> {
        if let Some(s) = self.check(sector, len) {
            return Ok((s, 0));
        }
        let mut buf = [0u8; CHUNK_SECTORS * SECTOR];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            let lba = sector + done / SECTOR as u64;
            if let Err(e) = self.disk.read(lba, &mut buf[..n]) {
                self.last_disk_error = Some(e);
                return Ok((self.fail("the disk failed a read"), done));
            }
            chain.write_at(mem, done, &buf[..n])?;
            done += n as u64;
        }
        self.stats.reads += 1;
        self.stats.sectors_read += len / SECTOR as u64;
        Ok((S_OK, len))
    }

    /// A write of `len` bytes after the header to `sector`: (status, 0).
    fn write(
        &mut self,
        chain: &Chain,
        mem: &mut dyn GuestRam,
        sector: u64,
        len: u64,
    ) -> Result<(u8, u64), QueueError> {
        if self.read_only {
            return Ok((self.fail("write to a read-only disk"), 0));
        }
        if let Some(s) = self.check(sector, len) {
            return Ok((s, 0));
        }
        let mut buf = [0u8; CHUNK_SECTORS * SECTOR];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            chain.read_at(mem, HEADER + done, &mut buf[..n])?;
            let lba = sector + done / SECTOR as u64;
            if let Err(e) = self.disk.write(lba, &buf[..n]) {
                self.last_disk_error = Some(e);
                return Ok((self.fail("the disk failed a write"), 0));
            }
            done += n as u64;
        }
        self.stats.writes += 1;
        self.stats.sectors_written += len / SECTOR as u64;
        Ok((S_OK, 0))
    }

    /// IOERR if `len` bytes from `sector` are not whole sectors inside the disk.
    fn check(&mut self, sector: u64, len: u64) -> Option<u8> {
        if !len.is_multiple_of(SECTOR as u64) {
            return Some(self.fail("data length is not whole sectors"));
        }
        let end = sector.checked_add(len / SECTOR as u64);
        if end.is_none_or(|e| e > self.disk.sectors()) {
            return Some(self.fail("request beyond the end of the disk"));
        }
        None
    }
}

impl<B: BlockDevice> Device for Blk<B> {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        VERSION_1 | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }
    fn queues(&self) -> usize {
        1
    }
    fn queue_max(&self) -> u16 {
        QUEUE_MAX
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        // struct virtio_blk_config: capacity (le64) first; the rest is for features not
        // offered and reads as 0.
        let capacity = self.disk.sectors().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| capacity.get(o))
                .copied()
                .unwrap_or(0);
        }
    }
    fn process(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestRam,
    ) -> Result<bool, DeviceError> {
        let err = |error| DeviceError::Queue { queue: 0, error };
        let Some(q) = queues.first_mut() else { return Ok(false) };
        let mut used = false;
        while let Some(chain) = q.pop(mem).map_err(err)? {
            let len = self.request(&chain, mem).map_err(err)?;
            q.push_used(mem, chain.head, len).map_err(err)?;
            used = true;
        }
        Ok(used)
    }
    fn reset(&mut self) {}
}

/// A disk in a vector, for tests.
#[cfg(test)]
pub(crate) struct VecDisk(pub alloc::vec::Vec<u8>);

#[cfg(test)]
impl BlockDevice for VecDisk {
    fn sectors(&self) -> u64 {
        (self.0.len() / SECTOR) as u64
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let start = lba as usize * SECTOR;
        let src = self.0.get(start..start + buf.len()).ok_or(BlockError::Dead)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let start = lba as usize * SECTOR;
        self.0.get_mut(start..start + buf.len()).ok_or(BlockError::Dead)?.copy_from_slice(buf);
        Ok(())
    }
    fn kind(&self) -> &'static str {
        "vec"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecRam;
    use crate::queue::testing::DriverQueue;

    fn disk() -> DiskSlice<VecDisk> {
        // 16 sectors, sector n filled with n; the slice is sectors 4..12.
        let mut v = alloc::vec![0u8; 16 * SECTOR];
        for (i, b) in v.iter_mut().enumerate() {
            *b = (i / SECTOR) as u8;
        }
        DiskSlice::new(VecDisk(v), 4, 8)
    }

    fn header(mem: &mut VecRam, at: u64, kind: u32, sector: u64) {
        mem.write(at, &kind.to_le_bytes()).unwrap();
        mem.write(at + 8, &sector.to_le_bytes()).unwrap();
    }

    fn setup() -> (VecRam, DriverQueue, Vec<Queue>, Blk<DiskSlice<VecDisk>>) {
        let mem = VecRam::new(0x20000);
        let d = DriverQueue::new(0x1000, 8);
        let q = alloc::vec![d.device_queue()];
        (mem, d, q, Blk::new(disk(), false))
    }

    #[test]
    fn reads_and_writes_stay_in_the_slice() {
        let (mut mem, mut d, mut q, mut blk) = setup();
        assert_eq!(blk.disk.sectors(), 8);
        let mut cap = [0u8; 8];
        blk.read_config(0, &mut cap);
        assert_eq!(u64::from_le_bytes(cap), 8);
        // Read sectors 1..3 of the slice (disk sectors 5 and 6), data split over two buffers.
        header(&mut mem, 0x4000, T_IN, 1);
        d.add(&mut mem, &[(0x4000, 16, false), (0x5000, 700, true), (0x6000, 325, true)]);
        assert_eq!(blk.process(&mut q, &mut mem), Ok(true));
        assert_eq!(d.take_used(&mem), [(0, 1025)]);
        assert!(mem.bytes[0x5000..0x5000 + 512].iter().all(|&b| b == 5));
        assert!(mem.bytes[0x5000 + 512..0x5000 + 700].iter().all(|&b| b == 6));
        assert!(mem.bytes[0x6000..0x6000 + 324].iter().all(|&b| b == 6));
        assert_eq!(mem.bytes[0x6000 + 324], S_OK);
        // Write slice sector 7 (disk sector 11).
        header(&mut mem, 0x4100, T_OUT, 7);
        mem.write(0x7000, &[0xaa; 512]).unwrap();
        d.add(&mut mem, &[(0x4100, 16, false), (0x7000, 512, false), (0x7400, 1, true)]);
        blk.process(&mut q, &mut mem).unwrap();
        assert_eq!(d.take_used(&mem), [(3, 1)]);
        assert_eq!(mem.bytes[0x7400], S_OK);
        assert!(blk.disk.disk.0[11 * SECTOR..12 * SECTOR].iter().all(|&b| b == 0xaa));
        assert!(blk.disk.disk.0[12 * SECTOR..13 * SECTOR].iter().all(|&b| b == 12));
        assert_eq!((blk.stats.reads, blk.stats.writes, blk.stats.errors), (1, 1, 0));
    }

    #[test]
    fn bad_requests_get_an_error_status() {
        let (mut mem, mut d, mut q, mut blk) = setup();
        // Past the slice's end; not whole sectors; unknown type; short header.
        let cases: [(u32, u64, u32, u8); 4] = [
            (T_IN, 8, 512, S_IOERR),
            (T_IN, 0, 100, S_IOERR),
            (99, 0, 0, S_UNSUPP),
            (T_IN, 0, 0, S_IOERR),
        ];
        for (i, (kind, sector, len, want)) in cases.into_iter().enumerate() {
            let at = 0x4000 + 0x100 * i as u64;
            header(&mut mem, at, kind, sector);
            let hdr_len = if i == 3 { 8 } else { 16 };
            let status = 0x9000 + 0x10 * i as u64;
            let mut bufs = alloc::vec![(at, hdr_len, false)];
            if len > 0 {
                bufs.push((0x8000, len, true));
            }
            bufs.push((status, 1, true));
            d.add(&mut mem, &bufs);
            blk.process(&mut q, &mut mem).unwrap();
            assert_eq!(mem.bytes[status as usize], want, "case {i}");
        }
        assert_eq!(blk.stats.errors, 4);
        // The disk outside the slice is untouched and the read wrote no data.
        assert!(mem.bytes[0x8000..0x8200].iter().all(|&b| b == 0));
    }

    #[test]
    fn a_buffer_outside_guest_memory_fails_the_queue() {
        let (mut mem, mut d, mut q, mut blk) = setup();
        header(&mut mem, 0x4000, T_IN, 0);
        d.add(&mut mem, &[(0x4000, 16, false), (0x1_0000_0000, 512, true), (0x5000, 1, true)]);
        assert!(matches!(
            blk.process(&mut q, &mut mem),
            Err(DeviceError::Queue { queue: 0, error: QueueError::Memory(_) })
        ));
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let (mut mem, mut d, mut q, _) = setup();
        let mut blk = Blk::new(disk(), true);
        assert_ne!(blk.features() & F_RO, 0);
        header(&mut mem, 0x4000, T_OUT, 0);
        d.add(&mut mem, &[(0x4000, 16, false), (0x5000, 512, false), (0x6000, 1, true)]);
        blk.process(&mut q, &mut mem).unwrap();
        assert_eq!(mem.bytes[0x6000], S_IOERR);
        assert!(blk.disk.disk.0[4 * SECTOR..5 * SECTOR].iter().all(|&b| b == 4));
    }
}
