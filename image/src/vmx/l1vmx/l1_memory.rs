//! L1's memory as L0's nested code sees it: L1's registers, memory and segments for the VMX
//! instruction emulator ([`L1View`], operands through L1's own paging), EPT01 for the
//! shadow-EPT code ([`Ept01View`]: L1-physical memory at its host base) and the host frames
//! EPT02's tables live in ([`Frames`]).

use nested::addr::{Hpa, L1Gpa};
use nested::ept::shadow::{Ept01, Ept01Leaf, HostFrames};
use nested::ept::walk::PageSize;
use nested::guest::{Gpr, GuestMemory as L1Memory, GuestRegs as L1Regs, MemError};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::{Exception, L1Access, MemOperand, Segment};

use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::GuestRegs;
use crate::guest::memory::GuestMemory;
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
        self.regs.get(r).unwrap_or_else(|| self.v.read(F::GuestRsp))
    }

    #[inline]
    fn set_gpr(&mut self, r: Gpr, value: u64) {
        match self.regs.slot(r) {
            Some(slot) => *slot = value,
            None => self.v.write(F::GuestRsp, value),
        }
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
    /// L1's linear address to L1-physical through L1's paging. A missing translation is
    /// reported as #GP(0) (L0 does not synthesize #PF for emulated operands yet).
    fn translate(&self, linear: u64) -> Result<u64, Exception> {
        crate::guest::paging::translate(self.v, self.mem, linear).ok_or(Exception::GP0)
    }

    /// Copies between L1 linear memory and `buf`, page by page.
    fn access(
        &mut self,
        linear: u64,
        len: usize,
        mut f: impl FnMut(&mut Self, u64, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), Exception> {
        let mut done = 0;
        while done < len {
            let at = linear.wrapping_add(done as u64);
            let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
            let gpa = self.translate(at)?;
            f(self, gpa, done, chunk).map_err(|_| Exception::GP0)?;
            done += chunk;
        }
        Ok(())
    }
}

impl L1Access for L1View<'_> {
    fn segment_base(&self, seg: Segment) -> u64 {
        self.v.read(match seg {
            Segment::Es => F::GuestEsBase,
            Segment::Cs => F::GuestCsBase,
            Segment::Ss => F::GuestSsBase,
            Segment::Ds => F::GuestDsBase,
            Segment::Fs => F::GuestFsBase,
            Segment::Gs => F::GuestGsBase,
        })
    }

    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception> {
        self.access(op.linear, buf.len(), |s, gpa, at, n| {
            L1Memory::read(&*s.mem, L1Gpa(gpa), &mut buf[at..at + n])
        })
    }

    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception> {
        self.access(op.linear, data.len(), |s, gpa, at, n| {
            L1Memory::write(&mut *s.mem, L1Gpa(gpa), &data[at..at + n])
        })
    }
}

/// EPT01 as the shadow-EPT code sees it: L1-physical `[0, size)` at host `base`, RWX.
pub struct Ept01View {
    pub base: u64,
    pub size: u64,
}

/// EPT01's page size (`vmx/ept.rs` maps L1 with 2 MiB pages).
const EPT01_PAGE: u64 = 2 << 20;

impl Ept01 for Ept01View {
    fn translate(&self, gpa: L1Gpa) -> Option<Ept01Leaf> {
        // EPT01 maps L1 with 2 MiB pages over one 2 MiB-aligned host block: saying so lets
        // EPT02 map 2 MiB at once where EPT12 does too (one fill instead of 512).
        let size = if (self.base | self.size) & (EPT01_PAGE - 1) == 0 {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        };
        (gpa.0 < self.size).then(|| Ept01Leaf {
            hpa: Hpa(self.base + gpa.0),
            perms: 7,
            size,
            memtype: 6,
        })
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
