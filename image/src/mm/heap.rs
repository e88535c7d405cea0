//! The kernel heap: `talc` behind hermit-sync's interrupt-safe spin lock, fed with frames.

use talc::TalcLock;
use talc::source::Manual;

use super::frames;

#[global_allocator]
static HEAP: TalcLock<hermit_sync::RawInterruptSpinMutex, Manual> = TalcLock::new(Manual);

/// Takes `bytes` of frames for the heap. Returns false if no memory was available.
pub fn init(bytes: u64) -> bool {
    let Some(base) = frames::alloc(bytes, super::PAGE_SIZE) else { return false };
    // SAFETY: the frames were just taken from the allocator: identity-mapped, unused, ours.
    unsafe { HEAP.lock().claim(base as *mut u8, bytes as usize) }.is_some()
}
