/*
 * aarch64 (AAPCS64) coroutine context switch for weft's hub.
 *
 * A suspended context is just a stack pointer: the callee-saved registers
 * (x19-x28, the frame pointer x29, the link register x30 and the low halves
 * d8-d15 of v8-v15) and the floating-point control register FPCR (rounding
 * mode, flush-to-zero: each coroutine keeps its own, as on x86_64) are
 * stored on the suspended stack itself. x30 holds the address to resume at.
 *
 *   void weft__ctx_switch(weft__ctx *from, weft__ctx *to);
 *   void weft__ctx_make(weft__ctx *ctx, void *stack_lo, size_t size,
 *                       void (*entry)(void *), void *arg);
 *
 * Frame of a suspended context (176 bytes, a multiple of 16), from sp up:
 *   x19 x20 | x21 x22 | x23 x24 | x25 x26 | x27 x28 | x29 x30 |
 *   d8 d9 | d10 d11 | d12 d13 | d14 d15 | fpcr (and 8 unused bytes)
 */
	.text

	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, %function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	sub	sp, sp, #176
	stp	x19, x20, [sp, #0]
	stp	x21, x22, [sp, #16]
	stp	x23, x24, [sp, #32]
	stp	x25, x26, [sp, #48]
	stp	x27, x28, [sp, #64]
	stp	x29, x30, [sp, #80]
	stp	d8, d9, [sp, #96]
	stp	d10, d11, [sp, #112]
	stp	d12, d13, [sp, #128]
	stp	d14, d15, [sp, #144]
	mrs	x3, fpcr
	str	x3, [sp, #160]
	mov	x2, sp
	str	x2, [x0]
	ldr	x2, [x1]
	mov	sp, x2
	/* Write FPCR only when it differs: the write is slow and coroutines
	 * almost never change it. */
	ldr	x4, [sp, #160]
	cmp	x4, x3
	b.eq	1f
	msr	fpcr, x4
1:
	ldp	x19, x20, [sp, #0]
	ldp	x21, x22, [sp, #16]
	ldp	x23, x24, [sp, #32]
	ldp	x25, x26, [sp, #48]
	ldp	x27, x28, [sp, #64]
	ldp	x29, x30, [sp, #80]
	ldp	d8, d9, [sp, #96]
	ldp	d10, d11, [sp, #112]
	ldp	d12, d13, [sp, #128]
	ldp	d14, d15, [sp, #144]
	add	sp, sp, #176
	ret
	.cfi_endproc
	.size	weft__ctx_switch, .-weft__ctx_switch

/* x0 = ctx, x1 = stack_lo, x2 = size, x3 = entry, x4 = arg */
	.globl	weft__ctx_make
	.hidden	weft__ctx_make
	.type	weft__ctx_make, %function
	.p2align 4
weft__ctx_make:
	.cfi_startproc
	add	x1, x1, x2
	and	x1, x1, #-16
	sub	x1, x1, #176
	stp	x3, x4, [x1, #0]         /* x19 = entry, x20 = arg */
	stp	xzr, xzr, [x1, #16]
	stp	xzr, xzr, [x1, #32]
	stp	xzr, xzr, [x1, #48]
	stp	xzr, xzr, [x1, #64]
	adr	x4, weft__ctx_trampoline
	stp	xzr, x4, [x1, #80]       /* x29 = 0 ends backtraces, x30 = trampoline */
	stp	xzr, xzr, [x1, #96]
	stp	xzr, xzr, [x1, #112]
	stp	xzr, xzr, [x1, #128]
	stp	xzr, xzr, [x1, #144]
	stp	xzr, xzr, [x1, #160]     /* FPCR 0: round to nearest, no traps */
	str	x1, [x0]
	ret
	.cfi_endproc
	.size	weft__ctx_make, .-weft__ctx_make

/* First code a new context runs: entry(arg), which never returns. */
	.type	weft__ctx_trampoline, %function
	.p2align 4
weft__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined x30
	mov	x0, x20
	blr	x19
	brk	#0
	.cfi_endproc
	.size	weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack,"",%progbits
