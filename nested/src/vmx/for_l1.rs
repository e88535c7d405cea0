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
use crate::exits::{ExitInfo, ExitReason, intr_info};
use crate::guest::{Gpr, GuestRegs};
use crate::vmcs::{Vmcs, Vmcs12, VmcsField as F};

use crate::arch::cr0::{CD as CR0_CD, NW as CR0_NW, PE as CR0_PE, PG as CR0_PG, TS as CR0_TS};
use crate::arch::cr4::{PAE as CR4_PAE, PCIDE as CR4_PCIDE};
use crate::arch::efer::{LMA as EFER_LMA, LME as EFER_LME};
use crate::arch::segment_ar::L as CS_L;

/// The VM exit an exception raised in L2 while L0 performs an access for L1 becomes when
/// vmcs12's exception bitmap intercepts it (`crate::exits::l1_wants_exit` decides, with the #PF
/// error-code mask and match): reason 0 with the exception's interruption information (type 3,
/// hardware exception; the error code valid if it has one) and error code, and for #PF the
/// faulting linear address as the exit qualification, CR2 left as it was (SDM Vol. 3C 27.1,
/// 27.2.1 Table 28-1, 27.2.2). `instruction_len` is the exiting instruction's, kept for
/// vmcs12 (the field is undefined for a hardware exception); nothing was being delivered, so
/// the IDT-vectoring information is clear.
pub fn exception_exit(e: &Exception, instruction_len: u32) -> ExitInfo {
    let code = if e.error_code.is_some() { intr_info::DELIVER_ERROR_CODE } else { 0 };
    ExitInfo {
        reason: u32::from(ExitReason::ExceptionOrNmi.number()),
        qualification: e.cr2.unwrap_or(0),
        instruction_len,
        intr_info: u32::from(e.vector) | intr_info::TYPE_HARD_EXCEPTION | code | intr_info::VALID,
        intr_error_code: e.error_code.unwrap_or(0),
        ..ExitInfo::default()
    }
}

/// What L0 does after performing the access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForL1 {
    /// Done: advance L2's RIP past the instruction and resume L2.
    Done,
    /// The instruction faults in L2 as it would on the processor: inject, RIP unchanged.
    Fault(Exception),
    /// Not an access this function performs (CR8, which the image performs on L1's local
    /// APIC model; an undefined encoding): the caller handles or reflects the exit.
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
    // MOV to/from a control register uses 64-bit operands in 64-bit mode and 32-bit ones
    // everywhere else (SDM Vol. 2B "MOV—Move to/from Control Registers"): outside 64-bit mode
    // the upper half of the source register is ignored.
    let mode64 = in_64bit_mode(&*vmcs02);
    let operand = |v: u64| if mode64 { v } else { v & 0xffff_ffff };
    match (access, cr) {
        (0, 0) => write_cr0(operand(regs.gpr(gpr)), mode64, v12, vmcs02, hw, l1_caps),
        (0, 4) => write_cr4(operand(regs.gpr(gpr)), v12, vmcs02, hw, l1_caps),
        (0, 3) => {
            // Bit 63 (no-flush with PCIDE) is not stored in CR3; without PCIDE it is
            // reserved. Bits 63:52 are above every MAXPHYADDR: #GP(0) (bits 51:MAXPHYADDR
            // are not checked here, see docs/mutants.md).
            let mut value = operand(regs.gpr(gpr));
            if v12.guest_cr4 & CR4_PCIDE != 0 {
                value &= !(1 << 63);
            }
            if value >> 52 != 0 {
                return ForL1::Fault(Exception::GP0);
            }
            vmcs02.write(F::GuestCr3, value);
            v12.guest_cr3 = value;
            ForL1::Done
        }
        (1, 3) => {
            regs.set_gpr(gpr, operand(vmcs02.read(F::GuestCr3)));
            ForL1::Done
        }
        // CLTS clears CR0.TS unless L1 owns TS (then, with its shadow 0, TS is unchanged;
        // with shadow 1 the exit was L1's).
        (2, _) => {
            let value = v12.guest_cr0 & !CR0_TS;
            write_cr0(value, mode64, v12, vmcs02, hw, l1_caps)
        }
        // LMSW loads CR0[3:1] from bits 19:17 of the qualification (its source operand's
        // bits 3:1) and can set PE (bit 16) but not clear it.
        (3, _) => {
            let src = (qual >> 16) & 0xf;
            let current = l2_view(v12.guest_cr0, v12.cr0_guest_host_mask, v12.cr0_read_shadow);
            let value = (current & !0xe) | src;
            write_cr0(value, mode64, v12, vmcs02, hw, l1_caps)
        }
        _ => ForL1::NotEmulated,
    }
}

/// MOV to CR0 by L2 (also CLTS and LMSW): bits L1 owns keep vmcs12's value (SDM 25.3: the
/// instruction does not modify host-owned bits); the others are checked as the processor
/// checks them in VMX non-root operation under vmcs12 and then loaded.
fn write_cr0<V: Vmcs>(
    value: u64,
    mode64: bool,
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
        || (old & CR0_PG != 0 && new & CR0_PG == 0 && cr4 & CR4_PCIDE != 0)
        // Leaving IA-32e mode is done from compatibility mode (Vol. 3A 10.8.5.4).
        || (mode64 && new & CR0_PG == 0)
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
    // CR4.PCIDE is set only in IA-32e mode and with CR3[11:0] 0 (Vol. 3A 4.10.1).
    let setting_pcide = v12.guest_cr4 & CR4_PCIDE == 0 && new & CR4_PCIDE != 0;
    if new >> 32 != 0
        || !fixed.verify(checked)
        || (long_mode && new & CR4_PAE == 0)
        || (setting_pcide && (!long_mode || v12.guest_cr3 & 0xfff != 0))
    {
        return ForL1::Fault(Exception::GP0);
    }
    v12.guest_cr4 = new;
    vmcs02.write(F::GuestCr4, hw.cr4_fixed().adjust(new));
    vmcs02.write(F::Cr4ReadShadow, l2_view(new, mask12, v12.cr4_read_shadow));
    ForL1::Done
}

/// 64-bit mode: IA-32e mode (EFER.LMA) with a 64-bit code segment (CS.L).
fn in_64bit_mode<V: Vmcs>(vmcs02: &V) -> bool {
    vmcs02.read(F::GuestIa32Efer) & EFER_LMA != 0 && vmcs02.read(F::GuestCsArBytes) & CS_L != 0
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

    const GP: ForL1 = ForL1::Fault(Exception::GP0);

    /// L2 in compatibility mode (IA-32e mode, CS.L 0) instead of 64-bit mode.
    fn compat(v02: &mut FakeVmcs) {
        v02.poke(F::GuestCsArBytes, v02.peek(F::GuestCsArBytes) & !CS_L | 1 << 14);
    }

    /// SDM "MOV—Move to/from Control Registers": with CR4.PCIDE, bit 63 of the source is not
    /// stored; without it, and for bits 62:52 in any case, the write takes #GP(0) in 64-bit
    /// mode and CR3 keeps its value.
    #[test]
    fn mov_to_cr3_bit_63_and_reserved_bits() {
        let mut v12 = valid_vmcs12(&l1());
        v12.guest_cr4 |= CR4_PCIDE;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        r.0[0] = 1 << 63 | 0x7_0000_5001;
        assert_eq!(cr_access(3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!((v12.guest_cr3, v02.peek(F::GuestCr3)), (0x7_0000_5001, 0x7_0000_5001));
        r.0[0] = 1 << 52 | 0x5000;
        assert_eq!(cr_access(3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP);
        v12.guest_cr4 &= !CR4_PCIDE;
        r.0[0] = 1 << 63 | 0x6000;
        assert_eq!(cr_access(3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP);
        assert_eq!((v12.guest_cr3, v02.peek(F::GuestCr3)), (0x7_0000_5001, 0x7_0000_5001));
        r.0[0] = 0x6000;
        assert_eq!(cr_access(3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr3, 0x6000);
    }

    /// Outside 64-bit mode MOV to/from a control register has 32-bit operands: the upper
    /// half of the source is ignored (no #GP for it), MOV from CR3 gives the low 32 bits.
    #[test]
    fn outside_64bit_mode_operands_are_32_bits() {
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        let cr0 = v12.guest_cr0 | CR0_TS;
        r.0[0] = 0xdead_0000_0000_0000 | cr0;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "64-bit");
        compat(&mut v02);
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr0, cr0);
        r.0[1] = 0xdead_0000_0000_7000;
        assert_eq!(
            cr_access(mov_to(3, 1), &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::Done
        );
        assert_eq!(v12.guest_cr3, 0x7000);
        r.0[4] = 0xdead_0000_0000_0000 | v12.guest_cr4;
        let cr4 = v12.guest_cr4;
        assert_eq!(
            cr_access(mov_to(4, 4), &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::Done
        );
        assert_eq!(v12.guest_cr4, cr4);
        v02.poke(F::GuestCr3, 0x1_0000_8000);
        let from_cr3 = 3 | 1 << 4 | 2 << 8;
        assert_eq!(cr_access(from_cr3, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(r.0[2], 0x8000);
        // CS.L means 64-bit mode only in IA-32e mode (a legacy-mode L2 with CS.L 1).
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        v02.poke(F::GuestIa32Efer, 0);
        r.0[0] = 0xdead_0000_0000_0000 | v12.guest_cr0;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
    }

    /// Clearing CR0.PG: #GP(0) in 64-bit mode (IA-32e mode is left from compatibility mode,
    /// Vol. 3A 10.8.5.4); in compatibility mode it leaves IA-32e mode (EFER.LMA and "IA-32e
    /// mode guest" cleared). PE and PG may both be cleared only under unrestricted guest.
    #[test]
    fn clearing_paging() {
        let ia32e = u64::from(entry::IA32E_MODE_GUEST);
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        r.0[0] = v12.guest_cr0 & !CR0_PG;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "64-bit");
        compat(&mut v02);
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v02.peek(F::GuestIa32Efer) & (EFER_LMA | EFER_LME), EFER_LME);
        assert_eq!(v02.peek(F::VmEntryControls) & ia32e, 0);
        assert_eq!(v02.peek(F::GuestCr0) & CR0_PG, 0, "unrestricted guest: PG may be 0");
        r.0[0] = v12.guest_cr0 & !CR0_PE;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr0 & (CR0_PE | CR0_PG), 0);
        // Without unrestricted guest PE and PG are fixed to 1 under vmcs12.
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        v12.secondary_vm_exec_control &= !proc2::UNRESTRICTED_GUEST;
        let mut v02 = setup(&v12);
        compat(&mut v02);
        r.0[0] = v12.guest_cr0 & !CR0_PG;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP);
    }

    /// LMSW (SDM Vol. 2A): loads CR0.MP, EM and TS from its source, both ways, and sets PE
    /// if the source has it but never clears it.
    #[test]
    fn lmsw_loads_bits_3_to_1_and_only_sets_pe() {
        const LOW: u64 = 0xe; // MP, EM, TS
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        v12.guest_cr0 |= LOW;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        let lmsw = |src: u64| 3 << 4 | src << 16;
        let before = v12.guest_cr0;
        assert_eq!(cr_access(lmsw(0), &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr0, before & !LOW, "MP, EM, TS cleared; PE stays");
        assert_eq!(
            cr_access(lmsw(0x6), &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::Done
        );
        assert_eq!(v12.guest_cr0, before & !LOW | 0x6);
        assert_eq!(
            cr_access(lmsw(0x9), &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::Done
        );
        assert_eq!(v12.guest_cr0, before & !LOW | CR0_TS, "PE set again stays set");
        // A real-mode L2 (unrestricted guest) sets PE with LMSW.
        v12.guest_cr0 &= !(CR0_PE | CR0_PG);
        let mut v02 = setup(&v12);
        compat(&mut v02);
        v02.poke(F::GuestIa32Efer, 0);
        assert_eq!(
            cr_access(lmsw(0x1), &mut v12, &mut v02, &mut r, &skylake(), &l1()),
            ForL1::Done
        );
        assert_eq!(v12.guest_cr0 & (CR0_PE | LOW), CR0_PE);
    }

    /// Setting CR0.PG with EFER.LME enters IA-32e mode (Vol. 3A 10.8.5): EFER.LMA and "IA-32e
    /// mode guest" set, #GP(0) without CR4.PAE. MOV to CR0 takes #GP(0) for PG without PE and
    /// for NW without CD (SDM "MOV—Move to/from Control Registers").
    #[test]
    fn enabling_paging_and_invalid_combinations() {
        let ia32e = u64::from(entry::IA32E_MODE_GUEST);
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        v12.guest_cr0 &= !CR0_PG;
        let paged = v12.guest_cr0 | CR0_PG;
        let mut v02 = setup(&v12);
        compat(&mut v02);
        v02.poke(F::GuestIa32Efer, EFER_LME);
        v02.poke(F::VmEntryControls, v02.peek(F::VmEntryControls) & !ia32e);
        let mut r = Regs::default();
        v12.guest_cr4 &= !CR4_PAE;
        // Paging stays off: no IA-32e mode switch, no PAE needed.
        r.0[0] = v12.guest_cr0 | CR0_TS;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v02.peek(F::GuestIa32Efer), EFER_LME);
        v12.guest_cr0 &= !CR0_TS;
        r.0[0] = paged;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "no PAE");
        r.0[0] = paged & !CR0_PE;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "PG, no PE");
        v12.guest_cr4 |= CR4_PAE;
        r.0[0] = paged & !CR0_PE;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "PG, no PE");
        r.0[0] = (paged | CR0_NW) & !CR0_CD;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "NW, no CD");
        assert_eq!(v02.peek(F::GuestIa32Efer), EFER_LME, "nothing changed yet");
        r.0[0] = paged | CR0_NW | CR0_CD;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v02.peek(F::GuestIa32Efer), EFER_LME | EFER_LMA);
        assert_eq!(v02.peek(F::VmEntryControls) & ia32e, ia32e);
        assert_eq!(v12.guest_cr0, paged | CR0_NW | CR0_CD);
        // Without LME, paging on stays 32-bit/PAE paging.
        let mut v12 = valid_vmcs12(&l1());
        v12.cr0_guest_host_mask = 0;
        v12.guest_cr0 &= !CR0_PG;
        v12.guest_cr4 &= !CR4_PAE;
        let mut v02 = setup(&v12);
        compat(&mut v02);
        v02.poke(F::GuestIa32Efer, 0);
        v02.poke(F::VmEntryControls, v02.peek(F::VmEntryControls) & !ia32e);
        r.0[0] = paged;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v02.peek(F::GuestIa32Efer), 0);
        assert_eq!(v02.peek(F::VmEntryControls) & ia32e, 0);
    }

    /// CR4.PCIDE (Vol. 3A 4.10.1): set only in IA-32e mode with CR3[11:0] 0, else #GP(0);
    /// while it is 1, clearing CR0.PG takes #GP(0) (also in compatibility mode).
    #[test]
    fn pcide_rules() {
        let mut v12 = valid_vmcs12(&l1());
        (v12.cr0_guest_host_mask, v12.cr4_guest_host_mask) = (0, 0);
        v12.guest_cr3 = 0x3001;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        let cr4 = v12.guest_cr4;
        r.0[0] = cr4 | CR4_PCIDE;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "CR3[11:0]");
        v12.guest_cr3 = 0x3000;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr4, cr4 | CR4_PCIDE);
        // Now PCID 1 is current: CR4 writes that keep PCIDE are fine.
        v12.guest_cr3 = 0x3001;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        // Clearing PG with PCIDE set, from compatibility mode.
        compat(&mut v02);
        r.0[0] = v12.guest_cr0 & !CR0_PG;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP);
        // Keeping PG is fine.
        r.0[0] = v12.guest_cr0 | CR0_TS;
        assert_eq!(cr_access(0, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        // Outside IA-32e mode PCIDE cannot be set.
        let mut v12 = valid_vmcs12(&l1());
        v12.cr4_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        compat(&mut v02);
        v02.poke(F::GuestIa32Efer, 0);
        r.0[0] = v12.guest_cr4 | CR4_PCIDE;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "no LMA");
    }

    /// MOV to CR4 (SDM Vol. 2B): clearing PAE in IA-32e mode and setting a bit the
    /// processor fixes to 0 in VMX operation (IA32_VMX_CR4_FIXED1: UMIP on the recorded
    /// Skylake) take #GP(0); outside IA-32e mode PAE may be cleared.
    #[test]
    fn cr4_pae_and_bits_fixed_to_0() {
        const UMIP: u64 = crate::arch::cr4::UMIP;
        assert_eq!(l1().cr4_fixed1 & UMIP, 0);
        let mut v12 = valid_vmcs12(&l1());
        v12.cr4_guest_host_mask = 0;
        let mut v02 = setup(&v12);
        let mut r = Regs::default();
        r.0[0] = v12.guest_cr4 | UMIP;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "UMIP");
        r.0[0] = v12.guest_cr4 & !CR4_PAE;
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), GP, "PAE");
        v02.poke(F::GuestIa32Efer, 0);
        compat(&mut v02);
        assert_eq!(cr_access(4, &mut v12, &mut v02, &mut r, &skylake(), &l1()), ForL1::Done);
        assert_eq!(v12.guest_cr4 & CR4_PAE, 0);
    }

    #[test]
    fn an_exception_for_l1_is_the_exit_the_processor_would_make() {
        let gp = exception_exit(&Exception::GP0, 2);
        assert_eq!(gp.reason, 0);
        assert_eq!(gp.intr_info, 0x8000_0b0d, "valid, error code, hardware exception, 13");
        assert_eq!((gp.intr_error_code, gp.qualification, gp.instruction_len), (0, 0, 2));
        assert_eq!(gp.idt_vectoring_info, 0);
        let pf = exception_exit(&Exception::page_fault(0xdead_b000, 6), 2);
        assert_eq!(pf.intr_info, 0x8000_0b0e);
        assert_eq!((pf.intr_error_code, pf.qualification), (6, 0xdead_b000));
        let ud = exception_exit(&Exception::UD, 3);
        assert_eq!(ud.intr_info, 0x8000_0306, "no error code");
        assert_eq!(ud.intr_error_code, 0);
    }

    #[test]
    fn the_exception_bitmap_decides_who_gets_it() {
        use crate::exits::l1_wants_exit;
        use crate::guest::VecMemory;
        let mem = VecMemory::new(0x1000);
        let regs = Regs::default();
        let mut v12 = valid_vmcs12(&l1());
        let wants = |v12: &Vmcs12, e: &Exception| {
            l1_wants_exit(&exception_exit(e, 2), v12, &regs, &mem).unwrap()
        };
        v12.exception_bitmap = 0;
        assert!(!wants(&v12, &Exception::GP0));
        v12.exception_bitmap = 1 << 13;
        assert!(wants(&v12, &Exception::GP0));
        assert!(!wants(&v12, &Exception::UD));
        // #PF: the bit, inverted when the error code does not match (SDM 25.2).
        let pf = Exception::page_fault(0x1000, 2);
        v12.exception_bitmap = 1 << 14;
        (v12.page_fault_error_code_mask, v12.page_fault_error_code_match) = (2, 2);
        assert!(wants(&v12, &pf));
        v12.page_fault_error_code_match = 0;
        assert!(!wants(&v12, &pf));
        v12.exception_bitmap = 0;
        assert!(wants(&v12, &pf));
    }
}
