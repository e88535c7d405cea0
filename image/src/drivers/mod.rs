//! The image's own device drivers: PCI, network (virtio-net, e1000 via `net/`) and storage
//! (virtio-blk, ATA via `storage/`). Started after memory is set up.

use crate::boot::BootInfo;

/// Finds and starts the devices the config names.
pub fn init(_boot: &BootInfo) {}
