//! The Linux x86 boot protocol for a bzImage, as the kernel's
//! `Documentation/arch/x86/boot.rst` defines it (protocol 2.06 or later; 2.12+ for the 64-bit
//! entry): [`BzImage::parse`] checks the real-mode setup header (boot flag AA55h, "HdrS",
//! version, setup_sects, syssize, LOADED_HIGH, kernel_alignment, relocatable_kernel,
//! cmdline_size, init_size, pref_address, payload bounds) and splits the image into the setup
//! code and the protected-mode kernel; [`plan`] decides where the kernel, the initrd, the
//! command line and the zero page go in guest memory and builds the zero page (`struct
//! boot_params`, `arch/x86/include/uapi/asm/bootparam.h`): a copy of the setup header with
//! type_of_loader FFh, CAN_USE_HEAP and heap_end_ptr, cmd_line_ptr, ramdisk_image/size, the
//! e820 table and acpi_rsdp_addr.
//!
//! Pure: nothing is copied into guest memory here; the caller copies each [`Piece`] and enters
//! the kernel at [`LinuxBoot::entry32`] (flat 4 GiB segments, paging off, ESI = zero page)
//! or [`LinuxBoot::entry64`] (long mode, the pieces identity-mapped, RSI = zero page), with
//! interrupts disabled. Everything read from the image is bounds-checked: a corrupt image or
//! initrd is a [`LinuxError`], never a panic.

use alloc::vec::Vec;
use core::fmt;

/// Offset of the setup header in the image and in boot_params (`hdr`).
const HDR: usize = 0x1f1;
/// Size of the zero page.
pub const ZERO_PAGE_SIZE: usize = 4096;
/// Sectors of the real-mode part are 512 bytes; the boot sector is one more.
const SECTOR: usize = 512;
/// boot_flag's value.
const BOOT_FLAG: u16 = 0xaa55;
/// "HdrS".
const HDRS: u32 = 0x5372_6448;
/// The oldest protocol accepted (cmdline_size appears in 2.06).
pub const MIN_PROTOCOL: u16 = 0x0206;
/// The first protocol with xloadflags (and so an advertised 64-bit entry).
const PROTOCOL_XLOADFLAGS: u16 = 0x020c;
/// The first protocol with pref_address and init_size.
const PROTOCOL_INIT_SIZE: u16 = 0x020a;
/// The first protocol with acpi_rsdp_addr.
const PROTOCOL_RSDP: u16 = 0x020e;
/// Where a non-relocatable bzImage's protected-mode kernel must go.
const DEFAULT_LOAD: u64 = 0x10_0000;
/// The 64-bit entry point's offset from the load address.
const ENTRY64_OFFSET: u64 = 0x200;
/// type_of_loader: "undefined" (no assigned ID).
const LOADER_UNDEFINED: u8 = 0xff;
/// heap_end_ptr for a protocol >= 2.02 bzImage (boot.rst's sample loader: 0xe000 - 0x200).
const HEAP_END_PTR: u16 = 0xde00;
/// Initrd alignment (a page).
const INITRD_ALIGN: u64 = 0x1000;
/// At most this many e820 entries fit in boot_params.
pub const E820_MAX: usize = 128;
/// e820 type of usable RAM.
pub const E820_RAM: u32 = 1;

/// Setup header offsets (boot.rst "The real-mode kernel header").
mod off {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const SYSSIZE: usize = 0x1f4;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const CODE32_START: usize = 0x214;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PAYLOAD_OFFSET: usize = 0x248;
    pub const PAYLOAD_LENGTH: usize = 0x24c;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// boot_params fields outside the header.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const E820_TABLE: usize = 0x2d0;
}

/// loadflags bits.
pub mod loadflags {
    /// The protected-mode code is loaded at 0x100000 (a bzImage).
    pub const LOADED_HIGH: u8 = 1 << 0;
    /// The loader set heap_end_ptr.
    pub const CAN_USE_HEAP: u8 = 1 << 7;
}

/// xloadflags bits (protocol 2.12+).
pub mod xloadflags {
    /// The kernel has the legacy 64-bit entry point at load address + 0x200.
    pub const KERNEL_64: u16 = 1 << 0;
    /// The kernel, boot_params, command line and initrd may sit above 4 GiB.
    pub const CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
}

/// Why a bzImage cannot be booted as asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinuxError {
    /// No boot flag AA55h or no "HdrS" magic: not a Linux kernel image.
    NotBzImage,
    /// The image ends before what its header describes.
    Truncated { need: u64, have: u64 },
    /// The boot protocol is older than [`MIN_PROTOCOL`].
    ProtocolTooOld { version: u16 },
    /// LOADED_HIGH is clear: a zImage, whose kernel loads at 0x10000.
    NotLoadedHigh,
    /// kernel_alignment is not a power of two.
    BadKernelAlignment { alignment: u32 },
    /// The kernel is not relocatable and its memory at 0x100000 is not all RAM.
    NotRelocatableNoFit { size: u64 },
    /// No RAM below 4 GiB holds the (relocatable) kernel's init_size.
    NoRoomForKernel { size: u64 },
    /// The command line exceeds the kernel's cmdline_size.
    CmdlineTooLong { len: usize, max: u32 },
    /// The command line contains a NUL byte.
    CmdlineHasNul,
    /// The initrd is empty.
    InitrdEmpty,
    /// The initrd is neither a cpio archive nor a compressed one.
    InitrdNotRecognized,
    /// The initrd is larger than everything below initrd_addr_max.
    InitrdTooLarge { size: u64, max: u64 },
    /// No RAM below initrd_addr_max holds the initrd beside the kernel.
    InitrdNoFit { size: u64 },
    /// More memory-map entries than boot_params holds.
    TooManyMemoryRegions { count: usize },
    /// The zero page or command line is not in RAM below 4 GiB or overlaps another piece.
    BadFixedAddress { address: u64 },
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LinuxError::NotBzImage => {
                f.write_str("not a bzImage (no AA55h boot flag or HdrS magic)")
            }
            LinuxError::Truncated { need, have } => {
                write!(f, "bzImage truncated: its header needs {need} bytes, the file has {have}")
            }
            LinuxError::ProtocolTooOld { version } => {
                write!(f, "boot protocol {}.{:02} is older than 2.06", version >> 8, version & 0xff)
            }
            LinuxError::NotLoadedHigh => f.write_str("zImage (LOADED_HIGH clear) is not supported"),
            LinuxError::BadKernelAlignment { alignment } => {
                write!(f, "kernel_alignment {alignment:#x} is not a power of two")
            }
            LinuxError::NotRelocatableNoFit { size } => write!(
                f,
                "kernel is not relocatable and its {size:#x} bytes at 0x100000 are not all RAM"
            ),
            LinuxError::NoRoomForKernel { size } => {
                write!(f, "no RAM below 4 GiB for the kernel's {size:#x} bytes")
            }
            LinuxError::CmdlineTooLong { len, max } => {
                write!(f, "command line of {len} bytes exceeds the kernel's limit of {max}")
            }
            LinuxError::CmdlineHasNul => f.write_str("command line contains a NUL byte"),
            LinuxError::InitrdEmpty => f.write_str("initrd is empty"),
            LinuxError::InitrdNotRecognized => f.write_str(
                "initrd is not a cpio archive (plain, gzip, bzip2, lzma, xz, lzo, lz4 or zstd)",
            ),
            LinuxError::InitrdTooLarge { size, max } => {
                write!(f, "initrd of {size:#x} bytes does not fit below initrd_addr_max {max:#x}")
            }
            LinuxError::InitrdNoFit { size } => {
                write!(f, "no RAM below initrd_addr_max holds the initrd's {size:#x} bytes")
            }
            LinuxError::TooManyMemoryRegions { count } => {
                write!(f, "{count} memory-map entries, boot_params holds {E820_MAX}")
            }
            LinuxError::BadFixedAddress { address } => {
                write!(f, "{address:#x}: zero page/command line must be in free RAM below 4 GiB")
            }
        }
    }
}

/// The setup header fields a loader uses (boot.rst), as read from the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    /// Boot protocol version (major << 8 | minor).
    pub version: u16,
    /// Real-mode setup sectors after the boot sector (0 in the file means 4).
    pub setup_sects: u8,
    /// Protected-mode code size in 16-byte paragraphs.
    pub syssize: u32,
    pub loadflags: u8,
    pub code32_start: u32,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: bool,
    /// 0 before protocol 2.12.
    pub xloadflags: u16,
    /// Maximum command-line length without the NUL.
    pub cmdline_size: u32,
    /// 0 before protocol 2.10.
    pub pref_address: u64,
    /// Memory the kernel needs from its load address while decompressing (2.10+; before,
    /// the protected-mode size).
    pub init_size: u32,
    pub payload_offset: u32,
    pub payload_length: u32,
}

/// A checked bzImage: its header and its two parts.
#[derive(Clone, Copy, Debug)]
pub struct BzImage<'a> {
    pub header: SetupHeader,
    /// The boot sector and real-mode setup code (the header is copied from here).
    pub setup: &'a [u8],
    /// The protected-mode kernel, loaded as is.
    pub kernel: &'a [u8],
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

impl<'a> BzImage<'a> {
    /// Checks `image`'s setup header and splits it.
    pub fn parse(image: &'a [u8]) -> Result<Self, LinuxError> {
        let have = image.len() as u64;
        let short = |need: usize| LinuxError::Truncated { need: need as u64, have };
        if u16_at(image, off::BOOT_FLAG) != Some(BOOT_FLAG)
            || u32_at(image, off::HEADER) != Some(HDRS)
        {
            return Err(LinuxError::NotBzImage);
        }
        let version = u16_at(image, off::VERSION).ok_or(short(off::VERSION + 2))?;
        if version < MIN_PROTOCOL {
            return Err(LinuxError::ProtocolTooOld { version });
        }
        let field32 = |at: usize| u32_at(image, at).ok_or(short(at + 4));
        let loadflags = *image.get(off::LOADFLAGS).ok_or(short(off::LOADFLAGS + 1))?;
        if loadflags & loadflags::LOADED_HIGH == 0 {
            return Err(LinuxError::NotLoadedHigh);
        }
        let kernel_alignment = field32(off::KERNEL_ALIGNMENT)?;
        if !kernel_alignment.is_power_of_two() {
            return Err(LinuxError::BadKernelAlignment { alignment: kernel_alignment });
        }
        let setup_sects = image[off::SETUP_SECTS];
        let sects = if setup_sects == 0 { 4 } else { usize::from(setup_sects) };
        let setup_len = (sects + 1) * SECTOR;
        let syssize = field32(off::SYSSIZE)?;
        let kernel_len = u64::from(syssize) * 16;
        let need = setup_len as u64 + kernel_len;
        if need > have || setup_len < header_end(image).unwrap_or(usize::MAX) {
            return Err(LinuxError::Truncated { need: need.max(setup_len as u64), have });
        }
        let (setup, rest) = image.split_at(setup_len);
        let new = version >= PROTOCOL_INIT_SIZE;
        let header = SetupHeader {
            version,
            setup_sects,
            syssize,
            loadflags,
            code32_start: field32(off::CODE32_START)?,
            initrd_addr_max: field32(off::INITRD_ADDR_MAX)?,
            kernel_alignment,
            relocatable: *image
                .get(off::RELOCATABLE_KERNEL)
                .ok_or(short(off::RELOCATABLE_KERNEL))?
                != 0,
            xloadflags: if version >= PROTOCOL_XLOADFLAGS {
                u16_at(image, off::XLOADFLAGS).ok_or(short(off::XLOADFLAGS + 2))?
            } else {
                0
            },
            cmdline_size: field32(off::CMDLINE_SIZE)?,
            pref_address: if new {
                u64_at(image, off::PREF_ADDRESS).ok_or(short(off::PREF_ADDRESS + 8))?
            } else {
                0
            },
            init_size: if new { field32(off::INIT_SIZE)? } else { 0 },
            payload_offset: if version >= 0x0208 { field32(off::PAYLOAD_OFFSET)? } else { 0 },
            payload_length: if version >= 0x0208 { field32(off::PAYLOAD_LENGTH)? } else { 0 },
        };
        let payload_end = u64::from(header.payload_offset) + u64::from(header.payload_length);
        if payload_end > rest.len() as u64 {
            return Err(LinuxError::Truncated { need: setup_len as u64 + payload_end, have });
        }
        Ok(BzImage { header, setup, kernel: rest })
    }

    /// Guest memory the kernel needs from its load address: init_size, at least the
    /// protected-mode size.
    pub fn memory_size(&self) -> u64 {
        u64::from(self.header.init_size).max(self.kernel.len() as u64)
    }
}

/// End of the setup header in the image: 0x202 + the jump instruction's offset byte.
fn header_end(image: &[u8]) -> Option<usize> {
    Some(off::HEADER + usize::from(*image.get(off::JUMP + 1)?))
}

/// One memory-map entry (boot_params e820 format).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    /// 1 RAM, 2 reserved, 3 ACPI, 4 NVS, 5 unusable.
    pub kind: u32,
}

impl E820Entry {
    fn end(&self) -> u64 {
        self.addr.saturating_add(self.size)
    }
}

/// What the caller supplies.
#[derive(Clone, Copy, Debug)]
pub struct BootConfig<'a> {
    /// The guest's memory map, passed on in boot_params.
    pub memory: &'a [E820Entry],
    /// Kernel command line, without a NUL.
    pub cmdline: &'a [u8],
    pub initrd: Option<&'a [u8]>,
    /// Where the zero page goes (e.g. 0x7000; 4 KiB in RAM below 4 GiB).
    pub zero_page: u64,
    /// Where the command line goes (e.g. 0x20000).
    pub cmdline_addr: u64,
    /// The ACPI RSDP's address for boot_params.acpi_rsdp_addr (protocol 2.14+), if any.
    pub acpi_rsdp: Option<u64>,
}

/// Bytes to copy into guest memory at `address`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece<'a> {
    pub address: u64,
    pub bytes: PieceBytes<'a>,
}

/// A piece's contents: borrowed from the image or initrd, or built here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PieceBytes<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl PieceBytes<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            PieceBytes::Borrowed(b) => b,
            PieceBytes::Owned(v) => v,
        }
    }
}

/// The plan: pieces to copy and where to enter.
#[derive(Clone, Debug)]
pub struct LinuxBoot<'a> {
    /// The protected-mode kernel; it uses [`BzImage::memory_size`] bytes from its address.
    pub kernel: Piece<'a>,
    pub initrd: Option<Piece<'a>>,
    /// The command line with its NUL.
    pub cmdline: Piece<'a>,
    /// boot_params, [`ZERO_PAGE_SIZE`] bytes.
    pub zero_page: Piece<'a>,
    /// 32-bit protected-mode entry (the load address).
    pub entry32: u64,
    /// 64-bit entry (load address + 0x200), if XLF_KERNEL_64 says it exists.
    pub entry64: Option<u64>,
}

/// RAM regions ([start, end)) below `limit`, sorted by address.
fn ram_below(memory: &[E820Entry], limit: u64) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = memory
        .iter()
        .filter(|e| e.kind == E820_RAM)
        .map(|e| (e.addr, e.end().min(limit)))
        .filter(|(s, e)| s < e)
        .collect();
    r.sort_unstable();
    r
}

fn overlaps(a: (u64, u64), b: (u64, u64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// `[start, start + size)` lies in one RAM region and clear of `taken`.
fn fits(ram: &[(u64, u64)], taken: &[(u64, u64)], start: u64, size: u64) -> bool {
    let Some(end) = start.checked_add(size) else { return false };
    ram.iter().any(|&(s, e)| s <= start && end <= e)
        && !taken.iter().any(|&t| overlaps(t, (start, end)))
}

/// The lowest `align`ed address from `from` in the RAM region containing it where `size`
/// bytes fit clear of `taken`: each miss skips past the piece in the way, so this takes at
/// most one step per piece.
fn lowest_fit(
    ram: &[(u64, u64)],
    taken: &[(u64, u64)],
    from: u64,
    size: u64,
    align: u64,
) -> Option<u64> {
    let mut a = from.checked_next_multiple_of(align)?;
    for _ in 0..=taken.len() {
        if fits(ram, &[], a, size) {
            match taken.iter().find(|&&t| overlaps(t, (a, a + size))) {
                None => return Some(a),
                Some(&(_, end)) => a = end.checked_next_multiple_of(align)?,
            }
        } else {
            return None;
        }
    }
    None
}

/// Known initrd formats: newc/crc cpio, and the compressors the kernel can unpack.
fn initrd_recognized(initrd: &[u8]) -> bool {
    const MAGICS: [&[u8]; 9] = [
        b"070701",                             // cpio newc
        b"070702",                             // cpio crc
        &[0x1f, 0x8b],                         // gzip
        b"BZh",                                // bzip2
        &[0x5d, 0x00, 0x00],                   // lzma
        &[0xfd, b'7', b'z', b'X', b'Z', 0x00], // xz
        &[0x89, b'L', b'Z', b'O'],             // lzo
        &[0x02, 0x21, 0x4c, 0x18],             // lz4 legacy
        &[0x28, 0xb5, 0x2f, 0xfd],             // zstd
    ];
    MAGICS.iter().any(|m| initrd.starts_with(m))
}

/// Places the pieces in guest memory and builds the zero page (see the module doc).
pub fn plan<'a>(image: &BzImage<'a>, cfg: &BootConfig<'a>) -> Result<LinuxBoot<'a>, LinuxError> {
    const FOUR_GIB: u64 = 1 << 32;
    let h = &image.header;
    if cfg.memory.len() > E820_MAX {
        return Err(LinuxError::TooManyMemoryRegions { count: cfg.memory.len() });
    }
    if cfg.cmdline.contains(&0) {
        return Err(LinuxError::CmdlineHasNul);
    }
    if cfg.cmdline.len() > h.cmdline_size as usize {
        return Err(LinuxError::CmdlineTooLong { len: cfg.cmdline.len(), max: h.cmdline_size });
    }
    let ram = ram_below(cfg.memory, FOUR_GIB);
    let mut taken: Vec<(u64, u64)> = Vec::new();
    let cmdline_len = cfg.cmdline.len() as u64 + 1;
    for (address, size) in [(cfg.zero_page, ZERO_PAGE_SIZE as u64), (cfg.cmdline_addr, cmdline_len)]
    {
        if !fits(&ram, &taken, address, size) {
            return Err(LinuxError::BadFixedAddress { address });
        }
        taken.push((address, address + size));
    }

    // The kernel: at pref_address if relocatable and it fits there, else the lowest aligned
    // RAM address from 1 MiB; a non-relocatable kernel only at 0x100000.
    let size = image.memory_size();
    let align = u64::from(h.kernel_alignment).max(1);
    let load = if h.relocatable {
        let preferred = Some(h.pref_address).filter(|&a| a >= DEFAULT_LOAD && a % align == 0);
        preferred
            .filter(|&a| fits(&ram, &taken, a, size))
            .or_else(|| {
                ram.iter()
                    .find_map(|&(s, _)| lowest_fit(&ram, &taken, s.max(DEFAULT_LOAD), size, align))
            })
            .ok_or(LinuxError::NoRoomForKernel { size })?
    } else if fits(&ram, &taken, DEFAULT_LOAD, size) {
        DEFAULT_LOAD
    } else {
        return Err(LinuxError::NotRelocatableNoFit { size });
    };
    taken.push((load, load + size));

    // The initrd: as high as possible below initrd_addr_max, page aligned.
    let initrd = match cfg.initrd {
        None => None,
        Some([]) => return Err(LinuxError::InitrdEmpty),
        Some(bytes) => {
            if !initrd_recognized(bytes) {
                return Err(LinuxError::InitrdNotRecognized);
            }
            let size = bytes.len() as u64;
            let limit = u64::from(h.initrd_addr_max).saturating_add(1).min(FOUR_GIB);
            if size > limit {
                return Err(LinuxError::InitrdTooLarge { size, max: limit });
            }
            let ram = ram_below(cfg.memory, limit);
            // Candidate tops: each region's end, and the start of every piece (just below it).
            let tops = ram.iter().map(|r| r.1).chain(taken.iter().map(|t| t.0));
            let address = tops
                .filter_map(|top| Some(top.checked_sub(size)? & !(INITRD_ALIGN - 1)))
                .filter(|&a| fits(&ram, &taken, a, size))
                .max()
                .ok_or(LinuxError::InitrdNoFit { size })?;
            Some(Piece { address, bytes: PieceBytes::Borrowed(bytes) })
        }
    };

    let zero_page = zero_page(image, cfg, initrd.as_ref());
    let mut cmdline = Vec::with_capacity(cfg.cmdline.len() + 1);
    cmdline.extend_from_slice(cfg.cmdline);
    cmdline.push(0);
    let entry64 = (h.xloadflags & xloadflags::KERNEL_64 != 0).then_some(load + ENTRY64_OFFSET);
    Ok(LinuxBoot {
        kernel: Piece { address: load, bytes: PieceBytes::Borrowed(image.kernel) },
        initrd,
        cmdline: Piece { address: cfg.cmdline_addr, bytes: PieceBytes::Owned(cmdline) },
        zero_page: Piece { address: cfg.zero_page, bytes: PieceBytes::Owned(zero_page) },
        entry32: load,
        entry64,
    })
}

/// boot_params: the image's setup header, then the loader's fields.
fn zero_page(image: &BzImage<'_>, cfg: &BootConfig<'_>, initrd: Option<&Piece<'_>>) -> Vec<u8> {
    let mut zp = alloc::vec![0u8; ZERO_PAGE_SIZE];
    let end =
        header_end(image.setup).unwrap_or(HDR).clamp(HDR, image.setup.len().min(ZERO_PAGE_SIZE));
    zp[HDR..end].copy_from_slice(&image.setup[HDR..end]);
    let mut put = |at: usize, bytes: &[u8]| zp[at..at + bytes.len()].copy_from_slice(bytes);
    put(off::TYPE_OF_LOADER, &[LOADER_UNDEFINED]);
    put(off::LOADFLAGS, &[image.header.loadflags | loadflags::CAN_USE_HEAP]);
    put(off::HEAP_END_PTR, &HEAP_END_PTR.to_le_bytes());
    // Both below 4 GiB (checked in `plan`).
    put(off::CMD_LINE_PTR, &(cfg.cmdline_addr as u32).to_le_bytes());
    if let Some(initrd) = initrd {
        put(off::RAMDISK_IMAGE, &(initrd.address as u32).to_le_bytes());
        put(off::RAMDISK_SIZE, &(initrd.bytes.as_slice().len() as u32).to_le_bytes());
    }
    if let Some(rsdp) = cfg.acpi_rsdp.filter(|_| image.header.version >= PROTOCOL_RSDP) {
        put(off::ACPI_RSDP_ADDR, &rsdp.to_le_bytes());
    }
    put(off::E820_ENTRIES, &[cfg.memory.len() as u8]);
    for (i, e) in cfg.memory.iter().enumerate() {
        let at = off::E820_TABLE + 20 * i;
        put(at, &e.addr.to_le_bytes());
        put(at + 8, &e.size.to_le_bytes());
        put(at + 16, &e.kind.to_le_bytes());
    }
    zp
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    /// A synthetic bzImage: 4 setup sectors (setup_sects 0 means 4), protocol `version`,
    /// `kernel_len` bytes of protected-mode code (a multiple of 16).
    fn bzimage(version: u16, kernel_len: usize) -> Vec<u8> {
        let mut b = vec![0u8; 5 * SECTOR + kernel_len];
        let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
        put(off::SETUP_SECTS, &[0]);
        put(off::SYSSIZE, &((kernel_len / 16) as u32).to_le_bytes());
        put(off::BOOT_FLAG, &BOOT_FLAG.to_le_bytes());
        put(off::JUMP, &[0xeb, 0x6a]); // header ends at 0x26c
        put(off::HEADER, b"HdrS");
        put(off::VERSION, &version.to_le_bytes());
        put(off::LOADFLAGS, &[loadflags::LOADED_HIGH]);
        put(off::CODE32_START, &0x10_0000u32.to_le_bytes());
        put(off::INITRD_ADDR_MAX, &0x7fff_ffffu32.to_le_bytes());
        put(off::KERNEL_ALIGNMENT, &0x20_0000u32.to_le_bytes());
        put(off::RELOCATABLE_KERNEL, &[1]);
        put(
            off::XLOADFLAGS,
            &(xloadflags::KERNEL_64 | xloadflags::CAN_BE_LOADED_ABOVE_4G).to_le_bytes(),
        );
        put(off::CMDLINE_SIZE, &2047u32.to_le_bytes());
        put(off::PAYLOAD_OFFSET, &0x100u32.to_le_bytes());
        put(off::PAYLOAD_LENGTH, &0x200u32.to_le_bytes());
        put(off::PREF_ADDRESS, &0x100_0000u64.to_le_bytes());
        put(off::INIT_SIZE, &(4 * MIB as u32).to_le_bytes());
        for (i, byte) in b[5 * SECTOR..].iter_mut().enumerate() {
            *byte = i as u8;
        }
        b
    }

    fn memory(ram: u64) -> Vec<E820Entry> {
        vec![
            E820Entry { addr: 0, size: 0x9fc00, kind: E820_RAM },
            E820Entry { addr: 0x9fc00, size: 0x400, kind: 2 },
            E820Entry { addr: 0xf0000, size: 0x10000, kind: 2 },
            E820Entry { addr: MIB, size: ram - MIB, kind: E820_RAM },
        ]
    }

    fn config<'a>(
        memory: &'a [E820Entry],
        cmdline: &'a [u8],
        initrd: Option<&'a [u8]>,
    ) -> BootConfig<'a> {
        BootConfig {
            memory,
            cmdline,
            initrd,
            zero_page: 0x7000,
            cmdline_addr: 0x20000,
            acpi_rsdp: Some(0xe0000),
        }
    }

    fn zp_u32(zp: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(zp[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn parses_the_header() {
        let b = bzimage(0x020f, 0x1000);
        let img = BzImage::parse(&b).expect("valid");
        assert_eq!(img.header.version, 0x020f);
        assert_eq!(img.setup.len(), 5 * SECTOR);
        assert_eq!(img.kernel.len(), 0x1000);
        assert_eq!(img.kernel[1], 1);
        assert!(img.header.relocatable);
        assert_eq!(img.header.pref_address, 0x100_0000);
        assert_eq!(img.memory_size(), 4 * MIB);
        assert_eq!(img.header.cmdline_size, 2047);
    }

    #[test]
    fn plans_a_64_bit_boot() {
        let b = bzimage(0x020f, 0x1000);
        let img = BzImage::parse(&b).expect("valid");
        let mem = memory(256 * MIB);
        let initrd = b"070701rest of a cpio archive";
        let boot =
            plan(&img, &config(&mem, b"console=ttyS0 root=/dev/ram0", Some(initrd))).expect("plan");
        // Relocatable with pref_address 16 MiB free: loaded there.
        assert_eq!(boot.kernel.address, 0x100_0000);
        assert_eq!(boot.entry32, 0x100_0000);
        assert_eq!(boot.entry64, Some(0x100_0200));
        assert_eq!(boot.kernel.bytes.as_slice(), img.kernel);
        // Initrd at the top of RAM, page aligned.
        let rd = boot.initrd.as_ref().expect("initrd");
        assert_eq!(rd.address, (256 * MIB - initrd.len() as u64) & !0xfff);
        assert_eq!(boot.cmdline.bytes.as_slice(), b"console=ttyS0 root=/dev/ram0\0");
        assert_eq!(boot.cmdline.address, 0x20000);
        let zp = boot.zero_page.bytes.as_slice();
        assert_eq!(boot.zero_page.address, 0x7000);
        assert_eq!(zp.len(), ZERO_PAGE_SIZE);
        // The header is copied up to 0x26c, then the loader's fields.
        assert_eq!(&zp[off::HEADER..off::HEADER + 4], b"HdrS");
        assert_eq!(zp[off::TYPE_OF_LOADER], 0xff);
        assert_eq!(zp[off::LOADFLAGS], loadflags::LOADED_HIGH | loadflags::CAN_USE_HEAP);
        assert_eq!(u16::from_le_bytes([zp[0x224], zp[0x225]]), 0xde00);
        assert_eq!(zp_u32(zp, off::CMD_LINE_PTR), 0x20000);
        assert_eq!(u64::from(zp_u32(zp, off::RAMDISK_IMAGE)), rd.address);
        assert_eq!(zp_u32(zp, off::RAMDISK_SIZE) as usize, initrd.len());
        assert_eq!(zp_u32(zp, off::ACPI_RSDP_ADDR), 0xe0000);
        assert_eq!(zp[off::E820_ENTRIES], 4);
        let e3 = off::E820_TABLE + 3 * 20;
        assert_eq!(u64::from(zp_u32(zp, e3)), MIB);
        assert_eq!(u64::from(zp_u32(zp, e3 + 8)), 255 * MIB);
        assert_eq!(zp_u32(zp, e3 + 16), 1);
        assert!(zp[0x26c..0x2d0].iter().all(|&b| b == 0), "nothing past the header end");
    }

    #[test]
    fn relocation_and_placement() {
        // pref_address beyond RAM: the lowest 2 MiB-aligned address from 1 MiB.
        let mut b = bzimage(0x020c, 0x1000);
        b[off::PREF_ADDRESS..off::PREF_ADDRESS + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let img = BzImage::parse(&b).expect("valid");
        let mem = memory(64 * MIB);
        let boot = plan(&img, &config(&mem, b"", None)).expect("plan");
        assert_eq!(boot.kernel.address, 2 * MIB);
        assert!(boot.initrd.is_none());
        assert_eq!(zp_u32(boot.zero_page.bytes.as_slice(), off::RAMDISK_IMAGE), 0);
        // Protocol 2.12 has no acpi_rsdp_addr: left zero.
        assert_eq!(zp_u32(boot.zero_page.bytes.as_slice(), off::ACPI_RSDP_ADDR), 0);
        // Not relocatable: 0x100000 or nothing; no XLF_KERNEL_64 before 2.12.
        let mut b = bzimage(0x020a, 0x1000);
        b[off::RELOCATABLE_KERNEL] = 0;
        let img = BzImage::parse(&b).expect("valid");
        let boot = plan(&img, &config(&mem, b"", None)).expect("plan");
        assert_eq!((boot.kernel.address, boot.entry64), (MIB, None));
        let small = memory(4 * MIB);
        assert_eq!(
            plan(&img, &config(&small, b"", None)).map(|_| ()),
            Err(LinuxError::NotRelocatableNoFit { size: 4 * MIB })
        );
        // Relocatable but no room at all.
        let b = bzimage(0x020f, 0x1000);
        let img = BzImage::parse(&b).expect("valid");
        assert_eq!(
            plan(&img, &config(&small, b"", None)).map(|_| ()),
            Err(LinuxError::NoRoomForKernel { size: 4 * MIB })
        );
        // The initrd goes below initrd_addr_max and beside the kernel.
        let mut b = bzimage(0x020f, 0x1000);
        b[off::INITRD_ADDR_MAX..off::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&(20 * MIB as u32 - 1).to_le_bytes());
        let img = BzImage::parse(&b).expect("valid");
        let mut rd = vec![0x1f; 3 * MIB as usize];
        rd[1] = 0x8b;
        let boot = plan(&img, &config(&mem, b"", Some(&rd))).expect("plan");
        // 17-20 MiB would overlap the kernel at 16-20 MiB: just below it instead.
        assert_eq!(boot.kernel.address, 16 * MIB);
        assert_eq!(boot.initrd.expect("initrd").address, 13 * MIB);
        let big = {
            let mut v = vec![0u8; 6 * MIB as usize];
            v[..6].copy_from_slice(b"070701");
            v
        };
        // 6 MiB below 20 MiB: 16-20 MiB holds the kernel, so it goes under 16 MiB.
        let boot = plan(&img, &config(&mem, b"", Some(&big))).expect("plan");
        assert_eq!(boot.initrd.expect("initrd").address, 10 * MIB);
    }

    #[test]
    fn bad_images() {
        let good = bzimage(0x020f, 0x1000);
        assert_eq!(BzImage::parse(&[]).map(|_| ()), Err(LinuxError::NotBzImage));
        assert_eq!(BzImage::parse(&good[..0x200]).map(|_| ()), Err(LinuxError::NotBzImage));
        let mut b = good.clone();
        b[off::BOOT_FLAG] = 0;
        assert_eq!(BzImage::parse(&b).map(|_| ()), Err(LinuxError::NotBzImage));
        let mut b = good.clone();
        b[off::HEADER] = b'X';
        assert_eq!(BzImage::parse(&b).map(|_| ()), Err(LinuxError::NotBzImage));
        assert_eq!(
            BzImage::parse(&bzimage(0x0205, 0x1000)).map(|_| ()),
            Err(LinuxError::ProtocolTooOld { version: 0x0205 })
        );
        let mut b = good.clone();
        b[off::LOADFLAGS] = 0;
        assert_eq!(BzImage::parse(&b).map(|_| ()), Err(LinuxError::NotLoadedHigh));
        let mut b = good.clone();
        b[off::KERNEL_ALIGNMENT..off::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x30_0000u32.to_le_bytes());
        assert_eq!(
            BzImage::parse(&b).map(|_| ()),
            Err(LinuxError::BadKernelAlignment { alignment: 0x30_0000 })
        );
        // Cut short: the kernel part, then the payload bounds.
        let len = good.len() as u64;
        assert_eq!(
            BzImage::parse(&good[..good.len() - 16]).map(|_| ()),
            Err(LinuxError::Truncated { need: len, have: len - 16 })
        );
        let mut b = good.clone();
        b[off::PAYLOAD_LENGTH..off::PAYLOAD_LENGTH + 4].copy_from_slice(&0x1000u32.to_le_bytes());
        assert_eq!(
            BzImage::parse(&b).map(|_| ()),
            Err(LinuxError::Truncated { need: 5 * 512 + 0x1100, have: len })
        );
        // Header claiming to run past the setup sectors.
        let mut b = good.clone();
        b[off::SETUP_SECTS] = 0;
        b[off::JUMP + 1] = 0xff;
        assert!(BzImage::parse(&b).is_ok(), "0x301 is still inside 5 sectors");
        for e in [LinuxError::NotBzImage, LinuxError::ProtocolTooOld { version: 0x0204 }] {
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(
            LinuxError::ProtocolTooOld { version: 0x0204 }.to_string(),
            "boot protocol 2.04 is older than 2.06"
        );
    }

    #[test]
    fn bad_boot_configs() {
        let b = bzimage(0x020f, 0x1000);
        let img = BzImage::parse(&b).expect("valid");
        let mem = memory(256 * MIB);
        let long = vec![b'a'; 2048];
        let err = |cfg: BootConfig<'_>| plan(&img, &cfg).map(|_| ()).expect_err("must fail");
        assert_eq!(
            err(config(&mem, &long, None)),
            LinuxError::CmdlineTooLong { len: 2048, max: 2047 }
        );
        assert_eq!(err(config(&mem, b"a\0b", None)), LinuxError::CmdlineHasNul);
        assert!(plan(&img, &config(&mem, &long[..2047], None)).is_ok());
        assert_eq!(err(config(&mem, b"", Some(b""))), LinuxError::InitrdEmpty);
        assert_eq!(err(config(&mem, b"", Some(b"garbage!"))), LinuxError::InitrdNotRecognized);
        let huge = {
            let mut v = vec![0u8; 0x8000_0001];
            v[..2].copy_from_slice(&[0x1f, 0x8b]);
            v
        };
        assert_eq!(
            err(config(&mem, b"", Some(&huge))),
            LinuxError::InitrdTooLarge { size: 0x8000_0001, max: 0x8000_0000 }
        );
        let rd = {
            let mut v = vec![0u8; 300 * MIB as usize];
            v[..6].copy_from_slice(b"070702");
            v
        };
        assert_eq!(err(config(&mem, b"", Some(&rd))), LinuxError::InitrdNoFit { size: 300 * MIB });
        let many = vec![E820Entry { addr: 0, size: 0x1000, kind: 1 }; 129];
        assert_eq!(err(config(&many, b"", None)), LinuxError::TooManyMemoryRegions { count: 129 });
        // Zero page in reserved memory; command line over the zero page.
        let mut cfg = config(&mem, b"", None);
        cfg.zero_page = 0x9f000;
        assert_eq!(err(cfg), LinuxError::BadFixedAddress { address: 0x9f000 });
        let mut cfg = config(&mem, b"x", None);
        cfg.cmdline_addr = 0x7800;
        assert_eq!(err(cfg), LinuxError::BadFixedAddress { address: 0x7800 });
    }

    /// A real kernel, if `TURTLES_BZIMAGE` names one (e.g. a distribution's
    /// /boot/vmlinuz-*): parses, and plans a boot in 512 MiB with an initrd.
    #[test]
    fn real_bzimage_from_env() {
        let Some(path) = std::env::var_os("TURTLES_BZIMAGE") else {
            eprintln!("TURTLES_BZIMAGE not set: skipped");
            return;
        };
        let bytes = std::fs::read(&path).expect("read TURTLES_BZIMAGE");
        let img = BzImage::parse(&bytes).expect("a valid bzImage");
        let h = img.header;
        eprintln!(
            "{path:?}: protocol {:#06x}, init_size {:#x}, xloadflags {:#x}",
            h.version, h.init_size, h.xloadflags
        );
        assert!(h.version >= MIN_PROTOCOL);
        let mem = memory(512 * MIB);
        let boot = plan(&img, &config(&mem, b"console=ttyS0", Some(b"070701"))).expect("plan");
        assert_eq!(boot.kernel.address % u64::from(h.kernel_alignment), 0);
        assert!(boot.kernel.address >= MIB);
        if h.version >= PROTOCOL_XLOADFLAGS && h.xloadflags & xloadflags::KERNEL_64 != 0 {
            assert_eq!(boot.entry64, Some(boot.kernel.address + 0x200));
        }
        // The compressed payload sits inside the kernel part.
        let end = h.payload_offset as usize + h.payload_length as usize;
        assert!(end <= img.kernel.len());
        // The same kernel cut short is a clear error.
        let half = &bytes[..bytes.len() / 2];
        assert!(matches!(BzImage::parse(half), Err(LinuxError::Truncated { .. })));
    }

    proptest! {
        #![proptest_config(crate::fuzz_config(256))]

        /// Random bytes over a valid header (and random whole images): parse and plan never
        /// panic, and a plan's pieces lie in RAM without overlapping.
        #[test]
        fn fuzz_mutated_headers_never_panic(
            edits in proptest::collection::vec((0x1f0usize..0x270, any::<u8>()), 0..24),
            cut in 0usize..0x1800,
            cmdline_len in 0usize..64,
            with_initrd in any::<bool>(),
        ) {
            let mut b = bzimage(0x020f, 0x1000);
            for (at, v) in edits {
                b[at] = v;
            }
            b.truncate(b.len() - cut.min(b.len()));
            let mem = memory(64 * MIB);
            let cmdline = vec![b'x'; cmdline_len];
            let initrd: &[u8] = b"070701 cpio";
            if let Ok(img) = BzImage::parse(&b) {
                let cfg = config(&mem, &cmdline, with_initrd.then_some(initrd));
                if let Ok(boot) = plan(&img, &cfg) {
                    let mut pieces = vec![
                        (boot.kernel.address, img.memory_size()),
                        (boot.zero_page.address, ZERO_PAGE_SIZE as u64),
                        (boot.cmdline.address, cmdline_len as u64 + 1),
                    ];
                    if let Some(rd) = &boot.initrd {
                        pieces.push((rd.address, initrd.len() as u64));
                    }
                    let ram = ram_below(&mem, 1 << 32);
                    for (i, &(a, n)) in pieces.iter().enumerate() {
                        prop_assert!(fits(&ram, &[], a, n));
                        for &(c, m) in &pieces[i + 1..] {
                            prop_assert!(!overlaps((a, a + n), (c, c + m)));
                        }
                    }
                }
            }
        }

        #[test]
        fn fuzz_random_images_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..0x1000)) {
            let _ = BzImage::parse(&bytes);
        }
    }
}
