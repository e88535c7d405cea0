//! I/O instructions (exit reason 30; qualification SDM Table 28-5): every port access goes to
//! L0's device model. String I/O (INS/OUTS, with or without REP) moves its items between the
//! ports and the guest's memory through the guest's paging (`pc::string_io`); L2's string I/O
//! to a port L1 passes through is not emulated (the guest is stopped with a clear reason).

use nested::arch::{efer, rflags, segment_ar};
use nested::exits::ExitInfo;
use nested::guest::GuestMemory as PhysMemory;
use nested::paging::{AccessKind, PagingRegs};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmx::Exception;
use pc::string_io::{self, StringIo, StringOutcome, StringRegs, StringTarget};

use crate::arch::vmcs::HwVmcs;
use crate::guest::paging::{access_linear, paging_regs, user_mode};
use crate::machine::PortEffect;
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::guest::Guest;

static STRING_IO: RateLimit = RateLimit::new(4);

pub fn handle(g: &mut Guest, v: &HwVmcs, info: &ExitInfo) -> Action {
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
        return Action::Skip;
    }
    match g.devices.write(port, size, g.regs.rax as u32) {
        PortEffect::Exit(status) => Action::Stop(GuestEnd::Exited(status)),
        PortEffect::PowerOff => power_off(),
        PortEffect::Reset => reset(g),
        PortEffect::None => Action::Skip,
    }
}

/// INS/OUTS (SDM Vol. 2): performed item by item against the guest's linear memory; a
/// fault is injected with the completed items kept, a long REP is done in batches.
#[cold]
#[inline(never)]
fn string_io(g: &mut Guest, v: &HwVmcs, info: &ExitInfo) -> Action {
    let port = (info.qualification >> 16) as u16;
    if g.nested.as_ref().is_some_and(|n| n.in_l2) {
        if STRING_IO.allow() {
            log::error!(
                "L2 used string I/O (INS/OUTS) on port {port:#x}, which L1 passes through: not emulated"
            );
        }
        return Action::Stop(GuestEnd::Failed("L2's string I/O to a port of L1 is not emulated"));
    }
    let long_mode =
        v.read(F::GuestIa32Efer) & efer::LMA != 0 && v.read(F::GuestCsArBytes) & segment_ar::L != 0;
    let down = v.read(F::GuestRflags) & rflags::DF != 0;
    let q = info.qualification;
    let Some(op) =
        StringIo::from_exit(q, info.instruction_info, info.guest_linear_address, down, long_mode)
    else {
        log::error!("string I/O exit with undefined encodings (qualification {q:#x}): stopping");
        return Action::Stop(GuestEnd::Failed("string I/O exit information undefined"));
    };
    let mut regs = StringRegs { rcx: g.regs.rcx, rsi: g.regs.rsi, rdi: g.regs.rdi };
    let paging = paging_regs(v);
    let user = user_mode(v);
    let outcome = string_io::perform(&op, &mut regs, &mut Linear { g: &mut *g, paging, user });
    (g.regs.rcx, g.regs.rsi, g.regs.rdi) = (regs.rcx, regs.rsi, regs.rdi);
    match outcome {
        StringOutcome::Done => Action::Skip,
        StringOutcome::Again => Action::Resume,
        StringOutcome::Fault(e) => {
            if let Some(cr2) = e.cr2 {
                // SAFETY: not in a page-fault handler; CR2 is the guest's from here to the
                // entry that injects the #PF.
                unsafe { crate::arch::cpu::write_cr2(cr2) };
            }
            Action::Inject(e.vector, e.error_code)
        }
        StringOutcome::Effect(PortEffect::Exit(status)) => Action::Stop(GuestEnd::Exited(status)),
        StringOutcome::Effect(PortEffect::PowerOff) => power_off(),
        StringOutcome::Effect(PortEffect::Reset) => reset(g),
        StringOutcome::Effect(PortEffect::None) => Action::Skip,
    }
}

/// The guest's linear memory through its own paging, and its ports.
struct Linear<'a> {
    g: &'a mut Guest,
    paging: PagingRegs,
    user: bool,
}

impl StringTarget<Exception, PortEffect> for Linear<'_> {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Exception> {
        let (len, kind) = (buf.len(), AccessKind::Read);
        access_linear(
            &mut self.g.memory,
            &self.paging,
            self.user,
            linear,
            len,
            kind,
            |m, gpa, at, n| PhysMemory::read(&*m, gpa, &mut buf[at..at + n]),
        )
    }

    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), Exception> {
        let (len, kind) = (data.len(), AccessKind::Write);
        access_linear(
            &mut self.g.memory,
            &self.paging,
            self.user,
            linear,
            len,
            kind,
            |m, gpa, at, n| PhysMemory::write(m, gpa, &data[at..at + n]),
        )
    }

    fn port_in(&mut self, port: u16, size: u8) -> u32 {
        self.g.devices.read(port, size)
    }

    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Option<PortEffect> {
        match self.g.devices.write(port, size, value) {
            PortEffect::None => None,
            effect => Some(effect),
        }
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
