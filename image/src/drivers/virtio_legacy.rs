//! The legacy (virtio 0.9.5) PCI interface, which `virtio-drivers` 0.13 lacks: registers in
//! I/O BAR0 (virtio 1.2 section 4.1.4.8), queues with the legacy layout at a page frame
//! number. Legacy devices fix each queue's size, so drivers must use exactly
//! [`LegacyPciTransport::queue_size`] entries.

use core::mem::size_of;

use virtio_drivers::transport::pci::bus::{BarInfo, DeviceFunction, PciRoot};
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PAGE_SIZE, PhysAddr};
use x86_64::instructions::port::Port;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use super::pci::PortCam;

const DEVICE_FEATURES: u16 = 0x00;
const GUEST_FEATURES: u16 = 0x04;
const QUEUE_PFN: u16 = 0x08;
const QUEUE_SIZE: u16 = 0x0c;
const QUEUE_SELECT: u16 = 0x0e;
const QUEUE_NOTIFY: u16 = 0x10;
const DEVICE_STATUS: u16 = 0x12;
const ISR_STATUS: u16 = 0x13;
/// Device-specific configuration, when MSI-X is off (we never turn it on).
const CONFIG: u16 = 0x14;
/// Size of the register block before the device configuration.
const REGS_END: u32 = 0x14;

/// Transitional device IDs (0x1000 + device type - 1 for net and block).
const LEGACY_NET: u16 = 0x1000;
const LEGACY_BLOCK: u16 = 0x1001;

/// Why a legacy transport could not be made.
#[derive(Clone, Copy, Debug)]
pub enum LegacyError {
    NotLegacy(u16),
    NoIoBar,
}

impl core::fmt::Display for LegacyError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LegacyError::NotLegacy(id) => {
                write!(f, "device {id:#06x} is not a legacy net or block device")
            }
            LegacyError::NoIoBar => write!(f, "BAR0 is not an I/O window"),
        }
    }
}

/// A legacy virtio device behind an I/O BAR.
pub struct LegacyPciTransport {
    device_type: DeviceType,
    base: u16,
    config_len: u32,
}

impl LegacyPciTransport {
    /// Uses the device at `df` (a transitional net or block device) through its I/O BAR0.
    pub fn new(
        root: &mut PciRoot<PortCam>,
        df: DeviceFunction,
        device_id: u16,
    ) -> Result<Self, LegacyError> {
        let device_type = match device_id {
            LEGACY_NET => DeviceType::Network,
            LEGACY_BLOCK => DeviceType::Block,
            other => return Err(LegacyError::NotLegacy(other)),
        };
        let (base, size) = match root.bar_info(df, 0) {
            Ok(Some(BarInfo::IO { address, size }))
                if address <= u32::from(u16::MAX) && size > REGS_END =>
            {
                (address as u16, size)
            }
            _ => return Err(LegacyError::NoIoBar),
        };
        Ok(LegacyPciTransport { device_type, base, config_len: size - REGS_END })
    }

    /// The size the device fixes for queue `queue`.
    pub fn queue_size(&mut self, queue: u16) -> u16 {
        self.out16(QUEUE_SELECT, queue);
        self.in16(QUEUE_SIZE)
    }

    fn in8(&self, reg: u16) -> u8 {
        // SAFETY: the register lies in this device's I/O BAR (checked in `new`); reads of the
        // legacy registers have only their documented effects (ISR clears on read).
        unsafe { Port::<u8>::new(self.base + reg).read() }
    }
    fn in16(&self, reg: u16) -> u16 {
        // SAFETY: as in `in8`.
        unsafe { Port::<u16>::new(self.base + reg).read() }
    }
    fn in32(&self, reg: u16) -> u32 {
        // SAFETY: as in `in8`.
        unsafe { Port::<u32>::new(self.base + reg).read() }
    }
    fn out8(&mut self, reg: u16, value: u8) {
        // SAFETY: as in `in8`; the transport follows the legacy initialisation sequence.
        unsafe { Port::<u8>::new(self.base + reg).write(value) }
    }
    fn out16(&mut self, reg: u16, value: u16) {
        // SAFETY: as in `out8`.
        unsafe { Port::<u16>::new(self.base + reg).write(value) }
    }
    fn out32(&mut self, reg: u16, value: u32) {
        // SAFETY: as in `out8`.
        unsafe { Port::<u32>::new(self.base + reg).write(value) }
    }
}

impl Transport for LegacyPciTransport {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        u64::from(self.in32(DEVICE_FEATURES))
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.out32(GUEST_FEATURES, driver_features as u32);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        u32::from(self.queue_size(queue))
    }

    fn notify(&mut self, queue: u16) {
        self.out16(QUEUE_NOTIFY, queue);
    }

    fn get_status(&self) -> DeviceStatus {
        DeviceStatus::from_bits_truncate(u32::from(self.in8(DEVICE_STATUS)))
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.out8(DEVICE_STATUS, status.bits() as u8);
    }

    fn set_guest_page_size(&mut self, _guest_page_size: u32) {
        // Legacy PCI always uses 4096-byte pages.
    }

    fn requires_legacy_layout(&self) -> bool {
        true
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        _driver: PhysAddr,
        _device: PhysAddr,
    ) {
        self.out16(QUEUE_SELECT, queue);
        if size != u32::from(self.in16(QUEUE_SIZE)) {
            // The device would compute its rings for its own size: refuse rather than
            // corrupt memory (the driver checks `queue_size` first, so this is a bug).
            log::error!(
                "virtio legacy: queue {queue} of {size} entries, the device fixes {}",
                self.in16(QUEUE_SIZE)
            );
            return;
        }
        let pfn = descriptors / PAGE_SIZE as u64;
        self.out32(QUEUE_PFN, u32::try_from(pfn).unwrap_or(0));
    }

    fn queue_unset(&mut self, queue: u16) {
        self.out16(QUEUE_SELECT, queue);
        self.out32(QUEUE_PFN, 0);
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.out16(QUEUE_SELECT, queue);
        self.in32(QUEUE_PFN) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        InterruptStatus::from_bits_truncate(u32::from(self.in8(ISR_STATUS)))
    }

    fn read_config_generation(&self) -> u32 {
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        if offset + size_of::<T>() > self.config_len as usize {
            return Err(Error::ConfigSpaceTooSmall);
        }
        let mut value = T::new_zeroed();
        for (i, byte) in value.as_mut_bytes().iter_mut().enumerate() {
            *byte = self.in8(CONFIG + (offset + i) as u16);
        }
        Ok(value)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        if offset + size_of::<T>() > self.config_len as usize {
            return Err(Error::ConfigSpaceTooSmall);
        }
        for (i, byte) in value.as_bytes().iter().enumerate() {
            self.out8(CONFIG + (offset + i) as u16, *byte);
        }
        Ok(())
    }
}
