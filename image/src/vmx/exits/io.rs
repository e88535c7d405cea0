//! I/O instructions (exit reason 30; qualification SDM Table 28-5): every port access goes to
//! L0's device model. String I/O is not emulated: the guest is stopped with a clear reason.

use nested::exits::ExitInfo;

use crate::machine::PortEffect;
use crate::ratelimit::RateLimit;
use crate::vmx::action::{Action, GuestEnd};
use crate::vmx::guest::Guest;

static STRING_IO: RateLimit = RateLimit::new(4);

pub fn handle(g: &mut Guest, info: &ExitInfo) -> Action {
    let q = info.qualification;
    let size = (q & 7) as u8 + 1;
    let is_in = q & (1 << 3) != 0;
    let string = q & (1 << 4) != 0;
    let port = (q >> 16) as u16;
    if string {
        if STRING_IO.allow() {
            log::error!("guest used string I/O (INS/OUTS) on port {port:#x}: not emulated");
        }
        return Action::Stop(GuestEnd::Failed("string I/O is not emulated"));
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
