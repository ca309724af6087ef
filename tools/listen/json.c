/*
 * tools/listen/json.c: the strict JSON reader and the JSON writer of tributary-listen.
 *
 * A recursive-descent checker over the whole text (so a payload is either valid JSON or
 * refused, never half-read) that remembers where the wanted top-level members' values
 * are. Strings are checked for UTF-8 and escapes; only the few strings the client needs
 * (stream, key, op) are decoded.
 */
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct JsonCursor
{
	const char *p;
	const char *end;
	const char *error;
} JsonCursor;

static bool JsonValue(JsonCursor *c, int depth, JsonType *type);

/* Fail with a message, keeping the first one. */
static bool
JsonFail(JsonCursor *c, const char *message)
{
	if (c->error == NULL)
		c->error = message;
	return false;
}

static void
JsonSkipSpace(JsonCursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
		c->p++;
}

static int
HexValue(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Four hex digits at p (which has at least 4 bytes) as a code unit, or -1. */
static long
Hex4(const char *p)
{
	long v = 0;

	for (int i = 0; i < 4; i++)
	{
		int h = HexValue(p[i]);

		if (h < 0)
			return -1;
		v = v * 16 + h;
	}
	return v;
}

/* Length of the well-formed UTF-8 sequence at p (non-ASCII lead byte), or 0. */
static int
Utf8SequenceLength(const unsigned char *p, const unsigned char *end)
{
	int n;
	uint32_t cp;

	if (p[0] >= 0xC2 && p[0] <= 0xDF)
		n = 2, cp = p[0] & 0x1F;
	else if (p[0] >= 0xE0 && p[0] <= 0xEF)
		n = 3, cp = p[0] & 0x0F;
	else if (p[0] >= 0xF0 && p[0] <= 0xF4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (end - p < n)
		return 0;
	for (int i = 1; i < n; i++)
	{
		if ((p[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3F);
	}
	/* overlong forms, surrogates, beyond U+10FFFF */
	if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
		(cp >= 0xD800 && cp <= 0xDFFF))
		return 0;
	return n;
}

/* A string at c->p (at its opening quote): checked, cursor after the closing quote. */
static bool
JsonString(JsonCursor *c)
{
	c->p++; /* the opening quote */
	while (c->p < c->end)
	{
		unsigned char ch = (unsigned char) *c->p;

		if (ch == '"')
		{
			c->p++;
			return true;
		}
		if (ch < 0x20)
			return JsonFail(c, "control character in a string");
		if (ch == '\\')
		{
			if (c->end - c->p < 2)
				break;
			switch (c->p[1])
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					c->p += 2;
					continue;
				case 'u':
				{
					long u;

					if (c->end - c->p < 6 || (u = Hex4(c->p + 2)) < 0)
						return JsonFail(c, "bad \\u escape in a string");
					c->p += 6;
					if (u >= 0xDC00 && u <= 0xDFFF)
						return JsonFail(c, "lone low surrogate in a string");
					if (u >= 0xD800 && u <= 0xDBFF)
					{
						long lo;

						if (c->end - c->p < 6 || c->p[0] != '\\' || c->p[1] != 'u' ||
							(lo = Hex4(c->p + 2)) < 0xDC00 || lo > 0xDFFF)
							return JsonFail(c, "high surrogate without a low one in a string");
						c->p += 6;
					}
					continue;
				}
				default:
					return JsonFail(c, "bad escape in a string");
			}
		}
		if (ch < 0x80)
		{
			c->p++;
			continue;
		}
		{
			int n =
				Utf8SequenceLength((const unsigned char *) c->p, (const unsigned char *) c->end);

			if (n == 0)
				return JsonFail(c, "invalid UTF-8 in a string");
			c->p += n;
		}
	}
	return JsonFail(c, "unterminated string");
}

static bool
IsDigit(char ch)
{
	return ch >= '0' && ch <= '9';
}

/* A number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
JsonNumber(JsonCursor *c)
{
	if (c->p < c->end && *c->p == '-')
		c->p++;
	if (c->p >= c->end || !IsDigit(*c->p))
		return JsonFail(c, "bad number");
	if (*c->p == '0')
		c->p++;
	else
		while (c->p < c->end && IsDigit(*c->p))
			c->p++;
	if (c->p < c->end && *c->p == '.')
	{
		c->p++;
		if (c->p >= c->end || !IsDigit(*c->p))
			return JsonFail(c, "bad number");
		while (c->p < c->end && IsDigit(*c->p))
			c->p++;
	}
	if (c->p < c->end && (*c->p == 'e' || *c->p == 'E'))
	{
		c->p++;
		if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
			c->p++;
		if (c->p >= c->end || !IsDigit(*c->p))
			return JsonFail(c, "bad number");
		while (c->p < c->end && IsDigit(*c->p))
			c->p++;
	}
	return true;
}

static bool
JsonLiteral(JsonCursor *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t) (c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return JsonFail(c, "unexpected character");
	c->p += n;
	return true;
}

/*
 * An object's members after its '{'. With wanted != NULL (the top level), remember the
 * wanted members' values.
 */
static bool
JsonObjectBody(JsonCursor *c, int depth, JsonMember *wanted, int nwanted)
{
	JsonSkipSpace(c);
	if (c->p < c->end && *c->p == '}')
	{
		c->p++;
		return true;
	}
	for (;;)
	{
		const char *name;
		size_t namelen;
		const char *value;
		JsonType type;

		JsonSkipSpace(c);
		if (c->p >= c->end || *c->p != '"')
			return JsonFail(c, "expected a member name");
		name = c->p;
		if (!JsonString(c))
			return false;
		namelen = (size_t) (c->p - name);
		JsonSkipSpace(c);
		if (c->p >= c->end || *c->p != ':')
			return JsonFail(c, "expected ':'");
		c->p++;
		JsonSkipSpace(c);
		value = c->p;
		if (!JsonValue(c, depth + 1, &type))
			return false;
		/* Names the client asks for have no escapes, so a raw compare is exact. */
		for (int i = 0; i < nwanted; i++)
		{
			if (namelen == strlen(wanted[i].name) + 2 &&
				memcmp(name + 1, wanted[i].name, namelen - 2) == 0)
			{
				if (wanted[i].type != JSON_ABSENT)
					return JsonFail(c, "a member appears twice");
				wanted[i].type = type;
				wanted[i].start = value;
				wanted[i].len = (size_t) (c->p - value);
			}
		}
		JsonSkipSpace(c);
		if (c->p < c->end && *c->p == ',')
		{
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == '}')
		{
			c->p++;
			return true;
		}
		return JsonFail(c, "expected ',' or '}'");
	}
}

static bool
JsonArrayBody(JsonCursor *c, int depth)
{
	JsonType type;

	JsonSkipSpace(c);
	if (c->p < c->end && *c->p == ']')
	{
		c->p++;
		return true;
	}
	for (;;)
	{
		JsonSkipSpace(c);
		if (!JsonValue(c, depth + 1, &type))
			return false;
		JsonSkipSpace(c);
		if (c->p < c->end && *c->p == ',')
		{
			c->p++;
			continue;
		}
		if (c->p < c->end && *c->p == ']')
		{
			c->p++;
			return true;
		}
		return JsonFail(c, "expected ',' or ']'");
	}
}

/* Any value at c->p (no leading space). */
static bool
JsonValue(JsonCursor *c, int depth, JsonType *type)
{
	if (depth > JSON_MAX_DEPTH)
		return JsonFail(c, "nested too deeply");
	if (c->p >= c->end)
		return JsonFail(c, "unexpected end");
	switch (*c->p)
	{
		case '{':
			*type = JSON_OBJECT;
			c->p++;
			return JsonObjectBody(c, depth, NULL, 0);
		case '[':
			*type = JSON_ARRAY;
			c->p++;
			return JsonArrayBody(c, depth);
		case '"':
			*type = JSON_STRING;
			return JsonString(c);
		case 't':
			*type = JSON_TRUE;
			return JsonLiteral(c, "true");
		case 'f':
			*type = JSON_FALSE;
			return JsonLiteral(c, "false");
		case 'n':
			*type = JSON_NULL;
			return JsonLiteral(c, "null");
		default:
			*type = JSON_NUMBER;
			return JsonNumber(c);
	}
}

const char *
JsonScanObject(const char *text, size_t len, JsonMember *members, int nmembers)
{
	JsonCursor c = {text, text + len, NULL};

	for (int i = 0; i < nmembers; i++)
	{
		members[i].type = JSON_ABSENT;
		members[i].start = NULL;
		members[i].len = 0;
	}
	JsonSkipSpace(&c);
	if (c.p >= c.end || *c.p != '{')
		return "not a JSON object";
	c.p++;
	if (!JsonObjectBody(&c, 1, members, nmembers))
		return c.error;
	JsonSkipSpace(&c);
	if (c.p != c.end)
		return "text after the object";
	return NULL;
}

/* Append code point cp as UTF-8. */
static void
AppendUtf8(StrBuf *b, uint32_t cp)
{
	char out[4];
	size_t n;

	if (cp < 0x80)
		out[0] = (char) cp, n = 1;
	else if (cp < 0x800)
		out[0] = (char) (0xC0 | (cp >> 6)), out[1] = (char) (0x80 | (cp & 0x3F)), n = 2;
	else if (cp < 0x10000)
		out[0] = (char) (0xE0 | (cp >> 12)), out[1] = (char) (0x80 | ((cp >> 6) & 0x3F)),
		out[2] = (char) (0x80 | (cp & 0x3F)), n = 3;
	else
		out[0] = (char) (0xF0 | (cp >> 18)), out[1] = (char) (0x80 | ((cp >> 12) & 0x3F)),
		out[2] = (char) (0x80 | ((cp >> 6) & 0x3F)), out[3] = (char) (0x80 | (cp & 0x3F)), n = 4;
	StrBufAppend(b, out, n);
}

char *
JsonMemberString(const JsonMember *m)
{
	StrBuf b = {0};
	const char *p;
	const char *end;

	if (m->type != JSON_STRING)
		return NULL;
	/* Already checked by JsonScanObject: only decode. */
	p = m->start + 1;
	end = m->start + m->len - 1;
	StrBufAppend(&b, "", 0);
	while (p < end)
	{
		if (*p != '\\')
		{
			StrBufAppend(&b, p, 1);
			p++;
			continue;
		}
		switch (p[1])
		{
			case 'b':
				StrBufAppend(&b, "\b", 1);
				break;
			case 'f':
				StrBufAppend(&b, "\f", 1);
				break;
			case 'n':
				StrBufAppend(&b, "\n", 1);
				break;
			case 'r':
				StrBufAppend(&b, "\r", 1);
				break;
			case 't':
				StrBufAppend(&b, "\t", 1);
				break;
			case 'u':
			{
				uint32_t cp = (uint32_t) Hex4(p + 2);

				if (cp >= 0xD800 && cp <= 0xDBFF)
				{
					cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t) Hex4(p + 8) - 0xDC00);
					p += 6;
				}
				if (cp == 0)
				{
					/* a C string cannot hold it, and PostgreSQL text never does */
					StrBufFree(&b);
					return NULL;
				}
				AppendUtf8(&b, cp);
				p += 6;
				continue;
			}
			default: /* " \ / */
				StrBufAppend(&b, p + 1, 1);
				break;
		}
		p += 2;
	}
	return b.data;
}

bool
JsonMemberInt64(const JsonMember *m, int64_t *out)
{
	char buf[32];
	char *endp;
	long long v;

	if (m->type != JSON_NUMBER || m->len == 0 || m->len >= sizeof(buf))
		return false;
	memcpy(buf, m->start, m->len);
	buf[m->len] = '\0';
	if (strpbrk(buf, ".eE") != NULL)
		return false;
	errno = 0;
	v = strtoll(buf, &endp, 10);
	if (errno != 0 || *endp != '\0')
		return false;
	*out = (int64_t) v;
	return true;
}

bool
JsonMemberIsTrue(const JsonMember *m)
{
	return m->type == JSON_TRUE;
}

/* ---------------------------------------------------------------------------------- */
/* Output buffer and allocation helpers. */

void *
xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "tributary-listen: out of memory\n");
		exit(1);
	}
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (p == NULL)
	{
		fprintf(stderr, "tributary-listen: out of memory\n");
		exit(1);
	}
	return p;
}

void *
xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);

	if (q == NULL)
	{
		fprintf(stderr, "tributary-listen: out of memory\n");
		exit(1);
	}
	return q;
}

char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

char *
xstrndup(const char *s, size_t n)
{
	char *p = xmalloc(n + 1);

	memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void
StrBufReset(StrBuf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void
StrBufFree(StrBuf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
StrBufAppend(StrBuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap)
	{
		size_t cap = b->cap ? b->cap : 256;

		while (b->len + n + 1 > cap)
			cap *= 2;
		b->data = xrealloc(b->data, cap);
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
StrBufAppendStr(StrBuf *b, const char *s)
{
	StrBufAppend(b, s, strlen(s));
}

void
StrBufAppendInt64(StrBuf *b, int64_t v)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	StrBufAppend(b, buf, (size_t) n);
}

void
StrBufAppendJsonText(StrBuf *b, const char *s, size_t n)
{
	size_t start = b->len;

	StrBufAppend(b, s, n);
	for (size_t i = start; i < b->len; i++)
		if (b->data[i] == '\n' || b->data[i] == '\r')
			b->data[i] = ' ';
}

void
StrBufAppendJsonString(StrBuf *b, const char *s)
{
	const char *run = s;

	StrBufAppend(b, "\"", 1);
	for (; *s; s++)
	{
		unsigned char ch = (unsigned char) *s;
		char esc[8];

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		StrBufAppend(b, run, (size_t) (s - run));
		run = s + 1;
		switch (ch)
		{
			case '"':
				StrBufAppend(b, "\\\"", 2);
				break;
			case '\\':
				StrBufAppend(b, "\\\\", 2);
				break;
			case '\n':
				StrBufAppend(b, "\\n", 2);
				break;
			case '\r':
				StrBufAppend(b, "\\r", 2);
				break;
			case '\t':
				StrBufAppend(b, "\\t", 2);
				break;
			case '\b':
				StrBufAppend(b, "\\b", 2);
				break;
			case '\f':
				StrBufAppend(b, "\\f", 2);
				break;
			default:
				snprintf(esc, sizeof(esc), "\\u%04x", ch);
				StrBufAppend(b, esc, 6);
				break;
		}
	}
	StrBufAppend(b, run, (size_t) (s - run));
	StrBufAppend(b, "\"", 1);
}
