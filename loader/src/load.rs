//! Placing a recognised kernel in guest memory: its ELF segments or the part of the file its
//! multiboot address fields name, then the modules (page-aligned, after the kernel), then the
//! boot information.

use alloc::vec::Vec;

use crate::info::{self, PlacedModule};
use crate::kernel::{AddressFields, ElfImage, Kernel};
use crate::{BootState, GuestMemory, LoadError, Module, Protocol};

const PAGE: u64 = 4096;

fn outside(what: &'static str, start: u64, len: u64) -> LoadError {
    LoadError::OutsideGuestMemory { what, start, len }
}

/// Loads `image` into `mem` with `cmdline` and `modules` and returns the entry state.
/// `prefer` forces a protocol; otherwise multiboot2, then multiboot1, then PVH.
pub fn load<M: GuestMemory + ?Sized>(
    mem: &mut M,
    image: &[u8],
    cmdline: &str,
    modules: &[Module<'_>],
    prefer: Option<Protocol>,
) -> Result<BootState, LoadError> {
    let kernel = Kernel::inspect(image);
    let protocol = kernel.choose(prefer)?;
    let map = info::memory_map(mem.size(), mem.ram_start())?;

    let (entry, kernel_end) = match protocol {
        Protocol::Multiboot1 => match kernel.multiboot1.and_then(|h| h.address) {
            Some((fields, entry)) => (u64::from(entry), load_fields(mem, image, &fields)?),
            None => load_elf(mem, image, elf(&kernel)?)?,
        },
        Protocol::Multiboot2 => {
            let header = kernel.multiboot2.ok_or(LoadError::ProtocolMissing(protocol))?;
            let (entry, end) = match (header.address, &kernel.elf) {
                // The address tag wins over the ELF headers (Multiboot2 3.1.5).
                (Some(fields), _) => {
                    let entry = header.entry.ok_or(LoadError::Malformed(
                        "multiboot2 address tag without an entry tag",
                    ))?;
                    (u64::from(entry), load_fields(mem, image, &fields)?)
                }
                (None, Ok(elf)) => load_elf(mem, image, elf)?,
                (None, Err(e)) => return Err(*e),
            };
            (header.entry.map_or(entry, u64::from), end)
        }
        Protocol::Pvh => {
            let elf = elf(&kernel)?;
            let (_, end) = load_elf(mem, image, elf)?;
            (kernel.pvh_entry().ok_or(LoadError::ProtocolMissing(protocol))?, end)
        }
    };

    // Modules go after the kernel, page-aligned.
    let mut placed = Vec::with_capacity(modules.len());
    let mut end = kernel_end;
    for m in modules {
        let len = m.data.len() as u64;
        let start = end.checked_next_multiple_of(PAGE).ok_or(outside("module", end, len))?;
        mem.write(start, m.data).map_err(|_| outside("module", start, len))?;
        end = start + len;
        placed.push(PlacedModule { start, end, cmdline: m.cmdline });
    }

    let boot_info = info::build(protocol, cmdline, &placed, &map)?;
    mem.write(boot_info.addr, &boot_info.bytes)
        .map_err(|_| outside("boot information", boot_info.addr, boot_info.bytes.len() as u64))?;
    Ok(BootState { protocol, entry, rax: u64::from(boot_info.magic), rbx: boot_info.addr })
}

fn elf<'k>(kernel: &'k Kernel<'_>) -> Result<&'k ElfImage, LoadError> {
    kernel.elf.as_ref().map_err(|e| *e)
}

/// Copies the PT_LOAD segments (zeroing their bss); returns the entry point and the end of
/// the highest segment.
fn load_elf<M: GuestMemory + ?Sized>(
    mem: &mut M,
    image: &[u8],
    elf: &ElfImage,
) -> Result<(u64, u64), LoadError> {
    let mut end = 0;
    for seg in &elf.segments {
        let seg_end =
            seg.paddr.checked_add(seg.memsz).ok_or(outside("segment", seg.paddr, seg.memsz))?;
        // `Kernel::inspect` checked the file range and filesz <= memsz.
        let src = usize::try_from(seg.offset)
            .ok()
            .zip(usize::try_from(seg.filesz).ok())
            .and_then(|(o, n)| image.get(o..o.checked_add(n)?))
            .ok_or(LoadError::Malformed("an ELF segment"))?;
        let bss = seg.paddr + seg.filesz;
        mem.write(seg.paddr, src)
            .and_then(|()| mem.fill(bss, seg.memsz - seg.filesz, 0))
            .map_err(|_| outside("segment", seg.paddr, seg.memsz))?;
        end = end.max(seg_end);
    }
    Ok((elf.entry, end))
}

/// The multiboot "a.out kludge": the header's address fields say which bytes of the file go
/// where (Multiboot 3.1.3, Multiboot2 3.1.5). Returns the end of the loaded image and bss.
fn load_fields<M: GuestMemory + ?Sized>(
    mem: &mut M,
    image: &[u8],
    f: &AddressFields,
) -> Result<u64, LoadError> {
    let malformed = LoadError::Malformed;
    // The header's file offset corresponds to header_addr: the file at load_addr starts
    // header_addr - load_addr bytes before it.
    let before_header =
        f.header_addr.checked_sub(f.load_addr).ok_or(malformed("load_addr above header_addr"))?;
    let file_start = f
        .header_offset
        .checked_sub(before_header as usize)
        .ok_or(malformed("load_addr before the start of the file"))?;
    let load_addr = u64::from(f.load_addr);
    let len = match f.load_end_addr {
        0 => (image.len() - file_start) as u64,
        end => u64::from(
            end.checked_sub(f.load_addr).ok_or(malformed("load_end_addr below load_addr"))?,
        ),
    };
    let src = usize::try_from(len)
        .ok()
        .and_then(|n| image.get(file_start..file_start.checked_add(n)?))
        .ok_or(malformed("load_end_addr beyond the end of the file"))?;
    mem.write(load_addr, src).map_err(|_| outside("kernel", load_addr, len))?;
    let loaded_end = load_addr + len;
    let end = match f.bss_end_addr {
        0 => loaded_end,
        bss_end => {
            let bss_end = u64::from(bss_end);
            let bss_len = bss_end
                .checked_sub(loaded_end)
                .ok_or(malformed("bss_end_addr below load_end_addr"))?;
            mem.fill(loaded_end, bss_len, 0).map_err(|_| outside("bss", loaded_end, bss_len))?;
            bss_end
        }
    };
    Ok(end)
}
