//! vmcs12's MSR lists performed (`nested::vmx::msr_lists`): the VM-entry MSR-load list into
//! L2's MSRs once vmcs02 is merged, the VM-exit MSR-store list from L2's MSRs while vmcs02
//! is still current, and the VM-exit MSR-load list into L1's once vmcs01 holds L1's host
//! state. "L2's MSRs" are what L2's RDMSR and WRMSR reach when L1 passes them through: the
//! ones a VMCS holds are in vmcs02, the rest are L1's world (hardware, L1's emulated MSRs,
//! L1's local APIC), as on a processor running vmcs12. Each goes through L0's MSR policy
//! ([`crate::vmx::exits::msr`]), so an entry takes exactly the values WRMSR would. The one
//! exception is IA32_TSC in the store list: the MSR's value at L2's VM exit (`exit_tsc`,
//! timed in `run::run_loop`, plus L1's own offset: L1's TSC), as the processor stores it
//! (SDM 27.4), not RDMSR's view with vmcs12's TSC offset, nor the TSC when L0 reaches the
//! list.

use nested::guest::{GuestMemory as L1Memory, MemError};
use nested::vmx::msr_lists::{self, Msrs, VmxAbort};

use crate::arch::vmcs::HwVmcs;
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::exits::msr;
use crate::vmx::guest::Guest;

static REFUSED: RateLimit = RateLimit::new(8);

/// The MSRs of the level running on `v` (vmcs02: L2, vmcs01: L1) and L1's memory.
struct Level<'a> {
    g: &'a mut Guest,
    v: &'a mut HwVmcs,
    list: &'static str,
    /// IA32_TSC as this list reads it (the store list: the TSC at L2's exit).
    tsc: Option<u64>,
}

impl L1Memory for Level<'_> {
    fn read(&self, gpa: nested::addr::L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        L1Memory::read(&self.g.memory, gpa, buf)
    }

    fn write(&mut self, gpa: nested::addr::L1Gpa, data: &[u8]) -> Result<(), MemError> {
        L1Memory::write(&mut self.g.memory, gpa, data)
    }
}

impl Msrs for Level<'_> {
    fn rdmsr(&mut self, index: u32) -> Option<u64> {
        if let Some(tsc) = self.tsc
            && index == pc::msr::index::IA32_TSC
        {
            // L1's IA32_TSC at L2's exit: the processor's TSC then plus L1's own offset
            // (the one vmcs01 holds for L1's writes of IA32_TSC), not L2's view.
            return Some(tsc);
        }
        msr::read(self.g, self.v, index).map_err(|why| self.refused(index, 0, why)).ok()
    }

    fn wrmsr(&mut self, index: u32, value: u64) -> bool {
        msr::write(self.g, self.v, index, value)
            .map_err(|why| self.refused(index, value, why))
            .is_ok()
    }
}

impl Level<'_> {
    fn refused(&self, index: u32, value: u64, why: msr::Refusal) {
        if REFUSED.allow() {
            log::warn!("{}: MSR {index:#x} (value {value:#x}) refused: {why:?}", self.list);
        }
    }
}

/// The address and count of a list in vmcs12.
#[inline(always)]
fn list(g: &Guest, pick: impl Fn(&nested::vmcs::Vmcs12) -> (u64, u32)) -> (u64, u32) {
    g.nested.as_ref().map_or((0, 0), |n| pick(&n.vmx.vmcs12))
}

/// The list length L1's IA32_VMX_MISC recommends, past which a load list fails.
fn max_len(g: &Guest) -> u32 {
    g.nested.as_ref().map_or(512, |n| n.vmx.caps.max_msr_list_len())
}

// Every VM entry and exit of L2 asks these; almost no L1 has lists, so the question is
// inline and the work is not (a call on the hot path costs ticks on every exit).

/// Loads the VM-entry MSR-load list into L2's MSRs (vmcs02 current and merged). `Err(n)`:
/// entry `n` (1-based) failed, and the VM entry fails with exit reason 34 (SDM 26.4, 26.8).
#[inline(always)]
pub fn entry_load(g: &mut Guest, v02: &mut HwVmcs) -> Result<(), u32> {
    let (addr, count) = list(g, |v| (v.vm_entry_msr_load_addr, v.vm_entry_msr_load_count));
    if count == 0 { Ok(()) } else { load_entry_list(g, v02, addr, count) }
}

#[cold]
#[inline(never)]
fn load_entry_list(g: &mut Guest, v02: &mut HwVmcs, addr: u64, count: u32) -> Result<(), u32> {
    let max = max_len(g);
    let level = &mut Level { g, v: v02, list: "VM-entry MSR-load list", tsc: None };
    let result = msr_lists::load(level, addr, count, max);
    if let Err(entry) = result {
        log::warn!("VM-entry MSR-load list: entry {entry} of {count} failed: L2's VM entry fails");
    }
    result
}

/// Stores L2's MSRs in the VM-exit MSR-store list (vmcs02 still current). A failure is a
/// VMX abort: the returned action stops L1.
#[inline(always)]
pub fn exit_store(g: &mut Guest, v02: &mut HwVmcs) -> Result<(), Action> {
    let (addr, count) = list(g, |v| (v.vm_exit_msr_store_addr, v.vm_exit_msr_store_count));
    if count == 0 { Ok(()) } else { store_exit_list(g, v02, addr, count) }
}

#[cold]
#[inline(never)]
fn store_exit_list(g: &mut Guest, v02: &mut HwVmcs, addr: u64, count: u32) -> Result<(), Action> {
    // L1's TSC at L2's exit (the MSR's value: vmcs12's offset is L2's view only).
    let tsc = g.nested.as_ref().map(|n| n.exit_tsc.wrapping_add(g.tsc_offset));
    let level = &mut Level { g, v: v02, list: "VM-exit MSR-store list", tsc };
    let result = msr_lists::store(level, addr, count);
    result.map_err(|entry| abort(g, VmxAbort::SavingGuestMsrs, entry))
}

/// Loads the VM-exit MSR-load list into L1's MSRs (vmcs01 current with L1's host state
/// loaded). A failure is a VMX abort: the returned action stops L1.
#[inline(always)]
pub fn exit_load(g: &mut Guest, v01: &mut HwVmcs) -> Result<(), Action> {
    let (addr, count) = list(g, |v| (v.vm_exit_msr_load_addr, v.vm_exit_msr_load_count));
    if count == 0 { Ok(()) } else { load_exit_list(g, v01, addr, count) }
}

#[cold]
#[inline(never)]
fn load_exit_list(g: &mut Guest, v01: &mut HwVmcs, addr: u64, count: u32) -> Result<(), Action> {
    let max = max_len(g);
    let level = &mut Level { g, v: v01, list: "VM-exit MSR-load list", tsc: None };
    let result = msr_lists::load(level, addr, count, max);
    result.map_err(|entry| abort(g, VmxAbort::LoadingHostMsrs, entry))
}

/// A VMX abort (SDM 27.7): the indicator goes to bytes 4-7 of the current VMCS region (and
/// the cached vmcs12), and the processor shuts down: L0 stops L1.
fn abort(g: &mut Guest, why: VmxAbort, entry: u32) -> Action {
    log::error!("VMX abort {} ({why:?}, list entry {entry}): L1 shuts down", why.indicator());
    if let Some(n) = g.nested.as_mut() {
        n.vmx.vmcs12.abort = why.indicator();
        if let Some(region) = n.vmx.current {
            let at = nested::addr::L1Gpa(region.0.wrapping_add(4));
            let _ = L1Memory::write(&mut g.memory, at, &why.indicator().to_le_bytes());
        }
    }
    Action::Stop(GuestEnd::Failed("VMX abort"))
}
