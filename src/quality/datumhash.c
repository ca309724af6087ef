/*
 * datumhash.c
 *		64-bit hashes of values of any type: the type's extended hash function, or its
 *		output text when it has none; see datumhash.h.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "utils/float.h"
#include "common/hashfn.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "quality/datumhash.h"

/*
 * Types whose equality is equality of their 64-bit value (or of their bytes), hashed
 * without a function call: the common column types, per value in every window.
 */
static TribDatumHashKind
TribDatumHashKindOf(Oid typid, Oid collation)
{
	switch (typid)
	{
		case BOOLOID:
		case CHAROID:
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
		case DATEOID:
		case TIMEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			return TRIB_HASH_INT;
		case FLOAT4OID:
			return TRIB_HASH_FLOAT4;
		case FLOAT8OID:
			return TRIB_HASH_FLOAT8;
		case BYTEAOID:
			return TRIB_HASH_BYTES;
		case TEXTOID:
		case VARCHAROID:
			/* equal under a deterministic collation means equal bytes */
			if (get_collation_isdeterministic(collation))
				return TRIB_HASH_BYTES;
			return TRIB_HASH_EXTENDED;
		default:
			return TRIB_HASH_EXTENDED;
	}
}

/* One type cache look-up per hasher, so the per-value path is a single function call. */
void
TribDatumHasherInit(TribDatumHasher *hasher, Oid typid, Oid collation, MemoryContext cxt)
{
	TypeCacheEntry *entry;

	hasher->typid = typid;
	if (!type_is_collatable(typid))
		hasher->collation = InvalidOid;
	else
		hasher->collation = OidIsValid(collation) ? collation : DEFAULT_COLLATION_OID;
	hasher->kind = TribDatumHashKindOf(typid, hasher->collation);
	if (hasher->kind != TRIB_HASH_EXTENDED)
		return;
	entry = lookup_type_cache(typid, TYPECACHE_HASH_EXTENDED_PROC_FINFO);
	if (OidIsValid(entry->hash_extended_proc))
		fmgr_info_copy(&hasher->fn, &entry->hash_extended_proc_finfo, cxt);
	else
	{
		Oid			output;
		bool		isvarlena;

		hasher->kind = TRIB_HASH_OUTPUT;
		getTypeOutputInfo(typid, &output, &isvarlena);
		fmgr_info_cxt(output, &hasher->fn, cxt);
	}
}

/*
 * A fast 64-bit hash of bytes: 8 bytes at a time folded by multiply and rotate, the length
 * mixed in, then TribHashMix64 (by the caller) spreads every input bit over all 64.
 */
static inline uint64
TribRotl64(uint64 x, int r)
{
	return (x << r) | (x >> (64 - r));
}

/*
 * The last 1..7 bytes of a value as memcpy would put them in a zeroed uint64. On a
 * little-endian machine two overlapping loads do it without a call: the bytes at the same
 * place are the same bytes, so or-ing them is exact.
 */
static inline uint64
TribTailBytes(const unsigned char *p, Size r)
{
	uint64		k = 0;

#ifndef WORDS_BIGENDIAN
	if (r >= 4)
	{
		uint32		lo;
		uint32		hi;

		memcpy(&lo, p, 4);
		memcpy(&hi, p + r - 4, 4);
		k = (uint64) lo | (uint64) hi << (8 * (r - 4));
	}
	else
		k = (uint64) p[0] | (uint64) p[r / 2] << (8 * (r / 2)) | (uint64) p[r - 1] << (8 * (r - 1));
#else
	memcpy(&k, p, r);
#endif
	return k;
}

uint64
TribHashBytes(const unsigned char *p, Size len)
{
	uint64		h = UINT64CONST(0x9e3779b97f4a7c15) ^ (uint64) len;
	Size		i = 0;

	for (; i + 8 <= len; i += 8)
	{
		uint64		k;

		memcpy(&k, p + i, 8);
		h = TribRotl64(h ^ (k * UINT64CONST(0x87c37b91114253d5)), 29) * UINT64CONST(0x4cf5ad432745937f);
	}
	if (i < len)
	{
		uint64		k = TribTailBytes(p + i, len - i);

		h = TribRotl64(h ^ (k * UINT64CONST(0x87c37b91114253d5)), 29) * UINT64CONST(0x4cf5ad432745937f);
	}
	return h;
}

/* Hash one value; the caller skips nulls. */
uint64
TribHashDatumSlow(TribDatumHasher *hasher, Datum value)
{
	uint64		hash;

	switch (hasher->kind)
	{
		case TRIB_HASH_INT:
			/* by-value types of at most 8 bytes: the Datum is the value */
			hash = (uint64) value;
			break;
		case TRIB_HASH_FLOAT4:
		case TRIB_HASH_FLOAT8:
			{
				double		d = hasher->kind == TRIB_HASH_FLOAT4 ?
					(double) DatumGetFloat4(value) : DatumGetFloat8(value);
				uint64		bits;

				if (d == 0.0)
					d = 0.0;	/* -0 equals 0 */
				else if (isnan(d))
					d = get_float8_nan();
				memcpy(&bits, &d, sizeof(bits));
				hash = bits;
			}
			break;
		case TRIB_HASH_BYTES:
			{
				struct varlena *v = PG_DETOAST_DATUM_PACKED(value);

				hash = TribHashBytes((const unsigned char *) VARDATA_ANY(v), VARSIZE_ANY_EXHDR(v));
				if ((Pointer) v != DatumGetPointer(value))
					pfree(v);
			}
			break;
		case TRIB_HASH_EXTENDED:
			hash = DatumGetUInt64(FunctionCall2Coll(&hasher->fn, hasher->collation,
													value, UInt64GetDatum(0)));
			break;
		case TRIB_HASH_OUTPUT:
		default:
			{
				char	   *text = OutputFunctionCall(&hasher->fn, value);

				hash = TribHashBytes((const unsigned char *) text, strlen(text));
				pfree(text);
			}
			break;
	}
	return TribHashMix64(hash);
}
