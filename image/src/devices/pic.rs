//! A minimal pair of 8259A PICs for a guest: the interrupt mask registers read back what was
//! written and the initialization/operation command words are accepted. L0 delivers no
//! legacy IRQs to its guest, so nothing is ever pending (IRR/ISR read 0).

const MASTER: u16 = 0x20;
const SLAVE: u16 = 0xa0;

#[derive(Default)]
pub struct Pic {
    /// Interrupt mask registers (master, slave); all masked at reset.
    imr: [u8; 2],
    /// Remaining initialization command words expected on the data port.
    icw_left: [u8; 2],
}

impl Pic {
    pub fn new() -> Self {
        Pic { imr: [0xff; 2], icw_left: [0; 2] }
    }

    pub fn owns(port: u16) -> bool {
        matches!(port, MASTER | 0x21 | SLAVE | 0xa1)
    }

    fn index(port: u16) -> usize {
        usize::from(port >= SLAVE)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        let i = Self::index(port);
        if port & 1 == 1 { self.imr[i] } else { 0 }
    }

    pub fn write(&mut self, port: u16, value: u8) {
        let i = Self::index(port);
        if port & 1 == 0 {
            // ICW1 (bit 4 set) starts initialization: ICW2, ICW3 and (if bit 0) ICW4 follow.
            if value & 0x10 != 0 {
                self.icw_left[i] = if value & 1 != 0 { 3 } else { 2 };
            }
            // OCW2/OCW3 (EOI, read-register commands): nothing is ever in service.
        } else if self.icw_left[i] > 0 {
            self.icw_left[i] -= 1;
        } else {
            self.imr[i] = value;
        }
    }
}
