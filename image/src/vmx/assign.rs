//! Direct assignment of a physical PCI function to L0's guest (`assign = ["e1000"]`, issue
//! 13). Bochs has no IOMMU, so the device's DMA addresses are host-physical: the guest gets
//! 1:1 memory ([`GuestMemory::allocate_identity`]) and its driver's buffer addresses are right
//! as they are. Without an IOMMU nothing stops the device (or a guest programming it) from
//! reaching all of memory, L0's included: assignment trusts the guest.
//!
//! Here: the function's memory BARs mapped 1:1 in EPT01 (uncached), its I/O BARs passed
//! through vmcs01's I/O bitmaps (SDM Vol. 3C 25.6.4: with "use I/O bitmaps" instead of
//! unconditional I/O exiting, a clear bit lets the access run on the hardware), and the
//! function on the guest's PCI bus through the passthrough filter ([`Assigned`]).

use nested::caps::{VmxCaps, proc1};
use nested::vmcs::{Vmcs, VmcsField as F};

use super::ept::Ept;
use super::vmxon::{VmxError, zeroed_frame};
use crate::arch::vmcs::HwVmcs;
use crate::config;
use crate::guest::memory::GuestMemory;
use crate::machine::assigned::Assigned;

/// The guest's 1:1 RAM: `memory` bytes at the config's `guest_memory_base_mib`.
pub fn memory(memory: u64) -> Result<GuestMemory, VmxError> {
    let base = config::GUEST_MEMORY_BASE_MIB << 20;
    let m = GuestMemory::allocate_identity(base, memory)
        .ok_or(VmxError::Layout("the 1:1 guest RAM at guest_memory_base_mib is not free"))?;
    log::info!(
        "assign: guest RAM 1:1 at [{base:#x}, {:#x}), low 2 MiB at host {:#x}, hole [2 MiB, \
         {base:#x}) (no IOMMU: an assigned device can reach all memory)",
        m.size(),
        m.host_base()
    );
    Ok(m)
}

/// Finds the e1000, maps its BARs for the guest (EPT01 and vmcs01, which must be current)
/// and returns it for the guest's PCI bus, with vmcs01's I/O bitmaps if it passes ports.
pub fn e1000(
    ept: &Ept,
    v: &mut HwVmcs,
    caps: &VmxCaps,
) -> Result<(Assigned, Option<(u64, u64)>), VmxError> {
    let real = crate::drivers::assignable_e1000()
        .ok_or(VmxError::Layout("no e1000 to assign on the PCI bus"))?;
    let assigned = Assigned::new(real);
    let mut ports = alloc::vec::Vec::new();
    for (_, address, size, io) in assigned.filter().bars() {
        if io {
            ports.push((address, size));
        } else {
            ept.map_mmio_identity(address, size)?;
        }
    }
    let bitmaps = pass_ports(v, caps, &ports)?;
    Ok((assigned, bitmaps))
}

/// Switches vmcs01 from unconditional I/O exiting to I/O bitmaps that exit on every port but
/// `ports` (base, count); returns the bitmaps' addresses.
fn pass_ports(
    v: &mut HwVmcs,
    caps: &VmxCaps,
    ports: &[(u64, u64)],
) -> Result<Option<(u64, u64)>, VmxError> {
    if ports.is_empty() {
        return Ok(None);
    }
    if !caps.primary().can_set(proc1::USE_IO_BITMAPS) {
        return Err(VmxError::Layout("the processor has no I/O bitmaps"));
    }
    let a = zeroed_frame("I/O bitmap A")?;
    let b = zeroed_frame("I/O bitmap B")?;
    // SAFETY: both frames are fresh, ours and identity-mapped.
    unsafe {
        core::ptr::write_bytes(a as *mut u8, 0xff, 4096);
        core::ptr::write_bytes(b as *mut u8, 0xff, 4096);
    }
    for &(base, count) in ports {
        for port in base..(base + count).min(0x1_0000) {
            let (bitmap, bit) = if port < 0x8000 { (a, port) } else { (b, port - 0x8000) };
            // SAFETY: bit / 8 < 4096, inside the bitmap frame.
            unsafe {
                let byte = (bitmap as *mut u8).add((bit / 8) as usize);
                byte.write(byte.read() & !(1 << (bit % 8)));
            }
        }
        log::info!("assign: ports {base:#x}-{:#x} pass through the I/O bitmap", base + count - 1);
    }
    let primary = v.read(F::CpuBasedVmExecControl) as u32;
    let primary = (primary & !proc1::UNCONDITIONAL_IO_EXITING) | proc1::USE_IO_BITMAPS;
    v.write(F::IoBitmapA, a);
    v.write(F::IoBitmapB, b);
    v.write(F::CpuBasedVmExecControl, u64::from(primary));
    Ok(Some((a, b)))
}
