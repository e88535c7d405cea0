//! The virtio-mmio transport, version 2 (virtio 1.2 section 4.2.2): one page of registers per
//! device, read and written by the guest's MOVs, which the level traps and hands to
//! [`MmioDevice::read`] and [`MmioDevice::write`]. The device behind it implements [`Device`].
//! Registers below 0x100 take only aligned 32-bit accesses (section 4.2.2.2); the device's
//! configuration space from 0x100 takes 8-, 16- and 32-bit ones. Anything else, and every
//! write the spec does not allow at that moment, is ignored and logged.

use alloc::vec::Vec;

use crate::feature::VERSION_1;
use crate::mem::GuestRam;
use crate::queue::{Queue, QueueError};

/// Register offsets (section 4.2.2, table "MMIO Device Register Layout").
pub mod reg {
    pub const MAGIC_VALUE: u32 = 0x000;
    pub const VERSION: u32 = 0x004;
    pub const DEVICE_ID: u32 = 0x008;
    pub const VENDOR_ID: u32 = 0x00c;
    pub const DEVICE_FEATURES: u32 = 0x010;
    pub const DEVICE_FEATURES_SEL: u32 = 0x014;
    pub const DRIVER_FEATURES: u32 = 0x020;
    pub const DRIVER_FEATURES_SEL: u32 = 0x024;
    pub const QUEUE_SEL: u32 = 0x030;
    pub const QUEUE_NUM_MAX: u32 = 0x034;
    pub const QUEUE_NUM: u32 = 0x038;
    pub const QUEUE_READY: u32 = 0x044;
    pub const QUEUE_NOTIFY: u32 = 0x050;
    pub const INTERRUPT_STATUS: u32 = 0x060;
    pub const INTERRUPT_ACK: u32 = 0x064;
    pub const STATUS: u32 = 0x070;
    pub const QUEUE_DESC_LOW: u32 = 0x080;
    pub const QUEUE_DESC_HIGH: u32 = 0x084;
    pub const QUEUE_DRIVER_LOW: u32 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u32 = 0x094;
    pub const QUEUE_DEVICE_LOW: u32 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u32 = 0x0a4;
    pub const SHM_LEN_LOW: u32 = 0x0b0;
    pub const SHM_LEN_HIGH: u32 = 0x0b4;
    pub const SHM_BASE_LOW: u32 = 0x0b8;
    pub const SHM_BASE_HIGH: u32 = 0x0bc;
    pub const CONFIG_GENERATION: u32 = 0x0fc;
    pub const CONFIG: u32 = 0x100;
}

/// "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;
/// The modern (non-legacy) register layout.
pub const VERSION: u32 = 2;
/// Our vendor ID ("TRTL").
pub const VENDOR: u32 = 0x4c54_5254;
/// The size of one device's register window.
pub const WINDOW: u64 = 0x200;

/// Device status bits (section 2.1).
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// InterruptStatus bits (section 4.2.2).
pub mod interrupt {
    /// The device used a buffer in at least one queue.
    pub const USED_BUFFER: u32 = 1;
    /// The configuration space changed.
    pub const CONFIG_CHANGE: u32 = 2;
}

/// Why the device stopped serving its queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceError {
    /// A queue the driver set up is broken.
    Queue { queue: usize, error: QueueError },
}

/// A virtio device type behind the transport.
pub trait Device {
    /// Virtio device ID (section 5: 1 network, 2 block).
    fn device_id(&self) -> u32;
    /// The feature bits the device offers, VIRTIO_F_VERSION_1 included.
    fn features(&self) -> u64;
    /// Number of virtqueues.
    fn queues(&self) -> usize;
    /// Largest size of each queue.
    fn queue_max(&self) -> u16;
    /// Reads device configuration space at `offset` (bytes past the end read as 0).
    fn read_config(&self, offset: u32, data: &mut [u8]);
    /// A driver write to configuration space (devices here have no writable fields: ignored).
    fn write_config(&mut self, _offset: u32, _data: &[u8]) {}
    /// Serves the live queues: takes available chains, does the work, returns them as used.
    /// `true` if any chain was used (an interrupt is due).
    fn process(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestRam,
    ) -> Result<bool, DeviceError>;
    /// Back to the state after power-on (the driver wrote 0 to Status).
    fn reset(&mut self);
}

/// What a guest register access did that the level must act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The access was malformed or not allowed now: log it (rate-limited) and go on.
    Ignored(&'static str),
    /// A queue broke: the device set DEVICE_NEEDS_RESET and stopped; log it.
    Failed(DeviceError),
}

/// One virtio-mmio device: the transport's registers and the device behind them.
pub struct MmioDevice<D> {
    pub device: D,
    queues: Vec<Queue>,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    interrupt_status: u32,
    status: u32,
}

impl<D: Device> MmioDevice<D> {
    pub fn new(device: D) -> Self {
        let queues = (0..device.queues()).map(|_| Queue::new(device.queue_max())).collect();
        MmioDevice {
            device,
            queues,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            interrupt_status: 0,
            status: 0,
        }
    }

    /// The interrupt line: high while InterruptStatus has a bit set.
    pub fn irq(&self) -> bool {
        self.interrupt_status != 0
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    fn selected(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.status & status::DEVICE_NEEDS_RESET == 0
    }

    /// A guest read of `size` bytes at `offset` in the window.
    pub fn read(&self, offset: u32, size: u8) -> Result<u32, &'static str> {
        if offset >= reg::CONFIG {
            return self.read_config(offset - reg::CONFIG, size);
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return Err("register access that is not an aligned 32-bit one");
        }
        let half = |v: u64, high: bool| if high { (v >> 32) as u32 } else { v as u32 };
        let q = self.selected();
        Ok(match offset {
            reg::MAGIC_VALUE => MAGIC,
            reg::VERSION => VERSION,
            reg::DEVICE_ID => self.device.device_id(),
            reg::VENDOR_ID => VENDOR,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => half(self.device.features(), false),
                1 => half(self.device.features(), true),
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => q.map_or(0, |_| u32::from(self.device.queue_max())),
            reg::QUEUE_NUM => q.map_or(0, |q| u32::from(q.size)),
            reg::QUEUE_READY => q.map_or(0, |q| u32::from(q.ready)),
            reg::INTERRUPT_STATUS => self.interrupt_status,
            reg::STATUS => self.status,
            reg::QUEUE_DESC_LOW => q.map_or(0, |q| half(q.desc, false)),
            reg::QUEUE_DESC_HIGH => q.map_or(0, |q| half(q.desc, true)),
            reg::QUEUE_DRIVER_LOW => q.map_or(0, |q| half(q.driver, false)),
            reg::QUEUE_DRIVER_HIGH => q.map_or(0, |q| half(q.driver, true)),
            reg::QUEUE_DEVICE_LOW => q.map_or(0, |q| half(q.device, false)),
            reg::QUEUE_DEVICE_HIGH => q.map_or(0, |q| half(q.device, true)),
            // No shared memory regions: their length reads as all-ones (section 4.2.2).
            reg::SHM_LEN_LOW | reg::SHM_LEN_HIGH | reg::SHM_BASE_LOW | reg::SHM_BASE_HIGH => {
                u32::MAX
            }
            reg::CONFIG_GENERATION => 0,
            _ => 0,
        })
    }

    fn read_config(&self, offset: u32, size: u8) -> Result<u32, &'static str> {
        let n = match size {
            1 | 2 | 4 => usize::from(size),
            _ => return Err("configuration-space access of a size other than 1, 2 or 4"),
        };
        let mut b = [0u8; 4];
        self.device.read_config(offset, &mut b[..n]);
        Ok(u32::from_le_bytes(b))
    }

    /// A guest write of `size` bytes of `value` at `offset` in the window.
    pub fn write(&mut self, mem: &mut dyn GuestRam, offset: u32, size: u8, value: u32) -> Effect {
        if offset >= reg::CONFIG {
            let n = match size {
                1 | 2 | 4 => usize::from(size),
                _ => return Effect::Ignored("configuration-space write of a bad size"),
            };
            self.device.write_config(offset - reg::CONFIG, &value.to_le_bytes()[..n]);
            return Effect::None;
        }
        if size != 4 || !offset.is_multiple_of(4) {
            return Effect::Ignored("register write that is not an aligned 32-bit one");
        }
        let setting_up = self.status & status::FEATURES_OK == 0;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES => {
                if !setting_up {
                    return Effect::Ignored("DriverFeatures written after FEATURES_OK");
                }
                match self.driver_features_sel {
                    0 => {
                        self.driver_features =
                            (self.driver_features & !0xffff_ffff) | u64::from(value)
                    }
                    1 => {
                        self.driver_features =
                            (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                    }
                    _ if value != 0 => return Effect::Ignored("feature bits the device lacks"),
                    _ => {}
                }
            }
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NUM
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => return self.write_queue(offset, value),
            reg::QUEUE_READY => return self.set_ready(value),
            reg::QUEUE_NOTIFY => {
                if (value as usize) >= self.queues.len() {
                    return Effect::Ignored("QueueNotify names a queue the device lacks");
                }
                return self.process(mem);
            }
            reg::INTERRUPT_ACK => self.interrupt_status &= !value,
            reg::STATUS => return self.write_status(mem, value),
            _ => return Effect::Ignored("write to a read-only or reserved register"),
        }
        Effect::None
    }

    fn write_queue(&mut self, offset: u32, value: u32) -> Effect {
        let Some(q) = self.queues.get_mut(self.queue_sel as usize) else {
            return Effect::Ignored("queue register written with QueueSel naming no queue");
        };
        if q.ready {
            return Effect::Ignored("queue register written while the queue is ready");
        }
        let set = |field: &mut u64, high: bool| {
            *field = if high {
                (*field & 0xffff_ffff) | (u64::from(value) << 32)
            } else {
                (*field & !0xffff_ffff) | u64::from(value)
            }
        };
        match offset {
            reg::QUEUE_NUM => match u16::try_from(value) {
                Ok(n) => q.size = n,
                Err(_) => return Effect::Ignored("QueueNum above 65535"),
            },
            reg::QUEUE_DESC_LOW => set(&mut q.desc, false),
            reg::QUEUE_DESC_HIGH => set(&mut q.desc, true),
            reg::QUEUE_DRIVER_LOW => set(&mut q.driver, false),
            reg::QUEUE_DRIVER_HIGH => set(&mut q.driver, true),
            reg::QUEUE_DEVICE_LOW => set(&mut q.device, false),
            _ => set(&mut q.device, true),
        }
        Effect::None
    }

    fn set_ready(&mut self, value: u32) -> Effect {
        let max = self.device.queue_max();
        let Some(q) = self.queues.get_mut(self.queue_sel as usize) else {
            return Effect::Ignored("QueueReady written with QueueSel naming no queue");
        };
        if value & 1 == 0 {
            let size = q.size;
            *q = Queue::new(max);
            q.size = size;
            return Effect::None;
        }
        if q.check_layout(max).is_err() {
            return Effect::Ignored("QueueReady with a bad queue size or misaligned rings");
        }
        q.ready = true;
        Effect::None
    }

    fn write_status(&mut self, mem: &mut dyn GuestRam, value: u32) -> Effect {
        if value == 0 {
            self.reset();
            return Effect::None;
        }
        let mut value = value & 0xff;
        if value & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let unknown = self.driver_features & !self.device.features();
            if unknown != 0 || self.driver_features & VERSION_1 == 0 {
                // FEATURES_OK stays clear: the driver reads it back and gives up (3.1.1).
                value &= !status::FEATURES_OK;
                self.status |= value;
                return Effect::Ignored(
                    "driver accepted features the device lacks or not VERSION_1",
                );
            }
        }
        if value & self.status != self.status & 0xff & !status::DEVICE_NEEDS_RESET {
            return Effect::Ignored("driver cleared status bits without a reset");
        }
        let was_live = self.live();
        self.status = (self.status & status::DEVICE_NEEDS_RESET) | value;
        if self.live() && !was_live {
            // Buffers made available before DRIVER_OK (e.g. receive buffers) are served now.
            return self.serve(mem);
        }
        Effect::None
    }

    fn reset(&mut self) {
        let max = self.device.queue_max();
        for q in &mut self.queues {
            *q = Queue::new(max);
        }
        self.device.reset();
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.interrupt_status = 0;
        self.status = 0;
    }

    /// The features the driver accepted.
    pub fn driver_features(&self) -> u64 {
        self.driver_features
    }

    /// Serves the queues outside a notify (e.g. a frame arrived for a network device).
    pub fn poll(&mut self, mem: &mut dyn GuestRam) -> Effect {
        if !self.live() {
            return Effect::None;
        }
        self.serve(mem)
    }

    fn process(&mut self, mem: &mut dyn GuestRam) -> Effect {
        if !self.live() {
            return Effect::Ignored("QueueNotify before DRIVER_OK or after the device failed");
        }
        self.serve(mem)
    }

    fn serve(&mut self, mem: &mut dyn GuestRam) -> Effect {
        match self.device.process(&mut self.queues, mem) {
            Ok(used) => {
                if used {
                    self.interrupt_status |= interrupt::USED_BUFFER;
                }
                Effect::None
            }
            Err(e) => {
                self.status |= status::DEVICE_NEEDS_RESET;
                self.interrupt_status |= interrupt::CONFIG_CHANGE;
                Effect::Failed(e)
            }
        }
    }
}
