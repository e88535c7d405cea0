//! One field of a valid vmcs12 made invalid, with the class of failure the SDM prescribes
//! for it (Vol. 3C 26.2 controls: VMfailValid 7; 26.2.2-26.2.4 host state: VMfailValid 8;
//! 26.3 guest state: VM-entry failure, exit reason 33; 26.4 MSR loading: exit reason 34), and
//! EPT12 entries made not-present, misconfigured or pointing outside L1's memory (29.3.3).

use nested::caps::{Allowed, entry, exit, proc1, proc2};
use nested::vmcs::VmcsField as F;

use super::l2::{bit, reason};
use super::rng::Rng;
use super::world::{self, BEYOND_RAM, World};
use crate::arch::vmx_probe::{self as insn, Outcome};

/// The check that must refuse a mutated vmcs12, in the order VM entry checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Controls,
    Host,
    Guest,
    MsrLoad,
}

/// A mutation applied to the current VMCS.
#[derive(Clone, Copy, Debug)]
pub struct Mutation {
    pub name: &'static str,
    pub class: Class,
}

fn read(f: F) -> u64 {
    insn::vmread(u64::from(f.encoding())).1
}

/// Writes the mutation's fields; a refused VMWRITE makes the mutation void.
fn write(fields: &[(F, u64)]) -> bool {
    fields.iter().all(|&(f, v)| insn::vmwrite(u64::from(f.encoding()), v) == Outcome::Succeed)
}

/// A control that violates its capability MSR: a must-be-1 bit cleared or a must-be-0 bit
/// set (SDM 26.2.1.1, A.3).
fn bad_control(rng: &mut Rng, allowed: Allowed, value: u64) -> Option<u64> {
    let must1 = allowed.allowed0;
    let must0 = !allowed.allowed1;
    let clear = rng.chance(1, 2);
    let bits = if (clear && must1 != 0) || must0 == 0 { must1 } else { must0 };
    if bits == 0 {
        return None;
    }
    let set: u32 = (0..32).filter(|b| bits & (1 << b) != 0).count() as u32;
    let nth = rng.below(u64::from(set)) as usize;
    let bit = (0..32).filter(|b| bits & (1 << b) != 0).nth(nth)?;
    Some(if must1 & (1 << bit) != 0 { value & !(1 << bit) } else { value | 1 << bit })
}

/// An address with bit 47 set and bits 63:48 clear: not canonical (SDM 3.3.7.1).
fn noncanonical(rng: &mut Rng) -> u64 {
    1 << 47 | (rng.next() & 0x7fff_ffff_f000)
}

/// Applies one random vmcs12 mutation to the current VMCS (which holds a valid vmcs12, or one
/// mutated before: each mutation reads what it changes, so a second keeps the first).
pub fn vmcs12(w: &World, rng: &mut Rng) -> Option<Mutation> {
    let caps = &w.caps;
    let m = |name, class| Some(Mutation { name, class });
    match rng.below(40) {
        0 => bad_control(rng, caps.pin(), read(F::PinBasedVmExecControl))
            .filter(|&v| write(&[(F::PinBasedVmExecControl, v)]))
            .and(m("pin-controls-vs-capability", Class::Controls)),
        1 => bad_control(rng, caps.primary(), read(F::CpuBasedVmExecControl))
            .filter(|&v| write(&[(F::CpuBasedVmExecControl, v)]))
            .and(m("primary-controls-vs-capability", Class::Controls)),
        2 => bad_control(rng, caps.secondary(), read(F::SecondaryVmExecControl))
            .filter(|&v| write(&[(F::SecondaryVmExecControl, v)]))
            .and(m("secondary-controls-vs-capability", Class::Controls)),
        3 => bad_control(rng, caps.exit_controls(), read(F::VmExitControls))
            .filter(|&v| write(&[(F::VmExitControls, v)]))
            .and(m("exit-controls-vs-capability", Class::Controls)),
        4 => bad_control(rng, caps.entry_controls(), read(F::VmEntryControls))
            .filter(|&v| write(&[(F::VmEntryControls, v)]))
            .and(m("entry-controls-vs-capability", Class::Controls)),
        5 => {
            let n = u64::from(caps.cr3_target_count()) + 1 + rng.below(200);
            write(&[(F::Cr3TargetCount, n)])
                .then_some(())
                .and(m("cr3-target-count", Class::Controls))
        }
        6 => {
            let eptp = w.eptp();
            let (name, bad) = match rng.below(4) {
                0 => ("eptp-memory-type", (eptp & !7) | rng.pick(&[1, 2, 3, 4, 5, 7])),
                1 => ("eptp-walk-length", (eptp & !0x38) | rng.pick(&[0, 1, 2]) << 3),
                2 => ("eptp-reserved-bits", eptp | 1 << (8 + rng.below(4))),
                _ => {
                    ("eptp-beyond-maxphyaddr", eptp | 1 << (u64::from(w.maxphyaddr) + rng.below(8)))
                }
            };
            write(&[(F::EptPointer, bad)]).then_some(()).and(m(name, Class::Controls))
        }
        7 if w.controls.secondary & proc2::ENABLE_VPID != 0 => {
            write(&[(F::VirtualProcessorId, 0)]).then_some(()).and(m("vpid-zero", Class::Controls))
        }
        8 => {
            // Valid bit with a reserved type (1), or an NMI (type 2) whose vector is not 2.
            let info = if rng.chance(1, 2) {
                0x8000_0000 | 1 << 8 | rng.below(256)
            } else {
                0x8000_0000 | 2 << 8 | (3 + rng.below(250))
            };
            write(&[(F::VmEntryInterruptionInfo, info)])
                .then_some(())
                .and(m("entry-interruption-info", Class::Controls))
        }
        9 if w.controls.secondary & proc2::UNRESTRICTED_GUEST != 0 => {
            let v = read(F::SecondaryVmExecControl) & !u64::from(proc2::ENABLE_EPT);
            write(&[(F::SecondaryVmExecControl, v)])
                .then_some(())
                .and(m("unrestricted-guest-without-ept", Class::Controls))
        }
        10 => write(&[(F::VmEntryMsrLoadCount, 1), (F::VmEntryMsrLoadAddr, w.msr_area | 8)])
            .then_some(())
            .and(m("msr-load-address-misaligned", Class::Controls)),
        11 if caps.primary().can_set(proc1::USE_MSR_BITMAPS) => {
            let v = read(F::CpuBasedVmExecControl) | u64::from(proc1::USE_MSR_BITMAPS);
            write(&[(F::MsrBitmap, w.msr_area | 0x10), (F::CpuBasedVmExecControl, v)])
                .then_some(())
                .and(m("msr-bitmap-misaligned", Class::Controls))
        }
        12 if caps.primary().can_set(proc1::USE_IO_BITMAPS) => {
            let v = read(F::CpuBasedVmExecControl) | u64::from(proc1::USE_IO_BITMAPS);
            write(&[(F::IoBitmapA, w.msr_area | 0x123), (F::CpuBasedVmExecControl, v)])
                .then_some(())
                .and(m("io-bitmap-misaligned", Class::Controls))
        }
        13 => write(&[(F::HostCr0, read(F::HostCr0) & !(1 << 31))])
            .then_some(())
            .and(m("host-cr0-without-pg", Class::Host)),
        14 => write(&[(F::HostCr4, read(F::HostCr4) & !(1 << 13))])
            .then_some(())
            .and(m("host-cr4-without-vmxe", Class::Host)),
        15 => {
            let f = rng.pick(&[F::HostCsSelector, F::HostTrSelector]);
            write(&[(f, 0)]).then_some(()).and(m("host-cs-or-tr-selector-zero", Class::Host))
        }
        16 => {
            let f = rng.pick(&[
                F::HostCsSelector,
                F::HostSsSelector,
                F::HostDsSelector,
                F::HostEsSelector,
                F::HostFsSelector,
                F::HostGsSelector,
                F::HostTrSelector,
            ]);
            write(&[(f, read(f) | (1 + rng.below(7)))])
                .then_some(())
                .and(m("host-selector-rpl-or-ti", Class::Host))
        }
        17 => {
            let f = rng.pick(&[
                F::HostFsBase,
                F::HostGsBase,
                F::HostTrBase,
                F::HostGdtrBase,
                F::HostIdtrBase,
                F::HostRip,
                F::HostIa32SysenterEsp,
                F::HostIa32SysenterEip,
            ]);
            write(&[(f, noncanonical(rng))]).then_some(()).and(m("host-noncanonical", Class::Host))
        }
        18 => write(&[(
            F::VmExitControls,
            read(F::VmExitControls) & !u64::from(exit::HOST_ADDRESS_SPACE_SIZE),
        )])
        .then_some(())
        .and(m("host-address-space-size-clear", Class::Host)),
        19 => {
            let efer = read(F::HostIa32Efer);
            let bad =
                if rng.chance(1, 2) { efer | 1 << (2 + rng.below(6)) } else { efer & !(0x500) };
            write(&[(F::HostIa32Efer, bad)]).then_some(()).and(m("host-efer", Class::Host))
        }
        20 => {
            write(&[(F::HostCr3, read(F::HostCr3) | 1 << (u64::from(w.maxphyaddr) + rng.below(8)))])
                .then_some(())
                .and(m("host-cr3-beyond-maxphyaddr", Class::Host))
        }
        21 if w.controls.exit & exit::LOAD_IA32_PAT != 0 => {
            let bad = read(F::HostIa32Pat) & !0xff | rng.pick(&[2, 3, 8, 0xff]);
            write(&[(F::HostIa32Pat, bad)]).then_some(()).and(m("host-pat", Class::Host))
        }
        22 => write(&[(F::GuestTrArBytes, 1 << 16)])
            .then_some(())
            .and(m("guest-tr-unusable", Class::Guest)),
        23 => {
            let bad = if rng.chance(1, 2) { 0 } else { 0x2 | 1 << rng.pick(&[3, 5, 15, 22, 40]) };
            write(&[(F::GuestRflags, bad)])
                .then_some(())
                .and(m("guest-rflags-reserved", Class::Guest))
        }
        24 => write(&[(F::GuestActivityState, 4 + rng.below(1000))])
            .then_some(())
            .and(m("guest-activity-state", Class::Guest)),
        25 => write(&[(F::VmcsLinkPointer, w.junk | (1 + rng.below(0xfff)))])
            .then_some(())
            .and(m("guest-vmcs-link-pointer", Class::Guest)),
        26 => write(&[(F::GuestCr0, (read(F::GuestCr0) | 1 << 31) & !1)])
            .then_some(())
            .and(m("guest-cr0-pg-without-pe", Class::Guest)),
        27 => write(&[(F::GuestInterruptibilityInfo, 1 << (5 + rng.below(27)))])
            .then_some(())
            .and(m("guest-interruptibility-reserved", Class::Guest)),
        28 => write(&[(F::GuestCsArBytes, rng.pick(&[0xc091, 0xc081, 0xc093 & !0x80]))])
            .then_some(())
            .and(m("guest-cs-access-rights", Class::Guest)),
        29 => {
            let bad = if rng.chance(1, 2) { 1 << rng.pick(&[1, 2, 3, 9, 12, 20]) } else { 1 << 10 };
            write(&[(F::GuestIa32Efer, bad)]).then_some(()).and(m("guest-efer", Class::Guest))
        }
        30 => write(&[(F::GuestPendingDebugExceptions, 1 << rng.pick(&[4, 5, 13, 15, 17, 40]))])
            .then_some(())
            .and(m("guest-pending-debug-reserved", Class::Guest)),
        31 => write(&[(F::GuestCr4, read(F::GuestCr4) & !(1 << 13))])
            .then_some(())
            .and(m("guest-cr4-without-vmxe", Class::Guest)),
        32 if w.controls.entry & entry::LOAD_DEBUG_CONTROLS != 0 => {
            write(&[(F::GuestDr7, 0x400 | 1 << (32 + rng.below(32)))])
                .then_some(())
                .and(m("guest-dr7-high", Class::Guest))
        }
        33 => write(&[(F::GuestRip, read(F::GuestRip) | 1 << (32 + rng.below(32)))])
            .then_some(())
            .and(m("guest-rip-high-outside-64-bit", Class::Guest)),
        34..=37 => {
            let (name, index, reserved) = match rng.below(4) {
                0 => ("msr-load-x2apic", 0x800 + rng.below(256), 0),
                1 => ("msr-load-reserved-bits", 0x10, 1 + rng.below(u64::from(u32::MAX))),
                2 => ("msr-load-fs-gs-base", 0xc000_0100 + rng.below(2), 0),
                _ => ("msr-load-smm-monitor-ctl", 0x9b, 0),
            };
            world::poke(w.msr_area, index | reserved << 32);
            world::poke(w.msr_area + 8, 0);
            // A list set up by an earlier mutation keeps its (maybe misaligned) address.
            let addr = if read(F::VmEntryMsrLoadCount) != 0 {
                read(F::VmEntryMsrLoadAddr)
            } else {
                w.msr_area
            };
            write(&[(F::VmEntryMsrLoadCount, 1), (F::VmEntryMsrLoadAddr, addr)])
                .then_some(())
                .and(m(name, Class::MsrLoad))
        }
        _ => None,
    }
}

/// Writes 1 to 4 random guest-state fields with random values (SDM 25.4), leaving the
/// activity state (an L2 waiting for a SIPI would never exit) and the preemption-timer value
/// (which bounds L2) alone. Returns how many were written.
pub fn wild_guest(rng: &mut Rng) -> usize {
    let guest: [F; 64] = {
        let mut out = [F::GuestRip; 64];
        let mut n = 0;
        for &f in F::ALL {
            let keep = f.field_type() == nested::vmcs::FieldType::GuestState
                && !matches!(f, F::GuestActivityState | F::VmxPreemptionTimerValue);
            if keep && n < out.len() {
                out[n] = f;
                n += 1;
            }
        }
        out
    };
    let count = guest.iter().filter(|f| **f != F::GuestRip).count() + 1;
    let mut written = 0;
    for _ in 0..1 + rng.below(4) {
        let f = guest[rng.below(count as u64) as usize];
        let value = match rng.below(3) {
            0 => rng.value(),
            1 => read(f) ^ 1 << rng.below(64),
            _ => read(f) ^ rng.below(0x100),
        };
        if write(&[(f, value)]) {
            written += 1;
        }
    }
    written
}

/// Writes 1 to 3 random 32-bit or natural-width control fields (SDM 25.6-25.8), then turns
/// the preemption timer back on so L2 stays bounded. Fields that point the processor at L1
/// memory it would write (MSR-store lists, PML, posted-interrupt and #VE pages) are 64-bit
/// and never chosen, and the MSR-list counts are left alone: a hostile L1 must hurt only
/// itself through L0, and here not even that. Returns how many were written.
pub fn wild_controls(rng: &mut Rng) -> usize {
    use nested::vmcs::{FieldType, Width};
    let mut fields = [F::PinBasedVmExecControl; 48];
    let mut n = 0;
    for &f in F::ALL {
        let keep = f.field_type() == FieldType::Control
            && matches!(f.width(), Width::Bits32 | Width::Natural)
            && !matches!(
                f,
                F::VmExitMsrStoreCount | F::VmExitMsrLoadCount | F::VmEntryMsrLoadCount
            );
        if keep && n < fields.len() {
            fields[n] = f;
            n += 1;
        }
    }
    let mut written = 0;
    for _ in 0..1 + rng.below(3) {
        let f = fields[rng.below(n as u64) as usize];
        let value = match rng.below(3) {
            0 => rng.value() & 0xffff_ffff,
            1 => read(f) ^ 1 << rng.below(32),
            _ => read(f) | 1 << rng.below(32),
        };
        if write(&[(f, value)]) {
            written += 1;
        }
    }
    let timer = u64::from(nested::caps::pin::PREEMPTION_TIMER);
    write(&[(F::PinBasedVmExecControl, read(F::PinBasedVmExecControl) | timer)]);
    written
}

/// Mutates EPT12 around `page` (a data page L2 touches) or at an upper level; the result is
/// some mix of EPT violations (48) and misconfigurations (49) when L2 walks it, plus the
/// exit reasons returned: a 2-MiB page beyond L1's memory holds L2's code and IDT, so L2's
/// first fetch reads all ones (FF FF, #UD), an exception exit (0) if vmcs12 intercepts #UD
/// (else delivering it reads the IDT there, an EPT violation).
pub fn ept12(w: &World, rng: &mut Rng, page: u64) -> (&'static str, u64) {
    let [pml4, pdpt, pd, pt] = w.ept;
    let pte = pt + page * 8;
    let target = |rng: &mut Rng| {
        if rng.chance(1, 3) {
            BEYOND_RAM + rng.below(0x100) * 4096
        } else {
            w.block + (2 + rng.below(510)) * 4096
        }
    };
    match rng.below(9) {
        0 => {
            world::poke(pte, 0);
            ("pte-not-present", 0)
        }
        1 => {
            world::poke(pte, (w.block + page * 4096) | 0b010 | 6 << 3);
            ("pte-write-only", 0)
        }
        2 => {
            world::poke(pte, (w.block + page * 4096) | 0b111 | rng.pick(&[2, 3, 7]) << 3);
            ("pte-reserved-memory-type", 0)
        }
        3 => {
            let bit = u64::from(w.maxphyaddr) + rng.below(52 - u64::from(w.maxphyaddr));
            world::poke(pte, (w.block + page * 4096) | 0b111 | 6 << 3 | 1 << bit);
            ("pte-reserved-address-bits", 0)
        }
        4 => {
            world::poke(pte, (BEYOND_RAM + rng.below(0x1000) * 4096) | 0b111 | 6 << 3);
            ("pte-beyond-l1-memory", 0)
        }
        5 => {
            world::poke(pte, target(rng) | (rng.next() & 0xff7));
            ("pte-random-attributes", 0)
        }
        6 => {
            let t = rng.pick(&[pml4, pdpt, pd]);
            world::poke(t, 0);
            ("upper-level-not-present", 0)
        }
        7 => {
            // Bits 6:3 of a non-leaf entry and address bits beyond MAXPHYADDR are reserved.
            let level = rng.below(3) as usize;
            let bad = rng.pick(&[1 << 3, 1 << 4, 1 << 5, 1 << 6, 1 << 51]);
            world::poke(w.ept[level], w.ept[level + 1] | 0b111 | bad);
            ("upper-level-reserved-bits", 0)
        }
        _ => {
            world::poke(pd, BEYOND_RAM | 0b111 | 6 << 3 | 1 << 7);
            ("pde-2m-beyond-l1-memory", bit(reason::EXCEPTION_OR_NMI))
        }
    }
}
