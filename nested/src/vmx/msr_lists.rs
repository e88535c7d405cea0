//! The MSR lists of VM entries and VM exits (SDM Vol. 3C 25.7.2, 25.8.2, 26.4, 27.4, 27.6):
//! arrays of 16-byte entries in L1-physical memory, each the MSR index in bits 31:0, bits
//! 63:32 reserved (0), and the data in bits 127:64.
//!
//! - The VM-entry MSR-load list is loaded into L2's MSRs after L2's guest state; the first
//!   entry that fails makes the entry fail (exit reason 34, qualification the entry's
//!   1-based number); the entries before it stay loaded.
//! - The VM-exit MSR-store list is filled with L2's MSRs when L2 exits, and the VM-exit
//!   MSR-load list is loaded into L1's MSRs after L1's host state; a failure in either is a
//!   VMX abort ([`VmxAbort`]).
//!
//! L0 performs them against the MSRs of the level they belong to ([`Msrs`]); which MSRs exist
//! and which values they take is L0's MSR policy, the same one RDMSR and WRMSR meet.

use crate::addr::L1Gpa;
use crate::guest::GuestMemory;

/// L1's memory, where the lists are, and the MSRs a list is performed against: L2's for the
/// VM-entry load and the VM-exit store, L1's for the VM-exit load.
pub trait Msrs: GuestMemory {
    /// RDMSR at CPL 0: `None` where the processor would raise #GP.
    fn rdmsr(&mut self, index: u32) -> Option<u64>;
    /// WRMSR at CPL 0: `false` (nothing changed) where the processor would raise #GP.
    fn wrmsr(&mut self, index: u32, value: u64) -> bool;
}

/// IA32_FS_BASE and IA32_GS_BASE: never loaded from a list (SDM 26.4).
const FS_BASE: u32 = 0xc000_0100;
const GS_BASE: u32 = 0xc000_0101;
/// IA32_SMM_MONITOR_CTL, writable only in SMM, and IA32_SMBASE, readable only in SMM (the
/// processor shown runs no SMM).
const SMM_MONITOR_CTL: u32 = 0x9b;
const SMBASE: u32 = 0x9e;

/// Whether bits 31:8 of the index name an x2APIC MSR (800H-8FFH): neither loaded nor stored.
const fn x2apic(index: u32) -> bool {
    index >> 8 == 0x8
}

/// The MSR index of a load-list entry's first quadword, or `None` when the entry fails
/// whatever its data (SDM 26.4, 27.6: reserved bits 63:32 set, IA32_FS_BASE, IA32_GS_BASE,
/// an x2APIC MSR, an MSR written only in SMM).
pub const fn load_index(lo: u64) -> Option<u32> {
    let index = lo as u32;
    if lo >> 32 != 0
        || index == FS_BASE
        || index == GS_BASE
        || x2apic(index)
        || index == SMM_MONITOR_CTL
        || index == SMBASE
    {
        return None;
    }
    Some(index)
}

/// The MSR index of a store-list entry, or `None` when the entry fails whatever the MSR holds
/// (SDM 27.4: reserved bits 63:32 set, an x2APIC MSR, an MSR read only in SMM).
pub const fn store_index(lo: u64) -> Option<u32> {
    let index = lo as u32;
    if lo >> 32 != 0 || x2apic(index) || index == SMBASE {
        return None;
    }
    Some(index)
}

/// The address of entry `i` (0-based) of a list at `addr`.
fn entry(addr: u64, i: u32) -> L1Gpa {
    L1Gpa(addr.wrapping_add(u64::from(i) * 16))
}

/// Performs a load list (the VM-entry MSR-load or the VM-exit MSR-load list) of `count`
/// entries at `addr`, in order. `Err(n)`: entry `n` (1-based) failed (unreadable, a
/// forbidden index, a value WRMSR refuses, or the first past `max`, the list length
/// IA32_VMX_MISC recommends: `VmxCaps::max_msr_list_len`); entries `1..n` are loaded, as the
/// processor loads them before it meets the failing one (SDM 26.4).
pub fn load(msrs: &mut impl Msrs, addr: u64, count: u32, max: u32) -> Result<(), u32> {
    for i in 0..count {
        if i >= max {
            return Err(i + 1);
        }
        let at = entry(addr, i);
        let (Ok(lo), Ok(value)) = (msrs.read_u64(at), msrs.read_u64(L1Gpa(at.0.wrapping_add(8))))
        else {
            return Err(i + 1);
        };
        match load_index(lo) {
            Some(index) if msrs.wrmsr(index, value) => {}
            _ => return Err(i + 1),
        }
    }
    Ok(())
}

/// Performs the VM-exit MSR-store list of `count` entries at `addr`: each entry's data
/// quadword gets the MSR's value. `Err(n)`: entry `n` (1-based) failed; entries `1..n` are
/// stored.
pub fn store(msrs: &mut impl Msrs, addr: u64, count: u32) -> Result<(), u32> {
    for i in 0..count {
        let at = entry(addr, i);
        let value = msrs.read_u64(at).ok().and_then(store_index).and_then(|m| msrs.rdmsr(m));
        let Some(value) = value else { return Err(i + 1) };
        if msrs.write(L1Gpa(at.0.wrapping_add(8)), &value.to_le_bytes()).is_err() {
            return Err(i + 1);
        }
    }
    Ok(())
}

/// Why a VM exit aborted (SDM 27.7): the processor writes the indicator to bytes 4-7 of the
/// current VMCS region and enters the shutdown state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmxAbort {
    /// Storing L2's MSRs in the VM-exit MSR-store list failed.
    SavingGuestMsrs = 1,
    /// Loading L1's MSRs from the VM-exit MSR-load list failed.
    LoadingHostMsrs = 4,
}

impl VmxAbort {
    /// The VMX-abort indicator.
    pub const fn indicator(self) -> u32 {
        self as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guest::MemError;
    use crate::testutil::TestL1;
    use std::collections::BTreeMap;

    /// L1 memory and MSRs as a map; the pairs in `refuse` take #GP on WRMSR, the indexes
    /// absent from `msrs` on RDMSR.
    struct Map {
        mem: TestL1,
        msrs: BTreeMap<u32, u64>,
        refuse: Vec<(u32, u64)>,
        writes: Vec<(u32, u64)>,
    }

    impl Map {
        fn new(mem: &TestL1) -> Map {
            Map { mem: mem.clone(), msrs: BTreeMap::new(), refuse: Vec::new(), writes: Vec::new() }
        }
    }

    impl GuestMemory for Map {
        fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
            self.mem.read(gpa, buf)
        }
        fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
            self.mem.write(gpa, data)
        }
    }

    impl Msrs for Map {
        fn rdmsr(&mut self, index: u32) -> Option<u64> {
            self.msrs.get(&index).copied()
        }
        fn wrmsr(&mut self, index: u32, value: u64) -> bool {
            if self.refuse.contains(&(index, value)) {
                return false;
            }
            self.writes.push((index, value));
            self.msrs.insert(index, value);
            true
        }
    }

    fn list(mem: &mut impl GuestMemory, addr: u64, entries: &[(u64, u64)]) {
        for (i, (lo, data)) in entries.iter().enumerate() {
            let at = addr + 16 * i as u64;
            mem.write(L1Gpa(at), &lo.to_le_bytes()).unwrap();
            mem.write(L1Gpa(at + 8), &data.to_le_bytes()).unwrap();
        }
    }

    #[test]
    fn a_load_list_writes_each_entry_in_order() {
        let mut mem = TestL1::new(0x10000);
        let entries = [(0x174, 0x10), (0xc000_0102, 0xffff_8000_0000_1000), (0x174, 0x20)];
        list(&mut mem, 0x3000, &entries);
        let mut m = Map::new(&mem);
        assert_eq!(load(&mut m, 0x3000, 3, 512), Ok(()));
        assert_eq!(m.writes, [(0x174, 0x10), (0xc000_0102, 0xffff_8000_0000_1000), (0x174, 0x20)]);
        // A count of 0 touches nothing, even at an address outside memory.
        let mut m = Map::new(&mem);
        assert_eq!(load(&mut m, u64::MAX - 15, 0, 512), Ok(()));
        assert!(m.writes.is_empty());
    }

    /// The first failing entry's 1-based number; the entries before it stay loaded, none
    /// after it is tried.
    #[test]
    fn a_load_list_stops_at_the_first_failing_entry() {
        let mut mem = TestL1::new(0x10000);
        let bad_entries = [
            (1u64 << 32 | 0x174, 0),   // reserved bits 63:32
            (0xc000_0100, 0),          // IA32_FS_BASE
            (0xc000_0101, 0),          // IA32_GS_BASE
            (0x808, 0),                // x2APIC TPR
            (0x800, 0),                // the first x2APIC index
            (0x8ff, 0),                // the last
            (0x9b, 0),                 // IA32_SMM_MONITOR_CTL
            (0x9e, 0),                 // IA32_SMBASE
            (0x277, 0x0202_0202_0202), // refused by WRMSR (below)
        ];
        for bad in bad_entries {
            list(&mut mem, 0x3000, &[(0x174, 1), (0x175, 2), bad, (0x176, 3)]);
            let mut m = Map::new(&mem);
            m.refuse.push((0x277, 0x0202_0202_0202));
            assert_eq!(load(&mut m, 0x3000, 4, 512), Err(3), "{bad:#x?}");
            assert_eq!(m.writes, [(0x174, 1), (0x175, 2)], "{bad:#x?}");
        }
        // Indexes next to the forbidden ones load.
        for ok in [0x7ffu64, 0x900, 0xc000_0102, 0xc000_00ff, 0x9c, 0x9d, 0x9f, 0x9a] {
            list(&mut mem, 0x3000, &[(ok, 5)]);
            let mut m = Map::new(&mem);
            assert_eq!(load(&mut m, 0x3000, 1, 512), Ok(()), "{ok:#x}");
        }
        // Entry 2 outside L1's memory fails as entry 2.
        list(&mut mem, 0xfff0, &[(0x174, 1)]);
        let mut m = Map::new(&mem);
        assert_eq!(load(&mut m, 0xfff0, 2, 512), Err(2));
        assert_eq!(m.writes, [(0x174, 1)]);
        // Past the maximum length: the first `max` entries load, then entry `max + 1` fails.
        list(&mut mem, 0x3000, &[(0x174, 1), (0x175, 2), (0x176, 3)]);
        let mut m = Map::new(&mem);
        assert_eq!(load(&mut m, 0x3000, 3, 2), Err(3));
        assert_eq!(m.writes, [(0x174, 1), (0x175, 2)]);
        let mut m = Map::new(&mem);
        assert_eq!(load(&mut m, 0x3000, 3, 3), Ok(()));
    }

    #[test]
    fn a_store_list_writes_each_value_after_its_index() {
        let mut mem = TestL1::new(0x10000);
        list(&mut mem, 0x4000, &[(0x174, 0xdead), (0x10, 0xdead), (0x9b, 0xdead)]);
        let mut m = Map::new(&mem);
        m.msrs.insert(0x174, 0x08);
        m.msrs.insert(0x10, 0x1234_5678_9abc);
        m.msrs.insert(0x9b, 7);
        assert_eq!(store(&mut m, 0x4000, 3), Ok(()));
        assert_eq!(m.read_u64(L1Gpa(0x4008)), Ok(0x08));
        assert_eq!(m.read_u64(L1Gpa(0x4018)), Ok(0x1234_5678_9abc));
        assert_eq!(m.read_u64(L1Gpa(0x4028)), Ok(7));
        // The indexes are left as they were.
        assert_eq!(m.read_u64(L1Gpa(0x4010)), Ok(0x10));
    }

    #[test]
    fn a_store_list_stops_at_the_first_failing_entry() {
        let mut mem = TestL1::new(0x10000);
        for bad in [1u64 << 63 | 0x174, 0x802, 0x9e, 0x3a0] {
            list(&mut mem, 0x4000, &[(0x174, 0), (bad, 0), (0x175, 0)]);
            let mut m = Map::new(&mem);
            m.msrs.insert(0x174, 0x11);
            m.msrs.insert(0x175, 0x22);
            m.msrs.insert(0x802, 0x33);
            m.msrs.insert(0x9e, 0x44);
            assert_eq!(store(&mut m, 0x4000, 3), Err(2), "{bad:#x}");
            assert_eq!(m.read_u64(L1Gpa(0x4008)), Ok(0x11), "{bad:#x}");
            assert_eq!(m.read_u64(L1Gpa(0x4028)), Ok(0), "{bad:#x}: entry 3 untouched");
        }
        // The data quadword outside memory: entry 1 fails.
        let mut small = TestL1::new(0xfff8);
        small.write(L1Gpa(0xfff0), &0x174u64.to_le_bytes()).unwrap();
        let mut m = Map::new(&small);
        m.msrs.insert(0x174, 0x11);
        assert_eq!(store(&mut m, 0xfff0, 1), Err(1));
    }

    #[test]
    fn abort_indicators_are_the_sdm_numbers() {
        assert_eq!(VmxAbort::SavingGuestMsrs.indicator(), 1);
        assert_eq!(VmxAbort::LoadingHostMsrs.indicator(), 4);
    }
}
