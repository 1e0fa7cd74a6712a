/*
 * A bare-metal multiboot guest that dirties memory at a chosen rate and checks every
 * page it wrote.
 *
 * Why it is shaped this way (the hosts run KVM under KVM-PVM, nested without VMX):
 *  - Guest ring-0, real-mode and 32-bit code is emulated there at roughly 1 MIPS; only
 *    long-mode ring-3 code runs natively. So the 32-bit entry does the minimum (page
 *    tables, long mode), ring 0 only sets up and services interrupts, and the workload
 *    runs in ring 3. The identity map is user-accessible so ring 3 can touch everything.
 *  - Under PVM ring 3 cannot do port I/O, and `int N` faults instead of reaching the
 *    gate, but #UD does reach the guest IDT: `ud2` with a function number in %rax is
 *    the system call (sleep until the next tick; print READY).
 *  - qboot leaves the LAPIC's LINT0 masked, and the PIC's interrupts reach the CPU only
 *    through LINT0 as ExtINT: without virtual-wire mode the PIT never ticks.
 *  - QEMU's -kernel loads multiboot ELF images only as ELF32: build.rs links this as
 *    x86-64 and converts the result with objcopy.
 * Memory: image at 1 MiB, per-page visit counters at 4..8 MiB, working set from 16 MiB.
 */
#define HZ 100
#define PIT_DIVISOR (1193182 / HZ)
#define COUNTERS 0x400000      /* per-page visit counters: 4 MiB .. 8 MiB            */
#define WSS_BASE 0x1000000     /* the working set starts at 16 MiB                   */
#define COM1 0x3f8
#define LAPIC 0xfee00000

        .section .multiboot, "a"
        .align 4
        .long 0x1BADB002
        .long 0x00000003
        .long -(0x1BADB002 + 0x00000003)

        .section .text
        .code32
        .globl _start
_start:
        cli
        mov     %ebx, mbi_ptr
        mov     $kstack_top, %esp

        /* Identity-map the first 4 GiB with 2 MiB pages, user-accessible. */
        mov     $pd, %edi
        xor     %eax, %eax
        mov     $2048, %ecx
1:      mov     %eax, %edx
        or      $0x87, %edx             /* present, writable, user, 2 MiB */
        mov     %edx, (%edi)
        movl    $0, 4(%edi)
        add     $0x200000, %eax
        add     $8, %edi
        loop    1b
        mov     $pdpt, %edi
        mov     $pd, %eax
        or      $0x7, %eax
        mov     $4, %ecx
2:      mov     %eax, (%edi)
        movl    $0, 4(%edi)
        add     $4096, %eax
        add     $8, %edi
        loop    2b
        mov     $pdpt, %eax
        or      $0x7, %eax
        mov     %eax, pml4

        mov     %cr4, %eax
        or      $0x20, %eax             /* PAE */
        mov     %eax, %cr4
        mov     $pml4, %eax
        mov     %eax, %cr3
        mov     $0xC0000080, %ecx       /* EFER.LME */
        rdmsr
        or      $0x100, %eax
        wrmsr
        mov     %cr0, %eax
        or      $0x80000001, %eax       /* PG | PE */
        mov     %eax, %cr0
        lgdt    gdt_ptr
        ljmp    $0x08, $long_entry

        .code64
long_entry:
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        xor     %ax, %ax
        mov     %ax, %fs
        mov     %ax, %gs
        mov     $kstack_top, %rsp

        /* TSS descriptor: base and limit filled in here, rsp0 for ring 3 -> 0. */
        lea     tss(%rip), %rax
        mov     %ax, gdt_tss+2(%rip)
        shr     $16, %rax
        mov     %al, gdt_tss+4(%rip)
        mov     %ah, gdt_tss+7(%rip)
        lea     kstack_top(%rip), %rax
        mov     %rax, tss+4(%rip)
        mov     $0x28, %ax
        ltr     %ax

        /* IDT: every vector to a fault handler, then the ones we use. */
        xor     %ecx, %ecx
3:      lea     fault_handler(%rip), %rax
        call    set_gate
        inc     %ecx
        cmp     $256, %ecx
        jne     3b
        mov     $6, %ecx                /* #UD: ud2 from ring 3 is our system call */
        lea     ud_handler(%rip), %rax
        call    set_gate
        mov     $32, %ecx               /* PIT through the PIC */
        lea     timer_handler(%rip), %rax
        call    set_gate
        mov     $39, %ecx               /* PIC spurious */
        lea     iret_handler(%rip), %rax
        call    set_gate
        mov     $0xff, %ecx             /* LAPIC spurious */
        lea     iret_handler(%rip), %rax
        call    set_gate
        lidt    idt_ptr(%rip)

        /* PIC: remap to 32..47, only IRQ0 unmasked. */
        mov     $0x11, %al
        out     %al, $0x20
        out     %al, $0xa0
        mov     $0x20, %al
        out     %al, $0x21
        mov     $0x28, %al
        out     %al, $0xa1
        mov     $4, %al
        out     %al, $0x21
        mov     $2, %al
        out     %al, $0xa1
        mov     $1, %al
        out     %al, $0x21
        out     %al, $0xa1
        mov     $0xfe, %al
        out     %al, $0x21
        mov     $0xff, %al
        out     %al, $0xa1

        /* PIT channel 0, rate generator at HZ. */
        mov     $0x34, %al
        out     %al, $0x43
        mov     $(PIT_DIVISOR & 0xff), %al
        out     %al, $0x40
        mov     $(PIT_DIVISOR >> 8), %al
        out     %al, $0x40

        /* LAPIC in virtual-wire mode: qboot leaves LINT0 masked, and the PIC's
         * interrupts only reach the CPU through LINT0 as ExtINT. */
        mov     $LAPIC, %rbx
        movl    $0x1ff, 0xf0(%rbx)      /* software enable, spurious vector 0xff */
        movl    $0x700, 0x350(%rbx)     /* LINT0: ExtINT */
        movl    $0x400, 0x360(%rbx)     /* LINT1: NMI */

        call    parse_cmdline
        call    clamp_wss

        /* Drop to ring 3, interrupts on. */
        pushq   $0x1b
        lea     ustack_top(%rip), %rax
        push    %rax
        pushq   $0x202
        pushq   $0x23
        lea     user_main(%rip), %rax
        push    %rax
        iretq

/* set_gate: vector in %ecx, handler in %rax; interrupt gate, DPL 0. */
set_gate:
        lea     idt(%rip), %rdi
        mov     %rcx, %rdx
        shl     $4, %rdx
        add     %rdx, %rdi
        mov     %ax, (%rdi)
        movw    $0x08, 2(%rdi)
        movw    $0x8e00, 4(%rdi)
        mov     %rax, %rdx
        shr     $16, %rdx
        mov     %dx, 6(%rdi)
        shr     $16, %rdx
        mov     %edx, 8(%rdi)
        movl    $0, 12(%rdi)
        ret

/* Reads "wss_mb=N rate_mb=N" from the multiboot command line. */
parse_cmdline:
        mov     mbi_ptr(%rip), %esi
        testl   $4, (%rsi)
        jz      9f
        mov     16(%rsi), %esi          /* cmdline physical address */
4:      movzbl  (%rsi), %eax
        test    %al, %al
        jz      9f
        lea     key_wss(%rip), %rdi
        call    match_key
        jnc     5f
        call    read_number
        mov     %rax, wss_mb(%rip)
        jmp     4b
5:      lea     key_rate(%rip), %rdi
        call    match_key
        jnc     6f
        call    read_number
        mov     %rax, rate_mb(%rip)
        jmp     4b
6:      inc     %rsi
        jmp     4b
9:      ret

/* Keeps the working set inside RAM and its counters inside their 4 MiB (8 bytes per
 * page: at most 2048 MiB), so a bad command line cannot make the guest write into MMIO
 * or over its own counters. The multiboot info's mem_upper (flag bit 0) is the KiB of
 * RAM above 1 MiB up to the first hole; READY then reports the clamped size. */
clamp_wss:
        mov     wss_mb(%rip), %rax
        cmp     $2048, %rax
        jbe     13f
        mov     $2048, %eax
13:     mov     mbi_ptr(%rip), %esi
        testl   $1, (%rsi)
        jz      14f
        mov     8(%rsi), %ecx           /* mem_upper in KiB */
        shr     $10, %ecx               /* RAM ends at 1 + ecx MiB ... */
        sub     $15, %rcx               /* ... so 1 + ecx - 16 MiB lie above WSS_BASE */
        jns     15f
        xor     %ecx, %ecx
15:     cmp     %rcx, %rax
        jbe     14f
        mov     %rcx, %rax
14:     mov     %rax, wss_mb(%rip)
        ret

/* match_key: if the string at %rsi starts with the NUL-terminated key at %rdi, advance
 * %rsi past it and set CF; else leave %rsi and clear CF. */
match_key:
        mov     %rsi, %r8
7:      movzbl  (%rdi), %eax
        test    %al, %al
        jz      8f
        cmpb    (%r8), %al
        jne     10f
        inc     %rdi
        inc     %r8
        jmp     7b
8:      mov     %r8, %rsi
        stc
        ret
10:     clc
        ret

/* read_number: decimal at %rsi into %rax, %rsi advanced. */
read_number:
        xor     %eax, %eax
11:     movzbl  (%rsi), %ecx
        sub     $'0', %ecx
        cmp     $9, %ecx
        ja      12f
        imul    $10, %rax, %rax
        add     %rcx, %rax
        inc     %rsi
        jmp     11b
12:     ret

/* ---- ring 0 services, reached by ud2 from ring 3 -------------------------------
 * Under KVM-PVM ring 3 runs natively but cannot do port I/O, and `int N` faults;
 * #UD does reach the guest IDT, so ud2 with a function number in %rax is the call.
 *   rax=1: wait for the next timer tick (prints a heartbeat once a second)
 *   rax=2: print the READY line
 * Ring 0 code is emulated slowly here, so it does as little as possible. */
ud_handler:
        push    %rax
        push    %rbx
        push    %rcx
        push    %rdx
        push    %rsi
        push    %rdi
        push    %r8
        cmp     $2, %rax
        je      20f
        cmp     $1, %rax
        jne     29f
        mov     ticks(%rip), %rbx
21:     sti
        hlt
        cli
        cmp     ticks(%rip), %rbx
        je      21b
        mov     ticks(%rip), %rax
        sub     last_hb(%rip), %rax
        cmp     $HZ, %rax
        jb      29f
        call    heartbeat
        jmp     29f
20:     call    ready
29:     addq    $2, 56(%rsp)            /* return past the ud2 */
        pop     %r8
        pop     %rdi
        pop     %rsi
        pop     %rdx
        pop     %rcx
        pop     %rbx
        pop     %rax
        iretq

timer_handler:
        push    %rax
        incq    ticks(%rip)
        mov     $0x20, %al
        out     %al, $0x20
        pop     %rax
        iretq

iret_handler:
        iretq

fault_handler:
        lea     msg_fault(%rip), %rsi
        call    puts
30:     cli
        hlt
        jmp     30b

ready:
        lea     msg_ready(%rip), %rsi
        call    puts
        mov     wss_mb(%rip), %rax
        call    putnum
        lea     msg_rate(%rip), %rsi
        call    puts
        mov     rate_mb(%rip), %rax
        call    putnum
        mov     $'\n', %al
        call    putc
        mov     ticks(%rip), %rax
        mov     %rax, last_hb(%rip)
        mov     %rax, start_tick(%rip)
        ret

/* HB t=<s> rate_mb=<MiB written in the last second> errors=<n> pages=<n> */
heartbeat:
        mov     ticks(%rip), %rax
        mov     %rax, last_hb(%rip)
        lea     msg_hb(%rip), %rsi
        call    puts
        mov     ticks(%rip), %rax
        sub     start_tick(%rip), %rax
        xor     %edx, %edx
        mov     $HZ, %ecx
        div     %rcx
        call    putnum
        lea     msg_rate(%rip), %rsi
        call    puts
        mov     pages(%rip), %rax
        mov     %rax, %rbx
        sub     last_pages(%rip), %rax
        mov     %rbx, last_pages(%rip)
        shr     $8, %rax                /* 256 pages of 4 KiB per MiB */
        call    putnum
        lea     msg_err(%rip), %rsi
        call    puts
        mov     errors(%rip), %rax
        call    putnum
        lea     msg_pages(%rip), %rsi
        call    puts
        mov     pages(%rip), %rax
        call    putnum
        mov     $'\n', %al
        call    putc
        ret

puts:
        movzbl  (%rsi), %eax
        test    %al, %al
        jz      31f
        call    putc
        inc     %rsi
        jmp     puts
31:     ret

putc:
        mov     $COM1, %dx
        out     %al, %dx
        ret

/* putnum: %rax in decimal. */
putnum:
        lea     numbuf+24(%rip), %rdi
        movb    $0, (%rdi)
        mov     $10, %rcx
32:     xor     %edx, %edx
        div     %rcx
        add     $'0', %dl
        dec     %rdi
        mov     %dl, (%rdi)
        test    %rax, %rax
        jnz     32b
        mov     %rdi, %rsi
        jmp     puts

/* ---- ring 3: the workload, at native speed --------------------------------------- */
user_main:
        mov     wss_mb(%rip), %r12
        shl     $8, %r12                /* pages in the working set */
        test    %r12, %r12
        jnz     40f
        mov     $1, %r12
40:     /* Fill: one non-zero word per page makes every page a non-zero page for QEMU. */
        xor     %rcx, %rcx
        mov     $WSS_BASE, %rdi
        mov     $COUNTERS, %rsi
41:     movq    $1, (%rdi)
        movq    $1, (%rsi,%rcx,8)
        add     $4096, %rdi
        inc     %rcx
        cmp     %r12, %rcx
        jne     41b
        mov     $2, %eax
        ud2
        xor     %r13, %r13              /* cursor */
        xor     %r14, %r14              /* accumulator for fractional pages per tick */
42:     /* pages this tick = (acc + rate_mb*256) / HZ */
        mov     rate_mb(%rip), %rax
        shl     $8, %rax
        add     %r14, %rax
        xor     %edx, %edx
        mov     $HZ, %ecx
        div     %rcx
        mov     %rdx, %r14
        mov     %rax, %r15              /* batch */
43:     test    %r15, %r15
        jz      45f
        mov     $COUNTERS, %rsi
        mov     (%rsi,%r13,8), %rbx     /* what the page should hold */
        mov     %r13, %rdi
        shl     $12, %rdi
        add     $WSS_BASE, %rdi
        cmp     (%rdi), %rbx
        je      44f
        incq    errors(%rip)            /* the page lost a write */
44:     inc     %rbx
        mov     %rbx, (%rsi,%r13,8)
        mov     %rbx, (%rdi)
        incq    pages(%rip)
        inc     %r13
        cmp     %r12, %r13
        jne     46f
        xor     %r13, %r13
46:     dec     %r15
        jmp     43b
45:     mov     $1, %eax
        ud2
        jmp     42b

        .section .rodata
key_wss:   .asciz "wss_mb="
key_rate:  .asciz "rate_mb="
msg_ready: .asciz "READY wss_mb="
msg_rate:  .asciz " rate_mb="
msg_hb:    .asciz "HB t="
msg_err:   .asciz " errors="
msg_pages: .asciz " pages="
msg_fault: .asciz "FAULT\n"

        .section .data
        .align 16
gdt:
        .quad 0
        .quad 0x00209A0000000000        /* 0x08 kernel code, 64-bit */
        .quad 0x0000920000000000        /* 0x10 kernel data */
        .quad 0x0000F20000000000        /* 0x18 user data */
        .quad 0x0020FA0000000000        /* 0x20 user code, 64-bit */
gdt_tss:
        .word 103                       /* 0x28 TSS, base filled in at boot */
        .word 0
        .byte 0
        .byte 0x89
        .byte 0
        .byte 0
        .quad 0
gdt_end:
gdt_ptr:
        .word gdt_end - gdt - 1
        .quad gdt
idt_ptr:
        .word 256 * 16 - 1
        .quad idt
mbi_ptr:    .quad 0
wss_mb:     .quad 64
rate_mb:    .quad 0
ticks:      .quad 0
last_hb:    .quad 0
start_tick: .quad 0
pages:      .quad 0
last_pages: .quad 0
errors:     .quad 0
numbuf:     .fill 32, 1, 0

        .section .bss
        .align 4096
pml4:   .skip 4096
pdpt:   .skip 4096
pd:     .skip 4 * 4096
idt:    .skip 4096
tss:    .skip 104
        .align 16
        .skip 16384
kstack_top:
        .skip 16384
ustack_top:
