/*
 * datumhash.c
 *		64-bit hashes of values of any type: the type's extended hash function, or its
 *		output text when it has none; see datumhash.h.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "common/hashfn.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "quality/datumhash.h"

/* One type cache look-up per hasher, so the per-value path is a single function call. */
void
TribDatumHasherInit(TribDatumHasher *hasher, Oid typid, Oid collation, MemoryContext cxt)
{
	TypeCacheEntry *entry = lookup_type_cache(typid, TYPECACHE_HASH_EXTENDED_PROC_FINFO);

	hasher->typid = typid;
	if (!type_is_collatable(typid))
		hasher->collation = InvalidOid;
	else
		hasher->collation = OidIsValid(collation) ? collation : DEFAULT_COLLATION_OID;
	hasher->extended = OidIsValid(entry->hash_extended_proc);
	if (hasher->extended)
		fmgr_info_copy(&hasher->fn, &entry->hash_extended_proc_finfo, cxt);
	else
	{
		Oid			output;
		bool		isvarlena;

		getTypeOutputInfo(typid, &output, &isvarlena);
		fmgr_info_cxt(output, &hasher->fn, cxt);
	}
}

/* Hash one value; the caller skips nulls. */
uint64
TribHashDatum(TribDatumHasher *hasher, Datum value)
{
	uint64		hash;

	if (hasher->extended)
		hash = DatumGetUInt64(FunctionCall2Coll(&hasher->fn, hasher->collation,
												value, UInt64GetDatum(0)));
	else
	{
		char	   *text = OutputFunctionCall(&hasher->fn, value);

		hash = hash_bytes_extended((const unsigned char *) text, strlen(text), 0);
		pfree(text);
	}
	return TribHashMix64(hash);
}
