//! The processor the guest sees: KVM's supported-CPUID list (`KVM_GET_SUPPORTED_CPUID`, which
//! holds VMX when the host's kvm_intel runs with `nested=1`) with CPUID.1:ECX.hypervisor set,
//! as QEMU sets it (KVM's list lacks it, and a turtles image reports the hypervisor below
//! from it), and CPUID.1:EBX's initial APIC ID that of vCPU 0. Pure, so the tests need no
//! /dev/kvm.

use kvm_bindings::kvm_cpuid_entry2;
use pc::cpuid::leaf1_ecx;

/// CPUID.1:EBX bits 31:24: the initial APIC ID (SDM Vol. 2A, CPUID leaf 01H).
const INITIAL_APIC_ID: u32 = 0xff << 24;

/// What the guest's CPUID shows that matters to a turtles image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shown {
    /// CPUID.1:ECX.VMX: the guest can be a hypervisor (KVM's nested VMX).
    pub vmx: bool,
}

/// Adjusts KVM's supported list in place for vCPU 0.
pub fn adjust(entries: &mut [kvm_cpuid_entry2]) -> Shown {
    let mut shown = Shown { vmx: false };
    for e in entries.iter_mut().filter(|e| e.function == 1) {
        e.ecx |= leaf1_ecx::HYPERVISOR;
        e.ebx &= !INITIAL_APIC_ID;
        shown.vmx = e.ecx & leaf1_ecx::VMX != 0;
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(function: u32, ebx: u32, ecx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 { function, ebx, ecx, ..Default::default() }
    }

    #[test]
    fn hypervisor_bit_set_vmx_kept() {
        let mut list = [entry(0, 7, 9), entry(1, 0x0300_0800, leaf1_ecx::VMX), entry(7, 1, 2)];
        assert_eq!(adjust(&mut list), Shown { vmx: true });
        assert_eq!(list[1].ecx, leaf1_ecx::VMX | leaf1_ecx::HYPERVISOR);
        assert_eq!(list[1].ebx, 0x0000_0800, "APIC ID 0, the rest kept");
        assert_eq!((list[0].ebx, list[0].ecx, list[2].ebx, list[2].ecx), (7, 9, 1, 2));
    }

    #[test]
    fn without_nested_vmx_the_guest_has_none() {
        let mut list = [entry(1, 0, leaf1_ecx::SSE3)];
        assert_eq!(adjust(&mut list), Shown { vmx: false });
        assert_eq!(list[0].ecx, leaf1_ecx::SSE3 | leaf1_ecx::HYPERVISOR);
        assert_eq!(adjust(&mut []), Shown { vmx: false });
    }
}
