//! COM1 console and the `log` logger. Every line starts with the nesting depth, the CPU and the
//! level, e.g. `[L0 cpu0 INFO ] ...`, so output of stacked levels stays readable.

use core::fmt::{self, Write};

use hermit_sync::InterruptSpinMutex;
use log::{LevelFilter, Log, Metadata, Record};
use uart_16550::backend::PioBackend;
use uart_16550::{Config, Uart16550, Uart16550Tty};

use crate::arch::cpu;

const COM1: u16 = 0x3f8;

static SERIAL: InterruptSpinMutex<Option<Uart16550Tty<PioBackend>>> = InterruptSpinMutex::new(None);
static LOGGER: Logger = Logger;
/// The nesting depth shown in the prefix, detected at start-up.
static DEPTH: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);
/// Set when a turtles L0 is below (`init`'s `under_turtles`): its COM1 model
/// (`pc::uart`) takes every byte at once and its LSR always shows THR empty, so lines are sent
/// without polling LSR first, one VM exit per byte instead of two (at depth 2, L1's copies of
/// L2's console lines were most of L1's own I/O exits).
static UNPOLLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
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
                Out::of(port),
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
/// shown in every line's prefix. Boot never waits on the console: every wait on the UART is
/// bounded. Without a UART (the scratch register does not hold a value) the kernel runs
/// silently; a UART whose loopback mode does not echo (some VMMs' 16550s) is used without its
/// self-test. `cmdline` is the kernel command line: `turtles.test=console-no-loopback` runs
/// the loopback probe with loopback mode off, as such a UART behaves, for the tests.
/// `under_turtles` says a turtles L0 is below (its UART is written without polling LSR).
pub fn init(depth: u32, under_turtles: bool, cmdline: &str) {
    let simulate = cmdline.split_whitespace().any(|w| w == "turtles.test=console-no-loopback");
    let (port, probe) = open(simulate);
    *SERIAL.lock() = port;
    CPU_ID.store(cpu_id(), core::sync::atomic::Ordering::Relaxed);
    UNPOLLED.store(under_turtles, core::sync::atomic::Ordering::Relaxed);
    DEPTH.store(depth, core::sync::atomic::Ordering::Relaxed);
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(LevelFilter::Trace);
    if probe == Probe::NoLoopback {
        log::warn!("console: COM1 does not loop back its test byte: used without the self-test");
    }
}

/// What the UART probe found at COM1.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Probe {
    Absent,
    NoLoopback,
    Works,
}

/// Polls of the line status register before the probe gives up on the UART (each is an I/O
/// port read: about a microsecond on hardware, one VM exit under a hypervisor).
const PROBE_POLLS: u32 = 10_000;

/// Opens COM1: present (scratch register), transmitter idle, initialised by the UART crate
/// (whose own loopback self-test waits without a bound, so it is not used), then our bounded
/// loopback probe.
fn open(simulate_no_loopback: bool) -> (Option<Uart16550Tty<PioBackend>>, Probe) {
    // SAFETY: COM1's eight ports belong to the kernel; nothing else drives them.
    let Ok(mut uart) = (unsafe { Uart16550::new_port(COM1) }) else {
        return (None, Probe::Absent);
    };
    // The crate's `init` waits for the transmitter to drain: only start it when it will.
    if !uart.check_present() || !poll(LSR_TRANSMITTER_EMPTY) {
        return (None, Probe::Absent);
    }
    if uart.init(Config::default()).is_err() {
        return (None, Probe::Absent);
    }
    let probe =
        if loopback_echoes(simulate_no_loopback) { Probe::Works } else { Probe::NoLoopback };
    (Some(Uart16550Tty::from_inner(uart)), probe)
}

/// Line status register bits (16550: LSR at base + 5).
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TRANSMITTER_EMPTY: u8 = 0x40;
/// Modem control register (base + 4): loopback mode.
const MCR_LOOPBACK: u8 = 0x10;

/// True once LSR shows `bit`, false after [`PROBE_POLLS`] reads without it.
fn poll(bit: u8) -> bool {
    for _ in 0..PROBE_POLLS {
        // SAFETY: reading COM1's line status register has no side effect we rely on.
        if unsafe { cpu::inb(COM1 + 5) } & bit != 0 {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// Sends one test byte in loopback mode and waits, bounded, for it to come back; restores
/// the modem control register either way. `simulate_no_loopback` leaves loopback mode off,
/// as on a UART without it: the byte goes out on the line and nothing comes back.
fn loopback_echoes(simulate_no_loopback: bool) -> bool {
    // Carriage return: should a UART without loopback send it out, a terminal shows nothing.
    const TEST_BYTE: u8 = b'\r';
    // SAFETY: COM1 belongs to the kernel; reading its modem control register has no effect.
    let mcr = unsafe { cpu::inb(COM1 + 4) };
    // SAFETY: COM1 belongs to the kernel; the modem control register is restored below and
    // the bytes drained are stale input, not anyone's data.
    unsafe {
        if !simulate_no_loopback {
            cpu::outb(COM1 + 4, mcr | MCR_LOOPBACK);
        }
        for _ in 0..16 {
            if cpu::inb(COM1 + 5) & LSR_DATA_READY == 0 {
                break;
            }
            let _ = cpu::inb(COM1);
        }
    }
    let echoed = poll(LSR_THR_EMPTY) && {
        // SAFETY: the transmitter is empty; in loopback mode the byte stays in the UART.
        unsafe { cpu::outb(COM1, TEST_BYTE) };
        // SAFETY: reading the receive buffer takes the probe's own byte.
        poll(LSR_DATA_READY) && unsafe { cpu::inb(COM1) } == TEST_BYTE
    };
    // SAFETY: back to the modem lines the UART crate set.
    unsafe { cpu::outb(COM1 + 4, mcr) };
    echoed
}

/// Prints one line of a guest's console output, prefixed with the guest's depth: `L1| ...`.
pub fn guest_line(depth: u32, text: &str) {
    let mut serial = SERIAL.lock();
    match serial.as_mut() {
        Some(port) => {
            let _ = writeln!(Out::of(port), "L{depth}| {text}");
        }
        None => {
            let _ = writeln!(emergency(), "L{depth}| {text}");
        }
    }
}

/// Where a console line goes while the console lock is held: the UART crate's writer, or
/// under a turtles L0 ([`UNPOLLED`]) straight to the transmit holding register.
enum Out<'a> {
    Polled(&'a mut Uart16550Tty<PioBackend>),
    Unpolled,
}

impl<'a> Out<'a> {
    fn of(port: &'a mut Uart16550Tty<PioBackend>) -> Self {
        if UNPOLLED.load(core::sync::atomic::Ordering::Relaxed) {
            Out::Unpolled
        } else {
            Out::Polled(port)
        }
    }
}

impl Write for Out<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match self {
            Out::Polled(port) => port.write_str(s),
            Out::Unpolled => {
                for byte in s.bytes() {
                    if byte == b'\n' {
                        send(b'\r');
                    }
                    send(byte);
                }
                Ok(())
            }
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

/// Sends one byte without waiting: only under a turtles L0, whose UART is always ready.
fn send(byte: u8) {
    // SAFETY: writing the transmit holding register only sends the byte; the caller holds
    // the console lock, so lines do not interleave.
    unsafe { cpu::outb(COM1, byte) };
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
