//! Ending a run (the image's own end, not a VM exit: those are `vmx/exits/`). The runner reads the status from a final serial marker line
//! (`turtles: exit status=N`); QEMU's isa-debug-exit (port 0xf4) and Bochs' shutdown port
//! (0x8900) then stop the emulator. Under a turtles L0 port 0xf4 is the guest's exit device.

use crate::arch::cpu;

/// Exit statuses the runner maps to its own exit code (kept in step with `src/runner.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// Everything asked for ran and passed.
    Success = 0,
    /// A panic, an exception, or a failed check.
    Failure = 1,
    /// The CPU has no VMX (or it is disabled), so guests cannot be run.
    NoVmx = 3,
    /// This level's guest misbehaved and was stopped; this level kept running and reported.
    GuestStopped = 4,
}

const QEMU_DEBUG_EXIT: u16 = 0xf4;
const BOCHS_SHUTDOWN: u16 = 0x8900;

/// Prints the exit marker and stops the machine.
pub fn exit(status: Status) -> ! {
    exit_with(status as u8)
}

/// [`exit`] with a raw status: a level passes on its guest's status this way.
pub fn exit_with(code: u8) -> ! {
    crate::drivers::at_exit(code);
    let mut out = crate::console::emergency();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("turtles: exit status={code}\n"));
    crate::console::flush();
    // SAFETY: both ports are emulator exit devices; writing them ends the run or does nothing.
    unsafe {
        cpu::outb(QEMU_DEBUG_EXIT, code);
        for byte in b"Shutdown" {
            cpu::outb(BOCHS_SHUTDOWN, *byte);
        }
    }
    cpu::halt_forever()
}
