//! CPUID as a level shows it to its guest (SDM Vol. 2A, CPUID; Vol. 3A 13.2 for XSAVE): the
//! host's answer filtered through allowlists, so that every feature the guest sees works (its
//! instructions and the MSRs it implies, which [`crate::msr`] backs) and everything else is
//! hidden. Bits nobody listed here are hidden too: a new processor's features stay invisible
//! until someone decides how to back them. The host test `feature_msrs` derives the MSRs of
//! every bit this policy can show and checks them against the MSR policy.
//!
//! The answer has three parts, so the image can cache the expensive one:
//! - [`static_answer`]: a function of the host's answer and [`Features`], fixed for a guest's
//!   life (the image caches it per leaf);
//! - [`live_bits`]: the bits that mirror the executing level's state at answer time
//!   (CPUID.1:ECX.OSXSAVE = CR4.OSXSAVE, CPUID.7.0:ECX.OSPKE = CR4.PKE, CPUID.1:EDX.APIC =
//!   IA32_APIC_BASE's global enable);
//! - [`hypervisor_leaf`]: turtles' own leaves 0x40000000.. (signature, depth, exit counts).

/// Signature returned in EBX, ECX, EDX of leaf 0x40000000.
pub const SIGNATURE: &[u8; 12] = b"turtles\0\0\0\0\0";
/// The highest hypervisor leaf.
pub const MAX_HYPERVISOR_LEAF: u32 = 0x4000_0004;
/// The highest basic leaf the policy knows; the guest sees min(host, this).
pub const MAX_BASIC_LEAF: u32 = 0x1f;
/// The highest extended leaf the policy knows.
pub const MAX_EXTENDED_LEAF: u32 = 0x8000_0008;

/// CPUID.1:ECX (SDM Vol. 2A Table 3-10).
pub mod leaf1_ecx {
    pub const SSE3: u32 = 1 << 0;
    pub const PCLMULQDQ: u32 = 1 << 1;
    pub const DTES64: u32 = 1 << 2;
    pub const MONITOR: u32 = 1 << 3;
    pub const DS_CPL: u32 = 1 << 4;
    pub const VMX: u32 = 1 << 5;
    pub const SMX: u32 = 1 << 6;
    pub const EIST: u32 = 1 << 7;
    pub const TM2: u32 = 1 << 8;
    pub const SSSE3: u32 = 1 << 9;
    pub const CNXT_ID: u32 = 1 << 10;
    pub const SDBG: u32 = 1 << 11;
    pub const FMA: u32 = 1 << 12;
    pub const CMPXCHG16B: u32 = 1 << 13;
    pub const XTPR: u32 = 1 << 14;
    pub const PDCM: u32 = 1 << 15;
    pub const PCID: u32 = 1 << 17;
    pub const DCA: u32 = 1 << 18;
    pub const SSE4_1: u32 = 1 << 19;
    pub const SSE4_2: u32 = 1 << 20;
    pub const X2APIC: u32 = 1 << 21;
    pub const MOVBE: u32 = 1 << 22;
    pub const POPCNT: u32 = 1 << 23;
    pub const TSC_DEADLINE: u32 = 1 << 24;
    pub const AES: u32 = 1 << 25;
    pub const XSAVE: u32 = 1 << 26;
    pub const OSXSAVE: u32 = 1 << 27;
    pub const AVX: u32 = 1 << 28;
    pub const F16C: u32 = 1 << 29;
    pub const RDRAND: u32 = 1 << 30;
    pub const HYPERVISOR: u32 = 1 << 31;
}

/// CPUID.1:EDX (SDM Vol. 2A Table 3-11).
pub mod leaf1_edx {
    pub const FPU: u32 = 1 << 0;
    pub const VME: u32 = 1 << 1;
    pub const DE: u32 = 1 << 2;
    pub const PSE: u32 = 1 << 3;
    pub const TSC: u32 = 1 << 4;
    pub const MSR: u32 = 1 << 5;
    pub const PAE: u32 = 1 << 6;
    pub const MCE: u32 = 1 << 7;
    pub const CX8: u32 = 1 << 8;
    pub const APIC: u32 = 1 << 9;
    pub const SEP: u32 = 1 << 11;
    pub const MTRR: u32 = 1 << 12;
    pub const PGE: u32 = 1 << 13;
    pub const MCA: u32 = 1 << 14;
    pub const CMOV: u32 = 1 << 15;
    pub const PAT: u32 = 1 << 16;
    pub const PSE36: u32 = 1 << 17;
    pub const PSN: u32 = 1 << 18;
    pub const CLFSH: u32 = 1 << 19;
    pub const DS: u32 = 1 << 21;
    pub const ACPI: u32 = 1 << 22;
    pub const MMX: u32 = 1 << 23;
    pub const FXSR: u32 = 1 << 24;
    pub const SSE: u32 = 1 << 25;
    pub const SSE2: u32 = 1 << 26;
    pub const SS: u32 = 1 << 27;
    pub const HTT: u32 = 1 << 28;
    pub const TM: u32 = 1 << 29;
    pub const PBE: u32 = 1 << 31;
}

/// CPUID.(EAX=7,ECX=0):EBX.
pub mod leaf7_ebx {
    pub const FSGSBASE: u32 = 1 << 0;
    pub const TSC_ADJUST: u32 = 1 << 1;
    pub const SGX: u32 = 1 << 2;
    pub const BMI1: u32 = 1 << 3;
    pub const HLE: u32 = 1 << 4;
    pub const AVX2: u32 = 1 << 5;
    pub const FDP_EXCPTN_ONLY: u32 = 1 << 6;
    pub const SMEP: u32 = 1 << 7;
    pub const BMI2: u32 = 1 << 8;
    pub const ERMS: u32 = 1 << 9;
    pub const INVPCID: u32 = 1 << 10;
    pub const RTM: u32 = 1 << 11;
    pub const RDT_M: u32 = 1 << 12;
    pub const FPU_CS_DS_DEPRECATED: u32 = 1 << 13;
    pub const MPX: u32 = 1 << 14;
    pub const RDT_A: u32 = 1 << 15;
    pub const AVX512F: u32 = 1 << 16;
    pub const AVX512DQ: u32 = 1 << 17;
    pub const RDSEED: u32 = 1 << 18;
    pub const ADX: u32 = 1 << 19;
    pub const SMAP: u32 = 1 << 20;
    pub const AVX512_IFMA: u32 = 1 << 21;
    pub const CLFLUSHOPT: u32 = 1 << 23;
    pub const CLWB: u32 = 1 << 24;
    pub const PT: u32 = 1 << 25;
    pub const AVX512PF: u32 = 1 << 26;
    pub const AVX512ER: u32 = 1 << 27;
    pub const AVX512CD: u32 = 1 << 28;
    pub const SHA: u32 = 1 << 29;
    pub const AVX512BW: u32 = 1 << 30;
    pub const AVX512VL: u32 = 1 << 31;
}

/// CPUID.(EAX=7,ECX=0):ECX.
pub mod leaf7_ecx {
    pub const PREFETCHWT1: u32 = 1 << 0;
    pub const AVX512_VBMI: u32 = 1 << 1;
    pub const UMIP: u32 = 1 << 2;
    pub const PKU: u32 = 1 << 3;
    pub const OSPKE: u32 = 1 << 4;
    pub const WAITPKG: u32 = 1 << 5;
    pub const AVX512_VBMI2: u32 = 1 << 6;
    pub const CET_SS: u32 = 1 << 7;
    pub const GFNI: u32 = 1 << 8;
    pub const VAES: u32 = 1 << 9;
    pub const VPCLMULQDQ: u32 = 1 << 10;
    pub const AVX512_VNNI: u32 = 1 << 11;
    pub const AVX512_BITALG: u32 = 1 << 12;
    pub const TME: u32 = 1 << 13;
    pub const AVX512_VPOPCNTDQ: u32 = 1 << 14;
    pub const LA57: u32 = 1 << 16;
    pub const RDPID: u32 = 1 << 22;
    pub const KL: u32 = 1 << 23;
    pub const BUS_LOCK_DETECT: u32 = 1 << 24;
    pub const CLDEMOTE: u32 = 1 << 25;
    pub const MOVDIRI: u32 = 1 << 27;
    pub const MOVDIR64B: u32 = 1 << 28;
    pub const ENQCMD: u32 = 1 << 29;
    pub const SGX_LC: u32 = 1 << 30;
    pub const PKS: u32 = 1 << 31;
}

/// CPUID.(EAX=7,ECX=0):EDX.
pub mod leaf7_edx {
    pub const AVX512_4VNNIW: u32 = 1 << 2;
    pub const AVX512_4FMAPS: u32 = 1 << 3;
    pub const FSRM: u32 = 1 << 4;
    pub const UINTR: u32 = 1 << 5;
    pub const AVX512_VP2INTERSECT: u32 = 1 << 8;
    pub const SRBDS_CTRL: u32 = 1 << 9;
    pub const MD_CLEAR: u32 = 1 << 10;
    pub const TSX_FORCE_ABORT: u32 = 1 << 13;
    pub const SERIALIZE: u32 = 1 << 14;
    pub const HYBRID: u32 = 1 << 15;
    pub const TSXLDTRK: u32 = 1 << 16;
    pub const PCONFIG: u32 = 1 << 18;
    pub const ARCH_LBR: u32 = 1 << 19;
    pub const CET_IBT: u32 = 1 << 20;
    pub const AVX512_FP16: u32 = 1 << 23;
    pub const IBRS_IBPB: u32 = 1 << 26;
    pub const STIBP: u32 = 1 << 27;
    pub const L1D_FLUSH: u32 = 1 << 28;
    pub const ARCH_CAPABILITIES: u32 = 1 << 29;
    pub const CORE_CAPABILITIES: u32 = 1 << 30;
    pub const SSBD: u32 = 1 << 31;
}

/// CPUID.80000001H:ECX and EDX.
pub mod ext1 {
    pub const ECX_LAHF_SAHF: u32 = 1 << 0;
    pub const ECX_LZCNT: u32 = 1 << 5;
    pub const ECX_PREFETCHW: u32 = 1 << 8;
    pub const EDX_SYSCALL: u32 = 1 << 11;
    pub const EDX_NX: u32 = 1 << 20;
    pub const EDX_PAGE1GB: u32 = 1 << 26;
    pub const EDX_RDTSCP: u32 = 1 << 27;
    pub const EDX_LM: u32 = 1 << 29;
}

/// CPUID.6:EAX.ARAT (APIC timer always running): a promise about the timer, no MSR.
pub const LEAF6_EAX_ARAT: u32 = 1 << 2;
/// CPUID.80000007H:EDX.InvariantTSC.
pub const EXT7_EDX_INVARIANT_TSC: u32 = 1 << 8;

/// XCR0 state components (SDM Vol. 1 13.1).
pub mod xcr0 {
    pub const X87: u64 = 1 << 0;
    pub const SSE: u64 = 1 << 1;
    pub const AVX: u64 = 1 << 2;
    pub const BNDREGS: u64 = 1 << 3;
    pub const BNDCSR: u64 = 1 << 4;
    pub const OPMASK: u64 = 1 << 5;
    pub const ZMM_HI256: u64 = 1 << 6;
    pub const HI16_ZMM: u64 = 1 << 7;
    pub const PKRU: u64 = 1 << 9;
    pub const XTILECFG: u64 = 1 << 17;
    pub const XTILEDATA: u64 = 1 << 18;
    /// The AVX-512 components, set together or not at all.
    pub const AVX512: u64 = OPMASK | ZMM_HI256 | HI16_ZMM;
}

/// CPUID.(EAX=0DH,ECX=1):EAX.
pub mod xsave1_eax {
    pub const XSAVEOPT: u32 = 1 << 0;
    pub const XSAVEC: u32 = 1 << 1;
    pub const XGETBV_ECX1: u32 = 1 << 2;
    pub const XSAVES: u32 = 1 << 3;
    pub const XFD: u32 = 1 << 4;
}

/// CR4 bits CPUID mirrors (SDM Vol. 3A 2.5).
pub const CR4_OSXSAVE: u64 = 1 << 18;
pub const CR4_PKE: u64 = 1 << 22;

use leaf1_ecx as c1;
use leaf1_edx as d1;
use leaf7_ebx as b7;
use leaf7_ecx as c7;
use leaf7_edx as d7;

/// CPUID.1:ECX bits shown when the host has them (VMX only with [`Features::vmx`]). Hidden
/// for want of their MSRs: DTES64/DS-CPL (DS area), EIST (PERF_CTL), TM2/xTPR/SDBG/DCA,
/// PDCM (PERF_CAPABILITIES), TSC-deadline (IA32_TSC_DEADLINE, no such timer mode in the
/// LAPIC model); MONITOR (MWAIT exits #UD), SMX (GETSEC), CNXT-ID.
pub const LEAF1_ECX_SHOWN: u32 = c1::SSE3
    | c1::PCLMULQDQ
    | c1::SSSE3
    | c1::FMA
    | c1::CMPXCHG16B
    | c1::PCID
    | c1::SSE4_1
    | c1::SSE4_2
    | c1::MOVBE
    | c1::POPCNT
    | c1::AES
    | c1::XSAVE
    | c1::AVX
    | c1::F16C
    | c1::RDRAND;

/// CPUID.1:EDX bits shown when the host has them. APIC follows IA32_APIC_BASE (live); PSN,
/// DS, ACPI (thermal MSRs), TM and PBE are hidden.
pub const LEAF1_EDX_SHOWN: u32 = d1::FPU
    | d1::VME
    | d1::DE
    | d1::PSE
    | d1::TSC
    | d1::MSR
    | d1::PAE
    | d1::MCE
    | d1::CX8
    | d1::SEP
    | d1::MTRR
    | d1::PGE
    | d1::MCA
    | d1::CMOV
    | d1::PAT
    | d1::PSE36
    | d1::CLFSH
    | d1::MMX
    | d1::FXSR
    | d1::SSE
    | d1::SSE2
    | d1::SS
    | d1::HTT;

/// CPUID.7.0:EBX bits shown (INVPCID only with [`Features::invpcid`]). Hidden: TSC_ADJUST
/// (not emulated), SGX, RDT (leaves 0xF/0x10 and their MSRs), MPX (IA32_BNDCFGS), PT.
pub const LEAF7_EBX_SHOWN: u32 = b7::FSGSBASE
    | b7::BMI1
    | b7::HLE
    | b7::AVX2
    | b7::FDP_EXCPTN_ONLY
    | b7::SMEP
    | b7::BMI2
    | b7::ERMS
    | b7::RTM
    | b7::FPU_CS_DS_DEPRECATED
    | b7::AVX512F
    | b7::AVX512DQ
    | b7::RDSEED
    | b7::ADX
    | b7::SMAP
    | b7::AVX512_IFMA
    | b7::CLFLUSHOPT
    | b7::CLWB
    | b7::AVX512PF
    | b7::AVX512ER
    | b7::AVX512CD
    | b7::SHA
    | b7::AVX512BW
    | b7::AVX512VL;

/// CPUID.7.0:ECX bits shown (RDPID only with [`Features::rdtscp`]; OSPKE is live). Hidden:
/// WAITPKG (UMWAIT_CONTROL), CET, TME, LA57 (L0's guest page walker has four levels), Key
/// Locker, bus-lock detection (a DEBUGCTL bit), ENQCMD (PASID), SGX-LC, PKS (IA32_PKRS).
pub const LEAF7_ECX_SHOWN: u32 = c7::PREFETCHWT1
    | c7::AVX512_VBMI
    | c7::UMIP
    | c7::PKU
    | c7::AVX512_VBMI2
    | c7::GFNI
    | c7::VAES
    | c7::VPCLMULQDQ
    | c7::AVX512_VNNI
    | c7::AVX512_BITALG
    | c7::AVX512_VPOPCNTDQ
    | c7::CLDEMOTE
    | c7::MOVDIRI
    | c7::MOVDIR64B;

/// CPUID.7.0:EDX bits shown. Hidden: every bit with an MSR (SPEC_CTRL/PRED_CMD for
/// IBRS/STIBP/SSBD, FLUSH_CMD, ARCH_ and CORE_CAPABILITIES, SRBDS, TSX_FORCE_ABORT, arch
/// LBRs, CET), UINTR, hybrid, PCONFIG, AMX.
pub const LEAF7_EDX_SHOWN: u32 = d7::AVX512_4VNNIW
    | d7::AVX512_4FMAPS
    | d7::FSRM
    | d7::AVX512_VP2INTERSECT
    | d7::MD_CLEAR
    | d7::SERIALIZE
    | d7::TSXLDTRK
    | d7::AVX512_FP16;

/// XCR0 components shown (CPUID.0DH.0:EDX:EAX and the component subleaves): no MPX, no
/// AMX, and no supervisor components (XSAVES and IA32_XSS are hidden).
pub const XCR0_SHOWN: u64 = xcr0::X87 | xcr0::SSE | xcr0::AVX | xcr0::AVX512 | xcr0::PKRU;

pub const XSAVE1_EAX_SHOWN: u32 =
    xsave1_eax::XSAVEOPT | xsave1_eax::XSAVEC | xsave1_eax::XGETBV_ECX1;

pub const EXT1_ECX_SHOWN: u32 = ext1::ECX_LAHF_SAHF | ext1::ECX_LZCNT | ext1::ECX_PREFETCHW;
/// RDTSCP only with [`Features::rdtscp`].
pub const EXT1_EDX_SHOWN: u32 = ext1::EDX_SYSCALL | ext1::EDX_NX | ext1::EDX_PAGE1GB | ext1::EDX_LM;

/// What the guest's processor offers beyond the host's CPUID, fixed for the guest's life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Features {
    /// VMX is exposed to the guest (L0 emulates it).
    pub vmx: bool,
    /// The guest's VMCS has "enable RDTSCP": RDTSCP and RDPID work (else they #UD).
    pub rdtscp: bool,
    /// The guest's VMCS has "enable INVPCID".
    pub invpcid: bool,
}

/// The executing level's state that CPUID mirrors, read when the CPUID executes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// The level's CR4 as it believes it is (the read shadow for bits L0 owns).
    pub cr4: u64,
    /// IA32_APIC_BASE's global enable (bit 11).
    pub apic_enabled: bool,
}

/// True when `leaf`'s answer depends on ECX (the subleaf); for the others the image keys
/// its cache with subleaf 0, so garbage in ECX cannot fill it.
pub fn uses_subleaf(leaf: u32) -> bool {
    matches!(leaf, 4 | 7 | 0xb | 0xd | 0xf | 0x10 | 0x12 | 0x14 | 0x17 | 0x18 | 0x1b..=0x20)
}

/// True when the answer has bits [`live_bits`] sets (leaf 1 and 7.0).
pub fn has_live_bits(leaf: u32) -> bool {
    leaf == 1 || leaf == 7
}

/// True when the answer may be cached. Leaf 0xD is not: its EBX is the XSAVE area size for
/// the current XCR0, which the guest changes with XSETBV.
pub fn cacheable(leaf: u32) -> bool {
    leaf != 0xd && !is_hypervisor_leaf(leaf)
}

/// Turtles' leaves 0x40000000..0x400000ff.
pub fn is_hypervisor_leaf(leaf: u32) -> bool {
    (0x4000_0000..=0x4000_00ff).contains(&leaf)
}

/// The leaf the processor answers for `leaf`: the leaf itself when it is in range, else the
/// highest basic leaf (Intel's rule for leaves above the maximum, SDM Vol. 2A CPUID
/// "INPUT EAX = 0: Returns CPUID's Highest Value..."). `max_basic` and `max_ext` are what
/// the guest sees in leaves 0 and 0x80000000.
pub fn resolve(leaf: u32, max_basic: u32, max_ext: u32) -> u32 {
    match leaf {
        l if l <= max_basic => l,
        l if is_hypervisor_leaf(l) => l,
        l if (0x8000_0000..=max_ext).contains(&l) => l,
        _ => max_basic,
    }
}

/// The highest basic leaf the guest sees, from the host's leaf 0 EAX.
pub fn max_basic(host_leaf0_eax: u32) -> u32 {
    host_leaf0_eax.min(MAX_BASIC_LEAF)
}

/// The highest extended leaf the guest sees, from the host's leaf 0x80000000 EAX.
pub fn max_extended(host_eax: u32) -> u32 {
    if host_eax < 0x8000_0000 { 0x8000_0000 } else { host_eax.min(MAX_EXTENDED_LEAF) }
}

/// The guest's answer for `leaf` (already [`resolve`]d), `subleaf`, from the host's answer,
/// without the live bits. Leaves the policy does not know answer zeros.
pub fn static_answer(leaf: u32, subleaf: u32, host: [u32; 4], f: &Features) -> [u32; 4] {
    let [a, b, c, d] = host;
    match leaf {
        0 => [max_basic(a), b, c, d],
        1 => {
            let vmx = if f.vmx { c1::VMX } else { 0 };
            // The LAPIC model has x2APIC mode whatever the host has.
            let c = (c & (LEAF1_ECX_SHOWN | vmx)) | c1::X2APIC | c1::HYPERVISOR;
            [a, b, c, d & LEAF1_EDX_SHOWN]
        }
        // Cache and TLB descriptors, deterministic cache parameters, topology, TSC and
        // frequency information: descriptions, no features.
        2 | 4 | 0xb | 0x15 | 0x16 | 0x1f => host,
        // ARAT only: no thermal or power-management MSRs, no HWP, no MPERF/APERF.
        6 => [a & LEAF6_EAX_ARAT, 0, 0, 0],
        7 if subleaf == 0 => {
            let invpcid = if f.invpcid { b7::INVPCID } else { 0 };
            let rdpid = if f.rdtscp { c7::RDPID } else { 0 };
            // EAX = 0: no subleaf 1 and up.
            [0, b & (LEAF7_EBX_SHOWN | invpcid), c & (LEAF7_ECX_SHOWN | rdpid), d & LEAF7_EDX_SHOWN]
        }
        0xd => xsave_leaf(subleaf, host),
        0x8000_0000 => [max_extended(a), 0, 0, 0],
        0x8000_0001 => {
            let rdtscp = if f.rdtscp { ext1::EDX_RDTSCP } else { 0 };
            [a, 0, c & EXT1_ECX_SHOWN, d & (EXT1_EDX_SHOWN | rdtscp)]
        }
        // Brand string, cache information.
        0x8000_0002..=0x8000_0006 => host,
        0x8000_0007 => [0, 0, 0, d & EXT7_EDX_INVARIANT_TSC],
        // Address sizes only.
        0x8000_0008 => [a, 0, 0, 0],
        // Leaf 0xA (no PMU: version 0), 3, 5 (MONITOR hidden), 8, 9 (DCA), 0xC, 0xE, 0xF and
        // 0x10 (RDT), 0x12 (SGX), 0x14 (PT), 0x17-0x1E (SoC, address translation, Key Locker,
        // hybrid, PCONFIG, LBR, AMX), 0x20 (HRESET) and 7.x, x >= 1: nothing.
        _ => [0; 4],
    }
}

fn xsave_leaf(subleaf: u32, host: [u32; 4]) -> [u32; 4] {
    let [a, b, c, d] = host;
    match subleaf {
        // EBX: the size for the current XCR0 (the hardware's, which is the guest's);
        // ECX: the size for every supported component, an upper bound that stays valid.
        0 => [a & XCR0_SHOWN as u32, b, c, d & (XCR0_SHOWN >> 32) as u32],
        // No XSAVES, so no supervisor components (IA32_XSS). EBX depends on XCR0: the caller
        // replaces it with [`compacted_xsave_size`].
        1 => [a & XSAVE1_EAX_SHOWN, b, 0, 0],
        n if n < 64 && XCR0_SHOWN & (1 << n) != 0 => host,
        _ => [0; 4],
    }
}

/// CPUID.(EAX=0DH,ECX=1):EBX for the guest: the size of an XSAVEC (compacted) area holding
/// every component set in `xcr0` (IA32_XSS is 0: XSAVES is hidden), SDM Vol. 1 13.4.3. The
/// legacy region and header take 576 bytes; each further component set in XCR0, in order,
/// follows at the next 64-byte boundary if its subleaf's ECX bit 1 says so. `component(i)` is
/// the processor's subleaf `i` (EAX: size, ECX bit 1: aligned). Linux since 5.19 sizes its
/// XSAVEC buffers with this value and warns ("XSAVE consistency problem") when it disagrees
/// with the sum of the components.
pub fn compacted_xsave_size(xcr0: u64, component: impl Fn(u32) -> [u32; 4]) -> u32 {
    const LEGACY_AND_HEADER: u32 = 512 + 64;
    const ALIGNED: u32 = 1 << 1;
    let mut size = LEGACY_AND_HEADER;
    for i in 2..63 {
        if xcr0 & XCR0_SHOWN & (1 << i) == 0 {
            continue;
        }
        let [bytes, _, flags, _] = component(i);
        if flags & ALIGNED != 0 {
            size = size.next_multiple_of(64);
        }
        size = size.saturating_add(bytes);
    }
    size
}

/// Sets the bits of a [`static_answer`] that mirror the executing level's state.
pub fn live_bits(leaf: u32, subleaf: u32, answer: [u32; 4], live: &Live) -> [u32; 4] {
    let [a, b, mut c, mut d] = answer;
    match leaf {
        1 => {
            c = set_if(c, c1::OSXSAVE, live.cr4 & CR4_OSXSAVE != 0);
            d = set_if(d, d1::APIC, live.apic_enabled);
        }
        7 if subleaf == 0 => c = set_if(c, c7::OSPKE, live.cr4 & CR4_PKE != 0),
        _ => {}
    }
    [a, b, c, d]
}

fn set_if(word: u32, bit: u32, on: bool) -> u32 {
    if on { word | bit } else { word & !bit }
}

/// [`SIGNATURE`] as CPUID returns it in EBX, ECX, EDX.
pub const fn signature_words() -> [u32; 3] {
    let s = SIGNATURE;
    [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
    ]
}

/// CPUID leaf 0x15 (Time Stamp Counter and Nominal Core Crystal Clock Information).
pub const TSC_LEAF: u32 = 0x15;

/// The answer for [`TSC_LEAF`] from the TSC rate the level's device models count with
/// (`tsc_hz`): a crystal at that rate with a 1/1 ratio, so a guest reads the TSC frequency
/// instead of calibrating it (Linux then also takes the crystal as its local APIC timer's
/// rate, which is what `crate::lapic` counts at with divide-by-1). `None` when the rate does
/// not fit the 32-bit field (the host's answer stands).
pub fn tsc_leaf(tsc_hz: u64) -> Option<[u32; 4]> {
    let hz = u32::try_from(tsc_hz).ok().filter(|&hz| hz != 0)?;
    Some([1, 1, hz, 0])
}

/// Turtles' leaves: 0x40000000 the signature and highest leaf, 0x40000001 the guest's depth
/// (EAX) and version (EBX), 0x40000002 this level's exit count (EAX low, EBX high half),
/// 0x40000003 the bottom L0's: `exits` when this level runs on bare metal (`guest_depth`
/// 1), else `below`, the level below's answer. 0x40000004 (ECX = a tag) is the mark leaf the
/// image answers itself (it snapshots its exit counters for a benchmark's parts; zeros here).
pub fn hypervisor_leaf(leaf: u32, guest_depth: u32, exits: u64, below: [u32; 4]) -> [u32; 4] {
    let [w0, w1, w2] = signature_words();
    let count = [exits as u32, (exits >> 32) as u32, 0, 0];
    match leaf {
        0x4000_0000 => [MAX_HYPERVISOR_LEAF, w0, w1, w2],
        0x4000_0001 => [guest_depth, 1, 0, 0],
        0x4000_0002 => count,
        0x4000_0003 if guest_depth == 1 => count,
        0x4000_0003 => below,
        _ => [0; 4],
    }
}

/// Everything at once, as the image computes it in parts: the guest's answer for `leaf`,
/// `subleaf` given the host's answer for the [`resolve`]d leaf.
pub fn answer(leaf: u32, subleaf: u32, host: [u32; 4], f: &Features, live: &Live) -> [u32; 4] {
    live_bits(leaf, subleaf, static_answer(leaf, subleaf, host, f), live)
}

/// XSETBV's checks (SDM Vol. 2B XSETBV, Vol. 1 13.3): #GP(0) unless ECX names XCR0 and the
/// value keeps x87 on, enables only components the guest sees in CPUID.0DH.0 (`shown`), AVX
/// only with SSE, AVX-512's three components together and only with AVX, and MPX's and
/// AMX's pairs together. (CPL and CR4.OSXSAVE are checked by the processor before the exit.)
pub fn xsetbv_valid(xcr: u32, value: u64, shown: u64) -> bool {
    use xcr0::*;
    let pair = |m: u64| value & m == 0 || value & m == m;
    xcr == 0
        && value & X87 != 0
        && value & !shown == 0
        && (value & AVX == 0 || value & SSE != 0)
        && pair(AVX512)
        && (value & AVX512 == 0 || value & AVX != 0)
        && pair(BNDREGS | BNDCSR)
        && pair(XTILECFG | XTILEDATA)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [u32; 4] = [u32::MAX; 4];
    const BARE: Features = Features { vmx: false, rdtscp: false, invpcid: false };
    const FULL: Features = Features { vmx: true, rdtscp: true, invpcid: true };

    #[test]
    fn leaf1_hides_what_l0_cannot_back() {
        let [_, _, c, d] = answer(1, 0, ALL, &BARE, &Live::default());
        for hidden in [c1::PDCM, c1::MONITOR, c1::TSC_DEADLINE, c1::VMX, c1::DTES64, c1::EIST] {
            assert_eq!(c & hidden, 0, "{hidden:#x}");
        }
        for hidden in [d1::DS, d1::ACPI, d1::TM, d1::PBE, d1::PSN, d1::APIC] {
            assert_eq!(d & hidden, 0, "{hidden:#x}");
        }
        assert_ne!(c & c1::HYPERVISOR, 0);
        assert_ne!(c & c1::X2APIC, 0);
        assert_eq!(c & c1::OSXSAVE, 0);
        let [_, _, c, _] = answer(1, 0, [0; 4], &FULL, &Live::default());
        assert_eq!(c, c1::X2APIC | c1::HYPERVISOR, "shown bits need the host's");
        let [_, _, c, _] = answer(1, 0, ALL, &FULL, &Live::default());
        assert_ne!(c & c1::VMX, 0);
    }

    #[test]
    fn os_bits_mirror_the_executing_levels_cr4() {
        let on = Live { cr4: CR4_OSXSAVE | CR4_PKE, apic_enabled: true };
        let off = Live { cr4: 0, apic_enabled: false };
        let cached = static_answer(1, 0, ALL, &FULL);
        assert_ne!(live_bits(1, 0, cached, &on)[2] & c1::OSXSAVE, 0);
        assert_ne!(live_bits(1, 0, cached, &on)[3] & d1::APIC, 0);
        assert_eq!(live_bits(1, 0, cached, &off)[2] & c1::OSXSAVE, 0);
        assert_eq!(live_bits(1, 0, cached, &off)[3] & d1::APIC, 0);
        // The host's own OSXSAVE (L0's CR4) never leaks through.
        assert_eq!(static_answer(1, 0, ALL, &FULL)[2] & c1::OSXSAVE, 0);
        let cached = static_answer(7, 0, ALL, &FULL);
        assert_eq!(cached[2] & c7::OSPKE, 0);
        assert_ne!(live_bits(7, 0, cached, &on)[2] & c7::OSPKE, 0);
        assert_eq!(live_bits(7, 1, [0; 4], &on), [0; 4]);
    }

    #[test]
    fn no_pmu_and_no_msr_leaves() {
        for leaf in [3, 5, 0xa, 0xf, 0x10, 0x12, 0x14, 0x19, 0x1b, 0x1c, 0x20] {
            assert_eq!(static_answer(leaf, 0, ALL, &FULL), [0; 4], "leaf {leaf:#x}");
        }
        assert_eq!(static_answer(6, 0, ALL, &FULL), [LEAF6_EAX_ARAT, 0, 0, 0]);
        assert_eq!(static_answer(7, 1, ALL, &FULL), [0; 4]);
        assert_eq!(static_answer(7, 0, ALL, &FULL)[0], 0, "no subleaf 1");
    }

    #[test]
    fn tsc_leaf_publishes_the_rate() {
        assert_eq!(tsc_leaf(2_000_000_000), Some([1, 1, 2_000_000_000, 0]));
        assert_eq!(tsc_leaf(0), None);
        assert_eq!(tsc_leaf(5_000_000_000), None);
    }

    #[test]
    fn vmcs_controls_gate_rdtscp_rdpid_invpcid() {
        assert_eq!(static_answer(0x8000_0001, 0, ALL, &BARE)[3] & ext1::EDX_RDTSCP, 0);
        assert_ne!(static_answer(0x8000_0001, 0, ALL, &FULL)[3] & ext1::EDX_RDTSCP, 0);
        assert_eq!(static_answer(7, 0, ALL, &BARE)[2] & c7::RDPID, 0);
        assert_eq!(static_answer(7, 0, ALL, &BARE)[1] & b7::INVPCID, 0);
        assert_ne!(static_answer(7, 0, ALL, &FULL)[1] & b7::INVPCID, 0);
    }

    #[test]
    fn xsave_leaf_shows_user_components_only() {
        let [a, _, _, d] = static_answer(0xd, 0, ALL, &FULL);
        assert_eq!(u64::from(a) | (u64::from(d) << 32), XCR0_SHOWN);
        assert_eq!(static_answer(0xd, 1, ALL, &FULL), [XSAVE1_EAX_SHOWN, u32::MAX, 0, 0]);
        assert_eq!(static_answer(0xd, 2, ALL, &FULL), ALL, "AVX's size and offset");
        assert_eq!(static_answer(0xd, 3, ALL, &FULL), [0; 4], "MPX hidden");
        assert_eq!(static_answer(0xd, 17, ALL, &FULL), [0; 4], "AMX hidden");
        assert_eq!(static_answer(0xd, 200, ALL, &FULL), [0; 4]);
    }

    /// Bochs' `corei7_skylake_x` subleaves 2..=9: (size, offset, ECX).
    fn skylake_component(i: u32) -> [u32; 4] {
        match i {
            2 => [256, 576, 0, 0],
            3 => [64, 960, 0, 0],
            4 => [64, 1024, 0, 0],
            5 => [64, 1088, 0, 0],
            6 => [512, 1152, 0, 0],
            7 => [1024, 1664, 0, 0],
            9 => [8, 2688, 0, 0],
            _ => [0; 4],
        }
    }

    #[test]
    fn compacted_size_sums_the_enabled_components() {
        // What Linux computed at boot under Bochs for XCR0 = 0xe7: 2432, not the standard
        // format's 2688 that the processor's subleaf 1 had said.
        assert_eq!(compacted_xsave_size(0xe7, skylake_component), 2432);
        assert_eq!(compacted_xsave_size(xcr0::X87 | xcr0::SSE, skylake_component), 576);
        assert_eq!(compacted_xsave_size(0x7, skylake_component), 832);
        assert_eq!(compacted_xsave_size(0x2e7, skylake_component), 2440);
        // MPX is hidden: its components never count, even if set.
        assert_eq!(compacted_xsave_size(0x1f, skylake_component), 832);
        // A component that asks for 64-byte alignment starts on a boundary.
        let aligned = |i: u32| if i == 9 { [8, 0, 2, 0] } else { skylake_component(i) };
        assert_eq!(compacted_xsave_size(0x207, aligned), 832 + 8);
        assert_eq!(compacted_xsave_size(0x203, aligned), 576 + 8);
        let odd = |i: u32| match i {
            2 => [4, 0, 0, 0],
            9 => [8, 0, 2, 0],
            _ => [0; 4],
        };
        assert_eq!(compacted_xsave_size(0x207, odd), 640 + 8);
    }

    #[test]
    fn leaves_above_the_maximum_answer_the_highest_basic_leaf() {
        assert_eq!(max_basic(0x16), 0x16);
        assert_eq!(max_basic(u32::MAX), MAX_BASIC_LEAF);
        assert_eq!(resolve(0x17, 0x16, 0x8000_0008), 0x16);
        assert_eq!(resolve(0x8000_0009, 0x16, 0x8000_0008), 0x16);
        assert_eq!(resolve(0x5000_0000, 0x16, 0x8000_0008), 0x16);
        assert_eq!(resolve(0x4000_0001, 0x16, 0x8000_0008), 0x4000_0001);
        assert_eq!(resolve(0x8000_0004, 0x16, 0x8000_0008), 0x8000_0004);
        assert_eq!(max_extended(0), 0x8000_0000);
        assert_eq!(static_answer(0, 0, ALL, &FULL)[0], MAX_BASIC_LEAF);
        assert_eq!(static_answer(0x8000_0000, 0, ALL, &FULL)[0], MAX_EXTENDED_LEAF);
    }

    #[test]
    fn hypervisor_leaves() {
        assert_eq!(hypervisor_leaf(0x4000_0000, 1, 0, [0; 4])[0], MAX_HYPERVISOR_LEAF);
        assert_eq!(&hypervisor_leaf(0x4000_0000, 1, 0, [0; 4])[1..], &signature_words());
        assert_eq!(hypervisor_leaf(0x4000_0001, 2, 0, [0; 4]), [2, 1, 0, 0]);
        assert_eq!(hypervisor_leaf(0x4000_0002, 2, 0x1_0000_0002, [0; 4]), [2, 1, 0, 0]);
        assert_eq!(hypervisor_leaf(0x4000_0003, 1, 5, [9; 4]), [5, 0, 0, 0]);
        assert_eq!(hypervisor_leaf(0x4000_0003, 2, 5, [9; 4]), [9; 4]);
        assert_eq!(hypervisor_leaf(0x4000_0042, 2, 5, [9; 4]), [0; 4]);
        assert!(!cacheable(0x4000_0000) && !cacheable(0xd) && cacheable(1));
    }

    #[test]
    fn xsetbv_checks() {
        use xcr0::*;
        let shown = XCR0_SHOWN;
        assert!(xsetbv_valid(0, X87, shown));
        assert!(xsetbv_valid(0, X87 | SSE | AVX, shown));
        assert!(xsetbv_valid(0, X87 | SSE | AVX | AVX512 | PKRU, shown));
        assert!(!xsetbv_valid(1, X87, shown), "XCR1 is read-only");
        assert!(!xsetbv_valid(0, SSE, shown), "x87 must stay on");
        assert!(!xsetbv_valid(0, X87 | AVX, shown), "AVX needs SSE");
        assert!(!xsetbv_valid(0, X87 | SSE | AVX | OPMASK, shown), "AVX-512 all or none");
        assert!(!xsetbv_valid(0, X87 | SSE | AVX512, shown), "AVX-512 needs AVX");
        assert!(!xsetbv_valid(0, X87 | BNDREGS | BNDCSR, shown), "MPX is not shown");
        assert!(xsetbv_valid(0, X87 | BNDREGS | BNDCSR, !0));
        assert!(!xsetbv_valid(0, X87 | BNDREGS, !0));
        assert!(!xsetbv_valid(0, X87 | 1 << 63, !0 >> 1));
    }
}
