/* hello32: a plain multiboot1 kernel that is not turtles. 32-bit protected mode, no paging,
 * prints through COM1 by polling the line status register, checks the loader's magic and
 * reads the multiboot information (memory size, command line, memory map with each entry,
 * boot modules with their size and command line), and ends by
 * writing its status to port 0xf4. The tests boot it as a guest of the turtles L0. */

    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00000003          /* page-align modules, memory information */
    .set LOADER_MAGIC, 0x2BADB002
    .set COM1, 0x3f8
    .set EXIT_PORT, 0xf4

    .text
    .code32
    .align 4
multiboot_header:
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

    .global _start
_start:
    mov $stack_top, %esp
    mov %eax, %edi                      /* loader magic */
    mov %ebx, %ebp                      /* multiboot information */
    mov $msg_hello, %esi
    call puts
    cmp $LOADER_MAGIC, %edi
    jne bad_magic
    mov $msg_magic, %esi
    call puts

    mov $msg_mem, %esi
    call puts
    mov 8(%ebp), %eax                   /* mem_upper in KiB */
    call puthex
    mov $msg_kib, %esi
    call puts

    testl $4, (%ebp)                    /* flags bit 2: command line present */
    jz 1f
    mov $msg_cmdline, %esi
    call puts
    mov 16(%ebp), %esi
    call puts
    mov $msg_newline, %esi
    call puts
1:
    testl $64, (%ebp)                   /* flags bit 6: memory map present */
    jz 2f
    mov $msg_mmap, %esi
    call puts
    mov 44(%ebp), %eax                  /* mmap_length */
    call puthex
    mov $msg_newline, %esi
    call puts
    mov 48(%ebp), %ebx                  /* mmap_addr */
    mov 44(%ebp), %ecx
    add %ebx, %ecx                      /* end of the map */
8:  cmp %ecx, %ebx
    jae 2f
    mov $msg_entry, %esi                /* base and length: low 32 bits (guests < 4 GiB) */
    call puts
    mov 4(%ebx), %eax
    call puthex
    mov $msg_len, %esi
    call puts
    mov 12(%ebx), %eax
    call puthex
    mov $msg_type, %esi
    call puts
    mov 20(%ebx), %eax
    call puthex
    mov $msg_newline, %esi
    call puts
    add (%ebx), %ebx                    /* size field: bytes after itself */
    add $4, %ebx
    jmp 8b
2:
    testl $8, (%ebp)                    /* flags bit 3: modules */
    jz 9f
    mov $msg_mods, %esi
    call puts
    mov 20(%ebp), %eax                  /* mods_count */
    call puthex
    mov $msg_newline, %esi
    call puts
    mov 24(%ebp), %ebx                  /* mods_addr: 16-byte entries */
    mov 20(%ebp), %ecx
10: test %ecx, %ecx
    jz 9f
    mov $msg_module, %esi
    call puts
    mov 4(%ebx), %eax                   /* mod_end - mod_start */
    sub (%ebx), %eax
    call puthex
    mov $msg_string, %esi
    call puts
    mov 8(%ebx), %esi                   /* its command line */
    test %esi, %esi
    jz 11f
    call puts
11: mov $msg_quote, %esi
    call puts
    add $16, %ebx
    dec %ecx
    jmp 10b
9:
    mov $msg_done, %esi
    call puts
    xor %eax, %eax
    out %al, $EXIT_PORT
    cli
3:  hlt
    jmp 3b

bad_magic:
    mov $msg_bad, %esi
    call puts
    mov $1, %al
    out %al, $EXIT_PORT
    cli
    hlt

/* putc: send AL, waiting for the transmit holding register to be empty. */
putc:
    push %edx
    push %eax
4:  mov $COM1 + 5, %dx
    in %dx, %al
    test $0x20, %al
    jz 4b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

/* puts: send the NUL-terminated string at ESI. */
puts:
    push %eax
5:  lodsb
    test %al, %al
    jz 6f
    call putc
    jmp 5b
6:  pop %eax
    ret

/* puthex: send EAX as 8 hex digits. */
puthex:
    push %ecx
    push %edx
    mov %eax, %edx
    mov $8, %ecx
7:  rol $4, %edx
    mov %edx, %eax
    and $0xf, %eax
    mov hex_digits(%eax), %al
    call putc
    loop 7b
    pop %edx
    pop %ecx
    ret

    .section .rodata
hex_digits:  .ascii "0123456789abcdef"
msg_hello:   .asciz "hello32: a plain multiboot kernel, not turtles\n"
msg_magic:   .asciz "hello32: multiboot magic ok\n"
msg_bad:     .asciz "hello32: bad multiboot magic\n"
msg_mem:     .asciz "hello32: mem_upper=0x"
msg_kib:     .asciz " KiB\n"
msg_cmdline: .asciz "hello32: cmdline="
msg_mmap:    .asciz "hello32: mmap bytes=0x"
msg_newline: .asciz "\n"
msg_entry:   .asciz "hello32: mmap base=0x"
msg_len:     .asciz " len=0x"
msg_type:    .asciz " type=0x"
msg_mods:    .asciz "hello32: modules=0x"
msg_module:  .asciz "hello32: module bytes=0x"
msg_string:  .asciz " cmdline=\""
msg_quote:   .asciz "\"\n"
msg_done:    .asciz "hello32: done\n"

    .bss
    .align 16
stack:
    .skip 4096
stack_top:
