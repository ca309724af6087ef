/*
 * xsum.h
 *		Exact, order-independent sums of doubles and of their squares, for mean and
 *		standard deviation that are the same bits however the values were added or merged.
 *
 * Floating-point sums (naive, Kahan, Welford) depend on the order of the additions, so a
 * stream's metrics computed batch by batch and the same metrics computed by a query would
 * differ in the last bits. Here both sums are kept exactly, as fixed-point integers
 * ("superaccumulators") over the whole range:
 *
 *	 sum	sum of x, in 32-bit digits held in int64 limbs; digit k weighs 2^(32k - 1074)
 *			(the smallest subnormal is 2^-1074), TRIB_XSUM_SUM_DIGITS of them: room for
 *			2^64 values of DBL_MAX.
 *	 sq		sum of x^2, digit k weighs 2^(32k - 2148), TRIB_XSUM_SQ_DIGITS digits.
 *
 * A double is m 2^e with m an integer of at most 53 bits; its bits are added into the
 * digits they fall on, and m^2 (106 bits, from 32-bit halves) into those of 2^(2e). This is
 * exact over the whole double range, including squares that overflow or underflow a double
 * (x*x with fma(x, x, -x*x) is exact only away from both ends), and it costs a handful of
 * integer additions per value. Each limb has 31 bits of headroom for carries; they are
 * propagated (normalized) every TRIB_XSUM_NORMALIZE_EVERY additions, after a merge, and
 * into a canonical copy (digits in [0, 2^32), sign and magnitude) before reading or storing.
 * NaN, +inf and -inf are counted apart.
 *
 * Merging is exact addition, so the state is a function of the multiset of values only.
 *
 * Read-outs, computed from the canonical exact state (so they too depend on the multiset
 * only) with double-double arithmetic (about 106 bits) and rounded once to double:
 *	 mean = S1 / n; sample variance = (n S2 - S1^2) / (n (n - 1)), with n S2 - S1^2 an
 *	 exact integer (no cancellation: epoch seconds around 1.7e9 with variance 1 give a
 *	 correct standard deviation); stddev = its square root. Constant data has stddev 0.
 *	 As PostgreSQL's float8 avg and stddev_samp: any NaN makes both NaN; mean is +inf or
 *	 -inf with infinities of one sign, NaN with both; stddev is NaN when any value is
 *	 infinite; mean needs one value, stddev two (else no result). A stddev beyond DBL_MAX
 *	 (finite values near +-DBL_MAX) is +inf rather than an error.
 *
 * Memory: a fixed struct of about 1.6 KiB, no pointers (copy it with memcpy). Stored, a few
 * dozen bytes for ordinary data.
 *
 * Stored format (TribXsumSerialize), version TRIB_XSUM_FORMAT_VERSION = 1; varints LEB128:
 *	 byte 0		format version (1)
 *	 byte 1		0 (reserved)
 *	 varints	finite count, NaN count, +inf count, -inf count
 *	 sum, sq	each: varint number of digits n (0: the sum is 0), and when not 0 the index
 *				of the lowest digit (varint), a sign byte (0 positive, 1 negative; sq is
 *				never negative) and n digits of the magnitude, uint32 little-endian, the
 *				first and the last not 0
 */
#ifndef TRIBUTARY_QUALITY_XSUM_H
#define TRIBUTARY_QUALITY_XSUM_H

#include "postgres.h"

#define TRIB_XSUM_FORMAT_VERSION 1
#define TRIB_XSUM_DIGIT_BITS 32
/* sum of x: digit 0 weighs 2^-1074; 68 digits reach past 2^64 * 2^1024 */
#define TRIB_XSUM_SUM_LOW_EXP (-1074)
#define TRIB_XSUM_SUM_DIGITS 68
/* sum of x^2: digit 0 weighs 2^-2148; 135 digits reach past 2^64 * 2^2048 */
#define TRIB_XSUM_SQ_LOW_EXP (-2148)
#define TRIB_XSUM_SQ_DIGITS 135
/* additions between carry propagations (each adds < 3 * 2^32 to a limb) */
#define TRIB_XSUM_NORMALIZE_EVERY (1 << 20)

/* An accumulator; fields are private to xsum.c. Plain data: memcpy copies it. */
typedef struct TribXsum
{
	int64		sum[TRIB_XSUM_SUM_DIGITS];
	int64		sq[TRIB_XSUM_SQ_DIGITS];
	uint64		count;			/* finite values */
	uint64		nan_count;
	uint64		posinf_count;
	uint64		neginf_count;
	uint32		pending;		/* additions since the last normalization */
} TribXsum;

/* Set up an empty accumulator. */
extern void TribXsumInit(TribXsum *acc);

/* Add one value. */
extern void TribXsumAdd(TribXsum *acc, double value);

/* Add src's values to dst (exactly). */
extern void TribXsumMerge(TribXsum *dst, const TribXsum *src);

/* Values added: finite, NaN and infinite. */
extern uint64 TribXsumCount(const TribXsum *acc);

/* The sum rounded to double (+-inf beyond DBL_MAX), as float8 sum; false when empty. */
extern bool TribXsumSum(const TribXsum *acc, double *result);

/* The mean; false when empty. */
extern bool TribXsumMean(const TribXsum *acc, double *result);

/* The sample variance; false with fewer than two values. */
extern bool TribXsumVariance(const TribXsum *acc, double *result);

/* The sample standard deviation; false with fewer than two values. */
extern bool TribXsumStddev(const TribXsum *acc, double *result);

/* The stored form (see above), as a bytea allocated in the current memory context. */
extern bytea *TribXsumSerialize(const TribXsum *acc);

/* Check data[0..len) and load it into acc; NULL, or what is wrong in words. */
extern const char *TribXsumParse(TribXsum *acc, const char *data, Size len);

/* Load a stored accumulator into acc; an error (22P03) when the bytes are not one. */
extern void TribXsumDeserialize(TribXsum *acc, const char *data, Size len);

#endif							/* TRIBUTARY_QUALITY_XSUM_H */
