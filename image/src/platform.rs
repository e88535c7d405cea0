//! The platform report: CPU vendor, hypervisor bit and signature, and, when the CPU has VMX,
//! every IA32_VMX_* capability MSR read once into a [`VmxCaps`] (SDM Vol. 3D, Appendix A).

use nested::caps::{VmxCaps, msr};
use raw_cpuid::{CpuId, cpuid};

use crate::arch::cpu;

/// What the CPU offers for running guests.
pub enum Vmx {
    /// VMX is present; its capabilities.
    Present(VmxCaps),
    /// No VMX: CPUID.1:ECX.VMX is clear (QEMU TCG, a KVM guest without nested VMX).
    Absent,
    /// VMX exists but IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled.
    LockedOff,
}

/// Prints the report and returns what VMX offers.
pub fn report() -> Vmx {
    let cpuid = CpuId::new();
    let vendor = cpuid.get_vendor_info();
    let vendor = vendor.as_ref().map_or("unknown", |v| v.as_str());
    let features = cpuid.get_feature_info();
    let hypervisor = features.as_ref().is_some_and(|f| f.has_hypervisor());
    let vmx = features.as_ref().is_some_and(|f| f.has_vmx());
    let (family, model) = features.as_ref().map_or((0, 0), |f| (f.family_id(), f.model_id()));
    log::info!(
        "platform: vendor={vendor} family={family:#x} model={model:#x} hypervisor={} vmx={}",
        yes_no(hypervisor),
        yes_no(vmx)
    );
    if hypervisor {
        let leaf = cpuid!(0x4000_0000);
        let mut signature = [0u8; 12];
        for (chunk, reg) in signature.chunks_mut(4).zip([leaf.ebx, leaf.ecx, leaf.edx]) {
            chunk.copy_from_slice(&reg.to_le_bytes());
        }
        let signature = core::str::from_utf8(&signature).unwrap_or("?").trim_end_matches('\0');
        log::info!("platform: hypervisor signature=\"{signature}\" max-leaf={:#x}", leaf.eax);
    }
    if !vmx {
        return Vmx::Absent;
    }
    let feature_control = cpu::rdmsr(msr::IA32_FEATURE_CONTROL);
    let locked = feature_control & 1 != 0;
    let outside_smx = feature_control & (1 << 2) != 0;
    log::info!(
        "platform: IA32_FEATURE_CONTROL={feature_control:#x} (locked={}, vmx-outside-smx={})",
        yes_no(locked),
        yes_no(outside_smx)
    );
    let caps = VmxCaps::read(cpu::rdmsr);
    log::info!("vmx: {}", caps.summary());
    if locked && !outside_smx {
        return Vmx::LockedOff;
    }
    Vmx::Present(caps)
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// True if the hypervisor below is turtles (signature "turtles" at leaf 0x40000000).
pub fn under_turtles() -> bool {
    let hypervisor = CpuId::new().get_feature_info().is_some_and(|f| f.has_hypervisor());
    if !hypervisor {
        return false;
    }
    let sig = cpuid!(0x4000_0000);
    sig.eax >= 0x4000_0003
        && [sig.ebx, sig.ecx, sig.edx] == crate::vmx::exits::cpuid::signature_words()
}

/// The nesting depth this image runs at: told by a turtles hypervisor below (leaf
/// 0x40000001), 0 on bare metal, else (another hypervisor) at least 1 and the config's depth.
pub fn detect_depth(config_depth: u32) -> u32 {
    if under_turtles() {
        return cpuid!(0x4000_0001).eax;
    }
    let hypervisor = CpuId::new().get_feature_info().is_some_and(|f| f.has_hypervisor());
    if hypervisor { config_depth.max(1) } else { 0 }
}

/// This processor's initial APIC ID (CPUID.1:EBX[31:24]); the guest's local APIC gets it too.
pub fn apic_id() -> u32 {
    cpu::cpuid(1, 0)[1] >> 24
}

/// The TSC rate the device model assumes for converting guest time (the PIT's 1.193182 MHz
/// against the TSC): CPUID 0x15 (TSC/crystal ratio), else 0x16 (base MHz), else 1 GHz.
/// Guests calibrate against the PIT, so only consistency matters, and Bochs' TSC (one tick
/// per instruction) has no true rate anyway.
pub fn tsc_hz() -> u64 {
    let max = cpu::cpuid(0, 0)[0];
    if max >= 0x15 {
        let [den, num, crystal, _] = cpu::cpuid(0x15, 0);
        if den != 0 && num != 0 && crystal != 0 {
            return u64::from(crystal) * u64::from(num) / u64::from(den);
        }
    }
    if max >= 0x16 {
        let mhz = cpu::cpuid(0x16, 0)[0] & 0xffff;
        if mhz != 0 {
            return u64::from(mhz) * 1_000_000;
        }
    }
    1_000_000_000
}
