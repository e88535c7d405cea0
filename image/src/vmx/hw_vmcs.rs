//! The hardware implementation of [`nested::vmcs::Vmcs`]: VMREAD/VMWRITE on the current VMCS.

use nested::vmcs::{Vmcs, VmcsField};

use super::insn;

/// The current VMCS of this CPU. Only exists while L0 has a VMCS loaded (`Vcpu` owns it).
pub struct HwVmcs(());

impl HwVmcs {
    /// # Safety
    /// The caller has a current VMCS loaded and keeps it current while this value is used.
    pub unsafe fn current() -> Self {
        HwVmcs(())
    }
}

impl Vmcs for HwVmcs {
    fn read(&self, field: VmcsField) -> u64 {
        insn::vmread(u64::from(field.encoding())).unwrap_or_else(|e| {
            log::error!("VMREAD {} failed: {e}", field.name());
            0
        })
    }

    fn write(&mut self, field: VmcsField, value: u64) {
        // SAFETY: `HwVmcs` exists only while a VMCS is current; which values are safe to
        // write is decided by the callers in `vmx/`, which construct them from L0's own state
        // or check guest-provided values first.
        if let Err(e) = unsafe { insn::vmwrite(u64::from(field.encoding()), value) } {
            log::error!("VMWRITE {} = {value:#x} failed: {e}", field.name());
        }
    }
}
