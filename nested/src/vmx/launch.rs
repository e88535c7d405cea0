//! VMLAUNCH and VMRESUME emulation (SDM Vol. 2 "VMLAUNCH/VMRESUME"; Vol. 3C 26.1 order of
//! checks, 26.2-26.4 via [`super::checks`], 26.8 entry failures).

use super::checks::{self, EntryFailure};
use super::instr::{EntryChecked, L1Access, L1Cpu, NestedVmx};
use super::{Exception, VmInstructionError, VmxResult};
use crate::arch::cr0;
use crate::caps::proc2;
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
        if self.current.is_none() {
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
        if !checked {
            if checks::check_controls(&self.vmcs12, &self.caps, self.maxphyaddr).is_err() {
                return self.fail(VmInstructionError::EntryInvalidControlFields);
            }
            if checks::check_host_state(&self.vmcs12, &self.caps, self.maxphyaddr, key.l1_ia32e)
                .is_err()
            {
                return self.fail(VmInstructionError::EntryInvalidHostStateFields);
            }
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
        let failure = match guest {
            Err(f) => Some(f),
            Ok(()) => checks::check_msr_load_list(&self.vmcs12, &self.caps, l1).err(),
        };
        if let Some(f) = failure {
            self.record_entry_failure(&f);
            return VmxResult::EntryFailed(f);
        }
        if launch {
            self.vmcs12.launch_state = LaunchState::Launched as u32;
        }
        self.entry_checked = Some(key);
        VmxResult::EnterL2 { launch }
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
}
