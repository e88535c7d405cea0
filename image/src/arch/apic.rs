//! The processor's own local APIC and the platform's I/O APIC, as far as L0 (or turtles at any
//! level, whose "real" ones are the level below's models) uses them: to take one forwarded
//! device interrupt (`vmx::intx`). L0 runs with RFLAGS.IF clear; the interrupt reaches it as
//! an external-interrupt VM exit acknowledged on exit (SDM Vol. 3C 27.2.2), so no IDT entry
//! is involved: L0 only programs the I/O APIC entry, masks and unmasks it, sends the local
//! APIC's EOI, and reads its IRR while it waits in a halted guest's loop.
//!
//! Local APIC registers in xAPIC mode at the page IA32_APIC_BASE names, or as the x2APIC MSRs
//! 800h + offset/16 when IA32_APIC_BASE.EXTD is set (SDM Vol. 3A 11.4.4, 12.12.1). The I/O
//! APIC's window is at 0xfec00000 (`pc::ioapic::IOAPIC_BASE`, the MADT default); both pages
//! are in the identity map's uncached top GiB.

use pc::ioapic::{IOAPIC_BASE, offset, redir, reg};

use super::cpu;

/// IA32_APIC_BASE (SDM Vol. 3A 11.4.4).
const IA32_APIC_BASE: u32 = 0x1b;
/// IA32_APIC_BASE.EXTD: x2APIC mode.
const APIC_BASE_EXTD: u64 = 1 << 10;
/// IA32_APIC_BASE bits 35:12 (the xAPIC page; the processor's physical width bounds them).
const APIC_BASE_MASK: u64 = 0xf_ffff_f000;
/// The first x2APIC MSR (register offset 0).
const X2APIC_MSR_BASE: u32 = 0x800;

/// Local APIC register offsets (SDM Vol. 3A table 11-1).
mod lreg {
    pub const ID: u32 = 0x20;
    pub const TPR: u32 = 0x80;
    pub const EOI: u32 = 0xb0;
    pub const SVR: u32 = 0xf0;
    /// IRR bits 31:0; bits 32n+31:32n at `IRR + 0x10 * n`.
    pub const IRR: u32 = 0x200;
}
/// SVR bit 8: APIC software enable.
const SVR_ENABLE: u32 = 1 << 8;
/// The spurious-interrupt vector L0 programs (never taken: IF stays clear).
const SPURIOUS_VECTOR: u32 = 0xff;

/// A 32-bit load from a device register as one plain MOV (a level below that emulates the
/// page decodes MOV; the compiler could otherwise fold the load into an OR or TEST).
///
/// # Safety
/// `address` must be a mapped, 4-aligned device register whose read has no side effect L0
/// does not expect.
unsafe fn mmio_read32(address: u64) -> u32 {
    let value: u32;
    // SAFETY: the caller upholds the contract above.
    unsafe {
        core::arch::asm!("mov {0:e}, dword ptr [{1}]", out(reg) value, in(reg) address,
            options(nostack, preserves_flags))
    };
    value
}

/// A 32-bit store to a device register as one plain MOV (see [`mmio_read32`]).
///
/// # Safety
/// `address` must be a mapped, 4-aligned device register and the write one L0 means.
unsafe fn mmio_write32(address: u64, value: u32) {
    // SAFETY: the caller upholds the contract above.
    unsafe {
        core::arch::asm!("mov dword ptr [{0}], {1:e}", in(reg) address, in(reg) value,
            options(nostack, preserves_flags))
    };
}

fn x2apic() -> bool {
    cpu::rdmsr(IA32_APIC_BASE) & APIC_BASE_EXTD != 0
}

fn lapic_read(off: u32) -> u32 {
    if x2apic() {
        return cpu::rdmsr(X2APIC_MSR_BASE + (off >> 4)) as u32;
    }
    let base = cpu::rdmsr(IA32_APIC_BASE) & APIC_BASE_MASK;
    // SAFETY: the local APIC page is identity-mapped (uncached, top GiB) and a register read
    // has no side effect.
    unsafe { mmio_read32(base + u64::from(off)) }
}

/// # Safety
/// The write must leave the APIC in a state L0 handles (no interrupt source L0 does not
/// expect: L0 takes interrupts only as acknowledged VM exits).
unsafe fn lapic_write(off: u32, value: u32) {
    if x2apic() {
        // SAFETY: an x2APIC register MSR exists in x2APIC mode; the caller vouches for the
        // value.
        unsafe { cpu::wrmsr(X2APIC_MSR_BASE + (off >> 4), u64::from(value)) };
        return;
    }
    let base = cpu::rdmsr(IA32_APIC_BASE) & APIC_BASE_MASK;
    // SAFETY: as in `lapic_read`; the caller vouches for the value.
    unsafe { mmio_write32(base + u64::from(off), value) }
}

/// This processor's APIC ID (the I/O APIC's physical destination for it).
pub fn lapic_id() -> u32 {
    let id = lapic_read(lreg::ID);
    if x2apic() { id } else { id >> 24 }
}

/// Software-enables the local APIC (SVR bit 8) if firmware left it disabled, keeping its
/// other settings.
pub fn lapic_enable() {
    let svr = lapic_read(lreg::SVR);
    if svr & SVR_ENABLE == 0 {
        // SAFETY: enabling the APIC with IF clear: interrupts it accepts wait in its IRR and
        // reach L0 only as acknowledged VM exits; LVT entries stay as firmware left them.
        unsafe { lapic_write(lreg::SVR, SVR_ENABLE | SPURIOUS_VECTOR) };
    }
}

/// The task-priority register (bits 7:0).
pub fn lapic_tpr() -> u32 {
    lapic_read(lreg::TPR)
}

/// Sets the task-priority register (the turtles.test=cr8 self-test).
///
/// # Safety
/// As for [`cpu::write_cr8`]: a higher priority holds back lower interrupts.
pub unsafe fn set_lapic_tpr(value: u32) {
    // SAFETY: the caller upholds the contract above.
    unsafe { lapic_write(lreg::TPR, value) };
}

/// EOI for the interrupt in service (a level-triggered one is broadcast to the I/O APIC).
pub fn lapic_eoi() {
    // SAFETY: an EOI only retires the in-service vector L0 acknowledged.
    unsafe { lapic_write(lreg::EOI, 0) };
}

/// `vector` is requested in the local APIC's IRR (it would be taken at the next VM entry).
pub fn lapic_requested(vector: u8) -> bool {
    let off = lreg::IRR + 0x10 * u32::from(vector / 32);
    lapic_read(off) & (1 << (vector % 32)) != 0
}

fn ioapic_write(index: u8, value: u32) {
    // SAFETY: the I/O APIC window is identity-mapped (uncached); callers write only the
    // redirection entry of the forwarded line.
    unsafe {
        mmio_write32(IOAPIC_BASE + u64::from(offset::IOREGSEL), index.into());
        mmio_write32(IOAPIC_BASE + u64::from(offset::IOWIN), value);
    }
}

fn ioapic_read(index: u8) -> u32 {
    // SAFETY: as in `ioapic_write`; reading IOWIN has no side effect.
    unsafe {
        mmio_write32(IOAPIC_BASE + u64::from(offset::IOREGSEL), index.into());
        mmio_read32(IOAPIC_BASE + u64::from(offset::IOWIN))
    }
}

/// Programs I/O APIC pin `gsi` (below 24): fixed delivery of `vector` to this processor,
/// level-triggered, active low (PCI INTx), unmasked. The low dword goes last, so the entry is
/// complete when it unmasks.
pub fn ioapic_route_level(gsi: u8, vector: u8) {
    let index = reg::REDTBL + 2 * gsi;
    ioapic_write(index, redir::MASKED as u32);
    ioapic_write(index + 1, lapic_id() << (redir::DEST_SHIFT - 32));
    ioapic_write(index, u32::from(vector) | (redir::LEVEL | redir::ACTIVE_LOW) as u32);
}

/// Masks or unmasks I/O APIC pin `gsi` (below 24), keeping the rest of its entry.
pub fn ioapic_set_masked(gsi: u8, masked: bool) {
    let index = reg::REDTBL + 2 * gsi;
    let low = ioapic_read(index);
    let mask = redir::MASKED as u32;
    ioapic_write(index, if masked { low | mask } else { low & !mask });
}
