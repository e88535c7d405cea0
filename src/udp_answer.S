/* udp-answer FILE: a static x86-64 Linux program (no libc, raw system calls) that the Linux
 * guest's /init runs to answer one UDP request over its virtio-net (busybox has no UDP
 * server). It reads FILE (up to 512 bytes: what /init computed, e.g. its disk's checksum),
 * binds UDP port 7777 on every address, waits for one datagram, sends its sender the
 * datagram's bytes, a space and FILE's bytes, and exits 0 (1 on any failed system call).
 * The runner assembles it with binutils (src/linux.rs) into the initramfs as /bin/udp-answer.
 */
        .intel_syntax noprefix
        .set SYS_READ, 0
        .set SYS_OPEN, 2
        .set SYS_SOCKET, 41
        .set SYS_SENDTO, 44
        .set SYS_RECVFROM, 45
        .set SYS_BIND, 49
        .set SYS_EXIT, 60
        .set AF_INET, 2
        .set SOCK_DGRAM, 2
        .set FILE_MAX, 512
        .set REQUEST_MAX, 1024

        .globl _start
        .text
_start:
        mov rdi, [rsp + 16]             /* argv[1] */
        test rdi, rdi
        jz fail
        mov eax, SYS_OPEN               /* open(FILE, O_RDONLY) */
        xor esi, esi
        xor edx, edx
        syscall
        test rax, rax
        js fail
        mov rdi, rax                    /* read(fd, file, FILE_MAX) */
        mov eax, SYS_READ
        lea rsi, [rip + file]
        mov edx, FILE_MAX
        syscall
        test rax, rax
        js fail
        mov r13, rax                    /* r13: FILE's length */
        mov eax, SYS_SOCKET             /* socket(AF_INET, SOCK_DGRAM, 0) */
        mov edi, AF_INET
        mov esi, SOCK_DGRAM
        xor edx, edx
        syscall
        test rax, rax
        js fail
        mov r14, rax                    /* r14: the socket */
        mov eax, SYS_BIND               /* bind(s, &address, 16) */
        mov rdi, r14
        lea rsi, [rip + address]
        mov edx, 16
        syscall
        test rax, rax
        jnz fail
        mov eax, SYS_RECVFROM           /* recvfrom(s, answer, REQUEST_MAX, 0, &peer, &peer_len) */
        mov rdi, r14
        lea rsi, [rip + answer]
        mov edx, REQUEST_MAX
        xor r10d, r10d
        lea r8, [rip + peer]
        lea r9, [rip + peer_len]
        syscall
        test rax, rax
        js fail
        lea rdi, [rip + answer]         /* answer: the request (already there), ' ', FILE */
        add rdi, rax
        mov byte ptr [rdi], ' '
        inc rdi
        lea rsi, [rip + file]
        mov rcx, r13
        rep movsb
        lea rsi, [rip + answer]
        mov rdx, rdi                    /* length: end - start */
        sub rdx, rsi
        mov eax, SYS_SENDTO             /* sendto(s, answer, length, 0, &peer, 16) */
        mov rdi, r14
        xor r10d, r10d
        lea r8, [rip + peer]
        mov r9d, 16
        syscall
        test rax, rax
        js fail
        mov eax, SYS_EXIT
        xor edi, edi
        syscall
fail:
        mov eax, SYS_EXIT
        mov edi, 1
        syscall

        .data
        .p2align 3
address:                                /* struct sockaddr_in: AF_INET, port 7777, any */
        .word AF_INET
        .byte 7777 >> 8, 7777 & 0xff
        .long 0
        .quad 0
peer_len:
        .long 16

        .bss
        .p2align 3
peer:
        .skip 16
file:
        .skip FILE_MAX
answer:
        .skip REQUEST_MAX + 1 + FILE_MAX
