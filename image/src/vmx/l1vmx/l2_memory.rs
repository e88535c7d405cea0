//! L2's memory for an instruction L0 performs for L1 in L2 when vmcs12 enables EPT: string
//! I/O (INS/OUTS) to a port L1 passes through, which exits to L0 only because vmcs02 traps
//! every port L0 does not pass through itself, and the memory operand of a VMREAD/VMWRITE
//! that vmcs12's VMCS shadowing lets through to L1's shadow VMCS ([`shadow_vmcs_access`]),
//! which exits to L0 only because vmcs02 has no VMCS shadowing.
//!
//! On hardware the instruction's memory accesses go through L2's paging and then EPT12. L0
//! makes each access the way its own EPT02 would see it: the L2-physical page is first made
//! present in EPT02 for that access by the same code that handles L2's EPT violations
//! (`ShadowEpt::handle_violation`: the EPT12 walk and permissions, EPT12's accessed/dirty
//! flags and L1's page-modification log, EPT01), then read or written in L1's memory at
//! the address EPT12 gives. An access L1 must see fails the instruction at that item, with
//! the items before it done (as a REP string instruction leaves RCX/RSI/RDI), and becomes
//! L1's exit: an EPT violation (with the guest-linear address, and bit 8 telling the data
//! from a paging-structure access), an EPT misconfiguration, or a full page-modification
//! log. Faults of L2's own paging are #PF in L2 (or L1's exception exit,
//! `l2_exit::raise_in_l2`).
//!
//! Left as the README says: L2's paging-structure reads count as reads for EPT12's
//! accessed/dirty flags (with EPT A/D enabled the processor treats them as writes), and an
//! item EPT12 places on a device page L0 models for L1 (its APIC) is an EPT violation for L1.

use core::cell::{Cell, RefCell};

use nested::addr::{L1Gpa, L2Gpa};
use nested::caps::{VmxCaps, proc2};
use nested::ept::shadow::{PmlLog, Resolution, ShadowEpt};
use nested::ept::walk::{bits, walk_ept12};
use nested::exits::routing::secondary_controls;
use nested::exits::{ExitInfo, ExitReason};
use nested::guest::{Gpr, GuestMemory as PhysMemory, GuestRegs as L1Regs, MemError};
use nested::paging::{AccessKind, PagingRegs};
use nested::vmx::{
    Exception, L1Access, L1Cpu, MemOperand, NestedVmx, Segment, SegmentCache, VmxResult,
};
use pc::string_io::{self, StringRegs};

use super::l1_memory::{
    Ept01View, Frames, L1View, segment_base_of, segment_of, set_vcpu_gpr, vcpu_gpr,
};
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::GuestRegs;
use crate::guest::memory::GuestMemory;
use crate::guest::paging::{access_linear, paging_regs, user_mode};
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::exits::io::{LinearMemory, PortsOf, decode_string, string_done};
use crate::vmx::guest::Guest;

/// INS/OUTS by L2 on a port L1 passes through, with EPT12 (see the module docs). The exit
/// an item runs into is L1's: `reflect` sends it (vmcs02 still current).
pub fn string_io(
    g: &mut Guest,
    v02: &mut HwVmcs,
    info: &ExitInfo,
    reflect: fn(&mut Guest, &mut HwVmcs, &ExitInfo) -> Action,
) -> Action {
    let Some(op) = decode_string(v02, info) else {
        return Action::Stop(GuestEnd::Failed("string I/O exit information undefined"));
    };
    let Some(n) = g.nested.as_mut() else { return Action::Resume };
    let mut regs = StringRegs { rcx: g.regs.rcx, rsi: g.regs.rsi, rdi: g.regs.rdi };
    let ept01 = Ept01View::of(&g.memory, g.devices.assigned_mmio());
    let mut ctx = Ept12::of(&n.vmx);
    let inner =
        Inner { memory: &mut g.memory, shadow: &mut n.shadow, ctx: &mut ctx, ept01, exit: None };
    let mem = L2Linear::new(inner, v02, info);
    let mut target = PortsOf { devices: &mut g.devices, mem };
    let outcome = string_io::perform(&op, &mut regs, &mut target);
    let exit = target.mem.phys.inner.into_inner().exit;
    ctx.done(&mut n.vmx);
    (g.regs.rcx, g.regs.rsi, g.regs.rdi) = (regs.rcx, regs.rsi, regs.rdi);
    match (outcome, exit) {
        (string_io::StringOutcome::Fault(_), Some(exit)) => reflect(g, v02, &exit),
        (outcome, _) => string_done(g, outcome),
    }
}

/// L2's linear memory: its paging (vmcs02's guest state) over [`L2Phys`].
struct L2Linear<'a> {
    phys: L2Phys<'a>,
    paging: PagingRegs,
    user: bool,
}

impl LinearMemory for L2Linear<'_> {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Exception> {
        self.access(linear, buf.len(), AccessKind::Read, |m, gpa, at, n| {
            PhysMemory::read(&*m, gpa, &mut buf[at..at + n])
        })
    }

    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Exception> {
        self.access(linear, data.len(), AccessKind::Write, |m, gpa, at, n| {
            PhysMemory::write(m, gpa, &data[at..at + n])
        })
    }
}

impl<'a> L2Linear<'a> {
    /// L2's linear memory for the instruction of exit `info` (vmcs02 current).
    fn new(inner: Inner<'a>, v02: &HwVmcs, info: &ExitInfo) -> Self {
        let phys = L2Phys {
            inner: RefCell::new(inner),
            data: Cell::new(false),
            linear: 0,
            instruction_len: info.instruction_len,
        };
        L2Linear { phys, paging: paging_regs(v02), user: user_mode(v02) }
    }

    /// An item's access at `linear`: L2's paging walk (paging-structure accesses), then
    /// `data` on each page (the data's accesses, exit-qualification bit 8).
    fn access(
        &mut self,
        linear: u64,
        len: usize,
        kind: AccessKind,
        mut data: impl FnMut(&mut L2Phys<'_>, L1Gpa, usize, usize) -> Result<(), MemError>,
    ) -> Result<(), Exception> {
        self.phys.linear = linear;
        access_linear(
            &mut self.phys,
            &self.paging,
            self.user,
            linear,
            len,
            kind,
            |m, gpa, at, n| {
                m.data.set(true);
                let done = data(m, gpa, at, n);
                m.data.set(false);
                done
            },
        )
    }
}

/// L2-physical memory as L2's accesses reach it through EPT02 (the addresses it takes are
/// L2 guest-physical, though [`PhysMemory`] names them `L1Gpa`).
struct L2Phys<'a> {
    inner: RefCell<Inner<'a>>,
    /// The access under way is the data's, not a paging-structure entry's.
    data: Cell<bool>,
    /// The guest-linear address of the item under way.
    linear: u64,
    instruction_len: u32,
}

struct Inner<'a> {
    memory: &'a mut GuestMemory,
    shadow: &'a mut ShadowEpt,
    ctx: &'a mut Ept12,
    ept01: Ept01View,
    /// The exit for L1 an access ran into.
    exit: Option<ExitInfo>,
}

/// What EPT02 fills for L2's accesses read from vmcs12 (copied, so that L1's VMX state stays
/// free for the instruction L0 performs), and the PML index they advance ([`Ept12::done`]
/// stores it back).
struct Ept12 {
    eptp: u64,
    caps: VmxCaps,
    maxphyaddr: u8,
    /// vmcs12's PML address and index, when it logs.
    pml: Option<(u64, u16)>,
}

impl Ept12 {
    fn of(vmx: &NestedVmx) -> Self {
        let v12 = &vmx.vmcs12;
        let pml = (secondary_controls(v12) & proc2::ENABLE_PML != 0)
            .then_some((v12.pml_address, v12.guest_pml_index));
        Ept12 { eptp: v12.ept_pointer, caps: vmx.caps, maxphyaddr: vmx.maxphyaddr, pml }
    }

    /// The PML index the accesses advanced, back into vmcs12.
    fn done(&self, vmx: &mut NestedVmx) {
        if let Some((_, index)) = self.pml {
            vmx.vmcs12.guest_pml_index = index;
        }
    }
}

impl L2Phys<'_> {
    /// Makes the page of L2-physical `gpa` present in EPT02 for a read or write, as an EPT
    /// violation there would; returns its L1-physical address, or records L1's exit.
    fn prepare(&self, gpa: u64, write: bool) -> Result<L1Gpa, MemError> {
        let fail = Err(MemError { gpa: L1Gpa(gpa) });
        let mut inner = self.inner.borrow_mut();
        let Inner { memory, shadow, ctx, ept01, exit } = &mut *inner;
        let access = if write { bits::WRITE } else { bits::READ };
        let translation = if self.data.get() { 1 << 8 } else { 0 };
        let violation = ExitInfo {
            reason: u32::from(ExitReason::EptViolation.number()),
            qualification: access | 1 << 7 | translation,
            instruction_len: self.instruction_len,
            guest_physical_address: gpa,
            guest_linear_address: self.linear,
            ..ExitInfo::default()
        };
        let (eptp12, caps, maxphyaddr) = (ctx.eptp, ctx.caps, ctx.maxphyaddr);
        let pml = ctx.pml.as_mut().map(|(address, index)| PmlLog { address: *address, index });
        let resolution = shadow.handle_violation(
            eptp12,
            &violation,
            *memory,
            ept01,
            &mut Frames,
            &caps,
            maxphyaddr,
            pml,
        );
        let for_l1 = |reason: ExitReason, qualification: u64| ExitInfo {
            reason: u32::from(reason.number()),
            qualification,
            ..violation
        };
        match resolution {
            Ok(Resolution::Fixed) => {}
            Ok(Resolution::ReflectViolation { qualification }) => {
                *exit = Some(for_l1(ExitReason::EptViolation, qualification));
                return fail;
            }
            Ok(Resolution::ReflectMisconfig) => {
                *exit = Some(for_l1(ExitReason::EptMisconfig, 0));
                return fail;
            }
            Ok(Resolution::PmlFull) => {
                *exit = Some(for_l1(ExitReason::PmlFull, 0));
                return fail;
            }
            Ok(Resolution::L1Unmapped(_) | Resolution::L0Denied(_)) => {
                log::warn!(
                    "L2 string I/O item at guest-physical {gpa:#x}: EPT12 maps it outside L1's \
                     memory or onto a device page: an EPT violation for L1"
                );
                *exit = Some(violation);
                return fail;
            }
            Err(e) => {
                log::error!("L2 string I/O item at guest-physical {gpa:#x}: EPT02: {e:?}");
                return fail;
            }
        }
        match walk_ept12(&**memory, eptp12, L2Gpa(gpa), &caps, maxphyaddr) {
            Ok(leaf) => Ok(leaf.l1gpa),
            Err(_) => fail,
        }
    }
}

impl PhysMemory for L2Phys<'_> {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        for_each_page(gpa.0, buf.len(), |at, from, len| {
            let l1 = self.prepare(at, false)?;
            PhysMemory::read(&*self.inner.borrow().memory, l1, &mut buf[from..from + len])
        })
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        for_each_page(gpa.0, data.len(), |at, from, len| {
            let l1 = self.prepare(at, true)?;
            PhysMemory::write(&mut *self.inner.get_mut().memory, l1, &data[from..from + len])
        })
    }
}

/// Calls `f(address, offset, length)` for each page-bounded piece of `[gpa, gpa + len)`.
fn for_each_page(
    gpa: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), MemError>,
) -> Result<(), MemError> {
    let mut done = 0;
    while done < len {
        let at = gpa.wrapping_add(done as u64);
        let chunk = (4096 - (at & 0xfff) as usize).min(len - done);
        f(at, done, chunk)?;
        done += chunk;
    }
    Ok(())
}

/// VMREAD/VMWRITE by L2 that vmcs12's VMCS shadowing may let through
/// (`nested::vmx::shadow12`): performed on L1's shadow VMCS, with L2's operands through L2's
/// paging and, when vmcs12 has EPT, EPT12 (each page made present in EPT02 as for string
/// I/O, above). `Ok(None)`: the exit is L1's after all (its bitmap bit, or bits 63:32 of the
/// field encoding in 64-bit mode). `Err`: the memory operand ran into an exit for L1 (an EPT
/// violation or misconfiguration, a full PML log) and nothing was done.
pub fn shadow_vmcs_access(
    g: &mut Guest,
    v02: &mut HwVmcs,
    info: &ExitInfo,
    cpu: &L1Cpu,
) -> Result<Option<VmxResult>, ExitInfo> {
    let write = matches!(info.exit_reason(), Some(ExitReason::Vmwrite));
    let Some(n) = g.nested.as_mut() else { return Ok(None) };
    if secondary_controls(&n.vmx.vmcs12) & proc2::ENABLE_EPT == 0 {
        // L2-physical is L1-physical: L1's memory through L2's paging.
        let mut view = L1View { regs: &mut g.regs, mem: &mut g.memory, v: v02 };
        return Ok(n.vmx.l2_shadow_access(write, info, cpu, &mut view));
    }
    let ept01 = Ept01View::of(&g.memory, g.devices.assigned_mmio());
    let mut ctx = Ept12::of(&n.vmx);
    let inner =
        Inner { memory: &mut g.memory, shadow: &mut n.shadow, ctx: &mut ctx, ept01, exit: None };
    let lin = L2Linear::new(inner, v02, info);
    let mut ops = L2Operands { regs: &mut g.regs, v: v02, lin };
    let result = n.vmx.l2_shadow_access(write, info, cpu, &mut ops);
    let exit = ops.lin.phys.inner.into_inner().exit;
    ctx.done(&mut n.vmx);
    match exit {
        Some(exit) => Err(exit),
        None => Ok(result),
    }
}

/// L2's registers, segments and memory operands (through [`L2Linear`]), with L1's physical
/// memory behind them: what a VMX instruction of L2's reads and writes.
struct L2Operands<'a> {
    regs: &'a mut GuestRegs,
    v: &'a mut HwVmcs,
    lin: L2Linear<'a>,
}

impl L1Regs for L2Operands<'_> {
    fn gpr(&self, r: Gpr) -> u64 {
        vcpu_gpr(self.regs, self.v, r)
    }

    fn set_gpr(&mut self, r: Gpr, value: u64) {
        set_vcpu_gpr(self.regs, self.v, r, value);
    }
}

impl PhysMemory for L2Operands<'_> {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        PhysMemory::read(&*self.lin.phys.inner.borrow().memory, gpa, buf)
    }

    fn write(&mut self, gpa: L1Gpa, data: &[u8]) -> Result<(), MemError> {
        PhysMemory::write(&mut *self.lin.phys.inner.get_mut().memory, gpa, data)
    }
}

impl L1Access for L2Operands<'_> {
    fn segment_base(&self, seg: Segment) -> u64 {
        segment_base_of(self.v, seg)
    }

    fn segment(&self, seg: Segment) -> SegmentCache {
        segment_of(self.v, seg)
    }

    fn read_operand(&mut self, op: &MemOperand, buf: &mut [u8]) -> Result<(), Exception> {
        self.lin.read(op.linear, buf)
    }

    fn write_operand(&mut self, op: &MemOperand, data: &[u8]) -> Result<(), Exception> {
        self.lin.write(op.linear, data)
    }
}
