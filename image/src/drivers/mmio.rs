//! virtio-mmio devices the level below announced on the command line
//! (`turtles.virtio_mmio=<base>:<gsi>,...`, `vdev::announce`): turtles as L1 finds the
//! virtio-blk and virtio-net L0 offers it here, and drives them with `virtio-drivers`' MMIO
//! transport (polled; their interrupts are not used).

use core::ptr::NonNull;

use vdev::announce::{self, MAX_WINDOWS, Window};
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::mmio::{MmioTransport, VirtIOHeader};

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

/// The transport of the first announced device of type `kind`, if any. Only that window gets
/// a transport (`vdev::announce::pick` reads the others' registers directly): dropping a
/// `virtio-drivers` transport resets its device, which would reset a device another driver
/// of this level already uses.
pub fn find(windows: &[Option<Window>], kind: DeviceType) -> Option<MmioTransport<'static>> {
    let want = match kind {
        DeviceType::Network => vdev::net::DEVICE_ID,
        DeviceType::Block => vdev::blk::DEVICE_ID,
        _ => return None,
    };
    let w = announce::pick(windows, want, |base| {
        // SAFETY: the level below announced a virtio-mmio register window of
        // `vdev::mmio::WINDOW` bytes at this page-aligned guest-physical address and the
        // first 4 GiB are identity-mapped; reading MagicValue, Version and DeviceID has no
        // side effect (virtio 1.2 section 4.2.2).
        unsafe {
            let regs = base as *const u32;
            [regs.read_volatile(), regs.add(1).read_volatile(), regs.add(2).read_volatile()]
        }
    })?;
    let header = NonNull::new(w.base as *mut VirtIOHeader)?;
    // SAFETY: as above; the window is this device's, and nothing else in the image uses it.
    match unsafe { MmioTransport::new(header, vdev::mmio::WINDOW as usize) } {
        Ok(t) => {
            log::info!(
                "virtio-mmio: {kind:?} at {:#x} (GSI {}), version {:?}",
                w.base,
                w.gsi,
                t.version()
            );
            Some(t)
        }
        Err(e) => {
            log::error!("virtio-mmio: window at {:#x}: {e}", w.base);
            None
        }
    }
}
