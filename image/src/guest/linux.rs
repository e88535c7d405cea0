//! Booting a Linux bzImage as L0's (or L1's) guest: the pure Linux x86 boot protocol
//! (`loader::linux`) places the kernel, initrd, command line and zero page, and the pure ACPI
//! tables (`pc::acpi`) describe the PC the device model offers. This glue chooses the guest's
//! memory map and writes everything into the guest's RAM.
//!
//! Guest-physical layout: RAM below 639 KiB, the EBDA's last KiB and the BIOS area
//! E0000h-FFFFFh reserved (the ACPI tables sit at E0000h, where Linux's RSDP scan looks, and
//! boot_params.acpi_rsdp_addr names them too), RAM from 1 MiB to the end of guest memory. The
//! zero page goes at 7000h and the command line at 20000h, as boot.rst's sample layout has them.

use alloc::vec;

use loader::linux::{self, BootConfig, BzImage, E820_RAM, E820Entry, LinuxError};

use super::memory::GuestMemory;

/// Where the zero page (boot_params) goes.
const ZERO_PAGE: u64 = 0x7000;
/// Where the kernel command line goes.
const CMDLINE: u64 = 0x2_0000;
/// End of low RAM: the EBDA's last KiB below 640 KiB is reserved, as PC firmware leaves it.
const LOW_RAM_END: u64 = 0x9_fc00;
const EBDA_END: u64 = 0xa_0000;
/// The BIOS area the ACPI tables go in (Linux scans E0000h-FFFFFh for the RSDP).
const BIOS_AREA: u64 = 0xe_0000;
const BIOS_AREA_END: u64 = 0x10_0000;
/// e820 type "reserved".
const E820_RESERVED: u32 = 2;

/// Where and how the kernel starts: its 32-bit entry with ESI pointing at the zero page
/// (boot.rst "32-bit boot protocol").
#[derive(Clone, Copy, Debug)]
pub struct LinuxEntry {
    pub entry: u64,
    pub zero_page: u64,
    /// Boot protocol version (for the log).
    pub version: u16,
    pub kernel_address: u64,
    pub initrd: Option<(u64, u64)>,
}

/// Why a Linux guest cannot be booted.
#[derive(Clone, Copy, Debug)]
pub enum LinuxLoadError {
    /// The image or the boot configuration is refused by the boot protocol.
    Boot(LinuxError),
    /// The ACPI tables could not be built.
    Acpi(pc::acpi::AcpiError),
    /// A piece does not fit in guest memory (cannot happen when the plan passed).
    OutsideMemory { what: &'static str, address: u64 },
}

impl core::fmt::Display for LinuxLoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LinuxLoadError::Boot(e) => write!(f, "{e}"),
            LinuxLoadError::Acpi(e) => write!(f, "{e}"),
            LinuxLoadError::OutsideMemory { what, address } => {
                write!(f, "the {what} at {address:#x} is outside guest memory")
            }
        }
    }
}

/// True if `image` carries a Linux setup header (boot flag and "HdrS"), even a broken one:
/// such an image is booted (or refused) as a bzImage, not as a multiboot/PVH kernel.
pub fn is_bzimage(image: &[u8]) -> bool {
    !matches!(BzImage::parse(image), Err(LinuxError::NotBzImage))
}

/// Loads the bzImage `image` with `cmdline` and `initrd` into `mem`, with ACPI tables for a
/// PC with one processor (local APIC ID 0, the bootstrap processor's) and the virtio-mmio
/// devices in `virtio`.
pub fn load(
    mem: &mut GuestMemory,
    image: &[u8],
    cmdline: &str,
    initrd: Option<&[u8]>,
    virtio: [Option<pc::acpi_virtio::VirtioMmio>; pc::acpi_virtio::MAX_DEVICES],
) -> Result<LinuxEntry, LinuxLoadError> {
    let bz = BzImage::parse(image).map_err(LinuxLoadError::Boot)?;
    let size = mem.size();
    // 1:1 memory (an assigned device): `[1 MiB, ram_start)` is the level below's, reserved.
    let ram_start = mem.ram_start().clamp(BIOS_AREA_END, size.max(BIOS_AREA_END));
    let memory = [
        E820Entry { addr: 0, size: LOW_RAM_END, kind: E820_RAM },
        E820Entry { addr: LOW_RAM_END, size: EBDA_END - LOW_RAM_END, kind: E820_RESERVED },
        E820Entry { addr: BIOS_AREA, size: BIOS_AREA_END - BIOS_AREA, kind: E820_RESERVED },
        E820Entry { addr: BIOS_AREA_END, size: ram_start - BIOS_AREA_END, kind: E820_RESERVED },
        E820Entry { addr: ram_start, size: size.saturating_sub(ram_start), kind: E820_RAM },
    ];
    // An empty entry (no hole) would be a zero-length region in the guest's map.
    let memory: alloc::vec::Vec<E820Entry> = memory.into_iter().filter(|e| e.size > 0).collect();
    let acpi_cfg = pc::acpi::Config { virtio_mmio: virtio, ..pc::acpi::Config::default() };
    let mut tables = vec![0u8; pc::acpi::tables_size(acpi_cfg.cpus)];
    let layout =
        pc::acpi::build(&acpi_cfg, BIOS_AREA, &mut tables).map_err(LinuxLoadError::Acpi)?;
    let cfg = BootConfig {
        memory: &memory,
        cmdline: cmdline.as_bytes(),
        initrd,
        zero_page: ZERO_PAGE,
        cmdline_addr: CMDLINE,
        acpi_rsdp: Some(layout.rsdp),
    };
    let plan = linux::plan(&bz, &cfg).map_err(LinuxLoadError::Boot)?;
    let mut put = |what: &'static str, address: u64, bytes: &[u8]| {
        if mem.write(address, bytes) {
            Ok(())
        } else {
            Err(LinuxLoadError::OutsideMemory { what, address })
        }
    };
    put("ACPI tables", BIOS_AREA, &tables[..layout.len])?;
    put("kernel", plan.kernel.address, plan.kernel.bytes.as_slice())?;
    if let Some(rd) = &plan.initrd {
        put("initrd", rd.address, rd.bytes.as_slice())?;
    }
    put("command line", plan.cmdline.address, plan.cmdline.bytes.as_slice())?;
    put("zero page", plan.zero_page.address, plan.zero_page.bytes.as_slice())?;
    Ok(LinuxEntry {
        entry: plan.entry32,
        zero_page: plan.zero_page.address,
        version: bz.header.version,
        kernel_address: plan.kernel.address,
        initrd: plan.initrd.as_ref().map(|p| (p.address, p.bytes.as_slice().len() as u64)),
    })
}
