//! Recognising a guest kernel: its multiboot1 header (Multiboot 0.6.96 3.1), its multiboot2
//! header and tags (Multiboot2 3.1), its PVH entry note (Xen `XEN_ELFNOTE_PHYS32_ENTRY`) and
//! its ELF program headers (through the `elf` crate). Nothing is trusted: a header that does
//! not check out is not there, a header that is there but points outside the file is a
//! [`LoadError::Malformed`] when it is used.

use alloc::vec::Vec;

use elf::ElfBytes;
use elf::abi::{EM_386, EM_X86_64, PT_LOAD, PT_NOTE};
use elf::endian::AnyEndian;
use elf::file::Class;
use elf::note::Note;

use crate::{LoadError, Protocol};

pub const MB1_MAGIC: u32 = 0x1bad_b002;
pub const MB2_MAGIC: u32 = 0xe852_50d6;
/// Multiboot1 flag 16: the header's address fields are valid.
pub const MB1_AOUT_KLUDGE: u32 = 1 << 16;
/// Multiboot2 header tag types (Multiboot2 3.1.3 ff.).
const MB2_TAG_END: u16 = 0;
const MB2_TAG_ADDRESS: u16 = 2;
const MB2_TAG_ENTRY: u16 = 3;
/// Multiboot2 architecture 0: 32-bit protected-mode i386.
const MB2_ARCH_I386: u32 = 0;
pub const XEN_ELFNOTE_PHYS32_ENTRY: u64 = 18;

/// The multiboot1 header lies in the first 8 KiB, 4-aligned; multiboot2's in the first
/// 32 KiB, 8-aligned.
const MB1_SEARCH: usize = 8192;
const MB2_SEARCH: usize = 32768;

pub(crate) fn u32_at(d: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u16_at(d: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// A multiboot header's address fields: what part of the file goes where, for kernels that
/// are not (or not loaded as) ELF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressFields {
    /// File offset of the header, whose load address is `header_addr`.
    pub header_offset: usize,
    pub header_addr: u32,
    pub load_addr: u32,
    /// End of the loaded part; 0 = to the end of the file.
    pub load_end_addr: u32,
    /// End of the zeroed bss after it; 0 = no bss.
    pub bss_end_addr: u32,
}

/// A multiboot1 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiboot1Header {
    pub offset: usize,
    pub flags: u32,
    /// With flag 16: the address fields and the entry point.
    pub address: Option<(AddressFields, u32)>,
}

/// A multiboot2 header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Multiboot2Header {
    pub offset: usize,
    /// The address tag, if any.
    pub address: Option<AddressFields>,
    /// The entry address tag, if any (it overrides the ELF entry point).
    pub entry: Option<u32>,
}

/// A loadable ELF segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// What a boot loader needs of an ELF executable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ElfImage {
    pub entry: u64,
    /// PT_LOAD segments, each checked to lie inside the file with `filesz <= memsz`.
    pub segments: Vec<Segment>,
    /// The PVH entry point from the Xen note, if any.
    pub pvh_entry: Option<u64>,
}

/// A guest kernel image and the boot protocols it offers.
#[derive(Clone, Debug)]
pub struct Kernel<'a> {
    pub image: &'a [u8],
    /// The ELF view, `Err(NotElf)` if the image is not a little-endian x86 ELF executable.
    pub elf: Result<ElfImage, LoadError>,
    pub multiboot1: Option<Multiboot1Header>,
    pub multiboot2: Option<Multiboot2Header>,
}

impl<'a> Kernel<'a> {
    /// Looks at `image`.
    pub fn inspect(image: &'a [u8]) -> Self {
        Kernel {
            image,
            elf: parse_elf(image),
            multiboot1: find_multiboot1(image),
            multiboot2: find_multiboot2(image),
        }
    }

    /// The PVH entry point, if the image is an ELF file with the note.
    pub fn pvh_entry(&self) -> Option<u64> {
        self.elf.as_ref().ok()?.pvh_entry
    }

    /// True if the image can be booted with `p`.
    pub fn offers(&self, p: Protocol) -> bool {
        match p {
            Protocol::Multiboot1 => self.multiboot1.is_some(),
            Protocol::Multiboot2 => self.multiboot2.is_some(),
            Protocol::Pvh => self.pvh_entry().is_some(),
        }
    }

    /// The protocol to boot with: `prefer` if offered, else the first offered of
    /// [`Protocol::PREFERENCE`].
    pub fn choose(&self, prefer: Option<Protocol>) -> Result<Protocol, LoadError> {
        match prefer {
            Some(p) if self.offers(p) => Ok(p),
            Some(p) => Err(LoadError::ProtocolMissing(p)),
            None => Protocol::PREFERENCE
                .into_iter()
                .find(|&p| self.offers(p))
                .ok_or(LoadError::NoBootProtocol),
        }
    }
}

/// The multiboot1 header: magic, flags and a checksum that sums to 0, all 12 bytes (32 with
/// address fields) inside the first 8 KiB.
fn find_multiboot1(image: &[u8]) -> Option<Multiboot1Header> {
    let window = image.get(..image.len().min(MB1_SEARCH))?;
    (0..window.len()).step_by(4).find_map(|at| {
        let (magic, flags, sum) =
            (u32_at(window, at)?, u32_at(window, at + 4)?, u32_at(window, at + 8)?);
        if magic != MB1_MAGIC || magic.wrapping_add(flags).wrapping_add(sum) != 0 {
            return None;
        }
        let field = |i: usize| u32_at(window, at + 12 + 4 * i);
        let address = if flags & MB1_AOUT_KLUDGE != 0 {
            let fields = AddressFields {
                header_offset: at,
                header_addr: field(0)?,
                load_addr: field(1)?,
                load_end_addr: field(2)?,
                bss_end_addr: field(3)?,
            };
            Some((fields, field(4)?))
        } else {
            None
        };
        Some(Multiboot1Header { offset: at, flags, address })
    })
}

/// The multiboot2 header: magic, architecture 0, header length and checksum, then its tags
/// up to the end tag, all inside the header length and the first 32 KiB.
fn find_multiboot2(image: &[u8]) -> Option<Multiboot2Header> {
    let window = image.get(..image.len().min(MB2_SEARCH))?;
    (0..window.len()).step_by(8).find_map(|at| {
        let [magic, arch, len, sum] = [0, 4, 8, 12].map(|o| u32_at(window, at + o));
        let (magic, arch, len, sum) = (magic?, arch?, len?, sum?);
        let sums_to_zero = magic.wrapping_add(arch).wrapping_add(len).wrapping_add(sum) == 0;
        if magic != MB2_MAGIC || arch != MB2_ARCH_I386 || !sums_to_zero {
            return None;
        }
        let end = at.checked_add(usize::try_from(len).ok()?)?;
        let header = window.get(at..end)?;
        let mut h = Multiboot2Header { offset: at, address: None, entry: None };
        let mut tag = 16;
        loop {
            let (kind, size) = (u16_at(header, tag)?, u32_at(header, tag + 4)?);
            let size = usize::try_from(size).ok()?;
            if size < 8 || tag.checked_add(size)? > header.len() {
                return None;
            }
            match kind {
                MB2_TAG_END => return Some(h),
                MB2_TAG_ADDRESS if size >= 24 => {
                    let f = |i: usize| u32_at(header, tag + 8 + 4 * i);
                    h.address = Some(AddressFields {
                        header_offset: at,
                        header_addr: f(0)?,
                        load_addr: f(1)?,
                        load_end_addr: f(2)?,
                        bss_end_addr: f(3)?,
                    });
                }
                MB2_TAG_ENTRY if size >= 12 => h.entry = Some(u32_at(header, tag + 8)?),
                _ => {} // other tags ask for things L0 does not provide; they are optional to honour
            }
            tag = tag.checked_add(size.div_ceil(8) * 8)?;
        }
    })
}

/// The ELF view of `image`.
fn parse_elf(image: &[u8]) -> Result<ElfImage, LoadError> {
    let file = ElfBytes::<AnyEndian>::minimal_parse(image).map_err(|_| LoadError::NotElf)?;
    let h = &file.ehdr;
    let x86 = matches!((h.class, h.e_machine), (Class::ELF32, EM_386) | (Class::ELF64, EM_X86_64));
    if !x86 || h.endianness != AnyEndian::Little {
        return Err(LoadError::NotElf);
    }
    let mut segments = Vec::new();
    let mut pvh_entry = None;
    let Some(table) = file.segments() else {
        return Ok(ElfImage { entry: h.e_entry, segments, pvh_entry });
    };
    for ph in table.iter() {
        match ph.p_type {
            PT_LOAD if ph.p_memsz > 0 => {
                let inside = ph
                    .p_offset
                    .checked_add(ph.p_filesz)
                    .is_some_and(|end| end <= image.len() as u64);
                if !inside || ph.p_filesz > ph.p_memsz {
                    return Err(LoadError::Malformed("an ELF segment"));
                }
                segments.push(Segment {
                    paddr: ph.p_paddr,
                    offset: ph.p_offset,
                    filesz: ph.p_filesz,
                    memsz: ph.p_memsz,
                });
            }
            PT_NOTE if pvh_entry.is_none() => {
                // A note segment that does not parse has no PVH note.
                let Ok(notes) = file.segment_data_as_notes(&ph) else { continue };
                pvh_entry = notes.into_iter().find_map(|n| match n {
                    Note::Unknown(n)
                        if n.n_type == XEN_ELFNOTE_PHYS32_ENTRY
                            && n.name.strip_suffix(b"\0").unwrap_or(n.name) == b"Xen" =>
                    {
                        match n.desc.len() {
                            4 => n.desc.try_into().ok().map(u32::from_le_bytes).map(u64::from),
                            8.. => n.desc.get(..8)?.try_into().ok().map(u64::from_le_bytes),
                            _ => None,
                        }
                    }
                    _ => None,
                });
            }
            _ => {}
        }
    }
    Ok(ElfImage { entry: h.e_entry, segments, pvh_entry })
}
