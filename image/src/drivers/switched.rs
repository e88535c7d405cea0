//! L0's NIC shared with its guest: a [`Nic`] wrapper that puts the `vdev` switch between the
//! physical NIC, L0's own smoltcp stack (which sees only frames for L0's MAC and broadcasts)
//! and the guest's virtio-net (its own MAC, [`guest_mac`]). Frames move when the stack polls:
//! everything the NIC received is switched, frames waiting for the uplink are sent. The
//! guest's device model ([`crate::machine`]) hands its frames in with [`guest_send`] and takes
//! the guest's with [`guest_receive`].

use alloc::vec::Vec;

use hermit_sync::SpinMutex;
use net::nic::{Nic, NicError};
use vdev::switch::{Hub, Port, Switch};

/// The switch, once L0's NIC is up (only with a guest virtio-net in the config).
static HUB: SpinMutex<Option<Hub>> = SpinMutex::new(None);
/// The guest's MAC.
static GUEST_MAC: SpinMutex<Option<[u8; 6]>> = SpinMutex::new(None);
/// MACs the guest owns from [`guest_mac`] up: its own and its own guest's.
const GUEST_MACS: u8 = 2;
/// The guest's port on the switch.
const GUEST: Port = Port::Guest(0);

/// The guest's MAC: L0's with the last byte plus one (locally unique on the emulator's LAN).
fn derive_guest_mac(local: [u8; 6]) -> [u8; 6] {
    let mut mac = local;
    mac[5] = mac[5].wrapping_add(1);
    mac
}

/// L0's NIC behind the switch.
pub struct Switched<N> {
    inner: N,
}

impl<N: Nic> Switched<N> {
    /// Connects `inner` to the switch and makes it receive the guest's MAC too.
    pub fn new(mut inner: N) -> Self {
        let local = inner.mac();
        let guest = derive_guest_mac(local);
        // The guest owns a block of MACs: its own and, if it is a hypervisor switching for
        // its own guest, the next one (what its `derive_guest_mac` gives that guest).
        for n in 0..GUEST_MACS {
            let mut mac = guest;
            mac[5] = mac[5].wrapping_add(n);
            if !inner.accept_mac(mac) {
                log::error!(
                    "net: the NIC cannot receive another MAC; the guest gets only broadcasts"
                );
            }
        }
        let mut switch = Switch::new(local);
        switch.add_guest_block(guest, GUEST_MACS);
        *HUB.lock() = Some(Hub::new(switch));
        *GUEST_MAC.lock() = Some(guest);
        log::info!(
            "net: switch: guest virtio-net mac={:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            guest[0],
            guest[1],
            guest[2],
            guest[3],
            guest[4],
            guest[5]
        );
        Switched { inner }
    }

    /// Sends what waits for the uplink.
    fn flush(&mut self, hub: &mut Hub) -> Result<(), NicError> {
        while let Some(frame) = hub.output(Port::Uplink) {
            self.inner.send(&frame)?;
        }
        Ok(())
    }
}

impl<N: Nic> Nic for Switched<N> {
    fn mac(&self) -> [u8; 6] {
        self.inner.mac()
    }

    fn receive(&mut self) -> Result<Option<Vec<u8>>, NicError> {
        let mut guard = HUB.lock();
        let Some(hub) = guard.as_mut() else { return self.inner.receive() };
        while let Some(frame) = self.inner.receive()? {
            let _ = hub.input(Port::Uplink, &frame);
        }
        self.flush(hub)?;
        Ok(hub.output(Port::Local))
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), NicError> {
        let mut guard = HUB.lock();
        let Some(hub) = guard.as_mut() else { return self.inner.send(frame) };
        let _ = hub.input(Port::Local, frame);
        self.flush(hub)
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

/// The guest's MAC, if L0's NIC is switched with the guest.
pub fn guest_mac() -> Option<[u8; 6]> {
    *GUEST_MAC.lock()
}

/// A frame the guest sent: switched now, sent on the NIC at the stack's next poll. False if
/// the switch refused it (a spoofed source MAC, a runt) or there is no switch.
pub fn guest_send(frame: &[u8]) -> bool {
    HUB.try_lock().is_some_and(|mut g| g.as_mut().is_some_and(|h| h.input(GUEST, frame).is_ok()))
}

/// The next frame for the guest.
pub fn guest_receive() -> Option<Vec<u8>> {
    HUB.try_lock()?.as_mut()?.output(GUEST)
}
