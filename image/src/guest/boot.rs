//! Booting a guest the way a boot loader would: find its multiboot2 or multiboot1 header or
//! its PVH note, load it (ELF segments or the multiboot1 address fields), copy its modules,
//! and build the boot information with a memory map and command line (Multiboot spec 0.6.96,
//! Multiboot2 spec 3.6, Xen `hvm_start_info`). The guest then starts in 32-bit protected mode
//! with paging off, EAX/EBX as the protocol says.

use alloc::vec::Vec;
use core::fmt;

use super::elf::Elf;
use super::memory::GuestMemory;

/// Boot protocols L0 can boot a guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Multiboot1,
    Multiboot2,
    Pvh,
}

/// Where the guest starts.
#[derive(Clone, Copy, Debug)]
pub struct BootState {
    pub protocol: Protocol,
    pub entry: u64,
    pub rax: u64,
    pub rbx: u64,
}

/// Why a guest image cannot be booted.
#[derive(Debug)]
pub enum LoadError {
    /// Neither a multiboot header nor a PVH note.
    NoBootProtocol,
    /// The image needs a protocol it does not offer.
    ProtocolMissing(Protocol),
    /// A multiboot1 image without address fields that is not an ELF file either.
    NotElf,
    /// A segment or module does not fit in guest memory.
    OutsideGuestMemory { what: &'static str, start: u64, len: u64 },
    /// Offsets in the image point outside the file.
    Truncated(&'static str),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoBootProtocol => f.write_str(
                "no multiboot1/multiboot2 header and no PVH note: not a bootable kernel",
            ),
            LoadError::ProtocolMissing(p) => write!(f, "the image has no {p:?} entry"),
            LoadError::NotElf => f.write_str("multiboot1 image without address fields is not ELF"),
            LoadError::OutsideGuestMemory { what, start, len } => {
                write!(f, "{what} [{start:#x}+{len:#x}) does not fit in guest memory")
            }
            LoadError::Truncated(what) => write!(f, "{what} points outside the image file"),
        }
    }
}

const MB1_MAGIC: u32 = 0x1bad_b002;
const MB1_LOADER_MAGIC: u32 = 0x2bad_b002;
const MB2_MAGIC: u32 = 0xe852_50d6;
const MB2_LOADER_MAGIC: u32 = 0x36d7_6289;
const PVH_START_MAGIC: u32 = 0x336e_c578;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;

/// Guest-physical address of the boot information (below the EBDA, above real-mode IVT).
const INFO_BASE: u64 = 0x8000;
const INFO_SIZE: usize = 0x8000;
/// Top of the low RAM reported to the guest; 0x9f000..1 MiB is reserved (EBDA, ROMs).
const LOW_RAM_END: u64 = 0x9f000;
const HIGH_RAM_START: u64 = 0x10_0000;
const LOADER_NAME: &str = "turtles";

fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// File offset of the multiboot1 header (first 8 KiB, 4-aligned, checksum valid).
fn find_mb1(image: &[u8]) -> Option<usize> {
    (0..image.len().min(8192).saturating_sub(11)).step_by(4).find(|&at| {
        let (m, f, c) = (u32_at(image, at), u32_at(image, at + 4), u32_at(image, at + 8));
        matches!((m, f, c), (Some(MB1_MAGIC), Some(f), Some(c)) if MB1_MAGIC.wrapping_add(f).wrapping_add(c) == 0)
    })
}

/// File offset of the multiboot2 header (first 32 KiB, 8-aligned, checksum valid).
fn find_mb2(image: &[u8]) -> Option<usize> {
    (0..image.len().min(32768).saturating_sub(15)).step_by(8).find(|&at| {
        let words: Option<[u32; 4]> = (|| {
            Some([u32_at(image, at)?, u32_at(image, at + 4)?, u32_at(image, at + 8)?, u32_at(image, at + 12)?])
        })();
        matches!(words, Some([MB2_MAGIC, 0, len, sum]) if MB2_MAGIC.wrapping_add(len).wrapping_add(sum) == 0)
    })
}

/// The PVH entry point from the ELF note, if any.
fn pvh_entry(elf: Option<&Elf<'_>>) -> Option<u64> {
    let desc = elf?.note(b"Xen", XEN_ELFNOTE_PHYS32_ENTRY)?;
    match desc.len() {
        4 => Some(u64::from(u32::from_le_bytes(desc.try_into().ok()?))),
        8.. => Some(u64::from_le_bytes(desc.get(..8)?.try_into().ok()?)),
        _ => None,
    }
}

/// Loads `image` into `mem` with `cmdline` and `modules` and returns the entry state.
/// `prefer` forces a protocol; otherwise multiboot2, then multiboot1, then PVH.
pub fn load(
    mem: &mut GuestMemory,
    image: &[u8],
    cmdline: &str,
    modules: &[(&[u8], &str)],
    prefer: Option<Protocol>,
) -> Result<BootState, LoadError> {
    let elf = Elf::parse(image);
    let mb2 = find_mb2(image);
    let mb1 = find_mb1(image);
    let pvh = pvh_entry(elf.as_ref());
    let protocol = match prefer {
        Some(Protocol::Multiboot2) if mb2.is_none() => {
            return Err(LoadError::ProtocolMissing(Protocol::Multiboot2));
        }
        Some(Protocol::Multiboot1) if mb1.is_none() => {
            return Err(LoadError::ProtocolMissing(Protocol::Multiboot1));
        }
        Some(Protocol::Pvh) if pvh.is_none() => {
            return Err(LoadError::ProtocolMissing(Protocol::Pvh));
        }
        Some(p) => p,
        None if mb2.is_some() => Protocol::Multiboot2,
        None if mb1.is_some() => Protocol::Multiboot1,
        None if pvh.is_some() => Protocol::Pvh,
        None => return Err(LoadError::NoBootProtocol),
    };

    let mb1_aout =
        mb1.and_then(|at| Some((at, u32_at(image, at + 4)?))).filter(|(_, f)| f & (1 << 16) != 0);
    let (mut entry, mut kernel_end) = match (protocol, mb1_aout) {
        (Protocol::Multiboot1, Some((at, _))) => load_aout(mem, image, at)?,
        _ => load_elf(mem, elf.as_ref().ok_or(LoadError::NotElf)?)?,
    };
    if protocol == Protocol::Pvh {
        entry = pvh.unwrap_or(entry);
    }

    // Modules go after the kernel, page-aligned.
    let mut placed = Vec::new();
    for (data, name) in modules {
        let start = kernel_end.div_ceil(4096) * 4096;
        if !mem.write(start, data) {
            return Err(LoadError::OutsideGuestMemory {
                what: "module",
                start,
                len: data.len() as u64,
            });
        }
        kernel_end = start + data.len() as u64;
        placed.push((start, kernel_end, *name));
    }

    let map = [
        (0, LOW_RAM_END, 1u32),
        (LOW_RAM_END, HIGH_RAM_START - LOW_RAM_END, 2),
        (HIGH_RAM_START, mem.size() - HIGH_RAM_START, 1),
    ];
    let mut info = Info::new();
    let (rax, rbx) = match protocol {
        Protocol::Multiboot1 => {
            (MB1_LOADER_MAGIC, info.multiboot1(mem.size(), cmdline, &placed, &map))
        }
        Protocol::Multiboot2 => {
            (MB2_LOADER_MAGIC, info.multiboot2(mem.size(), cmdline, &placed, &map))
        }
        Protocol::Pvh => (0, info.pvh(cmdline, &placed, &map)),
    };
    if !mem.write(INFO_BASE, &info.buf) {
        return Err(LoadError::OutsideGuestMemory {
            what: "boot information",
            start: INFO_BASE,
            len: INFO_SIZE as u64,
        });
    }
    Ok(BootState { protocol, entry, rax: u64::from(rax), rbx: u64::from(rbx) })
}

fn load_elf(mem: &mut GuestMemory, elf: &Elf<'_>) -> Result<(u64, u64), LoadError> {
    let mut end = 0;
    for seg in elf.loads() {
        let seg = seg.ok_or(LoadError::Truncated("a program header"))?;
        let dst = mem.slice_mut(seg.paddr, seg.memsz).ok_or(LoadError::OutsideGuestMemory {
            what: "segment",
            start: seg.paddr,
            len: seg.memsz,
        })?;
        let src = usize::try_from(seg.offset)
            .ok()
            .zip(usize::try_from(seg.filesz).ok())
            .and_then(|(o, n)| elf.data.get(o..o.checked_add(n)?))
            .filter(|src| src.len() <= dst.len())
            .ok_or(LoadError::Truncated("a segment"))?;
        dst[..src.len()].copy_from_slice(src);
        dst[src.len()..].fill(0);
        end = end.max(seg.paddr + seg.memsz);
    }
    Ok((elf.entry, end))
}

/// Multiboot1 "a.out kludge": the header's address fields say what to load where.
fn load_aout(mem: &mut GuestMemory, image: &[u8], at: usize) -> Result<(u64, u64), LoadError> {
    let field = |i: usize| {
        u32_at(image, at + 12 + 4 * i)
            .map(u64::from)
            .ok_or(LoadError::Truncated("the multiboot1 header"))
    };
    let (header_addr, load_addr, load_end, bss_end, entry) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    let offset = (at as u64)
        .checked_sub(header_addr.wrapping_sub(load_addr))
        .ok_or(LoadError::Truncated("load_addr"))?;
    let len = if load_end == 0 {
        image.len() as u64 - offset
    } else {
        load_end.saturating_sub(load_addr)
    };
    let src = image
        .get(offset as usize..(offset + len) as usize)
        .ok_or(LoadError::Truncated("load_end_addr"))?;
    if !mem.write(load_addr, src) {
        return Err(LoadError::OutsideGuestMemory { what: "kernel", start: load_addr, len });
    }
    let end = bss_end.max(load_addr + len);
    let bss = mem.slice_mut(load_addr + len, end - (load_addr + len)).ok_or(
        LoadError::OutsideGuestMemory {
            what: "bss",
            start: load_addr + len,
            len: end - load_addr - len,
        },
    )?;
    bss.fill(0);
    Ok((entry, end))
}

/// The boot-information page being built; addresses are guest-physical.
struct Info {
    buf: Vec<u8>,
}

impl Info {
    fn new() -> Self {
        Info { buf: alloc::vec![0; INFO_SIZE] }
    }

    fn put(&mut self, at: usize, bytes: &[u8]) {
        self.buf[at..at + bytes.len()].copy_from_slice(bytes);
    }

    /// Appends bytes after the fixed part (the buffer grows from `used`) and returns their
    /// guest-physical address.
    fn append(&mut self, used: &mut usize, bytes: &[u8]) -> u32 {
        let at = *used;
        if at + bytes.len() > self.buf.len() {
            return 0; // does not fit: report nothing rather than overflow
        }
        self.put(at, bytes);
        *used = (at + bytes.len()).div_ceil(8) * 8;
        (INFO_BASE + at as u64) as u32
    }

    fn c_string(s: &str) -> Vec<u8> {
        let mut v: Vec<u8> = s.bytes().take(1024).collect();
        v.push(0);
        v
    }

    fn multiboot1(
        &mut self,
        size: u64,
        cmdline: &str,
        modules: &[(u64, u64, &str)],
        map: &[(u64, u64, u32)],
    ) -> u32 {
        let mut used = 128;
        let cmd = self.append(&mut used, &Self::c_string(cmdline));
        let name = self.append(&mut used, &Self::c_string(LOADER_NAME));
        let mut mods = Vec::new();
        for &(start, end, s) in modules {
            let string = self.append(&mut used, &Self::c_string(s));
            for w in [start as u32, end as u32, string, 0] {
                mods.extend_from_slice(&w.to_le_bytes());
            }
        }
        let mods_addr = self.append(&mut used, &mods);
        let mut mmap = Vec::new();
        for &(base, len, kind) in map {
            mmap.extend_from_slice(&20u32.to_le_bytes());
            mmap.extend_from_slice(&base.to_le_bytes());
            mmap.extend_from_slice(&len.to_le_bytes());
            mmap.extend_from_slice(&kind.to_le_bytes());
        }
        let mmap_addr = self.append(&mut used, &mmap);
        let flags: u32 = 1 | 4 | 8 | 64 | 512;
        let fields: [(usize, u32); 9] = [
            (0, flags),
            (4, (LOW_RAM_END / 1024) as u32),
            (8, ((size - HIGH_RAM_START) / 1024) as u32),
            (16, cmd),
            (20, modules.len() as u32),
            (24, mods_addr),
            (44, mmap.len() as u32),
            (48, mmap_addr),
            (64, name),
        ];
        for (at, v) in fields {
            self.put(at, &v.to_le_bytes());
        }
        self.buf.truncate(used);
        INFO_BASE as u32
    }

    fn multiboot2(
        &mut self,
        size: u64,
        cmdline: &str,
        modules: &[(u64, u64, &str)],
        map: &[(u64, u64, u32)],
    ) -> u32 {
        let mut used = 8;
        let tag = |info: &mut Self, used: &mut usize, kind: u32, body: &[u8]| {
            let mut t = Vec::new();
            t.extend_from_slice(&kind.to_le_bytes());
            t.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
            t.extend_from_slice(body);
            info.append(used, &t);
        };
        tag(self, &mut used, 1, &Self::c_string(cmdline));
        tag(self, &mut used, 2, &Self::c_string(LOADER_NAME));
        for &(start, end, s) in modules {
            let mut body = Vec::new();
            body.extend_from_slice(&(start as u32).to_le_bytes());
            body.extend_from_slice(&(end as u32).to_le_bytes());
            body.extend_from_slice(&Self::c_string(s));
            tag(self, &mut used, 3, &body);
        }
        let mut meminfo = Vec::new();
        meminfo.extend_from_slice(&((LOW_RAM_END / 1024) as u32).to_le_bytes());
        meminfo.extend_from_slice(&(((size - HIGH_RAM_START) / 1024) as u32).to_le_bytes());
        tag(self, &mut used, 4, &meminfo);
        let mut mmap = Vec::new();
        mmap.extend_from_slice(&24u32.to_le_bytes());
        mmap.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, kind) in map {
            mmap.extend_from_slice(&base.to_le_bytes());
            mmap.extend_from_slice(&len.to_le_bytes());
            mmap.extend_from_slice(&kind.to_le_bytes());
            mmap.extend_from_slice(&0u32.to_le_bytes());
        }
        tag(self, &mut used, 6, &mmap);
        tag(self, &mut used, 0, &[]);
        self.put(0, &(used as u32).to_le_bytes());
        self.buf.truncate(used);
        INFO_BASE as u32
    }

    fn pvh(&mut self, cmdline: &str, modules: &[(u64, u64, &str)], map: &[(u64, u64, u32)]) -> u32 {
        let mut used = 64;
        let cmd = self.append(&mut used, &Self::c_string(cmdline));
        let mut list = Vec::new();
        for &(start, end, s) in modules {
            let string = self.append(&mut used, &Self::c_string(s));
            for v in [start, end - start, u64::from(string), 0] {
                list.extend_from_slice(&v.to_le_bytes());
            }
        }
        let modlist = self.append(&mut used, &list);
        let mut memmap = Vec::new();
        for &(base, len, kind) in map {
            memmap.extend_from_slice(&base.to_le_bytes());
            memmap.extend_from_slice(&len.to_le_bytes());
            memmap.extend_from_slice(&kind.to_le_bytes());
            memmap.extend_from_slice(&0u32.to_le_bytes());
        }
        let memmap_addr = self.append(&mut used, &memmap);
        let mut head = Vec::new();
        for v in [PVH_START_MAGIC, 1, 0, modules.len() as u32] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        for v in [u64::from(modlist), u64::from(cmd), 0, u64::from(memmap_addr)] {
            head.extend_from_slice(&v.to_le_bytes());
        }
        head.extend_from_slice(&(map.len() as u32).to_le_bytes());
        self.put(0, &head);
        self.buf.truncate(used);
        INFO_BASE as u32
    }
}
