//! The kernel's own GDT and TSS (SDM Vol. 3A 3.4, 7.7): flat 64-bit code and data, and a TSS
//! whose IST gives #DF, NMI and #MC a known-good stack.

use hermit_sync::Lazy;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (1-based as in the IDT entry) used by the exceptions that must not trust RSP.
pub const IST_CRITICAL: u8 = 1;
const IST_STACK_SIZE: usize = 16 * 1024;

static mut IST_STACK: [u8; IST_STACK_SIZE] = [0; IST_STACK_SIZE];

static TSS: Lazy<TaskStateSegment> = Lazy::new(|| {
    let mut tss = TaskStateSegment::new();
    let base = VirtAddr::from_ptr(&raw const IST_STACK);
    tss.interrupt_stack_table[usize::from(IST_CRITICAL - 1)] = base + IST_STACK_SIZE as u64;
    tss
});

struct Gdt {
    table: GlobalDescriptorTable,
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static GDT: Lazy<Gdt> = Lazy::new(|| {
    let mut table = GlobalDescriptorTable::new();
    let code = table.append(Descriptor::kernel_code_segment());
    let data = table.append(Descriptor::kernel_data_segment());
    let tss = table.append(Descriptor::tss_segment(&TSS));
    Gdt { table, code, data, tss }
});

/// Loads the GDT, reloads the segment registers and the task register.
pub fn init() {
    GDT.table.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which lives forever.
    unsafe {
        CS::set_reg(GDT.code);
        DS::set_reg(GDT.data);
        ES::set_reg(GDT.data);
        SS::set_reg(GDT.data);
        load_tss(GDT.tss);
    }
}

/// The kernel code selector (also the host CS for VMX).
pub fn code_selector() -> SegmentSelector {
    GDT.code
}

/// The kernel data selector (host SS/DS/ES for VMX).
pub fn data_selector() -> SegmentSelector {
    GDT.data
}

/// The TSS selector and the TSS's address (host TR for VMX).
pub fn tss() -> (SegmentSelector, u64) {
    (GDT.tss, (&raw const *TSS).addr() as u64)
}

/// Base of the GDT (host GDTR base for VMX).
pub fn gdt_base() -> u64 {
    (&raw const GDT.table).addr() as u64
}
