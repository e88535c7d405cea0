//! The launcher's errors: one variant and one message each. All of them end the launcher with
//! [`crate::STATUS_LAUNCHER_ERROR`]; the guest's own status is never one of them.

use std::fmt;
use std::path::PathBuf;

use crate::args::ArgsError;

#[derive(Debug)]
pub enum LaunchError {
    /// The command line.
    Args(ArgsError),
    /// A file named on the command line cannot be read.
    Read { path: PathBuf, error: std::io::Error },
    /// The kernel image cannot be booted (not multiboot/PVH, malformed, too big for memory).
    Load { path: PathBuf, error: loader::LoadError },
    /// Guest memory could not be allocated.
    Memory(String),
    /// A KVM ioctl failed.
    Kvm { what: &'static str, error: kvm_ioctls::Error },
    /// The guest stopped in a way KVM reports as an error (failed entry, internal error).
    Guest(String),
}

impl fmt::Display for LaunchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchError::Args(e) => write!(f, "{e}"),
            LaunchError::Read { path, error } => write!(f, "{}: {error}", path.display()),
            LaunchError::Load { path, error } => {
                write!(f, "{}: cannot boot it: {error}", path.display())
            }
            LaunchError::Memory(e) => write!(f, "guest memory: {e}"),
            LaunchError::Kvm { what, error } => {
                write!(f, "KVM: {what}: {error}")?;
                if *what == "open /dev/kvm" {
                    f.write_str(" (is the kvm module loaded, kvm_intel or kvm_amd?)")?;
                }
                Ok(())
            }
            LaunchError::Guest(e) => write!(f, "guest: {e}"),
        }
    }
}

impl std::error::Error for LaunchError {}

/// `map_err` helper for KVM calls.
pub fn kvm(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> LaunchError {
    move |error| LaunchError::Kvm { what, error }
}
