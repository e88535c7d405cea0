//! Multiboot1 information structure (Multiboot spec 0.6.96, 3.3). QEMU `-kernel` uses it.

use super::info::{BootError, BootInfo, FixedStr, Module, Protocol, RegionKind, c_str};

const FLAG_MEM: u32 = 1 << 0;
const FLAG_CMDLINE: u32 = 1 << 2;
const FLAG_MODS: u32 = 1 << 3;
const FLAG_MMAP: u32 = 1 << 6;

/// # Safety
/// `info` is the identity-mapped physical address of a multiboot1 information structure.
pub unsafe fn parse(info: u64) -> Result<BootInfo, BootError> {
    let base = info as *const u32;
    // SAFETY: the structure is at least 88 bytes (spec 3.3); we read words 0..13.
    let word = |i: usize| unsafe { base.add(i).read_unaligned() };
    let mut boot = BootInfo::new(Protocol::Multiboot1);
    let flags = word(0);
    if flags & FLAG_CMDLINE != 0 {
        // SAFETY: the loader says word 4 points at a NUL-terminated string.
        boot.cmdline = FixedStr::from_str_truncated(unsafe { c_str(u64::from(word(4)), 4096) });
    }
    if flags & FLAG_MODS != 0 {
        let (count, addr) = (word(5) as usize, u64::from(word(6)));
        for i in 0..count {
            let m = (addr + 16 * i as u64) as *const u32;
            // SAFETY: the loader says `count` 16-byte module entries start at `addr`.
            let (start, end, string) = unsafe { (m.read(), m.add(1).read(), m.add(2).read()) };
            boot.push_module(Module {
                start: u64::from(start),
                end: u64::from(end),
                // SAFETY: each entry's third word points at its NUL-terminated string.
                cmdline: FixedStr::from_str_truncated(unsafe { c_str(u64::from(string), 4096) }),
            });
        }
    }
    if flags & FLAG_MMAP != 0 {
        let (len, addr) = (u64::from(word(11)), u64::from(word(12)));
        let mut at = addr;
        while at + 24 <= addr + len {
            let entry = at as *const u8;
            // SAFETY: each entry is `size` (u32) followed by `size` bytes, inside the map.
            let (size, start, length, kind) = unsafe {
                (
                    (entry as *const u32).read_unaligned(),
                    (entry.add(4) as *const u64).read_unaligned(),
                    (entry.add(12) as *const u64).read_unaligned(),
                    (entry.add(20) as *const u32).read_unaligned(),
                )
            };
            boot.push_region(start, length, RegionKind::from_e820(kind));
            at += u64::from(size) + 4;
        }
    } else if flags & FLAG_MEM != 0 {
        boot.push_region(0, u64::from(word(1)) * 1024, RegionKind::Available);
        boot.push_region(0x10_0000, u64::from(word(2)) * 1024, RegionKind::Available);
    }
    Ok(boot)
}
