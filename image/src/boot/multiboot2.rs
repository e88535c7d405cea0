//! Multiboot2 boot information (Multiboot2 spec 3.6), read with the `multiboot2` crate. GRUB
//! uses it on bare metal and under Bochs.

use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};

use super::info::{BootError, BootInfo, FixedStr, Module, Protocol, RegionKind};

/// # Safety
/// `info` is the identity-mapped physical address of a multiboot2 information structure.
pub unsafe fn parse(info: u64) -> Result<BootInfo, BootError> {
    // SAFETY: forwarded from the caller; the crate validates sizes and alignment.
    let mbi = unsafe { BootInformation::load(info as *const BootInformationHeader) }
        .map_err(|_| BootError::Multiboot2("header size or alignment is invalid"))?;
    let mut boot = BootInfo::new(Protocol::Multiboot2);
    if let Some(cmdline) = mbi.command_line_tag().and_then(|t| t.cmdline().ok()) {
        boot.cmdline = FixedStr::from_str_truncated(cmdline);
    }
    for module in mbi.module_tags() {
        boot.push_module(Module {
            start: u64::from(module.start_address()),
            end: u64::from(module.end_address()),
            cmdline: FixedStr::from_str_truncated(module.cmdline().unwrap_or("")),
        });
    }
    if let Some(map) = mbi.memory_map_tag() {
        for area in map.memory_areas() {
            let kind = match area.typ() {
                MemoryAreaType::Available => RegionKind::Available,
                MemoryAreaType::AcpiAvailable => RegionKind::AcpiReclaimable,
                MemoryAreaType::ReservedHibernate => RegionKind::AcpiNvs,
                MemoryAreaType::Defective => RegionKind::Bad,
                _ => RegionKind::Reserved,
            };
            boot.push_region(area.start_address(), area.size(), kind);
        }
    } else if let Some(basic) = mbi.basic_memory_info_tag() {
        boot.push_region(0, u64::from(basic.memory_lower()) * 1024, RegionKind::Available);
        boot.push_region(0x10_0000, u64::from(basic.memory_upper()) * 1024, RegionKind::Available);
    }
    Ok(boot)
}
