//! When L0 polls its NIC (the management endpoint and, through the switch, the guest's
//! virtio-net) while a guest runs. L0 drives its NIC without interrupts, so it moves frames
//! only when it has control: at exits. Every [`EVERY_EXITS`] exits and at every
//! preemption-timer exit it polls; and when its guest has a switched virtio-net
//! (`guest_devices` names `"virtio-net"`), also once [`EVERY_TICKS`] of guest time have
//! passed since the last poll, checked at each exit, with vmcs01's preemption timer armed for
//! that moment (`interrupts::before_l1_entry`) so a guest that does not exit (L1 spinning in
//! its HLT emulation while L2 idles) still lets L0 answer.
//!
//! Measured under Bochs (`bench io`, README "I/O for guests"): with polls only every 4096
//! exits an L1 serving its endpoint over virtio-net answered at ~3% of L0's packet rate, and
//! L0's own endpoint did not answer within 3 s while Linux idled at depth 2.

use crate::config;

/// Exits between two polls regardless of time.
pub const EVERY_EXITS: u32 = 4096;
/// Guest time (TSC ticks; under Bochs, instructions) between two polls while the guest has a
/// switched virtio-net: about one L0-alone UDP round trip (~110,000 ticks).
pub const EVERY_TICKS: u64 = 100_000;
/// Polls are timed only when the guest shares L0's NIC through the switch.
pub const TIMED: bool = config::NET && config::GUEST_VIRTIO_NET;

/// The poll schedule of one guest: the time of the next timed poll (the exit count is the
/// run loop's own local, which stays in a register on the hot path).
#[derive(Clone, Copy, Debug, Default)]
pub struct NicPoll {
    /// TSC of the next timed poll ([`TIMED`] only).
    next: u64,
}

impl NicPoll {
    /// Called at every exit with the exits counted since the last poll (`since`) and whether
    /// the exit was the preemption timer's: whether to poll now. Restarts the schedule (and
    /// `since`) when it says yes.
    #[inline(always)]
    pub fn due(&mut self, since: &mut u32, preemption: bool) -> bool {
        *since += 1;
        let now = if TIMED { crate::arch::cpu::rdtsc() } else { 0 };
        let due = *since >= EVERY_EXITS || preemption || (TIMED && now >= self.next);
        if due {
            *since = 0;
            if TIMED {
                self.next = now.saturating_add(EVERY_TICKS);
            }
        }
        due
    }

    /// The TSC by which the next poll is due, for the preemption timer ([`TIMED`] only).
    #[inline(always)]
    pub fn deadline(&self) -> Option<u64> {
        TIMED.then_some(self.next)
    }
}
