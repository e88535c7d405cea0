//! L1's memory as L0's nested code sees it: L1's registers, memory and segments for the VMX
//! instruction emulator ([`L1View`], operands through L1's own paging), EPT01 for the
//! shadow-EPT code ([`Ept01View`]: L1-physical memory in its host blocks, an assigned
//! device's BARs 1:1) and the host frames
//! EPT02's tables live in ([`Frames`]).

use nested::addr::{Hpa, L1Gpa};
use nested::ept::shadow::{Ept01, Ept01Leaf, HostFrames};
use nested::ept::walk::PageSize;
use nested::guest::{Gpr, GuestMemory as L1Memory, GuestRegs as L1Regs, MemError};
use nested::paging::AccessKind;
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::{Exception, L1Access, MemOperand, Segment, SegmentCache};

use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::GuestRegs;
use crate::guest::memory::{Block, GuestMemory};
use crate::mm::frames;

/// L1's registers, memory and segments as the instruction emulator sees them.
pub struct L1View<'a> {
    pub regs: &'a mut GuestRegs,
    pub mem: &'a mut GuestMemory,
    pub v: &'a mut HwVmcs,
}

impl L1Regs for L1View<'_> {
    #[inline]
    fn gpr(&self, r: Gpr) -> u64 {
        vcpu_gpr(self.regs, self.v, r)
    }

    #[inline]
    fn set_gpr(&mut self, r: Gpr, value: u64) {
        set_vcpu_gpr(self.regs, self.v, r, value);
    }
}

impl L1Memory for GuestMemory {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let src = self.slice(gpa.0, buf.len() as u64).ok_or(MemError { gpa })?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        if GuestMemory::write(self, gpa.0, data) { Ok(()) } else { Err(MemError { gpa }) }
    }
}

impl L1Memory for L1View<'_> {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        L1Memory::read(&*self.mem, gpa, buf)
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        L1Memory::write(&mut *self.mem, gpa, data)
    }
}

impl L1View<'_> {
    /// An access of `len` bytes at L1-linear `linear` through L1's paging at L1's CPL
    /// ([`crate::guest::paging::access_linear`]: the processor's faults, A/D flags).
    fn access(
        &mut self,
        linear: u64,
        len: usize,
        kind: AccessKind,
        f: impl FnMut(&mut GuestMemory, L1Gpa, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), Exception> {
        let regs = crate::guest::paging::paging_regs(self.v);
        let user = crate::guest::paging::user_mode(self.v);
        crate::guest::paging::access_linear(&mut *self.mem, &regs, user, linear, len, kind, f)
    }
}

/// The guest's register `r` with RSP from the current VMCS `v` (the saved registers hold
/// the others).
pub fn vcpu_gpr(regs: &GuestRegs, v: &HwVmcs, r: Gpr) -> u64 {
    regs.get(r).unwrap_or_else(|| v.read(F::GuestRsp))
}

/// Sets the guest's register `r`, RSP in the current VMCS `v`.
pub fn set_vcpu_gpr(regs: &mut GuestRegs, v: &mut HwVmcs, r: Gpr, value: u64) {
    match regs.slot(r) {
        Some(slot) => *slot = value,
        None => v.write(F::GuestRsp, value),
    }
}

/// The guest's segment register `seg` as the current VMCS `v` holds it.
pub fn segment_of(v: &HwVmcs, seg: Segment) -> SegmentCache {
    let (limit, ar) = match seg {
        Segment::Es => (F::GuestEsLimit, F::GuestEsArBytes),
        Segment::Cs => (F::GuestCsLimit, F::GuestCsArBytes),
        Segment::Ss => (F::GuestSsLimit, F::GuestSsArBytes),
        Segment::Ds => (F::GuestDsLimit, F::GuestDsArBytes),
        Segment::Fs => (F::GuestFsLimit, F::GuestFsArBytes),
        Segment::Gs => (F::GuestGsLimit, F::GuestGsArBytes),
    };
    SegmentCache {
        base: segment_base_of(v, seg),
        limit: v.read(limit) as u32,
        ar: v.read(ar) as u32,
    }
}

/// The base of the guest's segment register `seg` in the current VMCS `v`.
pub fn segment_base_of(v: &HwVmcs, seg: Segment) -> u64 {
    v.read(match seg {
        Segment::Es => F::GuestEsBase,
        Segment::Cs => F::GuestCsBase,
        Segment::Ss => F::GuestSsBase,
        Segment::Ds => F::GuestDsBase,
        Segment::Fs => F::GuestFsBase,
        Segment::Gs => F::GuestGsBase,
    })
}

impl L1Access for L1View<'_> {
    fn segment_base(&self, seg: Segment) -> u64 {
        segment_base_of(self.v, seg)
    }

    fn segment(&self, seg: Segment) -> SegmentCache {
        segment_of(self.v, seg)
    }

    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception> {
        self.access(op.linear, buf.len(), AccessKind::Read, |mem, gpa, at, n| {
            L1Memory::read(&*mem, gpa, &mut buf[at..at + n])
        })
    }

    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception> {
        self.access(op.linear, data.len(), AccessKind::Write, |mem, gpa, at, n| {
            L1Memory::write(mem, gpa, &data[at..at + n])
        })
    }
}

/// EPT01 as the shadow-EPT code sees it: L1-physical `[0, size)` at host `base`, RWX.
pub struct Ept01View {
    blocks: [Block; 2],
    count: usize,
    /// Host MMIO EPT01 maps 1:1 and uncached (an assigned device's memory BARs).
    mmio: [(u64, u64); MAX_MMIO],
    mmio_count: usize,
}

/// Memory BARs of assigned devices EPT01 may map.
const MAX_MMIO: usize = 6;

impl Ept01View {
    /// EPT01 as `vmx/ept.rs` built it for `memory` and the assigned device's memory BARs
    /// `mmio` (address, size).
    pub fn of(memory: &GuestMemory, mmio: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut view = Ept01View {
            blocks: [Block { gpa: 0, host: 0, size: 0 }; 2],
            count: 0,
            mmio: [(0, 0); MAX_MMIO],
            mmio_count: 0,
        };
        for (slot, b) in view.blocks.iter_mut().zip(memory.blocks()) {
            *slot = *b;
            view.count += 1;
        }
        for (slot, m) in view.mmio.iter_mut().zip(mmio) {
            *slot = m;
            view.mmio_count += 1;
        }
        view
    }
}

/// The host address of L1-physical page `gpa` (4-KiB aligned) when it is L1 RAM, as EPT01
/// maps it (not an assigned device's BAR, not a page L0 models a device on, not a hole).
pub fn ram_page(memory: &GuestMemory, gpa: L1Gpa) -> Option<Hpa> {
    let g = gpa.0;
    memory
        .blocks()
        .iter()
        .find(|b| g >= b.gpa && g - b.gpa < b.size && b.size - (g - b.gpa) >= 4096)
        .map(|b| Hpa(b.host + (g - b.gpa)))
}

/// EPT01's page size (`vmx/ept.rs` maps L1 with 2 MiB pages).
const EPT01_PAGE: u64 = 2 << 20;

impl Ept01 for Ept01View {
    fn translate(&self, gpa: L1Gpa) -> Option<Ept01Leaf> {
        let g = gpa.0;
        if let Some(b) = self.blocks[..self.count].iter().find(|b| g >= b.gpa && g - b.gpa < b.size)
        {
            // EPT01 maps L1 with 2 MiB pages over 2 MiB-aligned host blocks: saying so lets
            // EPT02 map 2 MiB at once where EPT12 does too (one fill instead of 512).
            let size = if (b.gpa | b.host | b.size) & (EPT01_PAGE - 1) == 0 {
                PageSize::Size2M
            } else {
                PageSize::Size4K
            };
            return Some(Ept01Leaf { hpa: Hpa(b.host + (g - b.gpa)), perms: 7, size, memtype: 6 });
        }
        // An assigned device's BAR: 1:1, 4 KiB pages, uncached (EPT02 then is too).
        self.mmio[..self.mmio_count]
            .iter()
            .any(|&(address, size)| g >= address && g - address < size)
            .then_some(Ept01Leaf { hpa: Hpa(g), perms: 7, size: PageSize::Size4K, memtype: 0 })
    }
}

/// Frames for EPT02 tables.
pub struct Frames;

impl HostFrames for Frames {
    fn alloc_zeroed(&mut self) -> Option<Hpa> {
        let frame = frames::alloc(4096, 4096)?;
        // SAFETY: a fresh identity-mapped frame that is ours.
        unsafe { core::ptr::write_bytes(frame as *mut u8, 0, 4096) };
        Some(Hpa(frame))
    }

    fn free(&mut self, frame: Hpa) {
        frames::free(frame.0, 4096);
    }

    fn read_entry(&self, table: Hpa, index: usize) -> u64 {
        // SAFETY: `table` is a frame this allocator handed out; index < 512 by contract.
        unsafe { ((table.0 as *const u64).add(index & 511)).read() }
    }

    fn write_entry(&mut self, table: Hpa, index: usize, value: u64) {
        // SAFETY: as above.
        unsafe { ((table.0 as *mut u64).add(index & 511)).write(value) };
    }
}
