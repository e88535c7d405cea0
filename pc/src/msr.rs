//! The MSRs a level's guest sees (SDM Vol. 4 ch. 2, "architectural MSRs", for the processor
//! [`crate::cpuid`] shows): a table from MSR number to [`Msr`], where each MSR lives and how
//! it is checked, the validity checks as pure functions, and [`MsrFile`], the MSRs that exist
//! only in the guest's model (MTRRs, MCG_STATUS, MISC_ENABLE). MSRs not in the table #GP(0),
//! as on a processor without them; reserved bits #GP(0) where the processor would.

use crate::cpuid::Features;

/// MSR numbers (SDM Vol. 4 Table 2-2).
pub mod index {
    pub const IA32_TSC: u32 = 0x10;
    pub const IA32_PLATFORM_ID: u32 = 0x17;
    pub const IA32_APIC_BASE: u32 = 0x1b;
    pub const MSR_SMI_COUNT: u32 = 0x34;
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const MSR_PPIN_CTL: u32 = 0x4e;
    pub const MSR_PPIN: u32 = 0x4f;
    pub const MSR_MISC_FEATURES_ENABLES: u32 = 0x140;
    pub const MSR_OC_MAILBOX: u32 = 0x150;
    pub const MSR_PPERF: u32 = 0x64e;
    /// AMD's DE_CFG: no MSR of an Intel processor.
    pub const MSR_AMD64_DE_CFG: u32 = 0xc001_1029;
    pub const IA32_TSC_ADJUST: u32 = 0x3b;
    pub const IA32_SPEC_CTRL: u32 = 0x48;
    pub const IA32_PRED_CMD: u32 = 0x49;
    pub const IA32_BIOS_SIGN_ID: u32 = 0x8b;
    pub const IA32_SMM_MONITOR_CTL: u32 = 0x9b;
    pub const IA32_PMC0: u32 = 0xc1;
    pub const MSR_PLATFORM_INFO: u32 = 0xce;
    pub const IA32_CORE_CAPABILITIES: u32 = 0xcf;
    pub const IA32_UMWAIT_CONTROL: u32 = 0xe1;
    pub const IA32_MPERF: u32 = 0xe7;
    pub const IA32_APERF: u32 = 0xe8;
    pub const IA32_MTRRCAP: u32 = 0xfe;
    pub const IA32_ARCH_CAPABILITIES: u32 = 0x10a;
    pub const IA32_FLUSH_CMD: u32 = 0x10b;
    pub const IA32_TSX_FORCE_ABORT: u32 = 0x10f;
    pub const IA32_MCU_OPT_CTRL: u32 = 0x123;
    pub const IA32_SYSENTER_CS: u32 = 0x174;
    pub const IA32_SYSENTER_ESP: u32 = 0x175;
    pub const IA32_SYSENTER_EIP: u32 = 0x176;
    pub const IA32_MCG_CAP: u32 = 0x179;
    pub const IA32_MCG_STATUS: u32 = 0x17a;
    pub const IA32_MCG_CTL: u32 = 0x17b;
    pub const IA32_PERFEVTSEL0: u32 = 0x186;
    pub const IA32_PERF_STATUS: u32 = 0x198;
    pub const IA32_PERF_CTL: u32 = 0x199;
    pub const IA32_CLOCK_MODULATION: u32 = 0x19a;
    pub const IA32_THERM_INTERRUPT: u32 = 0x19b;
    pub const IA32_THERM_STATUS: u32 = 0x19c;
    pub const IA32_MISC_ENABLE: u32 = 0x1a0;
    pub const IA32_ENERGY_PERF_BIAS: u32 = 0x1b0;
    pub const IA32_PACKAGE_THERM_STATUS: u32 = 0x1b1;
    pub const IA32_PLATFORM_DCA_CAP: u32 = 0x1f8;
    pub const IA32_DEBUGCTL: u32 = 0x1d9;
    pub const IA32_MTRR_PHYSBASE0: u32 = 0x200;
    pub const IA32_MTRR_PHYSMASK7: u32 = 0x20f;
    pub const IA32_MTRR_FIX64K_00000: u32 = 0x250;
    pub const IA32_MTRR_FIX16K_80000: u32 = 0x258;
    pub const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
    pub const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
    pub const IA32_MTRR_FIX4K_F8000: u32 = 0x26f;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
    pub const IA32_PERF_CAPABILITIES: u32 = 0x345;
    pub const IA32_PERF_GLOBAL_CTRL: u32 = 0x38f;
    pub const IA32_MC0_CTL: u32 = 0x400;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_VMFUNC: u32 = 0x491;
    pub const IA32_RTIT_CTL: u32 = 0x570;
    pub const IA32_SGX_SVN_STATUS: u32 = 0x500;
    pub const IA32_DS_AREA: u32 = 0x600;
    pub const IA32_U_CET: u32 = 0x6a0;
    pub const IA32_S_CET: u32 = 0x6a2;
    pub const IA32_TSC_DEADLINE: u32 = 0x6e0;
    pub const IA32_PKRS: u32 = 0x6e1;
    pub const IA32_PM_ENABLE: u32 = 0x770;
    pub const IA32_HWP_CAPABILITIES: u32 = 0x771;
    pub const IA32_X2APIC_FIRST: u32 = 0x800;
    pub const IA32_X2APIC_LAST: u32 = 0x8ff;
    pub const IA32_SGXLEPUBKEYHASH0: u32 = 0x8c;
    pub const IA32_TME_CAPABILITY: u32 = 0x981;
    pub const IA32_UINTR_RR: u32 = 0x985;
    pub const IA32_DEBUG_INTERFACE: u32 = 0xc80;
    pub const IA32_QM_EVTSEL: u32 = 0xc8d;
    pub const IA32_PQR_ASSOC: u32 = 0xc8f;
    pub const IA32_BNDCFGS: u32 = 0xd90;
    pub const IA32_PASID: u32 = 0xd93;
    pub const IA32_XSS: u32 = 0xda0;
    pub const IA32_ARCH_LBR_CTL: u32 = 0x14ce;
    pub const IA32_HRESET_ENABLE: u32 = 0x17da;
    pub const IA32_EFER: u32 = 0xc000_0080;
    pub const IA32_STAR: u32 = 0xc000_0081;
    pub const IA32_LSTAR: u32 = 0xc000_0082;
    pub const IA32_CSTAR: u32 = 0xc000_0083;
    pub const IA32_FMASK: u32 = 0xc000_0084;
    pub const IA32_FS_BASE: u32 = 0xc000_0100;
    pub const IA32_GS_BASE: u32 = 0xc000_0101;
    pub const IA32_KERNEL_GS_BASE: u32 = 0xc000_0102;
    pub const IA32_TSC_AUX: u32 = 0xc000_0103;
}

use index::*;

/// WRMSR or RDMSR faults: the guest gets #GP(0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeneralProtection;

/// MSRs VMX keeps in guest-state fields of the VMCS (SDM Vol. 3C 25.4.1; DEBUGCTL's "save/load
/// debug controls" are default-1, PAT's and EFER's are on in vmcs01).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestStateMsr {
    SysenterCs,
    SysenterEsp,
    SysenterEip,
    Debugctl,
    Pat,
    Efer,
    FsBase,
    GsBase,
}

/// What a write to a hardware-held MSR must satisfy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    Any,
    /// A linear address: canonical.
    Canonical,
    /// Bits 63:32 reserved.
    Low32,
}

/// Where an MSR lives and how the image handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msr {
    /// In the VMCS guest-state area; writes go through [`check_guest_state`].
    GuestState(GuestStateMsr),
    /// In the hardware MSR itself: L0 never uses it, so the value is the guest's. Writes must
    /// pass the check first (a #GP inside L0 would be L0's).
    Hardware(Check),
    /// In the guest's [`MsrFile`].
    Emulated,
    /// Reads this value; writes #GP(0).
    ReadOnly(u64),
    /// Reads this value; writes are accepted and have no effect (IA32_BIOS_SIGN_ID's
    /// microcode-update trigger).
    WriteIgnored(u64),
    /// IA32_TSC: reads the TSC; writes are dropped.
    Tsc,
    /// MSR_PLATFORM_INFO: reads [`platform_info`] of the TSC rate the guest is shown; writes
    /// #GP(0).
    PlatformInfo,
    /// IA32_APIC_BASE: the LAPIC model.
    ApicBase,
    /// 0x800-0x8ff: the LAPIC model's x2APIC registers.
    X2apic,
    /// IA32_VMX_*: the capabilities L1 sees (the nesting code).
    VmxCapability,
    /// Reads 0; a write of 0 is accepted, any other value #GP(0) (MSR_MISC_FEATURES_ENABLES:
    /// the features its bits enable, CPUID faulting and ring-3 MWAIT, are not enumerated).
    Zero,
    /// Not on the processor the guest sees: #GP(0).
    Gp,
}

/// MSR_PPIN_CTL as firmware may leave it on a Xeon Scalable (SDM Vol. 4 Table 2-44):
/// LockOut set, Enable_PPIN clear, so MSR_PPIN #GPs and software sees no PPIN.
pub const PPIN_CTL_LOCKED_DISABLED: u64 = 1;

/// MSRs that Linux probes with `rdmsr_safe` and that #GP(0) on the processor the guest sees
/// (not in the SDM's lists for a Skylake-X: MSR_OC_MAILBOX, undocumented; AMD's DE_CFG;
/// MSR_PPIN while PPIN is disabled): expected faults, not worth a warning.
pub fn expected_gp(msr: u32) -> bool {
    matches!(msr, MSR_OC_MAILBOX | MSR_AMD64_DE_CFG | MSR_PPIN)
}

/// The bus clock MSR_PLATFORM_INFO's ratios multiply (SDM Vol. 4 Table 2-39: 100 MHz).
pub const BUS_CLOCK_HZ: u64 = 100_000_000;
/// MSR_PLATFORM_INFO.PPIN_CAP (bit 23): MSR_PPIN_CTL and MSR_PPIN exist (they do, locked off).
pub const PLATFORM_INFO_PPIN_CAP: u64 = 1 << 23;

/// MSR_PLATFORM_INFO (0xce) of a Skylake-X (SDM Vol. 4 Tables 2-39 and 2-44) whose TSC runs at
/// `tsc_hz`, the rate CPUID leaf 0x15 publishes (`crate::cpuid::tsc_leaf`): the maximum
/// non-turbo ratio (bits 15:8) is the TSC rate in units of the 100 MHz bus clock, as on the
/// real part where the TSC ticks at the base frequency; the maximum efficiency ratio (bits
/// 47:40) is the same (one P-state: the guest sees no EIST); PPIN_CAP is set; programmable
/// turbo ratio/TDP limits, the programmable TJ offset and CPUID faulting (bit 31,
/// MSR_MISC_FEATURES_ENABLES is [`Msr::Zero`]) are clear. The ratio is rounded to nearest and
/// kept within 1..=255 (0 would tell Linux's frequency code the MSR is empty).
pub fn platform_info(tsc_hz: u64) -> u64 {
    let ratio = tsc_hz.saturating_add(BUS_CLOCK_HZ / 2) / BUS_CLOCK_HZ;
    let ratio = ratio.clamp(1, 0xff);
    (ratio << 8) | PLATFORM_INFO_PPIN_CAP | (ratio << 40)
}

/// IA32_FEATURE_CONTROL as the guest reads it: locked, VMXON outside SMX allowed only when VMX
/// is exposed.
pub const FEATURE_CONTROL_LOCK: u64 = 1;
pub const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;

/// IA32_MTRRCAP: 8 variable ranges, fixed ranges, write-combining; no SMRR.
pub const MTRRCAP: u64 = MTRR_VCNT as u64 | (1 << 8) | (1 << 10);
/// Variable MTRR pairs (IA32_MTRRCAP.VCNT).
pub const MTRR_VCNT: usize = 8;
/// IA32_MCG_CAP: no banks, no IA32_MCG_CTL, no extended state.
pub const MCG_CAP: u64 = 0;

/// IA32_DEBUGCTL bits a guest may set: LBR and BTF. The rest are reserved or belong to
/// features the guest's CPUID hides (BTS and TR need DS, the freeze bits a PMU,
/// RTM_DEBUG/bus-lock detection their own enumeration), so they #GP(0) as KVM does.
pub const DEBUGCTL_WRITABLE: u64 = 0b11;

/// IA32_EFER bits a guest may set: SCE, LME, LMA (ignored on write), NXE.
pub const EFER_SCE: u64 = 1;
pub const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;
pub const EFER_NXE: u64 = 1 << 11;
const EFER_WRITABLE: u64 = EFER_SCE | EFER_LME | EFER_LMA | EFER_NXE;

/// IA32_MISC_ENABLE (SDM Vol. 4 Table 2-2): fast strings on, BTS and PEBS unavailable, no
/// EIST, MONITOR, xTPR or XD-disable. Only fast strings is writable; the other defined bits
/// ignore writes; undefined bits #GP(0).
pub const MISC_ENABLE_RESET: u64 = 1 | (1 << 11) | (1 << 12);
const MISC_ENABLE_WRITABLE: u64 = 1;
const MISC_ENABLE_DEFINED: u64 = 1
    | (1 << 3)
    | (1 << 7)
    | (1 << 11)
    | (1 << 12)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 34);

/// IA32_MCG_STATUS: RIPV, EIPV, MCIP.
const MCG_STATUS_WRITABLE: u64 = 0b111;

/// IA32_MTRR_DEF_TYPE as firmware leaves it: MTRRs enabled, fixed ranges off, default
/// write-back (EPT decides the real memory type; the guest sees a sane setup).
pub const MTRR_DEF_TYPE_RESET: u64 = (1 << 11) | 6;
/// Eight write-back ranges of a fixed-range MTRR.
const WB8: u64 = 0x0606_0606_0606_0606;
const MTRR_DEF_TYPE_DEFINED: u64 = 0xff | (1 << 10) | (1 << 11);

/// The guest's MSR behaviour (SDM Vol. 4 Table 2-2 for what the shown CPUID implies).
pub fn lookup(msr: u32, f: &Features) -> Msr {
    use GuestStateMsr as S;
    match msr {
        IA32_TSC => Msr::Tsc,
        IA32_PLATFORM_ID => Msr::ReadOnly(0),
        // Skylake-X's model-specific MSRs Linux probes (SDM Vol. 4 Tables 2-39 and 2-44):
        // the SMI count (no SMI reaches a guest), PPIN locked off, the productive-performance
        // count (read-only; the model does not count it), the misc-features enables.
        MSR_SMI_COUNT => Msr::ReadOnly(0),
        MSR_PPIN_CTL => Msr::ReadOnly(PPIN_CTL_LOCKED_DISABLED),
        MSR_PPERF => Msr::ReadOnly(0),
        MSR_PLATFORM_INFO => Msr::PlatformInfo,
        MSR_MISC_FEATURES_ENABLES => Msr::Zero,
        IA32_APIC_BASE => Msr::ApicBase,
        IA32_FEATURE_CONTROL => Msr::ReadOnly(feature_control(f)),
        IA32_BIOS_SIGN_ID => Msr::WriteIgnored(0),
        // Exists with VMX; writes outside SMM #GP.
        IA32_SMM_MONITOR_CTL if f.vmx => Msr::ReadOnly(0),
        IA32_MTRRCAP => Msr::ReadOnly(MTRRCAP),
        IA32_SYSENTER_CS => Msr::GuestState(S::SysenterCs),
        IA32_SYSENTER_ESP => Msr::GuestState(S::SysenterEsp),
        IA32_SYSENTER_EIP => Msr::GuestState(S::SysenterEip),
        IA32_MCG_CAP => Msr::ReadOnly(MCG_CAP),
        IA32_MCG_STATUS => Msr::Emulated,
        IA32_MISC_ENABLE => Msr::Emulated,
        IA32_DEBUGCTL => Msr::GuestState(S::Debugctl),
        IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => Msr::Emulated,
        m if fixed_mtrr_index(m).is_some() => Msr::Emulated,
        IA32_PAT => Msr::GuestState(S::Pat),
        IA32_MTRR_DEF_TYPE => Msr::Emulated,
        IA32_VMX_BASIC..=IA32_VMX_VMFUNC if f.vmx => Msr::VmxCapability,
        IA32_X2APIC_FIRST..=IA32_X2APIC_LAST => Msr::X2apic,
        IA32_EFER => Msr::GuestState(S::Efer),
        IA32_STAR => Msr::Hardware(Check::Any),
        IA32_LSTAR | IA32_CSTAR | IA32_KERNEL_GS_BASE => Msr::Hardware(Check::Canonical),
        IA32_FMASK => Msr::Hardware(Check::Low32),
        IA32_FS_BASE => Msr::GuestState(S::FsBase),
        IA32_GS_BASE => Msr::GuestState(S::GsBase),
        // RDTSCP and RDPID read it; both are hidden without "enable RDTSCP".
        IA32_TSC_AUX if f.rdtscp => Msr::Hardware(Check::Low32),
        _ => Msr::Gp,
    }
}

/// IA32_FEATURE_CONTROL's value for the guest.
pub fn feature_control(f: &Features) -> u64 {
    if f.vmx {
        FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX
    } else {
        FEATURE_CONTROL_LOCK
    }
}

/// Whether `value` is a canonical 48-bit linear address.
pub fn canonical(value: u64) -> bool {
    let top = (value as i64) >> 47;
    top == 0 || top == -1
}

/// A PAT value is legal if every entry is a defined memory type (0, 1, 4, 5, 6, 7).
pub fn valid_pat(value: u64) -> bool {
    value.to_le_bytes().iter().all(|&t| matches!(t, 0 | 1 | 4 | 5 | 6 | 7))
}

/// An MTRR memory type is UC, WC, WT, WP or WB (SDM Vol. 3A 12.11.1).
pub fn valid_mtrr_type(t: u8) -> bool {
    matches!(t, 0 | 1 | 4 | 5 | 6)
}

/// A write to a hardware-held MSR passes `check`.
pub fn hardware_write_ok(check: Check, value: u64) -> bool {
    match check {
        Check::Any => true,
        Check::Canonical => canonical(value),
        Check::Low32 => value >> 32 == 0,
    }
}

/// The value a WRMSR of `value` leaves in a VMCS-held MSR whose current value is `old`, or
/// #GP(0). `paging` is the guest's CR0.PG (EFER.LME cannot change while it is set).
pub fn check_guest_state(
    msr: GuestStateMsr,
    value: u64,
    old: u64,
    paging: bool,
) -> Result<u64, GeneralProtection> {
    let ok = match msr {
        GuestStateMsr::SysenterCs => true,
        GuestStateMsr::SysenterEsp
        | GuestStateMsr::SysenterEip
        | GuestStateMsr::FsBase
        | GuestStateMsr::GsBase => canonical(value),
        GuestStateMsr::Debugctl => value & !DEBUGCTL_WRITABLE == 0,
        GuestStateMsr::Pat => valid_pat(value),
        GuestStateMsr::Efer => {
            return efer_write(old, value, paging);
        }
    };
    if ok { Ok(value) } else { Err(GeneralProtection) }
}

/// WRMSR IA32_EFER (SDM Vol. 4 Table 2-2; Vol. 3A 10.8.5): reserved bits #GP, LME cannot
/// change while paging is on, LMA is the processor's and keeps its value.
pub fn efer_write(old: u64, value: u64, paging: bool) -> Result<u64, GeneralProtection> {
    if value & !EFER_WRITABLE != 0 || (paging && (old ^ value) & EFER_LME != 0) {
        return Err(GeneralProtection);
    }
    Ok((value & !EFER_LMA) | (old & EFER_LMA))
}

/// Index 0..11 of a fixed-range MTRR (FIX64K_00000, FIX16K_80000, FIX16K_A0000,
/// FIX4K_C0000..FIX4K_F8000).
fn fixed_mtrr_index(msr: u32) -> Option<usize> {
    match msr {
        IA32_MTRR_FIX64K_00000 => Some(0),
        IA32_MTRR_FIX16K_80000 => Some(1),
        IA32_MTRR_FIX16K_A0000 => Some(2),
        IA32_MTRR_FIX4K_C0000..=IA32_MTRR_FIX4K_F8000 => {
            Some(3 + (msr - IA32_MTRR_FIX4K_C0000) as usize)
        }
        _ => None,
    }
}

/// The guest's MSRs that exist only in its model: the MTRRs (which the guest programs but
/// EPT's memory types override), IA32_MCG_STATUS and IA32_MISC_ENABLE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MsrFile {
    maxphyaddr: u8,
    mtrr_def_type: u64,
    mtrr_fixed: [u64; 11],
    /// PHYSBASEn at 2n, PHYSMASKn at 2n + 1.
    mtrr_variable: [u64; 2 * MTRR_VCNT],
    mcg_status: u64,
    misc_enable: u64,
}

impl MsrFile {
    /// The MSRs at reset for a guest whose physical addresses have `maxphyaddr` bits
    /// (CPUID.80000008H:EAX bits 7:0).
    pub const fn new(maxphyaddr: u8) -> Self {
        MsrFile {
            maxphyaddr,
            mtrr_def_type: MTRR_DEF_TYPE_RESET,
            // Write-back, as firmware sets up the first megabyte's RAM; the VGA window
            // A0000-BFFFF uncacheable.
            mtrr_fixed: [WB8, WB8, 0, WB8, WB8, WB8, WB8, WB8, WB8, WB8, WB8],
            mtrr_variable: [0; 2 * MTRR_VCNT],
            mcg_status: 0,
            misc_enable: MISC_ENABLE_RESET,
        }
    }

    /// Bits at and above MAXPHYADDR (bits 63:52 included).
    fn above_maxphyaddr(&self) -> u64 {
        let width = self.maxphyaddr.clamp(32, 52);
        !0u64 << width
    }

    /// RDMSR of an [`Msr::Emulated`] MSR; `None` for any other.
    pub fn read(&self, msr: u32) -> Option<u64> {
        Some(match msr {
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                *self.mtrr_variable.get((msr - IA32_MTRR_PHYSBASE0) as usize)?
            }
            IA32_MCG_STATUS => self.mcg_status,
            IA32_MISC_ENABLE => self.misc_enable,
            m => *self.mtrr_fixed.get(fixed_mtrr_index(m)?)?,
        })
    }

    /// WRMSR of an [`Msr::Emulated`] MSR, with the processor's reserved-bit and memory-type
    /// checks (SDM Vol. 3A 12.11.2-12.11.3); #GP(0) for any other MSR.
    pub fn write(&mut self, msr: u32, value: u64) -> Result<(), GeneralProtection> {
        let reserved_phys = self.above_maxphyaddr();
        let ok = match msr {
            IA32_MTRR_DEF_TYPE => {
                value & !MTRR_DEF_TYPE_DEFINED == 0 && valid_mtrr_type(value as u8)
            }
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 if msr & 1 == 0 => {
                value & (reserved_phys | 0xf00) == 0 && valid_mtrr_type(value as u8)
            }
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => value & (reserved_phys | 0x7ff) == 0,
            IA32_MCG_STATUS => value & !MCG_STATUS_WRITABLE == 0,
            IA32_MISC_ENABLE => value & !MISC_ENABLE_DEFINED == 0,
            m if fixed_mtrr_index(m).is_some() => {
                value.to_le_bytes().iter().all(|&t| valid_mtrr_type(t))
            }
            _ => false,
        };
        if !ok {
            return Err(GeneralProtection);
        }
        match msr {
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type = value,
            IA32_MTRR_PHYSBASE0..=IA32_MTRR_PHYSMASK7 => {
                let slot = self.mtrr_variable.get_mut((msr - IA32_MTRR_PHYSBASE0) as usize);
                *slot.ok_or(GeneralProtection)? = value;
            }
            IA32_MCG_STATUS => self.mcg_status = value,
            IA32_MISC_ENABLE => {
                self.misc_enable =
                    (self.misc_enable & !MISC_ENABLE_WRITABLE) | (value & MISC_ENABLE_WRITABLE);
            }
            m => {
                let i = fixed_mtrr_index(m).ok_or(GeneralProtection)?;
                *self.mtrr_fixed.get_mut(i).ok_or(GeneralProtection)? = value;
            }
        }
        Ok(())
    }
}

/// Whether a guest can read `msr` on the processor `f` describes.
pub fn readable(msr: u32, f: &Features) -> bool {
    lookup(msr, f) != Msr::Gp
}

/// Whether a guest can write `msr` (some value) on the processor `f` describes.
pub fn writable(msr: u32, f: &Features) -> bool {
    !matches!(lookup(msr, f), Msr::Gp | Msr::ReadOnly(_))
}

#[cfg(test)]
mod tests {
    #[test]
    fn skylake_x_probes_linux_makes() {
        let f = crate::cpuid::Features::default();
        assert_eq!(super::lookup(MSR_SMI_COUNT, &f), Msr::ReadOnly(0));
        assert_eq!(super::lookup(MSR_PPIN_CTL, &f), Msr::ReadOnly(1));
        assert_eq!(super::lookup(MSR_PPIN, &f), Msr::Gp);
        assert_eq!(super::lookup(MSR_PPERF, &f), Msr::ReadOnly(0));
        assert_eq!(super::lookup(MSR_MISC_FEATURES_ENABLES, &f), Msr::Zero);
        for msr in [MSR_OC_MAILBOX, MSR_AMD64_DE_CFG, MSR_PPIN] {
            assert_eq!(super::lookup(msr, &f), Msr::Gp, "{msr:#x}");
            assert!(super::expected_gp(msr), "{msr:#x}");
        }
        assert!(!super::expected_gp(0x1234));
    }

    #[test]
    fn platform_info_matches_the_published_tsc_rate() {
        let f = crate::cpuid::Features::default();
        assert_eq!(super::lookup(MSR_PLATFORM_INFO, &f), Msr::PlatformInfo);
        // A 2 GHz TSC (CPUID 0x15 crystal 2 GHz, ratio 1/1): base ratio 20 at 100 MHz.
        let v = super::platform_info(2_000_000_000);
        assert_eq!((v >> 8) & 0xff, 20);
        assert_eq!((v >> 40) & 0xff, 20);
        assert_eq!(v & super::PLATFORM_INFO_PPIN_CAP, super::PLATFORM_INFO_PPIN_CAP);
        // No CPUID faulting, no programmable limits: bits 31:28 clear.
        assert_eq!(v & (0xf << 28), 0);
        // The ratio times the bus clock gives back the TSC rate the CPUID leaf publishes.
        let [_, _, hz, _] = crate::cpuid::tsc_leaf(2_000_000_000).unwrap();
        assert_eq!(((v >> 8) & 0xff) * super::BUS_CLOCK_HZ, u64::from(hz));
        // Rounded to nearest, never 0, never past 8 bits.
        assert_eq!((super::platform_info(2_449_000_000) >> 8) & 0xff, 24);
        assert_eq!((super::platform_info(2_450_000_000) >> 8) & 0xff, 25);
        assert_eq!((super::platform_info(0) >> 8) & 0xff, 1);
        assert_eq!((super::platform_info(u64::MAX) >> 8) & 0xff, 0xff);
    }

    use super::*;

    const BARE: Features = Features { vmx: false, rdtscp: false, invpcid: false };
    const FULL: Features = Features { vmx: true, rdtscp: true, invpcid: true };

    #[test]
    fn issue_14_findings() {
        // Finding 12: DEBUGCTL is architectural and WRMSR of its LBR/BTF bits works.
        assert_eq!(lookup(IA32_DEBUGCTL, &BARE), Msr::GuestState(GuestStateMsr::Debugctl));
        assert_eq!(check_guest_state(GuestStateMsr::Debugctl, 0b11, 0, true), Ok(0b11));
        assert_eq!(
            check_guest_state(GuestStateMsr::Debugctl, 1 << 2, 0, true),
            Err(GeneralProtection)
        );
        assert_eq!(
            check_guest_state(GuestStateMsr::Debugctl, 1 << 6, 0, true),
            Err(GeneralProtection)
        );
        // Finding 2: with PDCM and the PMU hidden these MSRs consistently #GP.
        for msr in [IA32_PERF_CAPABILITIES, IA32_PERFEVTSEL0, IA32_PMC0, IA32_PERF_GLOBAL_CTRL] {
            assert_eq!(lookup(msr, &FULL), Msr::Gp, "{msr:#x}");
        }
    }

    #[test]
    fn context_dependent_msrs() {
        assert_eq!(lookup(IA32_TSC_AUX, &BARE), Msr::Gp);
        assert_eq!(lookup(IA32_TSC_AUX, &FULL), Msr::Hardware(Check::Low32));
        assert_eq!(lookup(IA32_VMX_BASIC, &BARE), Msr::Gp);
        assert_eq!(lookup(IA32_VMX_VMFUNC, &FULL), Msr::VmxCapability);
        assert_eq!(lookup(IA32_SMM_MONITOR_CTL, &BARE), Msr::Gp);
        assert_eq!(lookup(IA32_SMM_MONITOR_CTL, &FULL), Msr::ReadOnly(0));
        assert_eq!(lookup(IA32_FEATURE_CONTROL, &BARE), Msr::ReadOnly(1));
        assert_eq!(lookup(IA32_FEATURE_CONTROL, &FULL), Msr::ReadOnly(5));
        assert!(!writable(IA32_FEATURE_CONTROL, &FULL) && readable(IA32_FEATURE_CONTROL, &FULL));
        assert_eq!(lookup(IA32_TSC_DEADLINE, &FULL), Msr::Gp);
        assert_eq!(lookup(IA32_MC0_CTL, &FULL), Msr::Gp, "MCG_CAP reports no banks");
        assert_eq!(lookup(IA32_MCG_CTL, &FULL), Msr::Gp, "MCG_CAP.MCG_CTL_P is clear");
        assert_eq!(lookup(0x1234_5678, &FULL), Msr::Gp);
    }

    #[test]
    fn efer_checks() {
        let lma_on = EFER_LME | EFER_LMA;
        assert_eq!(efer_write(0, EFER_LME | EFER_NXE | EFER_SCE, false), Ok(0xd01 & !EFER_LMA));
        assert_eq!(efer_write(lma_on, EFER_LME | EFER_NXE, true), Ok(lma_on | EFER_NXE));
        assert_eq!(efer_write(lma_on, EFER_NXE, true), Err(GeneralProtection), "LME under PG");
        assert_eq!(efer_write(0, EFER_LMA, false), Ok(0), "LMA ignored");
        assert_eq!(efer_write(0, 1 << 12, false), Err(GeneralProtection));
    }

    #[test]
    fn canonical_and_pat() {
        assert!(canonical(0x0000_7fff_ffff_ffff) && canonical(0xffff_8000_0000_0000));
        assert!(!canonical(0x0000_8000_0000_0000));
        assert!(valid_pat(0x0007_0406_0007_0406));
        assert!(!valid_pat(0x0007_0406_0007_0402) && !valid_pat(0x8));
        assert!(
            hardware_write_ok(Check::Low32, 0xffff_ffff)
                && !hardware_write_ok(Check::Low32, 1 << 32)
        );
    }

    #[test]
    fn mtrrs_keep_a_copy_and_check_types() {
        let mut m = MsrFile::new(39);
        assert_eq!(m.read(IA32_MTRR_DEF_TYPE), Some(MTRR_DEF_TYPE_RESET));
        assert_eq!(m.write(IA32_MTRR_DEF_TYPE, (1 << 11) | (1 << 10)), Ok(()));
        assert_eq!(m.read(IA32_MTRR_DEF_TYPE), Some(0xc00));
        assert_eq!(m.write(IA32_MTRR_DEF_TYPE, 2), Err(GeneralProtection), "type 2 reserved");
        assert_eq!(m.write(IA32_MTRR_DEF_TYPE, 1 << 12), Err(GeneralProtection));
        // PHYSBASE0: type WB at 2 GiB; bits above MAXPHYADDR and 11:8 are reserved.
        assert_eq!(m.write(IA32_MTRR_PHYSBASE0, 0x8000_0006), Ok(()));
        assert_eq!(m.read(IA32_MTRR_PHYSBASE0), Some(0x8000_0006));
        assert_eq!(m.write(IA32_MTRR_PHYSBASE0, 1 << 39 | 6), Err(GeneralProtection));
        assert_eq!(m.write(IA32_MTRR_PHYSBASE0, 0x106), Err(GeneralProtection));
        assert_eq!(m.write(IA32_MTRR_PHYSBASE0 + 1, 0x7f_8000_0800), Ok(()));
        assert_eq!(m.write(IA32_MTRR_PHYSBASE0 + 1, 0x7f_8000_0801), Err(GeneralProtection));
        assert_eq!(m.write(IA32_MTRR_PHYSMASK7, 0x800), Ok(()));
        assert_eq!(m.write(IA32_MTRR_FIX4K_F8000, 0x0000_0000_0000_0500), Ok(()));
        assert_eq!(m.read(IA32_MTRR_FIX4K_F8000), Some(0x500));
        assert_eq!(m.write(IA32_MTRR_FIX16K_A0000, 0x0700), Err(GeneralProtection));
        assert_eq!(m.read(IA32_MTRR_FIX64K_00000), Some(0x0606_0606_0606_0606));
        assert_eq!(m.read(IA32_PAT), None);
        assert_eq!(m.write(IA32_PAT, 0), Err(GeneralProtection));
    }

    #[test]
    fn misc_enable_and_mcg_status() {
        let mut m = MsrFile::new(39);
        assert_eq!(m.read(IA32_MISC_ENABLE), Some(MISC_ENABLE_RESET));
        assert_eq!(m.write(IA32_MISC_ENABLE, 0), Ok(()));
        assert_eq!(m.read(IA32_MISC_ENABLE), Some(MISC_ENABLE_RESET & !1), "RO bits stay");
        assert_eq!(m.write(IA32_MISC_ENABLE, 1 << 22), Ok(()), "defined bits ignore writes");
        assert_eq!(m.write(IA32_MISC_ENABLE, 1 << 5), Err(GeneralProtection));
        assert_eq!(m.write(IA32_MCG_STATUS, 0b101), Ok(()));
        assert_eq!(m.read(IA32_MCG_STATUS), Some(0b101));
        assert_eq!(m.write(IA32_MCG_STATUS, 1 << 3), Err(GeneralProtection));
    }

    #[test]
    fn every_emulated_msr_has_state() {
        let mut m = MsrFile::new(46);
        for msr in 0..0x1000 {
            if lookup(msr, &FULL) == Msr::Emulated {
                let v = m.read(msr);
                assert!(v.is_some(), "{msr:#x} has no state");
                assert_eq!(m.write(msr, v.unwrap_or(0)), Ok(()), "{msr:#x} rejects its value");
            }
        }
    }

    mod fuzz {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(crate::fuzz_config(512))]

            /// Guest data never panics and a rejected write changes nothing.
            #[test]
            fn writes(msr in 0u32..0x1000, value: u64, maxphy in 0u8..=255) {
                let mut m = MsrFile::new(maxphy);
                let before = m.clone();
                if m.write(msr, value).is_err() {
                    prop_assert_eq!(&m, &before);
                }
                let _ = m.read(msr);
                let _ = efer_write(value, value.rotate_left(7), msr & 1 == 0);
            }
        }
    }
}
