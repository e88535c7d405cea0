//! One `smoltcp::phy::Device` over any [`Nic`]: each received frame is checked
//! ([`crate::packet::check_frame`]) and a malformed one is dropped with a (rate-limited) log
//! line; a device error is logged and counted, never a panic.

use alloc::vec::Vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::nic::{Nic, NicError};
use crate::packet::check_frame;

/// Frames handled per `receive` call before giving the stack a turn.
const RX_BATCH: usize = 8;
/// Log lines per kind of problem before the rest are only counted.
const LOG_LIMIT: u32 = 16;

/// Counters of what went through the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub rx_malformed: u64,
    pub tx_frames: u64,
    pub errors: u64,
}

/// The smoltcp device over a NIC.
pub struct NicDevice<N: Nic> {
    nic: N,
    pub counters: Counters,
    logged: u32,
    last_error: Option<NicError>,
}

impl<N: Nic> NicDevice<N> {
    pub fn new(nic: N) -> Self {
        NicDevice { nic, counters: Counters::default(), logged: 0, last_error: None }
    }

    pub fn nic(&self) -> &N {
        &self.nic
    }

    pub fn nic_mut(&mut self) -> &mut N {
        &mut self.nic
    }

    /// The last device error, if any (a stopped device keeps reporting [`NicError::Dead`]).
    pub fn last_error(&self) -> Option<NicError> {
        self.last_error
    }

    fn note(&mut self, what: core::fmt::Arguments<'_>) {
        if self.logged < LOG_LIMIT {
            self.logged += 1;
            log::error!("{}: {what}", self.nic.kind());
            if self.logged == LOG_LIMIT {
                log::warn!("{}: further errors are only counted", self.nic.kind());
            }
        }
    }

    fn fail(&mut self, e: NicError) {
        self.counters.errors += 1;
        // A dead device says so once, not on every poll.
        if !(e == NicError::Dead && self.last_error == Some(NicError::Dead)) {
            self.note(format_args!("{e}"));
        }
        self.last_error = Some(if e == NicError::Stopped { NicError::Dead } else { e });
    }

    /// Sends one frame outside smoltcp (counted like the stack's own).
    pub fn send_raw(&mut self, frame: &[u8]) -> Result<(), NicError> {
        match self.nic.send(frame) {
            Ok(()) => {
                self.counters.tx_frames += 1;
                Ok(())
            }
            Err(e) => {
                self.fail(e);
                Err(e)
            }
        }
    }
}

/// A received frame.
pub struct RxToken {
    frame: Vec<u8>,
}

/// Room to send one frame.
pub struct TxToken<'a, N: Nic> {
    device: &'a mut NicDevice<N>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.frame)
    }
}

impl<N: Nic> phy::TxToken for TxToken<'_, N> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = alloc::vec![0u8; len];
        let result = f(&mut frame);
        let _ = self.device.send_raw(&frame);
        result
    }
}

impl<N: Nic> phy::Device for NicDevice<N> {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, N>
    where
        Self: 'a;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_, N>)> {
        for _ in 0..RX_BATCH {
            match self.nic.receive() {
                Ok(None) => return None,
                Ok(Some(frame)) => match check_frame(&frame) {
                    Ok(_) => {
                        self.counters.rx_frames += 1;
                        return Some((RxToken { frame }, TxToken { device: self }));
                    }
                    Err(e) => {
                        self.counters.rx_malformed += 1;
                        self.note(format_args!("malformed packet dropped: {e}"));
                    }
                },
                Err(e) => {
                    self.fail(e);
                    return None;
                }
            }
        }
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_, N>> {
        if self.last_error == Some(NicError::Dead) {
            return None;
        }
        Some(TxToken { device: self })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps.max_burst_size = Some(1);
        caps
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::collections::VecDeque;

    /// A NIC in memory: frames to deliver, frames sent, and an optional failure.
    #[derive(Default)]
    pub struct FakeNic {
        pub inbox: VecDeque<Vec<u8>>,
        pub sent: Vec<Vec<u8>>,
        pub stop_after: Option<usize>,
    }

    impl Nic for FakeNic {
        fn mac(&self) -> [u8; 6] {
            [2, 0, 0, 0, 0, 1]
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn receive(&mut self) -> Result<Option<Vec<u8>>, NicError> {
            Ok(self.inbox.pop_front())
        }
        fn send(&mut self, frame: &[u8]) -> Result<(), NicError> {
            if self.stop_after.is_some_and(|n| self.sent.len() >= n) {
                return Err(NicError::Stopped);
            }
            self.sent.push(frame.to_vec());
            Ok(())
        }
    }

    #[test]
    fn malformed_frames_are_dropped_and_counted() {
        use phy::{Device, RxToken as _};
        let mut nic = FakeNic::default();
        nic.inbox.push_back(vec![1, 2, 3]);
        nic.inbox.push_back(crate::packet::tests::udp_frame(b"status", 5555));
        let mut dev = NicDevice::new(nic);
        let (rx, _tx) = dev.receive(Instant::ZERO).expect("the good frame");
        assert_eq!(rx.consume(|f| f.len()), 14 + 20 + 8 + 6);
        assert_eq!(dev.counters.rx_malformed, 1);
        assert_eq!(dev.counters.rx_frames, 1);
        assert!(dev.receive(Instant::ZERO).is_none());
    }

    #[test]
    fn a_stopped_device_is_not_used_again() {
        use phy::{Device, TxToken as _};
        let nic = FakeNic { stop_after: Some(0), ..FakeNic::default() };
        let mut dev = NicDevice::new(nic);
        let tx = dev.transmit(Instant::ZERO).expect("first try");
        tx.consume(60, |b| b.fill(0));
        assert_eq!(dev.last_error(), Some(NicError::Dead));
        assert_eq!(dev.counters.errors, 1);
        assert!(dev.transmit(Instant::ZERO).is_none());
    }
}
