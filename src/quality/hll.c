/*
 * hll.c
 *		HyperLogLog distinct counts: an exact set up to the sketch's cap of hashes, then
 *		registers with Ertl's improved estimator. See hll.h for why the state depends on
 *		the set of hashes only, and for the stored format.
 */
#include "postgres.h"

#include <math.h>

#include "port/pg_bitutils.h"
#include "port/pg_bswap.h"

#include "quality/hll.h"
#include "quality/wire.h"

/*
 * The set's first size (small groups stay small), and how it grows: four times while its
 * arrays are small (few re-inserts), twice past HLL_FAST_GROWTH_SLOTS (less memory: each
 * window of a table read keeps one).
 */
#define HLL_FIRST_SLOTS 64
#define HLL_FAST_GROWTH_SLOTS 1024
/* The set's largest size: load factor 1/2 at the cap. */
#define HLL_MAX_SLOTS(hll) (2 * (hll)->exact_max)
StaticAssertDecl(TRIB_HLL_RHO_MAX <= PG_UINT8_MAX, "registers are one byte");
StaticAssertDecl(TRIB_HLL_PRECISION <= 14, "a sparse register's gap takes at most two varint bytes");

/* An embedded sketch needs no allocation until its first hash. */
void
TribHllInit(TribHll *hll, MemoryContext cxt)
{
	TribHllInitCapped(hll, cxt, TRIB_HLL_EXACT_MAX);
}

/* Key sets for duplicates keep more hashes exactly than a distinct count needs. */
void
TribHllInitCapped(TribHll *hll, MemoryContext cxt, int exact_max)
{
	Assert(exact_max >= 1 && exact_max <= TRIB_HLL_EXACT_MAX_LIMIT &&
		   (exact_max & (exact_max - 1)) == 0);
	memset(hll, 0, sizeof(*hll));
	hll->cxt = cxt;
	hll->mode = TRIB_HLL_MODE_EXACT;
	hll->exact_max = exact_max;
}

/* For callers that keep sketches by pointer (aggregate states). */
TribHll *
TribHllCreate(MemoryContext cxt)
{
	TribHll    *hll = MemoryContextAlloc(cxt, sizeof(TribHll));

	TribHllInit(hll, cxt);
	return hll;
}

/* dst's exact set becomes a copy of src's, slots as they are (in dst's context). */
static void
HllSetCopy(TribHll *dst, const TribHll *src)
{
	if (dst->slots != NULL)
		pfree(dst->slots);
	dst->slots = NULL;
	dst->nslots = src->nslots;
	dst->nexact = src->nexact;
	dst->has_zero = src->has_zero;
	if (src->slots != NULL)
	{
		dst->slots = MemoryContextAlloc(dst->cxt, src->nslots * sizeof(uint64));
		memcpy(dst->slots, src->slots, src->nslots * sizeof(uint64));
	}
}

/* A state that must outlive its source (the combine step of an aggregate). */
TribHll *
TribHllCopy(const TribHll *src, MemoryContext cxt)
{
	TribHll    *hll = TribHllCreate(cxt);

	hll->mode = src->mode;
	hll->exact_max = src->exact_max;
	HllSetCopy(hll, src);
	if (src->registers != NULL)
	{
		hll->registers = MemoryContextAlloc(cxt, TRIB_HLL_REGISTERS);
		memcpy(hll->registers, src->registers, TRIB_HLL_REGISTERS);
		hll->hist = MemoryContextAlloc(cxt, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
		memcpy(hll->hist, src->hist, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
	}
	return hll;
}

/* Give the arrays back without dropping the struct a caller embeds. */
void
TribHllReset(TribHll *hll)
{
	if (hll->slots != NULL)
		pfree(hll->slots);
	if (hll->registers != NULL)
		pfree(hll->registers);
	if (hll->hist != NULL)
		pfree(hll->hist);
	TribHllInitCapped(hll, hll->cxt, hll->exact_max);
}

/* Whether the count is exact, for callers that report it. */
bool
TribHllIsExact(const TribHll *hll)
{
	return hll->mode == TRIB_HLL_MODE_EXACT;
}

/* Raise a register to what one hash says: its index bits pick it, the rest give rho. */
static inline void
HllRegisterAdd(TribHll *hll, uint64 hash)
{
	uint32		index = (uint32) (hash >> TRIB_HLL_REST_BITS);
	uint64		rest = hash << TRIB_HLL_PRECISION;
	uint8		rho;

	if (rest == 0)
		rho = TRIB_HLL_RHO_MAX;
	else
		rho = (uint8) (63 - pg_leftmost_one_pos64(rest) + 1);
	if (hll->registers[index] < rho)
	{
		/* the histogram follows, so an estimate need not read every register */
		hll->hist[hll->registers[index]]--;
		hll->hist[rho]++;
		hll->registers[index] = rho;
	}
}

/* Registers of all zeros, with their histogram. */
static void
HllRegistersAllocate(TribHll *hll)
{
	hll->registers = MemoryContextAllocZero(hll->cxt, TRIB_HLL_REGISTERS);
	hll->hist = MemoryContextAllocZero(hll->cxt, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
	hll->hist[0] = TRIB_HLL_REGISTERS;
}

/*
 * Registers i to i + 7 (valid, so each below 0x80) as a mask with the high bit of byte k
 * set when register i + k is not 0; pg_rightmost_one_pos64(mask) / 8 is the first such k.
 */
static inline uint64
HllNonzeroRegisters(const uint8 *registers, int i)
{
	uint64		word;

	memcpy(&word, registers + i, 8);
#ifdef WORDS_BIGENDIAN
	word = pg_bswap64(word);	/* byte k of the word is register i + k */
#endif
	return (word + UINT64CONST(0x7F7F7F7F7F7F7F7F)) & UINT64CONST(0x8080808080808080);
}

/*
 * Count the registers again, after they were read in bulk (valid, so every register is
 * below 0x80): eight at a time, and only those that are not zero one by one.
 */
static void
HllHistogramRebuild(TribHll *hll)
{
	const uint8 *r = hll->registers;
	int32		zeros = 0;

	memset(hll->hist, 0, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
	for (int i = 0; i < TRIB_HLL_REGISTERS; i += 8)
	{
		uint64		nonzero = HllNonzeroRegisters(r, i);

		zeros += 8;
		while (nonzero != 0)
		{
			hll->hist[r[i + pg_rightmost_one_pos64(nonzero) / 8]]++;
			nonzero &= nonzero - 1;
			zeros--;
		}
	}
	hll->hist[0] = zeros;
}

/*
 * The slot holding hash, or the free slot where it belongs (linear probing; the set is at
 * most half full, so a free slot is always found). hash is not 0.
 *
 * A hash's first slot is its top bits, so the slots hold the hashes nearly in order: a
 * hash is never before its first slot, and the slots from there to its own are taken. So
 * each run of taken slots holds the hashes whose first slots are in it, and runs are in
 * the order of their hashes; only inside a run (and in a run that wraps around the end)
 * is the order off. Storing the set in order (HllSetSorted) is then nearly linear.
 */
static inline int
HllSetHome(const TribHll *hll, uint64 hash)
{
	return (int) (hash >> (64 - pg_leftmost_one_pos32((uint32) hll->nslots)));
}

static inline int
HllSetProbe(const TribHll *hll, uint64 hash)
{
	int			mask = hll->nslots - 1;
	int			i = HllSetHome(hll, hash);

	while (hll->slots[i] != 0 && hll->slots[i] != hash)
		i = (i + 1) & mask;
	return i;
}

/* Re-insert the set into n slots (a power of two, at least twice its hashes). */
static void
HllSetResize(TribHll *hll, int n)
{
	uint64	   *old = hll->slots;
	int			oldn = hll->nslots;

	Assert(n >= 2 * hll->nexact);
	hll->slots = MemoryContextAllocZero(hll->cxt, n * sizeof(uint64));
	hll->nslots = n;
	for (int i = 0; i < oldn; i++)
		if (old[i] != 0)
			hll->slots[HllSetProbe(hll, old[i])] = old[i];
	if (old != NULL)
		pfree(old);
}

/* Give the set room for one more hash: allocate it, or grow it and re-insert. */
static void
HllSetGrow(TribHll *hll)
{
	int			oldn = hll->nslots;
	int			n = oldn == 0 ? HLL_FIRST_SLOTS :
		oldn < HLL_FAST_GROWTH_SLOTS ? oldn * 4 : oldn * 2;

	HllSetResize(hll, Min(n, Max(HLL_MAX_SLOTS(hll), HLL_FIRST_SLOTS)));
}

/*
 * Give the set room for want hashes at once (at most its cap), so that adding many, as a
 * merge does, re-inserts none of them on the way.
 */
static void
HllSetReserve(TribHll *hll, int64 want)
{
	int			n = Max(hll->nslots, HLL_FIRST_SLOTS);
	int			max = Max(HLL_MAX_SLOTS(hll), HLL_FIRST_SLOTS);

	while (n < 2 * want && n < max)
		n *= 2;
	if (n > hll->nslots)
		HllSetResize(hll, n);
}

/* Leave exact mode: the registers of the set's hashes, which are those of the same set. */
static void
HllConvertToRegisters(TribHll *hll)
{
	uint64	   *slots = hll->slots;
	int			nslots = hll->nslots;
	bool		has_zero = hll->has_zero;

	Assert(hll->mode == TRIB_HLL_MODE_EXACT);
	HllRegistersAllocate(hll);
	if (has_zero)
		HllRegisterAdd(hll, 0);
	for (int i = 0; i < nslots; i++)
		if (slots[i] != 0)
			HllRegisterAdd(hll, slots[i]);
	if (slots != NULL)
		pfree(slots);
	hll->slots = NULL;
	hll->nslots = 0;
	hll->nexact = 0;
	hll->has_zero = false;
	hll->mode = TRIB_HLL_MODE_REGISTERS;
}

/*
 * Exact mode: whether the set has hash, after making sure there is a slot for it when it
 * has not. The caller puts it there or converts (at the cap).
 */
static bool
HllSetHas(TribHll *hll, uint64 hash, int *slot)
{
	if (hash == 0)
		return hll->has_zero;
	if (hll->nslots == 0)
		HllSetGrow(hll);
	*slot = HllSetProbe(hll, hash);
	if (hll->slots[*slot] == hash)
		return true;
	/* keep the set at most half full: grow before it would pass that */
	if ((hll->nexact + 1) * 2 > hll->nslots && hll->nslots < HLL_MAX_SLOTS(hll))
	{
		HllSetGrow(hll);
		*slot = HllSetProbe(hll, hash);
	}
	return false;
}

/* One hash into the set, or the registers once the set would pass the cap. */
void
TribHllAdd(TribHll *hll, uint64 hash)
{
	int			slot = -1;

	if (hll->mode == TRIB_HLL_MODE_REGISTERS)
	{
		HllRegisterAdd(hll, hash);
		return;
	}
	if (HllSetHas(hll, hash, &slot))
		return;
	if (hll->nexact >= hll->exact_max)
	{
		HllConvertToRegisters(hll);
		HllRegisterAdd(hll, hash);
		return;
	}
	if (hash == 0)
		hll->has_zero = true;
	else
		hll->slots[slot] = hash;
	hll->nexact++;
}

/* Partial sketches (batches, sessions, parallel workers) become the sketch of all their hashes. */
void
TribHllMerge(TribHll *dst, const TribHll *src)
{
	if (dst->exact_max != src->exact_max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot merge distinct-count sketches of different exact caps"),
				 errdetail("One keeps %d hashes exactly, the other %d.", dst->exact_max,
						   src->exact_max),
				 errhint("Merge sketches made the same way.")));
	if (src->mode == TRIB_HLL_MODE_EXACT)
	{
		if (src->nexact == 0)
			return;
		if (dst->mode == TRIB_HLL_MODE_EXACT && dst->nexact == 0)
		{
			/* into an empty set (a fold's first partial): the same slots do */
			HllSetCopy(dst, src);
			return;
		}
		if (dst->mode == TRIB_HLL_MODE_EXACT)
			HllSetReserve(dst, Min((int64) dst->nexact + src->nexact, dst->exact_max));
		if (src->has_zero)
			TribHllAdd(dst, 0);
		for (int i = 0; i < src->nslots; i++)
			if (src->slots[i] != 0)
				TribHllAdd(dst, src->slots[i]);
		return;
	}
	if (dst->mode == TRIB_HLL_MODE_EXACT && dst->nexact == 0)
	{
		/* into an empty sketch (a fold's first partial): the same registers */
		HllConvertToRegisters(dst);
		memcpy(dst->registers, src->registers, TRIB_HLL_REGISTERS);
		memcpy(dst->hist, src->hist, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
		return;
	}
	if (dst->mode == TRIB_HLL_MODE_EXACT)
		HllConvertToRegisters(dst);
	/* register-wise maximum, the histogram following; words of zeros change nothing */
	for (int i = 0; i < TRIB_HLL_REGISTERS; i += 8)
	{
		uint64		word;

		memcpy(&word, src->registers + i, 8);
		if (word == 0)
			continue;
		for (int j = i; j < i + 8; j++)
			if (dst->registers[j] < src->registers[j])
			{
				dst->hist[dst->registers[j]]--;
				dst->hist[src->registers[j]]++;
				dst->registers[j] = src->registers[j];
			}
	}
}

/* Ertl's sigma(x) = x + sum_k x^(2^k) 2^(k-1), summed until it no longer changes. */
static double
HllSigma(double x)
{
	double		y = 1.0;
	double		z = x;
	double		prev;

	if (x == 1.0)
		return INFINITY;
	do
	{
		x *= x;
		prev = z;
		z += x * y;
		y += y;
	} while (z != prev);
	return z;
}

/* Ertl's tau(x) = (1 - x - sum_k (1 - x^(2^-k))^2 2^-k) / 3, summed until it no longer changes. */
static double
HllTau(double x)
{
	double		y = 1.0;
	double		z;
	double		prev;

	if (x == 0.0 || x == 1.0)
		return 0.0;
	z = 1.0 - x;
	do
	{
		x = sqrt(x);
		prev = z;
		y *= 0.5;
		z -= (1.0 - x) * (1.0 - x) * y;
	} while (z != prev);
	return z / 3.0;
}

/* Ertl's improved estimator (algorithm 6) over the histogram of register values. */
static double
HllRegistersEstimate(const int32 *hist)
{
	const double m = TRIB_HLL_REGISTERS;
	double		z;

	z = m * HllTau(1.0 - hist[TRIB_HLL_RHO_MAX] / m);
	for (int k = TRIB_HLL_REST_BITS; k >= 1; k--)
		z = 0.5 * (z + hist[k]);
	z += m * HllSigma(hist[0] / m);
	/* alpha_inf m^2 / z, alpha_inf = 1 / (2 ln 2); z is infinite when every register is 0 */
	return m * m / (2.0 * M_LN2) / z;
}

/* The count: the set's size, or the registers' estimate. */
double
TribHllEstimate(const TribHll *hll)
{
	if (hll->mode == TRIB_HLL_MODE_EXACT)
		return hll->nexact;
	/* saturated registers (every one at its maximum) estimate infinity: say 2^64 */
	return Min(HllRegistersEstimate(hll->hist), TRIB_HLL_ESTIMATE_MAX);
}

/*
 * The set's hashes in ascending order into sorted[] (room for nexact + 1), without a general
 * sort: the slots hold them nearly in order (see HllSetProbe). They are taken in slot order
 * (without a branch per slot); the hashes of the run that wraps around the end, at the
 * start of the slots but last in order, are moved to the end; then an insertion sort fixes
 * the order inside runs, which are short at a load of at most one half.
 */
static int
HllSetSorted(const TribHll *hll, uint64 *sorted)
{
	int			n = 0;
	int			lead = 0;		/* hashes in the leading run (slots 0 to the first free) */
	int			wrapped = 0;
	uint64		moved[64];

	if (hll->has_zero)
		sorted[n++] = 0;
	if (hll->nslots == 0)
		return n;
	while (lead < hll->nslots && hll->slots[lead] != 0)
		lead++;
	for (int i = 0; i < hll->nslots; i++)
	{
		uint64		h = hll->slots[i];

		sorted[n] = h;
		n += h != 0;
	}
	/* the wrapped hashes of the leading run: their first slot is after their own */
	for (int i = 0; i < lead; i++)
		if (HllSetHome(hll, hll->slots[i]) > i)
			wrapped++;
	if (wrapped > 0)
	{
		uint64	   *buf = wrapped <= (int) lengthof(moved) ? moved : palloc(sizeof(uint64) * wrapped);
		uint64	   *first = sorted + (hll->has_zero ? 1 : 0);
		int			kept = 0;
		int			w = 0;

		for (int i = 0; i < lead; i++)
		{
			if (HllSetHome(hll, first[i]) > i)
				buf[w++] = first[i];
			else
				first[kept++] = first[i];
		}
		memmove(first + kept, first + lead, sizeof(uint64) * (n - (first - sorted) - lead));
		memcpy(sorted + n - wrapped, buf, sizeof(uint64) * wrapped);
		if (buf != moved)
			pfree(buf);
	}
	for (int i = 1; i < n; i++)
	{
		uint64		h = sorted[i];
		int			j = i;

		for (; j > 0 && sorted[j - 1] > h; j--)
			sorted[j] = sorted[j - 1];
		sorted[j] = h;
	}
	return n;
}

/*
 * Whether registers with n set are stored sparse: when that takes fewer bytes than the
 * registers whatever the gaps (at most three bytes each), so the form follows from the
 * registers alone.
 */
static inline bool
HllSparseFits(int n)
{
	return 4 + 3 * n < TRIB_HLL_REGISTERS;
}

/* The canonical stored form: equal sets give equal bytes. */
bytea *
TribHllSerialize(const TribHll *hll)
{
	StringInfoData buf;
	int			set = hll->mode == TRIB_HLL_MODE_EXACT ? 0 : TRIB_HLL_REGISTERS - hll->hist[0];
	TribHllMode mode = hll->mode == TRIB_HLL_MODE_EXACT ? TRIB_HLL_MODE_EXACT :
		HllSparseFits(set) ? TRIB_HLL_MODE_SPARSE : TRIB_HLL_MODE_REGISTERS;

	TribWireBegin(&buf);
	/* the whole value at once, not by doubling */
	enlargeStringInfo(&buf, TRIB_HLL_HEADER_SIZE + 4 +
					  (mode == TRIB_HLL_MODE_EXACT ? 8 * hll->nexact :
					   mode == TRIB_HLL_MODE_SPARSE ? 3 * set : TRIB_HLL_REGISTERS));
	TribWirePutU8(&buf, TRIB_HLL_FORMAT_VERSION);
	TribWirePutU8(&buf, (uint8) mode);
	TribWirePutU8(&buf, TRIB_HLL_PRECISION);
	TribWirePutU8(&buf, (uint8) pg_leftmost_one_pos32((uint32) hll->exact_max));
	if (mode == TRIB_HLL_MODE_EXACT)
	{
		uint64	   *sorted = palloc((hll->nexact + 1) * sizeof(uint64));
		int			n;

		/* the set without its free slots, in ascending order: one form per set */
		n = HllSetSorted(hll, sorted);
		Assert(n == hll->nexact);
		TribWirePutU32(&buf, (uint32) n);
		TribWirePutU64Array(&buf, sorted, n);
		pfree(sorted);
	}
	else if (mode == TRIB_HLL_MODE_SPARSE)
	{
		/*
		 * the registers set, each as the gap from the one before (a varint of one or two
		 * bytes: gaps are below 2^14) and its value; written in place, the room made above
		 */
		const uint8 *r = hll->registers;
		uint8	   *out;
		int			prev = -1;

		TribWirePutU32(&buf, (uint32) set);
		out = (uint8 *) buf.data + buf.len;
		for (int i = 0; i < TRIB_HLL_REGISTERS; i += 8)
		{
			uint64		nonzero = HllNonzeroRegisters(r, i);

			while (nonzero != 0)
			{
				int			j = i + pg_rightmost_one_pos64(nonzero) / 8;
				uint32		gap = (uint32) (j - prev - 1);

				if (gap < 0x80)
					*out++ = (uint8) gap;
				else
				{
					*out++ = (uint8) (gap | 0x80);
					*out++ = (uint8) (gap >> 7);
				}
				*out++ = r[j];
				prev = j;
				nonzero &= nonzero - 1;
			}
		}
		buf.len = (int) ((char *) out - buf.data);
		Assert(buf.len < buf.maxlen);
	}
	else
		appendBinaryStringInfo(&buf, (const char *) hll->registers, TRIB_HLL_REGISTERS);
	return TribWireFinish(&buf);
}

/* Stored sketches are user input: check every field before trusting any. */
const char *
TribHllParse(TribHll *hll, const char *data, Size len)
{
	TribWireReader r;
	uint8		version,
				mode,
				precision,
				caplog;

	TribWireReaderInit(&r, data, len);
	version = TribWireGetU8(&r);
	mode = TribWireGetU8(&r);
	precision = TribWireGetU8(&r);
	caplog = TribWireGetU8(&r);
	if (!TribWireOk(&r))
		return psprintf("%zu bytes is shorter than the %d-byte header", len, TRIB_HLL_HEADER_SIZE);
	if (version != TRIB_HLL_FORMAT_VERSION)
		return psprintf("format version %d is not the version this library reads (%d)",
						version, TRIB_HLL_FORMAT_VERSION);
	if (precision != TRIB_HLL_PRECISION)
		return psprintf("precision %d is not %d", precision, TRIB_HLL_PRECISION);
	if (caplog > pg_leftmost_one_pos32(TRIB_HLL_EXACT_MAX_LIMIT))
		return psprintf("the exact cap 2^%d is more than %d", caplog, TRIB_HLL_EXACT_MAX_LIMIT);
	hll->exact_max = 1 << caplog;

	if (mode == TRIB_HLL_MODE_EXACT)
	{
		uint32		n = TribWireGetU32(&r);
		uint64		prev = 0;
		const uint8 *hashes;
		int			last = -1;	/* the slot of the previous hash, until one wraps */

		if (!TribWireOk(&r))
			return pstrdup("the exact set's length is missing");
		if (n > (uint32) hll->exact_max)
			return psprintf("the exact set has %u hashes, more than its cap %d", n, hll->exact_max);
		if (TribWireRemaining(&r) != (Size) n * 8)
			return psprintf("the exact set takes %zu bytes, not 8 for each of its %u hashes",
							TribWireRemaining(&r), n);
		/* room for all of them at once: what the set holds does not depend on its size */
		if (n > 0)
		{
			int			nslots = HLL_FIRST_SLOTS;

			while (nslots < 2 * (int) n && nslots < HLL_MAX_SLOTS(hll))
				nslots *= 2;
			hll->slots = MemoryContextAllocZero(hll->cxt, nslots * sizeof(uint64));
			hll->nslots = nslots;
		}
		hashes = TribWireTake(&r, (Size) n * 8);
		for (uint32 i = 0; i < n; i++)
		{
			uint64		hash = TribWireLoadU64(hashes + 8 * (Size) i);
			int			slot;

			if (i > 0 && hash <= prev)
				return psprintf("the exact set's hashes are not in strictly increasing order "
								"(at hash %u of %u)", i + 1, n);
			prev = hash;
			if (hash == 0)
			{
				hll->has_zero = true;
				hll->nexact++;
				continue;
			}
			/*
			 * In increasing order, a hash's slot is its first one or the one after the
			 * previous hash's, whichever is later (until the set wraps around the end).
			 */
			slot = Max(HllSetHome(hll, hash), last + 1);
			if (slot >= hll->nslots)
				slot = HllSetProbe(hll, hash);
			else
				last = slot;
			hll->slots[slot] = hash;
			hll->nexact++;
		}
		Assert(hll->mode == TRIB_HLL_MODE_EXACT && hll->nexact == (int) n);
		return NULL;
	}
	if (mode == TRIB_HLL_MODE_REGISTERS)
	{
		const uint8 *registers;
		uint8		highest = 0;

		if (TribWireRemaining(&r) != TRIB_HLL_REGISTERS)
			return psprintf("registers take %d bytes, not %zu",
							TRIB_HLL_REGISTERS, TribWireRemaining(&r));

		registers = TribWireTake(&r, TRIB_HLL_REGISTERS);
		for (int i = 0; i < TRIB_HLL_REGISTERS; i++)
			highest = Max(highest, registers[i]);
		if (highest > TRIB_HLL_RHO_MAX)
			for (int i = 0; i < TRIB_HLL_REGISTERS; i++)
				if (registers[i] > TRIB_HLL_RHO_MAX)
					return psprintf("register %d holds %d, more than %d",
									i, registers[i], TRIB_HLL_RHO_MAX);
		hll->registers = MemoryContextAlloc(hll->cxt, TRIB_HLL_REGISTERS);
		hll->hist = MemoryContextAlloc(hll->cxt, sizeof(int32) * (TRIB_HLL_RHO_MAX + 1));
		memcpy(hll->registers, registers, TRIB_HLL_REGISTERS);
		HllHistogramRebuild(hll);
		/* one stored form per set: registers few enough to store sparse are stored so */
		if (hll->hist[0] == TRIB_HLL_REGISTERS)
			return pstrdup("no register is set (a sketch of no value is exact)");
		if (HllSparseFits(TRIB_HLL_REGISTERS - hll->hist[0]))
			return psprintf("%d registers are set, few enough for the sparse form (mode %d)",
							TRIB_HLL_REGISTERS - hll->hist[0], TRIB_HLL_MODE_SPARSE);
		hll->mode = TRIB_HLL_MODE_REGISTERS;
		return NULL;
	}
	if (mode == TRIB_HLL_MODE_SPARSE)
	{
		uint32		n = TribWireGetU32(&r);
		int			prev = -1;

		if (!TribWireOk(&r))
			return pstrdup("the number of sparse registers is missing");
		if (n == 0 || !HllSparseFits((int) Min(n, (uint32) TRIB_HLL_REGISTERS)))
			return psprintf("%u sparse registers is not between 1 and %d",
							n, (TRIB_HLL_REGISTERS - 5) / 3);
		HllRegistersAllocate(hll);
		for (uint32 i = 0; i < n; i++)
		{
			uint64		gap = TribWireGetVarint(&r);
			uint8		value = TribWireGetU8(&r);

			if (!TribWireOk(&r))
				return psprintf("sparse register %u of %u is missing or not a varint and a byte",
								i + 1, n);
			if (gap >= (uint64) (TRIB_HLL_REGISTERS - 1 - prev))
				return psprintf("sparse register %u of %u is past register %d",
								i + 1, n, TRIB_HLL_REGISTERS - 1);
			prev += (int) gap + 1;
			if (value == 0 || value > TRIB_HLL_RHO_MAX)
				return psprintf("register %d holds %d, not 1 to %d", prev, value, TRIB_HLL_RHO_MAX);
			hll->registers[prev] = value;
			hll->hist[value]++;
		}
		if (TribWireRemaining(&r) != 0)
			return psprintf("the sparse registers end %zu bytes before the value does", TribWireRemaining(&r));
		hll->hist[0] = TRIB_HLL_REGISTERS - (int32) n;
		hll->mode = TRIB_HLL_MODE_REGISTERS;
		return NULL;
	}
	return psprintf("mode %d is not %d (exact), %d (registers) or %d (sparse registers)",
					mode, TRIB_HLL_MODE_EXACT, TRIB_HLL_MODE_REGISTERS, TRIB_HLL_MODE_SPARSE);
}

/* TribHllParse for callers that want an error rather than a reason. */
TribHll *
TribHllDeserialize(const char *data, Size len, MemoryContext cxt)
{
	TribHll    *hll = TribHllCreate(cxt);
	const char *problem = TribHllParse(hll, data, len);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid tributary.hll value"),
				 errdetail("%c%s.", pg_toupper((unsigned char) problem[0]), problem + 1),
				 errhint("Use a value made by tributary.hll_agg or tributary.hll_merge, "
						 "stored format version %d.", TRIB_HLL_FORMAT_VERSION)));
	return hll;
}
