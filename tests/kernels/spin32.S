/* spin32: a hostile multiboot1 kernel that is not turtles. In 32-bit protected mode without
 * paging it disables interrupts, arms its local APIC's timer (xAPIC MMIO, periodic, every
 * 100,000 ticks) and spins forever: the timer keeps firing but no interrupt can be taken and
 * the kernel never exits on its own. The hypervisor's watchdog must stop it (issue 14,
 * finding 15) and survive. */

    .set MB1_MAGIC, 0x1BADB002
    .set MB1_FLAGS, 0x00000003
    .set COM1, 0x3f8
    .set APIC, 0xfee00000

    .text
    .code32
    .align 4
    .long MB1_MAGIC
    .long MB1_FLAGS
    .long -(MB1_MAGIC + MB1_FLAGS)

    .global _start
_start:
    cli
    mov $msg_hello, %esi
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %ah
    mov $COM1 + 5, %dx
2:  in %dx, %al
    test $0x20, %al                     /* transmitter holding register empty */
    jz 2b
    mov %ah, %al
    mov $COM1, %dx
    out %al, %dx
    jmp 1b
3:  movl $0x1ff, APIC + 0xf0            /* SVR: software-enabled */
    movl $0xb, APIC + 0x3e0             /* divide by 1 */
    movl $0x20040, APIC + 0x320         /* LVT timer: periodic, vector 0x40 */
    movl $100000, APIC + 0x380          /* initial count */
4:  jmp 4b

    .section .rodata
msg_hello: .asciz "spin32: interrupts off, APIC timer armed, spinning\n"
