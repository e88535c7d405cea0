//! Nested VPID (SDM Vol. 3C 29.1, 29.4.3): each VPID L1 gives its L2s (vpid12) runs as a
//! hardware VPID (vpid02) from a [`VpidMap`], so L2's TLB entries survive L1/L2 switches; an
//! L2 whose vmcs12 does not enable VPID runs on one untagged vpid02 that L0 flushes on every
//! entry, as a processor without VPIDs would. L1's INVVPID flushes the mapped vpid02s only.

use nested::caps::{VmxCaps, ept_vpid, proc2};
use nested::ept::shadow::VpidMap;
use nested::exits::routing::secondary_controls;
use nested::vmcs::Vmcs12;

use crate::arch::vmx as insn;
use crate::vmx::setup;

/// The hardware VPID of every L2 whose vmcs12 does not enable VPID: like a processor without
/// VPIDs, L0 flushes it on each VM entry to L2 (and L1's on each exit to L1).
pub const VPID_L2_UNTAGGED: u16 = setup::GUEST_VPID + 1;
/// First hardware VPID of the vpid12 → vpid02 map.
const VPID02_BASE: u16 = setup::GUEST_VPID + 2;

/// The vpid12 → vpid02 map and the vpid02 vmcs02 holds.
pub struct NestedVpids {
    map: VpidMap,
    /// Whether vmcs02 tags L2 with a VPID of its own (and L0 can INVVPID single contexts).
    enabled: bool,
    /// The VPID vmcs02 holds (0: not written yet), and the vpid12 it was mapped from.
    pub vpid02: u16,
    vpid12: u16,
}

impl NestedVpids {
    pub fn new(hw: &VmxCaps) -> Self {
        NestedVpids {
            map: VpidMap::new(VPID02_BASE),
            enabled: hw.secondary().can_set(proc2::ENABLE_VPID)
                && hw.ept_vpid_has(ept_vpid::INVVPID_SINGLE_CONTEXT),
            vpid02: 0,
            vpid12: 0,
        }
    }

    /// The vpid02 L2 runs with under `v12` (0 when L0 does not use VPIDs for L2): L1's
    /// vpid12 mapped through [`VpidMap`] (a vpid02 (re)assigned to another vpid12 is flushed
    /// first), or, when vmcs12 does not enable VPID, the untagged vpid02, flushed on every
    /// entry as SDM 29.4.3.1 describes for VM entries without VPIDs.
    pub fn l2_vpid(&mut self, v12: &Vmcs12) -> u16 {
        if !self.enabled {
            return 0;
        }
        let tagged =
            secondary_controls(v12) & proc2::ENABLE_VPID != 0 && v12.virtual_processor_id != 0;
        let (vpid02, flush) = if tagged {
            let vpid12 = v12.virtual_processor_id;
            if self.vpid02 != 0 && self.vpid02 != VPID_L2_UNTAGGED && vpid12 == self.vpid12 {
                // The common VMRESUME: same vpid12, still mapped (only this function maps).
                return self.vpid02;
            }
            self.vpid12 = vpid12;
            let (vpid02, fresh) = self.map.vpid02(vpid12);
            if fresh {
                static ASSIGNED: crate::ratelimit::RateLimit = crate::ratelimit::RateLimit::new(8);
                if ASSIGNED.allow() {
                    log::info!(
                        "vmx: L1's VPID {vpid12} for its guest runs as hardware VPID {vpid02}"
                    );
                }
            }
            (vpid02, fresh)
        } else {
            (VPID_L2_UNTAGGED, true)
        };
        if flush {
            flush_vpid(vpid02);
        }
        vpid02
    }

    /// L1's INVVPID for `vpid12` (any single-context or individual-address type: those may
    /// flush more than asked, SDM 29.4.3.3, so L0 flushes the whole vpid02).
    pub fn invalidate(&self, vpid12: u16) {
        if let Some(vpid02) = self.map.lookup(vpid12) {
            flush_vpid(vpid02);
        }
    }

    /// L1's all-context INVVPID: every vpid02 of L1's, and the untagged one.
    pub fn invalidate_all(&self) {
        for vpid02 in self.map.assigned() {
            flush_vpid(vpid02);
        }
        flush_vpid(VPID_L2_UNTAGGED);
    }
}

/// INVVPID single-context for `vpid`, when the processor has it.
pub fn flush_vpid(vpid: u16) {
    // SAFETY: in VMX root operation; INVVPID with an unsupported type only fails (VMfail),
    // and callers reach here only with VPIDs enabled (`NestedVpids::enabled`).
    let _ = unsafe { insn::invvpid(1, vpid) };
}
