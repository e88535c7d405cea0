//! COM1 console and the `log` logger. Every line starts with the nesting depth, the CPU and the
//! level, e.g. `[L0 cpu0 INFO ] ...`, so output of stacked levels stays readable.

use core::fmt::{self, Write};

use hermit_sync::InterruptSpinMutex;
use log::{LevelFilter, Log, Metadata, Record};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550Tty};

use crate::arch::cpu;

const COM1: u16 = 0x3f8;

static SERIAL: InterruptSpinMutex<Option<Uart16550Tty<PioBackend>>> = InterruptSpinMutex::new(None);
static LOGGER: Logger = Logger;
/// The nesting depth shown in the prefix, detected at start-up.
static DEPTH: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// This CPU's initial APIC ID, read once: under a hypervisor every CPUID is a VM exit.
static CPU_ID: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The nesting depth this image runs at, as given to [`init`].
pub fn depth() -> u32 {
    DEPTH.load(core::sync::atomic::Ordering::Relaxed)
}

struct Logger;

impl Log for Logger {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &Record<'_>) {
        let mut serial = SERIAL.lock();
        if let Some(port) = serial.as_mut() {
            let _ = writeln!(
                port,
                "[L{} cpu{} {:<5}] {}",
                depth(),
                CPU_ID.load(core::sync::atomic::Ordering::Relaxed),
                record.level(),
                record.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Initial APIC ID of this CPU (CPUID.1:EBX[31:24]).
fn cpu_id() -> u32 {
    raw_cpuid::CpuId::new().get_feature_info().map_or(0, |f| u32::from(f.initial_local_apic_id()))
}

/// Initialises COM1 and installs the logger; `depth` is the nesting depth the image runs at,
/// shown in every line's prefix. Without a UART the kernel runs silently.
pub fn init(depth: u32) {
    // SAFETY: COM1 belongs to the kernel; nothing else drives it.
    let port = unsafe { Uart16550Tty::new_port(COM1, Config::default()) }.ok();
    *SERIAL.lock() = port;
    CPU_ID.store(cpu_id(), core::sync::atomic::Ordering::Relaxed);
    DEPTH.store(depth, core::sync::atomic::Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Trace);
}

/// Prints one line of a guest's console output, prefixed with the guest's depth: `L1| ...`.
pub fn guest_line(depth: u32, text: &str) {
    let mut serial = SERIAL.lock();
    match serial.as_mut() {
        Some(port) => {
            let _ = writeln!(port, "L{depth}| {text}");
        }
        None => {
            let _ = writeln!(emergency(), "L{depth}| {text}");
        }
    }
}

/// A writer straight to the COM1 registers that takes no lock: for the panic and exception
/// paths, which may run while the console lock is held.
pub fn emergency() -> Emergency {
    Emergency
}

/// See [`emergency`].
pub struct Emergency;

impl Write for Emergency {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                put(b'\r');
            }
            put(byte);
        }
        Ok(())
    }
}

/// Waits until COM1 has sent every byte (LSR bit 6, transmitter empty), so an emulator that
/// stops right after (Bochs' shutdown port) does not lose the last line.
pub fn flush() {
    for _ in 0..1_000_000 {
        // SAFETY: reading the line status register of COM1 has no side effect we rely on.
        if unsafe { cpu::inb(COM1 + 5) } & 0x40 != 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

fn put(byte: u8) {
    for _ in 0..100_000 {
        // SAFETY: reading the line status register of COM1 has no side effect we rely on.
        if unsafe { cpu::inb(COM1 + 5) } & 0x20 != 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: writing the transmit holding register only sends the byte.
    unsafe { cpu::outb(COM1, byte) };
}
