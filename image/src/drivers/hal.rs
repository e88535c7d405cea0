//! `virtio_drivers::Hal` for the image: DMA memory from the frame allocator, physical =
//! virtual (the first 4 GiB are identity-mapped), BARs below 4 GiB used in place.

use core::ptr::NonNull;

use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use crate::mm::frames;

/// The image's DMA and address translation for `virtio-drivers`.
pub struct TurtlesHal;

// SAFETY: `dma_alloc` returns zeroed, page-aligned frames that nothing else owns (taken from
// the frame allocator and never freed); every address below 4 GiB is identity-mapped, so the
// pointers returned are valid for the device's physical addresses and vice versa.
unsafe impl Hal for TurtlesHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let bytes = (pages * PAGE_SIZE) as u64;
        let Some(base) = frames::alloc(bytes, PAGE_SIZE as u64) else {
            panic!("drivers: out of memory for {pages} pages of DMA buffers");
        };
        let Some(ptr) = NonNull::new(base as *mut u8) else {
            panic!("drivers: the frame allocator returned address 0");
        };
        // SAFETY: the frames were just allocated for us and are identity-mapped.
        unsafe { ptr.as_ptr().write_bytes(0, bytes as usize) };
        (base, ptr)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
        // Devices live as long as the image; their queues are never freed.
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        match NonNull::new(paddr as *mut u8) {
            Some(ptr) => ptr,
            None => panic!("drivers: a device BAR at physical address 0"),
        }
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Heap and frames are identity-mapped and the image does not cache-manage DMA
        // (x86 DMA is coherent).
        buffer.as_ptr().cast::<u8>() as usize as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
