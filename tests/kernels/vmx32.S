/* vmx32: a plain VMX hypervisor kernel that is not turtles. Booted by multiboot1 in 32-bit
 * protected mode, it turns on 32-bit paging with 4 MiB pages and first checks the PC it
 * expects: the 8259s with the PIT's IRQ0 (through the APIC's virtual wire, as firmware leaves
 * it), then the 8259s masked and its local APIC in xAPIC mode (MMIO: version, a self-IPI, a
 * one-shot timer it sleeps on with HLT), the PIT (channel 2 gated through port 61h) and the
 * local APIC in x2APIC mode (MSRs: ID, version, a self-IPI, a periodic timer), and the
 * processor L0 shows (DEBUGCTL, PDCM, the PMU leaf, MTRRs, OSXSAVE, XSETBV, and a single-step
 * debug trap right after CPUID and OUT, which L0 emulates, an I/O breakpoint on an OUT and
 * a data breakpoint on a store L0 performs, and string I/O: REP OUTSB to COM1,
 * REP INSB forwards and backwards). Then it reads
 * the VMX capability MSRs, executes VMXON, builds a VMCS by hand for a 32-bit protected-mode
 * guest (no EPT, no unrestricted guest) that runs CPUID, OUT 0x80 and HLT, handles those
 * exits by advancing the guest's RIP and prints each exit reason on COM1. A second round
 * checks interrupts across levels: with external-interrupt exiting and "acknowledge
 * interrupt on exit", its own APIC timer fires while its guest spins (a VM exit with the
 * vector), and it injects vector 0x50 into the guest, whose handler reports through OUT.
 * A third round checks what a hypervisor gives its guest without exits: its VMREAD and
 * VMPTRST to an unmapped page take #PF with the right CR2 and error code; then, with I/O
 * and MSR bitmaps, COM1 and the MSR bitmap's MSRs are passed through (the guest prints a
 * line on COM1 itself, single-steps an IN from COM1 with the #DB right after it, and
 * increments IA32_STAR), CR0.TS is owned by this kernel with a read
 * shadow of 1 (the guest reads TS=1 and its CLTS exits), PAUSE and WBINVD exiting fire, and
 * clearing CR4.VMXE, which this kernel does not own, is a #GP in the guest as on hardware.
 * A fourth round gives the guest EPT: an identity map of the first GiB plus guest-physical
 * 0xc0000000 mapped to this kernel's own local APIC page (back in xAPIC mode), through
 * which the guest reads the APIC's version and ID, writes the TPR, reads all ones where
 * EPT12 maps an L1-physical page with nothing behind it (0xfed00000) and takes #UD calling
 * code there (all ones: FF FF), and sends a self-IPI
 * with the ICR; this kernel sees its TPR changed and the IPI arrive as an external-interrupt
 * exit. A fifth round arms the VMX-preemption timer far out and this kernel's APIC timer
 * near: the timer's interrupt must arrive as an external-interrupt exit while the guest
 * spins, long before the preemption timer would expire; then an INIT this kernel sends
 * itself is held while it is in VMX root operation and exits from its guest (reason 3). A
 * sixth round lets the guest take this kernel's interrupts itself: the APIC timer fires while
 * the guest has interrupts off and makes no exits, and must arrive right after the guest's STI
 * and the instruction after it. A seventh round intercepts #GP: the guest's clearing of
 * CR4.VMXE (which L0 performs for this kernel) must exit to it instead of faulting in the
 * guest. An eighth round has the guest do string I/O to ports this kernel passes through
 * (L0 performs it through the guest's paging and EPT12), with an EPT violation for this
 * kernel on the way. In
 * the device checks, an NMI sent to itself with the ICR is taken, and a second one its NMI
 * handler sends arrives right at the handler's IRET; and a load from a physical address with
 * neither RAM nor a device reads all ones.
 * It ends through port 0xf4. The tests run it as L1 on the turtles L0: every VMX
 * instruction, APIC and PIT access here is emulated by L0. */

    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00000003
    .set COM1, 0x3f8
    .set EXIT_PORT, 0xf4
    .set APIC, 0xfee00000                /* xAPIC registers (IA32_APIC_BASE at reset) */
    .set UNMAPPED_PDE, 1000              /* round 3 unmaps this 4 MiB page */
    .set UNMAPPED, UNMAPPED_PDE << 22

    /* Prints the string `msg`, then %eax in hex and a newline. */
    .macro REPORT msg
    push %eax
    mov $\msg, %esi
    call puts
    pop %eax
    call puthex
    mov $msg_newline, %esi
    call puts
    .endm

    /* VMREAD of `field`, reported after `msg`; anything but `expect` fails. */
    .macro EXPECT_FIELD field, expect, msg
    mov $\field, %eax
    vmread %eax, %eax
    mov %eax, %edi                      /* REPORT clobbers %eax */
    REPORT \msg
    cmp $\expect, %edi
    jne fail
    .endm

    /* VMREAD of `field` minus `base`, reported after `msg`; anything but 0 fails. */
    .macro EXPECT_OFFSET field, base, msg
    mov $\field, %eax
    vmread %eax, %eax
    sub $\base, %eax
    mov %eax, %edi
    REPORT \msg
    test %edi, %edi
    jnz fail
    .endm

    /* %eax reported after `msg`; anything but `expect` is a failed device check. */
    .macro EXPECT_EAX expect, msg
    mov %eax, %edi                      /* REPORT clobbers %eax */
    REPORT \msg
    cmp $\expect, %edi
    jne device_failed
    .endm

    /* The arithmetic flags (CF, PF, AF, ZF, SF, OF) in %eax bits 19:8, %al kept. */
    .macro FLAGS_ABOVE_AL
    pushf
    shll $8, (%esp)
    andl $0x8d500, (%esp)
    movzbl %al, %eax
    or (%esp), %eax
    add $4, %esp
    .endm

    /* WRMSR of `value` (low half; high half 0) to MSR `msr`. */
    .macro WRMSR32 msr, value
    mov $\msr, %ecx
    mov $\value, %eax
    xor %edx, %edx
    wrmsr
    .endm

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
    /* COM1: 115200 baud, 8 data bits, no parity, 1 stop bit (a firmware may leave the line
     * control register at its reset value, 5 data bits). */
    mov $COM1 + 3, %dx
    mov $0x80, %al                      /* DLAB */
    out %al, %dx
    mov $COM1, %dx
    mov $1, %al                         /* divisor 1 */
    out %al, %dx
    inc %dx
    xor %al, %al
    out %al, %dx
    mov $COM1 + 3, %dx
    mov $3, %al                         /* 8N1, DLAB off */
    out %al, %dx
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

    call device_tests

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

/* Every exit of the guest lands here with the host state loaded (and the guest's GPRs). */
vm_exit:
    mov %eax, guest_eax
    mov %ecx, guest_ecx
    mov %edx, guest_edx
    mov %edi, guest_edi
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
    cmp $12, %eax                       /* HLT: the end of a round */
    je l2_halted
    cmp $1, %eax                        /* external interrupt: round 2's timer */
    je l2_interrupt
    cmpl $2, phase
    je round3_exit
    cmpl $3, phase
    je round4_exit
    cmpl $4, phase
    je round5_exit
    cmpl $5, phase
    je round6_exit
    cmpl $6, phase
    je round7_exit
    cmpl $7, phase
    je round8_exit
    cmp $0x1e, %eax                     /* I/O: in round 2, from the injected handler */
    jne advance
    cmpl $1, phase
    jne advance
    mov guest_eax, %eax
    cmp $0x50, %al
    jne fail
    mov $msg_injected, %esi
    call puts
advance:
    mov $0x440c, %eax
    vmread %eax, %ebx                   /* VM-exit instruction length */
    mov $0x681e, %eax
    vmread %eax, %ecx                   /* guest RIP */
    add %ebx, %ecx
    mov $0x681e, %eax
    vmwrite %ecx, %eax
    vmresume
    jmp vmx_failed

/* Round 2: external-interrupt exiting with acknowledge-on-exit, this kernel's x2APIC timer
 * armed (one-shot, vector 0x44), and the guest spinning with nothing that exits. */
l2_halted:
    cmpl $0, phase
    jne round3
    movl $1, phase
    mov $msg_round2, %esi
    call puts
    ADJUST 0, 0x00000001                /* external-interrupt exiting */
    VMW 0x4000, %ebx
    ADJUST 2, 0x00008000                /* acknowledge interrupt on exit */
    VMW 0x400c, %ebx
    VMW 0x681e, $guest_spin             /* RIP */
    VMW 0x6820, $0x202                  /* RFLAGS.IF: an injected interrupt needs it */
    VMW 0x6818, $l2_idt                 /* IDTR base */
    VMW 0x4812, $(0x51 * 8 - 1)         /* IDTR limit: vectors 0-0x50 */
    WRMSR32 0x832, 0x44                 /* LVT timer: one-shot, vector 0x44 */
    WRMSR32 0x838, 300000               /* initial count */
    vmresume
    jmp vmx_failed

/* The timer's interrupt arrived as a VM exit: check the vector, EOI, inject 0x50. */
l2_interrupt:
    cmpl $3, phase
    je round4_interrupt
    cmpl $4, phase
    je round5_interrupt
    cmpl $5, phase
    je fail                             /* round 6 has no external-interrupt exiting */
    mov $0x4404, %eax
    vmread %eax, %ebx                   /* VM-exit interruption information */
    mov %ebx, %eax
    REPORT msg_intr_info
    cmp $0x80000044, %ebx               /* valid, external interrupt, vector 0x44 */
    jne fail
    WRMSR32 0x80b, 0                    /* x2APIC EOI */
    VMW 0x4016, $0x80000050             /* inject external interrupt 0x50 */
    vmresume
    jmp vmx_failed

/* Round 3: #PF for VMX memory operands, then pass-through and intercepts (see the top). */
round3:
    cmpl $1, phase
    jne round4
    movl $2, phase
    mov $msg_round3, %esi
    call puts
    call vmx_operand_faults
    /* I/O bitmaps: every port exits but COM1's eight; MSR bitmap: nothing exits. */
    mov $io_bitmap_a, %edi
    mov $0xffffffff, %eax
    mov $2048, %ecx
    rep stosl
    movb $0, io_bitmap_a + 0x3f8 / 8
    VMW 0x2000, $io_bitmap_a
    VMW 0x2001, $0
    VMW 0x2002, $io_bitmap_b
    VMW 0x2003, $0
    VMW 0x2004, $msr_bitmap
    VMW 0x2005, $0
    /* HLT, I/O bitmaps, MSR bitmaps, PAUSE exiting, secondary controls: WBINVD exiting. */
    ADJUST 1, 0xd2000080
    and $~0x01000000, %ebx              /* no unconditional I/O exiting: the bitmaps rule */
    VMW 0x4002, %ebx
    mov $0x48b, %ecx                    /* IA32_VMX_PROCBASED_CTLS2 */
    rdmsr
    mov $0x40, %ebx
    and %edx, %ebx
    cmp $0x40, %ebx
    jne fail
    VMW 0x401e, %ebx
    /* CR0.TS is this kernel's, its guest reads 1; CR4 is all the guest's. */
    VMW 0x6000, $8                      /* CR0 guest/host mask */
    VMW 0x6004, $8                      /* CR0 read shadow */
    VMW 0x6002, $0                      /* CR4 guest/host mask */
    mov %cr4, %ecx
    VMW 0x6006, %ecx                    /* CR4 read shadow */
    mov $0xc0000081, %ecx               /* IA32_STAR: the guest increments it */
    mov $0x12345677, %eax
    xor %edx, %edx
    wrmsr
    mov $13, %eax                       /* the guest's #GP handler */
    mov $l2_gp, %edx
    mov $l2_idt, %ebx
    call set_gate
    mov $1, %eax                        /* and its #DB handler */
    mov $l2_db, %edx
    call set_gate
    VMW 0x4016, $0                      /* nothing to inject */
    VMW 0x681e, $guest_round3           /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    vmresume
    jmp vmx_failed

/* Round 3's exits: OUT 0x80 (the only port that exits) reports AL, a CR access reports its
 * qualification; everything is stepped over. */
round3_exit:
    cmp $12, %eax
    je l2_halted
    cmp $0x1c, %eax
    je 2f
    cmp $0x1e, %eax
    jne advance
    mov $0x6400, %eax
    vmread %eax, %ebx                   /* exit qualification */
    shr $16, %ebx
    cmp $0x80, %ebx                     /* COM1 must never exit */
    jne fail
    mov guest_eax, %eax
    and $0xff, %eax
    mov %eax, %edi                      /* REPORT clobbers %eax */
    REPORT msg_round3_out
    cmp $8, %edi                        /* the first report: check IA32_STAR too */
    jne advance
    mov $0xc0000081, %ecx
    rdmsr
    REPORT msg_star
    jmp advance
2:  mov $0x6400, %eax
    vmread %eax, %eax
    REPORT msg_cr_access
    jmp advance

/* Round 4: EPT for the guest, with guest-physical 0xc0000000 mapped to this kernel's local
 * APIC page (issue 14, finding 5: on hardware the guest reaches the APIC). */
round4:
    cmpl $2, phase
    jne round5
    movl $3, phase
    mov $msg_round4, %esi
    call puts
    /* Back to xAPIC mode: x2APIC -> disabled -> xAPIC (SDM 11.12.5), then software-enable. */
    mov $0x1b, %ecx
    rdmsr
    and $~0xc00, %eax                   /* EN = EXTD = 0 */
    wrmsr
    or $0x800, %eax                     /* EN */
    wrmsr
    movl $0x1ff, APIC + 0xf0            /* SVR */
    /* EPT12: PML4 -> PDPT; PDPT[0] -> 512 2-MiB identity pages (write-back); PDPT[3] -> a PD
     * whose first table maps 0xc0000000 to the APIC page (uncacheable). */
    mov $ept_pml4, %edi
    xor %eax, %eax
    mov $(5 * 1024), %ecx
    rep stosl
    movl $(ept_pdpt + 7), ept_pml4
    movl $(ept_pd + 7), ept_pdpt
    movl $(ept_pd_hi + 7), ept_pdpt + 3 * 8
    movl $(ept_pt + 7), ept_pd_hi
    movl $(APIC + 7), ept_pt
    movl $(0xfed00000 + 7), ept_pt + 8  /* 0xc0001000: neither RAM nor a device of its */
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $0xb7, %eax                      /* RWX, memory type 6 (WB), 2-MiB page */
    mov %eax, ept_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
    VMW 0x201a, $(ept_pml4 + 0x1e)      /* EPTP: WB, 4-level walk */
    VMW 0x201b, $0
    mov $0x48b, %ecx                    /* IA32_VMX_PROCBASED_CTLS2: enable EPT (bit 1) */
    rdmsr
    mov $0x42, %ebx                     /* and WBINVD exiting, as in round 3 */
    and %edx, %ebx
    cmp $0x42, %ebx
    jne fail
    VMW 0x401e, %ebx
    VMW 0x4016, $0                      /* nothing to inject */
    mov $6, %eax                        /* the guest's #UD handler */
    mov $l2_ud, %edx
    mov $l2_idt, %ebx
    call set_gate
    VMW 0x681e, $guest_round4           /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    vmresume
    jmp vmx_failed

/* Round 4's exits: OUT 0x80 reports the guest's EAX; an EPT violation is a failure (the APIC
 * page must be reached, not reported). */
round4_exit:
    cmp $0x30, %eax
    je fail
    cmp $0x1e, %eax
    jne advance
    mov guest_eax, %eax
    REPORT msg_round4_out
    jmp advance

/* The guest's self-IPI through the ICR, as an external-interrupt exit: vector 0x45, and the
 * TPR the guest wrote is this kernel's. */
round4_interrupt:
    mov $0x4404, %eax
    vmread %eax, %ebx
    mov %ebx, %eax
    REPORT msg_intr_info
    cmp $0x80000045, %ebx
    jne fail
    movl $0, APIC + 0xb0                /* EOI */
    mov APIC + 0x80, %eax
    mov %eax, %edi                      /* REPORT clobbers %eax */
    REPORT msg_round4_tpr
    cmp $0x20, %edi
    jne fail
    movl $0, APIC + 0x80
    vmresume
    jmp vmx_failed

/* Round 5: the VMX-preemption timer armed far out, this kernel's APIC timer near, the guest
 * spinning: the timer's interrupt must be an external-interrupt exit (issue 14, finding 15). */
round5:
    cmpl $3, phase
    jne done
    movl $4, phase
    mov $msg_round5, %esi
    call puts
    ADJUST 0, 0x00000041                /* external-interrupt exiting, preemption timer */
    test $0x40, %ebx
    jz fail
    VMW 0x4000, %ebx
    VMW 0x482e, $0xffffffff             /* VMX-preemption timer value */
    movl $0xb, APIC + 0x3e0             /* divide by 1 */
    movl $0x46, APIC + 0x320            /* LVT timer: one-shot, vector 0x46 */
    movl $300000, APIC + 0x380          /* initial count */
    VMW 0x681e, $guest_spin             /* RIP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    vmresume
    jmp vmx_failed

round5_interrupt:
    mov $0x4404, %eax
    vmread %eax, %ebx
    mov %ebx, %eax
    REPORT msg_intr_info
    cmp $0x80000046, %ebx
    jne fail
    movl $0, APIC + 0xb0                /* EOI */
    /* INIT to itself: blocked in VMX root operation, then a VM exit as its guest resumes. */
    movl $0, APIC + 0x310
    movl $0x00004500, APIC + 0x300      /* ICR: INIT, level assert, physical, no shorthand */
    vmresume
    jmp vmx_failed

/* Round 5 ends with the INIT-signal exit (reason 3); anything else is a failure. */
round5_exit:
    cmp $3, %eax
    jne fail
    REPORT msg_init_exit

/* Round 6: no external-interrupt exiting, so this kernel's interrupts are its guest's to
 * take. The APIC timer fires while the guest has interrupts off and runs without exits; the
 * guest's OUT lets this kernel see the vector pending in its IRR; then the guest executes STI
 * and one more instruction, and the interrupt must arrive right there, as a bare processor
 * delivers it, with no exit in between (issue 14: an interrupt window). */
    movl $5, phase
    mov $msg_round6, %esi
    call puts
    ADJUST 0, 0                         /* no external-interrupt exiting, no timer */
    VMW 0x4000, %ebx
    mov $0x47, %eax
    mov $l2_isr6, %edx
    mov $l2_idt, %ebx
    call set_gate
    VMW 0x4016, $0                      /* nothing to inject */
    VMW 0x4824, $0                      /* interruptibility */
    VMW 0x4826, $0                      /* activity: active */
    VMW 0x681e, $guest_round6           /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS: interrupts off */
    movl $0x47, APIC + 0x320            /* LVT timer: one-shot, vector 0x47 */
    movl $1000, APIC + 0x380            /* initial count: fires during the guest's loop */
    vmresume
    jmp vmx_failed

/* Round 6's exits: OUT 0x80 with AL=0x60 (the guest's loop is over, interrupts still off):
 * the timer's vector must be pending in the IRR; then the guest's handler for 0x47 reports
 * 0x47000000 plus how far its return EIP is from where the interrupt belongs. */
round6_exit:
    cmp $0x1e, %eax
    jne fail
    mov guest_eax, %eax
    cmp $0x60, %al
    jne 1f
    mov APIC + 0x220, %eax              /* IRR, vectors 0x40-0x5f */
    and $0x80, %eax                     /* 0x47 */
    mov %eax, %edi
    REPORT msg_round6_irr
    test %edi, %edi
    jz fail
    jmp advance
1:  REPORT msg_round6_isr
    cmpl $0x47000000, guest_eax
    jne fail
    movl $0, APIC + 0xb0                /* EOI */

/* Round 7: #GP intercepted in the exception bitmap. The guest clears CR4.VMXE, which VMX
 * operation fixes to 1: L0 performs the MOV to CR4 for this kernel (it gave the guest all
 * of CR4) and the processor would raise #GP in the guest, so the #GP must be an exit to this
 * kernel (reason 0, intr-info 0x80000b0d, error code 0) at the MOV, not a #GP delivered to
 * the guest as in round 3. */
    movl $6, phase
    mov $msg_round7, %esi
    call puts
    VMW 0x4004, $(1 << 13)              /* exception bitmap: #GP */
    VMW 0x4824, $0                      /* interruptibility */
    VMW 0x681e, $guest_round7           /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    vmresume
    jmp vmx_failed

round7_exit:
    test %eax, %eax                     /* exception or NMI */
    jnz fail
    EXPECT_FIELD 0x4404, 0x80000b0d, msg_round7_info       /* VM-exit interruption info */
    EXPECT_FIELD 0x4406, 0, msg_round7_code                 /* and error code */
    EXPECT_OFFSET 0x681e, l2_cr4_write, msg_round7_rip      /* guest RIP: the faulting MOV */

/* Round 8: string I/O by the guest to ports this kernel passes through (COM1, and now the
 * master 8259's mask at 0x21): L0 performs it for this kernel through the guest's paging and
 * EPT12. REP OUTSB prints a line; REP INSB into guest-physical 0x40000000 + ins_buf2, which
 * EPT12 does not map yet, is an EPT violation for this kernel (a data write: qualification
 * 0x182, the guest-physical and guest-linear addresses, no item done); it maps the second GiB
 * onto the first and resumes, and the INSB completes. */
    movl $7, phase
    mov $msg_round8, %esi
    call puts
    VMW 0x4004, $0                      /* exception bitmap */
    andb $~0x02, io_bitmap_a + 0x21 / 8 /* port 0x21 passed through too */
    ADJUST 2, 0x00008004                /* exits save the debug controls (DR7) */
    VMW 0x400c, %ebx
    VMW 0x681e, $guest_round8           /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    vmresume
    jmp vmx_failed

round8_exit:
    cmp $0x30, %eax                     /* EPT violation */
    je 1f
    cmp $0x1e, %eax                     /* the guest's OUT 0x80: INSB done */
    jne fail
    mov guest_eax, %eax
    REPORT msg_round8_bytes
    cmpl $0xffffffff, guest_eax
    jne fail
    EXPECT_FIELD 0x681a, 0x408, msg_round8_dr7              /* saved guest DR7 */
    mov guest_ecx, %eax
    REPORT msg_round8_ecx
    cmpl $0, guest_ecx
    jne fail
    mov guest_edi, %eax
    sub $(0x40000000 + ins_buf2), %eax
    mov %eax, %edi
    REPORT msg_round8_edi
    cmp $4, %edi
    jne fail
    jmp done
1:  EXPECT_FIELD 0x6400, 0x182, msg_round8_qual            /* exit qualification */
    EXPECT_OFFSET 0x2400, (0x40000000 + ins_buf2), msg_round8_gpa /* guest-physical */
    EXPECT_OFFSET 0x640a, (0x40000000 + ins_buf2), msg_round8_gla /* guest-linear */
    mov guest_ecx, %eax
    REPORT msg_round8_ecx
    cmpl $4, guest_ecx
    jne fail
    movl $(ept_pd + 7), ept_pdpt + 8    /* EPT12: the second GiB aliases the first */
    mov guest_ecx, %ecx                 /* the guest's registers for its REP INSB again */
    mov guest_edx, %edx
    mov guest_edi, %edi
    vmresume
    jmp vmx_failed

/* VMREAD and VMPTRST with a destination on an unmapped page: #PF with CR2 and error code 2
 * (a supervisor write to a not-present page). */
vmx_operand_faults:
    lidt idt_pointer                    /* VM exits left IDTR at the host-state base (0) */
    mov $14, %eax
    mov $isr_pf, %edx
    mov $idt, %ebx
    call set_gate
    movl $0, page_directory + UNMAPPED_PDE * 4
    invlpg UNMAPPED
    mov $0x4402, %eax                   /* exit reason: any readable field */
    mov $UNMAPPED + 0x10, %ebx
    movl $vmread_faulted, pf_resume
    vmread %eax, (%ebx)
    jmp device_failed
vmread_faulted:
    mov pf_cr2, %eax
    REPORT msg_vmread_pf
    mov pf_error, %eax
    REPORT msg_pf_error
    mov $UNMAPPED + 0x20, %ebx
    movl $vmptrst_faulted, pf_resume
    vmptrst (%ebx)
    jmp device_failed
vmptrst_faulted:
    mov pf_cr2, %eax
    REPORT msg_vmptrst_pf
    mov pf_error, %eax
    REPORT msg_pf_error
    movl $(UNMAPPED | 0x83), page_directory + UNMAPPED_PDE * 4
    invlpg UNMAPPED
    ret

/* #PF: record CR2 and the error code, continue at pf_resume. */
isr_pf:
    popl pf_error
    push %eax
    mov %cr2, %eax
    mov %eax, pf_cr2
    mov pf_resume, %eax
    mov %eax, 4(%esp)                   /* the return EIP */
    pop %eax
    iret

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

/* The guest: three instructions that exit, the last one ends round 1. */
guest_code:
    xor %eax, %eax
    cpuid
    mov $0x42, %al
    out %al, $0x80
    hlt
    jmp guest_code

/* Round 2's guest: spins until an interrupt; its handler for the injected 0x50 reports and
 * halts. */
guest_spin:
    jmp guest_spin
l2_isr:
    mov $0x50, %al
    out %al, $0x80
    hlt
    jmp l2_isr

/* Round 3's guest: COM1 and IA32_STAR are its own, CR0.TS reads as L1's shadow, CLTS, PAUSE
 * and WBINVD exit, clearing CR4.VMXE faults. */
guest_round3:
    mov $msg_l2_com1, %esi
    call puts
    /* Single-step over an IN from COM1's line status, which L0 performs for this kernel:
     * the #DB comes right after it (l2_db reports 0x40 for "there, with DR6.BS"). */
    mov $0x3fd, %dx
    pushf
    orl $0x100, (%esp)
    popf                                /* TF traps after the next instruction */
    in %dx, %al
l2_stepped_in:
    nop
    mov $0xc0000081, %ecx
    rdmsr
    inc %eax
    wrmsr
    mov %cr0, %eax
    and $8, %eax                        /* CR0.TS as the guest sees it */
    out %al, $0x80
    clts
    pause
    wbinvd
    mov %cr4, %eax
    and $~0x2000, %eax
    mov %eax, %cr4                      /* #GP */
    jmp fail
/* Round 6's guest: a loop with interrupts off and nothing that exits, long enough for its
 * host's APIC timer to fire; an OUT for its host to look; then STI and one instruction, after
 * which the pending interrupt must be taken (at l2_sti_window). */
guest_round6:
    mov $2000000, %ecx
1:  loop 1b
    mov $0x60, %al
    out %al, $0x80
    sti
    nop
l2_sti_window:
    mov $0xee, %al                      /* the interrupt did not come: a failure */
    out %al, $0x80
    hlt
    jmp l2_sti_window
l2_isr6:
    mov (%esp), %eax
    sub $l2_sti_window, %eax
    or $0x47000000, %eax
    out %al, $0x80
    hlt
    jmp l2_isr6
/* Round 8's guest: REP OUTSB of a line to COM1, REP INSB of four bytes from port 0x21 into
 * guest-physical 0x40000000 + ins_buf2 (not in EPT12 at first), then OUT 0x80 with them. */
guest_round8:
    cld
    mov $msg_l2_outs, %esi
    mov $(msg_l2_outs_end - msg_l2_outs), %ecx
    mov $COM1, %dx
    rep outsb
    mov $0x21, %dx
    mov $(0x40000000 + ins_buf2), %edi
    mov $4, %ecx
    rep insb
    mov $0x408, %eax                    /* DR7: G1 (DR1 = 0, never hit), written natively */
    mov %eax, %dr7
    mov ins_buf2, %eax
    out %al, $0x80
    hlt
    jmp guest_round8
/* Round 7's guest: clears CR4.VMXE, a #GP its host intercepts. */
guest_round7:
    mov %cr4, %eax
    and $~0x2000, %eax
l2_cr4_write:
    mov %eax, %cr4
    mov $0xee, %al                      /* the MOV completed: a failure */
    out %al, $0x80
    hlt
    jmp guest_round7
/* Round 4's guest: this kernel's APIC through EPT12 at 0xc0000000. */
guest_round4:
    mov 0xc0000030, %eax                /* version */
    out %al, $0x80
    mov 0xc0000020, %eax                /* ID */
    out %al, $0x80
    movl $0x20, 0xc0000080              /* TPR */
    mov 0xc0000080, %eax
    out %al, $0x80
    movl $0x1234, 0xc0001000            /* nothing there: dropped */
    mov 0xc0001000, %eax                /* all ones */
    out %al, $0x80
    call 0xc0001000                     /* code there is all ones too: FF FF is #UD */
    movl $0x00040045, 0xc0000300        /* ICR: fixed, shorthand self, vector 0x45 */
    hlt
    jmp fail
/* The guest's #UD: reports the faulting EIP through OUT 0x80 and returns past the call. */
l2_ud:
    mov (%esp), %eax
    out %al, $0x80
    add $12, %esp                       /* EIP, CS, EFLAGS of the #UD */
    ret
/* The guest's #DB: AL = DR6.BS >> 8 (0x40), plus the distance from the instruction after
 * the stepped IN; reported through OUT 0x80; TF cleared for the return. */
l2_db:
    mov (%esp), %eax
    sub $l2_stepped_in, %eax
    mov %dr6, %ecx
    and $0x4000, %ecx
    shr $8, %ecx
    or %ecx, %eax
    out %al, $0x80
    andl $~0x100, 8(%esp)
    iret
l2_gp:
    mov $0x0d, %al
    out %al, $0x80
    hlt
    jmp l2_gp

/* The PC checks, before VMX. Interrupt gates for the test vectors, every other vector an
 * error. */
device_tests:
    xor %eax, %eax
1:  mov $unexpected_isr, %edx
    mov $idt, %ebx
    call set_gate
    inc %eax
    cmp $256, %eax
    jb 1b
    mov $0x40, %eax
    mov $isr_xapic_timer, %edx
    call set_gate
    mov $0x41, %eax
    mov $isr_xapic_ipi, %edx
    call set_gate
    mov $2, %eax
    mov $isr_nmi, %edx
    call set_gate
    mov $0x42, %eax
    mov $isr_x2apic_ipi, %edx
    call set_gate
    mov $0x43, %eax
    mov $isr_x2apic_timer, %edx
    call set_gate
    mov $0x50, %eax
    mov $l2_isr, %edx
    mov $l2_idt, %ebx
    call set_gate
    mov $0x20, %eax
    mov $isr_pit_irq0, %edx
    mov $idt, %ebx
    call set_gate
    lidt idt_pointer

    /* The 8259s (vectors 0x20/0x28) behind the APIC's virtual wire, as firmware leaves it,
     * and PIT channel 0 as a rate generator on IRQ0: three timer interrupts. */
    mov $0x11, %al                      /* ICW1: edge, cascade, ICW4 follows */
    out %al, $0x20
    out %al, $0xa0
    mov $0x20, %al                      /* ICW2: vector bases */
    out %al, $0x21
    mov $0x28, %al
    out %al, $0xa1
    mov $0x04, %al                      /* ICW3: slave on IRQ2 */
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xa1
    mov $0x01, %al                      /* ICW4: 8086 mode */
    out %al, $0x21
    out %al, $0xa1
    mov $0xff, %al
    out %al, $0xa1
    mov $0xfe, %al                      /* only IRQ0 */
    out %al, $0x21
    mov $0x34, %al                      /* channel 0, LSB then MSB, mode 2 */
    out %al, $0x43
    mov $0xa9, %al                      /* 1193 counts: 1 ms */
    out %al, $0x40
    mov $0x04, %al
    out %al, $0x40
4:  sti
    hlt
    cli
    cmpl $3, pit_irqs
    jb 4b
    mov pit_irqs, %eax
    REPORT msg_pit_irq0

    mov $0xff, %al                      /* both 8259s fully masked from now on */
    out %al, $0x21
    out %al, $0xa1

    /* xAPIC, through its MMIO page. */
    mov $0x1b, %ecx
    rdmsr
    REPORT msg_apic_base
    mov APIC + 0x30, %eax
    REPORT msg_xapic_version
    movl $0x1ff, APIC + 0xf0            /* SVR: software-enabled, spurious vector 0xff */
    movl $0x00040041, APIC + 0x300      /* ICR: fixed, shorthand self, vector 0x41 */
    sti
    nop
    cli
    cmpl $1, xapic_ipis
    jne device_failed
    mov $msg_xapic_ipi, %esi
    call puts
    /* An NMI to itself, taken even with interrupts off; its handler sends a second one,
     * which its NMI blocking holds until the IRET: it must arrive right there, before the
     * instruction the IRET returns to (isr_nmi records where each NMI interrupted). */
    movl $0, APIC + 0x310               /* ICR high: destination APIC ID 0, itself */
    movl $0x00004400, APIC + 0x300      /* ICR: NMI, physical, no shorthand */
nmi_sent:
    nop
    mov nmis, %eax
    REPORT msg_xapic_nmi
    cmpl $2, nmis
    jne device_failed
    mov nmi_eip, %eax
    sub $nmi_sent, %eax
    REPORT msg_nmi_eip
    cmpl $nmi_sent, nmi_eip
    jne device_failed
    /* Device-page instructions beyond MOV (issue 14): XCHG, the read-modify-write ALU ops
     * (one load, then one store), TEST and MOVSX on the APIC page, as the processor does
     * them. Interrupts are off, so the TPR values matter to nothing else. Stores are 32-bit
     * only: the SDM leaves narrower APIC register writes undefined. */
    movl $0x20, APIC + 0x80             /* TPR */
    mov $0x30, %eax
    xchg %eax, APIC + 0x80              /* %eax: the old TPR; TPR: 0x30 */
    shl $8, %eax
    mov APIC + 0x80, %al
    EXPECT_EAX 0x2030, msg_xapic_xchg
    orl $0x0f, APIC + 0x80              /* 0x3f */
    andl $~0x10, APIC + 0x80            /* 0x2f */
    mov $0x40, %ecx
    lock or %ecx, APIC + 0x80           /* 0x6f */
    movzbl APIC + 0x80, %eax
    EXPECT_EAX 0x6f, msg_xapic_or_and
    subl $0x70, APIC + 0x80             /* 0x6f - 0x70 = 0xffffffff: TPR 0xff; CF PF SF */
    mov APIC + 0x80, %al
    FLAGS_ABOVE_AL
    EXPECT_EAX 0x85ff, msg_xapic_sub
    addl $1, APIC + 0x80                /* 0xff + 1 = 0x100 (not 0: 32 bits): TPR 0; PF AF */
    mov APIC + 0x80, %al
    FLAGS_ABOVE_AL
    EXPECT_EAX 0x1400, msg_xapic_add
    xorl $0x5a, APIC + 0x80             /* 0x5a */
    movzbl APIC + 0x80, %eax
    shl $8, %eax
    lock xorl $0xff, APIC + 0x80        /* 0xa5 */
    mov APIC + 0x80, %al
    EXPECT_EAX 0x5aa5, msg_xapic_xor
    movl $0, APIC + 0x80
    stc                                 /* TEST clears CF */
    testl $0x100, APIC + 0xf0           /* SVR 0x1ff, software-enabled: ZF = 0 */
    setnz %al
    FLAGS_ABOVE_AL
    mov %eax, %ebx
    mov $0xff000000, %ecx
    test %ecx, APIC + 0x30              /* version 0x00050014: ZF = 1 */
    setz %al
    FLAGS_ABOVE_AL
    shl $16, %ebx
    or %ebx, %eax
    EXPECT_EAX 0x04014401, msg_xapic_test
    movsbl APIC + 0xf0, %eax            /* SVR bits 7:0, 0xff */
    EXPECT_EAX 0xffffffff, msg_xapic_movsbl
    movswl APIC + 0xf0, %eax            /* SVR bits 15:0, 0x01ff */
    EXPECT_EAX 0x000001ff, msg_xapic_movswl
    mov $0x12345678, %eax
    movsbw APIC + 0xf0, %ax             /* 16-bit destination: bits 31:16 kept */
    EXPECT_EAX 0x1234ffff, msg_xapic_movsbw
    /* Guest-physical 0xfed00000 has neither RAM nor a device on this PC (no HPET): a store
     * is dropped, a load reads all ones, as on a PC. */
    movl $0x12345678, 0xfed00000
    mov 0xfed00000, %eax
    mov %eax, %edi                      /* REPORT clobbers %eax */
    REPORT msg_unbacked
    cmp $0xffffffff, %edi
    jne device_failed
    movl $0xb, APIC + 0x3e0             /* divide by 1 */
    movl $0x40, APIC + 0x320            /* LVT timer: one-shot, vector 0x40 */
    movl $200000, APIC + 0x380          /* initial count */
    mov APIC + 0x390, %eax
    test %eax, %eax                     /* counting down */
    jz device_failed
    sti
    hlt                                 /* woken by the timer */
    cli
    cmpl $1, xapic_timers
    jne device_failed
    mov APIC + 0x390, %eax
    REPORT msg_xapic_timer

    /* PIT channel 2, mode 0, 1193 counts (1 ms), gate on through port 61h. */
    in $0x61, %al
    and $0xfc, %al
    or $0x01, %al
    out %al, $0x61
    mov $0xb0, %al                      /* channel 2, LSB then MSB, mode 0, binary */
    out %al, $0x43
    mov $0xa9, %al
    out %al, $0x42
    mov $0x04, %al
    out %al, $0x42
    rdtsc
    mov %eax, tsc_start
2:  in $0x61, %al
    test $0x20, %al                     /* channel 2's output: high at terminal count */
    jz 2b
    rdtsc
    sub tsc_start, %eax
    REPORT msg_pit

    /* x2APIC, through MSRs. */
    mov $0x1b, %ecx
    rdmsr
    or $0x400, %eax                     /* EXTD (EN is already set) */
    wrmsr
    mov $0x802, %ecx
    rdmsr
    REPORT msg_x2apic_id
    mov $0x803, %ecx
    rdmsr
    REPORT msg_x2apic_version
    WRMSR32 0x83f, 0x42                 /* SELF IPI, vector 0x42 */
    sti
    nop
    cli
    cmpl $1, x2apic_ipis
    jne device_failed
    mov $msg_x2apic_ipi, %esi
    call puts
    WRMSR32 0x83e, 0xb                  /* divide by 1 */
    WRMSR32 0x832, 0x20043              /* LVT timer: periodic, vector 0x43 */
    WRMSR32 0x838, 100000               /* initial count */
3:  sti
    hlt
    cli
    cmpl $3, x2apic_timers
    jb 3b
    WRMSR32 0x832, 0x10043              /* masked */
    WRMSR32 0x838, 0                    /* stopped */
    mov x2apic_timers, %eax
    REPORT msg_x2apic_timer
    jmp cpu_tests

/* The processor L0 shows: each CPUID feature works, its MSRs included (issue 14). */
cpu_tests:
    mov $0x1d9, %ecx                    /* IA32_DEBUGCTL: LBR | BTF, read back, then 0 */
    mov $3, %eax
    xor %edx, %edx
    wrmsr
    rdmsr
    REPORT msg_debugctl
    xor %eax, %eax
    wrmsr
    /* DR7 survives this kernel's exits to L0 (CPUID exits; a VM exit resets DR7 to 400H). */
    mov $0x402, %eax                    /* G0 (DR0 = 0, never hit) */
    mov %eax, %dr7
    xor %eax, %eax
    cpuid
    mov %dr7, %eax
    mov %eax, %edi
    REPORT msg_dr7
    cmp $0x402, %edi
    jne device_failed
    mov $0x400, %eax
    mov %eax, %dr7
    mov $1, %eax
    cpuid
    mov %ecx, %eax
    and $0x8000, %eax                   /* PDCM: then IA32_PERF_CAPABILITIES must read */
    jz 1f
    mov $0x345, %ecx
    rdmsr
    mov $0x8000, %eax
1:  REPORT msg_pdcm
    xor %eax, %eax
    cpuid
    cmp $0xa, %eax
    mov $0, %eax
    jb 2f
    mov $0xa, %eax                      /* architectural PMU version */
    xor %ecx, %ecx
    cpuid
    and $0xff, %eax
2:  REPORT msg_pmu
    mov $0xfe, %ecx                     /* IA32_MTRRCAP */
    rdmsr
    REPORT msg_mtrrcap
    mov $0x200, %ecx                    /* IA32_MTRR_PHYSBASE0: 2 GiB, WB; read back */
    mov $0x80000006, %eax
    xor %edx, %edx
    wrmsr
    rdmsr
    REPORT msg_mtrr_physbase0
    /* CPUID.1:ECX.OSXSAVE follows this level's CR4.OSXSAVE; XSETBV works. */
    mov $1, %eax
    cpuid
    mov %ecx, %eax
    and $0x0c000000, %eax               /* XSAVE | OSXSAVE */
    REPORT msg_osxsave
    mov %cr4, %eax
    or $0x40000, %eax                   /* CR4.OSXSAVE */
    mov %eax, %cr4
    mov $1, %eax
    cpuid
    mov %ecx, %eax
    and $0x0c000000, %eax
    REPORT msg_osxsave
    xor %ecx, %ecx
    mov $3, %eax                        /* XCR0 = x87 | SSE */
    xor %edx, %edx
    xsetbv
    xor %ecx, %ecx
    xgetbv
    REPORT msg_xcr0
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
    xsetbv
    mov %cr4, %eax
    and $~0x40000, %eax
    mov %eax, %cr4
    /* Single-stepping over instructions L0 emulates (CPUID, OUT to port 0x80): the debug
     * trap comes right after each, with DR6.BS; the second #DB clears TF. */
    mov $1, %eax
    mov $isr_db, %edx
    mov $idt, %ebx
    call set_gate
    pushf
    orl $0x100, (%esp)
    popf
    cpuid
step_cpuid:
    out %al, $0x80
step_out:
    nop
    mov db_count, %eax
    REPORT msg_db_count
    mov db_eips, %eax
    sub $step_cpuid, %eax
    REPORT msg_db_cpuid
    mov db_eips + 4, %eax
    sub $step_out, %eax
    REPORT msg_db_out
    mov db_dr6s, %eax
    and db_dr6s + 4, %eax
    and $0x4000, %eax
    REPORT msg_db_bs
    /* Breakpoints on accesses L0 performs: DR0 an I/O breakpoint on port 0x80 (R/W 10 with
     * CR4.DE), DR1 a 4-byte write breakpoint on the unbacked 0xfed00000. Each debug trap
     * comes right after its instruction with DR6.B0, then DR6.B1 (isr_db records both). */
    movl $0, db_count
    mov %cr4, %eax
    or $0x8, %eax                       /* CR4.DE */
    mov %eax, %cr4
    mov $0x80, %eax
    mov %eax, %dr0
    mov $0xfed00000, %eax
    mov %eax, %dr1
    mov $(0x1 | 0x4 | 0x2 << 16 | 0x1 << 20 | 0x3 << 22), %eax
    mov %eax, %dr7                      /* L0, L1; R/W0 10, LEN0 00; R/W1 01, LEN1 11 */
    out %al, $0x80
bp_out:
    movl $0, 0xfed00000
bp_store:
    xor %eax, %eax
    mov %eax, %dr7
    mov %cr4, %eax
    and $~0x8, %eax
    mov %eax, %cr4
    mov db_count, %eax
    REPORT msg_bp_count
    mov db_eips, %eax
    sub $bp_out, %eax
    REPORT msg_bp_out
    mov db_dr6s, %eax
    and $0xf, %eax
    REPORT msg_bp_dr6
    mov db_eips + 4, %eax
    sub $bp_store, %eax
    REPORT msg_bp_store
    mov db_dr6s + 4, %eax
    and $0xf, %eax
    REPORT msg_bp_dr6
    /* String I/O to ports L0 models: REP OUTSB of a line to COM1, REP INSB of three bytes
     * from the master 8259's mask (0xff: masked), then with DF set a backwards REP INSB. */
    cld
    mov $msg_outs, %esi
    mov $msg_outs_end - msg_outs, %ecx
    mov $COM1, %dx
    rep outsb
    mov $ins_buf, %edi
    mov $3, %ecx
    mov $0x21, %dx
    rep insb
    mov %ecx, %eax
    REPORT msg_ins_ecx
    mov %edi, %eax
    sub $ins_buf, %eax
    REPORT msg_ins_edi
    mov ins_buf, %eax
    REPORT msg_ins_bytes
    std
    mov $ins_buf + 7, %edi
    mov $2, %ecx
    rep insb
    cld
    mov %edi, %eax
    sub $ins_buf, %eax
    REPORT msg_ins_edi
    mov ins_buf + 4, %eax
    REPORT msg_ins_bytes
    ret

/* #DB (single steps, then breakpoints): records the EIP it returns to and DR6 (then clears
 * DR6); the second one clears the returning EFLAGS.TF. */
isr_db:
    push %eax
    push %ecx
    mov db_count, %ecx
    cmp $2, %ecx
    jae 1f
    mov 8(%esp), %eax
    mov %eax, db_eips(,%ecx,4)
    mov %dr6, %eax
    mov %eax, db_dr6s(,%ecx,4)
    xor %eax, %eax
    mov %eax, %dr6
1:  inc %ecx
    mov %ecx, db_count
    cmp $2, %ecx
    jb 2f
    andl $~0x100, 16(%esp)
2:  pop %ecx
    pop %eax
    iret

device_failed:
    mov $msg_device_failed, %esi
    call puts
    jmp fail

/* Interrupt gate for vector %eax to %edx in the IDT at %ebx (32-bit, present, DPL 0). */
set_gate:
    mov %edx, %ecx
    and $0xffff, %ecx
    or $0x00080000, %ecx                /* code selector 0x08 */
    mov %ecx, (%ebx,%eax,8)
    mov %edx, %ecx
    and $0xffff0000, %ecx
    or $0x8e00, %ecx
    mov %ecx, 4(%ebx,%eax,8)
    ret

isr_pit_irq0:
    incl pit_irqs
    push %eax
    mov $0x20, %al                      /* non-specific EOI to the master 8259 */
    out %al, $0x20
    pop %eax
    iret

isr_xapic_ipi:
    incl xapic_ipis
    movl $0, APIC + 0xb0                /* EOI */
    iret

isr_nmi:
    incl nmis
    push %eax
    mov 4(%esp), %eax                   /* where the NMI interrupted */
    mov %eax, nmi_eip
    cmpl $1, nmis
    jne 1f
    movl $0x00004400, APIC + 0x300      /* a second NMI, while this one blocks NMIs */
1:  pop %eax
    iret

isr_xapic_timer:
    incl xapic_timers
    movl $0, APIC + 0xb0
    iret

isr_x2apic_ipi:
    incl x2apic_ipis
    jmp x2apic_eoi

isr_x2apic_timer:
    incl x2apic_timers
x2apic_eoi:
    push %eax
    push %ecx
    push %edx
    WRMSR32 0x80b, 0                    /* EOI */
    pop %edx
    pop %ecx
    pop %eax
    iret

unexpected_isr:
    mov $msg_unexpected, %esi
    call puts
    jmp fail

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
idt_pointer:
    .short 256 * 8 - 1
    .long idt
msr_base:    .long 0
exit_reason: .long 0
exit_count:  .long 0
guest_eax:   .long 0
guest_ecx:   .long 0
guest_edx:   .long 0
guest_edi:   .long 0
phase:       .long 0
tsc_start:   .long 0
pit_irqs:    .long 0
xapic_ipis:  .long 0
nmis:        .long 0
nmi_eip:     .long 0
xapic_timers: .long 0
x2apic_ipis: .long 0
x2apic_timers: .long 0
pf_cr2:      .long 0
db_count:    .long 0
db_eips:     .long 0, 0
db_dr6s:     .long 0, 0
ins_buf:     .long 0, 0
ins_buf2:    .long 0
pf_error:    .long 0
pf_resume:   .long 0

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
msg_apic_base:    .asciz "vmx32: IA32_APIC_BASE=0x"
msg_pit_irq0:     .asciz "vmx32: PIT IRQ0 through the 8259 and the APIC's virtual wire: interrupts=0x"
msg_xapic_version: .asciz "vmx32: xAPIC version=0x"
msg_xapic_ipi:    .asciz "vmx32: xAPIC self-IPI delivered\n"
msg_xapic_nmi:    .asciz "vmx32: xAPIC NMI IPIs to itself taken (the second sent in the first's handler)=0x"
msg_xapic_xchg:   .asciz "vmx32: xAPIC xchg %eax (0x30) with TPR 0x20: old TPR in %eax, new TPR=0x"
msg_xapic_or_and: .asciz "vmx32: xAPIC TPR after orl $0x0f, andl $~0x10, lock or %ecx (0x40)=0x"
msg_xapic_sub:    .asciz "vmx32: xAPIC subl $0x70 from TPR 0x6f: flags, TPR=0x"
msg_xapic_add:    .asciz "vmx32: xAPIC addl $1 to TPR 0xff: flags, TPR=0x"
msg_xapic_xor:  .asciz "vmx32: xAPIC TPR after xorl $0x5a to 0, then lock xorl $0xff=0x"
msg_xapic_test:   .asciz "vmx32: xAPIC testl $0x100 on SVR (flags, setnz), test %ecx (0xff000000) on the version (flags, setz)=0x"
msg_xapic_movsbl: .asciz "vmx32: xAPIC movsbl of SVR=0x"
msg_xapic_movswl: .asciz "vmx32: xAPIC movswl of SVR=0x"
msg_xapic_movsbw: .asciz "vmx32: xAPIC movsbw of SVR into 0x12345678=0x"
msg_unbacked:     .asciz "vmx32: load from unbacked guest-physical 0xfed00000 after a store=0x"
msg_nmi_eip:      .asciz "vmx32: the second NMI interrupted at the first's return point, EIP - it=0x"
msg_init_exit:    .asciz "vmx32: INIT to itself, held in VMX root operation: L2 exit reason=0x"
msg_xapic_timer:  .asciz "vmx32: xAPIC one-shot timer woke HLT, current count=0x"
msg_pit:          .asciz "vmx32: PIT channel 2 reached 1193 counts, TSC ticks=0x"
msg_x2apic_id:    .asciz "vmx32: x2APIC id=0x"
msg_x2apic_version: .asciz "vmx32: x2APIC version=0x"
msg_x2apic_ipi:   .asciz "vmx32: x2APIC self-IPI delivered\n"
msg_x2apic_timer: .asciz "vmx32: x2APIC periodic timer interrupts=0x"
msg_debugctl:     .asciz "vmx32: IA32_DEBUGCTL=0x"
msg_dr7:          .asciz "vmx32: DR7 after an exit to L0=0x"
msg_outs:         .ascii "vmx32: REP OUTSB reached COM1\n"
msg_outs_end:
msg_ins_ecx:      .asciz "vmx32: REP INSB from port 0x21: ECX after=0x"
msg_ins_edi:      .asciz "vmx32: REP INSB: EDI - buffer=0x"
msg_ins_bytes:    .asciz "vmx32: REP INSB: bytes=0x"
msg_db_count:     .asciz "vmx32: single-step #DBs=0x"
msg_db_cpuid:     .asciz "vmx32: #DB after CPUID, EIP - next instruction=0x"
msg_db_out:       .asciz "vmx32: #DB after OUT, EIP - next instruction=0x"
msg_db_bs:        .asciz "vmx32: DR6.BS in both=0x"
msg_bp_count:     .asciz "vmx32: breakpoint #DBs=0x"
msg_bp_out:       .asciz "vmx32: I/O breakpoint #DB after OUT, EIP - next instruction=0x"
msg_bp_store:     .asciz "vmx32: write breakpoint #DB after the store, EIP - next instruction=0x"
msg_bp_dr6:       .asciz "vmx32: DR6.B3-B0=0x"
msg_pdcm:         .asciz "vmx32: CPUID PDCM (then PERF_CAPABILITIES read)=0x"
msg_pmu:          .asciz "vmx32: CPUID architectural PMU version=0x"
msg_mtrrcap:      .asciz "vmx32: IA32_MTRRCAP=0x"
msg_mtrr_physbase0: .asciz "vmx32: IA32_MTRR_PHYSBASE0=0x"
msg_osxsave:      .asciz "vmx32: CPUID XSAVE|OSXSAVE=0x"
msg_xcr0:         .asciz "vmx32: XCR0 after XSETBV=0x"
msg_device_failed: .asciz "vmx32: device check failed\n"
msg_unexpected:   .asciz "vmx32: unexpected interrupt\n"
msg_round2:       .asciz "vmx32: round 2: L1 timer interrupt while L2 runs\n"
msg_intr_info:    .asciz "vmx32: external-interrupt exit, intr-info=0x"
msg_injected:     .asciz "vmx32: L2 took the injected vector 0x50\n"
msg_round3:       .asciz "vmx32: round 3: operand faults, pass-through, intercepts\n"
msg_vmread_pf:    .asciz "vmx32: VMREAD to an unmapped page: #PF, CR2=0x"
msg_vmptrst_pf:   .asciz "vmx32: VMPTRST to an unmapped page: #PF, CR2=0x"
msg_pf_error:     .asciz "vmx32: #PF error code=0x"
msg_l2_com1:      .asciz "vmx32: L2 wrote this line to COM1 itself\n"
msg_round3_out:   .asciz "vmx32: round 3 OUT 0x80, al=0x"
msg_star:         .asciz "vmx32: IA32_STAR after L2's RDMSR/WRMSR=0x"
msg_cr_access:    .asciz "vmx32: CR access exit, qualification=0x"
msg_round4:       .asciz "vmx32: round 4: L2 reaches L1's local APIC through EPT12\n"
msg_round4_out:   .asciz "vmx32: round 4 OUT 0x80, eax=0x"
msg_round4_tpr:   .asciz "vmx32: L1's TPR after L2's write=0x"
msg_round5:       .asciz "vmx32: round 5: L1 timer interrupt with L1's preemption timer armed\n"
msg_round6:       .asciz "vmx32: round 6: L1 timer interrupt while L2 has interrupts off, taken after STI\n"
msg_round6_irr:   .asciz "vmx32: round 6: vector 0x47 pending in L1's IRR while L2 has IF=0: 0x"
msg_round7:       .asciz "vmx32: round 7: a #GP its host intercepts, raised by an instruction L0 performs\n"
msg_round7_info:  .asciz "vmx32: round 7: exception exit, intr-info=0x"
msg_round7_code:  .asciz "vmx32: round 7: error code=0x"
msg_round7_rip:   .asciz "vmx32: round 7: guest RIP - the MOV to CR4=0x"
msg_round8:       .asciz "vmx32: round 8: L2's string I/O to ports it passes through, through EPT12\n"
msg_l2_outs:      .ascii "vmx32: L2 wrote this line with REP OUTSB\n"
msg_l2_outs_end:
msg_round8_qual:  .asciz "vmx32: round 8: EPT violation in L2's REP INSB, qualification=0x"
msg_round8_gpa:   .asciz "vmx32: round 8: guest-physical - the INSB target=0x"
msg_round8_gla:   .asciz "vmx32: round 8: guest-linear - the INSB target=0x"
msg_round8_ecx:   .asciz "vmx32: round 8: L2's ECX=0x"
msg_round8_bytes: .asciz "vmx32: round 8: bytes L2's REP INSB read from port 0x21=0x"
msg_round8_dr7:   .asciz "vmx32: round 8: L2's DR7 as its exit saved it=0x"
msg_round8_edi:   .asciz "vmx32: round 8: L2's EDI - the INSB target=0x"
msg_round6_isr:   .asciz "vmx32: round 6: L2 took 0x47, return EIP - after STI's next instruction: 0x"

    .bss
    .align 4096
page_directory:
    .skip 4096
idt:
    .skip 256 * 8
l2_idt:
    .skip 0x51 * 8                      /* vectors 0-0x50 (round 2 sets the limit) */
    .align 4096                         /* VMXON region and VMCS: 4 KiB aligned */
vmxon_region:
    .skip 4096
vmcs_region:
    .skip 4096
io_bitmap_a:
    .skip 4096
io_bitmap_b:
    .skip 4096
msr_bitmap:
    .skip 4096
tss:
    .skip 4096
ept_pml4:                               /* round 4's EPT12, five tables in a row */
    .skip 4096
ept_pdpt:
    .skip 4096
ept_pd:
    .skip 4096
ept_pd_hi:
    .skip 4096
ept_pt:
    .skip 4096
    .align 16
    .skip 8192
host_stack_top:
    .skip 4096
guest_stack_top:
