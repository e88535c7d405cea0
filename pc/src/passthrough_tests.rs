use super::*;
use proptest::prelude::*;

/// A fake function shaped like Bochs' e1000 (BAR0 128 KiB memory at 0xc0000000, BAR1 64
/// I/O ports at 0xc040) plus a 64-bit prefetchable BAR2/3 of 16 KiB at 0x2_0000_0000, a
/// ROM, INTA# and the capabilities PM (40h) -> MSI 64-bit (50h) -> MSI-X (60h) -> vendor (70h).
struct Fake {
    space: [u8; 256],
    /// Writable bits of each byte (BAR address bits, command, ...).
    writable: [u8; 256],
    /// Write-1-to-clear bits (status).
    w1c: [u8; 256],
    writes: Vec<(u8, u8, u32)>,
}

const BAR0: u32 = 0xc000_0000;
const BAR1: u32 = 0xc040;
const BAR2: u64 = 0x2_0000_0000;

impl Fake {
    fn new(with_caps: bool) -> Self {
        let mut f = Fake { space: [0; 256], writable: [0; 256], w1c: [0; 256], writes: Vec::new() };
        f.put(0x00, 0x100e_8086);
        f.put(0x04, 0x0010_0007 & if with_caps { !0 } else { !0x0010_0000 });
        f.writable[4] = 0xff;
        f.writable[5] = 0x07;
        f.w1c[7] = 0xf9;
        f.put(0x08, 0x0200_0003);
        f.put(0x10, BAR0);
        f.mask(0x10, !(128 * 1024 - 1));
        f.put(0x14, BAR1 | 1);
        f.mask(0x14, !(64 - 1) & 0xffff);
        f.put(0x18, BAR2 as u32 | 0b1100);
        f.mask(0x18, !(16 * 1024 - 1));
        f.put(0x1c, (BAR2 >> 32) as u32);
        f.mask(0x1c, u32::MAX);
        f.put(0x2c, 0x1234_5678);
        f.put(0x30, 0xfeb0_0001);
        f.mask(0x30, 0xfffe_0001);
        f.put(0x3c, 0x0000_010b);
        f.writable[0x3c] = 0xff;
        if with_caps {
            f.put(0x34, 0x40);
            f.put(0x40, 0x0002_5001);
            f.put(0x50, 0x0080_6005);
            f.mask(0x54, u32::MAX);
            f.put(0x60, 0x0000_7011);
            f.put(0x70, 0x0004_0009);
            f.mask(0x74, u32::MAX);
        }
        f
    }
    fn put(&mut self, offset: usize, v: u32) {
        self.space[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn mask(&mut self, offset: usize, v: u32) {
        self.writable[offset..offset + 4].copy_from_slice(&v.to_le_bytes());
    }
    fn get(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.space[offset..offset + 4].try_into().unwrap())
    }
}

impl ConfigSpace for Fake {
    fn read32(&mut self, offset: u8) -> u32 {
        assert!(offset.is_multiple_of(4));
        self.get(usize::from(offset))
    }
    fn write(&mut self, offset: u8, size: u8, value: u32) {
        assert!(matches!(size, 1 | 2 | 4) && offset.is_multiple_of(size), "{offset:#x}/{size}");
        self.writes.push((offset, size, value));
        for i in 0..usize::from(size) {
            let at = usize::from(offset) + i;
            let byte = (value >> (8 * i)) as u8;
            let w = self.writable[at];
            self.space[at] = (self.space[at] & !w) | (byte & w);
            self.space[at] &= !(byte & self.w1c[at]);
        }
    }
}

fn filter(with_caps: bool) -> (Fake, Passthrough) {
    let mut f = Fake::new(with_caps);
    let p = Passthrough::new(&mut f, 11, true);
    f.writes.clear();
    (f, p)
}

#[test]
fn probing_restores_the_device() {
    let mut f = Fake::new(true);
    let before = f.space;
    let p = Passthrough::new(&mut f, 11, true);
    assert_eq!(f.space, before, "BARs and command are restored after sizing");
    // Decoding was off while the BARs held all-ones.
    assert_eq!(f.writes.first(), Some(&(0x04, 2, 0x0004)));
    assert_eq!(f.writes.last(), Some(&(0x04, 2, 0x0007)));
    let bars: Vec<_> = p.bars().collect();
    assert_eq!(
        bars,
        [
            (0, u64::from(BAR0), 128 << 10, false),
            (1, u64::from(BAR1), 64, true),
            (2, BAR2, 16 << 10, false)
        ]
    );
}

#[test]
fn bars_read_real_and_size_like_hardware() {
    let (mut f, mut p) = filter(true);
    assert_eq!(p.read(&mut f, 0x10, 4), BAR0);
    assert_eq!(p.read(&mut f, 0x14, 4), BAR1 | 1);
    assert_eq!(p.read(&mut f, 0x18, 4), BAR2 as u32 | 0b1100);
    assert_eq!(p.read(&mut f, 0x1c, 4), 2);
    // The sizing dance on every BAR, as virtio-drivers and Linux do it.
    let expect = [0xfffe_0000, 0xffc1, 0xffff_c00c, 0xffff_ffff, 0, 0];
    for (i, size) in expect.into_iter().enumerate() {
        let offset = 0x10 + 4 * i as u16;
        let original = p.read(&mut f, offset, 4);
        assert_eq!(p.write(&mut f, offset, 4, u32::MAX), Ok(()));
        assert_eq!(p.read(&mut f, offset, 4), size, "bar{i}");
        assert_eq!(p.write(&mut f, offset, 4, original), Ok(()));
        assert_eq!(p.read(&mut f, offset, 4), original, "bar{i}");
    }
    assert!(f.writes.is_empty(), "the real BARs are never written: {:?}", f.writes);
}

#[test]
fn a_wild_bar_write_is_refused_and_does_not_move_the_device() {
    let (mut f, mut p) = filter(true);
    assert_eq!(
        p.write(&mut f, 0x10, 4, 0xd000_0000),
        Err(Refused::WildBar { index: 0, value: 0xd000_0000 })
    );
    assert_eq!(p.read(&mut f, 0x10, 4), BAR0);
    assert_eq!(f.get(0x10), BAR0);
    assert_eq!(p.write(&mut f, 0x14, 2, 0x1000), Err(Refused::WildBar { index: 1, value: 0x1000 }));
    assert_eq!(p.read(&mut f, 0x14, 4), BAR1 | 1);
    // Absent BARs read 0 and ignore writes; the ROM is hidden.
    assert_eq!(p.write(&mut f, 0x20, 4, 0x1234_5000), Ok(()));
    assert_eq!(p.read(&mut f, 0x20, 4), 0);
    assert_eq!(p.write(&mut f, 0x30, 4, u32::MAX), Ok(()));
    assert_eq!(p.read(&mut f, 0x30, 4), 0);
    assert!(f.writes.is_empty());
}

#[test]
fn command_bits_outside_the_guests_stay_with_l0() {
    let (mut f, mut p) = filter(true);
    // The guest turns off decoding and sets SERR# enable (bit 8) and INTx disable.
    assert_eq!(p.write(&mut f, 0x04, 2, 0x0500), Ok(()));
    assert_eq!(f.writes, [(0x04, 2, 0x0400)]);
    assert_eq!(p.read(&mut f, 0x04, 2), 0x0400);
    // Byte write of the low byte only: the high byte (INTx disable) is kept.
    assert_eq!(p.write(&mut f, 0x04, 1, 0x07), Ok(()));
    assert_eq!(p.read(&mut f, 0x04, 2), 0x0407);
}

#[test]
fn status_is_write_one_to_clear_and_byte_exact() {
    let (mut f, mut p) = filter(true);
    f.space[7] = 0x80 | 0x20;
    // A byte write to status' high byte clears only what it names.
    assert_eq!(p.write(&mut f, 0x07, 1, 0x80), Ok(()));
    assert_eq!(f.writes, [(0x07, 1, 0x80)]);
    assert_eq!(f.space[7], 0x20);
}

#[test]
fn interrupt_line_is_virtual_and_the_pin_real() {
    let (mut f, mut p) = filter(true);
    assert_eq!(p.read(&mut f, 0x3c, 2), 0x010b);
    assert_eq!(p.write(&mut f, 0x3c, 2, 0x0405), Ok(()));
    assert_eq!(p.read(&mut f, 0x3c, 2), 0x0105);
    assert_eq!(p.interrupt_line(), 5);
    assert_eq!(f.get(0x3c), 0x010b);
}

#[test]
fn msi_and_msix_are_unlinked_and_fenced() {
    let (mut f, mut p) = filter(true);
    assert_eq!(p.visible_capabilities().collect::<Vec<_>>(), [0x01, 0x09]);
    assert_eq!(p.read(&mut f, 0x06, 1) & 0x10, 0x10);
    assert_eq!(p.read(&mut f, 0x34, 1), 0x40);
    assert_eq!(p.read(&mut f, 0x41, 1), 0x70, "PM's next skips MSI and MSI-X");
    assert_eq!(p.read(&mut f, 0x70, 4), 0x0004_0009);
    assert_eq!(p.read(&mut f, 0x50, 4), 0, "hidden MSI reads 0");
    // Enabling MSI behind the guest's back is refused; the device is untouched.
    assert_eq!(p.write(&mut f, 0x52, 2, 1), Err(Refused::HiddenCapability { offset: 0x52 }));
    assert_eq!(
        p.write(&mut f, 0x54, 4, 0xfee0_0000),
        Err(Refused::HiddenCapability { offset: 0x54 })
    );
    assert_eq!(f.get(0x54), 0);
    // The vendor capability's body is device-specific and passes through.
    assert_eq!(p.write(&mut f, 0x74, 4, 0xdead_beef), Ok(()));
    assert_eq!(f.get(0x74), 0xdead_beef);
    // Without hiding, the list is the real one.
    let mut g = Fake::new(true);
    let mut all = Passthrough::new(&mut g, 11, false);
    assert_eq!(all.visible_capabilities().collect::<Vec<_>>(), [0x01, 0x05, 0x11, 0x09]);
    assert_eq!(all.read(&mut g, 0x41, 1), 0x50);
}

#[test]
fn no_capabilities_means_no_list() {
    let (mut f, mut p) = filter(false);
    assert_eq!(p.read(&mut f, 0x06, 1) & 0x10, 0);
    assert_eq!(p.read(&mut f, 0x34, 1), 0);
}

#[test]
fn a_looping_capability_list_ends() {
    let mut f = Fake::new(true);
    f.put(0x70, 0x0004_4009); // vendor -> PM again
    let mut p = Passthrough::new(&mut f, 11, true);
    assert!(p.visible_capabilities().count() <= MAX_CAPS);
    let _ = p.read(&mut f, 0x71, 1);
}

#[test]
fn out_of_range_and_odd_sizes() {
    let (mut f, mut p) = filter(true);
    assert_eq!(p.read(&mut f, 0x100, 4), u32::MAX);
    assert_eq!(p.read(&mut f, 0xffe, 4), u32::MAX);
    assert_eq!(p.read(&mut f, u16::MAX, 4), u32::MAX);
    assert_eq!(p.write(&mut f, 0x100, 4, 0), Err(Refused::OutOfRange { offset: 0x100 }));
    assert_eq!(p.read(&mut f, 0xfe, 4), 0xffff_0000 | (f.get(0xfc) >> 16));
    assert_eq!(p.read(&mut f, 0x10, 0), u32::MAX);
    assert_eq!(p.read(&mut f, 0x10, 8), u32::MAX);
    assert_eq!(p.write(&mut f, 0x10, 5, 0), Err(Refused::BadSize { size: 5 }));
    assert!(f.writes.is_empty());
}

#[test]
fn unaligned_accesses_split_into_aligned_real_writes() {
    let (mut f, mut p) = filter(true);
    // A dword at 42h-45h: PM's registers, split at the dword boundary.
    assert_eq!(p.write(&mut f, 0x42, 4, 0x1122_3344), Ok(()));
    assert_eq!(f.writes, [(0x42, 2, 0x3344), (0x44, 2, 0x1122)]);
    f.writes.clear();
    assert_eq!(p.write(&mut f, 0x73, 4, 0xaabb_ccdd), Ok(()));
    // Bytes 73h <- dd, 74h <- cc, 75h <- bb, 76h <- aa.
    assert_eq!(f.writes, [(0x73, 1, 0xdd), (0x74, 2, 0xbbcc), (0x76, 1, 0xaa)]);
    // A read across the command/status boundary mixes virtual and real bytes.
    let v = p.read(&mut f, 0x05, 2);
    assert_eq!(v & 0xff, u32::from(p.read(&mut f, 0x05, 1) as u8));
    assert_eq!(v >> 8, p.read(&mut f, 0x06, 1));
}

proptest! {
    #![proptest_config(crate::fuzz_config(2000))]

    /// Whatever the guest writes, the real BARs, ROM, MSI/MSI-X and the command bits L0 owns
    /// never change, and every real write is naturally aligned inside the 256 bytes.
    #[test]
    fn guest_writes_never_move_or_rewire_the_device(
        ops in proptest::collection::vec((0u16..0x120, 0u8..6, any::<u32>(), any::<bool>()), 1..64)
    ) {
        let (mut f, mut p) = filter(true);
        for (offset, size, value, is_write) in ops {
            if is_write {
                let _ = p.write(&mut f, offset, size, value);
            } else {
                let _ = p.read(&mut f, offset, size);
            }
        }
        prop_assert_eq!(f.get(0x10), BAR0);
        prop_assert_eq!(f.get(0x14), BAR1 | 1);
        prop_assert_eq!(f.get(0x18), BAR2 as u32 | 0b1100);
        prop_assert_eq!(f.get(0x1c), 2);
        prop_assert_eq!(f.get(0x30), 0xfeb0_0001);
        prop_assert_eq!(&f.space[0x50..0x70], &Fake::new(true).space[0x50..0x70]);
        prop_assert_eq!(u16::from_le_bytes([f.space[4], f.space[5]]) & !GUEST_COMMAND, 0);
        prop_assert_eq!(f.get(0x3c), 0x0000_010b);
        let bars: Vec<_> = p.bars().collect();
        prop_assert_eq!(bars.len(), 3);
    }
}
