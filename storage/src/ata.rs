//! ATA PIO (ATA/ATAPI-6: IDENTIFY DEVICE, READ/WRITE SECTORS with 28-bit LBA, FLUSH CACHE),
//! polled, for the IDE disk Bochs emulates. Ports come through [`Ports`] so the driver is
//! tested on the host against a fake device.

use crate::{BlockDevice, BlockError, POLL_BOUND, SECTOR, check_range};

/// Port I/O as the driver needs it.
pub trait Ports {
    fn inb(&mut self, port: u16) -> u8;
    fn outb(&mut self, port: u16, value: u8);
    fn inw(&mut self, port: u16) -> u16;
    fn outw(&mut self, port: u16, value: u16);
}

const DATA: u16 = 0;
const ERROR: u16 = 1;
const COUNT: u16 = 2;
const LBA0: u16 = 3;
const LBA1: u16 = 4;
const LBA2: u16 = 5;
const DRIVE: u16 = 6;
const STATUS_COMMAND: u16 = 7;

const BSY: u8 = 0x80;
const DF: u8 = 0x20;
const DRQ: u8 = 0x08;
const ERR: u8 = 0x01;

const IDENTIFY: u8 = 0xec;
const READ_SECTORS: u8 = 0x20;
const WRITE_SECTORS: u8 = 0x30;
const FLUSH_CACHE: u8 = 0xe7;

/// Most sectors per command (a count of 0 would mean 256; we stay below).
const MAX_SECTORS: usize = 255;
/// 28-bit LBA limit.
const LBA28_LIMIT: u64 = 1 << 28;

/// One ATA disk on a channel (primary: 0x1f0/0x3f6, secondary: 0x170/0x376).
pub struct Ata<P: Ports> {
    ports: P,
    base: u16,
    ctrl: u16,
    slave: bool,
    capacity: u64,
    dead: bool,
}

impl<P: Ports> Ata<P> {
    /// Finds the disk with IDENTIFY DEVICE: [`BlockError::NoDisk`] if nothing answers,
    /// [`BlockError::NotADisk`] for an ATAPI device (the boot CD-ROM).
    pub fn probe(mut ports: P, base: u16, ctrl: u16, slave: bool) -> Result<Self, BlockError> {
        ports.outb(base + DRIVE, 0xa0 | (u8::from(slave) << 4));
        delay(&mut ports, ctrl);
        let status = ports.inb(base + STATUS_COMMAND);
        if status == 0 || status == 0xff {
            return Err(BlockError::NoDisk);
        }
        for reg in [COUNT, LBA0, LBA1, LBA2] {
            ports.outb(base + reg, 0);
        }
        ports.outb(base + STATUS_COMMAND, IDENTIFY);
        delay(&mut ports, ctrl);
        if ports.inb(base + STATUS_COMMAND) == 0 {
            return Err(BlockError::NoDisk);
        }
        let mut ata = Ata { ports, base, ctrl, slave, capacity: 0, dead: false };
        // An ATAPI device aborts IDENTIFY DEVICE (ERR): look at its signature first.
        match ata.wait(false) {
            Ok(()) | Err(BlockError::Device { .. }) => {}
            Err(e) => return Err(e),
        }
        // ATAPI and SATA devices set a signature in the LBA mid/high registers.
        if ata.ports.inb(base + LBA1) != 0 || ata.ports.inb(base + LBA2) != 0 {
            return Err(BlockError::NotADisk);
        }
        match ata.wait(true) {
            Ok(()) => {}
            Err(BlockError::Device { .. }) => return Err(BlockError::NotADisk),
            Err(e) => return Err(e),
        }
        let mut words = [0u16; 256];
        for w in words.iter_mut() {
            *w = ata.ports.inw(base + DATA);
        }
        let lba28 = u64::from(words[60]) | u64::from(words[61]) << 16;
        ata.capacity = lba28.min(LBA28_LIMIT);
        if ata.capacity == 0 {
            return Err(BlockError::NotADisk);
        }
        Ok(ata)
    }

    /// Waits until BSY clears (and, with `data`, DRQ or ERR sets), bounded.
    fn wait(&mut self, data: bool) -> Result<(), BlockError> {
        for _ in 0..POLL_BOUND {
            let status = self.ports.inb(self.base + STATUS_COMMAND);
            if status & BSY != 0 {
                continue;
            }
            if status & (ERR | DF) != 0 {
                let error = self.ports.inb(self.base + ERROR);
                return Err(BlockError::Device { status, error });
            }
            if !data || status & DRQ != 0 {
                return Ok(());
            }
        }
        self.dead = true;
        Err(BlockError::Timeout)
    }

    fn command(&mut self, lba: u64, count: usize, command: u8) {
        let b = self.base;
        self.ports.outb(b + DRIVE, 0xe0 | (u8::from(self.slave) << 4) | ((lba >> 24) as u8 & 0x0f));
        delay(&mut self.ports, self.ctrl);
        self.ports.outb(b + COUNT, count as u8);
        self.ports.outb(b + LBA0, lba as u8);
        self.ports.outb(b + LBA1, (lba >> 8) as u8);
        self.ports.outb(b + LBA2, (lba >> 16) as u8);
        self.ports.outb(b + STATUS_COMMAND, command);
    }
}

/// About 400 ns: four reads of the alternate status register.
fn delay<P: Ports>(ports: &mut P, ctrl: u16) {
    for _ in 0..4 {
        ports.inb(ctrl);
    }
}

impl<P: Ports> BlockDevice for Ata<P> {
    fn sectors(&self) -> u64 {
        self.capacity
    }

    fn kind(&self) -> &'static str {
        "ata"
    }

    fn read(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Dead);
        }
        check_range(lba, buf.len(), self.capacity)?;
        for (i, chunk) in buf.chunks_mut(MAX_SECTORS * SECTOR).enumerate() {
            let count = chunk.len() / SECTOR;
            self.command(lba + (i * MAX_SECTORS) as u64, count, READ_SECTORS);
            for sector in chunk.chunks_mut(SECTOR) {
                self.wait(true)?;
                for pair in sector.chunks_mut(2) {
                    pair.copy_from_slice(&self.ports.inw(self.base + DATA).to_le_bytes());
                }
            }
        }
        Ok(())
    }

    fn write(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        if self.dead {
            return Err(BlockError::Dead);
        }
        check_range(lba, buf.len(), self.capacity)?;
        for (i, chunk) in buf.chunks(MAX_SECTORS * SECTOR).enumerate() {
            let count = chunk.len() / SECTOR;
            self.command(lba + (i * MAX_SECTORS) as u64, count, WRITE_SECTORS);
            for sector in chunk.chunks(SECTOR) {
                self.wait(true)?;
                for pair in sector.chunks(2) {
                    self.ports.outw(self.base + DATA, u16::from_le_bytes([pair[0], pair[1]]));
                }
            }
        }
        self.ports.outb(self.base + STATUS_COMMAND, FLUSH_CACHE);
        self.wait(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake primary channel with one disk (or ATAPI device, or nothing, or a hung device).
    struct FakeChannel {
        disk: Vec<u8>,
        atapi: bool,
        absent: bool,
        hung: bool,
        regs: [u8; 8],
        buffer: Vec<u8>,
        at: usize,
        writing: Option<(u64, usize)>,
    }

    impl FakeChannel {
        fn new(sectors: usize) -> Self {
            let disk = (0..sectors * SECTOR).map(|i| (i / SECTOR) as u8 ^ i as u8).collect();
            FakeChannel {
                disk,
                atapi: false,
                absent: false,
                hung: false,
                regs: [0, 0, 0, 0, 0, 0, 0, 0x50],
                buffer: Vec::new(),
                at: 0,
                writing: None,
            }
        }
        fn lba(&self) -> u64 {
            u64::from(self.regs[3])
                | u64::from(self.regs[4]) << 8
                | u64::from(self.regs[5]) << 16
                | u64::from(self.regs[6] & 0xf) << 24
        }
    }

    impl Ports for FakeChannel {
        fn inb(&mut self, port: u16) -> u8 {
            if port == 0x3f6 {
                return 0;
            }
            let reg = usize::from(port - 0x1f0);
            if reg != 7 {
                return self.regs[reg];
            }
            if self.absent {
                0
            } else if self.hung {
                BSY
            } else if self.at < self.buffer.len() || self.writing.is_some() {
                0x58
            } else {
                self.regs[7]
            }
        }
        fn outb(&mut self, port: u16, value: u8) {
            let reg = usize::from(port - 0x1f0);
            if reg != 7 {
                self.regs[reg] = value;
                return;
            }
            self.at = 0;
            self.buffer.clear();
            self.regs[7] = 0x50;
            match value {
                IDENTIFY if self.atapi => {
                    self.regs[4] = 0x14;
                    self.regs[5] = 0xeb;
                    self.regs[7] = 0x51;
                }
                IDENTIFY => {
                    let mut id = vec![0u8; SECTOR];
                    let n = (self.disk.len() / SECTOR) as u32;
                    id[120..124].copy_from_slice(&n.to_le_bytes());
                    self.buffer = id;
                }
                READ_SECTORS => {
                    let start = self.lba() as usize * SECTOR;
                    let count = usize::from(self.regs[2]) * SECTOR;
                    self.buffer = self.disk[start..start + count].to_vec();
                }
                WRITE_SECTORS => {
                    self.writing = Some((self.lba(), usize::from(self.regs[2]) * SECTOR))
                }
                _ => {}
            }
        }
        fn inw(&mut self, _port: u16) -> u16 {
            let w = u16::from_le_bytes([self.buffer[self.at], self.buffer[self.at + 1]]);
            self.at += 2;
            w
        }
        fn outw(&mut self, _port: u16, value: u16) {
            let Some((lba, len)) = self.writing else { panic!("data write without a command") };
            let at = lba as usize * SECTOR + self.at;
            self.disk[at..at + 2].copy_from_slice(&value.to_le_bytes());
            self.at += 2;
            if self.at == len {
                self.writing = None;
                self.at = 0;
            }
        }
    }

    #[test]
    fn identify_read_and_write() {
        let mut ata = Ata::probe(FakeChannel::new(600), 0x1f0, 0x3f6, true).unwrap();
        assert_eq!(ata.sectors(), 600);
        let mut buf = vec![0u8; 300 * SECTOR];
        ata.read(10, &mut buf).unwrap();
        assert_eq!(buf, ata.ports.disk[10 * SECTOR..310 * SECTOR]);
        let data: Vec<u8> = (0..2 * SECTOR).map(|i| i as u8).collect();
        ata.write(599, &data[..SECTOR]).unwrap();
        assert_eq!(&ata.ports.disk[599 * SECTOR..], &data[..SECTOR]);
        assert_eq!(ata.ports.regs[6], 0xf0, "slave drive with LBA bit");
        assert!(matches!(
            ata.read(599, &mut buf[..2 * SECTOR]),
            Err(BlockError::OutOfRange { .. })
        ));
    }

    #[test]
    fn missing_atapi_and_hung_devices_are_errors() {
        let mut absent = FakeChannel::new(1);
        absent.absent = true;
        assert_eq!(Ata::probe(absent, 0x1f0, 0x3f6, false).err(), Some(BlockError::NoDisk));
        let mut cd = FakeChannel::new(1);
        cd.atapi = true;
        assert_eq!(Ata::probe(cd, 0x1f0, 0x3f6, false).err(), Some(BlockError::NotADisk));
        let mut ata = Ata::probe(FakeChannel::new(8), 0x1f0, 0x3f6, false).unwrap();
        ata.ports.hung = true;
        let mut buf = [0u8; SECTOR];
        assert_eq!(ata.read(0, &mut buf), Err(BlockError::Timeout));
        assert_eq!(ata.read(0, &mut buf), Err(BlockError::Dead));
    }
}
