//! The boot information a protocol hands the kernel, built as bytes with the guest-physical
//! addresses they will have: the multiboot1 information structure (Multiboot 0.6.96 3.3), the
//! multiboot2 tag list (Multiboot2 3.6), the PVH `hvm_start_info` (Xen
//! `arch-x86/hvm/start_info.h`, version 1), and the memory map they all carry.
//!
//! Everything lives in one area at [`INFO_BASE`] below the EBDA; strings and lists are
//! appended after each structure's fixed part, 8-aligned.

use alloc::vec::Vec;

use crate::{LoadError, Protocol};

/// Guest-physical address of the boot information (above the real-mode IVT and BDA).
pub const INFO_BASE: u64 = 0x8000;
/// Bytes available there.
pub const INFO_SIZE: usize = 0x8000;
/// Top of the low RAM reported to the guest; 0x9f000..1 MiB is reserved (EBDA, ROMs).
pub const LOW_RAM_END: u64 = 0x9f000;
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// The loader's name in the boot information.
pub const LOADER_NAME: &str = "turtles";
/// Longest command line passed on (bytes, before the NUL).
pub const CMDLINE_MAX: usize = 1024;

pub const MB1_LOADER_MAGIC: u32 = 0x2bad_b002;
pub const MB2_LOADER_MAGIC: u32 = 0x36d7_6289;
pub const PVH_START_MAGIC: u32 = 0x336e_c578;

/// Multiboot1 info flags (Multiboot 3.3): mem_*, cmdline, mods_*, mmap_*, boot_loader_name.
const MB1_FLAGS: u32 = 1 | 1 << 2 | 1 << 3 | 1 << 6 | 1 << 9;
/// Multiboot2 information tag types (Multiboot2 3.6).
mod mb2_tag {
    pub const END: u32 = 0;
    pub const CMDLINE: u32 = 1;
    pub const LOADER_NAME: u32 = 2;
    pub const MODULE: u32 = 3;
    pub const BASIC_MEMINFO: u32 = 4;
    pub const MMAP: u32 = 6;
}

/// A memory-map entry type, numbered as in the multiboot maps, E820 and PVH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum MemoryKind {
    Ram = 1,
    Reserved = 2,
}

/// One memory-map entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub base: u64,
    pub len: u64,
    pub kind: MemoryKind,
}

/// The guest's memory map for RAM up to `size`: low RAM, the legacy hole, RAM above 1 MiB.
/// With `ram_start` above 1 MiB (a guest in 1:1 memory) the RAM above the legacy hole starts
/// there and `[1 MiB, ram_start)` is reserved: the level below lives there.
pub fn memory_map(size: u64, ram_start: u64) -> Result<Vec<MemoryRegion>, LoadError> {
    let ram_start = ram_start.max(HIGH_RAM_START);
    let high =
        size.checked_sub(ram_start).filter(|&n| n > 0).ok_or(LoadError::MemoryTooSmall(size))?;
    let mut map = alloc::vec![
        MemoryRegion { base: 0, len: LOW_RAM_END, kind: MemoryKind::Ram },
        MemoryRegion {
            base: LOW_RAM_END,
            len: HIGH_RAM_START - LOW_RAM_END,
            kind: MemoryKind::Reserved,
        },
    ];
    if ram_start > HIGH_RAM_START {
        map.push(MemoryRegion {
            base: HIGH_RAM_START,
            len: ram_start - HIGH_RAM_START,
            kind: MemoryKind::Reserved,
        });
    }
    map.push(MemoryRegion { base: ram_start, len: high, kind: MemoryKind::Ram });
    Ok(map)
}

/// A module where the loader put it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlacedModule<'a> {
    pub start: u64,
    pub end: u64,
    pub cmdline: &'a str,
}

/// Boot information ready to be written at `addr`, with the value for EAX.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootInfo {
    pub addr: u64,
    pub bytes: Vec<u8>,
    pub magic: u32,
}

/// Builds `protocol`'s boot information.
pub fn build(
    protocol: Protocol,
    cmdline: &str,
    modules: &[PlacedModule<'_>],
    map: &[MemoryRegion],
) -> Result<BootInfo, LoadError> {
    let mut area = Area { buf: alloc::vec![0; INFO_SIZE], used: 0 };
    let magic = match protocol {
        Protocol::Multiboot1 => {
            area.multiboot1(cmdline, modules, map)?;
            MB1_LOADER_MAGIC
        }
        Protocol::Multiboot2 => {
            area.multiboot2(cmdline, modules, map)?;
            MB2_LOADER_MAGIC
        }
        Protocol::Pvh => {
            area.pvh(cmdline, modules, map)?;
            0
        }
    };
    area.buf.truncate(area.used);
    Ok(BootInfo { addr: INFO_BASE, bytes: area.buf, magic })
}

/// A 32-bit field holding a guest-physical address or size: the area is below 4 GiB, modules
/// above it cannot be described.
fn low32(v: u64) -> Result<u32, LoadError> {
    u32::try_from(v).map_err(|_| LoadError::InfoTooLarge)
}

fn c_string(s: &str) -> Vec<u8> {
    let mut v: Vec<u8> = s.bytes().take(CMDLINE_MAX).collect();
    v.push(0);
    v
}

/// KiB of low memory and of memory from 1 MiB on (mem_lower, mem_upper: 0 when a hole
/// starts at 1 MiB).
fn mem_kib(map: &[MemoryRegion]) -> Result<(u32, u32), LoadError> {
    let upper = map
        .iter()
        .find(|r| r.base == HIGH_RAM_START && r.kind == MemoryKind::Ram)
        .map_or(0, |r| r.len);
    Ok((low32(LOW_RAM_END / 1024)?, low32(upper / 1024)?))
}

/// The area being filled: a fixed part at offset 0, appended data after `used`.
struct Area {
    buf: Vec<u8>,
    used: usize,
}

impl Area {
    fn put(&mut self, at: usize, bytes: &[u8]) -> Result<(), LoadError> {
        let dst = at.checked_add(bytes.len()).and_then(|end| self.buf.get_mut(at..end));
        dst.ok_or(LoadError::InfoTooLarge)?.copy_from_slice(bytes);
        Ok(())
    }

    /// Reserves the fixed part of `len` bytes.
    fn fixed(&mut self, len: usize) {
        self.used = len;
    }

    /// Appends `bytes` (8-aligned) and returns their guest-physical address.
    fn append(&mut self, bytes: &[u8]) -> Result<u32, LoadError> {
        let at = self.used;
        self.put(at, bytes)?;
        self.used = (at + bytes.len()).next_multiple_of(8).min(self.buf.len());
        low32(INFO_BASE + at as u64)
    }

    fn multiboot1(
        &mut self,
        cmdline: &str,
        modules: &[PlacedModule<'_>],
        map: &[MemoryRegion],
    ) -> Result<(), LoadError> {
        self.fixed(128);
        let cmd = self.append(&c_string(cmdline))?;
        let name = self.append(&c_string(LOADER_NAME))?;
        let mut mods = Vec::new();
        for m in modules {
            let string = self.append(&c_string(m.cmdline))?;
            for w in [low32(m.start)?, low32(m.end)?, string, 0] {
                mods.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mods_addr = self.append(&mods)?;
        let mut mmap = Vec::new();
        for r in map {
            mmap.extend_from_slice(&20u32.to_le_bytes()); // size of the rest of the entry
            mmap.extend_from_slice(&r.base.to_le_bytes());
            mmap.extend_from_slice(&r.len.to_le_bytes());
            mmap.extend_from_slice(&(r.kind as u32).to_le_bytes());
        }
        let mmap_addr = self.append(&mmap)?;
        let (lower, upper) = mem_kib(map)?;
        let fields: [(usize, u32); 9] = [
            (0, MB1_FLAGS),
            (4, lower),
            (8, upper),
            (16, cmd),
            (20, low32(modules.len() as u64)?),
            (24, mods_addr),
            (44, low32(mmap.len() as u64)?),
            (48, mmap_addr),
            (64, name),
        ];
        for (at, v) in fields {
            self.put(at, &v.to_le_bytes())?;
        }
        Ok(())
    }

    fn mb2_tag(&mut self, kind: u32, body: &[u8]) -> Result<(), LoadError> {
        let mut t = Vec::with_capacity(8 + body.len());
        t.extend_from_slice(&kind.to_le_bytes());
        t.extend_from_slice(&low32(8 + body.len() as u64)?.to_le_bytes());
        t.extend_from_slice(body);
        self.append(&t).map(|_| ())
    }

    fn multiboot2(
        &mut self,
        cmdline: &str,
        modules: &[PlacedModule<'_>],
        map: &[MemoryRegion],
    ) -> Result<(), LoadError> {
        self.fixed(8); // total_size, reserved
        self.mb2_tag(mb2_tag::CMDLINE, &c_string(cmdline))?;
        self.mb2_tag(mb2_tag::LOADER_NAME, &c_string(LOADER_NAME))?;
        for m in modules {
            let mut body = Vec::new();
            body.extend_from_slice(&low32(m.start)?.to_le_bytes());
            body.extend_from_slice(&low32(m.end)?.to_le_bytes());
            body.extend_from_slice(&c_string(m.cmdline));
            self.mb2_tag(mb2_tag::MODULE, &body)?;
        }
        let (lower, upper) = mem_kib(map)?;
        let mut meminfo = Vec::new();
        meminfo.extend_from_slice(&lower.to_le_bytes());
        meminfo.extend_from_slice(&upper.to_le_bytes());
        self.mb2_tag(mb2_tag::BASIC_MEMINFO, &meminfo)?;
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes()); // entry_size
        mmap.extend_from_slice(&0u32.to_le_bytes()); // entry_version
        for r in map {
            mmap.extend_from_slice(&r.base.to_le_bytes());
            mmap.extend_from_slice(&r.len.to_le_bytes());
            mmap.extend_from_slice(&(r.kind as u32).to_le_bytes());
            mmap.extend_from_slice(&0u32.to_le_bytes());
        }
        self.mb2_tag(mb2_tag::MMAP, &mmap)?;
        self.mb2_tag(mb2_tag::END, &[])?;
        let total = low32(self.used as u64)?;
        self.put(0, &total.to_le_bytes())
    }

    fn pvh(
        &mut self,
        cmdline: &str,
        modules: &[PlacedModule<'_>],
        map: &[MemoryRegion],
    ) -> Result<(), LoadError> {
        self.fixed(64); // hvm_start_info, version 1 (56 bytes), rounded up
        let cmd = self.append(&c_string(cmdline))?;
        let mut list = Vec::new();
        for m in modules {
            let string = self.append(&c_string(m.cmdline))?;
            for v in [m.start, m.end - m.start, u64::from(string), 0] {
                list.extend_from_slice(&v.to_le_bytes());
            }
        }
        let modlist = self.append(&list)?;
        let mut memmap = Vec::new();
        for r in map {
            memmap.extend_from_slice(&r.base.to_le_bytes());
            memmap.extend_from_slice(&r.len.to_le_bytes());
            memmap.extend_from_slice(&(r.kind as u32).to_le_bytes());
            memmap.extend_from_slice(&0u32.to_le_bytes());
        }
        let memmap_addr = self.append(&memmap)?;
        let mut head = Vec::new();
        // magic, version, flags, nr_modules
        for v in [PVH_START_MAGIC, 1, 0, low32(modules.len() as u64)?] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        // modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr
        for v in [u64::from(modlist), u64::from(cmd), 0, u64::from(memmap_addr)] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(&low32(map.len() as u64)?.to_le_bytes()); // memmap_entries
        self.put(0, &head)
    }
}
