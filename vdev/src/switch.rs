//! The Ethernet switch between a level's guests, its own network stack and its NIC: each
//! guest's virtio-net has its own MAC; a frame goes to the port that owns its destination MAC,
//! broadcasts and multicasts to every port but the sender, and frames for unknown MACs leave
//! through the NIC (the uplink). A guest can only send with its own MAC as source, so it
//! cannot pose as the level or another guest. Pure: it decides, the caller moves the frames.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// Where a frame comes from or goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// The level's own network stack (smoltcp).
    Local,
    /// The physical NIC.
    Uplink,
    /// Guest number n's virtio-net.
    Guest(usize),
}

/// Why a frame was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drop {
    /// Shorter than an Ethernet header.
    Runt,
    /// A guest sent with a source MAC not its own.
    Spoofed,
    /// From the uplink to a MAC no port here owns.
    NotOurs,
    /// Addressed to the port it came from.
    Loopback,
}

/// Ethernet header bytes: destination, source, EtherType.
pub const ETH_HEADER: usize = 14;

/// The switch: the level's MAC and each guest's.
#[derive(Clone, Debug)]
pub struct Switch {
    local: [u8; 6],
    /// Each guest's first MAC and how many it owns.
    guests: Vec<([u8; 6], u8)>,
}

impl Switch {
    pub fn new(local: [u8; 6]) -> Self {
        Switch { local, guests: Vec::new() }
    }

    /// Connects a guest with `mac`; returns its port.
    pub fn add_guest(&mut self, mac: [u8; 6]) -> Port {
        self.add_guest_block(mac, 1)
    }

    /// Connects a guest that owns `count` MACs from `mac` up (last byte `mac[5]` to
    /// `mac[5] + count - 1`, no wrap): its own and those of its own guests, for a guest that
    /// is a hypervisor switching frames for them. Returns its port.
    pub fn add_guest_block(&mut self, mac: [u8; 6], count: u8) -> Port {
        let count = count.clamp(1, u8::MAX - mac[5].min(u8::MAX - 1));
        self.guests.push((mac, count));
        Port::Guest(self.guests.len() - 1)
    }

    fn owns(block: &([u8; 6], u8), mac: &[u8]) -> bool {
        let (base, count) = block;
        mac.len() == 6
            && mac[..5] == base[..5]
            && mac[5] >= base[5]
            && u16::from(mac[5]) < u16::from(base[5]) + u16::from(*count)
    }

    fn owner(&self, mac: &[u8]) -> Option<Port> {
        if mac == self.local {
            return Some(Port::Local);
        }
        self.guests.iter().position(|g| Self::owns(g, mac)).map(Port::Guest)
    }

    fn ports(&self) -> impl Iterator<Item = Port> + '_ {
        [Port::Local, Port::Uplink].into_iter().chain((0..self.guests.len()).map(Port::Guest))
    }

    /// The ports `frame`, arriving from `from`, goes to.
    pub fn route(&self, from: Port, frame: &[u8]) -> Result<Vec<Port>, Drop> {
        if frame.len() < ETH_HEADER {
            return Err(Drop::Runt);
        }
        let (dst, src) = (&frame[0..6], &frame[6..12]);
        if let Port::Guest(n) = from
            && self.guests.get(n).is_none_or(|block| !Self::owns(block, src))
        {
            return Err(Drop::Spoofed);
        }
        if dst[0] & 1 != 0 {
            return Ok(self.ports().filter(|&p| p != from).collect());
        }
        match self.owner(dst) {
            Some(p) if p == from => Err(Drop::Loopback),
            Some(p) => Ok(alloc::vec![p]),
            None if from == Port::Uplink => Err(Drop::NotOurs),
            None => Ok(alloc::vec![Port::Uplink]),
        }
    }
}

/// Frames waiting at each port before more are dropped.
pub const PORT_BACKLOG: usize = 64;

/// The switch with a bounded queue of frames waiting at each port: what a level runs when its
/// stack, its NIC and its guests' devices are polled at different moments.
#[derive(Clone, Debug)]
pub struct Hub {
    switch: Switch,
    /// Index 0: [`Port::Local`], 1: [`Port::Uplink`], 2 + n: [`Port::Guest`] n.
    waiting: Vec<VecDeque<Vec<u8>>>,
    /// Frames refused by the switch or dropped at a full port.
    pub dropped: u64,
}

impl Hub {
    pub fn new(switch: Switch) -> Self {
        let ports = 2 + switch.guests.len();
        Hub { switch, waiting: (0..ports).map(|_| VecDeque::new()).collect(), dropped: 0 }
    }

    fn index(&self, port: Port) -> Option<usize> {
        match port {
            Port::Local => Some(0),
            Port::Uplink => Some(1),
            Port::Guest(n) => (n < self.switch.guests.len()).then_some(2 + n),
        }
    }

    /// A frame arriving from `from`: queued at every port the switch sends it to.
    pub fn input(&mut self, from: Port, frame: &[u8]) -> Result<(), Drop> {
        let to = self.switch.route(from, frame).inspect_err(|_| self.dropped += 1)?;
        for port in to {
            match self.index(port).and_then(|i| self.waiting.get_mut(i)) {
                Some(q) if q.len() < PORT_BACKLOG => q.push_back(frame.to_vec()),
                _ => self.dropped += 1,
            }
        }
        Ok(())
    }

    /// The next frame waiting for `to`.
    pub fn output(&mut self, to: Port) -> Option<Vec<u8>> {
        let i = self.index(to)?;
        self.waiting.get_mut(i)?.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const L0: [u8; 6] = [0x52, 0x54, 0, 0, 0, 1];
    const G0: [u8; 6] = [0x52, 0x54, 0, 0, 1, 0];
    const G1: [u8; 6] = [0x52, 0x54, 0, 0, 1, 1];
    const OUT: [u8; 6] = [0x52, 0x55, 10, 0, 2, 2];
    const BCAST: [u8; 6] = [0xff; 6];

    fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00, 0x45]);
        f
    }

    fn switch() -> Switch {
        let mut s = Switch::new(L0);
        assert_eq!(s.add_guest(G0), Port::Guest(0));
        assert_eq!(s.add_guest(G1), Port::Guest(1));
        s
    }

    #[test]
    fn unicast_goes_to_the_owner_of_the_mac() {
        let s = switch();
        assert_eq!(s.route(Port::Uplink, &frame(L0, OUT)), Ok(vec![Port::Local]));
        assert_eq!(s.route(Port::Uplink, &frame(G1, OUT)), Ok(vec![Port::Guest(1)]));
        assert_eq!(s.route(Port::Guest(0), &frame(L0, G0)), Ok(vec![Port::Local]));
        assert_eq!(s.route(Port::Guest(0), &frame(G1, G0)), Ok(vec![Port::Guest(1)]));
        assert_eq!(s.route(Port::Local, &frame(G0, L0)), Ok(vec![Port::Guest(0)]));
        assert_eq!(s.route(Port::Guest(0), &frame(OUT, G0)), Ok(vec![Port::Uplink]));
        assert_eq!(s.route(Port::Local, &frame(OUT, L0)), Ok(vec![Port::Uplink]));
    }

    #[test]
    fn broadcast_reaches_every_other_port() {
        let s = switch();
        assert_eq!(
            s.route(Port::Uplink, &frame(BCAST, OUT)),
            Ok(vec![Port::Local, Port::Guest(0), Port::Guest(1)])
        );
        assert_eq!(
            s.route(Port::Guest(1), &frame(BCAST, G1)),
            Ok(vec![Port::Local, Port::Uplink, Port::Guest(0)])
        );
        let mut multicast = BCAST;
        multicast[0] = 0x01;
        assert_eq!(s.route(Port::Local, &frame(multicast, L0)).map(|p| p.len()), Ok(3));
    }

    #[test]
    fn bad_frames_are_dropped() {
        let s = switch();
        assert_eq!(s.route(Port::Uplink, &[0; 13]), Err(Drop::Runt));
        assert_eq!(s.route(Port::Guest(0), &frame(L0, G1)), Err(Drop::Spoofed));
        assert_eq!(s.route(Port::Guest(0), &frame(BCAST, L0)), Err(Drop::Spoofed));
        assert_eq!(s.route(Port::Guest(7), &frame(L0, G0)), Err(Drop::Spoofed));
        assert_eq!(s.route(Port::Uplink, &frame(OUT, OUT)), Err(Drop::NotOurs));
        assert_eq!(s.route(Port::Guest(0), &frame(G0, G0)), Err(Drop::Loopback));
    }

    #[test]
    fn the_hub_queues_frames_per_port_and_bounds_them() {
        let mut hub = Hub::new(switch());
        hub.input(Port::Uplink, &frame(BCAST, OUT)).unwrap();
        hub.input(Port::Guest(0), &frame(OUT, G0)).unwrap();
        assert_eq!(hub.output(Port::Local), Some(frame(BCAST, OUT)));
        assert_eq!(hub.output(Port::Guest(1)), Some(frame(BCAST, OUT)));
        assert_eq!(hub.output(Port::Guest(0)), Some(frame(BCAST, OUT)));
        assert_eq!(hub.output(Port::Uplink), Some(frame(OUT, G0)));
        assert_eq!(hub.output(Port::Uplink), None);
        assert_eq!(hub.output(Port::Guest(9)), None);
        assert_eq!(hub.input(Port::Guest(0), &frame(L0, G1)), Err(Drop::Spoofed));
        for _ in 0..PORT_BACKLOG + 3 {
            hub.input(Port::Uplink, &frame(L0, OUT)).unwrap();
        }
        assert_eq!(hub.dropped, 1 + 3);
    }

    #[test]
    fn a_guest_block_owns_its_guests_macs() {
        let mut s = Switch::new(L0);
        assert_eq!(s.add_guest_block(G0, 2), Port::Guest(0));
        let nested = G1;
        // Frames for the guest's own guest go to the guest; it may send with that MAC.
        assert_eq!(s.route(Port::Uplink, &frame(nested, OUT)), Ok(alloc::vec![Port::Guest(0)]));
        assert_eq!(s.route(Port::Guest(0), &frame(OUT, nested)), Ok(alloc::vec![Port::Uplink]));
        let third = [0x52, 0x54, 0, 0, 1, 2];
        assert_eq!(s.route(Port::Guest(0), &frame(OUT, third)), Err(Drop::Spoofed));
        assert_eq!(s.route(Port::Uplink, &frame(third, OUT)), Err(Drop::NotOurs));
        // A block never wraps past the last byte.
        let mut t = Switch::new(L0);
        t.add_guest_block([0x52, 0x54, 0, 0, 1, 0xff], 200);
        assert_eq!(
            t.route(Port::Uplink, &frame([0x52, 0x54, 0, 0, 1, 0], OUT)),
            Err(Drop::NotOurs)
        );
    }
}
