//! What every NIC driver offers: send and receive whole Ethernet frames, polled.

use alloc::vec::Vec;
use core::fmt;

/// A NIC driver, polled (the image runs with interrupts off).
pub trait Nic {
    /// The station address.
    fn mac(&self) -> [u8; 6];
    /// The next received frame (without any device header), if one has arrived.
    fn receive(&mut self) -> Result<Option<Vec<u8>>, NicError>;
    /// Sends one frame and waits (bounded) until the device has taken it.
    fn send(&mut self, frame: &[u8]) -> Result<(), NicError>;
    /// Short name for logs (`virtio-net`, `e1000`).
    fn kind(&self) -> &'static str;
    /// Also receive unicast frames for `mac` (a guest's, switched behind this NIC); false if
    /// the device cannot. A device that already receives every unicast frame says true.
    fn accept_mac(&mut self, _mac: [u8; 6]) -> bool {
        true
    }
}

/// Why a NIC operation failed. Once a device has stopped answering it is not used again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NicError {
    /// The device did not complete a transmission within the polling bound.
    Stopped,
    /// The device was already declared stopped.
    Dead,
    /// The frame is larger than the device's buffers.
    TooLong(usize),
    /// No free transmit descriptor.
    QueueFull,
    /// The device reported a receive length or descriptor outside its buffer.
    BadDescriptor { index: u16, len: usize },
    /// The virtio driver reported an error.
    Virtio(virtio_drivers::Error),
}

impl fmt::Display for NicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NicError::Stopped => write!(f, "the device stopped answering (transmit timed out)"),
            NicError::Dead => write!(f, "the device is no longer used after it stopped answering"),
            NicError::TooLong(n) => write!(f, "frame of {n} bytes is longer than the buffers"),
            NicError::QueueFull => write!(f, "no free transmit descriptor"),
            NicError::BadDescriptor { index, len } => {
                write!(f, "descriptor {index} reports {len} bytes, outside its buffer")
            }
            NicError::Virtio(e) => write!(f, "virtio: {e}"),
        }
    }
}

impl From<virtio_drivers::Error> for NicError {
    fn from(e: virtio_drivers::Error) -> Self {
        NicError::Virtio(e)
    }
}

/// How many polls a driver waits for a device before declaring it stopped.
pub const POLL_BOUND: u32 = 20_000_000;
