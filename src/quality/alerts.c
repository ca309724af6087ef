/*
 * alerts.c
 *		Alerts: the thresholds a closed window falls short of, one alert per episode (a row,
 *		a NOTIFY on tributary.alerts), and the on_alert handlers, run after tributary's own
 *		writes as the stream's owner with their errors recorded.
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


/* A threshold from a thresholds object, or false (set_quality checked them when stored). */
static inline bool
TribAlertThreshold(Jsonb *obj, const char *name, double *t)
{
	return TribQualityJsonbNumber(obj, name, NULL, t);
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
		if (m->has_component[c] && TribAlertThreshold(cfg->thresholds, TribQualityComponentNames[c], &t) &&
			m->component[c] < t)
			TribAlertFailed(&failed, TribQualityComponentNames[c], m->component[c], t);
	if (m->has_score && TribAlertThreshold(cfg->thresholds, "quality_score", &t) && m->score < t)
		TribAlertFailed(&failed, "quality_score", m->score, t);
	if (TribAlertThreshold(cfg->thresholds, "rows", &t) && (double) m->rows < t)
		TribAlertFailed(&failed, "rows", (double) m->rows, t);
	if (TribAlertThreshold(cfg->thresholds, "freshness", &t) && cfg->has_newest)
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
				if (cm.rows > 0 && TribAlertThreshold(cj, "completeness", &t) && cm.completeness < t)
				{
					label = psprintf("%s.completeness", cfg->columns[c]);
					TribAlertFailed(&failed, label, cm.completeness, t);
				}
				if (!(cm.numeric && cm.has_values))
					continue;
				if (TribAlertThreshold(cj, "outlier_rate", &t) && cm.outlier_rate > t)
					TribAlertFailed(&failed, psprintf("%s.outlier_rate", cfg->columns[c]), cm.outlier_rate, t);
				if (TribAlertThreshold(cj, "min", &t) && cm.min < t)
					TribAlertFailed(&failed, psprintf("%s.min", cfg->columns[c]), cm.min, t);
				if (TribAlertThreshold(cj, "max", &t) && cm.max > t)
					TribAlertFailed(&failed, psprintf("%s.max", cfg->columns[c]), cm.max, t);
			}
	}
	appendStringInfoChar(&failed, '}');
	return failed.data;
}

/* Call one alert's handler (arg: its TribPendingAlert) as the stream's owner. */
static void
TribQualityHandlerCall(void *arg)
{
	TribPendingAlert *pa = arg;
	Jsonb	   *alert = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(pa->payload)));
	Oid			saved_user;
	int			saved_sec;

	GetUserIdAndSecContext(&saved_user, &saved_sec);
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
}

/*
 * Call one alert's handler in a subtransaction (whose rollback also gives back the
 * caller's identity); its error, or NULL.
 */
static char *
TribQualityCallHandler(TribPendingAlert *pa)
{
	ErrorData  *edata = TribRunInSubtransaction(TribQualityHandlerCall, pa);

	if (edata == NULL)
		return NULL;
	return psprintf("%s (SQLSTATE %s)", edata->message, unpack_sql_state(edata->sqlerrcode));
}

/*
 * Run the queued handlers, after tributary's own writes and back in the caller's identity
 * and search_path: each as its stream's owner, its error recorded on its alert.
 */
void
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
	char		when[MAXDATELEN + 1];
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
	/* times as to_json writes them, as on the quality channel (fold.c) */
	appendStringInfo(&payload, ", \"kind\": \"%s\", \"window_start\": \"%s\"", kind,
					 JsonEncodeDateTime(when, TimestampTzGetDatum(start), TIMESTAMPTZOID, NULL));
	appendStringInfo(&payload, ", \"window_end\": \"%s\"",
					 JsonEncodeDateTime(when, TimestampTzGetDatum(start + cfg->window), TIMESTAMPTZOID, NULL));
	appendStringInfo(&payload, ", \"quality_score\": %s, \"failed\": %s, \"thresholds\": %s}",
					 m->has_score ? float8out_internal(m->score) : "null", failed, thresholds);
	if (payload.len >= TRIB_NOTIFY_PAYLOAD_MAX)
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
void
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
