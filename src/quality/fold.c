/*
 * fold.c
 *		The fold: late partials amend closed windows, windows the watermark passed close,
 *		partials are marked or dropped (see continuous.c's header); and how a closed
 *		window is stored.
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/datum.h"
#include "utils/float.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "stage.h"
#include "tributary.h"
#include "quality/adhoc.h"
#include "quality/continuous.h"
#include "quality/continuous_internal.h"
#include "quality/window.h"
#include "fanout/fanout.h"

/* ---------------------------------------------------------------------------------------
 * Writing windows and alerts
 * ---------------------------------------------------------------------------------------
 */

#define TRIB_QW_NARGS 21

/* A JSON timestamp (as to_json writes it) of t. */
static void
TribQualityJsonTime(StringInfo buf, const char *name, TimestampTz t)
{
	char		text[MAXDATELEN + 1];

	appendStringInfo(buf, ",\"%s\":", name);
	if (t == DT_NOBEGIN)
		appendStringInfoString(buf, "null");
	else
		appendStringInfo(buf, "\"%s\"", JsonEncodeDateTime(text, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL));
}

/* A JSON number, or null. */
static void
TribQualityJsonNumber(StringInfo buf, const char *name, bool has, double value)
{
	appendStringInfo(buf, ",\"%s\":", name);
	if (has && !isnan(value) && !isinf(value))
		appendStringInfoString(buf, float8out_internal(value));
	else
		appendStringInfoString(buf, "null");
}

/*
 * A closed (or amended) window on the stream's quality channel, tributary.<stream>.quality:
 * its window metrics as JSON (docs/fanout.md).
 */
static void
TribQualityWindowNotify(TribQualityConfig *cfg, TimestampTz start, const TribQualityWindow *w,
						int revision, const TribQualityWindowMetrics *m)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"stream\":");
	escape_json(&buf, cfg->stream);
	TribQualityJsonTime(&buf, "window_start", start);
	TribQualityJsonTime(&buf, "window_end", start + cfg->window);
	appendStringInfo(&buf, ",\"revision\":%d,\"rows\":" INT64_FORMAT ",\"duplicates\":" INT64_FORMAT,
					 revision, (int64) m->rows, m->duplicates);
	for (int c = 0; c < TRIB_QC_COUNT; c++)
		TribQualityJsonNumber(&buf, TribQualityComponentNames[c], m->has_component[c], m->component[c]);
	appendStringInfo(&buf, ",\"outliers\":" INT64_FORMAT, m->outliers);
	TribQualityJsonNumber(&buf, "quality_score", m->has_score, m->score);
	TribQualityJsonTime(&buf, "newest_event", w->newest_event);
	appendStringInfo(&buf, ",\"dead_letters\":" INT64_FORMAT ",\"late_rows\":" INT64_FORMAT "}",
					 (int64) w->dead, (int64) w->late);
	TribFanoutQuality(cfg->stream, buf.data);
}

/* The element types of the metric arrays TribQualityColumnsStore unnests, in its order. */
static const Oid TribQualityColumnTypes[] = {
	TEXTOID, INT8OID, INT8OID, FLOAT8OID, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
	FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID, FLOAT8OID,
};
#define TRIB_QC_METRICS lengthof(TribQualityColumnTypes)

/*
 * The rows of window w (its key and revision in v, as TribQualityWindowStore has them) in
 * quality_columns, all in one statement: one array per metric, unnested.
 */
static void
TribQualityColumnsStore(TribQualityConfig *cfg, const TribQualityWindow *w, const Datum *v, int revision)
{
	Oid			types[4 + TRIB_QC_METRICS] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID};
	Datum		args[4 + TRIB_QC_METRICS] = {v[0], v[1], v[2], Int32GetDatum(revision)};
	Datum	   *values[TRIB_QC_METRICS];
	bool	   *nulls[TRIB_QC_METRICS];
	int			ncols = w->ncols;

	for (int k = 0; k < (int) TRIB_QC_METRICS; k++)
	{
		values[k] = palloc(sizeof(Datum) * ncols);
		nulls[k] = palloc0(sizeof(bool) * ncols);
	}
	for (int c = 0; c < ncols; c++)
	{
		TribQualityColumnMetrics cm;
		bool		num;
		int			k = 0;

		TribQualityColumnRead(w, c, &cm, true);
		num = cm.numeric && cm.has_values;
#define TRIB_QC_SET(d, isnull) (nulls[k][c] = (isnull), values[k++][c] = (d))
		TRIB_QC_SET(CStringGetTextDatum(cfg->columns[c]), false);
		TRIB_QC_SET(Int64GetDatum((int64) cm.rows), false);
		TRIB_QC_SET(Int64GetDatum((int64) cm.non_null), false);
		TRIB_QC_SET(Float8GetDatum(cm.completeness), cm.rows == 0);
		TRIB_QC_SET(Int64GetDatum(cm.distinct_count), false);
		TRIB_QC_SET(Float8GetDatum(cm.mean), !num);
		TRIB_QC_SET(Float8GetDatum(cm.stddev), !(num && cm.has_stddev));
		TRIB_QC_SET(Float8GetDatum(cm.min), !num);
		TRIB_QC_SET(Float8GetDatum(cm.max), !num);
		TRIB_QC_SET(Float8GetDatum(cm.p50), !num);
		TRIB_QC_SET(Float8GetDatum(cm.p90), !num);
		TRIB_QC_SET(Float8GetDatum(cm.p99), !num);
		TRIB_QC_SET(Int64GetDatum(cm.outliers), !num);
		TRIB_QC_SET(Float8GetDatum(cm.outlier_rate), !num);
#undef TRIB_QC_SET
		Assert(k == (int) TRIB_QC_METRICS);
	}
	for (int k = 0; k < (int) TRIB_QC_METRICS; k++)
	{
		int16		typlen;
		bool		typbyval;
		char		typalign;
		int			dims[1] = {ncols};
		int			lbs[1] = {1};

		get_typlenbyvalalign(TribQualityColumnTypes[k], &typlen, &typbyval, &typalign);
		types[4 + k] = get_array_type(TribQualityColumnTypes[k]);
		args[4 + k] = PointerGetDatum(construct_md_array(values[k], nulls[k], 1, dims, lbs,
														 TribQualityColumnTypes[k], typlen,
														 typbyval, typalign));
	}
	StaticAssertStmt(lengthof(types) == 18, "the statement below has 18 parameters");
	TribQualitySpi("INSERT INTO tributary.quality_columns (stream, window_start, window_end, revision, "
				   "column_name, rows, non_null, completeness, distinct_count, mean, stddev, min, max, "
				   "p50, p90, p99, outliers, outlier_rate) SELECT $1, $2, $3, $4, c.* FROM ROWS FROM ("
				   "pg_catalog.unnest($5), pg_catalog.unnest($6), pg_catalog.unnest($7), "
				   "pg_catalog.unnest($8), pg_catalog.unnest($9), pg_catalog.unnest($10), "
				   "pg_catalog.unnest($11), pg_catalog.unnest($12), pg_catalog.unnest($13), "
				   "pg_catalog.unnest($14), pg_catalog.unnest($15), pg_catalog.unnest($16), "
				   "pg_catalog.unnest($17), pg_catalog.unnest($18)) AS c",
				   lengthof(types), types, args, NULL, SPI_OK_INSERT);
}

/*
 * Insert (revision 0) or update (an amendment) a closed window and its columns. closed_at
 * is the window's first closing time (freshness is measured at it).
 */
void
TribQualityWindowStore(TribQualityConfig *cfg, TimestampTz start, const TribQualityWindow *w,
					   TimestampTz closed_at, int revision, TribQualityWindowMetrics *m)
{
	Oid			types[TRIB_QW_NARGS] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, INT4OID, INT8OID,
		INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, INT8OID, FLOAT8OID,
	TIMESTAMPTZOID, INT8OID, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, TIMESTAMPTZOID, BYTEAOID};
	Datum		v[TRIB_QW_NARGS];
	char		n[TRIB_QW_NARGS + 1];
	int			i = 0;
	double		lag;
	bool		inserted = false;

	memset(n, ' ', TRIB_QW_NARGS);
	n[TRIB_QW_NARGS] = '\0';
	TribQualityWindowRead(w, cfg->weights, m);
	v[i++] = CStringGetTextDatum(cfg->stream);
	v[i++] = TimestampTzGetDatum(start);
	v[i++] = TimestampTzGetDatum(start + cfg->window);
	v[i++] = Int32GetDatum(revision);
	v[i++] = Int64GetDatum((int64) m->rows);
	v[i++] = Int64GetDatum(m->duplicates);
	for (int c = 0; c < TRIB_QC_COUNT; c++)
	{
		n[i] = m->has_component[c] ? ' ' : 'n';
		v[i++] = Float8GetDatum(m->component[c]);
	}
	v[i++] = Int64GetDatum(m->outliers);
	n[i] = m->has_score ? ' ' : 'n';
	v[i++] = Float8GetDatum(m->score);
	n[i] = w->newest_event == DT_NOBEGIN ? 'n' : ' ';
	v[i++] = TimestampTzGetDatum(w->newest_event);
	v[i++] = Int64GetDatum((int64) w->dead);
	v[i++] = Int64GetDatum((int64) w->late);
	for (int q = 0; q < 3; q++)
	{
		static const double qs[3] = {0.5, 0.9, 0.99};

		n[i] = TribDdsQuantile(&w->lag, qs[q], &lag) ? ' ' : 'n';
		v[i++] = Float8GetDatum(lag);
	}
	v[i++] = TimestampTzGetDatum(closed_at);
	v[i++] = PointerGetDatum(TribQualityWindowSerialize(w));
	Assert(i == TRIB_QW_NARGS);
	/*
	 * the window: a new one inserted (a close); an amended one, or one closed again after
	 * set_quality started over, updated with its columns deleted
	 */
	if (revision == 0)
	{
		TribQualitySpi("INSERT INTO tributary.quality_windows (stream, window_start, window_end, "
					   "revision, rows, duplicates, completeness, uniqueness, validity, timeliness, "
					   "consistency, outliers, quality_score, newest_event, dead_letters, late_rows, "
					   "lag_p50, lag_p90, lag_p99, freshness, closed_at, state) VALUES ($1, $2, $3, $4, "
					   "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
					   "$20 - $14, $20, $21) ON CONFLICT (stream, window_start) DO NOTHING",
					   TRIB_QW_NARGS, types, v, n, SPI_OK_INSERT);
		inserted = SPI_processed > 0;
	}
	if (!inserted)
	{
		Oid			dtypes[2] = {TEXTOID, TIMESTAMPTZOID};

		TribQualitySpi("UPDATE tributary.quality_windows SET window_end = $3, revision = $4, "
					   "rows = $5, duplicates = $6, completeness = $7, uniqueness = $8, validity = $9, "
					   "timeliness = $10, consistency = $11, outliers = $12, quality_score = $13, "
					   "newest_event = $14, dead_letters = $15, late_rows = $16, lag_p50 = $17, "
					   "lag_p90 = $18, lag_p99 = $19, freshness = $20 - $14, closed_at = $20, "
					   "state = $21 WHERE stream = $1 AND window_start = $2",
					   TRIB_QW_NARGS, types, v, n, SPI_OK_UPDATE);
		TribQualitySpi("DELETE FROM tributary.quality_columns WHERE stream = $1 AND window_start = $2",
					   2, dtypes, v, NULL, SPI_OK_DELETE);
	}
	TribQualityWindowNotify(cfg, start, w, revision, m);
	if (w->ncols > 0)
		TribQualityColumnsStore(cfg, w, v, revision);
}

/* ---------------------------------------------------------------------------------------
 * The fold
 * ---------------------------------------------------------------------------------------
 */

/* An empty window of cfg's columns (their numeric flags from the target's types). */
TribQualityWindow *
TribQualityEmptyWindow(TribQualityConfig *cfg, const bool *numeric, MemoryContext cxt)
{
	return TribQualityWindowCreate(cfg->ncols, numeric, true, cxt);
}

/* The new rows of one closed window, gathered from the partials that cover it. */
typedef struct TribQualityAmendEntry
{
	TimestampTz start;
	TribQualityWindow *extra;
} TribQualityAmendEntry;

static int
TribCompareTimestamps(const void *a, const void *b)
{
	TimestampTz x = *(const TimestampTz *) a;
	TimestampTz y = *(const TimestampTz *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

/* Amend closed window start with extra (late rows): merged, metrics again, revision + 1. */
static void
TribQualityAmend(TribQualityConfig *cfg, TimestampTz start, const TribQualityWindow *extra)
{
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->stream), TimestampTzGetDatum(start)};
	bool		isnull;
	bytea	   *b;
	TribQualityWindow *w;
	int			revision;
	TimestampTz closed_at;
	TribQualityWindowMetrics m;

	TribQualitySpi("SELECT state, revision, closed_at FROM tributary.quality_windows "
				   "WHERE stream = $1 AND window_start = $2 FOR UPDATE",
				   2, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		/*
		 * a window before the stream's first (or deleted by hand, perhaps without its
		 * columns): the late rows make it
		 */
		TribQualityWindowMetrics m;

		TribQualitySpi("DELETE FROM tributary.quality_columns WHERE stream = $1 AND window_start = $2",
					   2, types, values, NULL, SPI_OK_DELETE);
		TribQualityWindowStore(cfg, start, extra, GetCurrentTimestamp(), 0, &m);
		return;
	}
	b = DatumGetByteaPP(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	revision = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
	closed_at = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	w = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), CurrentMemoryContext);
	TribQualityWindowMerge(w, extra);
	TribQualityWindowStore(cfg, start, w, closed_at, revision + 1, &m);
}

/* The numeric flags of cfg's columns in the stream's target (a column gone reads as text). */
bool *
TribQualityNumericFlags(TribQualityConfig *cfg, Oid target)
{
	bool	   *numeric = palloc0(sizeof(bool) * Max(cfg->ncols, 1));

	for (int c = 0; c < cfg->ncols; c++)
	{
		AttrNumber	att = get_attnum(target, cfg->columns[c]);

		numeric[c] = att != InvalidAttrNumber && TribQualityTypeIsNumeric(get_atttype(target, att));
	}
	return numeric;
}

/* Insert one partial: pane's state w, of a batch that arrived then. */
void
TribQualityStorePartial(TribQualityConfig *cfg, TimestampTz pane, const TribQualityWindow *w,
						TimestampTz arrived, bool folded)
{
	Oid			types[6] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BYTEAOID, BOOLOID};
	Datum		v[6];
	char		n[7] = "      ";

	v[0] = CStringGetTextDatum(cfg->stream);
	v[1] = TimestampTzGetDatum(pane);
	v[2] = TimestampTzGetDatum(w->newest_event);
	n[2] = w->newest_event == DT_NOBEGIN ? 'n' : ' ';
	v[3] = TimestampTzGetDatum(arrived);
	v[4] = PointerGetDatum(TribQualityWindowSerialize(w));
	v[5] = BoolGetDatum(folded);
	TribQualitySpi("INSERT INTO tributary.quality_partials (stream, pane_start, newest_event, "
				   "arrived, state, folded) VALUES ($1, $2, $3, $4, $5, $6)", 6, types, v, n, SPI_OK_INSERT);
}

/* partials of one pane kept apart at most; more are merged into one by the fold */
#define TRIB_QUALITY_PANE_PARTIALS 64

/* Read the partials of panes before bound (DT_NOEND: every pane), in pane order. */
TribQualityPartial *
TribQualityReadPartials(TribQualityConfig *cfg, TimestampTz bound, int *n, MemoryContext cxt)
{
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2] = {CStringGetTextDatum(cfg->stream), TimestampTzGetDatum(bound)};
	TribQualityPartial *parts;

	TribQualitySpi("SELECT pane_start, state, folded FROM tributary.quality_partials "
				   "WHERE stream = $1 AND pane_start < $2 ORDER BY pane_start, folded DESC",
				   2, types, values, NULL, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	parts = MemoryContextAlloc(cxt, sizeof(TribQualityPartial) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *b;

		parts[i].pane = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
		b = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
		parts[i].state = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), cxt);
		parts[i].folded = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	}
	return parts;
}

/* Merge the partials of panes holding more than TRIB_QUALITY_PANE_PARTIALS (one per flag). */
static void
TribQualityCompact(TribQualityConfig *cfg, const bool *numeric, MemoryContext cxt)
{
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, BOOLOID};
	Datum		v[3] = {CStringGetTextDatum(cfg->stream)};
	int			npanes;
	TimestampTz *panes;

	TribQualitySpi(psprintf("SELECT pane_start FROM tributary.quality_partials WHERE stream = $1 "
							"GROUP BY pane_start HAVING count(*) > %d", TRIB_QUALITY_PANE_PARTIALS),
				   1, types, v, NULL, SPI_OK_SELECT);
	npanes = (int) SPI_processed;
	panes = palloc(sizeof(TimestampTz) * Max(npanes, 1));
	for (int i = 0; i < npanes; i++)
	{
		bool		isnull;

		panes[i] = DatumGetTimestampTz(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
	}
	for (int i = 0; i < npanes; i++)
		for (int f = 0; f < 2; f++)
		{
			TribQualityWindow *merged = TribQualityEmptyWindow(cfg, numeric, cxt);
			TimestampTz arrived = 0;

			v[1] = TimestampTzGetDatum(panes[i]);
			v[2] = BoolGetDatum(f == 1);
			TribQualitySpi("DELETE FROM tributary.quality_partials WHERE stream = $1 AND pane_start = $2 "
						   "AND folded = $3 RETURNING state, arrived",
						   3, types, v, NULL, SPI_OK_DELETE_RETURNING);
			if (SPI_processed == 0)
				continue;
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				HeapTuple	tup = SPI_tuptable->vals[r];
				bool		isnull;
				bytea	   *b = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));

				TribQualityWindowMerge(merged, TribQualityWindowDeserialize(VARDATA_ANY(b),
																			VARSIZE_ANY_EXHDR(b), cxt));
				arrived = Max(arrived, DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)));
			}
			/* its newest event: the merged states', the largest of theirs as stored */
			TribQualityStorePartial(cfg, panes[i], merged, arrived, f == 1);
		}
}

/*
 * Fold the stream's partials (see the file header), as of now; under the fold lock in
 * ExclusiveLock mode, SPI connected, as the extension's owner. Only the partials of panes
 * that a closed (or now closing) window covers are read. mine (or NULL): the folding
 * batch's own partials, merged as if stored and then stored unless every window that
 * covers their pane is closed (they would be deleted in this transaction). Returns the
 * windows closed.
 */
int
TribQualityFold(TribQualityConfig *cfg, Oid target, TimestampTz now, const TribQualityUnstored *mine,
				TribPendingList *pending)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary quality fold",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	bool	   *numeric = TribQualityNumericFlags(cfg, target);
	int			per_window = (int) (cfg->window / cfg->slide);
	int64		reach = (int64) (per_window - 1) * cfg->slide;
	Oid			types[2] = {TEXTOID, TIMESTAMPTZOID};
	Datum		v[2];
	bool		has_pane;
	TimestampTz first_pane = 0;
	bool		has_stored;
	TimestampTz first_stored = 0;
	TimestampTz first_open;
	TimestampTz next_open;
	TimestampTz watermark = DT_NOBEGIN;
	int64		npartials = 0;
	int			nstored;
	int			nparts;
	TribQualityPartial *parts;
	int			closed = 0;

	/* 0. the newest event, the last arrival and the first pane, from the partials */
	v[0] = CStringGetTextDatum(cfg->stream);
	TribQualitySpi("SELECT max(newest_event), max(arrived), min(pane_start), count(*) "
				   "FROM tributary.quality_partials WHERE stream = $1",
				   1, types, v, NULL, SPI_OK_SELECT);
	{
		HeapTuple	tup = SPI_tuptable->vals[0];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;

		d = SPI_getbinval(tup, desc, 1, &isnull);
		if (!isnull && (!cfg->has_newest || DatumGetTimestampTz(d) > cfg->newest_event))
		{
			cfg->newest_event = DatumGetTimestampTz(d);
			cfg->has_newest = true;
		}
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull && (!cfg->has_arrival || DatumGetTimestampTz(d) > cfg->last_arrival))
		{
			cfg->last_arrival = DatumGetTimestampTz(d);
			cfg->has_arrival = true;
		}
		d = SPI_getbinval(tup, desc, 3, &has_stored);
		has_stored = !has_stored;
		if (has_stored)
			first_stored = DatumGetTimestampTz(d);
		npartials = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
	}
	/* and from the batch's own */
	has_pane = has_stored;
	first_pane = first_stored;
	for (int i = 0; mine != NULL && i < mine->n; i++)
	{
		TimestampTz newest = mine->parts[i].state->newest_event;

		if (newest != DT_NOBEGIN && (!cfg->has_newest || newest > cfg->newest_event))
		{
			cfg->newest_event = newest;
			cfg->has_newest = true;
		}
		if (!cfg->has_arrival || mine->arrived > cfg->last_arrival)
		{
			cfg->last_arrival = mine->arrived;
			cfg->has_arrival = true;
		}
		if (!has_pane || mine->parts[i].pane < first_pane)
			first_pane = mine->parts[i].pane;
		has_pane = true;
	}
	if (!has_pane && !cfg->has_closed)
	{
		MemoryContextSwitchTo(old);
		MemoryContextDelete(cxt);
		return 0;
	}

	/* 1. the watermark, moved on by the wall clock while the stream is silent */
	if (cfg->has_newest)
	{
		int64		silent = cfg->has_arrival ? now - cfg->last_arrival - cfg->grace : 0;

		watermark = cfg->newest_event - cfg->lateness + Max(silent, 0);
	}
	first_open = cfg->has_closed ? cfg->closed_until : first_pane - reach;
	next_open = first_open;
	while (watermark != DT_NOBEGIN && next_open + cfg->window <= watermark &&
		   closed < TRIB_QUALITY_CLOSE_MAX)
	{
		next_open += cfg->slide;
		closed++;
	}

	/*
	 * the partials of panes a closed window covers (its earliest window started before
	 * next_open): none when the stream's first pane is past them, as in most folds of a
	 * stream read in order, which then spare the statement
	 */
	if (has_stored && first_stored < next_open + reach)
		parts = TribQualityReadPartials(cfg, next_open + reach, &nstored, cxt);
	else
	{
		parts = NULL;
		nstored = 0;
	}
	/* the batch's own partials of those panes, after them */
	nparts = nstored;
	if (mine != NULL && mine->n > 0)
	{
		parts = parts == NULL ? palloc(sizeof(TribQualityPartial) * mine->n) :
			repalloc(parts, sizeof(TribQualityPartial) * (nstored + mine->n));
		for (int i = 0; i < mine->n; i++)
			if (mine->parts[i].pane < next_open + reach)
				parts[nparts++] = mine->parts[i];
	}

	/* 2. new partials of panes whose windows closed before amend them, once per window */
	{
		HASHCTL		ctl = {0};
		HTAB	   *amend;
		HASH_SEQ_STATUS seq;
		TribQualityAmendEntry *e;
		TimestampTz *starts;
		int			nstarts = 0;

		ctl.keysize = sizeof(TimestampTz);
		ctl.entrysize = sizeof(TribQualityAmendEntry);
		ctl.hcxt = cxt;
		amend = hash_create("tributary quality amendments", 64, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
		for (int i = 0; i < nparts; i++)
		{
			if (parts[i].folded)
				continue;
			for (int k = 0; k < per_window; k++)
			{
				TimestampTz s = parts[i].pane - (int64) k * cfg->slide;
				bool		found;

				if (s >= first_open)
					continue;
				e = hash_search(amend, &s, HASH_ENTER, &found);
				if (!found)
					e->extra = TribQualityEmptyWindow(cfg, numeric, cxt);
				TribQualityWindowMerge(e->extra, parts[i].state);
			}
		}
		starts = palloc(sizeof(TimestampTz) * Max(hash_get_num_entries(amend), 1));
		hash_seq_init(&seq, amend);
		while ((e = hash_seq_search(&seq)) != NULL)
			starts[nstarts++] = e->start;
		qsort(starts, nstarts, sizeof(TimestampTz), TribCompareTimestamps);
		for (int i = 0; i < nstarts; i++)
		{
			e = hash_search(amend, &starts[i], HASH_FIND, NULL);
			TribQualityAmend(cfg, starts[i], e->extra);
		}
	}

	/* 3. close every window the watermark passed, in order */
	for (TimestampTz start = first_open; start < next_open; start += cfg->slide)
	{
		TribQualityWindow *w = TribQualityEmptyWindow(cfg, numeric, cxt);
		TribQualityWindowMetrics m;

		for (int i = 0; i < nparts; i++)
			if (parts[i].pane >= start && parts[i].pane < start + cfg->window)
				TribQualityWindowMerge(w, parts[i].state);
		TribQualityWindowStore(cfg, start, w, now, 0, &m);
		TribQualityEpisode(cfg, start, w, &m, now, pending);
	}
	/* the stream's windows start at its first pane until one closes: none closed, none are */
	if (closed > 0 || cfg->has_closed)
	{
		cfg->closed_until = next_open;
		cfg->has_closed = true;
	}

	/*
	 * 4. the partials read are now in every closed window that covers them: gone when the
	 * window starting at their pane (their last) is closed, else marked folded
	 */
	if (nstored > 0)
	{
		Datum		dv[2] = {v[0], TimestampTzGetDatum(next_open)};
		Datum		fv[2] = {v[0], TimestampTzGetDatum(next_open + reach)};

		TribQualitySpi("DELETE FROM tributary.quality_partials WHERE stream = $1 AND pane_start < $2",
					   2, types, dv, NULL, SPI_OK_DELETE);
		TribQualitySpi("UPDATE tributary.quality_partials SET folded = true "
					   "WHERE stream = $1 AND pane_start < $2 AND NOT folded",
					   2, types, fv, NULL, SPI_OK_UPDATE);
	}
	/* the batch's own, the same way: only those an open window covers are stored */
	for (int i = 0; mine != NULL && i < mine->n; i++)
		if (mine->parts[i].pane >= next_open)
		{
			TribQualityStorePartial(cfg, mine->parts[i].pane, mine->parts[i].state, mine->arrived,
									mine->parts[i].pane < next_open + reach);
			npartials++;
		}
	/* no pane can hold more partials than the stream has: then none needs compacting */
	if (npartials > TRIB_QUALITY_PANE_PARTIALS)
		TribQualityCompact(cfg, numeric, cxt);

	/* 5. the progress */
	{
		Oid			utypes[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID};
		Datum		uv[5];
		char		un[6] = "     ";

		uv[0] = v[0];
		uv[1] = TimestampTzGetDatum(cfg->newest_event);
		un[1] = cfg->has_newest ? ' ' : 'n';
		uv[2] = TimestampTzGetDatum(cfg->last_arrival);
		un[2] = cfg->has_arrival ? ' ' : 'n';
		uv[3] = TimestampTzGetDatum(cfg->closed_until);
		un[3] = cfg->has_closed ? ' ' : 'n';
		uv[4] = BoolGetDatum(cfg->alerting);
		TribQualitySpi("UPDATE tributary.quality_config SET newest_event = $2, last_arrival = $3, "
					   "closed_until = $4, alerting = $5 WHERE stream = $1",
					   5, utypes, uv, un, SPI_OK_UPDATE);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return closed;
}
