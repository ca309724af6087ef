/*
 * continuous.c
 *		Continuous quality windows per stream (tributary.set_quality): the quality stage and
 *		closing on the wall clock. The fold is in fold.c, alerts in alerts.c, the settings
 *		and the fold lock in settings.c, the SQL functions in stream_sql.c; what they share
 *		in continuous_internal.h. The protocol, for all of them:
 *
 * The stage runs in every batch's transaction, after the rows are in. It summarizes the
 * batch's rows per pane (one slide of event time, aligned as date_bin aligns it) into
 * window states (window.h), its partials, and stores one row per pane in
 * tributary.quality_partials: insert-only, so any number of sessions and workers write one
 * stream at once without waiting on each other, and the partial states commit or vanish
 * with the batch's rows and source positions (crash identity needs nothing else). A batch
 * that folds in its own transaction (below) hands its partials to the fold instead, which
 * stores only those of panes an open window still covers: a partial every window of
 * which closes in the same transaction would be deleted in it.
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
#include "quality/adhoc_scan.h"
#include "quality/continuous.h"
#include "quality/continuous_internal.h"
#include "quality/window.h"

/* ---------------------------------------------------------------------------------------
 * The quality stage
 * ---------------------------------------------------------------------------------------
 */

/* Whether this database's catalog has quality windows (not before ALTER EXTENSION UPDATE). */
bool
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

/*
 * The pane of t, as the ad-hoc functions and the query path bin (TribQualityPaneStart);
 * false where date_bin fails or a window of the pane would start or end outside the
 * timestamp range (TribQualityWindowsFit), where the ad-hoc functions raise an error:
 * such a row belongs to no window, as a row without an event time, rather than failing
 * the batch.
 */
static inline bool
TribQualityPaneOf(TribQualityConfig *cfg, TimestampTz t, TimestampTz *start)
{
	return TribQualityPaneStart(t, cfg->origin, cfg->slide, cfg->slide_iv, start) &&
		TribQualityWindowsFit(*start, cfg->window, cfg->slide);
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

/*
 * The watermark a batch's rows are judged late against: the newest event time seen minus
 * the allowed lateness, as the last fold left them, and never before the end of the last
 * closed window, so that a row of a window the wall clock closed (a silent stream's) is
 * late too. tributary.stream_stats shows the same.
 */
static TimestampTz
TribQualityLateBound(const TribQualityConfig *cfg)
{
	TimestampTz bound = cfg->has_newest ? cfg->newest_event - cfg->lateness : DT_NOBEGIN;

	if (cfg->has_closed)
		bound = Max(bound, cfg->closed_until - cfg->slide + cfg->window);
	return bound;
}

static bool
TribQualityApplies(StreamDef *def)
{
	return def->event_time_column != NULL && TribSettingsHaveStream("quality_config", def->name);
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
	TimestampTz last_pane = 0;
	TribQualityWindow *last_w = NULL;
	TribQualityUnstored mine;

	if (timeatt == InvalidAttrNumber)
		return;					/* the event time column is gone: no windows */
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* the fold lock (keyed by the stream's id), then the progress as the last fold left it */
	(void) TribQualityLock(def->id, ShareLock, true);
	/* its config row locked (settings.c), except where that would fail on others' folds */
	cfg = TribQualityConfigLoad(def->name, !IsolationUsesXactSnapshot(), cxt);
	if (cfg == NULL)
	{
		SPI_finish();
		TribRestoreUser(&owner);
		return;
	}
	watermark = TribQualityLateBound(cfg);
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
		TimestampTz pane;
		TribQualityWindow *w;
		double		lag;

		heap_deform_tuple(row->tuple, desc, values, isnull);
		if (isnull[timeatt - 1])
			continue;
		/* a timestamp is read as UTC, as window_quality reads it: the same microseconds */
		t = DatumGetTimestampTz(values[timeatt - 1]);
		if (last_w != NULL && t >= last_pane && t - last_pane < cfg->slide)
			w = last_w;			/* the previous row's pane, as most rows of a batch */
		else
		{
			if (TIMESTAMP_NOT_FINITE(t) || !TribQualityPaneOf(cfg, t, &pane))
				continue;
			w = TribQualityPane(panes, cfg, numeric, pane, cxt);
			last_pane = pane;
			last_w = w;
		}
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
		TimestampTz pane;

		if (TribQualityPaneOf(cfg, t, &pane))
			TribQualityPane(panes, cfg, numeric, pane, cxt)->dead += dead;
	}

	/* one partial per pane */
	mine.parts = palloc(sizeof(TribQualityPartial) * Max(hash_get_num_entries(panes), 1));
	mine.n = 0;
	mine.arrived = batch->arrived;
	hash_seq_init(&seq, panes);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		mine.parts[mine.n].pane = e->start;
		mine.parts[mine.n].folded = false;
		mine.parts[mine.n].state = e->window;
		mine.n++;
	}

	/*
	 * Alone? Then fold now, in this transaction (a snapshot per transaction would miss
	 * others'), with the batch's partials in hand: the fold stores those it leaves open. Else
	 * they are stored for the next fold.
	 */
	if (!IsolationUsesXactSnapshot() && TribQualityLock(cfg->stream_id, ExclusiveLock, false))
		(void) TribQualityFold(cfg, def->target, GetCurrentTimestamp(), &mine, &pending);
	else
		for (int i = 0; i < mine.n; i++)
			TribQualityStorePartial(cfg, mine.parts[i].pane, mine.parts[i].state, mine.arrived, false);
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
int
TribQualityFoldStream(const char *stream, bool wait, TribPendingList *pending)
{
	MemoryContext cxt = CurrentMemoryContext;
	TribQualityConfig *cfg = TribQualityConfigLoad(stream, false, cxt);
	Oid			target;

	if (cfg == NULL)
		return 0;
	if (!TribQualityLock(cfg->stream_id, ExclusiveLock, wait))
		return 0;
	/* the progress as the last fold left it, now that none can run */
	cfg = TribQualityConfigLoad(stream, false, cxt);
	if (cfg == NULL)
		return 0;
	target = TribStreamLoad(stream, false, false)->target;
	return TribQualityFold(cfg, target, GetCurrentTimestamp(), NULL, pending);
}

/* One stream of TribQualityCloseDue: its alerts count only if its fold commits. */
static void
TribQualityCloseStream(const char *stream, void *arg)
{
	List	  **pending = arg;
	TribPendingList mine = {NIL, CurrentMemoryContext};

	(void) TribQualityFoldStream(stream, false, &mine);
	*pending = list_concat(*pending, mine.alerts);
}

void
TribQualityCloseDue(void)
{
	TribOwnerContext owner;
	List	   *pending = NIL;

	if (!TribQualityCatalogPresent())
		return;
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	TribForEachStream("SELECT stream FROM tributary.quality_config ORDER BY stream",
					  TribQualityCloseStream, &pending, "close the quality windows");
	SPI_finish();
	TribRestoreUser(&owner);
	TribQualityRunHandlers(pending);
}
