//! Cross-check of the architectural constants against the `x86` and `x86_64` crates (each a
//! transcription of the SDM independent of ours): the CR0/CR4/EFER/RFLAGS bits of
//! [`crate::arch`], and the VMX control bits and capability MSR numbers of [`crate::caps`].

use crate::arch::{cr0, cr4, efer, rflags};
use crate::caps::{entry, exit, msr, pin, proc1, proc2};
use x86::bits64::rflags::RFlags;
use x86::controlregs::{Cr0, Cr4};
use x86::vmx::vmcs::control::{
    EntryControls, ExitControls, PinbasedControls, PrimaryControls, SecondaryControls,
};
use x86_64::registers::control::{Cr0Flags, Cr4Flags};
use x86_64::registers::model_specific::EferFlags;
use x86_64::registers::rflags::RFlags as RFlags64;

#[test]
#[rustfmt::skip]
fn control_register_bits_match_x86_and_x86_64() {
    let cr0_bits: &[(u64, Cr0, Cr0Flags)] = &[
        (cr0::PE, Cr0::CR0_PROTECTED_MODE, Cr0Flags::PROTECTED_MODE_ENABLE),
        (cr0::MP, Cr0::CR0_MONITOR_COPROCESSOR, Cr0Flags::MONITOR_COPROCESSOR),
        (cr0::EM, Cr0::CR0_EMULATE_COPROCESSOR, Cr0Flags::EMULATE_COPROCESSOR),
        (cr0::TS, Cr0::CR0_TASK_SWITCHED, Cr0Flags::TASK_SWITCHED),
        (cr0::ET, Cr0::CR0_EXTENSION_TYPE, Cr0Flags::EXTENSION_TYPE),
        (cr0::NE, Cr0::CR0_NUMERIC_ERROR, Cr0Flags::NUMERIC_ERROR),
        (cr0::WP, Cr0::CR0_WRITE_PROTECT, Cr0Flags::WRITE_PROTECT),
        (cr0::AM, Cr0::CR0_ALIGNMENT_MASK, Cr0Flags::ALIGNMENT_MASK),
        (cr0::NW, Cr0::CR0_NOT_WRITE_THROUGH, Cr0Flags::NOT_WRITE_THROUGH),
        (cr0::CD, Cr0::CR0_CACHE_DISABLE, Cr0Flags::CACHE_DISABLE),
        (cr0::PG, Cr0::CR0_ENABLE_PAGING, Cr0Flags::PAGING),
    ];
    for &(ours, x86, x86_64) in cr0_bits {
        assert_eq!(ours, x86.bits() as u64, "CR0 {x86:?}");
        assert_eq!(ours, x86_64.bits(), "CR0 {x86_64:?}");
    }
    let cr4_bits: &[(u64, Cr4, Cr4Flags)] = &[
        (cr4::VME, Cr4::CR4_ENABLE_VME, Cr4Flags::VIRTUAL_8086_MODE_EXTENSIONS),
        (cr4::PVI, Cr4::CR4_VIRTUAL_INTERRUPTS, Cr4Flags::PROTECTED_MODE_VIRTUAL_INTERRUPTS),
        (cr4::TSD, Cr4::CR4_TIME_STAMP_DISABLE, Cr4Flags::TIMESTAMP_DISABLE),
        (cr4::DE, Cr4::CR4_DEBUGGING_EXTENSIONS, Cr4Flags::DEBUGGING_EXTENSIONS),
        (cr4::PSE, Cr4::CR4_ENABLE_PSE, Cr4Flags::PAGE_SIZE_EXTENSION),
        (cr4::PAE, Cr4::CR4_ENABLE_PAE, Cr4Flags::PHYSICAL_ADDRESS_EXTENSION),
        (cr4::MCE, Cr4::CR4_ENABLE_MACHINE_CHECK, Cr4Flags::MACHINE_CHECK_EXCEPTION),
        (cr4::PGE, Cr4::CR4_ENABLE_GLOBAL_PAGES, Cr4Flags::PAGE_GLOBAL),
        (cr4::PCE, Cr4::CR4_ENABLE_PPMC, Cr4Flags::PERFORMANCE_MONITOR_COUNTER),
        (cr4::OSFXSR, Cr4::CR4_ENABLE_SSE, Cr4Flags::OSFXSR),
        (cr4::OSXMMEXCPT, Cr4::CR4_UNMASKED_SSE, Cr4Flags::OSXMMEXCPT_ENABLE),
        (cr4::UMIP, Cr4::CR4_ENABLE_UMIP, Cr4Flags::USER_MODE_INSTRUCTION_PREVENTION),
        (cr4::LA57, Cr4::CR4_ENABLE_LA57, Cr4Flags::L5_PAGING),
        (cr4::VMXE, Cr4::CR4_ENABLE_VMX, Cr4Flags::VIRTUAL_MACHINE_EXTENSIONS),
        (cr4::SMXE, Cr4::CR4_ENABLE_SMX, Cr4Flags::SAFER_MODE_EXTENSIONS),
        (cr4::FSGSBASE, Cr4::CR4_ENABLE_FSGSBASE, Cr4Flags::FSGSBASE),
        (cr4::PCIDE, Cr4::CR4_ENABLE_PCID, Cr4Flags::PCID),
        (cr4::OSXSAVE, Cr4::CR4_ENABLE_OS_XSAVE, Cr4Flags::OSXSAVE),
        (cr4::SMEP, Cr4::CR4_ENABLE_SMEP, Cr4Flags::SUPERVISOR_MODE_EXECUTION_PROTECTION),
        (cr4::SMAP, Cr4::CR4_ENABLE_SMAP, Cr4Flags::SUPERVISOR_MODE_ACCESS_PREVENTION),
        (cr4::PKE, Cr4::CR4_ENABLE_PROTECTION_KEY, Cr4Flags::PROTECTION_KEY_USER),
    ];
    for &(ours, x86, x86_64) in cr4_bits {
        assert_eq!(ours, x86.bits() as u64, "CR4 {x86:?}");
        assert_eq!(ours, x86_64.bits(), "CR4 {x86_64:?}");
    }
    // The `x86` crate has no EFER flags: `x86_64` only, and the MSR number from `x86`.
    assert_eq!(efer::SCE, EferFlags::SYSTEM_CALL_EXTENSIONS.bits());
    assert_eq!(efer::LME, EferFlags::LONG_MODE_ENABLE.bits());
    assert_eq!(efer::LMA, EferFlags::LONG_MODE_ACTIVE.bits());
    assert_eq!(efer::NXE, EferFlags::NO_EXECUTE_ENABLE.bits());
    assert_eq!(msr::IA32_EFER, x86::msr::IA32_EFER);
}

#[test]
#[rustfmt::skip]
fn rflags_bits_match_x86_and_x86_64() {
    let bits: &[(u64, RFlags, RFlags64)] = &[
        (rflags::CF, RFlags::FLAGS_CF, RFlags64::CARRY_FLAG),
        (rflags::PF, RFlags::FLAGS_PF, RFlags64::PARITY_FLAG),
        (rflags::AF, RFlags::FLAGS_AF, RFlags64::AUXILIARY_CARRY_FLAG),
        (rflags::ZF, RFlags::FLAGS_ZF, RFlags64::ZERO_FLAG),
        (rflags::SF, RFlags::FLAGS_SF, RFlags64::SIGN_FLAG),
        (rflags::TF, RFlags::FLAGS_TF, RFlags64::TRAP_FLAG),
        (rflags::IF, RFlags::FLAGS_IF, RFlags64::INTERRUPT_FLAG),
        (rflags::DF, RFlags::FLAGS_DF, RFlags64::DIRECTION_FLAG),
        (rflags::OF, RFlags::FLAGS_OF, RFlags64::OVERFLOW_FLAG),
        (rflags::IOPL, RFlags::FLAGS_IOPL3, RFlags64::IOPL_HIGH.union(RFlags64::IOPL_LOW)),
        (rflags::NT, RFlags::FLAGS_NT, RFlags64::NESTED_TASK),
        (rflags::RF, RFlags::FLAGS_RF, RFlags64::RESUME_FLAG),
        (rflags::VM, RFlags::FLAGS_VM, RFlags64::VIRTUAL_8086_MODE),
        (rflags::AC, RFlags::FLAGS_AC, RFlags64::ALIGNMENT_CHECK),
        (rflags::VIF, RFlags::FLAGS_VIF, RFlags64::VIRTUAL_INTERRUPT),
        (rflags::VIP, RFlags::FLAGS_VIP, RFlags64::VIRTUAL_INTERRUPT_PENDING),
        (rflags::ID, RFlags::FLAGS_ID, RFlags64::ID),
    ];
    for &(ours, x86, x86_64) in bits {
        assert_eq!(ours, x86.bits(), "RFLAGS {x86:?}");
        assert_eq!(ours, x86_64.bits(), "RFLAGS {x86_64:?}");
    }
    assert_eq!(rflags::FIXED_1, RFlags::FLAGS_A1.bits());
    // Reserved: everything that is neither a flag nor the fixed bit 1.
    let defined = bits.iter().fold(rflags::FIXED_1, |acc, &(b, _, _)| acc | b);
    assert_eq!(rflags::RESERVED, !defined);
}

#[test]
#[rustfmt::skip]
fn vmx_control_bits_match_x86() {
    let pin_bits: &[(u32, PinbasedControls)] = &[
        (pin::EXTERNAL_INTERRUPT_EXITING, PinbasedControls::EXTERNAL_INTERRUPT_EXITING),
        (pin::NMI_EXITING, PinbasedControls::NMI_EXITING),
        (pin::VIRTUAL_NMIS, PinbasedControls::VIRTUAL_NMIS),
        (pin::PREEMPTION_TIMER, PinbasedControls::VMX_PREEMPTION_TIMER),
        (pin::POSTED_INTERRUPTS, PinbasedControls::POSTED_INTERRUPTS),
    ];
    for &(ours, theirs) in pin_bits {
        assert_eq!(ours, theirs.bits(), "pin-based {theirs:?}");
    }
    let proc1_bits: &[(u32, PrimaryControls)] = &[
        (proc1::INTERRUPT_WINDOW_EXITING, PrimaryControls::INTERRUPT_WINDOW_EXITING),
        (proc1::USE_TSC_OFFSETTING, PrimaryControls::USE_TSC_OFFSETTING),
        (proc1::HLT_EXITING, PrimaryControls::HLT_EXITING),
        (proc1::INVLPG_EXITING, PrimaryControls::INVLPG_EXITING),
        (proc1::MWAIT_EXITING, PrimaryControls::MWAIT_EXITING),
        (proc1::RDPMC_EXITING, PrimaryControls::RDPMC_EXITING),
        (proc1::RDTSC_EXITING, PrimaryControls::RDTSC_EXITING),
        (proc1::CR3_LOAD_EXITING, PrimaryControls::CR3_LOAD_EXITING),
        (proc1::CR3_STORE_EXITING, PrimaryControls::CR3_STORE_EXITING),
        (proc1::CR8_LOAD_EXITING, PrimaryControls::CR8_LOAD_EXITING),
        (proc1::CR8_STORE_EXITING, PrimaryControls::CR8_STORE_EXITING),
        (proc1::USE_TPR_SHADOW, PrimaryControls::USE_TPR_SHADOW),
        (proc1::NMI_WINDOW_EXITING, PrimaryControls::NMI_WINDOW_EXITING),
        (proc1::MOV_DR_EXITING, PrimaryControls::MOV_DR_EXITING),
        (proc1::UNCONDITIONAL_IO_EXITING, PrimaryControls::UNCOND_IO_EXITING),
        (proc1::USE_IO_BITMAPS, PrimaryControls::USE_IO_BITMAPS),
        (proc1::MONITOR_TRAP_FLAG, PrimaryControls::MONITOR_TRAP_FLAG),
        (proc1::USE_MSR_BITMAPS, PrimaryControls::USE_MSR_BITMAPS),
        (proc1::MONITOR_EXITING, PrimaryControls::MONITOR_EXITING),
        (proc1::PAUSE_EXITING, PrimaryControls::PAUSE_EXITING),
        (proc1::ACTIVATE_SECONDARY_CONTROLS, PrimaryControls::SECONDARY_CONTROLS),
    ];
    for &(ours, theirs) in proc1_bits {
        assert_eq!(ours, theirs.bits(), "primary {theirs:?}");
    }
    let proc2_bits: &[(u32, SecondaryControls)] = &[
        (proc2::VIRTUALIZE_APIC_ACCESSES, SecondaryControls::VIRTUALIZE_APIC),
        (proc2::ENABLE_EPT, SecondaryControls::ENABLE_EPT),
        (proc2::DESCRIPTOR_TABLE_EXITING, SecondaryControls::DTABLE_EXITING),
        (proc2::ENABLE_RDTSCP, SecondaryControls::ENABLE_RDTSCP),
        (proc2::VIRTUALIZE_X2APIC_MODE, SecondaryControls::VIRTUALIZE_X2APIC),
        (proc2::ENABLE_VPID, SecondaryControls::ENABLE_VPID),
        (proc2::WBINVD_EXITING, SecondaryControls::WBINVD_EXITING),
        (proc2::UNRESTRICTED_GUEST, SecondaryControls::UNRESTRICTED_GUEST),
        (proc2::APIC_REGISTER_VIRTUALIZATION, SecondaryControls::VIRTUALIZE_APIC_REGISTER),
        (proc2::VIRTUAL_INTERRUPT_DELIVERY, SecondaryControls::VIRTUAL_INTERRUPT_DELIVERY),
        (proc2::PAUSE_LOOP_EXITING, SecondaryControls::PAUSE_LOOP_EXITING),
        (proc2::RDRAND_EXITING, SecondaryControls::RDRAND_EXITING),
        (proc2::ENABLE_INVPCID, SecondaryControls::ENABLE_INVPCID),
        (proc2::ENABLE_VM_FUNCTIONS, SecondaryControls::ENABLE_VM_FUNCTIONS),
        (proc2::VMCS_SHADOWING, SecondaryControls::VMCS_SHADOWING),
        (proc2::ENCLS_EXITING, SecondaryControls::ENCLS_EXITING),
        (proc2::RDSEED_EXITING, SecondaryControls::RDSEED_EXITING),
        (proc2::ENABLE_PML, SecondaryControls::ENABLE_PML),
        (proc2::EPT_VIOLATION_VE, SecondaryControls::EPT_VIOLATION_VE),
        (proc2::CONCEAL_VMX_FROM_PT, SecondaryControls::CONCEAL_VMX_FROM_PT),
        (proc2::ENABLE_XSAVES, SecondaryControls::ENABLE_XSAVES_XRSTORS),
        (proc2::MODE_BASED_EPT_EXECUTE, SecondaryControls::MODE_BASED_EPT),
        (proc2::USE_TSC_SCALING, SecondaryControls::USE_TSC_SCALING),
    ];
    for &(ours, theirs) in proc2_bits {
        assert_eq!(ours, theirs.bits(), "secondary {theirs:?}");
    }
    let exit_bits: &[(u32, ExitControls)] = &[
        (exit::SAVE_DEBUG_CONTROLS, ExitControls::SAVE_DEBUG_CONTROLS),
        (exit::HOST_ADDRESS_SPACE_SIZE, ExitControls::HOST_ADDRESS_SPACE_SIZE),
        (exit::LOAD_IA32_PERF_GLOBAL_CTRL, ExitControls::LOAD_IA32_PERF_GLOBAL_CTRL),
        (exit::ACK_INTERRUPT_ON_EXIT, ExitControls::ACK_INTERRUPT_ON_EXIT),
        (exit::SAVE_IA32_PAT, ExitControls::SAVE_IA32_PAT),
        (exit::LOAD_IA32_PAT, ExitControls::LOAD_IA32_PAT),
        (exit::SAVE_IA32_EFER, ExitControls::SAVE_IA32_EFER),
        (exit::LOAD_IA32_EFER, ExitControls::LOAD_IA32_EFER),
        (exit::SAVE_PREEMPTION_TIMER, ExitControls::SAVE_VMX_PREEMPTION_TIMER),
    ];
    for &(ours, theirs) in exit_bits {
        assert_eq!(ours, theirs.bits(), "VM-exit {theirs:?}");
    }
    let entry_bits: &[(u32, EntryControls)] = &[
        (entry::LOAD_DEBUG_CONTROLS, EntryControls::LOAD_DEBUG_CONTROLS),
        (entry::IA32E_MODE_GUEST, EntryControls::IA32E_MODE_GUEST),
        (entry::ENTRY_TO_SMM, EntryControls::ENTRY_TO_SMM),
        (entry::DEACTIVATE_DUAL_MONITOR, EntryControls::DEACTIVATE_DUAL_MONITOR),
        (entry::LOAD_IA32_PERF_GLOBAL_CTRL, EntryControls::LOAD_IA32_PERF_GLOBAL_CTRL),
        (entry::LOAD_IA32_PAT, EntryControls::LOAD_IA32_PAT),
        (entry::LOAD_IA32_EFER, EntryControls::LOAD_IA32_EFER),
    ];
    for &(ours, theirs) in entry_bits {
        assert_eq!(ours, theirs.bits(), "VM-entry {theirs:?}");
    }
}

#[test]
#[rustfmt::skip]
fn msr_numbers_match_x86() {
    let numbers: &[(u32, u32, &str)] = &[
        (msr::IA32_FEATURE_CONTROL, x86::msr::IA32_FEATURE_CONTROL, "IA32_FEATURE_CONTROL"),
        (msr::IA32_VMX_BASIC, x86::msr::IA32_VMX_BASIC, "IA32_VMX_BASIC"),
        (msr::IA32_VMX_PINBASED_CTLS, x86::msr::IA32_VMX_PINBASED_CTLS, "IA32_VMX_PINBASED_CTLS"),
        (msr::IA32_VMX_PROCBASED_CTLS, x86::msr::IA32_VMX_PROCBASED_CTLS, "IA32_VMX_PROCBASED_CTLS"),
        (msr::IA32_VMX_EXIT_CTLS, x86::msr::IA32_VMX_EXIT_CTLS, "IA32_VMX_EXIT_CTLS"),
        (msr::IA32_VMX_ENTRY_CTLS, x86::msr::IA32_VMX_ENTRY_CTLS, "IA32_VMX_ENTRY_CTLS"),
        (msr::IA32_VMX_MISC, x86::msr::IA32_VMX_MISC, "IA32_VMX_MISC"),
        (msr::IA32_VMX_CR0_FIXED0, x86::msr::IA32_VMX_CR0_FIXED0, "IA32_VMX_CR0_FIXED0"),
        (msr::IA32_VMX_CR0_FIXED1, x86::msr::IA32_VMX_CR0_FIXED1, "IA32_VMX_CR0_FIXED1"),
        (msr::IA32_VMX_CR4_FIXED0, x86::msr::IA32_VMX_CR4_FIXED0, "IA32_VMX_CR4_FIXED0"),
        (msr::IA32_VMX_CR4_FIXED1, x86::msr::IA32_VMX_CR4_FIXED1, "IA32_VMX_CR4_FIXED1"),
        (msr::IA32_VMX_VMCS_ENUM, x86::msr::IA32_VMX_VMCS_ENUM, "IA32_VMX_VMCS_ENUM"),
        (msr::IA32_VMX_PROCBASED_CTLS2, x86::msr::IA32_VMX_PROCBASED_CTLS2, "IA32_VMX_PROCBASED_CTLS2"),
        (msr::IA32_VMX_EPT_VPID_CAP, x86::msr::IA32_VMX_EPT_VPID_CAP, "IA32_VMX_EPT_VPID_CAP"),
        (msr::IA32_VMX_TRUE_PINBASED_CTLS, x86::msr::IA32_VMX_TRUE_PINBASED_CTLS, "IA32_VMX_TRUE_PINBASED_CTLS"),
        (msr::IA32_VMX_TRUE_PROCBASED_CTLS, x86::msr::IA32_VMX_TRUE_PROCBASED_CTLS, "IA32_VMX_TRUE_PROCBASED_CTLS"),
        (msr::IA32_VMX_TRUE_EXIT_CTLS, x86::msr::IA32_VMX_TRUE_EXIT_CTLS, "IA32_VMX_TRUE_EXIT_CTLS"),
        (msr::IA32_VMX_TRUE_ENTRY_CTLS, x86::msr::IA32_VMX_TRUE_ENTRY_CTLS, "IA32_VMX_TRUE_ENTRY_CTLS"),
        (msr::IA32_VMX_VMFUNC, x86::msr::IA32_VMX_VMFUNC, "IA32_VMX_VMFUNC"),
        (msr::IA32_EFER, x86::msr::IA32_EFER, "IA32_EFER"),
        (msr::IA32_PAT, x86::msr::IA32_PAT, "IA32_PAT"),
    ];
    for &(ours, theirs, name) in numbers {
        assert_eq!(ours, theirs, "{name}");
    }
}
