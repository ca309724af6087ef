/*
 * hll_sql.c
 *		SQL surface of the distinct-count sketch: the type tributary.hll (its stored form,
 *		hll.h, as a varlena), the aggregates approx_distinct, hll_agg and hll_merge, and
 *		hll_count.
 *
 * The aggregates' state is a TribHll in the aggregate's memory context; how to hash the
 * input type is looked up once per query and kept in the transition function's fn_extra.
 * Partial states travel between parallel workers in the stored form.
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"

#include "quality/datumhash.h"
#include "quality/hll.h"
#include "quality/sqlutil.h"

PG_FUNCTION_INFO_V1(tributary_hll_in);
PG_FUNCTION_INFO_V1(tributary_hll_out);
PG_FUNCTION_INFO_V1(tributary_hll_recv);
PG_FUNCTION_INFO_V1(tributary_hll_send);
PG_FUNCTION_INFO_V1(tributary_hll_count);
PG_FUNCTION_INFO_V1(tributary_hll_trans);
PG_FUNCTION_INFO_V1(tributary_hll_merge_trans);
PG_FUNCTION_INFO_V1(tributary_hll_combine);
PG_FUNCTION_INFO_V1(tributary_hll_serialize);
PG_FUNCTION_INFO_V1(tributary_hll_deserialize);
PG_FUNCTION_INFO_V1(tributary_hll_final);
PG_FUNCTION_INFO_V1(tributary_hll_final_count);

/* A value of type tributary.hll read as a sketch in the current memory context. */
static TribHll *
HllFromValue(const bytea *value)
{
	return TribHllDeserialize(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
							  CurrentMemoryContext);
}

/* Stored bytes become a tributary.hll only when they are a valid sketch. */
static bytea *
HllCheckValue(bytea *value)
{
	TribHll    *hll = HllFromValue(value);

	TribHllReset(hll);
	pfree(hll);
	return value;
}

/* The estimate as the bigint the SQL functions return (saturated registers: the largest). */
static int64
HllCount(const TribHll *hll)
{
	double		estimate = TribHllEstimate(hll);

	if (!(estimate < (double) PG_INT64_MAX))
		return PG_INT64_MAX;
	return (int64) llround(estimate);
}

/* Text input: the stored bytes in hex, checked. */
Datum
tributary_hll_in(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(HllCheckValue(TribSketchTextIn(PG_GETARG_CSTRING(0), "tributary.hll")));
}

/* Text output: the stored bytes in hex. */
Datum
tributary_hll_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(TribSketchTextOut(PG_GETARG_BYTEA_PP(0)));
}

/* Binary input: the stored bytes as they are, checked. */
Datum
tributary_hll_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(HllCheckValue(TribSketchRecv((StringInfo) PG_GETARG_POINTER(0))));
}

/* Binary output: the stored bytes as they are. */
Datum
tributary_hll_send(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(TribSketchSend(PG_GETARG_BYTEA_PP(0)));
}

/* hll_count(tributary.hll): the distinct count a stored sketch holds. */
Datum
tributary_hll_count(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(HllCount(HllFromValue(PG_GETARG_BYTEA_PP(0))));
}

/* How to hash the aggregate's input: looked up on the first row, kept for the query. */
static TribDatumHasher *
HllAggHasher(FunctionCallInfo fcinfo)
{
	TribDatumHasher *hasher = fcinfo->flinfo->fn_extra;

	if (hasher == NULL)
	{
		Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 1);

		if (!OidIsValid(typid))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not determine the input type of tributary.hll_agg"),
					 errdetail("The aggregate hashes values by their type."),
					 errhint("Cast the argument to a type.")));
		hasher = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(TribDatumHasher));
		TribDatumHasherInit(hasher, typid, PG_GET_COLLATION(), fcinfo->flinfo->fn_mcxt);
		fcinfo->flinfo->fn_extra = hasher;
	}
	return hasher;
}

/* Transition of approx_distinct and hll_agg: every row makes the state, non-null values count. */
Datum
tributary_hll_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._hll_trans");
	TribHll    *hll = PG_ARGISNULL(0) ? TribHllCreate(aggcxt) : (TribHll *) PG_GETARG_POINTER(0);

	if (!PG_ARGISNULL(1))
		TribHllAdd(hll, TribHashDatum(HllAggHasher(fcinfo), PG_GETARG_DATUM(1)));
	PG_RETURN_POINTER(hll);
}

/* Transition of hll_merge: the first non-null sketch makes the state, nulls are skipped. */
Datum
tributary_hll_merge_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._hll_merge_trans");
	TribHll    *hll = PG_ARGISNULL(0) ? NULL : (TribHll *) PG_GETARG_POINTER(0);
	TribHll    *src;

	if (PG_ARGISNULL(1))
	{
		if (hll == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(hll);
	}
	src = HllFromValue(PG_GETARG_BYTEA_PP(1));
	if (hll == NULL)
		hll = TribHllCreate(aggcxt);
	TribHllMerge(hll, src);
	PG_RETURN_POINTER(hll);
}

/* Combine partial states (parallel aggregation): set union or register maximum. */
Datum
tributary_hll_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._hll_combine");
	TribHll    *dst = PG_ARGISNULL(0) ? NULL : (TribHll *) PG_GETARG_POINTER(0);
	TribHll    *src = PG_ARGISNULL(1) ? NULL : (TribHll *) PG_GETARG_POINTER(1);

	if (src == NULL)
	{
		if (dst == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(dst);
	}
	if (dst == NULL)
		PG_RETURN_POINTER(TribHllCopy(src, aggcxt));
	TribHllMerge(dst, src);
	PG_RETURN_POINTER(dst);
}

/* A partial state for the leader: the stored form. */
Datum
tributary_hll_serialize(PG_FUNCTION_ARGS)
{
	(void) TribAggMemoryContext(fcinfo, "tributary._hll_serialize");
	PG_RETURN_BYTEA_P(TribHllSerialize((TribHll *) PG_GETARG_POINTER(0)));
}

/* A partial state from a worker, checked as any stored sketch. */
Datum
tributary_hll_deserialize(PG_FUNCTION_ARGS)
{
	(void) TribAggMemoryContext(fcinfo, "tributary._hll_deserialize");
	PG_RETURN_POINTER(HllFromValue(PG_GETARG_BYTEA_PP(0)));
}

/* hll_agg and hll_merge: the sketch; NULL without rows (hll_merge: without a sketch). */
Datum
tributary_hll_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(TribHllSerialize((TribHll *) PG_GETARG_POINTER(0)));
}

/* approx_distinct: the count; 0 without rows, as count(DISTINCT). */
Datum
tributary_hll_final_count(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_INT64(0);
	PG_RETURN_INT64(HllCount((TribHll *) PG_GETARG_POINTER(0)));
}
