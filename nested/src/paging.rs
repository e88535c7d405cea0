//! Guest paging: linear to guest-physical translation as the processor does it for the guest
//! L0 emulates an instruction of (SDM Vol. 3A ch. 4): an MMIO access's instruction fetch, and
//! the memory operands of L1's VMX instructions. Beside the EPT12 walk ([`crate::ept::walk`]),
//! and like it pure: the paging structures are read through [`GuestMemory`], every entry comes
//! from the guest and is checked as the processor would.
//!
//! * Paging modes (SDM 4.1.1, Table 4-1): none (CR0.PG = 0), 32-bit (4-MiB pages with CR4.PSE,
//!   PSE-36 addresses), PAE (four PDPTEs, from the PDPTE registers when the caller has them),
//!   4-level and 5-level (CR4.LA57).
//! * Permissions (SDM 4.6): U/S and R/W ANDed over the walk, CR0.WP for supervisor writes, XD
//!   ORed over the walk when EFER.NXE = 1, CR4.SMEP. SMAP, protection keys and shadow stacks
//!   are not modelled (L0 emulates neither user-mode nor implicit supervisor accesses).
//! * Reserved bits (SDM 4.3, 4.4.2, 4.5.4): address bits at or above MAXPHYADDR, XD without
//!   EFER.NXE, PS in a PML4E/PML5E, the low address bits of a large page.
//! * Faults are page faults with the error code the processor would push (SDM 4.7); a
//!   non-canonical address in 4-/5-level paging is #GP(0).
//! * Accessed and dirty flags (SDM 4.8) are set only when the translation succeeds, on every
//!   entry used (A) and on the leaf for writes (D): [`walk`] decides, [`Walk::set_accessed_dirty`]
//!   writes them; [`translate`] does both.
//!
//! CR0, CR4 and EFER are the values the processor uses (the VMCS guest fields), not what the
//! guest reads through its read shadows: CR0.PG in particular is guest-owned.

use crate::addr::L1Gpa;
use crate::guest::{GuestMemory, MemError};

/// The control-register bits paging depends on (SDM 2.5, 2.2.1).
pub mod bits {
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_LA57: u64 = 1 << 12;
    pub const CR4_SMEP: u64 = 1 << 20;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
}

/// Paging-structure entry bits (SDM Tables 4-4 to 4-20).
pub mod pte {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const ACCESSED: u64 = 1 << 5;
    pub const DIRTY: u64 = 1 << 6;
    /// PS: the entry maps a page (PDE, PDPTE) instead of referencing a table.
    pub const LARGE: u64 = 1 << 7;
    /// XD (execute-disable), PAE and 4-/5-level paging only.
    pub const XD: u64 = 1 << 63;
    /// Bits 51:12 of a table or 4-KiB page address.
    pub const ADDR: u64 = 0x000f_ffff_ffff_f000;
}

/// Page-fault error code bits (SDM 4.7, Figure 4-12).
pub mod pf {
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const FETCH: u32 = 1 << 4;
}

/// The processor state a translation depends on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PagingRegs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// The guest's physical-address width (CPUID 80000008H, EAX bits 7:0).
    pub maxphyaddr: u8,
    /// PAE paging's PDPTE registers (with EPT the VMCS holds them, SDM 28.3.4); `None` reads
    /// the PDPTEs from the table at CR3 instead.
    pub pdptes: Option<[u64; 4]>,
}

/// The paging mode CR0, CR4 and EFER select (SDM Table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    None,
    Bits32,
    Pae,
    Level4,
    Level5,
}

impl PagingRegs {
    pub const fn mode(&self) -> PagingMode {
        if self.cr0 & bits::CR0_PG == 0 {
            PagingMode::None
        } else if self.cr4 & bits::CR4_PAE == 0 {
            PagingMode::Bits32
        } else if self.efer & bits::EFER_LMA == 0 {
            PagingMode::Pae
        } else if self.cr4 & bits::CR4_LA57 == 0 {
            PagingMode::Level4
        } else {
            PagingMode::Level5
        }
    }

    const fn nxe(&self) -> bool {
        self.efer & bits::EFER_NXE != 0
    }
}

/// The kind of access being translated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Fetch,
}

/// An access: its kind and whether it is a user-mode access (CPL 3, SDM 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub kind: AccessKind,
    pub user: bool,
}

impl Access {
    pub const SUPERVISOR_READ: Access = Access { kind: AccessKind::Read, user: false };
    pub const SUPERVISOR_WRITE: Access = Access { kind: AccessKind::Write, user: false };
}

/// Why a translation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkFault {
    /// #PF with this error code (CR2 is the linear address).
    PageFault { error_code: u32 },
    /// A non-canonical address in 4-/5-level paging: #GP(0) (SDM Vol. 1 3.3.7.1).
    NonCanonical,
    /// A paging structure outside guest memory.
    Memory(MemError),
}

impl From<MemError> for WalkFault {
    fn from(e: MemError) -> Self {
        WalkFault::Memory(e)
    }
}

/// An accessed/dirty update the walk owes an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlagUpdate {
    at: L1Gpa,
    wide: bool,
    set: u64,
}

/// A successful walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Walk {
    pub gpa: L1Gpa,
    /// Bytes of the page that maps the address (4 KiB … 1 GiB).
    pub page_size: u64,
    updates: [Option<FlagUpdate>; 5],
}

impl Walk {
    /// Sets the accessed flags of the entries used and the leaf's dirty flag for a write.
    pub fn set_accessed_dirty<M: GuestMemory + ?Sized>(&self, mem: &mut M) -> Result<(), MemError> {
        for u in self.updates.iter().flatten() {
            if u.wide {
                let e = mem.read_u64(u.at)?;
                mem.write_u64(u.at, e | u.set)?;
            } else {
                let e = mem.read_u32(u.at)?;
                mem.write_u32(u.at, e | u.set as u32)?;
            }
        }
        Ok(())
    }
}

/// Translates and sets the accessed and dirty flags: the processor's full walk.
pub fn translate<M: GuestMemory + ?Sized>(
    mem: &mut M,
    regs: &PagingRegs,
    linear: u64,
    access: Access,
) -> Result<L1Gpa, WalkFault> {
    let w = walk(mem, regs, linear, access)?;
    w.set_accessed_dirty(mem)?;
    Ok(w.gpa)
}

/// Bits of `linear` that select the entry at `level` (1 = PT … 5 = PML5) and the entry size.
struct Geometry {
    index_shift: [u32; 6],
    index_mask: u64,
    wide: bool,
}

const GEOMETRY_32: Geometry =
    Geometry { index_shift: [0, 12, 22, 0, 0, 0], index_mask: 0x3ff, wide: false };
const GEOMETRY_64: Geometry =
    Geometry { index_shift: [0, 12, 21, 30, 39, 48], index_mask: 0x1ff, wide: true };

/// Reserved bits 51:MAXPHYADDR of a 64-bit entry.
fn high_reserved(maxphyaddr: u8) -> u64 {
    let m = u32::from(maxphyaddr.min(52));
    (!0u64 << m) & ((1 << 52) - 1)
}

/// Walks the guest's paging structures for `access` to `linear` without changing them.
pub fn walk<M: GuestMemory + ?Sized>(
    mem: &M,
    regs: &PagingRegs,
    linear: u64,
    access: Access,
) -> Result<Walk, WalkFault> {
    let mode = regs.mode();
    let (geometry, top, linear) = match mode {
        PagingMode::None => {
            let gpa = L1Gpa(linear & 0xffff_ffff);
            return Ok(Walk { gpa, page_size: 1 << 12, updates: [None; 5] });
        }
        PagingMode::Bits32 => (&GEOMETRY_32, 2, linear & 0xffff_ffff),
        PagingMode::Pae => (&GEOMETRY_64, 3, linear & 0xffff_ffff),
        PagingMode::Level4 | PagingMode::Level5 => {
            let width = if mode == PagingMode::Level5 { 57 } else { 48 };
            let top_bits = (linear as i64) >> (width - 1);
            if top_bits != 0 && top_bits != -1 {
                return Err(WalkFault::NonCanonical);
            }
            (&GEOMETRY_64, if mode == PagingMode::Level5 { 5 } else { 4 }, linear)
        }
    };
    let fault = |extra: u32| {
        let mut code = extra;
        if access.kind == AccessKind::Write {
            code |= pf::WRITE;
        }
        if access.user {
            code |= pf::USER;
        }
        let ifetch_reported =
            regs.cr4 & bits::CR4_SMEP != 0 || (regs.cr4 & bits::CR4_PAE != 0 && regs.nxe());
        if access.kind == AccessKind::Fetch && ifetch_reported {
            code |= pf::FETCH;
        }
        WalkFault::PageFault { error_code: code }
    };
    let reserved_hi = high_reserved(regs.maxphyaddr) | if regs.nxe() { 0 } else { pte::XD };

    let mut updates = [None; 5];
    let (mut writable, mut user, mut xd) = (true, true, false);
    let mut table = regs.cr3 & pte::ADDR;
    let mut level = top;
    if mode == PagingMode::Pae {
        // The PDPTEs (SDM 4.4.1): no permission bits, no accessed flag to set.
        let i = ((linear >> 30) & 3) as usize;
        let pdpte = match regs.pdptes {
            Some(p) => p[i],
            None => mem.read_u64(L1Gpa((regs.cr3 & 0xffff_ffe0) + 8 * i as u64))?,
        };
        if pdpte & pte::PRESENT == 0 {
            return Err(fault(0));
        }
        if pdpte & (high_reserved(regs.maxphyaddr) | pte::XD | 0x1e6) != 0 {
            return Err(fault(pf::PRESENT | pf::RSVD));
        }
        table = pdpte & pte::ADDR;
        level = 2;
    } else if mode == PagingMode::Bits32 {
        table = regs.cr3 & 0xffff_f000;
    }

    loop {
        let index = (linear >> geometry.index_shift[level]) & geometry.index_mask;
        let at = L1Gpa(table + index * if geometry.wide { 8 } else { 4 });
        let entry = if geometry.wide { mem.read_u64(at)? } else { u64::from(mem.read_u32(at)?) };
        if entry & pte::PRESENT == 0 {
            return Err(fault(0));
        }
        let large = entry & pte::LARGE != 0
            && match mode {
                PagingMode::Bits32 => level == 2 && regs.cr4 & bits::CR4_PSE != 0,
                _ => level == 2 || level == 3,
            };
        let reserved = if geometry.wide {
            let ps_reserved = if level >= 4 { pte::LARGE } else { 0 };
            let page_low = match (large, level) {
                (true, 2) => 0x001f_e000, // 2-MiB page bits 20:13
                (true, 3) => 0x3fff_e000, // 1-GiB page bits 29:13
                _ => 0,
            };
            reserved_hi | ps_reserved | page_low
        } else if large {
            // PSE-36: bits 20:13 hold address bits 39:32 (below MAXPHYADDR), bit 21 reserved.
            let m = u32::from(regs.maxphyaddr.clamp(32, 40));
            0x003f_e000 & !(((1u64 << (m - 32)) - 1) << 13)
        } else {
            0
        };
        if entry & reserved != 0 {
            return Err(fault(pf::PRESENT | pf::RSVD));
        }
        writable &= entry & pte::WRITABLE != 0;
        user &= entry & pte::USER != 0;
        xd |= regs.nxe() && entry & pte::XD != 0;
        let leaf = level == 1 || large;
        let mut set = if entry & pte::ACCESSED == 0 { pte::ACCESSED } else { 0 };
        if leaf && access.kind == AccessKind::Write && entry & pte::DIRTY == 0 {
            set |= pte::DIRTY;
        }
        updates[level - 1] = (set != 0).then_some(FlagUpdate { at, wide: geometry.wide, set });
        if !leaf {
            table = entry & if geometry.wide { pte::ADDR } else { 0xffff_f000 };
            level -= 1;
            continue;
        }

        let page_size = 1u64 << geometry.index_shift[level];
        let base = if geometry.wide {
            entry & pte::ADDR & !(page_size - 1)
        } else if large {
            (entry & 0xffc0_0000) | ((entry >> 13) & 0xff) << 32
        } else {
            entry & 0xffff_f000
        };
        if !permitted(regs, access, writable, user, xd) {
            return Err(fault(pf::PRESENT));
        }
        let gpa = L1Gpa(base | (linear & (page_size - 1)));
        return Ok(Walk { gpa, page_size, updates });
    }
}

/// The access rights check of SDM 4.6 for the effective rights of a translation.
fn permitted(regs: &PagingRegs, access: Access, writable: bool, user: bool, xd: bool) -> bool {
    let user_ok = !access.user || user;
    match access.kind {
        AccessKind::Read => user_ok,
        AccessKind::Write => {
            let wp = access.user || regs.cr0 & bits::CR0_WP != 0;
            user_ok && (writable || !wp)
        }
        AccessKind::Fetch => {
            let smep = !access.user && user && regs.cr4 & bits::CR4_SMEP != 0;
            user_ok && !xd && !smep
        }
    }
}
