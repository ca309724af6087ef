/*
 * settings.c
 *		A stream's quality settings as quality_config holds them, the SPI statement helper
 *		the quality files use, and the stream's fold lock (see continuous.c's header).
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

static const char *TribQualityConfigColumns =
"c.\"window\", c.slide, c.allowed_lateness, c.grace, c.origin, c.columns, c.thresholds, "
"c.weights, c.on_alert::pg_catalog.oid, c.newest_event, c.last_arrival, c.closed_until, "
"c.alerting, s.id, s.owner::pg_catalog.oid, c.key_column";

/* ---------------------------------------------------------------------------------------
 * Reading the settings
 * ---------------------------------------------------------------------------------------
 */

/*
 * The number under key in a jsonb object (thresholds, weights): true and *out when it is
 * one; false when key is absent. A value that is no number is an error naming it as what
 * ("threshold \"rows\" must be a number") when what is given (set_quality's checks), and
 * false when it is NULL (reading settings those checks stored).
 */
bool
TribQualityJsonbNumber(Jsonb *obj, const char *key, const char *what, double *out)
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
	{
		if (what == NULL)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s \"%s\" must be a number", what, key)));
	}
	*out = DatumGetFloat8(DirectFunctionCall1(numeric_float8, NumericGetDatum(v->val.numeric)));
	return true;
}

/* An interval's microseconds (checked when stored). */
int64
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
void
TribQualitySpi(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls,
			   int expect)
{
	int			rc = TribSpiExecute(sql, nargs, types, values, nulls, false, 0);

	if (rc != expect)
		elog(ERROR, "tributary quality: statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/*
 * The stream's quality config, or NULL (SPI connected, as the extension's owner). A batch
 * locks the config row (FOR KEY SHARE, which the fold's progress update does not conflict
 * with) until it commits, so drop_quality and drop_stream, which delete the row, wait for
 * the batches in flight and then delete what they wrote (the partials and windows tables
 * have no foreign keys that would make them wait), and a batch that comes after finds no
 * config. Not in REPEATABLE READ or SERIALIZABLE: a fold committed after the batch's
 * snapshot would make the lock fail; what such a batch leaves when its stream is dropped
 * meanwhile, create_stream and set_quality clear.
 */
TribQualityConfig *
TribQualityConfigLoad(const char *stream, bool lock, MemoryContext cxt)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};

	TribQualitySpi(psprintf("SELECT %s FROM tributary.quality_config c "
							"JOIN tributary.stream_catalog s ON s.name = c.stream WHERE c.stream = $1%s",
							TribQualityConfigColumns, lock ? " FOR KEY SHARE OF c" : ""),
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
bool
TribQualityLock(int32 stream_id, LOCKMODE mode, bool wait)
{
	LOCKTAG		tag;

	TribQualityLockTag(&tag, stream_id);
	return LockAcquire(&tag, mode, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}
