/*
 * redis_resp.c
 *		A Redis reply held whole in memory and read in place: the Redis source reads its
 *		XREADGROUP replies, which carry a batch, this way rather than through hiredis's
 *		reader.
 *
 * Why. hiredis's reader makes an object per element of a reply and copies every string
 * into it: for a batch of 10000 entries of five field-value pairs, some 130000 objects,
 * which were a third of a worker's time (bench/RESULTS.md). Here the reply's bytes are
 * read into one buffer (redis_conn.c, TribRedisReadWhole), TribRespScan finds where the
 * reply ends, and the source walks it with TribRespNext: a string is handed out as a
 * pointer into the buffer, made NUL-terminated by overwriting the '\r' that follows it,
 * so nothing is copied and nothing is allocated per element. Messages point into the
 * buffer until their batch is released.
 *
 * The protocol is RESP2, what a connection speaks unless it asks for RESP3 (tributary does
 * not): "+text\r\n" status, "-text\r\n" error, ":n\r\n" integer, "$n\r\n<n bytes>\r\n"
 * bulk string ("$-1\r\n": nil), "*n\r\n" followed by n elements ("*-1\r\n": nil).
 * TribRespScan checks all of it, so TribRespNext, which only ever walks a scanned reply,
 * cannot run past the buffer.
 */
#include "postgres.h"

#include "sources/redis_internal.h"

/*
 * A header line's integer ("*n", "$n", ":n"), from p to the '\r' before eol; false when it
 * is not one (or is beyond what a reply can hold).
 */
static bool
TribRespInteger(const char *p, const char *eol, int64 *value)
{
	bool		negative = false;
	int64		v = 0;

	if (p < eol && *p == '-')
	{
		negative = true;
		p++;
	}
	if (p >= eol - 1 || eol - 1 - p > 18)	/* no digits, or too many (the '\r' at eol - 1) */
		return false;
	for (; p < eol - 1; p++)
	{
		if (*p < '0' || *p > '9')
			return false;
		v = v * 10 + (*p - '0');
	}
	*value = negative ? -v : v;
	return true;
}

/*
 * Scan len bytes of buf on from where s left off. Returns 1 when a whole reply has been
 * seen (it ends at s->pos), 0 when more bytes are needed (call again with them, the same
 * s), -1 when the bytes are no RESP2 reply (or nest deeper than TRIB_RESP_MAX_DEPTH).
 */
int
TribRespScan(TribRespScanState *s, const char *buf, size_t len)
{
	while (!(s->started && s->depth == 0))
	{
		const char *p = buf + s->pos;
		const char *eol;
		int64		n = 0;
		size_t		end;

		if (s->pos >= len)
			return 0;
		eol = memchr(p, '\n', len - s->pos);
		if (eol == NULL)
			return 0;
		if (eol == p || eol[-1] != '\r')
			return -1;
		end = (size_t) (eol - buf) + 1;
		switch (*p)
		{
			case '+':
			case '-':
				break;
			case ':':
				if (!TribRespInteger(p + 1, eol, &n))
					return -1;
				break;
			case '$':
				if (!TribRespInteger(p + 1, eol, &n) || n < -1)
					return -1;
				if (n >= 0)
				{
					if (len - end < (size_t) n + 2)
						return 0;	/* its bytes are still to come: the header again then */
					if (buf[end + n] != '\r' || buf[end + n + 1] != '\n')
						return -1;
					end += (size_t) n + 2;
				}
				break;
			case '*':
				if (!TribRespInteger(p + 1, eol, &n) || n < -1)
					return -1;
				break;
			default:
				return -1;
		}
		/* one element of the array open at the deepest level is done */
		s->pos = end;
		s->started = true;
		if (s->depth > 0)
			s->left[s->depth - 1]--;
		if (*p == '*' && n > 0)
		{
			if (s->depth == TRIB_RESP_MAX_DEPTH)
				return -1;
			s->left[s->depth++] = n;
		}
		while (s->depth > 0 && s->left[s->depth - 1] == 0)
			s->depth--;
	}
	return 1;
}

/*
 * The next element of a scanned reply, at resp->cur, into item; an array's elements follow
 * it (TribRespNext each, or TribRespSkip the whole array). A string is made NUL-terminated
 * in place.
 */
void
TribRespNext(TribResp *resp, TribRespItem *item)
{
	char	   *p = resp->cur;
	char	   *eol = memchr(p, '\n', resp->data + resp->len - p);
	int64		n = 0;

	Assert(eol != NULL && p < resp->data + resp->len);
	memset(item, 0, sizeof(*item));
	resp->cur = eol + 1;
	switch (*p)
	{
		case '+':
		case '-':
			item->type = *p == '+' ? TRIB_RESP_STATUS : TRIB_RESP_ERROR;
			item->str = p + 1;
			item->len = (size_t) (eol - 1 - item->str);
			eol[-1] = '\0';
			break;
		case ':':
			(void) TribRespInteger(p + 1, eol, &n);
			item->type = TRIB_RESP_INTEGER;
			item->n = n;
			break;
		case '$':
			(void) TribRespInteger(p + 1, eol, &n);
			if (n < 0)
			{
				item->type = TRIB_RESP_NIL;
				break;
			}
			item->type = TRIB_RESP_STRING;
			item->str = eol + 1;
			item->len = (size_t) n;
			item->str[n] = '\0';	/* over the '\r' that ends it */
			resp->cur = item->str + n + 2;
			break;
		case '*':
			(void) TribRespInteger(p + 1, eol, &n);
			item->type = n < 0 ? TRIB_RESP_NIL : TRIB_RESP_ARRAY;
			item->n = Max(n, 0);
			break;
		default:
			Assert(false);		/* TribRespScan saw the reply */
	}
}

/* Skip the next element of a scanned reply, an array with all it holds. */
void
TribRespSkip(TribResp *resp)
{
	TribRespItem item;

	TribRespNext(resp, &item);
	for (int64 i = 0; item.type == TRIB_RESP_ARRAY && i < item.n; i++)
		TribRespSkip(resp);
}
