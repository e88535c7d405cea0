//! What the boot loader told us, in one protocol-independent [`BootInfo`]: the protocol, the
//! memory map, the command line and the modules. Strings and tables are copied out of the
//! loader's structures so their memory can be reused; module contents stay where they are.

mod entry;
mod info;
mod multiboot1;
mod multiboot2;
mod pvh;

pub use entry::PVH_ENTRY_MAGIC;
pub use info::{BootError, BootInfo, RegionKind};

/// Multiboot1 loader magic in EAX (Multiboot spec 0.6.96, 3.2).
pub const MULTIBOOT1_MAGIC: u32 = 0x2bad_b002;
/// Multiboot2 loader magic in EAX (Multiboot2 spec 3.3).
pub const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;

impl BootInfo {
    /// Reads the boot information for the entry path identified by `magic`.
    ///
    /// # Safety
    /// `info` must be the physical address the loader passed (identity-mapped), pointing at
    /// intact loader structures.
    pub unsafe fn parse(magic: u32, info: u32) -> Result<Self, BootError> {
        let info = u64::from(info);
        // SAFETY: forwarded from our caller.
        let parsed = unsafe {
            match magic {
                MULTIBOOT1_MAGIC => multiboot1::parse(info),
                MULTIBOOT2_MAGIC => multiboot2::parse(info),
                PVH_ENTRY_MAGIC => pvh::parse(info),
                other => Err(BootError::UnknownMagic(other)),
            }
        }?;
        if parsed.regions().is_empty() {
            return Err(BootError::NoMemoryMap);
        }
        Ok(parsed)
    }
}
