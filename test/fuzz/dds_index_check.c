/*
 * dds_index_check.c
 *		Checks that DDSketch's fast bin index (DdsIndex, without log()) gives the bin of the
 *		definition, ceil(log(x) / ln(gamma)) (DdsIndexExact), for every magnitude tried:
 *		random doubles over the whole normal range, typical magnitudes, every bin edge
 *		gamma^i and the 64 doubles on either side of it, powers of two, integers and
 *		decimals. Stored bins must never change, so one difference fails the check. Run
 *		by make fuzz-sketch (not part of make test).
 *
 * It includes ddsketch.c to reach its static functions.
 *
 * Usage: dds_index_check [millions of random values [seed]]
 */
#include "../../src/quality/ddsketch.c"

#include <float.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_random.h"

static long checked = 0;
static long differing = 0;

/* One magnitude: both indexes, counted and reported when they differ. */
static void
CheckOne(double x)
{
	if (!(x >= TRIB_DDS_MIN_MAGNITUDE) || isinf(x))
		return;
	checked++;
	if (DdsIndex(x) != DdsIndexExact(x) && differing++ < 10)
		fprintf(stderr, "dds_index_check: x = %.17g: fast bin %d, exact bin %d\n",
				x, DdsIndex(x), DdsIndexExact(x));
}

int
main(int argc, char **argv)
{
	long		millions = argc > 1 ? atol(argv[1]) : 20;
	uint64		seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;

	fuzz_state ^= seed * UINT64CONST(0x9e3779b97f4a7c15);
	for (long n = 0; n < millions * 1000000; n++)
	{
		/* a normal double of any exponent, and a magnitude within 1e-9 .. 1e9 */
		uint64		bits = ((1 + FuzzRandom() % 2046) << 52) |
			(FuzzRandom() & UINT64CONST(0x000FFFFFFFFFFFFF));
		double		x;

		memcpy(&x, &bits, sizeof(x));
		CheckOne(x);
		CheckOne(exp(-20.7 + 41.4 * FuzzUniform()));
	}
	for (int i = -70839; i <= 70978; i++)
	{
		double		edge = exp(i * DDS_LN_GAMMA);
		double		below = edge;
		double		above = edge;

		CheckOne(edge);
		for (int k = 0; k < 64; k++)
		{
			below = nextafter(below, 0.0);
			above = nextafter(above, INFINITY);
			CheckOne(below);
			CheckOne(above);
		}
	}
	for (int e = -1022; e <= 1023; e++)
	{
		double		p = ldexp(1.0, e);

		CheckOne(p);
		CheckOne(nextafter(p, 0.0));
		CheckOne(nextafter(p, INFINITY));
	}
	CheckOne(DBL_MAX);
	for (int i = 1; i <= 1000000; i++)
	{
		CheckOne((double) i);
		CheckOne(i / 100.0);
		CheckOne(i / 1000.0);
	}
	printf("dds_index_check: %ld magnitudes, %ld with another bin\n", checked, differing);
	return differing == 0 ? 0 : 1;
}
