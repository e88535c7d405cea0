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
];
/// L0 leaves CR3 accesses, RDTSC and INVLPG to the guest (EPT makes them harmless); the
/// hardware may still force some of them on (allowed0), and L0 handles those exits.
const PRIMARY_WANTS: u32 = proc1::MWAIT_EXITING | proc1::MONITOR_EXITING;

const SECONDARY_NEEDS: &[Need] =
    &[(proc2::ENABLE_EPT, "enable EPT"), (proc2::UNRESTRICTED_GUEST, "unrestricted guest")];
const SECONDARY_WANTS: u32 =
    proc2::ENABLE_VPID | proc2::ENABLE_RDTSCP | proc2::ENABLE_INVPCID | proc2::ENABLE_XSAVES;

const EXIT_NEEDS: &[Need] = &[
    (exit::HOST_ADDRESS_SPACE_SIZE, "host address-space size"),
    (exit::SAVE_IA32_EFER, "save IA32_EFER"),
    (exit::LOAD_IA32_EFER, "load IA32_EFER"),
];
const EXIT_WANTS: u32 = exit::ACK_INTERRUPT_ON_EXIT | exit::SAVE_IA32_PAT | exit::LOAD_IA32_PAT;

const ENTRY_NEEDS: &[Need] = &[(entry::LOAD_IA32_EFER, "load IA32_EFER")];
const ENTRY_WANTS: u32 = entry::LOAD_IA32_PAT;

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

    #[test]
    fn a_missing_want_is_left_out() {
        let mut caps = skylake();
        caps.true_pinbased &= !(u64::from(pin::PREEMPTION_TIMER) << 32);
        let c = choose(&caps).unwrap();
        assert_eq!(c.pin & pin::PREEMPTION_TIMER, 0);
    }
}
