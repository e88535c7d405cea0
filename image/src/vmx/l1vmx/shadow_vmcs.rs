//! Hardware VMCS shadowing for L1 (SDM Vol. 3C 25.10, 30.3): L1's VMREAD/VMWRITE of the fields
//! the bitmaps clear go to a shadow VMCS linked from vmcs01 without an exit. L0 keeps the
//! shadow and vmcs12 in step: vmcs12 into the shadow when L1's current VMCS changes or L0
//! wrote exit information, only the fields a reflected exit changed after a reflection, and
//! L1's shadowed VMWRITEs back into vmcs12 before L0 uses vmcs12.

use nested::caps::{VmxCaps, proc2};
use nested::vmcs::shadow::{
    SHADOW_BITMAP_SIZE, copy_shadow_to_vmcs12, copy_vmcs12_to_shadow, shadow_bitmaps,
};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::NestedVmx;
use nested::vmx::sync::copy_reflected_to_shadow;

use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx as insn;
use crate::vmx::vmxon::{VmxError, zeroed_frame};

/// The shadow VMCS of L1's current VMCS, and the vmcs01 it is linked from.
pub struct ShadowVmcs {
    region: u64,
    vmwrite_any_field: bool,
    vmcs01: u64,
}

impl ShadowVmcs {
    /// Allocates the shadow VMCS and the VMREAD/VMWRITE bitmaps for `vmcs01` (current);
    /// shadowing itself is turned on at L1's VMXON ([`ShadowVmcs::set_active`]). The link
    /// pointer stays FFFFFFFF_FFFFFFFFH until L1 has a current VMCS.
    pub fn enable(hw: &VmxCaps, vmcs01: u64) -> Result<Self, VmxError> {
        let region = zeroed_frame("shadow VMCS")?;
        // SAFETY: revision identifier with bit 31 (shadow-VMCS indicator) in a fresh region.
        unsafe { (region as *mut u32).write(hw.revision_id() | 1 << 31) };
        // SAFETY: in VMX root operation; the region is ours.
        unsafe { insn::vmclear(region) }.map_err(|e| VmxError::Instruction("VMCLEAR shadow", e))?;
        let vmread = zeroed_frame("VMREAD bitmap")?;
        let vmwrite = zeroed_frame("VMWRITE bitmap")?;
        let any = hw.vmwrite_any_field();
        // SAFETY: two fresh, identity-mapped 4 KiB frames of ours.
        let (r, w) = unsafe {
            (
                &mut *(vmread as *mut [u8; SHADOW_BITMAP_SIZE]),
                &mut *(vmwrite as *mut [u8; SHADOW_BITMAP_SIZE]),
            )
        };
        shadow_bitmaps(any, r, w);
        // SAFETY: vmcs01 is current (L1Vmx::new's contract).
        let mut v01 = unsafe { HwVmcs::current() };
        v01.write(F::VmreadBitmap, vmread);
        v01.write(F::VmwriteBitmap, vmwrite);
        log::info!("vmx: VMCS shadowing on for L1's VMREAD/VMWRITE");
        Ok(ShadowVmcs { region, vmwrite_any_field: any, vmcs01 })
    }

    /// Turns shadowing on in vmcs01 (current) while L1 is in VMX operation, off outside it:
    /// there L1's VMREAD/VMWRITE must exit so that L0 raises #UD (SDM Vol. 2 VMREAD), where
    /// a shadowed one would end in VMfailInvalid (found by the fuzzing L1).
    pub fn set_active(&self, vmx_operation: bool) {
        // SAFETY: vmcs01 is current whenever L1's VMX instructions are emulated.
        let mut v01 = unsafe { HwVmcs::current() };
        let secondary = v01.read(F::SecondaryVmExecControl);
        let bit = u64::from(proc2::VMCS_SHADOWING);
        let want = if vmx_operation { secondary | bit } else { secondary & !bit };
        if want != secondary {
            v01.write(F::SecondaryVmExecControl, want);
        }
    }

    /// Whether "VMWRITE to any field" is on (read-only fields are shadowed for VMWRITE too).
    pub fn vmwrite_any_field(&self) -> bool {
        self.vmwrite_any_field
    }

    /// Makes the shadow VMCS current, runs `f` on it (with whether "VMWRITE to any field" is
    /// on), and makes vmcs01 current again. False when the shadow VMCS cannot be loaded
    /// (logged).
    fn on(&self, f: impl FnOnce(&mut HwVmcs, bool)) -> bool {
        self.on_then(self.vmcs01, f)
    }

    /// [`ShadowVmcs::on`], making `back` current afterwards (vmcs01, or vmcs02 while L2
    /// runs).
    fn on_then(&self, back: u64, f: impl FnOnce(&mut HwVmcs, bool)) -> bool {
        // SAFETY: the shadow VMCS and `back` (vmcs01 or vmcs02) are our own regions; `back`
        // is made current again before returning, and `f` only touches the shadow VMCS.
        unsafe {
            if let Err(e) = insn::vmptrld(self.region) {
                log::error!("VMPTRLD of the shadow VMCS failed: {e}");
                return false;
            }
            f(&mut HwVmcs::current(), self.vmwrite_any_field);
            let _ = insn::vmptrld(back);
        }
        true
    }

    /// The VM-instruction error of L2's VMX instruction that L0 performed for L1 (vmcs12 has
    /// it; the shadow L1 reads it through must too). vmcs02, current while L2 runs, is
    /// current again afterwards.
    pub fn write_error_in_l2(&self, vmcs02: u64, error: u64) {
        // Without "VMWRITE to any field" exit information is not shadowed: L1's VMREAD of it
        // exits and reads vmcs12.
        if !self.vmwrite_any_field {
            return;
        }
        self.on_then(vmcs02, |shadow, _| shadow.write(F::VmInstructionError, error));
    }

    /// Copies vmcs12's shadowed fields into the shadow VMCS (after L0 changed vmcs12), and
    /// points vmcs01's link pointer at it while L1 has a current VMCS. vmcs01 stays current.
    pub fn load_vmcs12(&self, vmx: &NestedVmx) {
        // SAFETY: vmcs01 is current whenever L1 runs; it is the VMCS these writes target.
        let mut v01 = unsafe { HwVmcs::current() };
        if vmx.current.is_none() {
            v01.write(F::VmcsLinkPointer, u64::MAX);
            return;
        }
        if self.on(|shadow, any| copy_vmcs12_to_shadow(&vmx.vmcs12, shadow, any)) {
            v01.write(F::VmcsLinkPointer, self.region);
        }
    }

    /// After a reflected exit: copies to the shadow VMCS exactly the vmcs12 fields a
    /// `SyncScope::Hot` sync may have changed (the shadow equals vmcs12 otherwise: L1's
    /// shadowed VMWRITEs were pulled in at its last VMRESUME, and L0 keeps the shadow up to
    /// date whenever it changes vmcs12 in between). vmcs01 stays current.
    pub fn load_reflected(&self, vmx: &NestedVmx) {
        self.on(|shadow, any| copy_reflected_to_shadow(&vmx.vmcs12, shadow, any));
    }

    /// Writes one field of the shadow VMCS (e.g. the VM-instruction error after VMfailValid).
    pub fn write(&self, vmx: &NestedVmx, field: F, value: u64) {
        if vmx.current.is_some() {
            self.on(|shadow, _| shadow.write(field, value));
        }
    }

    /// Pulls L1's shadowed VMWRITEs into vmcs12 (marking them dirty) before L0 uses vmcs12.
    pub fn store_vmcs12(&self, vmx: &mut NestedVmx) {
        if vmx.current.is_some() {
            self.on(|shadow, _| copy_shadow_to_vmcs12(shadow, &mut vmx.vmcs12, &mut vmx.dirty));
        }
    }
}
