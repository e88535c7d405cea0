//! L2's behaviour: a few random 32-bit instructions (register moves, memory touches inside and
//! outside EPT12's map) and one that must exit (CPUID, HLT, I/O, RDMSR, WRMSR, INVD, VMCALL,
//! UD2, a triple fault, a spin for the preemption timer), then a CPUID loop for resumes. Each
//! snippet knows which exit reasons it may cause (SDM Vol. 3C 26.1.2, 27.1, App. C).

use super::rng::Rng;

/// Exit reasons (SDM Vol. 3D App. C) the fuzzer expects from L2.
pub mod reason {
    pub const EXCEPTION_OR_NMI: u32 = 0;
    pub const EXTERNAL_INTERRUPT: u32 = 1;
    pub const TRIPLE_FAULT: u32 = 2;
    pub const CPUID: u32 = 10;
    pub const HLT: u32 = 12;
    pub const INVD: u32 = 13;
    pub const VMCALL: u32 = 18;
    pub const IO: u32 = 30;
    pub const RDMSR: u32 = 31;
    pub const WRMSR: u32 = 32;
    pub const ENTRY_FAILURE_GUEST: u32 = 33;
    pub const ENTRY_FAILURE_MSR: u32 = 34;
    pub const EPT_VIOLATION: u32 = 48;
    pub const EPT_MISCONFIG: u32 = 49;
    pub const PREEMPTION_TIMER: u32 = 52;
}

/// Bit `r` of an exit-reason set.
pub const fn bit(r: u32) -> u64 {
    1 << r
}

/// L2's guest-physical layout: page 0 is a zeroed IDT (every vector not present, so an
/// exception ends in a triple fault), page 1 the code, pages 2.. data; EPT12 maps 2 MiB.
pub const CODE_GPA: u64 = 0x1000;
/// A zeroed 6-byte IDTR image (limit 0) inside the code page, for the triple fault.
const EMPTY_IDTR_GPA: u32 = 0x1f00;
pub const DATA_FIRST_PAGE: u64 = 2;
pub const MAPPED_BYTES: u64 = 2 << 20;
const CODE_MAX: usize = 96;

/// One L2 program.
pub struct Snippet {
    pub code: [u8; CODE_MAX],
    pub len: usize,
    /// Exit reasons the first exit may have (besides those every run allows).
    pub exits: u64,
    /// The terminal instruction's exit reason, its offset in the code and its length, when
    /// it is an instruction whose exit reports RIP and length (checked at the first exit).
    pub terminal: Option<(u32, u64, u64)>,
    /// Data page the snippet touches (an EPT12 mutation aims there).
    pub touched_page: u64,
    pub name: &'static str,
}

impl Snippet {
    fn push(&mut self, bytes: &[u8]) {
        let end = (self.len + bytes.len()).min(CODE_MAX);
        let n = end - self.len;
        self.code[self.len..end].copy_from_slice(&bytes[..n]);
        self.len = end;
    }

    fn push_op32(&mut self, op: &[u8], imm: u32) {
        self.push(op);
        self.push(&imm.to_le_bytes());
    }
}

/// Where L2 must first exit when it starts at `start`, for a snippet whose terminal
/// instruction is `terminal` (reason, RIP, length), as (reason, RIP, length): the terminal
/// instruction from anywhere up to it (the code before it is straight-line), the loop's CPUID
/// from the loop (`cpuid; jmp cpuid` right after the terminal instruction); `None` elsewhere.
pub fn exit_site(terminal: (u32, u64, u64), start: u64) -> Option<(u32, u64, u64)> {
    let (_, rip, len) = terminal;
    let cpuid_loop = rip + len;
    if (CODE_GPA..=rip).contains(&start) {
        Some(terminal)
    } else if start == cpuid_loop || start == cpuid_loop + 2 {
        Some((reason::CPUID, cpuid_loop, 2))
    } else {
        None
    }
}

/// A random snippet. `timer` says whether the preemption timer bounds L2 (only then may it
/// spin).
pub fn generate(rng: &mut Rng, timer: bool) -> Snippet {
    let mut s = Snippet {
        code: [0; CODE_MAX],
        len: 0,
        exits: 0,
        terminal: None,
        touched_page: DATA_FIRST_PAGE + rng.below(MAPPED_BYTES / 4096 - DATA_FIRST_PAGE),
        name: "",
    };
    let data = |rng: &mut Rng, page: u64| (page * 4096 + rng.below(4092)) as u32;
    for _ in 0..rng.below(5) {
        match rng.below(6) {
            0 => s.push_op32(&[0xb8], rng.next() as u32), // mov eax, imm32
            1 => s.push_op32(&[0xbb], rng.next() as u32), // mov ebx, imm32
            2 => {
                let at = data(rng, s.touched_page);
                s.push_op32(&[0xa3], at); // mov [imm32], eax
            }
            3 => {
                let at = data(rng, s.touched_page);
                s.push_op32(&[0xa1], at); // mov eax, [imm32]
            }
            4 if rng.chance(1, 4) => {
                // Outside EPT12's map: an EPT violation for L1.
                let at = (MAPPED_BYTES + rng.below(0x3000_0000)) as u32 & !3;
                s.push_op32(&[0xa1], at);
                s.exits |= bit(reason::EPT_VIOLATION);
            }
            _ => s.push(&[0x90]),
        }
    }
    let (name, r, bytes): (&'static str, u32, &[u8]) = match rng.below(12) {
        0 | 1 => {
            let any = rng.next() as u32;
            let leaf = rng.pick(&[0, 1, 7, 0xd, 0x4000_0000, 0x8000_0001, any]);
            s.push_op32(&[0xb8], leaf);
            ("cpuid", reason::CPUID, &[0x0f, 0xa2])
        }
        2 => ("hlt", reason::HLT, &[0xf4]),
        3 => {
            s.push(&[0x66, 0xba]);
            s.push(&(rng.next() as u16).to_le_bytes());
            if rng.chance(1, 2) {
                ("in", reason::IO, &[0xec])
            } else {
                ("out", reason::IO, &[0xee])
            }
        }
        4 => {
            s.push_op32(&[0xb9], rng.next() as u32);
            ("rdmsr", reason::RDMSR, &[0x0f, 0x32])
        }
        5 => {
            s.push_op32(&[0xb9], rng.next() as u32);
            ("wrmsr", reason::WRMSR, &[0x0f, 0x30])
        }
        6 => ("invd", reason::INVD, &[0x0f, 0x08]),
        7 => ("vmcall", reason::VMCALL, &[0x0f, 0x01, 0xc1]),
        8 => {
            s.exits |= bit(reason::EXCEPTION_OR_NMI) | bit(reason::TRIPLE_FAULT);
            ("ud2", u32::MAX, &[0x0f, 0x0b])
        }
        9 => {
            // lidt [empty]; ud2: #UD with IDT limit 0 -> #GP -> #DF -> triple fault.
            s.push_op32(&[0x0f, 0x01, 0x1d], EMPTY_IDTR_GPA);
            s.exits |= bit(reason::EXCEPTION_OR_NMI) | bit(reason::TRIPLE_FAULT);
            ("triple-fault", u32::MAX, &[0x0f, 0x0b])
        }
        10 if timer => ("spin", u32::MAX, &[0xeb, 0xfe]),
        _ => ("cpuid", reason::CPUID, &[0x0f, 0xa2]),
    };
    let at = s.len as u64;
    s.push(bytes);
    if r != u32::MAX {
        s.exits |= bit(r);
        s.terminal = Some((r, CODE_GPA + at, bytes.len() as u64));
    }
    s.name = name;
    // Resumes past the terminal instruction land in a CPUID loop.
    s.push(&[0x0f, 0xa2, 0xeb, 0xfc]);
    s
}
