/*
 * continuous.c
 *		Continuous quality windows per stream (tributary.set_quality): the quality stage,
 *		the fold that closes and amends windows, alerts, and the SQL functions.
 *
 * The stage runs in every batch's transaction, after the rows are in. It summarizes the
 * batch's rows per pane (one slide of event time, aligned as date_bin aligns it) into
 * window states (window.h) and inserts one row per pane into tributary.quality_partials:
 * insert-only, so any number of sessions and workers write one stream at once without
 * waiting on each other, and the partial states commit or vanish with the batch's rows
 * and source positions (crash identity needs nothing else).
 *
 * The fold turns partials into closed windows. It runs under the stream's fold lock in
 * ExclusiveLock mode, while every batch holds it in ShareLock mode until it commits, so a
 * fold sees every partial written before it and none is being written during it. A batch
 * tries to upgrade its lock without waiting once its partials are in: it succeeds when it
 * is the only batch of the stream in flight (always so for one worker), and then folds in
 * its own transaction. Otherwise the next batch that finds itself alone, the launcher's
 * tick (every naptime, without waiting either) or tributary.close_quality_windows (which
 * waits) folds. A batch never waits for the lock in ExclusiveLock mode, so no deadlock.
 *
 * The fold:
 *	1. the watermark: newest event time seen - allowed lateness, moved on by the wall clock
 *	   while the stream is silent (plus the time since the last batch beyond grace);
 *	2. amends each closed window that a new partial covers (late rows): merged state,
 *	   metrics again, revision + 1;
 *	3. closes, in order, every window whose end the watermark passed: the merge of its
 *	   panes' partials, its metrics into quality_windows and quality_columns, alerts;
 *	4. replaces the partials of each pane by one merged partial marked folded (already in
 *	   every closed window), or none when all its windows are closed;
 *	5. stores the progress (newest event, last arrival, the next window to close, whether
 *	   an alert episode is open) in quality_config.
 * Windows are closed in the transaction of the batch (or tick) that folds them.
 *
 * Rows without an event time (null or infinite) belong to no window. Dead-lettered
 * messages count towards the pane of the batch's newest event time (or the stream's, or
 * the batch's arrival). A row is late when its event time is behind the watermark of the
 * stream's last fold when its batch ran.
 *
 * Everything here reads and writes tributary's own tables as the extension's owner
 * (TribBecomeExtensionOwner); an on_alert handler runs as the stream's owner inside a
 * security-restricted operation and a subtransaction of its own, so its error is recorded
 * on the alert and never fails the batch.
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
#include "utils/builtins.h"
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
#include "quality/window.h"

PG_FUNCTION_INFO_V1(tributary_set_quality);
PG_FUNCTION_INFO_V1(tributary_drop_quality);
PG_FUNCTION_INFO_V1(tributary_quality_now);
PG_FUNCTION_INFO_V1(tributary_close_quality_windows);

/* the fold lock's tag: an advisory-style lock tributary alone takes (field 4) */
#define TRIB_QUALITY_LOCK_KIND 0x5451
/* windows one fold closes at most (the rest close at the next) */
#define TRIB_QUALITY_CLOSE_MAX 10000
#define TRIB_ALERT_CHANNEL "tributary.alerts"

/* A stream's quality settings and progress, as quality_config holds them. */
typedef struct TribQualityConfig
{
	char	   *stream;
	int32		stream_id;
	Oid			owner;
	Interval   *window_iv;
	Interval   *slide_iv;
	int64		window;
	int64		slide;
	int64		lateness;
	int64		grace;
	TimestampTz origin;
	int			ncols;
	char	  **columns;
	Jsonb	   *thresholds;
	double		weights[TRIB_QC_COUNT];
	Oid			on_alert;
	char	   *key_column;		/* NULL: the stream's */
	bool		has_newest;
	TimestampTz newest_event;
	bool		has_arrival;
	TimestampTz last_arrival;
	bool		has_closed;
	TimestampTz closed_until;	/* windows that start before it are closed */
	bool		alerting;
} TribQualityConfig;

/* An alert whose on_alert handler runs once tributary's own writes are done. */
typedef struct TribPendingAlert
{
	char	   *stream;
	Oid			owner;
	Oid			handler;
	int64		id;
	char	   *payload;
} TribPendingAlert;

/* Alerts whose handlers are to run, in the memory of whoever asked for the fold. */
typedef struct TribPendingList
{
	List	   *alerts;
	MemoryContext cxt;
} TribPendingList;

/* One partial as the fold reads it. */
typedef struct TribQualityPartial
{
	TimestampTz pane;
	bool		folded;
	TribQualityWindow *state;
} TribQualityPartial;

static const char *TribQualityConfigColumns =
"c.\"window\", c.slide, c.allowed_lateness, c.grace, c.origin, c.columns, c.thresholds, "
"c.weights, c.on_alert::pg_catalog.oid, c.newest_event, c.last_arrival, c.closed_until, "
"c.alerting, s.id, s.owner::pg_catalog.oid, c.key_column";

/* ---------------------------------------------------------------------------------------
 * Reading the settings
 * ---------------------------------------------------------------------------------------
 */

/* An interval's microseconds (checked when stored). */
static int64
TribIntervalUsecs(Interval *iv)
{
	return iv->day * USECS_PER_DAY + iv->time;
}

/* The weights object of quality_config as an array by component. */
static void
TribQualityReadWeights(Jsonb *weights, double *out)
{
	for (int i = 0; i < TRIB_QC_COUNT; i++)
	{
		JsonbValue	key;
		JsonbValue *v;

		key.type = jbvString;
		key.val.string.val = (char *) TribQualityComponentNames[i];
		key.val.string.len = strlen(TribQualityComponentNames[i]);
		v = findJsonbValueFromContainer(&weights->root, JB_FOBJECT, &key);
		out[i] = (v != NULL && v->type == jbvNumeric) ?
			DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric))) : 0;
	}
}

/* The config from the current SPI result row (TribQualityConfigColumns), in cxt. */
static TribQualityConfig *
TribQualityConfigFromTuple(const char *stream, HeapTuple tup, TupleDesc desc, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TribQualityConfig *cfg = palloc0(sizeof(TribQualityConfig));
	bool		isnull;
	Datum		d;

	cfg->stream = pstrdup(stream);
	cfg->window_iv = DatumGetIntervalP(datumCopy(SPI_getbinval(tup, desc, 1, &isnull), false, sizeof(Interval)));
	cfg->slide_iv = DatumGetIntervalP(datumCopy(SPI_getbinval(tup, desc, 2, &isnull), false, sizeof(Interval)));
	cfg->window = TribIntervalUsecs(cfg->window_iv);
	cfg->slide = TribIntervalUsecs(cfg->slide_iv);
	cfg->lateness = TribIntervalUsecs(DatumGetIntervalP(SPI_getbinval(tup, desc, 3, &isnull)));
	cfg->grace = TribIntervalUsecs(DatumGetIntervalP(SPI_getbinval(tup, desc, 4, &isnull)));
	cfg->origin = DatumGetTimestampTz(SPI_getbinval(tup, desc, 5, &isnull));
	{
		Datum	   *elems;
		bool	   *nulls;

		deconstruct_array(DatumGetArrayTypeP(SPI_getbinval(tup, desc, 6, &isnull)), TEXTOID, -1,
						  false, TYPALIGN_INT, &elems, &nulls, &cfg->ncols);
		cfg->columns = palloc(sizeof(char *) * Max(cfg->ncols, 1));
		for (int i = 0; i < cfg->ncols; i++)
			cfg->columns[i] = TextDatumGetCString(elems[i]);
	}
	cfg->thresholds = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 7, &isnull));
	TribQualityReadWeights(DatumGetJsonbP(SPI_getbinval(tup, desc, 8, &isnull)), cfg->weights);
	d = SPI_getbinval(tup, desc, 9, &isnull);
	cfg->on_alert = isnull ? InvalidOid : DatumGetObjectId(d);
	d = SPI_getbinval(tup, desc, 10, &cfg->has_newest);
	cfg->has_newest = !cfg->has_newest;
	cfg->newest_event = cfg->has_newest ? DatumGetTimestampTz(d) : 0;
	d = SPI_getbinval(tup, desc, 11, &cfg->has_arrival);
	cfg->has_arrival = !cfg->has_arrival;
	cfg->last_arrival = cfg->has_arrival ? DatumGetTimestampTz(d) : 0;
	d = SPI_getbinval(tup, desc, 12, &cfg->has_closed);
	cfg->has_closed = !cfg->has_closed;
	cfg->closed_until = cfg->has_closed ? DatumGetTimestampTz(d) : 0;
	cfg->alerting = DatumGetBool(SPI_getbinval(tup, desc, 13, &isnull));
	cfg->stream_id = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
	cfg->owner = DatumGetObjectId(SPI_getbinval(tup, desc, 15, &isnull));
	d = SPI_getbinval(tup, desc, 16, &isnull);
	cfg->key_column = isnull ? NULL : TextDatumGetCString(d);
	MemoryContextSwitchTo(old);
	return cfg;
}

/* Run sql (SPI connected, as the extension's owner); an error unless it returns expect. */
static void
TribQualitySpi(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			   int expect)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "tributary quality: statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/* The stream's quality config, or NULL (SPI connected, as the extension's owner). */
static TribQualityConfig *
TribQualityConfigLoad(const char *stream, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};

	TribQualitySpi(psprintf("SELECT %s FROM tributary.quality_config c "
							"JOIN tributary.stream_catalog s ON s.name = c.stream WHERE c.stream = $1",
							TribQualityConfigColumns),
				   1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	return TribQualityConfigFromTuple(stream, SPI_tuptable->vals[0], SPI_tuptable->tupdesc, cxt);
}

/* ---------------------------------------------------------------------------------------
 * The fold lock
 * ---------------------------------------------------------------------------------------
 */

static void
TribQualityLockTag(LOCKTAG *tag, int32 stream_id)
{
	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, (uint32) stream_id, 0, TRIB_QUALITY_LOCK_KIND);
}

/* Take the stream's fold lock in mode until the transaction ends; false if !wait and busy. */
static bool
TribQualityLock(int32 stream_id, LOCKMODE mode, bool wait)
{
	LOCKTAG		tag;

	TribQualityLockTag(&tag, stream_id);
	return LockAcquire(&tag, mode, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* ---------------------------------------------------------------------------------------
 * Writing windows and alerts
 * ---------------------------------------------------------------------------------------
 */

#define TRIB_QW_NARGS 21

/*
 * Insert (revision 0) or update (an amendment) a closed window and its columns. closed_at
 * is the window's first closing time (freshness is measured at it).
 */
static void
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
	TribQualitySpi("INSERT INTO tributary.quality_windows AS q (stream, window_start, window_end, "
				   "revision, rows, duplicates, completeness, uniqueness, validity, timeliness, "
				   "consistency, outliers, quality_score, newest_event, dead_letters, late_rows, "
				   "lag_p50, lag_p90, lag_p99, freshness, closed_at, state) VALUES ($1, $2, $3, $4, "
				   "$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, "
				   "$20 - $14, $20, $21) ON CONFLICT (stream, window_start) DO UPDATE SET "
				   "window_end = excluded.window_end, revision = excluded.revision, "
				   "rows = excluded.rows, duplicates = excluded.duplicates, "
				   "completeness = excluded.completeness, uniqueness = excluded.uniqueness, "
				   "validity = excluded.validity, timeliness = excluded.timeliness, "
				   "consistency = excluded.consistency, outliers = excluded.outliers, "
				   "quality_score = excluded.quality_score, newest_event = excluded.newest_event, "
				   "dead_letters = excluded.dead_letters, late_rows = excluded.late_rows, "
				   "lag_p50 = excluded.lag_p50, lag_p90 = excluded.lag_p90, lag_p99 = excluded.lag_p99, "
				   "freshness = excluded.freshness, closed_at = excluded.closed_at, state = excluded.state",
				   TRIB_QW_NARGS, types, v, n, SPI_OK_INSERT);

	/* the columns: replaced whole */
	{
		Oid			dtypes[2] = {TEXTOID, TIMESTAMPTZOID};

		TribQualitySpi("DELETE FROM tributary.quality_columns WHERE stream = $1 AND window_start = $2",
					   2, dtypes, v, NULL, SPI_OK_DELETE);
	}
	for (int c = 0; c < w->ncols; c++)
	{
		Oid			ctypes[18] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT4OID, INT8OID,
			INT8OID, FLOAT8OID, INT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID, FLOAT8OID,
		FLOAT8OID, FLOAT8OID, INT8OID, FLOAT8OID};
		Datum		cv[18];
		char		cn[19];
		TribQualityColumnMetrics cm;
		bool		num;
		int			j = 0;

		memset(cn, ' ', 18);
		cn[18] = '\0';
		TribQualityColumnRead(w, c, &cm, true);
		num = cm.numeric && cm.has_values;
		cv[j++] = v[0];
		cv[j++] = v[1];
		cv[j++] = v[2];
		cv[j++] = CStringGetTextDatum(cfg->columns[c]);
		cv[j++] = Int32GetDatum(revision);
		cv[j++] = Int64GetDatum((int64) cm.rows);
		cv[j++] = Int64GetDatum((int64) cm.non_null);
		cn[j] = cm.rows == 0 ? 'n' : ' ';
		cv[j++] = Float8GetDatum(cm.completeness);
		cv[j++] = Int64GetDatum(cm.distinct_count);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.mean);
		cn[j] = num && cm.has_stddev ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.stddev);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.min);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.max);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.p50);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.p90);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.p99);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Int64GetDatum(cm.outliers);
		cn[j] = num ? ' ' : 'n';
		cv[j++] = Float8GetDatum(cm.outlier_rate);
		Assert(j == 18);
		TribQualitySpi("INSERT INTO tributary.quality_columns (stream, window_start, window_end, "
					   "column_name, revision, rows, non_null, completeness, distinct_count, mean, "
					   "stddev, min, max, p50, p90, p99, outliers, outlier_rate) VALUES ($1, $2, $3, "
					   "$4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
					   18, ctypes, cv, cn, SPI_OK_INSERT);
	}
}

/* A number from a thresholds object, or false (checked by set_quality when stored). */
static bool
TribJsonbNumber(Jsonb *obj, const char *name, double *out)
{
	JsonbValue	key;
	JsonbValue *v;

	key.type = jbvString;
	key.val.string.val = (char *) name;
	key.val.string.len = strlen(name);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &key);
	if (v == NULL || v->type != jbvNumeric)
		return false;
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	return true;
}

/* Record one metric that fell short, as "name": {"value": v, "threshold": t}. */
static void
TribAlertFailed(StringInfo failed, const char *name, double value, double threshold)
{
	if (failed->len > 1)
		appendStringInfoString(failed, ", ");
	escape_json(failed, name);
	appendStringInfo(failed, ": {\"value\": %s, \"threshold\": %s}",
					 isfinite(value) ? float8out_internal(value) : "null",
					 float8out_internal(threshold));
}

/*
 * The thresholds a closed window falls short of, as a JSON object ("{}" when none).
 * Components and the score must reach their threshold, rows too; freshness (seconds from
 * the newest event time to the close) must not exceed its own; per column, completeness
 * must reach its threshold, outlier_rate must not exceed its own, and the observed min and
 * max must stay within "min" and "max".
 */
static char *
TribQualityShortfalls(TribQualityConfig *cfg, const TribQualityWindow *w,
					  const TribQualityWindowMetrics *m, TimestampTz closed_at)
{
	StringInfoData failed;
	double		t;

	initStringInfo(&failed);
	appendStringInfoChar(&failed, '{');
	for (int c = 0; c < TRIB_QC_COUNT; c++)
		if (m->has_component[c] && TribJsonbNumber(cfg->thresholds, TribQualityComponentNames[c], &t) &&
			m->component[c] < t)
			TribAlertFailed(&failed, TribQualityComponentNames[c], m->component[c], t);
	if (m->has_score && TribJsonbNumber(cfg->thresholds, "quality_score", &t) && m->score < t)
		TribAlertFailed(&failed, "quality_score", m->score, t);
	if (TribJsonbNumber(cfg->thresholds, "rows", &t) && (double) m->rows < t)
		TribAlertFailed(&failed, "rows", (double) m->rows, t);
	if (TribJsonbNumber(cfg->thresholds, "freshness", &t) && cfg->has_newest)
	{
		double		fresh = (double) (closed_at - cfg->newest_event) / USECS_PER_SEC;

		if (fresh > t)
			TribAlertFailed(&failed, "freshness", fresh, t);
	}
	{
		JsonbValue	key;
		JsonbValue *cols;

		key.type = jbvString;
		key.val.string.val = "columns";
		key.val.string.len = 7;
		cols = findJsonbValueFromContainer(&cfg->thresholds->root, JB_FOBJECT, &key);
		if (cols != NULL && cols->type == jbvBinary)
			for (int c = 0; c < w->ncols; c++)
			{
				JsonbValue	ckey;
				JsonbValue *cv;
				Jsonb	   *cj;
				TribQualityColumnMetrics cm;
				char	   *label;

				ckey.type = jbvString;
				ckey.val.string.val = cfg->columns[c];
				ckey.val.string.len = strlen(cfg->columns[c]);
				cv = findJsonbValueFromContainer(cols->val.binary.data, JB_FOBJECT, &ckey);
				if (cv == NULL || cv->type != jbvBinary)
					continue;
				cj = JsonbValueToJsonb(cv);
				TribQualityColumnRead(w, c, &cm, false);
				if (cm.rows > 0 && TribJsonbNumber(cj, "completeness", &t) && cm.completeness < t)
				{
					label = psprintf("%s.completeness", cfg->columns[c]);
					TribAlertFailed(&failed, label, cm.completeness, t);
				}
				if (!(cm.numeric && cm.has_values))
					continue;
				if (TribJsonbNumber(cj, "outlier_rate", &t) && cm.outlier_rate > t)
					TribAlertFailed(&failed, psprintf("%s.outlier_rate", cfg->columns[c]), cm.outlier_rate, t);
				if (TribJsonbNumber(cj, "min", &t) && cm.min < t)
					TribAlertFailed(&failed, psprintf("%s.min", cfg->columns[c]), cm.min, t);
				if (TribJsonbNumber(cj, "max", &t) && cm.max > t)
					TribAlertFailed(&failed, psprintf("%s.max", cfg->columns[c]), cm.max, t);
			}
	}
	appendStringInfoChar(&failed, '}');
	return failed.data;
}

/* Call one alert's handler as the stream's owner; its error, or NULL. */
static char *
TribQualityCallHandler(TribPendingAlert *pa)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *error = NULL;
	Oid			saved_user;
	int			saved_sec;

	GetUserIdAndSecContext(&saved_user, &saved_sec);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Jsonb	   *alert = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pa->payload)));

		SetUserIdAndSecContext(pa->owner, saved_sec | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		if (pg_proc_aclcheck(pa->handler, pa->owner, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied for function %s", format_procedure(pa->handler)),
					 errdetail("on_alert runs as the stream's owner.")));
		{
			/* a void (or null-returning) handler is fine: its result is not read */
			FmgrInfo	flinfo;
			LOCAL_FCINFO(call, 1);

			fmgr_info(pa->handler, &flinfo);
			InitFunctionCallInfoData(*call, &flinfo, 1, InvalidOid, NULL, NULL);
			call->args[0].value = JsonbPGetDatum(alert);
			call->args[0].isnull = false;
			(void) FunctionCallInvoke(call);
		}
		SetUserIdAndSecContext(saved_user, saved_sec);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		SetUserIdAndSecContext(saved_user, saved_sec);
		error = psprintf("%s (SQLSTATE %s)", edata->message, unpack_sql_state(edata->sqlerrcode));
	}
	PG_END_TRY();
	return error;
}

/*
 * Run the queued handlers, after tributary's own writes and back in the caller's identity
 * and search_path: each as its stream's owner, its error recorded on its alert.
 */
static void
TribQualityRunHandlers(List *pending)
{
	ListCell   *lc;

	foreach(lc, pending)
	{
		TribPendingAlert *pa = lfirst(lc);
		char	   *error = TribQualityCallHandler(pa);

		if (error != NULL)
		{
			Oid			types[2] = {INT8OID, TEXTOID};
			Datum		v[2] = {Int64GetDatum(pa->id), CStringGetTextDatum(error)};

			ereport(WARNING,
					(errmsg("on_alert handler of stream \"%s\" failed: %s", pa->stream, error),
					 errdetail("The alert is recorded with the handler's error; ingestion goes on.")));
			TribCatalogExecute("UPDATE tributary.alerts SET handler_error = $2 WHERE id = $1",
							   2, types, v, NULL);
		}
	}
}

/* An alert: its row, a NOTIFY on tributary.alerts, and its handler call queued in pending. */
static void
TribQualityAlert(TribQualityConfig *cfg, TimestampTz start, const TribQualityWindowMetrics *m,
				 const char *kind, const char *failed, TribPendingList *pending)
{
	Oid			types[6] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, FLOAT8OID, JSONBOID};
	Datum		v[6];
	char		n[7] = "      ";
	int64		id;
	bool		isnull;
	StringInfoData payload;
	char	   *thresholds = JsonbToCString(NULL, &cfg->thresholds->root, VARSIZE(cfg->thresholds));

	v[0] = CStringGetTextDatum(cfg->stream);
	v[1] = TimestampTzGetDatum(start);
	v[2] = TimestampTzGetDatum(start + cfg->window);
	v[3] = CStringGetTextDatum(kind);
	n[4] = m->has_score ? ' ' : 'n';
	v[4] = Float8GetDatum(m->score);
	v[5] = DirectFunctionCall1(jsonb_in, CStringGetDatum(failed));
	TribQualitySpi("INSERT INTO tributary.alerts (stream, window_start, window_end, kind, "
				   "quality_score, failed, thresholds) SELECT $1, $2, $3, $4, $5, $6, c.thresholds "
				   "FROM tributary.quality_config c WHERE c.stream = $1 RETURNING id",
				   6, types, v, n, SPI_OK_INSERT_RETURNING);
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	initStringInfo(&payload);
	appendStringInfo(&payload, "{\"id\": " INT64_FORMAT ", \"stream\": ", id);
	escape_json(&payload, cfg->stream);
	appendStringInfo(&payload, ", \"kind\": \"%s\", \"window_start\": ", kind);
	escape_json(&payload, timestamptz_to_str(start));
	appendStringInfoString(&payload, ", \"window_end\": ");
	escape_json(&payload, timestamptz_to_str(start + cfg->window));
	appendStringInfo(&payload, ", \"quality_score\": %s, \"failed\": %s, \"thresholds\": %s}",
					 m->has_score ? float8out_internal(m->score) : "null", failed, thresholds);
	if (payload.len >= NAMEDATALEN * 0 + 7999)
	{
		/* NOTIFY carries less than 8000 bytes: the row has it all */
		resetStringInfo(&payload);
		appendStringInfo(&payload, "{\"id\": " INT64_FORMAT ", \"stream\": ", id);
		escape_json(&payload, cfg->stream);
		appendStringInfo(&payload, ", \"kind\": \"%s\", \"truncated\": true}", kind);
	}
	Async_Notify(TRIB_ALERT_CHANNEL, payload.data);

	if (OidIsValid(cfg->on_alert))
	{
		MemoryContext old = MemoryContextSwitchTo(pending->cxt);
		TribPendingAlert *pa = palloc(sizeof(TribPendingAlert));

		pa->stream = pstrdup(cfg->stream);
		pa->owner = cfg->owner;
		pa->handler = cfg->on_alert;
		pa->id = id;
		pa->payload = pstrdup(payload.data);
		pending->alerts = lappend(pending->alerts, pa);
		MemoryContextSwitchTo(old);
	}
}

/* A closed window's alert episode: raise once when it falls short, recover once when not. */
static void
TribQualityEpisode(TribQualityConfig *cfg, TimestampTz start, const TribQualityWindow *w,
				   const TribQualityWindowMetrics *m, TimestampTz closed_at, TribPendingList *pending)
{
	char	   *failed = TribQualityShortfalls(cfg, w, m, closed_at);
	bool		short_of = strcmp(failed, "{}") != 0;

	if (short_of && !cfg->alerting)
	{
		TribQualityAlert(cfg, start, m, "raised", failed, pending);
		cfg->alerting = true;
	}
	else if (!short_of && cfg->alerting)
	{
		TribQualityAlert(cfg, start, m, "recovered", failed, pending);
		cfg->alerting = false;
	}
}

/* ---------------------------------------------------------------------------------------
 * The fold
 * ---------------------------------------------------------------------------------------
 */

/* An empty window of cfg's columns (their numeric flags from the target's types). */
static TribQualityWindow *
TribQualityEmptyWindow(TribQualityConfig *cfg, const bool *numeric, MemoryContext cxt)
{
	return TribQualityWindowCreate(cfg->ncols, numeric, true, cxt);
}

/* Read the stream's partials, in pane order. */
static TribQualityPartial *
TribQualityReadPartials(TribQualityConfig *cfg, int *n, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(cfg->stream)};
	TribQualityPartial *parts;

	TribQualitySpi("SELECT pane_start, newest_event, arrived, state, folded FROM tributary.quality_partials "
				   "WHERE stream = $1 ORDER BY pane_start, folded DESC",
				   1, types, values, NULL, SPI_OK_SELECT);
	*n = (int) SPI_processed;
	parts = MemoryContextAlloc(cxt, sizeof(TribQualityPartial) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		bytea	   *b;

		parts[i].pane = DatumGetTimestampTz(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		if (!isnull && (!cfg->has_newest || DatumGetTimestampTz(d) > cfg->newest_event))
		{
			cfg->newest_event = DatumGetTimestampTz(d);
			cfg->has_newest = true;
		}
		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!cfg->has_arrival || DatumGetTimestampTz(d) > cfg->last_arrival)
		{
			cfg->last_arrival = DatumGetTimestampTz(d);
			cfg->has_arrival = true;
		}
		b = DatumGetByteaPP(SPI_getbinval(tup, desc, 4, &isnull));
		parts[i].state = TribQualityWindowDeserialize(VARDATA_ANY(b), VARSIZE_ANY_EXHDR(b), cxt);
		parts[i].folded = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
	}
	return parts;
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
		/* a window before the stream's first (or deleted by hand): the late rows make it */
		TribQualityWindowMetrics m;

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
static bool *
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

/* partials of one pane kept apart at most; more are merged into one by the fold */
#define TRIB_QUALITY_PANE_PARTIALS 64

/* Read the partials of panes before bound (NULL bound: every pane), in pane order. */
static TribQualityPartial *
TribQualityReadPartialsBefore(TribQualityConfig *cfg, TimestampTz bound, int *n, MemoryContext cxt)
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
			TimestampTz newest = DT_NOBEGIN;
			TimestampTz arrived = 0;
			Oid			itypes[6] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BYTEAOID, BOOLOID};
			Datum		iv[6];
			char		in[7] = "      ";

			v[1] = TimestampTzGetDatum(panes[i]);
			v[2] = BoolGetDatum(f == 1);
			TribQualitySpi("DELETE FROM tributary.quality_partials WHERE stream = $1 AND pane_start = $2 "
						   "AND folded = $3 RETURNING state, newest_event, arrived",
						   3, types, v, NULL, SPI_OK_DELETE_RETURNING);
			if (SPI_processed == 0)
				continue;
			for (uint64 r = 0; r < SPI_processed; r++)
			{
				HeapTuple	tup = SPI_tuptable->vals[r];
				bool		isnull;
				bytea	   *b = DatumGetByteaPP(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1, &isnull));
				Datum		d;

				TribQualityWindowMerge(merged, TribQualityWindowDeserialize(VARDATA_ANY(b),
																			VARSIZE_ANY_EXHDR(b), cxt));
				d = SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull);
				if (!isnull)
					newest = Max(newest, DatumGetTimestampTz(d));
				arrived = Max(arrived, DatumGetTimestampTz(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull)));
			}
			iv[0] = v[0];
			iv[1] = v[1];
			iv[2] = TimestampTzGetDatum(newest);
			in[2] = newest == DT_NOBEGIN ? 'n' : ' ';
			iv[3] = TimestampTzGetDatum(arrived);
			iv[4] = PointerGetDatum(TribQualityWindowSerialize(merged));
			iv[5] = v[2];
			TribQualitySpi("INSERT INTO tributary.quality_partials (stream, pane_start, newest_event, "
						   "arrived, state, folded) VALUES ($1, $2, $3, $4, $5, $6)",
						   6, itypes, iv, in, SPI_OK_INSERT);
		}
}

/*
 * Fold the stream's partials (see the file header), as of now; under the fold lock in
 * ExclusiveLock mode, SPI connected, as the extension's owner. Only the partials of panes
 * that a closed (or now closing) window covers are read. Returns the windows closed.
 */
static int
TribQualityFold(TribQualityConfig *cfg, Oid target, TimestampTz now, TribPendingList *pending)
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
	TimestampTz first_open;
	TimestampTz next_open;
	TimestampTz watermark = DT_NOBEGIN;
	int			nparts;
	TribQualityPartial *parts;
	int			closed = 0;

	/* 0. the newest event, the last arrival and the first pane, from the partials */
	v[0] = CStringGetTextDatum(cfg->stream);
	TribQualitySpi("SELECT max(newest_event), max(arrived), min(pane_start) "
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
		d = SPI_getbinval(tup, desc, 3, &has_pane);
		has_pane = !has_pane;
		if (has_pane)
			first_pane = DatumGetTimestampTz(d);
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

	/* the partials of panes a closed window covers (its earliest window started before next_open) */
	parts = TribQualityReadPartialsBefore(cfg, next_open + reach, &nparts, cxt);

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
	cfg->closed_until = next_open;
	cfg->has_closed = true;

	/*
	 * 4. the partials read are now in every closed window that covers them: gone when the
	 * window starting at their pane (their last) is closed, else marked folded
	 */
	if (nparts > 0)
	{
		Datum		dv[2] = {v[0], TimestampTzGetDatum(next_open)};
		Datum		fv[2] = {v[0], TimestampTzGetDatum(next_open + reach)};

		TribQualitySpi("DELETE FROM tributary.quality_partials WHERE stream = $1 AND pane_start < $2",
					   2, types, dv, NULL, SPI_OK_DELETE);
		TribQualitySpi("UPDATE tributary.quality_partials SET folded = true "
					   "WHERE stream = $1 AND pane_start < $2 AND NOT folded",
					   2, types, fv, NULL, SPI_OK_UPDATE);
	}
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
		uv[4] = BoolGetDatum(cfg->alerting);
		TribQualitySpi("UPDATE tributary.quality_config SET newest_event = $2, last_arrival = $3, "
					   "closed_until = $4, alerting = $5 WHERE stream = $1",
					   5, utypes, uv, un, SPI_OK_UPDATE);
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
	return closed;
}

/* ---------------------------------------------------------------------------------------
 * The quality stage
 * ---------------------------------------------------------------------------------------
 */

/* Whether this database's catalog has quality windows (not before ALTER EXTENSION UPDATE). */
static bool
TribQualityCatalogPresent(void)
{
	Oid			nsp = get_namespace_oid(TRIBUTARY_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("quality_config", nsp));
}

/* A pane of the batch being summarized. */
typedef struct TribQualityPaneEntry
{
	TimestampTz start;
	TribQualityWindow *window;
} TribQualityPaneEntry;

/* date_bin(slide, t, origin), as the ad-hoc functions and the query path bin. */
static TimestampTz
TribQualityPaneOf(TribQualityConfig *cfg, TimestampTz t)
{
	if (t >= cfg->origin)
		return t - (t - cfg->origin) % cfg->slide;
	return DatumGetTimestampTz(DirectFunctionCall3(timestamptz_bin, IntervalPGetDatum(cfg->slide_iv),
												   TimestampTzGetDatum(t),
												   TimestampTzGetDatum(cfg->origin)));
}

/* The window of pane start in the batch's table of panes, made when new. */
static TribQualityWindow *
TribQualityPane(HTAB *panes, TribQualityConfig *cfg, const bool *numeric, TimestampTz start,
				MemoryContext cxt)
{
	bool		found;
	TribQualityPaneEntry *e = hash_search(panes, &start, HASH_ENTER, &found);

	if (!found)
		e->window = TribQualityWindowCreate(cfg->ncols, numeric, true, cxt);
	return e->window;
}

static bool
TribQualityApplies(StreamDef *def)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	TribOwnerContext owner;
	bool		applies;

	if (def->event_time_column == NULL || !TribQualityCatalogPresent())
		return false;
	values[0] = CStringGetTextDatum(def->name);
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	TribQualitySpi("SELECT 1 FROM tributary.quality_config WHERE stream = $1", 1, types, values,
				   NULL, SPI_OK_SELECT);
	applies = SPI_processed > 0;
	SPI_finish();
	TribRestoreUser(&owner);
	return applies;
}

/*
 * Summarize the batch's rows per pane into partial states (the file header), insert them,
 * and fold when no other batch of the stream is in flight.
 */
static void
TribQualityProcess(const TribStageBatch *batch)
{
	StreamDef  *def = batch->def;
	MemoryContext cxt = CurrentMemoryContext;
	TribOwnerContext owner;
	TribQualityConfig *cfg;
	TupleDesc	desc = batch->desc;
	AttrNumber	timeatt = get_attnum(def->target, def->event_time_column);
	AttrNumber	keyatt;
	AttrNumber *atts;
	bool	   *numeric;
	TribQualityColumnReader *readers;
	TribQualityColumnReader key;
	TribQualityRowHasher rowhasher;
	Datum	   *values = palloc(sizeof(Datum) * desc->natts);
	bool	   *isnull = palloc(sizeof(bool) * desc->natts);
	uint64	   *hashes = palloc(sizeof(uint64) * desc->natts);
	TimestampTz watermark;
	TimestampTz newest = DT_NOBEGIN;
	int64		dead = 0;
	HASHCTL		ctl = {0};
	HTAB	   *panes;
	HASH_SEQ_STATUS seq;
	TribQualityPaneEntry *e;
	TribPendingList pending = {NIL, CurrentMemoryContext};

	if (timeatt == InvalidAttrNumber)
		return;					/* the event time column is gone: no windows */
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = TribQualityConfigLoad(def->name, cxt);
	if (cfg == NULL)
	{
		SPI_finish();
		TribRestoreUser(&owner);
		return;
	}
	/* the fold lock, then the progress as the last fold left it */
	(void) TribQualityLock(cfg->stream_id, ShareLock, true);
	cfg = TribQualityConfigLoad(def->name, cxt);
	if (cfg == NULL)
	{
		SPI_finish();
		TribRestoreUser(&owner);
		return;
	}
	watermark = cfg->has_newest ? cfg->newest_event - cfg->lateness : DT_NOBEGIN;
	/* duplicates by the quality key, or the stream's key, or whole rows */
	{
		const char *keyname = cfg->key_column ? cfg->key_column : def->key_column;

		keyatt = keyname ? get_attnum(def->target, keyname) : InvalidAttrNumber;
	}

	/* how each watched column (a column gone reads as null) and the key are read */
	atts = palloc(sizeof(AttrNumber) * Max(cfg->ncols, 1));
	numeric = palloc0(sizeof(bool) * Max(cfg->ncols, 1));
	readers = palloc0(sizeof(TribQualityColumnReader) * Max(cfg->ncols, 1));
	for (int c = 0; c < cfg->ncols; c++)
	{
		atts[c] = get_attnum(def->target, cfg->columns[c]);
		if (atts[c] == InvalidAttrNumber || atts[c] > desc->natts)
		{
			atts[c] = InvalidAttrNumber;
			continue;
		}
		{
			Oid			typid = TupleDescAttr(desc, atts[c] - 1)->atttypid;

			TribQualityColumnReaderInit(&readers[c], typid, get_typcollation(typid), cxt);
			numeric[c] = readers[c].numeric;
		}
	}
	if (keyatt != InvalidAttrNumber)
	{
		Oid			typid = TupleDescAttr(desc, keyatt - 1)->atttypid;

		TribQualityColumnReaderInit(&key, typid, get_typcollation(typid), cxt);
	}
	else
		TribQualityRowHasherInit(&rowhasher, desc, cxt);

	ctl.keysize = sizeof(TimestampTz);
	ctl.entrysize = sizeof(TribQualityPaneEntry);
	ctl.hcxt = cxt;
	panes = hash_create("tributary quality batch panes", 16, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	for (int r = 0; r < batch->nrows; r++)
	{
		TribStageRow *row = &batch->rows[r];
		TimestampTz t;
		TribQualityWindow *w;
		double		lag;

		heap_deform_tuple(row->tuple, desc, values, isnull);
		if (isnull[timeatt - 1])
			continue;
		/* a timestamp is read as UTC, as window_quality reads it: the same microseconds */
		t = DatumGetTimestampTz(values[timeatt - 1]);
		if (TIMESTAMP_NOT_FINITE(t))
			continue;
		w = TribQualityPane(panes, cfg, numeric, TribQualityPaneOf(cfg, t), cxt);
		TribQualityWindowAddEvent(w, t);
		newest = Max(newest, t);
		if (t < watermark)
			w->late++;
		lag = (double) (batch->arrived - t) / USECS_PER_SEC;
		TribDdsAdd(&w->lag, lag);
		if (keyatt != InvalidAttrNumber)
		{
			if (isnull[keyatt - 1])
				TribQualityWindowAddNullKeyRow(w);
			else
				TribQualityWindowAddRow(w, TribHashDatum(&key.hasher, values[keyatt - 1]));
			for (int c = 0; c < cfg->ncols; c++)
				if (atts[c] != InvalidAttrNumber && !isnull[atts[c] - 1])
					TribQualityWindowAddValue(w, &readers[c], c, values[atts[c] - 1]);
		}
		else
		{
			TribQualityWindowAddRow(w, TribQualityHashTupleKeep(&rowhasher, values, isnull, hashes));
			for (int c = 0; c < cfg->ncols; c++)
				if (atts[c] != InvalidAttrNumber && !isnull[atts[c] - 1])
					TribQualityWindowAddValueHashed(w, &readers[c], c, values[atts[c] - 1],
													hashes[atts[c] - 1]);
		}
	}

	/* dead-lettered messages count towards the newest pane the stream knows */
	for (int i = 0; i < TRIB_DEAD_REASONS; i++)
		dead += batch->dead[i];
	if (dead > 0)
	{
		TimestampTz t = newest != DT_NOBEGIN ? newest :
			cfg->has_newest ? cfg->newest_event : batch->arrived;

		TribQualityPane(panes, cfg, numeric, TribQualityPaneOf(cfg, t), cxt)->dead += dead;
	}

	/* one partial per pane */
	hash_seq_init(&seq, panes);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		Oid			types[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, BYTEAOID};
		Datum		v[5];
		char		n[6] = "     ";

		v[0] = CStringGetTextDatum(cfg->stream);
		v[1] = TimestampTzGetDatum(e->start);
		v[2] = TimestampTzGetDatum(e->window->newest_event);
		n[2] = e->window->newest_event == DT_NOBEGIN ? 'n' : ' ';
		v[3] = TimestampTzGetDatum(batch->arrived);
		v[4] = PointerGetDatum(TribQualityWindowSerialize(e->window));
		TribQualitySpi("INSERT INTO tributary.quality_partials (stream, pane_start, newest_event, "
					   "arrived, state) VALUES ($1, $2, $3, $4, $5)", 5, types, v, n, SPI_OK_INSERT);
	}

	/* alone? then fold now, in this transaction (a snapshot per transaction would miss others') */
	if (!IsolationUsesXactSnapshot() && TribQualityLock(cfg->stream_id, ExclusiveLock, false))
		(void) TribQualityFold(cfg, def->target, GetCurrentTimestamp(), &pending);
	SPI_finish();
	TribRestoreUser(&owner);
	TribQualityRunHandlers(pending.alerts);
}

static const TribStageRoutine TribQualityStage = {
	.name = "quality",
	.applies = TribQualityApplies,
	.process = TribQualityProcess,
};

void
TribQualityInit(void)
{
	TribRegisterStage(&TribQualityStage);
}

/* ---------------------------------------------------------------------------------------
 * Closing on the wall clock
 * ---------------------------------------------------------------------------------------
 */

/* Fold one stream now (SPI connected, as the extension's owner); the windows it closed. */
static int
TribQualityFoldStream(const char *stream, bool wait, TribPendingList *pending)
{
	MemoryContext cxt = CurrentMemoryContext;
	TribQualityConfig *cfg = TribQualityConfigLoad(stream, cxt);
	Oid			target;

	if (cfg == NULL)
		return 0;
	if (!TribQualityLock(cfg->stream_id, ExclusiveLock, wait))
		return 0;
	/* the progress as the last fold left it, now that none can run */
	cfg = TribQualityConfigLoad(stream, cxt);
	if (cfg == NULL)
		return 0;
	target = TribStreamLoad(stream, false, false)->target;
	return TribQualityFold(cfg, target, GetCurrentTimestamp(), pending);
}

void
TribQualityCloseDue(void)
{
	TribOwnerContext owner;
	MemoryContext cxt = CurrentMemoryContext;
	List	   *volatile streams = NIL;
	List	   *volatile pending = NIL;
	ListCell   *lc;

	if (!TribQualityCatalogPresent())
		return;
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	TribQualitySpi("SELECT stream FROM tributary.quality_config ORDER BY stream", 0, NULL, NULL,
				   NULL, SPI_OK_SELECT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		streams = lappend(streams, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
		MemoryContextSwitchTo(old);
	}
	/* each stream in a subtransaction: one stream's error must not stop the others' */
	foreach(lc, streams)
	{
		const char *stream = lfirst(lc);
		ResourceOwner ro = CurrentResourceOwner;

		BeginInternalSubTransaction(NULL);
		MemoryContextSwitchTo(cxt);
		PG_TRY();
		{
			TribPendingList mine = {NIL, cxt};

			/* a stream's alerts count only if its fold commits */
			(void) TribQualityFoldStream(stream, false, &mine);
			ReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			pending = list_concat(pending, mine.alerts);
			CurrentResourceOwner = ro;
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			MemoryContextSwitchTo(cxt);
			edata = CopyErrorData();
			FlushErrorState();
			RollbackAndReleaseCurrentSubTransaction();
			MemoryContextSwitchTo(cxt);
			CurrentResourceOwner = ro;
			ereport(WARNING,
					(errmsg("tributary: closing the quality windows of stream \"%s\" failed: %s",
							stream, edata->message)));
		}
		PG_END_TRY();
	}
	SPI_finish();
	TribRestoreUser(&owner);
	TribQualityRunHandlers(pending);
}

/* ---------------------------------------------------------------------------------------
 * SQL functions
 * ---------------------------------------------------------------------------------------
 */

/* A non-negative interval without months, in microseconds, for lateness and grace. */
static int64
TribQualityNonNegative(Interval *iv, const char *what)
{
	int64		usecs;

	if (iv->month != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not contain months or years", what),
				 errhint("Use days, hours, minutes or seconds.")));
	usecs = TribIntervalUsecs(iv);
	if (usecs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", what),
				 errhint("Pass zero or a positive interval.")));
	return usecs;
}

/* An error unless every key of obj is in names (NULL-terminated); what names the object. */
static void
TribQualityCheckKeys(Jsonb *obj, const char *const *names, const char *what)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(obj))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a JSON object", what)));
	it = JsonbIteratorInit(&obj->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		bool		known = false;
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		name = pnstrdup(v.val.string.val, v.val.string.len);
		for (int i = 0; names[i] != NULL; i++)
			known |= strcmp(names[i], name) == 0;
		if (!known)
		{
			StringInfoData list;

			initStringInfo(&list);
			for (int i = 0; names[i] != NULL; i++)
				appendStringInfo(&list, "%s%s", i > 0 ? ", " : "", names[i]);
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s names an unknown metric \"%s\"", what, name),
					 errhint("Known: %s.", list.data)));
		}
	}
}

/* The value of key in obj, which must be a number (>= 0), or false when absent. */
static bool
TribQualityCheckNumber(Jsonb *obj, const char *key, const char *what, double *out)
{
	JsonbValue	k;
	JsonbValue *v;

	k.type = jbvString;
	k.val.string.val = (char *) key;
	k.val.string.len = strlen(key);
	v = findJsonbValueFromContainer(&obj->root, JB_FOBJECT, &k);
	if (v == NULL)
		return false;
	if (v->type != jbvNumeric)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" must be a number", what, key)));
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	return true;
}

/* Check thresholds against the metrics and the watched columns (numeric metrics on numeric ones). */
static void
TribQualityCheckThresholds(Jsonb *thresholds, Oid target, char **columns, int ncols)
{
	static const char *const top[] = {"quality_score", "completeness", "uniqueness", "validity",
	"timeliness", "consistency", "rows", "freshness", "columns", NULL};
	static const char *const percol[] = {"completeness", "outlier_rate", "min", "max", NULL};
	double		t;

	TribQualityCheckKeys(thresholds, top, "thresholds");
	for (int i = 0; top[i] != NULL; i++)
		if (strcmp(top[i], "columns") != 0 && TribQualityCheckNumber(thresholds, top[i], "threshold", &t) &&
			t < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("threshold \"%s\" must not be negative", top[i])));
	{
		JsonbValue	k;
		JsonbValue *cols;
		JsonbIterator *it;
		JsonbValue	v;
		JsonbIteratorToken tok;
		Jsonb	   *cj;

		k.type = jbvString;
		k.val.string.val = "columns";
		k.val.string.len = 7;
		cols = findJsonbValueFromContainer(&thresholds->root, JB_FOBJECT, &k);
		if (cols == NULL)
			return;
		if (cols->type != jbvBinary)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("thresholds \"columns\" must be an object of column names")));
		cj = JsonbValueToJsonb(cols);
		it = JsonbIteratorInit(&cj->root);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			char	   *name;
			JsonbValue *per;
			Jsonb	   *pj;
			bool		watched = false;
			AttrNumber	att;

			if (tok != WJB_KEY)
				continue;
			name = pnstrdup(v.val.string.val, v.val.string.len);
			for (int c = 0; c < ncols; c++)
				watched |= strcmp(columns[c], name) == 0;
			if (!watched)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("thresholds name column \"%s\", which is not watched", name),
						 errhint("Add it to columns, or leave it out of thresholds.")));
			per = findJsonbValueFromContainer(&cj->root, JB_FOBJECT, &v);
			if (per == NULL || per->type != jbvBinary)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("thresholds for column \"%s\" must be an object", name)));
			pj = JsonbValueToJsonb(per);
			TribQualityCheckKeys(pj, percol, psprintf("thresholds for column \"%s\"", name));
			att = get_attnum(target, name);
			if (!TribQualityTypeIsNumeric(get_atttype(target, att)))
				for (int i = 1; percol[i] != NULL; i++)
					if (TribQualityCheckNumber(pj, percol[i], "threshold", &t))
						ereport(ERROR,
								(errcode(ERRCODE_DATATYPE_MISMATCH),
								 errmsg("threshold \"%s\" needs a numeric column, and \"%s\" is of type %s",
										percol[i], name, format_type_be(get_atttype(target, att))),
								 errhint("Only completeness applies to every column.")));
			for (int i = 0; percol[i] != NULL; i++)
				(void) TribQualityCheckNumber(pj, percol[i], "threshold", &t);
		}
	}
}

/* The weights as stored: every component, the defaults when none are given. */
static Jsonb *
TribQualityResolveWeights(Jsonb *given)
{
	StringInfoData out;
	double		sum = 0;

	initStringInfo(&out);
	appendStringInfoChar(&out, '{');
	if (given != NULL)
		TribQualityCheckKeys(given, TribQualityComponentNames, "weights");
	for (int i = 0; i < TRIB_QC_COUNT; i++)
	{
		double		w = TribQualityDefaultWeights[i];

		if (given != NULL)
		{
			w = 0;
			(void) TribQualityCheckNumber(given, TribQualityComponentNames[i], "weight", &w);
			if (w < 0 || isnan(w))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("weight \"%s\" must not be negative", TribQualityComponentNames[i])));
		}
		sum += w;
		appendStringInfo(&out, "%s\"%s\": %.17g", i > 0 ? ", " : "", TribQualityComponentNames[i], w);
	}
	if (!(sum > 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("weights must sum to a positive number"),
				 errhint("Give at least one of %s, %s, %s, %s, %s a positive weight.",
						 TribQualityComponentNames[0], TribQualityComponentNames[1],
						 TribQualityComponentNames[2], TribQualityComponentNames[3],
						 TribQualityComponentNames[4])));
	appendStringInfoChar(&out, '}');
	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(out.data)));
}

/*
 * set_quality(stream, "window", slide, allowed_lateness, columns, thresholds, weights,
 * on_alert, grace, origin): continuous windows for a stream; replaces its settings (open
 * windows are dropped, closed ones stay).
 */
Datum
tributary_set_quality(PG_FUNCTION_ARGS)
{
	char	   *name;
	StreamDef  *def;
	Interval   *window_iv,
			   *slide_iv;
	int64		window,
				slide;
	char	  **columns;
	int			ncols = 0;
	Jsonb	   *thresholds;
	Jsonb	   *weights;
	Oid			on_alert = PG_ARGISNULL(7) ? InvalidOid : PG_GETARG_OID(7);
	char	   *key_column = PG_NARGS() > 10 && !PG_ARGISNULL(10) ? text_to_cstring(PG_GETARG_TEXT_PP(10)) : NULL;
	Datum		cols_datum;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("stream and \"window\" must not be null")));
	PreventCommandIfReadOnly("tributary.set_quality");
	TribRequireCatalogStates();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	def = TribStreamLoad(name, false, true);
	TribCheckMayManage(def, "set the quality windows of", false);
	if (def->event_time_column == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no event time column", name),
				 errdetail("Quality windows are windows of event time."),
				 errhint("Create the stream with event_time_column, or set it with tributary.alter_stream.")));

	window_iv = PG_GETARG_INTERVAL_P(1);
	window = TribQualityIntervalUsecs(window_iv, "window");
	slide_iv = PG_ARGISNULL(2) ? window_iv : PG_GETARG_INTERVAL_P(2);
	slide = TribQualityIntervalUsecs(slide_iv, "slide");
	TribQualityCheckSlide(window, slide, window_iv, slide_iv);
	if (window / slide > 1000)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("a window of more than 1000 slides is not supported"),
				 errhint("Use a longer slide.")));
	(void) TribQualityNonNegative(PG_ARGISNULL(3) ? NULL : PG_GETARG_INTERVAL_P(3), "allowed_lateness");
	if (!PG_ARGISNULL(8))
		(void) TribQualityNonNegative(PG_GETARG_INTERVAL_P(8), "grace");

	/* columns: checked against the target; null is every column */
	{
		Relation	rel = relation_open(def->target, AccessShareLock);
		TupleDesc	desc = RelationGetDescr(rel);

		columns = palloc(sizeof(char *) * Max(desc->natts, 1));
		if (PG_ARGISNULL(4))
		{
			for (int i = 0; i < desc->natts; i++)
				if (!TupleDescAttr(desc, i)->attisdropped)
					columns[ncols++] = pstrdup(NameStr(TupleDescAttr(desc, i)->attname));
		}
		else
		{
			Datum	   *elems;
			bool	   *nulls;
			int			n;

			deconstruct_array(PG_GETARG_ARRAYTYPE_P(4), TEXTOID, -1, false, TYPALIGN_INT,
							  &elems, &nulls, &n);
			if (n == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("columns must name at least one column"),
						 errhint("Pass null to watch every column.")));
			columns = repalloc(columns, sizeof(char *) * n);
			for (int i = 0; i < n; i++)
			{
				char	   *col;

				if (nulls[i])
					ereport(ERROR,
							(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
							 errmsg("columns must not contain null")));
				col = TextDatumGetCString(elems[i]);
				if (get_attnum(def->target, col) == InvalidAttrNumber)
					ereport(ERROR,
							(errcode(ERRCODE_UNDEFINED_COLUMN),
							 errmsg("column \"%s\" does not exist in the target of stream \"%s\"", col, name),
							 errhint("Name a column of %s, as it is spelled in it (case matters).",
									 get_rel_name(def->target))));
				for (int j = 0; j < ncols; j++)
					if (strcmp(columns[j], col) == 0)
						ereport(ERROR,
								(errcode(ERRCODE_DUPLICATE_COLUMN),
								 errmsg("column \"%s\" is named twice in columns", col)));
				columns[ncols++] = col;
			}
		}
		relation_close(rel, AccessShareLock);
	}
	if (key_column != NULL && get_attnum(def->target, key_column) == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("key column \"%s\" does not exist in the target of stream \"%s\"", key_column, name),
				 errhint("Name a column of %s, or pass null to count duplicates by the stream's key.",
						 get_rel_name(def->target))));
	thresholds = PG_ARGISNULL(5) ? DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum("{}"))) :
		PG_GETARG_JSONB_P(5);
	TribQualityCheckThresholds(thresholds, def->target, columns, ncols);
	weights = TribQualityResolveWeights(PG_ARGISNULL(6) ? NULL : PG_GETARG_JSONB_P(6));
	if (OidIsValid(on_alert))
	{
		HeapTuple	proc = SearchSysCache1(PROCOID, ObjectIdGetDatum(on_alert));
		Form_pg_proc form;
		bool		ok;

		if (!HeapTupleIsValid(proc))
			elog(ERROR, "cache lookup failed for function %u", on_alert);
		form = (Form_pg_proc) GETSTRUCT(proc);
		ok = form->pronargs == 1 && form->proargtypes.values[0] == JSONBOID && form->prokind == PROKIND_FUNCTION;
		ReleaseSysCache(proc);
		if (!ok)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
					 errmsg("on_alert function %s must take one jsonb argument", format_procedure(on_alert)),
					 errhint("Declare it as f(alert jsonb); it is called with each alert.")));
		if (pg_proc_aclcheck(on_alert, def->owner, ACL_EXECUTE) != ACLCHECK_OK)
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("the owner of stream \"%s\" may not execute %s", name, format_procedure(on_alert)),
					 errdetail("on_alert runs as the stream's owner."),
					 errhint("GRANT EXECUTE ON FUNCTION %s TO %s.", format_procedure(on_alert),
							 quote_identifier(TribRoleName(def->owner)))));
	}

	cols_datum = PointerGetDatum(construct_array((Datum *) palloc(0), 0, TEXTOID, -1, false, TYPALIGN_INT));
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(ncols, 1));

		for (int i = 0; i < ncols; i++)
			elems[i] = CStringGetTextDatum(columns[i]);
		cols_datum = PointerGetDatum(construct_array(elems, ncols, TEXTOID, -1, false, TYPALIGN_INT));
	}
	{
		Oid			types[11] = {TEXTOID, INTERVALOID, INTERVALOID, INTERVALOID, INTERVALOID,
		TIMESTAMPTZOID, TEXTARRAYOID, JSONBOID, JSONBOID, OIDOID, TEXTOID};
		Datum		v[11];
		char		n[12] = "           ";
		Interval	zero = {0};
		Interval	five = {0};

		five.time = 5 * USECS_PER_SEC;
		v[0] = CStringGetTextDatum(name);
		v[1] = IntervalPGetDatum(window_iv);
		v[2] = IntervalPGetDatum(slide_iv);
		v[3] = PG_ARGISNULL(3) ? IntervalPGetDatum(&zero) : PG_GETARG_DATUM(3);
		v[4] = PG_ARGISNULL(8) ? IntervalPGetDatum(&five) : PG_GETARG_DATUM(8);
		v[5] = PG_ARGISNULL(9) ? DirectFunctionCall1(timestamptz_in, CStringGetDatum("1970-01-01 00:00+00")) :
			PG_GETARG_DATUM(9);
		v[6] = cols_datum;
		v[7] = JsonbPGetDatum(thresholds);
		v[8] = JsonbPGetDatum(weights);
		v[9] = ObjectIdGetDatum(on_alert);
		n[9] = OidIsValid(on_alert) ? ' ' : 'n';
		v[10] = key_column ? CStringGetTextDatum(key_column) : (Datum) 0;
		n[10] = key_column ? ' ' : 'n';
		TribCatalogExecute("DELETE FROM tributary.quality_partials WHERE stream = $1", 1, types, v, NULL);
		TribCatalogExecute("INSERT INTO tributary.quality_config AS q (stream, \"window\", slide, "
						   "allowed_lateness, grace, origin, columns, thresholds, weights, on_alert, key_column) "
						   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::pg_catalog.regprocedure, $11) "
						   "ON CONFLICT (stream) DO UPDATE SET \"window\" = excluded.\"window\", "
						   "slide = excluded.slide, allowed_lateness = excluded.allowed_lateness, "
						   "grace = excluded.grace, origin = excluded.origin, columns = excluded.columns, "
						   "thresholds = excluded.thresholds, weights = excluded.weights, "
						   "on_alert = excluded.on_alert, key_column = excluded.key_column, "
						   "newest_event = NULL, last_arrival = NULL, "
						   "closed_until = NULL, alerting = false",
						   11, types, v, n);
	}
	PG_RETURN_VOID();
}

/* drop_quality(stream, if_exists): no more windows for the stream (closed ones stay). */
Datum
tributary_drop_quality(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	StreamDef  *def;
	Oid			types[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(name)};
	bool		had;

	PreventCommandIfReadOnly("tributary.drop_quality");
	TribRequireCatalogStates();
	def = TribStreamLoad(name, if_exists, true);
	if (def == NULL)
		PG_RETURN_VOID();
	TribCheckMayManage(def, "drop the quality windows of", false);
	{
		TribOwnerContext owner;

		TribBecomeExtensionOwner(&owner);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		TribQualitySpi("DELETE FROM tributary.quality_config WHERE stream = $1", 1, types, v, NULL,
					   SPI_OK_DELETE);
		had = SPI_processed > 0;
		SPI_finish();
		TribRestoreUser(&owner);
	}
	if (!had && !if_exists)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no quality windows", name),
				 errhint("Set them with tributary.set_quality.")));
	PG_RETURN_VOID();
}

/* quality_now(stream): the open windows, from the partials not closed yet. */
Datum
tributary_quality_now(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StreamDef  *def = TribStreamLoad(name, false, false);
	TribOwnerContext owner;
	TribQualityConfig *cfg;
	MemoryContext cxt;
	MemoryContext old;
	bool	   *numeric;
	int			nparts;
	TribQualityPartial *parts;
	int			per_window;
	TimestampTz from;
	TimestampTz to;

	TribCheckMayManage(def, "read the quality windows of", false);
	InitMaterializedSRF(fcinfo, 0);
	cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary quality now", ALLOCSET_DEFAULT_SIZES);
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	old = MemoryContextSwitchTo(cxt);
	cfg = TribQualityConfigLoad(name, cxt);
	if (cfg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no quality windows", name),
				 errhint("Set them with tributary.set_quality.")));
	numeric = TribQualityNumericFlags(cfg, def->target);
	parts = TribQualityReadPartials(cfg, &nparts, cxt);
	per_window = (int) (cfg->window / cfg->slide);
	if (nparts > 0)
	{
		/* every window that covers a partial's pane and is not closed */
		from = parts[0].pane - (int64) (per_window - 1) * cfg->slide;
		if (cfg->has_closed)
			from = Max(from, cfg->closed_until);
		to = parts[nparts - 1].pane;
		for (TimestampTz s = from; s <= to; s += cfg->slide)
		{
			TribQualityWindow *w = TribQualityWindowCreate(cfg->ncols, numeric, true, cxt);
			TribQualityWindowMetrics m;
			Datum		values[14];
			bool		nulls[14] = {0};
			int			i = 0;

			for (int p = 0; p < nparts; p++)
				if (parts[p].pane >= s && parts[p].pane < s + cfg->window)
					TribQualityWindowMerge(w, parts[p].state);
			TribQualityWindowRead(w, cfg->weights, &m);
			values[i++] = TimestampTzGetDatum(s);
			values[i++] = TimestampTzGetDatum(s + cfg->window);
			values[i++] = Int64GetDatum((int64) m.rows);
			values[i++] = Int64GetDatum(m.duplicates);
			for (int c = 0; c < TRIB_QC_COUNT; c++)
			{
				nulls[i] = !m.has_component[c];
				values[i++] = Float8GetDatum(m.component[c]);
			}
			values[i++] = Int64GetDatum(m.outliers);
			nulls[i] = !m.has_score;
			values[i++] = Float8GetDatum(m.score);
			nulls[i] = w->newest_event == DT_NOBEGIN;
			values[i++] = TimestampTzGetDatum(w->newest_event);
			values[i++] = Int64GetDatum((int64) w->dead);
			values[i++] = Int64GetDatum((int64) w->late);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	TribRestoreUser(&owner);
	return (Datum) 0;
}

/* close_quality_windows(stream): fold now, waiting for the stream's batches in flight. */
Datum
tributary_close_quality_windows(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	StreamDef  *def = TribStreamLoad(name, false, false);
	TribOwnerContext owner;
	int			closed;
	TribPendingList pending = {NIL, CurrentMemoryContext};

	PreventCommandIfReadOnly("tributary.close_quality_windows");
	TribCheckMayManage(def, "close the quality windows of", false);
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("tributary.close_quality_windows must run in a READ COMMITTED transaction"),
				 errdetail("It must see every batch committed while it waited for them.")));
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	closed = TribQualityFoldStream(name, true, &pending);
	SPI_finish();
	TribRestoreUser(&owner);
	TribQualityRunHandlers(pending.alerts);
	PG_RETURN_INT32(closed);
}
