//! The virtio devices L0 offers its guest (config `guest_devices`): a virtio-blk on partition
//! 3 of L0's own disk and a virtio-net switched with L0's own network stack on L0's NIC, each
//! behind a virtio-mmio register window that EPT01 leaves unmapped, so the guest's accesses
//! arrive as EPT violations (`vmx/exits/mmio.rs`). The device logic is the `vdev` crate's;
//! this file places the windows, wires their interrupts to I/O APIC pins (level-triggered,
//! active high, as the SSDT says) and moves frames between the guest's NIC and the switch.

use pc::acpi_virtio::{MAX_DEVICES, VirtioMmio};
use vdev::blk::{Blk, DiskSlice};
use vdev::mem::GuestRam;
use vdev::mmio::{self, Effect, MmioDevice};
use vdev::net::Net;

use crate::config;
use crate::drivers::{self, switched};
use crate::ratelimit::RateLimit;

/// The virtio-blk register window (guest-physical; above any guest RAM below 4 GiB and below
/// the I/O APIC).
pub const BLK_BASE: u64 = 0xfeb0_0000;
/// The virtio-net register window.
pub const NET_BASE: u64 = 0xfeb0_1000;
/// The I/O APIC pins (GSIs) of their interrupts: the first ones past the ISA IRQs.
pub const BLK_GSI: u8 = 16;
pub const NET_GSI: u8 = 17;

static GUEST_ACCESS: RateLimit = RateLimit::new(16);

/// Which device's window an address is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Blk,
    Net,
}

impl Window {
    fn base(self) -> u64 {
        match self {
            Window::Blk => BLK_BASE,
            Window::Net => NET_BASE,
        }
    }
}

/// The devices as the ACPI tables announce them (only those the config offers).
pub fn acpi_devices() -> [Option<VirtioMmio>; MAX_DEVICES] {
    let mut out = [None; MAX_DEVICES];
    let size = mmio::WINDOW as u32;
    if config::GUEST_VIRTIO_BLK {
        out[0] = Some(VirtioMmio { base: BLK_BASE as u32, size, gsi: u32::from(BLK_GSI) });
    }
    if config::GUEST_VIRTIO_NET {
        out[1] = Some(VirtioMmio { base: NET_BASE as u32, size, gsi: u32::from(NET_GSI) });
    }
    out
}

/// The devices as a turtles guest's command line announces them
/// (`turtles.virtio_mmio=<base>:<gsi>,...`, `vdev::announce`), if the config offers any.
pub fn cmdline_word() -> Option<alloc::string::String> {
    let windows: alloc::vec::Vec<vdev::announce::Window> = acpi_devices()
        .iter()
        .flatten()
        .map(|d| vdev::announce::Window { base: u64::from(d.base), gsi: d.gsi as u8 })
        .collect();
    vdev::announce::word(&windows)
}

/// The guest's virtio devices.
pub struct GuestIo {
    blk: Option<MmioDevice<Blk<DiskSlice<drivers::L0Disk>>>>,
    net: Option<MmioDevice<Net>>,
}

impl GuestIo {
    /// The devices the config offers and L0's drivers can back: a missing disk partition or
    /// NIC is logged and that device left out.
    pub fn new() -> Self {
        let blk = config::GUEST_VIRTIO_BLK
            .then(|| match drivers::guest_disk() {
                Some(disk) => {
                    log::info!(
                        "virtio: guest virtio-blk at {BLK_BASE:#x} (GSI {BLK_GSI}): {} sectors \
                         of L0's disk",
                        storage::BlockDevice::sectors(&disk)
                    );
                    Some(MmioDevice::new(Blk::new(disk, false)))
                }
                None => {
                    log::error!("virtio: the guest's virtio-blk has no disk behind it");
                    None
                }
            })
            .flatten();
        let net = config::GUEST_VIRTIO_NET
            .then(|| match switched::guest_mac() {
                Some(mac) => {
                    log::info!("virtio: guest virtio-net at {NET_BASE:#x} (GSI {NET_GSI})");
                    Some(MmioDevice::new(Net::new(mac)))
                }
                None => {
                    log::error!("virtio: the guest's virtio-net has no NIC behind it");
                    None
                }
            })
            .flatten();
        GuestIo { blk, net }
    }

    /// Nothing offered (the common case: one load per check).
    pub fn is_empty(&self) -> bool {
        self.blk.is_none() && self.net.is_none()
    }

    /// The window `gpa` falls in, if that device exists.
    pub fn owns(&self, gpa: u64) -> Option<Window> {
        let within = |base: u64| gpa.wrapping_sub(base) < mmio::WINDOW;
        if self.blk.is_some() && within(BLK_BASE) {
            Some(Window::Blk)
        } else if self.net.is_some() && within(NET_BASE) {
            Some(Window::Net)
        } else {
            None
        }
    }

    /// A guest load of `size` bytes at `gpa` in `w`.
    pub fn read(&self, w: Window, gpa: u64, size: u8) -> u64 {
        let offset = (gpa - w.base()) as u32;
        let r = match w {
            Window::Blk => self.blk.as_ref().map(|d| d.read(offset, size)),
            Window::Net => self.net.as_ref().map(|d| d.read(offset, size)),
        };
        match r {
            Some(Ok(v)) => u64::from(v),
            Some(Err(why)) => {
                if GUEST_ACCESS.allow() {
                    log::warn!("virtio: guest {w:?} read at +{offset:#x} ({size} bytes): {why}");
                }
                0
            }
            None => 0,
        }
    }

    /// A guest store of `size` bytes of `value` at `gpa` in `w`.
    pub fn write(&mut self, mem: &mut dyn GuestRam, w: Window, gpa: u64, size: u8, value: u64) {
        let offset = (gpa - w.base()) as u32;
        // An 8-byte store is two 4-byte ones (the spec allows only 32-bit accesses below the
        // configuration space anyway).
        let parts: &[(u32, u8, u32)] = if size == 8 {
            &[(offset, 4, value as u32), (offset + 4, 4, (value >> 32) as u32)]
        } else {
            &[(offset, size, value as u32)]
        };
        let errors = self.blk_errors();
        for &(offset, size, value) in parts {
            let effect = match w {
                Window::Blk => self.blk.as_mut().map(|d| d.write(mem, offset, size, value)),
                Window::Net => self.net.as_mut().map(|d| d.write(mem, offset, size, value)),
            };
            match effect {
                Some(Effect::Ignored(why)) if GUEST_ACCESS.allow() => {
                    log::warn!("virtio: guest {w:?} write of {value:#x} at +{offset:#x}: {why}")
                }
                Some(Effect::Failed(e)) if GUEST_ACCESS.allow() => {
                    log::error!("virtio: guest {w:?} device needs a reset: {e:?}")
                }
                _ => {}
            }
        }
        if self.blk_errors() != errors
            && let Some(blk) = self.blk.as_ref()
            && GUEST_ACCESS.allow()
        {
            log::warn!(
                "virtio: guest Blk request refused ({} so far): {}{}",
                blk.device.stats.errors,
                blk.device.last_error.unwrap_or("?"),
                blk.device.last_disk_error.map(|e| alloc::format!(" ({e})")).unwrap_or_default()
            );
        }
        if w == Window::Net {
            self.exchange(mem);
        }
    }

    /// Requests the guest's virtio-blk refused so far.
    fn blk_errors(&self) -> u64 {
        self.blk.as_ref().map_or(0, |d| d.device.stats.errors)
    }

    /// Moves frames between the guest's NIC and the switch, then lets the NIC write what
    /// arrived into the guest's receive buffers.
    pub fn exchange(&mut self, mem: &mut dyn GuestRam) {
        let Some(net) = self.net.as_mut() else { return };
        let mut sent = false;
        while let Some(frame) = net.device.take_sent() {
            switched::guest_send(&frame);
            sent = true;
        }
        if sent {
            // Out on the NIC now rather than at the next periodic poll.
            drivers::poll_network();
        }
        while let Some(frame) = switched::guest_receive() {
            net.device.deliver(&frame);
        }
        if net.device.has_inbound()
            && let Effect::Failed(e) = net.poll(mem)
            && GUEST_ACCESS.allow()
        {
            log::error!("virtio: guest Net device needs a reset: {e:?}");
        }
    }

    /// The interrupt lines: (GSI, level).
    pub fn lines(&self) -> [(u8, bool); 2] {
        [
            (BLK_GSI, self.blk.as_ref().is_some_and(|d| d.irq())),
            (NET_GSI, self.net.as_ref().is_some_and(|d| d.irq())),
        ]
    }
}
