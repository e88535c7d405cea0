//! VMCS access: the field table, vmcs12 and the [`Vmcs`] trait (SDM Vol. 3C ch. 25).
//!
//! vmcs02 merge and vmcs12 sync are generic over [`Vmcs`], so the same code runs against the
//! hardware VMCS in the image (a VMREAD/VMWRITE wrapper, `HwVmcs` in `image/`), the in-memory
//! [`Vmcs12`] and the recording [`FakeVmcs`] used by tests.

#[macro_use]
mod table;
mod dirty;
mod fake;
mod fields;
pub mod shadow;
mod vmcs12;
#[cfg(test)]
mod x86_crosscheck;

pub use dirty::DirtySet;
pub use fake::{FakeVmcs, Op};
pub use fields::{Access, FieldType, Shadow, VmcsField, Width};
pub use vmcs12::{LAUNCH_STATE_OFFSET, LaunchState, VMCS12_REVISION, VMCS12_SIZE, Vmcs12};

/// A named list of fields: `field_list!(/// doc
/// pub NAME, for_each_name: [A, B, ...]);` defines `NAME: &[VmcsField]` and
/// `for_each_name(f)`, which calls `f` once per field, unrolled: with `f` inlined each call
/// sees a constant field, so `Vmcs12::get/set` fold to one load or store and a hardware
/// VMREAD/VMWRITE gets a constant encoding (for the lists walked on every nested exit).
macro_rules! field_list {
    ($(#[$meta:meta])* $vis:vis $name:ident, $each:ident: [$($field:ident),* $(,)?]) => {
        $(#[$meta])*
        $vis const $name: &[$crate::vmcs::VmcsField] = &[$($crate::vmcs::VmcsField::$field),*];

        #[doc = concat!("Calls `f` with each field of [`", stringify!($name), "`], unrolled.")]
        #[inline(always)]
        $vis fn $each(mut f: impl FnMut($crate::vmcs::VmcsField)) {
            $(f($crate::vmcs::VmcsField::$field);)*
        }
    };
}
pub(crate) use field_list;

/// Why a raw-encoding access failed (maps to VM-instruction errors 12 and 13, SDM 31.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmcsError {
    /// VMREAD/VMWRITE from/to unsupported VMCS component.
    Unsupported,
    /// VMWRITE to read-only VMCS component.
    ReadOnly,
}

/// Access to one VMCS by field.
///
/// `read`/`write` are infallible: every [`VmcsField`] exists by construction, and values are
/// zero-extended on read and truncated to the field's width on write. An implementation over
/// hardware (VMREAD/VMWRITE on the current VMCS) treats a failing instruction as an L0 bug —
/// it logs and returns 0 — because the field set is fixed and the VMCS is current whenever
/// this trait is used. Raw encodings from a guest go through [`Vmcs::read_raw`] /
/// [`Vmcs::write_raw`], which decode HIGH accesses and return [`VmcsError`].
pub trait Vmcs {
    /// Reads `field`.
    fn read(&self, field: VmcsField) -> u64;
    /// Writes `field` (truncated to its width).
    fn write(&mut self, field: VmcsField, value: u64);

    /// VMREAD semantics for a raw encoding: HIGH encodings (`full | 1` of a 64-bit field)
    /// return bits 63:32.
    #[inline]
    fn read_raw(&self, encoding: u64) -> Result<u64, VmcsError> {
        match VmcsField::from_encoding(encoding) {
            Some((f, Access::Full)) => Ok(self.read(f)),
            Some((f, Access::High)) => Ok(self.read(f) >> 32),
            None => Err(VmcsError::Unsupported),
        }
    }

    /// VMWRITE semantics for a raw encoding, without the read-only check (callers decide
    /// with IA32_VMX_MISC bit 29): HIGH encodings replace bits 63:32 only.
    #[inline]
    fn write_raw(&mut self, encoding: u64, value: u64) -> Result<(), VmcsError> {
        match VmcsField::from_encoding(encoding) {
            Some((f, Access::Full)) => {
                self.write(f, value);
                Ok(())
            }
            Some((f, Access::High)) => {
                let low = self.read(f) & 0xffff_ffff;
                self.write(f, (value << 32) | low);
                Ok(())
            }
            None => Err(VmcsError::Unsupported),
        }
    }
}

/// VMREAD/VMWRITE of HIGH encodings (SDM 25.11.2: an encoding with bit 0 set names bits
/// 63:32 of a 64-bit field), with literal encodings.
#[cfg(test)]
mod raw_tests {
    use super::*;

    #[test]
    fn high_reads_and_writes_bits_63_to_32() {
        let mut v = FakeVmcs::new();
        v.poke(VmcsField::GuestIa32Efer, 0x8765_4321_0000_0d01);
        assert_eq!(v.read_raw(0x2806), Ok(0x8765_4321_0000_0d01));
        assert_eq!(v.read_raw(0x2807), Ok(0x8765_4321));
        // A HIGH write takes bits 31:0 of the source and keeps bits 31:0 of the field.
        assert_eq!(v.write_raw(0x2807, 0xffff_ffff_0000_0001), Ok(()));
        assert_eq!(v.peek(VmcsField::GuestIa32Efer), 0x0000_0001_0000_0d01);
        assert_eq!(v.write_raw(0x2806, 0x500), Ok(()));
        assert_eq!(v.peek(VmcsField::GuestIa32Efer), 0x500);
        assert_eq!(v.read_raw(0x2807), Ok(0));
        // Natural-width and 32-bit fields have no HIGH encoding: unsupported, nothing written.
        assert_eq!(v.write_raw(0x681f, 5), Err(VmcsError::Unsupported));
        assert_eq!(v.read_raw(0x4825), Err(VmcsError::Unsupported));
        assert_eq!(v.peek(VmcsField::GuestRip), 0);
    }
}
