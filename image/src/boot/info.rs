//! The protocol-independent [`BootInfo`] the parsers of each boot protocol fill: the
//! protocol, the memory map, the command line and the modules, copied out of the loader's
//! structures.

use core::fmt;

/// How we were booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Multiboot1,
    Multiboot2,
    Pvh,
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Multiboot1 => "multiboot1",
            Protocol::Multiboot2 => "multiboot2",
            Protocol::Pvh => "pvh",
        })
    }
}

/// Kind of a memory-map entry (the e820 types every protocol uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegionKind {
    Available,
    Reserved,
    AcpiReclaimable,
    AcpiNvs,
    Bad,
}

impl RegionKind {
    /// Maps an e820 type number; unknown types are treated as reserved (ACPI spec 15.1).
    pub fn from_e820(kind: u32) -> Self {
        match kind {
            1 => RegionKind::Available,
            3 => RegionKind::AcpiReclaimable,
            4 => RegionKind::AcpiNvs,
            5 => RegionKind::Bad,
            _ => RegionKind::Reserved,
        }
    }
}

/// One memory-map entry: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub end: u64,
    pub kind: RegionKind,
}

/// A boot module (guest image, initrd): physical range and its command line.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    pub start: u64,
    pub end: u64,
    pub cmdline: FixedStr<128>,
}

/// A string copied into a fixed buffer, truncated at a character boundary if too long.
#[derive(Clone, Copy)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> FixedStr<N> {
    pub const fn new() -> Self {
        Self { bytes: [0; N], len: 0 }
    }

    /// Copies `s`, keeping as many whole characters as fit.
    pub fn from_str_truncated(s: &str) -> Self {
        let mut len = s.len().min(N);
        while !s.is_char_boundary(len) {
            len -= 1;
        }
        let mut out = Self::new();
        out.bytes[..len].copy_from_slice(&s.as_bytes()[..len]);
        out.len = len;
        out
    }

    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

const MAX_REGIONS: usize = 64;
const MAX_MODULES: usize = 8;

/// Everything the kernel needs from the boot loader.
pub struct BootInfo {
    pub protocol: Protocol,
    regions: [Region; MAX_REGIONS],
    region_count: usize,
    modules: [Option<Module>; MAX_MODULES],
    pub cmdline: FixedStr<256>,
    /// Entries that did not fit in the fixed tables (reported, never silently dropped).
    pub dropped: usize,
}

/// Why the boot information could not be read.
#[derive(Debug)]
pub enum BootError {
    /// EAX held neither multiboot magic (and we did not come through the PVH entry).
    UnknownMagic(u32),
    /// The PVH start_info magic is wrong.
    BadPvhMagic(u32),
    /// The multiboot2 information structure is malformed.
    Multiboot2(&'static str),
    /// No memory map was provided.
    NoMemoryMap,
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::UnknownMagic(m) => write!(f, "unknown boot loader magic {m:#x}"),
            BootError::BadPvhMagic(m) => write!(f, "PVH start_info has bad magic {m:#x}"),
            BootError::Multiboot2(why) => write!(f, "bad multiboot2 information: {why}"),
            BootError::NoMemoryMap => f.write_str("the boot loader gave no memory map"),
        }
    }
}

impl BootInfo {
    pub(super) fn new(protocol: Protocol) -> Self {
        BootInfo {
            protocol,
            regions: [Region { start: 0, end: 0, kind: RegionKind::Reserved }; MAX_REGIONS],
            region_count: 0,
            modules: [None; MAX_MODULES],
            cmdline: FixedStr::new(),
            dropped: 0,
        }
    }

    pub(super) fn push_region(&mut self, start: u64, len: u64, kind: RegionKind) {
        if len == 0 {
            return;
        }
        match self.regions.get_mut(self.region_count) {
            Some(slot) => {
                *slot = Region { start, end: start.saturating_add(len), kind };
                self.region_count += 1;
            }
            None => self.dropped += 1,
        }
    }

    pub(super) fn push_module(&mut self, module: Module) {
        match self.modules.iter_mut().find(|m| m.is_none()) {
            Some(slot) => *slot = Some(module),
            None => self.dropped += 1,
        }
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.region_count]
    }

    pub fn modules(&self) -> impl Iterator<Item = &Module> {
        self.modules.iter().flatten()
    }

    /// Total bytes of available RAM.
    pub fn available_bytes(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == RegionKind::Available)
            .map(|r| r.end - r.start)
            .sum()
    }
}

/// Reads a NUL-terminated string at physical address `addr`, at most `max` bytes.
///
/// # Safety
/// `addr` must be identity-mapped readable memory.
pub(super) unsafe fn c_str(addr: u64, max: usize) -> &'static str {
    if addr == 0 {
        return "";
    }
    let ptr = addr as *const u8;
    let mut len = 0;
    // SAFETY: the caller guarantees the bytes up to the terminator (or `max`) are readable.
    while len < max && unsafe { ptr.add(len).read() } != 0 {
        len += 1;
    }
    // SAFETY: as above; invalid UTF-8 yields an empty string rather than UB.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    core::str::from_utf8(bytes).unwrap_or("")
}
