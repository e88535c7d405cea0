//! The image's network: NIC drivers (virtio-net through `virtio-drivers`, the Intel e1000 that
//! Bochs emulates) behind one [`nic::Nic`] trait, one `smoltcp::phy::Device` over it
//! ([`phy::NicDevice`]), the smoltcp stack ([`stack::Stack`]) and the management endpoint's
//! protocol ([`endpoint`]); checks of device- and network-controlled data ([`packet`] frames,
//! e1000 receive descriptors). Everything here is `no_std`
//! and tested on the host; the image supplies the hardware (PCI, DMA memory, time).
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod e1000;
pub mod endpoint;
pub mod nic;
pub mod packet;
pub mod phy;
pub mod stack;
pub mod virtio;
