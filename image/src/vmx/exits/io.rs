//! I/O instructions (exit reason 30; qualification SDM Table 28-5): every port access goes to
//! L0's device model. String I/O (INS/OUTS, with or without REP) moves its items between the
//! ports and the guest's memory through the guest's paging (`pc::string_io`). This file does
//! it for L1, and for L2 on a port L1 passes through when vmcs12 does not enable EPT (L2's
//! physical memory is then L1's); with EPT12, L2's memory goes through EPT12 and EPT02
//! (`l1vmx::l2_memory`), which uses [`decode_string`], [`PortsOf`] and [`string_done`].

use nested::arch::{BreakAccess, efer, rflags, segment_ar};
use nested::exits::ExitInfo;
use nested::guest::GuestMemory as PhysMemory;
use nested::paging::{AccessKind, PagingRegs};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::Exception;
use pc::string_io::{self, StringIo, StringOutcome, StringRegs, StringTarget};

use crate::arch::vmcs::HwVmcs;
use crate::guest::memory::GuestMemory;
use crate::guest::paging::{access_linear, paging_regs, user_mode};
use crate::machine::{Devices, PortEffect};
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd, breakpoints};
use crate::vmx::guest::Guest;

static STRING_IO: RateLimit = RateLimit::new(4);

pub fn handle(g: &mut Guest, v: &mut HwVmcs, info: &ExitInfo) -> Action {
    let q = info.qualification;
    let size = (q & 7) as u8 + 1;
    let is_in = q & (1 << 3) != 0;
    let string = q & (1 << 4) != 0;
    let port = (q >> 16) as u16;
    if string {
        return string_io(g, v, info);
    }
    if is_in {
        let value = u64::from(g.devices.read(port, size));
        let mask = match size {
            1 => 0xff,
            2 => 0xffff,
            _ => 0xffff_ffff,
        };
        // IN to AL/AX keeps the rest of RAX; IN to EAX zero-extends into RAX.
        g.regs.rax = if size == 4 { value & mask } else { (g.regs.rax & !mask) | (value & mask) };
    } else {
        match g.devices.write(port, size, g.regs.rax as u32) {
            PortEffect::Exit(status) => return Action::Stop(GuestEnd::Exited(status)),
            PortEffect::PowerOff => return power_off(),
            PortEffect::Reset => return reset(g),
            PortEffect::None => {}
        }
    }
    breakpoints(v, BreakAccess::Io, u64::from(port), u64::from(size));
    Action::Skip
}

/// INS/OUTS (SDM Vol. 2): performed item by item against the guest's linear memory; a
/// fault is injected with the completed items kept, a long REP is done in batches.
#[cold]
#[inline(never)]
fn string_io(g: &mut Guest, v: &HwVmcs, info: &ExitInfo) -> Action {
    let Some(op) = decode_string(v, info) else {
        return Action::Stop(GuestEnd::Failed("string I/O exit information undefined"));
    };
    let mut regs = StringRegs { rcx: g.regs.rcx, rsi: g.regs.rsi, rdi: g.regs.rdi };
    let paging = paging_regs(v);
    let user = user_mode(v);
    let mut target =
        PortsOf { devices: &mut g.devices, mem: Linear { memory: &mut g.memory, paging, user } };
    let outcome = string_io::perform(&op, &mut regs, &mut target);
    (g.regs.rcx, g.regs.rsi, g.regs.rdi) = (regs.rcx, regs.rsi, regs.rdi);
    string_done(g, outcome)
}

/// The string I/O operation of the guest's exit `info` (`v` its VMCS, current), or `None`
/// (logged) when the exit information has undefined encodings.
pub fn decode_string(v: &HwVmcs, info: &ExitInfo) -> Option<StringIo> {
    let long_mode =
        v.read(F::GuestIa32Efer) & efer::LMA != 0 && v.read(F::GuestCsArBytes) & segment_ar::L != 0;
    let down = v.read(F::GuestRflags) & rflags::DF != 0;
    let q = info.qualification;
    let op =
        StringIo::from_exit(q, info.instruction_info, info.guest_linear_address, down, long_mode);
    if op.is_none() && STRING_IO.allow() {
        log::error!("string I/O exit with undefined encodings (qualification {q:#x}): stopping");
    }
    op
}

/// What the run loop does after string I/O ended with `outcome` (the registers are updated).
pub fn string_done(g: &mut Guest, outcome: StringOutcome<Exception, PortEffect>) -> Action {
    match outcome {
        StringOutcome::Done => Action::Skip,
        StringOutcome::Again => Action::Resume,
        StringOutcome::Fault(e) => Action::raise(e),
        StringOutcome::Effect(PortEffect::Exit(status)) => Action::Stop(GuestEnd::Exited(status)),
        StringOutcome::Effect(PortEffect::PowerOff) => power_off(),
        StringOutcome::Effect(PortEffect::Reset) => reset(g),
        StringOutcome::Effect(PortEffect::None) => Action::Skip,
    }
}

/// The guest's linear memory, as string I/O moves items through it.
pub trait LinearMemory {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Exception>;
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Exception>;
}

/// The guest's ports (L0's device model) and linear memory `mem`: what string I/O moves
/// items between.
pub struct PortsOf<'a, M: LinearMemory> {
    pub devices: &'a mut Devices,
    pub mem: M,
}

impl<M: LinearMemory> StringTarget<Exception, PortEffect> for PortsOf<'_, M> {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Exception> {
        self.mem.read(linear, buf)
    }

    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Exception> {
        self.mem.write(linear, data)
    }

    fn port_in(&mut self, port: u16, size: u8) -> u32 {
        self.devices.read(port, size)
    }

    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Option<PortEffect> {
        match self.devices.write(port, size, value) {
            PortEffect::None => None,
            effect => Some(effect),
        }
    }
}

/// The guest's linear memory through its own paging, in its physical memory `memory`.
struct Linear<'a> {
    memory: &'a mut GuestMemory,
    paging: PagingRegs,
    user: bool,
}

impl LinearMemory for Linear<'_> {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Exception> {
        let (len, kind) = (buf.len(), AccessKind::Read);
        access_linear(self.memory, &self.paging, self.user, linear, len, kind, |m, gpa, at, n| {
            PhysMemory::read(&*m, gpa, &mut buf[at..at + n])
        })
    }

    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Exception> {
        let (len, kind) = (data.len(), AccessKind::Write);
        access_linear(self.memory, &self.paging, self.user, linear, len, kind, |m, gpa, at, n| {
            PhysMemory::write(m, gpa, &data[at..at + n])
        })
    }
}

#[cold]
#[inline(never)]
fn power_off() -> Action {
    log::info!("guest: powered off (ACPI S5)");
    Action::Stop(GuestEnd::Exited(0))
}

/// A reset (a reboot, or the restart after a Linux panic with `panic=-1`): the guest is
/// stopped and its last console lines are reported.
#[cold]
#[inline(never)]
fn reset(g: &Guest) -> Action {
    log::error!("guest: reset the machine (a reboot, or a kernel panic's restart)");
    for line in g.devices.com1.recent() {
        log::error!("guest: last console line: {line}");
    }
    Action::Stop(GuestEnd::Failed("the guest reset the machine"))
}
