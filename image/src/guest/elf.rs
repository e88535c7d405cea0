//! The parts of ELF (32- and 64-bit, little-endian x86) a boot loader needs: loadable
//! segments, the entry point and notes. Every offset is checked against the file: a guest
//! image is data, not trusted.

/// A segment to copy into guest memory.
#[derive(Clone, Copy, Debug)]
pub struct Segment {
    pub paddr: u64,
    pub offset: u64,
    pub filesz: u64,
    pub memsz: u64,
}

/// A parsed ELF image.
pub struct Elf<'a> {
    pub data: &'a [u8],
    pub entry: u64,
    is64: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
}

const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;

fn u16_at(d: &[u8], at: u64) -> Option<u16> {
    let at = usize::try_from(at).ok()?;
    Some(u16::from_le_bytes(d.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn u32_at(d: &[u8], at: u64) -> Option<u32> {
    let at = usize::try_from(at).ok()?;
    Some(u32::from_le_bytes(d.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn u64_at(d: &[u8], at: u64) -> Option<u64> {
    let at = usize::try_from(at).ok()?;
    Some(u64::from_le_bytes(d.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Parses the header; `None` if `data` is not a little-endian x86 ELF executable.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        if data.get(..4)? != b"\x7fELF" || *data.get(5)? != 1 {
            return None;
        }
        let is64 = match data.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let machine = u16_at(data, 18)?;
        if !matches!((is64, machine), (false, 3) | (true, 62)) {
            return None;
        }
        let (entry, phoff, phentsize, phnum) = if is64 {
            (u64_at(data, 24)?, u64_at(data, 32)?, u16_at(data, 54)?, u16_at(data, 56)?)
        } else {
            let (e, p) = (u32_at(data, 24)?, u32_at(data, 28)?);
            (u64::from(e), u64::from(p), u16_at(data, 42)?, u16_at(data, 44)?)
        };
        Some(Elf {
            data,
            entry,
            is64,
            phoff,
            phentsize: u64::from(phentsize),
            phnum: u64::from(phnum),
        })
    }

    fn program_header(&self, i: u64) -> Option<(u32, Segment)> {
        let at = self.phoff.checked_add(i.checked_mul(self.phentsize)?)?;
        let d = self.data;
        let kind = u32_at(d, at)?;
        let seg = if self.is64 {
            Segment {
                offset: u64_at(d, at + 8)?,
                paddr: u64_at(d, at + 24)?,
                filesz: u64_at(d, at + 32)?,
                memsz: u64_at(d, at + 40)?,
            }
        } else {
            Segment {
                offset: u64::from(u32_at(d, at + 4)?),
                paddr: u64::from(u32_at(d, at + 12)?),
                filesz: u64::from(u32_at(d, at + 16)?),
                memsz: u64::from(u32_at(d, at + 20)?),
            }
        };
        Some((kind, seg))
    }

    /// The PT_LOAD segments (malformed program headers are skipped by the caller's checks:
    /// `None` entries mean the table runs off the file).
    pub fn loads(&self) -> impl Iterator<Item = Option<Segment>> + '_ {
        (0..self.phnum).filter_map(move |i| match self.program_header(i) {
            Some((PT_LOAD, seg)) => Some(Some(seg)),
            Some(_) => None,
            None => Some(None),
        })
    }

    /// The descriptor of the first note named `name` with type `kind` in a PT_NOTE segment.
    pub fn note(&self, name: &[u8], kind: u32) -> Option<&'a [u8]> {
        for i in 0..self.phnum {
            let Some((PT_NOTE, seg)) = self.program_header(i) else { continue };
            let mut at = seg.offset;
            let end = seg.offset.checked_add(seg.filesz)?;
            while at + 12 <= end {
                let namesz = u64::from(u32_at(self.data, at)?);
                let descsz = u64::from(u32_at(self.data, at + 4)?);
                let ty = u32_at(self.data, at + 8)?;
                let name_at = at + 12;
                let desc_at = name_at + namesz.div_ceil(4) * 4;
                let next = desc_at + descsz.div_ceil(4) * 4;
                let note_name = self.data.get(name_at as usize..(name_at + namesz) as usize)?;
                if ty == kind && note_name.strip_suffix(b"\0").unwrap_or(note_name) == name {
                    return self.data.get(desc_at as usize..(desc_at + descsz) as usize);
                }
                at = next;
            }
        }
        None
    }
}
