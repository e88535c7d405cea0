//! The assigned e1000's INTx, forwarded to the guest (issue 13). The function's interrupt line
//! (its configuration register 3Ch, the ISA IRQ Bochs' PIIX routes its INTA# to, which is
//! also the I/O APIC pin) is routed at this level's I/O APIC to [`HOST_VECTOR`],
//! level-triggered. L0 runs with interrupts off, so the interrupt arrives as an
//! external-interrupt VM exit acknowledged on exit (SDM Vol. 3C 27.2.2), from L1 or from L2;
//! [`host_interrupt`] masks the entry below, EOIs the local APIC and asserts the same GSI on
//! the guest's virtual I/O APIC (`pc::intx`), which delivers the guest's own vector. The
//! guest's EOI of that level-triggered vector deasserts the line and unmasks the entry
//! (`machine::Devices::with_lapic`); if the device still asserts, it fires again.
//!
//! The code is level-independent: turtles as L1 assigning the e1000 on to L2 does the same
//! with L0's models as its "real" I/O APIC and local APIC, so L0's injection into L1 becomes
//! L1's injection into L2 through L1's routing, and L2's EOI reaches L0 as L1's.

use nested::caps::exit;

use super::guest::Guest;
use crate::arch::apic;
use crate::machine::Devices;

/// The vector this level gives the forwarded line at its own I/O APIC (a free one: nothing
/// else here takes interrupts).
pub const HOST_VECTOR: u8 = 0x58;

/// Routes the function's interrupt line `line` at this level's I/O APIC to [`HOST_VECTOR`]
/// if VM exits acknowledge interrupts (`exit_controls`); the GSI to forward, or `None`.
pub fn route(line: u8, exit_controls: u32) -> Option<u8> {
    if exit_controls & exit::ACK_INTERRUPT_ON_EXIT == 0 {
        log::warn!("assign: e1000 INTx not forwarded: VM exits do not acknowledge interrupts here");
        return None;
    }
    if line >= pc::ioapic::IOAPIC_PINS {
        log::warn!("assign: e1000 INTx not forwarded: interrupt line {line:#x} is no I/O APIC pin");
        return None;
    }
    apic::lapic_enable();
    apic::ioapic_route_level(line, HOST_VECTOR);
    log::info!(
        "assign: e1000 INTx GSI {line} -> host vector {HOST_VECTOR:#x}, forwarded to the guest's \
         GSI {line}"
    );
    Some(line)
}

/// An external-interrupt exit acknowledged `vector`: if it is the forwarded line's, masks the
/// entry below, EOIs the local APIC and asserts the guest's GSI; true when it was.
pub fn host_interrupt(g: &mut Guest, vector: u8) -> bool {
    if vector != HOST_VECTOR {
        return false;
    }
    let Some(gsi) = g.devices.intx_gsi() else { return false };
    apic::ioapic_set_masked(gsi, true);
    apic::lapic_eoi();
    g.devices.intx_assert();
    true
}

/// The forwarded line's interrupt waits in this level's local APIC (L0 spinning for a halted
/// guest stops to deliver it: the next VM entry exits with it at once).
pub fn pending(devices: &Devices) -> bool {
    devices.intx_gsi().is_some() && apic::lapic_requested(HOST_VECTOR)
}
