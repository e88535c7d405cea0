//! Issue 14 finding 2, as a host test: every CPUID feature the policy can show must work,
//! and so must the MSRs it implies. [`FEATURES`] lists, from the SDM (Vol. 2A CPUID, Vol. 4
//! Table 2-2), each feature bit and the MSRs a guest may then use. The policy is fed a host
//! that has everything; for every bit that stays visible, each implied MSR must be readable
//! (and writable where the architecture lets software write it) in the MSR policy, and every
//! visible bit must be in the list, so a bit someone lets through without classifying it
//! fails too.

use crate::cpuid::{self, Features, Live};
use crate::msr::{self, index::*};

/// Which CPUID register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reg {
    Eax = 0,
    Ebx = 1,
    Ecx = 2,
    Edx = 3,
}
use Reg::*;

/// What a feature needs from the MSR policy.
#[derive(Clone, Copy, Debug)]
enum Need {
    /// RDMSR works.
    R(u32),
    /// RDMSR and WRMSR work.
    Rw(u32),
    /// WRMSR works (command MSRs: PRED_CMD, FLUSH_CMD).
    W(u32),
    /// IA32_MTRRCAP and the fixed and variable MTRRs it reports.
    Mtrrs,
    /// IA32_MCG_CAP, IA32_MCG_STATUS and the banks (and MCG_CTL) MCG_CAP reports.
    MachineCheck,
}
use Need::*;

/// (leaf, subleaf, register, bit, name, needs).
type Feature = (u32, u32, Reg, u32, &'static str, &'static [Need]);

const SYSCALL_MSRS: &[Need] = &[Rw(IA32_STAR), Rw(IA32_LSTAR), Rw(IA32_CSTAR), Rw(IA32_FMASK)];
const THERMAL: &[Need] =
    &[Rw(IA32_CLOCK_MODULATION), Rw(IA32_THERM_INTERRUPT), R(IA32_THERM_STATUS)];
const VMX_MSRS: &[Need] = &[R(IA32_FEATURE_CONTROL), R(IA32_VMX_BASIC), R(IA32_VMX_VMFUNC)];
const SPEC_CTRL: &[Need] = &[Rw(IA32_SPEC_CTRL)];
const CET: &[Need] = &[Rw(IA32_U_CET), Rw(IA32_S_CET)];
const RDT: &[Need] = &[Rw(IA32_PQR_ASSOC), Rw(IA32_QM_EVTSEL)];

#[rustfmt::skip]
const FEATURES: &[Feature] = &[
    (1, 0, Ecx, 0, "SSE3", &[]),
    (1, 0, Ecx, 1, "PCLMULQDQ", &[]),
    (1, 0, Ecx, 2, "DTES64", &[Rw(IA32_DS_AREA)]),
    (1, 0, Ecx, 3, "MONITOR", &[]),
    (1, 0, Ecx, 4, "DS-CPL", &[Rw(IA32_DS_AREA)]),
    (1, 0, Ecx, 5, "VMX", VMX_MSRS),
    (1, 0, Ecx, 6, "SMX", &[R(IA32_FEATURE_CONTROL)]),
    (1, 0, Ecx, 7, "EIST", &[R(IA32_PERF_STATUS), Rw(IA32_PERF_CTL)]),
    (1, 0, Ecx, 8, "TM2", THERMAL),
    (1, 0, Ecx, 9, "SSSE3", &[]),
    (1, 0, Ecx, 10, "CNXT-ID", &[]),
    (1, 0, Ecx, 11, "SDBG", &[Rw(IA32_DEBUG_INTERFACE)]),
    (1, 0, Ecx, 12, "FMA", &[]),
    (1, 0, Ecx, 13, "CMPXCHG16B", &[]),
    (1, 0, Ecx, 14, "xTPR", &[Rw(IA32_MISC_ENABLE)]),
    (1, 0, Ecx, 15, "PDCM", &[R(IA32_PERF_CAPABILITIES)]),
    (1, 0, Ecx, 17, "PCID", &[]),
    (1, 0, Ecx, 18, "DCA", &[R(IA32_PLATFORM_DCA_CAP)]),
    (1, 0, Ecx, 19, "SSE4.1", &[]),
    (1, 0, Ecx, 20, "SSE4.2", &[]),
    (1, 0, Ecx, 21, "x2APIC", &[Rw(IA32_APIC_BASE), R(IA32_X2APIC_FIRST + 2), Rw(IA32_X2APIC_FIRST + 8)]),
    (1, 0, Ecx, 22, "MOVBE", &[]),
    (1, 0, Ecx, 23, "POPCNT", &[]),
    (1, 0, Ecx, 24, "TSC-deadline", &[Rw(IA32_TSC_DEADLINE)]),
    (1, 0, Ecx, 25, "AES", &[]),
    (1, 0, Ecx, 26, "XSAVE", &[]),
    (1, 0, Ecx, 27, "OSXSAVE", &[]),
    (1, 0, Ecx, 28, "AVX", &[]),
    (1, 0, Ecx, 29, "F16C", &[]),
    (1, 0, Ecx, 30, "RDRAND", &[]),
    (1, 0, Ecx, 31, "hypervisor", &[]),
    (1, 0, Edx, 0, "FPU", &[]),
    (1, 0, Edx, 1, "VME", &[]),
    (1, 0, Edx, 2, "DE", &[]),
    (1, 0, Edx, 3, "PSE", &[]),
    (1, 0, Edx, 4, "TSC", &[Rw(IA32_TSC)]),
    (1, 0, Edx, 5, "MSR", &[Rw(IA32_TSC)]),
    (1, 0, Edx, 6, "PAE", &[]),
    (1, 0, Edx, 7, "MCE", &[]),
    (1, 0, Edx, 8, "CX8", &[]),
    (1, 0, Edx, 9, "APIC", &[Rw(IA32_APIC_BASE)]),
    (1, 0, Edx, 11, "SEP", &[Rw(IA32_SYSENTER_CS), Rw(IA32_SYSENTER_ESP), Rw(IA32_SYSENTER_EIP)]),
    (1, 0, Edx, 12, "MTRR", &[Mtrrs]),
    (1, 0, Edx, 13, "PGE", &[]),
    (1, 0, Edx, 14, "MCA", &[MachineCheck]),
    (1, 0, Edx, 15, "CMOV", &[]),
    (1, 0, Edx, 16, "PAT", &[Rw(IA32_PAT)]),
    (1, 0, Edx, 17, "PSE-36", &[]),
    (1, 0, Edx, 18, "PSN", &[]),
    (1, 0, Edx, 19, "CLFSH", &[]),
    (1, 0, Edx, 21, "DS", &[Rw(IA32_DS_AREA)]),
    (1, 0, Edx, 22, "ACPI", THERMAL),
    (1, 0, Edx, 23, "MMX", &[]),
    (1, 0, Edx, 24, "FXSR", &[]),
    (1, 0, Edx, 25, "SSE", &[]),
    (1, 0, Edx, 26, "SSE2", &[]),
    (1, 0, Edx, 27, "SS", &[]),
    (1, 0, Edx, 28, "HTT", &[]),
    (1, 0, Edx, 29, "TM", THERMAL),
    (1, 0, Edx, 31, "PBE", &[Rw(IA32_MISC_ENABLE)]),
    (6, 0, Eax, 0, "digital thermal sensor", &[R(IA32_THERM_STATUS)]),
    (6, 0, Eax, 1, "turbo boost", &[Rw(IA32_MISC_ENABLE), Rw(IA32_PERF_CTL)]),
    (6, 0, Eax, 2, "ARAT", &[]),
    (6, 0, Eax, 4, "PLN", &[Rw(IA32_THERM_INTERRUPT)]),
    (6, 0, Eax, 5, "ECMD", &[Rw(IA32_CLOCK_MODULATION)]),
    (6, 0, Eax, 6, "PTM", &[R(IA32_PACKAGE_THERM_STATUS)]),
    (6, 0, Eax, 7, "HWP", &[Rw(IA32_PM_ENABLE), R(IA32_HWP_CAPABILITIES)]),
    (6, 0, Ecx, 0, "MPERF/APERF", &[R(IA32_MPERF), R(IA32_APERF)]),
    (6, 0, Ecx, 3, "energy-performance bias", &[Rw(IA32_ENERGY_PERF_BIAS)]),
    (7, 0, Ebx, 0, "FSGSBASE", &[]),
    (7, 0, Ebx, 1, "TSC_ADJUST", &[Rw(IA32_TSC_ADJUST)]),
    (7, 0, Ebx, 2, "SGX", &[R(IA32_SGX_SVN_STATUS)]),
    (7, 0, Ebx, 3, "BMI1", &[]),
    (7, 0, Ebx, 4, "HLE", &[]),
    (7, 0, Ebx, 5, "AVX2", &[]),
    (7, 0, Ebx, 6, "FDP_EXCPTN_ONLY", &[]),
    (7, 0, Ebx, 7, "SMEP", &[]),
    (7, 0, Ebx, 8, "BMI2", &[]),
    (7, 0, Ebx, 9, "ERMS", &[]),
    (7, 0, Ebx, 10, "INVPCID", &[]),
    (7, 0, Ebx, 11, "RTM", &[]),
    (7, 0, Ebx, 12, "RDT-M", RDT),
    (7, 0, Ebx, 13, "FPU CS/DS deprecated", &[]),
    (7, 0, Ebx, 14, "MPX", &[Rw(IA32_BNDCFGS)]),
    (7, 0, Ebx, 15, "RDT-A", RDT),
    (7, 0, Ebx, 16, "AVX512F", &[]),
    (7, 0, Ebx, 17, "AVX512DQ", &[]),
    (7, 0, Ebx, 18, "RDSEED", &[]),
    (7, 0, Ebx, 19, "ADX", &[]),
    (7, 0, Ebx, 20, "SMAP", &[]),
    (7, 0, Ebx, 21, "AVX512_IFMA", &[]),
    (7, 0, Ebx, 23, "CLFLUSHOPT", &[]),
    (7, 0, Ebx, 24, "CLWB", &[]),
    (7, 0, Ebx, 25, "PT", &[Rw(IA32_RTIT_CTL)]),
    (7, 0, Ebx, 26, "AVX512PF", &[]),
    (7, 0, Ebx, 27, "AVX512ER", &[]),
    (7, 0, Ebx, 28, "AVX512CD", &[]),
    (7, 0, Ebx, 29, "SHA", &[]),
    (7, 0, Ebx, 30, "AVX512BW", &[]),
    (7, 0, Ebx, 31, "AVX512VL", &[]),
    (7, 0, Ecx, 0, "PREFETCHWT1", &[]),
    (7, 0, Ecx, 1, "AVX512_VBMI", &[]),
    (7, 0, Ecx, 2, "UMIP", &[]),
    (7, 0, Ecx, 3, "PKU", &[]),
    (7, 0, Ecx, 4, "OSPKE", &[]),
    (7, 0, Ecx, 5, "WAITPKG", &[Rw(IA32_UMWAIT_CONTROL)]),
    (7, 0, Ecx, 6, "AVX512_VBMI2", &[]),
    (7, 0, Ecx, 7, "CET_SS", CET),
    (7, 0, Ecx, 8, "GFNI", &[]),
    (7, 0, Ecx, 9, "VAES", &[]),
    (7, 0, Ecx, 10, "VPCLMULQDQ", &[]),
    (7, 0, Ecx, 11, "AVX512_VNNI", &[]),
    (7, 0, Ecx, 12, "AVX512_BITALG", &[]),
    (7, 0, Ecx, 13, "TME", &[R(IA32_TME_CAPABILITY)]),
    (7, 0, Ecx, 14, "AVX512_VPOPCNTDQ", &[]),
    (7, 0, Ecx, 16, "LA57", &[]),
    (7, 0, Ecx, 22, "RDPID", &[Rw(IA32_TSC_AUX)]),
    (7, 0, Ecx, 23, "Key Locker", &[]),
    (7, 0, Ecx, 24, "bus-lock detect", &[Rw(IA32_DEBUGCTL)]),
    (7, 0, Ecx, 25, "CLDEMOTE", &[]),
    (7, 0, Ecx, 27, "MOVDIRI", &[]),
    (7, 0, Ecx, 28, "MOVDIR64B", &[]),
    (7, 0, Ecx, 29, "ENQCMD", &[Rw(IA32_PASID)]),
    (7, 0, Ecx, 30, "SGX_LC", &[Rw(IA32_SGXLEPUBKEYHASH0)]),
    (7, 0, Ecx, 31, "PKS", &[Rw(IA32_PKRS)]),
    (7, 0, Edx, 2, "AVX512_4VNNIW", &[]),
    (7, 0, Edx, 3, "AVX512_4FMAPS", &[]),
    (7, 0, Edx, 4, "FSRM", &[]),
    (7, 0, Edx, 5, "UINTR", &[Rw(IA32_UINTR_RR)]),
    (7, 0, Edx, 8, "AVX512_VP2INTERSECT", &[]),
    (7, 0, Edx, 9, "SRBDS_CTRL", &[Rw(IA32_MCU_OPT_CTRL)]),
    (7, 0, Edx, 10, "MD_CLEAR", &[]),
    (7, 0, Edx, 13, "TSX_FORCE_ABORT", &[Rw(IA32_TSX_FORCE_ABORT)]),
    (7, 0, Edx, 14, "SERIALIZE", &[]),
    (7, 0, Edx, 15, "hybrid", &[]),
    (7, 0, Edx, 16, "TSXLDTRK", &[]),
    (7, 0, Edx, 18, "PCONFIG", &[]),
    (7, 0, Edx, 19, "arch LBR", &[Rw(IA32_ARCH_LBR_CTL)]),
    (7, 0, Edx, 20, "CET_IBT", CET),
    (7, 0, Edx, 23, "AVX512_FP16", &[]),
    (7, 0, Edx, 26, "IBRS/IBPB", &[Rw(IA32_SPEC_CTRL), W(IA32_PRED_CMD)]),
    (7, 0, Edx, 27, "STIBP", SPEC_CTRL),
    (7, 0, Edx, 28, "L1D_FLUSH", &[W(IA32_FLUSH_CMD)]),
    (7, 0, Edx, 29, "ARCH_CAPABILITIES", &[R(IA32_ARCH_CAPABILITIES)]),
    (7, 0, Edx, 30, "CORE_CAPABILITIES", &[R(IA32_CORE_CAPABILITIES)]),
    (7, 0, Edx, 31, "SSBD", SPEC_CTRL),
    (0xd, 1, Eax, 0, "XSAVEOPT", &[]),
    (0xd, 1, Eax, 1, "XSAVEC", &[]),
    (0xd, 1, Eax, 2, "XGETBV ECX=1", &[]),
    (0xd, 1, Eax, 3, "XSAVES", &[Rw(IA32_XSS)]),
    (0xd, 1, Eax, 4, "XFD", &[]),
    (0x8000_0001, 0, Ecx, 0, "LAHF/SAHF", &[]),
    (0x8000_0001, 0, Ecx, 5, "LZCNT", &[]),
    (0x8000_0001, 0, Ecx, 8, "PREFETCHW", &[]),
    (0x8000_0001, 0, Edx, 11, "SYSCALL", SYSCALL_MSRS),
    (0x8000_0001, 0, Edx, 20, "NX", &[Rw(IA32_EFER)]),
    (0x8000_0001, 0, Edx, 26, "1-GiB pages", &[]),
    (0x8000_0001, 0, Edx, 27, "RDTSCP", &[Rw(IA32_TSC_AUX)]),
    (0x8000_0001, 0, Edx, 29, "LM", &[Rw(IA32_EFER), Rw(IA32_FS_BASE), Rw(IA32_GS_BASE), Rw(IA32_KERNEL_GS_BASE)]),
    (0x8000_0007, 0, Edx, 8, "invariant TSC", &[]),
];

/// Leaves whose flag bits [`FEATURES`] covers: (leaf, subleaf, registers).
const FLAG_LEAVES: &[(u32, u32, &[Reg])] = &[
    (1, 0, &[Ecx, Edx]),
    (6, 0, &[Eax, Ecx]),
    (7, 0, &[Ebx, Ecx, Edx]),
    (0xd, 1, &[Eax]),
    (0x8000_0001, 0, &[Ecx, Edx]),
    (0x8000_0007, 0, &[Edx]),
];

/// Whole leaves that, when not all zero, describe hardware with MSRs: (leaf, needs).
const MSR_LEAVES: &[(u32, &[Need])] = &[
    // Architectural PMU (version in EAX[7:0]): its counters are checked in `pmu_needs`.
    (0xa, &[]),
    (0xf, RDT),
    (0x10, RDT),
    (0x12, &[R(IA32_SGX_SVN_STATUS)]),
    (0x14, &[Rw(IA32_RTIT_CTL)]),
    (0x1c, &[Rw(IA32_ARCH_LBR_CTL)]),
    (0x20, &[Rw(IA32_HRESET_ENABLE)]),
];

/// The processor the policy shows for a host that has everything.
fn shown(leaf: u32, subleaf: u32, f: &Features) -> [u32; 4] {
    let live = Live { cr4: cpuid::CR4_OSXSAVE | cpuid::CR4_PKE, apic_enabled: true };
    cpuid::answer(leaf, subleaf, [u32::MAX; 4], f, &live)
}

/// What is wrong with `need` in the MSR policy, if anything.
fn check_need(need: Need, f: &Features, out: &mut Vec<String>) {
    let mut want = |msr: u32, read: bool, write: bool| {
        if read && !msr::readable(msr, f) {
            out.push(format!("RDMSR {msr:#x} faults"));
        }
        if write && !msr::writable(msr, f) {
            out.push(format!("WRMSR {msr:#x} faults"));
        }
    };
    match need {
        R(m) => want(m, true, false),
        Rw(m) => want(m, true, true),
        W(m) => want(m, false, true),
        Mtrrs => {
            want(IA32_MTRRCAP, true, false);
            want(IA32_MTRR_DEF_TYPE, true, true);
            let cap = match msr::lookup(IA32_MTRRCAP, f) {
                msr::Msr::ReadOnly(v) => v,
                _ => 0,
            };
            for n in 0..(cap & 0xff) as u32 {
                want(IA32_MTRR_PHYSBASE0 + 2 * n, true, true);
                want(IA32_MTRR_PHYSBASE0 + 2 * n + 1, true, true);
            }
            if cap & (1 << 8) != 0 {
                let fixed =
                    [IA32_MTRR_FIX64K_00000, IA32_MTRR_FIX16K_80000, IA32_MTRR_FIX16K_A0000];
                for m in fixed.into_iter().chain(IA32_MTRR_FIX4K_C0000..=IA32_MTRR_FIX4K_F8000) {
                    want(m, true, true);
                }
            }
        }
        MachineCheck => {
            want(IA32_MCG_CAP, true, false);
            want(IA32_MCG_STATUS, true, true);
            let cap = match msr::lookup(IA32_MCG_CAP, f) {
                msr::Msr::ReadOnly(v) => v,
                _ => 0,
            };
            if cap & (1 << 8) != 0 {
                want(IA32_MCG_CTL, true, true);
            }
            for bank in 0..(cap & 0xff) as u32 {
                for m in 0..4 {
                    want(IA32_MC0_CTL + 4 * bank + m, true, m != 3);
                }
            }
        }
    }
}

/// Every problem with the answers `show` gives: features visible without their MSRs, and
/// visible bits nobody classified.
fn problems(show: impl Fn(u32, u32) -> [u32; 4], f: &Features) -> Vec<String> {
    let mut out = Vec::new();
    for &(leaf, subleaf, reg, bit, name, needs) in FEATURES {
        if show(leaf, subleaf)[reg as usize] & (1 << bit) != 0 {
            let mut errors = Vec::new();
            for &need in needs {
                check_need(need, f, &mut errors);
            }
            out.extend(errors.into_iter().map(|e| format!("{name} is shown but {e}")));
        }
    }
    for &(leaf, subleaf, regs) in FLAG_LEAVES {
        for &reg in regs {
            let word = show(leaf, subleaf)[reg as usize];
            for bit in (0..32).filter(|b| word & (1 << b) != 0) {
                let known =
                    FEATURES.iter().any(|e| (e.0, e.1, e.2, e.3) == (leaf, subleaf, reg, bit));
                if !known {
                    out.push(format!(
                        "CPUID {leaf:#x}.{subleaf}:{reg:?}[{bit}] is shown unclassified"
                    ));
                }
            }
        }
    }
    for &(leaf, needs) in MSR_LEAVES {
        if show(leaf, 0) != [0; 4] {
            let mut errors = Vec::new();
            for &need in needs {
                check_need(need, f, &mut errors);
            }
            out.extend(errors.into_iter().map(|e| format!("leaf {leaf:#x} is shown but {e}")));
        }
    }
    // Architectural PMU: EAX[7:0] version, EAX[15:8] general-purpose counters.
    let pmu = show(0xa, 0)[0];
    if pmu & 0xff != 0 {
        let mut errors = Vec::new();
        for n in 0..(pmu >> 8) & 0xff {
            check_need(Rw(IA32_PERFEVTSEL0 + n), f, &mut errors);
            check_need(Rw(IA32_PMC0 + n), f, &mut errors);
        }
        if pmu & 0xff >= 2 {
            check_need(Rw(IA32_PERF_GLOBAL_CTRL), f, &mut errors);
        }
        out.extend(errors.into_iter().map(|e| format!("the PMU is shown but {e}")));
    }
    out
}

const CONTEXTS: [Features; 4] = [
    Features { vmx: false, rdtscp: false, invpcid: false },
    Features { vmx: true, rdtscp: false, invpcid: false },
    Features { vmx: false, rdtscp: true, invpcid: true },
    Features { vmx: true, rdtscp: true, invpcid: true },
];

#[test]
fn every_shown_feature_has_its_msrs() {
    for f in CONTEXTS {
        let found = problems(|l, s| shown(l, s, &f), &f);
        assert!(found.is_empty(), "{f:?}:\n{}", found.join("\n"));
    }
}

/// The test above would catch the bugs of issue 14: PDCM or a PMU let through without
/// their MSRs.
#[test]
fn the_check_catches_pdcm_and_pmu_without_msrs() {
    let f = CONTEXTS[3];
    let with_pdcm = |l: u32, s: u32| {
        let mut a = shown(l, s, &f);
        if l == 1 {
            a[2] |= cpuid::leaf1_ecx::PDCM;
        }
        a
    };
    let found = problems(with_pdcm, &f);
    assert!(found.iter().any(|p| p.contains("PDCM") && p.contains("0x345")), "{found:?}");
    let with_pmu = |l: u32, s: u32| if l == 0xa { [0x0730_0402, 0, 0, 0] } else { shown(l, s, &f) };
    let found = problems(with_pmu, &f);
    assert!(found.iter().any(|p| p.contains("0x186")), "{found:?}");
    let unclassified = |l: u32, s: u32| {
        let mut a = shown(l, s, &f);
        if l == 7 && s == 0 {
            a[3] |= 1 << 1;
        }
        a
    };
    assert!(problems(unclassified, &f).iter().any(|p| p.contains("unclassified")));
}
