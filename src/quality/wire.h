/*
 * wire.h
 *		The byte layer of the sketches' stored formats: little-endian integers, doubles as
 *		their IEEE bits, canonical varints, and a bounds-checked reader for untrusted bytes.
 *
 * Every stored sketch starts with a format version byte. The writer appends to a StringInfo
 * whose first VARHDRSZ bytes are reserved for the varlena header (TribWireBegin,
 * TribWireFinish), so the result is a bytea without another copy. The reader never reads
 * past its end: a short read marks it failed and returns zeros, and the parser checks
 * TribWireOk once where it matters, so a truncated value is one clear error.
 */
#ifndef TRIBUTARY_QUALITY_WIRE_H
#define TRIBUTARY_QUALITY_WIRE_H

#include "postgres.h"

#include "lib/stringinfo.h"

/* Start a stored value: room for the varlena header, then the bytes. */
static inline void
TribWireBegin(StringInfo buf)
{
	initStringInfo(buf);
	appendStringInfoSpaces(buf, VARHDRSZ);
}

/* The bytes written since TribWireBegin as a bytea (the buffer itself, not a copy). */
static inline bytea *
TribWireFinish(StringInfo buf)
{
	bytea	   *result = (bytea *) buf->data;

	SET_VARSIZE(result, buf->len);
	return result;
}

/* One byte. */
static inline void
TribWirePutU8(StringInfo buf, uint8 v)
{
	appendStringInfoCharMacro(buf, (char) v);
}

/* Four bytes, least significant first. */
static inline void
TribWirePutU32(StringInfo buf, uint32 v)
{
	char		b[4];

	for (int i = 0; i < 4; i++)
		b[i] = (char) (v >> (8 * i));
	appendBinaryStringInfo(buf, b, 4);
}

/* Eight bytes, least significant first. */
static inline void
TribWirePutU64(StringInfo buf, uint64 v)
{
	char		b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (char) (v >> (8 * i));
	appendBinaryStringInfo(buf, b, 8);
}

/* n eight-byte integers, each least significant byte first, in one append. */
static inline void
TribWirePutU64Array(StringInfo buf, const uint64 *v, int n)
{
	char	   *p;

	enlargeStringInfo(buf, 8 * n);
	p = buf->data + buf->len;
#ifdef WORDS_BIGENDIAN
	for (int i = 0; i < n; i++)
		for (int b = 0; b < 8; b++)
			p[8 * i + b] = (char) (v[i] >> (8 * b));
#else
	memcpy(p, v, 8 * (Size) n);
#endif
	buf->len += 8 * n;
	buf->data[buf->len] = '\0';
}

/* A double as its IEEE 754 bits (exact: no text rounding, -0 and NaN payloads kept). */
static inline void
TribWirePutDouble(StringInfo buf, double v)
{
	uint64		bits;

	memcpy(&bits, &v, sizeof(bits));
	TribWirePutU64(buf, bits);
}

/* An unsigned integer in 7-bit groups, low group first (LEB128), shortest form only. */
static inline void
TribWirePutVarint(StringInfo buf, uint64 v)
{
	while (v >= 0x80)
	{
		TribWirePutU8(buf, (uint8) (v | 0x80));
		v >>= 7;
	}
	TribWirePutU8(buf, (uint8) v);
}

/* Reading untrusted bytes: where we are, where they end, and whether a read fell short. */
typedef struct TribWireReader
{
	const uint8 *p;
	const uint8 *end;
	bool		ok;
} TribWireReader;

/* Read the bytes data[0..len). */
static inline void
TribWireReaderInit(TribWireReader *r, const char *data, Size len)
{
	r->p = (const uint8 *) data;
	r->end = r->p + len;
	r->ok = true;
}

/* Whether every read so far was complete and well formed. */
static inline bool
TribWireOk(const TribWireReader *r)
{
	return r->ok;
}

/* Bytes not read yet. */
static inline Size
TribWireRemaining(const TribWireReader *r)
{
	return r->end - r->p;
}

/* Take n bytes, or mark the reader failed when fewer are left; NULL then. */
static inline const uint8 *
TribWireTake(TribWireReader *r, Size n)
{
	const uint8 *p = r->p;

	if (!r->ok || TribWireRemaining(r) < n)
	{
		r->ok = false;
		return NULL;
	}
	r->p += n;
	return p;
}

/* One byte (0 after a failure). */
static inline uint8
TribWireGetU8(TribWireReader *r)
{
	const uint8 *p = TribWireTake(r, 1);

	return p ? p[0] : 0;
}

/* Four bytes, least significant first. */
static inline uint32
TribWireGetU32(TribWireReader *r)
{
	const uint8 *p = TribWireTake(r, 4);
	uint32		v = 0;

	if (p)
		for (int i = 0; i < 4; i++)
			v |= (uint32) p[i] << (8 * i);
	return v;
}

/* Eight bytes, least significant first. */
static inline uint64
TribWireGetU64(TribWireReader *r)
{
	const uint8 *p = TribWireTake(r, 8);
	uint64		v = 0;

	if (p)
		for (int i = 0; i < 8; i++)
			v |= (uint64) p[i] << (8 * i);
	return v;
}

/* Eight bytes at p, least significant first (p from TribWireTake). */
static inline uint64
TribWireLoadU64(const uint8 *p)
{
	uint64		v = 0;

#ifdef WORDS_BIGENDIAN
	for (int i = 0; i < 8; i++)
		v |= (uint64) p[i] << (8 * i);
#else
	memcpy(&v, p, 8);
#endif
	return v;
}

/* A double from its IEEE 754 bits. */
static inline double
TribWireGetDouble(TribWireReader *r)
{
	uint64		bits = TribWireGetU64(r);
	double		v;

	memcpy(&v, &bits, sizeof(v));
	return v;
}

/*
 * A varint as TribWirePutVarint writes it. Anything else (more than 64 bits, a redundant
 * trailing zero group) fails the reader: a value has exactly one encoding.
 */
static inline uint64
TribWireGetVarint(TribWireReader *r)
{
	uint64		v = 0;

	for (int shift = 0; shift < 64; shift += 7)
	{
		uint8		b = TribWireGetU8(r);

		if (!r->ok)
			return 0;
		if (shift == 63 && b > 1)
			break;
		v |= (uint64) (b & 0x7f) << shift;
		if ((b & 0x80) == 0)
		{
			if (b == 0 && shift > 0)
				break;
			return v;
		}
	}
	r->ok = false;
	return 0;
}

#endif							/* TRIBUTARY_QUALITY_WIRE_H */
