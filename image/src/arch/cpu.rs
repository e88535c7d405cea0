//! Thin wrappers over privileged instructions, most of them the `x86_64` crate's. Reads are safe functions; anything that can
//! change machine state is an `unsafe fn` with a `# Safety` section (the `x86_64` crate's rule).

use core::arch::asm;

use x86_64::instructions::{self, interrupts, port::Port};
use x86_64::registers::control::{Cr2, Cr3};
use x86_64::registers::model_specific::Msr;

/// Reads a model-specific register.
///
/// Used for MSRs whose existence CPUID guarantees; an unexpected #GP goes to the exception
/// handler, which reports it and ends the run.
pub fn rdmsr(msr: u32) -> u64 {
    // SAFETY: RDMSR has no memory effects; callers name MSRs that CPUID says exist, and a #GP
    // for one that does not is reported by the exception handler, never ignored.
    unsafe { Msr::new(msr).read() }
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be legal for it; the write may change paging,
/// interrupt or execution state that the rest of the kernel relies on.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe { Msr::new(msr).write(value) };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port write must not break an invariant of a device the kernel owns.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller upholds the contract above.
    unsafe { Port::<u8>::new(port).write(value) };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some device registers has side effects (for example clearing status).
pub unsafe fn inb(port: u16) -> u8 {
    // SAFETY: the caller upholds the contract above.
    unsafe { Port::<u8>::new(port).read() }
}

/// CR2: the linear address of the last page fault.
pub fn cr2() -> u64 {
    Cr2::read_raw()
}

/// Loads CR2 (the guest's CR2 before injecting a #PF: VM entry does not load it).
///
/// # Safety
/// Only the page-fault handler reads CR2; the caller must not be inside one.
pub unsafe fn write_cr2(value: u64) {
    // SAFETY: writing CR2 has no effect besides the register (caller contract above).
    unsafe { asm!("mov cr2, {}", in(reg) value, options(nomem, nostack)) };
}

/// CR8: the task-priority class of this processor's local APIC (TPR bits 7:4).
pub fn cr8() -> u64 {
    let value: u64;
    // SAFETY: reading CR8 has no side effects (64-bit mode, CPL 0).
    unsafe { asm!("mov {}, cr8", out(reg) value, options(nomem, nostack)) };
    value
}

/// Loads CR8 (TPR bits 7:4 from `value` bits 3:0).
///
/// # Safety
/// Raising the priority holds back this processor's lower-priority interrupts until it is
/// lowered again; bits 63:4 must be clear (else #GP).
pub unsafe fn write_cr8(value: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe { asm!("mov cr8, {}", in(reg) value, options(nomem, nostack)) };
}

/// DR0-DR3: the breakpoint addresses of the level that runs (L0 never writes them).
pub fn debug_addresses() -> [u64; 4] {
    let (d0, d1, d2, d3): (u64, u64, u64, u64);
    // SAFETY: reading debug registers has no side effects at CPL 0 (DR7.GD is clear in L0:
    // every VM exit clears DR7).
    unsafe {
        asm!("mov {}, dr0", out(reg) d0, options(nomem, nostack));
        asm!("mov {}, dr1", out(reg) d1, options(nomem, nostack));
        asm!("mov {}, dr2", out(reg) d2, options(nomem, nostack));
        asm!("mov {}, dr3", out(reg) d3, options(nomem, nostack));
    }
    [d0, d1, d2, d3]
}

/// The time-stamp counter (in Bochs: emulated instructions).
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDTSC has no side effects (CR4.TSD is clear in our kernel).
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Stops this CPU for good: interrupts off, HLT forever.
pub fn halt_forever() -> ! {
    loop {
        interrupts::disable();
        instructions::hlt();
    }
}

/// STI; HLT; CLI: waits for an interrupt with interrupts enabled (STI's shadow covers the HLT,
/// so none slips in between), then disables them again. Under a turtles hypervisor each one
/// is a HLT exit it resumes at once.
pub fn hlt_with_interrupts() {
    interrupts::enable_and_hlt();
    interrupts::disable();
}

/// CR3: the physical address of the current PML4 (with the PCID or flag bits).
pub fn cr3() -> u64 {
    let (frame, low) = Cr3::read_raw();
    frame.start_address().as_u64() | u64::from(low)
}

/// Executes UD2: raises #UD on purpose (the self-tests of the exception path). The exception
/// handler ends the run; were it to return, UD2 would fault again.
pub fn ud2() {
    // SAFETY: UD2 only raises #UD, which the IDT handles.
    unsafe { asm!("ud2", options(nomem, nostack)) };
}

/// CPUID with a subleaf: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = raw_cpuid::native_cpuid::cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}
