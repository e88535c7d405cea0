//! Control-register accesses L0 performs for L1 ([`ExitRoute::ForL1`]): L2 wrote a CR bit
//! that only L0 owns in vmcs02 (a bit the hardware fixes, or one L0 intercepts for itself),
//! so the exit is neither L0's business nor wanted by L1. On a real processor running vmcs12
//! the instruction would have completed in L2 without any exit; L0 completes it the same
//! way, on L2's state as vmcs12 describes it (SDM Vol. 3C 25.3 "MOV to CR0/CR4", "CLTS",
//! "LMSW" under guest/host masks; 25.6.6; Vol. 3A 2.5 and Vol. 3C 24.8 for the #GP rules).
//!
//! The bookkeeping matches [`super::sync::sync_vmcs12`]: L2's value of a bit L0 owns but L1
//! does not lives in vmcs02's read shadow, so after the write vmcs02 holds the new value in
//! its guest CR (adjusted to the hardware's fixed bits) and in its read shadow (L2's view),
//! and vmcs12's guest CR has it too.
//!
//! [`ExitRoute::ForL1`]: crate::exits::ExitRoute::ForL1

use super::Exception;
use super::merge::l2_view;
use crate::caps::{VmxCaps, entry, proc2};
use crate::exits::routing::secondary_controls;
use crate::guest::{Gpr, GuestRegs};
use crate::vmcs::{Vmcs, Vmcs12, VmcsField as F};

use crate::arch::cr0::{CD as CR0_CD, NW as CR0_NW, PE as CR0_PE, PG as CR0_PG, TS as CR0_TS};
use crate::arch::cr4::{PAE as CR4_PAE, PCIDE as CR4_PCIDE};
use crate::arch::efer::{LMA as EFER_LMA, LME as EFER_LME};

/// What L0 does after performing the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForL1 {
    /// Done: advance L2's RIP past the instruction and resume L2.
    Done,
    /// The instruction faults in L2 as it would on the processor: inject, RIP unchanged.
    Fault(Exception),
    /// Not an access L0 performs (CR8 without a TPR shadow, an undefined encoding): the
    /// caller reflects the exit.
    NotEmulated,
}

/// Performs the control-register access of a CR-access exit (qualification per SDM Table
/// 28-3) for L1 on L2's state. `regs` are L2's registers; `hw` the hardware's capabilities
/// (vmcs02's fixed bits); `l1_caps` what L1 was offered (the fixed bits L2 lives under).
pub fn cr_access<V: Vmcs>(
    qual: u64,
    v12: &mut Vmcs12,
    vmcs02: &mut V,
    regs: &mut impl GuestRegs,
    hw: &VmxCaps,
    l1_caps: &VmxCaps,
) -> ForL1 {
    let cr = qual & 0xf;
    let access = (qual >> 4) & 3;
    let gpr = Gpr::from_index((qual >> 8) as u32 & 0xf);
    match (access, cr) {
        (0, 0) => {
            let value = regs.gpr(gpr);
            write_cr0(value, v12, vmcs02, hw, l1_caps)
        }
        (0, 4) => write_cr4(regs.gpr(gpr), v12, vmcs02, hw, l1_caps),
        (0, 3) => {
            // Bit 63 (no-flush with PCIDE) is not stored in CR3.
            let mut value = regs.gpr(gpr);
            if v12.guest_cr4 & CR4_PCIDE != 0 {
                value &= !(1 << 63);
            }
            vmcs02.write(F::GuestCr3, value);
            v12.guest_cr3 = value;
            ForL1::Done
        }
        (1, 3) => {
            regs.set_gpr(gpr, vmcs02.read(F::GuestCr3));
            ForL1::Done
        }
        // CLTS clears CR0.TS unless L1 owns TS (then, with its shadow 0, TS is unchanged;
        // with shadow 1 the exit was L1's).
        (2, _) => {
            let value = v12.guest_cr0 & !CR0_TS;
            write_cr0(value, v12, vmcs02, hw, l1_caps)
        }
        // LMSW loads CR0[3:0] from bits 31:16 of the qualification but cannot clear PE.
        (3, _) => {
            let src = (qual >> 16) & 0xf;
            let current = l2_view(v12.guest_cr0, v12.cr0_guest_host_mask, v12.cr0_read_shadow);
            let value = (current & !0xe) | (src & 0xe) | (current & CR0_PE) | (src & CR0_PE);
            write_cr0(value, v12, vmcs02, hw, l1_caps)
        }
        _ => ForL1::NotEmulated,
    }
}

/// MOV to CR0 by L2 (also CLTS and LMSW): bits L1 owns keep vmcs12's value (SDM 25.3: the
/// instruction does not modify host-owned bits); the others are checked as the processor
/// checks them in VMX non-root operation under vmcs12 and then loaded.
fn write_cr0<V: Vmcs>(
    value: u64,
    v12: &mut Vmcs12,
    vmcs02: &mut V,
    hw: &VmxCaps,
    l1_caps: &VmxCaps,
) -> ForL1 {
    let mask12 = v12.cr0_guest_host_mask;
    let new = (value & !mask12) | (v12.guest_cr0 & mask12);
    let old = v12.guest_cr0;
    let mut fixed = l1_caps.cr0_fixed();
    if secondary_controls(v12) & proc2::UNRESTRICTED_GUEST != 0 {
        fixed.fixed0 &= !(CR0_PE | CR0_PG);
    }
    // The fixed bits constrain only what the write changes (owned bits are vmcs12's).
    let checked = (new & !mask12) | (fixed.adjust(new) & mask12);
    let efer = vmcs02.read(F::GuestIa32Efer);
    let cr4 = v12.guest_cr4;
    let enabling_long_mode = old & CR0_PG == 0 && new & CR0_PG != 0 && efer & EFER_LME != 0;
    if new >> 32 != 0
        || !fixed.verify(checked)
        || (new & CR0_PG != 0 && new & CR0_PE == 0)
        || (new & CR0_NW != 0 && new & CR0_CD == 0)
        || (enabling_long_mode && cr4 & CR4_PAE == 0)
        || (old & CR0_PG != 0 && new & CR0_PG == 0 && efer & EFER_LMA != 0 && cr4 & CR4_PCIDE != 0)
    {
        return ForL1::Fault(Exception::GP0);
    }
    // Paging on or off with EFER.LME switches IA-32e mode (Vol. 3A 10.8.5), which vmcs02
    // records in EFER.LMA and its "IA-32e mode guest" entry control.
    if (old ^ new) & CR0_PG != 0 && efer & EFER_LME != 0 {
        let lma = new & CR0_PG != 0;
        let entry_controls = vmcs02.read(F::VmEntryControls);
        let ia32e = u64::from(entry::IA32E_MODE_GUEST);
        if lma {
            vmcs02.write(F::GuestIa32Efer, efer | EFER_LMA);
            vmcs02.write(F::VmEntryControls, entry_controls | ia32e);
        } else {
            vmcs02.write(F::GuestIa32Efer, efer & !EFER_LMA);
            vmcs02.write(F::VmEntryControls, entry_controls & !ia32e);
        }
    }
    let mut fixed02 = hw.cr0_fixed();
    if vmcs02.read(F::SecondaryVmExecControl) as u32 & proc2::UNRESTRICTED_GUEST != 0 {
        fixed02.fixed0 &= !(CR0_PE | CR0_PG);
    }
    v12.guest_cr0 = new;
    vmcs02.write(F::GuestCr0, fixed02.adjust(new));
    vmcs02.write(F::Cr0ReadShadow, l2_view(new, mask12, v12.cr0_read_shadow));
    ForL1::Done
}

/// MOV to CR4 by L2: as [`write_cr0`] with CR4's fixed bits.
fn write_cr4<V: Vmcs>(
    value: u64,
    v12: &mut Vmcs12,
    vmcs02: &mut V,
    hw: &VmxCaps,
    l1_caps: &VmxCaps,
) -> ForL1 {
    let mask12 = v12.cr4_guest_host_mask;
    let new = (value & !mask12) | (v12.guest_cr4 & mask12);
    let fixed = l1_caps.cr4_fixed();
    let checked = (new & !mask12) | (fixed.adjust(new) & mask12);
    let long_mode = vmcs02.read(F::GuestIa32Efer) & EFER_LMA != 0;
    if new >> 32 != 0 || !fixed.verify(checked) || (long_mode && new & CR4_PAE == 0) {
        return ForL1::Fault(Exception::GP0);
    }
    v12.guest_cr4 = new;
    vmcs02.write(F::GuestCr4, hw.cr4_fixed().adjust(new));
    vmcs02.write(F::Cr4ReadShadow, l2_view(new, mask12, v12.cr4_read_shadow));
    ForL1::Done
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::Regs;
    use crate::testutil::{l1, skylake, valid_vmcs12};
    use crate::vmcs::FakeVmcs;
    use crate::vmx::sync::{SyncScope, sync_vmcs12};

    const NE: u64 = crate::arch::cr0::NE;

    /// A vmcs02 prepared from `v12` with L0 owning CR0.NE (a fixed bit) and nothing else.
    fn setup(v12: &Vmcs12) -> FakeVmcs {
        let mut v02 = FakeVmcs::new();
        let l0 = crate::vmx::merge::tests::l0();
        let inputs = crate::vmx::merge::tests::inputs();
        crate::vmx::merge::prepare_vmcs02(
            &mut v02,
            v12,
            &crate::vmcs::DirtySet::all(),
            &l0,
            &inputs,
        );
        v02
    }

    fn mov_to(cr: u64, reg: u64) -> u64 {
        cr | reg << 8
    }

    #[test]
    fn clearing_a_bit_only_l0_owns_faults_like_the_processor() {
        // NE is fixed to 1 in VMX operation: L2 clearing it takes #GP(0) when L1 does not
        // own it, as on hardware.
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        r.0[3] = v12.guest_cr0 & !NE;
        let out = cr_access(mov_to(0, 3), &mut v12, &mut v02, &mut r, &skylake(), &l1());
        assert_eq!(out, ForL1::Fault(Exception::GP0));
    }

    #[test]
    fn l1_owned_bits_keep_vmcs12_value_and_the_rest_loads() {
        let mut v12 = valid_vmcs12(&l1());
        // L1 owns NE with shadow 0: L2 sees NE clear and may write 0 or 1 freely.
        v12.cr0_guest_host_mask = NE;
        v12.cr0_read_shadow = 0;
        let mut v02 = setup(&v12);
        let before = v12.guest_cr0;
        let mut r = Regs::default();
        // L2 sets CR0.TS (not owned by anyone) and leaves NE at its view (0).
        r.0[1] = (before & !NE) | CR0_TS;
        // The hardware would not exit for TS; L0 performs a MOV it got for NE's sake.
        let out = cr_access(mov_to(0, 1), &mut v12, &mut v02, &mut r, &skylake(), &l1());
        assert_eq!(out, ForL1::Done);
        assert_eq!(v12.guest_cr0, before | CR0_TS, "NE keeps vmcs12's value");
        assert_eq!(v02.peek(F::GuestCr0), before | CR0_TS);
        assert_eq!(v02.peek(F::Cr0ReadShadow) & NE, 0, "L2 still reads its shadow");
        // A reflected exit later reports the same CR0 to L1.
        let mut synced = v12.clone();
        synced.guest_cr0 &= NE; // sync keeps only the bits L1 owns
        sync_vmcs12(&v02, &mut synced, &Default::default(), SyncScope::Hot);
        assert_eq!(synced.guest_cr0, v12.guest_cr0);
    }

    #[test]
    fn clts_lmsw_and_cr3() {
        let mut v12 = valid_vmcs12(&l1());
        v12.guest_cr0 |= CR0_TS;
        v12.cr0_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        let clts = 2 << 4;
        assert_eq!(cr_access(clts, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr0 & CR0_TS, 0);
        // L1 owns TS with shadow 0: CLTS leaves TS alone.
        v12.guest_cr0 |= CR0_TS;
        v12.cr0_guest_host_mask = CR0_TS;
        assert_eq!(cr_access(clts, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_ne!(v12.guest_cr0 & CR0_TS, 0);
        // LMSW cannot clear PE; it sets TS (bit 3 of the source).
        v12.cr0_guest_host_mask = 0;
        let lmsw = 3 << 4 | 0x8 << 16;
        assert_eq!(cr_access(lmsw, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_ne!(v12.guest_cr0 & CR0_PE, 0);
        assert_ne!(v12.guest_cr0 & CR0_TS, 0);
        // MOV to CR3 then from CR3 into RDX.
        r.0[0] = 0x5000;
        assert_eq!(cr_access(3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!((v12.guest_cr3, v02.peek(F::GuestCr3)), (0x5000, 0x5000));
        let from_cr3 = 3 | 1 << 4 | 2 << 8;
        assert_eq!(cr_access(from_cr3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(r.0[2], 0x5000);
        // CR8 is not L0's to perform.
        let cr8 = 8;
        assert_eq!(
            cr_access(cr8, &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::NotEmulated
        );
    }

    #[test]
    fn cr4_fixed_bits_and_long_mode() {
        let mut v12 = valid_vmcs12(&l1());
        v12.cr4_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        const VMXE: u64 = crate::arch::cr4::VMXE;
        r.0[0] = v12.guest_cr4 & !VMXE;
        let out = cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1());
        assert_eq!(out, ForL1::Fault(Exception::GP0), "VMXE is fixed in VMX operation");
        v12.cr4_guest_host_mask = VMXE;
        let out = cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1());
        assert_eq!(out, ForL1::Done, "L1 owns VMXE: the write leaves it");
        assert_ne!(v12.guest_cr4 & VMXE, 0);
        assert_eq!(v02.peek(F::Cr4ReadShadow) & VMXE, v12.cr4_read_shadow & VMXE);
    }
}
