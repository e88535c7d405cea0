//! VMLAUNCH and VMRESUME emulation (SDM Vol. 2 "VMLAUNCH/VMRESUME"; Vol. 3C 26.1 order of
//! checks, 26.2-26.4 via [`super::checks`], 26.8 entry failures).

use super::checks::{self, EntryFailure};
use super::instr::{EntryChecked, L1Access, L1Cpu, NestedVmx, SHADOW_VMCS_INDICATOR};
use super::{Exception, VmInstructionError, VmxResult};
use crate::arch::cr0;
use crate::caps::{proc1, proc2};
use crate::exits::ExitReason;
use crate::exits::routing::secondary_controls;
use crate::vmcs::{DirtySet, FieldType, LaunchState, VmcsField};

/// Every control and host-state field: what [`checks::check_controls`] and
/// [`checks::check_host_state`] read, besides the VM-entry controls (in [`EntryChecked`]) and
/// the guest CR0 that event injection looks at only while an event is being injected (the
/// VM-entry interruption information is a control field, so that is rechecked when L1
/// writes it; a reflected exit only clears its valid bit).
const CONTROL_AND_HOST: DirtySet = {
    let mut s = DirtySet::empty();
    let mut i = 0;
    while i < VmcsField::COUNT {
        let f = VmcsField::ALL[i];
        if matches!(f.field_type(), FieldType::Control | FieldType::HostState) {
            s = s.with(f);
        }
        i += 1;
    }
    s
};

/// Every guest-state field but RIP: when L1 changed none of them since the last VM entry that
/// passed every check (and the controls and host state are unchanged too), only RIP needs
/// checking again. L1's exit handler typically changes only RIP (it skips the instruction).
const GUEST_BUT_RIP: DirtySet = {
    let mut s = DirtySet::empty();
    let mut i = 0;
    while i < VmcsField::COUNT {
        let f = VmcsField::ALL[i];
        if matches!(f.field_type(), FieldType::GuestState)
            && f as usize != VmcsField::GuestRip as usize
        {
            s = s.with(f);
        }
        i += 1;
    }
    s
};

impl NestedVmx {
    /// VMLAUNCH (`launch`) or VMRESUME: errors 4, 5, 7, 8, 26, then the guest-state and
    /// MSR-load checks whose failure is a VM-entry-failure exit to L1 (SDM 26.1-26.4, 26.8).
    pub fn vmlaunch(&mut self, launch: bool, cpu: &L1Cpu, l1: &mut impl L1Access) -> VmxResult {
        if cpu.cr0 & cr0::PE == 0 {
            return VmxResult::Fault(Exception::UD);
        }
        if let Err(e) = self.root_checks(cpu) {
            return VmxResult::Fault(e);
        }
        // A shadow VMCS cannot be entered (SDM Vol. 3C 25.10, 26.1).
        if self.current.is_none() || self.vmcs12.revision_id & SHADOW_VMCS_INDICATOR != 0 {
            return VmxResult::FailInvalid;
        }
        if cpu.mov_ss_blocking {
            return self.fail(VmInstructionError::EntryEventsBlockedByMovSs);
        }
        match (launch, self.vmcs12.launch()) {
            (true, LaunchState::Launched) => {
                return self.fail(VmInstructionError::VmlaunchNonClearVmcs);
            }
            (false, LaunchState::Clear) => {
                return self.fail(VmInstructionError::VmresumeNonLaunchedVmcs);
            }
            _ => {}
        }
        // The control and host-state checks read only control and host-state fields (and
        // the key): when none changed since they last passed, they pass again.
        let key = EntryChecked {
            vm_entry_controls: self.vmcs12.vm_entry_controls,
            l1_ia32e: cpu.is_ia32e(),
        };
        let checked = self.entry_checked == Some(key) && !self.dirty.intersects(&CONTROL_AND_HOST);
        self.entry_checked = None;
        if !checked && checks::check_controls(&self.vmcs12, &self.caps, self.maxphyaddr).is_err() {
            return self.fail(VmInstructionError::EntryInvalidControlFields);
        }
        // VTPR is in L1 memory: checked at every entry that uses it (the last control
        // check; the common entry without a TPR shadow tests one bit).
        if self.vmcs12.cpu_based_vm_exec_control & proc1::USE_TPR_SHADOW != 0
            && checks::check_tpr_threshold_vtpr(&self.vmcs12, l1).is_err()
        {
            return self.fail(VmInstructionError::EntryInvalidControlFields);
        }
        if !checked
            && checks::check_host_state(&self.vmcs12, &self.caps, self.maxphyaddr, key.l1_ia32e)
                .is_err()
        {
            return self.fail(VmInstructionError::EntryInvalidHostStateFields);
        }
        // With the rare guest fields stale in vmcs02 (L0 synced only the hot ones and L1
        // changed nothing they depend on: `needs_rare_sync`), only the checks of the others.
        // And when L1 changed no guest field but RIP since the last entry passed them all,
        // only RIP's: the other guest fields hold what L2's VM exit saved, which the
        // processor checks again when L0 enters vmcs02 (as for the rare ones). The VMCS
        // link pointer and, without EPT, the PDPTEs are in L1 memory, which may have
        // changed: those entries take the full path.
        let guest = if checked
            && self.rare_stale
            && !self.dirty.intersects(&GUEST_BUT_RIP)
            && self.vmcs12.vmcs_link_pointer == u64::MAX
            && secondary_controls(&self.vmcs12) & proc2::ENABLE_EPT != 0
        {
            checks::check_guest_rip(&self.vmcs12)
        } else if self.rare_stale {
            checks::check_guest_state_hot(&self.vmcs12, &self.caps, self.maxphyaddr, l1)
        } else {
            checks::check_guest_state(&self.vmcs12, &self.caps, self.maxphyaddr, l1)
        };
        // The last guest check that needs more than vmcs12 and L1 memory (26.3.1.5): the
        // VMCS link pointer is not the current VMCS (outside SMM).
        let link = self.vmcs12.vmcs_link_pointer;
        let guest = guest.and_then(|()| match self.current {
            Some(p) if p.0 == link => {
                Err(EntryFailure::guest(checks::Check::GuestVmcsLinkPointer, 4))
            }
            _ => Ok(()),
        });
        // The VM-entry MSR-load list comes after the merge (the image performs it with
        // `msr_lists::load`, entry by entry, and reports a failure to `msr_load_failed`).
        if let Err(f) = guest {
            self.record_entry_failure(&f);
            return VmxResult::EntryFailed(f);
        }
        if launch {
            self.vmcs12.launch_state = LaunchState::Launched as u32;
        }
        self.entry_checked = Some(key);
        self.merged = self.current;
        VmxResult::EnterL2 { launch }
    }

    /// The VM-entry MSR-load list, performed by L0 after the checks passed, failed at
    /// `entry` (1-based): the entry fails with exit reason 34 (SDM 26.4, 26.8) and a
    /// VMLAUNCH leaves vmcs12's launch state clear.
    pub fn msr_load_failed(&mut self, entry: u32, launch: bool) {
        self.record_entry_failure(&EntryFailure {
            reason: ExitReason::EntryFailMsrLoading,
            qualification: u64::from(entry),
            check: checks::Check::MsrLoadEntry,
        });
        if launch {
            self.vmcs12.launch_state = LaunchState::Clear as u32;
        }
    }

    /// Writes the exit information of a failed VM entry into vmcs12 (SDM 26.8, 28.2).
    fn record_entry_failure(&mut self, f: &EntryFailure) {
        self.vmcs12.vm_exit_reason = f.exit_reason();
        self.vmcs12.exit_qualification = f.qualification;
        self.vmcs12.vm_exit_intr_info = 0;
        self.vmcs12.idt_vectoring_info_field = 0;
        self.vmcs12.vm_exit_instruction_len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "only RIP changed" shortcut's set: every guest-state field except RIP, nothing else
    /// (a RIP in it would re-run every guest check after each skipped instruction; a control
    /// in it would make a changed control look like a guest change).
    #[test]
    fn guest_but_rip_is_exactly_the_guest_state_without_rip() {
        for &f in VmcsField::ALL.iter() {
            let want = matches!(f.field_type(), FieldType::GuestState) && f != VmcsField::GuestRip;
            assert_eq!(GUEST_BUT_RIP.contains(f), want, "{f:?}");
        }
    }

    /// VMRESUME's "only RIP changed" shortcut (only RIP is checked) is taken exactly when
    /// nothing the other guest checks read can have changed: with a VMCS link pointer, or
    /// without EPT (the PDPTEs at guest CR3), L1 memory may have changed behind L0's back, and
    /// the entry checks it again (cargo-mutants: docs/mutants.md, `vmx/launch.rs`).
    #[test]
    fn rip_only_resume_rechecks_what_lives_in_l1_memory() {
        use crate::addr::L1Gpa;
        use crate::caps::entry;
        use crate::guest::GuestMemory;
        use crate::testutil::{TestL1, l1, valid_vmcs12};
        use crate::vmx::checks::Check;

        let caps = l1();
        let cpu = L1Cpu::long_mode_ring0();
        // A launched vmcs12 (adjusted by `shape`) whose last VMRESUME passed every check, and
        // L2's exit reflected with the rare fields left in vmcs02, as after a hot sync.
        let entered = |shape: fn(&mut crate::vmcs::Vmcs12), l1m: &mut TestL1| {
            let mut vmx = NestedVmx::new(caps, 36);
            vmx.vmxon = true;
            vmx.vmxon_ptr = L1Gpa(0x1000);
            vmx.current = Some(L1Gpa(0x2000));
            vmx.vmcs12 = valid_vmcs12(&caps);
            shape(&mut vmx.vmcs12);
            vmx.vmcs12.launch_state = LaunchState::Launched as u32;
            assert_eq!(vmx.vmlaunch(false, &cpu, l1m), VmxResult::EnterL2 { launch: false });
            vmx.dirty.clear();
            vmx.rare_stale = true;
            vmx
        };
        // L1 skips L2's instruction and resumes: RIP is the only field it wrote.
        let resume = |vmx: &mut NestedVmx, l1m: &mut TestL1| {
            vmx.vmcs12.guest_rip += 2;
            vmx.dirty.insert(VmcsField::GuestRip);
            vmx.vmlaunch(false, &cpu, l1m)
        };
        let failed_check = |r: VmxResult| match r {
            VmxResult::EntryFailed(f) => Some((f.check, f.qualification)),
            _ => None,
        };

        // With EPT and no link pointer only RIP is checked: a guest field that is invalid
        // but not dirty (which a real L1 cannot produce: every vmcs12 write goes through
        // VMWRITE or an exit's sync) shows that the other checks did not run.
        let mut l1m = TestL1::new(0x10_0000);
        let mut vmx = entered(|_| {}, &mut l1m);
        vmx.vmcs12.guest_cr0 = 0;
        assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });

        // A link pointer names a VMCS in L1 memory: L1 may have rewritten it since.
        let mut l1m = TestL1::new(0x10_0000);
        l1m.mem.write_u32(L1Gpa(0x3000), caps.revision_id()).unwrap();
        let mut vmx = entered(|v| v.vmcs_link_pointer = 0x3000, &mut l1m);
        assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });
        l1m.mem.write_u32(L1Gpa(0x3000), caps.revision_id() ^ 1).unwrap();
        let failed = resume(&mut vmx, &mut l1m);
        assert_eq!(failed_check(failed), Some((Check::GuestVmcsLinkPointer, 4)));

        // PAE paging without EPT: the PDPTEs are read at guest CR3 in L1 memory.
        let mut l1m = TestL1::new(0x10_0000);
        let pae_without_ept = |v: &mut crate::vmcs::Vmcs12| {
            v.vm_entry_controls &= !entry::IA32E_MODE_GUEST;
            v.guest_ia32_efer = 0;
            v.guest_cs_ar_bytes = 0xc09b;
            v.secondary_vm_exec_control = 0;
            v.guest_cr3 = 0xc000;
        };
        let mut vmx = entered(pae_without_ept, &mut l1m);
        assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });
        l1m.mem.write_u64(L1Gpa(0xc008), 1 | 1 << 5).unwrap(); // present, reserved bit 5
        let failed = resume(&mut vmx, &mut l1m);
        assert_eq!(failed_check(failed), Some((Check::GuestPdpte, 2)));

        // TPR shadow: VTPR is in L1 memory (L2's MOV to CR8 writes it), so the TPR threshold
        // is checked against it at every entry, though no control field changed: a VTPR
        // below the threshold is VMfailValid(7), and the entry did not happen.
        let mut l1m = TestL1::new(0x10_0000);
        l1m.mem.write(L1Gpa(0xe080), &[0x30]).unwrap();
        let tpr_shadow = |v: &mut crate::vmcs::Vmcs12| {
            v.cpu_based_vm_exec_control |= crate::caps::proc1::USE_TPR_SHADOW;
            v.virtual_apic_page_addr = 0xe000;
            v.tpr_threshold = 3;
        };
        let mut vmx = entered(tpr_shadow, &mut l1m);
        assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });
        l1m.mem.write(L1Gpa(0xe080), &[0x20]).unwrap();
        assert_eq!(
            resume(&mut vmx, &mut l1m),
            VmxResult::FailValid(VmInstructionError::EntryInvalidControlFields)
        );
        assert_eq!(vmx.vmcs12.vm_instruction_error, 7);
        l1m.mem.write(L1Gpa(0xe080), &[0x3f]).unwrap();
        assert_eq!(resume(&mut vmx, &mut l1m), VmxResult::EnterL2 { launch: false });
    }
}
