//! The PC platform's device models, as a hypervisor level offers them to its guest: the local APIC ([`lapic`], SDM Vol. 3A
//! ch. 11), the 82093AA I/O APIC ([`ioapic`]), the two 8259A PICs ([`pic`]), the 8254 PIT and port 61h ([`pit`]), the
//! MC146818 RTC and CMOS RAM ([`rtc`]), the 16550A UART ([`uart`]), the ACPI PM1 registers and PM timer ([`pm`]), the
//! reset ports ([`reset`]), the ACPI tables that describe them ([`acpi`]), the instruction decoder for trapped MMIO
//! accesses ([`decode`], SDM Vol. 2 ch. 2), and string I/O performed for a guest ([`string_io`]).
//!
//! They are pure (no hardware access, `no_std`, host-tested): the image passes the time in (`now`, a TSC
//! value; the models never read a clock), feeds them the guest's port, MMIO and MSR accesses,
//! and injects what they report. Guest-controlled values are never unwrapped or used as
//! unchecked indices, and all time arithmetic saturates or wraps (see `fuzz` in each file).

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

pub mod acpi;
pub mod acpi_virtio;
pub mod cpuid;
pub mod decode;
#[cfg(test)]
mod feature_msrs;
pub mod intx;
pub mod ioapic;
pub mod lapic;
pub mod msr;
pub mod passthrough;
pub mod pci;
pub mod pic;
pub mod pit;
pub mod pm;
pub mod reset;
pub mod rtc;
pub mod string_io;
pub mod uart;

#[cfg(test)]
mod decode_oracle;

/// Proptest settings for the fuzz tests in this module: `TURTLES_FUZZ_CASES=N` overrides
/// the case count, as for `proptests.rs`.
#[cfg(test)]
fn fuzz_config(default: u32) -> proptest::test_runner::Config {
    let n =
        std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    proptest::test_runner::Config {
        cases: n,
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
