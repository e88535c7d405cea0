//! [`Guest`]: everything L0 keeps about its guest besides the VMCS, with the pieces of it the
//! run loop, the exit handlers, interrupt delivery and L1's emulated VMX share: the
//! [`Watchdog`], the interrupt bookkeeping ([`IrqState`]), register access by encoding number
//! and the guest-state dump. Only data and accessors live here; what acts on a `Guest` lives
//! in the files above it (`run`, `exits/`, `interrupts`, `l1vmx/`).

use nested::caps::VmxCaps;
use nested::exits::ExitCounters;
use nested::guest::Gpr;
use nested::vmcs::{Vmcs, VmcsField as F};

use super::action::{Action, GuestEnd};
use super::l1vmx::state::L1Vmx;
use super::nic_poll::NicPoll;
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::GuestRegs;
use crate::guest::memory::GuestMemory;
use crate::machine::Devices;

/// Guest time (TSC ticks; Bochs: instructions) one preemption-timer slice lasts.
pub const WATCHDOG_SLICE_TICKS: u64 = 200_000_000;
/// Consecutive slices without any other exit after which the guest counts as hung.
const WATCHDOG_SLICES: u32 = 3;
/// The same for a Linux guest: its decompressor unpacks the kernel (billions of instructions
/// under Bochs) with interrupts off and without a single exit.
pub const WATCHDOG_SLICES_LINUX: u32 = 100;

/// Everything L0 keeps about its guest besides the VMCS.
pub struct Guest {
    pub regs: GuestRegs,
    pub memory: GuestMemory,
    /// L1's VMX state when VMX is exposed to the guest (`expose_vmx`).
    pub nested: Option<L1Vmx>,
    pub caps: VmxCaps,
    pub devices: Devices,
    pub counters: ExitCounters,
    pub watchdog: Watchdog,
    /// Interrupt delivery state (vmcs01's preemption timer and interrupt window).
    pub irq: IrqState,
    /// The guest's nesting depth (ours + 1).
    pub depth: u32,
    pub memory_mib: u64,
    /// The guest's TSC minus the processor's (vmcs01's TSC offset): 0 until the guest writes
    /// IA32_TSC (`exits::msr::write`), from then on what keeps its TSC counting from there.
    pub tsc_offset: u64,
}

/// Detects a guest that runs without ever exiting (an endless loop with interrupts off),
/// also while its own timer keeps L0's preemption timer firing: an interrupt-deadline exit
/// that delivers nothing (the guest has interrupts off, or takes them without a single
/// other exit) is quiet time too, counted in guest time against the same slices.
pub struct Watchdog {
    quiet_slices: u32,
    /// Quiet slices tolerated.
    limit: u32,
    /// The guest exited for something else, or took an interrupt, since the last timer exit.
    active: bool,
    /// TSC of the last timer exit, and the quiet ticks deadline exits add up since activity.
    last_timer: u64,
    quiet_ticks: u64,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog::with_limit(WATCHDOG_SLICES)
    }
}

impl Watchdog {
    /// A watchdog that stops the guest after `limit` quiet slices.
    pub fn with_limit(limit: u32) -> Self {
        Watchdog {
            quiet_slices: 0,
            limit: limit.max(1),
            active: true,
            last_timer: 0,
            quiet_ticks: 0,
        }
    }

    /// Quiet slices tolerated.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Any exit other than the timer's, or an interrupt delivered to the guest, proves the
    /// guest is alive.
    #[inline(always)]
    pub fn other_exit(&mut self) {
        self.quiet_slices = 0;
        self.active = true;
    }

    /// A timer exit at `now`: starts a quiet stretch after activity.
    fn timer_exit(&mut self, now: u64) -> bool {
        let quiet = !core::mem::replace(&mut self.active, false);
        if !quiet {
            self.quiet_ticks = 0;
        }
        let since = now.saturating_sub(self.last_timer);
        self.last_timer = now;
        if quiet {
            self.quiet_ticks = self.quiet_ticks.saturating_add(since)
        }
        quiet
    }

    /// The preemption timer fired for the watchdog's own slice (exit reason 52).
    pub fn expired(&mut self, now: u64) -> Action {
        self.timer_exit(now);
        self.quiet_ticks = 0;
        self.count_slice("")
    }

    /// The preemption timer fired for an interrupt deadline (the guest's APIC timer or the
    /// PIT): if nothing happened since the last timer exit, the time since counts as quiet.
    pub fn deadline(&mut self, now: u64) -> Action {
        if self.timer_exit(now) && self.quiet_ticks >= WATCHDOG_SLICE_TICKS {
            self.quiet_ticks -= WATCHDOG_SLICE_TICKS;
            return self.count_slice(" but its timer's, taking no interrupt");
        }
        Action::Resume
    }

    fn count_slice(&mut self, how: &str) -> Action {
        self.quiet_slices += 1;
        if self.quiet_slices >= self.limit {
            log::error!(
                "watchdog: the guest ran {} ticks without a single exit{how}: stopping it",
                WATCHDOG_SLICE_TICKS * u64::from(self.limit)
            );
            return Action::Stop(GuestEnd::Failed("watchdog: the guest stopped responding"));
        }
        Action::Resume
    }
}

/// Interrupt bookkeeping of one guest's VMCSs (see `interrupts`).
pub struct IrqState {
    /// vmcs01's VMX-preemption timer value as last written.
    pub timer01: u32,
    /// The watchdog's slice in timer units (vmcs01's value when no APIC deadline is nearer).
    pub watchdog: u32,
    /// Interrupt-window exiting is on in vmcs01.
    pub window01: bool,
    /// vmcs01 differs from L0's idle settings (`window01`, or `timer01` != `watchdog`).
    pub armed: bool,
    /// The preemption-timer rate: TSC ticks >> shift (IA32_VMX_MISC bits 4:0).
    pub shift: u8,
    /// An NMI the guest's APIC sent to its processor, not delivered yet (blocked).
    pub nmi: bool,
    /// An INIT the guest's APIC sent to its processor, held while L1 is in VMX root
    /// operation (SDM 24.8: INIT is blocked there) until L2 runs.
    pub init: bool,
    /// When L0 polls its NIC next; with a switched guest NIC its deadline also bounds
    /// vmcs01's preemption timer.
    pub nic_poll: NicPoll,
}

impl IrqState {
    pub fn new(watchdog: u32, shift: u8) -> Self {
        IrqState {
            timer01: watchdog,
            watchdog,
            window01: false,
            armed: false,
            shift,
            nmi: false,
            init: false,
            nic_poll: NicPoll::default(),
        }
    }

    /// The last preemption-timer exit of L1 was for an APIC deadline, not the watchdog.
    pub fn timer_was_apic(&self) -> bool {
        self.timer01 < self.watchdog
    }
}

/// A guest general-purpose register by its encoding number (SDM Table 28-3: 0 RAX, 1 RCX,
/// 2 RDX, 3 RBX, 4 RSP, 5 RBP, 6 RSI, 7 RDI, 8-15 R8-R15). RSP lives in the VMCS.
pub fn gpr(g: &Guest, v: &HwVmcs, n: u64) -> u64 {
    g.regs.get(Gpr::from_index(n as u32)).unwrap_or_else(|| v.read(F::GuestRsp))
}

/// Writes a guest general-purpose register by encoding number.
pub fn set_gpr(g: &mut Guest, v: &mut HwVmcs, n: u64, value: u64) {
    match g.regs.slot(Gpr::from_index(n as u32)) {
        Some(slot) => *slot = value,
        None => v.write(F::GuestRsp, value),
    }
}

/// Logs the guest's state: for every exit that stops a guest.
pub fn dump(v: &HwVmcs, g: &Guest) {
    let r = &g.regs;
    log::error!(
        "guest state: rip={:#x} rsp={:#x} rflags={:#x} cr0={:#x} (shadow {:#x}) cr3={:#x} \
         cr4={:#x} (shadow {:#x}) efer={:#x}",
        v.read(F::GuestRip),
        v.read(F::GuestRsp),
        v.read(F::GuestRflags),
        v.read(F::GuestCr0),
        v.read(F::Cr0ReadShadow),
        v.read(F::GuestCr3),
        v.read(F::GuestCr4),
        v.read(F::Cr4ReadShadow),
        v.read(F::GuestIa32Efer)
    );
    log::error!(
        "guest state: cs={:#x} base={:#x} ar={:#x} ss={:#x} ar={:#x} tr-ar={:#x} \
         interruptibility={:#x} activity={} entry-controls={:#x}",
        v.read(F::GuestCsSelector),
        v.read(F::GuestCsBase),
        v.read(F::GuestCsArBytes),
        v.read(F::GuestSsSelector),
        v.read(F::GuestSsArBytes),
        v.read(F::GuestTrArBytes),
        v.read(F::GuestInterruptibilityInfo),
        v.read(F::GuestActivityState),
        v.read(F::VmEntryControls)
    );
    log::error!(
        "guest regs: rax={:#x} rbx={:#x} rcx={:#x} rdx={:#x} rsi={:#x} rdi={:#x} rbp={:#x}",
        r.rax,
        r.rbx,
        r.rcx,
        r.rdx,
        r.rsi,
        r.rdi,
        r.rbp
    );
}
