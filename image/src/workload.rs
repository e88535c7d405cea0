//! The leaf workload: what the innermost guest runs and reports, so every depth can be
//! compared on the same numbers. Each part is timed with RDTSC (under Bochs: emulated
//! instructions, so repeatable) and, under a turtles hypervisor, counts the VM exits it
//! caused through the hypervisor's exit-count leaf (0x40000002).

use raw_cpuid::cpuid;

use crate::arch::cpu;
use crate::mm::frames;

/// Round trips per exit-causing loop.
pub const ROUNDS: u64 = 1000;
/// Memory touched, one write per 4 KiB page.
const MEMORY_MIB: u64 = 16;
/// Iterations of the compute loop.
const COMPUTE_ITERATIONS: u64 = 2_000_000;
/// The mixed part: rounds of compute, each followed by one CPUID (an exit at every level).
const MIXED_ROUNDS: u64 = 200;
/// Compute-loop iterations per mixed round: about 100,000 instructions (10 per iteration),
/// so the part has one exit per ~100,000 instructions, like a workload that mostly computes.
const MIXED_COMPUTE: u64 = 10_000;
/// POST-code port: a harmless I/O write every hypervisor intercepts.
const IO_PORT: u16 = 0x80;

/// Exit counters of the hypervisor below (leaf 0x40000002) and of the bottom L0 (leaf
/// 0x40000003), if we run under turtles. Reading them is itself a few exits; [`Probe`]
/// measures that once and subtracts it.
fn counters(turtles: bool) -> Option<(u64, u64)> {
    if !turtles {
        return None;
    }
    let hv = cpuid!(0x4000_0002);
    let l0 = cpuid!(0x4000_0003);
    Some((u64::from(hv.eax) | u64::from(hv.ebx) << 32, u64::from(l0.eax) | u64::from(l0.ebx) << 32))
}

/// The counters' own cost: exits seen between two back-to-back reads.
#[derive(Clone, Copy)]
struct Probe {
    turtles: bool,
    overhead: (u64, u64),
}

impl Probe {
    fn calibrate(turtles: bool) -> Self {
        let overhead = match (counters(turtles), counters(turtles)) {
            (Some(b), Some(a)) => (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1)),
            _ => (0, 0),
        };
        Probe { turtles, overhead }
    }
}

/// Runs `body` and prints its ticks (and, under turtles, the exits it caused at the
/// hypervisor below and at L0).
fn measure(probe: Probe, name: &str, rounds: u64, body: impl FnOnce() -> u64) {
    let before = counters(probe.turtles);
    let start = cpu::rdtsc();
    let result = body();
    let ticks = cpu::rdtsc() - start;
    let after = counters(probe.turtles);
    let per_round = ticks / rounds.max(1);
    match before.zip(after) {
        Some((b, a)) => {
            let exits = a.0.saturating_sub(b.0).saturating_sub(probe.overhead.0);
            let l0 = a.1.saturating_sub(b.1).saturating_sub(probe.overhead.1);
            log::info!(
                "workload: {name} rounds={rounds} ticks={ticks} per-round={per_round} \
                 exits={exits} l0-exits={l0} result={result:#x}"
            );
        }
        None => log::info!(
            "workload: {name} rounds={rounds} ticks={ticks} per-round={per_round} result={result:#x}"
        ),
    }
}

/// Runs every part and prints the results.
pub fn run() -> bool {
    let turtles = Probe::calibrate(crate::platform::under_turtles());
    let total = cpu::rdtsc();
    measure(turtles, "cpuid", ROUNDS, || {
        let mut acc = 0u64;
        for _ in 0..ROUNDS {
            acc = acc.wrapping_add(u64::from(cpuid!(0).eax));
        }
        acc
    });
    measure(turtles, "io", ROUNDS, || {
        for i in 0..ROUNDS {
            // SAFETY: port 0x80 is the POST-code port: writing it has no effect we rely on.
            unsafe { cpu::outb(IO_PORT, i as u8) };
        }
        ROUNDS
    });
    if turtles.turtles {
        // HLT with interrupts enabled: a turtles hypervisor resumes us after each one (another
        // hypervisor or bare metal would wait for an interrupt that may never come).
        measure(turtles, "hlt", ROUNDS, || {
            for _ in 0..ROUNDS {
                // No interrupt source is enabled in the leaf: STI;HLT only makes the
                // hypervisor see a HLT, and CLI restores the previous state.
                cpu::hlt_with_interrupts();
            }
            ROUNDS
        });
    }
    let Some(base) = frames::alloc(MEMORY_MIB << 20, 4096) else {
        log::error!("workload: cannot allocate {MEMORY_MIB} MiB");
        return false;
    };
    measure(turtles, "memory", MEMORY_MIB << 8, || {
        let mut sum = 0u64;
        for page in 0..(MEMORY_MIB << 8) {
            let p = (base + page * 4096) as *mut u64;
            // SAFETY: the frames were allocated for us above and are identity-mapped.
            unsafe {
                p.write_volatile(page);
                sum = sum.wrapping_add(p.read_volatile());
            }
        }
        sum
    });
    measure(turtles, "compute", COMPUTE_ITERATIONS, || compute(COMPUTE_ITERATIONS));
    measure(turtles, "mixed", MIXED_ROUNDS, || {
        let mut acc = 0u64;
        for _ in 0..MIXED_ROUNDS {
            // black_box: the call must not be hoisted out of the loop as invariant.
            acc = acc.rotate_left(7) ^ compute(core::hint::black_box(MIXED_COMPUTE));
            acc = acc.wrapping_add(u64::from(cpuid!(0).eax));
        }
        acc
    });
    log::info!("workload: total ticks={}", cpu::rdtsc() - total);
    true
}

/// The compute loop: `iterations` rounds of xorshift64, returning the final state.
#[inline(never)]
pub fn compute(iterations: u64) -> u64 {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..iterations {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    x
}
