//! Booting a guest kernel the way a boot loader would: recognise the kernel's boot protocol
//! ([`kernel`]: its multiboot2 or multiboot1 header, its PVH note, its ELF program headers),
//! place it and its modules in guest memory, and build the boot information the protocol
//! hands over ([`info`]: multiboot1 info, multiboot2 tags, PVH `hvm_start_info`, each with a
//! memory map and the command line). Specifications: Multiboot 0.6.96, Multiboot2 2.0 (3.6),
//! Xen `arch-x86/hvm/start_info.h` and `elfnote.h`.
//!
//! Pure and host-tested: guest memory is the small [`GuestMemory`] trait (the image writes
//! through its identity map; tests use [`memory::VecMemory`]). A kernel image is guest data:
//! every offset and length in it is checked, and a malformed image is a [`LoadError`], never
//! a panic (see the fuzz test).
//!
//! Every protocol starts the guest in 32-bit protected mode with paging off, EAX and EBX as
//! [`BootState`] says. A new protocol (the Linux bzImage boot protocol is the next one) adds a
//! [`Protocol`] variant, its recognition in [`kernel::Kernel`], its placement in `load.rs` and
//! its boot information in [`info`]. [`linux`] holds the Linux x86 boot protocol for a bzImage
//! (setup header checks, `boot_params` with the e820 map, command line and initrd).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod info;
pub mod kernel;
pub mod linux;
mod load;
pub mod memory;

#[cfg(test)]
mod tests;

/// Proptest settings for the fuzz tests: `TURTLES_FUZZ_CASES=N` overrides the case count.
#[cfg(test)]
fn fuzz_config(default: u32) -> proptest::test_runner::Config {
    let n =
        std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    proptest::test_runner::Config {
        cases: n,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}

use core::fmt;

pub use load::load;
pub use memory::GuestMemory;

/// Boot protocols a guest kernel can be booted with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// Multiboot 0.6.96: EAX = 0x2badb002, EBX = the multiboot information.
    Multiboot1,
    /// Multiboot2: EAX = 0x36d76289, EBX = the boot information tags.
    Multiboot2,
    /// Xen PVH direct boot: EBX = the `hvm_start_info`.
    Pvh,
}

impl Protocol {
    /// The order in which protocols are tried when the caller prefers none.
    pub const PREFERENCE: [Protocol; 3] =
        [Protocol::Multiboot2, Protocol::Multiboot1, Protocol::Pvh];
}

/// Where and how the guest starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootState {
    pub protocol: Protocol,
    /// Entry point (guest-physical; paging is off).
    pub entry: u64,
    pub rax: u64,
    pub rbx: u64,
}

/// A boot module: its contents and its command line (the first word names it).
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    pub data: &'a [u8],
    pub cmdline: &'a str,
}

/// Why a guest kernel cannot be booted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Neither a multiboot header nor a PVH note.
    NoBootProtocol,
    /// The caller asked for a protocol the image does not offer.
    ProtocolMissing(Protocol),
    /// The image needs an ELF file (no address fields in its multiboot header) but is not a
    /// little-endian x86 ELF executable.
    NotElf,
    /// A segment, module or the boot information does not fit in guest memory.
    OutsideGuestMemory { what: &'static str, start: u64, len: u64 },
    /// Offsets or lengths in the image point outside the file or overflow.
    Malformed(&'static str),
    /// Guest memory is too small for the memory map (it must reach past 1 MiB).
    MemoryTooSmall(u64),
    /// The boot information (command line, module list, memory map) is larger than its area.
    InfoTooLarge,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::NoBootProtocol => f.write_str(
                "no multiboot1/multiboot2 header and no PVH note: not a bootable kernel",
            ),
            LoadError::ProtocolMissing(p) => write!(f, "the image has no {p:?} entry"),
            LoadError::NotElf => {
                f.write_str("multiboot image without address fields is not an x86 ELF file")
            }
            LoadError::OutsideGuestMemory { what, start, len } => {
                write!(f, "{what} [{start:#x}+{len:#x}) does not fit in guest memory")
            }
            LoadError::Malformed(what) => write!(f, "malformed image: {what}"),
            LoadError::MemoryTooSmall(size) => {
                write!(f, "{size:#x} bytes of guest memory do not reach past 1 MiB")
            }
            LoadError::InfoTooLarge => f.write_str("the boot information does not fit its area"),
        }
    }
}
