//! virtio-mmio devices the level below announced on the command line
//! (`turtles.virtio_mmio=<base>:<gsi>,...`, `vdev::announce`): turtles as L1 finds the
//! virtio-blk and virtio-net L0 offers it here, and drives them with `virtio-drivers`' MMIO
//! transport (polled; their interrupts are not used).

use core::ptr::NonNull;

use vdev::announce::{self, MAX_WINDOWS, Window};
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};
use virtio_drivers::transport::{DeviceType, Transport};

/// The windows announced on the command line (logged; a malformed word announces none).
pub fn windows(cmdline: &str) -> [Option<Window>; MAX_WINDOWS] {
    match announce::parse(cmdline) {
        Ok((windows, n)) => {
            if n > 0 {
                log::info!("virtio-mmio: {n} window(s) announced on the command line");
            }
            windows
        }
        Err(e) => {
            log::error!("virtio-mmio: `{}` refused: {e}", announce::KEY);
            [None; MAX_WINDOWS]
        }
    }
}

/// The transport of the first announced device of type `kind`, if any.
pub fn find(windows: &[Option<Window>], kind: DeviceType) -> Option<MmioTransport<'static>> {
    for w in windows.iter().flatten() {
        let Some(header) = NonNull::new(w.base as *mut VirtIOHeader) else { continue };
        // SAFETY: the level below announced a virtio-mmio register window of
        // `vdev::mmio::WINDOW` bytes at this page-aligned guest-physical address; the first
        // 4 GiB are identity-mapped and nothing else in the image uses that page.
        let transport = unsafe { MmioTransport::new(header, vdev::mmio::WINDOW as usize) };
        match transport {
            Ok(t) if t.device_type() == kind => {
                log::info!(
                    "virtio-mmio: {kind:?} at {:#x} (GSI {}), version {:?}",
                    w.base,
                    w.gsi,
                    t.version()
                );
                return Some(t);
            }
            Ok(_) => {}
            Err(e) => log::error!("virtio-mmio: window at {:#x}: {e}", w.base),
        }
    }
    None
}
