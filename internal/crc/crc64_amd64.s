//go:build amd64 && !purego

#include "go_asm.h"
#include "textflag.h"

// The algebra is in crc64_amd64.go. Registers: SI walks p, CX counts the
// bytes left, DX points at the clmulKeys; X0..X7 are lanes, X8..X14 scratch,
// X15 the fold constants in use (ABI0 code may clobber it; the ABI wrapper
// zeroes it again for Go code).

// FOLD moves lane x forward by the distance whose constants are in k and xors
// in the next block of input, src (loaded unaligned: legacy-SSE memory operands
// would demand 16-byte alignment). t is scratch.
#define FOLD(x, t, k, src) \
	MOVO      x, t         \
	PCLMULQDQ $0x00, k, x  \
	PCLMULQDQ $0x11, k, t  \
	PXOR      t, x         \
	MOVOU     src, t       \
	PXOR      t, x

// MERGE moves lane x forward by k's distance and xors it into lane dst.
#define MERGE(x, t, k, dst) \
	MOVO      x, t          \
	PCLMULQDQ $0x00, k, x   \
	PCLMULQDQ $0x11, k, t   \
	PXOR      x, dst        \
	PXOR      t, dst

// func foldCLMUL(crc uint64, p []byte, k *clmulKeys) (lo, hi uint64)
TEXT ·foldCLMUL(SB), NOSPLIT, $0-56
	MOVQ crc+0(FP), AX
	MOVQ p_base+8(FP), SI
	MOVQ p_len+16(FP), CX
	MOVQ k+32(FP), DX

	// crc goes into the first eight bytes: the low qword, upper one zeroed.
	MOVQ AX, X9
	CMPQ CX, $128
	JB   one

	// Eight lanes: X0..X7 hold consecutive 16-byte blocks.
	MOVOU 0(SI), X0
	MOVOU 16(SI), X1
	MOVOU 32(SI), X2
	MOVOU 48(SI), X3
	MOVOU 64(SI), X4
	MOVOU 80(SI), X5
	MOVOU 96(SI), X6
	MOVOU 112(SI), X7
	PXOR  X9, X0
	ADDQ  $128, SI
	SUBQ  $128, CX
	MOVOU clmulKeys_fold1024(DX), X15

loop8:
	CMPQ CX, $128
	JB   merge8
	FOLD(X0, X8, X15, 0(SI))
	FOLD(X1, X9, X15, 16(SI))
	FOLD(X2, X10, X15, 32(SI))
	FOLD(X3, X11, X15, 48(SI))
	FOLD(X4, X12, X15, 64(SI))
	FOLD(X5, X13, X15, 80(SI))
	FOLD(X6, X14, X15, 96(SI))
	FOLD(X7, X8, X15, 112(SI))
	ADDQ $128, SI
	SUBQ $128, CX
	JMP  loop8

merge8:
	// Eight lanes to one as a tree: lane i is 7-i blocks ahead of lane 7.
	MOVOU clmulKeys_fold512(DX), X15
	MERGE(X0, X8, X15, X4)
	MERGE(X1, X9, X15, X5)
	MERGE(X2, X10, X15, X6)
	MERGE(X3, X11, X15, X7)
	MOVOU clmulKeys_fold256(DX), X15
	MERGE(X4, X8, X15, X6)
	MERGE(X5, X9, X15, X7)
	MOVOU clmulKeys_fold128(DX), X15
	MERGE(X6, X8, X15, X7)
	MOVO  X7, X0
	JMP   loop1

one:
	MOVOU 0(SI), X0
	PXOR  X9, X0
	ADDQ  $16, SI
	SUBQ  $16, CX
	MOVOU clmulKeys_fold128(DX), X15

loop1:
	CMPQ CX, $16
	JB   tail
	FOLD(X0, X8, X15, 0(SI))
	ADDQ $16, SI
	SUBQ $16, CX
	JMP  loop1

tail:
	// CX = r < 16 bytes T are left at SI. The message is X‖T: X's first r
	// bytes (to the top of X1, zero below) come 128 bits before the block
	// X[r:]‖T (X shifted down by r bytes, T from the top of the last 16 bytes
	// of p, which may overlap blocks already folded).
	TESTQ CX, CX
	JZ    done
	LEAQ  clmulKeys_shuf(DX)(CX*1), AX
	MOVOU 0(AX), X3                        // shuf[r:]
	MOVOU 16(AX), X4                       // shuf[16+r:]
	LEAQ  clmulKeys_mask(DX)(CX*1), AX
	MOVOU 0(AX), X5                        // mask[r:]
	MOVOU -16(SI)(CX*1), X2                // p[len-16:]
	MOVO  X0, X1
	PSHUFB X3, X1
	PSHUFB X4, X0
	PAND   X5, X2
	PXOR   X2, X0
	MERGE(X1, X8, X15, X0)

done:
	MOVQ   X0, lo+40(FP)
	PSHUFD $0xee, X0, X0
	MOVQ   X0, hi+48(FP)
	RET
