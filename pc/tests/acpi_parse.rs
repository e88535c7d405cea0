//! The tables `pc::acpi::build` writes, parsed back with the `acpi` crate (rust-osdev) the way
//! an OS finds them from the RSDP, and the `\_S5_` object decoded from the DSDT's AML; then
//! Linux's power-off and reset paths driven through the addresses the tables publish.
//! (An integration test because the `acpi` crate's mapping handler needs `unsafe`, which the
//! `pc` library forbids.)

use std::ptr::NonNull;

use acpi::address::{AccessSize, AddressSpace};
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};
use pc::acpi::{Config, build, tables_size};
use pc::pm::{PM_BASE, Pm, PowerEvent, SLP_TYP_S5};
use pc::reset::Reset;

/// Guest "physical memory": the table buffer at `base`.
#[derive(Clone)]
struct Memory {
    base: usize,
    bytes: &'static [u8],
}

impl AcpiHandler for Memory {
    unsafe fn map_physical_region<T>(
        &self,
        address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let offset = address.checked_sub(self.base).expect("address below the tables");
        assert!(
            offset + size <= self.bytes.len(),
            "mapping {address:#x}+{size:#x} past the tables"
        );
        let ptr = NonNull::from(&self.bytes[offset]).cast::<T>();
        // SAFETY: `ptr..ptr + size` lies inside `self.bytes`, which lives for 'static and is
        // never written again; the acpi crate's table types are packed (alignment 1).
        unsafe { PhysicalMapping::new(address, ptr, size, size, self.clone()) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

fn tables(cfg: &Config, base: usize) -> (AcpiTables<Memory>, Memory) {
    let mut buf = vec![0u8; tables_size(cfg.cpus)];
    build(cfg, base as u64, &mut buf).expect("build");
    let memory = Memory { base, bytes: Vec::leak(buf) };
    // SAFETY: the RSDP is at `base`, inside the memory the handler maps.
    let tables = unsafe { AcpiTables::from_rsdp(memory.clone(), base) }.expect("RSDP");
    (tables, memory)
}

/// Decodes `Name (\_S5_, Package (n) { ... })` from an AML stream: the integer elements.
fn s5_package(aml: &[u8]) -> Option<Vec<u64>> {
    let start = aml.windows(5).position(|w| w == [0x08, b'_', b'S', b'5', b'_'])? + 5;
    let mut p = start;
    (aml.get(p)? == &0x12).then_some(())?; // PackageOp
    p += 1;
    // PkgLength: bits 7:6 of the lead byte count the bytes that follow.
    let lead = *aml.get(p)?;
    let follow = usize::from(lead >> 6);
    let mut len = if follow == 0 { usize::from(lead & 0x3f) } else { usize::from(lead & 0x0f) };
    for i in 0..follow {
        len |= usize::from(*aml.get(p + 1 + i)?) << (4 + 8 * i);
    }
    let end = p + len;
    p += 1 + follow;
    let count = *aml.get(p)?;
    p += 1;
    let mut out = Vec::new();
    for _ in 0..count {
        let (value, size) = match *aml.get(p)? {
            0x00 => (0, 1),
            0x01 => (1, 1),
            0x0a => (u64::from(*aml.get(p + 1)?), 2),
            0x0b => (u64::from(u16::from_le_bytes(aml.get(p + 1..p + 3)?.try_into().ok()?)), 3),
            0x0c => (u64::from(u32::from_le_bytes(aml.get(p + 1..p + 5)?.try_into().ok()?)), 5),
            _ => return None,
        };
        out.push(value);
        p += size;
    }
    (p == end).then_some(out)
}

#[test]
fn fadt_pm_blocks_reset_register_and_dsdt() {
    let base = 0xe_0000;
    let (tables, memory) = tables(&Config::default(), base);
    // The XSDT (revision 2 RSDP) lists the FADT and the MADT.
    let signatures: Vec<String> =
        tables.headers().map(|h| h.signature.as_str().to_string()).collect();
    assert_eq!(signatures, ["FACP", "APIC"]);
    let fadt = tables.find_table::<Fadt>().expect("FADT");
    let (flags, boot_arch) = ({ fadt.flags }, { fadt.iapc_boot_arch });
    assert!(!flags.system_is_hw_reduced_acpi());
    assert_eq!({ fadt.sci_interrupt }, 9);
    assert_eq!({ fadt.smi_cmd_port }, 0, "always in ACPI mode");
    assert_eq!({ fadt.century }, 0x32);
    assert!(boot_arch.legacy_devices_are_accessible() && !boot_arch.motherboard_implements_8042());
    let evt = fadt.pm1a_event_block().expect("PM1a_EVT");
    assert_eq!(
        (evt.address_space, evt.address, evt.bit_width),
        (AddressSpace::SystemIo, 0x600, 32)
    );
    let cnt = fadt.pm1a_control_block().expect("PM1a_CNT");
    assert_eq!(
        (cnt.address_space, cnt.address, cnt.bit_width),
        (AddressSpace::SystemIo, 0x604, 16)
    );
    assert_eq!(cnt.access_size, AccessSize::WordAccess);
    assert!(fadt.pm1b_event_block().expect("PM1b").is_none());
    let tmr = fadt.pm_timer_block().expect("PM_TMR").expect("a PM timer");
    assert_eq!((tmr.address, tmr.bit_width), (0x608, 32));
    assert!(flags.pm_timer_is_32_bit());
    assert!(flags.supports_system_reset_via_fadt());
    let reset_reg = fadt.reset_register().expect("RESET_REG");
    assert_eq!(
        (reset_reg.address_space, reset_reg.address, reset_reg.bit_width),
        (AddressSpace::SystemIo, 0xcf9, 8)
    );
    assert_eq!(fadt.facs_address().expect("FACS") % 64, 0);
    assert_eq!(&memory.bytes[fadt.facs_address().expect("FACS") - base..][..4], b"FACS");

    // Linux acpi_enter_sleep_state(S5): SLP_TYP from \_S5_, then SLP_TYP | SLP_EN.
    let dsdt = tables.dsdt().expect("DSDT");
    let aml = &memory.bytes[dsdt.address - base..][..dsdt.length as usize];
    let s5 = s5_package(aml).expect("\\_S5_ package");
    assert_eq!(s5, [u64::from(SLP_TYP_S5), u64::from(SLP_TYP_S5), 0, 0]);
    let mut pm = Pm::new(1_000_000);
    let port = cnt.address as u16;
    assert!(Pm::owns(port) && port == PM_BASE + 4);
    let typ = (s5[0] as u32) << 10;
    assert_eq!(pm.write(port, 2, typ, 0), None);
    assert_eq!(pm.write(port, 2, typ | 1 << 13, 0), Some(PowerEvent::PowerOff));

    // ACPI reboot: RESET_VALUE to RESET_REG.
    let mut reset = Reset::new();
    assert_eq!(reset.write(reset_reg.address as u16, fadt.reset_value), Some(PowerEvent::Reset));
}

#[test]
fn madt_lapics_ioapic_and_overrides() {
    let cfg = Config { cpus: 2, ioapic_id: 3, ..Config::default() };
    let (tables, _memory) = tables(&cfg, 0x7fe_0000);
    let madt = tables.find_table::<Madt>().expect("MADT");
    assert_eq!({ madt.get().local_apic_address }, 0xfee0_0000);
    assert!(madt.get().supports_8259());
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    let mut overrides = Vec::new();
    let mut nmis = Vec::new();
    for entry in madt.get().entries() {
        match entry {
            MadtEntry::LocalApic(e) => lapics.push((e.processor_id, e.apic_id, { e.flags })),
            MadtEntry::IoApic(e) => ioapics
                .push((e.io_apic_id, { e.io_apic_address }, { e.global_system_interrupt_base })),
            MadtEntry::InterruptSourceOverride(e) => {
                overrides.push((e.bus, e.irq, { e.global_system_interrupt }, { e.flags }))
            }
            MadtEntry::LocalApicNmi(e) => nmis.push((e.processor_id, { e.flags }, e.nmi_line)),
            other => panic!("unexpected MADT entry {other:?}"),
        }
    }
    assert_eq!(lapics, [(0, 0, 1), (1, 1, 1)]);
    assert_eq!(ioapics, [(3, 0xfec0_0000, 0)]);
    assert_eq!(overrides, [(0, 0, 2, 0), (0, 9, 9, 0b1101)]);
    assert_eq!(nmis, [(0xff, 0, 1)]);
}

#[test]
fn corrupt_rsdp_is_rejected() {
    let mut buf = vec![0u8; tables_size(1)];
    build(&Config::default(), 0x1000, &mut buf).expect("build");
    buf[0] = b'X';
    let memory = Memory { base: 0x1000, bytes: Vec::leak(buf) };
    // SAFETY: address 0x1000 is the start of the memory the handler maps.
    assert!(unsafe { AcpiTables::from_rsdp(memory, 0x1000) }.is_err());
}
