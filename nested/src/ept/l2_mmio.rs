//! L2's accesses to L1-physical MMIO that L0 emulates for L1 (issue 14, finding 5).
//!
//! On hardware, an L2 access that EPT12 translates to L1's local APIC page (or any device L1
//! sees at an L1-physical address) reaches that device. L0 models L1's devices, so EPT01 does
//! not map them and EPT02 cannot either: the access is an EPT02 violation that L0 resolves
//! ([`l2_mmio_target`]) to the L1-physical address the access was for, emulates on L1's device
//! model, and resumes L2. To emulate it L0 fetches the faulting instruction through L2's own
//! paging, whose tables are at L2 guest-physical addresses: [`L2Memory`] reads L2
//! guest-physical memory through EPT12 (or, when vmcs12 does not enable EPT, as L1-physical
//! memory, which is what L2's physical addresses then are).

use super::shadow::Resolution;
use super::walk::{self, bits};
use crate::addr::{L1Gpa, L2Gpa};
use crate::caps::VmxCaps;
use crate::guest::{GuestMemory, MemError};

/// Where an EPT violation L2 caused lands in L1's physical address space, if it is an access
/// L0 may perform on L1's behalf: `ept12` is `None` when vmcs12 does not enable EPT (vmcs02
/// then runs on EPT01, so `l2_gpa` is an L1-physical address), else the resolution of the
/// EPT12 walk. EPT12 faults (not present, permissions, misconfigurations) are not targets:
/// they are reflected to L1.
pub fn l2_mmio_target(l2_gpa: u64, ept12: Option<&Resolution>) -> Option<L1Gpa> {
    match ept12 {
        None => Some(L1Gpa(l2_gpa)),
        Some(Resolution::L1Unmapped(at)) => Some(*at),
        Some(_) => None,
    }
}

/// L2 guest-physical memory as L2's instruction fetches and page walks see it, read-only:
/// each access is translated through EPT12 (`eptp12`; `None` when vmcs12 does not enable
/// EPT) into L1 memory `l1`. The addresses this trait takes are L2 guest-physical here,
/// though [`GuestMemory`] names them `L1Gpa`. A page EPT12 does not map readable, or maps
/// outside `l1`, fails like memory that is not there.
pub struct L2Memory<'a, M: GuestMemory> {
    pub l1: &'a M,
    pub eptp12: Option<u64>,
    pub caps: &'a VmxCaps,
    pub maxphyaddr: u8,
}

impl<M: GuestMemory> L2Memory<'_, M> {
    /// The L1-physical address of L2 guest-physical `gpa`, for a read.
    pub fn translate(&self, gpa: u64) -> Option<L1Gpa> {
        let Some(eptp12) = self.eptp12 else { return Some(L1Gpa(gpa)) };
        let leaf =
            walk::walk_ept12(self.l1, eptp12, L2Gpa(gpa), self.caps, self.maxphyaddr).ok()?;
        leaf.allows(bits::READ as u8).then_some(leaf.l1gpa)
    }
}

impl<M: GuestMemory> GuestMemory for L2Memory<'_, M> {
    fn read(&self, gpa: L1Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let mut done = 0;
        while done < buf.len() {
            let at = gpa.0.wrapping_add(done as u64);
            let chunk = (4096 - (at & 0xfff) as usize).min(buf.len() - done);
            let l1 = self.translate(at).ok_or(MemError { gpa: L1Gpa(at) })?;
            self.l1
                .read(l1, &mut buf[done..done + chunk])
                .map_err(|_| MemError { gpa: L1Gpa(at) })?;
            done += chunk;
        }
        Ok(())
    }

    fn write(&mut self, gpa: L1Gpa, _: &[u8]) -> Result<(), MemError> {
        Err(MemError { gpa })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ept::walk::PageSize;
    use crate::ept::walk::tests::Builder;
    use crate::testutil::l1;

    #[test]
    fn target_without_ept12_is_the_l2_address() {
        assert_eq!(l2_mmio_target(0xfee0_0030, None), Some(L1Gpa(0xfee0_0030)));
    }

    #[test]
    fn target_with_ept12_is_the_walk_end_or_nothing() {
        let unmapped = Resolution::L1Unmapped(L1Gpa(0xfee0_0020));
        assert_eq!(l2_mmio_target(0xc000_0020, Some(&unmapped)), Some(L1Gpa(0xfee0_0020)));
        for r in [
            Resolution::Fixed,
            Resolution::ReflectViolation { qualification: 0x81 },
            Resolution::ReflectMisconfig,
            Resolution::L0Denied(L1Gpa(0x1000)),
            Resolution::PmlFull,
        ] {
            assert_eq!(l2_mmio_target(0xc000_0020, Some(&r)), None, "{r:?}");
        }
    }

    #[test]
    fn reads_through_ept12_across_pages() {
        let mut b = Builder::new(0x40_0000, 0x10_0000);
        // L2 0x1000 -> L1 0x3000 and L2 0x2000 -> L1 0x5000: a read across the boundary
        // takes the end of one and the start of the other.
        b.map(0x1000, 0x3000, PageSize::Size4K, 7);
        b.map(0x2000, 0x5000, PageSize::Size4K, 5);
        b.map(0x7000, 0x6000, PageSize::Size4K, 4); // execute-only: not readable
        b.mem.bytes[0x3ffe] = 0xaa;
        b.mem.bytes[0x3fff] = 0xbb;
        b.mem.bytes[0x5000] = 0xcc;
        let caps = l1();
        let m = L2Memory { l1: &b.mem, eptp12: Some(b.eptp()), caps: &caps, maxphyaddr: 36 };
        let mut buf = [0; 3];
        m.read(L1Gpa(0x1ffe), &mut buf).unwrap();
        assert_eq!(buf, [0xaa, 0xbb, 0xcc]);
        assert_eq!(m.translate(0x2abc), Some(L1Gpa(0x5abc)));
        assert_eq!(m.translate(0x4000), None, "not present");
        assert_eq!(m.translate(0x7000), None, "execute-only");
        assert_eq!(m.read(L1Gpa(0x2ffe), &mut buf), Err(MemError { gpa: L1Gpa(0x3000) }));
    }

    #[test]
    fn without_ept12_reads_l1_memory_and_never_writes() {
        let mut b = Builder::new(0x10000, 0x8000);
        b.mem.bytes[0x1234] = 0x5a;
        let caps = l1();
        let mut m = L2Memory { l1: &b.mem, eptp12: None, caps: &caps, maxphyaddr: 36 };
        assert_eq!(m.read_u8(L1Gpa(0x1234)), Ok(0x5a));
        assert!(m.read_u8(L1Gpa(0x10000)).is_err());
        assert!(m.write(L1Gpa(0x1234), &[1]).is_err());
    }

    #[test]
    fn an_apic_mapping_resolves_to_its_l1_register_and_permissions_still_reflect() {
        use crate::ept::shadow::ShadowEpt;
        use crate::ept::shadow::tests::{LinearEpt01, VecFrames};
        use crate::exits::ExitInfo;
        let mut b = Builder::new(0x40_0000, 0x10_0000);
        b.map(0xc000_0000, 0xfee0_0000, PageSize::Size4K, 7);
        b.map(0xc000_1000, 0xfee0_0000, PageSize::Size4K, 1); // read-only alias
        let ept01 = LinearEpt01 {
            size: 0x40_0000,
            hpa_base: 0x8000_0000,
            page: PageSize::Size4K,
            perms: 7,
        };
        let mut sh: ShadowEpt = ShadowEpt::new();
        let mut frames = VecFrames::default();
        let caps = l1();
        let mut resolve = |gpa: u64, q: u64| {
            let e = ExitInfo {
                reason: 48,
                qualification: q,
                guest_physical_address: gpa,
                ..ExitInfo::default()
            };
            sh.handle_violation(b.eptp(), &e, &mut b.mem, &ept01, &mut frames, &caps, 36, None)
                .unwrap()
        };
        let read = resolve(0xc000_0030, 1);
        assert_eq!(l2_mmio_target(0xc000_0030, Some(&read)), Some(L1Gpa(0xfee0_0030)));
        let write = resolve(0xc000_0080, 2);
        assert_eq!(l2_mmio_target(0xc000_0080, Some(&write)), Some(L1Gpa(0xfee0_0080)));
        let denied = resolve(0xc000_1080, 2);
        assert!(matches!(denied, Resolution::ReflectViolation { .. }), "{denied:?}");
        assert_eq!(l2_mmio_target(0xc000_1080, Some(&denied)), None);
    }
}
