//! EPT02: the shadow of EPT12 composed with EPT01, built on demand (Turtles §4.1.2
//! "multi-dimensional paging"; SDM Vol. 3C 29.3 EPT, 29.4.3 INVEPT; 29.1 VPIDs).
//!
//! On an EPT violation while L2 runs (vmcs02's EPTP points at an EPT02), L0 calls
//! [`ShadowEpt::handle_violation`]: it walks EPT12 (L2Gpa → L1Gpa), asks EPT01 (L1Gpa → Hpa)
//! and installs one EPT02 leaf whose permissions are the intersection of both and whose size
//! is the smaller of the two pages (a large page is split where the levels disagree). A fault
//! in EPT12 becomes the EPT violation or misconfiguration L1 expects. INVEPT drops EPT02s;
//! EPTP switching picks (or builds) the EPT02 for another EPT12 root.
//!
//! EPT02 tables live in L0 memory, reached through [`HostFrames`]; invariant: every EPT02
//! leaf maps an Hpa returned by EPT01 for L1, so L2 can reach only L1's memory.
//!
//! **Accessed and dirty flags** (EPTP12 bit 6, SDM 29.3.5): when a fill succeeds, L0 sets the
//! accessed flags of the EPT12 entries used and, for a write, the leaf's dirty flag, as the
//! processor would have. A page whose EPT12 leaf is still clean is mapped in EPT02 without
//! write permission, so L2's first write faults into L0, which then sets the dirty flag and
//! maps the page writable: EPT12's dirty flags are exact, which is what L1's dirty logging
//! relies on (L1 clears them and invalidates with INVEPT, dropping the EPT02). vmcs02's EPTP
//! enables A/D too ([`eptp02_for`]), so the hardware treats L2's paging-structure accesses
//! as writes exactly when L1 asked for that.
//!
//! L1 may clear those flags without INVEPT (its dirty logging between two passes, or
//! kvm-unit-tests' PML test). The processor may keep using a cached translation then
//! (SDM 29.4.3.1), but a processor that walks EPT12 again (Bochs does at every VM entry
//! without VPID) sets the flags again and logs the write. L0 behaves like the latter for the
//! last [`WATCHED`] leaves it filled from an EPT12 with A/D flags: at each entry to L2
//! ([`ShadowEpt::recheck`]) it re-reads their EPT12 leaves and drops the EPT02 leaf of any
//! that changed, so L2's next access faults and sets (and logs) the flags again. Older
//! leaves keep the cached translation until INVEPT, as the SDM allows.
//!
//! **Page-modification logging** for L1 (vmcs12 "enable PML", SDM 29.3.6) rides on the same
//! dirty flags: each 0-to-1 dirty transition L0 makes in EPT12 is logged in L1's PML buffer
//! ([`PmlLog`]); with the index out of range the access does not happen and L1 gets a
//! PML-full exit ([`Resolution::PmlFull`]). vmcs02 never enables the hardware's PML.

use super::eptp;
use super::walk::{self, Ept12Fault, PageSize, bits};
use crate::addr::{Hpa, L1Gpa, L2Gpa};
use crate::caps::VmxCaps;
use crate::exits::ExitInfo;
use crate::guest::GuestMemory;

/// A translation of EPT01 (L1Gpa → Hpa), as L0 maps L1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ept01Leaf {
    /// The host address `gpa` maps to.
    pub hpa: Hpa,
    /// Permissions L0 grants L1 on this page (R = 1, W = 2, X = 4).
    pub perms: u8,
    /// Size of the EPT01 page containing `gpa`.
    pub size: PageSize,
    /// EPT01 memory type (0 = UC, 6 = WB, …).
    pub memtype: u8,
}

/// L0's mapping of L1 (EPT01, or however L0 tracks L1's memory).
pub trait Ept01 {
    /// Translation of `gpa`, or `None` if L1 has no memory there.
    fn translate(&self, gpa: L1Gpa) -> Option<Ept01Leaf>;
}

/// 4-KiB frames of L0 memory for EPT02 paging structures.
pub trait HostFrames {
    /// A zeroed frame, or `None` when exhausted.
    fn alloc_zeroed(&mut self) -> Option<Hpa>;
    /// Returns a frame from [`HostFrames::alloc_zeroed`].
    fn free(&mut self, frame: Hpa);
    /// Reads entry `index` (0..512) of the table at `table`.
    fn read_entry(&self, table: Hpa, index: usize) -> u64;
    /// Writes entry `index` of the table at `table`.
    fn write_entry(&mut self, table: Hpa, index: usize, value: u64);
}

/// What L0 does after [`ShadowEpt::handle_violation`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// EPT02 now maps the page: resume L2.
    Fixed,
    /// Reflect an EPT violation (exit reason 48) to L1 with this qualification; the
    /// guest-physical and guest-linear addresses are the hardware's.
    ReflectViolation { qualification: u64 },
    /// Reflect an EPT misconfiguration (exit reason 49) to L1.
    ReflectMisconfig,
    /// EPT12 is fine but L1 has no memory at this address (MMIO L0 emulates for L1, or a bug):
    /// L0 handles the access as L1's.
    L1Unmapped(L1Gpa),
    /// L0 itself denies L1 this access (e.g. write-protected by L0): L0's own EPT01 fault.
    L0Denied(L1Gpa),
    /// The write would set a dirty flag but L1's PML index is out of range: reflect a
    /// page-modification log-full exit (reason 62); nothing was logged or flagged.
    PmlFull,
}

/// L1's page-modification log, from vmcs12: the PML address and the guest PML index, which
/// [`ShadowEpt::handle_violation`] decrements for each entry it writes (SDM 29.3.6).
#[derive(Debug, PartialEq, Eq)]
pub struct PmlLog<'a> {
    /// vmcs12's PML address (4-KiB aligned, checked at VM entry).
    pub address: u64,
    /// vmcs12's guest PML index: the next entry (0..=511), else the log is full.
    pub index: &'a mut u16,
}

/// Failures of EPT02 maintenance (L0 resources, not guest behaviour).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShadowError {
    /// No frame for an EPT02 table: invalidate some EPT02s and retry.
    OutOfFrames,
    /// An EPT12 table is outside L1 memory.
    Ept12Unreadable(L1Gpa),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Root {
    /// EPT12 root address (EPTP bits 51:12) with the A/D-enable bit: an EPT02 built for one
    /// A/D setting is not valid for the other. INVEPT single-context matches the address.
    eptp12_addr: u64,
    root: Hpa,
}

/// How many EPT02 leaves filled from an EPT12 with accessed/dirty flags L0 re-checks at
/// each entry to L2 ([`ShadowEpt::recheck`]).
pub const WATCHED: usize = 8;

/// An EPT02 leaf whose permissions rest on EPT12 flags L1 may clear without INVEPT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watched {
    /// [`key_of`] the EPT12 the leaf was filled from.
    key: u64,
    /// L2 guest-physical base of the EPT02 page.
    gpa: u64,
    size: PageSize,
    /// Where the EPT12 leaf is, and its value as the fill left it (flags set).
    leaf12_at: L1Gpa,
    leaf12: u64,
    /// The EPT02 leaf the fill installed (the processor may have set its A/D flags since).
    leaf02: u64,
}

/// EPT02s for up to `N` EPT12 roots (EPTP switching and several L2s), least recently built
/// evicted first.
#[derive(Clone, Debug)]
pub struct ShadowEpt<const N: usize = 8> {
    roots: [Option<Root>; N],
    next_victim: usize,
    /// The last leaves filled from an EPT12 with A/D flags, oldest overwritten first.
    watched: [Option<Watched>; WATCHED],
    next_watched: usize,
    /// How many of `watched` are `Some` (0: [`ShadowEpt::recheck`] has nothing to do).
    watching: usize,
}

impl<const N: usize> Default for ShadowEpt<N> {
    fn default() -> Self {
        ShadowEpt {
            roots: [None; N],
            next_victim: 0,
            watched: [None; WATCHED],
            next_watched: 0,
            watching: 0,
        }
    }
}

/// The EPTP for an EPT02 root: write-back, 4-level walk (SDM 25.6.11).
pub const fn eptp02(root: Hpa) -> u64 {
    (root.0 & bits::ADDR_MASK) | 6 | 3 << 3
}

/// The EPTP for the EPT02 shadowing `eptp12`: [`eptp02`] with A/D enabled when EPT12 has it
/// (L1 is offered A/D only when the hardware has it).
pub const fn eptp02_for(root: Hpa, eptp12: u64) -> u64 {
    eptp02(root) | (eptp12 & eptp::AD_ENABLE)
}

/// The key of the EPT02 for `eptp12`.
const fn key_of(eptp12: u64) -> u64 {
    eptp12 & (bits::ADDR_MASK | eptp::AD_ENABLE)
}

impl<const N: usize> ShadowEpt<N> {
    /// No EPT02 yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The EPT02 root for EPT12 `eptp12`, allocating an empty one (and evicting another)
    /// if needed. vmcs02's EPTP is [`eptp02`] of it.
    pub fn root_for(
        &mut self,
        eptp12: u64,
        frames: &mut impl HostFrames,
    ) -> Result<Hpa, ShadowError> {
        let key = key_of(eptp12);
        if let Some(r) = self.roots.iter().flatten().find(|r| r.eptp12_addr == key) {
            return Ok(r.root);
        }
        let root = frames.alloc_zeroed().ok_or(ShadowError::OutOfFrames)?;
        let slot = match self.roots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let i = self.next_victim % N.max(1);
                self.next_victim = self.next_victim.wrapping_add(1);
                if let Some(Some(old)) = self.roots.get(i).copied() {
                    free_table(frames, old.root, 4);
                    self.unwatch(|w| w.key == old.eptp12_addr);
                }
                i
            }
        };
        if let Some(s) = self.roots.get_mut(slot) {
            *s = Some(Root { eptp12_addr: key, root });
        }
        Ok(root)
    }

    /// Resolves an EPT violation taken while L2 ran on the EPT02 for `eptp12`.
    #[allow(clippy::too_many_arguments)]
    pub fn handle_violation(
        &mut self,
        eptp12: u64,
        exit: &ExitInfo,
        l1mem: &mut impl GuestMemory,
        ept01: &impl Ept01,
        frames: &mut impl HostFrames,
        caps: &VmxCaps,
        maxphyaddr: u8,
        pml: Option<PmlLog<'_>>,
    ) -> Result<Resolution, ShadowError> {
        let gpa = L2Gpa(exit.guest_physical_address);
        let access = walk::access_of(exit.qualification);
        let leaf12 = match walk::walk_ept12(&*l1mem, eptp12, gpa, caps, maxphyaddr) {
            Ok(l) => l,
            Err(Ept12Fault::NotPresent { perms }) => {
                let q = walk::violation_qualification(exit.qualification, perms);
                return Ok(Resolution::ReflectViolation { qualification: q });
            }
            Err(Ept12Fault::Misconfig) => return Ok(Resolution::ReflectMisconfig),
            // An EPT12 table where L1 has no RAM reads all ones, as on a PC: an entry with
            // reserved bits set (bit 7 of a PML4E, memory type 7 of a leaf), which the
            // processor reports as a misconfiguration (SDM 29.3.3.1).
            Err(Ept12Fault::Unreadable(_)) => return Ok(Resolution::ReflectMisconfig),
        };
        if !leaf12.allows(access) {
            let q = walk::violation_qualification(exit.qualification, leaf12.perms);
            return Ok(Resolution::ReflectViolation { qualification: q });
        }
        let Some(leaf01) = ept01.translate(leaf12.l1gpa) else {
            return Ok(Resolution::L1Unmapped(leaf12.l1gpa));
        };
        if leaf01.perms & access != access {
            return Ok(Resolution::L0Denied(leaf12.l1gpa));
        }
        let size = leaf12.size.min(leaf01.size);
        let mask = size.bytes() - 1;
        // The EPT02 page [gpa & !mask, +size) maps L1 [l1gpa & !mask, +size), contiguous in
        // both EPT12 (its page is at least `size`) and EPT01 (likewise).
        let l1base = L1Gpa(leaf12.l1gpa.0 & !mask);
        let hpa_base = match ept01.translate(l1base) {
            Some(b) if b.size >= size && b.hpa.0 & mask == 0 => b.hpa,
            _ => return Ok(Resolution::L1Unmapped(l1base)),
        };
        let mut perms = u64::from(leaf12.perms & leaf01.perms);
        let mut leaf12_now = None;
        if eptp12 & eptp::AD_ENABLE != 0 {
            let write = access & bits::WRITE as u8 != 0;
            if write
                && !leaf12.dirty
                && let Some(log) = pml
            {
                // Log the L2 page before setting its dirty flag (SDM 29.3.6).
                if *log.index > 511 {
                    return Ok(Resolution::PmlFull);
                }
                let at = L1Gpa(log.address.wrapping_add(u64::from(*log.index) * 8));
                // A log page where L1 has no RAM takes the write nowhere, as on a PC.
                let _ = l1mem.write_u64(at, gpa.0 & !0xfff);
                *log.index = log.index.wrapping_sub(1);
            }
            walk::set_accessed_dirty(l1mem, &leaf12, write)
                .map_err(|e| ShadowError::Ept12Unreadable(e.gpa))?;
            if !write && !leaf12.dirty {
                // Clean in EPT12: the first write must come back here to set the flag.
                perms &= !bits::WRITE;
            }
            if let Some(&at) = leaf12.entries.iter().flatten().last() {
                let value = l1mem.read_u64(at).map_err(|e| ShadowError::Ept12Unreadable(e.gpa))?;
                leaf12_now = Some((at, value));
            }
        }
        let memtype = if leaf01.memtype == 0 { 0 } else { u64::from(leaf12.memtype) };
        let large = if size == PageSize::Size4K { 0 } else { bits::LARGE };
        let ipat = if leaf12.ipat { bits::IPAT } else { 0 };
        let entry = (hpa_base.0 & bits::ADDR_MASK) | perms | memtype << 3 | large | ipat;
        let root = self.root_for(eptp12, frames)?;
        install(frames, root, gpa.0 & !mask, size, entry)?;
        if let Some((leaf12_at, leaf12)) = leaf12_now {
            let key = key_of(eptp12);
            let gpa = gpa.0 & !mask;
            self.watch(Watched { key, gpa, size, leaf12_at, leaf12, leaf02: entry });
        }
        Ok(Resolution::Fixed)
    }

    /// Before an entry to L2 on the EPT02 for `eptp12`: re-reads the EPT12 leaves of the
    /// watched EPT02 leaves (see the module docs) and drops each EPT02 leaf whose EPT12 leaf
    /// L1 changed (a cleared accessed or dirty flag, or anything else). True if any was
    /// dropped: the caller then invalidates the EPT02's cached translations (INVEPT).
    #[inline]
    pub fn recheck(
        &mut self,
        eptp12: u64,
        l1mem: &impl GuestMemory,
        frames: &mut impl HostFrames,
    ) -> bool {
        self.watching != 0 && self.recheck_watched(key_of(eptp12), l1mem, frames)
    }

    #[inline(never)]
    fn recheck_watched(
        &mut self,
        key: u64,
        l1mem: &impl GuestMemory,
        frames: &mut impl HostFrames,
    ) -> bool {
        let Some(root) = self.roots.iter().flatten().find(|r| r.eptp12_addr == key).map(|r| r.root)
        else {
            return false;
        };
        let mut dropped = false;
        for slot in self.watched.iter_mut() {
            let Some(w) = *slot else { continue };
            if w.key != key || l1mem.read_u64(w.leaf12_at).ok() == Some(w.leaf12) {
                continue;
            }
            if let Some((table, index)) = leaf_slot(frames, root, w.gpa, w.size)
                && frames.read_entry(table, index) & !(bits::ACCESSED | bits::DIRTY) == w.leaf02
            {
                frames.write_entry(table, index, 0);
                dropped = true;
            }
            *slot = None;
            self.watching -= 1;
        }
        dropped
    }

    fn watch(&mut self, w: Watched) {
        // A refill of a watched page replaces its entry.
        self.unwatch(|old| old.key == w.key && old.gpa == w.gpa);
        let i = self.next_watched % WATCHED;
        self.next_watched = self.next_watched.wrapping_add(1);
        if let Some(slot) = self.watched.get_mut(i) {
            if slot.is_none() {
                self.watching += 1;
            }
            *slot = Some(w);
        }
    }

    fn unwatch(&mut self, mut matches: impl FnMut(&Watched) -> bool) {
        for slot in self.watched.iter_mut() {
            if slot.as_ref().is_some_and(&mut matches) {
                *slot = None;
                self.watching -= 1;
            }
        }
    }

    /// INVEPT single-context: drop the EPT02 shadowing `eptp12`.
    pub fn invalidate(&mut self, eptp12: u64, frames: &mut impl HostFrames) {
        let key = eptp12 & bits::ADDR_MASK;
        for slot in self.roots.iter_mut() {
            if let Some(r) = *slot
                && r.eptp12_addr & bits::ADDR_MASK == key
            {
                free_table(frames, r.root, 4);
                *slot = None;
            }
        }
        self.unwatch(|w| w.key & bits::ADDR_MASK == key);
    }

    /// INVEPT all-context (and any change to EPT01): drop every EPT02.
    pub fn invalidate_all(&mut self, frames: &mut impl HostFrames) {
        for slot in self.roots.iter_mut() {
            if let Some(r) = slot.take() {
                free_table(frames, r.root, 4);
            }
        }
        self.unwatch(|_| true);
    }

    /// EPT02 roots currently built, as (EPT12 root address, EPT02 root).
    pub fn roots(&self) -> impl Iterator<Item = (u64, Hpa)> + '_ {
        self.roots.iter().flatten().map(|r| (r.eptp12_addr & bits::ADDR_MASK, r.root))
    }
}

/// Installs `entry` as the leaf for `gpa` at `size`, creating tables and replacing whatever
/// is in the way (a stale large leaf above, or a stale subtree below).
fn install(
    frames: &mut impl HostFrames,
    root: Hpa,
    gpa: u64,
    size: PageSize,
    entry: u64,
) -> Result<(), ShadowError> {
    let mut table = root;
    let mut level = 4;
    while level > size.level() {
        let index = ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        let e = frames.read_entry(table, index);
        let next = if e & bits::RWX != 0 && e & bits::LARGE == 0 {
            Hpa(e & bits::ADDR_MASK)
        } else {
            let t = frames.alloc_zeroed().ok_or(ShadowError::OutOfFrames)?;
            frames.write_entry(table, index, t.0 | bits::RWX);
            t
        };
        table = next;
        level -= 1;
    }
    let index = ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
    let old = frames.read_entry(table, index);
    if level > 1 && old & bits::RWX != 0 && old & bits::LARGE == 0 {
        free_table(frames, Hpa(old & bits::ADDR_MASK), level - 1);
    }
    frames.write_entry(table, index, entry);
    Ok(())
}

/// The table and index of the EPT02 leaf for `gpa` at `size`, if the tables above it are
/// there.
fn leaf_slot(
    frames: &impl HostFrames,
    root: Hpa,
    gpa: u64,
    size: PageSize,
) -> Option<(Hpa, usize)> {
    let mut table = root;
    let mut level = 4;
    loop {
        let index = ((gpa >> (12 + 9 * (level - 1))) & 0x1ff) as usize;
        if level == size.level() {
            return Some((table, index));
        }
        let e = frames.read_entry(table, index);
        if e & bits::RWX == 0 || e & bits::LARGE != 0 {
            return None;
        }
        table = Hpa(e & bits::ADDR_MASK);
        level -= 1;
    }
}

/// Frees the table at `table` (a level-`level` structure) and every table below it.
fn free_table(frames: &mut impl HostFrames, table: Hpa, level: u32) {
    if level > 1 {
        for i in 0..512 {
            let e = frames.read_entry(table, i);
            if e & bits::RWX != 0 && e & bits::LARGE == 0 {
                free_table(frames, Hpa(e & bits::ADDR_MASK), level - 1);
            }
        }
    }
    frames.free(table);
}

/// Visits every leaf of the EPT02 at `root`: (L2 guest-physical base, size, entry).
pub fn for_each_leaf(frames: &impl HostFrames, root: Hpa, mut f: impl FnMut(u64, PageSize, u64)) {
    fn visit(
        frames: &impl HostFrames,
        table: Hpa,
        level: u32,
        base: u64,
        f: &mut impl FnMut(u64, PageSize, u64),
    ) {
        for i in 0..512u64 {
            let e = frames.read_entry(table, i as usize);
            if e & bits::RWX == 0 {
                continue;
            }
            let gpa = base | i << (12 + 9 * (level - 1));
            let size = match level {
                1 => Some(PageSize::Size4K),
                2 if e & bits::LARGE != 0 => Some(PageSize::Size2M),
                3 if e & bits::LARGE != 0 => Some(PageSize::Size1G),
                _ => None,
            };
            match size {
                Some(s) => f(gpa, s, e),
                None if level > 1 => visit(frames, Hpa(e & bits::ADDR_MASK), level - 1, gpa, f),
                None => {}
            }
        }
    }
    visit(frames, root, 4, 0, &mut f);
}

/// Nested VPIDs: each VPID L1 uses for its L2s (vpid12) gets a hardware VPID (vpid02) from
/// L0's range `[base, base + N)`, so L2 TLB entries survive switches between L1 and L2.
#[derive(Clone, Debug)]
pub struct VpidMap<const N: usize = 16> {
    base: u16,
    slots: [Option<u16>; N],
    next_victim: usize,
}

impl<const N: usize> VpidMap<N> {
    /// vpid02s are `base..base + N` (L0 keeps them apart from its own VPIDs).
    pub fn new(base: u16) -> Self {
        VpidMap { base, slots: [None; N], next_victim: 0 }
    }

    /// The vpid02 for `vpid12`, and whether it was (re)assigned just now — then its TLB
    /// entries belong to another vpid12 and L0 must INVVPID it (single-context) first.
    pub fn vpid02(&mut self, vpid12: u16) -> (u16, bool) {
        if let Some(i) = self.slots.iter().position(|s| *s == Some(vpid12)) {
            return (self.base.wrapping_add(i as u16), false);
        }
        let i = match self.slots.iter().position(Option::is_none) {
            Some(i) => i,
            None => {
                let i = self.next_victim % N.max(1);
                self.next_victim = self.next_victim.wrapping_add(1);
                i
            }
        };
        if let Some(s) = self.slots.get_mut(i) {
            *s = Some(vpid12);
        }
        (self.base.wrapping_add(i as u16), true)
    }

    /// The vpid02 currently assigned to `vpid12` (for INVVPID), if any.
    pub fn lookup(&self, vpid12: u16) -> Option<u16> {
        self.slots.iter().position(|s| *s == Some(vpid12)).map(|i| self.base.wrapping_add(i as u16))
    }

    /// Every assigned vpid02 (INVVPID all-context).
    pub fn assigned(&self) -> impl Iterator<Item = u16> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(i, _)| self.base.wrapping_add(i as u16))
    }
}

#[cfg(test)]
#[path = "shadow_tests.rs"]
pub(crate) mod tests;
