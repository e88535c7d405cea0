//! The ACPI tables a level hands its Linux guest, describing the PC the models in this crate
//! make: RSDP (revision 2), XSDT, FADT (full hardware, not hardware-reduced: PM1a event and
//! control blocks and the PM timer at I/O ports ([`crate::pm`]), SCI on IRQ 9, reset register
//! CF9h ([`crate::reset`]), the RTC's century byte ([`crate::rtc`])), FACS, a DSDT whose AML
//! only names `\_S5_` (so `poweroff` works), and a MADT with the local APICs, the I/O APIC
//! ([`crate::ioapic`], GSI base 0) and the ISA interrupt source overrides (IRQ 0 -> GSI 2, the
//! SCI level/active high). ACPI Specification 6.5: 5.2.5.3 (RSDP), 5.2.8 (XSDT), 5.2.9 (FADT),
//! 5.2.10 (FACS), 5.2.11.1 (DSDT), 5.2.12 (MADT), 5.2.3.2 (Generic Address Structure), 20.2
//! (AML encoding), 7.4.2 (`\_Sx`). With virtio-mmio devices in [`Config::virtio_mmio`], an
//! SSDT after the MADT announces them ([`crate::acpi_virtio`]).
//!
//! [`build`] writes them into a caller's buffer that will sit at a guest-physical address
//! (64-byte aligned, for the FACS): the RSDP comes first, so a buffer placed in the BIOS area
//! (E0000h-FFFFFh) is found by Linux's scan, or its address goes in `boot_params.acpi_rsdp_addr`
//! / PVH `rsdp_paddr`. Written here rather than with the `acpi_tables` crate: that crate has no
//! interrupt source override entry nor setters for the FADT's PM blocks, and these few fixed
//! layouts are shorter than the glue.

use crate::acpi_virtio::{self, VirtioMmio};
use crate::{ioapic, pm, reset, rtc};

/// Bytes [`build`] writes for `cpus` processors (upper bound of [`Layout::len`]).
pub const fn tables_size(cpus: u8) -> usize {
    ssdt_offset(cpus) + SSDT_MAX
}

/// End of the MADT for `cpus` processors.
const fn madt_end(cpus: u8) -> usize {
    MADT_OFFSET + MADT_FIXED + MADT_PER_CPU * cpus as usize + MADT_TAIL
}

/// Where the SSDT starts (after the MADT, 8-byte aligned).
const fn ssdt_offset(cpus: u8) -> usize {
    madt_end(cpus).next_multiple_of(8)
}

/// Largest SSDT: the header and the virtio-mmio devices' AML.
const SSDT_MAX: usize = HEADER_LEN + acpi_virtio::AML_MAX;

/// Table layout inside the buffer (offsets from its start).
const RSDP_LEN: usize = 36;
const FACS_OFFSET: usize = 64;
const FACS_LEN: usize = 64;
const XSDT_OFFSET: usize = FACS_OFFSET + FACS_LEN;
/// FADT, MADT and, with virtio-mmio devices, the SSDT (60 bytes: fits before the FADT).
const XSDT_MAX_ENTRIES: usize = 3;
const _: () = assert!(HEADER_LEN + 8 * XSDT_MAX_ENTRIES <= 64);
const FADT_OFFSET: usize = XSDT_OFFSET + 64;
const FADT_LEN: usize = 276;
const DSDT_OFFSET: usize = FADT_OFFSET + 288;
const DSDT_LEN: usize = HEADER_LEN + S5_AML.len();
const MADT_OFFSET: usize = (DSDT_OFFSET + DSDT_LEN).next_multiple_of(8);
/// MADT header, local APIC address and flags.
const MADT_FIXED: usize = HEADER_LEN + 8;
const MADT_PER_CPU: usize = 8;
/// I/O APIC (12), two overrides (10 each), local APIC NMI (6).
const MADT_TAIL: usize = 12 + 2 * 10 + 6;
const HEADER_LEN: usize = 36;

/// `Name (\_S5_, Package (4) { S5, S5, Zero, Zero })`: NameOp, NameSeg, PackageOp, PkgLength
/// (8 bytes follow it, itself included), NumElements, two BytePrefix constants, two ZeroOps.
const S5_AML: [u8; 14] = [
    0x08,
    b'_',
    b'S',
    b'5',
    b'_',
    0x12,
    0x08,
    0x04,
    0x0a,
    pm::SLP_TYP_S5,
    0x0a,
    pm::SLP_TYP_S5,
    0x00,
    0x00,
];

/// MADT flag: the PC also has dual 8259s (PCAT_COMPAT).
const MADT_PCAT_COMPAT: u32 = 1;
/// MPS INTI flags (MADT Table 5.26): active high (01) and level triggered (11 << 2).
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0b1101;
/// FADT fixed feature flags (Table 5.10).
const FADT_WBINVD: u32 = 1 << 0;
const FADT_PROC_C1: u32 = 1 << 2;
const FADT_SLP_BUTTON: u32 = 1 << 5;
const FADT_TMR_VAL_EXT: u32 = 1 << 8;
const FADT_RESET_REG_SUP: u32 = 1 << 10;
/// IA-PC boot architecture flags (Table 5.11): legacy devices present, VGA not present (no
/// 8042 either: only its reset command is modelled).
const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
const IAPC_VGA_NOT_PRESENT: u16 = 1 << 2;
/// GAS address space: system I/O.
const GAS_SYSTEM_IO: u8 = 1;
/// FADT RESET_VALUE: SYS_RST | RST_CPU.
const RESET_VALUE: u8 = 0x06;

/// What the tables describe.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// OEMID in every header.
    pub oem_id: [u8; 6],
    /// Processors: local APIC IDs and ACPI processor UIDs 0..cpus (at least 1).
    pub cpus: u8,
    pub ioapic_id: u8,
    pub ioapic_address: u32,
    pub local_apic_address: u32,
    /// virtio-mmio devices to announce in an SSDT (none: no SSDT).
    pub virtio_mmio: [Option<VirtioMmio>; acpi_virtio::MAX_DEVICES],
}

impl Default for Config {
    fn default() -> Self {
        Config {
            oem_id: *b"TURTLE",
            cpus: 1,
            ioapic_id: 0,
            ioapic_address: ioapic::IOAPIC_BASE as u32,
            local_apic_address: crate::lapic::APIC_BASE_DEFAULT as u32,
            virtio_mmio: [None; acpi_virtio::MAX_DEVICES],
        }
    }
}

/// Why the tables could not be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// The buffer holds fewer bytes than the tables need.
    BufferTooSmall { need: usize },
    /// The guest-physical address is not 64-byte aligned (the FACS must be).
    Misaligned,
    /// The tables would not end below 4 GiB (their addresses also go into 32-bit fields).
    AddressOverflow,
    /// No processors.
    NoCpus,
}

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AcpiError::BufferTooSmall { need } => write!(f, "ACPI tables need {need} bytes"),
            AcpiError::Misaligned => f.write_str("ACPI tables must start 64-byte aligned"),
            AcpiError::AddressOverflow => f.write_str("ACPI tables do not fit at that address"),
            AcpiError::NoCpus => f.write_str("ACPI tables need at least one processor"),
        }
    }
}

/// Where [`build`] put things (guest-physical addresses).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub rsdp: u64,
    pub xsdt: u64,
    pub fadt: u64,
    pub facs: u64,
    pub dsdt: u64,
    pub madt: u64,
    /// The SSDT announcing virtio-mmio devices, if there are any.
    pub ssdt: Option<u64>,
    /// Bytes written from the start of the buffer.
    pub len: usize,
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b)))
}

/// Writes a standard table header at `at` (checksum filled in by [`finish`]).
fn header(buf: &mut [u8], at: usize, signature: &[u8; 4], len: usize, revision: u8, cfg: &Config) {
    put(buf, at, signature);
    put(buf, at + 4, &(len as u32).to_le_bytes());
    buf[at + 8] = revision;
    put(buf, at + 10, &cfg.oem_id);
    // OEM table ID "TRTL" + signature.
    put(buf, at + 16, b"TRTL");
    put(buf, at + 20, signature);
    put(buf, at + 24, &1u32.to_le_bytes());
    put(buf, at + 28, b"TRTL");
    put(buf, at + 32, &1u32.to_le_bytes());
}

fn finish(buf: &mut [u8], at: usize, len: usize) {
    buf[at + 9] = 0;
    buf[at + 9] = checksum(&buf[at..at + len]);
}

/// Generic Address Structure for an I/O port block.
fn gas_io(port: u16, bytes: u8, access_size: u8) -> [u8; 12] {
    let mut g = [0; 12];
    g[0] = GAS_SYSTEM_IO;
    g[1] = bytes * 8;
    g[3] = access_size;
    g[4..].copy_from_slice(&u64::from(port).to_le_bytes());
    g
}

/// Builds the tables into `buf`, which the guest will see at `address`; returns where each
/// table is. Everything outside the tables in `buf[..len]` is zeroed.
pub fn build(cfg: &Config, address: u64, buf: &mut [u8]) -> Result<Layout, AcpiError> {
    if cfg.cpus == 0 {
        return Err(AcpiError::NoCpus);
    }
    if !address.is_multiple_of(64) {
        return Err(AcpiError::Misaligned);
    }
    let need = tables_size(cfg.cpus);
    if buf.len() < need {
        return Err(AcpiError::BufferTooSmall { need });
    }
    if address.checked_add(need as u64).is_none_or(|end| end > 1 << 32) {
        // The DSDT and table pointers also go into 32-bit fields: keep it all below 4 GiB.
        return Err(AcpiError::AddressOverflow);
    }
    let at = |offset: usize| address + offset as u64;
    let buf = &mut buf[..need];
    buf.fill(0);

    // FACS (no checksum): signature, length, version 2.
    put(buf, FACS_OFFSET, b"FACS");
    put(buf, FACS_OFFSET + 4, &(FACS_LEN as u32).to_le_bytes());
    buf[FACS_OFFSET + 32] = 2;

    // DSDT.
    header(buf, DSDT_OFFSET, b"DSDT", DSDT_LEN, 2, cfg);
    put(buf, DSDT_OFFSET + HEADER_LEN, &S5_AML);
    finish(buf, DSDT_OFFSET, DSDT_LEN);

    // FADT (ACPI 6.5 layout, 276 bytes).
    let f = FADT_OFFSET;
    header(buf, f, b"FACP", FADT_LEN, 6, cfg);
    put(buf, f + 40, &(at(DSDT_OFFSET) as u32).to_le_bytes());
    put(buf, f + 46, &u16::from(pm::SCI_IRQ).to_le_bytes());
    put(buf, f + 56, &u32::from(pm::PM1A_EVT_BLK).to_le_bytes());
    put(buf, f + 64, &u32::from(pm::PM1A_CNT_BLK).to_le_bytes());
    put(buf, f + 76, &u32::from(pm::PM_TMR_BLK).to_le_bytes());
    buf[f + 88] = pm::PM1_EVT_LEN;
    buf[f + 89] = pm::PM1_CNT_LEN;
    buf[f + 91] = pm::PM_TMR_LEN;
    // No C2/C3 (latencies above 100/1000 µs).
    put(buf, f + 96, &101u16.to_le_bytes());
    put(buf, f + 98, &1001u16.to_le_bytes());
    buf[f + 108] = rtc::reg::CENTURY;
    put(buf, f + 109, &(IAPC_LEGACY_DEVICES | IAPC_VGA_NOT_PRESENT).to_le_bytes());
    let flags =
        FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_TMR_VAL_EXT | FADT_RESET_REG_SUP;
    put(buf, f + 112, &flags.to_le_bytes());
    put(buf, f + 116, &gas_io(reset::PORT_RESET_CONTROL, 1, 1));
    buf[f + 128] = RESET_VALUE;
    buf[f + 131] = 5; // FADT minor version (6.5)
    put(buf, f + 132, &at(FACS_OFFSET).to_le_bytes());
    put(buf, f + 140, &at(DSDT_OFFSET).to_le_bytes());
    put(buf, f + 148, &gas_io(pm::PM1A_EVT_BLK, pm::PM1_EVT_LEN, 2));
    put(buf, f + 172, &gas_io(pm::PM1A_CNT_BLK, pm::PM1_CNT_LEN, 2));
    put(buf, f + 208, &gas_io(pm::PM_TMR_BLK, pm::PM_TMR_LEN, 3));
    finish(buf, f, FADT_LEN);

    // MADT.
    let m = MADT_OFFSET;
    let madt_len = madt_end(cfg.cpus) - m;
    header(buf, m, b"APIC", madt_len, 5, cfg);
    put(buf, m + 36, &cfg.local_apic_address.to_le_bytes());
    put(buf, m + 40, &MADT_PCAT_COMPAT.to_le_bytes());
    let mut e = m + MADT_FIXED;
    for cpu in 0..cfg.cpus {
        // Processor Local APIC: UID, APIC ID, enabled.
        put(buf, e, &[0, 8, cpu, cpu, 1, 0, 0, 0]);
        e += MADT_PER_CPU;
    }
    // I/O APIC: ID, reserved, address, GSI base 0.
    put(buf, e, &[1, 12, cfg.ioapic_id, 0]);
    put(buf, e + 4, &cfg.ioapic_address.to_le_bytes());
    e += 12;
    // Interrupt source overrides (ISA bus 0): IRQ 0 -> GSI 2 (conforming), SCI level/high.
    for (irq, gsi, flags) in
        [(0u8, 2u32, 0u16), (pm::SCI_IRQ, u32::from(pm::SCI_IRQ), INTI_ACTIVE_HIGH_LEVEL)]
    {
        put(buf, e, &[2, 10, 0, irq]);
        put(buf, e + 4, &gsi.to_le_bytes());
        put(buf, e + 8, &flags.to_le_bytes());
        e += 10;
    }
    // Local APIC NMI: all processors (UID FFh), conforming, LINT1.
    put(buf, e, &[4, 6, 0xff, 0, 0, 1]);
    finish(buf, m, madt_len);

    // SSDT with the virtio-mmio devices, if any.
    let mut devices = [VirtioMmio { base: 0, size: 0, gsi: 0 }; acpi_virtio::MAX_DEVICES];
    let mut count = 0;
    for d in cfg.virtio_mmio.iter().flatten() {
        devices[count] = *d;
        count += 1;
    }
    let ssdt = ssdt_offset(cfg.cpus);
    let (ssdt_at, len) = if count == 0 {
        (None, madt_end(cfg.cpus))
    } else {
        let mut aml = [0u8; acpi_virtio::AML_MAX];
        let aml_len = acpi_virtio::aml(&devices[..count], &mut aml);
        let ssdt_len = HEADER_LEN + aml_len;
        header(buf, ssdt, b"SSDT", ssdt_len, 2, cfg);
        put(buf, ssdt + HEADER_LEN, &aml[..aml_len]);
        finish(buf, ssdt, ssdt_len);
        (Some(at(ssdt)), ssdt + ssdt_len)
    };

    // XSDT: FADT, MADT, the SSDT.
    let tables = [Some(at(FADT_OFFSET)), Some(at(MADT_OFFSET)), ssdt_at];
    let xsdt_len = HEADER_LEN + 8 * tables.iter().flatten().count();
    header(buf, XSDT_OFFSET, b"XSDT", xsdt_len, 1, cfg);
    for (i, t) in tables.iter().flatten().enumerate() {
        put(buf, XSDT_OFFSET + HEADER_LEN + 8 * i, &t.to_le_bytes());
    }
    finish(buf, XSDT_OFFSET, xsdt_len);

    // RSDP 2.0: checksum over the first 20 bytes, extended checksum over all 36.
    put(buf, 0, b"RSD PTR ");
    put(buf, 9, &cfg.oem_id);
    buf[15] = 2;
    put(buf, 20, &(RSDP_LEN as u32).to_le_bytes());
    put(buf, 24, &at(XSDT_OFFSET).to_le_bytes());
    buf[8] = checksum(&buf[..20]);
    buf[32] = checksum(&buf[..RSDP_LEN]);

    Ok(Layout {
        rsdp: address,
        xsdt: at(XSDT_OFFSET),
        fadt: at(FADT_OFFSET),
        facs: at(FACS_OFFSET),
        dsdt: at(DSDT_OFFSET),
        madt: at(MADT_OFFSET),
        ssdt: ssdt_at,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
    }

    #[test]
    fn checksums_and_lengths() {
        let mut buf = vec![0xaa; 4096];
        let base = 0xe_0000;
        let l = build(&Config { cpus: 4, ..Config::default() }, base, &mut buf).expect("build");
        assert!(l.len <= tables_size(4));
        assert_eq!(l.ssdt, None);
        assert_eq!(u32_at(&buf, (l.xsdt - base) as usize + 4) as usize, 36 + 16);
        assert_eq!(sum(&buf[..20]), 0);
        assert_eq!(sum(&buf[..36]), 0);
        for table in [l.xsdt, l.fadt, l.dsdt, l.madt] {
            let at = (table - base) as usize;
            let len = u32_at(&buf, at + 4) as usize;
            assert_eq!(sum(&buf[at..at + len]), 0, "table at {table:#x}");
            assert!(at + len <= l.len);
        }
        assert_eq!(l.facs % 64, 0);
        assert_eq!(&buf[(l.facs - base) as usize..][..4], b"FACS");
        assert_eq!(
            u32_at(&buf, (l.madt - base) as usize + 4) as usize,
            l.len - (l.madt - base) as usize
        );
    }

    #[test]
    fn virtio_mmio_devices_get_an_ssdt_in_the_xsdt() {
        let mut buf = vec![0xaa; 4096];
        let base = 0xe_0000;
        let mut cfg = Config::default();
        cfg.virtio_mmio[1] = Some(VirtioMmio { base: 0xfeb0_0000, size: 0x200, gsi: 16 });
        let l = build(&cfg, base, &mut buf).expect("build");
        let ssdt = l.ssdt.expect("an SSDT") - base;
        let ssdt = ssdt as usize;
        assert_eq!(&buf[ssdt..ssdt + 4], b"SSDT");
        let len = u32_at(&buf, ssdt + 4) as usize;
        assert_eq!(sum(&buf[ssdt..ssdt + len]), 0);
        assert_eq!(ssdt + len, l.len);
        assert!(buf[ssdt..ssdt + len].windows(8).any(|w| w == b"LNRO0005"));
        let xsdt = (l.xsdt - base) as usize;
        assert_eq!(u32_at(&buf, xsdt + 4), 36 + 24);
        assert_eq!(sum(&buf[xsdt..xsdt + 60]), 0);
        assert_eq!(
            u64::from_le_bytes(buf[xsdt + 52..xsdt + 60].try_into().unwrap()),
            l.ssdt.unwrap()
        );
        // The MADT's length does not swallow the SSDT.
        let madt = (l.madt - base) as usize;
        assert!(madt + u32_at(&buf, madt + 4) as usize <= ssdt);
    }

    #[test]
    fn bad_arguments() {
        let mut buf = [0u8; 64];
        let cfg = Config::default();
        assert_eq!(
            build(&cfg, 0xe_0000, &mut buf),
            Err(AcpiError::BufferTooSmall { need: tables_size(1) })
        );
        let mut buf = vec![0u8; 4096];
        assert_eq!(build(&cfg, 0xe_0010, &mut buf), Err(AcpiError::Misaligned));
        assert_eq!(build(&cfg, !63, &mut buf), Err(AcpiError::AddressOverflow));
        assert_eq!(build(&cfg, (1 << 32) - 64, &mut buf), Err(AcpiError::AddressOverflow));
        assert_eq!(build(&Config { cpus: 0, ..cfg }, 0, &mut buf), Err(AcpiError::NoCpus));
        assert!(build(&Config { cpus: 255, ..cfg }, 0, &mut buf).is_ok());
        assert!(!AcpiError::Misaligned.to_string().is_empty());
    }
}
