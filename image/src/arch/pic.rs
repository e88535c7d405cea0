//! The legacy 8259 PICs: L0 masks every line so no firmware-configured timer interrupts arrive
//! while a guest runs (it uses no interrupts of its own yet).

use super::cpu::outb;

/// Masks all 16 IRQ lines of both PICs.
pub fn mask_all() {
    // SAFETY: writing the interrupt mask registers only stops IRQ delivery.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}
