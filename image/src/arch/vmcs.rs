//! The hardware implementation of [`nested::vmcs::Vmcs`]: VMREAD/VMWRITE on the current VMCS.

use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

use nested::vmcs::{Vmcs, VmcsField};

use super::vmx;

/// The current VMCS of this CPU. Only exists while L0 has a VMCS loaded (the run loop owns it).
pub struct HwVmcs(());

impl HwVmcs {
    /// # Safety
    /// The caller has a current VMCS loaded and keeps it current while this value is used.
    pub unsafe fn current() -> Self {
        HwVmcs(())
    }
}

/// The encoding of the last VMREAD that failed, with bit 31 set (0: none since the last
/// [`check_reads`]). VMREAD cannot jump out of an `asm!` block that has outputs, so a failed
/// one records itself here and reads as 0; the run loop reports it after the exit.
static FAILED_READ: AtomicU32 = AtomicU32::new(0);

impl Vmcs for HwVmcs {
    #[inline(always)]
    fn read(&self, field: VmcsField) -> u64 {
        let value: u64;
        // SAFETY: VMREAD only reads the current VMCS (one exists while `HwVmcs` does). On
        // failure (CF or ZF set) the asm stores the encoding in `FAILED_READ`, a static
        // word of ours, and returns 0. Three instructions on success: this is on every exit
        // path (DESIGN.md 6).
        unsafe {
            asm!(
                "vmread {v}, {f}",
                "ja 2f",
                "or {f:e}, 0x80000000",
                "mov dword ptr [rip + {failed}], {f:e}",
                "xor {v:e}, {v:e}",
                "2:",
                v = out(reg) value,
                f = inout(reg) u64::from(field.encoding()) => _,
                failed = sym FAILED_READ,
                options(nostack),
            );
        }
        value
    }

    #[inline(always)]
    fn write(&mut self, field: VmcsField, value: u64) {
        // SAFETY: `HwVmcs` exists only while a VMCS is current; which values are safe to
        // write is decided by the callers in `vmx/`, which construct them from L0's own state
        // or check guest-provided values first. A failure (CF or ZF) jumps to the out-of-line
        // report.
        unsafe {
            asm!(
                "vmwrite {f}, {v}",
                "jbe {fail}",
                f = in(reg) u64::from(field.encoding()),
                v = in(reg) value,
                fail = label { write_failed(field, value) },
                options(nostack),
            );
        }
    }
}

/// Reports a VMREAD that failed since the last call (each failed read returned 0). Called by
/// the run loop once per exit: one load on the hot path.
#[inline(always)]
pub fn check_reads() {
    if FAILED_READ.load(Ordering::Relaxed) != 0 {
        read_failed();
    }
}

// The failure paths are out of line so that each VMREAD/VMWRITE on the exit path stays a
// few instructions (DESIGN.md 6: the path length is what we measure).

#[cold]
#[inline(never)]
fn read_failed() {
    let encoding = FAILED_READ.swap(0, Ordering::Relaxed) & 0x7fff_ffff;
    let name = VmcsField::from_encoding(u64::from(encoding)).map_or("?", |(f, _)| f.name());
    log::error!("VMREAD {name} ({encoding:#x}) failed: {}", cause());
}

#[cold]
#[inline(never)]
fn write_failed(field: VmcsField, value: u64) {
    log::error!("VMWRITE {} = {value:#x} failed: {}", field.name(), cause());
}

/// Why the last VMX instruction failed: VMfailValid's error number when a VMCS is current.
fn cause() -> vmx::VmFail {
    match vmx::vmread(vmx::VM_INSTRUCTION_ERROR) {
        Ok(n) => vmx::VmFail::Valid(n as u32),
        Err(_) => vmx::VmFail::Invalid,
    }
}
