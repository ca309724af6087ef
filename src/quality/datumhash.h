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

/* The 64-bit hash of a non-null value of the hasher's type (fn may cache in fn_extra). */
extern uint64 TribHashDatum(TribDatumHasher *hasher, Datum value);

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

#endif							/* TRIBUTARY_QUALITY_DATUMHASH_H */
