//! x86-64 processor support: descriptor tables, exception entry, port and MSR access.

pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod pic;
