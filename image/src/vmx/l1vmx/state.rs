//! L1's VMX state as L0 keeps it ([`L1Vmx`]): the emulated VMX of `nested::vmx::NestedVmx`,
//! vmcs02, the shadow VMCS, EPT02 and the nested VPIDs, with what L0 needs in vmcs02 whatever
//! L1 asks ([`L0Config`]). Data only, with its constructor and vmcs02's preemption timer: the
//! rooms beside this file act on it.

use nested::caps::{VmxCaps, entry, exit, feature_control, pin, proc1, proc2};
use nested::ept::shadow::{PmlLog, Resolution, ShadowEpt, ShadowError};
use nested::exits::ExitInfo;
use nested::exits::routing::secondary_controls;
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::merge::L0Config;
use nested::vmx::{NestedVmx, l1_caps};

use super::l1_memory::{Ept01View, Frames};
use super::shadow_vmcs::ShadowVmcs;
use super::vpid::NestedVpids;
use crate::arch::vmcs::HwVmcs;
use crate::guest::memory::GuestMemory;
use crate::vmx::setup;
use crate::vmx::vmxon::{VmxError, zeroed_frame};

/// IA32_FEATURE_CONTROL as L1 sees it when VMX is exposed: locked, VMX outside SMX on.
pub const FEATURE_CONTROL_VMX: u64 = feature_control::LOCK | feature_control::VMX_OUTSIDE_SMX;

/// L1's VMX state and L2's VMCS.
pub struct L1Vmx {
    /// Hardware VMCS shadowing for L1's VMREAD/VMWRITE, when on.
    pub(super) shadowing: Option<ShadowVmcs>,
    pub vmx: NestedVmx,
    pub(super) vmcs01: u64,
    pub(super) vmcs02: u64,
    pub(super) vmcs02_ready: bool,
    /// vmcs02's MSR bitmap: all ones but the bits of [`crate::vmx::exits::L2_PASSTHROUGH`],
    /// which follow L1's bitmap (re-read at every entry to L2).
    pub(super) msr_bitmap02: u64,
    /// `msr_bitmap02` may pass MSRs through: the last merge followed an L1 bitmap. While L1
    /// uses no MSR bitmap every MSR exits to it, and the all-ones bitmap needs no re-merge.
    pub(super) msr_bitmap02_follows_l1: bool,
    /// vmcs02's I/O bitmaps when L0 passes ports through to L1 (an assigned device).
    pub(super) io02: Option<super::io02::IoBitmaps02>,
    pub vmcs02_launched: bool,
    pub in_l2: bool,
    /// The TSC at L2's last VM exit: read right after the hardware exit to L0
    /// (`run::run_loop`), or when L0 itself makes L2 exit to L1 (`l2_exit::signal_exit`).
    /// The VM-exit MSR-store list stores it as IA32_TSC (SDM 27.4: the value at the exit,
    /// not when L0 gets to the list, hundreds of instructions later).
    pub exit_tsc: u64,
    /// EPT02: the shadow of EPT12 and EPT01.
    pub(super) shadow: ShadowEpt,
    /// Nested VPIDs: L1's VPIDs for its L2s (vpid12) to hardware VPIDs (vpid02).
    pub(super) vpids: NestedVpids,
    pub(super) l0: L0Config,
    pub(super) eptp01: u64,
    /// The EPTP vmcs02 holds (0: none yet).
    pub(super) eptp02: u64,
    /// L0 runs the VMX-preemption timer in vmcs02 (for L1's APIC timer or an immediate exit).
    pub timer02: bool,
    /// When vmcs12 runs L2 with L1's own VMX-preemption timer: the TSC at which it expires
    /// (set at L1's VM entry from vmcs12's value), so that L0 can cut vmcs02's timer short
    /// for L1's interrupts and still exit to L1 when L1's timer runs out.
    pub deadline12: Option<u64>,
    /// Exits L2 caused, and how many of them L1 got.
    pub l2_exits: u64,
    pub reflected: u64,
}

impl L1Vmx {
    /// Resolves an EPT violation of L2's (`exit`: the hardware's, or one L0 meets performing
    /// an access for L2) on the EPT02 shadowing vmcs12's EPTP, with L1's page-modification log
    /// emulated on EPT12's dirty flags when vmcs12 enables PML.
    pub(super) fn fill_ept02(
        &mut self,
        exit: &ExitInfo,
        memory: &mut GuestMemory,
        ept01: &Ept01View,
    ) -> Result<Resolution, ShadowError> {
        let eptp12 = self.vmx.vmcs12.ept_pointer;
        let maxphyaddr = self.vmx.maxphyaddr;
        let v12 = &mut self.vmx.vmcs12;
        let pml = (secondary_controls(v12) & proc2::ENABLE_PML != 0)
            .then_some(PmlLog { address: v12.pml_address, index: &mut v12.guest_pml_index });
        self.shadow.handle_violation(
            eptp12,
            exit,
            memory,
            ept01,
            &mut Frames,
            &self.vmx.caps,
            maxphyaddr,
            pml,
        )
    }

    /// Sets up nesting for the guest of vmcs01 (which must be current). `shadowing` asks for
    /// hardware VMCS shadowing when the processor has it.
    pub fn new(hw: &VmxCaps, vmcs01: u64, eptp01: u64, shadowing: bool) -> Result<Self, VmxError> {
        let shadowing = if shadowing && hw.has_vmcs_shadowing() {
            Some(ShadowVmcs::enable(hw, vmcs01)?)
        } else {
            None
        };
        let vmcs02 = zeroed_frame("vmcs02")?;
        // SAFETY: the revision identifier goes in the first 4 bytes of a fresh VMCS region.
        unsafe { (vmcs02 as *mut u32).write(hw.revision_id()) };
        let msr_bitmap02 = zeroed_frame("vmcs02's MSR bitmap")?;
        // SAFETY: a fresh 4-KiB frame that is ours; every MSR access exits until a merge.
        unsafe { core::ptr::write_bytes(msr_bitmap02 as *mut u8, 0xff, 4096) };
        let (cr0_mask, cr4_mask) = setup::cr_masks(hw);
        Ok(L1Vmx {
            shadowing,
            // L1's physical-address width is the processor's: L0's CPUID passes
            // leaf 80000008H through, and the VMX checks use the same width.
            vmx: NestedVmx::new(l1_caps(hw), crate::guest::paging::maxphyaddr()),
            vmcs01,
            vmcs02,
            vmcs02_ready: false,
            msr_bitmap02,
            msr_bitmap02_follows_l1: false,
            io02: None,
            vmcs02_launched: false,
            in_l2: false,
            exit_tsc: 0,
            shadow: ShadowEpt::new(),
            vpids: NestedVpids::new(hw),
            // What L0 needs in vmcs02 whatever L1 asks: its own interrupts and NMIs, every
            // port access (L0 emulates all I/O below it), CR8 (L1's TPR, in its APIC model;
            // dropped when vmcs12 has a TPR shadow: `merge::tpr_shadow_proc1`), EPT (L2 stays
            // inside L1's memory),
            // VPID (L2's TLB entries tagged apart from L1's), and its 64-bit host state. Its
            // interrupts (an assigned device's INTx, `vmx::intx`) are acknowledged on exit, as
            // in vmcs01: unacknowledged, one would stay pending and exit again at every entry.
            l0: L0Config {
                hw: *hw,
                pin: pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING,
                proc1: proc1::UNCONDITIONAL_IO_EXITING
                    | proc1::USE_TSC_OFFSETTING
                    | proc1::ACTIVATE_SECONDARY_CONTROLS
                    | proc1::CR8_LOAD_EXITING
                    | proc1::CR8_STORE_EXITING,
                proc2: proc2::ENABLE_EPT | proc2::ENABLE_VPID,
                // L2's DR7 and IA32_DEBUGCTL saved at every exit (L2 writes DR7 natively),
                // so an exit L0 handles does not lose them and vmcs12 gets them.
                exit: exit::HOST_ADDRESS_SPACE_SIZE
                    | exit::SAVE_IA32_EFER
                    | exit::LOAD_IA32_EFER
                    | exit::SAVE_DEBUG_CONTROLS
                    | exit::ACK_INTERRUPT_ON_EXIT,
                entry: entry::LOAD_IA32_EFER,
                exception_bitmap: 0,
                cr0_mask,
                cr4_mask,
            },
            eptp01,
            eptp02: 0,
            timer02: false,
            deadline12: None,
            l2_exits: 0,
            reflected: 0,
        })
    }

    /// L0 passes some ports through to L1 with vmcs01's I/O bitmaps `a` and `b`: vmcs02
    /// merges them with L1's.
    pub fn pass_io_bitmaps(&mut self, a: u64, b: u64) -> Result<(), VmxError> {
        self.io02 = Some(super::io02::IoBitmaps02::new(a, b)?);
        Ok(())
    }

    /// Runs vmcs02's VMX-preemption timer for L0 with `value` (timer units; 0 exits right
    /// after entry), or stops it. When vmcs12 uses L1's own timer (`deadline12`), vmcs02's
    /// timer runs to the nearer of L1's deadline and L0's `value`: `timer02` says the exit,
    /// when it comes, is L0's (else it is L1's preemption-timer exit). `now` and `shift`
    /// (TSC ticks >> shift = timer units) convert L1's deadline.
    pub fn set_timer02(&mut self, v02: &mut HwVmcs, value: Option<u32>, now: u64, shift: u8) {
        if let Some(deadline) = self.deadline12 {
            let units12 = (deadline.saturating_sub(now) >> shift).min(u64::from(u32::MAX)) as u32;
            let (units, ours) = match value {
                Some(v) if v < units12 => (v, true),
                _ => (units12, false),
            };
            v02.write(F::VmxPreemptionTimerValue, u64::from(units));
            self.timer02 = ours;
            return;
        }
        if self.vmx.vmcs12.pin_based_vm_exec_control & pin::PREEMPTION_TIMER != 0 {
            self.timer02 = false;
            return;
        }
        let bit = u64::from(pin::PREEMPTION_TIMER);
        match value {
            None if !self.timer02 => {}
            None => {
                let pin = v02.read(F::PinBasedVmExecControl);
                v02.write(F::PinBasedVmExecControl, pin & !bit);
                self.timer02 = false;
            }
            Some(units) => {
                // A control merge since the last entry may have rewritten the pin controls.
                let pin = v02.read(F::PinBasedVmExecControl);
                if pin & bit == 0 {
                    v02.write(F::PinBasedVmExecControl, pin | bit);
                }
                v02.write(F::VmxPreemptionTimerValue, u64::from(units));
                self.timer02 = true;
            }
        }
    }
}
