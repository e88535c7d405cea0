//! virtio-blk over `virtio-drivers` (virtio 1.2 section 5.2), with bounded waits: each request
//! goes through bounce buffers that are leaked if the device never completes it, so a device
//! that stops answering can't write into memory we reuse.

use alloc::boxed::Box;
use alloc::vec;

use virtio_drivers::Hal;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::Transport;

use crate::{BlockDevice, BlockError, POLL_BOUND, SECTOR, check_range};

/// Sectors per request.
const CHUNK_SECTORS: usize = 128;

/// A virtio-blk disk.
pub struct VirtioBlock<H: Hal, T: Transport> {
    blk: VirtIOBlk<H, T>,
    capacity: u64,
    dead: bool,
}

impl<H: Hal, T: Transport> VirtioBlock<H, T> {
    /// Negotiates features and sets up the request queue.
    pub fn new(transport: T) -> Result<Self, BlockError> {
        let mut blk = VirtIOBlk::<H, T>::new(transport)?;
        blk.disable_interrupts();
        let capacity = blk.capacity();
        Ok(VirtioBlock { blk, capacity, dead: false })
    }

    fn request(&mut self, lba: u64, buf: &mut [u8], write: bool) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Dead);
        }
        let mut req = Box::new(BlkReq::default());
        let mut resp = Box::new(BlkResp::default());
        let mut bounce = vec![0u8; buf.len()].into_boxed_slice();
        if write {
            bounce.copy_from_slice(buf);
        }
        let lba = usize::try_from(lba).map_err(|_| BlockError::OutOfRange {
            lba,
            sectors: (buf.len() / SECTOR) as u64,
            capacity: self.capacity,
        })?;
        // SAFETY: `req`, `bounce` and `resp` are not touched until the request completes, and
        // are leaked below if it never does.
        let token = unsafe {
            if write {
                self.blk.write_blocks_nb(lba, &mut req, &bounce, &mut resp)?
            } else {
                self.blk.read_blocks_nb(lba, &mut req, &mut bounce, &mut resp)?
            }
        };
        for _ in 0..POLL_BOUND {
            if self.blk.peek_used() == Some(token) {
                // SAFETY: the same buffers as passed when the request was added.
                unsafe {
                    if write {
                        self.blk.complete_write_blocks(token, &req, &bounce, &mut resp)?;
                    } else {
                        self.blk.complete_read_blocks(token, &req, &mut bounce, &mut resp)?;
                    }
                }
                if !write {
                    buf.copy_from_slice(&bounce);
                }
                return Ok(());
            }
            core::hint::spin_loop();
        }
        self.dead = true;
        Box::leak(req);
        Box::leak(resp);
        Box::leak(bounce);
        Err(BlockError::Timeout)
    }
}

impl<H: Hal, T: Transport> BlockDevice for VirtioBlock<H, T> {
    fn sectors(&self) -> u64 {
        self.capacity
    }

    fn kind(&self) -> &'static str {
        "virtio-blk"
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        check_range(lba, buf.len(), self.capacity)?;
        for (i, chunk) in buf.chunks_mut(CHUNK_SECTORS * SECTOR).enumerate() {
            self.request(lba + (i * CHUNK_SECTORS) as u64, chunk, false)?;
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        check_range(lba, buf.len(), self.capacity)?;
        for (i, chunk) in buf.chunks(CHUNK_SECTORS * SECTOR).enumerate() {
            let mut copy = chunk.to_vec();
            self.request(lba + (i * CHUNK_SECTORS) as u64, &mut copy, true)?;
        }
        Ok(())
    }
}
