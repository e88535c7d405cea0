//! The image's disk: virtio-blk (found on PCI) or the ATA disk at ata0-slave (Bochs; the boot
//! CD-ROM is ata0-master), behind `storage::BlockDevice`. Loads the guest image the config
//! names from the disk's guest partition and writes the exit-statistics report at exit.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use hermit_sync::SpinMutex;
use storage::BlockDevice;
use storage::ata::{Ata, Ports};
use storage::layout;
use storage::virtio::VirtioBlock;
use vdev::announce::Window;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::{PciTransport, virtio_device_type};
use x86_64::instructions::port::Port;

use super::hal::TurtlesHal;
use super::pci::{self, PciFunction, PortCam};
use super::status::{self, GuestState};
use super::virtio_legacy::LegacyPciTransport;
use crate::config;

/// Primary ATA channel: command block and control ports.
const ATA0_BASE: u16 = 0x1f0;
const ATA0_CTRL: u16 = 0x3f6;

/// The disk, once found. One CPU, interrupts off: the lock is never contended, but exit paths
/// only `try_lock` it.
static DISK: SpinMutex<Option<Box<dyn BlockDevice + Send>>> = SpinMutex::new(None);
/// The guest's own disk, partition 3: (start, sectors), found at init.
static GUEST_DISK: SpinMutex<Option<(u64, u64)>> = SpinMutex::new(None);
/// The guest image read from the disk: (name, bytes), kept for the life of the image.
static GUEST: SpinMutex<Option<(&'static str, &'static [u8])>> = SpinMutex::new(None);

/// Port I/O for the ATA driver.
struct PortIo;

impl Ports for PortIo {
    fn inb(&mut self, port: u16) -> u8 {
        // SAFETY: only the ATA channel's registers are passed here; reading them has no
        // effect beyond the device's own protocol.
        unsafe { Port::<u8>::new(port).read() }
    }
    fn outb(&mut self, port: u16, value: u8) {
        // SAFETY: as above; the driver follows the ATA command protocol.
        unsafe { Port::<u8>::new(port).write(value) }
    }
    fn inw(&mut self, port: u16) -> u16 {
        // SAFETY: as above (the data register).
        unsafe { Port::<u16>::new(port).read() }
    }
    fn outw(&mut self, port: u16, value: u16) {
        // SAFETY: as above (the data register).
        unsafe { Port::<u16>::new(port).write(value) }
    }
}

/// Finds the configured disk, loads the guest image if the config names one. Errors are
/// logged; the image goes on without the disk.
pub fn init(root: &mut PciRoot<PortCam>, functions: &[PciFunction], windows: &[Option<Window>]) {
    let from_mmio = config::DEVICES
        .contains(&"virtio-blk")
        .then(|| super::mmio::find(windows, DeviceType::Block))
        .flatten()
        .and_then(|t| match VirtioBlock::<TurtlesHal, _>::new(t) {
            Ok(d) => Some(Box::new(d) as Box<dyn BlockDevice + Send>),
            Err(e) => {
                log::error!("disk: virtio-blk on virtio-mmio: {e}");
                None
            }
        });
    let mmio = from_mmio.is_some();
    let Some(mut disk) = from_mmio.or_else(|| open(root, functions)) else { return };
    log::info!(
        "disk: {} with {} sectors ({} KiB)",
        disk.kind(),
        disk.sectors(),
        disk.sectors() / 2
    );
    if mmio {
        // The disk the level below gave this level: say what it holds (the tests compare
        // this with the data the runner wrote at run time).
        let sectors = disk.sectors();
        checksum(disk.as_mut(), 0, sectors, "disk:", true);
        if config::GUEST_VIRTIO_BLK {
            // This level's guest gets the whole disk the level below gave it.
            *GUEST_DISK.lock() = Some((0, disk.sectors()));
        }
        *DISK.lock() = Some(disk);
        return;
    }
    match layout::partitions(disk.as_mut()) {
        Ok(parts) => {
            for p in &parts {
                log::info!(
                    "disk: partition {} type {:#04x} sectors {}+{}",
                    p.number,
                    p.kind,
                    p.start,
                    p.sectors
                );
            }
        }
        Err(e) => log::error!("disk: {e}"),
    }
    if let Some(want) = config::DISK_GUEST {
        load_guest(disk.as_mut(), want);
    }
    if config::GUEST_VIRTIO_BLK {
        match layout::guest_disk(disk.as_mut()) {
            Ok(p) => {
                *GUEST_DISK.lock() = Some((p.start, p.sectors));
                // The same sequential read the guest's level does over virtio, on L0's own
                // disk: `bench io`'s baseline.
                checksum(disk.as_mut(), p.start, p.sectors, "disk: guest disk", false);
            }
            Err(e) => log::error!("disk: no disk for the guest's virtio-blk: {e}"),
        }
    }
    *DISK.lock() = Some(disk);
}

/// At most this many sectors are read for [`checksum`].
const CHECKSUM_MAX_SECTORS: u64 = 4096;

/// Mark tags (turtles' CPUID leaf 0x40000004, `vmx::exits::mark`) around the timed read of
/// a disk the level below offers, so every level below snapshots its exits there (`bench io`).
pub const READ_MARK_BEGIN: u32 = 900;
pub const READ_MARK_END: u32 = 901;
/// The mark leaf (`vmx::exits::mark::LEAF`, which checks it is the same; drivers sit below
/// vmx).
pub const MARK_LEAF: u32 = 0x4000_0004;

/// Sectors per request of [`checksum`]'s read: a page, as Linux's page cache reads.
const CHECKSUM_CHUNK: usize = 8;

/// Reads `len` sectors of the disk from sector `start` (at most [`CHECKSUM_MAX_SECTORS`]) in
/// requests of a page, and logs `<what> sectors=N crc32=X read-ticks=T requests=R` (zlib's
/// CRC-32; the TSC ticks the read took). `marks`: bracket the read with marks for the levels
/// below.
fn checksum(disk: &mut dyn BlockDevice, start: u64, len: u64, what: &str, marks: bool) {
    let sectors = len.min(disk.sectors().saturating_sub(start)).min(CHECKSUM_MAX_SECTORS);
    let mut crc = !0u32;
    let mut buf = [0u8; CHECKSUM_CHUNK * storage::SECTOR];
    if marks {
        let _ = crate::arch::cpu::cpuid(MARK_LEAF, READ_MARK_BEGIN);
    }
    let begin = crate::arch::cpu::rdtsc();
    let (mut lba, mut requests) = (start, 0u32);
    while lba < start + sectors {
        let n = (start + sectors - lba).min(CHECKSUM_CHUNK as u64) as usize;
        let chunk = &mut buf[..n * storage::SECTOR];
        if let Err(e) = disk.read(lba, chunk) {
            log::error!("disk: read of sectors {lba}+{n} failed: {e}");
            return;
        }
        crc = chunk.iter().fold(crc, |crc, &b| {
            (0..8).fold(crc ^ u32::from(b), |c, _| {
                if c & 1 != 0 { (c >> 1) ^ 0xedb8_8320 } else { c >> 1 }
            })
        });
        lba += n as u64;
        requests += 1;
    }
    let ticks = crate::arch::cpu::rdtsc().saturating_sub(begin);
    if marks {
        let _ = crate::arch::cpu::cpuid(MARK_LEAF, READ_MARK_END);
    }
    log::info!(
        "{what} sectors={sectors} crc32={:08x} read-ticks={ticks} requests={requests}",
        !crc
    );
}

fn open(
    root: &mut PciRoot<PortCam>,
    functions: &[PciFunction],
) -> Option<Box<dyn BlockDevice + Send>> {
    if config::DEVICES.contains(&"virtio-blk") {
        let Some(f) =
            functions.iter().find(|f| virtio_device_type(&f.info) == Some(DeviceType::Block))
        else {
            log::error!(
                "disk: the config names virtio-blk but there is no virtio block device on PCI"
            );
            return None;
        };
        if !pci::describe(root, f) {
            return None;
        }
        pci::enable(root, f.df);
        match PciTransport::new::<TurtlesHal, _>(root, f.df) {
            Ok(transport) => match VirtioBlock::<TurtlesHal, _>::new(transport) {
                Ok(d) => Some(Box::new(d)),
                Err(e) => {
                    log::error!("disk: virtio-blk at {}: {e}", f.df);
                    None
                }
            },
            Err(modern) => {
                log::info!(
                    "disk: virtio-blk at {}: no modern interface ({modern}); trying legacy",
                    f.df
                );
                legacy(root, f)
            }
        }
    } else if config::DEVICES.contains(&"ata") {
        match Ata::probe(PortIo, ATA0_BASE, ATA0_CTRL, true) {
            Ok(d) => Some(Box::new(d)),
            Err(e) => {
                log::error!("disk: ATA disk at ata0-slave: {e}");
                None
            }
        }
    } else {
        log::error!("disk: [disk] is configured but `devices` names no disk");
        None
    }
}

/// A legacy virtio-blk: `virtio-drivers` uses 16-entry queues, so the device must fix that
/// size (QEMU: `queue-size=16`).
fn legacy(root: &mut PciRoot<PortCam>, f: &PciFunction) -> Option<Box<dyn BlockDevice + Send>> {
    let mut transport = match LegacyPciTransport::new(root, f.df, f.info.device_id) {
        Ok(t) => t,
        Err(e) => {
            log::error!("disk: virtio-blk at {}: legacy interface: {e}", f.df);
            return None;
        }
    };
    let size = transport.queue_size(0);
    if size != 16 {
        log::error!("disk: legacy virtio-blk at {} has a {size}-entry queue; supported: 16", f.df);
        return None;
    }
    match VirtioBlock::<TurtlesHal, _>::new(transport) {
        Ok(d) => Some(Box::new(d)),
        Err(e) => {
            log::error!("disk: legacy virtio-blk at {}: {e}", f.df);
            None
        }
    }
}

fn load_guest(disk: &mut dyn BlockDevice, want: &'static str) {
    let (name, image) = match layout::read_guest(disk) {
        Ok(found) => found,
        Err(e) => {
            log::error!("disk: cannot load guest image `{want}`: {e}");
            return;
        }
    };
    if name != want {
        log::error!("disk: the guest partition holds `{name}`, not `{want}`");
        return;
    }
    let Some(entry) = elf_entry(&image) else {
        log::error!("disk: guest image `{name}` ({} bytes) is not an x86 ELF file", image.len());
        return;
    };
    log::info!("disk: guest image `{name}` loaded: {} bytes, ELF entry {entry:#x}", image.len());
    let image: &'static [u8] = Vec::leak(image);
    *GUEST.lock() = Some((want, image));
    status::set_guest(want, GuestState::Loaded);
}

/// The entry point of an ELF32 or ELF64 x86 image, if `image` is one.
fn elf_entry(image: &[u8]) -> Option<u64> {
    if image.get(..4)? != b"\x7fELF" {
        return None;
    }
    match image.get(4)? {
        1 => Some(u64::from(u32::from_le_bytes(image.get(24..28)?.try_into().ok()?))),
        2 => Some(u64::from_le_bytes(image.get(24..32)?.try_into().ok()?)),
        _ => None,
    }
}

/// The guest image named `name` if it was loaded from the disk (for the guest loader, in
/// place of a boot module).
pub fn guest_image(name: &str) -> Option<&'static [u8]> {
    match *GUEST.lock() {
        Some((n, image)) if n == name => Some(image),
        _ => None,
    }
}

/// L0's disk as the guest's virtio-blk reaches it: every request takes the disk's lock
/// (never contended: one CPU, and L0 does not use the disk while its guest runs but for the
/// report at the end).
pub struct L0Disk {
    sectors: u64,
}

impl BlockDevice for L0Disk {
    fn sectors(&self) -> u64 {
        self.sectors
    }
    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), storage::BlockError> {
        let mut guard = DISK.try_lock().ok_or(storage::BlockError::Dead)?;
        guard.as_mut().ok_or(storage::BlockError::NoDisk)?.read(lba, buf)
    }
    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), storage::BlockError> {
        let mut guard = DISK.try_lock().ok_or(storage::BlockError::Dead)?;
        guard.as_mut().ok_or(storage::BlockError::NoDisk)?.write(lba, buf)
    }
    fn kind(&self) -> &'static str {
        "l0-disk"
    }
}

/// Partition 3 of L0's disk as a disk of its own, if init found it.
pub fn guest_disk() -> Option<vdev::blk::DiskSlice<L0Disk>> {
    let (start, sectors) = (*GUEST_DISK.lock())?;
    let capacity = DISK.lock().as_ref()?.sectors();
    Some(vdev::blk::DiskSlice::new(L0Disk { sectors: capacity }, start, sectors))
}

/// Writes the report (status and exit statistics as JSON lines, then the exit status) to the
/// disk if the config asks for one. Never blocks: skipped if the disk is busy.
pub fn write_report(code: u8) {
    if !config::DISK_REPORT {
        return;
    }
    let Some(mut guard) = DISK.try_lock() else { return };
    let Some(disk) = guard.as_mut() else { return };
    let mut lines = status::snapshot().lines();
    let end = lines.pop();
    lines.push(alloc::format!("{{\"type\":\"exit_status\",\"code\":{code}}}"));
    lines.extend(end.map(|_| alloc::format!("{{\"type\":\"end\",\"lines\":{}}}", lines.len() + 1)));
    let mut text = String::new();
    for line in &lines {
        text.push_str(line);
        text.push('\n');
    }
    match layout::write_report(disk.as_mut(), text.as_bytes()) {
        Ok(()) => log::info!("disk: report written ({} bytes)", text.len()),
        Err(e) => log::error!("disk: cannot write the report: {e}"),
    }
}
