//! Virtio devices a turtles level offers its guest, as pure logic: `no_std`, no `unsafe`,
//! tested on the host. The guest drives them through the **virtio-mmio** transport (virtio
//! 1.2 section 4.2, the "modern" register layout, version 2: [`mmio`]), over **split
//! virtqueues** (section 2.7: [`queue`]) in its memory, which the models reach only through
//! the bounds-checked [`mem::GuestRam`] trait. Two device types sit behind the transport:
//! **virtio-blk** ([`blk`], section 5.2) serving a window of a [`storage::BlockDevice`], and
//! **virtio-net** ([`net`], section 5.1) exchanging Ethernet frames with a [`switch::Switch`]
//! that connects each guest (its own MAC), the level's own network stack and the NIC.
//!
//! Everything here is guest-controlled input: descriptor tables, ring indices, buffer
//! addresses and lengths, register and config-space writes. A bad one ends in an error value
//! (and the device's DEVICE_NEEDS_RESET status, as the spec asks), never a panic and never an
//! access outside the guest's memory.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod announce;
pub mod blk;
pub mod mem;
pub mod mmio;
pub mod net;
pub mod queue;
pub mod switch;

#[cfg(test)]
mod fuzz_tests;

/// Feature bits common to every device type (virtio 1.2 section 6).
pub mod feature {
    /// VIRTIO_F_VERSION_1: the device follows virtio 1.x (little-endian, modern layout).
    pub const VERSION_1: u64 = 1 << 32;
}
