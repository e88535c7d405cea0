//! Shared fixtures for the crate's tests: a test L1 (registers + flat memory), recorded
//! hardware capabilities, and a vmcs12 that passes every VM-entry check.

use crate::addr::L1Gpa;
use crate::caps::{VmxCaps, entry, exit, pin, proc1, proc2};
use crate::guest::{Gpr, GuestMemory, GuestRegs, MemError, Regs, VecMemory};
use crate::vmcs::Vmcs12;
use crate::vmx::{Exception, L1Access, MemOperand, Segment, SegmentCache, l1_caps};

pub(crate) use crate::vmx::l1_caps::tests::skylake;

/// L1 with flat memory (linear == physical; outside it, #PF), flat segments at base 0.
#[derive(Clone, Debug)]
pub struct TestL1 {
    pub regs: Regs,
    pub mem: VecMemory,
    /// ES, CS, SS, DS, FS, GS as the VMCS would hold them (flat by default).
    pub segments: [SegmentCache; 6],
}

impl TestL1 {
    pub fn new(size: usize) -> Self {
        let segments =
            [Segment::Es, Segment::Cs, Segment::Ss, Segment::Ds, Segment::Fs, Segment::Gs]
                .map(|s| SegmentCache::flat(s, 0));
        TestL1 { regs: Regs::default(), mem: VecMemory::new(size), segments }
    }

    pub fn set(&mut self, r: Gpr, v: u64) {
        self.regs.set_gpr(r, v);
    }
}

impl GuestRegs for TestL1 {
    fn gpr(&self, r: Gpr) -> u64 {
        self.regs.gpr(r)
    }
    fn set_gpr(&mut self, r: Gpr, value: u64) {
        self.regs.set_gpr(r, value);
    }
}

impl GuestMemory for TestL1 {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        self.mem.read(gpa, buf)
    }
    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        self.mem.write(gpa, data)
    }
}

impl L1Access for TestL1 {
    fn segment_base(&self, seg: Segment) -> u64 {
        self.segment(seg).base
    }
    fn segment(&self, seg: Segment) -> SegmentCache {
        self.segments[seg as usize]
    }
    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception> {
        self.mem.read(L1Gpa(op.linear), buf).map_err(|_| Exception::page_fault(op.linear, 0))
    }
    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception> {
        self.mem.write(L1Gpa(op.linear), data).map_err(|_| Exception::page_fault(op.linear, 2))
    }
}

/// The capabilities L1 sees on the recorded Skylake.
pub fn l1() -> VmxCaps {
    l1_caps(&skylake())
}

/// A 64-bit L2 with EPT, VPID, unrestricted guest and MSR bitmaps that passes every check
/// under [`l1`] with MAXPHYADDR 36.
#[allow(clippy::field_reassign_with_default)]
pub fn valid_vmcs12(caps: &VmxCaps) -> Vmcs12 {
    let mut v = Vmcs12::default();
    v.pin_based_vm_exec_control =
        caps.pin().adjust(pin::EXTERNAL_INTERRUPT_EXITING | pin::NMI_EXITING);
    v.cpu_based_vm_exec_control = caps
        .primary()
        .adjust(proc1::HLT_EXITING | proc1::USE_MSR_BITMAPS | proc1::ACTIVATE_SECONDARY_CONTROLS);
    v.secondary_vm_exec_control =
        caps.secondary().adjust(proc2::ENABLE_EPT | proc2::ENABLE_VPID | proc2::UNRESTRICTED_GUEST);
    v.msr_bitmap = 0x5000;
    v.virtual_processor_id = 1;
    v.ept_pointer = 0x6000 | 6 | 3 << 3;
    v.vm_exit_controls = caps.exit_controls().adjust(
        exit::HOST_ADDRESS_SPACE_SIZE
            | exit::ACK_INTERRUPT_ON_EXIT
            | exit::SAVE_IA32_EFER
            | exit::LOAD_IA32_EFER,
    );
    v.vm_entry_controls =
        caps.entry_controls().adjust(entry::IA32E_MODE_GUEST | entry::LOAD_IA32_EFER);
    // Host: L1's own 64-bit state.
    v.host_cr0 = 0x8000_0031;
    v.host_cr4 = 0x2020;
    v.host_cr3 = 0x1000;
    v.host_cs_selector = 8;
    v.host_ss_selector = 0x10;
    v.host_ds_selector = 0x10;
    v.host_es_selector = 0x10;
    v.host_fs_selector = 0;
    v.host_gs_selector = 0;
    v.host_tr_selector = 0x18;
    v.host_rip = 0xffff_8000_0000_1000;
    v.host_rsp = 0xffff_8000_0000_8000;
    v.host_ia32_efer = 1 << 8 | 1 << 10 | 1;
    v.host_ia32_pat = 0x0007_0406_0007_0406;
    // Guest: 64-bit ring 0.
    v.guest_cr0 = 0x8000_0031;
    v.guest_cr4 = 0x2020;
    v.guest_cr3 = 0x3000;
    v.guest_ia32_efer = 1 << 8 | 1 << 10;
    v.guest_ia32_pat = 0x0007_0406_0007_0406;
    v.guest_cs_selector = 8;
    v.guest_cs_limit = 0xffff_ffff;
    v.guest_cs_ar_bytes = 0xa09b;
    for (sel, limit, ar) in [
        (&mut v.guest_ss_selector, &mut v.guest_ss_limit, &mut v.guest_ss_ar_bytes),
        (&mut v.guest_ds_selector, &mut v.guest_ds_limit, &mut v.guest_ds_ar_bytes),
        (&mut v.guest_es_selector, &mut v.guest_es_limit, &mut v.guest_es_ar_bytes),
        (&mut v.guest_fs_selector, &mut v.guest_fs_limit, &mut v.guest_fs_ar_bytes),
        (&mut v.guest_gs_selector, &mut v.guest_gs_limit, &mut v.guest_gs_ar_bytes),
    ] {
        *sel = 0x10;
        *limit = 0xffff_ffff;
        *ar = 0xc093;
    }
    v.guest_tr_selector = 0x18;
    v.guest_tr_limit = 0x67;
    v.guest_tr_ar_bytes = 0x8b;
    v.guest_ldtr_ar_bytes = 1 << 16;
    v.guest_gdtr_limit = 0xff;
    v.guest_idtr_limit = 0xfff;
    v.guest_rip = 0x1000;
    v.guest_rsp = 0x8000;
    v.guest_rflags = 2;
    v.vmcs_link_pointer = u64::MAX;
    v
}
