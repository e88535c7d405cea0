//! Block drivers behind one trait (virtio-blk, ATA PIO). Filled in by the drivers issue.
#![cfg_attr(not(test), no_std)]
