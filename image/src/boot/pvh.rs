//! PVH boot: `hvm_start_info` (Xen `arch-x86/hvm/start_info.h`), used by QEMU `-kernel`
//! without a multiboot header, Firecracker and cloud-hypervisor.

use super::info::{BootError, BootInfo, FixedStr, Module, Protocol, RegionKind, c_str};

const START_INFO_MAGIC: u32 = 0x336e_c578;
const MAX_ENTRIES: u64 = 256;

#[repr(C)]
#[allow(dead_code)] // the ABI layout: some fields are not used
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    // version >= 1
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[allow(dead_code)] // the ABI layout: some fields are not used
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
#[allow(dead_code)] // the ABI layout: some fields are not used
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// # Safety
/// `info` is the identity-mapped physical address of an `hvm_start_info`.
pub unsafe fn parse(info: u64) -> Result<BootInfo, BootError> {
    // SAFETY: forwarded from the caller.
    let si = unsafe { (info as *const StartInfo).read_unaligned() };
    if si.magic != START_INFO_MAGIC {
        return Err(BootError::BadPvhMagic(si.magic));
    }
    let mut boot = BootInfo::new(Protocol::Pvh);
    // SAFETY: the start_info says a NUL-terminated command line is there (or 0 for none).
    boot.cmdline = FixedStr::from_str_truncated(unsafe { c_str(si.cmdline_paddr, 4096) });
    for i in 0..u64::from(si.nr_modules).min(MAX_ENTRIES) {
        let at = (si.modlist_paddr + i * 32) as *const ModlistEntry;
        // SAFETY: `nr_modules` entries of 32 bytes start at `modlist_paddr`.
        let m = unsafe { at.read_unaligned() };
        boot.push_module(Module {
            start: m.paddr,
            end: m.paddr.saturating_add(m.size),
            // SAFETY: as for the command line.
            cmdline: FixedStr::from_str_truncated(unsafe { c_str(m.cmdline_paddr, 4096) }),
        });
    }
    if si.version >= 1 {
        for i in 0..u64::from(si.memmap_entries).min(MAX_ENTRIES) {
            let at = (si.memmap_paddr + i * 24) as *const MemmapEntry;
            // SAFETY: `memmap_entries` entries of 24 bytes start at `memmap_paddr`.
            let e = unsafe { at.read_unaligned() };
            boot.push_region(e.addr, e.size, RegionKind::from_e820(e.kind));
        }
    }
    Ok(boot)
}
