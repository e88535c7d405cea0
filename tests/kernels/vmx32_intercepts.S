/* vmx32_intercepts: a plain VMX hypervisor kernel (not turtles) that checks, one case at a
 * time, each VM-execution control its VMX capability MSRs offer for intercepting an
 * instruction, end to end: with the control set, its 32-bit guest's instruction exits with
 * the right exit reason, qualification, instruction information and length, and the guest
 * resumes after it; with the control clear, the instruction runs in the guest without an exit
 * (or, for the RDTSCP, INVPCID and XSAVES enables, takes #UD in the guest as on hardware).
 * XSAVES exits only for state components set in IA32_XSS as well as in the XSS-exiting
 * bitmap and EDX:EAX; IA32_XSS is 0 here (Bochs has no supervisor state), so with the bitmap
 * all ones it still runs in the guest. Every case
 * ends with the guest's VMCALL; the guest's #UD and #GP handlers put the vector in EDI and
 * VMCALL too. Then, with EPT (identity, 2 MiB pages, accessed/dirty flags): page-modification
 * logging (the guest writes four pages of a 4 KiB-mapped region; three are logged, the fourth
 * write is a PML-full exit; after the index is reset it is logged; a page whose EPT flags this
 * kernel clears without INVEPT is flagged and logged again when written) and VMFUNC 0 (EPTP
 * switching between two EPTs that map one guest-physical page differently; an invalid index
 * is a VMFUNC exit), then an EPT whose root is where there is no RAM (a misconfiguration, as
 * all ones is). Then, when offered, "use TPR shadow": the VM-entry checks of its
 * virtual-APIC address and TPR threshold against VTPR, and an entry that passes them (the
 * 32-bit guest cannot use CR8, which exists only in 64-bit mode). Then, when offered, VMCS
 * shadowing (the guest's VMREAD/VMWRITE on a shadow VMCS) and the APIC-access page (the
 * guest's TPR reads and writes virtualized, other registers APIC-access exits). Then the
 * MSR lists: a VM-entry MSR-load list the guest sees, a VM-exit MSR-store list that saves the
 * guest's MSRs (IA32_TSC as at the exit), a VM-exit MSR-load list that restores this
 * kernel's, and an entry whose load list has a value WRMSR refuses (a VM-entry failure,
 * reason 34, after which the exit's load list still runs). Last, WRMSR to IA32_TSC by this
 * kernel and by its guest, and by this kernel again before its guest reads the TSC.
 * Booted by multiboot1; it ends through port 0xf4 (0 = every case ran).
 * The tests run it as L1 on the turtles L0 (tests/nested_intercepts.rs), where L0 emulates
 * all of it; its output equals bare Bochs' but where the notes there say. */

    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00000003
    .set COM1, 0x3f8
    .set EXIT_PORT, 0xf4
    .set PML_PAGES, 0x00800000           /* PML: four guest pages mapped 4 KiB by EPT */
    .set PROBE, 0x01000000               /* VMFUNC: EPT 0 maps it to itself ... */
    .set PROBE_ALT, 0x01200000           /* ... and EPT 1 to here */
    .set EPT_RWX, 0x7
    .set EPT_LEAF_2M, 0x80 | 0x30 | 0x7  /* large page, WB, RWX */
    .set EPT_AD, 0x300                   /* accessed and dirty flags */
    .set EPTP_FLAGS, 0x5e                /* WB, 4-level walk, accessed/dirty flags on */

    /* VMWRITE `value` (an immediate, register or symbol) to VMCS field `field`. */
    .macro VMW field, value
    mov $\field, %eax
    mov \value, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    .endm

    /* %ebx = VMREAD of VMCS field `field`. */
    .macro VMR field
    mov $\field, %eax
    vmread %eax, %ebx
    jbe vmx_failed
    .endm

    /* Prints the string `msg`, then %eax in hex (no newline). */
    .macro SHOW msg
    push %eax
    mov $\msg, %esi
    call puts
    pop %eax
    call puthex
    .endm

    /* %ebx = (want | allowed0) & allowed1 of the control MSR at msr_base + \offset. */
    .macro ADJUST offset, want
    mov msr_base, %ecx
    add $\offset, %ecx
    rdmsr
    mov \want, %ebx
    or %eax, %ebx
    and %edx, %ebx
    .endm

    /* One access of the shadow sweep's guest (l2_sweep), from its start: VMREAD (23) or
     * VMWRITE (25) of sweep_field; sweep_reason is its first exit's reason (18: none before
     * the closing VMCALL). */
    .macro SWEEP_ACCESS op
    movl $\op, sweep_op
    movl $18, sweep_reason
    VMW 0x4400, $0
    VMW 0x681e, $l2_sweep
    VMW 0x681c, $guest_stack_top
    movl $sweep_back\@, after_guest_jump
    call enter
    jmp vmx_failed
sweep_back\@:
    .endm

    /* A shadow-sweep check (number `check`): `got` must equal `want`. */
    .macro SWEEP_EXPECT got, want, check
    mov \got, %eax
    mov \want, %ecx
    cmp %ecx, %eax
    je sweep_ok\@
    mov $\check, %edx
    call sweep_mismatch
sweep_ok\@:
    .endm

    /* A supported field: `got` must equal `want`. An unsupported one (`flags` of this
     * kernel's own access nonzero), with a link pointer: VM-instruction error 12. */
    .macro SWEEP_VALUE got, want, flags, check
    cmpl $0, sweep_good
    je sweep_error\@
    SWEEP_EXPECT \got, \want, \check
    jmp sweep_value_done\@
sweep_error\@:
    cmpl $0xffffffff, sweep_link
    je sweep_value_done\@
    cmpl $0, \flags
    je sweep_value_done\@
    VMR 0x4400
    SWEEP_EXPECT %ebx, $12, \check
sweep_value_done\@:
    .endm

    /* One case: name, primary and secondary controls it sets, the guest code, and flags. */
    .macro CASE name, p1, p2, code, flags=0
    .long \name, \p1, \p2, \code, \flags
    .endm
    .set CASE_SIZE, 20

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
    mov $1, %eax                        /* CPUID.1:ECX.VMX */
    cpuid
    test $0x20, %ecx
    jz fail

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

    /* The guest's IDT: #UD and #GP report their vector through VMCALL. */
    mov $6, %eax
    mov $l2_ud, %edx
    call set_gate
    mov $13, %eax
    mov $l2_gp, %edx
    call set_gate

    /* IA32_VMX_BASIC: revision identifier; bit 55 says the TRUE control MSRs exist. */
    mov $0x480, %ecx
    rdmsr
    mov %eax, vmxon_region
    mov %eax, vmcs_region
    movl $0x481, msr_base
    test $0x00800000, %edx
    jz 3f
    movl $0x48d, msr_base
3:  mov $0x48b, %ecx                    /* IA32_VMX_PROCBASED_CTLS2: what may be 1 */
    rdmsr
    mov %edx, allowed2
    mov %edx, %eax
    SHOW msg_allowed2
    call newline
    mov msr_base, %ecx
    inc %ecx                            /* (TRUE_)PROCBASED_CTLS */
    rdmsr
    mov %edx, allowed1
    mov %edx, %eax
    SHOW msg_allowed1
    call newline

    /* CR4.OSXSAVE and XCR0 = x87 | SSE when the CPU has XSAVE, for the XSAVES cases (the
     * guest's CR4 is this kernel's). */
    mov $1, %eax
    cpuid
    test $0x04000000, %ecx
    jz 4f
    mov %cr4, %eax
    or $0x40000, %eax
    mov %eax, %cr4
    xor %ecx, %ecx
    mov $3, %eax
    xor %edx, %edx
    xsetbv
4:  vmxon vmxon_pointer
    jbe vmx_failed
    vmclear vmcs_pointer
    jbe vmx_failed
    vmptrld vmcs_pointer
    jbe vmx_failed
    call build_vmcs

    /* The cases, each from a clean guest. */
    movl $cases, case_ptr
next_case:
    mov case_ptr, %ebp
    cmp $cases_end, %ebp
    jae ept_tests
    mov (%ebp), %esi
    push %esi
    mov $msg_case, %esi
    call puts
    pop %esi
    call puts
    /* Offered? Every bit the case sets must be allowed. */
    mov 4(%ebp), %eax
    and allowed1, %eax
    cmp 4(%ebp), %eax
    jne not_offered
    mov 8(%ebp), %eax
    and allowed2, %eax
    cmp 8(%ebp), %eax
    jne not_offered
    call newline
    mov 4(%ebp), %edi
    or $0x80000000, %edi                /* activate secondary controls */
    ADJUST 1, %edi
    VMW 0x4002, %ebx
    mov 8(%ebp), %ebx
    VMW 0x401e, %ebx
    mov 12(%ebp), %ebx
    VMW 0x681e, %ebx                    /* RIP */
    VMW 0x681c, $guest_stack_top        /* RSP */
    VMW 0x6820, $0x2                    /* RFLAGS */
    testl $1, 16(%ebp)                  /* flag 1: with interrupts enabled */
    jz 4f
    VMW 0x6820, $0x202
4:  xor %edi, %edi                      /* flag 4: XSS-exiting bitmap all ones */
    testl $4, 16(%ebp)
    jz 5f
    mov $0xffffffff, %edi
5:  VMW 0x202c, %edi
    VMW 0x202d, %edi
    xor %edi, %edi                      /* flag 2: TSC offset 2^32 */
    testl $2, 16(%ebp)
    jz 6f
    mov $1, %edi
6:  VMW 0x2010, $0
    VMW 0x2011, %edi
    VMW 0x4020, $0xffffffff             /* PLE gap: every PAUSE is one loop */
    VMW 0x4022, $0                      /* PLE window: the second PAUSE exits */
    call enter
    jmp vmx_failed
not_offered:
    mov $msg_not_offered, %esi
    call puts
    addl $CASE_SIZE, case_ptr
    jmp next_case

/* VMLAUNCH the first time, VMRESUME after; returns only if it failed. */
enter:
    cmpl $0, launched
    jne 1f
    movl $1, launched
    vmlaunch
    ret
1:  vmresume
    ret

/* Every exit of the guest lands here with the host state loaded (and the guest's GPRs). */
vm_exit:
    mov %eax, guest_eax
    mov %ecx, guest_ecx
    mov %edx, guest_edx
    mov %edi, guest_edi
    VMR 0x4402                          /* exit reason */
    mov %ebx, exit_reason
    test $0x80000000, %ebx
    jnz entry_failed
    cmpl $0, sweeping
    jne sweep_exit
    cmp $18, %ebx                       /* VMCALL: the end of a case */
    je case_done
    cmp $44, %ebx                       /* APIC access: no instruction length */
    je apic_access_exit
    mov %ebx, %eax
    SHOW msg_exit
    VMR 0x6400
    mov %ebx, %eax
    SHOW msg_qual
    VMR 0x440e
    mov %ebx, %eax
    SHOW msg_info
    VMR 0x440c
    mov %ebx, %eax
    SHOW msg_len
    call newline
    mov exit_reason, %eax
    cmp $62, %eax                       /* PML full */
    je pml_full
    cmp $49, %eax                       /* EPT misconfiguration */
    je ept_misconfig
    cmp $37, %eax                       /* monitor trap flag: after the instruction */
    je resume
    cmp $7, %eax                        /* interrupt window: before any instruction */
    je close_window
    mov case_ptr, %ebp                  /* flag 8: the first exit clears the secondary */
    cmp $cases_end, %ebp                /* controls */
    jae 1f
    testl $8, 16(%ebp)
    jz 1f
    VMW 0x401e, $0
1:    VMR 0x440c                          /* fault-like: step over the instruction */
    mov %ebx, %edx
    VMR 0x681e
    add %edx, %ebx
    VMW 0x681e, %ebx
resume:
    call enter
    jmp vmx_failed
apic_access_exit:
    mov %ebx, %eax
    SHOW msg_exit
    VMR 0x6400
    mov %ebx, %eax
    SHOW msg_qual
    call newline
    VMR 0x681e
    add $5, %ebx
    VMW 0x681e, %ebx
    jmp resume
close_window:
    ADJUST 1, $0x80000000
    VMW 0x4002, %ebx
    jmp resume

case_done:
    mov guest_edi, %eax
    SHOW msg_vmcall
    call newline
    mov case_ptr, %ebp
    cmp $cases_end, %ebp
    jae 1f
    testl $2, 16(%ebp)                  /* TSC offset: the guest's EDI is its TSC's EDX */
    jz 1f
    rdtsc
    mov guest_edi, %eax
    sub %edx, %eax
    SHOW msg_tsc
    call newline
1:    cmpl $cases_end, case_ptr
    jae after_guest
    addl $CASE_SIZE, case_ptr
    jmp next_case

/* EPT for the guest: identity with 2 MiB pages (accessed and dirty already set) for the
 * first GiB, except PML_PAGES' 2 MiB, mapped by 4 KiB pages with both flags clear. */
ept_tests:
    mov $msg_ept, %esi
    call puts
    mov $ept_pdpt + EPT_RWX, %eax
    mov %eax, ept_pml4
    mov $ept_pd + EPT_RWX, %eax
    mov %eax, ept_pdpt
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $21, %eax
    or $EPT_LEAF_2M | EPT_AD, %eax
    mov %eax, ept_pd(,%ecx,8)
    mov %eax, ept1_pd(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 1b
    mov $ept_pt + EPT_RWX, %eax
    mov %eax, ept_pd + (PML_PAGES >> 21) * 8
    mov %eax, ept1_pd + (PML_PAGES >> 21) * 8
    xor %ecx, %ecx
2:  mov %ecx, %eax
    shl $12, %eax
    add $PML_PAGES, %eax
    or $0x30 | EPT_RWX, %eax            /* WB, RWX, accessed/dirty clear */
    mov %eax, ept_pt(,%ecx,8)
    inc %ecx
    cmp $512, %ecx
    jb 2b
    /* EPT 1: the same, but PROBE's 2 MiB is PROBE_ALT's. */
    mov $ept1_pdpt + EPT_RWX, %eax
    mov %eax, ept1_pml4
    mov $ept1_pd + EPT_RWX, %eax
    mov %eax, ept1_pdpt
    movl $PROBE_ALT | EPT_LEAF_2M | EPT_AD, ept1_pd + (PROBE >> 21) * 8
    movl $0x11, PROBE
    movl $0x22, PROBE_ALT

    /* PML: the guest writes the four pages with index 2; the fourth write is PML full. */
    mov allowed2, %eax                  /* EPT and PML */
    and $0x00020002, %eax
    cmp $0x00020002, %eax
    jne 3f
    mov $msg_pml, %esi
    call puts
    VMW 0x201a, $ept_pml4 + EPTP_FLAGS
    VMW 0x201b, $0
    VMW 0x200e, $pml_page
    VMW 0x200f, $0
    VMW 0x0812, $2                      /* PML index */
    ADJUST 1, $0x80000000
    VMW 0x4002, %ebx
    VMW 0x401e, $0x00020002
    VMW 0x681e, $l2_pml
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    call enter
    jmp vmx_failed
3:  mov $msg_no_pml, %esi
    call puts
    jmp vmfunc_test

/* PML full: the three logged addresses and the index, then index 511 and the write again. */
pml_full:
    VMR 0x0812
    mov %ebx, %eax
    SHOW msg_pml_index
    call newline
    mov pml_page + 16, %eax
    SHOW msg_pml_entry2
    mov pml_page + 8, %eax
    SHOW msg_pml_entry1
    mov pml_page, %eax
    SHOW msg_pml_entry0
    call newline
    VMW 0x0812, $511
    movl $pml_checked, after_guest_jump
    jmp resume

/* Back from a guest that ended with VMCALL outside the case table. */
after_guest:
    jmp *after_guest_jump

pml_checked:
    VMR 0x0812
    mov %ebx, %eax
    SHOW msg_pml_index
    mov pml_page + 511 * 8, %eax
    SHOW msg_pml_entry511
    call newline
    mov ept_pt, %eax                    /* the first page's EPT entry: accessed, dirty */
    and $EPT_AD, %eax
    SHOW msg_pml_ad
    mov ept_pt + 4 * 8, %eax            /* a page never written: neither */
    and $EPT_AD, %eax
    SHOW msg_pml_ad
    call newline
    /* This kernel clears the first page's EPT accessed and dirty flags without INVEPT and
     * the guest writes the page again. A processor that walks the EPT again (Bochs does at
     * every VM entry) sets both flags and logs the page, at index 510; one that kept the
     * translation cached would not (SDM 29.4.3.1 allows either). */
    andl $~EPT_AD, ept_pt
    VMW 0x681e, $l2_pml_again
    movl $pml_again_checked, after_guest_jump
    jmp resume
pml_again_checked:
    VMR 0x0812
    mov %ebx, %eax
    SHOW msg_pml_index
    mov pml_page + 510 * 8, %eax
    SHOW msg_pml_entry510
    mov ept_pt, %eax
    and $EPT_AD, %eax
    SHOW msg_pml_ad
    call newline

/* VMFUNC 0: EPTP list of two; the guest reads PROBE in each and tries indexes 2 and 600. */
vmfunc_test:
    mov allowed2, %eax                  /* EPT and VM functions */
    and $0x00002002, %eax
    cmp $0x00002002, %eax
    jne 1f
    mov $0x491, %ecx                    /* IA32_VMX_VMFUNC */
    rdmsr
    test $1, %eax
    jz 1f
    mov $msg_vmfunc, %esi
    call puts
    movl $ept_pml4 + EPTP_FLAGS, eptp_list
    movl $ept1_pml4 + EPTP_FLAGS, eptp_list + 8
    VMW 0x201a, $ept_pml4 + EPTP_FLAGS
    VMW 0x201b, $0
    VMW 0x2018, $1                      /* VM-function controls: EPTP switching */
    VMW 0x2019, $0
    VMW 0x2024, $eptp_list
    VMW 0x2025, $0
    ADJUST 1, $0x80000000
    VMW 0x4002, %ebx
    VMW 0x401e, $0x00002002
    VMW 0x681e, $l2_vmfunc
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $vmfunc_checked, after_guest_jump
    call enter
    jmp vmx_failed
1:  mov $msg_no_vmfunc, %esi
    call puts
vmfunc_checked:
    VMR 0x201a                          /* EPTP as the guest left it */
    mov %ebx, %eax
    sub $ept_pml4, %eax
    SHOW msg_eptp_after
    call newline

/* EPT whose root table is where this kernel has no RAM (0xf0000000): the walk reads all
 * ones, reserved bits at the first level, so the guest's first access (its paging's read of
 * the page-directory entry for its code) is an EPT misconfiguration (exit 49), as on bare
 * Bochs. */
ept_outside_test:
    mov allowed2, %eax
    test $2, %eax
    jz tpr_shadow_test
    mov $msg_ept_outside, %esi
    call puts
    VMW 0x201a, $0xf000001e             /* WB, 4-level walk */
    VMW 0x201b, $0
    ADJUST 1, $0x80000000
    VMW 0x4002, %ebx
    VMW 0x401e, $0x2                    /* EPT */
    VMW 0x681e, $l2_pml_again
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    call enter
    jmp vmx_failed
ept_misconfig:
    VMR 0x2400                          /* guest-physical address */
    mov %ebx, %eax
    sub $page_directory, %eax
    SHOW msg_ept_outside_gpa
    call newline

/* TPR shadow, when offered (primary bit 21), with VTPR (byte 0x80 of the virtual-APIC page)
 * 0x20 and neither "virtualize APIC accesses" nor "virtual-interrupt delivery" (SDM
 * 26.2.1.1): a TPR threshold above VTPR bits 7:4 (3), a threshold with bits 31:4 set (0x13)
 * and a virtual-APIC address with bits 11:0 not zero are each VMfailValid with error 7
 * (invalid control field) and no entry; threshold 2 enters, the guest runs and VMCALLs,
 * and VTPR is unchanged. The guest is 32-bit: MOV CR8 exists only in 64-bit mode, so the
 * CR8 accesses the shadow virtualizes are not exercised here. */
    .macro TPR_TRY threshold, offset
    VMW 0x401c, $\threshold
    VMW 0x2012, $tpr_page + \offset
    mov $\threshold, %eax
    SHOW msg_tpr_threshold
    mov $\offset, %eax
    SHOW msg_tpr_offset
    call enter                          /* returns only if the entry failed */
    jc vmx_failed                       /* VMfailInvalid */
    VMR 0x4400                          /* VM-instruction error */
    mov %ebx, %eax
    SHOW msg_tpr_failed
    call newline
    .endm
tpr_shadow_test:
    testl $0x00200000, allowed1
    jnz 1f
    mov $msg_no_tpr, %esi
    call puts
    jmp shadow_test
1:  mov $msg_tpr, %esi
    call puts
    movb $0x20, tpr_page + 0x80
    ADJUST 1, $0x80200000               /* secondary controls, use TPR shadow */
    VMW 0x4002, %ebx
    VMW 0x401e, $0
    VMW 0x2013, $0
    VMW 0x681e, $g_nops
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $fail, after_guest_jump        /* none of these may enter */
    TPR_TRY 3, 0
    TPR_TRY 0x13, 0
    TPR_TRY 2, 0x800
    TPR_TRY 0, 0x004
    VMW 0x401c, $2
    VMW 0x2012, $tpr_page
    mov $2, %eax
    SHOW msg_tpr_threshold
    xor %eax, %eax
    SHOW msg_tpr_offset
    call newline
    movl $tpr_checked, after_guest_jump
    call enter
    jmp vmx_failed
tpr_checked:
    movzbl tpr_page + 0x80, %eax
    SHOW msg_tpr_vtpr
    call newline

/* VMCS shadowing, when offered (secondary bit 14; SDM 25.10 and VMREAD/VMWRITE in VMX
 * non-root operation). A shadow VMCS (the revision with bit 31) can be made current and
 * written, but not entered: VMRESUME is VMfailInvalid (CF). With the control on, the link
 * pointer at it and bitmaps that name GUEST_RSP for VMREAD and GUEST_ES_SELECTOR for
 * VMWRITE, the guest (l2_shadow) reads and writes the shadow without exits, with register
 * and memory operands; the named fields exit to this kernel (23, 25), as does an encoding
 * with bit 15 set, and an unsupported field is VMfailValid (ZF) with error 12 in this
 * kernel's current VMCS. This kernel then reads what the guest wrote in the shadow. Last,
 * the VM-entry checks: a link pointer at the current VMCS, or at a VMCS without the
 * indicator while shadowing is on, fails the entry (reason 33, qualification 4); a VMREAD
 * bitmap address with bits 11:0 set is VMfailValid(7). */
shadow_test:
    testl $0x4000, allowed2
    jnz 1f
    mov $msg_no_shadow, %esi
    call puts
    jmp apic_access_test
1:  mov $msg_shadow, %esi
    call puts
    mov vmcs_region, %eax
    mov %eax, plain_vmcs
    or $0x80000000, %eax
    mov %eax, shadow_vmcs
    vmclear shadow_pointer
    jbe vmx_failed
    vmptrld shadow_pointer
    jbe vmx_failed
    VMW 0x681e, $0x12345678             /* the shadow's GUEST_RIP */
    VMW 0x0800, $0x55                   /* and GUEST_ES_SELECTOR */
    vmresume
    pushf
    pop %eax
    and $0x41, %eax                     /* CF, ZF */
    SHOW msg_shadow_resume
    call newline
    vmptrld vmcs_pointer
    jbe vmx_failed
    movb $0x10, vmread_bitmap + 0x681c / 8      /* GUEST_RSP: bit 0x681c */
    movb $0x01, vmwrite_bitmap + 0x0800 / 8     /* GUEST_ES_SELECTOR: bit 0x800 */
    VMW 0x2026, $vmread_bitmap
    VMW 0x2027, $0
    VMW 0x2028, $vmwrite_bitmap
    VMW 0x2029, $0
    VMW 0x2800, $shadow_vmcs
    VMW 0x2801, $0
    ADJUST 1, $0x80000000
    VMW 0x4002, %ebx
    VMW 0x401e, $0x4000
    VMW 0x681e, $l2_shadow
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $shadow_checked, after_guest_jump
    call enter
    jmp vmx_failed
shadow_checked:
    mov shadow_results, %eax
    SHOW msg_shadow_read
    mov shadow_results + 4, %eax
    SHOW msg_shadow_flags
    mov shadow_results + 8, %eax
    SHOW msg_shadow_mem
    mov shadow_results + 12, %eax
    SHOW msg_shadow_unsupported
    call newline
    VMR 0x4400
    mov %ebx, %eax
    SHOW msg_shadow_error
    vmptrld shadow_pointer
    jbe vmx_failed
    VMR 0x681e
    mov %ebx, %eax
    SHOW msg_shadow_rip
    VMR 0x6806
    mov %ebx, %eax
    SHOW msg_shadow_es_base
    call newline
    vmptrld vmcs_pointer
    jbe vmx_failed
    movl $shadow_link_current, entry_failed_jump
    VMW 0x2800, $vmcs_region
    VMW 0x681e, $g_nops
    call enter
    jmp vmx_failed
shadow_link_current:
    call show_entry_failure
    movl $shadow_link_plain, entry_failed_jump
    VMW 0x2800, $plain_vmcs
    call enter
    jmp vmx_failed
shadow_link_plain:
    call show_entry_failure
    movl $0, entry_failed_jump
    VMW 0x2800, $shadow_vmcs
    VMW 0x2026, $vmread_bitmap + 0x10
    call enter                          /* returns only if the entry failed */
    jc vmx_failed
    VMR 0x4400
    mov %ebx, %eax
    SHOW msg_shadow_bitmap
    call newline
    VMW 0x2026, $vmread_bitmap
    jmp shadow_sweep
shadow_sweep_done:
    VMW 0x401e, $0
    VMW 0x2800, $0xffffffff
    VMW 0x2801, $0xffffffff

/* The APIC-access page, when offered ("virtualize APIC accesses", secondary bit 0; SDM
 * 29.4), with the TPR shadow (VTPR 0x20) and TPR threshold 0. The guest (l2_apic) reads
 * the TPR at offset 0x80 of the APIC-access page (virtualized: VTPR, no exit), writes 0x30
 * there (virtualized: VTPR becomes 0x30, no exit), reads it again, then reads offset 0x20
 * (an APIC-access exit, 44, qualification 0x20: a linear read) and writes offset 0xb0 (44,
 * qualification 0x10b0: a linear write); this kernel steps over each (5-byte moves: the
 * instruction length is not defined for these exits). Then an APIC-access address with bits
 * 11:0 set: VMfailValid(7). */
apic_access_test:
    testl $1, allowed2
    jz 1f
    testl $0x00200000, allowed1
    jnz 2f
1:  mov $msg_no_apic_access, %esi
    call puts
    jmp msr_lists_test
2:  mov $msg_apic_access, %esi
    call puts
    movb $0x20, tpr_page + 0x80
    ADJUST 1, $0x80200000               /* secondary controls, use TPR shadow */
    VMW 0x4002, %ebx
    VMW 0x401e, $1                      /* virtualize APIC accesses */
    VMW 0x2012, $tpr_page
    VMW 0x2013, $0
    VMW 0x401c, $0
    VMW 0x2014, $apic_access_page
    VMW 0x2015, $0
    VMW 0x681e, $l2_apic
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $apic_access_checked, after_guest_jump
    call enter
    jmp vmx_failed
apic_access_checked:
    mov apic_results, %eax
    SHOW msg_apic_tpr_read
    mov apic_results + 4, %eax
    SHOW msg_apic_tpr_again
    movzbl tpr_page + 0x80, %eax
    SHOW msg_tpr_vtpr_short
    call newline
    VMW 0x2014, $apic_access_page + 0x10
    call enter                          /* returns only if the entry failed */
    jc vmx_failed
    VMR 0x4400
    mov %ebx, %eax
    SHOW msg_apic_bad_address
    call newline
    VMW 0x2014, $apic_access_page
    VMW 0x401e, $0

/* MSR lists. The VM-entry MSR-load list gives the guest IA32_SYSENTER_ESP 0x2222 and
 * IA32_KERNEL_GS_BASE 0x3333 (this kernel's own is 0x1111); the guest reads the latter
 * without an exit (MSR bitmap all clear), writes it plus 1 and reads the TSC right before its
 * VMCALL; the VM-exit MSR-store list saves both of the guest's and IA32_TSC (within
 * TSC_STORE_BOUND of the guest's read), and the VM-exit MSR-load list sets this kernel's
 * KERNEL_GS_BASE to 0x4444. Then the entry list's second entry sets IA32_PAT's entry 0 to
 * memory type 2, which WRMSR refuses: the entry fails (reason 34, qualification 2), and the
 * exit's load list still runs (0x5555). Last, entry 2 names IA32_FS_BASE, which no list may
 * load: the entry fails the same way, after entry 1 (KERNEL_GS_BASE 0x7777) was loaded.
 * The stored IA32_TSC is the TSC at the VM exit (SDM 27.4): it exceeds the guest's RDTSC
 * right before its VMCALL by a few cycles on hardware. Under Bochs, as L1 on turtles' L0,
 * the difference measured 0x24 (36) with L0 reading the TSC right after L2's exit, and
 * 0x257 (599) when L0 read it as it performed the list. */
    .set TSC_STORE_BOUND, 0x80
msr_lists_test:
    mov $msg_msr_lists, %esi
    call puts
    mov $0xc0000102, %ecx
    mov $0x1111, %eax
    xor %edx, %edx
    wrmsr
    movl $0x175, msr_entry_list
    movl $0x2222, msr_entry_list + 8
    movl $0xc0000102, msr_entry_list + 16
    movl $0x3333, msr_entry_list + 24
    movl $0xc0000102, msr_store_list
    movl $0x175, msr_store_list + 16
    movl $0x10, msr_store_list + 32     /* IA32_TSC */
    movl $0xc0000102, msr_exit_list
    movl $0x4444, msr_exit_list + 8
    ADJUST 1, $0x90000000               /* secondary controls, MSR bitmaps */
    VMW 0x4002, %ebx
    VMW 0x401e, $0
    VMW 0x2004, $msr_bitmap
    VMW 0x2005, $0
    VMW 0x4014, $2                      /* VM-entry MSR-load count and address */
    VMW 0x200a, $msr_entry_list
    VMW 0x200b, $0
    VMW 0x400e, $3                      /* VM-exit MSR-store */
    VMW 0x2006, $msr_store_list
    VMW 0x2007, $0
    VMW 0x4010, $1                      /* VM-exit MSR-load */
    VMW 0x2008, $msr_exit_list
    VMW 0x2009, $0
    VMW 0x681e, $l2_msr
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $msr_lists_checked, after_guest_jump
    call enter
    jmp vmx_failed

msr_lists_checked:
    mov guest_edi, %eax
    SHOW msg_msr_l2_read
    mov msr_store_list + 8, %eax
    SHOW msg_msr_stored
    mov msr_store_list + 24, %eax
    SHOW msg_msr_stored
    call newline
    /* The stored IA32_TSC minus the guest's RDTSC right before its VMCALL (64-bit): 1 if
     * below TSC_STORE_BOUND (and not negative), else 0. */
    mov msr_store_list + 40, %eax
    mov msr_store_list + 44, %edx
    sub guest_eax, %eax
    sbb guest_edx, %edx
    xor %ecx, %ecx
    test %edx, %edx
    jnz 1f
    cmp $TSC_STORE_BOUND, %eax
    jae 1f
    inc %ecx
1:  mov %ecx, %eax
    SHOW msg_msr_tsc_diff
    call newline
    VMR 0x6824                          /* the guest's IA32_SYSENTER_ESP */
    mov %ebx, %eax
    SHOW msg_msr_guest_esp
    mov $0xc0000102, %ecx
    rdmsr
    SHOW msg_msr_l1_kgs
    mov $0x175, %ecx                    /* the host-state field's 0 */
    rdmsr
    SHOW msg_msr_l1_esp
    call newline
    movl $0x277, msr_entry_list + 16
    movl $0x2, msr_entry_list + 24
    movl $0x5555, msr_exit_list + 8
    movl $msr_entry_failed, entry_failed_jump
    VMW 0x681e, $l2_msr
    call enter
    jmp vmx_failed

msr_entry_failed:
    call show_msr_entry_failure
    VMW 0x400e, $0
    VMW 0x4010, $0
    /* A structurally bad entry 2 (IA32_FS_BASE, which no list may load) after a good entry 1
     * (KERNEL_GS_BASE 0x7777): the processor loads entry 1, then fails the entry with
     * qualification 2, and no exit list restores this kernel's 0x5555. */
    movl $0xc0000102, msr_entry_list
    movl $0x7777, msr_entry_list + 8
    movl $0xc0000100, msr_entry_list + 16
    movl $0, msr_entry_list + 24
    movl $msr_bad_entry_failed, entry_failed_jump
    VMW 0x681e, $l2_msr
    call enter
    jmp vmx_failed

msr_bad_entry_failed:
    call show_msr_entry_failure
    VMW 0x4014, $0

/* IA32_TSC (SDM Vol. 3B 18.17): WRMSR sets this kernel's TSC, which then counts on from the
 * value (RDTSC's high half 0x1234 after writing 0x1234_00000000). Then the guest writes it
 * (the MSR bitmap is all clear: no exit) to 0x5678_00000000: in VMX non-root operation that
 * is the TSC itself, so after the guest's VMCALL this kernel reads on from there (0x5678). */
tsc_write_test:
    mov $msg_tsc_write, %esi
    call puts
    mov $0x10, %ecx
    xor %eax, %eax
    mov $0x1234, %edx
    wrmsr
    rdtsc
    mov %edx, %eax
    SHOW msg_tsc_high
    call newline
    ADJUST 1, $0x90000000               /* secondary controls, MSR bitmaps */
    VMW 0x4002, %ebx
    VMW 0x401e, $0
    VMW 0x681e, $l2_tsc
    VMW 0x681c, $guest_stack_top
    VMW 0x6820, $0x2
    movl $tsc_write_checked, after_guest_jump
    call enter
    jmp vmx_failed
tsc_write_checked:
    rdtsc
    mov %edx, %eax
    SHOW msg_tsc_high
    call newline
    /* This kernel writes its TSC again (0x9abc_00000000, then 0x7654_00000000), each time
     * resuming the guest with no control changed: the guest's RDTSC (MSR bitmap, no TSC
     * offsetting) reads on from each value. */
    movl $0x9abc, tsc_value
    movl $tsc_resume_again, after_guest_jump
    jmp tsc_resume
tsc_resume_again:
    movl $0x7654, tsc_value
    movl $tsc_resume_checked, after_guest_jump
tsc_resume:
    mov $0x10, %ecx
    xor %eax, %eax
    mov tsc_value, %edx
    wrmsr
    VMW 0x681e, $g_tsc_edx
    VMW 0x681c, $guest_stack_top
    call enter
    jmp vmx_failed
tsc_resume_checked:

done:
    mov $msg_done, %esi
    call puts
    xor %eax, %eax
    out %al, $EXIT_PORT
    cli
5:  hlt
    jmp 5b

/* Every field through the shadow (the loop of kvm-unit-tests' vmx_vmcs_shadow_test, for a
 * 32-bit kernel): for each encoding base + index (base 0 to 0x7c00 in steps of 0x400, the
 * width and type combinations; index 0 to IA32_VMX_VMCS_ENUM, HIGH accesses included), first
 * with the link pointer at the shadow VMCS, then with it FFFFFFFF_FFFFFFFFH. This kernel's
 * own VMREAD and VMWRITE (of the value it read) on its current VMCS say what the field is:
 * the guest's accesses must give the same ALU flags (with no link pointer: CF). With both
 * bitmap bits set, the guest's VMWRITE and VMREAD exit (25, 23). With one bit clear, that
 * access runs on the shadow without an exit: VMREAD gives what this kernel wrote there
 * (through VMPTRLD of the shadow), VMWRITE of 0 is what this kernel then reads there, and
 * an unsupported field is error 12 in this kernel's VMCS. Encodings with one bit of 15-31
 * set always exit. Needs VMWRITE to the exit-information fields (IA32_VMX_MISC bit 29: this
 * kernel clears the VM-instruction error before each access). Prints the number of fields,
 * of those that are supported, and of mismatches (with the first few). */
shadow_sweep:
    mov $0x485, %ecx                    /* IA32_VMX_MISC */
    rdmsr
    test $0x20000000, %eax
    jnz 1f
    mov $msg_no_sweep, %esi
    call puts
    jmp shadow_sweep_done
1:  mov $0x48a, %ecx                    /* IA32_VMX_VMCS_ENUM: highest index, in bits 9:1 */
    rdmsr
    and $0x3fe, %eax
    mov %eax, sweep_enum
    xor %eax, %eax                      /* both bitmaps clear */
    cld
    mov $vmread_bitmap, %edi
    mov $2048, %ecx
    rep stosl
    movl $shadow_vmcs, sweep_link
    movl $1, sweeping
sweep_pass:
    movl $0, sweep_base
    movl $0, sweep_index
sweep_next:
    mov sweep_base, %eax
    cmp $0x8000, %eax
    jae sweep_reserved
    add sweep_index, %eax
    mov %eax, sweep_field
    jmp sweep_field_start
sweep_reserved:                         /* base counts the bit (15-31) from here */
    mov sweep_index, %ecx
    add $15, %ecx
    cmp $31, %ecx
    ja sweep_pass_done
    mov $1, %eax
    shl %cl, %eax
    mov %eax, sweep_field
sweep_field_start:
    incl sweep_fields
    movl $1, sweep_expect               /* no link pointer: VMfailInvalid (CF) */
    movl $1, sweep_wflags
    movl $0, sweep_good
    cmpl $0xffffffff, sweep_link
    je 1f
    mov sweep_field, %eax
    vmread %eax, %ebx
    pushf
    pop %ecx
    and $0x8d5, %ecx
    mov %ecx, sweep_expect
    vmwrite %ebx, %eax
    pushf
    pop %edx
    and $0x8d5, %edx
    mov %edx, sweep_wflags
    or %edx, %ecx
    jnz 1f
    movl $1, sweep_good
    incl sweep_supported
1:  mov sweep_field, %eax
    cmp $0x8000, %eax
    jae 2f
    bts %eax, vmread_bitmap
    bts %eax, vmwrite_bitmap
2:  SWEEP_ACCESS 25
    SWEEP_EXPECT sweep_reason, $25, 0xa1
    SWEEP_ACCESS 23
    SWEEP_EXPECT sweep_reason, $23, 0xa2
    mov sweep_field, %eax
    cmp $0x8000, %eax
    jae sweep_field_done
    /* VMREAD permitted only. */
    btr %eax, vmread_bitmap
    call sweep_to_shadow
    SWEEP_ACCESS 25
    SWEEP_EXPECT sweep_reason, $25, 0xb1
    SWEEP_ACCESS 23
    SWEEP_EXPECT sweep_reason, $18, 0xb2
    SWEEP_EXPECT sweep_flags, sweep_expect, 0xb3
    SWEEP_VALUE sweep_value, sweep_l1_value, sweep_expect, 0xb4
    /* VMWRITE permitted only. */
    mov sweep_field, %eax
    bts %eax, vmread_bitmap
    btr %eax, vmwrite_bitmap
    call sweep_to_shadow
    SWEEP_ACCESS 25
    SWEEP_EXPECT sweep_reason, $18, 0xc1
    SWEEP_EXPECT sweep_flags, sweep_expect, 0xc2
    call sweep_from_shadow
    SWEEP_VALUE sweep_l1_value, $0, sweep_wflags, 0xc3
    SWEEP_ACCESS 23
    SWEEP_EXPECT sweep_reason, $23, 0xc4
    /* Both permitted. */
    mov sweep_field, %eax
    btr %eax, vmread_bitmap
    call sweep_to_shadow
    SWEEP_ACCESS 25
    SWEEP_EXPECT sweep_reason, $18, 0xd1
    SWEEP_EXPECT sweep_flags, sweep_expect, 0xd2
    call sweep_from_shadow
    SWEEP_VALUE sweep_l1_value, $0, sweep_wflags, 0xd3
    SWEEP_ACCESS 23
    SWEEP_EXPECT sweep_reason, $18, 0xd4
    SWEEP_EXPECT sweep_flags, sweep_expect, 0xd5
    SWEEP_VALUE sweep_value, $0, sweep_expect, 0xd6
sweep_field_done:
    incl sweep_index
    cmpl $0x8000, sweep_base
    jae sweep_next
    mov sweep_index, %eax
    cmp sweep_enum, %eax
    jbe sweep_next
    movl $0, sweep_index
    addl $0x400, sweep_base
    jmp sweep_next
sweep_pass_done:
    cmpl $0xffffffff, sweep_link
    je 1f
    movl $0xffffffff, sweep_link
    VMW 0x2800, $0xffffffff
    VMW 0x2801, $0xffffffff
    jmp sweep_pass
1:  movl $0, sweeping
    VMW 0x2800, $shadow_vmcs
    VMW 0x2801, $0
    mov sweep_fields, %eax
    SHOW msg_sweep_fields
    mov sweep_supported, %eax
    SHOW msg_sweep_supported
    mov sweep_bad, %eax
    SHOW msg_sweep_bad
    call newline
    jmp shadow_sweep_done

/* When the field is supported (sweep_good), on the shadow (VMPTRST, VMPTRLD of the shadow,
 * then VMPTRLD back): sweep_to_shadow writes 0x5a5a0000 + field to the field and reads it
 * back into sweep_l1_value; sweep_from_shadow only reads it. */
sweep_to_shadow:
    mov $1, %edx
    jmp 2f
sweep_from_shadow:
    xor %edx, %edx
2:  cmpl $0, sweep_good
    je 1f
    vmptrst sweep_saved
    vmptrld shadow_pointer
    jbe vmx_failed
    mov sweep_field, %eax
    test %edx, %edx
    jz 3f
    lea 0x5a5a0000(%eax), %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
3:  vmread %eax, %ebx
    jbe vmx_failed
    mov %ebx, sweep_l1_value
    vmptrld sweep_saved
    jbe vmx_failed
1:  ret

/* A check that failed: %edx says which, %eax what was seen, %ecx what was wanted. The
 * first eight are printed with the field. */
sweep_mismatch:
    incl sweep_bad
    cmpl $8, sweep_bad
    ja 1f
    push %ecx
    push %eax
    push %edx
    mov sweep_field, %eax
    SHOW msg_sweep_field
    pop %eax
    SHOW msg_sweep_check
    pop %eax
    SHOW msg_sweep_got
    pop %eax
    SHOW msg_sweep_want
    mov sweep_link, %eax
    SHOW msg_sweep_link
    call newline
1:  ret

/* A guest exit during the sweep: VMREAD and VMWRITE exits (the first is kept in
 * sweep_reason) are stepped over; VMCALL ends the access. */
sweep_exit:
    cmp $18, %ebx
    je after_guest
    cmp $23, %ebx
    je 1f
    cmp $25, %ebx
    je 1f
    mov %ebx, %eax
    SHOW msg_exit
    call newline
    jmp fail
1:  cmpl $18, sweep_reason
    jne 2f
    mov %ebx, sweep_reason
2:  VMR 0x440c
    mov %ebx, %edx
    VMR 0x681e
    add %edx, %ebx
    VMW 0x681e, %ebx
    jmp resume

/* A VM-entry failure: the exit reason and the qualification. */
show_entry_failure:
    mov exit_reason, %eax
    SHOW msg_exit
    VMR 0x6400
    mov %ebx, %eax
    SHOW msg_qual
    call newline
    ret

/* An MSR-list test's VM-entry failure: the exit reason, the qualification and this kernel's
 * KERNEL_GS_BASE after it. */
show_msr_entry_failure:
    movl $0, entry_failed_jump
    mov exit_reason, %eax
    SHOW msg_exit
    VMR 0x6400
    mov %ebx, %eax
    SHOW msg_qual
    mov $0xc0000102, %ecx
    rdmsr
    SHOW msg_msr_l1_kgs
    call newline
    ret

/* A VM-entry failure: expected where entry_failed_jump says where to go on. */
entry_failed:
    mov entry_failed_jump, %eax
    test %eax, %eax
    jz 1f
    jmp *%eax
1:  mov $msg_entry_failed, %esi
    call puts
    jmp fail

vmx_failed:
    mov $msg_vmx_failed, %esi
    call puts
    mov $0x4400, %eax
    vmread %eax, %eax                   /* VM-instruction error */
    call puthex
    call newline
fail:
    mov $1, %al
    out %al, $EXIT_PORT
    cli
    hlt

/* The VMCS: a flat 32-bit protected-mode guest with this kernel's paging, no EPT. */
build_vmcs:
    ADJUST 0, $0
    VMW 0x4000, %ebx                    /* pin-based */
    ADJUST 2, $0
    VMW 0x400c, %ebx                    /* VM-exit controls */
    ADJUST 3, $0
    VMW 0x4012, %ebx                    /* VM-entry controls */
    VMW 0x4004, $0                      /* exception bitmap */
    VMW 0x4006, $0
    VMW 0x4008, $0
    VMW 0x400a, $0                      /* CR3-target count */
    VMW 0x400e, $0
    VMW 0x4010, $0
    VMW 0x4014, $0
    VMW 0x4016, $0
    VMW 0x6000, $0                      /* CR0 and CR4: all the guest's */
    VMW 0x6002, $0
    mov %cr0, %ecx
    VMW 0x6c00, %ecx
    mov %cr3, %ecx
    VMW 0x6c02, %ecx
    mov %cr4, %ecx
    VMW 0x6c04, %ecx
    VMW 0x0c00, $0x10
    VMW 0x0c02, $0x08
    VMW 0x0c04, $0x10
    VMW 0x0c06, $0x10
    VMW 0x0c08, $0x10
    VMW 0x0c0a, $0x10
    VMW 0x0c0c, $0x18
    VMW 0x6c06, $0
    VMW 0x6c08, $0
    VMW 0x6c0a, $tss
    VMW 0x6c0c, $gdt
    VMW 0x6c0e, $0
    VMW 0x4c00, $0
    VMW 0x6c10, $0
    VMW 0x6c12, $0
    VMW 0x6c14, $host_stack_top
    VMW 0x6c16, $vm_exit
    mov %cr0, %ecx
    VMW 0x6800, %ecx
    VMW 0x6004, %ecx                    /* CR0 read shadow */
    mov %cr3, %ecx
    VMW 0x6802, %ecx
    mov %cr4, %ecx
    VMW 0x6804, %ecx
    VMW 0x6006, %ecx                    /* CR4 read shadow */
    VMW 0x0800, $0x10
    VMW 0x0802, $0x08
    VMW 0x0804, $0x10
    VMW 0x0806, $0x10
    VMW 0x0808, $0x10
    VMW 0x080a, $0x10
    VMW 0x080c, $0
    VMW 0x080e, $0x18
    mov $0x4800, %edi                   /* ES..GS limits */
1:  mov %edi, %eax
    mov $0xffffffff, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    add $2, %edi
    cmp $0x480c, %edi
    jb 1b
    VMW 0x480c, $0
    VMW 0x480e, $0x67
    VMW 0x4810, $(gdt_end - gdt - 1)
    VMW 0x4812, $(256 * 8 - 1)          /* IDTR limit */
    VMW 0x4814, $0xc093
    VMW 0x4816, $0xc09b
    VMW 0x4818, $0xc093
    VMW 0x481a, $0xc093
    VMW 0x481c, $0xc093
    VMW 0x481e, $0xc093
    VMW 0x4820, $0x10000                /* LDTR: unusable */
    VMW 0x4822, $0x8b                   /* TR: busy 32-bit TSS */
    mov $0x6806, %edi                   /* ES..LDTR bases */
2:  mov %edi, %eax
    xor %ebx, %ebx
    vmwrite %ebx, %eax
    jbe vmx_failed
    add $2, %edi
    cmp $0x6814, %edi
    jb 2b
    VMW 0x6814, $tss
    VMW 0x6816, $gdt
    VMW 0x6818, $l2_idt                 /* IDTR base */
    VMW 0x681a, $0x400                  /* DR7 */
    VMW 0x6822, $0
    VMW 0x6824, $0
    VMW 0x6826, $0
    VMW 0x482a, $0
    VMW 0x4824, $0
    VMW 0x4826, $0
    VMW 0x2800, $0xffffffff             /* VMCS link pointer */
    VMW 0x2801, $0xffffffff
    VMW 0x2802, $0                      /* IA32_DEBUGCTL */
    VMW 0x2803, $0
    VMW 0x2004, $msr_bitmap             /* for the cases that use MSR bitmaps */
    VMW 0x2005, $0
    ret

/* Interrupt gate for vector %eax to %edx in the guest's IDT. */
set_gate:
    mov %edx, %ecx
    and $0xffff, %ecx
    or $0x00080000, %ecx
    mov %ecx, l2_idt(,%eax,8)
    mov %edx, %ecx
    and $0xffff0000, %ecx
    or $0x8e00, %ecx
    mov %ecx, l2_idt + 4(,%eax,8)
    ret

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

newline:
    push %esi
    mov $msg_newline, %esi
    call puts
    pop %esi
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

/* The guest's code for each case: EDI = 0, the instruction(s), VMCALL. */
    .set BUF, l2_buf
g_hlt:
    xor %edi, %edi
    hlt
    vmcall
g_invlpg:
    xor %edi, %edi
    invlpg 0x123000
    vmcall
g_mwait:
    xor %edi, %edi
    xor %eax, %eax
    xor %ecx, %ecx
    mwait
    vmcall
g_monitor:
    xor %edi, %edi
    mov $BUF, %eax
    xor %ecx, %ecx
    xor %edx, %edx
    monitor
    vmcall
g_rdpmc:
    xor %edi, %edi
    xor %ecx, %ecx
    rdpmc
    vmcall
g_rdtsc:
    xor %edi, %edi
    rdtsc
    vmcall
g_rdtscp:
    xor %edi, %edi
    rdtscp
    vmcall
g_cr3_load:
    xor %edi, %edi
    mov %cr3, %ebx
    mov %ebx, %cr3
    vmcall
g_cr3_store:
    xor %edi, %edi
    mov %cr3, %ecx
    vmcall
g_dr:
    xor %edi, %edi
    mov %dr7, %eax
    mov %ebx, %dr1
    vmcall
g_pause:
    xor %edi, %edi
    pause
    vmcall
g_desc:
    xor %edi, %edi
    mov $BUF, %ebx
    sgdt (%ebx)
    sidt 8(%ebx)
    lgdt (%ebx)
    lidt 8(%ebx)
    sldt %eax
    str %ecx
    vmcall
g_desc_load:
    xor %edi, %edi
    xor %edx, %edx
    lldt %dx
    mov $0x18, %si
    ltr %si
    vmcall
g_wbinvd:
    xor %edi, %edi
    wbinvd
    vmcall
g_rdrand:
    xor %edi, %edi
    rdrand %eax
    rdrand %ecx
    vmcall
g_rdseed:
    xor %edi, %edi
    rdseed %edx
    vmcall
g_invpcid:
    xor %edi, %edi
    mov $BUF, %ebx
    movl $0, (%ebx)
    movl $0, 4(%ebx)
    movl $0, 8(%ebx)
    movl $0, 12(%ebx)
    mov $2, %eax                        /* all contexts, globals too */
    invpcid (%ebx), %eax
    vmcall
g_pause_loop:
    xor %edi, %edi
    mov $64, %ecx
1:  pause
    loop 1b
    vmcall
g_xsaves:
    xor %edi, %edi
    mov $BUF, %ebx
    mov $1, %eax                        /* x87 state */
    xor %edx, %edx
    xsaves (%ebx)
    vmcall
g_tsc_edx:
    rdtsc
    mov %edx, %edi
    vmcall
g_tsc_msr_edx:                          /* the MSR bitmap (all clear) passes it through */
    mov $0x10, %ecx
    rdmsr
    mov %edx, %edi
    vmcall
g_nops:
    xor %edi, %edi
    nop
    nop
    vmcall

/* The guest's #UD and #GP: EDI = vector, VMCALL. */
l2_ud:
    mov $6, %edi
    vmcall
l2_gp:
    mov $13, %edi
    vmcall

/* PML: write four pages. */
l2_pml:
    xor %edi, %edi
    movl $1, PML_PAGES
    movl $2, PML_PAGES + 0x1000
    movl $3, PML_PAGES + 0x2000
    movl $4, PML_PAGES + 0x3000
    vmcall

/* The shadow sweep's guest: sweep_op (23: VMREAD, 25: VMWRITE of 0) of sweep_field, the
 * ALU flags after it in sweep_flags and VMREAD's value in sweep_value, then VMCALL. */
l2_sweep:
    mov sweep_field, %eax
    cmpl $25, sweep_op
    je 1f
    vmread %eax, %ebx
    pushf
    pop %ecx
    mov %ebx, sweep_value
    jmp 2f
1:  xor %ebx, %ebx
    vmwrite %ebx, %eax
    pushf
    pop %ecx
2:  and $0x8d5, %ecx
    mov %ecx, sweep_flags
    vmcall

/* PML again: the first page once more, after its host cleared its EPT flags. */
l2_pml_again:
    xor %edi, %edi
    movl $5, PML_PAGES
    vmcall

/* VMCS shadowing (shadow_test): the shadow's GUEST_RIP and the flags after reading it, its
 * GUEST_RIP set to 0xabcd, GUEST_RSP read and GUEST_ES_SELECTOR written (each an exit), the
 * ES selector read to memory, GUEST_ES_BASE written from memory, an unsupported field read
 * (the flags after it), a field with bit 15 set read (an exit), and GUEST_RSP read with its
 * encoding in ESP (an exit). EDI = 0, or 0xbad when an access meant to succeed failed. */
l2_shadow:
    mov $0x681e, %eax
    vmread %eax, %ebx
    pushf
    pop %ecx
    mov %ebx, shadow_results
    and $0x41, %ecx
    mov %ecx, shadow_results + 4
    mov $0xabcd, %ebx
    vmwrite %ebx, %eax
    jbe 1f
    mov $0x681c, %eax
    vmread %eax, %ebx
    mov $0x0800, %eax
    vmwrite %ebx, %eax
    mov $0x0800, %eax                   /* (the exit handler leaves its own EAX) */
    vmread %eax, shadow_results + 8
    jbe 1f
    mov $0x6806, %eax
    vmwrite shadow_value, %eax
    jbe 1f
    mov $0x7777, %eax
    vmread %eax, %ebx
    pushf
    pop %ecx
    and $0x41, %ecx
    mov %ecx, shadow_results + 12
    mov $0x8000 | 0x681e, %eax
    vmread %eax, %ebx
    mov %esp, %ebp                      /* GUEST_RSP (in the VMREAD bitmap) named by ESP */
    mov $0x681c, %esp
    vmread %esp, %ebx
    mov %ebp, %esp
    xor %edi, %edi
    vmcall
1:  mov $0xbad, %edi
    vmcall

/* The APIC-access page (apic_access_test): every access a 5-byte MOV with a 32-bit
 * displacement. EDI = 0. */
l2_apic:
    mov apic_access_page + 0x80, %eax
    mov %eax, apic_results
    mov $0x30, %eax
    mov %eax, apic_access_page + 0x80
    mov apic_access_page + 0x80, %eax
    mov %eax, apic_results + 4
    mov apic_access_page + 0x20, %eax
    mov %eax, apic_access_page + 0xb0
    xor %edi, %edi
    vmcall

/* IA32_TSC (tsc_write_test): the guest writes 0x5678_00000000. EDI = 0. */
l2_tsc:
    mov $0x10, %ecx
    xor %eax, %eax
    mov $0x5678, %edx
    wrmsr
    xor %edi, %edi
    vmcall

/* MSR lists: EDI = IA32_KERNEL_GS_BASE as the entry loaded it; then it is set one higher. */
l2_msr:
    mov $0xc0000102, %ecx
    rdmsr
    mov %eax, %edi
    inc %eax
    wrmsr
    rdtsc                               /* EDX:EAX: the TSC right before the exit */
    vmcall

/* VMFUNC: EDI = PROBE through EPT 0, EPT 1 (<< 8), EPT 0 (<< 16); then index 2 (a zero
 * entry), index 600 and function 1 (each a VMFUNC exit); it ends on EPT 1. */
l2_vmfunc:
    mov PROBE, %edi
    xor %eax, %eax
    mov $1, %ecx
    vmfunc
    mov PROBE, %edx
    shl $8, %edx
    or %edx, %edi
    xor %eax, %eax
    xor %ecx, %ecx
    vmfunc
    mov PROBE, %edx
    shl $16, %edx
    or %edx, %edi
    xor %eax, %eax
    mov $2, %ecx                        /* an invalid EPTP in the list: VMFUNC exit */
    vmfunc
    xor %eax, %eax
    mov $600, %ecx                      /* beyond the list: VMFUNC exit */
    vmfunc
    mov $1, %eax                        /* an undefined function: VMFUNC exit */
    xor %ecx, %ecx
    vmfunc
    xor %eax, %eax                      /* end on EPT 1: L1 reads it in its EPTP field */
    mov $1, %ecx
    vmfunc
    vmcall

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
vmxon_pointer:
    .long vmxon_region, 0
vmcs_pointer:
    .long vmcs_region, 0
msr_base:    .long 0
allowed1:    .long 0
allowed2:    .long 0
launched:    .long 0
exit_reason: .long 0
guest_eax:   .long 0
guest_ecx:   .long 0
guest_edx:   .long 0
guest_edi:   .long 0
case_ptr:    .long 0
after_guest_jump: .long fail
entry_failed_jump: .long 0
shadow_pointer: .long shadow_vmcs, 0
shadow_value:   .long 0x77777777
shadow_results: .long 0, 0, 0, 0
apic_results:   .long 0, 0
tsc_value:      .long 0
sweeping:       .long 0                 /* the shadow sweep's state */
sweep_enum:     .long 0
sweep_link:     .long 0
sweep_base:     .long 0
sweep_index:    .long 0
sweep_field:    .long 0
sweep_op:       .long 0
sweep_reason:   .long 0
sweep_flags:    .long 0
sweep_value:    .long 0
sweep_expect:   .long 0
sweep_wflags:   .long 0
sweep_good:     .long 0
sweep_l1_value: .long 0
sweep_fields:   .long 0
sweep_supported: .long 0
sweep_bad:      .long 0
sweep_saved:    .long 0, 0

/* The cases (name, primary controls, secondary controls, guest code, flags). Primary bits:
 * HLT 7, INVLPG 9, MWAIT 10, RDPMC 11, RDTSC 12, CR3-load 15, CR3-store 16, MOV-DR 23,
 * MTF 27, MONITOR 29, PAUSE 30, interrupt window 2, TSC offsetting 3, MSR bitmaps 28
 * (msr_bitmap, all clear: every MSR passed through); secondary:
 * descriptor tables 2, RDTSCP 3, WBINVD 6, PAUSE-loop 10, RDRAND 11, INVPCID 12,
 * RDSEED 16, XSAVES 20. Flags: 1 guest IF = 1, 2 TSC offset 2^32, 4 XSS-exiting bitmap
 * all ones, 8 the first exit clears the secondary controls. */
    .align 4
cases:
    CASE c_hlt, 0x00000080, 0, g_hlt
    CASE c_invlpg, 0x00000200, 0, g_invlpg
    CASE c_invlpg_off, 0, 0, g_invlpg
    CASE c_mwait, 0x00000400, 0, g_mwait
    CASE c_monitor, 0x20000000, 0, g_monitor
    CASE c_monitor_off, 0, 0, g_monitor
    CASE c_rdpmc, 0x00000800, 0, g_rdpmc
    CASE c_rdtsc, 0x00001000, 0, g_rdtsc
    CASE c_rdtsc_off, 0, 0, g_rdtsc
    CASE c_rdtscp, 0x00001000, 0x8, g_rdtscp
    CASE c_rdtscp_run, 0, 0x8, g_rdtscp
    CASE c_rdtscp_ud, 0x00001000, 0, g_rdtscp
    CASE c_cr3_load, 0x00008000, 0, g_cr3_load
    CASE c_cr3_store, 0x00010000, 0, g_cr3_store
    CASE c_cr3_off, 0, 0, g_cr3_load
    CASE c_dr, 0x00800000, 0, g_dr
    CASE c_dr_off, 0, 0, g_dr
    CASE c_pause, 0x40000000, 0, g_pause
    CASE c_pause_off, 0, 0, g_pause
    CASE c_desc, 0, 0x4, g_desc
    CASE c_desc_load, 0, 0x4, g_desc_load
    CASE c_desc_off, 0, 0, g_desc
    CASE c_wbinvd, 0, 0x40, g_wbinvd
    CASE c_wbinvd_off, 0, 0, g_wbinvd
    CASE c_rdrand, 0, 0x800, g_rdrand
    CASE c_rdrand_off, 0, 0, g_rdrand
    CASE c_rdseed, 0, 0x10000, g_rdseed
    CASE c_rdseed_off, 0, 0, g_rdseed
    CASE c_invpcid, 0x00000200, 0x1000, g_invpcid
    CASE c_invpcid_run, 0, 0x1000, g_invpcid
    CASE c_invpcid_ud, 0x00000200, 0, g_invpcid
    CASE c_ple, 0, 0x400, g_pause_loop, 8
    CASE c_xsaves, 0, 0x100000, g_xsaves, 4
    CASE c_xsaves_run, 0, 0x100000, g_xsaves
    CASE c_xsaves_ud, 0, 0, g_xsaves
    CASE c_tsc_offset, 0x00000008, 0, g_tsc_edx, 2
    CASE c_tsc_msr, 0x10000008, 0, g_tsc_msr_edx, 2
    CASE c_mtf, 0x08000000, 0, g_nops
    CASE c_window, 0x00000004, 0, g_nops, 1
cases_end:

    .section .rodata
hex_digits:       .ascii "0123456789abcdef"
c_hlt:            .asciz "HLT exiting"
c_invlpg:         .asciz "INVLPG exiting"
c_invlpg_off:     .asciz "INVLPG, no exiting"
c_mwait:          .asciz "MWAIT exiting"
c_monitor:        .asciz "MONITOR exiting"
c_monitor_off:    .asciz "MONITOR, no exiting"
c_rdpmc:          .asciz "RDPMC exiting"
c_rdtsc:          .asciz "RDTSC exiting"
c_rdtsc_off:      .asciz "RDTSC, no exiting"
c_rdtscp:         .asciz "RDTSCP enabled, RDTSC exiting"
c_rdtscp_run:     .asciz "RDTSCP enabled, no exiting"
c_rdtscp_ud:      .asciz "RDTSCP not enabled"
c_cr3_load:       .asciz "CR3-load exiting"
c_cr3_store:      .asciz "CR3-store exiting"
c_cr3_off:        .asciz "CR3, no exiting"
c_dr:             .asciz "MOV-DR exiting"
c_dr_off:         .asciz "MOV DR, no exiting"
c_pause:          .asciz "PAUSE exiting"
c_pause_off:      .asciz "PAUSE, no exiting"
c_desc:           .asciz "descriptor-table exiting"
c_desc_load:      .asciz "descriptor-table exiting, LLDT/LTR"
c_desc_off:       .asciz "descriptor tables, no exiting"
c_wbinvd:         .asciz "WBINVD exiting"
c_wbinvd_off:     .asciz "WBINVD, no exiting"
c_rdrand:         .asciz "RDRAND exiting"
c_rdrand_off:     .asciz "RDRAND, no exiting"
c_rdseed:         .asciz "RDSEED exiting"
c_rdseed_off:     .asciz "RDSEED, no exiting"
c_invpcid:        .asciz "INVPCID enabled, INVLPG exiting"
c_invpcid_run:    .asciz "INVPCID enabled, no exiting"
c_invpcid_ud:     .asciz "INVPCID not enabled"
c_ple:            .asciz "PAUSE-loop exiting"
c_xsaves:         .asciz "XSAVES enabled, XSS-exiting bitmap all ones, IA32_XSS 0"
c_xsaves_run:     .asciz "XSAVES enabled, XSS-exiting bitmap 0"
c_xsaves_ud:      .asciz "XSAVES not enabled"
c_tsc_offset:     .asciz "TSC offsetting (2^32)"
c_tsc_msr:        .asciz "TSC offsetting (2^32), RDMSR IA32_TSC passed through"
c_mtf:            .asciz "monitor trap flag"
c_window:         .asciz "interrupt-window exiting"
msg_hello:        .asciz "vmx32i: VMX intercepts, end to end\n"
msg_allowed1:     .asciz "vmx32i: primary controls allowed=0x"
msg_allowed2:     .asciz "vmx32i: secondary controls allowed=0x"
msg_case:         .asciz "vmx32i: case "
msg_not_offered:  .asciz ": not offered\n"
msg_exit:         .asciz "vmx32i:   exit reason=0x"
msg_qual:         .asciz " qual=0x"
msg_info:         .asciz " info=0x"
msg_len:          .asciz " len=0x"
msg_vmcall:       .asciz "vmx32i:   VMCALL, guest EDI=0x"
msg_tsc:          .asciz "vmx32i:   guest TSC high half minus this kernel's=0x"
msg_ept:          .asciz "vmx32i: EPT with accessed/dirty flags\n"
msg_pml:          .asciz "vmx32i: PML: index 2, four pages written\n"
msg_no_pml:       .asciz "vmx32i: PML: not offered\n"
msg_pml_index:    .asciz "vmx32i:   PML index=0x"
msg_pml_entry2:   .asciz "vmx32i:   PML log[2]=0x"
msg_pml_entry1:   .asciz " log[1]=0x"
msg_pml_entry0:   .asciz " log[0]=0x"
msg_pml_entry511: .asciz " log[511]=0x"
msg_pml_entry510: .asciz " log[510]=0x"
msg_pml_ad:       .asciz " EPT A/D=0x"
msg_ept_outside:  .asciz "vmx32i: EPT root where there is no RAM\n"
msg_ept_outside_gpa: .asciz "vmx32i:   EPT misconfiguration, guest-physical - page directory=0x"
msg_vmfunc:       .asciz "vmx32i: VMFUNC 0: EPTP switching\n"
msg_no_vmfunc:    .asciz "vmx32i: VMFUNC: not offered\n"
msg_eptp_after:   .asciz "vmx32i:   EPTP at the end, relative to EPT 0=0x"
msg_msr_lists:    .asciz "vmx32i: MSR lists: VM-entry load, VM-exit store and load\n"
msg_msr_l2_read:  .asciz "vmx32i:   guest read KERNEL_GS_BASE=0x"
msg_msr_stored:   .asciz " stored=0x"
msg_msr_tsc_diff: .asciz "vmx32i:   stored TSC - guest RDTSC below TSC_STORE_BOUND=0x"
msg_msr_guest_esp: .asciz "vmx32i:   guest SYSENTER_ESP=0x"
msg_msr_l1_kgs:   .asciz " KERNEL_GS_BASE=0x"
msg_msr_l1_esp:   .asciz " SYSENTER_ESP=0x"
msg_tsc_write:    .asciz "vmx32i: IA32_TSC written\n"
msg_tsc_high:     .asciz "vmx32i:   TSC high half=0x"
msg_apic_access:  .asciz "vmx32i: APIC-access page, TPR shadow VTPR 0x20\n"
msg_no_apic_access: .asciz "vmx32i: APIC-access page: not offered\n"
msg_apic_tpr_read: .asciz "vmx32i:   guest read TPR=0x"
msg_apic_tpr_again: .asciz " after writing 0x30=0x"
msg_tpr_vtpr_short: .asciz " VTPR=0x"
msg_apic_bad_address: .asciz "vmx32i:   APIC-access page+0x10: VMfailValid, error=0x"
msg_shadow:       .asciz "vmx32i: VMCS shadowing\n"
msg_no_shadow:    .asciz "vmx32i: VMCS shadowing: not offered\n"
msg_shadow_resume: .asciz "vmx32i:   VMRESUME of the shadow VMCS: CF|ZF=0x"
msg_shadow_read:  .asciz "vmx32i:   guest: GUEST_RIP=0x"
msg_shadow_flags: .asciz " flags=0x"
msg_shadow_mem:   .asciz " ES selector to memory=0x"
msg_shadow_unsupported: .asciz " unsupported field flags=0x"
msg_shadow_error: .asciz "vmx32i:   VM-instruction error=0x"
msg_shadow_rip:   .asciz " shadow GUEST_RIP=0x"
msg_shadow_es_base: .asciz " GUEST_ES_BASE=0x"
msg_no_sweep:     .asciz "vmx32i:   shadow sweep: VMWRITE to exit-information fields not offered\n"
msg_sweep_fields: .asciz "vmx32i:   shadow sweep: fields=0x"
msg_sweep_supported: .asciz " supported=0x"
msg_sweep_bad:    .asciz " mismatches=0x"
msg_sweep_field:  .asciz "vmx32i:   sweep mismatch: field=0x"
msg_sweep_check:  .asciz " check=0x"
msg_sweep_got:    .asciz " got=0x"
msg_sweep_want:   .asciz " want=0x"
msg_sweep_link:   .asciz " link=0x"
msg_shadow_bitmap: .asciz "vmx32i:   VMREAD bitmap+0x10: VMfailValid, error=0x"
msg_tpr:          .asciz "vmx32i: TPR shadow: VTPR 0x20\n"
msg_no_tpr:       .asciz "vmx32i: TPR shadow: not offered\n"
msg_tpr_threshold: .asciz "vmx32i:   TPR threshold=0x"
msg_tpr_offset:   .asciz " virtual-APIC page+0x"
msg_tpr_failed:   .asciz ": VMfailValid, error=0x"
msg_tpr_vtpr:     .asciz "vmx32i:   VTPR after the guest=0x"
msg_done:         .asciz "vmx32i: done\n"
msg_entry_failed: .asciz "vmx32i: VM entry failed\n"
msg_vmx_failed:   .asciz "vmx32i: VMX instruction failed, VM-instruction error=0x"
msg_newline:      .asciz "\n"

    .bss
    .align 4096
page_directory: .skip 4096
vmxon_region:   .skip 4096
vmcs_region:    .skip 4096
ept_pml4:       .skip 4096
ept_pdpt:       .skip 4096
ept_pd:         .skip 4096
ept_pt:         .skip 4096
ept1_pml4:      .skip 4096
ept1_pdpt:      .skip 4096
ept1_pd:        .skip 4096
pml_page:       .skip 4096
eptp_list:      .skip 4096
msr_bitmap:     .skip 4096
msr_entry_list: .skip 4096
msr_store_list: .skip 4096
msr_exit_list:  .skip 4096
tpr_page:       .skip 4096
shadow_vmcs:    .skip 4096
plain_vmcs:     .skip 4096
vmread_bitmap:  .skip 4096
vmwrite_bitmap: .skip 4096
apic_access_page: .skip 4096
l2_idt:         .skip 4096
l2_buf:         .skip 4096
tss:            .skip 4096
    .skip 8192
host_stack_top:
    .skip 4096
guest_stack_top:
