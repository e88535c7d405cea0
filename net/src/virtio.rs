//! virtio-net over `virtio-drivers`' raw driver, with our own receive buffers and a bounded
//! wait for transmissions, so a device that stops answering is reported instead of hanging
//! the image (virtio 1.2 section 5.1).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use virtio_drivers::Hal;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::Transport;

use crate::nic::{Nic, NicError, POLL_BOUND};

/// Receive and transmit queue size on the modern interface, where the driver chooses it. A
/// legacy device fixes its own (256 for QEMU's virtio-net): use [`LEGACY_QUEUE_SIZE`] there.
pub const QUEUE_SIZE: usize = 16;
/// The queue size of QEMU's legacy virtio-net. `VirtIONetRaw` with it is ~17 KiB, built on the
/// stack: the image's boot stack (256 KiB) has room.
pub const LEGACY_QUEUE_SIZE: usize = 256;
/// Bytes per buffer: a 1514-byte frame plus the virtio-net header, rounded up.
const BUF_LEN: usize = 2048;

/// A virtio-net device (modern PCI transport or any other `virtio-drivers` transport).
pub struct VirtioNic<H: Hal, T: Transport, const Q: usize = QUEUE_SIZE> {
    raw: VirtIONetRaw<H, T, Q>,
    /// Receive buffers by descriptor token; each lives as long as the queue holds it.
    rx: Vec<Option<Box<[u8]>>>,
    tx: Box<[u8]>,
    dead: bool,
}

impl<H: Hal, T: Transport, const Q: usize> VirtioNic<H, T, Q> {
    /// Negotiates features, sets up both queues and posts every receive buffer.
    pub fn new(transport: T) -> Result<Self, NicError> {
        let mut raw = VirtIONetRaw::<H, T, Q>::new(transport)?;
        let mut rx: Vec<Option<Box<[u8]>>> = (0..Q).map(|_| None).collect();
        for _ in 0..Q {
            let mut buf = vec![0u8; BUF_LEN].into_boxed_slice();
            // SAFETY: the buffer is kept in `rx` and not touched until the device returns it.
            let token = unsafe { raw.receive_begin(&mut buf)? };
            let slot = rx
                .get_mut(usize::from(token))
                .ok_or(NicError::BadDescriptor { index: token, len: 0 })?;
            *slot = Some(buf);
        }
        raw.disable_interrupts();
        Ok(VirtioNic { raw, rx, tx: vec![0u8; BUF_LEN].into_boxed_slice(), dead: false })
    }
}

impl<H: Hal, T: Transport, const Q: usize> Nic for VirtioNic<H, T, Q> {
    fn mac(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    fn kind(&self) -> &'static str {
        "virtio-net"
    }

    fn receive(&mut self) -> Result<Option<Vec<u8>>, NicError> {
        if self.dead {
            return Err(NicError::Dead);
        }
        let Some(token) = self.raw.poll_receive() else { return Ok(None) };
        let Some(mut buf) = self.rx.get_mut(usize::from(token)).and_then(Option::take) else {
            return Err(NicError::BadDescriptor { index: token, len: 0 });
        };
        // SAFETY: `buf` is the buffer posted with this token (kept in `rx` until now).
        let done = unsafe { self.raw.receive_complete(token, &mut buf) };
        let frame = match done {
            Ok((header, len)) => match buf.get(header..header.saturating_add(len)) {
                Some(frame) => Ok(frame.to_vec()),
                None => Err(NicError::BadDescriptor { index: token, len }),
            },
            Err(e) => Err(NicError::Virtio(e)),
        };
        // Post the buffer again whatever the outcome, so the queue never runs dry.
        // SAFETY: as in `new`: the buffer is kept in `rx` until the device returns it.
        match unsafe { self.raw.receive_begin(&mut buf) } {
            Ok(token) => {
                if let Some(slot) = self.rx.get_mut(usize::from(token)) {
                    *slot = Some(buf);
                } else {
                    // The device cannot use a token we never had; keep the memory alive.
                    Box::leak(buf);
                }
            }
            Err(e) => {
                log::error!("virtio-net: cannot repost a receive buffer: {e}");
                Box::leak(buf);
            }
        }
        frame.map(Some)
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if self.dead {
            return Err(NicError::Dead);
        }
        let header = self.raw.fill_buffer_header(&mut self.tx)?;
        let total = header + frame.len();
        let Some(body) = self.tx.get_mut(header..total) else {
            return Err(NicError::TooLong(frame.len()));
        };
        body.copy_from_slice(frame);
        // SAFETY: `tx` is not touched until the transmission completes; if it never does we
        // leak it below, so the device can never write into memory we reuse.
        let token = unsafe { self.raw.transmit_begin(&self.tx[..total])? };
        for _ in 0..POLL_BOUND {
            if self.raw.poll_transmit() == Some(token) {
                // SAFETY: the same buffer as passed to `transmit_begin`.
                unsafe { self.raw.transmit_complete(token, &self.tx[..total])? };
                return Ok(());
            }
            core::hint::spin_loop();
        }
        self.dead = true;
        let stale = core::mem::replace(&mut self.tx, vec![0u8; BUF_LEN].into_boxed_slice());
        Box::leak(stale);
        Err(NicError::Stopped)
    }
}
