//! What the management endpoint and the disk report say about this level: its guests and
//! their exit counts per basic exit reason. The VMX run loop feeds it through
//! [`publish_exits`] and [`set_guest`]; reading it never blocks the run loop.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use hermit_sync::SpinMutex;
use nested::exits::reasons::EXIT_REASON_SLOTS;
use nested::exits::{ExitCounters, ExitReason};
use net::endpoint::{ExitCount, GuestStatus, Status};

use super::time;
use crate::{config, console};

/// Exits per basic reason, as last published.
static EXITS: [AtomicU64; EXIT_REASON_SLOTS] = [const { AtomicU64::new(0) }; EXIT_REASON_SLOTS];
static GUEST: SpinMutex<Option<&'static str>> = SpinMutex::new(None);
static GUEST_STATE: AtomicU8 = AtomicU8::new(GuestState::None as u8);

/// What this level's guest is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum GuestState {
    None = 0,
    Loaded = 1,
    Running = 2,
    Exited = 3,
    Stopped = 4,
}

impl GuestState {
    fn as_str(self) -> &'static str {
        match self {
            GuestState::None => "none",
            GuestState::Loaded => "loaded",
            GuestState::Running => "running",
            GuestState::Exited => "exited",
            GuestState::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => GuestState::Loaded,
            2 => GuestState::Running,
            3 => GuestState::Exited,
            4 => GuestState::Stopped,
            _ => GuestState::None,
        }
    }
}

/// Copies the run loop's exit counters (cheap: one store per reason; call it at guest end or
/// every so often, not per exit).
pub fn publish_exits(counters: &ExitCounters) {
    for (slot, count) in EXITS.iter().zip(counters.per_reason.iter()) {
        slot.store(*count, Ordering::Relaxed);
    }
}

/// Names this level's guest and its state.
pub fn set_guest(name: &'static str, state: GuestState) {
    *GUEST.lock() = Some(name);
    GUEST_STATE.store(state as u8, Ordering::Relaxed);
}

/// A snapshot for the endpoint and the report.
pub fn snapshot() -> Status {
    let mut guests = Vec::new();
    if let Some(name) = *GUEST.lock() {
        let state = GuestState::from_u8(GUEST_STATE.load(Ordering::Relaxed));
        guests.push(GuestStatus { name: name.into(), state: state.as_str().into() });
    }
    let exits = EXITS
        .iter()
        .enumerate()
        .filter_map(|(reason, count)| {
            let count = count.load(Ordering::Relaxed);
            (count > 0).then(|| {
                let reason = reason as u16;
                let name: String = match ExitReason::from_basic(reason) {
                    Some(r) => format!("{r:?}"),
                    None => format!("reason{reason}"),
                };
                ExitCount { reason, name, count }
            })
        })
        .collect();
    Status {
        config: config::NAME.into(),
        role: config::ROLE.into(),
        depth: console::depth(),
        uptime_tsc: time::uptime_tsc(),
        tsc_hz: time::tsc_hz(),
        guests,
        exits,
    }
}
