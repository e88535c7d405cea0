//! The run loop: load the guest, build EPT01 and vmcs01, then enter, snapshot the exit,
//! count it, handle it, apply the action, and enter again until the guest ends. At the end
//! L0 prints the exit statistics per reason.

use nested::caps::VmxCaps;
use nested::exits::{ExitCounters, ExitInfo, ExitReason};
use nested::vmcs::{Vmcs, VmcsField as F};
use nested::vmcs01;

use super::action::{Action, GuestEnd, inject, skip_instruction};
use super::ept::Ept;
use super::exits;
use super::guest::{Guest, IrqState, WATCHDOG_SLICE_TICKS, WATCHDOG_SLICES_LINUX, Watchdog, dump};
use super::interrupts;
use super::l1vmx::{self, Step, l2_exit, state::L1Vmx};
use super::setup;
use super::vmxon::{self, VmxError};
use crate::arch::cpu;
use crate::arch::vmcs::HwVmcs;
use crate::arch::vmx::{self as insn, GuestRegs};
use crate::drivers::status::{self, GuestState};
use crate::guest::boot::{self, Protocol};
use crate::guest::linux;
use crate::guest::memory::GuestMemory;
use crate::machine::Devices;

/// A deliberate misuse of VMX by this level as a guest hypervisor
/// (`turtles.test=bad-controls|bad-guest-state|bad-vmptrld|bad-ept`), so the tests can check
/// that the level below answers architecturally.
pub static VMX_SELF_TEST: hermit_sync::SpinMutex<&'static str> = hermit_sync::SpinMutex::new("");

/// How many exits to log (`turtles.trace_exits=N` on L0's command line).
pub static TRACE_EXITS: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// Only exits with this basic reason are traced (`turtles.trace_reason=N`; default all).
pub static TRACE_REASON: core::sync::atomic::AtomicU32 =
    core::sync::atomic::AtomicU32::new(u32::MAX);

/// A guest to boot: its image, command line, modules and protocol preference.
pub struct GuestSpec<'a> {
    /// The guest's config name (for the status endpoint and the disk report).
    pub name: &'static str,
    pub image: &'a [u8],
    pub cmdline: &'a str,
    pub modules: &'a [(&'a [u8], &'a str)],
    pub protocol: Option<Protocol>,
    pub memory: u64,
    pub depth: u32,
    /// Offer VMX to the guest (it may be a hypervisor itself).
    pub expose_vmx: bool,
    /// Use hardware VMCS shadowing for the guest's VMREAD/VMWRITE when available.
    pub vmcs_shadowing: bool,
    /// This processor's initial APIC ID, which the guest's local APIC gets too.
    pub apic_id: u32,
    /// The TSC rate the device model converts guest time with.
    pub tsc_hz: u64,
}

/// Boots the guest and runs it to its end.
pub fn run_guest(caps: &VmxCaps, spec: &GuestSpec<'_>) -> Result<GuestEnd, VmxError> {
    let controls = vmcs01::choose(caps).map_err(VmxError::Missing)?;
    vmxon::enable(caps)?;
    let mut memory = if crate::config::ASSIGN_E1000 {
        super::assign::memory(spec.memory)?
    } else {
        GuestMemory::allocate(spec.memory).ok_or(VmxError::NoMemory("guest RAM"))?
    };
    let Some(entry) = load(&mut memory, spec) else {
        return Ok(GuestEnd::Failed("the guest image cannot be booted"));
    };
    let ept = if memory.is_identity() {
        Ept::for_memory(&memory)?
    } else {
        Ept::identity_offset(memory.host_base(), memory.size())?
    };
    let timer = (WATCHDOG_SLICE_TICKS >> caps.preemption_timer_shift()).min(u64::from(u32::MAX));
    log::info!(
        "vmcs01: pin={:#x} primary={:#x} secondary={:#x} exit={:#x} entry={:#x} \
         preemption-timer={} (shift {})",
        controls.pin,
        controls.primary,
        controls.secondary,
        controls.exit,
        controls.entry,
        timer,
        caps.preemption_timer_shift()
    );
    let vmcs01 = setup::create(caps, &controls, ept.eptp, entry.rip, timer as u32)?;
    let assigned = if crate::config::ASSIGN_E1000 {
        // SAFETY: vmcs01 was just made current by `setup::create`.
        let mut v = unsafe { HwVmcs::current() };
        Some(super::assign::e1000(&ept, &mut v, caps)?)
    } else {
        None
    };
    vmx_self_test(&ept);
    let nested = if spec.expose_vmx {
        log::info!("vmx: exposing VMX to the guest (nested)");
        let mut n = L1Vmx::new(caps, vmcs01, ept.eptp, spec.vmcs_shadowing)?;
        if let Some((_, Some((a, b)))) = &assigned {
            n.pass_io_bitmaps(*a, *b)?;
        }
        Some(n)
    } else {
        None
    };
    // SAFETY: in VMX root operation, INVEPT/INVVPID are supported (EPT and VPID caps).
    unsafe {
        let _ = insn::invept(1, ept.eptp);
        let _ = insn::invvpid(1, setup::GUEST_VPID);
    }
    let memory_mib = memory.bytes() >> 20;
    let mut guest = Guest {
        regs: GuestRegs { rax: entry.rax, rbx: entry.rbx, rsi: entry.rsi, ..GuestRegs::default() },
        memory,
        nested,
        caps: *caps,
        devices: Devices::new(spec.depth, spec.apic_id, spec.tsc_hz),
        counters: ExitCounters::default(),
        watchdog: Watchdog::with_limit(entry.watchdog_slices),
        irq: IrqState::new(timer as u32, caps.preemption_timer_shift()),
        depth: spec.depth,
        memory_mib,
        tsc_offset: 0,
    };
    if let Some((a, _)) = assigned {
        let intx = super::intx::route(a.line(), controls.exit);
        guest.devices.assign(a, intx);
    }
    exits::cpuid::publish_tsc_rate(spec.tsc_hz);
    status::set_guest(spec.name, GuestState::Running);
    let end = run_loop(&mut guest);
    guest.devices.com1.finish();
    report(&guest, end);
    status::publish_exits(&guest.counters);
    let state = match end {
        GuestEnd::Exited(_) => GuestState::Exited,
        GuestEnd::Failed(_) => GuestState::Stopped,
    };
    status::set_guest(spec.name, state);
    Ok(end)
}

/// The guest's entry state: where it starts and its registers.
struct Entry {
    rip: u64,
    rax: u64,
    rbx: u64,
    rsi: u64,
    /// Quiet preemption-timer slices the watchdog tolerates.
    watchdog_slices: u32,
}

/// Loads the guest into `memory`: a bzImage through the Linux boot protocol (its initrd is
/// the module named `<guest>-initrd`), anything else as a multiboot or PVH kernel. `None`
/// (logged) when the image cannot be booted.
fn load(memory: &mut GuestMemory, spec: &GuestSpec<'_>) -> Option<Entry> {
    if linux::is_bzimage(spec.image) {
        let initrd = spec.modules.iter().find_map(|&(data, cmdline)| {
            let name = cmdline.split_whitespace().next()?;
            (name.strip_suffix("-initrd") == Some(spec.name)).then_some(data)
        });
        let virtio = crate::machine::virtio::acpi_devices();
        return match linux::load(memory, spec.image, spec.cmdline, initrd, virtio) {
            Ok(e) => {
                log::info!(
                    "guest: {} KiB Linux bzImage (boot protocol {}.{:02}) at {:#x}, initrd {}, \
                     {} MiB of memory at host {:#x}, cmdline \"{}\"",
                    spec.image.len() / 1024,
                    e.version >> 8,
                    e.version & 0xff,
                    e.kernel_address,
                    match e.initrd {
                        Some((at, len)) => alloc::format!("{} KiB at {at:#x}", len / 1024),
                        None => alloc::string::String::from("none"),
                    },
                    memory.size() >> 20,
                    memory.host_base(),
                    spec.cmdline
                );
                Some(Entry {
                    rip: e.entry,
                    rax: 0,
                    rbx: 0,
                    rsi: e.zero_page,
                    watchdog_slices: WATCHDOG_SLICES_LINUX,
                })
            }
            Err(e) => {
                log::error!("guest image: Linux bzImage refused: {e}");
                None
            }
        };
    }
    // A turtles guest learns of its virtio-mmio devices from its command line.
    let cmdline = match crate::machine::virtio::cmdline_word() {
        Some(word) if spec.cmdline.is_empty() => word,
        Some(word) => alloc::format!("{} {word}", spec.cmdline),
        None => alloc::string::String::from(spec.cmdline),
    };
    match boot::load(memory, spec.image, &cmdline, spec.modules, spec.protocol) {
        Ok(boot) => {
            log::info!(
                "guest: {} KiB image booted via {:?} at {:#x}, {} MiB of memory at host {:#x}",
                spec.image.len() / 1024,
                boot.protocol,
                boot.entry,
                memory.bytes() >> 20,
                memory.host_base()
            );
            Some(Entry {
                rip: boot.entry,
                rax: boot.rax,
                rbx: boot.rbx,
                rsi: 0,
                // A guest hypervisor whose own guest is Linux runs as long without exits.
                watchdog_slices: if spec.modules.iter().any(|m| linux::is_bzimage(m.0)) {
                    WATCHDOG_SLICES_LINUX
                } else {
                    Watchdog::default().limit()
                },
            })
        }
        Err(e) => {
            log::error!("guest image: {e}");
            None
        }
    }
}

fn run_loop(g: &mut Guest) -> GuestEnd {
    // SAFETY: vmcs01 is current from `setup::create` on and nothing else loads a VMCS.
    let mut v = unsafe { HwVmcs::current() };
    let mut launched01 = false;
    let mut since_poll = 0u32;
    loop {
        crate::arch::vmcs::check_reads();
        let in_l2 = g.nested.as_ref().is_some_and(|n| n.in_l2);
        if in_l2 {
            if let interrupts::L2Entry::ExitedToL1 = interrupts::before_l2_entry(g, &mut v) {
                continue;
            }
        } else {
            interrupts::before_l1_entry(g, &mut v);
        }
        let launched = match &g.nested {
            Some(n) if in_l2 => n.vmcs02_launched,
            _ => launched01,
        };
        // SAFETY: the current VMCS (vmcs01 from setup::create, or vmcs02 merged by
        // nested::enter_l2) is complete, HOST_RIP is the exit trampoline, its EPT confines the
        // guest to memory L0 gave it, and `launched` tracks that VMCS's VMLAUNCH.
        if let Err(e) = unsafe { insn::enter(&mut g.regs, launched) } {
            log::error!(
                "VM{} of {} failed: {e}",
                if launched { "RESUME" } else { "LAUNCH" },
                if in_l2 { "vmcs02 (L2)" } else { "vmcs01" }
            );
            dump(&v, g);
            return GuestEnd::Failed("VM entry failed");
        }
        match &mut g.nested {
            Some(n) if in_l2 => {
                // The TSC at L2's VM exit, as early as L0 can read it, for vmcs12's VM-exit
                // MSR-store list (in this arm, so that L1's exits do not pay for it).
                n.exit_tsc = cpu::rdtsc();
                n.vmcs02_launched = true;
            }
            _ => launched01 = true,
        }
        let info = ExitInfo::read(&v);
        g.counters.record(info.reason);
        trace(&v, &info);
        // Now and then (`nic_poll`): serve the management endpoint and publish the exit
        // counts (both do nothing without a NIC in the config).
        if g.irq.nic_poll.due(&mut since_poll, info.basic() == ExitReason::PreemptionTimer.number())
        {
            crate::drivers::poll_network();
            g.devices.virtio_poll(&mut g.memory);
            status::publish_exits(&g.counters);
        }
        let action = if in_l2 {
            l2_exit::l2_exit(g, &mut v, &info)
        } else if g.nested.is_some() && is_vmx_instruction(&info) {
            match l1vmx::vmx_instruction(g, &mut v, &info) {
                Step::Action(a) => a,
                Step::EntryFailed => l1vmx::after_failed_entry(g, &mut v),
                Step::EnterL2 { launch } => match l1vmx::enter_l2(g, &mut v, launch) {
                    Ok(()) => continue,
                    Err(why) => {
                        log::error!("entering L2 failed: {why}");
                        return GuestEnd::Failed("entering L2 failed");
                    }
                },
            }
        } else {
            exits::handle(g, &mut v, &info)
        };
        match action {
            Action::Resume => {}
            Action::Skip => skip_instruction(&mut v, &info),
            Action::Inject(f) => inject(&mut v, f.exception()),
            Action::Stop(end) => return end,
        }
    }
}

fn trace(v: &HwVmcs, info: &ExitInfo) {
    use core::sync::atomic::Ordering;
    let left = TRACE_EXITS.load(Ordering::Relaxed);
    let only = TRACE_REASON.load(Ordering::Relaxed);
    if left > 0 && (only == u32::MAX || only == u32::from(info.basic())) {
        TRACE_EXITS.store(left - 1, Ordering::Relaxed);
        log::info!(
            "trace: exit {:?} ({:#x}) rip={:#x} qualification={:#x} intr={:#x}",
            info.exit_reason(),
            info.reason,
            v.read(F::GuestRip),
            info.qualification,
            info.intr_info
        );
    }
}

fn vmx_self_test(ept: &Ept) {
    let test = *VMX_SELF_TEST.lock();
    if test.is_empty() {
        return;
    }
    log::info!("self-test: {test}");
    // SAFETY: vmcs01 was just made current by setup::create.
    let mut v = unsafe { HwVmcs::current() };
    match test {
        // Must-be-1 pin-based bits cleared: VMfailValid(7) at VMLAUNCH.
        "bad-controls" => v.write(F::PinBasedVmExecControl, 0),
        // TR unusable: a VM-entry failure (exit reason 33) at VMLAUNCH.
        "bad-guest-state" => v.write(F::GuestTrArBytes, 1 << 16),
        "bad-vmptrld" => {
            // SAFETY: a deliberately misaligned VMCS address: VMPTRLD must fail (error 9);
            // vmcs01 stays current.
            let result = unsafe { insn::vmptrld(0x1234) };
            log::info!("self-test: VMPTRLD of 0x1234: {result:?}");
        }
        // The guest's first 2 MiB mapped to 3 GiB, outside our memory.
        "bad-ept" => ept.remap_first_2m(3 << 30),
        other => log::warn!("self-test: unknown VMX self-test `{other}`"),
    }
}

fn is_vmx_instruction(info: &ExitInfo) -> bool {
    !info.is_entry_failure() && info.exit_reason().is_some_and(ExitReason::is_vmx_instruction)
}

fn report(g: &Guest, end: GuestEnd) {
    match end {
        GuestEnd::Exited(status) => log::info!("guest: exited with status {status}"),
        GuestEnd::Failed(why) => {
            log::error!("guest: stopped by L{}: {why}", crate::console::depth());
        }
    }
    log::info!(
        "exits: total={} (guest console: {} bytes)",
        g.counters.total(),
        g.devices.com1.sent
    );
    for (number, &count) in g.counters.per_reason.iter().enumerate() {
        if count == 0 {
            continue;
        }
        let name = ExitReason::from_basic(number as u16);
        match name {
            Some(reason) => log::info!("exits: {reason:?}={count}"),
            None => log::info!("exits: reason-{number}={count}"),
        }
    }
    if g.counters.unknown > 0 {
        log::info!("exits: unknown={}", g.counters.unknown);
    }
    exits::mark::report();
    if let Some(n) = &g.nested {
        log::info!(
            "exits: nested: L2 caused {} exits, {} reflected to L1, {} handled by L0 alone",
            n.l2_exits,
            n.reflected,
            n.l2_exits - n.reflected
        );
    }
}
