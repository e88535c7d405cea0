//! Time for the drivers: the TSC, calibrated once against the PIT (8254 channel 2, gated by
//! port 0x61), the way Linux's `pit_calibrate_tsc` does. Under Bochs the TSC counts emulated
//! instructions, so milliseconds there follow `ips`.

use core::sync::atomic::{AtomicU64, Ordering};

use x86_64::instructions::port::Port;

use crate::arch::cpu::rdtsc;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
static START: AtomicU64 = AtomicU64::new(0);

const PIT_HZ: u64 = 1_193_182;
/// 10 ms of PIT ticks.
const PIT_TICKS: u16 = 11_932;
/// Fallback when the PIT does not count: 1 GHz.
const FALLBACK_HZ: u64 = 1_000_000_000;

/// Calibrates the TSC (once) and starts the uptime clock. Returns ticks per second.
pub fn init() -> u64 {
    if TSC_HZ.load(Ordering::Relaxed) != 0 {
        return TSC_HZ.load(Ordering::Relaxed);
    }
    let hz = calibrate().unwrap_or_else(|| {
        log::warn!("time: the PIT did not count down; assuming a 1 GHz TSC");
        FALLBACK_HZ
    });
    TSC_HZ.store(hz, Ordering::Relaxed);
    START.store(rdtsc(), Ordering::Relaxed);
    hz
}

fn calibrate() -> Option<u64> {
    let mut gate = Port::<u8>::new(0x61);
    let mut mode = Port::<u8>::new(0x43);
    let mut counter = Port::<u8>::new(0x42);
    // SAFETY: PIT channel 2 and its gate drive only the PC speaker, which nothing else uses;
    // interrupts are off, so nothing interleaves with this sequence.
    let (start, end) = unsafe {
        let value = gate.read();
        gate.write((value & !0x02) | 0x01);
        mode.write(0xb0); // channel 2, lobyte/hibyte, mode 0, binary
        counter.write(PIT_TICKS as u8);
        counter.write((PIT_TICKS >> 8) as u8);
        let start = rdtsc();
        let mut done = false;
        for _ in 0..50_000_000u32 {
            if gate.read() & 0x20 != 0 {
                done = true;
                break;
            }
        }
        if !done {
            return None;
        }
        (start, rdtsc())
    };
    let ticks = end.checked_sub(start).filter(|t| *t > 0)?;
    Some(ticks * PIT_HZ / u64::from(PIT_TICKS))
}

/// TSC ticks per second (0 before [`init`]).
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// TSC ticks since [`init`].
pub fn uptime_tsc() -> u64 {
    rdtsc().wrapping_sub(START.load(Ordering::Relaxed))
}

/// Milliseconds since [`init`].
pub fn now_ms() -> i64 {
    let hz = tsc_hz().max(1);
    (u128::from(uptime_tsc()) * 1000 / u128::from(hz)) as i64
}
