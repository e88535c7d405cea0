//! Linux KVM (kvm_intel, the 6.1 series Debian ships) as L1: what its loader demands of the
//! capability MSRs L0 offers ([`l1_caps`]), as a model of `setup_vmcs_config` and
//! `hardware_setup` (arch/x86/kvm/vmx/vmx.c). `l0-kvm-leaf` runs the real thing under Bochs;
//! this keeps a change to `l1_caps` from silently stopping KVM from loading, or from losing
//! EPT, VPID, unrestricted guest, EPT A/D or PML.

use super::l1_caps::l1_caps;
use super::l1_caps::tests::skylake;
use crate::caps::{Allowed, VmxCaps, ept_vpid, exit, pin, proc1, proc2};

/// `KVM_REQUIRED_VMX_CPU_BASED_VM_EXEC_CONTROL` (x86_64).
const KVM_REQ_PROC1: u32 = proc1::HLT_EXITING
    | proc1::CR3_LOAD_EXITING
    | proc1::CR3_STORE_EXITING
    | proc1::UNCONDITIONAL_IO_EXITING
    | proc1::MOV_DR_EXITING
    | proc1::USE_TSC_OFFSETTING
    | proc1::MWAIT_EXITING
    | proc1::MONITOR_EXITING
    | proc1::INVLPG_EXITING
    | proc1::RDPMC_EXITING
    | proc1::INTERRUPT_WINDOW_EXITING
    | proc1::CR8_LOAD_EXITING
    | proc1::CR8_STORE_EXITING;
/// `KVM_OPTIONAL_VMX_CPU_BASED_VM_EXEC_CONTROL` (tertiary controls left out: never offered).
const KVM_OPT_PROC1: u32 = proc1::RDTSC_EXITING
    | proc1::USE_TPR_SHADOW
    | proc1::USE_IO_BITMAPS
    | proc1::MONITOR_TRAP_FLAG
    | proc1::USE_MSR_BITMAPS
    | proc1::NMI_WINDOW_EXITING
    | proc1::ACTIVATE_SECONDARY_CONTROLS;
/// `KVM_REQUIRED_VMX_PIN_BASED_VM_EXEC_CONTROL` and the optional ones.
const KVM_REQ_PIN: u32 = pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING;
const KVM_OPT_PIN: u32 = pin::VIRTUAL_NMIS | pin::POSTED_INTERRUPTS | pin::PREEMPTION_TIMER;
/// `KVM_REQUIRED_VMX_VM_EXIT_CONTROLS` (x86_64) and the optional ones KVM pairs with entry
/// controls (`vmcs_entry_exit_pairs`): PERF_GLOBAL_CTRL, PAT, EFER, BNDCFGS, RTIT_CTL.
const KVM_REQ_EXIT: u32 =
    exit::SAVE_DEBUG_CONTROLS | exit::ACK_INTERRUPT_ON_EXIT | exit::HOST_ADDRESS_SPACE_SIZE;
const EXIT_CLEAR_BNDCFGS: u32 = 1 << 23;
const EXIT_CLEAR_RTIT_CTL: u32 = 1 << 25;
const KVM_OPT_EXIT: u32 = exit::LOAD_IA32_PERF_GLOBAL_CTRL
    | exit::SAVE_IA32_PAT
    | exit::LOAD_IA32_PAT
    | exit::SAVE_IA32_EFER
    | exit::SAVE_PREEMPTION_TIMER
    | exit::LOAD_IA32_EFER
    | EXIT_CLEAR_BNDCFGS
    | EXIT_CLEAR_RTIT_CTL;
const KVM_REQ_ENTRY: u32 =
    crate::caps::entry::LOAD_DEBUG_CONTROLS | crate::caps::entry::IA32E_MODE_GUEST;
const ENTRY_LOAD_BNDCFGS: u32 = 1 << 16;
const ENTRY_LOAD_RTIT_CTL: u32 = 1 << 18;
const KVM_OPT_ENTRY: u32 = crate::caps::entry::LOAD_IA32_PERF_GLOBAL_CTRL
    | crate::caps::entry::LOAD_IA32_PAT
    | crate::caps::entry::LOAD_IA32_EFER
    | ENTRY_LOAD_BNDCFGS
    | ENTRY_LOAD_RTIT_CTL;
/// `vmcs_entry_exit_pairs`: with `error_on_inconsistent_vmcs_config` (default Y) one half
/// of a pair without the other stops KVM from loading.
const PAIRS: [(u32, u32); 5] = [
    (crate::caps::entry::LOAD_IA32_PERF_GLOBAL_CTRL, exit::LOAD_IA32_PERF_GLOBAL_CTRL),
    (crate::caps::entry::LOAD_IA32_PAT, exit::LOAD_IA32_PAT),
    (crate::caps::entry::LOAD_IA32_EFER, exit::LOAD_IA32_EFER),
    (ENTRY_LOAD_BNDCFGS, EXIT_CLEAR_BNDCFGS),
    (ENTRY_LOAD_RTIT_CTL, EXIT_CLEAR_RTIT_CTL),
];

/// What kvm_intel ends up using (its module parameters), or why it refuses to load.
#[derive(Debug, Default, PartialEq, Eq)]
struct Kvm {
    ept: bool,
    vpid: bool,
    unrestricted_guest: bool,
    eptad: bool,
    pml: bool,
    vnmi: bool,
    flexpriority: bool,
    enable_shadow_vmcs: bool,
}

/// `adjust_vmx_controls`: the required bits must be allowed, the optional ones are taken
/// where allowed.
fn adjust(required: u32, optional: u32, msr: u64) -> Result<u32, &'static str> {
    let a = Allowed::from_msr(msr);
    let ctl = (required | optional) & a.allowed1 | a.allowed0;
    if required & !ctl != 0 { Err("a required control is not allowed (-EIO)") } else { Ok(ctl) }
}

/// `setup_vmcs_config` then `hardware_setup`'s feature choices. kvm_intel reads the
/// non-TRUE control MSRs here.
fn kvm_loads(c: &VmxCaps) -> Result<Kvm, &'static str> {
    let proc1 = adjust(KVM_REQ_PROC1, KVM_OPT_PROC1, c.procbased)?;
    let proc2 = if proc1 & proc1::ACTIVATE_SECONDARY_CONTROLS != 0 {
        // KVM_OPTIONAL_VMX_SECONDARY_VM_EXEC_CONTROL covers every control modelled here.
        adjust(0, u32::MAX, c.procbased2)?
    } else {
        0
    };
    if proc2 & proc2::ENABLE_EPT == 0 && c.ept_vpid as u32 != 0 {
        return Err("EPT CAP should not exist if not support 1-setting enable EPT");
    }
    if proc2 & proc2::ENABLE_VPID == 0 && (c.ept_vpid >> 32) as u32 != 0 {
        return Err("VPID CAP should not exist if not support 1-setting enable VPID");
    }
    let exit = adjust(KVM_REQ_EXIT, KVM_OPT_EXIT, c.exit)?;
    let pin = adjust(KVM_REQ_PIN, KVM_OPT_PIN, c.pinbased)?;
    let entry = adjust(KVM_REQ_ENTRY, KVM_OPT_ENTRY, c.entry)?;
    for (n, x) in PAIRS {
        if (entry & n == 0) != (exit & x == 0) {
            return Err("Inconsistent VM-Entry/VM-Exit pair");
        }
    }
    if c.vmcs_size() > 4096 || c.basic & (1 << 48) != 0 || c.vmcs_memory_type() != 6 {
        return Err("IA32_VMX_BASIC: size, address width or memory type refused");
    }
    // The TRUE MSRs must let KVM clear the CR3 exits it drops when it has EPT.
    let true_proc1 = Allowed::from_msr(c.true_procbased);
    let ept = proc2 & proc2::ENABLE_EPT != 0
        && c.ept_vpid_has(
            ept_vpid::PAGE_WALK_4 | ept_vpid::MEMTYPE_WB | ept_vpid::INVEPT_ALL_CONTEXT,
        )
        && true_proc1.allowed0 & (proc1::CR3_LOAD_EXITING | proc1::CR3_STORE_EXITING) == 0;
    let vpid = proc2 & proc2::ENABLE_VPID != 0
        && c.ept_vpid_has(ept_vpid::INVVPID)
        && (c.ept_vpid_has(ept_vpid::INVVPID_SINGLE_CONTEXT)
            || c.ept_vpid_has(ept_vpid::INVVPID_ALL_CONTEXT));
    let eptad = ept && c.ept_vpid_has(ept_vpid::ACCESSED_DIRTY);
    Ok(Kvm {
        ept,
        vpid,
        unrestricted_guest: ept && proc2 & proc2::UNRESTRICTED_GUEST != 0,
        eptad,
        pml: eptad && proc2 & proc2::ENABLE_PML != 0,
        vnmi: pin & pin::VIRTUAL_NMIS != 0,
        flexpriority: proc1 & proc1::USE_TPR_SHADOW != 0
            && proc2 & proc2::VIRTUALIZE_APIC_ACCESSES != 0,
        enable_shadow_vmcs: proc2 & proc2::VMCS_SHADOWING != 0,
    })
}

#[test]
fn kvm_loads_on_what_l0_offers_with_ept_vpid_and_unrestricted_guest() {
    let kvm = kvm_loads(&l1_caps(&skylake())).expect("kvm_intel loads");
    // What `l0-kvm-leaf` prints from /sys/module/kvm_intel/parameters.
    assert_eq!(
        kvm,
        Kvm {
            ept: true,
            vpid: true,
            unrestricted_guest: true,
            eptad: true,
            pml: true,
            vnmi: true,
            // TPR shadow and virtualize APIC accesses (the APIC-access page on L1's own
            // page) are offered, and VMCS shadowing (L2's VMREAD/VMWRITE performed by L0).
            flexpriority: true,
            enable_shadow_vmcs: true,
        }
    );
    // KVM's `cpu_has_vmx_tpr_shadow`: its L2s' CR8 goes to a virtual-APIC page, not exits.
    assert!(l1_caps(&skylake()).primary().can_set(proc1::USE_TPR_SHADOW));
}

#[test]
fn the_model_refuses_what_kvm_refuses() {
    let good = l1_caps(&skylake());
    // One half of the EFER pair: KVM's "Inconsistent VM-Entry/VM-Exit pair".
    let mut c = good;
    c.exit &= !(u64::from(exit::LOAD_IA32_EFER) << 32);
    assert_eq!(kvm_loads(&c).unwrap_err(), "Inconsistent VM-Entry/VM-Exit pair");
    // A required control missing (CR8 load exiting).
    let mut c = good;
    c.procbased &= !(u64::from(proc1::CR8_LOAD_EXITING) << 32);
    assert!(kvm_loads(&c).is_err());
    // EPT capabilities without the EPT control.
    let mut c = good;
    c.procbased2 &= !(u64::from(proc2::ENABLE_EPT) << 32);
    assert!(kvm_loads(&c).is_err());
    // No all-context INVEPT: KVM loads, without EPT (and so without unrestricted guest).
    let mut c = good;
    c.ept_vpid &= !ept_vpid::INVEPT_ALL_CONTEXT;
    let kvm = kvm_loads(&c).unwrap();
    assert!(!kvm.ept && !kvm.unrestricted_guest && kvm.vpid);
}
