//! Boot headers and the 32-bit entry paths: multiboot1 (with address fields so QEMU accepts an
//! ELF64), multiboot2 (GRUB) and PVH (XEN_ELFNOTE_PHYS32_ENTRY). All three arrive in 32-bit
//! protected mode with paging off; this code identity-maps the first 4 GiB with 2 MiB pages,
//! enters long mode and calls [`crate::kstart`] with the loader's magic and info pointer.

/// Marker passed to `kstart` in place of a loader magic when entered through the PVH note.
pub const PVH_ENTRY_MAGIC: u32 = 0x5056_4821;

core::arch::global_asm!(
    r#"
    .set MB1_MAGIC, 0x1BADB002
    /* bit 0: page-align modules, bit 1: memory map, bit 16: address fields are valid */
    .set MB1_FLAGS, 0x00010003

    .section .boot.multiboot1, "a"
    .balign 4
multiboot1_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)
    .long multiboot1_header     /* header_addr */
    .long __image_start         /* load_addr */
    .long __load_end            /* load_end_addr */
    .long __bss_end             /* bss_end_addr */
    .long _start32_multiboot    /* entry_addr */

    .section .boot.multiboot2, "a"
    .balign 8
multiboot2_header:
    .long 0xE85250D6            /* magic */
    .long 0                     /* architecture: i386 protected mode */
    .long 24                    /* header length */
    .long 0x17ADAF12            /* checksum: -(magic + arch + length) mod 2^32 */
    .short 0, 0                 /* end tag */
    .long 8

    /* PVH: Xen ELF note 18 (XEN_ELFNOTE_PHYS32_ENTRY). QEMU reads 8 bytes of descriptor at the
       4-byte aligned offset after the name, so the note stays 4-aligned and holds a quad. */
    .section .note.pvh, "a", @note
    .balign 4
    .long 4
    .long 8
    .long 18
    .asciz "Xen"
    .balign 4
    .quad _start32_pvh

    .section .boot.text, "ax"
    .code32
    .global _start32_multiboot
_start32_multiboot:
    cli
    cld
    mov %eax, %edi              /* loader magic (multiboot1 or multiboot2) */
    mov %ebx, %esi              /* physical address of the boot information */
    jmp 1f

    .global _start32_pvh
_start32_pvh:
    cli
    cld
    mov ${pvh_magic}, %edi
    mov %ebx, %esi              /* physical address of hvm_start_info */

1:  /* zero .bss (page tables and boot stack live there) */
    mov $__bss_start, %ebx
2:  cmp $__bss_end, %ebx
    jae 3f
    movl $0, (%ebx)
    add $4, %ebx
    jmp 2b
3:
    mov $boot_stack_top, %esp

    /* PML4[0] -> PDPT, PDPT[0..4] -> the four page directories */
    mov $boot_pdpt, %eax
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax
    or $0x3, %eax
    mov $boot_pdpt, %ebx
    mov $4, %ecx
4:  mov %eax, (%ebx)
    add $4096, %eax
    add $8, %ebx
    loop 4b

    /* 2048 2 MiB pages: identity map of 0..4 GiB; the top GiB (MMIO: APIC, PCI BARs) uncached */
    mov $boot_pd, %ebx
    xor %ecx, %ecx
5:  mov %ecx, %eax
    shl $21, %eax
    or $0x83, %eax              /* present, writable, 2 MiB page */
    cmp $1536, %ecx
    jb 6f
    or $0x18, %eax              /* PWT | PCD */
6:  mov %eax, (%ebx)
    mov %ecx, %eax
    shr $11, %eax               /* bits 32+ of the page address */
    mov %eax, 4(%ebx)
    add $8, %ebx
    inc %ecx
    cmp $2048, %ecx
    jb 5b

    mov %cr4, %eax
    or $0x20, %eax              /* CR4.PAE */
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx       /* IA32_EFER */
    rdmsr
    or $0x100, %eax             /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80010001, %eax        /* PG | WP | PE */
    mov %eax, %cr0

    lgdt boot_gdt_pointer
    ljmp $0x08, $7f

    .code64
7:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    mov %edi, %edi              /* upper halves are undefined after the mode switch */
    mov %esi, %esi
    xor %ebp, %ebp
    call {kstart}
8:  cli
    hlt
    jmp 8b

    .section .rodata
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00AF9A000000FFFF    /* 0x08: 64-bit code */
    .quad 0x00CF92000000FFFF    /* 0x10: data */
boot_gdt_pointer:
    .short boot_gdt_pointer - boot_gdt - 1
    .quad boot_gdt

    /* The stack comes first so that an overflow runs into other .bss, never into the page
       tables above it. */
    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_stack_bottom
boot_stack_bottom:
    .skip 262144
boot_stack_top:
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
"#,
    pvh_magic = const PVH_ENTRY_MAGIC,
    kstart = sym crate::kstart,
    options(att_syntax)
);
