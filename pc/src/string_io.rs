//! INS and OUTS, with or without REP (SDM Vol. 2 "INS/INSB/INSW/INSD", "OUTS/OUTSB/OUTSW/
//! OUTSD", "REP"), performed for a guest whose string I/O instruction exited to its
//! hypervisor (exit qualification SDM Vol. 3C Table 28-5, instruction information Table 28-8,
//! the guest-linear address of the first access).
//!
//! Each iteration moves one item between the port and guest-linear memory, then steps rSI
//! (OUTS) or rDI (INS) by the item size, down when RFLAGS.DF is set, and with REP counts rCX
//! down; the registers wrap at the address size (a 16-bit one keeps the bits above it, a
//! 32-bit one zero-extends). A fault stops the instruction with the
//! completed iterations kept, as on the processor (it is restartable); a long REP is done a
//! batch at a time, leaving RIP at the instruction so it exits again for the rest (an
//! interrupt may come in between, as on the processor).

/// One string I/O instruction, from the exit information.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StringIo {
    pub port: u16,
    /// Bytes per item: 1, 2 or 4.
    pub size: u8,
    /// INS (port to memory); else OUTS.
    pub is_in: bool,
    pub rep: bool,
    /// Address size in bytes: 2, 4 or 8.
    pub address_size: u8,
    /// RFLAGS.DF: the address steps down.
    pub down: bool,
    /// The guest-linear address of the first item (segment base + rSI or rDI).
    pub first_linear: u64,
    /// 64-bit mode: linear addresses are 64 bits; else they wrap at 4 GiB.
    pub long_mode: bool,
}

impl StringIo {
    /// From the exit qualification (SDM Table 28-5: size bits 2:0, direction bit 3, REP bit
    /// 5, port bits 31:16), the instruction information (Table 28-8: address size bits 9:7)
    /// and the guest-linear address. `None` for an address-size or item-size encoding the
    /// SDM does not define.
    pub const fn from_exit(
        qualification: u64,
        instruction_info: u32,
        first_linear: u64,
        down: bool,
        long_mode: bool,
    ) -> Option<StringIo> {
        let size = match qualification & 7 {
            0 => 1,
            1 => 2,
            3 => 4,
            _ => return None,
        };
        let address_size = match (instruction_info >> 7) & 7 {
            0 => 2,
            1 => 4,
            2 => 8,
            _ => return None,
        };
        Some(StringIo {
            port: (qualification >> 16) as u16,
            size,
            is_in: qualification & (1 << 3) != 0,
            rep: qualification & (1 << 5) != 0,
            address_size,
            down,
            first_linear,
            long_mode,
        })
    }

    const fn address_mask(&self) -> u64 {
        match self.address_size {
            2 => 0xffff,
            4 => 0xffff_ffff,
            _ => u64::MAX,
        }
    }

    /// `reg` after the instruction writes `value` to its address-size part: SI/DI/CX keep
    /// the bits above 15; ESI/EDI/ECX zero-extend, as every 32-bit register write does.
    const fn set(&self, reg: u64, value: u64) -> u64 {
        match self.address_size {
            2 => (reg & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            _ => value,
        }
    }
}

/// The registers a string I/O instruction reads and updates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StringRegs {
    pub rcx: u64,
    pub rsi: u64,
    pub rdi: u64,
}

/// The guest's linear memory and the ports, as the hypervisor reaches them. `F` is a fault
/// (the exception to inject), `E` a port write's effect that ends the instruction (the guest
/// wrote its exit port, reset the machine).
pub trait StringTarget<F, E> {
    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), F>;
    fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), F>;
    fn port_in(&mut self, port: u16, size: u8) -> u32;
    fn port_out(&mut self, port: u16, size: u8, value: u32) -> Option<E>;
}

/// How the instruction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringOutcome<F, E> {
    /// Every iteration is done: step over the instruction.
    Done,
    /// A batch is done and rCX is not 0 yet: resume at the instruction.
    Again,
    /// An access faulted: inject it; the completed iterations stay (RIP at the instruction).
    Fault(F),
    /// A port write ended the instruction after its iteration (RIP after the instruction).
    Effect(E),
}

/// Iterations done per exit at most (a REP beyond this exits again for the rest).
pub const BATCH: u64 = 4096;

/// Performs `op` on `regs` (rCX, rSI, rDI as they were when it exited) through `target`.
pub fn perform<F, E>(
    op: &StringIo,
    regs: &mut StringRegs,
    target: &mut impl StringTarget<F, E>,
) -> StringOutcome<F, E> {
    let mask = op.address_mask();
    let count = if op.rep { regs.rcx & mask } else { 1 };
    if count == 0 {
        return StringOutcome::Done;
    }
    let offset0 = if op.is_in { regs.rdi } else { regs.rsi } & mask;
    let base = op.first_linear.wrapping_sub(offset0);
    let step = u64::from(op.size);
    for _ in 0..count.min(BATCH) {
        let offset = if op.is_in { regs.rdi } else { regs.rsi } & mask;
        let mut linear = base.wrapping_add(offset);
        if !op.long_mode {
            linear &= 0xffff_ffff;
        }
        let n = usize::from(op.size);
        let mut effect = None;
        if op.is_in {
            let value = target.port_in(op.port, op.size).to_le_bytes();
            if let Err(f) = target.write(linear, &value[..n]) {
                return StringOutcome::Fault(f);
            }
        } else {
            let mut item = [0u8; 4];
            if let Err(f) = target.read(linear, &mut item[..n]) {
                return StringOutcome::Fault(f);
            }
            effect = target.port_out(op.port, op.size, u32::from_le_bytes(item));
        }
        let reg = if op.is_in { &mut regs.rdi } else { &mut regs.rsi };
        let moved = if op.down { offset.wrapping_sub(step) } else { offset.wrapping_add(step) };
        *reg = op.set(*reg, moved);
        if op.rep {
            regs.rcx = op.set(regs.rcx, regs.rcx.wrapping_sub(1));
        }
        if let Some(e) = effect {
            return StringOutcome::Effect(e);
        }
    }
    if op.rep && regs.rcx & mask != 0 { StringOutcome::Again } else { StringOutcome::Done }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// 64 KiB of memory at linear 0x10000; below or above it faults with the address. Port
    /// 0x21 reads 0xa0 + the read count; writes are logged; port 0xf4 is an exit.
    struct Machine {
        mem: Vec<u8>,
        reads: u32,
        out: Vec<(u16, u8, u32)>,
    }

    impl Machine {
        fn new() -> Machine {
            Machine { mem: (0..0x10000).map(|i| i as u8).collect(), reads: 0, out: Vec::new() }
        }
        fn at(&self, linear: u64, len: usize) -> Option<usize> {
            let off = linear.checked_sub(0x10000)? as usize;
            (off + len <= self.mem.len()).then_some(off)
        }
    }

    impl StringTarget<u64, u8> for Machine {
        fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), u64> {
            let off = self.at(linear, buf.len()).ok_or(linear)?;
            buf.copy_from_slice(&self.mem[off..off + buf.len()]);
            Ok(())
        }
        fn write(&mut self, linear: u64, data: &[u8]) -> Result<(), u64> {
            let off = self.at(linear, data.len()).ok_or(linear)?;
            self.mem[off..off + data.len()].copy_from_slice(data);
            Ok(())
        }
        fn port_in(&mut self, _port: u16, _size: u8) -> u32 {
            self.reads += 1;
            0xa0 + self.reads
        }
        fn port_out(&mut self, port: u16, size: u8, value: u32) -> Option<u8> {
            self.out.push((port, size, value));
            (port == 0xf4).then_some(value as u8)
        }
    }

    fn op(q: u64, info: u32, linear: u64, down: bool) -> StringIo {
        StringIo::from_exit(q, info, linear, down, false).expect("defined encodings")
    }

    /// Qualification bits: size 2:0 (0, 1, 3), IN bit 3, string bit 4, REP bit 5, port
    /// 31:16; instruction information bits 9:7: address size 0/1/2 = 16/32/64.
    #[test]
    fn the_exit_information_decodes_as_the_sdm_lays_it_out() {
        let o = StringIo::from_exit(0x03f8_0030 | 1, 1 << 7, 0x1234, true, true).unwrap();
        assert_eq!(
            o,
            StringIo {
                port: 0x3f8,
                size: 2,
                is_in: false,
                rep: true,
                address_size: 4,
                down: true,
                first_linear: 0x1234,
                long_mode: true,
            }
        );
        let o = StringIo::from_exit(0x0021_0018 | 3, 2 << 7, 0, false, false).unwrap();
        assert_eq!((o.size, o.is_in, o.rep, o.address_size), (4, true, false, 8));
        assert_eq!(StringIo::from_exit(0x10, 0, 0, false, false).unwrap().address_size, 2);
        assert_eq!(StringIo::from_exit(0x12, 0, 0, false, false), None, "size encoding 2");
        assert_eq!(StringIo::from_exit(0x10, 3 << 7, 0, false, false), None, "address size 3");
    }

    #[test]
    fn rep_outsb_sends_each_byte_and_steps_rsi_and_rcx() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 3, rsi: 0x100, rdi: 0 };
        let o = op(0x03f8_0030, 1 << 7, 0x10100, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!(m.out, [(0x3f8, 1, 0x00), (0x3f8, 1, 0x01), (0x3f8, 1, 0x02)]);
        assert_eq!(r, StringRegs { rcx: 0, rsi: 0x103, rdi: 0 });
    }

    #[test]
    fn ins_without_rep_moves_one_item_and_keeps_rcx() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 7, rsi: 0, rdi: 0x200 };
        // INSW, 32-bit addresses, ES base 0x10000.
        let o = op(0x0021_0018 | 1, 1 << 7, 0x10200, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!(&m.mem[0x200..0x203], &[0xa1, 0x00, 0x02]);
        assert_eq!(r, StringRegs { rcx: 7, rsi: 0, rdi: 0x202 });
    }

    #[test]
    fn df_steps_down_and_rep_with_rcx_zero_does_nothing() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 2, rsi: 0, rdi: 0x208 };
        let o = op(0x0021_0038 | 3, 1 << 7, 0x10208, true);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!(&m.mem[0x204..0x20c], &[0xa2, 0, 0, 0, 0xa1, 0, 0, 0]);
        assert_eq!(r.rdi, 0x200);
        let mut r = StringRegs { rcx: 0, rsi: 0, rdi: 0x208 };
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!((m.reads, r.rdi), (2, 0x208));
    }

    /// 16-bit addresses: CX, SI wrap at 64 KiB and the upper bits stay; rCX's upper half is
    /// not part of the count.
    #[test]
    fn the_address_size_masks_the_registers() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 0xdead_0000_0002, rsi: 0xbeef_ffff, rdi: 0 };
        let o = op(0x0080_0030, 0, 0x1ffff, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        // SI wrapped from 0xffff to 0: the second byte came from the segment base 0x10000.
        assert_eq!(m.out, [(0x80, 1, 0xff), (0x80, 1, 0x00)]);
        assert_eq!(r, StringRegs { rcx: 0xdead_0000_0000, rsi: 0xbeef_0001, rdi: 0 });
        // A count in rCX's upper bits only, with 16-bit addresses: nothing to do.
        let mut r = StringRegs { rcx: 0x1_0000, rsi: 0, rdi: 0 };
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!(m.out.len(), 2);
    }

    /// 32-bit addresses (a 67h prefix in 64-bit mode): ESI and ECX wrap at 4 GiB and their
    /// writes zero-extend into RSI and RCX; 64-bit addresses use all of them.
    #[test]
    fn a_32_bit_address_size_wraps_and_zero_extends() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 0x7_0000_0002, rsi: 0x5_ffff_ffff, rdi: 0x9 };
        // ESI 0xffff_ffff at linear 0x10011 (byte 0x11); then ESI wraps to 0, at the
        // segment base 0x10011 - 0xffff_ffff, outside memory: a fault after one item.
        let o = StringIo::from_exit(0x0080_0030, 1 << 7, 0x10011, false, true).unwrap();
        let base = 0x10011u64.wrapping_sub(0xffff_ffff);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Fault(base));
        assert_eq!(m.out, [(0x80, 1, 0x11)]);
        assert_eq!(r, StringRegs { rcx: 0x1, rsi: 0, rdi: 0x9 });
        let mut r = StringRegs { rcx: 0x1_0000_0001, rsi: 0x1_0000_0000, rdi: 0 };
        let o = StringIo::from_exit(0x0080_0030, 2 << 7, 0x10000, false, true).unwrap();
        // With 64-bit addresses the whole of RCX counts: 2^32 + 1 items, so a batch.
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Again);
        assert_eq!(r.rcx, 0x1_0000_0001 - BATCH);
        assert_eq!(r.rsi, 0x1_0000_0000 + BATCH);
    }

    #[test]
    fn a_fault_keeps_the_completed_iterations() {
        let mut m = Machine::new();
        // OUTSB of 4 bytes from the last two of memory: the third read faults.
        let mut r = StringRegs { rcx: 4, rsi: 0xfffe, rdi: 0 };
        let o = op(0x0080_0030, 1 << 7, 0x1fffe, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Fault(0x20000));
        assert_eq!(m.out.len(), 2);
        assert_eq!(r, StringRegs { rcx: 2, rsi: 0x10000, rdi: 0 });
    }

    #[test]
    fn a_long_rep_is_done_in_batches() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: BATCH + 5, rsi: 0, rdi: 0 };
        let o = op(0x0080_0030, 1 << 7, 0x10000, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Again);
        assert_eq!((r.rcx, r.rsi, m.out.len()), (5, BATCH, BATCH as usize));
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!((r.rcx, m.out.len()), (0, BATCH as usize + 5));
    }

    #[test]
    fn a_port_effect_ends_the_instruction_after_its_item() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 3, rsi: 0x42, rdi: 0 };
        let o = op(0x00f4_0030, 1 << 7, 0x10042, false);
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Effect(0x42));
        assert_eq!(r, StringRegs { rcx: 2, rsi: 0x43, rdi: 0 });
    }

    /// Outside 64-bit mode linear addresses wrap at 4 GiB; in 64-bit mode they do not.
    #[test]
    fn linear_addresses_wrap_at_4_gib_outside_64_bit_mode() {
        let mut m = Machine::new();
        let mut r = StringRegs { rcx: 1, rsi: 0x10, rdi: 0 };
        let o = StringIo::from_exit(0x0080_0030, 1 << 7, 0x1_0001_0010, false, false).unwrap();
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Done);
        assert_eq!(m.out, [(0x80, 1, 0x10)]);
        let mut r = StringRegs { rcx: 1, rsi: 0x10, rdi: 0 };
        let o = StringIo { long_mode: true, ..o };
        assert_eq!(perform(&o, &mut r, &mut m), StringOutcome::Fault(0x1_0001_0010));
    }
}
