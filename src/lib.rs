//! The turtles runner: builds images per config, makes the GRUB ISO, boots QEMU or Bochs,
//! streams the serial console and maps the image's exit marker to its own exit status.

pub mod baseline;
pub mod bench;
pub mod bench_io;
pub mod bench_kvm;
pub mod bench_net;
pub mod devices;
pub mod fingerprint;
pub mod fuzz;
pub mod images;
pub mod iso;
pub mod kvm_guest;
pub mod kvm_host;
pub mod linux;
pub mod linux_bench;
pub mod linux_kvm;
pub mod progress;
pub mod readme;
pub mod run;
pub mod session;
pub mod stats;
pub mod summary;
pub mod svg;
pub mod tools;
pub mod workload;

use std::path::PathBuf;

/// The workspace root (where `configs/` and `target/` are).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Exit statuses of the runner besides the image's own (0 success, 1 failure, 3 no VMX).
pub mod status {
    /// The image reported success.
    pub const SUCCESS: i32 = 0;
    /// The image reported a failure (panic, exception, failed check).
    pub const FAILURE: i32 = 1;
    /// The runner could not do its job (bad config, build failure, missing tool).
    pub const RUNNER_ERROR: i32 = 2;
    /// The image reported that the CPU has no usable VMX.
    pub const NO_VMX: i32 = 3;
    /// A hypervisor level stopped its misbehaving guest, kept running and reported it.
    pub const GUEST_STOPPED: i32 = 4;
    /// The emulator was killed at the timeout.
    pub const TIMEOUT: i32 = 124;
    /// The emulator ended without printing the exit marker.
    pub const NO_MARKER: i32 = 125;

    /// A short name for a status the image or the runner defines; `None` for any other (a
    /// guest's own status passed on, which only that guest can explain).
    pub fn name(code: i32) -> Option<&'static str> {
        Some(match code {
            SUCCESS => "success",
            FAILURE => "failure",
            RUNNER_ERROR => "runner error",
            NO_VMX => "no VMX",
            GUEST_STOPPED => "guest stopped",
            TIMEOUT => "timeout",
            NO_MARKER => "no exit marker",
            _ => return None,
        })
    }
}
