//! virtio-net (virtio 1.2 section 5.1): queue 0 receives, queue 1 transmits; every buffer
//! starts with the 12-byte `virtio_net_hdr` (VERSION_1 always has `num_buffers`). The device
//! offers only VIRTIO_NET_F_MAC and VIRTIO_NET_F_STATUS (no checksum offload, no GSO, no
//! mergeable buffers), so a frame is at most [`MAX_FRAME`] bytes and fills one receive chain.
//! Frames the guest sends wait in [`Net::take_sent`] for the level's switch; frames for the
//! guest are queued with [`Net::deliver`] and written into its receive buffers on the next
//! [`Device::process`]. Both queues are bounded: beyond them frames are dropped and counted.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use crate::feature::VERSION_1;
use crate::mem::GuestRam;
use crate::mmio::{Device, DeviceError};
use crate::queue::Queue;

/// Virtio device ID of a network device.
pub const DEVICE_ID: u32 = 1;
/// VIRTIO_NET_F_MAC: the config space holds the device's MAC.
pub const F_MAC: u64 = 1 << 5;
/// VIRTIO_NET_F_STATUS: the config space holds the link status.
pub const F_STATUS: u64 = 1 << 16;
/// VIRTIO_NET_S_LINK_UP.
const S_LINK_UP: u16 = 1;
/// `virtio_net_hdr` bytes with VERSION_1.
pub const HEADER: usize = 12;
/// Largest frame without GSO: 1500 bytes of payload, the Ethernet header and a VLAN tag.
pub const MAX_FRAME: usize = 1518;
/// Queue size offered.
pub const QUEUE_MAX: u16 = 256;
/// Frames held in each direction before dropping.
pub const BACKLOG: usize = 64;
const RX: usize = 0;
const TX: usize = 1;

/// Counters of the device's traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    pub sent: u64,
    pub received: u64,
    /// Transmit chains that were too short or too long for a frame.
    pub bad_tx: u64,
    /// Frames dropped: backlog full, or a receive buffer too small.
    pub dropped: u64,
}

/// A virtio network device with `mac`.
pub struct Net {
    mac: [u8; 6],
    inbox: VecDeque<Vec<u8>>,
    outbox: VecDeque<Vec<u8>>,
    pub stats: NetStats,
}

impl Net {
    pub fn new(mac: [u8; 6]) -> Self {
        Net { mac, inbox: VecDeque::new(), outbox: VecDeque::new(), stats: NetStats::default() }
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Queues `frame` for the guest (written into its receive buffers on the next process).
    pub fn deliver(&mut self, frame: &[u8]) {
        if self.inbox.len() >= BACKLOG || frame.len() > MAX_FRAME {
            self.stats.dropped += 1;
            return;
        }
        self.inbox.push_back(frame.to_vec());
    }

    /// Frames are waiting for the guest.
    pub fn has_inbound(&self) -> bool {
        !self.inbox.is_empty()
    }

    /// The next frame the guest sent.
    pub fn take_sent(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }

    fn transmit(&mut self, q: &mut Queue, mem: &mut dyn GuestRam) -> Result<bool, DeviceError> {
        let err = |error| DeviceError::Queue { queue: TX, error };
        let mut used = false;
        while let Some(chain) = q.pop(mem).map_err(err)? {
            let len = chain.readable_len();
            if len < (HEADER + crate::switch::ETH_HEADER) as u64
                || len > (HEADER + MAX_FRAME) as u64
            {
                self.stats.bad_tx += 1;
            } else {
                let mut frame = vec![0u8; len as usize - HEADER];
                chain.read_at(mem, HEADER as u64, &mut frame).map_err(err)?;
                if self.outbox.len() < BACKLOG {
                    self.outbox.push_back(frame);
                    self.stats.sent += 1;
                } else {
                    self.stats.dropped += 1;
                }
            }
            q.push_used(mem, chain.head, 0).map_err(err)?;
            used = true;
        }
        Ok(used)
    }

    fn receive(&mut self, q: &mut Queue, mem: &mut dyn GuestRam) -> Result<bool, DeviceError> {
        let err = |error| DeviceError::Queue { queue: RX, error };
        let mut used = false;
        while !self.inbox.is_empty() {
            let Some(chain) = q.pop(mem).map_err(err)? else { break };
            let Some(frame) = self.inbox.pop_front() else { break };
            let len = if chain.writable_len() < (HEADER + frame.len()) as u64 {
                self.stats.dropped += 1;
                0
            } else {
                // flags, gso_type, hdr_len, gso_size, csum_start, csum_offset: 0; one buffer.
                let mut header = [0u8; HEADER];
                header[10] = 1;
                chain.write_at(mem, 0, &header).map_err(err)?;
                chain.write_at(mem, HEADER as u64, &frame).map_err(err)?;
                self.stats.received += 1;
                (HEADER + frame.len()) as u32
            };
            q.push_used(mem, chain.head, len).map_err(err)?;
            used = true;
        }
        Ok(used)
    }
}

impl Device for Net {
    fn device_id(&self) -> u32 {
        DEVICE_ID
    }
    fn features(&self) -> u64 {
        VERSION_1 | F_MAC | F_STATUS
    }
    fn queues(&self) -> usize {
        2
    }
    fn queue_max(&self) -> u16 {
        QUEUE_MAX
    }
    fn read_config(&self, offset: u32, data: &mut [u8]) {
        // struct virtio_net_config: mac[6], status (le16); the rest reads as 0.
        let mut config = [0u8; 8];
        config[..6].copy_from_slice(&self.mac);
        config[6..].copy_from_slice(&S_LINK_UP.to_le_bytes());
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| config.get(o))
                .copied()
                .unwrap_or(0);
        }
    }
    fn process(
        &mut self,
        queues: &mut [Queue],
        mem: &mut dyn GuestRam,
    ) -> Result<bool, DeviceError> {
        let mut used = false;
        if let Some(q) = queues.get_mut(TX) {
            used |= self.transmit(q, mem)?;
        }
        if let Some(q) = queues.get_mut(RX) {
            used |= self.receive(q, mem)?;
        }
        Ok(used)
    }
    fn reset(&mut self) {
        self.inbox.clear();
        self.outbox.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mem::VecRam;
    use crate::queue::testing::DriverQueue;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 0x12, 0x34, 0x56];

    fn setup() -> (VecRam, DriverQueue, DriverQueue, Vec<Queue>, Net) {
        let mem = VecRam::new(0x40000);
        let rx = DriverQueue::new(0x1000, 8);
        let tx = DriverQueue::new(0x2000, 8);
        let queues = vec![rx.device_queue(), tx.device_queue()];
        (mem, rx, tx, queues, Net::new(MAC))
    }

    #[test]
    fn config_space_holds_the_mac_and_link_up() {
        let net = Net::new(MAC);
        let mut b = [0u8; 8];
        net.read_config(0, &mut b);
        assert_eq!(b, [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0]);
        let mut b = [0xffu8; 4];
        net.read_config(u32::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }

    #[test]
    fn frames_go_out_and_come_in() {
        let (mut mem, mut rx, mut tx, mut q, mut net) = setup();
        let frame: Vec<u8> = (0..60u8).collect();
        mem.write(0x8000 + HEADER as u64, &frame).unwrap();
        tx.add(&mut mem, &[(0x8000, (HEADER + 60) as u32, false)]);
        assert_eq!(net.process(&mut q, &mut mem), Ok(true));
        assert_eq!(tx.take_used(&mem), [(0, 0)]);
        assert_eq!(net.take_sent(), Some(frame.clone()));
        assert_eq!(net.take_sent(), None);
        // A frame for the guest waits for a receive buffer.
        net.deliver(&frame);
        assert_eq!(net.process(&mut q, &mut mem), Ok(false));
        rx.add(&mut mem, &[(0x9000, 1526, true)]);
        assert_eq!(net.process(&mut q, &mut mem), Ok(true));
        assert_eq!(rx.take_used(&mem), [(0, 72)]);
        assert_eq!(mem.bytes[0x9000 + 10], 1);
        assert_eq!(&mem.bytes[0x9000 + HEADER..0x9000 + HEADER + 60], &frame[..]);
        assert_eq!((net.stats.sent, net.stats.received), (1, 1));
    }

    #[test]
    fn bad_chains_and_full_backlogs_are_counted_not_fatal() {
        let (mut mem, mut rx, mut tx, mut q, mut net) = setup();
        tx.add(&mut mem, &[(0x8000, 8, false)]);
        tx.add(&mut mem, &[(0x8000, 0x10000, false)]);
        net.process(&mut q, &mut mem).unwrap();
        assert_eq!(net.stats.bad_tx, 2);
        assert_eq!(net.take_sent(), None);
        net.deliver(&[0; 100]);
        rx.add(&mut mem, &[(0x9000, 50, true)]);
        net.process(&mut q, &mut mem).unwrap();
        assert_eq!(rx.take_used(&mem), [(0, 0)]);
        for _ in 0..BACKLOG + 5 {
            net.deliver(&[0; 60]);
        }
        net.deliver(&[0; MAX_FRAME + 1]);
        assert_eq!(net.stats.dropped, 1 + 5 + 1);
    }
}
