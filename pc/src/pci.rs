//! PCI configuration space through configuration mechanism #1 (PCI Local Bus Specification 3.0,
//! 3.2.2.3.2): the dword address register CONFIG_ADDRESS at CF8h (bit 31 enable, bus 23:16,
//! device 15:11, function 10:8, register 7:2) and the data window CONFIG_DATA at CFCh-CFFh.
//! The bus has one device, the host bridge at 00:00.0 with the Intel 440FX's IDs (8086:1237,
//! class 06 00 00, as QEMU's PC has it), so that an operating system's "is this really a PCI
//! host?" check (Linux's `pci_sanity_check`) passes and its scan finds an empty bus. Every other
//! function reads all-ones ("no device"); writes to configuration space are ignored (the
//! bridge has no BARs or settings to keep).
//!
//! Byte and word accesses to CF8h-CFBh are not CONFIG_ADDRESS (CF9h is the reset control
//! register, [`crate::reset`]; CFBh is the old mechanism #2 probe): [`PciConfig::owns`] claims
//! CF8h for dword accesses only.

/// CONFIG_ADDRESS.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// CONFIG_DATA, the first of its four ports.
pub const CONFIG_DATA: u16 = 0xcfc;
/// CONFIG_ADDRESS bit 31: a configuration cycle is enabled.
const ENABLE: u32 = 1 << 31;
/// The host bridge's vendor and device ID: Intel 82441FX (440FX).
pub const HOST_BRIDGE_ID: u32 = 0x1237_8086;
/// Class code 06 00 00 (host bridge) and revision 02, register 08h.
const HOST_BRIDGE_CLASS_REV: u32 = 0x0600_0002;
/// Command register (04h): memory space and bus master enabled; status 0.
const HOST_BRIDGE_COMMAND: u32 = 0x0000_0006;

/// The configuration mechanism's state.
#[derive(Clone, Copy, Debug, Default)]
pub struct PciConfig {
    address: u32,
}

impl PciConfig {
    pub const fn new() -> Self {
        PciConfig { address: 0 }
    }

    /// True for a `size`-byte access to `port` that this mechanism decodes: CF8h as a dword,
    /// CFCh-CFFh at any size.
    pub fn owns(port: u16, size: u8) -> bool {
        (port == CONFIG_ADDRESS && size == 4) || (CONFIG_DATA..CONFIG_DATA + 4).contains(&port)
    }

    /// The dword at `register` (a multiple of 4) of the function CONFIG_ADDRESS selects.
    fn config_dword(&self) -> u32 {
        let a = self.address;
        let (bus, device, function) = ((a >> 16) & 0xff, (a >> 11) & 0x1f, (a >> 8) & 7);
        if a & ENABLE == 0 || (bus, device, function) != (0, 0, 0) {
            return u32::MAX;
        }
        match a & 0xfc {
            0x00 => HOST_BRIDGE_ID,
            0x04 => HOST_BRIDGE_COMMAND,
            0x08 => HOST_BRIDGE_CLASS_REV,
            // Header type 0, single function; everything else (BARs, interrupt pin) zero.
            _ => 0,
        }
    }

    /// The function and configuration-space offset a CONFIG_DATA access at `port` reaches:
    /// (bus, device, function, register + the port's byte lane), or `None` with the enable
    /// bit clear. A level that assigns a function hands accesses to it to its
    /// [`crate::passthrough::Passthrough`] instead of [`Self::read`] and [`Self::write`].
    pub fn target(&self, port: u16) -> Option<(u8, u8, u8, u16)> {
        let a = self.address;
        if a & ENABLE == 0 || !(CONFIG_DATA..CONFIG_DATA + 4).contains(&port) {
            return None;
        }
        let lane = port - CONFIG_DATA;
        Some((
            (a >> 16) as u8,
            (a >> 11) as u8 & 0x1f,
            (a >> 8) as u8 & 7,
            (a & 0xfc) as u16 + lane,
        ))
    }

    /// A guest IN of `size` bytes (1, 2 or 4) from `port`.
    pub fn read(&self, port: u16, size: u8) -> u32 {
        if port == CONFIG_ADDRESS {
            return self.address;
        }
        let lane = u32::from(port.wrapping_sub(CONFIG_DATA) & 3);
        let value = self.config_dword() >> (8 * lane);
        match size {
            1 => value & 0xff,
            2 => value & 0xffff,
            _ => value,
        }
    }

    /// A guest OUT to `port`: CONFIG_ADDRESS keeps bits 31 and 23:2; data writes are ignored.
    pub fn write(&mut self, port: u16, value: u32) {
        if port == CONFIG_ADDRESS {
            self.address = value & 0x80ff_fffc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn select(p: &mut PciConfig, bus: u32, device: u32, function: u32, register: u32) {
        p.write(CONFIG_ADDRESS, ENABLE | bus << 16 | device << 11 | function << 8 | register);
    }

    #[test]
    fn one_host_bridge_and_nothing_else() {
        let mut p = PciConfig::new();
        // Linux's pci_check_type1: the address register reads back.
        p.write(CONFIG_ADDRESS, 0x8000_0000);
        assert_eq!(p.read(CONFIG_ADDRESS, 4), 0x8000_0000);
        select(&mut p, 0, 0, 0, 0);
        assert_eq!(p.read(CONFIG_DATA, 4), HOST_BRIDGE_ID);
        assert_eq!(p.read(CONFIG_DATA, 2), 0x8086);
        assert_eq!(p.read(CONFIG_DATA + 2, 2), 0x1237);
        select(&mut p, 0, 0, 0, 0x08);
        // Class (word at 0Ah) is "host bridge", as pci_sanity_check wants.
        assert_eq!(p.read(CONFIG_DATA + 2, 2), 0x0600);
        select(&mut p, 0, 0, 0, 0x0c);
        assert_eq!(p.read(CONFIG_DATA + 2, 1), 0, "header type 0, single function");
        select(&mut p, 0, 0, 0, 0x10);
        p.write(CONFIG_DATA, u32::MAX);
        assert_eq!(p.read(CONFIG_DATA, 4), 0, "no BARs");
        for (bus, device, function) in [(0, 1, 0), (0, 0, 1), (1, 0, 0), (0, 31, 7)] {
            select(&mut p, bus, device, function, 0);
            assert_eq!(p.read(CONFIG_DATA, 4), u32::MAX);
            assert_eq!(p.read(CONFIG_DATA + 1, 1), 0xff);
        }
        // Disabled cycles read all-ones.
        p.write(CONFIG_ADDRESS, 0);
        assert_eq!(p.read(CONFIG_DATA, 4), u32::MAX);
        assert!(PciConfig::owns(0xcf8, 4) && !PciConfig::owns(0xcf9, 1));
        assert!(!PciConfig::owns(0xcfb, 1) && PciConfig::owns(0xcfe, 2));
    }

    #[test]
    fn target_names_the_function_and_byte() {
        let mut p = PciConfig::new();
        assert_eq!(p.target(CONFIG_DATA), None);
        select(&mut p, 0, 2, 0, 0x3c);
        assert_eq!(p.target(CONFIG_DATA), Some((0, 2, 0, 0x3c)));
        assert_eq!(p.target(CONFIG_DATA + 3), Some((0, 2, 0, 0x3f)));
        assert_eq!(p.target(CONFIG_ADDRESS), None);
        select(&mut p, 255, 31, 7, 0xfc);
        assert_eq!(p.target(CONFIG_DATA + 1), Some((255, 31, 7, 0xfd)));
    }
}
