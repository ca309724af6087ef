/*
 * stats_sql.c
 *		SQL surface of the exact building blocks: completeness (the non-null fraction of a
 *		group's rows) and exact_avg / exact_stddev, mean and sample standard deviation from
 *		exact sums (xsum.h), the same bits whatever the order of rows or the plan.
 *
 * States live in the aggregate's memory context; partial states travel between parallel
 * workers in a small versioned form (completeness) or xsum's stored form.
 */
#include "postgres.h"

#include "fmgr.h"

#include "quality/sqlutil.h"
#include "quality/wire.h"
#include "quality/xsum.h"

/* version of completeness's partial-state form */
#define COMPLETENESS_STATE_VERSION 1

PG_FUNCTION_INFO_V1(tributary_completeness_trans);
PG_FUNCTION_INFO_V1(tributary_completeness_combine);
PG_FUNCTION_INFO_V1(tributary_completeness_serialize);
PG_FUNCTION_INFO_V1(tributary_completeness_deserialize);
PG_FUNCTION_INFO_V1(tributary_completeness_final);
PG_FUNCTION_INFO_V1(tributary_xsum_trans);
PG_FUNCTION_INFO_V1(tributary_xsum_combine);
PG_FUNCTION_INFO_V1(tributary_xsum_serialize);
PG_FUNCTION_INFO_V1(tributary_xsum_deserialize);
PG_FUNCTION_INFO_V1(tributary_xsum_avg_final);
PG_FUNCTION_INFO_V1(tributary_xsum_stddev_final);

typedef struct CompletenessState
{
	int64		rows;
	int64		nonnull;
} CompletenessState;

/* Transition of completeness: every row counts, and so does every non-null value. */
Datum
tributary_completeness_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._completeness_trans");
	CompletenessState *state;

	if (PG_ARGISNULL(0))
		state = MemoryContextAllocZero(aggcxt, sizeof(CompletenessState));
	else
		state = (CompletenessState *) PG_GETARG_POINTER(0);
	state->rows++;
	if (!PG_ARGISNULL(1))
		state->nonnull++;
	PG_RETURN_POINTER(state);
}

/* Combine partial states: add the counts. */
Datum
tributary_completeness_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._completeness_combine");
	CompletenessState *dst = PG_ARGISNULL(0) ? NULL : (CompletenessState *) PG_GETARG_POINTER(0);
	CompletenessState *src = PG_ARGISNULL(1) ? NULL : (CompletenessState *) PG_GETARG_POINTER(1);

	if (src == NULL)
	{
		if (dst == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(dst);
	}
	if (dst == NULL)
		dst = MemoryContextAllocZero(aggcxt, sizeof(CompletenessState));
	dst->rows += src->rows;
	dst->nonnull += src->nonnull;
	PG_RETURN_POINTER(dst);
}

/* A partial state for the leader: version byte, rows and non-null values as varints. */
Datum
tributary_completeness_serialize(PG_FUNCTION_ARGS)
{
	CompletenessState *state = (CompletenessState *) PG_GETARG_POINTER(0);
	StringInfoData buf;

	(void) TribAggMemoryContext(fcinfo, "tributary._completeness_serialize");
	TribWireBegin(&buf);
	TribWirePutU8(&buf, COMPLETENESS_STATE_VERSION);
	TribWirePutVarint(&buf, (uint64) state->rows);
	TribWirePutVarint(&buf, (uint64) state->nonnull);
	PG_RETURN_BYTEA_P(TribWireFinish(&buf));
}

/* A partial state from a worker, checked. */
Datum
tributary_completeness_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *value = PG_GETARG_BYTEA_PP(0);
	CompletenessState *state = palloc(sizeof(CompletenessState));
	TribWireReader r;
	uint8		version;
	uint64		rows,
				nonnull;

	(void) TribAggMemoryContext(fcinfo, "tributary._completeness_deserialize");
	TribWireReaderInit(&r, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	version = TribWireGetU8(&r);
	rows = TribWireGetVarint(&r);
	nonnull = TribWireGetVarint(&r);
	if (!TribWireOk(&r) || TribWireRemaining(&r) != 0 || version != COMPLETENESS_STATE_VERSION ||
		rows > PG_INT64_MAX || nonnull > rows)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid partial state of tributary.completeness"),
				 errdetail("The state is %zu bytes, version %d.",
						   VARSIZE_ANY_EXHDR(value), version),
				 errhint("Partial states pass between the workers of one query only.")));
	state->rows = (int64) rows;
	state->nonnull = (int64) nonnull;
	PG_RETURN_POINTER(state);
}

/* completeness: non-null values over rows; NULL without rows. */
Datum
tributary_completeness_final(PG_FUNCTION_ARGS)
{
	CompletenessState *state = PG_ARGISNULL(0) ? NULL : (CompletenessState *) PG_GETARG_POINTER(0);

	if (state == NULL || state->rows == 0)
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8((double) state->nonnull / (double) state->rows);
}

/* Transition of exact_avg and exact_stddev: the first row makes the state, nulls are skipped. */
Datum
tributary_xsum_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._xsum_trans");
	TribXsum   *acc;

	if (PG_ARGISNULL(0))
	{
		acc = MemoryContextAlloc(aggcxt, sizeof(TribXsum));
		TribXsumInit(acc);
	}
	else
		acc = (TribXsum *) PG_GETARG_POINTER(0);
	if (!PG_ARGISNULL(1))
		TribXsumAdd(acc, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(acc);
}

/* Combine partial states: exact addition. */
Datum
tributary_xsum_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._xsum_combine");
	TribXsum   *dst = PG_ARGISNULL(0) ? NULL : (TribXsum *) PG_GETARG_POINTER(0);
	TribXsum   *src = PG_ARGISNULL(1) ? NULL : (TribXsum *) PG_GETARG_POINTER(1);

	if (src == NULL)
	{
		if (dst == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(dst);
	}
	if (dst == NULL)
	{
		dst = MemoryContextAlloc(aggcxt, sizeof(TribXsum));
		TribXsumInit(dst);
	}
	TribXsumMerge(dst, src);
	PG_RETURN_POINTER(dst);
}

/* A partial state for the leader: xsum's stored form. */
Datum
tributary_xsum_serialize(PG_FUNCTION_ARGS)
{
	(void) TribAggMemoryContext(fcinfo, "tributary._xsum_serialize");
	PG_RETURN_BYTEA_P(TribXsumSerialize((TribXsum *) PG_GETARG_POINTER(0)));
}

/* A partial state from a worker, checked. */
Datum
tributary_xsum_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *value = PG_GETARG_BYTEA_PP(0);
	TribXsum   *acc = palloc(sizeof(TribXsum));

	(void) TribAggMemoryContext(fcinfo, "tributary._xsum_deserialize");
	TribXsumDeserialize(acc, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	PG_RETURN_POINTER(acc);
}

/* exact_avg: NULL without values. */
Datum
tributary_xsum_avg_final(PG_FUNCTION_ARGS)
{
	double		result;

	if (PG_ARGISNULL(0) || !TribXsumMean((TribXsum *) PG_GETARG_POINTER(0), &result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}

/* exact_stddev: NULL with fewer than two values. */
Datum
tributary_xsum_stddev_final(PG_FUNCTION_ARGS)
{
	double		result;

	if (PG_ARGISNULL(0) || !TribXsumStddev((TribXsum *) PG_GETARG_POINTER(0), &result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}
