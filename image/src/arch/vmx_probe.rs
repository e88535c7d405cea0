//! (The fuzzing L1's instruction layer, `image/src/fuzz/`: kept in `arch/` with the other privileged
//! instructions.)
//!
//! The VMX instructions as a hostile L1 executes them: any operand, in any state, with every
//! outcome caught (SDM Vol. 3C 31.2): VMsucceed, VMfailInvalid, VMfailValid(n) (read back from
//! the VM-instruction error field), a VM exit back to us (VMLAUNCH/VMRESUME), or an exception
//! L0 injected (#UD, #GP, #PF), which the IDT's recovery hook turns into a jump to the
//! instruction's fix-up label instead of the end of the run.

use core::arch::{asm, global_asm};
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::arch::idt::TrapFrame;

/// VM-instruction error (SDM 25.9.5) and exit reason (25.9.1) encodings.
const VM_INSTRUCTION_ERROR: u64 = 0x4400;
const VM_EXIT_REASON: u64 = 0x4402;

/// How one VMX instruction ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Succeed,
    FailInvalid,
    /// VMfailValid with the VM-instruction error number.
    FailValid(u32),
    /// An exception was delivered instead (vector).
    Fault(u8),
    /// VMLAUNCH/VMRESUME: L2 ran (or the entry failed) and a VM exit brought us back with
    /// this exit reason (bit 31 set for a VM-entry failure).
    Exit(u32),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Succeed => f.write_str("VMsucceed"),
            Outcome::FailInvalid => f.write_str("VMfailInvalid"),
            Outcome::FailValid(n) => write!(f, "VMfailValid({n})"),
            Outcome::Fault(v) => write!(f, "{}", crate::arch::idt::exception_name(u64::from(*v))),
            Outcome::Exit(r) if r & (1 << 31) != 0 => {
                write!(f, "entry-failure-exit({})", r & 0xffff)
            }
            Outcome::Exit(r) => write!(f, "exit({})", r & 0xffff),
        }
    }
}

/// Where a faulting guarded instruction resumes (0: no instruction is guarded).
static FIXUP: AtomicU64 = AtomicU64::new(0);
/// The vector of the exception that hit the guarded instruction, plus one (0: none).
static FAULT: AtomicU64 = AtomicU64::new(0);

/// The IDT recovery hook: an exception while an instruction is guarded resumes at its fix-up.
pub fn recover(frame: &mut TrapFrame) -> bool {
    let fixup = FIXUP.swap(0, Ordering::Relaxed);
    if fixup == 0 {
        return false;
    }
    FAULT.store(frame.vector + 1, Ordering::Relaxed);
    frame.rip = fixup;
    true
}

/// Reads CF/ZF (or the fault) of the guarded instruction just executed.
fn finish(cf: u8, zf: u8) -> Outcome {
    let outcome = flags(cf, zf);
    match outcome {
        Outcome::FailValid(_) => Outcome::FailValid(instruction_error()),
        other => other,
    }
}

/// [`finish`] without reading the error number (VMfailValid(0)).
fn flags(cf: u8, zf: u8) -> Outcome {
    FIXUP.store(0, Ordering::Relaxed);
    let fault = FAULT.swap(0, Ordering::Relaxed);
    if fault != 0 {
        return Outcome::Fault((fault - 1) as u8);
    }
    if cf != 0 {
        Outcome::FailInvalid
    } else if zf != 0 {
        Outcome::FailValid(0)
    } else {
        Outcome::Succeed
    }
}

/// The VM-instruction error field after a VMfailValid; a VMREAD of it that fails itself (it
/// must not) reads as error 0x10000, which no check allows.
fn instruction_error() -> u32 {
    let mut value = VM_INSTRUCTION_ERROR;
    let (cf, zf): (u8, u8);
    // SAFETY: a VMREAD into a register, guarded like every other VMX instruction here.
    unsafe {
        asm!(
            "lea {fix}, [rip + 2f]",
            "mov [{slot}], {fix}",
            "vmread {v}, {v}",
            "2:",
            "setc {cf}",
            "setz {zf}",
            fix = out(reg) _,
            slot = in(reg) FIXUP.as_ptr(),
            cf = out(reg_byte) cf,
            zf = out(reg_byte) zf,
            v = inout(reg) value,
        )
    };
    match flags(cf, zf) {
        Outcome::Succeed => value as u32,
        _ => 0x1_0000,
    }
}

/// Runs one VMX instruction with its fix-up armed: `lea` of the label after it into FIXUP,
/// the instruction, then CF/ZF. A fault resumes at the label with FAULT set, and the flags
/// read there are ignored.
macro_rules! guarded {
    ($insn:literal $(, $name:ident = $op:expr)* $(; $out:ident = $dst:ident)?) => {{
        let (cf, zf): (u8, u8);
        // SAFETY: the fuzzer's VMX instructions name only its own structures (or addresses it
        // expects L0 to refuse); a fault resumes at label 2 through the recovery hook.
        unsafe {
            asm!(
                "lea {fix}, [rip + 2f]",
                "mov [{slot}], {fix}",
                $insn,
                "2:",
                "setc {cf}",
                "setz {zf}",
                fix = out(reg) _,
                slot = in(reg) FIXUP.as_ptr(),
                cf = out(reg_byte) cf,
                zf = out(reg_byte) zf,
                $($name = in(reg) $op,)*
                $($out = inout(reg) $dst,)?
            )
        };
        finish(cf, zf)
    }};
}

pub fn vmxon(region: u64) -> Outcome {
    guarded!("vmxon [{p}]", p = &region)
}

pub fn vmxoff() -> Outcome {
    guarded!("vmxoff")
}

pub fn vmclear(vmcs: u64) -> Outcome {
    guarded!("vmclear [{p}]", p = &vmcs)
}

pub fn vmptrld(vmcs: u64) -> Outcome {
    guarded!("vmptrld [{p}]", p = &vmcs)
}

/// VMPTRST: the outcome and the pointer stored.
pub fn vmptrst() -> (Outcome, u64) {
    let mut ptr: u64 = 0x5a5a_5a5a;
    let out = guarded!("vmptrst [{p}]", p = &mut ptr);
    (out, ptr)
}

/// VMREAD of `field`: the outcome and the value read (meaningful on VMsucceed).
pub fn vmread(field: u64) -> (Outcome, u64) {
    let mut value = field;
    let out = guarded!("vmread {v}, {v}"; v = value);
    (out, value)
}

pub fn vmwrite(field: u64, value: u64) -> Outcome {
    guarded!("vmwrite {f}, {v}", f = field, v = value)
}

pub fn invept(kind: u64, descriptor: &[u64; 2]) -> Outcome {
    guarded!("invept {k}, [{d}]", k = kind, d = descriptor)
}

pub fn invvpid(kind: u64, descriptor: &[u64; 2]) -> Outcome {
    guarded!("invvpid {k}, [{d}]", k = kind, d = descriptor)
}

/// VMCALL in VMX root operation (no dual-monitor treatment: VMfail, SDM VMCALL).
pub fn vmcall() -> Outcome {
    guarded!("vmcall")
}

/// Writes CR4 (to clear or restore CR4.VMXE around a VMXON that must #UD). A #GP (L0
/// refusing the value) is caught too.
pub fn write_cr4(value: u64) -> Outcome {
    guarded!("mov cr4, {v}", v = value)
}

/// Writes CR0 (to clear CR0.NE in VMX operation, which must #GP).
pub fn write_cr0(value: u64) -> Outcome {
    guarded!("mov cr0, {v}", v = value)
}

// VMLAUNCH/VMRESUME: `fuzz_vm_run(launch, write_host_rsp, fixup_slot)` saves the callee-saved
// registers, arms the fix-up, optionally points HOST_RSP at its stack, and enters. A failed
// entry (or a fault, through the fix-up) returns RFLAGS (never 0: bit 1 is always set); a VM
// exit lands at `fuzz_vm_exit` (vmcs12's HOST_RIP) with RSP = HOST_RSP and returns 0. L2 runs
// on L1's register values and leaves its own in the caller-saved ones, which the ABI allows.
global_asm!(
    r#"
    .section .text.fuzz, "ax"
    .global fuzz_vm_run
fuzz_vm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    lea rax, [rip + 2f]
    mov [rdx], rax
    test rsi, rsi
    jz 3f
    mov rax, {host_rsp}
    vmwrite rax, rsp
3:  test rdi, rdi
    jz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  pushfq
    pop rax
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global fuzz_vm_exit
fuzz_vm_exit:
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret
"#,
    host_rsp = const 0x6c14,
);

unsafe extern "C" {
    fn fuzz_vm_run(launch: u64, write_host_rsp: u64, fixup: *mut u64) -> u64;
    /// vmcs12's HOST_RIP.
    pub fn fuzz_vm_exit();
}

/// VMLAUNCH (`launch`) or VMRESUME; `write_host_rsp` first points HOST_RSP at the trampoline's
/// stack (only when a VMCS is current, or the VMWRITE would change the outcome).
pub fn enter(launch: bool, write_host_rsp: bool) -> Outcome {
    // SAFETY: the trampoline preserves the callee-saved registers and the stack; a VM exit
    // comes back through `fuzz_vm_exit` with vmcs12's host state, which the fuzzer built from
    // its own (or mutated so that L0 must refuse the entry); a fault resumes in it.
    let rflags =
        unsafe { fuzz_vm_run(u64::from(launch), u64::from(write_host_rsp), FIXUP.as_ptr()) };
    if rflags == 0 && FAULT.load(Ordering::Relaxed) == 0 {
        FIXUP.store(0, Ordering::Relaxed);
        return Outcome::Exit(vmread(VM_EXIT_REASON).1 as u32);
    }
    finish((rflags & 1) as u8, ((rflags >> 6) & 1) as u8)
}
