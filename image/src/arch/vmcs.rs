//! The hardware implementation of [`nested::vmcs::Vmcs`]: VMREAD/VMWRITE on the current VMCS.

use nested::vmcs::{Vmcs, VmcsField};

use super::vmx;

/// The current VMCS of this CPU. Only exists while L0 has a VMCS loaded (the run loop owns it).
pub struct HwVmcs(());

impl HwVmcs {
    /// # Safety
    /// The caller has a current VMCS loaded and keeps it current while this value is used.
    pub unsafe fn current() -> Self {
        HwVmcs(())
    }
}

impl Vmcs for HwVmcs {
    #[inline(always)]
    fn read(&self, field: VmcsField) -> u64 {
        match vmx::vmread(u64::from(field.encoding())) {
            Ok(value) => value,
            Err(e) => read_failed(field, e),
        }
    }

    #[inline(always)]
    fn write(&mut self, field: VmcsField, value: u64) {
        // SAFETY: `HwVmcs` exists only while a VMCS is current; which values are safe to
        // write is decided by the callers in `vmx/`, which construct them from L0's own state
        // or check guest-provided values first.
        if let Err(e) = unsafe { vmx::vmwrite(u64::from(field.encoding()), value) } {
            write_failed(field, value, e);
        }
    }
}

// The failure paths are out of line so that each VMREAD/VMWRITE on the exit path stays a
// few instructions (DESIGN.md 6: the path length is what we measure).

#[cold]
#[inline(never)]
fn read_failed(field: VmcsField, e: vmx::VmFail) -> u64 {
    log::error!("VMREAD {} failed: {e}", field.name());
    0
}

#[cold]
#[inline(never)]
fn write_failed(field: VmcsField, value: u64, e: vmx::VmFail) {
    log::error!("VMWRITE {} = {value:#x} failed: {e}", field.name());
}
