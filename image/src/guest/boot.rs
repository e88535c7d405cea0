//! Booting a guest the way a boot loader would. Recognising the kernel (multiboot2,
//! multiboot1, PVH), placing it and its modules and building the boot information is the
//! pure `loader` crate; this glue lets it write the guest's RAM.

use alloc::vec::Vec;

use loader::memory::OutOfRange;
pub use loader::{BootState, LoadError, Protocol};

use super::memory::GuestMemory;

impl loader::GuestMemory for GuestMemory {
    fn size(&self) -> u64 {
        GuestMemory::size(self)
    }

    fn write(&mut self, gpa: u64, bytes: &[u8]) -> Result<(), OutOfRange> {
        if GuestMemory::write(self, gpa, bytes) { Ok(()) } else { Err(OutOfRange) }
    }

    fn fill(&mut self, gpa: u64, len: u64, byte: u8) -> Result<(), OutOfRange> {
        self.slice_mut(gpa, len).ok_or(OutOfRange)?.fill(byte);
        Ok(())
    }

    fn ram_start(&self) -> u64 {
        GuestMemory::ram_start(self)
    }
}

/// Loads `image` into `mem` with `cmdline` and `modules` (contents, command line) and returns
/// the entry state. `prefer` forces a protocol; otherwise multiboot2, then multiboot1, then PVH.
pub fn load(
    mem: &mut GuestMemory,
    image: &[u8],
    cmdline: &str,
    modules: &[(&[u8], &str)],
    prefer: Option<Protocol>,
) -> Result<BootState, LoadError> {
    let modules: Vec<loader::Module<'_>> =
        modules.iter().map(|&(data, cmdline)| loader::Module { data, cmdline }).collect();
    loader::load(mem, image, cmdline, &modules, prefer)
}
