/* vmx32: a plain VMX hypervisor kernel that is not turtles. Booted by multiboot1 in 32-bit
 * protected mode, it turns on 32-bit paging with 4 MiB pages, reads the VMX capability MSRs,
 * executes VMXON, builds a VMCS by hand for a 32-bit protected-mode guest (no EPT, no
 * unrestricted guest) that runs CPUID, OUT 0x80 and HLT, handles those three exits by
 * advancing the guest's RIP, prints each exit reason on COM1, and ends through port 0xf4.
 * The tests run it as L1 on the turtles L0: every VMX instruction here is emulated by L0. */

    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00000003
    .set COM1, 0x3f8
    .set EXIT_PORT, 0xf4

    /* VMWRITE `value` (an immediate, register or symbol) to VMCS field `field`. */
    .macro VMW field, value
    mov $\field, %eax
    mov \value, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    .endm

    /* %ebx = (want | allowed0) & allowed1 of the control MSR at msr_base + \offset. */
    .macro ADJUST offset, want
    mov msr_base, %ecx
    add $\offset, %ecx
    rdmsr
    mov $\want, %ebx
    or %eax, %ebx
    and %edx, %ebx
    .endm

    .text
    .code32
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

    .global _start
_start:
    mov $host_stack_top, %esp
    /* TSS descriptor (index 3): base and limit are only known at link time, so build it. */
    mov $tss, %eax
    mov %eax, %ebx
    shl $16, %ebx
    or $0x67, %ebx
    mov %ebx, gdt + 24
    mov %eax, %ebx
    shr $16, %ebx
    and $0xff, %ebx
    or $0x8900, %ebx                    /* present, type 9: available 32-bit TSS */
    mov %eax, %ecx
    and $0xff000000, %ecx
    or %ecx, %ebx
    mov %ebx, gdt + 28
    lgdt gdt_pointer
    ljmp $0x08, $1f
1:  mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $0x18, %ax
    ltr %ax

    mov $msg_hello, %esi
    call puts

    /* CPUID.1:ECX.VMX */
    mov $1, %eax
    cpuid
    test $0x20, %ecx
    jz no_vmx

    /* Paging: identity map of 4 GiB with 4 MiB pages (VMX operation needs CR0.PG). */
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $22, %eax
    or $0x83, %eax                      /* present, writable, 4 MiB */
    mov %eax, page_directory(,%ecx,4)
    inc %ecx
    cmp $1024, %ecx
    jb 2b
    mov $page_directory, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x2010, %eax                    /* PSE | VMXE */
    mov %eax, %cr4
    mov $0x486, %ecx                    /* IA32_VMX_CR0_FIXED0: NE, PG, PE */
    rdmsr
    mov %cr0, %ebx
    or %eax, %ebx
    or $0x80000001, %ebx
    mov %ebx, %cr0

    /* IA32_VMX_BASIC: revision identifier; bit 55 says the TRUE control MSRs exist. */
    mov $0x480, %ecx
    rdmsr
    mov %eax, vmxon_region
    mov %eax, vmcs_region
    movl $0x481, msr_base
    test $0x00800000, %edx
    jz 3f
    movl $0x48d, msr_base
3:
    vmxon vmxon_pointer
    jbe vmx_failed
    mov $msg_vmxon, %esi
    call puts
    vmclear vmcs_pointer
    jbe vmx_failed
    vmptrld vmcs_pointer
    jbe vmx_failed

    /* Controls: HLT exiting and unconditional I/O exiting; a 32-bit host; no IA-32e guest. */
    ADJUST 0, 0
    VMW 0x4000, %ebx                    /* pin-based */
    ADJUST 1, 0x01000080
    VMW 0x4002, %ebx                    /* primary processor-based */
    ADJUST 2, 0
    VMW 0x400c, %ebx                    /* VM-exit controls */
    ADJUST 3, 0
    VMW 0x4012, %ebx                    /* VM-entry controls */
    VMW 0x4004, $0                      /* exception bitmap */
    VMW 0x4006, $0                      /* #PF error-code mask */
    VMW 0x4008, $0                      /* #PF error-code match */
    VMW 0x400a, $0                      /* CR3-target count */
    VMW 0x400e, $0                      /* VM-exit MSR-store count */
    VMW 0x4010, $0                      /* VM-exit MSR-load count */
    VMW 0x4014, $0                      /* VM-entry MSR-load count */
    VMW 0x4016, $0                      /* VM-entry interruption information */

    /* Host state: this kernel. */
    mov %cr0, %ecx
    VMW 0x6c00, %ecx
    mov %cr3, %ecx
    VMW 0x6c02, %ecx
    mov %cr4, %ecx
    VMW 0x6c04, %ecx
    VMW 0x0c00, $0x10                   /* ES */
    VMW 0x0c02, $0x08                   /* CS */
    VMW 0x0c04, $0x10                   /* SS */
    VMW 0x0c06, $0x10                   /* DS */
    VMW 0x0c08, $0x10                   /* FS */
    VMW 0x0c0a, $0x10                   /* GS */
    VMW 0x0c0c, $0x18                   /* TR */
    VMW 0x6c06, $0                      /* FS base */
    VMW 0x6c08, $0                      /* GS base */
    VMW 0x6c0a, $tss                    /* TR base */
    VMW 0x6c0c, $gdt                    /* GDTR base */
    VMW 0x6c0e, $0                      /* IDTR base */
    VMW 0x4c00, $0                      /* SYSENTER_CS */
    VMW 0x6c10, $0                      /* SYSENTER_ESP */
    VMW 0x6c12, $0                      /* SYSENTER_EIP */
    VMW 0x6c14, $host_stack_top         /* RSP */
    VMW 0x6c16, $vm_exit                /* RIP */

    /* Guest state: flat 32-bit protected mode with the same paging. */
    mov %cr0, %ecx
    VMW 0x6800, %ecx
    mov %cr3, %ecx
    VMW 0x6802, %ecx
    mov %cr4, %ecx
    VMW 0x6804, %ecx
    VMW 0x0800, $0x10                   /* ES selector */
    VMW 0x0802, $0x08                   /* CS */
    VMW 0x0804, $0x10                   /* SS */
    VMW 0x0806, $0x10                   /* DS */
    VMW 0x0808, $0x10                   /* FS */
    VMW 0x080a, $0x10                   /* GS */
    VMW 0x080c, $0                      /* LDTR */
    VMW 0x080e, $0x18                   /* TR */
    mov $0x4800, %edi                   /* ES..GS limits 0x4800-0x480a */
4:  mov %edi, %eax
    mov $0xffffffff, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    add $2, %edi
    cmp $0x480c, %edi
    jb 4b
    VMW 0x480c, $0                      /* LDTR limit */
    VMW 0x480e, $0x67                   /* TR limit */
    VMW 0x4810, $(gdt_end - gdt - 1)    /* GDTR limit */
    VMW 0x4812, $0                      /* IDTR limit */
    VMW 0x4814, $0xc093                 /* ES access rights */
    VMW 0x4816, $0xc09b                 /* CS */
    VMW 0x4818, $0xc093                 /* SS */
    VMW 0x481a, $0xc093                 /* DS */
    VMW 0x481c, $0xc093                 /* FS */
    VMW 0x481e, $0xc093                 /* GS */
    VMW 0x4820, $0x10000                /* LDTR: unusable */
    VMW 0x4822, $0x8b                   /* TR: busy 32-bit TSS */
    mov $0x6806, %edi                   /* ES..LDTR bases 0x6806-0x6812 */
5:  mov %edi, %eax
    xor %ebx, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    add $2, %edi
    cmp $0x6814, %edi
    jb 5b
    VMW 0x6814, $tss                    /* TR base */
    VMW 0x6816, $gdt                    /* GDTR base */
    VMW 0x6818, $0                      /* IDTR base */
    VMW 0x681a, $0x400                  /* DR7 */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x681e, $guest_code             /* RIP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    VMW 0x6822, $0                      /* pending debug exceptions */
    VMW 0x6824, $0                      /* SYSENTER_ESP */
    VMW 0x6826, $0                      /* SYSENTER_EIP */
    VMW 0x482a, $0                      /* SYSENTER_CS */
    VMW 0x4824, $0                      /* interruptibility */
    VMW 0x4826, $0                      /* activity: active */
    VMW 0x2800, $0xffffffff             /* VMCS link pointer (both halves) */
    VMW 0x2801, $0xffffffff
    VMW 0x2802, $0                      /* IA32_DEBUGCTL */
    VMW 0x2803, $0

    mov $msg_launch, %esi
    call puts
    vmlaunch
    jmp vmx_failed

/* Every exit of the guest lands here with the host state loaded. */
vm_exit:
    mov $0x4402, %eax
    vmread %eax, %ebx                   /* exit reason */
    mov %ebx, exit_reason
    mov $msg_exit, %esi
    call puts
    mov exit_reason, %eax
    call puthex
    mov $msg_newline, %esi
    call puts
    incl exit_count
    mov exit_reason, %eax
    test $0x80000000, %eax
    jnz entry_failed
    cmp $12, %eax                       /* HLT: the guest is done */
    je done
    mov $0x440c, %eax
    vmread %eax, %ebx                   /* VM-exit instruction length */
    mov $0x681e, %eax
    vmread %eax, %ecx                   /* guest RIP */
    add %ebx, %ecx
    mov $0x681e, %eax
    vmwrite %ecx, %eax
    vmresume
    jmp vmx_failed

done:
    mov $msg_done, %esi
    call puts
    mov exit_count, %eax
    call puthex
    mov $msg_newline, %esi
    call puts
    xor %eax, %eax
    out %al, $EXIT_PORT
    cli
6:  hlt
    jmp 6b

no_vmx:
    mov $msg_no_vmx, %esi
    call puts
    jmp fail

entry_failed:
    mov $msg_entry_failed, %esi
    call puts
    jmp fail

vmx_failed:
    mov $msg_vmx_failed, %esi
    call puts
    mov $0x4400, %eax
    vmread %eax, %eax                   /* VM-instruction error */
    call puthex
    mov $msg_newline, %esi
    call puts
fail:
    mov $1, %al
    out %al, $EXIT_PORT
    cli
    hlt

/* The guest: three instructions that exit, the last one for good. */
guest_code:
    xor %eax, %eax
    cpuid
    mov $0x42, %al
    out %al, $0x80
    hlt
    jmp guest_code

putc:
    push %edx
    push %eax
7:  mov $COM1 + 5, %dx
    in %dx, %al
    test $0x20, %al
    jz 7b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

puts:
    push %eax
8:  lodsb
    test %al, %al
    jz 9f
    call putc
    jmp 8b
9:  pop %eax
    ret

puthex:
    push %ecx
    push %edx
    mov %eax, %edx
    mov $8, %ecx
10: rol $4, %edx
    mov %edx, %eax
    and $0xf, %eax
    mov hex_digits(%eax), %al
    call putc
    loop 10b
    pop %edx
    pop %ecx
    ret

    .data
    .align 8
gdt:
    .quad 0
    .quad 0x00cf9a000000ffff            /* 0x08: 32-bit code */
    .quad 0x00cf92000000ffff            /* 0x10: data */
    .quad 0                             /* 0x18: TSS, filled in at start */
gdt_end:
gdt_pointer:
    .short gdt_end - gdt - 1
    .long gdt
    .align 8
vmxon_pointer:                          /* 64-bit physical addresses */
    .long vmxon_region, 0
vmcs_pointer:
    .long vmcs_region, 0
msr_base:    .long 0
exit_reason: .long 0
exit_count:  .long 0

    .section .rodata
hex_digits:       .ascii "0123456789abcdef"
msg_hello:        .asciz "vmx32: a plain VMX hypervisor kernel, not turtles\n"
msg_no_vmx:       .asciz "vmx32: no VMX\n"
msg_vmxon:        .asciz "vmx32: VMXON ok\n"
msg_launch:       .asciz "vmx32: VMLAUNCH\n"
msg_exit:         .asciz "vmx32: L2 exit reason=0x"
msg_entry_failed: .asciz "vmx32: VM entry failed\n"
msg_vmx_failed:   .asciz "vmx32: VMX instruction failed, VM-instruction error=0x"
msg_done:         .asciz "vmx32: L2 halted: done, exits=0x"
msg_newline:      .asciz "\n"

    .bss
    .align 4096
page_directory:
    .skip 4096
vmxon_region:
    .skip 4096
vmcs_region:
    .skip 4096
tss:
    .skip 4096
    .align 16
    .skip 8192
host_stack_top:
    .skip 4096
guest_stack_top:
