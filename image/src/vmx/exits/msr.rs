//! RDMSR/WRMSR (exit reasons 31, 32). vmcs01 uses no MSR bitmaps, so every access exits and
//! meets the pure MSR policy `pc::msr`: its table says where each MSR the guest's processor
//! has lives (a VMCS guest-state field, the hardware MSR, the guest's `MsrFile`, a constant,
//! the LAPIC model, the nesting code's capability MSRs) and its checks say which writes #GP;
//! every MSR not in the table injects #GP(0) as a processor without it would.

use nested::arch::cr0;
use nested::vmcs::{Vmcs, VmcsField as F};
use pc::msr::{self as policy, GeneralProtection, GuestStateMsr, Msr, MsrFile};

use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::ratelimit::RateLimit;
use crate::vmx::action::Action;
use crate::vmx::guest::Guest;
use nested::vmx::Exception;

/// MSRs an L2 may access without an exit when L1 passes them through (vmcs02's MSR bitmap):
/// those the VMCS switches on every entry and exit (SYSENTER, FS/GS base) and the SYSCALL and
/// SWAPGS MSRs, which live in hardware ([`Msr::Hardware`]) and L0 never uses. Either way the
/// hardware holds exactly L1's world's value and applies the processor's own checks.
pub const L2_PASSTHROUGH: &[u32] = {
    use policy::index::*;
    &[
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
    ]
};

static UNKNOWN: RateLimit = RateLimit::new(16);
static REFUSED: RateLimit = RateLimit::new(16);
static APIC_FAULTS: RateLimit = RateLimit::new(16);

/// The guest's emulated MSRs (one guest runs per boot), made on first use with the guest's
/// MAXPHYADDR.
static FILE: hermit_sync::SpinMutex<Option<MsrFile>> = hermit_sync::SpinMutex::new(None);

fn with_file<T>(f: impl FnOnce(&mut MsrFile) -> T) -> T {
    let mut file = FILE.lock();
    let file = file.get_or_insert_with(|| {
        // CPUID.80000008H:EAX[7:0], which the guest sees unchanged; 36 without the leaf.
        let has_leaf = cpu::cpuid(0x8000_0000, 0)[0] >= 0x8000_0008;
        MsrFile::new(if has_leaf { cpu::cpuid(0x8000_0008, 0)[0] as u8 } else { 36 })
    });
    f(file)
}

fn vmcs_field(msr: GuestStateMsr) -> F {
    match msr {
        GuestStateMsr::SysenterCs => F::GuestSysenterCs,
        GuestStateMsr::SysenterEsp => F::GuestSysenterEsp,
        GuestStateMsr::SysenterEip => F::GuestSysenterEip,
        GuestStateMsr::Debugctl => F::GuestIa32Debugctl,
        GuestStateMsr::Pat => F::GuestIa32Pat,
        GuestStateMsr::Efer => F::GuestIa32Efer,
        GuestStateMsr::FsBase => F::GuestFsBase,
        GuestStateMsr::GsBase => F::GuestGsBase,
    }
}

fn lookup(g: &Guest, v: &HwVmcs, msr: u32) -> Msr {
    policy::lookup(msr, &super::cpuid::guest_features(v, g.nested.is_some()))
}

/// Why RDMSR or WRMSR of an MSR takes #GP(0) on the processor the guest sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The MSR does not exist there (or is not for this access).
    Unknown,
    /// A value the processor refuses (reserved bits, a non-canonical address, a bad memory
    /// type, a read-only MSR).
    Value,
    /// An APIC MSR access the architecture faults (x2APIC registers outside x2APIC mode,
    /// read-only or reserved registers, an illegal IA32_APIC_BASE transition).
    Apic,
}

/// RDMSR of `msr` by the level whose VMCS is `v` (vmcs01: L1, vmcs02: L2 in L1's world).
pub fn read(g: &mut Guest, v: &HwVmcs, msr: u32) -> Result<u64, Refusal> {
    Ok(match lookup(g, v, msr) {
        Msr::GuestState(s) => v.read(vmcs_field(s)),
        Msr::Hardware(_) => cpu::rdmsr(msr),
        Msr::Emulated => with_file(|file| file.read(msr)).ok_or(Refusal::Unknown)?,
        Msr::ReadOnly(value) | Msr::WriteIgnored(value) => value,
        Msr::Zero => 0,
        // The TSC plus `v`'s offset under "use TSC offsetting" (SDM 25.3): L2's view when
        // L0 performs L2's RDMSR in L1's world.
        Msr::Tsc => nested::vmx::tsc::guest_tsc(v, cpu::rdtsc()),
        Msr::PlatformInfo => policy::platform_info(super::cpuid::tsc_rate()),
        Msr::ApicBase => g.devices.lapic().base_msr(),
        Msr::X2apic => g
            .devices
            .with_lapic(|lapic| lapic.read_msr(msr, cpu::rdtsc()))
            .map_err(|_| Refusal::Apic)?,
        // The capability MSRs L1 sees (nested::vmx::l1_caps).
        Msr::VmxCapability => {
            g.nested.as_ref().and_then(|n| n.vmx.caps.msr(msr)).ok_or(Refusal::Unknown)?
        }
        Msr::Gp => return Err(Refusal::Unknown),
    })
}

/// WRMSR of `value` to `msr` by the level whose VMCS is `v` (see [`read`]).
pub fn write(g: &mut Guest, v: &mut HwVmcs, msr: u32, value: u64) -> Result<(), Refusal> {
    match lookup(g, v, msr) {
        Msr::GuestState(s) => {
            let field = vmcs_field(s);
            let paging = s == GuestStateMsr::Efer && v.read(F::GuestCr0) & cr0::PG != 0;
            match policy::check_guest_state(s, value, v.read(field), paging) {
                Ok(new) => v.write(field, new),
                Err(GeneralProtection) => return Err(Refusal::Value),
            }
        }
        Msr::Hardware(check) => {
            if !policy::hardware_write_ok(check, value) {
                return Err(Refusal::Value);
            }
            // SAFETY: L0 never uses SYSCALL, SWAPGS or RDTSCP, so these MSRs are the guest's
            // alone; the value passed the check that makes the processor accept it.
            unsafe { cpu::wrmsr(msr, value) };
        }
        Msr::Emulated => {
            if with_file(|file| file.write(msr, value)).is_err() {
                return Err(Refusal::Value);
            }
        }
        Msr::ReadOnly(_) | Msr::PlatformInfo => return Err(Refusal::Value),
        Msr::Zero if value != 0 => return Err(Refusal::Value),
        Msr::Zero => {}
        Msr::Tsc => set_tsc(g, v, value),
        // Writes the guest may make that have no effect here.
        Msr::WriteIgnored(_) => {}
        Msr::ApicBase | Msr::X2apic => {
            let now = cpu::rdtsc();
            let result = g.devices.with_lapic(|lapic| {
                if msr == policy::index::IA32_APIC_BASE {
                    lapic.write_base_msr(value, now)
                } else {
                    lapic.write_msr(msr, value, now)
                }
            });
            if result.is_err() {
                return Err(Refusal::Apic);
            }
        }
        Msr::VmxCapability | Msr::Gp => return Err(Refusal::Unknown),
    }
    Ok(())
}

pub fn rdmsr(g: &mut Guest, v: &mut HwVmcs) -> Action {
    let msr = g.regs.rcx as u32;
    match read(g, v, msr) {
        Ok(value) => {
            g.regs.rax = value & 0xffff_ffff;
            g.regs.rdx = value >> 32;
            Action::Skip
        }
        Err(why) => fault("RDMSR", msr, 0, why),
    }
}

pub fn wrmsr(g: &mut Guest, v: &mut HwVmcs) -> Action {
    let msr = g.regs.rcx as u32;
    let value = (g.regs.rdx << 32) | (g.regs.rax & 0xffff_ffff);
    match write(g, v, msr, value) {
        Ok(()) => Action::Skip,
        Err(why) => fault("WRMSR", msr, value, why),
    }
}

/// Logs a refused access (rate-limited) and injects the #GP(0) the processor raises.
fn fault(what: &str, msr: u32, value: u64, why: Refusal) -> Action {
    match why {
        Refusal::Unknown => unknown(what, msr, value),
        Refusal::Value => refused(msr, value),
        Refusal::Apic => apic_fault(what, msr, value),
    }
}

/// An APIC MSR access the architecture answers with #GP(0) (x2APIC registers outside x2APIC
/// mode, read-only or reserved registers, an illegal IA32_APIC_BASE transition).
fn apic_fault(what: &str, msr: u32, value: u64) -> Action {
    if APIC_FAULTS.allow() {
        log::warn!("guest {what} of APIC MSR {msr:#x} (value {value:#x}) faults: injecting #GP(0)");
    }
    Action::raise(Exception::GP0)
}

/// WRMSR of IA32_TSC (SDM Vol. 3B 18.17): the guest's TSC takes `value` and counts on from
/// there, as vmcs01's TSC offset (the guest's RDTSC, RDTSCP and RDMSR add it). From L2 in
/// L1's world (`v` is vmcs02, L1 does not intercept the MSR) it is L1's TSC as well: in VMX
/// non-root operation WRMSR writes the TSC itself, which L2 then reads plus vmcs12's offset
/// (SDM Vol. 3C 26.3).
fn set_tsc(g: &mut Guest, v: &mut HwVmcs, value: u64) {
    g.tsc_offset = value.wrapping_sub(cpu::rdtsc());
    match g.nested.as_mut() {
        Some(n) if n.in_l2 => crate::vmx::l1vmx::l1_tsc_written_in_l2(n, v, g.tsc_offset),
        Some(n) => {
            v.write(F::TscOffset, g.tsc_offset);
            // vmcs02's offset includes L1's: the next entry to L2 merges it again.
            n.vmx.l1_tsc_changed();
        }
        None => v.write(F::TscOffset, g.tsc_offset),
    }
}

/// A WRMSR the processor would refuse (reserved bits, a non-canonical address, a bad memory
/// type, a read-only MSR).
fn refused(msr: u32, value: u64) -> Action {
    if REFUSED.allow() {
        log::warn!("guest WRMSR of MSR {msr:#x} (value {value:#x}) refused: injecting #GP(0)");
    }
    Action::raise(Exception::GP0)
}

fn unknown(what: &str, msr: u32, value: u64) -> Action {
    // Probes that fault on the processor the guest sees are not worth a line.
    if !policy::expected_gp(msr) && UNKNOWN.allow() {
        log::warn!("guest {what} of MSR {msr:#x} (value {value:#x}) not allowed: injecting #GP(0)");
    }
    Action::raise(Exception::GP0)
}
