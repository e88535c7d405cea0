//! The legacy 8259 PICs: the image masks every line at boot so no firmware-configured timer
//! interrupt arrives (it installs no IRQ handlers, and L0 uses none while a guest runs).

use super::cpu::outb;

/// Masks all 16 IRQ lines of both PICs.
pub fn mask_all() {
    // SAFETY: writing the interrupt mask registers only stops IRQ delivery.
    unsafe {
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
    }
}
