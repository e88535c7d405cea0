//! Frame allocator. Every available region of the memory map goes in, minus what is in use:
//! the first MiB (BIOS, real-mode structures), the image itself and the boot modules (guest
//! images). The identity map covers 4 GiB, so only frames below that are handed out.

use free_list::{FreeList, PageLayout, PageRange};
use hermit_sync::InterruptSpinMutex;

use super::PAGE_SIZE;
use crate::boot::{BootInfo, RegionKind};

const IDENTITY_MAPPED_END: u64 = 4 << 30;
const LOW_MEMORY_END: u64 = 1 << 20;

static FRAMES: InterruptSpinMutex<FreeList<32>> = InterruptSpinMutex::new(FreeList::new());

unsafe extern "C" {
    static __image_start: u8;
    static __image_end: u8;
}

/// Adds the available memory of `boot` to the allocator; returns the bytes added.
pub fn init(boot: &BootInfo) -> u64 {
    let image = ((&raw const __image_start).addr() as u64, (&raw const __image_end).addr() as u64);
    let mut in_use = [(0, LOW_MEMORY_END), image, (0, 0), (0, 0), (0, 0), (0, 0), (0, 0), (0, 0)];
    let mut used = 2;
    for module in boot.modules() {
        if let Some(slot) = in_use.get_mut(used) {
            *slot = (module.start, module.end);
            used += 1;
        }
    }
    let mut frames = FRAMES.lock();
    let mut added = 0;
    for region in boot.regions().iter().filter(|r| r.kind == RegionKind::Available) {
        let start = align_up(region.start);
        let end = align_down(region.end.min(IDENTITY_MAPPED_END));
        for (s, e) in subtract(start, end, &in_use[..used]) {
            let Ok(range) = PageRange::new(s as usize, e as usize) else { continue };
            // SAFETY: the range is available RAM that nothing else uses (we removed the image,
            // low memory and modules), and free ranges from the map do not overlap.
            if unsafe { frames.deallocate(range) }.is_ok() {
                added += e - s;
            } else {
                log::warn!("memory map region {s:#x}..{e:#x} overlaps another; skipped");
            }
        }
    }
    added
}

/// Allocates `bytes` (rounded up to pages) of physically contiguous, `align`-aligned memory.
pub fn alloc(bytes: u64, align: u64) -> Option<u64> {
    let layout =
        PageLayout::from_size_align(align_up(bytes) as usize, align.max(PAGE_SIZE) as usize)
            .ok()?;
    FRAMES.lock().allocate(layout).ok().map(|r| r.start() as u64)
}

/// Allocates exactly `[base, base + bytes)` (page-aligned), if all of it is free.
pub fn alloc_at(base: u64, bytes: u64) -> bool {
    let Ok(range) = PageRange::new(base as usize, (base + align_up(bytes)) as usize) else {
        return false;
    };
    FRAMES.lock().allocate_at(range).is_ok()
}

/// Returns `bytes` (rounded up to pages) at `base`, allocated by [`alloc`].
pub fn free(base: u64, bytes: u64) {
    let Ok(range) = PageRange::new(base as usize, (base + align_up(bytes)) as usize) else {
        return;
    };
    // SAFETY: the caller hands back memory it got from `alloc` and no longer uses.
    if unsafe { FRAMES.lock().deallocate(range) }.is_err() {
        log::warn!("frames: double free of {base:#x}");
    }
}

/// Free bytes left.
pub fn free_bytes() -> u64 {
    FRAMES.lock().free_space() as u64
}

fn align_up(x: u64) -> u64 {
    x.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

fn align_down(x: u64) -> u64 {
    x & !(PAGE_SIZE - 1)
}

/// `[start, end)` minus every range in `holes` (each rounded out to pages), as up to
/// `holes.len() + 1` pieces.
fn subtract(start: u64, end: u64, holes: &[(u64, u64)]) -> impl Iterator<Item = (u64, u64)> {
    let mut pieces = [(0u64, 0u64); 9];
    pieces[0] = (start, end);
    let mut count = 1;
    for &(hs, he) in holes {
        let (hs, he) = (align_down(hs), align_up(he));
        let mut next = [(0u64, 0u64); 9];
        let mut n = 0;
        for &(s, e) in &pieces[..count] {
            for piece in [(s, e.min(hs)), (s.max(he), e)] {
                if piece.0 < piece.1 && n < next.len() {
                    next[n] = piece;
                    n += 1;
                }
            }
        }
        pieces = next;
        count = n;
    }
    pieces.into_iter().take(count)
}
