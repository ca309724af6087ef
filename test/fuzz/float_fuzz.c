/*
 * float_fuzz.c
 *		TribConvertFloat8 (src/formats/float8.c) against glibc's strtod, which float8in
 *		calls: on every decimal it takes, the same bits; on everything strtod would not
 *		read whole, a decline.
 *
 * Usage: float_fuzz [ROUNDS=1000000] [SEED=1]. Each round draws one decimal of each kind:
 *	1. a random double's shortest round-trip form (%.15g, %.16g or %.17g, the first that
 *	   reads back), as JSON producers write them, plain or with an exponent;
 *	2. random digit strings of 1 to 19 significant digits, the point anywhere, an optional
 *	   exponent from -350 to 320, leading and trailing zeros, a sign;
 *	3. integers of up to 19 digits exactly halfway between two doubles (ties to even), and
 *	   one unit either side, also scaled by a power of ten;
 *	4. one of the above with a byte changed (a letter, a second point, a blank, a cut).
 * Then fixed hard cases: the limits of the normal range, subnormals, overflow, Clinger's
 * and Eisel-Lemire's edges. It fails when a taken decimal's bits differ from strtod's, when
 * it takes what strtod would refuse or read only in part, and when it declines more than
 * 1 % of the first kind (the fast paths must actually be taken).
 */
#include "postgres.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "formats/convert.h"

#include "fuzz_random.h"

static long checked;
static long taken;
static long failures;

/* one decimal: taken means strtod reads it whole, in range, to the same bits */
static bool
Check(const char *s)
{
	int			len = (int) strlen(s);
	float8		mine = 0;
	bool		ok = TribConvertFloat8(s, len, &mine);
	char	   *end;
	double		ref;
	uint64		a;
	uint64		b;

	checked++;
	if (!ok)
		return false;
	taken++;
	errno = 0;
	ref = strtod(s, &end);
	memcpy(&a, &mine, sizeof(a));
	memcpy(&b, &ref, sizeof(b));
	if (len == 0 || end != s + len || errno == ERANGE || a != b || isspace((unsigned char) s[0]))
	{
		if (failures++ < 20)
			fprintf(stderr, "float_fuzz: \"%s\": took %.17g (%016llx), strtod %.17g (%016llx)%s%s\n",
					s, mine, (unsigned long long) a, ref, (unsigned long long) b,
					end != s + len ? ", strtod stops early" : "",
					errno == ERANGE ? ", strtod ERANGE" : "");
	}
	return true;
}

/* a random finite double, every exponent as likely */
static double
RandomDouble(void)
{
	uint64		bits;
	double		d;

	do
	{
		bits = FuzzRandom();
		memcpy(&d, &bits, sizeof(d));
	} while (!isfinite(d));
	return d;
}

/* kind 1: the shortest of %.15g, %.16g, %.17g that reads back */
static void
ShortestForm(char *buf, size_t size, double d)
{
	for (int p = 15; p <= 17; p++)
	{
		snprintf(buf, size, "%.*g", p, d);
		if (strtod(buf, NULL) == d)
			return;
	}
}

/* kind 2: digits, point, exponent, sign, zeros */
static void
RandomDecimal(char *buf, size_t size)
{
	char		digits[64];
	int			n = 1 + (int) (FuzzRandom() % 19);
	int			lead = FuzzRandom() % 4 == 0 ? (int) (FuzzRandom() % 4) : 0;
	int			trail = FuzzRandom() % 4 == 0 ? (int) (FuzzRandom() % 4) : 0;
	int			len = 0;
	int			point;
	char	   *p = buf;

	for (int i = 0; i < lead; i++)
		digits[len++] = '0';
	for (int i = 0; i < n; i++)
		digits[len++] = (char) ('0' + (i == 0 ? 1 + FuzzRandom() % 9 : FuzzRandom() % 10));
	for (int i = 0; i < trail; i++)
		digits[len++] = '0';
	point = FuzzRandom() % 3 == 0 ? -1 : (int) (FuzzRandom() % (len + 1));
	if (FuzzRandom() % 4 == 0)
		*p++ = FuzzRandom() % 2 ? '-' : '+';
	for (int i = 0; i <= len; i++)
	{
		if (i == point)
			*p++ = '.';
		if (i < len)
			*p++ = digits[i];
	}
	*p = '\0';
	if (point == len && len == 0)
		strcat(buf, "0");
	if (FuzzRandom() % 2)
		snprintf(p, size - (p - buf), "%c%d", FuzzRandom() % 2 ? 'e' : 'E',
				 (int) (FuzzRandom() % 671) - 350);
}

/* kind 3: an integer halfway between two doubles (delta 0), or next to it */
static void
Halfway(char *buf, size_t size, int delta)
{
	int			bitsn = 54 + (int) (FuzzRandom() % 10);	/* 2^54 .. 2^63: up to 19 digits */
	uint64		a = (UINT64CONST(1) << (bitsn - 1)) | (FuzzRandom() >> (65 - bitsn));
	uint64		ulp = UINT64CONST(1) << (bitsn - 53);
	uint64		mid = (a & ~(ulp - 1)) + ulp / 2 + (uint64) (int64) delta;

	if (FuzzRandom() % 2)
		snprintf(buf, size, "%llu", (unsigned long long) mid);
	else
		snprintf(buf, size, "%llue%d", (unsigned long long) mid, (int) (FuzzRandom() % 40) - 20);
}

/* kind 4: one byte changed, added or cut */
static void
Mutate(char *buf, size_t size)
{
	static const char bytes[] = "0123456789.eE+- xn";
	size_t		len = strlen(buf);
	size_t		at = len > 0 ? FuzzRandom() % len : 0;

	switch (FuzzRandom() % 3)
	{
		case 0:
			if (len > 0)
				buf[at] = bytes[FuzzRandom() % (sizeof(bytes) - 1)];
			break;
		case 1:
			if (len + 2 < size)
			{
				memmove(buf + at + 1, buf + at, len - at + 1);
				buf[at] = bytes[FuzzRandom() % (sizeof(bytes) - 1)];
			}
			break;
		default:
			buf[at] = '\0';
	}
}

int
main(int argc, char **argv)
{
	static const char *const hard[] = {
		"0", "-0", "+0", "0.0", "-0.0", "0e0", "0e-9999", "-0e9999", "0.000000000000000000000",
		"1", "1.", ".5", "5e-1", "1e0", "1e22", "1e23", "1e-22", "1e-23", "123456789012345e7",
		"9007199254740992", "9007199254740993", "9007199254740994", "9007199254740995",
		"18014398509481985", "9223372036854775807", "9223372036854775808",
		"9999999999999999999", "1844674407370955161", "0.1", "0.2", "0.3",
		"0.14285714285714285", "0.2857142857142857", "2.2250738585072014e-308",
		"2.2250738585072011e-308", "2.225073858507201e-308", "4.9406564584124654e-324",
		"5e-324", "1e-320", "1.7976931348623157e308", "1.7976931348623158e308",
		"1.7976931348623159e308", "1e308", "1e309", "1e-307", "1e-308", "1e-309", "1e-342",
		"1e-343", "1e-400", "1e400", "7.2057594037927933e16", "8.98846567431158e307",
		"4.35679845e-306", "3.0540412e5", "2.4703282292062327e-324", "1e", "1e+", "e5", ".",
		"-", "+", "", " 1", "1 ", "1..2", "0x10", "1,5", "NaN", "Infinity", "1e+00001",
		"1e10000", "00000000000000000000000000001", "10000000000000000000",
		"1000000000000000000", "1.000000000000000000", "0.0000000000000000001234567890123456789",
	};
	long		rounds = argc > 1 ? atol(argv[1]) : 1000000;
	uint64		seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	long		shortest = 0;
	long		shortest_taken = 0;
	char		buf[128];

	fuzz_state ^= seed * UINT64CONST(0x9E3779B97F4A7C15);
	if (fuzz_state == 0)
		fuzz_state = 1;
	for (int i = 0; i < (int) lengthof(hard); i++)
		(void) Check(hard[i]);
	for (long r = 0; r < rounds; r++)
	{
		double		d = RandomDouble();

		ShortestForm(buf, sizeof(buf), d);
		/* normal doubles only: subnormals are declined by design */
		if (fabs(d) >= 2.2250738585072014e-308)
		{
			shortest++;
			shortest_taken += Check(buf);
		}
		else
			(void) Check(buf);
		snprintf(buf, sizeof(buf), "%.17g", fabs(d) < 1e15 && fabs(d) > 1e-5 ? d : 0.5);
		(void) Check(buf);
		RandomDecimal(buf, sizeof(buf));
		(void) Check(buf);
		Halfway(buf, sizeof(buf), (int) (FuzzRandom() % 3) - 1);
		(void) Check(buf);
		Mutate(buf, sizeof(buf));
		(void) Check(buf);
	}
	printf("float_fuzz: %ld decimals, %ld taken (shortest forms of normal doubles: %ld of %ld), %ld differing from strtod\n",
		   checked, taken, shortest_taken, shortest, failures);
	if (failures > 0)
		return 1;
	if (shortest_taken < shortest - shortest / 100)
	{
		fprintf(stderr, "float_fuzz: more than 1 %% of the shortest forms declined\n");
		return 1;
	}
	return 0;
}
