//! The VMCS field table: every field of SDM Vol. 3D Appendix B, once.
//!
//! This list is the single source of truth for VMCS fields (house style 2, after Linux
//! `vmcs12.c` and `vmcs_shadow_fields.h`). Each line names the field (SDM name in
//! CamelCase), its encoding, the `Vmcs12` member that holds it, that member's type, and its
//! shadow class: `None` (VMREAD/VMWRITE exit to L0), `Ro` (shadowed for VMREAD only), `Rw`
//! (shadowed for both). Width, type and access are *not* listed: they are derived from the
//! encoding bits (SDM Vol. 3C 25.11.2), and a compile-time assertion checks that the member
//! type matches the width.
//!
//! The list is an X-macro: `vmcs_fields!(callback)` expands `callback! { ... }` with the
//! whole table, so the field enum ([`super::VmcsField`]) and the vmcs12 layout
//! ([`super::Vmcs12`]) are generated from the same lines. Members appear in the `Vmcs12`
//! struct in this order, so **append new fields at the end of their group only after
//! bumping `VMCS12_REVISION`**: the order is L1-visible memory layout.
//!
//! Shadowed fields follow Linux `vmcs_shadow_fields.h`: the fields an L1 hypervisor touches
//! on nearly every exit. Pointers (bitmaps, EPTP, MSR lists) and most controls are not
//! shadowed, so L0 sees those writes as they happen; RW-shadowed fields are copied back from
//! the shadow VMCS when L1 executes VMLAUNCH/VMRESUME and marked dirty where they changed.
//! Beyond Linux's list, turtles as L1 reads CR4_GUEST_HOST_MASK on every CPUID leaf 1/7 of
//! its guest (OSXSAVE/OSPKE are live bits) and IA32_EFER on every MMIO decode, so both are
//! `Rw` too (CR0_GUEST_HOST_MASK already was): at depth 2 they were most of L1's VMREAD exits.

macro_rules! vmcs_fields {
    ($callback:ident) => {
        $callback! {
            // ---- 16-bit control fields (B.1.1)
            VirtualProcessorId = 0x0000 => virtual_processor_id: u16, None;
            PostedInterruptNotificationVector = 0x0002 => posted_intr_nv: u16, None;
            EptpIndex = 0x0004 => eptp_index: u16, None;
            // ---- 16-bit guest-state fields (B.1.2)
            GuestEsSelector = 0x0800 => guest_es_selector: u16, None;
            GuestCsSelector = 0x0802 => guest_cs_selector: u16, None;
            GuestSsSelector = 0x0804 => guest_ss_selector: u16, None;
            GuestDsSelector = 0x0806 => guest_ds_selector: u16, None;
            GuestFsSelector = 0x0808 => guest_fs_selector: u16, None;
            GuestGsSelector = 0x080a => guest_gs_selector: u16, None;
            GuestLdtrSelector = 0x080c => guest_ldtr_selector: u16, None;
            GuestTrSelector = 0x080e => guest_tr_selector: u16, None;
            GuestInterruptStatus = 0x0810 => guest_intr_status: u16, Rw;
            GuestPmlIndex = 0x0812 => guest_pml_index: u16, None;
            // ---- 16-bit host-state fields (B.1.3)
            HostEsSelector = 0x0c00 => host_es_selector: u16, None;
            HostCsSelector = 0x0c02 => host_cs_selector: u16, None;
            HostSsSelector = 0x0c04 => host_ss_selector: u16, None;
            HostDsSelector = 0x0c06 => host_ds_selector: u16, None;
            HostFsSelector = 0x0c08 => host_fs_selector: u16, Rw;
            HostGsSelector = 0x0c0a => host_gs_selector: u16, Rw;
            HostTrSelector = 0x0c0c => host_tr_selector: u16, None;
            // ---- 64-bit control fields (B.2.1)
            IoBitmapA = 0x2000 => io_bitmap_a: u64, None;
            IoBitmapB = 0x2002 => io_bitmap_b: u64, None;
            MsrBitmap = 0x2004 => msr_bitmap: u64, None;
            VmExitMsrStoreAddr = 0x2006 => vm_exit_msr_store_addr: u64, None;
            VmExitMsrLoadAddr = 0x2008 => vm_exit_msr_load_addr: u64, None;
            VmEntryMsrLoadAddr = 0x200a => vm_entry_msr_load_addr: u64, None;
            ExecutiveVmcsPointer = 0x200c => executive_vmcs_pointer: u64, None;
            PmlAddress = 0x200e => pml_address: u64, None;
            TscOffset = 0x2010 => tsc_offset: u64, None;
            VirtualApicPageAddr = 0x2012 => virtual_apic_page_addr: u64, None;
            ApicAccessAddr = 0x2014 => apic_access_addr: u64, None;
            PostedInterruptDescAddr = 0x2016 => posted_intr_desc_addr: u64, None;
            VmFunctionControl = 0x2018 => vm_function_control: u64, None;
            EptPointer = 0x201a => ept_pointer: u64, None;
            EoiExitBitmap0 = 0x201c => eoi_exit_bitmap0: u64, None;
            EoiExitBitmap1 = 0x201e => eoi_exit_bitmap1: u64, None;
            EoiExitBitmap2 = 0x2020 => eoi_exit_bitmap2: u64, None;
            EoiExitBitmap3 = 0x2022 => eoi_exit_bitmap3: u64, None;
            EptpListAddress = 0x2024 => eptp_list_address: u64, None;
            VmreadBitmap = 0x2026 => vmread_bitmap: u64, None;
            VmwriteBitmap = 0x2028 => vmwrite_bitmap: u64, None;
            VeInformationAddress = 0x202a => ve_information_address: u64, None;
            XssExitingBitmap = 0x202c => xss_exit_bitmap: u64, None;
            EnclsExitingBitmap = 0x202e => encls_exiting_bitmap: u64, None;
            SubPagePermissionTablePointer = 0x2030 => spptp: u64, None;
            TscMultiplier = 0x2032 => tsc_multiplier: u64, None;
            TertiaryProcBasedControls = 0x2034 => tertiary_vm_exec_control: u64, None;
            EnclvExitingBitmap = 0x2036 => enclv_exiting_bitmap: u64, None;
            // ---- 64-bit read-only data field (B.2.2)
            GuestPhysicalAddress = 0x2400 => guest_physical_address: u64, Ro;
            // ---- 64-bit guest-state fields (B.2.3)
            VmcsLinkPointer = 0x2800 => vmcs_link_pointer: u64, None;
            GuestIa32Debugctl = 0x2802 => guest_ia32_debugctl: u64, None;
            GuestIa32Pat = 0x2804 => guest_ia32_pat: u64, None;
            GuestIa32Efer = 0x2806 => guest_ia32_efer: u64, Rw;
            GuestIa32PerfGlobalCtrl = 0x2808 => guest_ia32_perf_global_ctrl: u64, None;
            GuestPdpte0 = 0x280a => guest_pdptr0: u64, None;
            GuestPdpte1 = 0x280c => guest_pdptr1: u64, None;
            GuestPdpte2 = 0x280e => guest_pdptr2: u64, None;
            GuestPdpte3 = 0x2810 => guest_pdptr3: u64, None;
            GuestIa32Bndcfgs = 0x2812 => guest_bndcfgs: u64, None;
            GuestIa32RtitCtl = 0x2814 => guest_ia32_rtit_ctl: u64, None;
            GuestIa32LbrCtl = 0x2816 => guest_ia32_lbr_ctl: u64, None;
            GuestIa32Pkrs = 0x2818 => guest_ia32_pkrs: u64, None;
            // ---- 64-bit host-state fields (B.2.4)
            HostIa32Pat = 0x2c00 => host_ia32_pat: u64, None;
            HostIa32Efer = 0x2c02 => host_ia32_efer: u64, None;
            HostIa32PerfGlobalCtrl = 0x2c04 => host_ia32_perf_global_ctrl: u64, None;
            HostIa32Pkrs = 0x2c06 => host_ia32_pkrs: u64, None;
            // ---- 32-bit control fields (B.3.1)
            PinBasedVmExecControl = 0x4000 => pin_based_vm_exec_control: u32, None;
            CpuBasedVmExecControl = 0x4002 => cpu_based_vm_exec_control: u32, Rw;
            ExceptionBitmap = 0x4004 => exception_bitmap: u32, Rw;
            PageFaultErrorCodeMask = 0x4006 => page_fault_error_code_mask: u32, None;
            PageFaultErrorCodeMatch = 0x4008 => page_fault_error_code_match: u32, None;
            Cr3TargetCount = 0x400a => cr3_target_count: u32, None;
            VmExitControls = 0x400c => vm_exit_controls: u32, None;
            VmExitMsrStoreCount = 0x400e => vm_exit_msr_store_count: u32, None;
            VmExitMsrLoadCount = 0x4010 => vm_exit_msr_load_count: u32, None;
            VmEntryControls = 0x4012 => vm_entry_controls: u32, None;
            VmEntryMsrLoadCount = 0x4014 => vm_entry_msr_load_count: u32, None;
            VmEntryInterruptionInfo = 0x4016 => vm_entry_intr_info_field: u32, Rw;
            VmEntryExceptionErrorCode = 0x4018 => vm_entry_exception_error_code: u32, Rw;
            VmEntryInstructionLen = 0x401a => vm_entry_instruction_len: u32, Rw;
            TprThreshold = 0x401c => tpr_threshold: u32, Rw;
            SecondaryVmExecControl = 0x401e => secondary_vm_exec_control: u32, None;
            PleGap = 0x4020 => ple_gap: u32, None;
            PleWindow = 0x4022 => ple_window: u32, None;
            NotifyWindow = 0x4024 => notify_window: u32, None;
            // ---- 32-bit read-only data fields (B.3.2)
            VmInstructionError = 0x4400 => vm_instruction_error: u32, Ro;
            VmExitReason = 0x4402 => vm_exit_reason: u32, Ro;
            VmExitInterruptionInfo = 0x4404 => vm_exit_intr_info: u32, Ro;
            VmExitInterruptionErrorCode = 0x4406 => vm_exit_intr_error_code: u32, Ro;
            IdtVectoringInfo = 0x4408 => idt_vectoring_info_field: u32, Ro;
            IdtVectoringErrorCode = 0x440a => idt_vectoring_error_code: u32, Ro;
            VmExitInstructionLen = 0x440c => vm_exit_instruction_len: u32, Ro;
            VmxInstructionInfo = 0x440e => vmx_instruction_info: u32, Ro;
            // ---- 32-bit guest-state fields (B.3.3)
            GuestEsLimit = 0x4800 => guest_es_limit: u32, None;
            GuestCsLimit = 0x4802 => guest_cs_limit: u32, None;
            GuestSsLimit = 0x4804 => guest_ss_limit: u32, None;
            GuestDsLimit = 0x4806 => guest_ds_limit: u32, None;
            GuestFsLimit = 0x4808 => guest_fs_limit: u32, None;
            GuestGsLimit = 0x480a => guest_gs_limit: u32, None;
            GuestLdtrLimit = 0x480c => guest_ldtr_limit: u32, None;
            GuestTrLimit = 0x480e => guest_tr_limit: u32, None;
            GuestGdtrLimit = 0x4810 => guest_gdtr_limit: u32, None;
            GuestIdtrLimit = 0x4812 => guest_idtr_limit: u32, None;
            GuestEsArBytes = 0x4814 => guest_es_ar_bytes: u32, None;
            GuestCsArBytes = 0x4816 => guest_cs_ar_bytes: u32, Rw;
            GuestSsArBytes = 0x4818 => guest_ss_ar_bytes: u32, Rw;
            GuestDsArBytes = 0x481a => guest_ds_ar_bytes: u32, None;
            GuestFsArBytes = 0x481c => guest_fs_ar_bytes: u32, None;
            GuestGsArBytes = 0x481e => guest_gs_ar_bytes: u32, None;
            GuestLdtrArBytes = 0x4820 => guest_ldtr_ar_bytes: u32, None;
            GuestTrArBytes = 0x4822 => guest_tr_ar_bytes: u32, None;
            GuestInterruptibilityInfo = 0x4824 => guest_interruptibility_info: u32, Rw;
            GuestActivityState = 0x4826 => guest_activity_state: u32, None;
            GuestSmbase = 0x4828 => guest_smbase: u32, None;
            GuestSysenterCs = 0x482a => guest_sysenter_cs: u32, None;
            VmxPreemptionTimerValue = 0x482e => vmx_preemption_timer_value: u32, Rw;
            // ---- 32-bit host-state field (B.3.4)
            HostIa32SysenterCs = 0x4c00 => host_ia32_sysenter_cs: u32, None;
            // ---- natural-width control fields (B.4.1)
            Cr0GuestHostMask = 0x6000 => cr0_guest_host_mask: u64, Rw;
            Cr4GuestHostMask = 0x6002 => cr4_guest_host_mask: u64, Rw;
            Cr0ReadShadow = 0x6004 => cr0_read_shadow: u64, Rw;
            Cr4ReadShadow = 0x6006 => cr4_read_shadow: u64, Rw;
            Cr3TargetValue0 = 0x6008 => cr3_target_value0: u64, None;
            Cr3TargetValue1 = 0x600a => cr3_target_value1: u64, None;
            Cr3TargetValue2 = 0x600c => cr3_target_value2: u64, None;
            Cr3TargetValue3 = 0x600e => cr3_target_value3: u64, None;
            // ---- natural-width read-only data fields (B.4.2)
            ExitQualification = 0x6400 => exit_qualification: u64, Ro;
            IoRcx = 0x6402 => io_rcx: u64, None;
            IoRsi = 0x6404 => io_rsi: u64, None;
            IoRdi = 0x6406 => io_rdi: u64, None;
            IoRip = 0x6408 => io_rip: u64, None;
            GuestLinearAddress = 0x640a => guest_linear_address: u64, Ro;
            // ---- natural-width guest-state fields (B.4.3)
            GuestCr0 = 0x6800 => guest_cr0: u64, Rw;
            GuestCr3 = 0x6802 => guest_cr3: u64, Rw;
            GuestCr4 = 0x6804 => guest_cr4: u64, Rw;
            GuestEsBase = 0x6806 => guest_es_base: u64, Rw;
            GuestCsBase = 0x6808 => guest_cs_base: u64, Rw;
            GuestSsBase = 0x680a => guest_ss_base: u64, Rw;
            GuestDsBase = 0x680c => guest_ds_base: u64, Rw;
            GuestFsBase = 0x680e => guest_fs_base: u64, None;
            GuestGsBase = 0x6810 => guest_gs_base: u64, None;
            GuestLdtrBase = 0x6812 => guest_ldtr_base: u64, None;
            GuestTrBase = 0x6814 => guest_tr_base: u64, None;
            GuestGdtrBase = 0x6816 => guest_gdtr_base: u64, None;
            GuestIdtrBase = 0x6818 => guest_idtr_base: u64, None;
            GuestDr7 = 0x681a => guest_dr7: u64, Rw;
            GuestRsp = 0x681c => guest_rsp: u64, Rw;
            GuestRip = 0x681e => guest_rip: u64, Rw;
            GuestRflags = 0x6820 => guest_rflags: u64, Rw;
            GuestPendingDebugExceptions = 0x6822 => guest_pending_dbg_exceptions: u64, None;
            GuestSysenterEsp = 0x6824 => guest_sysenter_esp: u64, None;
            GuestSysenterEip = 0x6826 => guest_sysenter_eip: u64, None;
            GuestSCet = 0x6828 => guest_s_cet: u64, None;
            GuestSsp = 0x682a => guest_ssp: u64, None;
            GuestInterruptSspTableAddr = 0x682c => guest_intr_ssp_table: u64, None;
            // ---- natural-width host-state fields (B.4.4)
            HostCr0 = 0x6c00 => host_cr0: u64, None;
            HostCr3 = 0x6c02 => host_cr3: u64, None;
            HostCr4 = 0x6c04 => host_cr4: u64, None;
            HostFsBase = 0x6c06 => host_fs_base: u64, Rw;
            HostGsBase = 0x6c08 => host_gs_base: u64, Rw;
            HostTrBase = 0x6c0a => host_tr_base: u64, None;
            HostGdtrBase = 0x6c0c => host_gdtr_base: u64, None;
            HostIdtrBase = 0x6c0e => host_idtr_base: u64, None;
            HostIa32SysenterEsp = 0x6c10 => host_ia32_sysenter_esp: u64, None;
            HostIa32SysenterEip = 0x6c12 => host_ia32_sysenter_eip: u64, None;
            HostRsp = 0x6c14 => host_rsp: u64, None;
            HostRip = 0x6c16 => host_rip: u64, None;
            HostSCet = 0x6c18 => host_s_cet: u64, None;
            HostSsp = 0x6c1a => host_ssp: u64, None;
            HostInterruptSspTableAddr = 0x6c1c => host_intr_ssp_table: u64, None;
        }
    };
}
