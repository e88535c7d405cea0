//! A physical PCI function L0 assigns to its guest (`assign = ["e1000"]`): the guest sees it
//! at its real bus/device/function on the PCI bus of [`pc::pci::PciConfig`], and its
//! configuration-space accesses go through the passthrough filter (`pc::passthrough`) to the
//! real function. Its memory BARs are mapped 1:1 in EPT01 and its I/O BARs passed through the
//! I/O bitmap by the run loop (`vmx::run`); what the filter refuses is logged here.

use pc::intx::ForwardedLine;
use pc::passthrough::{Passthrough, Refused};

use crate::drivers::FunctionConfig;
use crate::ratelimit::RateLimit;

static REFUSED: RateLimit = RateLimit::new(16);

/// The assigned function, its filter and its forwarded INTx line.
pub struct Assigned {
    real: FunctionConfig,
    filter: Passthrough,
    /// The function's interrupt line register (3Ch): the GSI its INTx reaches.
    line: u8,
    /// The INTx line on the guest's I/O APIC, when this level forwards it (`vmx::intx`).
    pub intx: Option<ForwardedLine>,
}

impl Assigned {
    /// Learns the function's BARs and capabilities (MSI and MSI-X are hidden: L0 delivers
    /// INTx only) and logs what the guest will see.
    pub fn new(mut real: FunctionConfig) -> Self {
        let line = (pc::passthrough::ConfigSpace::read32(&mut real, 0x3c) & 0xff) as u8;
        let filter = Passthrough::new(&mut real, line, true);
        for (index, address, size, io) in filter.bars() {
            log::info!(
                "assign: {} bar{index}: {} {address:#x}, {size:#x} bytes, passed through 1:1",
                real.0,
                if io { "ports" } else { "memory" },
            );
        }
        Assigned { real, filter, line, intx: None }
    }

    /// The function's interrupt line (configuration register 3Ch as firmware set it).
    pub fn line(&self) -> u8 {
        self.line
    }

    /// The filter (for its BARs).
    pub fn filter(&self) -> &Passthrough {
        &self.filter
    }

    /// The function is at `bus`:`device`.`function`.
    pub fn is(&self, bus: u8, device: u8, function: u8) -> bool {
        let df = &self.real.0;
        (df.bus, df.device, df.function) == (bus, device, function)
    }

    /// A guest read of `size` bytes at configuration offset `offset`.
    pub fn read(&mut self, offset: u16, size: u8) -> u32 {
        self.filter.read(&mut self.real, offset, size)
    }

    /// A guest write; a refusal is logged (rate-limited) and the rest of the write applies.
    pub fn write(&mut self, offset: u16, size: u8, value: u32) {
        if let Err(e) = self.filter.write(&mut self.real, offset, size, value)
            && REFUSED.allow()
        {
            let df = &self.real.0;
            match e {
                Refused::WildBar { index, value } => log::warn!(
                    "assign: {df}: guest wrote {value:#x} to bar{index}: the BAR keeps its real \
                     address (1:1 memory; the device does not move)"
                ),
                Refused::HiddenCapability { offset } => {
                    log::warn!(
                        "assign: {df}: guest write at {offset:#x} (hidden MSI/MSI-X) ignored"
                    )
                }
                Refused::OutOfRange { offset } => {
                    log::warn!(
                        "assign: {df}: guest write at {offset:#x}, beyond 256 bytes, ignored"
                    )
                }
                Refused::BadSize { size } => {
                    log::warn!("assign: {df}: guest write of {size} bytes ignored")
                }
            }
        }
    }
}
