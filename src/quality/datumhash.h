/*
 * datumhash.h
 *		64-bit hashes of values of any type, for the distinct-count sketch (hll.h).
 *
 * A value is hashed with its type's extended hash function (the hash opclass's support
 * function 2, as hash joins and hash partitioning use it) with seed 0 and the given
 * collation, so values the type calls equal hash equal (1.0 and 1.00 as numeric; 'a' and
 * 'A' under a case-insensitive collation). Types without one (json, xml, point, ...) hash
 * the text of their output function with hash_bytes_extended; that text may depend on
 * settings for a few types (extra_float_digits <= 0 rounds the geometric types' floats),
 * so such columns count the same only under the same settings. Either way the result goes
 * through murmur3's 64-bit finalizer (TribHashMix64): several extended hash functions fold
 * their input to 32 bits first, and the sketch needs all 64 bits well mixed.
 *
 * The hash is stable for a given type, collation and server build (PostgreSQL's hash
 * functions are the same on every platform), which is what lets sketches built by a
 * stream's worker and by a query over the same rows agree.
 */
#ifndef TRIBUTARY_QUALITY_DATUMHASH_H
#define TRIBUTARY_QUALITY_DATUMHASH_H

#include "postgres.h"

#include "fmgr.h"

/* How a hasher hashes: the direct ways first (see TribHashDatum), then through fmgr. */
typedef enum TribDatumHashKind
{
	TRIB_HASH_INT,				/* integers, dates, times: the 64-bit value */
	TRIB_HASH_FLOAT4,			/* the value as a double, as float8 hashes it */
	TRIB_HASH_FLOAT8,			/* -0 as 0, every NaN as one NaN, then the bits */
	TRIB_HASH_BYTES,			/* text and varchar under a deterministic collation, bytea */
	TRIB_HASH_EXTENDED,			/* the type's extended hash function */
	TRIB_HASH_OUTPUT			/* the type's output text */
} TribDatumHashKind;

/* How to hash values of one type; set up once (TribDatumHasherInit), used per value. */
typedef struct TribDatumHasher
{
	Oid			typid;
	TribDatumHashKind kind;
	Oid			collation;		/* InvalidOid for types that are not collatable */
	FmgrInfo	fn;
} TribDatumHasher;

/*
 * Look up how to hash typid under collation (the aggregate's input collation; the
 * database's default when a collatable type comes without one). fn's memory is in cxt.
 */
extern void TribDatumHasherInit(TribDatumHasher *hasher, Oid typid, Oid collation,
								MemoryContext cxt);

/* murmur3's fmix64: every input bit affects every output bit (a bijection; 0 stays 0). */
static inline uint64
TribHashMix64(uint64 h)
{
	h ^= h >> 33;
	h *= UINT64CONST(0xff51afd7ed558ccd);
	h ^= h >> 33;
	h *= UINT64CONST(0xc4ceb9fe1a85ec53);
	h ^= h >> 33;
	return h;
}

/* The bytes hash of TRIB_HASH_BYTES, before TribHashMix64. */
extern uint64 TribHashBytes(const unsigned char *p, Size len);

/* TribHashDatum for every value (the inline part below takes the common ones). */
extern uint64 TribHashDatumSlow(TribDatumHasher *hasher, Datum value);

/*
 * The 64-bit hash of a non-null value of the hasher's type (fn may cache in fn_extra).
 * Inline for the kinds every row of a table read hashes: integers, finite and infinite
 * doubles, and bytes that are not compressed or out of line.
 */
static inline uint64
TribHashDatum(TribDatumHasher *hasher, Datum value)
{
	if (hasher->kind == TRIB_HASH_INT)
		return TribHashMix64((uint64) value);
	if (hasher->kind == TRIB_HASH_BYTES)
	{
		struct varlena *v = (struct varlena *) DatumGetPointer(value);

		if (!VARATT_IS_EXTERNAL(v) && !VARATT_IS_COMPRESSED(v))
			return TribHashMix64(TribHashBytes((const unsigned char *) VARDATA_ANY(v),
											   VARSIZE_ANY_EXHDR(v)));
	}
	else if (hasher->kind == TRIB_HASH_FLOAT8)
	{
		double		d = DatumGetFloat8(value);
		uint64		bits;

		/* NaN goes the slow way, to its one canonical NaN */
		if (d == d)
		{
			if (d == 0.0)
				d = 0.0;		/* -0 equals 0 */
			memcpy(&bits, &d, sizeof(bits));
			return TribHashMix64(bits);
		}
	}
	return TribHashDatumSlow(hasher, value);
}

#endif							/* TRIBUTARY_QUALITY_DATUMHASH_H */
