//! The turtles image: one ELF that boots through multiboot1, multiboot2 or PVH, sets up long
//! mode, its own descriptor tables, memory and console, reports the platform, and then does
//! what its build-time config (`configs/<name>.toml`) says.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod console;
mod drivers;
mod fuzz;
mod guest;
mod machine;
mod mm;
mod platform;
mod ratelimit;
mod shutdown;
mod vmx;
mod workload;

/// Constants generated from the chosen `configs/<name>.toml` by `build.rs`.
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

use boot::BootInfo;
use shutdown::Status;

/// Rust entry from the boot stub, in long mode on the boot stack, with the loader's magic
/// (or [`boot::PVH_ENTRY_MAGIC`]) and the physical address of its boot information.
extern "C" fn kstart(magic: u32, info: u32) -> ! {
    arch::gdt::init();
    arch::idt::init(on_exception);
    // No IRQ handlers are installed: keep the legacy PICs from delivering firmware timers.
    arch::pic::mask_all();
    // SAFETY: `info` is what the loader passed; the first 4 GiB are identity-mapped.
    let boot = unsafe { BootInfo::parse(magic, info) };
    let cmdline = boot.as_ref().map_or("", |b| b.cmdline.as_str());
    console::init(platform::detect_depth(config::DEPTH), platform::under_turtles(), cmdline);
    log::info!(
        "turtles {} config={} role={} depth={}: {}",
        env!("CARGO_PKG_VERSION"),
        config::NAME,
        config::ROLE,
        console::depth(),
        config::DESCRIPTION
    );
    let boot = match boot {
        Ok(boot) => boot,
        Err(e) => {
            log::error!("boot: {e}");
            shutdown::exit(Status::Failure);
        }
    };
    report_boot(&boot);
    init_memory(&boot);
    drivers::init(&boot);
    run_self_test(boot.cmdline.as_str());
    if let Some(n) = boot
        .cmdline
        .as_str()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("turtles.trace_exits="))
    {
        vmx::run::TRACE_EXITS.store(n.parse().unwrap_or(0), core::sync::atomic::Ordering::Relaxed);
    }
    if let Some(n) = boot
        .cmdline
        .as_str()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("turtles.trace_reason="))
    {
        vmx::run::TRACE_REASON
            .store(n.parse().unwrap_or(u32::MAX), core::sync::atomic::Ordering::Relaxed);
    }

    match platform::report() {
        platform::Vmx::Present(caps) => {
            log::info!("vmx: this CPU can run guests");
            if config::NAME == "fuzz-l1" {
                fuzz::run(&caps, boot.cmdline.as_str());
            }
            if let Some(guest) = config::GUEST {
                run_guest(&caps, &boot, guest);
            }
        }
        platform::Vmx::Absent if config::NEEDS_VMX => {
            log::error!(
                "no VMX on this CPU: turtles cannot run guests here (role {} needs VMX; under \
                 QEMU TCG or a KVM guest without nested VMX use Bochs or enable nested)",
                config::ROLE
            );
            shutdown::exit(Status::NoVmx);
        }
        platform::Vmx::LockedOff if config::NEEDS_VMX => {
            log::error!(
                "VMX is disabled by firmware (IA32_FEATURE_CONTROL locked without VMX outside \
                 SMX): turtles cannot run guests; enable VT-x in the firmware settings"
            );
            shutdown::exit(Status::NoVmx);
        }
        platform::Vmx::Absent | platform::Vmx::LockedOff => {
            log::info!("vmx: not available and not needed by role {}", config::ROLE);
        }
    }
    if config::ROLE == "leaf" && !workload::run() {
        shutdown::exit(Status::Failure);
    }
    shutdown::exit(Status::Success)
}

/// Boots the config's guest from the boot module named after it and ends the run with the
/// guest's status (or [`Status::GuestStopped`] if L0 had to stop it).
fn run_guest(caps: &nested::caps::VmxCaps, boot: &BootInfo, name: &'static str) -> ! {
    let module =
        boot.modules().find(|m| m.cmdline.as_str().split_whitespace().next() == Some(name));
    // The config's disk, if it has one with the guest on it, comes first.
    let image = match (drivers::disk_guest(name), module) {
        (Some(image), _) => {
            log::info!("guest: `{name}` loaded from disk ({} KiB)", image.len() / 1024);
            image
        }
        // SAFETY: the module's bytes were placed there by the boot loader and are excluded
        // from the frame allocator, so nothing else uses them.
        (None, Some(m)) => unsafe {
            core::slice::from_raw_parts(m.start as *const u8, (m.end - m.start) as usize)
        },
        (None, None) => {
            log::error!("guest: no boot module or disk image named `{name}`");
            shutdown::exit(Status::Failure);
        }
    };
    let module_start = module.map_or(u64::MAX, |m| m.start);
    let module_cmdline = module.map_or(name, |m| m.cmdline.as_str());
    let mut protocol = None;
    let mut args = alloc::string::String::new();
    for word in module_cmdline.split_whitespace().skip(1) {
        match word.strip_prefix("turtles.boot=") {
            Some("multiboot1") => protocol = Some(guest::boot::Protocol::Multiboot1),
            Some("multiboot2") => protocol = Some(guest::boot::Protocol::Multiboot2),
            Some("pvh") => protocol = Some(guest::boot::Protocol::Pvh),
            Some(other) => log::warn!("guest: unknown boot protocol `{other}` ignored"),
            None => {
                if !args.is_empty() {
                    args.push(' ');
                }
                args.push_str(word);
            }
        }
    }
    // Further modules (the guest's own guests) are handed on to the guest.
    let modules: alloc::vec::Vec<(&[u8], &str)> = boot
        .modules()
        .filter(|m| m.start != module_start)
        .map(|m| {
            // SAFETY: as for the guest image above.
            let bytes = unsafe {
                core::slice::from_raw_parts(m.start as *const u8, (m.end - m.start) as usize)
            };
            (bytes, m.cmdline.as_str())
        })
        .collect();
    let spec = vmx::run::GuestSpec {
        name,
        image,
        cmdline: &args,
        modules: &modules,
        protocol,
        memory: guest_memory(boot.cmdline.as_str()),
        depth: console::depth() + 1,
        apic_id: platform::apic_id(),
        tsc_hz: platform::tsc_hz(),
        expose_vmx: config::EXPOSE_VMX,
        vmcs_shadowing: !boot
            .cmdline
            .as_str()
            .split_whitespace()
            .any(|w| w == "turtles.vmcs_shadowing=off"),
    };
    match vmx::run::run_guest(caps, &spec) {
        Ok(vmx::action::GuestEnd::Exited(status)) => shutdown::exit_with(status),
        Ok(vmx::action::GuestEnd::Failed(_)) => {
            log::info!("L{} is still running after stopping its guest", console::depth());
            shutdown::exit(Status::GuestStopped)
        }
        Err(e) => {
            log::error!("vmx: {e}");
            shutdown::exit(Status::Failure)
        }
    }
}

/// The guest's memory in bytes: `turtles.guest_mem_mib=N` on L0's command line (the runner's
/// `--guest-mem`), else the config's `guest_memory_mib`. More than this machine has free
/// ends the run with an error naming both.
fn guest_memory(cmdline: &str) -> u64 {
    let asked = cmdline.split_whitespace().find_map(|w| w.strip_prefix("turtles.guest_mem_mib="));
    let mib = match asked.map(str::parse::<u64>) {
        None => return config::GUEST_MEMORY_MIB << 20,
        Some(Ok(mib)) if mib >= 1 => mib,
        Some(_) => {
            log::error!(
                "guest: turtles.guest_mem_mib={} is not a size in MiB",
                asked.unwrap_or("")
            );
            shutdown::exit(Status::Failure);
        }
    };
    let free = mm::frames::free_bytes() >> 20;
    if mib > free {
        log::error!("guest: {mib} MiB of guest memory asked for, this machine has {free} MiB free");
        shutdown::exit(Status::Failure);
    }
    log::info!(
        "guest: {mib} MiB of memory (turtles.guest_mem_mib; the config says {} MiB)",
        config::GUEST_MEMORY_MIB
    );
    mib << 20
}

fn report_boot(boot: &BootInfo) {
    log::info!("boot: protocol={} cmdline=\"{}\"", boot.protocol, boot.cmdline.as_str());
    for r in boot.regions() {
        log::info!("memory: [{:#014x}-{:#014x}) {:?}", r.start, r.end, r.kind);
    }
    for m in boot.modules() {
        log::info!("module: [{:#x}-{:#x}) \"{}\"", m.start, m.end, m.cmdline.as_str());
    }
    if boot.dropped > 0 {
        log::warn!("boot: {} memory-map or module entries did not fit and were ignored", {
            boot.dropped
        });
    }
}

fn init_memory(boot: &BootInfo) {
    let available = boot.available_bytes();
    let usable = mm::frames::init(boot);
    let heap = config::HEAP_MIB << 20;
    if !mm::heap::init(heap) {
        log::error!(
            "memory: cannot take a {} MiB heap from {} KiB of usable memory",
            config::HEAP_MIB,
            usable >> 10
        );
        shutdown::exit(Status::Failure);
    }
    let check: alloc::vec::Vec<u64> = (0..1024).collect();
    log::info!(
        "memory: {} MiB available, {} MiB usable, heap {} MiB (check sum {}), {} MiB free",
        available >> 20,
        usable >> 20,
        config::HEAP_MIB,
        check.iter().sum::<u64>(),
        mm::frames::free_bytes() >> 20
    );
}

/// Deliberate failures asked for on the command line (`turtles.test=...`), so the tests can
/// check that exceptions and panics end the run cleanly with a failure status.
fn run_self_test(cmdline: &str) {
    let Some(test) = cmdline.split_whitespace().find_map(|w| w.strip_prefix("turtles.test="))
    else {
        return;
    };
    log::info!("self-test: {test}");
    match test {
        "exception" => arch::cpu::ud2(),
        "pagefault" => {
            // 256 GiB is beyond the identity map: this read page-faults.
            // SAFETY: deliberately faults to exercise the #PF path; it does not return.
            let value = unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
            log::error!("read beyond the identity map returned {value:#x}");
        }
        "panic" => panic!("deliberate panic (turtles.test=panic)"),
        "hang" => arch::cpu::halt_forever(),
        // Taken at start-up by `console::init`: the probe ran as on a UART without loopback.
        "console-no-loopback" => {}
        // Bad-guest cases for the hypervisor below (each harmless on bare metal but `loop`).
        "triplefault" => {
            // SAFETY: deliberately leaves no IDT so the next exception (the UD2) triple-faults.
            unsafe { arch::idt::load_empty() };
            arch::cpu::ud2();
        }
        "outside" => {
            // 2 GiB: inside our identity map, outside any guest memory a test gives us, where
            // nothing answers (the hypervisor gives all ones, as a PC does).
            // SAFETY: a deliberate read of an unbacked address; on bare metal it reads
            // whatever is there.
            let value = unsafe { core::ptr::read_volatile(0x8000_0000 as *const u32) };
            log::info!("self-test: read {value:#x} at 2 GiB");
        }
        "outside-fetch" => {
            // An instruction fetch from there: all ones, FF FF, a reserved opcode (#UD), on
            // a PC as under the hypervisor.
            // SAFETY: deliberate; the call does not return (the #UD ends the run).
            let at: extern "C" fn() = unsafe { core::mem::transmute(0x8000_0000usize) };
            at();
        }
        "cr8" => {
            // CR8 is bits 7:4 of the local APIC's TPR (SDM Vol. 3A 11.8.6.5), both ways: the
            // same on a bare processor as under a hypervisor that models the APIC.
            // SAFETY: the priority is raised for a moment with interrupts off, then cleared.
            let (tpr, cr8) = unsafe {
                arch::cpu::write_cr8(5);
                let tpr = arch::apic::lapic_tpr();
                arch::apic::set_lapic_tpr(0x30);
                let cr8 = arch::cpu::cr8();
                arch::cpu::write_cr8(0);
                (tpr, cr8)
            };
            let back = arch::apic::lapic_tpr();
            log::info!(
                "self-test: CR8 5 gives TPR {tpr:#x}; TPR 0x30 gives CR8 {cr8:#x}; 0 {back:#x}"
            );
        }
        "port" => {
            // SAFETY: COM2 is not used by turtles; reading its data port has no effect.
            let value = unsafe { arch::cpu::inb(0x2f8) };
            log::info!("self-test: port 0x2f8 reads {value:#x}");
        }
        "msr" => {
            // A deliberate RDMSR of an MSR that does not exist: #GP, which our exception
            // handler reports (or the hypervisor below injects).
            let value = arch::cpu::rdmsr(0x1234);
            log::info!("self-test: MSR 0x1234 reads {value:#x}");
        }
        "vmx" => {
            // VMCALL exits to the hypervisor (which answers #UD while nesting is off); on bare
            // metal it is #UD as well.
            arch::vmx::vmcall();
        }
        "bad-controls" | "bad-guest-state" | "bad-vmptrld" | "bad-ept" => {
            *vmx::run::VMX_SELF_TEST.lock() = match test {
                "bad-controls" => "bad-controls",
                "bad-guest-state" => "bad-guest-state",
                "bad-vmptrld" => "bad-vmptrld",
                _ => "bad-ept",
            };
        }
        "loop" => {
            // A deliberate endless loop (the compute loop, never ending) that never exits
            // to the hypervisor, for its watchdog.
            let x = workload::compute(u64::MAX);
            log::error!("self-test: the endless loop ended ({x:#x})");
        }
        other => log::warn!("self-test: unknown test `{other}` ignored"),
    }
}

/// An exception in the kernel (from `arch::idt`): print its report, end with a failure.
fn on_exception(report: &dyn core::fmt::Display) -> ! {
    let mut out = console::emergency();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("{report}"));
    shutdown::exit(Status::Failure)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = console::emergency();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("PANIC: {info}\n"));
    shutdown::exit(Status::Failure)
}
