/*
 * stream_sql.c
 *		The SQL functions of continuous quality windows: set_quality, drop_quality,
 *		quality_now, close_quality_windows.
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
#include "quality/continuous_internal.h"
#include "quality/window.h"

PG_FUNCTION_INFO_V1(tributary_set_quality);
PG_FUNCTION_INFO_V1(tributary_drop_quality);
PG_FUNCTION_INFO_V1(tributary_quality_now);
PG_FUNCTION_INFO_V1(tributary_close_quality_windows);

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
		if (strcmp(top[i], "columns") != 0 && TribQualityJsonbNumber(thresholds, top[i], "threshold", &t) &&
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
					if (TribQualityJsonbNumber(pj, percol[i], "threshold", &t))
						ereport(ERROR,
								(errcode(ERRCODE_DATATYPE_MISMATCH),
								 errmsg("threshold \"%s\" needs a numeric column, and \"%s\" is of type %s",
										percol[i], name, format_type_be(get_atttype(target, att))),
								 errhint("Only completeness applies to every column.")));
			for (int i = 0; percol[i] != NULL; i++)
				(void) TribQualityJsonbNumber(pj, percol[i], "threshold", &t);
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
			(void) TribQualityJsonbNumber(given, TribQualityComponentNames[i], "weight", &w);
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
	/* the batches of the old settings first, so that their partials go too */
	TribCheckMayManage(TribStreamLoad(name, false, false), "set the quality windows of", false);
	TribQualityWaitForBatches(name);
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

	/* columns: user columns of the target; null is every column */
	{
		Relation	rel = relation_open(def->target, AccessShareLock);
		char	   *where = psprintf("the target of stream \"%s\"", name);

		columns = TribQualityColumnsArg(rel, PG_ARGISNULL(4) ? NULL : PG_GETARG_ARRAYTYPE_P(4),
										where, &ncols);
		if (key_column != NULL)
			(void) TribQualityUserColumn(rel, key_column, "key column", where);
		relation_close(rel, AccessShareLock);
	}
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

/*
 * Wait for the stream's batches in flight: each holds its quality_config row FOR KEY SHARE
 * until it commits (settings.c), which FOR UPDATE waits for. Called before the stream's
 * catalog row is locked, which a Kafka batch locks too after its stages (its positions'
 * foreign key): the same order as the batches', so no deadlock. Its lock is held to the end
 * of the transaction; a batch that comes after waits for it, then reads the new settings.
 */
void
TribQualityWaitForBatches(const char *stream)
{
	Oid			types[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(stream)};

	if (!TribQualityCatalogPresent())
		return;
	TribCatalogExecute("SELECT 1 FROM tributary.quality_config WHERE stream = $1 FOR UPDATE",
					   1, types, v, NULL);
}

/*
 * What dropping a stream leaves of its quality windows: nothing (its settings and alerts go
 * by their foreign keys). These tables have none (see the install script), so drop_stream
 * and DROP OWNED call this, and create_stream too: a batch in flight while its stream was
 * dropped may still commit a partial (or a window), and a new stream of the name must not
 * find it.
 */
void
TribQualityForgetStream(const char *stream)
{
	Oid			types[1] = {TEXTOID};
	Datum		v[1] = {CStringGetTextDatum(stream)};

	if (!TribQualityCatalogPresent())
		return;
	TribCatalogExecute("DELETE FROM tributary.quality_partials WHERE stream = $1", 1, types, v, NULL);
	TribCatalogExecute("DELETE FROM tributary.quality_columns WHERE stream = $1", 1, types, v, NULL);
	TribCatalogExecute("DELETE FROM tributary.quality_windows WHERE stream = $1", 1, types, v, NULL);
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
	def = TribStreamLoad(name, if_exists, false);
	if (def == NULL)
		PG_RETURN_VOID();
	TribCheckMayManage(def, "drop the quality windows of", false);
	TribQualityWaitForBatches(name);
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
		TribQualitySpi("DELETE FROM tributary.quality_partials WHERE stream = $1", 1, types, v, NULL,
					   SPI_OK_DELETE);
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
	cfg = TribQualityConfigLoad(name, false, cxt);
	if (cfg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no quality windows", name),
				 errhint("Set them with tributary.set_quality.")));
	numeric = TribQualityNumericFlags(cfg, def->target);
	parts = TribQualityReadPartials(cfg, DT_NOEND, &nparts, cxt);
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
			i += TribQualityWindowDatums(&m, w->newest_event, values + i, nulls + i);
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
