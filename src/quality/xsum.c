/*
 * xsum.c
 *		Exact sums of doubles and of their squares (superaccumulators), and mean, variance
 *		and standard deviation read from them in double-double arithmetic; see xsum.h.
 */
#include "postgres.h"

#include <math.h>

#include "utils/float.h"

#include "quality/wire.h"
#include "quality/xsum.h"

#define XSUM_DIGIT_MASK INT64CONST(0xffffffff)
/* room for n S2 (136 + 2 digits) and S1^2 (2 * 69 digits) */
#define XSUM_BIG_DIGITS (TRIB_XSUM_SQ_DIGITS + 5)

StaticAssertDecl(2 * (TRIB_XSUM_SUM_DIGITS + 1) <= XSUM_BIG_DIGITS, "S1^2 fits a big number");
StaticAssertDecl(2 * TRIB_XSUM_SUM_LOW_EXP == TRIB_XSUM_SQ_LOW_EXP, "S1^2 and S2 share a scale");
StaticAssertDecl(TRIB_XSUM_SUM_DIGITS <= TRIB_XSUM_SQ_DIGITS, "sq is the larger sum");

/* A non-negative big integer: 32-bit digits, least significant first. */
typedef struct XsumBig
{
	uint32		d[XSUM_BIG_DIGITS];
	int			len;			/* digits in use; d[len - 1] != 0 unless len == 0 */
} XsumBig;

/* A double-double: hi + lo with |lo| <= ulp(hi) / 2, about 106 bits. */
typedef struct XsumDD
{
	double		hi;
	double		lo;
} XsumDD;

/* All limbs and counts zero: the sums of no values. */
void
TribXsumInit(TribXsum *acc)
{
	memset(acc, 0, sizeof(*acc));
}

/* Every value counts for avg and stddev, NaN and infinities included. */
uint64
TribXsumCount(const TribXsum *acc)
{
	return acc->count + acc->nan_count + acc->posinf_count + acc->neginf_count;
}

/* Propagate carries: every limb but the top in [0, 2^32), the top one signed. */
static void
XsumNormalize(int64 *limbs, int n)
{
	int64		carry = 0;

	for (int i = 0; i < n - 1; i++)
	{
		int64		v = limbs[i] + carry;
		int64		digit = v & XSUM_DIGIT_MASK;

		limbs[i] = digit;
		carry = (v - digit) / (INT64CONST(1) << TRIB_XSUM_DIGIT_BITS);
	}
	limbs[n - 1] += carry;
}

/* Add (or subtract) v * 2^pos to limbs: v's bits shifted onto the three digits they touch. */
static inline void
XsumAddShifted(int64 *limbs, uint64 v, int pos, bool negative)
{
	int			k = pos / TRIB_XSUM_DIGIT_BITS;
	int			s = pos % TRIB_XSUM_DIGIT_BITS;
	int64		d0 = (int64) ((v << s) & XSUM_DIGIT_MASK);
	int64		d1 = (int64) ((s == 0 ? v >> 32 : v >> (32 - s)) & XSUM_DIGIT_MASK);
	int64		d2 = (int64) (s == 0 ? 0 : v >> (64 - s));

	if (negative)
	{
		limbs[k] -= d0;
		limbs[k + 1] -= d1;
		limbs[k + 2] -= d2;
	}
	else
	{
		limbs[k] += d0;
		limbs[k + 1] += d1;
		limbs[k + 2] += d2;
	}
}

/* Add one value: x = m 2^(p - 1074) into sum, m^2 2^(2p - 2148) into sq. */
void
TribXsumAdd(TribXsum *acc, double value)
{
	uint64		bits;
	uint64		m;
	int			biased;
	int			p;

	if (isnan(value))
	{
		acc->nan_count++;
		return;
	}
	if (isinf(value))
	{
		if (value > 0)
			acc->posinf_count++;
		else
			acc->neginf_count++;
		return;
	}
	acc->count++;
	memcpy(&bits, &value, sizeof(bits));
	m = bits & ((UINT64CONST(1) << 52) - 1);
	biased = (int) ((bits >> 52) & 0x7ff);
	if (biased == 0)
		p = 0;					/* subnormal (or zero): m 2^-1074 */
	else
	{
		m |= UINT64CONST(1) << 52;
		p = biased - 1;			/* m 2^(biased - 1075) */
	}
	if (m == 0)
		return;
	XsumAddShifted(acc->sum, m, p, (bits >> 63) != 0);
	{
		uint64		a0 = m & XSUM_DIGIT_MASK;
		uint64		a1 = m >> 32;

		XsumAddShifted(acc->sq, a0 * a0, 2 * p, false);
		XsumAddShifted(acc->sq, 2 * a0 * a1, 2 * p + 32, false);
		XsumAddShifted(acc->sq, a1 * a1, 2 * p + 64, false);
	}
	if (++acc->pending >= TRIB_XSUM_NORMALIZE_EVERY)
	{
		XsumNormalize(acc->sum, TRIB_XSUM_SUM_DIGITS);
		XsumNormalize(acc->sq, TRIB_XSUM_SQ_DIGITS);
		acc->pending = 0;
	}
}

/* Partial sums (batches, sessions, parallel workers) add up exactly. */
void
TribXsumMerge(TribXsum *dst, const TribXsum *src)
{
	for (int i = 0; i < TRIB_XSUM_SUM_DIGITS; i++)
		dst->sum[i] += src->sum[i];
	for (int i = 0; i < TRIB_XSUM_SQ_DIGITS; i++)
		dst->sq[i] += src->sq[i];
	XsumNormalize(dst->sum, TRIB_XSUM_SUM_DIGITS);
	XsumNormalize(dst->sq, TRIB_XSUM_SQ_DIGITS);
	dst->pending = 0;
	dst->count += src->count;
	dst->nan_count += src->nan_count;
	dst->posinf_count += src->posinf_count;
	dst->neginf_count += src->neginf_count;
}

/*
 * The canonical form of an exact sum: its sign and its magnitude's digits. Limbs may hold
 * pending carries and a negative value; the result is the same for every limb pattern of
 * the same value.
 */
static bool
XsumCanonical(const int64 *limbs, int n, XsumBig *mag)
{
	int64		tmp[TRIB_XSUM_SQ_DIGITS];	/* the larger of the two sums */
	bool		negative;

	memcpy(tmp, limbs, n * sizeof(int64));
	XsumNormalize(tmp, n);
	negative = tmp[n - 1] < 0;
	if (negative)
	{
		for (int i = 0; i < n; i++)
			tmp[i] = -tmp[i];
		XsumNormalize(tmp, n);
	}
	/* every limb is a digit now but the top one, which may need two */
	for (int i = 0; i < n; i++)
		mag->d[i] = (uint32) tmp[i];
	mag->d[n] = (uint32) (tmp[n - 1] >> 32);
	mag->len = n + 1;
	while (mag->len > 0 && mag->d[mag->len - 1] == 0)
		mag->len--;
	return negative && mag->len > 0;
}

/* r = a b (r distinct from both). */
static void
XsumBigMul(const XsumBig *a, const XsumBig *b, XsumBig *r)
{
	r->len = 0;
	if (a->len == 0 || b->len == 0)
		return;
	Assert(a->len + b->len <= XSUM_BIG_DIGITS);
	memset(r->d, 0, (a->len + b->len) * sizeof(uint32));
	for (int i = 0; i < a->len; i++)
	{
		uint64		carry = 0;

		for (int j = 0; j < b->len; j++)
		{
			/* < (2^32 - 1)^2 + 2 (2^32 - 1) < 2^64 */
			uint64		t = (uint64) a->d[i] * b->d[j] + r->d[i + j] + carry;

			r->d[i + j] = (uint32) t;
			carry = t >> 32;
		}
		r->d[i + b->len] = (uint32) carry;
	}
	r->len = a->len + b->len;
	while (r->len > 0 && r->d[r->len - 1] == 0)
		r->len--;
}

/* a - b into r when a >= b; false (r = 0) when a < b. */
static bool
XsumBigSub(const XsumBig *a, const XsumBig *b, XsumBig *r)
{
	int64		borrow = 0;

	r->len = 0;
	if (a->len < b->len)
		return false;
	if (a->len == b->len)
	{
		int			i = a->len - 1;

		while (i >= 0 && a->d[i] == b->d[i])
			i--;
		if (i < 0)
			return true;		/* equal: 0 */
		if (a->d[i] < b->d[i])
			return false;
	}
	for (int i = 0; i < a->len; i++)
	{
		int64		v = (int64) a->d[i] - (i < b->len ? b->d[i] : 0) - borrow;

		borrow = v < 0;
		r->d[i] = (uint32) (v + (borrow << 32));
	}
	r->len = a->len;
	while (r->len > 0 && r->d[r->len - 1] == 0)
		r->len--;
	return true;
}

/* A big integer from a uint64. */
static void
XsumBigFromUint64(uint64 v, XsumBig *r)
{
	r->d[0] = (uint32) v;
	r->d[1] = (uint32) (v >> 32);
	r->len = r->d[1] != 0 ? 2 : (r->d[0] != 0 ? 1 : 0);
}

/* s + e exactly as a double-double, given |s| >= |e| (Dekker). */
static inline XsumDD
XsumQuickTwoSum(double s, double e)
{
	XsumDD		r;

	r.hi = s + e;
	r.lo = e - (r.hi - s);
	return r;
}

/* a + b exactly as a double-double (Knuth). */
static inline XsumDD
XsumTwoSum(double a, double b)
{
	XsumDD		r;
	double		bb;

	r.hi = a + b;
	bb = r.hi - a;
	r.lo = (a - (r.hi - bb)) + (b - bb);
	return r;
}

/* a b exactly as a double-double (fma gives the rounding error of the product). */
static inline XsumDD
XsumTwoProd(double a, double b)
{
	XsumDD		r;

	r.hi = a * b;
	r.lo = fma(a, b, -r.hi);
	return r;
}

/* a + b in double-double. */
static XsumDD
XsumDDAdd(XsumDD a, XsumDD b)
{
	XsumDD		s = XsumTwoSum(a.hi, b.hi);
	XsumDD		t = XsumTwoSum(a.lo, b.lo);

	s.lo += t.hi;
	s = XsumQuickTwoSum(s.hi, s.lo);
	s.lo += t.lo;
	return XsumQuickTwoSum(s.hi, s.lo);
}

/* a b in double-double. */
static XsumDD
XsumDDMul(XsumDD a, XsumDD b)
{
	XsumDD		p = XsumTwoProd(a.hi, b.hi);

	p.lo += a.hi * b.lo + a.lo * b.hi;
	return XsumQuickTwoSum(p.hi, p.lo);
}

/* a / b in double-double: three quotient digits, long division style. */
static XsumDD
XsumDDDiv(XsumDD a, XsumDD b)
{
	double		q1 = a.hi / b.hi;
	XsumDD		r = XsumDDAdd(a, XsumDDMul(b, (XsumDD) {-q1, 0.0}));
	double		q2 = r.hi / b.hi;
	double		q3;

	r = XsumDDAdd(r, XsumDDMul(b, (XsumDD) {-q2, 0.0}));
	q3 = r.hi / b.hi;
	return XsumDDAdd(XsumQuickTwoSum(q1, q2), (XsumDD) {q3, 0.0});
}

/* sqrt(a) in double-double, a >= 0: one Newton step from the double root. */
static XsumDD
XsumDDSqrt(XsumDD a)
{
	double		s;
	XsumDD		sq;
	double		e;

	if (a.hi <= 0.0)
		return (XsumDD) {0.0, 0.0};
	s = sqrt(a.hi);
	sq = XsumTwoProd(s, s);
	e = ((a.hi - sq.hi) - sq.lo + a.lo) / (2.0 * s);
	return XsumQuickTwoSum(s, e);
}

/* A uint64 as a double-double (exact). */
static XsumDD
XsumDDFromUint64(uint64 v)
{
	double		hi = (double) (v & ~UINT64CONST(0x7ff));	/* 53 bits at most: exact */

	return XsumTwoSum(hi, (double) (v & UINT64CONST(0x7ff)));
}

/*
 * A big integer as hi + lo times 2^*scale, from its four leading digits (128 bits, so the
 * error is below 2^-96 relative), scale counted from the integer's units.
 */
static XsumDD
XsumBigToDD(const XsumBig *a, int *scale)
{
	XsumDD		r = {0.0, 0.0};
	int			top = a->len - 1;

	*scale = 0;
	if (a->len == 0)
		return r;
	for (int j = 0; j < 4; j++)
	{
		int			i = top - j;
		double		digit = i >= 0 ? (double) a->d[i] : 0.0;

		r = XsumDDAdd(r, (XsumDD) {ldexp(digit, 32 * (3 - j)), 0.0});
	}
	*scale = 32 * (top - 3);
	return r;
}

/* Round hi + lo times 2^scale to a double (+-inf beyond DBL_MAX). */
static inline double
XsumDDToDouble(XsumDD a, int scale)
{
	return ldexp(a.hi, scale);
}

/* NaN or an infinity when the special values decide a mean or sum, as float8 avg and sum. */
static bool
XsumSpecial(const TribXsum *acc, double *result)
{
	if (acc->nan_count > 0 || (acc->posinf_count > 0 && acc->neginf_count > 0))
		*result = get_float8_nan();
	else if (acc->posinf_count > 0)
		*result = get_float8_infinity();
	else if (acc->neginf_count > 0)
		*result = -get_float8_infinity();
	else
		return false;
	return true;
}

/* The exact sum S1, divided by the count when mean, rounded once. */
static bool
XsumRounded(const TribXsum *acc, bool mean, double *result)
{
	XsumBig		s1;
	bool		negative;
	int			scale;
	XsumDD		v;

	if (TribXsumCount(acc) == 0)
		return false;
	if (XsumSpecial(acc, result))
		return true;
	negative = XsumCanonical(acc->sum, TRIB_XSUM_SUM_DIGITS, &s1);
	v = XsumBigToDD(&s1, &scale);
	if (mean)
		v = XsumDDDiv(v, XsumDDFromUint64(acc->count));
	*result = XsumDDToDouble(v, scale + TRIB_XSUM_SUM_LOW_EXP);
	if (negative)
		*result = -*result;
	return true;
}

/* The exact sum rounded once, for callers that want a total. */
bool
TribXsumSum(const TribXsum *acc, double *result)
{
	return XsumRounded(acc, false, result);
}

/* S1 / n from the exact sum, rounded once. */
bool
TribXsumMean(const TribXsum *acc, double *result)
{
	return XsumRounded(acc, true, result);
}

/*
 * The sample variance as hi + lo times 2^*scale (scale even): (n S2 - S1^2) exactly, then
 * divided by n (n - 1). false with fewer than two values; NaN when any is not finite.
 */
static bool
XsumVarianceDD(const TribXsum *acc, XsumDD *var, int *scale, double *special)
{
	XsumBig		s1,
				s2,
				n,
				ns2,
				s1sq,
				d;
	XsumDD		denom;

	if (TribXsumCount(acc) < 2)
		return false;
	if (acc->nan_count > 0 || acc->posinf_count > 0 || acc->neginf_count > 0)
	{
		*special = get_float8_nan();
		return true;
	}
	*special = 0.0;
	(void) XsumCanonical(acc->sum, TRIB_XSUM_SUM_DIGITS, &s1);
	/* S2 is a sum of squares; a stored value claiming otherwise reads as 0 */
	if (XsumCanonical(acc->sq, TRIB_XSUM_SQ_DIGITS, &s2))
		s2.len = 0;
	XsumBigFromUint64(acc->count, &n);
	XsumBigMul(&n, &s2, &ns2);
	XsumBigMul(&s1, &s1, &s1sq);
	/* n S2 >= S1^2 (Cauchy-Schwarz); only a forged state can break it: variance 0 then */
	(void) XsumBigSub(&ns2, &s1sq, &d);
	denom = XsumDDMul(XsumDDFromUint64(acc->count), XsumDDFromUint64(acc->count - 1));
	*var = XsumDDDiv(XsumBigToDD(&d, scale), denom);
	*scale += TRIB_XSUM_SQ_LOW_EXP;
	if (*scale % 2 != 0)
	{
		var->hi *= 2.0;
		var->lo *= 2.0;
		(*scale)--;
	}
	return true;
}

/* The sample variance from the exact sums, rounded once. */
bool
TribXsumVariance(const TribXsum *acc, double *result)
{
	XsumDD		var;
	int			scale;
	double		special;

	if (!XsumVarianceDD(acc, &var, &scale, &special))
		return false;
	*result = isnan(special) ? special : XsumDDToDouble(var, scale);
	return true;
}

/* The square root of the double-double variance, rounded once. */
bool
TribXsumStddev(const TribXsum *acc, double *result)
{
	XsumDD		var;
	int			scale;
	double		special;

	if (!XsumVarianceDD(acc, &var, &scale, &special))
		return false;
	*result = isnan(special) ? special : XsumDDToDouble(XsumDDSqrt(var), scale / 2);
	return true;
}

/* One exact sum's stored form: digit count, lowest digit, sign, digits. */
static void
XsumSerializeSum(StringInfo buf, const int64 *limbs, int n)
{
	XsumBig		mag;
	bool		negative = XsumCanonical(limbs, n, &mag);
	int			first = 0;

	if (mag.len == 0)
	{
		TribWirePutVarint(buf, 0);
		return;
	}
	while (mag.d[first] == 0)
		first++;
	TribWirePutVarint(buf, (uint64) (mag.len - first));
	TribWirePutVarint(buf, (uint64) first);
	TribWirePutU8(buf, negative ? 1 : 0);
	for (int i = first; i < mag.len; i++)
		TribWirePutU32(buf, mag.d[i]);
}

/* The canonical stored form: equal sums give equal bytes. */
bytea *
TribXsumSerialize(const TribXsum *acc)
{
	StringInfoData buf;

	TribWireBegin(&buf);
	TribWirePutU8(&buf, TRIB_XSUM_FORMAT_VERSION);
	TribWirePutU8(&buf, 0);
	TribWirePutVarint(&buf, acc->count);
	TribWirePutVarint(&buf, acc->nan_count);
	TribWirePutVarint(&buf, acc->posinf_count);
	TribWirePutVarint(&buf, acc->neginf_count);
	XsumSerializeSum(&buf, acc->sum, TRIB_XSUM_SUM_DIGITS);
	XsumSerializeSum(&buf, acc->sq, TRIB_XSUM_SQ_DIGITS);
	return TribWireFinish(&buf);
}

/* Read one exact sum into limbs (n of them); NULL, or what is wrong. */
static const char *
XsumParseSum(TribWireReader *r, int64 *limbs, int n, bool may_be_negative, const char *which)
{
	uint64		ndigits = TribWireGetVarint(r);
	uint64		first;
	uint8		sign;

	memset(limbs, 0, n * sizeof(int64));
	if (!TribWireOk(r))
		return psprintf("the %s is truncated", which);
	if (ndigits == 0)
		return NULL;
	first = TribWireGetVarint(r);
	sign = TribWireGetU8(r);
	if (!TribWireOk(r))
		return psprintf("the %s is truncated", which);
	/* digit n, one past the top limb, is what the top limb holds beyond 32 bits */
	if (ndigits > (uint64) n + 1 || first > (uint64) n + 1 - ndigits)
		return psprintf("the %s has digits %llu to %llu, beyond digit %d", which,
						(unsigned long long) first, (unsigned long long) (first + ndigits - 1), n);
	if (sign > 1 || (sign == 1 && !may_be_negative))
		return psprintf("the %s's sign byte is %d", which, sign);
	for (uint64 i = 0; i < ndigits; i++)
	{
		uint32		digit = TribWireGetU32(r);
		int			k = (int) (first + i);

		if (!TribWireOk(r))
			return psprintf("the %s is truncated", which);
		if ((i == 0 || i == ndigits - 1) && digit == 0)
			return psprintf("the %s's first or last digit is 0", which);
		if (k == n)
		{
			if (digit > PG_INT32_MAX / 2)
				return psprintf("the %s is too large", which);
			limbs[n - 1] += (int64) digit << 32;
		}
		else
			limbs[k] = digit;
	}
	if (sign == 1)
		for (int i = 0; i < n; i++)
			limbs[i] = -limbs[i];
	return NULL;
}

/* Stored states come from other processes: check every field before trusting any. */
const char *
TribXsumParse(TribXsum *acc, const char *data, Size len)
{
	TribWireReader r;
	uint8		version,
				reserved;
	const char *problem;

	TribXsumInit(acc);
	TribWireReaderInit(&r, data, len);
	version = TribWireGetU8(&r);
	if (!TribWireOk(&r))
		return pstrdup("the value is empty");
	if (version != TRIB_XSUM_FORMAT_VERSION)
		return psprintf("format version %d is not the version this library reads (%d)",
						version, TRIB_XSUM_FORMAT_VERSION);
	reserved = TribWireGetU8(&r);
	acc->count = TribWireGetVarint(&r);
	acc->nan_count = TribWireGetVarint(&r);
	acc->posinf_count = TribWireGetVarint(&r);
	acc->neginf_count = TribWireGetVarint(&r);
	if (!TribWireOk(&r))
		return pstrdup("the header is truncated");
	if (reserved != 0)
		return psprintf("reserved byte is %d, not 0", reserved);
	if ((problem = XsumParseSum(&r, acc->sum, TRIB_XSUM_SUM_DIGITS, true, "sum")) != NULL ||
		(problem = XsumParseSum(&r, acc->sq, TRIB_XSUM_SQ_DIGITS, false, "sum of squares")) != NULL)
		return problem;
	if (TribWireRemaining(&r) != 0)
		return psprintf("the value goes on for %zu bytes after the sums", TribWireRemaining(&r));
	if (acc->count == 0)
		for (int i = 0; i < TRIB_XSUM_SQ_DIGITS; i++)
			if ((i < TRIB_XSUM_SUM_DIGITS && acc->sum[i] != 0) || acc->sq[i] != 0)
				return pstrdup("the sums are not 0 but there are no finite values");
	return NULL;
}

/* TribXsumParse for callers that want an error rather than a reason. */
void
TribXsumDeserialize(TribXsum *acc, const char *data, Size len)
{
	const char *problem = TribXsumParse(acc, data, len);

	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid exact sum state"),
				 errdetail("%c%s.", pg_toupper((unsigned char) problem[0]), problem + 1),
				 errhint("Use a state serialized by this version of tributary, "
						 "stored format version %d.", TRIB_XSUM_FORMAT_VERSION)));
}
