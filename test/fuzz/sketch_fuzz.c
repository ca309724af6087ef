/*
 * sketch_fuzz.c
 *		Mutation fuzzing of the sketches' stored-form parsers, and the determinism they
 *		promise, outside the server (make fuzz-sketch; not part of make test).
 *
 * For many random sketches (tributary.hll, tributary.ddsketch, the exact sums), each
 * stored form is mutated (bits flipped, bytes replaced, inserted, deleted, the value cut
 * short) and parsed. A parser must either refuse the bytes with a reason or accept them;
 * what it accepts must be readable (estimate, quantiles, mean, stddev, merges) and must be
 * canonical: stored again, it gives the same bytes. Along the way every sketch is rebuilt
 * from its values in another order, split into parts that go through their stored forms
 * and are merged, and must come out byte for byte the same. Built with AddressSanitizer and
 * UndefinedBehaviorSanitizer and assertions, so an overrun or a broken invariant aborts.
 *
 * Usage: sketch_fuzz [rounds [seed]]
 */
#include "postgres.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "quality/datumhash.h"
#include "quality/ddsketch.h"
#include "quality/hll.h"
#include "quality/xsum.h"

#include "fuzz_random.h"

#define FUZZ_MUTATIONS_PER_FORM 30
#define FUZZ_BUF_SIZE 70000


/* A value from every corner the quantile sketch and the sums treat apart. */
static double
FuzzValue(void)
{
	switch (FuzzRandom() % 8)
	{
		case 0:
			return FuzzRandom() % 2 ? 0.0 : -0.0;
		case 1:
			return FuzzRandom() % 2 ? INFINITY : -INFINITY;
		case 2:
			return NAN;
		case 3:					/* any exponent, subnormals included */
			return ldexp(FuzzUniform(), (int) (FuzzRandom() % 2100) - 1075) *
				(FuzzRandom() % 2 ? 1 : -1);
		default:
			return (FuzzUniform() - 0.5) * exp(FuzzUniform() * 20);
	}
}

/* A hash, sometimes a small one (0 is special in the exact set). */
static uint64
FuzzHash(void)
{
	return FuzzRandom() % 4 ? FuzzRandom() : FuzzRandom() % 5;
}

/* Stop with a message: the harness found a bug. */
static void
FuzzFail(const char *what, const unsigned char *bytes, int len)
{
	fprintf(stderr, "sketch_fuzz: %s\n", what);
	for (int i = 0; i < len && i < 200; i++)
		fprintf(stderr, "%02x", bytes[i]);
	fprintf(stderr, "\n");
	abort();
}

/* A few random edits: flip a bit, replace, insert or delete a byte, cut the end. */
static int
FuzzMutate(unsigned char *b, int len)
{
	int			edits = 1 + FuzzRandom() % 4;

	for (int k = 0; k < edits && len > 0; k++)
	{
		int			pos = FuzzRandom() % len;

		switch (FuzzRandom() % 5)
		{
			case 0:
				b[pos] ^= 1 << (FuzzRandom() % 8);
				break;
			case 1:
				b[pos] = (unsigned char) FuzzRandom();
				break;
			case 2:
				len = pos;
				break;
			case 3:
				if (len < FUZZ_BUF_SIZE)
				{
					memmove(b + pos + 1, b + pos, len - pos);
					b[pos] = (unsigned char) FuzzRandom();
					len++;
				}
				break;
			default:
				memmove(b + pos, b + pos + 1, len - pos - 1);
				len--;
				break;
		}
	}
	return len;
}

/* Accepted bytes must be what storing the parsed state gives. */
static void
FuzzCheckCanonical(const char *kind, const unsigned char *in, int len, bytea *again)
{
	if ((int) (VARSIZE(again) - VARHDRSZ) != len || memcmp(VARDATA(again), in, len) != 0)
	{
		fprintf(stderr, "sketch_fuzz: %s accepted bytes that are not canonical\n", kind);
		FuzzFail("stored again differently", (const unsigned char *) VARDATA(again),
				 VARSIZE(again) - VARHDRSZ);
	}
}

/* Mutate a stored hll, parse, and use what is accepted. */
static long
FuzzHll(bytea *stored, const TribHll *other)
{
	static unsigned char buf[FUZZ_BUF_SIZE];
	long		accepted = 0;

	for (int m = 0; m < FUZZ_MUTATIONS_PER_FORM; m++)
	{
		int			len = VARSIZE(stored) - VARHDRSZ;
		TribHll    *t = TribHllCreate(NULL);

		memcpy(buf, VARDATA(stored), len);
		len = FuzzMutate(buf, len);
		if (TribHllParse(t, (char *) buf, len) != NULL)
			continue;
		accepted++;
		FuzzCheckCanonical("hll", buf, len, TribHllSerialize(t));
		if (!(TribHllEstimate(t) >= 0))
			FuzzFail("hll estimate is negative or NaN", buf, len);
		/* only sketches of one exact cap merge (a mutated cap byte is a different sketch) */
		if (t->exact_max == other->exact_max)
			TribHllMerge(t, other);
	}
	return accepted;
}

/* Mutate a stored ddsketch, parse, and use what is accepted. */
static long
FuzzDds(bytea *stored, const TribDds *other)
{
	static unsigned char buf[FUZZ_BUF_SIZE];
	long		accepted = 0;

	for (int m = 0; m < FUZZ_MUTATIONS_PER_FORM; m++)
	{
		int			len = VARSIZE(stored) - VARHDRSZ;
		TribDds    *t = TribDdsCreate(NULL);
		double		prev = -INFINITY;

		memcpy(buf, VARDATA(stored), len);
		len = FuzzMutate(buf, len);
		if (TribDdsParse(t, (char *) buf, len) != NULL)
			continue;
		accepted++;
		FuzzCheckCanonical("ddsketch", buf, len, TribDdsSerialize(t));
		for (double q = 0; q <= 1.0; q += 0.0625)
		{
			double		v;

			if (TribDdsQuantile(t, q, &v) && (isnan(v) || v < prev))
				FuzzFail("ddsketch quantiles are NaN or not monotonic", buf, len);
			prev = TribDdsCount(t) > 0 ? v : prev;
		}
		TribDdsMerge(t, other);
	}
	return accepted;
}

/* Mutate stored exact sums, parse, and use what is accepted. */
static long
FuzzXsum(bytea *stored, const TribXsum *other)
{
	static unsigned char buf[FUZZ_BUF_SIZE];
	long		accepted = 0;

	for (int m = 0; m < FUZZ_MUTATIONS_PER_FORM; m++)
	{
		int			len = VARSIZE(stored) - VARHDRSZ;
		TribXsum	t;
		double		v;

		memcpy(buf, VARDATA(stored), len);
		len = FuzzMutate(buf, len);
		if (TribXsumParse(&t, (char *) buf, len) != NULL)
			continue;
		accepted++;
		FuzzCheckCanonical("exact sums", buf, len, TribXsumSerialize(&t));
		(void) TribXsumMean(&t, &v);
		if (TribXsumStddev(&t, &v) && v < 0)
			FuzzFail("negative standard deviation", buf, len);
		TribXsumMerge(&t, other);
		(void) TribXsumStddev(&t, &v);
	}
	return accepted;
}

/* The values in another order, in parts stored and merged: the same bytes as at first. */
static void
FuzzDeterminism(const uint64 *hashes, const double *values, int n, bytea *hll, bytea *dds,
				bytea *xsum)
{
	int			parts = 1 + FuzzRandom() % 5;
	int			start = FuzzRandom() % (n + 1);
	TribHll    *h = TribHllCreate(NULL);
	TribDds    *d = TribDdsCreate(NULL);
	TribXsum	x;

	TribXsumInit(&x);
	for (int p = 0; p < parts; p++)
	{
		TribHll    *ph = TribHllCreate(NULL);
		TribDds    *pd = TribDdsCreate(NULL);
		TribXsum	px;
		bytea	   *s;

		TribXsumInit(&px);
		/* part p takes every parts-th value, walking backwards from a random start */
		for (int k = p; k < n; k += parts)
		{
			int			i = (start + n - 1 - k) % n;

			TribHllAdd(ph, hashes[i]);
			TribDdsAdd(pd, values[i]);
			TribXsumAdd(&px, values[i]);
		}
		s = TribHllSerialize(ph);
		TribHllMerge(h, TribHllDeserialize(VARDATA(s), VARSIZE(s) - VARHDRSZ, NULL));
		s = TribDdsSerialize(pd);
		TribDdsMerge(d, TribDdsDeserialize(VARDATA(s), VARSIZE(s) - VARHDRSZ, NULL));
		s = TribXsumSerialize(&px);
		TribXsumDeserialize(&px, VARDATA(s), VARSIZE(s) - VARHDRSZ);
		TribXsumMerge(&x, &px);
	}
	FuzzCheckCanonical("hll (merged parts)", (unsigned char *) VARDATA(hll),
					   VARSIZE(hll) - VARHDRSZ, TribHllSerialize(h));
	FuzzCheckCanonical("ddsketch (merged parts)", (unsigned char *) VARDATA(dds),
					   VARSIZE(dds) - VARHDRSZ, TribDdsSerialize(d));
	FuzzCheckCanonical("exact sums (merged parts)", (unsigned char *) VARDATA(xsum),
					   VARSIZE(xsum) - VARHDRSZ, TribXsumSerialize(&x));
}

int
main(int argc, char **argv)
{
	int			rounds = argc > 1 ? atoi(argv[1]) : 2000;
	long		tried = 0,
				accepted[3] = {0};

	if (argc > 2)
		fuzz_state = strtoull(argv[2], NULL, 10) | 1;
	for (int round = 0; round < rounds; round++)
	{
		/* mostly small; some past the exact cap (sparse registers), a few dense */
		int			n = FuzzRandom() % 3 ? FuzzRandom() % 50 :
			FuzzRandom() % 4 ? FuzzRandom() % 3000 : 6000 + FuzzRandom() % 6000;
		uint64	   *hashes = malloc(sizeof(uint64) * (n + 1));
		double	   *values = malloc(sizeof(double) * (n + 1));
		TribHll    *h = TribHllCreate(NULL);
		TribDds    *d = TribDdsCreate(NULL);
		TribXsum	x;
		bytea	   *sh,
				   *sd,
				   *sx;

		TribXsumInit(&x);
		for (int i = 0; i < n; i++)
		{
			hashes[i] = FuzzHash();
			values[i] = FuzzValue();
			TribHllAdd(h, hashes[i]);
			TribDdsAdd(d, values[i]);
			TribXsumAdd(&x, values[i]);
		}
		sh = TribHllSerialize(h);
		sd = TribDdsSerialize(d);
		sx = TribXsumSerialize(&x);
		if (n > 0)
			FuzzDeterminism(hashes, values, n, sh, sd, sx);
		accepted[0] += FuzzHll(sh, h);
		accepted[1] += FuzzDds(sd, d);
		accepted[2] += FuzzXsum(sx, &x);
		tried += FUZZ_MUTATIONS_PER_FORM;
		free(hashes);
		free(values);
	}
	printf("sketch_fuzz: %d rounds; of %ld mutations per form, accepted: hll %ld, ddsketch %ld, "
		   "exact sums %ld; all canonical, deterministic\n",
		   rounds, tried, accepted[0], accepted[1], accepted[2]);
	return 0;
}
