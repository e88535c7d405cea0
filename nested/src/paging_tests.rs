//! Guest paging against a reference model: random paging structures are built from
//! descriptors (what each entry means), the model answers from the descriptors, the walker
//! from the encoded bits in memory; both must agree on the address, the fault and its error
//! code, and the accessed/dirty flags the walk leaves behind.

use std::collections::HashMap;

use proptest::prelude::*;

use crate::addr::L1Gpa;
use crate::guest::{GuestMemory, VecMemory};
use crate::paging::{
    Access, AccessKind, PagingMode, PagingRegs, WalkFault, bits, pf, pte, translate, walk,
};

const MEM: usize = 96 * 4096;

/// What one entry means.
#[derive(Clone, Copy, Debug)]
struct Desc {
    present: bool,
    writable: bool,
    user: bool,
    xd: bool,
    /// Maps a page (a PS entry or a PT entry).
    leaf: bool,
    accessed: bool,
    dirty: bool,
    /// A bit the SDM reserves is set.
    reserved: bool,
    /// Next table or page frame.
    target: u64,
}

/// How each mode splits a linear address: (shift, index bits) per level, top first.
fn levels(mode: PagingMode) -> &'static [(u32, u32)] {
    match mode {
        PagingMode::Bits32 => &[(22, 10), (12, 10)],
        PagingMode::Pae => &[(30, 2), (21, 9), (12, 9)],
        PagingMode::Level4 => &[(39, 9), (30, 9), (21, 9), (12, 9)],
        PagingMode::Level5 => &[(48, 9), (39, 9), (30, 9), (21, 9), (12, 9)],
        PagingMode::None => &[],
    }
}

struct World {
    regs: PagingRegs,
    mem: VecMemory,
    /// (table address, index) to its descriptor; entry addresses follow from the mode.
    entries: HashMap<(u64, u64), Desc>,
    next_table: u64,
    /// Index choices the queries draw from, per level.
    used: Vec<Vec<u64>>,
}

fn wide(mode: PagingMode) -> bool {
    mode != PagingMode::Bits32
}

/// Can the entry at `depth` (0 = top) be a large page?
fn large_allowed(regs: &PagingRegs, depth: usize) -> bool {
    let mode = regs.mode();
    let n = levels(mode).len();
    let level = n - depth; // 1 = PT
    match mode {
        PagingMode::Bits32 => level == 2 && regs.cr4 & bits::CR4_PSE != 0,
        PagingMode::Pae => level == 2,
        _ => level == 2 || level == 3,
    }
}

/// A reserved bit for this entry, as the SDM lists them.
fn reserved_bit(regs: &PagingRegs, depth: usize, desc: &Desc, pick: u64) -> Option<u64> {
    let mode = regs.mode();
    let level = levels(mode).len() - depth;
    let m = u32::from(regs.maxphyaddr);
    let mut choices = Vec::new();
    if wide(mode) {
        if m < 52 {
            choices.push(1u64 << (m + (pick as u32 % (52 - m))));
        }
        if mode == PagingMode::Pae && depth == 0 {
            choices.extend([1 << 1, 1 << 2, 1 << 5, 1 << 8, 1 << 63]);
        }
        if level >= 4 {
            choices.push(pte::LARGE);
        }
        // The low address bits of a large page: 20:13 (2 MiB) or 29:13 (1 GiB).
        if desc.leaf && level == 2 {
            choices.push(1 << (13 + (pick >> 8) % 8));
        }
        if desc.leaf && level == 3 {
            choices.push(1 << (13 + (pick >> 8) % 17));
        }
    } else if desc.leaf && level == 2 {
        choices.push(1 << 21);
        if m < 40 {
            choices.push(1 << (13 + (m - 32)));
        }
    }
    (!choices.is_empty()).then(|| choices[pick as usize % choices.len()])
}

fn encode(regs: &PagingRegs, depth: usize, d: &Desc, pick: u64) -> u64 {
    let mode = regs.mode();
    let pdpte = mode == PagingMode::Pae && depth == 0;
    let mut e = d.target;
    if mode == PagingMode::Bits32 && d.leaf && depth == 0 {
        // PSE-36: address bits 39:32 go to 20:13.
        e = (d.target & 0xffc0_0000) | ((d.target >> 32) & 0xff) << 13;
    }
    let mut set = |on: bool, bit: u64| {
        if on {
            e |= bit;
        }
    };
    set(d.present, pte::PRESENT);
    if !pdpte {
        set(d.writable, pte::WRITABLE);
        set(d.user, pte::USER);
        set(d.accessed, pte::ACCESSED);
        set(d.leaf && d.dirty, pte::DIRTY);
        let level = levels(mode).len() - depth;
        set(d.leaf && level > 1, pte::LARGE);
        set(d.xd && wide(mode), pte::XD);
    }
    if d.reserved {
        e |= reserved_bit(regs, depth, d, pick).unwrap_or(0);
    }
    e
}

impl World {
    fn alloc_table(&mut self) -> Option<u64> {
        let at = self.next_table;
        if at as usize + 4096 > MEM {
            return None;
        }
        self.next_table += 4096;
        Some(at)
    }

    /// Builds one path of entries from random choices.
    fn add_path(&mut self, choices: &[(u64, u8, u64)], top: u64) {
        let mode = self.regs.mode();
        let geometry = levels(mode);
        let mut table = top;
        for (depth, (&(shift, nbits), &(raw_index, flags, rnd))) in
            geometry.iter().zip(choices.iter()).enumerate()
        {
            let max = (1u64 << nbits) - 1;
            let index = if raw_index == 4 { max } else { raw_index & max };
            if !self.used[depth].contains(&index) {
                self.used[depth].push(index);
            }
            if let Some(d) = self.entries.get(&(table, index)) {
                if d.present && !d.leaf && !d.reserved {
                    table = d.target;
                    continue;
                }
                return;
            }
            let last = depth + 1 == geometry.len();
            let pdpte = mode == PagingMode::Pae && depth == 0;
            let mut d = Desc {
                present: flags & 0x0f != 0,
                writable: flags & 0x10 != 0 || pdpte,
                user: flags & 0x20 != 0 || pdpte,
                xd: flags & 0x40 != 0 && !pdpte,
                leaf: last || (large_allowed(&self.regs, depth) && flags & 0x80 != 0),
                accessed: rnd & 1 != 0,
                dirty: rnd & 2 != 0,
                reserved: rnd & 0x1c == 0,
                target: 0,
            };
            if d.reserved && reserved_bit(&self.regs, depth, &d, rnd >> 8).is_none() {
                d.reserved = false;
            }
            if self.regs.efer & bits::EFER_NXE == 0 && d.xd && wide(mode) {
                d.reserved = true; // XD is reserved without EFER.NXE
            }
            if d.leaf {
                let page = 1u64 << shift;
                let width = if wide(mode) {
                    u32::from(self.regs.maxphyaddr)
                } else if depth == 0 {
                    u32::from(self.regs.maxphyaddr.min(40))
                } else {
                    32
                };
                d.target = (rnd >> 16) & ((1u64 << width) - 1) & !(page - 1);
            } else if d.present {
                match self.alloc_table() {
                    Some(t) => d.target = t,
                    None => d.present = false,
                }
            }
            let entry = encode(&self.regs, depth, &d, rnd >> 8);
            let at = L1Gpa(table + index * if wide(mode) { 8 } else { 4 });
            if wide(mode) {
                self.mem.write_u64(at, entry).unwrap();
            } else {
                self.mem.write_u32(at, entry as u32).unwrap();
            }
            self.entries.insert((table, index), d);
            if !d.present || d.leaf || d.reserved {
                return;
            }
            table = d.target;
        }
    }
}

/// The reference model: walks the descriptors.
fn model(
    w: &World,
    top: u64,
    linear: u64,
    access: Access,
) -> (Result<u64, WalkFault>, Vec<(u64, u64)>) {
    let regs = &w.regs;
    let mode = regs.mode();
    let nxe = regs.efer & bits::EFER_NXE != 0;
    let mut code = 0;
    if access.kind == AccessKind::Write {
        code |= pf::WRITE;
    }
    if access.user {
        code |= pf::USER;
    }
    let fetch_reported = regs.cr4 & bits::CR4_SMEP != 0 || (wide(mode) && nxe);
    if access.kind == AccessKind::Fetch && fetch_reported {
        code |= pf::FETCH;
    }
    let pf = |extra| Err(WalkFault::PageFault { error_code: code | extra });
    let (mut writable, mut user, mut xd) = (true, true, false);
    let mut path = Vec::new();
    let mut table = top;
    for (depth, &(shift, nbits)) in levels(mode).iter().enumerate() {
        let index = (linear >> shift) & ((1 << nbits) - 1);
        let d = w.entries.get(&(table, index)).copied().unwrap_or(Desc {
            present: false,
            writable: false,
            user: false,
            xd: false,
            leaf: false,
            accessed: false,
            dirty: false,
            reserved: false,
            target: 0,
        });
        if !d.present {
            return (pf(0), path);
        }
        if d.reserved {
            return (pf(pf::PRESENT | pf::RSVD), path);
        }
        writable &= d.writable;
        user &= d.user;
        xd |= d.xd && nxe && wide(mode);
        let entry_at = table + index * if wide(mode) { 8 } else { 4 };
        let pdpte = mode == PagingMode::Pae && depth == 0;
        if !pdpte {
            path.push((entry_at, if d.leaf { 2 } else { 1 }));
        }
        if !d.leaf {
            table = d.target;
            continue;
        }
        let wp = regs.cr0 & bits::CR0_WP != 0;
        let smep = regs.cr4 & bits::CR4_SMEP != 0;
        let ok = match (access.kind, access.user) {
            (AccessKind::Read, false) => true,
            (AccessKind::Read, true) => user,
            (AccessKind::Write, false) => writable || !wp,
            (AccessKind::Write, true) => user && writable,
            (AccessKind::Fetch, false) => !xd && (!smep || !user),
            (AccessKind::Fetch, true) => user && !xd,
        };
        if !ok {
            return (pf(pf::PRESENT), path);
        }
        return (Ok(d.target | (linear & ((1 << shift) - 1))), path);
    }
    unreachable!("the last level is always a leaf")
}

fn regs_for(mode: u8, flags: u16, maxphyaddr: u8) -> PagingRegs {
    let mut r = PagingRegs { cr0: bits::CR0_PG, maxphyaddr, ..PagingRegs::default() };
    match mode % 4 {
        0 => {}
        1 => r.cr4 |= bits::CR4_PAE,
        2 => {
            r.cr4 |= bits::CR4_PAE;
            r.efer |= bits::EFER_LMA;
        }
        _ => {
            r.cr4 |= bits::CR4_PAE | bits::CR4_LA57;
            r.efer |= bits::EFER_LMA;
        }
    }
    let set = |bit: u16, reg: &mut u64, value: u64| {
        if flags & bit != 0 {
            *reg |= value;
        }
    };
    set(1, &mut r.cr0, bits::CR0_WP);
    set(2, &mut r.cr4, bits::CR4_PSE);
    set(4, &mut r.cr4, bits::CR4_SMEP);
    set(8, &mut r.efer, bits::EFER_NXE);
    r
}

fn kind(k: u8) -> AccessKind {
    [AccessKind::Read, AccessKind::Write, AccessKind::Fetch][usize::from(k % 3)]
}

fn entry_value(mem: &VecMemory, mode: PagingMode, at: u64) -> u64 {
    if wide(mode) {
        mem.read_u64(L1Gpa(at)).unwrap()
    } else {
        u64::from(mem.read_u32(L1Gpa(at)).unwrap())
    }
}

proptest! {
    #![proptest_config(crate::proptests::cases(512))]

    #[test]
    fn walk_matches_reference_model(
        mode in 0u8..4,
        flags in any::<u16>(),
        maxphyaddr in 36u8..=52,
        paths in proptest::collection::vec(
            proptest::collection::vec((0u64..5, any::<u8>(), any::<u64>()), 5), 1..12),
        queries in proptest::collection::vec(
            (0usize..64, any::<u64>(), 0u8..3, any::<bool>(), any::<u64>()), 1..24),
        pdpte_registers in any::<bool>(),
        pdpt_offset in 0u64..128,
    ) {
        let regs = regs_for(mode, flags, maxphyaddr);
        let pae = regs.mode() == PagingMode::Pae;
        // CR3 of PAE paging is 32-byte aligned, not page aligned.
        let top = if pae { 4096 + pdpt_offset * 32 } else { 4096 };
        let mut w = World {
            regs: PagingRegs { cr3: top | (flags as u64 & 0x18), ..regs },
            mem: VecMemory::new(MEM),
            entries: HashMap::new(),
            next_table: 8192,
            used: vec![Vec::new(); 5],
        };
        for p in &paths {
            w.add_path(p, top);
        }
        if pae && pdpte_registers {
            let mut p = [0u64; 4];
            for (i, e) in p.iter_mut().enumerate() {
                *e = w.mem.read_u64(L1Gpa(top + 8 * i as u64)).unwrap();
                w.mem.write_u64(L1Gpa(top + 8 * i as u64), !0).unwrap();
            }
            w.regs.pdptes = Some(p);
        }
        let geometry = levels(w.regs.mode());
        for (pick, offset, k, user, random) in queries {
            // Mostly addresses along the built paths, sometimes anything.
            let linear = if random & 7 == 0 {
                random
            } else {
                let mut l = offset & 0xfff;
                for (depth, &(shift, _)) in geometry.iter().enumerate() {
                    let used = &w.used[depth];
                    let i = if used.is_empty() { 0 } else { used[(pick + depth * 7) % used.len()] };
                    l |= i << shift;
                }
                // Sign-extend in 4-/5-level paging; 32-bit addresses otherwise.
                match w.regs.mode() {
                    PagingMode::Level4 => (((l << 16) as i64) >> 16) as u64,
                    PagingMode::Level5 => (((l << 7) as i64) >> 7) as u64,
                    _ => l | (offset & 0xffff_ffff_0000_0000 & (random >> 1)),
                }
            };
            let access = Access { kind: kind(k), user };
            let before = w.mem.clone();
            let got = translate(&mut w.mem, &w.regs, linear, access);
            let canonical = match w.regs.mode() {
                PagingMode::Level4 => ((linear as i64) >> 47) == 0 || ((linear as i64) >> 47) == -1,
                PagingMode::Level5 => ((linear as i64) >> 56) == 0 || ((linear as i64) >> 56) == -1,
                _ => true,
            };
            if !canonical {
                prop_assert_eq!(got, Err(WalkFault::NonCanonical));
                continue;
            }
            let l = if wide(w.regs.mode()) && w.regs.mode() != PagingMode::Pae { linear } else { linear & 0xffff_ffff };
            let (want, path) = model(&w, top, l, access);
            prop_assert_eq!(got.map(|g| g.0), want, "linear {:#x} {:?} regs {:x?}", linear, access, w.regs);
            let mode = w.regs.mode();
            if want.is_ok() {
                for &(at, leafness) in &path {
                    let e = entry_value(&w.mem, mode, at);
                    let old = entry_value(&before, mode, at);
                    prop_assert!(e & pte::ACCESSED != 0, "A not set at {:#x}", at);
                    let dirty_expected = old & pte::DIRTY != 0
                        || (leafness == 2 && access.kind == AccessKind::Write);
                    prop_assert_eq!(e & pte::DIRTY != 0, dirty_expected, "D at {:#x}", at);
                    prop_assert_eq!(e & !(pte::ACCESSED | pte::DIRTY), old & !(pte::ACCESSED | pte::DIRTY));
                }
            } else {
                prop_assert!(w.mem.bytes == before.bytes, "a faulting walk changed memory");
            }
            // The read-only walk agrees and changes nothing.
            let again = walk(&w.mem, &w.regs, linear, access).map(|x| x.gpa.0);
            prop_assert_eq!(again, want);
        }
    }

    /// Arbitrary memory contents and registers: never a panic.
    #[test]
    fn walk_never_panics(
        bytes in proptest::collection::vec(any::<u8>(), 0..16384),
        cr0 in any::<u64>(), cr3 in any::<u64>(), cr4 in any::<u64>(), efer in any::<u64>(),
        maxphyaddr in any::<u8>(), linear in any::<u64>(), k in 0u8..3, user in any::<bool>(),
    ) {
        let mut mem = VecMemory { bytes };
        let regs = PagingRegs { cr0, cr3: cr3 & 0x3fff, cr4, efer, maxphyaddr, pdptes: None };
        let _ = translate(&mut mem, &regs, linear, Access { kind: kind(k), user });
        let regs = PagingRegs { cr3, ..regs };
        let _ = translate(&mut mem, &regs, linear, Access { kind: kind(k), user });
    }
}

/// The bug this module replaced: PAE paging walked as if it were 4-level.
#[test]
fn pae_is_not_four_level() {
    let mut mem = VecMemory::new(MEM);
    // PDPT at 0x1020 (32-byte aligned), PDPTE 1 -> PD at 0x2000, PDE 0 -> PT at 0x3000,
    // PTE 5 -> frame 0x7000.
    mem.write_u64(L1Gpa(0x1028), 0x2000 | pte::PRESENT).unwrap();
    mem.write_u64(L1Gpa(0x2000), 0x3000 | pte::PRESENT | pte::WRITABLE).unwrap();
    mem.write_u64(L1Gpa(0x3000 + 5 * 8), 0x7000 | pte::PRESENT).unwrap();
    let regs = PagingRegs {
        cr0: bits::CR0_PG,
        cr3: 0x1020,
        cr4: bits::CR4_PAE,
        maxphyaddr: 36,
        ..PagingRegs::default()
    };
    let linear = 0x4000_5123;
    assert_eq!(translate(&mut mem, &regs, linear, Access::SUPERVISOR_READ), Ok(L1Gpa(0x7123)));
    assert_ne!(mem.read_u64(L1Gpa(0x2000)).unwrap() & pte::ACCESSED, 0);
    assert_eq!(mem.read_u64(L1Gpa(0x1028)).unwrap() & pte::ACCESSED, 0, "PDPTEs have no A flag");
    // Paging off (CR0.PG from the real CR0): identity, 32 bits.
    let off = PagingRegs { cr0: 0, ..regs };
    assert_eq!(
        walk(&mem, &off, 0x1_2345_6789, Access::SUPERVISOR_READ).map(|w| w.gpa),
        Ok(L1Gpa(0x2345_6789))
    );
}

#[test]
fn write_protect_and_error_codes() {
    let mut mem = VecMemory::new(MEM);
    // 32-bit paging, 4-MiB page at linear 0x0040_0000, read-only, supervisor, PSE-36 bit 32.
    mem.write_u32(L1Gpa(0x1004), 0x00c0_0000 | 1 << 13 | (pte::LARGE | pte::PRESENT) as u32)
        .unwrap();
    let mut regs = PagingRegs {
        cr0: bits::CR0_PG,
        cr3: 0x1000,
        cr4: bits::CR4_PSE,
        maxphyaddr: 40,
        ..PagingRegs::default()
    };
    let at = 0x0041_2345;
    assert_eq!(translate(&mut mem, &regs, at, Access::SUPERVISOR_WRITE), Ok(L1Gpa(0x1_00c1_2345)));
    regs.cr0 |= bits::CR0_WP;
    assert_eq!(
        translate(&mut mem, &regs, at, Access::SUPERVISOR_WRITE),
        Err(WalkFault::PageFault { error_code: pf::PRESENT | pf::WRITE })
    );
    let user_fetch = Access { kind: AccessKind::Fetch, user: true };
    assert_eq!(
        translate(&mut mem, &regs, at, user_fetch),
        Err(WalkFault::PageFault { error_code: pf::PRESENT | pf::USER })
    );
    regs.cr4 |= bits::CR4_SMEP;
    assert_eq!(
        translate(&mut mem, &regs, 0x0080_0000, user_fetch),
        Err(WalkFault::PageFault { error_code: pf::USER | pf::FETCH })
    );
    let dirty = mem.read_u32(L1Gpa(0x1004)).unwrap();
    assert_eq!(u64::from(dirty) & (pte::ACCESSED | pte::DIRTY), pte::ACCESSED | pte::DIRTY);
}

/// The reference model shares the `bits`, `pte` and `pf` constants with the walker, so a
/// wrong constant agrees with itself there; this test spells out the SDM's bit positions:
/// CR0.PG 31, CR4.PSE 4, CR4.PAE 5, CR4.LA57 12, CR4.SMEP 20, EFER.LMA 10 (SDM 2.5, 2.2.1,
/// Table 4-1) and the page-fault error code P 0, W/R 1, U/S 2, RSVD 3, I/D 4 (SDM 4.7).
#[test]
fn modes_and_error_codes_at_sdm_bit_positions() {
    let regs = |cr0: u64, cr4: u64, efer: u64| PagingRegs {
        cr0,
        cr3: 0x1000,
        cr4,
        efer,
        maxphyaddr: 36,
        ..PagingRegs::default()
    };
    let other_cr4 = 1 << 3 | 1 << 7 | 1 << 13; // DE, PGE, VMXE: no effect on the mode
    let mode = |cr0, cr4, efer| regs(cr0, cr4, efer).mode();
    assert_eq!(mode(1 << 0, 1 << 5, 1 << 10), PagingMode::None);
    assert_eq!(mode(1 << 31, other_cr4, 0), PagingMode::Bits32);
    assert_eq!(mode(1 << 31, other_cr4 | 1 << 5, 0), PagingMode::Pae);
    assert_eq!(mode(1 << 31, other_cr4 | 1 << 5, 1 << 10), PagingMode::Level4);
    assert_eq!(mode(1 << 31, other_cr4 | 1 << 5 | 1 << 12, 1 << 10), PagingMode::Level5);

    // 32-bit paging. PDE 0 -> PT at 0x2000: PTE 0 user read-only, PTE 1 supervisor.
    // PDE 1: a 4-MiB user page (PS, bit 7). PDE 2: a 4-MiB page with reserved bit 21.
    let mut mem = VecMemory::new(MEM);
    mem.write_u32(L1Gpa(0x1000), 0x2000 | 0x7).unwrap();
    mem.write_u32(L1Gpa(0x2000), 0x5000 | 0x5).unwrap();
    mem.write_u32(L1Gpa(0x2004), 0x6000 | 0x1).unwrap();
    mem.write_u32(L1Gpa(0x1004), 0x0040_0000 | 0x80 | 0x7).unwrap();
    mem.write_u32(L1Gpa(0x1008), 0x0080_0000 | 1 << 21 | 0x80 | 0x1).unwrap();
    let pse = regs(1 << 31, 1 << 4, 0);
    let fault = |code| Err(WalkFault::PageFault { error_code: code });
    let go = |mem: &mut VecMemory, r: &PagingRegs, linear, kind, user| {
        translate(mem, r, linear, Access { kind, user })
    };
    use AccessKind::{Fetch, Read, Write};
    assert_eq!(go(&mut mem, &pse, 0x0041_2345, Read, true), Ok(L1Gpa(0x0041_2345)));
    assert_eq!(mem.read_u32(L1Gpa(0x1004)).unwrap(), 0x0040_0000 | 0x80 | 1 << 5 | 0x7);
    assert_eq!(go(&mut mem, &pse, 0x0041_2345, Write, true), Ok(L1Gpa(0x0041_2345)));
    assert_eq!(mem.read_u32(L1Gpa(0x1004)).unwrap(), 0x0040_0000 | 0x80 | 3 << 5 | 0x7);
    // Without CR4.PSE bit 7 of a PDE is ignored: 0x40_0000 is read as a page table, which
    // lies outside this memory.
    let no_pse = regs(1 << 31, 0, 0);
    assert!(matches!(go(&mut mem, &no_pse, 0x0041_2345, Read, false), Err(WalkFault::Memory(_))));
    assert_eq!(go(&mut mem, &pse, 0x0080_0000, Read, false), fault(0x1 | 0x8));
    assert_eq!(go(&mut mem, &pse, 0x0000_0123, Write, true), fault(0x1 | 0x2 | 0x4));
    assert_eq!(go(&mut mem, &pse, 0x0000_1123, Read, true), fault(0x1 | 0x4));
    assert_eq!(go(&mut mem, &pse, 0x00c0_0000, Write, false), fault(0x2));
    assert_eq!(go(&mut mem, &pse, 0x00c0_0000, Read, true), fault(0x4));
    // Without SMEP (and without PAE and EFER.NXE) a fetch reports no I/D bit and a
    // supervisor fetch from a user page is allowed; with CR4.SMEP it faults with I/D.
    assert_eq!(go(&mut mem, &pse, 0x00c0_0000, Fetch, false), fault(0));
    assert_eq!(go(&mut mem, &pse, 0x0000_0123, Fetch, false), Ok(L1Gpa(0x5123)));
    let smep = regs(1 << 31, 1 << 4 | 1 << 20, 0);
    assert_eq!(go(&mut mem, &smep, 0x0000_0123, Fetch, false), fault(0x1 | 0x10));
    assert_eq!(go(&mut mem, &smep, 0x00c0_0000, Fetch, true), fault(0x4 | 0x10));
}

/// The processor only ever sets accessed and dirty flags (SDM 4.8): a walk's flag update
/// ORs them into the entry as it is when written, so an entry that got the flag since the
/// walk (another CPU, or the same update applied twice) keeps it.
#[test]
fn flag_updates_only_set() {
    // 32-bit paging, PDE 0 -> PT at 0x2000, PTE 0 -> 0x5000; PAE: PDPTE 0 -> PD at 0x3000,
    // PDE 0 -> PT at 0x4000, PTE 0 -> 0x5000 (the 64-bit entry path).
    let mut mem = VecMemory::new(MEM);
    mem.write_u32(L1Gpa(0x1000), 0x2000 | 0x3).unwrap();
    mem.write_u32(L1Gpa(0x2000), 0x5000 | 0x3).unwrap();
    mem.write_u64(L1Gpa(0x1800), 0x3000 | 0x1).unwrap();
    mem.write_u64(L1Gpa(0x3000), 0x4000 | 0x3).unwrap();
    mem.write_u64(L1Gpa(0x4000), 0x5000 | 0x3).unwrap();
    let bits32 =
        PagingRegs { cr0: bits::CR0_PG, cr3: 0x1000, maxphyaddr: 36, ..Default::default() };
    let pae = PagingRegs { cr3: 0x1800, cr4: bits::CR4_PAE, ..bits32 };
    for (regs, pte_at) in [(bits32, 0x2000), (pae, 0x4000)] {
        let w = walk(&mem, &regs, 0x123, Access::SUPERVISOR_WRITE).unwrap();
        w.set_accessed_dirty(&mut mem).unwrap();
        w.set_accessed_dirty(&mut mem).unwrap();
        assert_eq!(mem.read_u32(L1Gpa(pte_at)).unwrap(), 0x5000 | 3 << 5 | 0x3, "{regs:x?}");
    }
}

/// Edges the random model rarely reaches: a PDPTE with P = 0 faults whatever its other bits
/// say (SDM 4.4.1); in 4-level paging an address is canonical when bits 63:47 are equal, in
/// 5-level when bits 63:56 are (SDM Vol. 1 3.3.7.1), so bit 47 (resp. 56) alone set is not;
/// without paging a translation covers the address's 4-KiB page.
#[test]
fn pdpte_present_canonical_edges_and_no_paging() {
    let mut mem = VecMemory::new(MEM);
    // PDPTE 1 at 0x1808 not present but naming a valid PD at 0x3000 -> PT 0x4000 -> 0x5000.
    mem.write_u64(L1Gpa(0x1808), 0x3000).unwrap();
    mem.write_u64(L1Gpa(0x3000), 0x4000 | 0x3).unwrap();
    mem.write_u64(L1Gpa(0x4000), 0x5000 | 0x3).unwrap();
    let pae = PagingRegs {
        cr0: bits::CR0_PG,
        cr3: 0x1800,
        cr4: bits::CR4_PAE,
        maxphyaddr: 36,
        ..Default::default()
    };
    let write = Access::SUPERVISOR_WRITE;
    assert_eq!(
        walk(&mem, &pae, 0x4000_0123, write).map(|w| w.gpa),
        Err(WalkFault::PageFault { error_code: pf::WRITE })
    );
    let with_p = PagingRegs { pdptes: Some([0, 0x3000 | 1, 0, 0]), ..pae };
    assert_eq!(walk(&mem, &with_p, 0x4000_0123, write).map(|w| w.gpa), Ok(L1Gpa(0x5123)));
    let not_p = PagingRegs { pdptes: Some([0, 0x3000, 0, 0]), ..pae };
    assert!(walk(&mem, &not_p, 0x4000_0123, write).is_err());
    // XD is bit 63, EFER.NXE bit 11 (SDM 4.6, 2.2.1): with NXE a fetch from an XD page
    // faults with I/D; without it bit 63 is reserved and a fetch reports no I/D (SDM 4.7).
    mem.write_u64(L1Gpa(0x4008), 0x7000 | 0x3 | 1 << 63).unwrap();
    let fetch = Access { kind: AccessKind::Fetch, user: false };
    let nxe = PagingRegs { efer: 1 << 11, ..with_p };
    let code = |r: &PagingRegs, a| walk(&mem, r, 0x4000_1123, a).map(|w| w.gpa);
    assert_eq!(code(&nxe, Access::SUPERVISOR_READ), Ok(L1Gpa(0x7123)));
    assert_eq!(code(&nxe, fetch), Err(WalkFault::PageFault { error_code: 0x1 | 0x10 }));
    assert_eq!(code(&with_p, fetch), Err(WalkFault::PageFault { error_code: 0x1 | 0x8 }));

    let l4 = PagingRegs { efer: bits::EFER_LMA, ..pae };
    let l5 = PagingRegs { cr4: bits::CR4_PAE | bits::CR4_LA57, ..l4 };
    for (regs, bit) in [(l4, 47), (l5, 56)] {
        for linear in [1u64 << bit, !(1u64 << bit), 1 << (bit + 1), !(1 << (bit + 1))] {
            assert_eq!(
                walk(&mem, &regs, linear, write).map(|w| w.gpa),
                Err(WalkFault::NonCanonical),
                "{linear:#x}"
            );
        }
    }

    let off = PagingRegs { cr0: 0, ..pae };
    let w = walk(&mem, &off, 0x1234_5678, write).unwrap();
    assert_eq!((w.gpa, w.page_size), (L1Gpa(0x1234_5678), 4096));

    // 32-bit paging takes the page directory from CR3[31:12] (SDM 4.3), 4-level paging its
    // PML4 from CR3[51:12] (SDM 4.5.2): a CR3 with bit 32 set names 0x1000 in the first,
    // an address past this memory in the second.
    mem.write_u32(L1Gpa(0x1000), 0x2000 | 0x3).unwrap();
    mem.write_u32(L1Gpa(0x2000), 0x6000 | 0x3).unwrap();
    let bits32 = PagingRegs { cr3: 1 << 32 | 0x1000, cr4: 0, ..pae };
    assert_eq!(walk(&mem, &bits32, 0x123, write).map(|w| w.gpa), Ok(L1Gpa(0x6123)));
    mem.write_u64(L1Gpa(0x1000), 0x3000 | 0x3).unwrap();
    let l4_high = PagingRegs { cr3: 1 << 32 | 0x1000, ..l4 };
    assert!(matches!(walk(&mem, &l4_high, 0x123, write), Err(WalkFault::Memory(_))));
}
