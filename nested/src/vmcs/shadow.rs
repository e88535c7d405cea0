//! VMCS shadowing for L1 (SDM Vol. 3C 25.10, 25.6.15; Turtles' "DRW" optimisation done by
//! hardware): L1's VMREAD/VMWRITE of shadowed fields hit a shadow VMCS instead of exiting.
//!
//! The VMREAD and VMWRITE bitmaps (a set bit means "exit") are built from the table's shadow
//! classes; [`copy_vmcs12_to_shadow`] fills the shadow VMCS before L1 runs after a reflected
//! exit, [`copy_shadow_to_vmcs12`] brings L1's writes back when L1 executes VMLAUNCH/VMRESUME
//! and marks the fields that changed dirty, so the next merge copies exactly those.

use super::{DirtySet, Shadow, Vmcs, Vmcs12, VmcsField, Width};

/// Bitmap size (SDM 25.6.15: 4 KiB, bit n for encodings whose bits 14:0 equal n).
pub const SHADOW_BITMAP_SIZE: usize = 4096;

/// How many of `fields` have shadow class `class` (for sizing [`of_class`]'s result).
pub const fn count_of_class(fields: &[VmcsField], class: Shadow) -> usize {
    let mut n = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].shadow() as u8 == class as u8 {
            n += 1;
        }
        i += 1;
    }
    n
}

/// The `N` fields of `fields` with shadow class `class`, in order (a const filter, so hot
/// paths walk short precomputed lists).
pub const fn of_class<const N: usize>(fields: &[VmcsField], class: Shadow) -> [VmcsField; N] {
    let mut out = [VmcsField::GuestRip; N];
    let mut n = 0;
    let mut i = 0;
    while i < fields.len() {
        if fields[i].shadow() as u8 == class as u8 {
            out[n] = fields[i];
            n += 1;
        }
        i += 1;
    }
    assert!(n == N);
    out
}

/// The fields of shadow class [`Shadow::Rw`], in table order: what L1 may VMWRITE without an
/// exit, so what [`copy_shadow_to_vmcs12`] reads back (a short list, as Linux
/// `shadow_read_write_fields`, instead of a walk over the whole table per transition).
pub const SHADOW_RW: [VmcsField; count_of_class(VmcsField::ALL, Shadow::Rw)] =
    of_class(VmcsField::ALL, Shadow::Rw);

/// The fields of shadow class [`Shadow::Ro`] (exit information), in table order.
pub const SHADOW_RO: [VmcsField; count_of_class(VmcsField::ALL, Shadow::Ro)] =
    of_class(VmcsField::ALL, Shadow::Ro);

fn clear_bit(bitmap: &mut [u8; SHADOW_BITMAP_SIZE], encoding: u32) {
    let bit = (encoding & 0x7fff) as usize;
    if let Some(b) = bitmap.get_mut(bit / 8) {
        *b &= !(1 << (bit % 8));
    }
}

fn unshadow(bitmap: &mut [u8; SHADOW_BITMAP_SIZE], f: VmcsField) {
    clear_bit(bitmap, f.encoding());
    if f.width() == Width::Bits64 {
        clear_bit(bitmap, f.encoding() | 1);
    }
}

/// True if L1 reads `f` from the shadow VMCS. Read-only (exit-information) fields are only
/// shadowed when L0 can VMWRITE them into the shadow VMCS (IA32_VMX_MISC bit 29).
pub fn shadowed_for_read(f: VmcsField, vmwrite_any_field: bool) -> bool {
    match f.shadow() {
        Shadow::Rw => true,
        Shadow::Ro => vmwrite_any_field,
        Shadow::None => false,
    }
}

/// Fills the VMREAD and VMWRITE bitmaps for L1's shadow VMCS. Only fields that `exists`
/// (in the VMCS of the processor L1 is shown, [`VmxCaps::has_field`]) are shadowed: L1's
/// access to any other exits, and L0 answers VMfailValid(12).
///
/// [`VmxCaps::has_field`]: crate::caps::VmxCaps::has_field
pub fn shadow_bitmaps(
    vmwrite_any_field: bool,
    exists: impl Fn(VmcsField) -> bool,
    vmread: &mut [u8; SHADOW_BITMAP_SIZE],
    vmwrite: &mut [u8; SHADOW_BITMAP_SIZE],
) {
    vmread.fill(0xff);
    vmwrite.fill(0xff);
    for &f in VmcsField::ALL.iter().filter(|f| exists(**f)) {
        if shadowed_for_read(f, vmwrite_any_field) {
            unshadow(vmread, f);
        }
        if f.shadow() == Shadow::Rw {
            unshadow(vmwrite, f);
        }
    }
}

/// Clears the VMWRITE-bitmap bits of the exit-information fields ([`SHADOW_RO`]) that
/// `exists`: once L1 is seen writing exit information (an L1 reflecting its L2's exits to a
/// guest hypervisor of its own through a shadow VMCS), its VMWRITEs of those fields go to the
/// shadow VMCS without exiting, as its other VMWRITEs do, and [`copy_ro_shadow_to_vmcs12`]
/// brings them back. Only with "VMWRITE to any field" (IA32_VMX_MISC bit 29), without which
/// the hardware shadow cannot take them.
pub fn pass_ro_writes(exists: impl Fn(VmcsField) -> bool, vmwrite: &mut [u8; SHADOW_BITMAP_SIZE]) {
    for f in SHADOW_RO.into_iter().filter(|f| exists(*f)) {
        unshadow(vmwrite, f);
    }
}

/// Shadow VMCS → vmcs12 for the exit-information fields, once [`pass_ro_writes`] lets L1
/// VMWRITE them there (they are outputs of a VM exit: no dirty bit, nothing to merge).
pub fn copy_ro_shadow_to_vmcs12<V: Vmcs>(shadow: &V, v12: &mut Vmcs12) {
    for f in SHADOW_RO {
        v12.set(f, shadow.read(f));
    }
}

/// A VMCS seen through the fields a processor's VMCS has: a read of a field in `lacking`
/// gives 0 and a write of one is dropped, with no VMREAD or VMWRITE (which would fail). The
/// shadow copies go through it on a processor whose VMCS lacks some of the fields L0
/// shadows: turtles as L1 on an L0 that offers no virtual-interrupt delivery has no guest
/// interrupt status ([`VmxCaps::has_field`]).
///
/// [`VmxCaps::has_field`]: crate::caps::VmxCaps::has_field
pub struct Existing<'a, V> {
    pub vmcs: &'a mut V,
    pub lacking: &'a DirtySet,
}

impl<V: Vmcs> Vmcs for Existing<'_, V> {
    fn read(&self, field: VmcsField) -> u64 {
        if self.lacking.contains(field) { 0 } else { self.vmcs.read(field) }
    }

    fn write(&mut self, field: VmcsField, value: u64) {
        if !self.lacking.contains(field) {
            self.vmcs.write(field, value);
        }
    }
}

/// The shadowed fields (either class) that a processor's VMCS lacks (`exists` false), or
/// `None` when it has them all, as every processor with the features L0 needs does.
pub fn lacking_shadow_fields(exists: impl Fn(VmcsField) -> bool) -> Option<DirtySet> {
    let mut lacking = DirtySet::empty();
    for f in SHADOW_RW.into_iter().chain(SHADOW_RO).filter(|f| !exists(*f)) {
        lacking.insert(f);
    }
    (!lacking.is_empty()).then_some(lacking)
}

/// vmcs12 → shadow VMCS: every field L1 may read through the shadow (after VMPTRLD, VMCLEAR
/// or a failed VM entry; a reflected exit copies only what it changed, see
/// [`copy_reflected_to_shadow`](crate::vmx::sync::copy_reflected_to_shadow)).
pub fn copy_vmcs12_to_shadow<V: Vmcs>(v12: &Vmcs12, shadow: &mut V, vmwrite_any_field: bool) {
    for f in SHADOW_RW {
        shadow.write(f, v12.get(f));
    }
    if vmwrite_any_field {
        for f in SHADOW_RO {
            shadow.write(f, v12.get(f));
        }
    }
}

/// One field of [`copy_shadow_to_vmcs12`]: code for [`Shadow::Rw`] fields, nothing for the
/// others.
macro_rules! copy_back_rw {
    (Rw, $shadow:ident, $v12:ident, $dirty:ident, $name:ident, $member:ident, $ty:ty) => {{
        let v = $shadow.read(VmcsField::$name) as $ty;
        if $v12.$member != v {
            $v12.$member = v;
            $dirty.insert(VmcsField::$name);
        }
    }};
    ($other:ident, $($rest:tt)*) => {};
}

macro_rules! define_copy_shadow_to_vmcs12 {
    ($($name:ident = $enc:literal => $member:ident : $ty:ty, $shadow:ident;)*) => {
        /// Shadow VMCS → vmcs12 for the fields L1 may write through the shadow
        /// ([`SHADOW_RW`]); fields whose value changed are added to `dirty`. Generated from the
        /// field table as straight-line code (one VMREAD with a constant encoding, a compare
        /// and a store per field): it runs at every VMRESUME of L1.
        pub fn copy_shadow_to_vmcs12<V: Vmcs>(shadow: &V, v12: &mut Vmcs12, dirty: &mut DirtySet) {
            $(copy_back_rw!($shadow, shadow, v12, dirty, $name, $member, $ty);)*
        }
    };
}

vmcs_fields!(define_copy_shadow_to_vmcs12);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcs::{FakeVmcs, Op};

    fn bit(b: &[u8; SHADOW_BITMAP_SIZE], enc: u32) -> bool {
        b[(enc as usize & 0x7fff) / 8] & (1 << (enc % 8)) != 0
    }

    #[test]
    fn bitmaps_follow_shadow_classes() {
        let mut r = [0; SHADOW_BITMAP_SIZE];
        let mut w = [0; SHADOW_BITMAP_SIZE];
        shadow_bitmaps(true, |_| true, &mut r, &mut w);
        assert!(!bit(&r, VmcsField::GuestRip.encoding()));
        assert!(!bit(&w, VmcsField::GuestRip.encoding()));
        assert!(!bit(&r, VmcsField::VmExitReason.encoding()));
        assert!(bit(&w, VmcsField::VmExitReason.encoding()), "RO is not writable");
        assert!(bit(&r, VmcsField::EptPointer.encoding()), "pointers exit");
        assert!(bit(&w, VmcsField::MsrBitmap.encoding()));
        assert!(!bit(&r, VmcsField::GuestPhysicalAddress.encoding() | 1), "HIGH shadowed too");
        assert!(bit(&r, 0x7fff), "unknown encodings exit");
        shadow_bitmaps(false, |_| true, &mut r, &mut w);
        assert!(bit(&r, VmcsField::VmExitReason.encoding()), "RO needs VMWRITE-any-field");
        let open = r.iter().map(|b| b.count_zeros()).sum::<u32>();
        let rw = VmcsField::ALL.iter().filter(|f| f.shadow() == Shadow::Rw).count();
        assert!(open as usize >= rw);
        // A field the VMCS L1 is shown lacks is never shadowed: L1's access exits, and L0
        // answers VMfailValid(12).
        let interrupt_status = VmcsField::GuestInterruptStatus;
        shadow_bitmaps(true, |f| f != interrupt_status, &mut r, &mut w);
        assert!(bit(&r, interrupt_status.encoding()) && bit(&w, interrupt_status.encoding()));
        assert!(!bit(&r, VmcsField::GuestRip.encoding()), "the others as before");
        shadow_bitmaps(true, |_| true, &mut r, &mut w);
        assert!(!bit(&r, interrupt_status.encoding()) && !bit(&w, interrupt_status.encoding()));
    }

    #[test]
    fn fields_the_processor_lacks_are_never_accessed() {
        let status = VmcsField::GuestInterruptStatus;
        assert_eq!(lacking_shadow_fields(|_| true), None, "a processor with every field");
        let lacking = lacking_shadow_fields(|f| f != status).expect("one lacking");
        assert!(lacking.contains(status));
        assert!(!lacking.contains(VmcsField::GuestRip));
        assert_eq!(lacking_shadow_fields(|f| f != VmcsField::EptPointer), None, "not shadowed");
        let mut hw = FakeVmcs::default();
        hw.write(status, 7);
        hw.write(VmcsField::GuestRip, 0x1234);
        hw.clear_log();
        let mut v = Existing { vmcs: &mut hw, lacking: &lacking };
        assert_eq!(v.read(status), 0);
        v.write(status, 9);
        assert_eq!(v.read(VmcsField::GuestRip), 0x1234);
        v.write(VmcsField::GuestRip, 0x5678);
        assert_eq!(
            hw.log(),
            [Op::Read(VmcsField::GuestRip), Op::Write(VmcsField::GuestRip, 0x5678)],
            "the lacking field is never read or written"
        );
        // The copies through it: everything else as without it.
        let mut v12 = Vmcs12::zeroed(0);
        v12.guest_rip = 0x42;
        v12.guest_intr_status = 3;
        let mut hw = FakeVmcs::default();
        copy_vmcs12_to_shadow(&v12, &mut Existing { vmcs: &mut hw, lacking: &lacking }, true);
        assert_eq!(hw.read(VmcsField::GuestRip), 0x42);
        assert!(!hw.log().iter().any(|op| matches!(op, Op::Write(f, _) if *f == status)));
    }

    #[test]
    fn exit_information_writes_pass_once_asked() {
        let mut r = [0; SHADOW_BITMAP_SIZE];
        let mut w = [0; SHADOW_BITMAP_SIZE];
        shadow_bitmaps(true, |_| true, &mut r, &mut w);
        let reason = VmcsField::VmExitReason.encoding();
        let gpa = VmcsField::GuestPhysicalAddress;
        assert!(bit(&w, reason), "exit information exits until L1 is seen writing it");
        pass_ro_writes(|f| f != gpa, &mut w);
        for f in SHADOW_RO {
            assert_eq!(bit(&w, f.encoding()), f == gpa, "{}", f.name());
        }
        assert!(bit(&w, gpa.encoding() | 1), "a field L1's VMCS lacks still exits");
        assert!(!bit(&w, VmcsField::GuestRip.encoding()), "the others as before");
        assert!(bit(&w, VmcsField::EptPointer.encoding()));
        // And back into vmcs12: every exit-information field, nothing else.
        let mut shadow = FakeVmcs::default();
        for (i, f) in SHADOW_RO.into_iter().enumerate() {
            shadow.write(f, 0x100 + i as u64);
        }
        shadow.write(VmcsField::GuestRip, 0x1234);
        let mut v12 = Vmcs12::zeroed(0);
        copy_ro_shadow_to_vmcs12(&shadow, &mut v12);
        for (i, f) in SHADOW_RO.into_iter().enumerate() {
            assert_eq!(v12.get(f), 0x100 + i as u64, "{}", f.name());
        }
        assert_eq!(v12.guest_rip, 0);
    }

    #[test]
    fn class_lists_match_the_table() {
        let rw: Vec<_> =
            VmcsField::ALL.iter().copied().filter(|f| f.shadow() == Shadow::Rw).collect();
        let ro: Vec<_> =
            VmcsField::ALL.iter().copied().filter(|f| f.shadow() == Shadow::Ro).collect();
        assert_eq!(SHADOW_RW.to_vec(), rw);
        assert_eq!(SHADOW_RO.to_vec(), ro);
        for any in [false, true] {
            let listed = SHADOW_RW.len() + if any { SHADOW_RO.len() } else { 0 };
            let readable = VmcsField::ALL.iter().filter(|&&f| shadowed_for_read(f, any)).count();
            assert_eq!(listed, readable);
        }
    }

    #[test]
    fn copy_back_covers_exactly_the_rw_fields() {
        let mut shadow = FakeVmcs::new();
        for (i, &f) in VmcsField::ALL.iter().enumerate() {
            shadow
                .poke(f, (0x1111_2222_3333_4444u64.wrapping_mul(i as u64 + 1)) & f.width().mask());
        }
        let mut v12 = Vmcs12::default();
        let mut dirty = DirtySet::empty();
        copy_shadow_to_vmcs12(&shadow, &mut v12, &mut dirty);
        assert_eq!(dirty, DirtySet::of(&SHADOW_RW));
        for &f in VmcsField::ALL {
            let expect = if f.shadow() == Shadow::Rw { shadow.peek(f) } else { 0 };
            assert_eq!(v12.get(f), expect, "{}", f.name());
        }
    }

    #[test]
    fn shadow_round_trip_marks_only_changes() {
        let mut v12 = Vmcs12 { guest_rip: 0x1000, exit_qualification: 7, ..Default::default() };
        let mut shadow = FakeVmcs::new();
        copy_vmcs12_to_shadow(&v12, &mut shadow, true);
        assert_eq!(shadow.peek(VmcsField::GuestRip), 0x1000);
        assert_eq!(shadow.peek(VmcsField::ExitQualification), 7);
        assert_eq!(shadow.peek(VmcsField::EptPointer), 0, "not shadowed, not copied");
        shadow.poke(VmcsField::GuestRip, 0x1003);
        let mut dirty = DirtySet::empty();
        copy_shadow_to_vmcs12(&shadow, &mut v12, &mut dirty);
        assert_eq!(v12.guest_rip, 0x1003);
        assert_eq!(dirty.iter().collect::<Vec<_>>(), [VmcsField::GuestRip]);
    }
}

/// The VMREAD/VMWRITE bitmaps bit by bit, with the SDM's layout written out (cargo-mutants
/// survivors: the first test looked at a handful of bits).
#[cfg(test)]
mod sdm_bitmap_tests {
    use super::*;
    use crate::vmcs::{Access, FakeVmcs};

    /// SDM 25.6.15: bit n of the 4-KiB bitmap (bit n % 8 of byte n / 8) is for the encodings
    /// whose bits 14:0 are n; a set bit makes VMREAD/VMWRITE exit.
    fn exits(b: &[u8; 4096], encoding: u32) -> bool {
        (b[(encoding >> 3) as usize] >> (encoding & 7)) & 1 == 1
    }

    #[test]
    fn every_bit_follows_the_shadow_class() {
        for any in [false, true] {
            let mut r = [0u8; 4096];
            let mut w = [0u8; 4096];
            shadow_bitmaps(any, |_| true, &mut r, &mut w);
            for e in 0..0x8000u32 {
                let (read, write) = match VmcsField::from_encoding(e.into()) {
                    Some((f, _)) => (shadowed_for_read(f, any), f.shadow() == Shadow::Rw),
                    None => (false, false),
                };
                assert_eq!(exits(&r, e), !read, "VMREAD {e:#x}, any field {any}");
                assert_eq!(exits(&w, e), !write, "VMWRITE {e:#x}, any field {any}");
            }
        }
    }

    #[test]
    fn encodings_at_their_sdm_bits() {
        let mut r = [0u8; 4096];
        let mut w = [0u8; 4096];
        shadow_bitmaps(true, |_| true, &mut r, &mut w);
        // Guest RIP 0x681e (natural width, RW-shadowed): byte 0xd03, bit 6; no HIGH 0x681f.
        assert_eq!((r[0xd03] >> 6) & 1, 0);
        assert_eq!((w[0xd03] >> 6) & 1, 0);
        assert_eq!((r[0xd03] >> 7) & 1, 1, "0x681f is no field");
        // Guest IA32_EFER 0x2806 and its HIGH 0x2807 (64-bit, RW): byte 0x500, bits 6 and 7.
        assert_eq!((r[0x500] >> 6) & 3, 0);
        assert_eq!((w[0x500] >> 6) & 3, 0);
        // Guest interruptibility 0x4824 (32-bit, RW): byte 0x904 bit 4; 0x4825 is no field.
        assert_eq!((r[0x904] >> 4) & 3, 0b10);
        assert_eq!((w[0x904] >> 4) & 3, 0b10);
        // Guest-physical address 0x2400/0x2401 (exit information): read, never written.
        assert_eq!(r[0x480] & 3, 0);
        assert_eq!(w[0x480] & 3, 3);
        // EPT pointer 0x201a/0x201b and guest CS selector 0x0802 are not shadowed.
        assert_eq!((r[0x403] >> 2) & 3, 3);
        assert_eq!((r[0x100] >> 2) & 1, 1);
        // Exit reason 0x4402 is readable only when L0 may VMWRITE it into the shadow.
        assert_eq!((r[0x880] >> 2) & 1, 0);
        shadow_bitmaps(false, |_| true, &mut r, &mut w);
        assert_eq!((r[0x880] >> 2) & 1, 1);
        assert_eq!(r[0x480] & 3, 3);
        assert_eq!((r[0xd03] >> 6) & 1, 0);
        assert_eq!(
            VmcsField::from_encoding(0x2807),
            Some((VmcsField::GuestIa32Efer, Access::High))
        );
    }

    #[test]
    fn copy_to_shadow_writes_exactly_what_l1_reads_there() {
        let mut v12 = Vmcs12::default();
        for (i, &f) in VmcsField::ALL.iter().enumerate() {
            v12.set(f, 0x0101_0101_0101_0101u64.wrapping_mul(i as u64 + 1));
        }
        for any in [false, true] {
            let mut shadow = FakeVmcs::new();
            copy_vmcs12_to_shadow(&v12, &mut shadow, any);
            for &f in VmcsField::ALL {
                let expect = if shadowed_for_read(f, any) { v12.get(f) } else { 0 };
                assert_eq!(shadow.peek(f), expect, "{} (any field {any})", f.name());
            }
        }
    }
}
