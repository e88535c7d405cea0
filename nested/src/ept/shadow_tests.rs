//! Unit tests for EPT02 construction, INVEPT and nested VPIDs.

use super::*;
use crate::ept::walk::tests::Builder;
use crate::testutil::l1;

/// EPT02 frames in a Vec, at host addresses from `BASE`.
#[derive(Default)]
pub(crate) struct VecFrames {
    pub tables: Vec<[u64; 512]>,
    pub free_list: Vec<usize>,
    pub limit: Option<usize>,
}

pub(crate) const FRAME_BASE: u64 = 0x1_0000_0000;

impl VecFrames {
    pub(crate) fn live(&self) -> usize {
        self.tables.len() - self.free_list.len()
    }
    fn idx(h: Hpa) -> usize {
        ((h.0 - FRAME_BASE) / 4096) as usize
    }
}

impl HostFrames for VecFrames {
    fn alloc_zeroed(&mut self) -> Option<Hpa> {
        if self.limit.is_some_and(|l| self.live() >= l) {
            return None;
        }
        let i = match self.free_list.pop() {
            Some(i) => {
                self.tables[i] = [0; 512];
                i
            }
            None => {
                self.tables.push([0; 512]);
                self.tables.len() - 1
            }
        };
        Some(Hpa(FRAME_BASE + i as u64 * 4096))
    }
    fn free(&mut self, frame: Hpa) {
        let i = Self::idx(frame);
        assert!(i < self.tables.len(), "free of {frame:?}, never allocated");
        assert!(!self.free_list.contains(&i), "double free of {frame:?}");
        self.free_list.push(i);
    }
    fn read_entry(&self, table: Hpa, index: usize) -> u64 {
        self.tables[Self::idx(table)][index]
    }
    fn write_entry(&mut self, table: Hpa, index: usize, value: u64) {
        self.tables[Self::idx(table)][index] = value;
    }
}

/// L1 memory `[0, size)` at host `hpa_base`, in pages of `page`, all permissions.
pub(crate) struct LinearEpt01 {
    pub size: u64,
    pub hpa_base: u64,
    pub page: PageSize,
    pub perms: u8,
}

impl Ept01 for LinearEpt01 {
    fn translate(&self, gpa: L1Gpa) -> Option<Ept01Leaf> {
        (gpa.0 < self.size).then(|| Ept01Leaf {
            hpa: Hpa(self.hpa_base + gpa.0),
            perms: self.perms,
            size: self.page,
            memtype: 6,
        })
    }
}

fn violation(gpa: u64, access: u64) -> ExitInfo {
    ExitInfo {
        reason: 48,
        qualification: access | 1 << 7,
        guest_physical_address: gpa,
        ..Default::default()
    }
}

fn setup() -> (Builder, LinearEpt01, VecFrames, ShadowEpt) {
    let mut b = Builder::new(0x100_0000, 0x80_0000);
    b.map(0x1000, 0x3000, PageSize::Size4K, 7);
    b.map(0x2000, 0x4000, PageSize::Size4K, 1);
    b.map(0x20_0000, 0x40_0000, PageSize::Size2M, 7);
    b.map(0x4000_0000, 0x0, PageSize::Size1G, 7);
    let ept01 =
        LinearEpt01 { size: 0x100_0000, hpa_base: 0x2000_0000, page: PageSize::Size2M, perms: 7 };
    (b, ept01, VecFrames::default(), ShadowEpt::new())
}

fn leaves(frames: &VecFrames, root: Hpa) -> Vec<(u64, PageSize, u64)> {
    let mut v = Vec::new();
    for_each_leaf(frames, root, |g, s, e| v.push((g, s, e)));
    v
}

#[test]
fn builds_leaf_with_intersected_permissions() {
    let (mut b, mut ept01, mut frames, mut sh) = setup();
    ept01.perms = 5; // L0 maps L1 read+execute
    let caps = l1();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x1234, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::Fixed));
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    let l = leaves(&frames, root);
    assert_eq!(l.len(), 1);
    let (g, s, e) = l[0];
    assert_eq!((g, s), (0x1000, PageSize::Size4K));
    assert_eq!(e & bits::ADDR_MASK, 0x2000_3000);
    assert_eq!(e & 7, 5, "EPT12 RWX ∩ EPT01 R-X");
    assert_eq!(eptp02(root) & 0x3f, 6 | 3 << 3);
    // A write L0 denies is L0's business, not L1's.
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x1234, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::L0Denied(L1Gpa(0x3234))));
}

#[test]
fn large_pages_split_to_the_smaller_level() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    // EPT12 1G page over EPT01 2M pages: EPT02 gets a 2M leaf.
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x4012_3456, 4),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::Fixed));
    // EPT12 2M page over 2M EPT01: a 2M leaf.
    sh.handle_violation(
        b.eptp(),
        &violation(0x21_0000, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    )
    .unwrap();
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    let l = leaves(&frames, root);
    assert!(
        l.contains(&(0x4000_0000, PageSize::Size2M, 0x2000_0000 | 7 | 6 << 3 | bits::LARGE)),
        "{l:x?}"
    );
    assert!(
        l.contains(&(0x20_0000, PageSize::Size2M, 0x2040_0000 | 7 | 6 << 3 | bits::LARGE)),
        "{l:x?}"
    );
    // EPT01 in 4K pages forces 4K leaves.
    let ept01_4k = LinearEpt01 { page: PageSize::Size4K, ..ept01 };
    sh.invalidate_all(&mut frames);
    sh.handle_violation(
        b.eptp(),
        &violation(0x21_5000, 1),
        &mut b.mem,
        &ept01_4k,
        &mut frames,
        &caps,
        36,
        None,
    )
    .unwrap();
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    assert_eq!(leaves(&frames, root), [(0x21_5000, PageSize::Size4K, 0x2041_5000 | 7 | 6 << 3)]);
}

#[test]
fn ept12_faults_are_reflected() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x9000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::ReflectViolation { qualification: 1 | 1 << 7 }));
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x2000, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(
        r,
        Ok(Resolution::ReflectViolation { qualification: 2 | 1 << 3 | 1 << 7 }),
        "read-only in EPT12"
    );
    b.map(0x5000, 0x5000, PageSize::Size4K, 2); // W without R
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x5000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::ReflectMisconfig));
    b.map(0x6000, 0x200_0000, PageSize::Size4K, 7); // beyond L1's memory
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x6000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::L1Unmapped(L1Gpa(0x200_0000))));
    let r = sh.handle_violation(
        0x7000_0000 | 0x1e,
        &violation(0, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    // EPT12's root outside L1's memory reads all ones: a misconfiguration for L1.
    assert_eq!(r, Ok(Resolution::ReflectMisconfig));
}

#[test]
fn invept_frees_and_roots_are_per_eptp() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp_a = b.eptp();
    sh.handle_violation(
        eptp_a,
        &violation(0x1000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    )
    .unwrap();
    // A second EPT12 root (EPTP switching).
    let mut b2 = Builder::new(0, 0x90_0000);
    b2.mem = core::mem::take(&mut b.mem);
    b2.map(0x1000, 0x8000, PageSize::Size4K, 7);
    let eptp_b = b2.eptp();
    sh.handle_violation(
        eptp_b,
        &violation(0x1000, 1),
        &mut b2.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    )
    .unwrap();
    assert_eq!(sh.roots().count(), 2);
    let live = frames.live();
    assert_eq!(live, 8, "two roots with three tables each below… plus roots");
    sh.invalidate(eptp_a, &mut frames);
    assert_eq!(sh.roots().count(), 1);
    assert_eq!(frames.live(), 4);
    sh.invalidate_all(&mut frames);
    assert_eq!(frames.live(), 0);
}

#[test]
fn out_of_frames_is_an_error_and_eviction_frees() {
    let (mut b, ept01, mut frames, _) = setup();
    let caps = l1();
    frames.limit = Some(2);
    let mut sh: ShadowEpt = ShadowEpt::new();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x1000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Err(ShadowError::OutOfFrames));
    frames.limit = None;
    let mut small: ShadowEpt<1> = ShadowEpt::new();
    small.root_for(0x1000, &mut frames).unwrap();
    small.root_for(0x2000, &mut frames).unwrap();
    assert_eq!(small.roots().count(), 1);
}

#[test]
fn vpid_map() {
    let mut m: VpidMap<2> = VpidMap::new(100);
    assert_eq!(m.vpid02(7), (100, true));
    assert_eq!(m.vpid02(7), (100, false));
    assert_eq!(m.vpid02(8), (101, true));
    assert_eq!(m.lookup(8), Some(101));
    assert_eq!(m.vpid02(9), (100, true), "evicts and asks for a flush");
    assert_eq!(m.lookup(7), None);
    assert_eq!(m.assigned().collect::<Vec<_>>(), [100, 101]);
}

/// EPT A/D through EPT02 (finding 14): a read sets the accessed flags of the EPT12 entries
/// used and maps a clean page without write permission; the first write comes back, sets the
/// leaf's dirty flag and maps it writable; the EPT02's EPTP has A/D exactly when EPT12's has.
#[test]
fn accessed_dirty_flags_are_kept_through_ept02() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp = b.eptp() | crate::ept::eptp::AD_ENABLE;
    assert!(crate::ept::eptp_valid(eptp, &caps, 36));
    let walk = |b: &Builder| walk::walk_ept12(&b.mem, eptp, L2Gpa(0x1234), &caps, 36).unwrap();
    let flags = |b: &Builder| -> Vec<u64> {
        walk(b)
            .entries
            .iter()
            .flatten()
            .map(|&a| b.mem.read_u64(a).unwrap() & (bits::ACCESSED | bits::DIRTY))
            .collect()
    };
    assert_eq!(flags(&b), [0, 0, 0, 0], "a fresh EPT12 has no flags");
    let go = |b: &mut Builder, sh: &mut ShadowEpt, frames: &mut VecFrames, access| {
        sh.handle_violation(
            eptp,
            &violation(0x1234, access),
            &mut b.mem,
            &ept01,
            frames,
            &caps,
            36,
            None,
        )
    };
    assert_eq!(go(&mut b, &mut sh, &mut frames, 1), Ok(Resolution::Fixed));
    let a = bits::ACCESSED;
    assert_eq!(flags(&b), [a, a, a, a], "a read: accessed everywhere, not dirty");
    let root = sh.root_for(eptp, &mut frames).unwrap();
    assert_eq!(leaves(&frames, root)[0].2 & 7, 5, "clean: EPT02 maps it without W");
    assert_eq!(eptp02_for(root, eptp) & crate::ept::eptp::AD_ENABLE, crate::ept::eptp::AD_ENABLE);
    assert_eq!(eptp02_for(root, b.eptp()), eptp02(root));
    assert_eq!(go(&mut b, &mut sh, &mut frames, 2), Ok(Resolution::Fixed));
    assert_eq!(flags(&b), [a, a, a, a | bits::DIRTY], "the write set the leaf's dirty flag");
    assert_eq!(leaves(&frames, root)[0].2 & 7, 7, "dirty: writable in EPT02");
    // L1 clears the dirty flag and invalidates: the next write is seen again.
    let leaf_at = walk(&b).entries[3].unwrap();
    let e = b.mem.read_u64(leaf_at).unwrap();
    b.mem.write_u64(leaf_at, e & !bits::DIRTY).unwrap();
    sh.invalidate(eptp, &mut frames);
    assert_eq!(go(&mut b, &mut sh, &mut frames, 1), Ok(Resolution::Fixed));
    assert_eq!(flags(&b)[3], a);
    assert_eq!(go(&mut b, &mut sh, &mut frames, 2), Ok(Resolution::Fixed));
    assert_eq!(flags(&b)[3], a | bits::DIRTY);
    // Without A/D in the EPTP nothing is written and the page is writable at once.
    let (mut b, ept01, mut frames, mut sh) = setup();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x1234, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::Fixed));
    let plain = walk::walk_ept12(&b.mem, b.eptp(), L2Gpa(0x1234), &caps, 36).unwrap();
    for &at in plain.entries.iter().flatten() {
        assert_eq!(b.mem.read_u64(at).unwrap() & (bits::ACCESSED | bits::DIRTY), 0);
    }
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    assert_eq!(leaves(&frames, root)[0].2 & 7, 7);
    // A failed walk (EPT12 denies the write) sets nothing.
    let (mut b, ept01, mut frames, mut sh) = setup();
    let r = sh.handle_violation(
        eptp,
        &violation(0x2000, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert!(matches!(r, Ok(Resolution::ReflectViolation { .. })));
    let ro = walk::walk_ept12(&b.mem, eptp, L2Gpa(0x2000), &caps, 36).unwrap();
    for &at in ro.entries.iter().flatten() {
        assert_eq!(b.mem.read_u64(at).unwrap() & bits::ACCESSED, 0);
    }
}

/// PML for L1 on EPT12's dirty flags: the first write to a clean page logs its L2 page
/// address at the index and decrements it; a write to a page already dirty logs nothing; with
/// the index out of range the write is refused with a PML-full exit and nothing changes.
#[test]
fn pml_logs_each_dirty_transition_and_fills() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp = b.eptp() | crate::ept::eptp::AD_ENABLE;
    const LOG: u64 = 0xa0_0000; // L1's PML page
    let mut index: u16 = 1;
    let mut go = |b: &mut Builder, frames: &mut VecFrames, index: &mut u16, gpa, access| {
        let pml = Some(PmlLog { address: LOG, index });
        sh.handle_violation(
            eptp,
            &violation(gpa, access),
            &mut b.mem,
            &ept01,
            frames,
            &caps,
            36,
            pml,
        )
    };
    assert_eq!(go(&mut b, &mut frames, &mut index, 0x1234, 1), Ok(Resolution::Fixed));
    assert_eq!(index, 1, "a read is not logged");
    assert_eq!(go(&mut b, &mut frames, &mut index, 0x1234, 2), Ok(Resolution::Fixed));
    assert_eq!((index, b.mem.read_u64(L1Gpa(LOG + 8)).unwrap()), (0, 0x1000));
    assert_eq!(go(&mut b, &mut frames, &mut index, 0x1ff8, 2), Ok(Resolution::Fixed));
    assert_eq!(index, 0, "already dirty: nothing to log");
    assert_eq!(go(&mut b, &mut frames, &mut index, 0x20_1000, 2), Ok(Resolution::Fixed));
    // A 2-MiB page: the 4-KiB page written is logged (bits 11:0 clear).
    assert_eq!((index, b.mem.read_u64(L1Gpa(LOG)).unwrap()), (0xffff, 0x20_1000));
    // Full: the next dirtying write exits to L1 and neither logs nor sets the flag.
    assert_eq!(go(&mut b, &mut frames, &mut index, 0x4000_5000, 2), Ok(Resolution::PmlFull));
    assert_eq!(index, 0xffff);
    let leaf = walk::walk_ept12(&b.mem, eptp, L2Gpa(0x4000_5000), &caps, 36).unwrap();
    assert!(!leaf.dirty);
}

/// vmcs02's EPTP for an EPT02 root: the root's address, write-back, a 4-level walk (SDM
/// 25.6.11: memory type in bits 2:0, walk length minus 1 in bits 5:3), A/D as EPT12 has it.
#[test]
fn eptp02_is_the_root_write_back_4_level() {
    let root = Hpa(0x1234_5000);
    assert_eq!(eptp02(root), 0x1234_5000 | 6 | 3 << 3);
    assert_eq!(eptp02_for(root, 0x9000 | 6 | 3 << 3), 0x1234_501e);
    let ad = crate::ept::eptp::AD_ENABLE;
    assert_eq!(eptp02_for(root, 0x9000 | 6 | 3 << 3 | ad), 0x1234_501e | ad);
}

/// With every slot taken, the EPT02 built longest ago is evicted (and its tables freed).
#[test]
fn root_eviction_is_least_recently_built_first() {
    let mut frames = VecFrames::default();
    let mut sh: ShadowEpt<2> = ShadowEpt::new();
    let mut built = |sh: &mut ShadowEpt<2>, a: u64| {
        sh.root_for(a, &mut frames).unwrap();
        let mut r: Vec<u64> = sh.roots().map(|(a, _)| a).collect();
        r.sort();
        (r, frames.live())
    };
    assert_eq!(built(&mut sh, 0x1000), (vec![0x1000], 1));
    assert_eq!(built(&mut sh, 0x2000), (vec![0x1000, 0x2000], 2));
    assert_eq!(built(&mut sh, 0x3000), (vec![0x2000, 0x3000], 2));
    assert_eq!(built(&mut sh, 0x4000), (vec![0x3000, 0x4000], 2));
    assert_eq!(built(&mut sh, 0x5000), (vec![0x4000, 0x5000], 2));
}

/// An EPT01 whose pages are not aligned in host memory (the `Ept01` contract broken, as a
/// block list with an odd host base could): EPT02 must not map a large page from there, or
/// L2 would reach host memory past L1's. The access goes to L0 as one at an unmapped
/// address instead.
#[test]
fn misaligned_ept01_large_page_is_not_mapped() {
    let (mut b, mut ept01, mut frames, mut sh) = setup();
    ept01.hpa_base = 0x2000_1000;
    let caps = l1();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x21_0000, 1),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::L1Unmapped(L1Gpa(0x40_0000))));
    assert!(sh.roots().all(|(_, root)| leaves(&frames, root).is_empty()));
}

/// PML index 511 is the first entry (SDM 29.3.6: the index counts down from 511); 512 is out
/// of range like 0xFFFF.
#[test]
fn pml_index_511_logs_and_512_is_full() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp = b.eptp() | crate::ept::eptp::AD_ENABLE;
    const LOG: u64 = 0xa0_0000;
    let mut index: u16 = 512;
    let r = sh.handle_violation(
        eptp,
        &violation(0x1234, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        Some(PmlLog { address: LOG, index: &mut index }),
    );
    assert_eq!((r, index), (Ok(Resolution::PmlFull), 512));
    index = 511;
    let r = sh.handle_violation(
        eptp,
        &violation(0x1234, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        Some(PmlLog { address: LOG, index: &mut index }),
    );
    assert_eq!((r, index), (Ok(Resolution::Fixed), 510));
    assert_eq!(b.mem.read_u64(L1Gpa(LOG + 511 * 8)), Ok(0x1000));
}

/// INVEPT single-context drops the EPT02s of that EPT12 root only, with A/D enabled or not
/// (SDM 29.4.3.1: "the EPTP's address", bits N-1:12); `roots` reports the address alone.
#[test]
fn single_context_invept_drops_only_its_root() {
    let mut frames = VecFrames::default();
    let mut sh: ShadowEpt = ShadowEpt::new();
    let ad = crate::ept::eptp::AD_ENABLE;
    let wb4 = 6 | 3 << 3;
    sh.root_for(0x1000 | wb4, &mut frames).unwrap();
    sh.root_for(0x1000 | wb4 | ad, &mut frames).unwrap();
    sh.root_for(0x2000 | wb4 | ad, &mut frames).unwrap();
    let mut addrs: Vec<u64> = sh.roots().map(|(a, _)| a).collect();
    addrs.sort();
    assert_eq!(addrs, [0x1000, 0x1000, 0x2000]);
    sh.invalidate(0x1000 | wb4, &mut frames);
    assert_eq!(sh.roots().map(|(a, _)| a).collect::<Vec<_>>(), [0x2000]);
    assert_eq!(frames.live(), 1);
}

/// L1 remaps with a 2-MiB EPT12 page a region EPT02 holds 4-KiB leaves for (before its
/// INVEPT: until then a stale EPT02 is allowed, SDM 29.4.3.1): the next fill there installs
/// the 2-MiB leaf and frees the level-1 table it replaces; a 2-MiB leaf replacing a 2-MiB
/// leaf frees nothing.
#[test]
fn a_large_leaf_replaces_a_stale_table_and_frees_it() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp = b.eptp();
    let mut fill = |b: &mut Builder, frames: &mut VecFrames, gpa| {
        let r = sh.handle_violation(
            eptp,
            &violation(gpa, 1),
            &mut b.mem,
            &ept01,
            frames,
            &caps,
            36,
            None,
        );
        assert_eq!(r, Ok(Resolution::Fixed));
        let root = sh.root_for(eptp, frames).unwrap();
        leaves(frames, root)
    };
    assert_eq!(fill(&mut b, &mut frames, 0x1234).len(), 1);
    assert_eq!(frames.live(), 4, "root, levels 3, 2 and 1");
    b.map(0, 0x60_0000, PageSize::Size2M, 7);
    let large = [(0, PageSize::Size2M, 0x2060_0000 | 7 | 6 << 3 | bits::LARGE)];
    assert_eq!(fill(&mut b, &mut frames, 0x5678), large);
    assert_eq!(frames.live(), 3, "the level-1 table is freed");
    b.map(0, 0x80_0000, PageSize::Size2M, 7);
    let large = [(0, PageSize::Size2M, 0x2080_0000 | 7 | 6 << 3 | bits::LARGE)];
    assert_eq!(fill(&mut b, &mut frames, 0x1_0000), large);
    assert_eq!(frames.live(), 3);
}

/// With EPT01 in 1-GiB pages too, an EPT12 1-GiB page becomes a 1-GiB EPT02 leaf, which
/// `for_each_leaf` reports as one.
#[test]
fn one_gib_leaves() {
    let (mut b, mut ept01, mut frames, mut sh) = setup();
    ept01.page = PageSize::Size1G;
    ept01.hpa_base = 0x4000_0000;
    let caps = l1();
    let r = sh.handle_violation(
        b.eptp(),
        &violation(0x4012_3456, 4),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::Fixed));
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    let leaf = (0x4000_0000, PageSize::Size1G, 0x4000_0000 | 7 | 6 << 3 | bits::LARGE);
    assert_eq!(leaves(&frames, root), [leaf]);
}

/// With every vpid02 taken, the one assigned longest ago is reassigned next, in turn.
#[test]
fn vpid_eviction_takes_turns() {
    let mut m: VpidMap<2> = VpidMap::new(100);
    assert_eq!(m.vpid02(7), (100, true));
    assert_eq!(m.vpid02(8), (101, true));
    assert_eq!(m.vpid02(9), (100, true));
    assert_eq!(m.vpid02(10), (101, true));
    assert_eq!(m.vpid02(11), (100, true));
    assert_eq!((m.lookup(10), m.lookup(11), m.lookup(9)), (Some(101), Some(100), None));
}

/// L1 clears EPT12 flags without INVEPT (kvm-unit-tests' PML test does): at the next entry
/// to L2, `recheck` drops the EPT02 leaf of each watched page whose EPT12 leaf changed, so
/// L2's next write faults, sets the dirty flag and is logged again; a page L1 left alone
/// keeps its leaf, and without A/D in the EPTP nothing is watched.
#[test]
fn recheck_drops_leaves_whose_ept12_flags_l1_cleared() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    let eptp = b.eptp() | crate::ept::eptp::AD_ENABLE;
    const LOG: u64 = 0xa0_0000;
    let mut index: u16 = 511;
    let go = |sh: &mut ShadowEpt, b: &mut Builder, frames: &mut VecFrames, i: &mut u16, gpa| {
        let pml = Some(PmlLog { address: LOG, index: i });
        sh.handle_violation(eptp, &violation(gpa, 2), &mut b.mem, &ept01, frames, &caps, 36, pml)
    };
    assert_eq!(go(&mut sh, &mut b, &mut frames, &mut index, 0x1234), Ok(Resolution::Fixed));
    assert_eq!(go(&mut sh, &mut b, &mut frames, &mut index, 0x20_1000), Ok(Resolution::Fixed));
    assert_eq!(index, 509);
    let root = sh.root_for(eptp, &mut frames).unwrap();
    assert!(!sh.recheck(eptp, &b.mem, &mut frames), "nothing changed: nothing dropped");
    assert_eq!(leaves(&frames, root).len(), 2);
    // The processor sets EPT02's own flags as L2 runs: that is no change of L1's.
    for (gpa, size, _) in leaves(&frames, root) {
        let (table, index) = leaf_slot(&frames, root, gpa, size).unwrap();
        let e = frames.read_entry(table, index);
        frames.write_entry(table, index, e | bits::ACCESSED | bits::DIRTY);
    }
    assert!(!sh.recheck(eptp, &b.mem, &mut frames), "EPT02's flags are not L1's");
    // L1 clears the 4-KiB page's accessed and dirty flags, no INVEPT.
    let leaf_at =
        walk::walk_ept12(&b.mem, eptp, L2Gpa(0x1234), &caps, 36).unwrap().entries[3].unwrap();
    let e = b.mem.read_u64(leaf_at).unwrap();
    b.mem.write_u64(leaf_at, e & !(bits::ACCESSED | bits::DIRTY)).unwrap();
    assert_eq!(sh.watching, 2);
    assert!(sh.recheck(eptp, &b.mem, &mut frames), "the cleared page's leaf goes");
    assert_eq!(sh.watching, 1, "and its watch with it");
    let l = leaves(&frames, root);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].0, 0x20_0000, "the 2-MiB page L1 left alone stays");
    assert!(!sh.recheck(eptp, &b.mem, &mut frames), "once is enough");
    // L2 writes again: the flags are set again and the page is logged again.
    assert_eq!(go(&mut sh, &mut b, &mut frames, &mut index, 0x1234), Ok(Resolution::Fixed));
    assert_eq!((index, b.mem.read_u64(L1Gpa(LOG + 509 * 8)).unwrap()), (508, 0x1000));
    assert_eq!(sh.watching, 2, "watched again, once");
    assert_eq!(go(&mut sh, &mut b, &mut frames, &mut index, 0x20_1000), Ok(Resolution::Fixed));
    assert_eq!(sh.watching, 2, "a refill replaces its page's watch");
    assert_eq!(b.mem.read_u64(leaf_at).unwrap() & (bits::ACCESSED | bits::DIRTY), 0x300);
    // Only the dirty flag cleared: the same.
    let e = b.mem.read_u64(leaf_at).unwrap();
    b.mem.write_u64(leaf_at, e & !bits::DIRTY).unwrap();
    assert!(sh.recheck(eptp, &b.mem, &mut frames));
    // An EPT02 the entry does not use is not touched, and INVEPT forgets the watches.
    let other = b.eptp() | crate::ept::eptp::AD_ENABLE | 0x1000_0000;
    assert!(!sh.recheck(other, &b.mem, &mut frames));
    assert_eq!(go(&mut sh, &mut b, &mut frames, &mut index, 0x1234), Ok(Resolution::Fixed));
    sh.invalidate(eptp, &mut frames);
    assert_eq!(sh.watching, 0, "INVEPT forgets its EPT02's watches");
    assert!(sh.watched.iter().all(Option::is_none));
    b.mem.write_u64(leaf_at, 0).unwrap();
    assert!(!sh.recheck(eptp, &b.mem, &mut frames));
    // Without A/D flags nothing is watched.
    let (mut b, ept01, mut frames, mut sh) = setup();
    let plain = b.eptp();
    let r = sh.handle_violation(
        plain,
        &violation(0x1234, 2),
        &mut b.mem,
        &ept01,
        &mut frames,
        &caps,
        36,
        None,
    );
    assert_eq!(r, Ok(Resolution::Fixed));
    let leaf_at =
        walk::walk_ept12(&b.mem, plain, L2Gpa(0x1234), &caps, 36).unwrap().entries[3].unwrap();
    b.mem.write_u64(leaf_at, 0).unwrap();
    assert!(!sh.recheck(plain, &b.mem, &mut frames));
}

/// Only the last `WATCHED` fills are watched: an older page keeps its cached leaf (SDM
/// 29.4.3.1 allows it), the newest are re-checked.
#[test]
fn recheck_watches_the_last_fills() {
    let mut b = Builder::new(0x100_0000, 0x80_0000);
    let n = WATCHED as u64 + 2;
    for i in 0..n {
        b.map(0x1000 * (i + 1), 0x10_0000 + 0x1000 * i, PageSize::Size4K, 7);
    }
    let ept01 =
        LinearEpt01 { size: 0x100_0000, hpa_base: 0x2000_0000, page: PageSize::Size2M, perms: 7 };
    let (mut frames, mut sh) = (VecFrames::default(), ShadowEpt::<8>::new());
    let caps = l1();
    let eptp = b.eptp() | crate::ept::eptp::AD_ENABLE;
    for i in 0..n {
        let exit = violation(0x1000 * (i + 1), 2);
        let r = sh.handle_violation(eptp, &exit, &mut b.mem, &ept01, &mut frames, &caps, 36, None);
        assert_eq!(r, Ok(Resolution::Fixed));
    }
    for i in 0..n {
        let gpa = L2Gpa(0x1000 * (i + 1));
        let at = walk::walk_ept12(&b.mem, eptp, gpa, &caps, 36).unwrap().entries[3].unwrap();
        let e = b.mem.read_u64(at).unwrap();
        b.mem.write_u64(at, e & !bits::DIRTY).unwrap();
    }
    assert!(sh.recheck(eptp, &b.mem, &mut frames));
    let root = sh.root_for(eptp, &mut frames).unwrap();
    let kept: Vec<u64> = leaves(&frames, root).iter().map(|l| l.0).collect();
    assert_eq!(kept, [0x1000, 0x2000], "the two oldest fills are no longer watched");
}

/// `leaf_slot` finds a 4-KiB leaf's table only through present, non-large entries: above a
/// 2-MiB leaf, or where nothing is mapped, there is no such slot (the re-check then leaves
/// EPT02 alone).
#[test]
fn leaf_slot_stops_at_large_and_missing_entries() {
    let (mut b, ept01, mut frames, mut sh) = setup();
    let caps = l1();
    for gpa in [0x1234, 0x20_1000] {
        let exit = violation(gpa, 1);
        let r =
            sh.handle_violation(b.eptp(), &exit, &mut b.mem, &ept01, &mut frames, &caps, 36, None);
        assert_eq!(r, Ok(Resolution::Fixed));
    }
    let root = sh.root_for(b.eptp(), &mut frames).unwrap();
    let (table, index) = leaf_slot(&frames, root, 0x1000, PageSize::Size4K).unwrap();
    assert_eq!(frames.read_entry(table, index) & bits::ADDR_MASK, 0x2000_3000);
    assert_eq!(leaf_slot(&frames, root, 0x20_1000, PageSize::Size4K), None, "a 2-MiB leaf above");
    assert!(leaf_slot(&frames, root, 0x20_0000, PageSize::Size2M).is_some());
    assert_eq!(leaf_slot(&frames, root, 0x8000_0000, PageSize::Size4K), None, "nothing mapped");
}
