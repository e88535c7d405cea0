//! The turtles image: one ELF that boots through multiboot1, multiboot2 or PVH, sets up long
//! mode, its own descriptor tables, memory and console, reports the platform, and then does
//! what its build-time config (`configs/<name>.toml`) says.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod boot;
mod console;
mod exit;
mod mm;
mod platform;

/// Constants generated from the chosen `configs/<name>.toml` by `build.rs`.
mod config {
    include!(concat!(env!("OUT_DIR"), "/config.rs"));
}

use boot::BootInfo;
use exit::Status;

/// Rust entry from the boot stub, in long mode on the boot stack, with the loader's magic
/// (or [`boot::PVH_ENTRY_MAGIC`]) and the physical address of its boot information.
extern "C" fn kstart(magic: u32, info: u32) -> ! {
    console::init();
    arch::gdt::init();
    arch::idt::init();
    log::info!(
        "turtles {} config={} role={} depth={}: {}",
        env!("CARGO_PKG_VERSION"),
        config::NAME,
        config::ROLE,
        config::DEPTH,
        config::DESCRIPTION
    );
    // SAFETY: `info` is what the loader passed; the first 4 GiB are identity-mapped.
    let boot = match unsafe { BootInfo::parse(magic, info) } {
        Ok(boot) => boot,
        Err(e) => {
            log::error!("boot: {e}");
            exit::exit(Status::Failure);
        }
    };
    report_boot(&boot);
    init_memory(&boot);
    run_self_test(boot.cmdline.as_str());

    match platform::report() {
        platform::Vmx::Present(_) => {
            log::info!("vmx: this CPU can run guests");
        }
        platform::Vmx::Absent if config::NEEDS_VMX => {
            log::error!(
                "no VMX on this CPU: turtles cannot run guests here (role {} needs VMX; under \
                 QEMU TCG or a KVM guest without nested VMX use Bochs or enable nested)",
                config::ROLE
            );
            exit::exit(Status::NoVmx);
        }
        platform::Vmx::LockedOff if config::NEEDS_VMX => {
            log::error!(
                "VMX is disabled by firmware (IA32_FEATURE_CONTROL locked without VMX outside \
                 SMX): turtles cannot run guests; enable VT-x in the firmware settings"
            );
            exit::exit(Status::NoVmx);
        }
        platform::Vmx::Absent | platform::Vmx::LockedOff => {
            log::info!("vmx: not available and not needed by role {}", config::ROLE);
        }
    }
    exit::exit(Status::Success)
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
        exit::exit(Status::Failure);
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
        // SAFETY: deliberately raises #UD to exercise the exception path; it does not return.
        "exception" => unsafe { core::arch::asm!("ud2") },
        "pagefault" => {
            // 256 GiB is beyond the identity map: this read page-faults.
            // SAFETY: deliberately faults to exercise the #PF path; it does not return.
            let value = unsafe { core::ptr::read_volatile(0x40_0000_0000 as *const u64) };
            log::error!("read beyond the identity map returned {value:#x}");
        }
        "panic" => panic!("deliberate panic (turtles.test=panic)"),
        "hang" => arch::cpu::halt_forever(),
        other => log::warn!("self-test: unknown test `{other}` ignored"),
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut out = console::emergency();
    let _ = core::fmt::Write::write_fmt(&mut out, format_args!("PANIC: {info}\n"));
    exit::exit(Status::Failure)
}
