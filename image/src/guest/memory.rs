//! Guest-physical memory: one host-contiguous, 2 MiB-aligned block of frames, mapped at guest
//! physical 0 by EPT01; or, for a guest with an assigned device (no IOMMU: its DMA addresses
//! must be host-physical), **1:1 memory**: guest-physical = host-physical `[base, base + size)`
//! plus a separate 2 MiB block at guest-physical 0 (low RAM and the boot information; the
//! guest's frame allocator leaves the first MiB alone, so no DMA buffer lands there), with
//! `[2 MiB, base)` a hole. L0 reaches every block through its identity map.

use crate::mm::frames;

const LARGE_PAGE: u64 = 2 << 20;

/// One host-contiguous piece of guest RAM.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    pub gpa: u64,
    pub host: u64,
    pub size: u64,
}

/// The guest's RAM: one block at guest-physical 0, or the low block and the 1:1 block.
pub struct GuestMemory {
    blocks: [Block; 2],
    count: usize,
}

impl GuestMemory {
    /// Takes `size` bytes (rounded up to 2 MiB) of zeroed frames.
    pub fn allocate(size: u64) -> Option<Self> {
        let size = size.div_ceil(LARGE_PAGE) * LARGE_PAGE;
        let base = frames::alloc(size, LARGE_PAGE)?;
        let block = Block { gpa: 0, host: base, size };
        zero(block);
        Some(GuestMemory { blocks: [block; 2], count: 1 })
    }

    /// 1:1 memory: host `[base, base + size)` (2 MiB-aligned, rounded up to 2 MiB, free in
    /// the frame allocator) at the same guest-physical addresses, and 2 MiB of other frames
    /// at guest-physical 0.
    pub fn allocate_identity(base: u64, size: u64) -> Option<Self> {
        let size = size.div_ceil(LARGE_PAGE) * LARGE_PAGE;
        if base < LARGE_PAGE || !base.is_multiple_of(LARGE_PAGE) || !frames::alloc_at(base, size) {
            return None;
        }
        let Some(low) = frames::alloc(LARGE_PAGE, LARGE_PAGE) else {
            frames::free(base, size);
            return None;
        };
        let blocks =
            [Block { gpa: 0, host: low, size: LARGE_PAGE }, Block { gpa: base, host: base, size }];
        blocks.into_iter().for_each(zero);
        Some(GuestMemory { blocks, count: 2 })
    }

    /// The blocks, lowest guest-physical first.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks[..self.count]
    }

    /// Guest RAM is 1:1 above its low block.
    pub fn is_identity(&self) -> bool {
        self.count == 2
    }

    /// Host-physical base of the block at guest-physical 0.
    pub fn host_base(&self) -> u64 {
        self.blocks[0].host
    }

    /// The top of guest RAM (its bytes, without a hole).
    pub fn size(&self) -> u64 {
        self.blocks().last().map_or(0, |b| b.gpa + b.size)
    }

    /// Bytes of RAM in all blocks.
    pub fn bytes(&self) -> u64 {
        self.blocks().iter().map(|b| b.size).sum()
    }

    /// Where RAM above the low block starts (the loader's `ram_start`).
    pub fn ram_start(&self) -> u64 {
        if self.is_identity() { self.blocks[1].gpa } else { 1 << 20 }
    }

    /// The host address of `[gpa, gpa + len)`, if one block holds all of it. Block 0 is at
    /// guest-physical 0 (both layouts), checked first: every exit that reads guest memory
    /// comes through here.
    #[inline(always)]
    fn host(&self, gpa: u64, len: u64) -> Option<u64> {
        let end = gpa.checked_add(len)?;
        let low = &self.blocks[0];
        if end <= low.size {
            return Some(low.host + gpa);
        }
        self.high(gpa, end)
    }

    /// [`Self::host`] for the 1:1 block.
    #[inline(never)]
    fn high(&self, gpa: u64, end: u64) -> Option<u64> {
        let b = self.blocks.get(1).filter(|_| self.count == 2)?;
        (gpa >= b.gpa && end - b.gpa <= b.size).then(|| b.host + (gpa - b.gpa))
    }

    /// The guest bytes `[gpa, gpa + len)`, or `None` if any of it is outside guest RAM.
    pub fn slice_mut(&mut self, gpa: u64, len: u64) -> Option<&mut [u8]> {
        let host = self.host(gpa, len)?;
        // SAFETY: the range is inside a block we own exclusively (checked by `host`).
        Some(unsafe { core::slice::from_raw_parts_mut(host as *mut u8, len as usize) })
    }

    /// The guest bytes `[gpa, gpa + len)` for reading, or `None` if outside guest RAM.
    pub fn slice(&self, gpa: u64, len: u64) -> Option<&[u8]> {
        let host = self.host(gpa, len)?;
        // SAFETY: the range is inside a block we own (checked by `host`).
        Some(unsafe { core::slice::from_raw_parts(host as *const u8, len as usize) })
    }

    /// Copies `bytes` to guest-physical `gpa`; false if it does not fit.
    pub fn write(&mut self, gpa: u64, bytes: &[u8]) -> bool {
        match self.slice_mut(gpa, bytes.len() as u64) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                true
            }
            None => false,
        }
    }
}

/// The device models' view (`vdev`): the same bounds checks, as errors.
impl vdev::mem::GuestRam for GuestMemory {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), vdev::mem::OutOfRange> {
        let src = self
            .slice(gpa, buf.len() as u64)
            .ok_or(vdev::mem::OutOfRange { gpa, len: buf.len() as u64 })?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), vdev::mem::OutOfRange> {
        let dst = self
            .slice_mut(gpa, data.len() as u64)
            .ok_or(vdev::mem::OutOfRange { gpa, len: data.len() as u64 })?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

fn zero(b: Block) {
    // SAFETY: the frames were just allocated for the guest and are identity-mapped.
    unsafe { core::ptr::write_bytes(b.host as *mut u8, 0, b.size as usize) };
}
