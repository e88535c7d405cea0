//! EPT12 walks (SDM Vol. 3C 29.3.2 translation, 29.3.3.1 misconfigurations, 29.3.3.2
//! violations, 28.2.1 Table 28-7 violation qualification).
//!
//! EPT12 lives in L1 memory and is entirely L1-controlled: every entry is validated as the
//! processor would, and a table outside L1's memory is an error value, never a panic.

use crate::addr::{L1Gpa, L2Gpa, fits_phys_width};
use crate::caps::{VmxCaps, ept_vpid};
use crate::guest::GuestMemory;

/// EPT entry bits (SDM Tables 29-1 to 29-6).
pub mod bits {
    pub const READ: u64 = 1 << 0;
    pub const WRITE: u64 = 1 << 1;
    pub const EXEC: u64 = 1 << 2;
    pub const RWX: u64 = READ | WRITE | EXEC;
    /// Bits 5:3 of a leaf: memory type.
    pub const MEMTYPE_SHIFT: u32 = 3;
    pub const MEMTYPE_MASK: u64 = 7 << 3;
    /// Bit 6 of a leaf: ignore PAT memory type.
    pub const IPAT: u64 = 1 << 6;
    /// Bit 7 of a PDPTE/PDE: maps a 1-GiB/2-MiB page.
    pub const LARGE: u64 = 1 << 7;
    /// Bit 8: accessed (with EPTP bit 6, SDM 29.3.5).
    pub const ACCESSED: u64 = 1 << 8;
    /// Bit 9 of a leaf: dirty (with EPTP bit 6).
    pub const DIRTY: u64 = 1 << 9;
    /// Bits 51:12: physical address.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}

/// Size of the page a leaf maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PageSize {
    Size4K,
    Size2M,
    Size1G,
}

impl PageSize {
    /// Bytes.
    pub const fn bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// Paging-structure level of the leaf (1 = PT, 2 = PD, 3 = PDPT).
    pub const fn level(self) -> u32 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }
}

/// A successful EPT12 translation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept12Leaf {
    /// The L1 guest-physical address `gpa` translates to.
    pub l1gpa: L1Gpa,
    /// Logical AND of bits 2:0 over every entry walked (R = 1, W = 2, X = 4).
    pub perms: u8,
    pub size: PageSize,
    /// Leaf memory type (0, 1, 4, 5 or 6).
    pub memtype: u8,
    pub ipat: bool,
    /// The leaf's dirty flag (meaningful when EPT12 has A/D enabled).
    pub dirty: bool,
    /// L1-physical addresses of the entries the walk used, root first (the leaf is the last
    /// `Some`): where [`set_accessed_dirty`] sets the flags.
    pub entries: [Option<L1Gpa>; 4],
}

impl Ept12Leaf {
    /// True if every access in `access` (R = 1, W = 2, X = 4) is permitted.
    pub const fn allows(&self, access: u8) -> bool {
        self.perms & access == access
    }
}

/// Why an EPT12 walk stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ept12Fault {
    /// Not present at some level: EPT violation with these permissions in qualification
    /// bits 5:3 (the AND includes the not-present entry, so it is 0).
    NotPresent { perms: u8 },
    /// An entry is misconfigured (SDM 29.3.3.1): EPT misconfiguration exit.
    Misconfig,
    /// An EPT12 paging structure is not in L1 memory.
    Unreadable(L1Gpa),
}

/// Is the entry at `level` (4 = PML4 … 1 = PT) misconfigured? (SDM 29.3.3.1)
pub fn misconfigured(entry: u64, level: u32, caps: &VmxCaps, maxphyaddr: u8) -> bool {
    let rwx = entry & bits::RWX;
    if rwx & bits::WRITE != 0 && rwx & bits::READ == 0 {
        return true; // write without read
    }
    if rwx == bits::EXEC && !caps.ept_vpid_has(ept_vpid::EXECUTE_ONLY) {
        return true;
    }
    if !fits_phys_width(entry & bits::ADDR_MASK, maxphyaddr) {
        return true;
    }
    let large = entry & bits::LARGE != 0;
    let leaf = level == 1 || large;
    let reserved = match (level, large) {
        (4, _) => 0xf8, // PML4E bits 7:3
        (3, true) => {
            if !caps.ept_vpid_has(ept_vpid::PAGE_1G) {
                return true;
            }
            0x3fff_f000 // 1-GiB page bits 29:12
        }
        (2, true) => {
            if !caps.ept_vpid_has(ept_vpid::PAGE_2M) {
                return true;
            }
            0x001f_f000 // 2-MiB page bits 20:12
        }
        (_, false) if level > 1 => 0xf8, // non-leaf PDPTE/PDE bits 7:3
        _ => 0,
    };
    if entry & reserved != 0 {
        return true;
    }
    leaf && matches!((entry & bits::MEMTYPE_MASK) >> bits::MEMTYPE_SHIFT, 2 | 3 | 7)
}

/// Walks EPT12 (rooted by `eptp12`, a valid EPTP) for `gpa`.
pub fn walk_ept12(
    mem: &impl GuestMemory,
    eptp12: u64,
    gpa: L2Gpa,
    caps: &VmxCaps,
    maxphyaddr: u8,
) -> Result<Ept12Leaf, Ept12Fault> {
    let mut table = eptp12 & bits::ADDR_MASK;
    let mut perms = 7u8;
    let mut entries = [None; 4];
    for level in (1..=4u32).rev() {
        let index = (gpa.0 >> (12 + 9 * (level - 1))) & 0x1ff;
        let at = L1Gpa(table + index * 8);
        let entry = mem.read_u64(at).map_err(|_| Ept12Fault::Unreadable(at))?;
        if let Some(slot) = entries.get_mut(4 - level as usize) {
            *slot = Some(at);
        }
        if entry & bits::RWX == 0 {
            return Err(Ept12Fault::NotPresent { perms: 0 });
        }
        if misconfigured(entry, level, caps, maxphyaddr) {
            return Err(Ept12Fault::Misconfig);
        }
        perms &= (entry & bits::RWX) as u8;
        let size = match level {
            3 if entry & bits::LARGE != 0 => Some(PageSize::Size1G),
            2 if entry & bits::LARGE != 0 => Some(PageSize::Size2M),
            1 => Some(PageSize::Size4K),
            _ => None,
        };
        if let Some(size) = size {
            let offset = gpa.0 & (size.bytes() - 1);
            let base = entry & bits::ADDR_MASK & !(size.bytes() - 1);
            return Ok(Ept12Leaf {
                l1gpa: L1Gpa(base | offset),
                perms,
                size,
                memtype: ((entry & bits::MEMTYPE_MASK) >> bits::MEMTYPE_SHIFT) as u8,
                ipat: entry & bits::IPAT != 0,
                dirty: entry & bits::DIRTY != 0,
                entries,
            });
        }
        table = entry & bits::ADDR_MASK;
    }
    Err(Ept12Fault::Misconfig) // unreachable: level 1 always returns
}

/// Sets the accessed flag of every EPT12 entry `leaf`'s walk used and, for a write, the
/// leaf's dirty flag, as the processor does when EPTP bit 6 is set and the translation
/// succeeds (SDM Vol. 3C 29.3.5). An entry already flagged is not rewritten. Returns true
/// if the dirty flag went from 0 to 1 (the event page-modification logging records).
pub fn set_accessed_dirty(
    mem: &mut impl GuestMemory,
    leaf: &Ept12Leaf,
    write: bool,
) -> Result<bool, crate::guest::MemError> {
    let used = leaf.entries.iter().flatten().count();
    let mut newly_dirty = false;
    for (i, &at) in leaf.entries.iter().flatten().enumerate() {
        let entry = mem.read_u64(at)?;
        let mut set = bits::ACCESSED;
        if write && i + 1 == used {
            set |= bits::DIRTY;
            newly_dirty = entry & bits::DIRTY == 0;
        }
        if entry & set != set {
            mem.write_u64(at, entry | set)?;
        }
    }
    Ok(newly_dirty)
}

/// The exit qualification of the EPT violation L1 sees (SDM Table 28-7): access bits 2:0
/// and the guest-linear bits 7, 8 and NMI unblocking (bit 12) from the hardware's
/// qualification for the EPT02 violation, EPT12's permissions in bits 5:3.
pub const fn violation_qualification(hw_qualification: u64, perms12: u8) -> u64 {
    (hw_qualification & (0x7 | 1 << 7 | 1 << 8 | 1 << 12)) | ((perms12 as u64 & 7) << 3)
}

/// Access bits (R = 1, W = 2, X = 4) of an EPT-violation qualification.
pub const fn access_of(qualification: u64) -> u8 {
    (qualification & 7) as u8
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::guest::VecMemory;
    use crate::testutil::l1;

    /// Builds EPT tables in a VecMemory from a bump allocator at `next`.
    pub(crate) struct Builder {
        pub mem: VecMemory,
        pub root: u64,
        next: u64,
    }

    impl Builder {
        pub(crate) fn new(size: usize, first_table: u64) -> Self {
            Builder { mem: VecMemory::new(size), root: first_table, next: first_table + 0x1000 }
        }

        /// Maps `gpa` → `target` with a leaf at `size`, permissions `rwx`, memtype WB.
        pub(crate) fn map(&mut self, gpa: u64, target: u64, size: PageSize, rwx: u64) {
            let mut table = self.root;
            for level in (size.level() + 1..=4).rev() {
                let at = table + ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) * 8;
                let e = self.mem.read_u64(L1Gpa(at)).unwrap();
                if e & 7 == 0 {
                    let t = self.next;
                    self.next += 0x1000;
                    self.mem.write_u64(L1Gpa(at), t | 7).unwrap();
                    table = t;
                } else {
                    table = e & bits::ADDR_MASK;
                }
            }
            let at = table + ((gpa >> (12 + 9 * (size.level() - 1))) & 0x1ff) * 8;
            let large = if size == PageSize::Size4K { 0 } else { bits::LARGE };
            self.mem.write_u64(L1Gpa(at), target | rwx | 6 << 3 | large).unwrap();
        }

        pub(crate) fn eptp(&self) -> u64 {
            self.root | 6 | 3 << 3
        }
    }

    #[test]
    fn translates_4k_2m_1g() {
        let mut b = Builder::new(0x40_0000, 0x10_0000);
        b.map(0x1000, 0x20_0000, PageSize::Size4K, 7);
        b.map(0x40_0000, 0x60_0000, PageSize::Size2M, 3);
        b.map(0x4000_0000, 0x8000_0000, PageSize::Size1G, 5);
        let caps = l1();
        let w = |g| walk_ept12(&b.mem, b.eptp(), L2Gpa(g), &caps, 36);
        let t = w(0x1abc).unwrap();
        assert_eq!(
            (t.l1gpa, t.perms, t.size, t.memtype),
            (L1Gpa(0x20_0abc), 7, PageSize::Size4K, 6)
        );
        let t = w(0x45_6789).unwrap();
        assert_eq!((t.l1gpa, t.perms, t.size), (L1Gpa(0x65_6789), 3, PageSize::Size2M));
        assert!(t.allows(1) && t.allows(2) && !t.allows(4));
        let t = w(0x4123_4567).unwrap();
        assert_eq!((t.l1gpa, t.size), (L1Gpa(0x8123_4567), PageSize::Size1G));
        assert_eq!(w(0x2000), Err(Ept12Fault::NotPresent { perms: 0 }));
        assert!(matches!(w(0x80_0000_0000), Err(Ept12Fault::NotPresent { .. })));
    }

    #[test]
    fn misconfigurations() {
        let caps = l1();
        let m = |e, level| misconfigured(e, level, &caps, 36);
        assert!(m(0x1000 | 2, 4), "W without R");
        assert!(!m(0x1000 | 3, 4));
        assert!(!m(0x1000 | 4, 4), "execute-only offered by the recorded Skylake");
        let mut no_xo = caps;
        no_xo.ept_vpid &= !ept_vpid::EXECUTE_ONLY;
        assert!(misconfigured(0x1000 | 4, 4, &no_xo, 36));
        assert!(m(0x1000 | 7 | 1 << 3, 4), "PML4E reserved bit 3");
        assert!(m(1 << 40 | 7, 3), "beyond MAXPHYADDR");
        assert!(m(0x4000_0000 | 7 | 6 << 3 | bits::LARGE | 1 << 12, 3), "1G reserved bits");
        assert!(m(0x20_0000 | 7 | 6 << 3 | bits::LARGE | 1 << 13, 2), "2M reserved bits");
        assert!(m(0x1000 | 7 | 2 << 3, 1), "memory type 2");
        assert!(m(0x1000 | 7 | 7 << 3, 1), "memory type 7");
        assert!(!m(0x1000 | 7, 1), "UC leaf (memory type 0)");
        let mut no_1g = caps;
        no_1g.ept_vpid &= !ept_vpid::PAGE_1G;
        assert!(misconfigured(0x4000_0000 | 7 | 6 << 3 | bits::LARGE, 3, &no_1g, 36));
    }

    #[test]
    fn walk_reports_misconfig_and_unreadable() {
        let mut b = Builder::new(0x20_0000, 0x10_0000);
        b.map(0x1000, 0x5000, PageSize::Size4K, 7);
        let caps = l1();
        // Corrupt the leaf: memory type 3.
        let leaf = b.mem.bytes.len() as u64; // any unreadable table address
        let pt = 0x10_3000 + 8;
        b.mem.write_u64(L1Gpa(pt), 0x5000 | 7 | 3 << 3).unwrap();
        assert_eq!(
            walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &caps, 36),
            Err(Ept12Fault::Misconfig)
        );
        let bad_root = leaf | 6 | 3 << 3;
        assert!(matches!(
            walk_ept12(&b.mem, bad_root, L2Gpa(0), &caps, 36),
            Err(Ept12Fault::Unreadable(_))
        ));
    }

    #[test]
    fn permissions_are_anded_across_levels() {
        let mut b = Builder::new(0x20_0000, 0x10_0000);
        b.map(0x1000, 0x5000, PageSize::Size4K, 7);
        // Make the PDPTE read-only.
        let pml4e = b.mem.read_u64(L1Gpa(0x10_0000)).unwrap();
        let pdpt = pml4e & bits::ADDR_MASK;
        let e = b.mem.read_u64(L1Gpa(pdpt)).unwrap();
        b.mem.write_u64(L1Gpa(pdpt), e & !6).unwrap();
        let t = walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &l1(), 36).unwrap();
        assert_eq!(t.perms, 1);
        assert_eq!(violation_qualification(2 | 1 << 7 | 1 << 20, t.perms), 2 | 1 << 3 | 1 << 7);
    }
}

#[cfg(test)]
mod sdm_bits_tests {
    //! The tests above build entries with the `bits` constants; these spell the SDM's bit
    //! positions out (Tables 29-1 to 29-6), so a wrong constant cannot agree with itself.
    use super::tests::Builder;
    use super::*;
    use crate::guest::VecMemory;
    use crate::testutil::l1;

    /// Leaf bit 6 is "ignore PAT", bit 9 dirty (SDM Table 29-6); a walk with EPT A/D sets
    /// bit 8 (accessed) of every entry it used, and bit 9 of the leaf only for a write (SDM
    /// 29.3.5).
    #[test]
    fn ipat_accessed_and_dirty_are_bits_6_8_and_9() {
        let mut b = Builder::new(0x20_0000, 0x10_0000);
        b.map(0x1000, 0x5000, PageSize::Size4K, 7);
        let caps = l1();
        let leaf_at = L1Gpa(0x10_3000 + 8);
        b.mem.write_u64(leaf_at, 0x5000 | 7 | 6 << 3 | 1 << 6).unwrap();
        let t = walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &caps, 36).unwrap();
        assert!(t.ipat && !t.dirty);
        assert_eq!(t.entries.iter().flatten().count(), 4);
        assert_eq!(set_accessed_dirty(&mut b.mem, &t, false), Ok(false));
        let read = |m: &VecMemory, at| m.read_u64(at).unwrap();
        for &at in t.entries.iter().flatten() {
            assert_eq!(read(&b.mem, at) & (1 << 8 | 1 << 9), 1 << 8, "a read: accessed only");
        }
        assert_eq!(set_accessed_dirty(&mut b.mem, &t, true), Ok(true));
        assert_eq!(read(&b.mem, leaf_at), 0x5000 | 7 | 6 << 3 | 1 << 6 | 1 << 8 | 1 << 9);
        let t = walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &caps, 36).unwrap();
        assert!(t.ipat && t.dirty);
        assert_eq!(set_accessed_dirty(&mut b.mem, &t, true), Ok(false), "already dirty");
        b.mem.write_u64(leaf_at, 0x5000 | 7 | 6 << 3).unwrap();
        let t = walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &caps, 36).unwrap();
        assert!(!t.ipat && !t.dirty);
    }

    /// Bits 7:3 are reserved in a PML4E (bit 7 included: there are no 512-GiB pages) and in
    /// a PDPTE or PDE that references a table (SDM 29.3.3.1; Tables 29-2, 29-3, 29-5).
    #[test]
    fn bits_7_to_3_reserved_in_pml4es_and_non_leaf_entries() {
        let caps = l1();
        let m = |e, level| misconfigured(e, level, &caps, 36);
        assert!(m(0x1000 | 7 | 1 << 7, 4), "PML4E bit 7");
        for level in [3, 2] {
            assert!(!m(0x1000 | 7, level));
            for bit in 3..=6 {
                assert!(m(0x1000 | 7 | 1 << bit, level), "level {level} bit {bit}");
            }
        }
        assert!(!m(0x1000 | 7 | 6 << 3 | 1 << 6, 1), "a PTE's bits 6:3 are its type and IPAT");
    }
}

#[cfg(test)]
mod flag_write_tests {
    use super::tests::Builder;
    use super::*;
    use crate::guest::{MemError, VecMemory};
    use crate::testutil::l1;

    /// Counts the writes to L1 memory.
    struct Counting {
        mem: VecMemory,
        writes: usize,
    }

    impl GuestMemory for Counting {
        fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
            self.mem.read(gpa, buf)
        }
        fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
            self.writes += 1;
            self.mem.write(gpa, data)
        }
    }

    /// The processor sets a flag only where it is 0 (SDM 29.3.5: "sets the accessed flag
    /// ... if it is not already set"): an entry already flagged is not written again, so an
    /// L1 clearing flags on another CPU meanwhile does not see them come back.
    #[test]
    fn flags_already_set_are_not_rewritten() {
        let mut b = Builder::new(0x20_0000, 0x10_0000);
        b.map(0x1000, 0x5000, PageSize::Size4K, 7);
        let caps = l1();
        let t = walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1000), &caps, 36).unwrap();
        let mut m = Counting { mem: b.mem, writes: 0 };
        assert_eq!(set_accessed_dirty(&mut m, &t, false), Ok(false));
        assert_eq!(m.writes, 4, "four entries got their accessed flag");
        assert_eq!(set_accessed_dirty(&mut m, &t, false), Ok(false));
        assert_eq!(m.writes, 4, "all accessed already");
        assert_eq!(set_accessed_dirty(&mut m, &t, true), Ok(true));
        assert_eq!(m.writes, 5, "only the leaf's dirty flag");
        assert_eq!(set_accessed_dirty(&mut m, &t, true), Ok(false));
        assert_eq!(m.writes, 5);
    }

    /// Table 28-7: bits 2:0 (the access), 7, 8 (guest-linear address valid, translation)
    /// and 12 (NMI unblocking due to IRET) come from the EPT02 violation, bits 5:3 are
    /// EPT12's permissions, everything else is 0.
    #[test]
    fn violation_qualification_keeps_bits_2_to_0_7_8_and_12() {
        assert_eq!(violation_qualification(!0, 5), 0x7 | 5 << 3 | 1 << 7 | 1 << 8 | 1 << 12);
        assert_eq!(violation_qualification(1 << 8, 0), 1 << 8);
        assert_eq!(violation_qualification(1 << 12 | 0x38, 0), 1 << 12);
        assert_eq!(access_of(!0), 7);
    }
}
