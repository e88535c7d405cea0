//! Guest-physical memory: one host-contiguous, 2 MiB-aligned block of frames, mapped at guest
//! physical 0 by EPT01. L0 reaches it through its identity map.

use crate::mm::frames;

const LARGE_PAGE: u64 = 2 << 20;

/// The guest's RAM: guest-physical `[0, size)` is host-physical `[base, base + size)`.
pub struct GuestMemory {
    base: u64,
    size: u64,
}

impl GuestMemory {
    /// Takes `size` bytes (rounded up to 2 MiB) of zeroed frames.
    pub fn allocate(size: u64) -> Option<Self> {
        let size = size.div_ceil(LARGE_PAGE) * LARGE_PAGE;
        let base = frames::alloc(size, LARGE_PAGE)?;
        // SAFETY: the frames were just allocated for us and are identity-mapped.
        unsafe { core::ptr::write_bytes(base as *mut u8, 0, size as usize) };
        Some(GuestMemory { base, size })
    }

    /// Host-physical base.
    pub fn host_base(&self) -> u64 {
        self.base
    }

    /// Bytes of guest RAM.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The guest bytes `[gpa, gpa + len)`, or `None` if any of it is outside guest RAM.
    pub fn slice_mut(&mut self, gpa: u64, len: u64) -> Option<&mut [u8]> {
        let end = gpa.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: the range is inside the block we own exclusively (checked above).
        Some(unsafe { core::slice::from_raw_parts_mut((self.base + gpa) as *mut u8, len as usize) })
    }

    /// The guest bytes `[gpa, gpa + len)` for reading, or `None` if outside guest RAM.
    pub fn slice(&self, gpa: u64, len: u64) -> Option<&[u8]> {
        let end = gpa.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: the range is inside the block we own (checked above).
        Some(unsafe { core::slice::from_raw_parts((self.base + gpa) as *const u8, len as usize) })
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
