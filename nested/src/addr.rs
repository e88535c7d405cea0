//! Typed addresses for multi-dimensional paging (Turtles §4.1; SDM Vol. 3C 29.3).
//!
//! Three physical address spaces meet in a nested setup: L0's host-physical space, L1's
//! guest-physical space (what EPT01 translates) and L2's guest-physical space (what EPT12
//! translates). Distinct newtypes keep a shadow-EPT walk from mixing them up.

use core::fmt;

macro_rules! address {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw address.
            pub const fn get(self) -> u64 {
                self.0
            }

            /// The 4-KiB frame that contains this address.
            pub const fn page_base(self) -> Self {
                Self(self.0 & !0xfff)
            }

            /// Offset inside the 4-KiB frame.
            pub const fn page_offset(self) -> u64 {
                self.0 & 0xfff
            }

            /// True if the address is aligned to `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }

            /// `self + off`, or `None` on overflow.
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

address!(
    /// A host-physical address (L0's physical memory).
    Hpa
);
address!(
    /// A guest-physical address of L1 (translated by EPT01 to an [`Hpa`]).
    L1Gpa
);
address!(
    /// A guest-physical address of L2 (translated by L1's EPT12 to an [`L1Gpa`]).
    L2Gpa
);

/// True if `addr` fits in a physical-address width of `maxphyaddr` bits (SDM 26.2.1.1:
/// "bits beyond the processor's physical-address width must be 0").
pub const fn fits_phys_width(addr: u64, maxphyaddr: u8) -> bool {
    maxphyaddr >= 64 || addr >> maxphyaddr == 0
}

/// True if `addr` is canonical for 48-bit linear addresses (SDM Vol. 1, 3.3.7.1).
pub const fn is_canonical(addr: u64) -> bool {
    let top = (addr as i64) >> 47;
    top == 0 || top == -1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_and_canonical() {
        assert!(fits_phys_width(0xf_ffff_ffff, 36));
        assert!(!fits_phys_width(0x10_0000_0000, 36));
        assert!(is_canonical(0x0000_7fff_ffff_ffff));
        assert!(is_canonical(0xffff_8000_0000_0000));
        assert!(!is_canonical(0x0000_8000_0000_0000));
        assert_eq!(L1Gpa(0x1234).page_base(), L1Gpa(0x1000));
        assert_eq!(format!("{:?}", Hpa(0x10)), "Hpa(0x10)");
    }
}

#[cfg(test)]
mod edge_tests {
    use super::*;

    #[test]
    fn width_and_canonical_edges() {
        // SDM 26.2.1.1: bits MAXPHYADDR and up must be 0; 52 is the architectural maximum.
        assert!(fits_phys_width(0x000f_ffff_ffff_ffff, 52));
        assert!(!fits_phys_width(0x0010_0000_0000_0000, 52));
        assert!(fits_phys_width(u64::MAX, 64));
        assert!(fits_phys_width(0, 36));
        // Bits 63:47 all equal (SDM Vol. 1 3.3.7.1).
        assert!(is_canonical(0));
        assert!(is_canonical(u64::MAX));
        assert!(!is_canonical(0xffff_7fff_ffff_ffff));
        assert!(!is_canonical(0x8000_0000_0000_0000));
        assert!(!is_canonical(0x0001_0000_0000_0000));
        assert_eq!(L2Gpa(0x1fff).page_offset(), 0xfff);
        assert!(Hpa(0x20_0000).is_aligned(0x20_0000) && !Hpa(0x20_1000).is_aligned(0x20_0000));
        assert_eq!(L1Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(L1Gpa(0xfff).checked_add(1), Some(L1Gpa(0x1000)));
    }
}
