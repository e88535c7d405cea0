//! Thin wrappers over privileged instructions. Reads are safe functions; anything that can
//! change machine state is an `unsafe fn` with a `# Safety` section (the `x86_64` crate's rule).

use core::arch::asm;

/// Reads a model-specific register, or `None` if RDMSR raised #GP.
///
/// Used only for MSRs whose existence CPUID guarantees; an unexpected #GP is reported by the
/// exception handler instead.
pub fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: RDMSR has no memory effects; callers only name MSRs that CPUID says exist.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack)) };
    u64::from(hi) << 32 | u64::from(lo)
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be legal for it; the write may change paging,
/// interrupt or execution state that the rest of the kernel relies on.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller upholds the contract above.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nostack))
    };
}

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port write must not break an invariant of a device the kernel owns.
pub unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller upholds the contract above.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// Reading some device registers has side effects (for example clearing status).
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller upholds the contract above.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

/// CR2: the linear address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack)) };
    value
}

/// Loads CR2 (the guest's CR2 before injecting a #PF: VM entry does not load it).
///
/// # Safety
/// Only the page-fault handler reads CR2; the caller must not be inside one.
pub unsafe fn write_cr2(value: u64) {
    // SAFETY: writing CR2 has no effect besides the register (caller contract above).
    unsafe { asm!("mov cr2, {}", in(reg) value, options(nomem, nostack)) };
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
        // SAFETY: disabling interrupts and halting only stop this CPU.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) };
    }
}

/// CR3: the physical address of the current PML4 (with flags).
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack)) };
    value
}

/// CPUID with a subleaf: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let r = raw_cpuid::native_cpuid::cpuid_count(leaf, subleaf);
    [r.eax, r.ebx, r.ecx, r.edx]
}
