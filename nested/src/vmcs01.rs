//! L0's own VMCS (vmcs01) controls, chosen as a pure function of [`VmxCaps`]: what L0 needs,
//! what it wants if the hardware allows, and what the hardware forces (SDM Vol. 3D A.3-A.5).
//! A missing need is an error naming the capability, so L0 can say why it cannot run guests.

use core::fmt;

use crate::caps::{Allowed, VmxCaps, entry, exit, pin, proc1, proc2};

/// Control values for vmcs01 (legal for the hardware by construction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Vmcs01Controls {
    pub pin: u32,
    pub primary: u32,
    pub secondary: u32,
    pub exit: u32,
    pub entry: u32,
}

/// A VMX capability L0 needs but the processor lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MissingCapability {
    /// The control's SDM name.
    pub name: &'static str,
    /// The capability MSR that lacks it.
    pub msr: &'static str,
}

impl fmt::Display for MissingCapability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the processor lacks the VMX control `{}` ({} does not allow it)",
            self.name, self.msr
        )
    }
}

type Need = (u32, &'static str);

const PIN_NEEDS: &[Need] = &[
    (pin::EXTERNAL_INTERRUPT_EXITING, "external-interrupt exiting"),
    (pin::NMI_EXITING, "NMI exiting"),
];
const PIN_WANTS: u32 = pin::VIRTUAL_NMIS | pin::PREEMPTION_TIMER;

const PRIMARY_NEEDS: &[Need] = &[
    (proc1::HLT_EXITING, "HLT exiting"),
    (proc1::UNCONDITIONAL_IO_EXITING, "unconditional I/O exiting"),
    (proc1::ACTIVATE_SECONDARY_CONTROLS, "activate secondary controls"),
    // CR8 is the guest's TPR, in L0's model of its local APIC; run natively it would be the
    // processor's, through which L0's own interrupts arrive.
    (proc1::CR8_LOAD_EXITING, "CR8-load exiting"),
    (proc1::CR8_STORE_EXITING, "CR8-store exiting"),
];
/// L0 leaves CR3 accesses, RDTSC and INVLPG to the guest (EPT makes them harmless); the
/// hardware may still force some of them on (allowed0), and L0 handles those exits. TSC
/// offsetting carries the guest's own TSC once it writes IA32_TSC.
const PRIMARY_WANTS: u32 =
    proc1::MWAIT_EXITING | proc1::MONITOR_EXITING | proc1::USE_TSC_OFFSETTING;

const SECONDARY_NEEDS: &[Need] =
    &[(proc2::ENABLE_EPT, "enable EPT"), (proc2::UNRESTRICTED_GUEST, "unrestricted guest")];
const SECONDARY_WANTS: u32 =
    proc2::ENABLE_VPID | proc2::ENABLE_RDTSCP | proc2::ENABLE_INVPCID | proc2::ENABLE_XSAVES;

const EXIT_NEEDS: &[Need] = &[
    (exit::HOST_ADDRESS_SPACE_SIZE, "host address-space size"),
    (exit::SAVE_IA32_EFER, "save IA32_EFER"),
    (exit::LOAD_IA32_EFER, "load IA32_EFER"),
];
/// Saving and loading the debug controls keeps the guest's DR7 and IA32_DEBUGCTL across its
/// exits (a VM exit sets DR7 to 400H and clears IA32_DEBUGCTL, SDM 28.5.1): its hardware
/// breakpoints stay armed and what it writes to IA32_DEBUGCTL (kept in the VMCS) takes effect.
const EXIT_WANTS: u32 = exit::ACK_INTERRUPT_ON_EXIT
    | exit::SAVE_IA32_PAT
    | exit::LOAD_IA32_PAT
    | exit::SAVE_DEBUG_CONTROLS;

const ENTRY_NEEDS: &[Need] = &[(entry::LOAD_IA32_EFER, "load IA32_EFER")];
const ENTRY_WANTS: u32 = entry::LOAD_IA32_PAT | entry::LOAD_DEBUG_CONTROLS;

fn choose_one(
    allowed: Allowed,
    needs: &[Need],
    wants: u32,
    msr: &'static str,
) -> Result<u32, MissingCapability> {
    let mut value = 0;
    for &(bit, name) in needs {
        if !allowed.can_set(bit) {
            return Err(MissingCapability { name, msr });
        }
        value |= bit;
    }
    Ok(allowed.adjust(value | (wants & allowed.allowed1)))
}

/// Chooses vmcs01's controls for `caps`. The guest starts outside IA-32e mode, so the entry
/// controls leave "IA-32e mode guest" clear (the processor sets it on exits once the guest
/// has entered long mode: VM exits save IA32_EFER.LMA into it, SDM Vol. 3C 28.3).
pub fn choose(caps: &VmxCaps) -> Result<Vmcs01Controls, MissingCapability> {
    let controls = Vmcs01Controls {
        pin: choose_one(caps.pin(), PIN_NEEDS, PIN_WANTS, "IA32_VMX_TRUE_PINBASED_CTLS")?,
        primary: choose_one(
            caps.primary(),
            PRIMARY_NEEDS,
            PRIMARY_WANTS,
            "IA32_VMX_TRUE_PROCBASED_CTLS",
        )?,
        secondary: choose_one(
            caps.secondary(),
            SECONDARY_NEEDS,
            SECONDARY_WANTS,
            "IA32_VMX_PROCBASED_CTLS2",
        )?,
        exit: choose_one(caps.exit_controls(), EXIT_NEEDS, EXIT_WANTS, "IA32_VMX_TRUE_EXIT_CTLS")?,
        entry: choose_one(
            caps.entry_controls(),
            ENTRY_NEEDS,
            ENTRY_WANTS,
            "IA32_VMX_TRUE_ENTRY_CTLS",
        )?,
    };
    if !caps.ept_vpid_has(crate::caps::ept_vpid::PAGE_WALK_4 | crate::caps::ept_vpid::MEMTYPE_WB) {
        return Err(MissingCapability {
            name: "4-level EPT with write-back paging structures",
            msr: "IA32_VMX_EPT_VPID_CAP",
        });
    }
    Ok(controls)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caps::{ept_vpid, msr};

    /// Capability MSRs of Bochs `corei7_skylake_x` as far as vmcs01 cares.
    fn skylake() -> VmxCaps {
        VmxCaps::read(|m| match m {
            msr::IA32_VMX_BASIC => (1 << 55) | (6 << 50) | (0x1000 << 32) | 0x2b,
            msr::IA32_VMX_TRUE_PINBASED_CTLS | msr::IA32_VMX_PINBASED_CTLS => (0x7f << 32) | 0x16,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS | msr::IA32_VMX_PROCBASED_CTLS => {
                (0xfff9_fffe << 32) | 0x0400_6172
            }
            msr::IA32_VMX_PROCBASED_CTLS2 => 0x0003_7fff << 32,
            msr::IA32_VMX_TRUE_EXIT_CTLS | msr::IA32_VMX_EXIT_CTLS => (0x00ff_ffff << 32) | 0x36dff,
            msr::IA32_VMX_TRUE_ENTRY_CTLS | msr::IA32_VMX_ENTRY_CTLS => (0xffff << 32) | 0x11ff,
            msr::IA32_VMX_EPT_VPID_CAP => {
                ept_vpid::PAGE_WALK_4 | ept_vpid::MEMTYPE_WB | ept_vpid::PAGE_2M | ept_vpid::INVEPT
            }
            _ => 0,
        })
    }

    #[test]
    fn chooses_needs_and_allowed_wants_within_the_hardware_limits() {
        let caps = skylake();
        let c = choose(&caps).unwrap();
        assert!(caps.pin().verify(c.pin));
        assert!(caps.primary().verify(c.primary));
        assert!(caps.secondary().verify(c.secondary));
        assert!(caps.exit_controls().verify(c.exit));
        assert!(caps.entry_controls().verify(c.entry));
        assert_ne!(c.pin & pin::PREEMPTION_TIMER, 0);
        assert_ne!(c.secondary & proc2::ENABLE_VPID, 0);
        assert_ne!(c.primary & proc1::UNCONDITIONAL_IO_EXITING, 0);
        assert_eq!(c.entry & entry::IA32E_MODE_GUEST, 0);
    }

    #[test]
    fn a_missing_need_is_named() {
        let mut caps = skylake();
        caps.procbased2 &= !(u64::from(proc2::UNRESTRICTED_GUEST) << 32);
        let e = choose(&caps).unwrap_err();
        assert_eq!(e.name, "unrestricted guest");
        assert!(e.to_string().contains("IA32_VMX_PROCBASED_CTLS2"));

        let mut caps = skylake();
        caps.ept_vpid = 0;
        assert_eq!(choose(&caps).unwrap_err().msr, "IA32_VMX_EPT_VPID_CAP");
    }

    /// With the TRUE MSRs leaving bit 2 flexible (as Bochs' do), the debug controls are
    /// still chosen: the guest's DR7 and IA32_DEBUGCTL survive its exits.
    #[test]
    fn the_debug_controls_are_saved_and_loaded() {
        let mut caps = skylake();
        caps.true_exit &= !u64::from(exit::SAVE_DEBUG_CONTROLS);
        caps.true_entry &= !u64::from(entry::LOAD_DEBUG_CONTROLS);
        assert!(caps.exit_controls().allowed0 & 1 << 2 == 0, "bit 2 flexible");
        let c = choose(&caps).unwrap();
        assert_eq!(c.exit & 1 << 2, 1 << 2, "save debug controls (exit bit 2)");
        assert_eq!(c.entry & 1 << 2, 1 << 2, "load debug controls (entry bit 2)");
    }

    #[test]
    fn a_missing_want_is_left_out() {
        let mut caps = skylake();
        caps.true_pinbased &= !(u64::from(pin::PREEMPTION_TIMER) << 32);
        let c = choose(&caps).unwrap();
        assert_eq!(c.pin & pin::PREEMPTION_TIMER, 0);
    }
}

/// The controls chosen for one CPU, as numbers with the SDM's bit positions (Tables 25-5,
/// 25-6, 25-7, 25-13, 25-15; cargo-mutants survivors: the first tests checked legality and
/// one want per control).
#[cfg(test)]
mod sdm_values_tests {
    use super::*;
    use crate::caps::msr;

    fn caps(ept_vpid: u64) -> VmxCaps {
        VmxCaps::read(|m| match m {
            msr::IA32_VMX_BASIC => (1 << 55) | (6 << 50) | (0x1000 << 32) | 0x2b,
            msr::IA32_VMX_TRUE_PINBASED_CTLS | msr::IA32_VMX_PINBASED_CTLS => (0x7f << 32) | 0x16,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS | msr::IA32_VMX_PROCBASED_CTLS => {
                (0xfff9_fffe << 32) | 0x0400_6172
            }
            msr::IA32_VMX_PROCBASED_CTLS2 => 0x0003_7fff << 32,
            msr::IA32_VMX_TRUE_EXIT_CTLS | msr::IA32_VMX_EXIT_CTLS => (0x00ff_ffff << 32) | 0x36dff,
            msr::IA32_VMX_TRUE_ENTRY_CTLS | msr::IA32_VMX_ENTRY_CTLS => (0xffff << 32) | 0x11ff,
            msr::IA32_VMX_EPT_VPID_CAP => ept_vpid,
            _ => 0,
        })
    }

    #[test]
    fn each_control_as_a_number() {
        // EPT/VPID capabilities: 4-level walks (bit 6), WB (bit 14), 2-MiB pages (bit 16),
        // INVEPT (bit 20).
        let c = choose(&caps(1 << 6 | 1 << 14 | 1 << 16 | 1 << 20)).unwrap();
        // Pin-based: the forced 1, 2, 4; external interrupts 0, NMI 3; virtual NMIs 5,
        // preemption timer 6.
        assert_eq!(c.pin, 0x7f);
        // Primary: the forced 0x04006172; HLT 7, unconditional I/O 24, secondary 31, CR8
        // load 19 and store 20; MWAIT 10, MONITOR 29, TSC offsetting 3.
        let needs = 1 << 7 | 1 << 24 | 1 << 31 | 1 << 19 | 1 << 20;
        assert_eq!(c.primary, 0x0400_6172 | needs | 1 << 10 | 1 << 29 | 1 << 3);
        // Secondary: EPT 1, unrestricted guest 7; VPID 5, RDTSCP 3, INVPCID 12 (XSAVES, bit
        // 20, is not allowed by this CPU).
        assert_eq!(c.secondary, 1 << 1 | 1 << 7 | 1 << 5 | 1 << 3 | 1 << 12);
        // Exit: the forced 0x36dff; host address-space size 9, save EFER 20, load EFER 21;
        // acknowledge interrupt 15, save PAT 18, load PAT 19.
        assert_eq!(c.exit, 0x36dff | 1 << 9 | 1 << 20 | 1 << 21 | 1 << 15 | 1 << 18 | 1 << 19);
        // Entry: the forced 0x11ff; load EFER 15; load PAT 14; never IA-32e mode guest (9).
        assert_eq!(c.entry, 0x11ff | 1 << 15 | 1 << 14);
    }

    #[test]
    fn ept_needs_both_4_level_walks_and_write_back() {
        for ept_vpid in [1 << 6, 1 << 14, 1 << 16 | 1 << 20] {
            let e = choose(&caps(ept_vpid)).unwrap_err();
            assert_eq!(e.msr, "IA32_VMX_EPT_VPID_CAP", "{ept_vpid:#x}");
        }
        assert!(choose(&caps(1 << 6 | 1 << 14)).is_ok());
    }
}
