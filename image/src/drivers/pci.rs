//! PCI in one place: configuration space through the legacy 0xCF8/0xCFC mechanism (PCI Local
//! Bus 3.0 section 3.2.2.3.2; works on QEMU q35 and Bochs i440fx), enumeration of every bus
//! behind bridges, BARs, capabilities (MSI, MSI-X, vendor) and turning on decoding and bus
//! mastering. Drivers get a [`PciRoot`] from here and nothing else touches the ports.

use alloc::vec::Vec;

use virtio_drivers::transport::pci::bus::{
    BarInfo, Command, ConfigurationAccess, DeviceFunction, DeviceFunctionInfo, HeaderType, PciRoot,
};
use x86_64::instructions::port::Port;

const CONFIG_ADDRESS: u16 = 0xcf8;
const CONFIG_DATA: u16 = 0xcfc;
const CAP_MSI: u8 = 0x05;
const CAP_MSIX: u8 = 0x11;

/// Configuration space through I/O ports.
pub struct PortCam;

impl ConfigurationAccess for PortCam {
    fn read_word(&self, df: DeviceFunction, offset: u8) -> u32 {
        let mut address = Port::<u32>::new(CONFIG_ADDRESS);
        let mut data = Port::<u32>::new(CONFIG_DATA);
        // SAFETY: the configuration mechanism's two ports are used only here, by one CPU
        // with interrupts off, so the address/data pair is not interleaved.
        unsafe {
            address.write(config_address(df, offset));
            data.read()
        }
    }

    fn write_word(&mut self, df: DeviceFunction, offset: u8, value: u32) {
        let mut address = Port::<u32>::new(CONFIG_ADDRESS);
        let mut data = Port::<u32>::new(CONFIG_DATA);
        // SAFETY: as in `read_word`; callers write only registers whose effect they intend.
        unsafe {
            address.write(config_address(df, offset));
            data.write(value);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam
    }
}

/// One function's configuration space, for the passthrough filter of a function L0 assigns
/// to its guest (`pc::passthrough`): dword reads, and writes of the size the guest used (a
/// byte or word write reaches CONFIG_DATA at its lane, so write-1-to-clear status bits the
/// guest did not name are left alone).
pub struct FunctionConfig(pub DeviceFunction);

impl pc::passthrough::ConfigSpace for FunctionConfig {
    fn read32(&mut self, offset: u8) -> u32 {
        PortCam.read_word(self.0, offset)
    }

    fn write(&mut self, offset: u8, size: u8, value: u32) {
        let mut address = Port::<u32>::new(CONFIG_ADDRESS);
        let lane = u16::from(offset & 3);
        // SAFETY: as in `PortCam::read_word`; the filter passes only registers the guest
        // may write, naturally aligned, of 1, 2 or 4 bytes.
        unsafe {
            address.write(config_address(self.0, offset));
            match size {
                1 => Port::<u8>::new(CONFIG_DATA + lane).write(value as u8),
                2 => Port::<u16>::new(CONFIG_DATA + lane).write(value as u16),
                _ => Port::<u32>::new(CONFIG_DATA).write(value),
            }
        }
    }
}

fn config_address(df: DeviceFunction, offset: u8) -> u32 {
    1 << 31
        | u32::from(df.bus) << 16
        | u32::from(df.device & 0x1f) << 11
        | u32::from(df.function & 7) << 8
        | u32::from(offset & 0xfc)
}

/// One function found on the bus.
#[derive(Clone, Debug)]
pub struct PciFunction {
    pub df: DeviceFunction,
    pub info: DeviceFunctionInfo,
    pub msi: bool,
    pub msix: bool,
}

/// The root complex.
pub fn root() -> PciRoot<PortCam> {
    PciRoot::new(PortCam)
}

/// Every function on bus 0 and the buses behind its bridges (at most 256 buses).
pub fn enumerate(root: &PciRoot<PortCam>) -> Vec<PciFunction> {
    let mut found = Vec::new();
    let mut buses = Vec::from([0u8]);
    let mut seen = [false; 256];
    while let Some(bus) = buses.pop() {
        if core::mem::replace(&mut seen[usize::from(bus)], true) {
            continue;
        }
        for (df, info) in root.enumerate_bus(bus) {
            if info.header_type == HeaderType::PciPciBridge {
                // Secondary bus number: byte 1 of the bus-number register (0x18).
                let secondary = (PortCam.read_word(df, 0x18) >> 8) as u8;
                if secondary != 0 {
                    buses.push(secondary);
                }
            }
            let mut msi = false;
            let mut msix = false;
            if info.header_type == HeaderType::Standard {
                for cap in root.capabilities(df) {
                    msi |= cap.id == CAP_MSI;
                    msix |= cap.id == CAP_MSIX;
                }
            }
            found.push(PciFunction { df, info, msi, msix });
        }
    }
    found
}

/// Turns on memory and I/O decoding and bus mastering (the device DMAs into our buffers).
pub fn enable(root: &mut PciRoot<PortCam>, df: DeviceFunction) {
    let (_, command) = root.get_status_command(df);
    root.set_command(df, command | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER);
}

/// Logs a function, its BARs and interrupt capabilities. Returns false if a memory BAR lies
/// beyond the 4 GiB identity map (the driver could not reach it).
pub fn describe(root: &mut PciRoot<PortCam>, f: &PciFunction) -> bool {
    log::info!(
        "pci: {} {:04x}:{:04x} class {:02x}.{:02x} msi={} msi-x={}",
        f.df,
        f.info.vendor_id,
        f.info.device_id,
        f.info.class,
        f.info.subclass,
        if f.msi { "yes" } else { "no" },
        if f.msix { "yes" } else { "no" }
    );
    let mut reachable = true;
    let Ok(bars) = root.bars(f.df) else {
        log::warn!("pci: {}: cannot read its BARs", f.df);
        return false;
    };
    for (i, bar) in bars.iter().enumerate() {
        let Some(bar) = bar else { continue };
        log::info!("pci: {}   bar{i}: {bar}", f.df);
        if let BarInfo::Memory { address, size, .. } = bar
            && address.saturating_add(*size) > 1 << 32
        {
            log::error!("pci: {} bar{i} at {address:#x} is beyond the 4 GiB identity map", f.df);
            reachable = false;
        }
    }
    reachable
}
