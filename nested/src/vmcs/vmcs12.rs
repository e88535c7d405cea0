//! vmcs12: the VMCS format L0 defines for L1 (Turtles §3.2; SDM Vol. 3C 25.2).
//!
//! The SDM leaves the VMCS region's layout to the implementation; for the VMCS L1 creates,
//! L0 *is* the implementation. The layout is generated from the field table, versioned by
//! [`VMCS12_REVISION`] (the revision id L1 reads from IA32_VMX_BASIC) and frozen by the
//! compile-time offset assertions below (as Linux `CHECK_OFFSET` does): changing the order
//! of the table changes L1-visible memory, so it must bump the revision.
//!
//! L0 keeps a cached copy of the current vmcs12 (loaded at VMPTRLD) and writes it back to
//! L1 memory at VMCLEAR/VMPTRLD of another VMCS/VMXOFF ([`Vmcs12::to_bytes`] /
//! [`Vmcs12::from_bytes`], plain little-endian, no `unsafe`).

use super::{Vmcs, VmcsField};

/// Revision identifier of the vmcs12 layout (IA32_VMX_BASIC bits 30:0 as L1 sees them).
/// Bump when the layout changes.
pub const VMCS12_REVISION: u32 = 0x7475_0001;

/// Bytes of L1 memory a vmcs12 occupies (IA32_VMX_BASIC bits 44:32 as L1 sees them).
pub const VMCS12_SIZE: usize = 4096;

/// Launch state of a VMCS (SDM 25.1): "clear" after VMCLEAR, "launched" after VMLAUNCH.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum LaunchState {
    #[default]
    Clear = 0,
    Launched = 1,
}

macro_rules! define_vmcs12 {
    ($($name:ident = $enc:literal => $member:ident : $ty:ty, $shadow:ident;)*) => {
        /// The in-memory VMCS L1 sees. Header first (revision id with the shadow-VMCS
        /// indicator in bit 31, VMX-abort indicator, launch state), then every field of the
        /// table in table order.
        #[repr(C)]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct Vmcs12 {
            /// Bits 30:0 revision identifier, bit 31 shadow-VMCS indicator (SDM 25.2).
            pub revision_id: u32,
            /// VMX-abort indicator (SDM 25.2, 28.7).
            pub abort: u32,
            /// Launch state, kept in the region so VMCLEAR/VMPTRLD round-trip it.
            pub launch_state: u32,
            /// Padding; reads as zero.
            pub reserved: u32,
            $(pub $member: $ty,)*
        }

        impl Vmcs12 {
            /// The value of `field` (zero-extended). Inlined: with a constant field (the
            /// generated copy loops of the exit path) it is one load.
            #[inline(always)]
            pub const fn get(&self, field: VmcsField) -> u64 {
                match field {
                    $(VmcsField::$name => self.$member as u64,)*
                }
            }

            /// Sets `field`, truncating `value` to the field's width (inlined like
            /// [`Vmcs12::get`]).
            #[inline(always)]
            pub const fn set(&mut self, field: VmcsField, value: u64) {
                match field {
                    $(VmcsField::$name => self.$member = value as $ty,)*
                }
            }

            const OFFSETS: [usize; VmcsField::COUNT] =
                [$(core::mem::offset_of!(Vmcs12, $member),)*];

            /// An all-zero vmcs12 with the given revision id.
            pub const fn zeroed(revision_id: u32) -> Self {
                Vmcs12 {
                    revision_id,
                    abort: 0,
                    launch_state: 0,
                    reserved: 0,
                    $($member: 0,)*
                }
            }
        }
    };
}

vmcs_fields!(define_vmcs12);

// The frozen layout (house style 3). A failure here means the table order changed: bump
// VMCS12_REVISION and update these numbers together.
const _: () = {
    use core::mem::{offset_of, size_of};
    assert!(offset_of!(Vmcs12, revision_id) == 0);
    assert!(offset_of!(Vmcs12, abort) == 4);
    assert!(offset_of!(Vmcs12, launch_state) == 8);
    assert!(offset_of!(Vmcs12, virtual_processor_id) == 16);
    assert!(offset_of!(Vmcs12, guest_es_selector) == 22);
    assert!(offset_of!(Vmcs12, host_es_selector) == 42);
    assert!(offset_of!(Vmcs12, io_bitmap_a) == 56);
    assert!(offset_of!(Vmcs12, ept_pointer) == 160);
    assert!(offset_of!(Vmcs12, guest_physical_address) == 280);
    assert!(offset_of!(Vmcs12, vmcs_link_pointer) == 288);
    assert!(offset_of!(Vmcs12, guest_ia32_efer) == 312);
    assert!(offset_of!(Vmcs12, host_ia32_efer) == 400);
    assert!(offset_of!(Vmcs12, pin_based_vm_exec_control) == 424);
    assert!(offset_of!(Vmcs12, vm_exit_reason) == 504);
    assert!(offset_of!(Vmcs12, guest_interruptibility_info) == 604);
    assert!(offset_of!(Vmcs12, host_ia32_sysenter_cs) == 624);
    assert!(offset_of!(Vmcs12, cr0_guest_host_mask) == 632);
    assert!(offset_of!(Vmcs12, exit_qualification) == 696);
    assert!(offset_of!(Vmcs12, guest_cr0) == 744);
    assert!(offset_of!(Vmcs12, guest_rsp) == 856);
    assert!(offset_of!(Vmcs12, guest_rip) == 864);
    assert!(offset_of!(Vmcs12, host_cr0) == 928);
    assert!(offset_of!(Vmcs12, host_rip) == 1016);
    assert!(offset_of!(Vmcs12, host_intr_ssp_table) == 1040);
    assert!(size_of::<Vmcs12>() == 1048);
    assert!(size_of::<Vmcs12>() <= VMCS12_SIZE);
};

/// Byte offset of the launch-state word in the VMCS region (VMCLEAR of a non-current VMCS
/// writes only this word).
pub const LAUNCH_STATE_OFFSET: usize = core::mem::offset_of!(Vmcs12, launch_state);

impl Default for Vmcs12 {
    fn default() -> Self {
        Self::zeroed(VMCS12_REVISION)
    }
}

impl VmcsField {
    /// Byte offset of this field in the vmcs12 region.
    pub const fn vmcs12_offset(self) -> usize {
        Vmcs12::OFFSETS[self as usize]
    }
}

fn put(out: &mut [u8], off: usize, bytes: &[u8]) {
    if let Some(dst) = out.get_mut(off..off + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

fn take(buf: &[u8], off: usize, len: usize) -> u64 {
    let mut b = [0u8; 8];
    if let (Some(src), Some(dst)) = (buf.get(off..off + len), b.get_mut(..len)) {
        dst.copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

impl Vmcs12 {
    /// The launch state as an enum (any nonzero value reads as launched).
    pub const fn launch(&self) -> LaunchState {
        if self.launch_state == 0 { LaunchState::Clear } else { LaunchState::Launched }
    }

    /// Serializes into the first `size_of::<Vmcs12>()` bytes of `out` (a 4-KiB VMCS region
    /// image), little-endian; the rest of `out` is left untouched.
    pub fn to_bytes(&self, out: &mut [u8]) {
        put(out, 0, &self.revision_id.to_le_bytes());
        put(out, 4, &self.abort.to_le_bytes());
        put(out, 8, &self.launch_state.to_le_bytes());
        put(out, 12, &self.reserved.to_le_bytes());
        for &f in VmcsField::ALL {
            let n = f.width().bytes();
            let v = self.get(f).to_le_bytes();
            put(out, f.vmcs12_offset(), &v[..n]);
        }
    }

    /// Parses a VMCS region image. Short buffers read as zero past their end; any bit
    /// pattern is accepted (the contents are L1-controlled and validated at VM entry).
    pub fn from_bytes(buf: &[u8]) -> Self {
        let mut v = Vmcs12::zeroed(take(buf, 0, 4) as u32);
        v.abort = take(buf, 4, 4) as u32;
        v.launch_state = take(buf, 8, 4) as u32;
        v.reserved = take(buf, 12, 4) as u32;
        for &f in VmcsField::ALL {
            v.set(f, take(buf, f.vmcs12_offset(), f.width().bytes()));
        }
        v
    }
}

impl Vmcs for Vmcs12 {
    fn read(&self, field: VmcsField) -> u64 {
        self.get(field)
    }

    fn write(&mut self, field: VmcsField, value: u64) {
        self.set(field, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmcs::VmcsError;

    #[test]
    fn offsets_are_increasing_and_in_bounds() {
        let mut last = 15;
        for &f in VmcsField::ALL {
            let off = f.vmcs12_offset();
            assert!(off > last, "{} at {off}", f.name());
            assert_eq!(off % f.width().bytes(), 0, "{} misaligned", f.name());
            last = off;
        }
        assert!(last + 8 <= core::mem::size_of::<Vmcs12>());
    }

    #[test]
    fn set_truncates_to_width() {
        let mut v = Vmcs12::default();
        v.set(VmcsField::GuestCsSelector, 0x1_2345);
        assert_eq!(v.get(VmcsField::GuestCsSelector), 0x2345);
        v.set(VmcsField::PinBasedVmExecControl, 0x1_0000_0016);
        assert_eq!(v.get(VmcsField::PinBasedVmExecControl), 0x16);
        v.set(VmcsField::GuestRip, u64::MAX);
        assert_eq!(v.guest_rip, u64::MAX);
    }

    #[test]
    fn bytes_round_trip() {
        let mut v = Vmcs12::default();
        for (i, &f) in VmcsField::ALL.iter().enumerate() {
            v.set(f, 0x0102_0304_0506_0708u64.wrapping_mul(i as u64 + 1));
        }
        v.launch_state = 1;
        v.abort = 7;
        let mut page = [0u8; VMCS12_SIZE];
        v.to_bytes(&mut page);
        assert_eq!(&page[..4], &VMCS12_REVISION.to_le_bytes());
        assert_eq!(page[LAUNCH_STATE_OFFSET], 1);
        assert_eq!(Vmcs12::from_bytes(&page), v);
        assert_eq!(Vmcs12::from_bytes(&page[..10]).launch_state, 0, "short buffer");
        let rip = VmcsField::GuestRip.vmcs12_offset();
        assert_eq!(&page[rip..rip + 8], &v.guest_rip.to_le_bytes());
    }

    #[test]
    fn raw_high_access() {
        let mut v = Vmcs12::default();
        v.write_raw(0x201a, 0x1111_2222_3333_4444).unwrap();
        assert_eq!(v.read_raw(0x201b), Ok(0x1111_2222));
        v.write_raw(0x201b, 0xaaaa_bbbb_cccc).unwrap();
        assert_eq!(v.ept_pointer, 0xbbbb_cccc_3333_4444);
        assert_eq!(v.read_raw(0x681f), Err(VmcsError::Unsupported));
        assert_eq!(v.write_raw(0x7777, 0), Err(VmcsError::Unsupported));
    }
}

/// The launch state and the frozen layout with literal offsets (cargo-mutants survivors).
#[cfg(test)]
mod layout_tests {
    use super::*;

    #[test]
    fn any_nonzero_launch_state_is_launched() {
        let with = |launch_state| Vmcs12 { launch_state, ..Vmcs12::default() }.launch();
        assert_eq!(with(0), LaunchState::Clear);
        assert_eq!(with(1), LaunchState::Launched);
        assert_eq!(with(0x8000_0000), LaunchState::Launched);
    }

    #[test]
    fn fields_at_their_frozen_offsets() {
        let mut page = [0u8; VMCS12_SIZE];
        page[..4].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        page[8] = 1;
        page[864..872].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes()); // guest RIP
        page[16..18].copy_from_slice(&0xabcdu16.to_le_bytes()); // VPID
        page[504..508].copy_from_slice(&0x8000_0021u32.to_le_bytes()); // exit reason
        let v = Vmcs12::from_bytes(&page);
        assert_eq!(v.revision_id, 0x1234_5678);
        assert_eq!(v.launch(), LaunchState::Launched);
        assert_eq!(v.read(VmcsField::GuestRip), 0x1122_3344_5566_7788);
        assert_eq!(v.read(VmcsField::VirtualProcessorId), 0xabcd);
        assert_eq!(v.read(VmcsField::VmExitReason), 0x8000_0021);
        assert_eq!(VmcsField::GuestRip.vmcs12_offset(), 864);
        let mut out = [0xeeu8; VMCS12_SIZE];
        v.to_bytes(&mut out);
        assert_eq!(Vmcs12::from_bytes(&out), v);
        assert_eq!(out[864..872], page[864..872]);
        assert_eq!(out[504..508], page[504..508]);
        assert_eq!(out[..18], page[..18]);
        assert!(out[1048..].iter().all(|&b| b == 0xee), "the rest of the page is untouched");
        let mut w = Vmcs12::default();
        w.write(VmcsField::VmExitReason, 0x1_0000_0021);
        assert_eq!(w.vm_exit_reason, 0x21, "a 32-bit field keeps bits 31:0");
    }
}
