//! vmcs02's I/O bitmaps when L0 passes ports through to L1 (an assigned device's I/O BARs,
//! `vmx/assign.rs`): L0's bitmaps OR L1's (`nested::vmx::bitmaps::merge_io_bitmaps`), so a
//! port both L0 and L1 pass through reaches the device from L2 without an exit, and every
//! other port exits as before (routing then asks vmcs12 who wants it). Without L0 bitmaps
//! vmcs02 keeps unconditional I/O exiting.
//!
//! The merge is redone when vmcs12's I/O controls or bitmap addresses change, not when L1
//! rewrites the bitmap pages in place: a port L1 starts trapping later is one L0 passes
//! through anyway (only the assigned device's), so L2 reaches that device, never L0's.

use nested::addr::Hpa;
use nested::caps::proc1;
use nested::vmcs::Vmcs12;
use nested::vmx::bitmaps::{l1_io, merge_io_bitmaps};

use crate::guest::memory::GuestMemory;
use crate::vmx::vmxon::{VmxError, zeroed_frame};

/// L0's bitmaps, vmcs02's, and scratch for L1's.
pub struct IoBitmaps02 {
    l0: (u64, u64),
    out: (u64, u64),
    l1: (u64, u64),
    /// vmcs12's I/O controls and bitmap addresses at the last merge.
    merged_for: Option<(u32, u64, u64)>,
}

impl IoBitmaps02 {
    /// For L0's vmcs01 bitmaps `a` and `b`.
    pub fn new(a: u64, b: u64) -> Result<Self, VmxError> {
        Ok(IoBitmaps02 {
            l0: (a, b),
            out: (zeroed_frame("vmcs02's I/O bitmap A")?, zeroed_frame("vmcs02's I/O bitmap B")?),
            l1: (zeroed_frame("L1's I/O bitmap A")?, zeroed_frame("L1's I/O bitmap B")?),
            merged_for: None,
        })
    }

    /// vmcs02's bitmaps for `v12`, merged again if its I/O set-up changed.
    pub fn for_entry(&mut self, v12: &Vmcs12, mem: &GuestMemory) -> (Hpa, Hpa) {
        let io = proc1::USE_IO_BITMAPS | proc1::UNCONDITIONAL_IO_EXITING;
        let key = (v12.cpu_based_vm_exec_control & io, v12.io_bitmap_a, v12.io_bitmap_b);
        if self.merged_for != Some(key) {
            // SAFETY: the six frames are ours, 4 KiB each, distinct, and nothing else holds a
            // reference to them while L0 handles this entry.
            let [l0a, l0b, outa, outb, l1a, l1b] =
                [self.l0.0, self.l0.1, self.out.0, self.out.1, self.l1.0, self.l1.1]
                    .map(|f| unsafe { &mut *(f as *mut [u8; 4096]) });
            let l1 = l1_io(v12, mem, l1a, l1b);
            merge_io_bitmaps((l0a, l0b), l1, (outa, outb));
            self.merged_for = Some(key);
        }
        (Hpa(self.out.0), Hpa(self.out.1))
    }
}
