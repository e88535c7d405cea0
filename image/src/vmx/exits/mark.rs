//! Turtles' mark leaf (CPUID 0x40000004, ECX = a tag): a guest marks the boundaries of the
//! parts of a benchmark (the Linux bench's `/init`, `src/linux_init.sh`). Each level that
//! answers the leaf keeps a snapshot of its exit counters by reason and its TSC (at the bottom
//! L0 under Bochs: emulated instructions) and, when it runs under turtles itself, executes the
//! leaf with the same tag, so every level below snapshots the same boundary. Nothing is
//! printed while the guest runs (printing would be charged to the part measured): the
//! snapshots come out at the end of the run, one `mark: ...` line each, for the runner to
//! subtract (`src/linux_bench.rs`).

use hermit_sync::SpinMutex;
use nested::exits::ExitReason;
use nested::exits::reasons::{EXIT_REASON_SLOTS, ExitCounters};

use crate::arch::cpu;
use crate::vmx::guest::Guest;

/// The leaf.
pub const LEAF: u32 = 0x4000_0004;
const _: () = assert!(LEAF == crate::drivers::MARK_LEAF);

/// Snapshots kept; later marks are counted as dropped.
const MAX_MARKS: usize = 24;

#[derive(Clone)]
struct Snapshot {
    tag: u32,
    tsc: u64,
    counters: ExitCounters,
    /// L2's exits and those reflected to L1 (0 without nested VMX).
    l2_exits: u64,
    reflected: u64,
}

struct Marks {
    taken: [Option<Snapshot>; MAX_MARKS],
    len: usize,
    dropped: u64,
}

const EMPTY: Option<Snapshot> = None;

static MARKS: SpinMutex<Marks> =
    SpinMutex::new(Marks { taken: [EMPTY; MAX_MARKS], len: 0, dropped: 0 });

/// Answers the mark leaf: snapshots this level, then lets the level below snapshot the same
/// tag. Returns the leaf's value: the number of marks this level has taken (EAX).
pub fn mark(g: &Guest, tag: u32) -> [u32; 4] {
    let tsc = cpu::rdtsc();
    let (l2_exits, reflected) = g.nested.as_ref().map_or((0, 0), |n| (n.l2_exits, n.reflected));
    let snapshot = Snapshot { tag, tsc, counters: g.counters.clone(), l2_exits, reflected };
    let taken = {
        let mut marks = MARKS.lock();
        let len = marks.len;
        match marks.taken.get_mut(len) {
            Some(slot) => {
                *slot = Some(snapshot);
                marks.len += 1;
            }
            None => marks.dropped += 1,
        }
        marks.len as u32
    };
    if g.depth > 1 {
        // Under turtles: the level below marks the same boundary.
        let _ = cpu::cpuid(LEAF, tag);
    }
    [taken, 0, 0, 0]
}

/// Logs the marks taken, one line each: `mark: tag=T tsc=X l2-exits=A reflected=B
/// Reason=N ...` (the reasons with a nonzero count).
pub fn report() {
    let marks = MARKS.lock();
    for snapshot in marks.taken.iter().flatten() {
        log::info!(
            "mark: tag={} tsc={} l2-exits={} reflected={}{}",
            snapshot.tag,
            snapshot.tsc,
            snapshot.l2_exits,
            snapshot.reflected,
            Reasons(&snapshot.counters)
        );
    }
    if marks.dropped > 0 {
        log::warn!("mark: {} marks dropped (at most {MAX_MARKS} are kept)", marks.dropped);
    }
}

/// ` Name=N` for each reason counted.
struct Reasons<'a>(&'a ExitCounters);

impl core::fmt::Display for Reasons<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for (number, &count) in self.0.per_reason.iter().enumerate().take(EXIT_REASON_SLOTS) {
            if count == 0 {
                continue;
            }
            match ExitReason::from_basic(number as u16) {
                Some(reason) => write!(f, " {reason:?}={count}")?,
                None => write!(f, " reason-{number}={count}")?,
            }
        }
        if self.0.unknown > 0 {
            write!(f, " unknown={}", self.0.unknown)?;
        }
        Ok(())
    }
}
