/*
 * x86_64 (System V) coroutine context switch for weft's hub.
 *
 * A suspended context is just a stack pointer: everything the ABI says a
 * callee must preserve (rbx, rbp, r12-r15, the MXCSR control bits and the
 * x87 control word) is pushed on the suspended stack itself, under the return
 * address into the caller of weft__ctx_switch. Caller-saved registers need no
 * saving: the compiler already treats the call as clobbering them.
 *
 *   void weft__ctx_switch(weft__ctx *from, weft__ctx *to);
 *       Save the running context into from->sp, resume to->sp.
 *   void weft__ctx_make(weft__ctx *ctx, void *stack_lo, size_t size,
 *                       void (*entry)(void *), void *arg);
 *       Prepare ctx so that switching to it calls entry(arg) on the stack
 *       [stack_lo, stack_lo + size). entry must never return.
 *
 * Frame of a suspended context, from ctx->sp upwards:
 *   [sp+0]  MXCSR (low 4 bytes) and x87 control word (next 2)
 *   [sp+8]  r15   [sp+16] r14   [sp+24] r13   [sp+32] r12
 *   [sp+40] rbx   [sp+48] rbp   [sp+56] return address
 */
	.text

	.globl	weft__ctx_switch
	.hidden	weft__ctx_switch
	.type	weft__ctx_switch, @function
	.p2align 4
weft__ctx_switch:
	.cfi_startproc
	pushq	%rbp
	pushq	%rbx
	pushq	%r12
	pushq	%r13
	pushq	%r14
	pushq	%r15
	subq	$8, %rsp
	stmxcsr	(%rsp)
	fnstcw	4(%rsp)
	movl	(%rsp), %eax
	movzwl	4(%rsp), %edx
	movq	%rsp, (%rdi)
	movq	(%rsi), %rsp
	/* Reload the control words only when they differ from the ones in
	 * force: ldmxcsr and fldcw are slow, and coroutines almost never
	 * change them. */
	cmpl	(%rsp), %eax
	jne	2f
1:	cmpw	4(%rsp), %dx
	jne	3f
4:
	addq	$8, %rsp
	popq	%r15
	popq	%r14
	popq	%r13
	popq	%r12
	popq	%rbx
	popq	%rbp
	ret
2:	ldmxcsr	(%rsp)
	jmp	1b
3:	fldcw	4(%rsp)
	jmp	4b
	.cfi_endproc
	.size	weft__ctx_switch, .-weft__ctx_switch

/* rdi = ctx, rsi = stack_lo, rdx = size, rcx = entry, r8 = arg */
	.globl	weft__ctx_make
	.hidden	weft__ctx_make
	.type	weft__ctx_make, @function
	.p2align 4
weft__ctx_make:
	.cfi_startproc
	addq	%rdx, %rsi
	andq	$-16, %rsi
	/* The switch pops 64 bytes of frame and returns into the trampoline
	 * with rsp = stack_top - 16, a multiple of 16, so that the trampoline's
	 * call enters entry with rsp % 16 == 8, as the ABI wants. The two zero
	 * slots above end debugger backtraces. */
	movq	$0, -8(%rsi)
	movq	$0, -16(%rsi)
	leaq	weft__ctx_trampoline(%rip), %rax
	movq	%rax, -24(%rsi)          /* return address */
	movq	$0, -32(%rsi)            /* rbp */
	movq	$0, -40(%rsi)            /* rbx */
	movq	%rcx, -48(%rsi)          /* r12 = entry */
	movq	%r8, -56(%rsi)           /* r13 = arg */
	movq	$0, -64(%rsi)            /* r14 */
	movq	$0, -72(%rsi)            /* r15 */
	/* Default control state: all FP exceptions masked, round to nearest,
	 * x87 double extended precision (what a new thread starts with). */
	movl	$0x1f80, -80(%rsi)
	movw	$0x037f, -76(%rsi)
	movw	$0, -74(%rsi)
	leaq	-80(%rsi), %rax
	movq	%rax, (%rdi)
	ret
	.cfi_endproc
	.size	weft__ctx_make, .-weft__ctx_make

/* First code a new context runs: entry(arg), which never returns. */
	.type	weft__ctx_trampoline, @function
	.p2align 4
weft__ctx_trampoline:
	.cfi_startproc
	.cfi_undefined rip
	movq	%r13, %rdi
	callq	*%r12
	ud2
	.cfi_endproc
	.size	weft__ctx_trampoline, .-weft__ctx_trampoline

	.section .note.GNU-stack,"",@progbits
