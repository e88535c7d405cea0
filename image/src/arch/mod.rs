//! x86-64 processor support: descriptor tables, exception entry, port and MSR access, and the
//! VMX instructions with the hardware VMCS behind `nested::vmcs::Vmcs`. The bottom room of the
//! image: it imports nothing from the rest of it.

pub mod apic;
pub mod cpu;
pub mod gdt;
pub mod idt;
pub mod pic;
pub mod vmcs;
pub mod vmx;
pub mod vmx_probe;
