//! Rate-limited logging for paths a guest can trigger (Firecracker `rate_limited.rs`): a guest
//! must not be able to flood L0's console.

use core::sync::atomic::{AtomicU32, Ordering};

/// Allows the first `limit` messages of one kind, says once that the rest are suppressed,
/// and counts them.
pub struct RateLimit {
    left: AtomicU32,
    suppressed: AtomicU32,
}

impl RateLimit {
    pub const fn new(limit: u32) -> Self {
        RateLimit { left: AtomicU32::new(limit), suppressed: AtomicU32::new(0) }
    }

    /// True if this message may be logged.
    pub fn allow(&self) -> bool {
        let left = self.left.load(Ordering::Relaxed);
        if left > 0 {
            self.left.store(left - 1, Ordering::Relaxed);
            return true;
        }
        if self.suppressed.fetch_add(1, Ordering::Relaxed) == 0 {
            log::warn!("(further messages of this kind are suppressed)");
        }
        false
    }
}
