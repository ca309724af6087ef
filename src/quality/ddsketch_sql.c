/*
 * ddsketch_sql.c
 *		SQL surface of the quantile sketch: the type tributary.ddsketch (its stored form,
 *		ddsketch.h, as a varlena), the aggregates approx_quantile (one quantile or an array),
 *		ddsketch_agg and ddsketch_merge, and ddsketch_quantile.
 *
 * The aggregates' state is a DdsAggState in the aggregate's memory context: the sketch and,
 * for approx_quantile, the quantiles the group was asked for. A quantile is an ordinary
 * argument, so each row brings one; the first row's is kept and every other row's (and
 * every partial state's, in parallel aggregation) must be the same, or the aggregate fails
 * rather than answer for a quantile nobody can tell.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/array.h"
#include "utils/lsyscache.h"

#include "quality/ddsketch.h"
#include "quality/sqlutil.h"
#include "quality/wire.h"

/* version of the partial-state form passed from parallel workers to the leader */
#define DDS_AGG_STATE_VERSION 1
/* at most this many quantiles in one call (a named limit for the error message) */
#define DDS_MAX_QUANTILES 1000

PG_FUNCTION_INFO_V1(tributary_ddsketch_in);
PG_FUNCTION_INFO_V1(tributary_ddsketch_out);
PG_FUNCTION_INFO_V1(tributary_ddsketch_recv);
PG_FUNCTION_INFO_V1(tributary_ddsketch_send);
PG_FUNCTION_INFO_V1(tributary_ddsketch_quantile);
PG_FUNCTION_INFO_V1(tributary_ddsketch_quantiles);
PG_FUNCTION_INFO_V1(tributary_dds_trans);
PG_FUNCTION_INFO_V1(tributary_dds_merge_trans);
PG_FUNCTION_INFO_V1(tributary_dds_quantile_trans);
PG_FUNCTION_INFO_V1(tributary_dds_quantiles_trans);
PG_FUNCTION_INFO_V1(tributary_dds_combine);
PG_FUNCTION_INFO_V1(tributary_dds_serialize);
PG_FUNCTION_INFO_V1(tributary_dds_deserialize);
PG_FUNCTION_INFO_V1(tributary_dds_final);
PG_FUNCTION_INFO_V1(tributary_dds_quantile_final);
PG_FUNCTION_INFO_V1(tributary_dds_quantiles_final);

typedef struct DdsAggState
{
	TribDds		sk;
	int			nquantiles;		/* -1 until a row brings them (and for the sketch aggregates) */
	double	   *quantiles;
	ArrayType  *quantile_array; /* approx_quantile(float8[]): the first row's, as given */
} DdsAggState;

/* A new state in the aggregate's context. */
static DdsAggState *
DdsAggStateCreate(MemoryContext aggcxt)
{
	DdsAggState *state = MemoryContextAllocZero(aggcxt, sizeof(DdsAggState));

	TribDdsInit(&state->sk, aggcxt);
	state->nquantiles = -1;
	return state;
}

/* A value of type tributary.ddsketch read as a sketch in the current memory context. */
static TribDds *
DdsFromValue(const bytea *value)
{
	return TribDdsDeserialize(VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value),
							  CurrentMemoryContext);
}

/* Stored bytes become a tributary.ddsketch only when they are a valid sketch. */
static bytea *
DdsCheckValue(bytea *value)
{
	TribDds    *sk = DdsFromValue(value);

	TribDdsReset(sk);
	pfree(sk);
	return value;
}

/* Quantiles as text for an error detail: "0.5, 0.9". */
static char *
DdsQuantilesText(const double *q, int n)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < n; i++)
		appendStringInfo(&buf, "%s%g", i > 0 ? ", " : "", q[i]);
	if (n == 0)
		appendStringInfoString(&buf, "none");
	return buf.data;
}

/*
 * The quantiles of a float8[] argument, each checked; one dimension (or none), no nulls,
 * at most DDS_MAX_QUANTILES.
 */
static double *
DdsQuantileArray(ArrayType *array, const char *fname, int *n)
{
	Datum	   *elems;
	bool	   *nulls;
	double	   *q;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s takes a one-dimensional array of quantiles", fname),
				 errdetail("The array has %d dimensions.", ARR_NDIM(array)),
				 errhint("Pass the quantiles as ARRAY[0.5, 0.9, 0.99].")));
	deconstruct_array(array, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
					  &elems, &nulls, n);
	if (*n > DDS_MAX_QUANTILES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("%s takes at most %d quantiles", fname, DDS_MAX_QUANTILES),
				 errdetail("The array has %d.", *n),
				 errhint("Keep the sketch (tributary.ddsketch_agg) and read quantiles from it "
						 "with tributary.ddsketch_quantile.")));
	q = palloc(Max(*n, 1) * sizeof(double));
	for (int i = 0; i < *n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("%s does not take a null quantile", fname),
					 errdetail("Element %d of the quantile array is null.", i + 1),
					 errhint("Remove the null from the array.")));
		q[i] = DatumGetFloat8(elems[i]);
		TribCheckQuantile(q[i], fname);
		if (q[i] == 0.0)
			q[i] = 0.0;			/* -0 is 0: partial states compare quantiles bit by bit */
	}
	pfree(elems);
	pfree(nulls);
	return q;
}

/* The quantiles of the sketch as a float8[] (one element per quantile). */
static ArrayType *
DdsQuantilesResult(const TribDds *sk, const double *q, int n)
{
	Datum	   *values = palloc(Max(n, 1) * sizeof(Datum));

	for (int i = 0; i < n; i++)
	{
		double		v = 0.0;

		(void) TribDdsQuantile(sk, q[i], &v);
		values[i] = Float8GetDatum(v);
	}
	return construct_array(values, n, FLOAT8OID, sizeof(float8), FLOAT8PASSBYVAL,
						   TYPALIGN_DOUBLE);
}

/* Take a group's quantiles from its first row; any later one must be the same. */
static void
DdsAggSetQuantiles(DdsAggState *state, const double *q, int n, MemoryContext aggcxt)
{
	if (state->nquantiles < 0)
	{
		state->quantiles = MemoryContextAlloc(aggcxt, Max(n, 1) * sizeof(double));
		memcpy(state->quantiles, q, n * sizeof(double));
		state->nquantiles = n;
		return;
	}
	if (state->nquantiles != n || memcmp(state->quantiles, q, n * sizeof(double)) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("tributary.approx_quantile was given different quantiles in one group"),
				 errdetail("It was given %s, then %s.",
						   DdsQuantilesText(state->quantiles, state->nquantiles),
						   DdsQuantilesText(q, n)),
				 errhint("Pass the quantiles as a constant, or group by them.")));
}

/* Text input: the stored bytes in hex, checked. */
Datum
tributary_ddsketch_in(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(DdsCheckValue(TribSketchTextIn(PG_GETARG_CSTRING(0), "tributary.ddsketch")));
}

/* Text output: the stored bytes in hex. */
Datum
tributary_ddsketch_out(PG_FUNCTION_ARGS)
{
	PG_RETURN_CSTRING(TribSketchTextOut(PG_GETARG_BYTEA_PP(0)));
}

/* Binary input: the stored bytes as they are, checked. */
Datum
tributary_ddsketch_recv(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(DdsCheckValue(TribSketchRecv((StringInfo) PG_GETARG_POINTER(0))));
}

/* Binary output: the stored bytes as they are. */
Datum
tributary_ddsketch_send(PG_FUNCTION_ARGS)
{
	PG_RETURN_BYTEA_P(TribSketchSend(PG_GETARG_BYTEA_PP(0)));
}

/* ddsketch_quantile(tributary.ddsketch, float8): NULL for a sketch without values. */
Datum
tributary_ddsketch_quantile(PG_FUNCTION_ARGS)
{
	TribDds    *sk = DdsFromValue(PG_GETARG_BYTEA_PP(0));
	double		q = PG_GETARG_FLOAT8(1);
	double		result;

	TribCheckQuantile(q, "tributary.ddsketch_quantile");
	if (!TribDdsQuantile(sk, q, &result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}

/* ddsketch_quantile(tributary.ddsketch, float8[]): NULL for a sketch without values. */
Datum
tributary_ddsketch_quantiles(PG_FUNCTION_ARGS)
{
	TribDds    *sk = DdsFromValue(PG_GETARG_BYTEA_PP(0));
	int			n;
	double	   *q = DdsQuantileArray(PG_GETARG_ARRAYTYPE_P(1), "tributary.ddsketch_quantile", &n);

	if (TribDdsCount(sk) == 0)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(DdsQuantilesResult(sk, q, n));
}

/* The state, made on the first row of a group. */
static DdsAggState *
DdsAggStateArg(FunctionCallInfo fcinfo, const char *fname, MemoryContext *aggcxt)
{
	*aggcxt = TribAggMemoryContext(fcinfo, fname);
	if (PG_ARGISNULL(0))
		return DdsAggStateCreate(*aggcxt);
	return (DdsAggState *) PG_GETARG_POINTER(0);
}

/* Transition of ddsketch_agg: every row makes the state, non-null values count. */
Datum
tributary_dds_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	DdsAggState *state = DdsAggStateArg(fcinfo, "tributary._dds_trans", &aggcxt);

	if (!PG_ARGISNULL(1))
		TribDdsAdd(&state->sk, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/* Transition of ddsketch_merge: the first non-null sketch makes the state, nulls are skipped. */
Datum
tributary_dds_merge_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._dds_merge_trans");
	DdsAggState *state = PG_ARGISNULL(0) ? NULL : (DdsAggState *) PG_GETARG_POINTER(0);
	TribDds    *src;

	if (PG_ARGISNULL(1))
	{
		if (state == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(state);
	}
	src = DdsFromValue(PG_GETARG_BYTEA_PP(1));
	if (state == NULL)
		state = DdsAggStateCreate(aggcxt);
	TribDdsMerge(&state->sk, src);
	PG_RETURN_POINTER(state);
}

/* Transition of approx_quantile(float8, float8): one quantile, the same in every row. */
Datum
tributary_dds_quantile_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	DdsAggState *state = DdsAggStateArg(fcinfo, "tributary._dds_quantile_trans", &aggcxt);
	double		q;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tributary.approx_quantile does not take a null quantile"),
				 errdetail("The second argument is null."),
				 errhint("Pass a quantile between 0 and 1, such as 0.5 for the median.")));
	q = PG_GETARG_FLOAT8(2);
	if (q == 0.0)
		q = 0.0;				/* -0 is 0: partial states compare quantiles bit by bit */
	if (state->nquantiles != 1 || state->quantiles[0] != q)
	{
		TribCheckQuantile(q, "tributary.approx_quantile");
		DdsAggSetQuantiles(state, &q, 1, aggcxt);
	}
	if (!PG_ARGISNULL(1))
		TribDdsAdd(&state->sk, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/*
 * Transition of approx_quantile(float8, float8[]): the same quantiles in every row. A row
 * whose array has the same bytes as the first row's costs a memcmp.
 */
Datum
tributary_dds_quantiles_trans(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt;
	DdsAggState *state = DdsAggStateArg(fcinfo, "tributary._dds_quantiles_trans", &aggcxt);
	ArrayType  *array;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tributary.approx_quantile does not take a null quantile array"),
				 errdetail("The second argument is null."),
				 errhint("Pass an array of quantiles between 0 and 1, such as ARRAY[0.5, 0.99].")));
	array = PG_GETARG_ARRAYTYPE_P(2);
	if (state->quantile_array == NULL ||
		VARSIZE(array) != VARSIZE(state->quantile_array) ||
		memcmp(array, state->quantile_array, VARSIZE(array)) != 0)
	{
		int			n;
		double	   *q = DdsQuantileArray(array, "tributary.approx_quantile", &n);

		DdsAggSetQuantiles(state, q, n, aggcxt);
		if (state->quantile_array == NULL)
		{
			state->quantile_array = MemoryContextAlloc(aggcxt, VARSIZE(array));
			memcpy(state->quantile_array, array, VARSIZE(array));
		}
	}
	if (!PG_ARGISNULL(1))
		TribDdsAdd(&state->sk, PG_GETARG_FLOAT8(1));
	PG_RETURN_POINTER(state);
}

/* Combine partial states (parallel aggregation): merge the sketches, check the quantiles. */
Datum
tributary_dds_combine(PG_FUNCTION_ARGS)
{
	MemoryContext aggcxt = TribAggMemoryContext(fcinfo, "tributary._dds_combine");
	DdsAggState *dst = PG_ARGISNULL(0) ? NULL : (DdsAggState *) PG_GETARG_POINTER(0);
	DdsAggState *src = PG_ARGISNULL(1) ? NULL : (DdsAggState *) PG_GETARG_POINTER(1);

	if (src == NULL)
	{
		if (dst == NULL)
			PG_RETURN_NULL();
		PG_RETURN_POINTER(dst);
	}
	if (dst == NULL)
		dst = DdsAggStateCreate(aggcxt);
	if (src->nquantiles >= 0)
		DdsAggSetQuantiles(dst, src->quantiles, src->nquantiles, aggcxt);
	TribDdsMerge(&dst->sk, &src->sk);
	PG_RETURN_POINTER(dst);
}

/*
 * A partial state for the leader: version byte, the number of quantiles plus one (0: none)
 * and their bits, then the sketch's stored form.
 */
Datum
tributary_dds_serialize(PG_FUNCTION_ARGS)
{
	DdsAggState *state = (DdsAggState *) PG_GETARG_POINTER(0);
	bytea	   *sketch;
	StringInfoData buf;

	(void) TribAggMemoryContext(fcinfo, "tributary._dds_serialize");
	sketch = TribDdsSerialize(&state->sk);
	TribWireBegin(&buf);
	TribWirePutU8(&buf, DDS_AGG_STATE_VERSION);
	TribWirePutVarint(&buf, (uint64) (state->nquantiles + 1));
	for (int i = 0; i < state->nquantiles; i++)
		TribWirePutDouble(&buf, state->quantiles[i]);
	appendBinaryStringInfo(&buf, VARDATA(sketch), VARSIZE(sketch) - VARHDRSZ);
	PG_RETURN_BYTEA_P(TribWireFinish(&buf));
}

/* A partial state from a worker, checked. */
Datum
tributary_dds_deserialize(PG_FUNCTION_ARGS)
{
	bytea	   *value = PG_GETARG_BYTEA_PP(0);
	DdsAggState *state = DdsAggStateCreate(CurrentMemoryContext);
	TribWireReader r;
	uint64		nq;
	const char *problem = NULL;

	(void) TribAggMemoryContext(fcinfo, "tributary._dds_deserialize");
	TribWireReaderInit(&r, VARDATA_ANY(value), VARSIZE_ANY_EXHDR(value));
	if (TribWireGetU8(&r) != DDS_AGG_STATE_VERSION)
		problem = "its version is not " CppAsString2(DDS_AGG_STATE_VERSION);
	nq = TribWireGetVarint(&r);
	if (problem == NULL && (!TribWireOk(&r) || nq > DDS_MAX_QUANTILES + 1))
		problem = "its quantile count is wrong";
	if (problem == NULL && nq > 0)
	{
		state->nquantiles = (int) nq - 1;
		state->quantiles = palloc(Max(state->nquantiles, 1) * sizeof(double));
		for (int i = 0; i < state->nquantiles; i++)
			state->quantiles[i] = TribWireGetDouble(&r);
		if (!TribWireOk(&r))
			problem = "its quantiles are truncated";
	}
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid partial state of a tributary.ddsketch aggregate"),
				 errdetail("The state is %zu bytes; %s.", VARSIZE_ANY_EXHDR(value), problem),
				 errhint("Partial states pass between the workers of one query only.")));
	problem = TribDdsParse(&state->sk, (const char *) r.p, TribWireRemaining(&r));
	if (problem != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("invalid partial state of a tributary.ddsketch aggregate"),
				 errdetail("%c%s.", pg_toupper((unsigned char) problem[0]), problem + 1),
				 errhint("Partial states pass between the workers of one query only.")));
	PG_RETURN_POINTER(state);
}

/* ddsketch_agg and ddsketch_merge: the sketch; NULL without rows (merge: without a sketch). */
Datum
tributary_dds_final(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(TribDdsSerialize(&((DdsAggState *) PG_GETARG_POINTER(0))->sk));
}

/* approx_quantile(float8, float8): NULL without a (non-NaN) value. */
Datum
tributary_dds_quantile_final(PG_FUNCTION_ARGS)
{
	DdsAggState *state = PG_ARGISNULL(0) ? NULL : (DdsAggState *) PG_GETARG_POINTER(0);
	double		result;

	if (state == NULL || state->nquantiles != 1 ||
		!TribDdsQuantile(&state->sk, state->quantiles[0], &result))
		PG_RETURN_NULL();
	PG_RETURN_FLOAT8(result);
}

/* approx_quantile(float8, float8[]): NULL without a (non-NaN) value. */
Datum
tributary_dds_quantiles_final(PG_FUNCTION_ARGS)
{
	DdsAggState *state = PG_ARGISNULL(0) ? NULL : (DdsAggState *) PG_GETARG_POINTER(0);

	if (state == NULL || state->nquantiles < 0 || TribDdsCount(&state->sk) == 0)
		PG_RETURN_NULL();
	PG_RETURN_ARRAYTYPE_P(DdsQuantilesResult(&state->sk, state->quantiles, state->nquantiles));
}
