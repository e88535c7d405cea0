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
/// POST-code port: a harmless I/O write every hypervisor intercepts.
const IO_PORT: u16 = 0x80;

/// Reads the hypervisor's exit counter (one CPUID, itself an exit) if `turtles` says we run
/// under turtles.
fn exits(turtles: bool) -> Option<u64> {
    if !turtles {
        return None;
    }
    let r = cpuid!(0x4000_0002);
    Some(u64::from(r.eax) | u64::from(r.ebx) << 32)
}

/// Runs `body` and prints its ticks (and exits under turtles).
fn measure(turtles: bool, name: &str, rounds: u64, body: impl FnOnce() -> u64) {
    let before = exits(turtles);
    let start = cpu::rdtsc();
    let result = body();
    let ticks = cpu::rdtsc() - start;
    let after = exits(turtles);
    // Reading the counter is itself an exit, counted in `after` but not in `before`.
    let exits = before.zip(after).map(|(b, a)| a.saturating_sub(b).saturating_sub(1));
    match exits {
        Some(e) => log::info!(
            "workload: {name} rounds={rounds} ticks={ticks} per-round={} exits={e} result={result:#x}",
            ticks / rounds.max(1)
        ),
        None => log::info!(
            "workload: {name} rounds={rounds} ticks={ticks} per-round={} result={result:#x}",
            ticks / rounds.max(1)
        ),
    }
}

/// Runs every part and prints the results.
pub fn run() -> bool {
    let turtles = crate::platform::under_turtles();
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
    if turtles {
        // HLT with interrupts enabled: a turtles hypervisor resumes us after each one (another
        // hypervisor or bare metal would wait for an interrupt that may never come).
        measure(turtles, "hlt", ROUNDS, || {
            for _ in 0..ROUNDS {
                // SAFETY: no interrupt source is enabled in the leaf, so STI;HLT only makes
                // the hypervisor see a HLT; CLI restores the previous state.
                unsafe { core::arch::asm!("sti; hlt; cli", options(nomem, nostack)) };
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
