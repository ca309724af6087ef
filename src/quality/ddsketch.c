/*
 * ddsketch.c
 *		Relative-error quantiles (DDSketch) with bounded stores that collapse their
 *		smallest magnitudes; see ddsketch.h for the mapping, why the state depends on the
 *		multiset of values only, and the stored format.
 */
#include "postgres.h"

#include <math.h>

#include "common/int.h"

#include "quality/ddsketch.h"
#include "quality/wire.h"

/*
 * ln(gamma) and ln(1 - alpha) for alpha = 0.005, as literals (correctly rounded) rather
 * than computed, so every build maps a value to the same bin.
 */
#define DDS_LN_GAMMA 0.010000083334583356
#define DDS_LN_ONE_MINUS_ALPHA (-0.005012541823544282)
/* |bin index| of any double: ln(DBL_MAX) / ln(gamma) < 70978, ln(DBL_MIN) / ln(gamma) > -70839 */
#define DDS_INDEX_LIMIT 71000
/* a store's first allocation, and its largest (room for the range to slide upwards) */
#define DDS_FIRST_BINS 16
#define DDS_MAX_ALLOC (2 * TRIB_DDS_MAX_BINS)

StaticAssertDecl(TRIB_DDS_MAX_BINS >= 1 && TRIB_DDS_MAX_BINS <= DDS_MAX_ALLOC,
				 "a store's range fits its largest allocation");

/* An embedded sketch needs no allocation until its first value. */
void
TribDdsInit(TribDds *sk, MemoryContext cxt)
{
	memset(sk, 0, sizeof(*sk));
	sk->cxt = cxt;
}

/* For callers that keep sketches by pointer (aggregate states). */
TribDds *
TribDdsCreate(MemoryContext cxt)
{
	TribDds    *sk = MemoryContextAlloc(cxt, sizeof(TribDds));

	TribDdsInit(sk, cxt);
	return sk;
}

/* A store's copy in cxt, its array trimmed to the bins used. */
static void
DdsStoreCopy(TribDdsStore *dst, const TribDdsStore *src, MemoryContext cxt)
{
	*dst = *src;
	dst->bins = NULL;
	dst->nalloc = 0;
	if (src->count == 0)
		return;
	dst->nalloc = src->hi - src->lo + 1;
	dst->offset = src->lo;
	dst->bins = MemoryContextAlloc(cxt, dst->nalloc * sizeof(uint64));
	memcpy(dst->bins, src->bins + (src->lo - src->offset), dst->nalloc * sizeof(uint64));
}

/* A state that must outlive its source (the combine step of an aggregate). */
TribDds *
TribDdsCopy(const TribDds *src, MemoryContext cxt)
{
	TribDds    *sk = TribDdsCreate(cxt);

	*sk = *src;
	sk->cxt = cxt;
	DdsStoreCopy(&sk->positive, &src->positive, cxt);
	DdsStoreCopy(&sk->negative, &src->negative, cxt);
	return sk;
}

/* Give the bins back without dropping the struct a caller embeds. */
void
TribDdsReset(TribDds *sk)
{
	if (sk->positive.bins != NULL)
		pfree(sk->positive.bins);
	if (sk->negative.bins != NULL)
		pfree(sk->negative.bins);
	TribDdsInit(sk, sk->cxt);
}

/* The population the ranks are taken over. */
uint64
TribDdsCount(const TribDds *sk)
{
	return sk->count;
}

/* NaN is kept out of the ranks, but a quality check wants to know of it. */
uint64
TribDdsNanCount(const TribDds *sk)
{
	return sk->nan_count;
}

/*
 * The bin of a magnitude >= TRIB_DDS_MIN_MAGNITUDE (finite): the definition, and what a
 * stored bin means. DdsIndex gives the same answer faster.
 */
static int32
DdsIndexExact(double magnitude)
{
	return (int32) ceil(log(magnitude) / DDS_LN_GAMMA);
}

/*
 * ln x without a call, for DdsIndex: x = m 2^e with m in [1, 2), c the middle of the
 * 1/256th of [1, 2) that holds m, and ln x = e ln 2 + ln c + ln(1 + r), r = m / c - 1,
 * |r| < 2^-9, from four terms of its series. ln c and 1 / c are tabled from log() once.
 * Error: the series stops at 2e-15; ln 2, ln c, 1 / c and the arithmetic add at most
 * 2e-13 for any normal x (the e ln 2 term dominates at |e| near 1022).
 */
#define DDS_LOG_TABLE_BITS 8
#define DDS_LOG_TABLE_SIZE (1 << DDS_LOG_TABLE_BITS)
#define DDS_LN2 0.6931471805599453

static double dds_ln_c[DDS_LOG_TABLE_SIZE];
static double dds_inv_c[DDS_LOG_TABLE_SIZE];
static bool dds_log_table_ready = false;

/* The table of ln c and 1 / c, filled on first use. */
static void
DdsLogTableFill(void)
{
	for (int k = 0; k < DDS_LOG_TABLE_SIZE; k++)
	{
		double		c = 1.0 + (k + 0.5) / DDS_LOG_TABLE_SIZE;

		dds_ln_c[k] = log(c);
		dds_inv_c[k] = 1.0 / c;
	}
	dds_log_table_ready = true;
}

static inline double
DdsLogFast(double x)
{
	uint64		bits;
	double		m;
	double		r;
	int			e;
	int			k;

	memcpy(&bits, &x, sizeof(bits));
	e = (int) (bits >> 52) - 1023;	/* x is positive and normal */
	k = (int) ((bits >> (52 - DDS_LOG_TABLE_BITS)) & (DDS_LOG_TABLE_SIZE - 1));
	bits = (bits & UINT64CONST(0x000FFFFFFFFFFFFF)) | UINT64CONST(0x3FF0000000000000);
	memcpy(&m, &bits, sizeof(m));
	r = m * dds_inv_c[k] - 1.0;
	return e * DDS_LN2 + (dds_ln_c[k] + (r - r * r * (0.5 - r * (1.0 / 3.0 - r * 0.25))));
}

/*
 * DdsIndexExact's answer for every magnitude, mostly without log(). y = DdsLogFast(x) /
 * ln(gamma) is within 4e-11 of the exact formula's quotient (the bound above divided by
 * ln(gamma), plus the roundings of both quotients and glibc log's error, under 1 ulp). So
 * when y is farther than DDS_INDEX_MARGIN (well above that) from every integer, the
 * quotient has the same ceiling; otherwise (about one value in five million) the exact
 * formula decides. The bins, which are stored, never change.
 */
#define DDS_INV_LN_GAMMA (1.0 / DDS_LN_GAMMA)
#define DDS_INDEX_MARGIN 1e-7

static inline int32
DdsIndex(double magnitude)
{
	double		y;
	int32		t;
	int32		c;
	double		gap;

	if (unlikely(!dds_log_table_ready))
		DdsLogTableFill();
	y = DdsLogFast(magnitude) * DDS_INV_LN_GAMMA;
	t = (int32) y;				/* toward zero; |y| < 71000 */
	c = t + (y > (double) t ? 1 : 0);	/* ceil(y) */
	gap = (double) c - y;
	if (gap > DDS_INDEX_MARGIN && gap < 1.0 - DDS_INDEX_MARGIN)
		return c;
	return DdsIndexExact(magnitude);
}

/* The value that stands for bin i: (1 - alpha) gamma^i, within alpha of all of the bin. */
static inline double
DdsBinValue(int32 i)
{
	return exp(i * DDS_LN_GAMMA + DDS_LN_ONE_MINUS_ALPHA);
}

/*
 * Make the store cover [newlo, newhi] (at most TRIB_DDS_MAX_BINS wide, newhi not below its
 * highest bin), folding the counts of bins below newlo into newlo; newlo and newhi become
 * its lowest and highest bins (the caller adds counts there).
 */
static void
DdsStoreCover(TribDdsStore *s, MemoryContext cxt, int32 newlo, int32 newhi)
{
	uint64		folded = 0;

	Assert(newlo <= newhi && newhi - newlo < TRIB_DDS_MAX_BINS);
	Assert(s->count == 0 || newhi >= s->hi);
	if (s->count > 0 && s->lo < newlo)
	{
		int32		end = Min(s->hi, newlo - 1);

		for (int32 i = s->lo; i <= end; i++)
		{
			folded += s->bins[i - s->offset];
			s->bins[i - s->offset] = 0;
		}
	}
	if (s->nalloc == 0 || newlo < s->offset || newhi >= s->offset + s->nalloc)
	{
		int32		len = newhi - newlo + 1;
		int32		nalloc = Min(DDS_MAX_ALLOC, Max(2 * len, DDS_FIRST_BINS));
		bool		upwards = s->nalloc == 0 || newhi >= s->offset + s->nalloc;
		/* leave the free room on the side the range grew to */
		int32		offset = upwards ? newlo : newhi - nalloc + 1;
		uint64	   *bins = MemoryContextAllocZero(cxt, nalloc * sizeof(uint64));

		if (s->count > 0)
			for (int32 i = Max(s->lo, newlo); i <= s->hi; i++)
				bins[i - offset] = s->bins[i - s->offset];
		if (s->bins != NULL)
			pfree(s->bins);
		s->bins = bins;
		s->offset = offset;
		s->nalloc = nalloc;
	}
	s->bins[newlo - s->offset] += folded;
	s->lo = newlo;
	s->hi = newhi;
}

/* The range [*lo, *hi] a store with the given bins must cover: collapsed below the top. */
static inline void
DdsStoreRange(const TribDdsStore *s, int32 addlo, int32 addhi, int32 *lo, int32 *hi)
{
	if (s->count == 0)
	{
		*hi = addhi;
		*lo = Max(addlo, addhi - TRIB_DDS_MAX_BINS + 1);
		return;
	}
	*hi = Max(s->hi, addhi);
	*lo = Max(Min(s->lo, addlo), *hi - TRIB_DDS_MAX_BINS + 1);
}

/* Count n values of bin i (into the lowest kept bin when i falls below the range). */
static void
DdsStoreAdd(TribDdsStore *s, MemoryContext cxt, int32 i, uint64 n)
{
	int32		lo,
				hi;

	if (s->count == 0 || i < s->lo || i > s->hi)
	{
		DdsStoreRange(s, i, i, &lo, &hi);
		DdsStoreCover(s, cxt, lo, hi);
		i = Max(i, lo);
	}
	s->bins[i - s->offset] += n;
	s->count += n;
}

/* Add src's counts to dst, collapsed to the range of both together. */
static void
DdsStoreMerge(TribDdsStore *dst, const TribDdsStore *src, MemoryContext cxt)
{
	int32		lo,
				hi;

	if (src->count == 0)
		return;
	DdsStoreRange(dst, src->lo, src->hi, &lo, &hi);
	if (dst->count == 0 || lo != dst->lo || hi != dst->hi)
		DdsStoreCover(dst, cxt, lo, hi);
	for (int32 i = src->lo; i <= src->hi; i++)
		dst->bins[Max(i, lo) - dst->offset] += src->bins[i - src->offset];
	dst->count += src->count;
}

/* One value into its bin: NaN, infinities and near-zero magnitudes are counted apart. */
void
TribDdsAdd(TribDds *sk, double value)
{
	double		magnitude;

	if (isnan(value))
	{
		sk->nan_count++;
		return;
	}
	/* -0 is 0: min and max must not depend on which of the two came first */
	if (value == 0.0)
		value = 0.0;
	if (sk->count == 0 || value < sk->min)
		sk->min = value;
	if (sk->count == 0 || value > sk->max)
		sk->max = value;
	sk->count++;
	magnitude = fabs(value);
	if (isinf(value))
	{
		if (value > 0)
			sk->posinf_count++;
		else
			sk->neginf_count++;
	}
	else if (magnitude < TRIB_DDS_MIN_MAGNITUDE)
		sk->zero_count++;
	else if (value > 0)
		DdsStoreAdd(&sk->positive, sk->cxt, DdsIndex(magnitude), 1);
	else
		DdsStoreAdd(&sk->negative, sk->cxt, DdsIndex(magnitude), 1);
}

/* Partial sketches (batches, sessions, parallel workers) become the sketch of all their values. */
void
TribDdsMerge(TribDds *dst, const TribDds *src)
{
	if (src->count > 0)
	{
		if (dst->count == 0 || src->min < dst->min)
			dst->min = src->min;
		if (dst->count == 0 || src->max > dst->max)
			dst->max = src->max;
	}
	dst->count += src->count;
	dst->nan_count += src->nan_count;
	dst->zero_count += src->zero_count;
	dst->neginf_count += src->neginf_count;
	dst->posinf_count += src->posinf_count;
	DdsStoreMerge(&dst->positive, &src->positive, dst->cxt);
	DdsStoreMerge(&dst->negative, &src->negative, dst->cxt);
}

/*
 * Walk the values in order, bin by bin, to the first bin whose cumulative count exceeds
 * the rank; NaN is not there.
 */
static double
DdsValueAtRank(const TribDds *sk, double rank)
{
	const TribDdsStore *neg = &sk->negative;
	const TribDdsStore *pos = &sk->positive;
	uint64		cum = sk->neginf_count;

	if (cum > rank)
		return -INFINITY;
	if (neg->count > 0)
		for (int32 i = neg->hi; i >= neg->lo; i--)
		{
			cum += neg->bins[i - neg->offset];
			if (cum > rank)
				return -DdsBinValue(i);
		}
	cum += sk->zero_count;
	if (cum > rank)
		return 0.0;
	if (pos->count > 0)
		for (int32 i = pos->lo; i <= pos->hi; i++)
		{
			cum += pos->bins[i - pos->offset];
			if (cum > rank)
				return DdsBinValue(i);
		}
	return INFINITY;
}

/* The q-quantile from the counts, exact at q = 0 and q = 1. */
bool
TribDdsQuantile(const TribDds *sk, double q, double *result)
{
	double		value;

	Assert(q >= 0.0 && q <= 1.0);
	if (sk->count == 0)
		return false;
	if (q == 0.0)
		value = sk->min;
	else if (q == 1.0)
		value = sk->max;
	else
	{
		value = DdsValueAtRank(sk, q * (double) (sk->count - 1));
		value = Max(sk->min, Min(sk->max, value));
	}
	*result = value;
	return true;
}

/* A signed integer as an unsigned one, small magnitudes small (zigzag). */
static inline uint64
DdsZigzag(int32 v)
{
	int64		w = v;

	return ((uint64) w << 1) ^ (uint64) (w >> 63);
}

/* The inverse of DdsZigzag. */
static inline int64
DdsUnzigzag(uint64 v)
{
	return (int64) (v >> 1) ^ -(int64) (v & 1);
}

/* A store's stored form: its bins from the lowest to the highest with a count. */
static void
DdsStoreSerialize(StringInfo buf, const TribDdsStore *s)
{
	if (s->count == 0)
	{
		TribWirePutVarint(buf, 0);
		return;
	}
	TribWirePutVarint(buf, (uint64) (s->hi - s->lo + 1));
	TribWirePutVarint(buf, DdsZigzag(s->lo));
	for (int32 i = s->lo; i <= s->hi; i++)
		TribWirePutVarint(buf, s->bins[i - s->offset]);
}

/* The canonical stored form: equal multisets give equal bytes. */
bytea *
TribDdsSerialize(const TribDds *sk)
{
	StringInfoData buf;

	TribWireBegin(&buf);
	TribWirePutU8(&buf, TRIB_DDS_FORMAT_VERSION);
	TribWirePutU8(&buf, 0);
	TribWirePutDouble(&buf, TRIB_DDS_RELATIVE_ACCURACY);
	TribWirePutVarint(&buf, sk->nan_count);
	TribWirePutVarint(&buf, sk->neginf_count);
	TribWirePutVarint(&buf, sk->posinf_count);
	TribWirePutVarint(&buf, sk->zero_count);
	DdsStoreSerialize(&buf, &sk->negative);
	DdsStoreSerialize(&buf, &sk->positive);
	if (sk->count > 0)
	{
		TribWirePutDouble(&buf, sk->min);
		TribWirePutDouble(&buf, sk->max);
	}
	return TribWireFinish(&buf);
}

/* Read one store; NULL, or what is wrong. */
static const char *
DdsStoreParse(TribWireReader *r, TribDdsStore *s, MemoryContext cxt, const char *which)
{
	uint64		nbins = TribWireGetVarint(r);
	int64		lo;

	if (!TribWireOk(r))
		return psprintf("the %s store is truncated", which);
	if (nbins == 0)
		return NULL;
	if (nbins > TRIB_DDS_MAX_BINS)
		return psprintf("the %s store has %llu bins, more than %d",
						which, (unsigned long long) nbins, TRIB_DDS_MAX_BINS);
	lo = DdsUnzigzag(TribWireGetVarint(r));
	if (!TribWireOk(r))
		return psprintf("the %s store is truncated", which);
	if (lo < -DDS_INDEX_LIMIT || lo + (int64) nbins - 1 > DDS_INDEX_LIMIT)
		return psprintf("the %s store's bins %lld to %lld are not all within -%d to %d",
						which, (long long) lo, (long long) (lo + nbins - 1),
						DDS_INDEX_LIMIT, DDS_INDEX_LIMIT);
	s->nalloc = (int32) nbins;
	s->offset = (int32) lo;
	s->lo = (int32) lo;
	s->hi = (int32) (lo + nbins - 1);
	s->bins = MemoryContextAlloc(cxt, nbins * sizeof(uint64));
	s->count = 0;
	for (uint64 i = 0; i < nbins; i++)
	{
		s->bins[i] = TribWireGetVarint(r);
		if (!TribWireOk(r))
			return psprintf("the %s store is truncated", which);
		if (pg_add_u64_overflow(s->count, s->bins[i], &s->count))
			return psprintf("the %s store's counts overflow", which);
	}
	if (s->bins[0] == 0 || s->bins[nbins - 1] == 0)
		return psprintf("the %s store's first or last bin is empty", which);
	return NULL;
}

/*
 * Where the smallest (or largest) value must lie given which parts of the sketch hold
 * values: NULL when v fits, else what is wrong. sign is -1 for min, +1 for max.
 */
static const char *
DdsCheckExtreme(const TribDds *sk, double v, int sign, const char *name)
{
	uint64		far_inf = sign < 0 ? sk->neginf_count : sk->posinf_count;
	uint64		far_store = sign < 0 ? sk->negative.count : sk->positive.count;
	uint64		near_store = sign < 0 ? sk->positive.count : sk->negative.count;
	bool		ok;

	if (isnan(v) || (v == 0.0 && signbit(v)))
		return psprintf("%s is NaN or -0", name);
	if (far_inf > 0)
		ok = isinf(v) && v * sign > 0;
	else if (far_store > 0)
		ok = !isinf(v) && v * sign >= TRIB_DDS_MIN_MAGNITUDE;
	else if (sk->zero_count > 0)
		ok = fabs(v) < TRIB_DDS_MIN_MAGNITUDE;
	else if (near_store > 0)
		ok = !isinf(v) && -v * sign >= TRIB_DDS_MIN_MAGNITUDE;
	else
		ok = isinf(v) && v * sign < 0;
	return ok ? NULL : psprintf("%s %g does not fit the counts", name, v);
}

/* Stored sketches are user input: check every field before trusting any. */
const char *
TribDdsParse(TribDds *sk, const char *data, Size len)
{
	TribWireReader r;
	uint8		version,
				reserved;
	double		accuracy;
	const char *problem;
	uint64		count = 0;

	TribWireReaderInit(&r, data, len);
	version = TribWireGetU8(&r);
	if (!TribWireOk(&r))
		return pstrdup("the value is empty");
	if (version != TRIB_DDS_FORMAT_VERSION)
		return psprintf("format version %d is not the version this library reads (%d)",
						version, TRIB_DDS_FORMAT_VERSION);
	reserved = TribWireGetU8(&r);
	accuracy = TribWireGetDouble(&r);
	sk->nan_count = TribWireGetVarint(&r);
	sk->neginf_count = TribWireGetVarint(&r);
	sk->posinf_count = TribWireGetVarint(&r);
	sk->zero_count = TribWireGetVarint(&r);
	if (!TribWireOk(&r))
		return pstrdup("the header is truncated");
	if (reserved != 0)
		return psprintf("reserved byte is %d, not 0", reserved);
	if (accuracy != TRIB_DDS_RELATIVE_ACCURACY)
		return psprintf("relative accuracy %g is not %g", accuracy, TRIB_DDS_RELATIVE_ACCURACY);
	if (pg_add_u64_overflow(sk->neginf_count, sk->posinf_count, &count) ||
		pg_add_u64_overflow(count, sk->zero_count, &count))
		return pstrdup("the counts overflow");
	if ((problem = DdsStoreParse(&r, &sk->negative, sk->cxt, "negative")) != NULL ||
		(problem = DdsStoreParse(&r, &sk->positive, sk->cxt, "positive")) != NULL)
		return problem;
	if (pg_add_u64_overflow(count, sk->negative.count, &count) ||
		pg_add_u64_overflow(count, sk->positive.count, &count))
		return pstrdup("the counts overflow");
	sk->count = count;
	if (count > 0)
	{
		sk->min = TribWireGetDouble(&r);
		sk->max = TribWireGetDouble(&r);
		if (!TribWireOk(&r))
			return pstrdup("min and max are missing");
	}
	if (TribWireRemaining(&r) != 0)
		return psprintf("the value goes on for %zu bytes after the sketch", TribWireRemaining(&r));
	if (count == 0)
		return NULL;
	if (!(sk->min <= sk->max))
		return psprintf("min %g is greater than max %g", sk->min, sk->max);
	if ((problem = DdsCheckExtreme(sk, sk->min, -1, "min")) != NULL ||
		(problem = DdsCheckExtreme(sk, sk->max, 1, "max")) != NULL)
		return problem;
	return NULL;
}

/* TribDdsParse for callers that want an error rather than a reason. */
TribDds *
TribDdsDeserialize(const char *data, Size len, MemoryContext cxt)
{
	TribDds    *sk = TribDdsCreate(cxt);
	const char *problem = TribDdsParse(sk, data, len);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid tributary.ddsketch value"),
				 errdetail("%c%s.", pg_toupper((unsigned char) problem[0]), problem + 1),
				 errhint("Use a value made by tributary.ddsketch_agg or tributary.ddsketch_merge, "
						 "stored format version %d.", TRIB_DDS_FORMAT_VERSION)));
	return sk;
}

/*
 * How many values lie outside [lo, hi], judged bin by bin: a bin's values count when its
 * representative value, clamped to [min, max] as quantiles are, does; infinities beyond
 * the bounds too. Order-independent as the sketch is.
 */
uint64
TribDdsCountOutside(const TribDds *sk, double lo, double hi)
{
	const TribDdsStore *neg = &sk->negative;
	const TribDdsStore *pos = &sk->positive;
	uint64		n = 0;

	if (-INFINITY < lo)
		n += sk->neginf_count;
	if (INFINITY > hi)
		n += sk->posinf_count;
	if (neg->count > 0)
		for (int32 i = neg->lo; i <= neg->hi; i++)
		{
			double		v = Max(Min(-DdsBinValue(i), sk->max), sk->min);

			if (v < lo || v > hi)
				n += neg->bins[i - neg->offset];
		}
	if (0.0 < lo || 0.0 > hi)
		n += sk->zero_count;
	if (pos->count > 0)
		for (int32 i = pos->lo; i <= pos->hi; i++)
		{
			double		v = Max(Min(DdsBinValue(i), sk->max), sk->min);

			if (v < lo || v > hi)
				n += pos->bins[i - pos->offset];
		}
	return n;
}
