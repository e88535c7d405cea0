//! Glue for the Intel e1000 (8086:100e, what Bochs and QEMU emulate): BAR0 as memory-mapped
//! registers and DMA memory from the frame allocator; `net.rs` runs the endpoint on it.

use core::ptr::NonNull;

use net::e1000::{DMA_BYTES, DmaRegion, E1000, Regs};
use virtio_drivers::transport::pci::bus::{BarInfo, PciRoot};

use super::pci::{self, PciFunction, PortCam};
use crate::mm::frames;

const INTEL: u16 = 0x8086;
/// 82540EM, 82545EM and 82574L device IDs.
const E1000_IDS: [u16; 3] = [0x100e, 0x100f, 0x10d3];
/// Size of the register window the driver uses (BAR0 is 128 KiB).
const REGS_SIZE: u64 = 0x2_0000;

/// BAR0 registers, identity-mapped (below 4 GiB, in the uncached top GiB).
pub struct MmioRegs {
    base: usize,
}

impl Regs for MmioRegs {
    fn read(&self, offset: u32) -> u32 {
        // SAFETY: `base` is the device's BAR0, mapped and `REGS_SIZE` long (checked in
        // `serve`); the driver passes only register offsets inside it, 4-aligned.
        unsafe { ((self.base + offset as usize) as *const u32).read_volatile() }
    }
    fn write(&mut self, offset: u32, value: u32) {
        // SAFETY: as in `read`.
        unsafe { ((self.base + offset as usize) as *mut u32).write_volatile(value) }
    }
}

/// The e1000 NIC's registers as the driver sees them.
pub type Nic = E1000<MmioRegs>;

/// The function is an Intel 8254x this driver knows.
pub fn is_e1000(f: &PciFunction) -> bool {
    f.info.vendor_id == INTEL && E1000_IDS.contains(&f.info.device_id)
}

/// Finds the e1000 and starts it, or logs why it cannot.
pub fn find(root: &mut PciRoot<PortCam>, functions: &[PciFunction]) -> Option<Nic> {
    let Some(f) = functions.iter().find(|f| is_e1000(f)) else {
        log::error!("net: the config names e1000 but there is no Intel 8254x on PCI");
        return None;
    };
    if !pci::describe(root, f) {
        return None;
    }
    let base = match root.bar_info(f.df, 0) {
        Ok(Some(BarInfo::Memory { address, size, .. })) if size >= REGS_SIZE && address != 0 => {
            address
        }
        Ok(other) => {
            log::error!("net: e1000 at {}: BAR0 is not a usable register window ({other:?})", f.df);
            return None;
        }
        Err(e) => {
            log::error!("net: e1000 at {}: cannot read BAR0: {e}", f.df);
            return None;
        }
    };
    pci::enable(root, f.df);
    let Some(phys) = frames::alloc(DMA_BYTES as u64, 4096) else {
        log::error!("net: e1000: no memory for {DMA_BYTES} bytes of rings and buffers");
        return None;
    };
    let virt = NonNull::new(phys as *mut u8)?;
    // SAFETY: the frames were just allocated for the driver and are never freed; physical =
    // virtual in the identity map.
    let dma = unsafe { DmaRegion::new(phys, virt, DMA_BYTES) };
    match E1000::new(MmioRegs { base: base as usize }, dma) {
        Ok(nic) => {
            check_io_window(root, f, base as usize);
            if crate::config::NET_E1000_INTERRUPTS {
                let mut config = pci::FunctionConfig(f.df);
                let line = pc::passthrough::ConfigSpace::read32(&mut config, 0x3c) as u8;
                super::e1000_intx::enable(base as usize, line);
            }
            Some(nic)
        }
        Err(e) => {
            log::error!("net: e1000 at {}: {e}", f.df);
            None
        }
    }
}

/// Register offsets: device status, and BAR1's I/O window (82540EM manual 13.2.1: IOADDR at
/// +0 selects a register, IODATA at +4 reads or writes it).
const STATUS: u32 = 0x8;
const IODATA: u16 = 4;

/// Reads STATUS through BAR1's I/O window and through BAR0 and logs both, so a run shows
/// whether port accesses reach the device: a hypervisor that traps them answers all-ones
/// (turtles' device model for an unknown port), a device answers itself (the real STATUS,
/// or 0 from an emulated e1000 without the I/O window, as Bochs' reads it). A level whose
/// NIC is assigned to it through the I/O bitmap gets the device's answer.
fn check_io_window(root: &mut PciRoot<PortCam>, f: &PciFunction, base: usize) {
    let Ok(Some(BarInfo::IO { address, .. })) = root.bar_info(f.df, 1) else { return };
    let Ok(port) = u16::try_from(address) else { return };
    let mut ioaddr = x86_64::instructions::port::Port::<u32>::new(port);
    let mut iodata = x86_64::instructions::port::Port::<u32>::new(port.wrapping_add(IODATA));
    // SAFETY: BAR1 is the e1000's I/O window (decoding was enabled by `pci::enable`);
    // selecting and reading STATUS has no side effect.
    let ports = unsafe {
        ioaddr.write(STATUS);
        iodata.read()
    };
    let mmio = MmioRegs { base }.read(STATUS);
    log::info!(
        "net: e1000 STATUS {mmio:#x} through BAR0, {ports:#x} through BAR1's ports at {port:#x}"
    );
}
