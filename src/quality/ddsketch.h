/*
 * ddsketch.h
 *		Quantiles with a relative-error guarantee (DDSketch, Masson, Rim and Lee, 2019)
 *		whose state is a function of the multiset of values added, so sketches merge exactly.
 *
 * Mapping: relative accuracy alpha = TRIB_DDS_RELATIVE_ACCURACY (0.005),
 * gamma = (1 + alpha) / (1 - alpha); a magnitude x goes to bin i = ceil(ln(x) / ln(gamma)),
 * which holds (gamma^(i-1), gamma^i]; the bin's value 2 gamma^i / (gamma + 1) =
 * (1 - alpha) gamma^i is within alpha of every magnitude in it.
 *
 * State:
 *	 positive store		counts per bin of x > 0
 *	 negative store		counts per bin of |x| for x < 0
 *	 zero count			x = 0, and |x| < TRIB_DDS_MIN_MAGNITUDE (subnormal doubles)
 *	 -inf, +inf counts	counted apart; they sort below and above every finite value
 *	 NaN count			kept out of the sketch altogether (not in count, min, max or ranks)
 *	 count				every value but NaN; min and max exactly (with -inf, +inf; -0 is 0)
 *
 * Bounded stores. A store covers a contiguous range of at most TRIB_DDS_MAX_BINS bins:
 * when a value's bin would make the range wider, the bins of the smallest magnitudes are
 * collapsed into the lowest bin kept. With hi the highest bin ever reached by the store's
 * values, the range kept is [max(lowest bin of the values, hi - TRIB_DDS_MAX_BINS + 1), hi],
 * the lowest kept bin counting every value at or below it. This is a function of the
 * multiset of the store's values alone, whatever the order of additions and merges: hi only
 * grows, so the collapse threshold t = hi - TRIB_DDS_MAX_BINS + 1 only grows; a value of
 * bin b sits in bin max(b, t') for the threshold t' of the partial state that holds it, and
 * every later collapse (a larger t, in an addition or a merge, whose hi is the larger of the
 * two) moves it to max(max(b, t'), t) = max(b, t). So every value ends in max(b, t_final),
 * with t_final computed from the whole multiset's highest bin. Quantiles among the
 * collapsed (smallest) magnitudes lose their guarantee; with 4096 bins that takes data
 * spanning more than gamma^4096, about 6e17, between its smallest and largest magnitudes
 * of one sign.
 *
 * Quantile q in [0, 1]: rank = q (count - 1); the first bin, in value order (-inf, the
 * negative store from the largest magnitude down, zeros, the positive store upwards, +inf),
 * whose cumulative count exceeds rank gives the value (its sign applied), clamped to
 * [min, max]. q = 0 gives min and q = 1 gives max exactly. The value returned is within
 * alpha (relative) of the exact value of that rank, i.e. of percentile_disc's answer up to
 * percentile_disc's rank convention (ceil(q count) - 1, which differs by at most one rank).
 * The regression tests assert <= 1 % against percentile_disc at p50, p90 and p99 on 10^6
 * values of several distributions.
 *
 * Memory: per store, 8 bytes per bin its values span (a factor of 10 is 230 bins), with up
 * to as much again of room to grow (and for a range that slides upwards), at most
 * 2 * TRIB_DDS_MAX_BINS bins; a store starts at 16 bins. Values from 1e-6 to 5 take about
 * 12 KiB in memory and, stored as varints, 4 KiB. Cost per value: a table look-up and a
 * short series for the bin (log() only within 1e-7 of a bin edge; the same bins).
 *
 * Stored format (TribDdsSerialize), version TRIB_DDS_FORMAT_VERSION = 1; varints are
 * LEB128 (wire.h), doubles their IEEE bits little-endian:
 *	 byte 0		format version (1)
 *	 byte 1		0 (reserved)
 *	 double		relative accuracy (0.005)
 *	 varints	NaN count, -inf count, +inf count, zero count
 *	 store		negative, then positive: varint number of bins n (0: empty), and when not
 *				0 the lowest bin index (zigzag varint) and n varint counts, the first and
 *				last not 0
 *	 doubles	min, max (only when the count is not 0)
 * Equal multisets give equal bytes. TribDdsDeserialize checks all of it (the bytes may come
 * from a user) and raises an error that says what is wrong.
 */
#ifndef TRIBUTARY_QUALITY_DDSKETCH_H
#define TRIBUTARY_QUALITY_DDSKETCH_H

#include "postgres.h"

#include <float.h>

#define TRIB_DDS_FORMAT_VERSION 1
#define TRIB_DDS_RELATIVE_ACCURACY 0.005
/* the most bins a store covers */
#define TRIB_DDS_MAX_BINS 4096
/* smaller magnitudes count as zero: the smallest normal double */
#define TRIB_DDS_MIN_MAGNITUDE DBL_MIN

/* Counts per bin for one sign; private to ddsketch.c. */
typedef struct TribDdsStore
{
	uint64	   *bins;			/* bins[i - offset] counts bin i */
	int32		offset;
	int32		nalloc;
	int32		lo;				/* lowest and highest bin with a count (when count > 0) */
	int32		hi;
	uint64		count;
} TribDdsStore;

/*
 * A sketch. Fields are private to ddsketch.c; embed the struct (TribDdsInit) or allocate
 * one (TribDdsCreate). Its arrays live in cxt.
 */
typedef struct TribDds
{
	MemoryContext cxt;
	TribDdsStore positive;
	TribDdsStore negative;
	uint64		zero_count;
	uint64		neginf_count;
	uint64		posinf_count;
	uint64		nan_count;
	uint64		count;			/* every value added but NaN */
	double		min;			/* when count > 0 */
	double		max;
} TribDds;

/* Set up an empty sketch whose memory comes from cxt. */
extern void TribDdsInit(TribDds *sk, MemoryContext cxt);

/* An empty sketch allocated in cxt. */
extern TribDds *TribDdsCreate(MemoryContext cxt);

/* A copy of src in cxt. */
extern TribDds *TribDdsCopy(const TribDds *src, MemoryContext cxt);

/* Free the sketch's arrays (and not the struct). */
extern void TribDdsReset(TribDds *sk);

/* Add one value (NaN is only counted). */
extern void TribDdsAdd(TribDds *sk, double value);

/* Add every value of src to dst. */
extern void TribDdsMerge(TribDds *dst, const TribDds *src);

/* Values in the sketch (NaN not counted). */
extern uint64 TribDdsCount(const TribDds *sk);

/* NaN values seen. */
extern uint64 TribDdsNanCount(const TribDds *sk);

/*
 * The q-quantile, q in [0, 1] (the caller checks), into *result; false when the sketch
 * holds no value.
 */
extern bool TribDdsQuantile(const TribDds *sk, double q, double *result);

/* The stored form (see above), as a bytea allocated in the current memory context. */
extern bytea *TribDdsSerialize(const TribDds *sk);

/*
 * Check data[0..len) and load it into sk (already initialised, and empty). Returns NULL,
 * or what is wrong in words for an error detail; sk is then unspecified.
 */
extern const char *TribDdsParse(TribDds *sk, const char *data, Size len);

/* A sketch in cxt from its stored form; an error (22P03) when the bytes are not one. */
extern TribDds *TribDdsDeserialize(const char *data, Size len, MemoryContext cxt);

/*
 * Values outside [lo, hi], judged by their bins' representative values (the outlier count
 * of docs/quality.md); infinities beyond the bounds count.
 */
extern uint64 TribDdsCountOutside(const TribDds *sk, double lo, double hi);

#endif							/* TRIBUTARY_QUALITY_DDSKETCH_H */
