/*
 * state_agg.c
 *		The aggregate tributary.quality_state(event_time, key, VARIADIC columns): one quality
 *		window's state (window.h) over the rows of a group, and tributary.quality_merge over
 *		such states; both parallel safe (combine, serialize, deserialize).
 *
 * tributary.window_quality and column_quality group a table's rows by window with it, and
 * rolling minute windows up into hours is quality_merge over their states. The key is a
 * column's value, or a whole row (a composite value: every column hashed) for duplicates
 * of whole rows; a row whose key is null is never a duplicate.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"
#include "utils/typcache.h"

#include "quality/window.h"

PG_FUNCTION_INFO_V1(quality_state_trans);
PG_FUNCTION_INFO_V1(quality_state_combine);
PG_FUNCTION_INFO_V1(quality_state_serialize);
PG_FUNCTION_INFO_V1(quality_state_deserialize);
PG_FUNCTION_INFO_V1(quality_state_final);
PG_FUNCTION_INFO_V1(quality_merge_trans);

/* The transition's per-group state: the window, and how to read the arguments. */
typedef struct TribQualityAggState
{
	TribQualityWindow *window;
	TribQualityColumnReader *readers;	/* by watched column */
	bool		key_is_row;
	TribQualityColumnReader key;
	TribQualityRowHasher row;
	TupleDesc	row_desc;
} TribQualityAggState;

#define TRIB_AGG_FIXED_ARGS 3	/* state, event time, key */

/* The aggregate's memory context, or an error when called as a plain function. */
static MemoryContext
TribQualityAggContext(FunctionCallInfo fcinfo)
{
	MemoryContext cxt;

	if (!AggCheckCallContext(fcinfo, &cxt))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("%s can only be called as part of an aggregate",
						get_func_name(fcinfo->flinfo->fn_oid))));
	return cxt;
}

/* The first row of a group: readers for the arguments' types, an empty window. */
static TribQualityAggState *
TribQualityAggStart(FunctionCallInfo fcinfo, MemoryContext cxt)
{
	int			ncols = PG_NARGS() - TRIB_AGG_FIXED_ARGS;
	TribQualityAggState *st = MemoryContextAllocZero(cxt, sizeof(TribQualityAggState));
	bool	   *numeric = palloc(sizeof(bool) * Max(ncols, 1));
	Oid			keytype = get_fn_expr_argtype(fcinfo->flinfo, 2);

	if (ncols > TRIB_QUALITY_MAX_COLUMNS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("too many columns for a quality window: %d", ncols),
				 errhint("Watch at most %d columns.", TRIB_QUALITY_MAX_COLUMNS)));
	st->readers = MemoryContextAllocZero(cxt, sizeof(TribQualityColumnReader) * Max(ncols, 1));
	for (int c = 0; c < ncols; c++)
	{
		Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, TRIB_AGG_FIXED_ARGS + c);

		if (!OidIsValid(typid))
			elog(ERROR, "could not determine the type of quality column %d", c + 1);
		/* the type's own collation, as a stream's stage uses it (docs/quality.md) */
		TribQualityColumnReaderInit(&st->readers[c], typid, get_typcollation(typid), cxt);
		numeric[c] = st->readers[c].numeric;
	}
	if (!OidIsValid(keytype))
		elog(ERROR, "could not determine the type of the quality key");
	st->key_is_row = type_is_rowtype(keytype) && keytype != UNKNOWNOID;
	if (!st->key_is_row)
		TribQualityColumnReaderInit(&st->key, keytype, get_typcollation(keytype), cxt);
	st->window = TribQualityWindowCreate(ncols, numeric, false, cxt);
	pfree(numeric);
	return st;
}

/* The hash of a row's key (a whole row: every column's hash folded). */
static uint64
TribQualityAggKeyHash(TribQualityAggState *st, Datum key, MemoryContext cxt)
{
	HeapTupleHeader row;

	if (!st->key_is_row)
		return TribHashDatum(&st->key.hasher, key);
	row = DatumGetHeapTupleHeader(key);
	if (st->row_desc == NULL)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		st->row_desc = lookup_rowtype_tupdesc_copy(HeapTupleHeaderGetTypeId(row),
												   HeapTupleHeaderGetTypMod(row));
		TribQualityRowHasherInit(&st->row, st->row_desc, cxt);
		MemoryContextSwitchTo(old);
	}
	return TribQualityHashRow(&st->row, row);
}

/* quality_state_trans(internal, timestamptz, "any", VARIADIC "any") */
Datum
quality_state_trans(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = TribQualityAggContext(fcinfo);
	TribQualityAggState *st = PG_ARGISNULL(0) ? NULL : (TribQualityAggState *) PG_GETARG_POINTER(0);
	TribQualityWindow *w;

	if (st == NULL)
		st = TribQualityAggStart(fcinfo, cxt);
	w = st->window;
	if (!PG_ARGISNULL(1))
		TribQualityWindowAddEvent(w, PG_GETARG_TIMESTAMPTZ(1));
	if (PG_ARGISNULL(2))
		TribQualityWindowAddNullKeyRow(w);
	else
		TribQualityWindowAddRow(w, TribQualityAggKeyHash(st, PG_GETARG_DATUM(2), cxt));
	for (int c = 0; c < w->ncols; c++)
		if (!PG_ARGISNULL(TRIB_AGG_FIXED_ARGS + c))
			TribQualityWindowAddValue(w, &st->readers[c], c, PG_GETARG_DATUM(TRIB_AGG_FIXED_ARGS + c));
	PG_RETURN_POINTER(st);
}

/* A state that holds only a window (after deserialize or in quality_merge). */
static TribQualityAggState *
TribQualityAggWrap(TribQualityWindow *w, MemoryContext cxt)
{
	TribQualityAggState *st = MemoryContextAllocZero(cxt, sizeof(TribQualityAggState));

	st->window = w;
	return st;
}

/* quality_state_combine(internal, internal): exact merge of two groups' windows */
Datum
quality_state_combine(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = TribQualityAggContext(fcinfo);
	TribQualityAggState *a = PG_ARGISNULL(0) ? NULL : (TribQualityAggState *) PG_GETARG_POINTER(0);
	TribQualityAggState *b = PG_ARGISNULL(1) ? NULL : (TribQualityAggState *) PG_GETARG_POINTER(1);

	if (b == NULL)
		PG_RETURN_POINTER(a);
	if (a == NULL)
		a = TribQualityAggWrap(TribQualityWindowCreateLike(b->window, cxt), cxt);
	TribQualityWindowMerge(a->window, b->window);
	PG_RETURN_POINTER(a);
}

/* quality_state_serialize(internal) returns bytea */
Datum
quality_state_serialize(PG_FUNCTION_ARGS)
{
	TribQualityAggState *st = (TribQualityAggState *) PG_GETARG_POINTER(0);

	PG_RETURN_BYTEA_P(TribQualityWindowSerialize(st->window));
}

/* quality_state_deserialize(bytea, internal) returns internal */
Datum
quality_state_deserialize(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = TribQualityAggContext(fcinfo);
	bytea	   *b = PG_GETARG_BYTEA_PP(0);

	PG_RETURN_POINTER(TribQualityAggWrap(TribQualityWindowDeserialize(VARDATA_ANY(b),
																	  VARSIZE_ANY_EXHDR(b), cxt),
										 cxt));
}

/* quality_state_final(internal) returns bytea: the window's stored form */
Datum
quality_state_final(PG_FUNCTION_ARGS)
{
	TribQualityAggState *st = PG_ARGISNULL(0) ? NULL : (TribQualityAggState *) PG_GETARG_POINTER(0);

	if (st == NULL)
		PG_RETURN_NULL();
	PG_RETURN_BYTEA_P(TribQualityWindowSerialize(st->window));
}

/* quality_merge_trans(internal, bytea): merge one stored window into the group's */
Datum
quality_merge_trans(PG_FUNCTION_ARGS)
{
	MemoryContext cxt = TribQualityAggContext(fcinfo);
	TribQualityAggState *st = PG_ARGISNULL(0) ? NULL : (TribQualityAggState *) PG_GETARG_POINTER(0);
	bytea	   *b;
	TribQualityWindow *w;

	if (PG_ARGISNULL(1))
		PG_RETURN_POINTER(st);
	b = PG_GETARG_BYTEA_PP(1);
	w = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), cxt);
	if (st == NULL)
		PG_RETURN_POINTER(TribQualityAggWrap(w, cxt));
	TribQualityWindowMerge(st->window, w);
	PG_RETURN_POINTER(st);
}

PG_FUNCTION_INFO_V1(quality_metrics);

/*
 * quality_metrics(state bytea): a window's metrics from its state, for windows rolled up
 * with quality_merge (the default weights; validity and timeliness only for streams').
 */
Datum
quality_metrics(PG_FUNCTION_ARGS)
{
	bytea	   *b = PG_GETARG_BYTEA_PP(0);
	TribQualityWindow *w = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b),
														CurrentMemoryContext);
	TribQualityWindowMetrics m;
	TupleDesc	desc;
	Datum		values[12];
	bool		nulls[12] = {0};
	int			i = 0;

	if (get_call_result_type(fcinfo, NULL, &desc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "quality_metrics must return a record");
	desc = BlessTupleDesc(desc);
	TribQualityWindowRead(w, TribQualityDefaultWeights, &m);
	i += TribQualityWindowDatums(&m, w->newest_event, values + i, nulls + i);
	nulls[i] = !w->stream;
	values[i++] = Int64GetDatum((int64) w->dead);
	nulls[i] = !w->stream;
	values[i++] = Int64GetDatum((int64) w->late);
	Assert(i == desc->natts);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(desc, values, nulls)));
}
