//! The image's own device drivers: PCI ([`pci`]), network (virtio-net, e1000 via `net/`) and
//! storage (virtio-blk, ATA via `storage/`); virtio devices come from PCI or from virtio-mmio
//! windows the level below announced ([`mmio`]). Started after memory is set up; a config that
//! names no NIC or disk does nothing here.

mod disk;
pub use disk::MARK_LEAF;
mod e1000;
mod e1000_intx;
mod hal;
mod mmio;
mod net;
mod pci;
pub mod status;
pub mod switched;
mod time;
mod virtio_legacy;

pub use disk::L0Disk;
pub use pci::FunctionConfig;

use crate::boot::BootInfo;
use crate::config;

/// Finds and starts the devices the config names.
pub fn init(boot: &BootInfo) {
    if !config::NET && !config::DISK {
        return;
    }
    let hz = time::init();
    log::info!("drivers: TSC {} MHz", hz / 1_000_000);
    let windows = mmio::windows(boot.cmdline.as_str());
    let mut root = pci::root();
    let functions = pci::enumerate(&root);
    log::info!("pci: {} functions", functions.len());
    if config::DISK {
        disk::init(&mut root, &functions, &windows);
    }
    if config::NET && config::ASSIGN_E1000 {
        log::info!("net: the e1000 is assigned to the guest; this level does not drive it");
    } else if config::NET {
        net::serve(&mut root, &functions, &windows);
    }
}

/// The e1000 to assign to the guest (`assign = ["e1000"]`): its configuration space, logged
/// with its BARs. `None` (logged) if there is none.
pub fn assignable_e1000() -> Option<FunctionConfig> {
    let mut root = pci::root();
    let functions = pci::enumerate(&root);
    let Some(f) = functions.iter().find(|f| e1000::is_e1000(f)) else {
        log::error!("assign: the config assigns the e1000 but there is no Intel 8254x on PCI");
        return None;
    };
    pci::describe(&mut root, f);
    Some(FunctionConfig(f.df))
}

/// Called on the way out with the image's exit status: writes the disk report if the config
/// asks for one (at guest exit, this holds the guest's exit statistics).
pub fn at_exit(code: u8) {
    // Once only: a fault while writing the report comes back through the exit path.
    static ONCE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    if config::DISK && !ONCE.swap(true, core::sync::atomic::Ordering::Relaxed) {
        disk::write_report(code);
    }
}

/// One non-blocking turn of the management endpoint, for a run loop that wants to keep
/// answering queries while its guest runs (e.g. on preemption-timer exits).
pub fn poll_network() {
    if config::NET {
        net::poll();
    }
}

/// The guest's own disk (partition 3 of L0's disk), if the config gives the guest a
/// virtio-blk and the disk has that partition.
pub fn guest_disk() -> Option<vdev::blk::DiskSlice<disk::L0Disk>> {
    disk::guest_disk()
}

/// The guest image `name` if the config loads it from the disk rather than a boot module.
pub fn disk_guest(name: &str) -> Option<&'static [u8]> {
    disk::guest_image(name)
}
