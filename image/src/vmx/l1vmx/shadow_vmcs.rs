//! Hardware VMCS shadowing for L1 (SDM Vol. 3C 25.10, 30.3): L1's VMREAD/VMWRITE of the fields
//! the bitmaps clear go to a shadow VMCS linked from vmcs01 without an exit. L0 keeps the
//! shadow and vmcs12 in step: vmcs12 into the shadow when L1's current VMCS changes or L0
//! wrote exit information, only the fields a reflected exit changed after a reflection, and
//! L1's shadowed VMWRITEs back into vmcs12 before L0 uses vmcs12.
//!
//! Two hardware shadow VMCSs, one for L1's current VMCS and one for the VMCS L0 keeps parked
//! (`NestedVmx::parked`, the one current before): when L1 switches back to it, as an L1 with
//! a shadow VMCS of its own does around every exit it reflects, vmcs01's link pointer moves
//! to the shadow that still mirrors it and nothing is copied ([`ShadowVmcs::switch_to`]).

use nested::caps::{VmxCaps, proc2};
use nested::vmcs::shadow::{
    Existing, SHADOW_BITMAP_SIZE, copy_ro_shadow_to_vmcs12, copy_shadow_to_vmcs12,
    copy_vmcs12_to_shadow, lacking_shadow_fields, pass_ro_writes, shadow_bitmaps,
};
use nested::vmcs::{DirtySet, Vmcs, VmcsField as F};
use nested::vmx::NestedVmx;
use nested::vmx::sync::copy_reflected_to_shadow;

use core::cell::Cell;

use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx as insn;
use crate::vmx::vmxon::{VmxError, zeroed_frame};

/// The shadow VMCSs of L1's current (and parked) VMCS, and the vmcs01 they are linked from.
pub struct ShadowVmcs {
    regions: [u64; 2],
    /// The L1 VMCS (its L1-physical address) each region mirrors, if it still does.
    holds: [Cell<Option<u64>>; 2],
    /// The region vmcs01's link pointer names: the current VMCS's (its index in `regions`,
    /// and its address, which every shadow access uses: kept rather than derived from the
    /// index, which `bench check` measured at 11 more ticks per depth-2 round trip).
    active: Cell<usize>,
    region: Cell<u64>,
    vmwrite_any_field: bool,
    vmcs01: u64,
    /// The VMWRITE bitmap (a frame of ours) and the capabilities L1 is shown (the fields its
    /// VMCS has), for [`ShadowVmcs::pass_exit_information`].
    vmwrite_bitmap: u64,
    l1: VmxCaps,
    /// L1's VMWRITEs of exit information go to the shadow (they are copied back at
    /// [`ShadowVmcs::store_vmcs12`]).
    ro_writes: Cell<bool>,
    /// The shadowed fields this processor's VMCS lacks (`None`: it has them all, as bare
    /// metal does): the shadow copies skip them (`Existing`), where a VMREAD or VMWRITE would
    /// fail. Turtles as L1 on a turtles L0 has no guest interrupt status, for one.
    lacking: Option<DirtySet>,
}

impl ShadowVmcs {
    /// Allocates the shadow VMCS and the VMREAD/VMWRITE bitmaps for `vmcs01` (current);
    /// shadowing itself is turned on at L1's VMXON ([`ShadowVmcs::set_active`]). The link
    /// pointer stays FFFFFFFF_FFFFFFFFH until L1 has a current VMCS.
    pub fn enable(hw: &VmxCaps, vmcs01: u64) -> Result<Self, VmxError> {
        let mut regions = [0; 2];
        for region in &mut regions {
            *region = zeroed_frame("shadow VMCS")?;
            // SAFETY: revision identifier with bit 31 (shadow-VMCS indicator) in a fresh
            // region.
            unsafe { (*region as *mut u32).write(hw.revision_id() | 1 << 31) };
            // SAFETY: in VMX root operation; the region is ours.
            unsafe { insn::vmclear(*region) }
                .map_err(|e| VmxError::Instruction("VMCLEAR shadow", e))?;
        }
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
        // Only the fields of the VMCS L1 is shown (its capabilities) are shadowed.
        let l1 = nested::vmx::l1_caps(hw);
        shadow_bitmaps(any, |f| l1.has_field(f), r, w);
        // SAFETY: vmcs01 is current (L1Vmx::new's contract).
        let mut v01 = unsafe { HwVmcs::current() };
        v01.write(F::VmreadBitmap, vmread);
        v01.write(F::VmwriteBitmap, vmwrite);
        log::info!("vmx: VMCS shadowing on for L1's VMREAD/VMWRITE");
        Ok(ShadowVmcs {
            regions,
            holds: [Cell::new(None), Cell::new(None)],
            active: Cell::new(0),
            region: Cell::new(regions[0]),
            vmwrite_any_field: any,
            vmcs01,
            vmwrite_bitmap: vmwrite,
            l1,
            ro_writes: Cell::new(false),
            lacking: lacking_shadow_fields(|f| hw.has_field(f)),
        })
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
    ///
    /// Inlined with the closure: the shadow copies after every reflected exit and before
    /// every VMRESUME are unrolled VMWRITE/VMREAD sequences, ~30 ticks cheaper per round trip
    /// at depth 2 than a call per field (measured by `bench check`).
    #[inline(always)]
    fn on(&self, f: impl FnOnce(&mut HwVmcs, bool)) -> bool {
        self.on_then(self.vmcs01, f)
    }

    /// [`ShadowVmcs::on`], making `back` current afterwards (vmcs01, or vmcs02 while L2
    /// runs).
    #[inline(always)]
    fn on_then(&self, back: u64, f: impl FnOnce(&mut HwVmcs, bool)) -> bool {
        // SAFETY: the shadow VMCS and `back` (vmcs01 or vmcs02) are our own regions; `back`
        // is made current again before returning, and `f` only touches the shadow VMCS.
        unsafe {
            if let Err(e) = insn::vmptrld(self.region.get()) {
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

    /// Copies vmcs12's shadowed fields into a shadow VMCS (after L0 changed vmcs12, or L1
    /// made another VMCS current), and points vmcs01's link pointer at it while L1 has a
    /// current VMCS. The region is the one mirroring the current VMCS if any, else the one
    /// not mirroring the parked VMCS. vmcs01 stays current.
    pub fn load_vmcs12(&self, vmx: &NestedVmx) {
        // SAFETY: vmcs01 is current whenever L1 runs; it is the VMCS these writes target.
        let mut v01 = unsafe { HwVmcs::current() };
        let Some(current) = vmx.current else {
            v01.write(F::VmcsLinkPointer, u64::MAX);
            return;
        };
        let parked = vmx.parked.as_ref().map(|p| p.ptr.0);
        let i = self.holding(current.0).unwrap_or_else(|| match self.holding_opt(parked) {
            Some(p) => 1 - p,
            None => self.active.get(),
        });
        self.activate(i);
        self.holds[i].set(None);
        let copied = self.on(|shadow, any| match &self.lacking {
            None => copy_vmcs12_to_shadow(&vmx.vmcs12, shadow, any),
            Some(lacking) => {
                copy_vmcs12_to_shadow(&vmx.vmcs12, &mut Existing { vmcs: shadow, lacking }, any)
            }
        });
        if copied {
            self.holds[i].set(Some(current.0));
            v01.write(F::VmcsLinkPointer, self.regions[i]);
        }
    }

    /// L1 made the parked VMCS current again (`NestedVmx` swapped it in without a copy):
    /// the link pointer moves to the shadow that still mirrors it, or it is copied in as by
    /// [`ShadowVmcs::load_vmcs12`] if none does. vmcs01 stays current.
    pub fn switch_to(&self, vmx: &NestedVmx) {
        match vmx.current.and_then(|c| self.holding(c.0)) {
            Some(i) => {
                self.activate(i);
                // SAFETY: vmcs01 is current whenever L1 runs.
                unsafe { HwVmcs::current() }.write(F::VmcsLinkPointer, self.regions[i]);
            }
            None => self.load_vmcs12(vmx),
        }
    }

    /// L0 changed the VMCS at L1-physical `ptr` while it was not current (L2's VMWRITE to a
    /// parked shadow VMCS): no shadow mirrors it any more.
    pub fn forget(&self, ptr: u64) {
        if let Some(i) = self.holding(ptr) {
            self.holds[i].set(None);
        }
    }

    fn activate(&self, i: usize) {
        self.active.set(i);
        self.region.set(self.regions[i]);
    }

    /// The region mirroring L1's VMCS at `ptr`.
    fn holding(&self, ptr: u64) -> Option<usize> {
        (0..2).find(|&i| self.holds[i].get() == Some(ptr))
    }

    fn holding_opt(&self, ptr: Option<u64>) -> Option<usize> {
        ptr.and_then(|p| self.holding(p))
    }

    /// After a reflected exit: copies to the shadow VMCS exactly the vmcs12 fields a
    /// `SyncScope::Hot` sync may have changed (the shadow equals vmcs12 otherwise: L1's
    /// shadowed VMWRITEs were pulled in at its last VMRESUME, and L0 keeps the shadow up to
    /// date whenever it changes vmcs12 in between). vmcs01 stays current.
    #[inline]
    pub fn load_reflected(&self, vmx: &NestedVmx) {
        self.on(|shadow, any| match &self.lacking {
            None => copy_reflected_to_shadow(&vmx.vmcs12, shadow, any),
            Some(lacking) => {
                copy_reflected_to_shadow(&vmx.vmcs12, &mut Existing { vmcs: shadow, lacking }, any)
            }
        });
    }

    /// Writes one field of the shadow VMCS (e.g. the VM-instruction error after VMfailValid).
    pub fn write(&self, vmx: &NestedVmx, field: F, value: u64) {
        if vmx.current.is_some() && !self.lacking.is_some_and(|l| l.contains(field)) {
            self.on(|shadow, _| shadow.write(field, value));
        }
    }

    /// Pulls L1's shadowed VMWRITEs into vmcs12 (marking them dirty) before L0 uses vmcs12,
    /// with the exit information once L1 writes that through the shadow too.
    #[inline]
    pub fn store_vmcs12(&self, vmx: &mut NestedVmx) {
        if vmx.current.is_some() {
            let ro = self.ro_writes.get();
            // The same copy-back on the hardware shadow or on the view of it without the
            // fields this processor lacks.
            #[inline(always)]
            fn store(shadow: &impl Vmcs, vmx: &mut NestedVmx, ro: bool) {
                copy_shadow_to_vmcs12(shadow, &mut vmx.vmcs12, &mut vmx.dirty);
                if ro {
                    copy_ro_shadow_to_vmcs12(shadow, &mut vmx.vmcs12);
                }
            }
            self.on(|shadow, _| match &self.lacking {
                None => store(shadow, vmx, ro),
                Some(lacking) => store(&Existing { vmcs: shadow, lacking }, vmx, ro),
            });
        }
    }

    /// L1 wrote an exit-information field (its VMWRITE exited): an L1 that does is reflecting
    /// exits to a guest hypervisor of its own through a shadow VMCS, about a dozen such
    /// VMWRITEs per exit. From now on they go to the shadow without exiting (a dozen fewer
    /// L0 exits per round trip at depth 3), and [`ShadowVmcs::store_vmcs12`] copies them
    /// back. An L1 that never writes them (running its guests itself) keeps the cheaper
    /// copy-back. Needs "VMWRITE to any field", as the shadow does to hold them.
    #[cold]
    pub fn pass_exit_information(&self) {
        if self.ro_writes.get() || !self.vmwrite_any_field {
            return;
        }
        // SAFETY: the VMWRITE bitmap is our own 4-KiB frame, referenced only by vmcs01,
        // which is not in use while L0 runs.
        let w = unsafe { &mut *(self.vmwrite_bitmap as *mut [u8; SHADOW_BITMAP_SIZE]) };
        pass_ro_writes(|f| self.l1.has_field(f), w);
        self.ro_writes.set(true);
        log::info!("vmx: L1 writes exit information: its VMWRITEs of it go to the shadow VMCS");
    }
}
