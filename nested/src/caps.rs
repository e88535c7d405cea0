//! VMX capability MSRs as data (SDM Vol. 3D, Appendix A).
//!
//! L0 reads every IA32_VMX_* MSR once into a [`VmxCaps`]; everything that depends on the
//! hardware's VMX features (choosing controls, building L1's capability MSRs, the platform
//! report) is a pure function of that value, so it is tested on the host with recorded MSRs.

use core::fmt;

use crate::vmcs::VmcsField;

/// IA32_VMX_* and the other MSR numbers L0 names (SDM Vol. 4, Table 2-2; Vol. 3D, Appendix A),
/// cross-checked against the `x86` crate in `arch_crosscheck.rs`.
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_VMCS_ENUM: u32 = 0x48a;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
    pub const IA32_VMX_VMFUNC: u32 = 0x491;
    pub const IA32_PAT: u32 = 0x277;
    pub const IA32_EFER: u32 = 0xc000_0080;
}

/// Pin-based VM-execution control bits (SDM Vol. 3C, Table 25-5).
pub mod pin {
    pub const EXTERNAL_INTERRUPT_EXITING: u32 = 1 << 0;
    pub const NMI_EXITING: u32 = 1 << 3;
    pub const VIRTUAL_NMIS: u32 = 1 << 5;
    pub const PREEMPTION_TIMER: u32 = 1 << 6;
    pub const POSTED_INTERRUPTS: u32 = 1 << 7;
}

/// Primary processor-based VM-execution control bits (SDM Vol. 3C, Table 25-6).
pub mod proc1 {
    pub const INTERRUPT_WINDOW_EXITING: u32 = 1 << 2;
    pub const USE_TSC_OFFSETTING: u32 = 1 << 3;
    pub const HLT_EXITING: u32 = 1 << 7;
    pub const INVLPG_EXITING: u32 = 1 << 9;
    pub const MWAIT_EXITING: u32 = 1 << 10;
    pub const RDPMC_EXITING: u32 = 1 << 11;
    pub const RDTSC_EXITING: u32 = 1 << 12;
    pub const CR3_LOAD_EXITING: u32 = 1 << 15;
    pub const CR3_STORE_EXITING: u32 = 1 << 16;
    pub const CR8_LOAD_EXITING: u32 = 1 << 19;
    pub const CR8_STORE_EXITING: u32 = 1 << 20;
    pub const USE_TPR_SHADOW: u32 = 1 << 21;
    pub const NMI_WINDOW_EXITING: u32 = 1 << 22;
    pub const MOV_DR_EXITING: u32 = 1 << 23;
    pub const UNCONDITIONAL_IO_EXITING: u32 = 1 << 24;
    pub const USE_IO_BITMAPS: u32 = 1 << 25;
    pub const MONITOR_TRAP_FLAG: u32 = 1 << 27;
    pub const USE_MSR_BITMAPS: u32 = 1 << 28;
    pub const MONITOR_EXITING: u32 = 1 << 29;
    pub const ACTIVATE_TERTIARY_CONTROLS: u32 = 1 << 17;
    pub const PAUSE_EXITING: u32 = 1 << 30;
    pub const ACTIVATE_SECONDARY_CONTROLS: u32 = 1 << 31;
}

/// Secondary processor-based VM-execution control bits (SDM Vol. 3C, Table 25-7).
pub mod proc2 {
    pub const VIRTUALIZE_APIC_ACCESSES: u32 = 1 << 0;
    pub const ENABLE_EPT: u32 = 1 << 1;
    pub const DESCRIPTOR_TABLE_EXITING: u32 = 1 << 2;
    pub const ENABLE_RDTSCP: u32 = 1 << 3;
    pub const VIRTUALIZE_X2APIC_MODE: u32 = 1 << 4;
    pub const ENABLE_VPID: u32 = 1 << 5;
    pub const WBINVD_EXITING: u32 = 1 << 6;
    pub const UNRESTRICTED_GUEST: u32 = 1 << 7;
    pub const APIC_REGISTER_VIRTUALIZATION: u32 = 1 << 8;
    pub const VIRTUAL_INTERRUPT_DELIVERY: u32 = 1 << 9;
    pub const PAUSE_LOOP_EXITING: u32 = 1 << 10;
    pub const RDRAND_EXITING: u32 = 1 << 11;
    pub const ENABLE_INVPCID: u32 = 1 << 12;
    pub const ENABLE_VM_FUNCTIONS: u32 = 1 << 13;
    pub const VMCS_SHADOWING: u32 = 1 << 14;
    pub const ENCLS_EXITING: u32 = 1 << 15;
    pub const RDSEED_EXITING: u32 = 1 << 16;
    pub const ENABLE_PML: u32 = 1 << 17;
    pub const EPT_VIOLATION_VE: u32 = 1 << 18;
    pub const CONCEAL_VMX_FROM_PT: u32 = 1 << 19;
    pub const ENABLE_XSAVES: u32 = 1 << 20;
    pub const MODE_BASED_EPT_EXECUTE: u32 = 1 << 22;
    pub const SUB_PAGE_WRITE_PERMISSIONS: u32 = 1 << 23;
    pub const USE_TSC_SCALING: u32 = 1 << 25;
    pub const ENABLE_USER_WAIT_PAUSE: u32 = 1 << 26;
    pub const ENCLV_EXITING: u32 = 1 << 28;
    pub const NOTIFY_VM_EXITING: u32 = 1 << 31;
}

/// VM-exit control bits (SDM Vol. 3C, Table 25-13).
pub mod exit {
    pub const SAVE_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const HOST_ADDRESS_SPACE_SIZE: u32 = 1 << 9;
    pub const LOAD_IA32_PERF_GLOBAL_CTRL: u32 = 1 << 12;
    pub const ACK_INTERRUPT_ON_EXIT: u32 = 1 << 15;
    pub const SAVE_IA32_PAT: u32 = 1 << 18;
    pub const LOAD_IA32_PAT: u32 = 1 << 19;
    pub const SAVE_IA32_EFER: u32 = 1 << 20;
    pub const LOAD_IA32_EFER: u32 = 1 << 21;
    pub const SAVE_PREEMPTION_TIMER: u32 = 1 << 22;
    pub const CLEAR_IA32_BNDCFGS: u32 = 1 << 23;
    pub const CLEAR_IA32_RTIT_CTL: u32 = 1 << 25;
    pub const CLEAR_IA32_LBR_CTL: u32 = 1 << 26;
    pub const LOAD_CET_STATE: u32 = 1 << 28;
    pub const LOAD_IA32_PKRS: u32 = 1 << 29;
    pub const SAVE_IA32_PERF_GLOBAL_CTRL: u32 = 1 << 30;
}

/// IA32_FEATURE_CONTROL bits (SDM Vol. 4, Table 2-2, MSR 3AH; Vol. 3C 24.7).
pub mod feature_control {
    /// Lock: the MSR can no longer be written until reset.
    pub const LOCK: u64 = 1 << 0;
    /// VMXON allowed outside SMX operation.
    pub const VMX_OUTSIDE_SMX: u64 = 1 << 2;
}

/// VM-entry control bits (SDM Vol. 3C, Table 25-15).
pub mod entry {
    pub const LOAD_DEBUG_CONTROLS: u32 = 1 << 2;
    pub const IA32E_MODE_GUEST: u32 = 1 << 9;
    pub const ENTRY_TO_SMM: u32 = 1 << 10;
    pub const DEACTIVATE_DUAL_MONITOR: u32 = 1 << 11;
    pub const LOAD_IA32_PERF_GLOBAL_CTRL: u32 = 1 << 13;
    pub const LOAD_IA32_PAT: u32 = 1 << 14;
    pub const LOAD_IA32_EFER: u32 = 1 << 15;
    pub const LOAD_IA32_BNDCFGS: u32 = 1 << 16;
    pub const LOAD_IA32_RTIT_CTL: u32 = 1 << 18;
    pub const LOAD_CET_STATE: u32 = 1 << 20;
    pub const LOAD_IA32_LBR_CTL: u32 = 1 << 21;
    pub const LOAD_IA32_PKRS: u32 = 1 << 22;
}

/// IA32_VMX_EPT_VPID_CAP bits (SDM Vol. 3D, A.10).
pub mod ept_vpid {
    pub const EXECUTE_ONLY: u64 = 1 << 0;
    pub const PAGE_WALK_4: u64 = 1 << 6;
    pub const MEMTYPE_UC: u64 = 1 << 8;
    pub const MEMTYPE_WB: u64 = 1 << 14;
    pub const PAGE_2M: u64 = 1 << 16;
    pub const PAGE_1G: u64 = 1 << 17;
    pub const INVEPT: u64 = 1 << 20;
    pub const ACCESSED_DIRTY: u64 = 1 << 21;
    pub const ADVANCED_VIOLATION_INFO: u64 = 1 << 22;
    pub const INVEPT_SINGLE_CONTEXT: u64 = 1 << 25;
    pub const INVEPT_ALL_CONTEXT: u64 = 1 << 26;
    pub const INVVPID: u64 = 1 << 32;
    pub const INVVPID_INDIVIDUAL_ADDRESS: u64 = 1 << 40;
    pub const INVVPID_SINGLE_CONTEXT: u64 = 1 << 41;
    pub const INVVPID_ALL_CONTEXT: u64 = 1 << 42;
    pub const INVVPID_SINGLE_CONTEXT_RETAINING_GLOBALS: u64 = 1 << 43;
}

/// One VMX control MSR: bits that must be 1 (`allowed0`, low half) and bits that may be 1
/// (`allowed1`, high half) (SDM Vol. 3D, A.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allowed {
    /// A bit set here must be set in the control (the MSR's bits 31:0).
    pub allowed0: u32,
    /// A bit clear here must be clear in the control (the MSR's bits 63:32).
    pub allowed1: u32,
}

impl Allowed {
    /// Splits a control MSR value into its two halves.
    pub const fn from_msr(value: u64) -> Self {
        Self { allowed0: value as u32, allowed1: (value >> 32) as u32 }
    }

    /// The MSR value these settings came from.
    pub const fn to_msr(self) -> u64 {
        (self.allowed1 as u64) << 32 | self.allowed0 as u64
    }

    /// True if every bit of `bits` may be 1.
    pub const fn can_set(self, bits: u32) -> bool {
        self.allowed1 & bits == bits
    }

    /// True if `value` is a legal setting: every must-be-1 bit set, no may-not-be-1 bit set
    /// (Linux `vmx_control_verify`).
    pub const fn verify(self, value: u32) -> bool {
        value & self.allowed0 == self.allowed0 && value & !self.allowed1 == 0
    }

    /// `value` with the must-be-1 bits forced on and the may-not-be-1 bits forced off.
    pub const fn adjust(self, value: u32) -> u32 {
        (value | self.allowed0) & self.allowed1
    }
}

/// Fixed bits of CR0 or CR4 in VMX operation (SDM Vol. 3D, A.7 and A.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FixedBits {
    /// A bit set here must be 1 in the register.
    pub fixed0: u64,
    /// A bit clear here must be 0 in the register.
    pub fixed1: u64,
}

impl FixedBits {
    /// True if `value` satisfies both masks.
    pub const fn verify(self, value: u64) -> bool {
        value & self.fixed0 == self.fixed0 && value & !self.fixed1 == 0
    }

    /// `value` with the fixed bits applied.
    pub const fn adjust(self, value: u64) -> u64 {
        (value | self.fixed0) & self.fixed1
    }
}

/// Every IA32_VMX_* capability MSR, read once. MSRs the processor does not have (for example
/// the secondary controls when primary bit 31 may not be 1) are zero, meaning "nothing allowed".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmxCaps {
    pub basic: u64,
    pub pinbased: u64,
    pub procbased: u64,
    pub exit: u64,
    pub entry: u64,
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    pub vmcs_enum: u64,
    pub procbased2: u64,
    pub ept_vpid: u64,
    pub true_pinbased: u64,
    pub true_procbased: u64,
    pub true_exit: u64,
    pub true_entry: u64,
    pub vmfunc: u64,
}

impl VmxCaps {
    /// Reads every capability MSR through `rdmsr`, only those the SDM says exist given the
    /// ones read before (A.1: TRUE controls need BASIC bit 55; A.3.3: secondary controls need
    /// primary bit 63; A.10: EPT/VPID cap needs EPT or VPID allowed; A.11: VMFUNC needs
    /// secondary bit 13).
    pub fn read(mut rdmsr: impl FnMut(u32) -> u64) -> Self {
        let mut caps = VmxCaps {
            basic: rdmsr(msr::IA32_VMX_BASIC),
            pinbased: rdmsr(msr::IA32_VMX_PINBASED_CTLS),
            procbased: rdmsr(msr::IA32_VMX_PROCBASED_CTLS),
            exit: rdmsr(msr::IA32_VMX_EXIT_CTLS),
            entry: rdmsr(msr::IA32_VMX_ENTRY_CTLS),
            misc: rdmsr(msr::IA32_VMX_MISC),
            cr0_fixed0: rdmsr(msr::IA32_VMX_CR0_FIXED0),
            cr0_fixed1: rdmsr(msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: rdmsr(msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: rdmsr(msr::IA32_VMX_CR4_FIXED1),
            vmcs_enum: rdmsr(msr::IA32_VMX_VMCS_ENUM),
            ..Default::default()
        };
        if caps.has_true_controls() {
            caps.true_pinbased = rdmsr(msr::IA32_VMX_TRUE_PINBASED_CTLS);
            caps.true_procbased = rdmsr(msr::IA32_VMX_TRUE_PROCBASED_CTLS);
            caps.true_exit = rdmsr(msr::IA32_VMX_TRUE_EXIT_CTLS);
            caps.true_entry = rdmsr(msr::IA32_VMX_TRUE_ENTRY_CTLS);
        }
        if Allowed::from_msr(caps.procbased).can_set(proc1::ACTIVATE_SECONDARY_CONTROLS) {
            caps.procbased2 = rdmsr(msr::IA32_VMX_PROCBASED_CTLS2);
        }
        let secondary = caps.secondary();
        if secondary.can_set(proc2::ENABLE_EPT) || secondary.can_set(proc2::ENABLE_VPID) {
            caps.ept_vpid = rdmsr(msr::IA32_VMX_EPT_VPID_CAP);
        }
        if secondary.can_set(proc2::ENABLE_VM_FUNCTIONS) {
            caps.vmfunc = rdmsr(msr::IA32_VMX_VMFUNC);
        }
        caps
    }

    /// VMCS revision identifier (IA32_VMX_BASIC bits 30:0).
    pub const fn revision_id(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// Bytes to allocate for the VMXON region and each VMCS (IA32_VMX_BASIC bits 44:32).
    pub const fn vmcs_size(&self) -> u32 {
        ((self.basic >> 32) & 0x1fff) as u32
    }

    /// Memory type for the VMCS and structures it points to (bits 53:50; 6 = write-back).
    pub const fn vmcs_memory_type(&self) -> u8 {
        ((self.basic >> 50) & 0xf) as u8
    }

    /// VM exits for INS/OUTS report instruction information (bit 54).
    pub const fn has_ins_outs_info(&self) -> bool {
        self.basic & (1 << 54) != 0
    }

    /// The IA32_VMX_TRUE_*_CTLS MSRs exist (bit 55).
    pub const fn has_true_controls(&self) -> bool {
        self.basic & (1 << 55) != 0
    }

    fn pick(&self, true_msr: u64, msr: u64) -> Allowed {
        Allowed::from_msr(if self.has_true_controls() { true_msr } else { msr })
    }

    /// Allowed pin-based controls (the TRUE MSR where it exists, SDM A.3.1).
    pub fn pin(&self) -> Allowed {
        self.pick(self.true_pinbased, self.pinbased)
    }

    /// Allowed primary processor-based controls.
    pub fn primary(&self) -> Allowed {
        self.pick(self.true_procbased, self.procbased)
    }

    /// Allowed secondary processor-based controls (all zero when there are none).
    pub fn secondary(&self) -> Allowed {
        Allowed::from_msr(self.procbased2)
    }

    /// Allowed VM-exit controls.
    pub fn exit_controls(&self) -> Allowed {
        self.pick(self.true_exit, self.exit)
    }

    /// Allowed VM-entry controls.
    pub fn entry_controls(&self) -> Allowed {
        self.pick(self.true_entry, self.entry)
    }

    /// CR0 bits fixed in VMX operation.
    pub const fn cr0_fixed(&self) -> FixedBits {
        FixedBits { fixed0: self.cr0_fixed0, fixed1: self.cr0_fixed1 }
    }

    /// CR4 bits fixed in VMX operation.
    pub const fn cr4_fixed(&self) -> FixedBits {
        FixedBits { fixed0: self.cr4_fixed0, fixed1: self.cr4_fixed1 }
    }

    /// Scale of the preemption timer: it counts down once every 2^n TSC ticks (MISC bits 4:0).
    pub const fn preemption_timer_shift(&self) -> u8 {
        (self.misc & 0x1f) as u8
    }

    /// Number of CR3-target values supported (MISC bits 24:16).
    pub const fn cr3_target_count(&self) -> u32 {
        ((self.misc >> 16) & 0x1ff) as u32
    }

    /// Recommended maximum number of MSRs in each MSR list (MISC bits 27:25: 512 * (N + 1)).
    pub const fn max_msr_list_len(&self) -> u32 {
        512 * (((self.misc >> 25) & 0x7) as u32 + 1)
    }

    /// VMWRITE may write the read-only VM-exit information fields (MISC bit 29).
    pub const fn vmwrite_any_field(&self) -> bool {
        self.misc & (1 << 29) != 0
    }

    /// Highest index value used in any VMCS encoding (VMCS_ENUM bits 9:1).
    pub const fn max_vmcs_index(&self) -> u32 {
        ((self.vmcs_enum >> 1) & 0x1ff) as u32
    }

    /// True if every bit of `bits` is set in IA32_VMX_EPT_VPID_CAP.
    pub const fn ept_vpid_has(&self, bits: u64) -> bool {
        self.ept_vpid & bits == bits
    }

    /// EPT usable the way L0 needs it: the control, 4-level walks and write-back paging
    /// structures.
    pub fn has_ept(&self) -> bool {
        self.secondary().can_set(proc2::ENABLE_EPT)
            && self.ept_vpid_has(ept_vpid::PAGE_WALK_4 | ept_vpid::MEMTYPE_WB)
    }

    /// VPIDs can be enabled.
    pub fn has_vpid(&self) -> bool {
        self.secondary().can_set(proc2::ENABLE_VPID)
    }

    /// Unrestricted guest can be enabled (needs EPT as well, SDM 26.2.1.1).
    pub fn has_unrestricted_guest(&self) -> bool {
        self.secondary().can_set(proc2::UNRESTRICTED_GUEST) && self.has_ept()
    }

    /// VMCS shadowing can be enabled.
    pub fn has_vmcs_shadowing(&self) -> bool {
        self.secondary().can_set(proc2::VMCS_SHADOWING)
    }

    /// The VMX-preemption timer can be enabled.
    pub fn has_preemption_timer(&self) -> bool {
        self.pin().can_set(pin::PREEMPTION_TIMER)
    }

    /// Posted-interrupt processing can be enabled.
    pub fn has_posted_interrupts(&self) -> bool {
        self.pin().can_set(pin::POSTED_INTERRUPTS)
    }

    /// VM functions with EPTP switching (VMFUNC leaf 0).
    pub fn has_eptp_switching(&self) -> bool {
        self.secondary().can_set(proc2::ENABLE_VM_FUNCTIONS) && self.vmfunc & 1 != 0
    }

    /// The value of capability MSR `index` as RDMSR would return it, or `None` if `index` is
    /// not an IA32_VMX_* MSR (L0 answers L1's RDMSRs from its [`l1_caps`] value this way).
    ///
    /// [`l1_caps`]: crate::vmx::l1_caps()
    pub const fn msr(&self, index: u32) -> Option<u64> {
        Some(match index {
            msr::IA32_VMX_BASIC => self.basic,
            msr::IA32_VMX_PINBASED_CTLS => self.pinbased,
            msr::IA32_VMX_PROCBASED_CTLS => self.procbased,
            msr::IA32_VMX_EXIT_CTLS => self.exit,
            msr::IA32_VMX_ENTRY_CTLS => self.entry,
            msr::IA32_VMX_MISC => self.misc,
            msr::IA32_VMX_CR0_FIXED0 => self.cr0_fixed0,
            msr::IA32_VMX_CR0_FIXED1 => self.cr0_fixed1,
            msr::IA32_VMX_CR4_FIXED0 => self.cr4_fixed0,
            msr::IA32_VMX_CR4_FIXED1 => self.cr4_fixed1,
            msr::IA32_VMX_VMCS_ENUM => self.vmcs_enum,
            msr::IA32_VMX_PROCBASED_CTLS2 => self.procbased2,
            msr::IA32_VMX_EPT_VPID_CAP => self.ept_vpid,
            msr::IA32_VMX_TRUE_PINBASED_CTLS => self.true_pinbased,
            msr::IA32_VMX_TRUE_PROCBASED_CTLS => self.true_procbased,
            msr::IA32_VMX_TRUE_EXIT_CTLS => self.true_exit,
            msr::IA32_VMX_TRUE_ENTRY_CTLS => self.true_entry,
            msr::IA32_VMX_VMFUNC => self.vmfunc,
            _ => return None,
        })
    }

    /// True if the VMCS of a processor with these capabilities has `field` (SDM Vol. 3D,
    /// Appendix B, whose notes tie each feature's fields to the 1-setting of its control):
    /// VMREAD and VMWRITE of a field that does not exist are VMfailValid(12), as of an
    /// encoding no processor uses, and IA32_VMX_VMCS_ENUM names the highest index among the
    /// fields that exist ([`VmxCaps::highest_field_index`]). So an L1 shown no posted
    /// interrupts, say, finds no posted-interrupt fields, as on such a processor.
    pub fn has_field(&self, field: VmcsField) -> bool {
        use VmcsField as F;
        // Each arm reads only the capability MSR it needs: most fields exist everywhere, and
        // L1's VMREAD/VMWRITE that exit to L0 ask about each.
        let pins = |bits: u32| self.pin().can_set(bits);
        let p1 = |bits: u32| self.primary().can_set(bits);
        let p2 =
            |bits: u32| p1(proc1::ACTIVATE_SECONDARY_CONTROLS) && self.secondary().can_set(bits);
        let ex = |bits: u32| self.exit_controls().can_set(bits);
        let en = |bits: u32| self.entry_controls().can_set(bits);
        match field {
            F::VirtualProcessorId => p2(proc2::ENABLE_VPID),
            F::PostedInterruptNotificationVector | F::PostedInterruptDescAddr => {
                pins(pin::POSTED_INTERRUPTS)
            }
            F::EptpIndex | F::VeInformationAddress => p2(proc2::EPT_VIOLATION_VE),
            F::GuestInterruptStatus
            | F::EoiExitBitmap0
            | F::EoiExitBitmap1
            | F::EoiExitBitmap2
            | F::EoiExitBitmap3 => p2(proc2::VIRTUAL_INTERRUPT_DELIVERY),
            F::GuestPmlIndex | F::PmlAddress => p2(proc2::ENABLE_PML),
            F::MsrBitmap => p1(proc1::USE_MSR_BITMAPS),
            F::VirtualApicPageAddr | F::TprThreshold => p1(proc1::USE_TPR_SHADOW),
            F::ApicAccessAddr => p2(proc2::VIRTUALIZE_APIC_ACCESSES),
            F::VmFunctionControl => p2(proc2::ENABLE_VM_FUNCTIONS),
            F::EptpListAddress => self.has_eptp_switching(),
            F::EptPointer
            | F::GuestPhysicalAddress
            | F::GuestPdpte0
            | F::GuestPdpte1
            | F::GuestPdpte2
            | F::GuestPdpte3 => p2(proc2::ENABLE_EPT),
            F::VmreadBitmap | F::VmwriteBitmap => p2(proc2::VMCS_SHADOWING),
            F::XssExitingBitmap => p2(proc2::ENABLE_XSAVES),
            F::EnclsExitingBitmap => p2(proc2::ENCLS_EXITING),
            F::SubPagePermissionTablePointer => p2(proc2::SUB_PAGE_WRITE_PERMISSIONS),
            F::TscMultiplier => p2(proc2::USE_TSC_SCALING),
            F::TertiaryProcBasedControls => p1(proc1::ACTIVATE_TERTIARY_CONTROLS),
            F::EnclvExitingBitmap => p2(proc2::ENCLV_EXITING),
            F::SecondaryVmExecControl => p1(proc1::ACTIVATE_SECONDARY_CONTROLS),
            F::PleGap | F::PleWindow => p2(proc2::PAUSE_LOOP_EXITING),
            F::NotifyWindow => p2(proc2::NOTIFY_VM_EXITING),
            F::VmxPreemptionTimerValue => pins(pin::PREEMPTION_TIMER),
            F::GuestIa32Pat => en(entry::LOAD_IA32_PAT) || ex(exit::SAVE_IA32_PAT),
            F::HostIa32Pat => ex(exit::LOAD_IA32_PAT),
            F::GuestIa32Efer => en(entry::LOAD_IA32_EFER) || ex(exit::SAVE_IA32_EFER),
            F::HostIa32Efer => ex(exit::LOAD_IA32_EFER),
            F::GuestIa32PerfGlobalCtrl => {
                en(entry::LOAD_IA32_PERF_GLOBAL_CTRL) || ex(exit::SAVE_IA32_PERF_GLOBAL_CTRL)
            }
            F::HostIa32PerfGlobalCtrl => ex(exit::LOAD_IA32_PERF_GLOBAL_CTRL),
            F::GuestIa32Bndcfgs => en(entry::LOAD_IA32_BNDCFGS) || ex(exit::CLEAR_IA32_BNDCFGS),
            F::GuestIa32RtitCtl => en(entry::LOAD_IA32_RTIT_CTL) || ex(exit::CLEAR_IA32_RTIT_CTL),
            F::GuestIa32LbrCtl => en(entry::LOAD_IA32_LBR_CTL) || ex(exit::CLEAR_IA32_LBR_CTL),
            F::GuestIa32Pkrs => en(entry::LOAD_IA32_PKRS),
            F::HostIa32Pkrs => ex(exit::LOAD_IA32_PKRS),
            F::GuestSCet | F::GuestSsp | F::GuestInterruptSspTableAddr => en(entry::LOAD_CET_STATE),
            F::HostSCet | F::HostSsp | F::HostInterruptSspTableAddr => ex(exit::LOAD_CET_STATE),
            _ => true,
        }
    }

    /// The highest index (encoding bits 9:1) of the fields these capabilities give the VMCS
    /// ([`VmxCaps::has_field`]): IA32_VMX_VMCS_ENUM bits 9:1 for them (SDM A.9).
    pub fn highest_field_index(&self) -> u32 {
        VmcsField::ALL
            .iter()
            .filter(|f| self.has_field(**f))
            .map(|f| (f.encoding() >> 1) & 0x1ff)
            .max()
            .unwrap_or(0)
    }

    /// Activity states supported besides active (MISC bits 8:6: HLT, shutdown, wait-for-SIPI).
    pub const fn activity_states(&self) -> u8 {
        ((self.misc >> 6) & 7) as u8
    }

    /// A one-line summary of the features turtles cares about, for the platform report.
    pub fn summary(&self) -> Summary<'_> {
        Summary(self)
    }
}

/// Display adapter for [`VmxCaps::summary`].
pub struct Summary<'a>(&'a VmxCaps);

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.0;
        let yn = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "revision={:#x} vmcs-size={} ept={} vpid={} unrestricted-guest={} vmcs-shadowing={} \
             preemption-timer={} posted-interrupts={} eptp-switching={} true-controls={}",
            c.revision_id(),
            c.vmcs_size(),
            yn(c.has_ept()),
            yn(c.has_vpid()),
            yn(c.has_unrestricted_guest()),
            yn(c.has_vmcs_shadowing()),
            yn(c.has_preemption_timer()),
            yn(c.has_posted_interrupts()),
            yn(c.has_eptp_switching()),
            yn(c.has_true_controls()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A processor with true controls, secondary controls, EPT, VPID, unrestricted guest and
    /// VMCS shadowing, but no posted interrupts (the shape of Bochs `corei7_skylake_x`).
    fn sample(read_log: &mut Vec<u32>) -> VmxCaps {
        VmxCaps::read(|m| {
            read_log.push(m);
            match m {
                msr::IA32_VMX_BASIC => (1 << 55) | (6 << 50) | (0x1000 << 32) | 0x1,
                msr::IA32_VMX_PINBASED_CTLS | msr::IA32_VMX_TRUE_PINBASED_CTLS => {
                    (0x6f_u64 << 32) | 0x16
                }
                msr::IA32_VMX_PROCBASED_CTLS | msr::IA32_VMX_TRUE_PROCBASED_CTLS => {
                    (0xfff9_fffe_u64 << 32) | 0x0401_e172
                }
                msr::IA32_VMX_PROCBASED_CTLS2 => {
                    let allowed1 = proc2::ENABLE_EPT
                        | proc2::ENABLE_VPID
                        | proc2::UNRESTRICTED_GUEST
                        | proc2::VMCS_SHADOWING
                        | proc2::ENABLE_VM_FUNCTIONS;
                    u64::from(allowed1) << 32
                }
                msr::IA32_VMX_EPT_VPID_CAP => ept_vpid::PAGE_WALK_4 | ept_vpid::MEMTYPE_WB,
                msr::IA32_VMX_VMFUNC => 1,
                msr::IA32_VMX_MISC => 0x5 | (3 << 25) | (1 << 29),
                _ => 0,
            }
        })
    }

    #[test]
    fn allowed_adjust_and_verify() {
        let a = Allowed { allowed0: 0b0011, allowed1: 0b0111 };
        assert_eq!(a.adjust(0b1100), 0b0111);
        assert!(a.verify(0b0111));
        assert!(a.verify(0b0011));
        assert!(!a.verify(0b0001), "a must-be-1 bit is clear");
        assert!(!a.verify(0b1011), "a may-not-be-1 bit is set");
        assert_eq!(Allowed::from_msr(a.to_msr()), a);
    }

    #[test]
    fn fixed_bits() {
        let f = FixedBits { fixed0: 0x21, fixed1: 0xff };
        assert!(f.verify(0x21));
        assert!(!f.verify(0x20));
        assert!(!f.verify(0x121));
        assert_eq!(f.adjust(0x100), 0x21);
    }

    #[test]
    fn reads_only_msrs_that_exist() {
        let mut log = Vec::new();
        let caps = sample(&mut log);
        assert!(log.contains(&msr::IA32_VMX_TRUE_ENTRY_CTLS));
        assert!(log.contains(&msr::IA32_VMX_VMFUNC));
        assert_eq!(caps.revision_id(), 1);
        assert_eq!(caps.vmcs_size(), 0x1000);
        assert_eq!(caps.vmcs_memory_type(), 6);
        assert_eq!(caps.preemption_timer_shift(), 5);
        assert_eq!(caps.max_msr_list_len(), 2048);
        assert!(caps.vmwrite_any_field());

        // No secondary controls: neither the secondary nor the EPT/VPID nor VMFUNC MSR is read.
        let mut log = Vec::new();
        let caps = VmxCaps::read(|m| {
            log.push(m);
            if m == msr::IA32_VMX_PROCBASED_CTLS { 0x7fff_ffff << 32 } else { 0 }
        });
        assert!(!log.contains(&msr::IA32_VMX_PROCBASED_CTLS2));
        assert!(!log.contains(&msr::IA32_VMX_EPT_VPID_CAP));
        assert!(!log.contains(&msr::IA32_VMX_VMFUNC));
        assert!(!log.contains(&msr::IA32_VMX_TRUE_PINBASED_CTLS));
        assert!(!caps.has_ept() && !caps.has_vpid() && !caps.has_vmcs_shadowing());
    }

    #[test]
    fn summary_names_features() {
        let caps = sample(&mut Vec::new());
        let s = format!("{}", caps.summary());
        for want in [
            "ept=yes",
            "vpid=yes",
            "unrestricted-guest=yes",
            "vmcs-shadowing=yes",
            "preemption-timer=yes",
            "posted-interrupts=no",
            "eptp-switching=yes",
        ] {
            assert!(s.contains(want), "{want} missing from {s}");
        }
    }

    #[test]
    fn unrestricted_guest_needs_ept() {
        let mut caps = sample(&mut Vec::new());
        caps.ept_vpid = 0;
        assert!(!caps.has_ept());
        assert!(!caps.has_unrestricted_guest());
    }
}

#[cfg(test)]
#[path = "caps_tests.rs"]
mod sdm_tests;
