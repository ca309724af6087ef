/*
 * resp_fuzz.c
 *		Fuzzing of the Redis source's reply scanner and walker (src/sources/redis_resp.c)
 *		outside the server (make fuzz-resp; not part of make test).
 *
 * The scanner reads bytes a redis-server sent into a PostgreSQL backend, so it must never
 * read past them, whatever they are. Each round builds a random RESP2 reply (arrays nested
 * up to the scanner's depth, bulk strings holding CR, LF and the protocol's own bytes, nils,
 * statuses, errors, integers) and checks that:
 *  - scanned whole, or fed in random pieces as a socket hands them out, the scanner finds
 *    its end exactly (and not before: every strict prefix needs more bytes);
 *  - the walker (TribRespNext, TribRespSkip) then gives back every element as it was built;
 *  - arrays nested deeper than TRIB_RESP_MAX_DEPTH are refused;
 *  - mutated (bytes flipped, replaced, inserted, deleted, the reply cut short), the bytes
 *    are refused, found to need more, or accepted as a reply that the walker reads to its
 *    end without leaving it.
 * Each buffer is allocated to its exact size and built with AddressSanitizer, so a read
 * past it aborts.
 *
 * Usage: resp_fuzz [rounds [seed]]
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

#include "sources/redis_internal.h"

#include "fuzz_random.h"

#define FUZZ_MUTATIONS 40


static int
FuzzBelow(int n)
{
	return (int) (FuzzRandom() % (uint64) n);
}

static void
Fail(const char *what, long round)
{
	fprintf(stderr, "resp_fuzz: round %ld: %s\n", round, what);
	exit(1);
}

/* A growing byte buffer. */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

static void
Put(Buf *b, const void *bytes, size_t n)
{
	if (b->len + n > b->cap)
	{
		b->cap = Max(b->cap * 2, b->len + n + 64);
		b->data = realloc(b->data, b->cap);
		if (b->data == NULL)
			abort();
	}
	memcpy(b->data + b->len, bytes, n);
	b->len += n;
}

static void
PutText(Buf *b, const char *text)
{
	Put(b, text, strlen(text));
}

/* What the builder wrote, element by element in walking order, to check the walker. */
typedef struct Expect
{
	TribRespType type;
	size_t		len;			/* STRING, STATUS, ERROR */
	size_t		offset;			/* where its bytes start in the reply */
	int64		n;				/* ARRAY: elements; INTEGER: value */
} Expect;

static Expect expect[100000];
static int	nexpect;
static int	nesting;			/* the deepest arrays built go */
static bool deep;				/* this round: arrays down to the depth asked for */

/* A random reply element of at most depth levels of arrays below it, level deep itself. */
static void
Build(Buf *b, int depth, int level)
{
	char		header[64];
	Expect	   *e = &expect[nexpect < (int) lengthof(expect) - 1 ? nexpect++ : nexpect];
	int			kind = FuzzBelow(depth > 0 && nexpect < 3000 ? 10 : 7);

	if (deep && depth > 0)
		kind = 9;

	memset(e, 0, sizeof(*e));
	switch (kind)
	{
		case 0:
		case 1:
		case 2:
		case 3:
			{
				/* a bulk string: often short, sometimes long, with any bytes */
				size_t		len = FuzzBelow(8) == 0 ? (size_t) FuzzBelow(5000) : (size_t) FuzzBelow(20);

				e->type = TRIB_RESP_STRING;
				e->len = len;
				snprintf(header, sizeof(header), "$%zu\r\n", len);
				PutText(b, header);
				e->offset = b->len;
				for (size_t i = 0; i < len; i++)
				{
					static const char special[] = "\r\n$*:+-0123456789";
					char		c = FuzzBelow(3) == 0 ? special[FuzzBelow(sizeof(special) - 1)] :
						(char) FuzzBelow(256);

					Put(b, &c, 1);
				}
				PutText(b, "\r\n");
				break;
			}
		case 4:
			e->type = TRIB_RESP_NIL;
			PutText(b, FuzzBelow(2) ? "$-1\r\n" : "*-1\r\n");
			break;
		case 5:
			{
				e->type = FuzzBelow(2) ? TRIB_RESP_STATUS : TRIB_RESP_ERROR;
				PutText(b, e->type == TRIB_RESP_STATUS ? "+" : "-");
				e->offset = b->len;
				PutText(b, e->type == TRIB_RESP_STATUS ? "OK" : "NOGROUP No such key or consumer group");
				e->len = b->len - e->offset;
				PutText(b, "\r\n");
				break;
			}
		case 6:
			e->type = TRIB_RESP_INTEGER;
			e->n = (int64) (FuzzRandom() % 2000000) - 1000000;
			snprintf(header, sizeof(header), ":%lld\r\n", (long long) e->n);
			PutText(b, header);
			break;
		default:
			{
				int			n = deep ? 1 + FuzzBelow(2) : FuzzBelow(6) == 0 ? 0 : FuzzBelow(6);

				e->type = TRIB_RESP_ARRAY;
				e->n = n;
				if (n > 0)
					nesting = Max(nesting, level + 1);
				snprintf(header, sizeof(header), "*%d\r\n", n);
				PutText(b, header);
				for (int i = 0; i < n; i++)
					Build(b, depth - 1, level + 1);
			}
	}
}

/* Scan bytes fed in random pieces; returns the scanner's last answer. */
static int
ScanInPieces(const char *bytes, size_t len, TribRespScanState *s)
{
	size_t		fed = 0;
	int			r = 0;

	memset(s, 0, sizeof(*s));
	while (fed < len)
	{
		size_t		piece = 1 + (size_t) FuzzBelow(FuzzBelow(4) == 0 ? 3 : 700);

		fed = Min(len, fed + piece);
		r = TribRespScan(s, bytes, fed);
		if (r != 0)
			return r;
	}
	return r;
}

/* An exactly sized copy, so AddressSanitizer catches a read past it. */
static char *
Exact(const char *bytes, size_t len)
{
	char	   *copy = malloc(len > 0 ? len : 1);

	if (copy == NULL)
		abort();
	memcpy(copy, bytes, len);
	return copy;
}

/* Walk a scanned reply of len bytes: every element, never past its end. */
static void
WalkAll(char *data, size_t len, long round)
{
	TribResp	resp = {data, len, data};

	TribRespSkip(&resp);
	if (resp.cur != data + len)
		Fail("the walker did not end where the scanner did", round);
}

int
main(int argc, char **argv)
{
	long		rounds = argc > 1 ? atol(argv[1]) : 20000;
	uint64		seed = argc > 2 ? strtoull(argv[2], NULL, 10) : 1;
	long		accepted = 0,
				refused = 0,
				short_ = 0;

	fuzz_state ^= seed * UINT64CONST(0x9E3779B97F4A7C15);
	if (fuzz_state == 0)
		fuzz_state = 1;
	for (long round = 0; round < rounds; round++)
	{
		Buf			b = {0};
		char	   *reply;
		TribRespScanState s;
		TribResp	resp;
		int			r;

		nexpect = 0;
		nesting = 0;
		deep = FuzzBelow(4) == 0;
		Build(&b, FuzzBelow(TRIB_RESP_MAX_DEPTH + 3), 0);

		/* nested deeper than the scanner follows: refused, whole and in pieces */
		reply = Exact(b.data, b.len);
		if (nesting > TRIB_RESP_MAX_DEPTH)
		{
			memset(&s, 0, sizeof(s));
			if (TribRespScan(&s, reply, b.len) != -1 || ScanInPieces(reply, b.len, &s) != -1)
				Fail("a reply nested too deep was not refused", round);
			free(reply);
			free(b.data);
			continue;
		}

		/* whole, then in pieces: the end exactly */
		memset(&s, 0, sizeof(s));
		if (TribRespScan(&s, reply, b.len) != 1 || s.pos != b.len)
			Fail("a whole reply was not scanned to its end", round);
		if (ScanInPieces(reply, b.len, &s) != 1 || s.pos != b.len)
			Fail("a reply fed in pieces was not scanned to its end", round);
		{
			size_t		cut = (size_t) FuzzBelow((int) b.len);
			char	   *prefix = Exact(b.data, cut);

			memset(&s, 0, sizeof(s));
			if (TribRespScan(&s, prefix, cut) != 0)
				Fail("a strict prefix of a reply was not found to need more", round);
			free(prefix);
		}

		/* the walker gives back every element as built */
		resp.data = reply;
		resp.len = b.len;
		resp.cur = reply;
		for (int i = 0; i < nexpect; i++)
		{
			TribRespItem item;

			TribRespNext(&resp, &item);
			if (item.type != expect[i].type)
				Fail("the walker read another type than was built", round);
			if ((item.type == TRIB_RESP_ARRAY || item.type == TRIB_RESP_INTEGER) && item.n != expect[i].n)
				Fail("the walker read another count or integer than was built", round);
			if (item.type == TRIB_RESP_STRING || item.type == TRIB_RESP_STATUS || item.type == TRIB_RESP_ERROR)
			{
				if (item.len != expect[i].len || item.str != reply + expect[i].offset ||
					memcmp(item.str, b.data + expect[i].offset, item.len) != 0 || item.str[item.len] != '\0')
					Fail("the walker read another string than was built", round);
			}
		}
		if (resp.cur != reply + b.len)
			Fail("the walker did not end at the reply's end", round);
		free(reply);

		/* mutated: refused, short, or a reply the walker stays within */
		for (int m = 0; m < FUZZ_MUTATIONS; m++)
		{
			Buf			x = {0};
			size_t		at = b.len > 0 ? (size_t) FuzzBelow((int) b.len) : 0;
			char		c = (char) FuzzBelow(256);
			char	   *bytes;

			Put(&x, b.data, b.len);
			switch (FuzzBelow(5))
			{
				case 0:
					x.data[at] ^= (char) (1 << FuzzBelow(8));
					break;
				case 1:
					x.data[at] = "\r\n$*:+-019"[FuzzBelow(10)];
					break;
				case 2:
					x.len = at;
					Put(&x, &c, 1);
					Put(&x, b.data + at, b.len - at);
					break;
				case 3:
					memmove(x.data + at, x.data + at + 1, x.len - at - 1);
					x.len--;
					break;
				default:
					x.len = at;
			}
			bytes = Exact(x.data, x.len);
			r = ScanInPieces(bytes, x.len, &s);
			if (r == 1)
			{
				if (s.pos > x.len)
					Fail("the scanner ended past the bytes", round);
				WalkAll(bytes, s.pos, round);
				accepted++;
			}
			else if (r < 0)
				refused++;
			else
				short_++;
			free(bytes);
			free(x.data);
		}
		free(b.data);
	}
	printf("resp_fuzz: %ld rounds, seed %llu: every reply scanned and walked as built; "
		   "mutations accepted %ld, refused %ld, found short %ld\n",
		   rounds, (unsigned long long) seed, accepted, refused, short_);
	return 0;
}
