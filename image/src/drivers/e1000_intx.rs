//! `[net] e1000_interrupts`: the e1000 driver still polls, but also enables the receive
//! interrupt (IMS.RXT0, 8254x manual 13.4.20) through the function's INTx: the line its
//! configuration register 3Ch names, routed at this level's I/O APIC to [`VECTOR`],
//! level-triggered. The serve loop opens a one-instruction interrupt window (STI; NOP; CLI)
//! on each turn; the handler counts the interrupt, reads ICR (which deasserts the line) and
//! EOIs the local APIC. At depth 2 on a doubly assigned e1000 this shows the device's
//! interrupt reaching L2 through L0's and L1's forwarding (`vmx::intx`); the count is logged
//! when the endpoint stops (`e1000: n interrupts`).

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::arch::{apic, idt};

/// The vector the line is routed to.
pub const VECTOR: u8 = 0x59;
/// Interrupt mask set/read and interrupt cause read (8254x manual 13.4.17, 13.4.20).
const IMS: u32 = 0x00d0;
const ICR: u32 = 0x00c0;
/// Receiver timer interrupt: a frame was received.
const IMS_RXT0: u32 = 1 << 7;

static ENABLED: AtomicBool = AtomicBool::new(false);
static BAR0: AtomicUsize = AtomicUsize::new(0);
static COUNT: AtomicU64 = AtomicU64::new(0);

/// Routes `line` to [`VECTOR`] and unmasks the receive interrupt of the e1000 whose BAR0 is
/// at `bar0` (identity-mapped, the driver's register window).
pub fn enable(bar0: usize, line: u8) {
    if line >= pc::ioapic::IOAPIC_PINS {
        log::warn!("e1000: interrupt line {line:#x} is no I/O APIC pin: no interrupts");
        return;
    }
    BAR0.store(bar0, Ordering::Relaxed);
    idt::set_interrupt_handler(handle);
    apic::lapic_enable();
    apic::ioapic_route_level(line, VECTOR);
    ENABLED.store(true, Ordering::Release);
    // SAFETY: IMS is a register of the e1000's BAR0 window, which the driver maps.
    unsafe { ((bar0 + IMS as usize) as *mut u32).write_volatile(IMS_RXT0) };
    log::info!(
        "e1000: receive interrupt on GSI {line} -> vector {VECTOR:#x} (counted; still polled)"
    );
}

/// Lets a waiting interrupt in (one instruction with RFLAGS.IF set), if enabled.
pub fn window() {
    if ENABLED.load(Ordering::Relaxed) {
        // SAFETY: the only interrupt source this level enables is the e1000's, whose vector
        // `handle` takes (through `idt::trap`); IF is clear again after the NOP.
        unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
    }
}

/// The interrupts taken, if enabled.
pub fn count() -> Option<u64> {
    ENABLED.load(Ordering::Acquire).then(|| COUNT.load(Ordering::Relaxed))
}

fn handle(vector: u8) -> bool {
    if vector != VECTOR {
        return false;
    }
    COUNT.fetch_add(1, Ordering::Relaxed);
    let bar0 = BAR0.load(Ordering::Relaxed);
    // SAFETY: ICR is a register of the mapped BAR0 window; reading it clears the causes the
    // polling driver does not use (it reads the descriptors' status).
    let _ = unsafe { ((bar0 + ICR as usize) as *const u32).read_volatile() };
    apic::lapic_eoi();
    true
}
