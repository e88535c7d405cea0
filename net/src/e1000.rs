//! Intel 8254x ("e1000", PCI 8086:100e as Bochs and QEMU emulate it), polled, with legacy
//! descriptors (Intel 8254x Software Developer's Manual, sections 3.2 and 3.3, 14).
//! Registers come through [`Regs`] and descriptor rings and buffers live in one
//! [`DmaRegion`] the image provides.

use alloc::vec::Vec;
use core::ptr::NonNull;

use crate::nic::{Nic, NicError, POLL_BOUND};

/// The e1000's registers (the image maps BAR0).
pub trait Regs {
    fn read(&self, offset: u32) -> u32;
    fn write(&mut self, offset: u32, value: u32);
}

const CTRL: u32 = 0x0000;
const EERD: u32 = 0x0014;
const IMC: u32 = 0x00d8;
const RCTL: u32 = 0x0100;
const TCTL: u32 = 0x0400;
const TIPG: u32 = 0x0410;
const RDBAL: u32 = 0x2800;
const RDBAH: u32 = 0x2804;
const RDLEN: u32 = 0x2808;
const RDH: u32 = 0x2810;
const RDT: u32 = 0x2818;
const TDBAL: u32 = 0x3800;
const TDBAH: u32 = 0x3804;
const TDLEN: u32 = 0x3808;
const TDH: u32 = 0x3810;
const TDT: u32 = 0x3818;
const MTA: u32 = 0x5200;
const RAL0: u32 = 0x5400;
const RAH0: u32 = 0x5404;
/// Receive address registers: 16 pairs (RAL, RAH) from RAL0.
const RA_ENTRIES: u32 = 16;

const CTRL_ASDE: u32 = 1 << 5;
const CTRL_SLU: u32 = 1 << 6;
const CTRL_RST: u32 = 1 << 26;
const RCTL_EN: u32 = 1 << 1;
const RCTL_BAM: u32 = 1 << 15;
const RCTL_SECRC: u32 = 1 << 26;
const TCTL_EN: u32 = 1 << 1;
const TCTL_PSP: u32 = 1 << 3;
const RAH_AV: u32 = 1 << 31;

/// Descriptors per ring (a multiple of 8: the ring length must be a multiple of 128 bytes).
pub const RING: usize = 32;
/// Bytes per buffer (RCTL.BSIZE = 2048).
pub const BUF: usize = 2048;
const DESC: usize = 16;
/// Bytes of DMA memory the driver needs: two rings and their buffers.
pub const DMA_BYTES: usize = 2 * RING * DESC + 2 * RING * BUF;

/// Receive descriptor status bits.
const RX_DD: u8 = 1 << 0;
const RX_EOP: u8 = 1 << 1;
/// Transmit command and status bits.
const TX_EOP: u8 = 1 << 0;
const TX_IFCS: u8 = 1 << 1;
const TX_RS: u8 = 1 << 3;
const TX_DD: u8 = 1 << 0;

/// Physically contiguous memory the device may DMA into.
pub struct DmaRegion {
    phys: u64,
    virt: NonNull<u8>,
    len: usize,
}

// SAFETY: a `DmaRegion` owns its memory exclusively (the contract of `new`), so moving it to
// another CPU moves that ownership; nothing else aliases it.
unsafe impl Send for DmaRegion {}

impl DmaRegion {
    /// # Safety
    /// `virt` must point to `len` bytes of memory, owned by the driver for good, that the
    /// device sees at physical address `phys`; nothing else may use them.
    pub unsafe fn new(phys: u64, virt: NonNull<u8>, len: usize) -> Self {
        DmaRegion { phys, virt, len }
    }

    fn read(&self, at: usize, out: &mut [u8]) {
        assert!(at + out.len() <= self.len, "DMA access out of the region");
        for (i, b) in out.iter_mut().enumerate() {
            // SAFETY: in bounds (checked above) of memory we own per `new`'s contract;
            // volatile because the device writes it.
            *b = unsafe { self.virt.as_ptr().add(at + i).read_volatile() };
        }
    }

    fn write(&mut self, at: usize, data: &[u8]) {
        assert!(at + data.len() <= self.len, "DMA access out of the region");
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`.
            unsafe { self.virt.as_ptr().add(at + i).write_volatile(*b) };
        }
    }
}

/// A received descriptor as the device wrote it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxDesc {
    pub length: u16,
    pub status: u8,
    pub errors: u8,
}

/// Parses a receive descriptor: `None` if the device has not filled it yet, the frame's
/// length if it holds a whole good frame, an error otherwise (SDM 3.2.3).
pub fn check_rx(index: u16, raw: &[u8; DESC]) -> Option<Result<usize, NicError>> {
    let desc =
        RxDesc { length: u16::from_le_bytes([raw[8], raw[9]]), status: raw[12], errors: raw[13] };
    if desc.status & RX_DD == 0 {
        return None;
    }
    let len = usize::from(desc.length);
    if desc.status & RX_EOP == 0 || desc.errors != 0 || len == 0 || len > BUF {
        return Some(Err(NicError::BadDescriptor { index, len }));
    }
    Some(Ok(len))
}

/// The e1000 driver.
pub struct E1000<R: Regs> {
    regs: R,
    dma: DmaRegion,
    mac: [u8; 6],
    rx_next: usize,
    tx_next: usize,
    dead: bool,
}

// Layout of the DMA region: RX ring, TX ring, RX buffers, TX buffers.
const RX_RING: usize = 0;
const TX_RING: usize = RING * DESC;
const RX_BUFS: usize = 2 * RING * DESC;
const TX_BUFS: usize = RX_BUFS + RING * BUF;

impl<R: Regs> E1000<R> {
    /// Resets the device, reads its MAC, sets up both rings and enables receive and transmit.
    pub fn new(mut regs: R, mut dma: DmaRegion) -> Result<Self, NicError> {
        if dma.len < DMA_BYTES {
            return Err(NicError::TooLong(DMA_BYTES));
        }
        regs.write(IMC, u32::MAX);
        regs.write(CTRL, regs.read(CTRL) | CTRL_RST);
        if !(0..POLL_BOUND).any(|_| regs.read(CTRL) & CTRL_RST == 0) {
            return Err(NicError::Stopped);
        }
        regs.write(IMC, u32::MAX);
        regs.write(CTRL, (regs.read(CTRL) | CTRL_SLU | CTRL_ASDE) & !(1 << 3 | 1 << 31 | 1 << 30));
        let mac = read_mac(&mut regs)?;
        regs.write(RAL0, u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]));
        regs.write(RAH0, u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV);
        for i in 0..128 {
            regs.write(MTA + 4 * i, 0);
        }
        // Receive ring: every descriptor owns a buffer; the device may fill all but one.
        for i in 0..RING {
            let mut desc = [0u8; DESC];
            desc[..8].copy_from_slice(&(dma.phys + (RX_BUFS + i * BUF) as u64).to_le_bytes());
            dma.write(RX_RING + i * DESC, &desc);
            dma.write(TX_RING + i * DESC, &[0u8; DESC]);
        }
        let rx = dma.phys + RX_RING as u64;
        let tx = dma.phys + TX_RING as u64;
        regs.write(RDBAL, rx as u32);
        regs.write(RDBAH, (rx >> 32) as u32);
        regs.write(RDLEN, (RING * DESC) as u32);
        regs.write(RDH, 0);
        regs.write(RDT, (RING - 1) as u32);
        regs.write(RCTL, RCTL_EN | RCTL_BAM | RCTL_SECRC);
        regs.write(TDBAL, tx as u32);
        regs.write(TDBAH, (tx >> 32) as u32);
        regs.write(TDLEN, (RING * DESC) as u32);
        regs.write(TDH, 0);
        regs.write(TDT, 0);
        regs.write(TCTL, TCTL_EN | TCTL_PSP | 0x10 << 4 | 0x40 << 12);
        regs.write(TIPG, 10 | 8 << 10 | 6 << 20);
        Ok(E1000 { regs, dma, mac, rx_next: 0, tx_next: 0, dead: false })
    }

    /// Gives receive descriptor `i` back to the device.
    fn recycle(&mut self, i: usize) {
        self.dma.write(RX_RING + i * DESC + 8, &[0u8; 8]);
        self.regs.write(RDT, i as u32);
        self.rx_next = (i + 1) % RING;
    }
}

/// The MAC from RAL0/RAH0 (loaded from the EEPROM at reset) or else from the EEPROM itself.
fn read_mac<R: Regs>(regs: &mut R) -> Result<[u8; 6], NicError> {
    let (ral, rah) = (regs.read(RAL0), regs.read(RAH0));
    if rah & RAH_AV != 0 && (ral != 0 || rah & 0xffff != 0) {
        let [a, b, c, d] = ral.to_le_bytes();
        let [e, f, _, _] = rah.to_le_bytes();
        return Ok([a, b, c, d, e, f]);
    }
    let mut mac = [0u8; 6];
    for word in 0..3u32 {
        regs.write(EERD, 1 | word << 8);
        let Some(value) = (0..POLL_BOUND).map(|_| regs.read(EERD)).find(|v| v & (1 << 4) != 0)
        else {
            return Err(NicError::Stopped);
        };
        let [lo, hi] = ((value >> 16) as u16).to_le_bytes();
        mac[2 * word as usize] = lo;
        mac[2 * word as usize + 1] = hi;
    }
    Ok(mac)
}

impl<R: Regs> Nic for E1000<R> {
    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Puts `mac` in the first free receive address register (8254x manual 13.4.10).
    fn accept_mac(&mut self, mac: [u8; 6]) -> bool {
        let low = u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]);
        let high = u32::from(u16::from_le_bytes([mac[4], mac[5]])) | RAH_AV;
        for i in 0..RA_ENTRIES {
            let (ral, rah) = (RAL0 + 8 * i, RAH0 + 8 * i);
            let current = self.regs.read(rah);
            if current & RAH_AV != 0 && (self.regs.read(ral), current) == (low, high) {
                return true;
            }
            if current & RAH_AV == 0 {
                self.regs.write(ral, low);
                self.regs.write(rah, high);
                return true;
            }
        }
        false
    }

    fn kind(&self) -> &'static str {
        "e1000"
    }

    fn receive(&mut self) -> Result<Option<Vec<u8>>, NicError> {
        if self.dead {
            return Err(NicError::Dead);
        }
        let i = self.rx_next;
        // Status first: the device writes the descriptor while we may be reading it, and
        // only DD says the rest is complete (SDM 3.2.3).
        let mut status = [0u8; 1];
        self.dma.read(RX_RING + i * DESC + 12, &mut status);
        if status[0] & RX_DD == 0 {
            return Ok(None);
        }
        core::sync::atomic::fence(core::sync::atomic::Ordering::Acquire);
        let mut raw = [0u8; DESC];
        self.dma.read(RX_RING + i * DESC, &mut raw);
        let result = match check_rx(i as u16, &raw) {
            None => return Ok(None),
            Some(Ok(len)) => {
                let mut frame = alloc::vec![0u8; len];
                self.dma.read(RX_BUFS + i * BUF, &mut frame);
                Ok(Some(frame))
            }
            Some(Err(e)) => Err(e),
        };
        self.recycle(i);
        result
    }

    fn send(&mut self, frame: &[u8]) -> Result<(), NicError> {
        if self.dead {
            return Err(NicError::Dead);
        }
        if frame.len() > BUF {
            return Err(NicError::TooLong(frame.len()));
        }
        let i = self.tx_next;
        self.dma.write(TX_BUFS + i * BUF, frame);
        let mut desc = [0u8; DESC];
        desc[..8].copy_from_slice(&(self.dma.phys + (TX_BUFS + i * BUF) as u64).to_le_bytes());
        desc[8..10].copy_from_slice(&(frame.len() as u16).to_le_bytes());
        desc[11] = TX_EOP | TX_IFCS | TX_RS;
        self.dma.write(TX_RING + i * DESC, &desc);
        self.tx_next = (i + 1) % RING;
        self.regs.write(TDT, self.tx_next as u32);
        let mut status = [0u8; 1];
        for _ in 0..POLL_BOUND {
            self.dma.read(TX_RING + i * DESC + 12, &mut status);
            if status[0] & TX_DD != 0 {
                return Ok(());
            }
            core::hint::spin_loop();
        }
        self.dead = true;
        Err(NicError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Registers of a fake e1000 whose "device" side the test drives through the same memory.
    #[derive(Clone, Default)]
    struct FakeRegs(Rc<RefCell<std::collections::HashMap<u32, u32>>>);

    impl Regs for FakeRegs {
        fn read(&self, offset: u32) -> u32 {
            let v = self.0.borrow().get(&offset).copied().unwrap_or(0);
            if offset == RAH0 && v == 0 {
                RAH_AV | 0x5634
            } else if offset == RAL0 && v == 0 {
                0x1200_5452
            } else {
                v
            }
        }
        fn write(&mut self, offset: u32, value: u32) {
            // Reset completes at once.
            let value = if offset == CTRL { value & !CTRL_RST } else { value };
            self.0.borrow_mut().insert(offset, value);
            // The "device" transmits at once: DD on the descriptor before the new tail.
            if offset == TDT {
                let ring = u64::from(self.read(TDBAL)) | u64::from(self.read(TDBAH)) << 32;
                let i = (value as usize + RING - 1) % RING;
                // SAFETY: the ring is in the test's leaked DMA region.
                unsafe { (ring as *mut u8).add(i * DESC + 12).write_volatile(TX_DD) };
            }
        }
    }

    fn device() -> (E1000<FakeRegs>, FakeRegs, *mut u8) {
        let memory: &'static mut [u8] = Box::leak(vec![0u8; DMA_BYTES].into_boxed_slice());
        let ptr = memory.as_mut_ptr();
        // SAFETY: the leaked buffer is ours for good; "physical" = its address in this test.
        let dma = unsafe { DmaRegion::new(ptr as u64, NonNull::new(ptr).unwrap(), DMA_BYTES) };
        let regs = FakeRegs::default();
        (E1000::new(regs.clone(), dma).unwrap(), regs, ptr)
    }

    #[test]
    fn init_programs_rings_and_mac() {
        let (nic, regs, ptr) = device();
        assert_eq!(nic.mac(), [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
        assert_eq!(regs.read(RDBAL), ptr as u32);
        assert_eq!(regs.read(RDLEN), (RING * DESC) as u32);
        assert_eq!(regs.read(RDT), (RING - 1) as u32);
        assert_ne!(regs.read(RCTL) & RCTL_EN, 0);
        assert_ne!(regs.read(TCTL) & TCTL_EN, 0);
    }

    #[test]
    fn accept_mac_fills_the_next_receive_address() {
        let (mut nic, regs, _) = device();
        let guest = [0x52, 0x54, 0, 0x12, 0x34, 0x57];
        assert!(nic.accept_mac(guest));
        assert!(nic.accept_mac(guest));
        assert_eq!(regs.read(RAL0 + 8), 0x1200_5452);
        assert_eq!(regs.read(RAH0 + 8), RAH_AV | 0x5734);
        assert_eq!(regs.read(RAH0 + 16) & RAH_AV, 0);
    }

    #[test]
    fn receive_checks_descriptors_and_send_waits_for_dd() {
        let (mut nic, regs, ptr) = device();
        assert_eq!(nic.receive(), Ok(None));
        // The "device" fills descriptor 0 with a 60-byte frame and descriptor 1 with a bad length.
        // SAFETY: within the test's leaked region.
        unsafe {
            ptr.add(RX_BUFS).write_bytes(0xab, 60);
            let d0 = ptr.add(RX_RING);
            d0.add(8).cast::<[u8; 2]>().write(60u16.to_le_bytes());
            d0.add(12).write(RX_DD | RX_EOP);
            let d1 = ptr.add(RX_RING + DESC);
            d1.add(8).cast::<[u8; 2]>().write(9000u16.to_le_bytes());
            d1.add(12).write(RX_DD | RX_EOP);
        }
        assert_eq!(nic.receive(), Ok(Some(vec![0xab; 60])));
        assert_eq!(regs.read(RDT), 0, "descriptor 0 given back");
        assert_eq!(nic.receive(), Err(NicError::BadDescriptor { index: 1, len: 9000 }));
        assert_eq!(nic.receive(), Ok(None), "the bad descriptor was recycled, not retried");
        nic.send(&[1, 2, 3]).unwrap();
        assert_eq!(regs.read(TDT), 1);
        assert_eq!(nic.send(&[0u8; BUF + 1]), Err(NicError::TooLong(BUF + 1)));
    }

    #[test]
    fn rx_descriptor_parsing() {
        let mut raw = [0u8; DESC];
        assert_eq!(check_rx(0, &raw), None);
        raw[12] = RX_DD;
        assert_eq!(check_rx(0, &raw), Some(Err(NicError::BadDescriptor { index: 0, len: 0 })));
        raw[12] = RX_DD | RX_EOP;
        raw[8] = 64;
        assert_eq!(check_rx(0, &raw), Some(Ok(64)));
        raw[13] = 0x80; // RXE
        assert!(matches!(check_rx(0, &raw), Some(Err(_))));
    }
}
