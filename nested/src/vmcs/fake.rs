//! A recording in-memory VMCS for tests of code generic over [`Vmcs`](super::Vmcs).

extern crate alloc;

use alloc::vec::Vec;
use core::cell::RefCell;

use super::{Vmcs, VmcsField};

/// One recorded access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read(VmcsField),
    Write(VmcsField, u64),
}

/// A VMCS held as an array, recording every access in order (to count VMREAD/VMWRITEs and
/// check which fields a merge touched).
#[derive(Clone, Debug)]
pub struct FakeVmcs {
    values: [u64; VmcsField::COUNT],
    log: RefCell<Vec<Op>>,
}

impl Default for FakeVmcs {
    fn default() -> Self {
        Self { values: [0; VmcsField::COUNT], log: RefCell::new(Vec::new()) }
    }
}

impl FakeVmcs {
    /// An all-zero VMCS.
    pub fn new() -> Self {
        Self::default()
    }

    /// The accesses so far.
    pub fn log(&self) -> Vec<Op> {
        self.log.borrow().clone()
    }

    /// Forgets the recorded accesses.
    pub fn clear_log(&self) {
        self.log.borrow_mut().clear();
    }

    /// Fields written since the last [`FakeVmcs::clear_log`], in order.
    pub fn writes(&self) -> Vec<VmcsField> {
        self.log
            .borrow()
            .iter()
            .filter_map(|op| match op {
                Op::Write(f, _) => Some(*f),
                Op::Read(_) => None,
            })
            .collect()
    }

    /// Reads without recording.
    pub fn peek(&self, field: VmcsField) -> u64 {
        self.values[field.index()]
    }

    /// Writes without recording.
    pub fn poke(&mut self, field: VmcsField, value: u64) {
        self.values[field.index()] = value & field.width().mask();
    }
}

impl Vmcs for FakeVmcs {
    fn read(&self, field: VmcsField) -> u64 {
        self.log.borrow_mut().push(Op::Read(field));
        self.values[field.index()]
    }

    fn write(&mut self, field: VmcsField, value: u64) {
        let value = value & field.width().mask();
        self.log.borrow_mut().push(Op::Write(field, value));
        self.values[field.index()] = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_truncates() {
        let mut v = FakeVmcs::new();
        v.write(VmcsField::GuestCsSelector, 0x12345);
        assert_eq!(v.read(VmcsField::GuestCsSelector), 0x2345);
        assert_eq!(
            v.log(),
            vec![
                Op::Write(VmcsField::GuestCsSelector, 0x2345),
                Op::Read(VmcsField::GuestCsSelector)
            ]
        );
        assert_eq!(v.writes(), vec![VmcsField::GuestCsSelector]);
    }
}

#[cfg(test)]
mod peek_poke_tests {
    use super::*;

    #[test]
    fn poke_truncates_and_neither_records() {
        let mut v = FakeVmcs::new();
        v.poke(VmcsField::GuestCsSelector, 0x1_2345);
        v.poke(VmcsField::GuestRip, u64::MAX);
        assert_eq!(v.peek(VmcsField::GuestCsSelector), 0x2345);
        assert_eq!(v.peek(VmcsField::GuestRip), u64::MAX);
        assert!(v.log().is_empty());
        v.write(VmcsField::VmExitReason, 0x1_0000_0021);
        let _ = v.read(VmcsField::GuestRip);
        assert_eq!(v.peek(VmcsField::VmExitReason), 0x21);
        assert_eq!(v.writes(), [VmcsField::VmExitReason]);
        assert_eq!(v.log().len(), 2);
        v.clear_log();
        assert!(v.log().is_empty() && v.writes().is_empty());
    }
}
