//! Interrupts from L0's device model (the guest's local APIC, and the 8259s with the PIT's
//! IRQ0 behind it in virtual-wire mode) to the level that owns them.
//!
//! The devices are L1's (the guest of this L0): their interrupts are L1's whichever level
//! runs.
//! - **L1 runs** (vmcs01): before each entry the APIC's pending vector is injected as an
//!   external interrupt (SDM 26.6) when L1 can take it (RFLAGS.IF, no STI/MOV-SS blocking, no
//!   other event being injected); otherwise interrupt-window exiting (26.7.5) brings L0 back
//!   the moment it can.
//! - **L2 runs** (vmcs02): if vmcs12 has "external-interrupt exiting", the interrupt is a VM
//!   exit to L1 with reason 1, acknowledged into the exit interruption information when vmcs12
//!   asks for "acknowledge interrupt on exit" (27.2.2); if L1 injects an event into L2 on the
//!   same entry, that event is delivered first and the exit follows at once (an immediate
//!   preemption-timer exit). Without external-interrupt exiting L1 lets L2 take interrupts,
//!   so the vector is injected into L2 when L2 can take it, with vmcs02's interrupt-window
//!   exiting bringing L0 back the moment it can.
//! - **Time**: the VMX-preemption timer of the running VMCS is shortened to the APIC timer's
//!   next deadline (or the PIT's next IRQ0), so a guest that never exits still gets its timer
//!   interrupt on time. When vmcs12 runs L2 with L1's own preemption timer, vmcs02's timer
//!   runs to the nearer of L1's deadline (kept as a TSC value from L1's VM entry) and L0's,
//!   so L1's interrupt still arrives when it fires, and L1's timer exit when it runs out.
//!   While the guest has a switched virtio-net, vmcs01's timer also ends at L0's next NIC
//!   poll (`nic_poll`).

use nested::arch::{pending_dbg, rflags};
use nested::caps::{exit, pin, proc1};
use nested::exits::ExitReason;
use nested::vmcs::{Vmcs, VmcsField as F};

use super::guest::Guest;
use super::l1vmx::l2_exit;
use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;

/// Valid bit of the interruption-information fields; type 0 (external interrupt) is 0.
const VALID: u64 = 1 << 31;
/// Blocking by STI and by MOV SS (interruptibility state bits 0 and 1).
const BLOCKING_STI_MOVSS: u64 = 3;

/// Interruption type NMI (bits 10:8 = 2) with vector 2, for injection and exit information.
const NMI: u64 = 2 << 8 | 2;
/// Interruptibility: blocking by STI, by MOV SS and by NMI (bits 0, 1, 3).
const BLOCKING_NMI: u64 = 0b1011;

/// Does the next entry of `v` deliver an event already: one injected, or a single-step trap
/// pending after an emulated instruction (its priority is above NMIs and interrupts, and an
/// entry that injects loses it: SDM 26.7.3, so they wait for it)?
fn delivering(v: &HwVmcs) -> bool {
    v.read(F::VmEntryInterruptionInfo) & VALID != 0
        || v.read(F::GuestPendingDebugExceptions) & pending_dbg::BS != 0
}

/// Can the guest of `v` take an NMI on the next entry (no event delivered, no blocking)?
fn nmi_deliverable(v: &HwVmcs) -> bool {
    !delivering(v) && v.read(F::GuestInterruptibilityInfo) & BLOCKING_NMI == 0
}

/// Takes the NMI and INIT the guest's APIC sent to its own processor into `g.irq`.
fn take_signals(g: &mut Guest) {
    if g.devices.lapic().has_signal() {
        let (nmi, init) = g.devices.take_signals();
        g.irq.nmi |= nmi;
        g.irq.init |= init;
    }
}

/// Can the guest of `v` take an external interrupt on the next entry?
fn interruptible(v: &HwVmcs) -> bool {
    !delivering(v)
        && v.read(F::GuestRflags) & rflags::IF != 0
        && v.read(F::GuestInterruptibilityInfo) & BLOCKING_STI_MOVSS == 0
}

/// Timer units until `deadline` (0 when it has passed), at most `cap`.
fn timer_units(deadline: u64, now: u64, shift: u8, cap: u32) -> u32 {
    let units = deadline.saturating_sub(now) >> shift;
    units.min(u64::from(cap)) as u32
}

/// Before entering L1 on vmcs01 (current): injects L1's pending interrupt or asks for an
/// interrupt window, and points the preemption timer at the APIC timer's next deadline.
#[inline(always)]
pub fn before_l1_entry(g: &mut Guest, v: &mut HwVmcs) {
    // The hot path: no interrupt source and vmcs01 as L0 left it (no window, watchdog timer).
    if g.devices.interrupt_work() || g.irq.armed || super::nic_poll::TIMED {
        deliver_l1(g, v);
    }
}

#[inline(never)]
fn deliver_l1(g: &mut Guest, v: &mut HwVmcs) {
    take_signals(g);
    if g.irq.init && !g.nested.as_ref().is_some_and(|n| n.vmx.vmxon) {
        // Outside VMX operation an INIT resets the processor to the wait-for-SIPI or reset
        // state, which L0 does not emulate.
        g.irq.init = false;
        log::warn!("local APIC: INIT to its own processor outside VMX operation: not emulated");
    }
    if g.irq.nmi {
        if nmi_deliverable(v) {
            v.write(F::VmEntryInterruptionInfo, NMI | VALID);
            g.irq.nmi = false;
            g.watchdog.other_exit();
        } else {
            open_nmi_window(v);
        }
    }
    let irq = &mut g.irq;
    let devices = &mut g.devices;
    let now = cpu::rdtsc();
    devices.poll_interrupts(now);
    let mut want_window = false;
    if devices.pending_interrupt().is_some() {
        if interruptible(v) {
            if let Some(vector) = devices.acknowledge_interrupt() {
                v.write(F::VmEntryInterruptionInfo, u64::from(vector) | VALID);
                g.watchdog.other_exit();
            }
            // Another vector waits behind it only if it outranks the one just delivered.
            want_window = devices.pending_interrupt().is_some();
        } else {
            want_window = true;
        }
    }
    if want_window != irq.window01 {
        set_primary(v, proc1::INTERRUPT_WINDOW_EXITING, want_window);
        irq.window01 = want_window;
    }
    let deadline = match (devices.next_interrupt_deadline(), irq.nic_poll.deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let timer = match deadline {
        Some(d) if d > now => timer_units(d, now, irq.shift, irq.watchdog),
        _ => irq.watchdog,
    };
    if timer != irq.timer01 {
        v.write(F::VmxPreemptionTimerValue, u64::from(timer));
        irq.timer01 = timer;
    }
    // A blocked NMI (or an INIT held in VMX root operation) is retried at every entry.
    irq.armed = irq.window01 || irq.timer01 != irq.watchdog || irq.nmi || irq.init;
}

/// What L0 does before entering L2.
pub enum L2Entry {
    /// Enter L2 on vmcs02.
    Enter,
    /// L1's interrupt became a VM exit to L1: vmcs01 is current, enter L1 instead.
    ExitedToL1,
}

/// Before entering L2 on vmcs02 (current): L1's pending interrupt becomes an exit to L1 or
/// an injection into L2 (see the module docs), and vmcs02's preemption timer follows L1's APIC
/// timer.
#[inline(always)]
pub fn before_l2_entry(g: &mut Guest, v02: &mut HwVmcs) -> L2Entry {
    match &g.nested {
        // L1's own timer alone needs nothing here: vmcs02 saves what it has left at each
        // exit (`prepare_vmcs02`), and L1's VM entry restarts it (`enter_l2`).
        Some(n) if g.devices.interrupt_work() || n.timer02 || g.irq.nmi || g.irq.init => {
            deliver_l2(g, v02)
        }
        _ => L2Entry::Enter,
    }
}

#[inline(never)]
fn deliver_l2(g: &mut Guest, v02: &mut HwVmcs) -> L2Entry {
    take_signals(g);
    let Some(n) = g.nested.as_mut() else { return L2Entry::Enter };
    let mut immediate = false;
    // INIT in VMX non-root operation: a VM exit to L1 (reason 3, SDM 26.2), unconditionally.
    if core::mem::take(&mut g.irq.init) {
        l2_exit::signal_exit(g, v02, ExitReason::InitSignal, 0);
        return L2Entry::ExitedToL1;
    }
    // An NMI: an exit to L1 under "NMI exiting" (reason 0 with the NMI's interruption
    // information, SDM 27.2.2), else delivered to L2 when it can take one.
    if g.irq.nmi {
        if n.vmx.vmcs12.pin_based_vm_exec_control & pin::NMI_EXITING != 0 {
            if delivering(v02) {
                immediate = true;
            } else {
                g.irq.nmi = false;
                l2_exit::signal_exit(g, v02, ExitReason::ExceptionOrNmi, (NMI | VALID) as u32);
                return L2Entry::ExitedToL1;
            }
        } else if nmi_deliverable(v02) {
            v02.write(F::VmEntryInterruptionInfo, NMI | VALID);
            g.irq.nmi = false;
            g.watchdog.other_exit();
        }
    }
    let Some(n) = g.nested.as_mut() else { return L2Entry::Enter };
    let devices = &mut g.devices;
    let now = cpu::rdtsc();
    devices.poll_interrupts(now);
    if devices.pending_interrupt().is_some() {
        let v12 = &n.vmx.vmcs12;
        if v12.pin_based_vm_exec_control & pin::EXTERNAL_INTERRUPT_EXITING != 0 {
            if delivering(v02) {
                // L1 injects an event into L2 on this entry (or a single-step
                // trap is pending): it is delivered first.
                immediate = true;
            } else {
                let intr_info = if v12.vm_exit_controls & exit::ACK_INTERRUPT_ON_EXIT != 0 {
                    devices.acknowledge_interrupt().map_or(0, |v| u32::from(v) | VALID as u32)
                } else {
                    0
                };
                l2_exit::interrupt_exit(g, v02, intr_info);
                return L2Entry::ExitedToL1;
            }
        } else {
            // L1 lets its guest take interrupts, as the processor would deliver them.
            if interruptible(v02)
                && let Some(vector) = devices.acknowledge_interrupt()
            {
                v02.write(F::VmEntryInterruptionInfo, u64::from(vector) | VALID);
                g.watchdog.other_exit();
            }
            // One L2 cannot take yet (interrupts off, STI/MOV-SS blocking, an event being
            // delivered), or one that outranks the vector just injected: an interrupt-window
            // exit brings L0 back the moment L2 can take it, where the processor would
            // deliver it. The exit is L0's (`l2_exit::for_l1`).
            if devices.pending_interrupt().is_some() {
                open_window02(v02);
            }
        }
    }
    let shift = g.irq.shift;
    let want = if immediate {
        Some(0)
    } else {
        g.devices
            .next_interrupt_deadline()
            .filter(|&d| d > now)
            .map(|d| timer_units(d, now, shift, u32::MAX))
    };
    if let Some(n) = g.nested.as_mut() {
        n.set_timer02(v02, want, now, shift);
    }
    L2Entry::Enter
}

/// An NMI the guest of `v` (vmcs01, current) cannot take yet (NMIs blocked until its IRET,
/// STI or MOV-SS blocking, an event being delivered): NMI-window exiting brings L0 back the
/// moment it can (SDM 25.2, 26.7.6), where the processor would deliver it; the exit clears
/// the control (`exits::simple::nmi_window`) and the next entry injects it. The control needs
/// virtual NMIs, which vmcs01 has when the processor offers them; without, the NMI waits for
/// the next exit.
#[cold]
fn open_nmi_window(v: &mut HwVmcs) {
    if v.read(F::PinBasedVmExecControl) & u64::from(pin::VIRTUAL_NMIS) == 0 {
        return;
    }
    set_primary(v, proc1::NMI_WINDOW_EXITING, true);
}

/// Sets interrupt-window exiting in vmcs02 (current), cleared again by the exit it causes.
fn open_window02(v02: &mut HwVmcs) {
    set_primary(v02, proc1::INTERRUPT_WINDOW_EXITING, true);
}

/// Sets (`on`) or clears the primary processor-based control `bit` of the current VMCS (the
/// window controls L0 opens and closes), writing only when it changes.
pub fn set_primary(v: &mut HwVmcs, bit: u32, on: bool) {
    let controls = v.read(F::CpuBasedVmExecControl);
    let new = if on { controls | u64::from(bit) } else { controls & !u64::from(bit) };
    if new != controls {
        v.write(F::CpuBasedVmExecControl, new);
    }
}

/// HLT by L1 with interrupts enabled (exit reason 12): L1 sleeps until its next interrupt.
/// L0 waits for the next timer deadline (APIC timer or PIT IRQ0) (serving the management endpoint meanwhile) and
/// returns; the interrupt is injected on the entry that follows. Without any armed timer or
/// pending interrupt nothing can wake L1: it resumes at once (a spurious wake-up, which HLT
/// allows for, e.g. for an SMI).
#[inline(never)]
pub fn halt(g: &mut Guest) {
    let devices = &mut g.devices;
    // No interrupt source at all (no IRR bit, no armed timer, no PIC request or IRQ0 edge to
    // come): nothing can wake the guest, so it resumes at once without polling the devices.
    if !devices.interrupt_work() {
        return;
    }
    let mut polls = 0u32;
    loop {
        let now = cpu::rdtsc();
        devices.poll_interrupts(now);
        if devices.pending_interrupt().is_some() {
            return;
        }
        match devices.next_interrupt_deadline() {
            Some(d) if d > now => {}
            _ => return,
        }
        core::hint::spin_loop();
        polls = polls.wrapping_add(1);
        if polls.is_multiple_of(4096) {
            // The assigned function's interrupt waits below: the next entry exits with it.
            if super::intx::pending(devices) {
                return;
            }
            crate::drivers::poll_network();
            devices.virtio_poll(&mut g.memory);
        }
    }
}
