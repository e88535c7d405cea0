//! Interrupt descriptor table and exception entry (SDM Vol. 3A ch. 6).
//!
//! 256 assembly stubs, 16 bytes apart, push a dummy error code where the CPU pushes none and
//! the vector, then save every GPR into a [`TrapFrame`] and call [`trap`]. An exception in the
//! kernel is handed, as a printable report of the vector, error code and registers, to the
//! handler given to [`init`], which ends the run with a failure status: never a triple fault.

use core::arch::global_asm;
use core::fmt;

use hermit_sync::{Lazy, OnceCell};
use x86_64::VirtAddr;
use x86_64::instructions::tables::lidt;
use x86_64::structures::DescriptorTablePointer;

use super::gdt;

// Vectors whose exceptions push an error code: #DF 8, #TS 10, #NP 11, #SS 12, #GP 13, #PF 14,
// #AC 17, #CP 21, #VC 29, #SX 30.
global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if (vector == 8) || (vector == 10) || (vector == 11) || (vector == 12) || (vector == 13) || (vector == 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    push 0
    .endif
    push vector
    jmp isr_common
    .set vector, vector + 1
    .endr

isr_common:
    push rax
    push rbx
    push rcx
    push rdx
    push rsi
    push rdi
    push rbp
    push r8
    push r9
    push r10
    push r11
    push r12
    push r13
    push r14
    push r15
    mov rdi, rsp
    cld
    call {trap}
    pop r15
    pop r14
    pop r13
    pop r12
    pop r11
    pop r10
    pop r9
    pop r8
    pop rbp
    pop rdi
    pop rsi
    pop rdx
    pop rcx
    pop rbx
    pop rax
    add rsp, 16
    iretq
"#,
    trap = sym trap,
);

unsafe extern "C" {
    static isr_stubs: [u8; 256 * 16];
}

/// Registers saved by the entry stub, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// Mnemonic of an architectural exception vector (SDM Vol. 3A, Table 6-1).
pub fn exception_name(vector: u64) -> &'static str {
    const NAMES: [&str; 32] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "reserved", "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "reserved", "reserved",
        "reserved", "reserved", "reserved", "reserved", "#HV", "#VC", "#SX", "reserved",
    ];
    usize::try_from(vector).ok().and_then(|v| NAMES.get(v)).copied().unwrap_or("interrupt")
}

impl fmt::Display for TrapFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rip={:#018x} cs={:#06x} rflags={:#010x} rsp={:#018x} ss={:#06x}",
            self.rip, self.cs, self.rflags, self.rsp, self.ss
        )?;
        writeln!(
            f,
            "rax={:#018x} rbx={:#018x} rcx={:#018x} rdx={:#018x}",
            self.rax, self.rbx, self.rcx, self.rdx
        )?;
        writeln!(
            f,
            "rsi={:#018x} rdi={:#018x} rbp={:#018x} r8 ={:#018x}",
            self.rsi, self.rdi, self.rbp, self.r8
        )?;
        writeln!(
            f,
            "r9 ={:#018x} r10={:#018x} r11={:#018x} r12={:#018x}",
            self.r9, self.r10, self.r11, self.r12
        )?;
        write!(f, "r13={:#018x} r14={:#018x} r15={:#018x}", self.r13, self.r14, self.r15)
    }
}

/// Common Rust entry for every vector.
extern "C" fn trap(frame: &mut TrapFrame) {
    if frame.vector < 32 {
        if let Some(recover) = RECOVER.get()
            && recover(frame)
        {
            return;
        }
        exception(frame);
    }
    // No interrupt source is enabled yet: an unexpected interrupt is logged and ignored.
    log::warn!("unexpected interrupt vector {}", frame.vector);
}

/// What ends the run after an exception in the kernel (given to [`init`]).
pub type FatalHandler = fn(&dyn fmt::Display) -> !;

static FATAL: OnceCell<FatalHandler> = OnceCell::new();

/// A hook that may recover from an exception in the kernel by changing the frame (its RIP)
/// and returning true; the trap then returns to the frame instead of ending the run.
pub type RecoverHandler = fn(&mut TrapFrame) -> bool;

static RECOVER: OnceCell<RecoverHandler> = OnceCell::new();

/// Installs the recovery hook (the fuzzing L1's fault fix-ups: a #UD or #GP that L0 injects
/// for an emulated VMX instruction resumes at the instruction's fix-up address).
pub fn set_recovery(recover: RecoverHandler) {
    let _ = RECOVER.set(recover);
}

fn exception(frame: &TrapFrame) -> ! {
    let report = ExceptionReport(frame);
    match FATAL.get() {
        Some(fatal) => fatal(&report),
        None => super::cpu::halt_forever(),
    }
}

/// An exception as it is printed: mnemonic, vector, error code, CR2 for #PF, registers.
struct ExceptionReport<'a>(&'a TrapFrame);

impl fmt::Display for ExceptionReport<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.0;
        write!(
            f,
            "EXCEPTION {} (vector {}) error_code={:#x}{}\n{}\n",
            exception_name(frame.vector),
            frame.vector,
            frame.error_code,
            if frame.vector == 14 {
                PageFaultAddress(super::cpu::cr2())
            } else {
                PageFaultAddress(u64::MAX)
            },
            frame
        )
    }
}

struct PageFaultAddress(u64);

impl fmt::Display for PageFaultAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == u64::MAX { Ok(()) } else { write!(f, " cr2={:#x}", self.0) }
    }
}

#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Entry {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

#[repr(C, align(16))]
struct Idt([Entry; 256]);

static IDT: Lazy<Idt> = Lazy::new(|| {
    let mut idt = Idt([Entry::default(); 256]);
    let stubs = (&raw const isr_stubs).addr() as u64;
    let selector = gdt::code_selector().0;
    for (vector, entry) in idt.0.iter_mut().enumerate() {
        let handler = stubs + 16 * vector as u64;
        let critical = matches!(vector, 2 | 8 | 18);
        *entry = Entry {
            offset_low: handler as u16,
            selector,
            ist: if critical { gdt::IST_CRITICAL } else { 0 },
            type_attr: 0x8e, // present, DPL 0, 64-bit interrupt gate
            offset_mid: (handler >> 16) as u16,
            offset_high: (handler >> 32) as u32,
            reserved: 0,
        };
    }
    idt
});

/// Base of the IDT (host IDTR base for VMX).
pub fn idt_base() -> u64 {
    (&raw const IDT.0).addr() as u64
}

/// Loads the IDT; an exception in the kernel then goes to `fatal`, which prints the report it
/// is given and ends the run. Requires [`gdt::init`] first (the entries name its code selector
/// and IST).
pub fn init(fatal: FatalHandler) {
    let _ = FATAL.set(fatal);
    let pointer = DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: VirtAddr::from_ptr(&IDT.0),
    };
    // SAFETY: the table is static, fully initialised and its handlers are the stubs above.
    unsafe { lidt(&pointer) };
}
