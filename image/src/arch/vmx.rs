//! Every VMX instruction L0 executes (SDM Vol. 3C ch. 31), in one place. Each reads CF/ZF in
//! the same `asm!` block as the instruction (RFLAGS may change between statements) and
//! returns `Result<_, VmFail>`; VMfailValid carries the decoded VM-instruction error.

use core::arch::{asm, global_asm};
use core::fmt;

/// VM-instruction error field (SDM Vol. 3C 25.9.5; encoding 0x4400).
pub const VM_INSTRUCTION_ERROR: u64 = 0x4400;
/// Host RSP and RIP fields (encodings 0x6c14, 0x6c16).
pub const HOST_RSP: u64 = 0x6c14;

/// A VMX instruction failed (SDM Vol. 3C 31.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmFail {
    /// VMfailInvalid: CF set, there is no current VMCS.
    Invalid,
    /// VMfailValid: ZF set, with the VM-instruction error number.
    Valid(u32),
}

impl fmt::Display for VmFail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmFail::Invalid => f.write_str("VMfailInvalid (no current VMCS)"),
            VmFail::Valid(n) => {
                write!(f, "VMfailValid, VM-instruction error {n}: {}", error_name(*n))
            }
        }
    }
}

/// The SDM's text for a VM-instruction error number (Vol. 3C 31.4, Table 31-1).
pub fn error_name(n: u32) -> &'static str {
    match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => "unknown error",
    }
}

/// Turns the CF/ZF pair read right after a VMX instruction into a result.
#[inline(always)]
fn status(cf: u8, zf: u8) -> Result<(), VmFail> {
    if cf | zf == 0 { Ok(()) } else { failure(cf) }
}

/// The failure half of [`status`], kept out of line: VMX instructions of L0 fail only on
/// L0 bugs or bad guest input, never on the hot path.
#[cold]
#[inline(never)]
fn failure(cf: u8) -> Result<(), VmFail> {
    if cf != 0 {
        Err(VmFail::Invalid)
    } else {
        Err(VmFail::Valid(vmread(VM_INSTRUCTION_ERROR).unwrap_or(0) as u32))
    }
}

/// VMXON with the VMXON region at physical address `region`.
///
/// # Safety
/// CR4.VMXE is set, CR0/CR4 satisfy the fixed bits, IA32_FEATURE_CONTROL allows VMX, and
/// `region` is a 4 KiB-aligned region holding the revision identifier that stays ours.
pub unsafe fn vmxon(region: u64) -> Result<(), VmFail> {
    let (cf, zf): (u8, u8);
    // SAFETY: the caller upholds the contract above; the operand is a pointer to `region`.
    unsafe {
        asm!("vmxon [{0}]", "setc {1}", "setz {2}", in(reg) &region, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    status(cf, zf)
}

/// VMCLEAR: flushes the VMCS at `vmcs` to memory and makes it clear.
///
/// # Safety
/// In VMX root operation; `vmcs` is a VMCS region of ours.
pub unsafe fn vmclear(vmcs: u64) -> Result<(), VmFail> {
    forget_host_rsp();
    let (cf, zf): (u8, u8);
    // SAFETY: as documented; the operand is a pointer to the address.
    unsafe {
        asm!("vmclear [{0}]", "setc {1}", "setz {2}", in(reg) &vmcs, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    status(cf, zf)
}

/// VMPTRLD: makes the VMCS at `vmcs` current.
///
/// # Safety
/// In VMX root operation; `vmcs` is a VMCS region of ours with the right revision.
pub unsafe fn vmptrld(vmcs: u64) -> Result<(), VmFail> {
    forget_host_rsp();
    let (cf, zf): (u8, u8);
    // SAFETY: as documented; the operand is a pointer to the address.
    unsafe {
        asm!("vmptrld [{0}]", "setc {1}", "setz {2}", in(reg) &vmcs, out(reg_byte) cf,
             out(reg_byte) zf, options(nostack))
    };
    status(cf, zf)
}

/// Another VMCS becomes current: its HOST_RSP is unknown to the entry trampoline.
fn forget_host_rsp() {
    // SAFETY: a plain store to the trampoline's cache word; one CPU, no concurrent entry.
    unsafe { (&raw mut turtles_last_host_rsp).write(0) };
}

/// VMREAD of `field` from the current VMCS. Inlined: it is a handful of instructions on the
/// exit path, the failure branch is out of line.
#[inline(always)]
pub fn vmread(field: u64) -> Result<u64, VmFail> {
    let (value, cf, zf): (u64, u8, u8);
    // SAFETY: VMREAD only reads the current VMCS; outside VMX operation it would #UD, but
    // this module is only used after VMXON (the run loop owns that order).
    unsafe {
        asm!("vmread {0}, {1}", "setc {2}", "setz {3}", out(reg) value, in(reg) field,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack))
    };
    if cf | zf == 0 { Ok(value) } else { Err(vmread_failure(field, cf)) }
}

#[cold]
#[inline(never)]
fn vmread_failure(field: u64, cf: u8) -> VmFail {
    if cf != 0 {
        VmFail::Invalid
    } else {
        // Reading the error field itself cannot fail once a VMCS is current.
        VmFail::Valid(if field == VM_INSTRUCTION_ERROR { 0 } else { 12 })
    }
}

/// INVEPT of `kind` (1 single-context, 2 all-context) for `eptp`.
///
/// # Safety
/// In VMX root operation with INVEPT supported.
pub unsafe fn invept(kind: u64, eptp: u64) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [eptp, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: as documented; the descriptor lives on our stack for the instruction.
    unsafe {
        asm!("invept {0}, [{1}]", "setc {2}", "setz {3}", in(reg) kind, in(reg) &descriptor,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack))
    };
    status(cf, zf)
}

/// INVVPID of `kind` (1 single-context, 2 all-context) for `vpid`.
///
/// # Safety
/// In VMX root operation with INVVPID supported.
pub unsafe fn invvpid(kind: u64, vpid: u16) -> Result<(), VmFail> {
    let descriptor: [u64; 2] = [u64::from(vpid), 0];
    let (cf, zf): (u8, u8);
    // SAFETY: as documented; the descriptor lives on our stack for the instruction.
    unsafe {
        asm!("invvpid {0}, [{1}]", "setc {2}", "setz {3}", in(reg) kind, in(reg) &descriptor,
             out(reg_byte) cf, out(reg_byte) zf, options(nostack))
    };
    status(cf, zf)
}

/// VMCALL from a guest: a VM exit to the hypervisor below (reason 18). Outside VMX non-root
/// operation (bare metal) it raises #UD, as does a hypervisor that offers no VMCALL service.
pub fn vmcall() {
    // SAFETY: in a guest, VMCALL exits and the hypervisor resumes us or injects #UD; on bare
    // metal it is #UD, which the IDT handles. It touches no memory of ours.
    unsafe { asm!("vmcall", options(nomem, nostack)) };
}

/// Guest general-purpose registers the VMCS does not hold (RSP and RIP are VMCS fields).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct GuestRegs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl GuestRegs {
    /// Position of `r` among the fields (declaration order), `None` for RSP, which lives in
    /// the VMCS (guest-state area).
    const fn index(r: nested::guest::Gpr) -> Option<usize> {
        use nested::guest::Gpr;
        Some(match r {
            Gpr::Rax => 0,
            Gpr::Rbx => 1,
            Gpr::Rcx => 2,
            Gpr::Rdx => 3,
            Gpr::Rsi => 4,
            Gpr::Rdi => 5,
            Gpr::Rbp => 6,
            Gpr::R8 => 7,
            Gpr::R9 => 8,
            Gpr::R10 => 9,
            Gpr::R11 => 10,
            Gpr::R12 => 11,
            Gpr::R13 => 12,
            Gpr::R14 => 13,
            Gpr::R15 => 14,
            Gpr::Rsp => return None,
        })
    }

    fn as_array(&self) -> &[u64; 15] {
        // SAFETY: `GuestRegs` is `repr(C)` with exactly fifteen `u64` fields and no padding,
        // so it has the layout of `[u64; 15]`.
        unsafe { &*(self as *const Self).cast::<[u64; 15]>() }
    }

    fn as_array_mut(&mut self) -> &mut [u64; 15] {
        // SAFETY: as in `as_array`.
        unsafe { &mut *(self as *mut Self).cast::<[u64; 15]>() }
    }

    /// The register `r`, or `None` for RSP (in the VMCS).
    pub fn get(&self, r: nested::guest::Gpr) -> Option<u64> {
        Self::index(r).map(|i| self.as_array()[i])
    }

    /// A mutable reference to register `r`, or `None` for RSP (in the VMCS).
    pub fn slot(&mut self, r: nested::guest::Gpr) -> Option<&mut u64> {
        Self::index(r).map(|i| &mut self.as_array_mut()[i])
    }
}

const _: () = assert!(core::mem::size_of::<GuestRegs>() == 15 * 8);
const _: () = assert!(core::mem::offset_of!(GuestRegs, r15) == 14 * 8);

// VM entry and exit. `turtles_vm_run(regs, launched)` saves L0's callee-saved registers and
// the `regs` pointer on the stack, points HOST_RSP there (only if RSP differs from the last
// value written to the current VMCS: under a turtles L0 each VMWRITE is an exit), loads the guest's registers and
// executes VMLAUNCH or VMRESUME. A failed entry falls through and returns RFLAGS (CF or ZF
// set); a VM exit lands at `turtles_vm_exit` (HOST_RIP) with RSP = HOST_RSP, stores the
// guest's registers through the saved pointer and returns 0 from `turtles_vm_run`.
global_asm!(
    r#"
    .section .text.vmx, "ax"
    .global turtles_vm_run
turtles_vm_run:
    push rbp
    push rbx
    push r12
    push r13
    push r14
    push r15
    push rdi
    cmp rsp, [rip + turtles_last_host_rsp]
    je 3f
    mov [rip + turtles_last_host_rsp], rsp
    mov rax, {host_rsp}
    vmwrite rax, rsp
3:  test rsi, rsi
    mov rax, [rdi + 0]
    mov rbx, [rdi + 8]
    mov rcx, [rdi + 16]
    mov rdx, [rdi + 24]
    mov rbp, [rdi + 48]
    mov r8, [rdi + 56]
    mov r9, [rdi + 64]
    mov r10, [rdi + 72]
    mov r11, [rdi + 80]
    mov r12, [rdi + 88]
    mov r13, [rdi + 96]
    mov r14, [rdi + 104]
    mov r15, [rdi + 112]
    mov rsi, [rdi + 32]
    mov rdi, [rdi + 40]
    jnz 1f
    vmlaunch
    jmp 2f
1:  vmresume
2:  pushfq
    pop rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    ret

    .global turtles_vm_exit
turtles_vm_exit:
    push rdi
    mov rdi, [rsp + 8]
    mov [rdi + 0], rax
    mov [rdi + 8], rbx
    mov [rdi + 16], rcx
    mov [rdi + 24], rdx
    mov [rdi + 32], rsi
    mov [rdi + 48], rbp
    mov [rdi + 56], r8
    mov [rdi + 64], r9
    mov [rdi + 72], r10
    mov [rdi + 80], r11
    mov [rdi + 88], r12
    mov [rdi + 96], r13
    mov [rdi + 104], r14
    mov [rdi + 112], r15
    pop rax
    mov [rdi + 40], rax
    add rsp, 8
    pop r15
    pop r14
    pop r13
    pop r12
    pop rbx
    pop rbp
    xor eax, eax
    ret

    .section .bss.vmx, "aw", @nobits
    .balign 8
    .global turtles_last_host_rsp
turtles_last_host_rsp:
    .quad 0
"#,
    host_rsp = const HOST_RSP,
);

unsafe extern "C" {
    fn turtles_vm_run(regs: *mut GuestRegs, launched: u64) -> u64;
    /// HOST_RSP last written to the current VMCS (0: unknown).
    static mut turtles_last_host_rsp: u64;
    /// The host RIP of every VM exit.
    pub fn turtles_vm_exit();
}

/// Enters the guest of the current VMCS and returns at its next VM exit, or with the entry
/// failure.
///
/// # Safety
/// The current VMCS is complete and valid for entry with HOST_RIP = [`turtles_vm_exit`], its
/// EPT confines the guest to memory L0 gave it, and `launched` matches its launch state.
pub unsafe fn enter(regs: &mut GuestRegs, launched: bool) -> Result<(), VmFail> {
    // SAFETY: the caller upholds the contract above; the trampoline preserves L0's
    // callee-saved registers and stack.
    let rflags = unsafe { turtles_vm_run(regs, u64::from(launched)) };
    if rflags == 0 { Ok(()) } else { status((rflags & 1) as u8, ((rflags >> 6) & 1) as u8) }
}
