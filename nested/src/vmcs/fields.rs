//! VMCS field metadata generated from the field table (SDM Vol. 3C 25.11.2, Vol. 3D App. B).
//!
//! [`VmcsField`] has one variant per field of [`table`](super::table) with a dense index
//! (`field as usize`), used for dirty bitmaps; everything else (width, type, read-only-ness)
//! is derived from the encoding bits exactly as the processor does.

/// Width of a VMCS field: encoding bits 14:13 (SDM 25.11.2, Table 25-21).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Width {
    Bits16,
    Bits64,
    Bits32,
    Natural,
}

impl Width {
    /// Width from an encoding.
    pub const fn of(encoding: u32) -> Width {
        match (encoding >> 13) & 3 {
            0 => Width::Bits16,
            1 => Width::Bits64,
            2 => Width::Bits32,
            _ => Width::Natural,
        }
    }

    /// Bytes the field occupies in vmcs12 (natural width is 64 bits on a 64-bit processor).
    pub const fn bytes(self) -> usize {
        match self {
            Width::Bits16 => 2,
            Width::Bits32 => 4,
            Width::Bits64 | Width::Natural => 8,
        }
    }

    /// Mask of the bits the field holds.
    pub const fn mask(self) -> u64 {
        match self {
            Width::Bits16 => 0xffff,
            Width::Bits32 => 0xffff_ffff,
            Width::Bits64 | Width::Natural => u64::MAX,
        }
    }
}

/// Field type: encoding bits 11:10 (SDM 25.11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    Control,
    /// VM-exit information: read-only unless IA32_VMX_MISC bit 29 ("VMWRITE to any field").
    ExitInfo,
    GuestState,
    HostState,
}

impl FieldType {
    /// Type from an encoding.
    pub const fn of(encoding: u32) -> FieldType {
        match (encoding >> 10) & 3 {
            0 => FieldType::Control,
            1 => FieldType::ExitInfo,
            2 => FieldType::GuestState,
            _ => FieldType::HostState,
        }
    }
}

/// Which half of a 64-bit field an encoding names (encoding bit 0, SDM 25.11.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Full,
    /// Bits 63:32 of a 64-bit field (encoding | 1).
    High,
}

/// Shadow class of a field (SDM 25.10: VMCS shadowing; which fields L0 shadows for L1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shadow {
    /// VMREAD and VMWRITE by L1 exit to L0.
    None,
    /// VMREAD by L1 reads the shadow VMCS; VMWRITE exits.
    Ro,
    /// Both VMREAD and VMWRITE by L1 go to the shadow VMCS.
    Rw,
}

macro_rules! define_vmcs_field {
    ($($name:ident = $enc:literal => $member:ident : $ty:ty, $shadow:ident;)*) => {
        /// One VMCS field of SDM Vol. 3D Appendix B. `field as usize` is a dense index
        /// (`0..VmcsField::COUNT`), usable for bitmaps; [`VmcsField::encoding`] gives the
        /// architectural encoding.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum VmcsField {
            $($name,)*
        }

        impl VmcsField {
            /// Every field, in table order (`ALL[i] as usize == i`).
            pub const ALL: &'static [VmcsField] = &[$(VmcsField::$name,)*];
            /// Number of fields.
            pub const COUNT: usize = Self::ALL.len();
            const ENCODINGS: [u32; Self::COUNT] = [$($enc,)*];
            const SHADOW: [Shadow; Self::COUNT] = [$(Shadow::$shadow,)*];
            const NAMES: [&'static str; Self::COUNT] = [$(stringify!($name),)*];

            /// The field with the full (not HIGH) encoding `encoding`: one table load
            /// (`VmcsField::LOOKUP`) instead of a search, as L1's trapped VMREAD/VMWRITE
            /// decode their field on every exit.
            #[inline]
            pub const fn from_full_encoding(encoding: u32) -> Option<VmcsField> {
                if encoding & !LOOKUP_BITS != 0 {
                    return None;
                }
                match Self::LOOKUP[lookup_key(encoding)] {
                    0 => None,
                    i => Some(Self::ALL[i as usize - 1]),
                }
            }
        }

        // Every member type matches the width its encoding implies.
        const _: () = {
            $(assert!(Width::of($enc).bytes() == core::mem::size_of::<$ty>());)*
        };
    };
}

vmcs_fields!(define_vmcs_field);

/// The encoding bits a full encoding in the table may have: width (14:13), type (11:10) and
/// index (9:1) up to 31 (the highest is 0x1b, see [`VmcsField::max_index`]).
const LOOKUP_BITS: u32 = 0x6000 | 0xc00 | 0x3e;

/// [`VmcsField::LOOKUP`]'s slot for an encoding with only [`LOOKUP_BITS`] set: width, type
/// and index packed into 9 bits.
const fn lookup_key(encoding: u32) -> usize {
    ((((encoding >> 13) & 3) << 7) | (((encoding >> 10) & 3) << 5) | ((encoding >> 1) & 0x1f))
        as usize
}

impl VmcsField {
    /// Field index + 1 per [`lookup_key`] of its encoding (0: no field).
    const LOOKUP: [u8; 512] = {
        assert!(Self::COUNT < 255);
        let mut t = [0u8; 512];
        let mut i = 0;
        while i < Self::COUNT {
            let e = Self::ENCODINGS[i];
            assert!(e & !LOOKUP_BITS == 0, "encoding outside the lookup table's bits");
            assert!(t[lookup_key(e)] == 0, "two encodings share a lookup slot");
            t[lookup_key(e)] = i as u8 + 1;
            i += 1;
        }
        t
    };

    /// The field's architectural encoding (full access).
    pub const fn encoding(self) -> u32 {
        Self::ENCODINGS[self as usize]
    }

    /// Dense index `0..COUNT`.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The field's name as in the table.
    pub const fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// Width, from encoding bits 14:13.
    pub const fn width(self) -> Width {
        Width::of(self.encoding())
    }

    /// Type, from encoding bits 11:10.
    pub const fn field_type(self) -> FieldType {
        FieldType::of(self.encoding())
    }

    /// Read-only for VMWRITE unless "VMWRITE to any field" (IA32_VMX_MISC bit 29) is set.
    pub const fn is_read_only(self) -> bool {
        matches!(self.field_type(), FieldType::ExitInfo)
    }

    /// Shadow class from the table.
    pub const fn shadow(self) -> Shadow {
        Self::SHADOW[self as usize]
    }

    /// Decodes any encoding a VMREAD/VMWRITE may name: a full encoding, or the HIGH encoding
    /// (`full | 1`) of a 64-bit field. Bits 31:15 must be zero (SDM 25.11.2). `None` means
    /// "unsupported VMCS component" (VM-instruction error 12).
    #[inline]
    pub const fn from_encoding(encoding: u64) -> Option<(VmcsField, Access)> {
        if encoding > 0x7fff {
            return None;
        }
        let encoding = encoding as u32;
        if encoding & 1 == 0 {
            match Self::from_full_encoding(encoding) {
                Some(f) => Some((f, Access::Full)),
                None => None,
            }
        } else {
            match Self::from_full_encoding(encoding & !1) {
                Some(f) if matches!(f.width(), Width::Bits64) => Some((f, Access::High)),
                _ => None,
            }
        }
    }

    /// Highest index (encoding bits 9:1) of any field, for IA32_VMX_VMCS_ENUM (SDM A.9).
    pub const fn max_index() -> u32 {
        let mut i = 0;
        let mut max = 0;
        while i < Self::COUNT {
            let idx = (Self::ENCODINGS[i] >> 1) & 0x1ff;
            if idx > max {
                max = idx;
            }
            i += 1;
        }
        max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_round_trip_and_are_unique() {
        for (i, &f) in VmcsField::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(VmcsField::from_encoding(f.encoding().into()), Some((f, Access::Full)));
            assert_eq!(f.encoding() & 1, 0, "{} has bit 0 set", f.name());
            assert_eq!(f.encoding() & (1 << 12), 0, "{} has reserved bit 12", f.name());
        }
        let mut encs: Vec<u32> = VmcsField::ALL.iter().map(|f| f.encoding()).collect();
        encs.sort();
        encs.dedup();
        assert_eq!(encs.len(), VmcsField::COUNT);
    }

    #[test]
    fn lookup_table_agrees_with_a_search_for_every_encoding() {
        for e in 0..0x1_0000u32 {
            let searched = VmcsField::ALL.iter().copied().find(|f| f.encoding() == e);
            assert_eq!(VmcsField::from_full_encoding(e), searched, "{e:#x}");
        }
    }

    #[test]
    fn high_access_only_for_64_bit_fields() {
        assert_eq!(VmcsField::from_encoding(0x201b), Some((VmcsField::EptPointer, Access::High)));
        assert_eq!(
            VmcsField::from_encoding(0x2401),
            Some((VmcsField::GuestPhysicalAddress, Access::High))
        );
        assert_eq!(VmcsField::from_encoding(0x681f), None, "natural-width has no HIGH");
        assert_eq!(VmcsField::from_encoding(0x4003), None, "32-bit has no HIGH");
        assert_eq!(VmcsField::from_encoding(0x1_0000_681e), None, "bits 63:32 set");
        assert_eq!(VmcsField::from_encoding(0x8000 | 0x681e), None, "bit 15 set");
    }

    #[test]
    fn derived_properties() {
        assert_eq!(VmcsField::GuestRip.width(), Width::Natural);
        assert_eq!(VmcsField::GuestRip.field_type(), FieldType::GuestState);
        assert_eq!(VmcsField::VmExitReason.width(), Width::Bits32);
        assert!(VmcsField::VmExitReason.is_read_only());
        assert!(VmcsField::ExitQualification.is_read_only());
        assert!(!VmcsField::GuestRip.is_read_only());
        assert_eq!(VmcsField::HostCr3.field_type(), FieldType::HostState);
        assert_eq!(VmcsField::VirtualProcessorId.width(), Width::Bits16);
        assert_eq!(VmcsField::GuestIa32Efer.width(), Width::Bits64);
        assert_eq!(VmcsField::max_index(), 0x1b, "EnclvExitingBitmap (0x2036) has index 0x1b");
    }
}

/// Width and type of each field from its encoding, with the SDM's numbers written out
/// (SDM 25.11.2, Table 25-21; cargo-mutants survivors: no test looked at a control field's
/// type or at a name).
#[cfg(test)]
mod sdm_encoding_tests {
    use super::*;

    #[test]
    fn type_is_bits_11_10_and_width_bits_14_13() {
        // Bits 11:10: 0 control, 1 VM-exit information, 2 guest state, 3 host state.
        assert_eq!(FieldType::of(0x4000), FieldType::Control);
        assert_eq!(FieldType::of(0x4400), FieldType::ExitInfo);
        assert_eq!(FieldType::of(0x4800), FieldType::GuestState);
        assert_eq!(FieldType::of(0x4c00), FieldType::HostState);
        // Bits 14:13: 0 16-bit, 1 64-bit, 2 32-bit, 3 natural width.
        assert_eq!(Width::of(0x0800), Width::Bits16);
        assert_eq!(Width::of(0x2800), Width::Bits64);
        assert_eq!(Width::of(0x4800), Width::Bits32);
        assert_eq!(Width::of(0x6800), Width::Natural);
        assert_eq!(VmcsField::PinBasedVmExecControl.field_type(), FieldType::Control);
        assert!(!VmcsField::PinBasedVmExecControl.is_read_only());
        assert_eq!(VmcsField::GuestEsSelector.field_type(), FieldType::GuestState);
        assert_eq!(VmcsField::HostIa32SysenterCs.field_type(), FieldType::HostState);
        for &f in VmcsField::ALL {
            let e = f.encoding();
            let ty = [FieldType::Control, FieldType::ExitInfo, FieldType::GuestState];
            let expect = ty.get(((e >> 10) & 3) as usize).copied().unwrap_or(FieldType::HostState);
            assert_eq!(f.field_type(), expect, "{}", f.name());
            assert_eq!(f.is_read_only(), e & 0xc00 == 0x400, "{}", f.name());
            let bytes = [2, 8, 4, 8][((e >> 13) & 3) as usize];
            assert_eq!(f.width().bytes(), bytes, "{}", f.name());
        }
    }

    #[test]
    fn names_are_the_table_names() {
        assert_eq!(VmcsField::GuestRip.name(), "GuestRip");
        assert_eq!(VmcsField::PinBasedVmExecControl.name(), "PinBasedVmExecControl");
        let mut names: Vec<_> = VmcsField::ALL.iter().map(|f| f.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), VmcsField::COUNT);
    }
}
