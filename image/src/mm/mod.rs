//! Physical memory: a frame allocator over the boot memory map (hermit's `free-list`) and the
//! kernel heap (`talc`) carved from it.

pub mod frames;
pub mod heap;

/// Size of a 4 KiB page.
pub const PAGE_SIZE: u64 = 4096;
