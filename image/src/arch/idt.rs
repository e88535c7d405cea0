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
use x86_64::structures::idt::InterruptDescriptorTable;

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
    if let Some(handle) = INTERRUPT.get()
        && handle(frame.vector as u8)
    {
        return;
    }
    // No other interrupt source is enabled: an unexpected interrupt is logged and ignored.
    log::warn!("unexpected interrupt vector {}", frame.vector);
}

/// A hook for interrupt vectors (32-255): true when it handled (and EOIed) the vector.
pub type InterruptHandler = fn(u8) -> bool;

static INTERRUPT: OnceCell<InterruptHandler> = OnceCell::new();

/// Installs the interrupt hook (the e1000 driver's interrupt count, `[net]
/// e1000_interrupts`); the image otherwise runs with interrupts off.
pub fn set_interrupt_handler(handle: InterruptHandler) {
    let _ = INTERRUPT.set(handle);
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

/// The IDT: x86_64's [`InterruptDescriptorTable`] with every architectural vector but the
/// reserved ones (15, 22-27, 31) and every interrupt vector (32-255) pointing at its entry
/// stub (`set_handler_addr`: the stubs are plain asm, stable Rust has no x86-interrupt ABI).
/// NMI, #DF and #MC run on the IST stack [`gdt::IST_CRITICAL`].
static IDT: Lazy<InterruptDescriptorTable> = Lazy::new(|| {
    let stubs = (&raw const isr_stubs).addr() as u64;
    let stub = |vector: u8| VirtAddr::new(stubs + 16 * u64::from(vector));
    let ist = u16::from(gdt::IST_CRITICAL - 1);
    let mut idt = InterruptDescriptorTable::new();
    // SAFETY: each address is the entry stub of that very vector in `isr_stubs` above, which
    // pushes the error code the CPU does not, saves the registers, calls `trap` and returns
    // with IRETQ; the IST index names the stack `gdt::init` put in the TSS. Entries get the
    // code selector `gdt::init` loaded into CS (this runs after it, from `init`).
    unsafe {
        for vector in (0..=7).chain([9, 16, 19, 20, 28]) {
            idt[vector].set_handler_addr(stub(vector));
        }
        idt[2].set_handler_addr(stub(2)).set_stack_index(ist);
        idt.double_fault.set_handler_addr(stub(8)).set_stack_index(ist);
        idt.invalid_tss.set_handler_addr(stub(10));
        idt.segment_not_present.set_handler_addr(stub(11));
        idt.stack_segment_fault.set_handler_addr(stub(12));
        idt.general_protection_fault.set_handler_addr(stub(13));
        idt.page_fault.set_handler_addr(stub(14));
        idt.alignment_check.set_handler_addr(stub(17));
        idt.machine_check.set_handler_addr(stub(18)).set_stack_index(ist);
        idt.cp_protection_exception.set_handler_addr(stub(21));
        idt.vmm_communication_exception.set_handler_addr(stub(29));
        idt.security_exception.set_handler_addr(stub(30));
        for vector in 32..=255 {
            idt[vector].set_handler_addr(stub(vector));
        }
    }
    idt
});

/// Base of the IDT (host IDTR base for VMX).
pub fn idt_base() -> u64 {
    core::ptr::from_ref::<InterruptDescriptorTable>(&IDT).addr() as u64
}

/// Loads the IDT; an exception in the kernel then goes to `fatal`, which prints the report it
/// is given and ends the run. Requires [`gdt::init`] first (the entries name its code selector
/// and IST).
pub fn init(fatal: FatalHandler) {
    let _ = FATAL.set(fatal);
    IDT.load();
}

/// Loads an empty IDT (limit 0), so that the next exception or interrupt triple-faults: for
/// the bad-guest self-test of the hypervisor below.
///
/// # Safety
/// Any exception or interrupt after this resets (or stops) the machine.
pub unsafe fn load_empty() {
    let empty = DescriptorTablePointer { limit: 0, base: VirtAddr::new(0) };
    // SAFETY: the caller accepts that the next exception triple-faults.
    unsafe { lidt(&empty) };
}
