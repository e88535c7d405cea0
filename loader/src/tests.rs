//! Host tests: hand-built kernels for each protocol, the boot information read back as the
//! kernel would, and a fuzz test that malformed images are errors, never panics.

use proptest::prelude::*;

use crate::info::{INFO_BASE, MB1_LOADER_MAGIC, MB2_LOADER_MAGIC, PVH_START_MAGIC};
use crate::kernel::{Kernel, MB1_AOUT_KLUDGE, MB1_MAGIC, MB2_MAGIC};
use crate::memory::VecMemory;
use crate::{LoadError, Module, Protocol, load};

const MEM: usize = 4 << 20;

/// A loadable segment of a test ELF.
struct Seg<'a> {
    paddr: u64,
    data: &'a [u8],
    memsz: u64,
}

fn put(buf: &mut Vec<u8>, at: usize, bytes: &[u8]) {
    if buf.len() < at + bytes.len() {
        buf.resize(at + bytes.len(), 0);
    }
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A Xen PVH note: namesz 4 ("Xen\0"), the descriptor, type 18.
fn pvh_note(desc: &[u8]) -> Vec<u8> {
    let mut n = Vec::new();
    for v in [4u32, desc.len() as u32, 18] {
        n.extend_from_slice(&v.to_le_bytes());
    }
    n.extend_from_slice(b"Xen\0");
    n.extend_from_slice(desc);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

/// An ELF executable (32- or 64-bit x86) with `segs` and an optional PT_NOTE segment.
fn elf(is64: bool, entry: u64, segs: &[Seg<'_>], note: Option<&[u8]>) -> Vec<u8> {
    let (ehsize, phentsize) = if is64 { (64, 56) } else { (52, 32) };
    let phnum = segs.len() + usize::from(note.is_some());
    let mut data_at = (ehsize + phentsize * phnum).next_multiple_of(16);
    let mut f = vec![0u8; data_at];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = if is64 { 2 } else { 1 };
    f[5] = 1; // little-endian
    f[6] = 1; // version
    put(&mut f, 16, &2u16.to_le_bytes()); // ET_EXEC
    put(&mut f, 18, &(if is64 { 62u16 } else { 3 }).to_le_bytes());
    put(&mut f, 20, &1u32.to_le_bytes());
    if is64 {
        put(&mut f, 24, &entry.to_le_bytes());
        put(&mut f, 32, &(ehsize as u64).to_le_bytes()); // phoff
        put(&mut f, 52, &(ehsize as u16).to_le_bytes());
        put(&mut f, 54, &(phentsize as u16).to_le_bytes());
        put(&mut f, 56, &(phnum as u16).to_le_bytes());
    } else {
        put(&mut f, 24, &(entry as u32).to_le_bytes());
        put(&mut f, 28, &(ehsize as u32).to_le_bytes());
        put(&mut f, 40, &(ehsize as u16).to_le_bytes());
        put(&mut f, 42, &(phentsize as u16).to_le_bytes());
        put(&mut f, 44, &(phnum as u16).to_le_bytes());
    }
    let mut headers: Vec<(u32, u64, u64, u64, u64)> = Vec::new(); // type, offset, paddr, filesz, memsz
    let mut blobs = Vec::new();
    for s in segs {
        headers.push((1, data_at as u64, s.paddr, s.data.len() as u64, s.memsz));
        blobs.push((data_at, s.data.to_vec()));
        data_at = (data_at + s.data.len()).next_multiple_of(16);
    }
    if let Some(n) = note {
        headers.push((4, data_at as u64, 0, n.len() as u64, n.len() as u64));
        blobs.push((data_at, n.to_vec()));
    }
    for (i, (kind, offset, paddr, filesz, memsz)) in headers.into_iter().enumerate() {
        let at = ehsize + i * phentsize;
        put(&mut f, at, &kind.to_le_bytes());
        if is64 {
            put(&mut f, at + 8, &offset.to_le_bytes());
            put(&mut f, at + 16, &paddr.to_le_bytes());
            put(&mut f, at + 24, &paddr.to_le_bytes());
            put(&mut f, at + 32, &filesz.to_le_bytes());
            put(&mut f, at + 40, &memsz.to_le_bytes());
            put(&mut f, at + 48, &4u64.to_le_bytes());
        } else {
            for (o, v) in [(4, offset), (8, paddr), (12, paddr), (16, filesz), (20, memsz), (28, 4)]
            {
                put(&mut f, at + o, &(v as u32).to_le_bytes());
            }
        }
    }
    for (at, b) in blobs {
        put(&mut f, at, &b);
    }
    f
}

/// A multiboot1 header, with address fields when `fields` is given.
fn mb1_header(fields: Option<[u32; 5]>) -> Vec<u8> {
    let flags = 3 | if fields.is_some() { MB1_AOUT_KLUDGE } else { 0 };
    let mut h = Vec::new();
    for v in [MB1_MAGIC, flags, 0u32.wrapping_sub(MB1_MAGIC.wrapping_add(flags))] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    for v in fields.into_iter().flatten() {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h
}

/// A multiboot2 header with an optional address tag and entry tag.
fn mb2_header(address: Option<[u32; 4]>, entry: Option<u32>) -> Vec<u8> {
    let mut tags = Vec::new();
    if let Some(a) = address {
        tags.extend_from_slice(&2u16.to_le_bytes());
        tags.extend_from_slice(&0u16.to_le_bytes());
        tags.extend_from_slice(&24u32.to_le_bytes());
        for v in a {
            tags.extend_from_slice(&v.to_le_bytes());
        }
    }
    if let Some(e) = entry {
        tags.extend_from_slice(&3u16.to_le_bytes());
        tags.extend_from_slice(&0u16.to_le_bytes());
        tags.extend_from_slice(&12u32.to_le_bytes());
        tags.extend_from_slice(&e.to_le_bytes());
        tags.extend_from_slice(&[0; 4]); // pad to 8
    }
    tags.extend_from_slice(&[0, 0, 0, 0, 8, 0, 0, 0]); // end tag
    let len = 16 + tags.len() as u32;
    let mut h = Vec::new();
    for v in [MB2_MAGIC, 0, len, 0u32.wrapping_sub(MB2_MAGIC.wrapping_add(len))] {
        h.extend_from_slice(&v.to_le_bytes());
    }
    h.extend_from_slice(&tags);
    h
}

fn u32_at(m: &VecMemory, gpa: u64) -> u32 {
    u32::from_le_bytes(m.get(gpa, 4).unwrap().try_into().unwrap())
}

fn u64_at(m: &VecMemory, gpa: u64) -> u64 {
    u64::from_le_bytes(m.get(gpa, 8).unwrap().try_into().unwrap())
}

fn c_str(m: &VecMemory, gpa: u64) -> String {
    let bytes = &m.bytes[gpa as usize..];
    String::from_utf8(bytes[..bytes.iter().position(|&b| b == 0).unwrap()].to_vec()).unwrap()
}

/// An ELF64 kernel at 1 MiB with all three protocols: code, then bss.
fn triple_kernel() -> Vec<u8> {
    let mut code = mb2_header(None, None);
    code.resize(64, 0x90);
    code.extend_from_slice(&mb1_header(None));
    code.extend_from_slice(b"kernel text");
    elf(
        true,
        0x10_0040,
        &[Seg { paddr: 0x10_0000, data: &code, memsz: 0x3000 }],
        Some(&pvh_note(&0x10_0080u64.to_le_bytes())),
    )
}

const MODULES: [Module<'static>; 2] = [
    Module { data: b"first module", cmdline: "one a=b" },
    Module { data: &[7; 5000], cmdline: "two" },
];

#[test]
fn multiboot2_elf_segments_modules_and_tags() {
    let image = triple_kernel();
    let mut mem = VecMemory::new(MEM);
    mem.bytes[0x10_2000] = 0xaa; // bss must be zeroed
    let boot = load(&mut mem, &image, "console=ttyS0", &MODULES, None).unwrap();
    assert_eq!(boot.protocol, Protocol::Multiboot2);
    assert_eq!(
        (boot.entry, boot.rax, boot.rbx),
        (0x10_0040, u64::from(MB2_LOADER_MAGIC), INFO_BASE)
    );
    assert_eq!(&mem.bytes[0x10_0000..0x10_0004], &MB2_MAGIC.to_le_bytes());
    assert_eq!(mem.bytes[0x10_2000], 0);
    // Tags: cmdline, loader name, two modules, basic meminfo, mmap, end.
    let total = u32_at(&mem, INFO_BASE) as u64;
    let mut at = INFO_BASE + 8;
    let mut seen = Vec::new();
    while at < INFO_BASE + total {
        let (kind, size) = (u32_at(&mem, at), u32_at(&mem, at + 4));
        seen.push(kind);
        match kind {
            1 => assert_eq!(c_str(&mem, at + 8), "console=ttyS0"),
            2 => assert_eq!(c_str(&mem, at + 8), "turtles"),
            3 => {
                let (start, end) = (u32_at(&mem, at + 8), u32_at(&mem, at + 12));
                assert_eq!(start % 4096, 0, "modules are page-aligned");
                assert!(start >= 0x10_3000, "modules follow the kernel's bss");
                let name = c_str(&mem, at + 16);
                let m = MODULES.iter().find(|m| m.cmdline == name).unwrap();
                assert_eq!(mem.get(start.into(), (end - start).into()).unwrap(), m.data);
            }
            4 => assert_eq!((u32_at(&mem, at + 8), u32_at(&mem, at + 12)), (636, 3072)),
            6 => {
                assert_eq!(u32_at(&mem, at + 8), 24);
                assert_eq!((size - 16) / 24, 3);
                assert_eq!(u64_at(&mem, at + 16 + 48), 0x10_0000);
                assert_eq!(u64_at(&mem, at + 16 + 48 + 8), (MEM - 0x10_0000) as u64);
                assert_eq!(u32_at(&mem, at + 16 + 24 + 16), 2, "the legacy hole is reserved");
            }
            0 => assert_eq!(size, 8),
            _ => panic!("unexpected tag {kind}"),
        }
        at += u64::from(size).next_multiple_of(8);
    }
    assert_eq!(seen, [1, 2, 3, 3, 4, 6, 0]);
}

#[test]
fn multiboot1_address_fields_on_a_flat_binary() {
    // A flat binary loaded at 2 MiB; its header sits 0x20 bytes in.
    let load_addr = 0x20_0000u32;
    let mut image = vec![0xf4; 0x20];
    let header_at = image.len() as u32;
    let end = load_addr + 0x100;
    image.extend_from_slice(&mb1_header(Some([
        load_addr + header_at,
        load_addr,
        end,
        end + 0x1000,
        load_addr + 4,
    ])));
    image.resize(0x180, 0xcc); // bytes past load_end_addr are not loaded
    let mut mem = VecMemory::new(MEM);
    mem.fill_pattern(0x20_0100, 0x1000);
    let boot = load(&mut mem, &image, "root=/dev/sda", &MODULES[..1], None).unwrap();
    assert_eq!(boot.protocol, Protocol::Multiboot1);
    assert_eq!((boot.entry, boot.rax), (u64::from(load_addr) + 4, u64::from(MB1_LOADER_MAGIC)));
    assert_eq!(mem.get(0x20_0000, 0x100).unwrap(), &image[..0x100]);
    assert!(mem.get(0x20_0100, 0x1000).unwrap().iter().all(|&b| b == 0), "bss zeroed");
    let info = boot.rbx;
    assert_eq!(u32_at(&mem, info), 1 | 4 | 8 | 64 | 512);
    assert_eq!((u32_at(&mem, info + 4), u32_at(&mem, info + 8)), (636, 3072));
    assert_eq!(c_str(&mem, u32_at(&mem, info + 16).into()), "root=/dev/sda");
    assert_eq!(u32_at(&mem, info + 20), 1);
    let module = u64::from(u32_at(&mem, info + 24));
    assert_eq!(u32_at(&mem, module), 0x20_2000, "after the bss, page-aligned");
    assert_eq!(c_str(&mem, u32_at(&mem, module + 8).into()), "one a=b");
    let (mmap_len, mmap) = (u32_at(&mem, info + 44), u64::from(u32_at(&mem, info + 48)));
    assert_eq!(mmap_len, 3 * 24);
    assert_eq!(
        (u32_at(&mem, mmap), u64_at(&mem, mmap + 4), u64_at(&mem, mmap + 12)),
        (20, 0, 0x9f000)
    );
    assert_eq!(c_str(&mem, u32_at(&mem, info + 64).into()), "turtles");
}

#[test]
fn multiboot1_elf32_without_address_fields() {
    let mut code = mb1_header(None);
    code.extend_from_slice(&[0x90; 12]);
    let image = elf(false, 0x10_000c, &[Seg { paddr: 0x10_0000, data: &code, memsz: 0x20 }], None);
    let mut mem = VecMemory::new(MEM);
    let boot = load(&mut mem, &image, "", &[], Some(Protocol::Multiboot1)).unwrap();
    assert_eq!(boot.entry, 0x10_000c);
    assert_eq!(mem.get(0x10_0000, code.len() as u64).unwrap(), &code[..]);
    // Without address fields and without ELF there is nothing to load.
    let flat = mb1_header(None);
    assert_eq!(load(&mut mem, &flat, "", &[], None), Err(LoadError::NotElf));
}

#[test]
fn multiboot2_address_and_entry_tags() {
    let load_addr = 0x30_0000u32;
    let mut image =
        mb2_header(Some([load_addr, load_addr, 0, load_addr + 0x2000]), Some(load_addr + 0x40));
    image.resize(0x80, 0x90);
    let mut mem = VecMemory::new(MEM);
    let boot = load(&mut mem, &image, "", &[], None).unwrap();
    assert_eq!((boot.protocol, boot.entry), (Protocol::Multiboot2, u64::from(load_addr) + 0x40));
    assert_eq!(
        mem.get(load_addr.into(), 0x80).unwrap(),
        &image[..],
        "load_end_addr 0: the whole file"
    );
    // An address tag needs an entry tag.
    let image = mb2_header(Some([load_addr, load_addr, 0, 0]), None);
    assert!(matches!(load(&mut mem, &image, "", &[], None), Err(LoadError::Malformed(_))));
}

#[test]
fn pvh_note_and_start_info() {
    for (is64, desc) in
        [(true, 0x10_0080u64.to_le_bytes().to_vec()), (false, 0x10_0080u32.to_le_bytes().to_vec())]
    {
        let image = elf(
            is64,
            0x10_0000,
            &[Seg { paddr: 0x10_0000, data: b"pvh kernel", memsz: 0x1000 }],
            Some(&pvh_note(&desc)),
        );
        assert_eq!(Kernel::inspect(&image).pvh_entry(), Some(0x10_0080));
        let mut mem = VecMemory::new(MEM);
        let boot = load(&mut mem, &image, "pvh cmd", &MODULES, None).unwrap();
        assert_eq!((boot.protocol, boot.entry, boot.rax), (Protocol::Pvh, 0x10_0080, 0));
        let si = boot.rbx;
        assert_eq!(
            (u32_at(&mem, si), u32_at(&mem, si + 4), u32_at(&mem, si + 12)),
            (PVH_START_MAGIC, 1, 2)
        );
        assert_eq!(c_str(&mem, u64_at(&mem, si + 24)), "pvh cmd");
        let modlist = u64_at(&mem, si + 16);
        let (start, size) = (u64_at(&mem, modlist + 32), u64_at(&mem, modlist + 40));
        assert_eq!(mem.get(start, size).unwrap(), MODULES[1].data);
        assert_eq!(c_str(&mem, u64_at(&mem, modlist + 48)), "two");
        let (memmap, entries) = (u64_at(&mem, si + 40), u32_at(&mem, si + 48));
        assert_eq!(entries, 3);
        assert_eq!((u64_at(&mem, memmap + 48), u32_at(&mem, memmap + 48 + 16)), (0x10_0000, 1));
    }
}

#[test]
fn protocol_choice() {
    let image = triple_kernel();
    let k = Kernel::inspect(&image);
    assert!(
        [Protocol::Multiboot1, Protocol::Multiboot2, Protocol::Pvh].iter().all(|&p| k.offers(p))
    );
    assert_eq!(k.choose(None), Ok(Protocol::Multiboot2));
    let mut mem = VecMemory::new(MEM);
    for p in [Protocol::Multiboot1, Protocol::Pvh] {
        assert_eq!(load(&mut mem, &image, "", &[], Some(p)).map(|b| b.protocol), Ok(p));
    }
    let bare = elf(true, 0x10_0000, &[Seg { paddr: 0x10_0000, data: b"x", memsz: 1 }], None);
    assert_eq!(load(&mut mem, &bare, "", &[], None), Err(LoadError::NoBootProtocol));
    assert_eq!(
        load(&mut mem, &bare, "", &[], Some(Protocol::Pvh)),
        Err(LoadError::ProtocolMissing(Protocol::Pvh))
    );
    // A bad checksum is no header.
    let mut bad = mb1_header(Some([0x10_0000, 0x10_0000, 0, 0, 0x10_0000]));
    bad[8] ^= 1;
    assert_eq!(Kernel::inspect(&bad).multiboot1, None);
}

#[test]
fn errors_not_panics() {
    let image = triple_kernel();
    let mut small = VecMemory::new(0x10_0000);
    assert_eq!(load(&mut small, &image, "", &[], None), Err(LoadError::MemoryTooSmall(0x10_0000)));
    let mut mem = VecMemory::new(0x10_2000);
    assert!(matches!(
        load(&mut mem, &image, "", &[], None),
        Err(LoadError::OutsideGuestMemory { what: "segment", .. })
    ));
    let mut mem = VecMemory::new(MEM);
    let big = [Module { data: &[0; MEM], cmdline: "big" }];
    assert!(matches!(
        load(&mut mem, &image, "", &big, None),
        Err(LoadError::OutsideGuestMemory { what: "module", .. })
    ));
    let many = vec![Module { data: b"", cmdline: "m" }; 4096];
    assert_eq!(load(&mut mem, &image, "", &many, None), Err(LoadError::InfoTooLarge));
    // A segment whose file range runs off the end.
    let mut truncated = image.clone();
    truncated.truncate(image.len() - 40);
    assert!(load(&mut mem, &truncated, "", &[], None).is_err());
    // load_addr above header_addr.
    let flat = mb1_header(Some([0x10_0000, 0x10_1000, 0, 0, 0x10_0000]));
    assert!(matches!(load(&mut mem, &flat, "", &[], None), Err(LoadError::Malformed(_))));
    assert!(!format!("{}", LoadError::InfoTooLarge).is_empty());
}

impl VecMemory {
    fn fill_pattern(&mut self, at: usize, len: usize) {
        for (i, b) in self.bytes[at..at + len].iter_mut().enumerate() {
            *b = i as u8 | 1;
        }
    }
}

fn valid_images() -> Vec<Vec<u8>> {
    let mut flat = vec![0; 0x20];
    flat.extend_from_slice(&mb1_header(Some([
        0x20_0020, 0x20_0000, 0x20_0100, 0x20_1000, 0x20_0000,
    ])));
    flat.resize(0x100, 0);
    let mut mb2 = mb2_header(Some([0x30_0000, 0x30_0000, 0, 0x30_2000]), Some(0x30_0000));
    mb2.resize(0x80, 0);
    vec![
        triple_kernel(),
        flat,
        mb2,
        elf(
            false,
            0x10_0000,
            &[Seg { paddr: 0x10_0000, data: &mb1_header(None), memsz: 64 }],
            Some(&pvh_note(&[1, 2, 3, 4])),
        ),
    ]
}

proptest! {
    #![proptest_config(crate::fuzz_config(1000))]

    #[test]
    fn random_bytes_never_panic(image in proptest::collection::vec(any::<u8>(), 0..2048), p in 0usize..4) {
        let prefer = [None, Some(Protocol::Multiboot1), Some(Protocol::Multiboot2), Some(Protocol::Pvh)][p];
        let mut mem = VecMemory::new(MEM);
        let _ = load(&mut mem, &image, "c", &MODULES, prefer);
    }

    #[test]
    fn mutated_images_never_panic(
        which in 0usize..4,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..16),
        cut in any::<prop::sample::Index>(),
        p in 0usize..4,
    ) {
        let mut image = valid_images().swap_remove(which);
        for (at, value, how) in edits {
            let i = at.index(image.len());
            match how {
                0 => image[i] = value,
                1 => image[i] ^= 1 << (value % 8),
                2 => image[i] = [0, 0xff, 0x7f, 0x80][usize::from(value % 4)],
                _ => image[i] = image[i].wrapping_add(value),
            }
        }
        if p == 3 {
            image.truncate(cut.index(image.len() + 1));
        }
        let prefer = [None, Some(Protocol::Multiboot1), Some(Protocol::Multiboot2), Some(Protocol::Pvh)][p];
        let mut mem = VecMemory::new(MEM);
        let _ = load(&mut mem, &image, "c", &MODULES, prefer);
    }
}

/// Guest memory whose RAM above the legacy hole starts at `ram_start` (a guest in 1:1 memory):
/// writes to the hole fail as they would in L0's EPT.
struct Holed {
    mem: VecMemory,
    ram_start: u64,
}

impl crate::GuestMemory for Holed {
    fn size(&self) -> u64 {
        self.mem.size()
    }
    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), crate::memory::OutOfRange> {
        if gpa < self.ram_start && gpa + bytes.len() as u64 > crate::info::HIGH_RAM_START {
            return Err(crate::memory::OutOfRange);
        }
        self.mem.write(gpa, bytes)
    }
    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), crate::memory::OutOfRange> {
        if gpa < self.ram_start && gpa + len > crate::info::HIGH_RAM_START {
            return Err(crate::memory::OutOfRange);
        }
        self.mem.fill(gpa, len, byte)
    }
    fn ram_start(&self) -> u64 {
        self.ram_start
    }
}

#[test]
fn a_hole_above_1mib_is_reserved_in_the_memory_map() {
    // A kernel linked at 3 MiB in a guest whose RAM above the legacy hole starts at 2 MiB.
    let mut code = mb1_header(None);
    code.extend_from_slice(&[0x90; 12]);
    let image = elf(false, 0x30_000c, &[Seg { paddr: 0x30_0000, data: &code, memsz: 0x20 }], None);
    let mut mem = Holed { mem: VecMemory::new(MEM), ram_start: 0x20_0000 };
    let boot = load(&mut mem, &image, "", &MODULES[..1], Some(Protocol::Multiboot1)).unwrap();
    let (m, info) = (&mem.mem, boot.rbx);
    assert_eq!(u32_at(m, info + 8), 0, "mem_upper: no RAM right at 1 MiB");
    let module = u64::from(u32_at(m, info + 24));
    assert_eq!(u32_at(m, module), 0x30_1000, "modules after the kernel, in the RAM");
    let (mmap_len, mmap) = (u32_at(m, info + 44), u64::from(u32_at(m, info + 48)));
    assert_eq!(mmap_len, 4 * 24);
    let entry = |i: u64| {
        let at = mmap + 24 * i;
        (u64_at(m, at + 4), u64_at(m, at + 12), u32_at(m, at + 20))
    };
    assert_eq!(entry(2), (0x10_0000, 0x10_0000, 2), "the hole is reserved");
    assert_eq!(entry(3), (0x20_0000, MEM as u64 - 0x20_0000, 1));
    // A kernel in the hole cannot be loaded.
    let image = elf(false, 0x10_000c, &[Seg { paddr: 0x10_0000, data: &code, memsz: 0x20 }], None);
    assert!(load(&mut mem, &image, "", &[], Some(Protocol::Multiboot1)).is_err());
}
