//! The transport driven as a driver drives it, and driven at random: a driver's handshake
//! through to an interrupt, refusals of what the spec forbids, and random register writes over
//! random guest memory that must never panic.

use proptest::prelude::*;

use crate::blk::{self, Blk, DiskSlice, VecDisk};
use crate::feature::VERSION_1;
use crate::mem::{GuestRam, VecRam};
use crate::mmio::{Effect, MmioDevice, interrupt, reg, status};
use crate::net::{self, Net};
use crate::queue::testing::DriverQueue;

fn blk_device() -> MmioDevice<Blk<DiskSlice<VecDisk>>> {
    let disk = VecDisk(alloc::vec![7u8; 64 * 512]);
    MmioDevice::new(Blk::new(DiskSlice::new(disk, 8, 32), false))
}

fn w(
    d: &mut MmioDevice<impl crate::mmio::Device>,
    mem: &mut VecRam,
    offset: u32,
    value: u32,
) -> Effect {
    d.write(mem, offset, 4, value)
}

/// The handshake of section 3.1.1 as Linux's virtio_mmio does it, with queue 0 at `q`.
fn bring_up(
    d: &mut MmioDevice<impl crate::mmio::Device>,
    mem: &mut VecRam,
    queues: &[&DriverQueue],
    features: u64,
) {
    assert_eq!(d.read(reg::MAGIC_VALUE, 4), Ok(crate::mmio::MAGIC));
    assert_eq!(d.read(reg::VERSION, 4), Ok(2));
    w(d, mem, reg::STATUS, 0);
    w(d, mem, reg::STATUS, status::ACKNOWLEDGE);
    w(d, mem, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    w(d, mem, reg::DEVICE_FEATURES_SEL, 1);
    let high = d.read(reg::DEVICE_FEATURES, 4).unwrap();
    w(d, mem, reg::DEVICE_FEATURES_SEL, 0);
    let low = d.read(reg::DEVICE_FEATURES, 4).unwrap();
    let offered = (u64::from(high) << 32) | u64::from(low);
    let take = offered & features;
    w(d, mem, reg::DRIVER_FEATURES_SEL, 1);
    w(d, mem, reg::DRIVER_FEATURES, (take >> 32) as u32);
    w(d, mem, reg::DRIVER_FEATURES_SEL, 0);
    w(d, mem, reg::DRIVER_FEATURES, take as u32);
    let s = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
    w(d, mem, reg::STATUS, s);
    assert_ne!(d.read(reg::STATUS, 4).unwrap() & status::FEATURES_OK, 0);
    for (i, q) in queues.iter().enumerate() {
        w(d, mem, reg::QUEUE_SEL, i as u32);
        assert_eq!(d.read(reg::QUEUE_READY, 4), Ok(0));
        assert!(d.read(reg::QUEUE_NUM_MAX, 4).unwrap() >= u32::from(q.size));
        w(d, mem, reg::QUEUE_NUM, u32::from(q.size));
        w(d, mem, reg::QUEUE_DESC_LOW, q.desc as u32);
        w(d, mem, reg::QUEUE_DESC_HIGH, (q.desc >> 32) as u32);
        w(d, mem, reg::QUEUE_DRIVER_LOW, q.avail as u32);
        w(d, mem, reg::QUEUE_DRIVER_HIGH, 0);
        w(d, mem, reg::QUEUE_DEVICE_LOW, q.used as u32);
        w(d, mem, reg::QUEUE_DEVICE_HIGH, 0);
        assert_eq!(w(d, mem, reg::QUEUE_READY, 1), Effect::None);
        assert_eq!(d.read(reg::QUEUE_READY, 4), Ok(1));
    }
    w(d, mem, reg::STATUS, s | status::DRIVER_OK);
}

#[test]
fn a_block_read_through_the_transport_raises_and_acks_the_interrupt() {
    let mut mem = VecRam::new(0x20000);
    let mut d = blk_device();
    let mut q = DriverQueue::new(0x1000, 16);
    bring_up(&mut d, &mut mem, &[&q], VERSION_1 | blk::F_FLUSH);
    assert_eq!(d.driver_features(), VERSION_1 | blk::F_FLUSH);
    // Capacity in config space, read as two 32-bit halves and as bytes.
    assert_eq!(d.read(reg::CONFIG, 4), Ok(32));
    assert_eq!(d.read(reg::CONFIG + 4, 4), Ok(0));
    assert_eq!(d.read(reg::CONFIG, 1), Ok(32));
    mem.write(0x4000, &[0; 16]).unwrap();
    q.add(&mut mem, &[(0x4000, 16, false), (0x5000, 512, true), (0x5200, 1, true)]);
    assert!(!d.irq());
    assert_eq!(w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 0), Effect::None);
    assert!(d.irq());
    assert_eq!(d.read(reg::INTERRUPT_STATUS, 4), Ok(interrupt::USED_BUFFER));
    assert_eq!(q.take_used(&mem), [(0, 513)]);
    assert!(mem.bytes[0x5000..0x5200].iter().all(|&b| b == 7));
    w(&mut d, &mut mem, reg::INTERRUPT_ACK, interrupt::USED_BUFFER);
    assert!(!d.irq());
    // Reset forgets the queues.
    w(&mut d, &mut mem, reg::STATUS, 0);
    assert_eq!(d.read(reg::QUEUE_READY, 4), Ok(0));
    assert_eq!(d.read(reg::STATUS, 4), Ok(0));
}

#[test]
fn the_transport_refuses_what_the_spec_forbids() {
    let mut mem = VecRam::new(0x20000);
    let mut d = blk_device();
    // Not 32-bit, not aligned.
    assert!(d.read(reg::STATUS, 2).is_err());
    assert!(d.read(reg::STATUS + 1, 4).is_err());
    assert!(matches!(d.write(&mut mem, reg::STATUS, 1, 1), Effect::Ignored(_)));
    // Features the device lacks: FEATURES_OK stays clear.
    w(&mut d, &mut mem, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
    w(&mut d, &mut mem, reg::DRIVER_FEATURES_SEL, 1);
    w(&mut d, &mut mem, reg::DRIVER_FEATURES, 1 | (1 << 3));
    w(&mut d, &mut mem, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK);
    assert_eq!(d.read(reg::STATUS, 4).unwrap() & status::FEATURES_OK, 0);
    // A bad queue size or misaligned ring cannot go ready; a notify before DRIVER_OK is ignored.
    w(&mut d, &mut mem, reg::QUEUE_NUM, 3);
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_READY, 1), Effect::Ignored(_)));
    w(&mut d, &mut mem, reg::QUEUE_NUM, 8);
    w(&mut d, &mut mem, reg::QUEUE_DESC_LOW, 0x1004);
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_READY, 1), Effect::Ignored(_)));
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 0), Effect::Ignored(_)));
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 5), Effect::Ignored(_)));
    w(&mut d, &mut mem, reg::QUEUE_SEL, 9);
    assert_eq!(d.read(reg::QUEUE_NUM_MAX, 4), Ok(0));
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_NUM, 8), Effect::Ignored(_)));
    assert!(matches!(w(&mut d, &mut mem, reg::MAGIC_VALUE, 8), Effect::Ignored(_)));
}

#[test]
fn a_broken_ring_sets_device_needs_reset() {
    let mut mem = VecRam::new(0x20000);
    let mut d = blk_device();
    let q = DriverQueue::new(0x1000, 16);
    bring_up(&mut d, &mut mem, &[&q], VERSION_1);
    mem.write(q.avail + 2, &1000u16.to_le_bytes()).unwrap();
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 0), Effect::Failed(_)));
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_ne!(d.read(reg::INTERRUPT_STATUS, 4).unwrap() & interrupt::CONFIG_CHANGE, 0);
    // Further notifies do nothing until the driver resets the device.
    assert!(matches!(w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 0), Effect::Ignored(_)));
    w(&mut d, &mut mem, reg::STATUS, 0);
    assert_eq!(d.status(), 0);
}

#[test]
fn a_net_device_echoes_through_its_queues() {
    let mut mem = VecRam::new(0x40000);
    let mut d = MmioDevice::new(Net::new([2, 0, 0, 0, 0, 1]));
    let mut rx = DriverQueue::new(0x1000, 8);
    let tx = DriverQueue::new(0x3000, 8);
    bring_up(&mut d, &mut mem, &[&rx, &tx], VERSION_1 | net::F_MAC);
    assert_eq!(d.read(reg::CONFIG, 4), Ok(0x0000_0002));
    assert_eq!(d.read(reg::CONFIG + 4, 2), Ok(0x0100));
    rx.add(&mut mem, &[(0x8000, 1526, true)]);
    d.device.deliver(&[0xff; 64]);
    assert_eq!(d.poll(&mut mem), Effect::None);
    assert!(d.irq());
    assert_eq!(rx.take_used(&mem), [(0, 76)]);
}

/// One random driver action.
#[derive(Clone, Debug)]
enum Op {
    Write { offset: u32, size: u8, value: u32 },
    Read { offset: u32, size: u8 },
    Poke { at: u16, value: u16 },
    Poll,
}

fn op() -> impl Strategy<Value = Op> {
    // Offsets mostly on the registers, sometimes anywhere; values mostly small or ring-like.
    let offset = prop_oneof![(0u32..0x40).prop_map(|r| r * 4), 0u32..0x400];
    let size = prop_oneof![Just(4u8), Just(1u8), Just(2u8), Just(8u8), 0u8..=255];
    let value = prop_oneof![0u32..4, 0u32..0x4000, Just(0xf), any::<u32>()];
    prop_oneof![
        4 => (offset.clone(), size.clone(), value).prop_map(|(offset, size, value)| Op::Write { offset, size, value }),
        1 => (offset, size).prop_map(|(offset, size)| Op::Read { offset, size }),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(at, value)| Op::Poke { at, value }),
        1 => Just(Op::Poll),
    ]
}

fn run(d: &mut MmioDevice<impl crate::mmio::Device>, mem: &mut VecRam, ops: &[Op]) {
    for op in ops {
        match *op {
            Op::Write { offset, size, value } => {
                let _ = d.write(mem, offset, size, value);
            }
            Op::Read { offset, size } => {
                let _ = d.read(offset, size);
            }
            Op::Poke { at, value } => {
                let _ = mem.write(u64::from(at) & !1, &value.to_le_bytes());
            }
            Op::Poll => {
                let _ = d.poll(mem);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Random register writes over random guest memory, after a real handshake: no panic,
    /// and the disk outside the device's slice never changes.
    #[test]
    fn random_driver_never_panics_a_block_device(
        seed in proptest::collection::vec(any::<u8>(), 0x8000),
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut mem = VecRam { bytes: seed };
        let mut d = blk_device();
        let q = DriverQueue::new(0x1000, 16);
        bring_up(&mut d, &mut mem, &[&q], VERSION_1 | blk::F_FLUSH);
        run(&mut d, &mut mem, &ops);
        let disk = &d.device.disk.disk.0;
        prop_assert!(disk[..8 * 512].iter().chain(&disk[40 * 512..]).all(|&b| b == 7));
    }

    #[test]
    fn random_driver_never_panics_a_net_device(
        seed in proptest::collection::vec(any::<u8>(), 0x8000),
        ops in proptest::collection::vec(op(), 1..200),
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1600), 0..8),
    ) {
        let mut mem = VecRam { bytes: seed };
        let mut d = MmioDevice::new(Net::new([2, 0, 0, 0, 0, 1]));
        let rx = DriverQueue::new(0x1000, 8);
        let tx = DriverQueue::new(0x3000, 8);
        bring_up(&mut d, &mut mem, &[&rx, &tx], VERSION_1 | net::F_MAC);
        for f in &frames {
            d.device.deliver(f);
        }
        run(&mut d, &mut mem, &ops);
        while let Some(f) = d.device.take_sent() {
            prop_assert!(f.len() <= net::MAX_FRAME);
        }
    }
}

/// Guest memory that records where the device wrote.
struct Watched<'a> {
    mem: &'a mut VecRam,
    writes: Vec<(u64, u64)>,
}

impl GuestRam for Watched<'_> {
    fn read(&self, gpa: u64, buf: &mut [u8]) -> Result<(), crate::mem::OutOfRange> {
        self.mem.read(gpa, buf)
    }
    fn write(&mut self, gpa: u64, data: &[u8]) -> Result<(), crate::mem::OutOfRange> {
        self.mem.write(gpa, data)?;
        self.writes.push((gpa, data.len() as u64));
        Ok(())
    }
}

/// A random chain: buffers anywhere (in or out of guest memory, any length), in order.
fn chain() -> impl Strategy<Value = Bufs> {
    let addr = prop_oneof![4 => 0x4000u64..0x7000, 1 => any::<u64>(), 1 => 0x7f00u64..0x8100];
    let len = prop_oneof![4 => 0u32..2048, 1 => any::<u32>(), 1 => Just(16u32), 1 => Just(1u32)];
    proptest::collection::vec((addr, len, any::<bool>()), 1..6).prop_map(|mut c| {
        c.sort_by_key(|&(_, _, w)| w);
        c
    })
}

/// A driver's buffers: (address, length, device-writable).
type Bufs = Vec<(u64, u32, bool)>;

/// Block requests: a chain, a request type and a sector.
fn requests() -> impl Strategy<Value = Vec<(Bufs, u32, u64)>> {
    let sector = prop_oneof![0u64..40, any::<u64>()];
    proptest::collection::vec((chain(), 0u32..10, sector), 1..12)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("TURTLES_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        ..ProptestConfig::default()
    })]

    /// Well-formed rings holding random chains with random request headers: each request
    /// ends in a status or a queue error, no panic, no byte of the disk outside the slice
    /// changes, and nothing is written to guest memory past its end (the memory cannot grow).
    #[test]
    fn random_requests_never_panic_a_block_device(
        chains in requests(),
    ) {
        let mut mem = VecRam::new(0x8000);
        let mut d = blk_device();
        let mut q = DriverQueue::new(0x1000, 16);
        bring_up(&mut d, &mut mem, &[&q], VERSION_1 | blk::F_FLUSH);
        // The device may write only the used ring and the device-writable buffers it was given.
        let mut allowed = vec![(q.used, 4 + 8 * u64::from(q.size))];
        for (c, kind, sector) in &chains {
            if let Some(&(addr, _, false)) = c.first() {
                let _ = mem.write(addr, &kind.to_le_bytes());
                let _ = mem.write(addr.wrapping_add(8), &sector.to_le_bytes());
            }
            allowed.extend(c.iter().filter(|b| b.2).map(|&(a, l, _)| (a, u64::from(l))));
            q.add(&mut mem, c);
            let mut watched = Watched { mem: &mut mem, writes: Vec::new() };
            let _ = d.write(&mut watched, reg::QUEUE_NOTIFY, 4, 0);
            for &(at, len) in &watched.writes {
                let inside = allowed
                    .iter()
                    .any(|&(a, l)| at >= a && at.checked_add(len).is_some_and(|e| e <= a.saturating_add(l)));
                prop_assert!(inside, "device wrote {len} bytes at {at:#x} outside {allowed:x?}");
            }
        }
        prop_assert_eq!(mem.bytes.len(), 0x8000);
        let disk = &d.device.disk.disk.0;
        prop_assert!(disk[..8 * 512].iter().chain(&disk[40 * 512..]).all(|&b| b == 7));
    }

    /// The same for transmit and receive chains of a network device.
    #[test]
    fn random_chains_never_panic_a_net_device(
        rx_chains in proptest::collection::vec(chain(), 0..6),
        tx_chains in proptest::collection::vec(chain(), 0..6),
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..1600), 0..8),
    ) {
        let mut mem = VecRam::new(0x8000);
        let mut d = MmioDevice::new(Net::new([2, 0, 0, 0, 0, 1]));
        let mut rx = DriverQueue::new(0x1000, 8);
        let mut tx = DriverQueue::new(0x3000, 8);
        bring_up(&mut d, &mut mem, &[&rx, &tx], VERSION_1 | net::F_MAC);
        for f in &frames {
            d.device.deliver(f);
        }
        for c in &rx_chains {
            rx.add(&mut mem, c);
        }
        for c in &tx_chains {
            tx.add(&mut mem, c);
        }
        let _ = w(&mut d, &mut mem, reg::QUEUE_NOTIFY, 1);
        let _ = d.poll(&mut mem);
        while let Some(f) = d.device.take_sent() {
            prop_assert!(f.len() <= net::MAX_FRAME && f.len() >= 14);
        }
    }
}
