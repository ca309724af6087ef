/*
 * adhoc.c
 *		tributary.window_quality and tributary.column_quality: quality windows over any
 *		table, in one pass over its rows.
 *
 * The arguments are checked first (a bad call fails before reading a row). Then the rows
 * are grouped by pane: a pane is the window itself for tumbling windows, or one slide for
 * hopping ones, whose windows are then the merges of window/slide consecutive panes
 * (exact, see window.h). A plain table the caller may read without row-level security is
 * read directly (adhoc_scan.c; in parallel workers when it is large enough), building only
 * the parts of each pane's state the function's metrics read; anything else goes through
 * one query grouping the rows with tributary.quality_state, as the caller (privileges and
 * row-level security apply), which the planner may run in parallel. Windows with no row
 * between the first and the last are returned too, empty, as a stream closes them.
 *
 * Windows are [start, start + window), aligned as date_bin("window", t, origin) aligns
 * them; a timestamp (without time zone) column is read as UTC. Rows whose time is null
 * belong to no window.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/heap.h"
#include "catalog/namespace.h"
#include "common/int.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/rls.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "quality/adhoc.h"
#include "quality/adhoc_scan.h"
#include "quality/window.h"

PG_FUNCTION_INFO_V1(window_quality);
PG_FUNCTION_INFO_V1(column_quality);

/* the most windows one call returns (empty ones included) */
#define TRIB_QUALITY_MAX_WINDOWS 1000000

/* The ad-hoc call's arguments, checked. */
typedef struct TribAdhocCall
{
	Oid			relid;
	char	   *time_column;
	bool		time_is_tz;
	int64		window;			/* microseconds */
	int64		slide;
	Interval   *window_iv;
	Interval   *slide_iv;
	int			ncols;
	char	  **columns;
	char	   *key_column;
	bool		has_from;
	TimestampTz from;
	bool		has_to;
	TimestampTz to;
	TimestampTz origin;
} TribAdhocCall;

/* An interval's length in microseconds, for window and slide: positive, no months. */
int64
TribQualityIntervalUsecs(Interval *iv, const char *what)
{
	int64		usecs;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain months or years", what),
				 errdetail("Months and years have no fixed length, so windows of them cannot be aligned."),
				 errhint("Use days, hours, minutes or seconds, for example '30 days'.")));
	if (pg_mul_s64_overflow((int64) iv->day, USECS_PER_DAY, &usecs) ||
		pg_add_s64_overflow(usecs, iv->time, &usecs))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("%s is too long", what)));
	if (usecs <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what),
				 errdetail("It is %s.", DatumGetCString(DirectFunctionCall1(interval_out,
																			 IntervalPGetDatum(iv)))),
				 errhint("Pass a positive interval, for example '1 minute'.")));
	return usecs;
}

/* Check that slide divides window (both in microseconds). */
void
TribQualityCheckSlide(int64 window, int64 slide, Interval *window_iv, Interval *slide_iv)
{
	if (window % slide != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("slide must divide the window"),
				 errdetail("The window is %s and the slide %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(window_iv))),
						   DatumGetCString(DirectFunctionCall1(interval_out, IntervalPGetDatum(slide_iv)))),
				 errhint("Windows start every slide; a window must be a whole number of slides.")));
}

/*
 * The attribute number of rel's user column name, or an error: what "name" does not exist
 * in where. System columns are not user columns: a window over ctid or xmin could not be
 * the same continuously (rows as they land) and afterwards.
 */
AttrNumber
TribQualityUserColumn(Relation rel, const char *name, const char *what, const char *where)
{
	TupleDesc	desc = RelationGetDescr(rel);

	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && strcmp(NameStr(att->attname), name) == 0)
			return att->attnum;
	}
	if (SystemAttributeByName(name) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_COLUMN_REFERENCE),
				 errmsg("%s \"%s\" is a system column", what, name),
				 errhint("Quality windows read the table's own columns: a system column is not part of a row's data.")));
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_COLUMN),
			 errmsg("%s \"%s\" does not exist in %s", what, name, where),
			 errhint("Name a column of the table, as it is spelled in it (case matters).")));
	return InvalidAttrNumber;	/* keep the compiler quiet */
}

/* TribQualityUserColumn for the ad-hoc functions: where is the table's name. */
static AttrNumber
TribAdhocColumn(Relation rel, const char *name, const char *what)
{
	return TribQualityUserColumn(rel, name, what,
								 psprintf("\"%s\"", RelationGetRelationName(rel)));
}

/*
 * The watched columns of a quality call (window_quality, column_quality, set_quality):
 * every user column of rel when arg is NULL, else the names in arg, each a user column of
 * rel (TribQualityUserColumn, where as it says), none twice. At least one.
 */
char	  **
TribQualityColumnsArg(Relation rel, ArrayType *arg, const char *where, int *ncols)
{
	TupleDesc	desc = RelationGetDescr(rel);
	char	  **columns;
	Datum	   *elems;
	bool	   *nulls;
	int			n;

	*ncols = 0;
	if (arg == NULL)
	{
		columns = palloc(sizeof(char *) * Max(desc->natts, 1));
		for (int i = 0; i < desc->natts; i++)
		{
			Form_pg_attribute att = TupleDescAttr(desc, i);

			if (!att->attisdropped)
				columns[(*ncols)++] = pstrdup(NameStr(att->attname));
		}
		return columns;
	}
	deconstruct_array(arg, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("columns must name at least one column"),
				 errhint("Pass null to watch every column.")));
	columns = palloc(sizeof(char *) * n);
	for (int i = 0; i < n; i++)
	{
		char	   *name;

		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("columns must not contain null")));
		name = TextDatumGetCString(elems[i]);
		(void) TribQualityUserColumn(rel, name, "column", where);
		for (int j = 0; j < *ncols; j++)
			if (strcmp(columns[j], name) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_DUPLICATE_COLUMN),
						 errmsg("column \"%s\" is named twice in columns", name)));
		columns[(*ncols)++] = name;
	}
	return columns;
}

/* Read and check the arguments, before any row is read. */
static void
TribAdhocArgs(FunctionCallInfo fcinfo, TribAdhocCall *call)
{
	Relation	rel;
	TupleDesc	desc;
	AttrNumber	timeatt;
	Oid			timetype;

	memset(call, 0, sizeof(*call));
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("tbl, time_column and \"window\" must not be null")));
	call->relid = PG_GETARG_OID(0);
	call->time_column = text_to_cstring(PG_GETARG_TEXT_PP(1));
	call->window_iv = PG_GETARG_INTERVAL_P(2);
	call->window = TribQualityIntervalUsecs(call->window_iv, "window");
	call->slide_iv = PG_ARGISNULL(3) ? call->window_iv : PG_GETARG_INTERVAL_P(3);
	call->slide = TribQualityIntervalUsecs(call->slide_iv, "slide");
	TribQualityCheckSlide(call->window, call->slide, call->window_iv, call->slide_iv);
	call->has_from = !PG_ARGISNULL(6);
	if (call->has_from)
		call->from = PG_GETARG_TIMESTAMPTZ(6);
	call->has_to = !PG_ARGISNULL(7);
	if (call->has_to)
		call->to = PG_GETARG_TIMESTAMPTZ(7);
	if (call->has_from && call->has_to && call->from >= call->to)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"from\" must be earlier than \"to\""),
				 errhint("The rows read are those with \"from\" <= time < \"to\".")));
	if (PG_ARGISNULL(8))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("origin must not be null")));
	call->origin = PG_GETARG_TIMESTAMPTZ(8);

	rel = relation_open(call->relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	timeatt = TribAdhocColumn(rel, call->time_column, "time column");
	timetype = TupleDescAttr(desc, timeatt - 1)->atttypid;
	if (timetype != TIMESTAMPTZOID && timetype != TIMESTAMPOID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("time column \"%s\" is of type %s", call->time_column, format_type_be(timetype)),
				 errhint("The time column must be timestamp with time zone or timestamp.")));
	call->time_is_tz = timetype == TIMESTAMPTZOID;
	if (!PG_ARGISNULL(5))
	{
		call->key_column = text_to_cstring(PG_GETARG_TEXT_PP(5));
		(void) TribAdhocColumn(rel, call->key_column, "key column");
	}
	call->columns = TribQualityColumnsArg(rel, PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4),
										  psprintf("\"%s\"", RelationGetRelationName(rel)),
										  &call->ncols);
	relation_close(rel, AccessShareLock);
}

/* The query that groups the rows by pane (see the file header). */
static char *
TribAdhocQuery(TribAdhocCall *call)
{
	StringInfoData sql;
	char	   *rel = quote_qualified_identifier(get_namespace_name(get_rel_namespace(call->relid)),
												 get_rel_name(call->relid));
	char	   *t;

	t = call->time_is_tz ? psprintf("q.%s", quote_identifier(call->time_column))
		: psprintf("(q.%s AT TIME ZONE 'UTC')", quote_identifier(call->time_column));
	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT pg_catalog.date_bin($1, %s, $2) AS pane, "
					 "tributary.quality_state(%s, %s", t, t,
					 call->key_column ? psprintf("q.%s", quote_identifier(call->key_column)) : "q.*");
	for (int c = 0; c < call->ncols; c++)
		appendStringInfo(&sql, ", q.%s", quote_identifier(call->columns[c]));
	appendStringInfo(&sql, ") FROM %s AS q WHERE pg_catalog.isfinite(%s)", rel, t);
	if (call->has_from)
		appendStringInfo(&sql, " AND %s >= $3", t);
	if (call->has_to)
		appendStringInfo(&sql, " AND %s < $4", t);
	appendStringInfoString(&sql, " GROUP BY 1 ORDER BY 1");
	return sql.data;
}

/* Emit one window's row(s), from its report (TribAdhocReportRead), into the result. */
typedef void (*TribAdhocEmit) (Tuplestorestate *store, TupleDesc desc, TribAdhocCall *call,
							   TimestampTz start, const void *report);

/* What a function returns: the report it reads of a window, the parts that takes, its rows. */
typedef struct TribAdhocKind
{
	TribAdhocReport report;
	int			parts;			/* TRIB_QUALITY_PART_*: what the report reads (window.h) */
	TribAdhocEmit emit;
} TribAdhocKind;

static void
TribAdhocEmitWindow(Tuplestorestate *store, TupleDesc desc, TribAdhocCall *call,
					TimestampTz start, const void *report)
{
	const TribAdhocWindowReport *r = (const TribAdhocWindowReport *) report;
	const TribQualityWindowMetrics *m = &r->metrics;
	Datum		values[13];
	bool		nulls[13] = {0};
	int			i = 0;

	values[i++] = TimestampTzGetDatum(start);
	values[i++] = TimestampTzGetDatum(start + call->window);
	i += TribQualityWindowDatums(m, r->newest_event, values + i, nulls + i);
	Assert(i == desc->natts);
	tuplestore_putvalues(store, desc, values, nulls);
}

static void
TribAdhocEmitColumns(Tuplestorestate *store, TupleDesc desc, TribAdhocCall *call,
					 TimestampTz start, const void *report)
{
	for (int c = 0; c < call->ncols; c++)
	{
		const TribQualityColumnMetrics *m = &((const TribQualityColumnMetrics *) report)[c];
		Datum		values[17];
		bool		nulls[17] = {0};
		int			i = 0;
		bool		num;

		num = m->numeric && m->has_values;
		values[i++] = TimestampTzGetDatum(start);
		values[i++] = TimestampTzGetDatum(start + call->window);
		values[i++] = CStringGetTextDatum(call->columns[c]);
		values[i++] = Int64GetDatum((int64) m->rows);
		values[i++] = Int64GetDatum((int64) m->non_null);
		nulls[i] = m->rows == 0;
		values[i++] = Float8GetDatum(m->completeness);
		values[i++] = Int64GetDatum(m->distinct_count);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->mean);
		nulls[i] = !num || !m->has_stddev;
		values[i++] = Float8GetDatum(m->stddev);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->min);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->max);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->p50);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->p90);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->p99);
		nulls[i] = !num;
		values[i++] = Int64GetDatum(m->outliers);
		nulls[i] = !num;
		values[i++] = Float8GetDatum(m->outlier_rate);
		Assert(i == desc->natts);
		tuplestore_putvalues(store, desc, values, nulls);
	}
}

/* window_quality's metrics read no distinct counts, means or standard deviations */
static const TribAdhocKind TribAdhocWindows = {
	TRIB_ADHOC_REPORT_WINDOWS, TRIB_QUALITY_PART_KEYS, TribAdhocEmitWindow
};

/* column_quality's read no duplicates */
static const TribAdhocKind TribAdhocColumns = {
	TRIB_ADHOC_REPORT_COLUMNS, TRIB_QUALITY_PART_DISTINCT | TRIB_QUALITY_PART_SUMS,
	TribAdhocEmitColumns
};

/* A window's row(s) from its state; report is room for one report. */
static void
TribAdhocEmitState(const TribAdhocKind *kind, ReturnSetInfo *rsinfo, TribAdhocCall *call,
				   TimestampTz start, const TribQualityWindow *w, void *report)
{
	TribAdhocReportRead(kind->report, w, report);
	kind->emit(rsinfo->setResult, rsinfo->setDesc, call, start, report);
}

/* An empty window in a context of its own, under cxt (deleted once it is emitted). */
static TribQualityWindow *
TribAdhocWindow(TribAdhocCall *call, const bool *numeric, MemoryContext cxt)
{
	MemoryContext own = AllocSetContextCreate(cxt, "tributary quality window",
											  ALLOCSET_SMALL_SIZES);

	return TribQualityWindowCreate(call->ncols, numeric, false, own);
}

/* The watched columns' numeric flags, and the largest attribute number the scan reads. */
static bool *
TribAdhocNumeric(TribAdhocCall *call, Relation rel, AttrNumber *atts)
{
	bool	   *numeric = palloc(sizeof(bool) * Max(call->ncols, 1));

	for (int c = 0; c < call->ncols; c++)
	{
		atts[c] = TribAdhocColumn(rel, call->columns[c], "column");
		numeric[c] = TribQualityTypeIsNumeric(TupleDescAttr(RelationGetDescr(rel), atts[c] - 1)->atttypid);
	}
	return numeric;
}

/*
 * The panes through SQL: one query groups the rows with tributary.quality_state, planned
 * as any query is (parallel where it may be; policies and privileges applied).
 */
static void
TribAdhocPanesByQuery(TribAdhocCall *call, TribAdhocPanes *panes, MemoryContext cxt)
{
	Oid			argtypes[4] = {INTERVALOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		args[4];
	char		argnulls[4] = {' ', ' ', call->has_from ? ' ' : 'n', call->has_to ? ' ' : 'n'};
	int			ret;

	args[0] = IntervalPGetDatum(call->slide_iv);
	args[1] = TimestampTzGetDatum(call->origin);
	args[2] = TimestampTzGetDatum(call->from);
	args[3] = TimestampTzGetDatum(call->to);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute_with_args(TribAdhocQuery(call), 4, argtypes, args, argnulls, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "the quality query failed: %s", SPI_result_code_string(ret));
	panes->n = (int) SPI_processed;
	panes->starts = MemoryContextAlloc(cxt, sizeof(TimestampTz) * Max(panes->n, 1));
	panes->states = MemoryContextAlloc(cxt, sizeof(TribQualityWindow *) * Max(panes->n, 1));
	panes->reports = MemoryContextAllocZero(cxt, sizeof(void *) * Max(panes->n, 1));
	for (int p = 0; p < panes->n; p++)
	{
		HeapTuple	tup = SPI_tuptable->vals[p];
		bool		isnull;
		bytea	   *b;

		panes->starts[p] = DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
		b = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull));
		panes->states[p] = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), cxt);
	}
	SPI_finish();
}

/*
 * Whether the table can be read directly: a plain table or materialized view without
 * inheritance children, no row-level security for the caller, and SELECT on it. Anything
 * else goes through the query, where the executor applies what applies.
 */
static bool
TribAdhocCanScan(TribAdhocCall *call)
{
	char		relkind = get_rel_relkind(call->relid);

	return (relkind == RELKIND_RELATION || relkind == RELKIND_MATVIEW) &&
		!has_subclass(call->relid) &&
		check_enable_rls(call->relid, InvalidOid, true) != RLS_ENABLED &&
		pg_class_aclcheck(call->relid, GetUserId(), ACL_SELECT) == ACLCHECK_OK;
}

/*
 * What the direct read needs of the call: flat, for parallel workers; the parts of the
 * window states the function's report reads (window.h).
 */
static TribAdhocScanSpec *
TribAdhocSpec(TribAdhocCall *call, const AttrNumber *atts, const TribAdhocKind *kind)
{
	TribAdhocScanSpec *spec = palloc0(TribAdhocScanSpecSize(call->ncols));
	Relation	rel = relation_open(call->relid, AccessShareLock);

	spec->relid = call->relid;
	spec->timeatt = TribAdhocColumn(rel, call->time_column, "time column");
	spec->keyatt = call->key_column ? TribAdhocColumn(rel, call->key_column, "key column") : 0;
	relation_close(rel, AccessShareLock);
	spec->parts = kind->parts;
	spec->report = kind->report;
	spec->tumbling = call->window == call->slide;
	spec->slide = call->slide;
	spec->slide_iv = *call->slide_iv;
	spec->origin = call->origin;
	spec->has_from = call->has_from;
	spec->from = call->from;
	spec->has_to = call->has_to;
	spec->to = call->to;
	spec->ncols = call->ncols;
	memcpy(spec->atts, atts, sizeof(AttrNumber) * call->ncols);
	return spec;
}

/*
 * Read the panes (directly or through the query), then walk them from the first to the
 * last (empty ones too) in slide steps. At pane P the windows that cover it are those
 * starting at P - k * slide, k < window/slide: a window starting at P opens, P's state
 * merges into every open one, and the oldest, whose last pane P is, is emitted. Tumbling
 * windows are the panes themselves.
 */
static void
TribAdhocRun(FunctionCallInfo fcinfo, const TribAdhocKind *kind)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TribAdhocCall call;
	TribAdhocPanes panes;
	int			p = 0;
	int			per_window;
	bool	   *numeric;
	TribQualityWindow **open;	/* open[k]: the window starting k slides before the pane */
	TribQualityWindow *empty;
	TimestampTz pane;
	TimestampTz last_pane;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary quality",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	Relation	rel;
	AttrNumber *atts;
	void	   *report;
	ParallelContext *workers = NULL;

	TribAdhocArgs(fcinfo, &call);
	InitMaterializedSRF(fcinfo, 0);
	per_window = (int) (call.window / call.slide);
	rel = relation_open(call.relid, AccessShareLock);
	atts = palloc(sizeof(AttrNumber) * Max(call.ncols, 1));
	numeric = TribAdhocNumeric(&call, rel, atts);
	relation_close(rel, AccessShareLock);

	old = MemoryContextSwitchTo(cxt);
	if (TribAdhocCanScan(&call))
		workers = TribAdhocScan(TribAdhocSpec(&call, atts, kind), &panes, cxt);
	else
		TribAdhocPanesByQuery(&call, &panes, cxt);

	/* the panes to walk: those with rows, widened to "from" and "to" when given */
	if (panes.n > 0)
	{
		pane = panes.starts[0];
		last_pane = panes.starts[panes.n - 1];
	}
	else if (call.has_from && call.has_to)
	{
		pane = TribAdhocBin(call.slide_iv, call.from, call.origin);
		last_pane = TribAdhocBin(call.slide_iv, call.to - 1, call.origin);
	}
	else
	{
		TribAdhocScanEnd(workers);
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return;
	}
	if (call.has_from)
		pane = Min(pane, TribAdhocBin(call.slide_iv, call.from, call.origin));
	if (call.has_to)
		last_pane = Max(last_pane, TribAdhocBin(call.slide_iv, call.to - 1, call.origin));
	if (!TribQualityWindowsFit(pane, call.window, call.slide) ||
		!TribQualityWindowsFit(last_pane, call.window, call.slide))
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("timestamp out of range"),
				 errdetail("A window of the rows would start before %s or end after %s, which a timestamp cannot represent.",
						   "4714-11-24 00:00:00+00 BC", "294276-12-31 23:59:59.999999+00"),
				 errhint("Pass \"from\" and \"to\" to leave out rows at the ends of the timestamp range, or a shorter window.")));
	if ((last_pane - pane) / call.slide + per_window > TRIB_QUALITY_MAX_WINDOWS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("the rows span more than %d windows", TRIB_QUALITY_MAX_WINDOWS),
				 errhint("Pass \"from\" and \"to\", or a longer window or slide.")));

	empty = TribQualityWindowCreate(call.ncols, numeric, false, cxt);
	report = palloc(TribAdhocReportSize(kind->report, call.ncols));
	open = palloc0(sizeof(TribQualityWindow *) * per_window);
	for (int k = 1; k < per_window; k++)
		open[k] = TribAdhocWindow(&call, numeric, cxt);
	for (;; pane += call.slide)
	{
		TribQualityWindow *state = empty;
		void	   *done = NULL;

		CHECK_FOR_INTERRUPTS();
		if (p < panes.n && panes.starts[p] == pane)
		{
			state = panes.states[p];
			done = panes.reports[p++];
		}
		if (per_window == 1)
		{
			/* a tumbling window a parallel worker had alone comes as its report */
			if (state == NULL)
				kind->emit(rsinfo->setResult, rsinfo->setDesc, &call, pane, done);
			else
				TribAdhocEmitState(kind, rsinfo, &call, pane, state, report);
		}
		else
		{
			Assert(state != NULL);
			open[0] = TribAdhocWindow(&call, numeric, cxt);
			for (int k = 0; k < per_window; k++)
				TribQualityWindowMerge(open[k], state);
			TribAdhocEmitState(kind, rsinfo, &call, pane - (int64) (per_window - 1) * call.slide,
							   open[per_window - 1], report);
			MemoryContextDelete(open[per_window - 1]->cxt);
			memmove(open + 1, open, sizeof(TribQualityWindow *) * (per_window - 1));
		}
		if (pane >= last_pane)
			break;
	}
	/* the windows that cover the last pane and later ones, oldest first */
	for (int k = per_window - 1; k >= 1; k--)
		TribAdhocEmitState(kind, rsinfo, &call, pane - (int64) (k - 1) * call.slide, open[k],
						   report);
	/* the workers (if any) finished while the windows were reported */
	TribAdhocScanEnd(workers);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* tributary.window_quality(tbl, time_column, "window", slide, columns, key_column, "from", "to", origin) */
Datum
window_quality(PG_FUNCTION_ARGS)
{
	TribAdhocRun(fcinfo, &TribAdhocWindows);
	return (Datum) 0;
}

/* tributary.column_quality(the same) */
Datum
column_quality(PG_FUNCTION_ARGS)
{
	TribAdhocRun(fcinfo, &TribAdhocColumns);
	return (Datum) 0;
}
