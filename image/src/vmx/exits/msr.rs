//! RDMSR/WRMSR (exit reasons 31, 32). vmcs01 uses no MSR bitmaps, so every access exits and
//! meets this allowlist: MSRs held in the VMCS are read and written there, SYSCALL/SWAPGS
//! MSRs L0 never uses go to the hardware, IA32_APIC_BASE and the x2APIC registers go to the
//! guest's local APIC, a few identification MSRs read as constants, and everything else
//! injects #GP(0) as a processor without the MSR would.

use nested::vmcs::{Vmcs, VmcsField as F};
use pc::lapic::{ApicFault, X2APIC_MSR_FIRST, X2APIC_MSR_LAST};

use super::{Action, GP};
use crate::arch::cpu;
use crate::ratelimit::RateLimit;
use crate::vmx::hw_vmcs::HwVmcs;
use crate::vmx::run::Guest;

const IA32_TSC: u32 = 0x10;
const IA32_PLATFORM_ID: u32 = 0x17;
const IA32_APIC_BASE: u32 = 0x1b;
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_BIOS_SIGN_ID: u32 = 0x8b;
const IA32_MTRRCAP: u32 = 0xfe;
const IA32_SYSENTER_CS: u32 = 0x174;
const IA32_SYSENTER_ESP: u32 = 0x175;
const IA32_SYSENTER_EIP: u32 = 0x176;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_PAT: u32 = 0x277;
const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
const IA32_EFER: u32 = 0xc000_0080;
const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_CSTAR: u32 = 0xc000_0083;
const IA32_FMASK: u32 = 0xc000_0084;
const IA32_FS_BASE: u32 = 0xc000_0100;
const IA32_GS_BASE: u32 = 0xc000_0101;
const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
const IA32_TSC_AUX: u32 = 0xc000_0103;

/// EFER bits a guest may set: SCE, LME, LMA (ignored on write), NXE.
const EFER_WRITABLE: u64 = 1 | (1 << 8) | (1 << 10) | (1 << 11);
const EFER_LMA: u64 = 1 << 10;

static UNKNOWN: RateLimit = RateLimit::new(16);
static APIC_FAULTS: RateLimit = RateLimit::new(16);

fn canonical(v: u64) -> bool {
    let top = (v as i64) >> 47;
    top == 0 || top == -1
}

/// A PAT value is legal if every entry is a defined memory type (0, 1, 4, 5, 6, 7).
fn valid_pat(v: u64) -> bool {
    v.to_le_bytes().iter().all(|&t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

fn vmcs_field(msr: u32) -> Option<F> {
    Some(match msr {
        IA32_SYSENTER_CS => F::GuestSysenterCs,
        IA32_SYSENTER_ESP => F::GuestSysenterEsp,
        IA32_SYSENTER_EIP => F::GuestSysenterEip,
        IA32_PAT => F::GuestIa32Pat,
        IA32_EFER => F::GuestIa32Efer,
        IA32_FS_BASE => F::GuestFsBase,
        IA32_GS_BASE => F::GuestGsBase,
        _ => return None,
    })
}

/// MSRs an L2 may access without an exit when L1 passes them through (vmcs02's MSR bitmap):
/// those the VMCS switches on every entry and exit (SYSENTER, FS/GS base) and those L0 never
/// uses ([`passthrough`]); either way the hardware holds exactly L1's world's value.
pub const L2_PASSTHROUGH: &[u32] = &[
    IA32_SYSENTER_CS,
    IA32_SYSENTER_ESP,
    IA32_SYSENTER_EIP,
    IA32_FS_BASE,
    IA32_GS_BASE,
    IA32_STAR,
    IA32_LSTAR,
    IA32_CSTAR,
    IA32_FMASK,
    IA32_KERNEL_GS_BASE,
    IA32_TSC_AUX,
];

/// MSRs with no VMCS field that L0 itself never uses: the guest's values live in hardware.
fn passthrough(msr: u32) -> bool {
    matches!(
        msr,
        IA32_STAR | IA32_LSTAR | IA32_CSTAR | IA32_FMASK | IA32_KERNEL_GS_BASE | IA32_TSC_AUX
    )
}

pub fn rdmsr(g: &mut Guest, v: &mut HwVmcs) -> Action {
    let msr = g.regs.rcx as u32;
    let value = match msr {
        m if vmcs_field(m).is_some() => vmcs_field(m).map_or(0, |f| v.read(f)),
        m if passthrough(m) => cpu::rdmsr(m),
        IA32_TSC => cpu::rdtsc(),
        IA32_APIC_BASE => g.devices.lapic().base_msr(),
        X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => {
            match g.devices.with_lapic(|lapic| lapic.read_msr(msr, cpu::rdtsc())) {
                Ok(value) => value,
                Err(ApicFault) => return apic_fault("RDMSR", msr, 0),
            }
        }
        // Locked; VMX enabled only if it is exposed to the guest.
        IA32_FEATURE_CONTROL if g.nested.is_some() => crate::vmx::nesting::FEATURE_CONTROL_VMX,
        IA32_FEATURE_CONTROL => 1,
        // The capability MSRs L1 sees (nested::vmx::l1_caps), when VMX is exposed.
        0x480..=0x491 if g.nested.is_some() => {
            match g.nested.as_ref().and_then(|n| n.vmx.caps.msr(msr)) {
                Some(value) => value,
                None => return unknown("RDMSR", msr, 0),
            }
        }
        IA32_MISC_ENABLE => 1,
        IA32_PLATFORM_ID | IA32_BIOS_SIGN_ID | IA32_MTRRCAP | IA32_MTRR_DEF_TYPE => 0,
        _ => return unknown("RDMSR", msr, 0),
    };
    g.regs.rax = value & 0xffff_ffff;
    g.regs.rdx = value >> 32;
    Action::Skip
}

pub fn wrmsr(g: &mut Guest, v: &mut HwVmcs) -> Action {
    let msr = g.regs.rcx as u32;
    let value = (g.regs.rdx << 32) | (g.regs.rax & 0xffff_ffff);
    match msr {
        IA32_EFER => {
            if value & !EFER_WRITABLE != 0 {
                return Action::Inject(GP, Some(0));
            }
            // LMA is the processor's: keep the current value.
            let lma = v.read(F::GuestIa32Efer) & EFER_LMA;
            v.write(F::GuestIa32Efer, (value & !EFER_LMA) | lma);
        }
        IA32_PAT if !valid_pat(value) => return Action::Inject(GP, Some(0)),
        IA32_FS_BASE | IA32_GS_BASE | IA32_SYSENTER_ESP | IA32_SYSENTER_EIP
            if !canonical(value) =>
        {
            return Action::Inject(GP, Some(0));
        }
        m if vmcs_field(m).is_some() => {
            if let Some(f) = vmcs_field(m) {
                v.write(f, value);
            }
        }
        IA32_LSTAR | IA32_CSTAR | IA32_KERNEL_GS_BASE if !canonical(value) => {
            return Action::Inject(GP, Some(0));
        }
        m if passthrough(m) => {
            // SAFETY: L0 never uses SYSCALL, SWAPGS or RDTSCP, so these MSRs are the guest's
            // alone; the value was checked to be canonical where the MSR requires it.
            unsafe { cpu::wrmsr(m, value) };
        }
        IA32_APIC_BASE | X2APIC_MSR_FIRST..=X2APIC_MSR_LAST => {
            let now = cpu::rdtsc();
            let result = g.devices.with_lapic(|lapic| {
                if msr == IA32_APIC_BASE {
                    lapic.write_base_msr(value, now)
                } else {
                    lapic.write_msr(msr, value, now)
                }
            });
            if result.is_err() {
                return apic_fault("WRMSR", msr, value);
            }
        }
        // Writes the guest may make that have no effect here.
        IA32_TSC | IA32_MISC_ENABLE | IA32_BIOS_SIGN_ID | IA32_MTRR_DEF_TYPE => {}
        _ => return unknown("WRMSR", msr, value),
    }
    Action::Skip
}

/// An APIC MSR access the architecture answers with #GP(0) (x2APIC registers outside x2APIC
/// mode, read-only or reserved registers, an illegal IA32_APIC_BASE transition).
fn apic_fault(what: &str, msr: u32, value: u64) -> Action {
    if APIC_FAULTS.allow() {
        log::warn!("guest {what} of APIC MSR {msr:#x} (value {value:#x}) faults: injecting #GP(0)");
    }
    Action::Inject(GP, Some(0))
}

fn unknown(what: &str, msr: u32, value: u64) -> Action {
    if UNKNOWN.allow() {
        log::warn!("guest {what} of MSR {msr:#x} (value {value:#x}) not allowed: injecting #GP(0)");
    }
    Action::Inject(GP, Some(0))
}
