//! KVM's own counters for the run, as the host's debugfs shows them
//! (`/sys/kernel/debug/kvm/<counter>`: the sum over the live VMs, so the launcher reads them
//! before its VM goes away; in the KVM initramfs ours is the only VM). Printed as one line,
//! `kvm: stats: exits=N io_exits=N ...`, which `bench vs-kvm` reads.

use std::path::Path;

/// Where debugfs puts KVM's summed counters.
pub const DEBUGFS_KVM: &str = "/sys/kernel/debug/kvm";
/// The counters printed (those the kernel has; Linux 6.1 has all of them).
pub const COUNTERS: [&str; 6] =
    ["exits", "io_exits", "mmio_exits", "halt_exits", "irq_exits", "nested_run"];

/// The stats line from `dir`, or `None` when no counter is readable (debugfs not mounted).
pub fn line(dir: &Path) -> Option<String> {
    let found: Vec<String> = COUNTERS
        .iter()
        .filter_map(|c| {
            let text = std::fs::read_to_string(dir.join(c)).ok()?;
            let n: u64 = text.trim().parse().ok()?;
            Some(format!("{c}={n}"))
        })
        .collect();
    (!found.is_empty()).then(|| format!("kvm: stats: {}", found.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_in_order_missing_ones_skipped() {
        let dir =
            std::env::temp_dir().join(format!("turtles-launcher-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(line(&dir), None);
        std::fs::write(dir.join("nested_run"), "7\n").unwrap();
        std::fs::write(dir.join("exits"), "1234\n").unwrap();
        std::fs::write(dir.join("io_exits"), "garbage").unwrap();
        assert_eq!(line(&dir).as_deref(), Some("kvm: stats: exits=1234 nested_run=7"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
