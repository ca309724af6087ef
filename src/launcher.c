/*
 * launcher.c
 *		The launcher: one static background worker, connected to tributary.database,
 *		that keeps exactly "parallelism" stream workers (1 by default) per started
 *		non-local stream, each with its index.
 *
 * It reconciles the catalog with the workers it runs: starts workers for started
 * streams, terminates those of stopped or dropped streams and those beyond a lowered
 * parallelism, sends SIGHUP to a worker whose
 * stream's config_version changed, and restarts a worker that died, with exponential
 * backoff (1 s doubling to 60 s, reset after a minute of running). It is woken at the
 * commit of every start/stop/alter_stream/drop_stream (its latch, set through shmem.c), by the
 * postmaster when one of its workers starts or stops (bgw_notify_pid), and otherwise
 * every tributary.naptime.
 *
 * Workers are BGW_NEVER_RESTART: the launcher decides. If the launcher itself dies, the
 * postmaster restarts it after a few seconds, and it first terminates the workers its
 * predecessor left behind (found in shared memory and confirmed against the postmaster's
 * worker registry, see shmem.c TribWorkerAlive), so no stream ever has two workers at one
 * index.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "catalog_columns.h"
#include "launcher.h"
#include "shmem.h"
#include "sources/source.h"
#include "tributary.h"
#include "quality/continuous.h"
#include "fanout/fanout.h"

#define TRIB_BACKOFF_MIN_MS 1000
#define TRIB_BACKOFF_MAX_MS 60000
#define TRIB_HEALTHY_RUN_MS 60000

/* A stream's worker as the launcher knows it: ids restart when the extension is re-created. */
typedef struct TribLaunchKey
{
	Oid			catalog;		/* OID of tributary.stream_catalog */
	int32		id;
	int32		index;			/* which of the stream's workers */
} TribLaunchKey;

/* A stream worker the launcher looks after. */
typedef struct TribLaunchEntry
{
	TribLaunchKey key;			/* hash key */
	BackgroundWorkerHandle *handle; /* NULL while no worker is registered */
	int32		config_version; /* the version the worker was started with or told about */
	int			failures;		/* consecutive unexpected exits */
	TimestampTz next_start;		/* not before this */
	TimestampTz started_at;
	bool		wanted;			/* in the catalog as started, this round */
	Oid			owner;			/* the stream's owner, for tributary.max_workers_per_role */
} TribLaunchEntry;

/* A started stream as read from the catalog. */
typedef struct TribWantedStream
{
	TribLaunchKey key;			/* index unused */
	int32		config_version;
	int32		parallelism;
	Oid			owner;
	bool		owner_exempt;	/* a superuser: not limited per role */
	bool		waiting_stored; /* catalog column "waiting" as read */
	char		waiting[256];	/* why a worker could not start this round, or "" */
	char		owner_name[NAMEDATALEN];
	char		name[NAMEDATALEN];
} TribWantedStream;

static HTAB *launch_entries = NULL;
static bool catalog_has_states = false;	/* 0.3.0 columns failed and waiting, at the last read */
static bool worker_limit_logged = false;

/*
 * Launcher and workers connect as the extension's owner, a superuser, and inherit the
 * database's settings: pin search_path so no one else's objects are found first, lift
 * timeouts meant for interactive sessions, and run read-write READ COMMITTED transactions.
 */
void
TribPinSessionSettings(void)
{
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	/* the partition fence re-reads offsets after its locks: it needs a fresh snapshot */
	SetConfigOption("default_transaction_isolation", "read committed", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("default_transaction_read_only", "off", PGC_SUSET, PGC_S_OVERRIDE);
}

void
TribLauncherRegister(void)
{
	BackgroundWorker bgw = {0};

	snprintf(bgw.bgw_name, BGW_MAXLEN, "tributary launcher");
	snprintf(bgw.bgw_type, BGW_MAXLEN, "tributary launcher");
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "tributary");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "TribLauncherMain");
	RegisterBackgroundWorker(&bgw);
}

/*
 * Terminate the workers a previous launcher left running, and wait for them to go. Which
 * of them still run is decided in shared memory against PostgreSQL's own records, not by
 * pid alone (TribOrphanWorkers), so a pid reused since then is never signalled.
 */
static void
TribTerminateOrphans(void)
{
	pid_t		pids[1024];
	int			n = TribOrphanWorkers(SIGTERM, pids, lengthof(pids));

	for (int i = 0; i < Min(n, (int) lengthof(pids)); i++)
		ereport(LOG, (errmsg("tributary launcher: terminating stream worker %d left by a previous launcher", (int) pids[i])));
	for (int waited = 0; n > 0 && waited < 300; waited++)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, 100,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		n = TribOrphanWorkers(0, pids, lengthof(pids));
	}
}

/*
 * Read the started non-local streams and the extension's owner, and free the shared
 * memory slots of this database's streams that no longer exist. Returns NIL when the
 * extension is not installed in this database.
 */
static List *
TribReadWantedStreams(Oid *owner)
{
	List	   *wanted = NIL;
	MemoryContext cxt = CurrentMemoryContext;
	Oid			nsp;
	int			rc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	if ((rc = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "tributary launcher: SPI_connect failed: %s", SPI_result_code_string(rc));
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "reading tributary.stream_catalog");

	*owner = InvalidOid;
	nsp = get_namespace_oid(TRIBUTARY_SCHEMA, true);
	if (OidIsValid(nsp) && OidIsValid(get_relname_relid("stream_catalog", nsp)))
	{
		Oid			catalog = TribCatalogRelid();
		int			nexempt = 0;
		int32	   *ids;
		bool		isnull;

		*owner = TribExtensionOwner();
		/* before ALTER EXTENSION UPDATE to 0.3.0 there is no failed or waiting column */
		catalog_has_states = TribCatalogHasStates();
		rc = SPI_execute(catalog_has_states ?
						 "SELECT " TRIB_LAUNCHER_COLUMNS " FROM tributary.stream_catalog ORDER BY id" :
						 "SELECT " TRIB_LAUNCHER_COLUMNS_0_2 " FROM tributary.stream_catalog ORDER BY id",
						 true, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "tributary launcher: reading the stream catalog failed: %s",
				 SPI_result_code_string(rc));
		ids = palloc(sizeof(int32) * (SPI_processed + 1));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			TribWantedStream *w;
			MemoryContext old;
			const TribSourceRoutine *source;

			Assert(desc->natts == Natts_trib_launcher);
			ids[i] = DatumGetInt32(SPI_getbinval(tup, desc, Anum_trib_launcher_id, &isnull));
			source = TribSourceLookup(SPI_getvalue(tup, desc, Anum_trib_launcher_source));
			/* started, and of a source that workers consume */
			if (!DatumGetBool(SPI_getbinval(tup, desc, Anum_trib_launcher_started, &isnull)) ||
				source == NULL || !source->needs_worker || !source->available)
				continue;
			old = MemoryContextSwitchTo(cxt);
			w = palloc0(sizeof(TribWantedStream));
			w->key.catalog = catalog;
			w->key.id = ids[i];
			w->config_version = DatumGetInt32(SPI_getbinval(tup, desc, Anum_trib_launcher_config_version,
															&isnull));
			/* validated when stored; a catalog edited by hand must not stop the launcher */
			{
				char	   *p = SPI_getvalue(tup, desc, Anum_trib_launcher_parallelism);

				w->parallelism = p != NULL ? atoi(p) : 1;
				w->parallelism = Max(1, Min(w->parallelism, TRIBUTARY_MAX_PARALLELISM));
			}
			strlcpy(w->name, SPI_getvalue(tup, desc, Anum_trib_launcher_name), NAMEDATALEN);
			w->owner = DatumGetObjectId(SPI_getbinval(tup, desc, Anum_trib_launcher_owner, &isnull));
			w->owner_exempt = superuser_arg(w->owner);
			w->waiting_stored = DatumGetBool(SPI_getbinval(tup, desc, Anum_trib_launcher_waiting,
														   &isnull));
			strlcpy(w->owner_name, TribRoleName(w->owner), NAMEDATALEN);
			/* superusers' streams first: plain roles' streams cannot keep them waiting */
			if (w->owner_exempt)
				wanted = list_insert_nth(wanted, nexempt++, w);
			else
				wanted = lappend(wanted, w);
			MemoryContextSwitchTo(old);
		}
		TribSweepSlots(catalog, ids, (int) SPI_processed);
	}
	else
		TribSweepSlots(InvalidOid, NULL, 0);

	if ((rc = SPI_finish()) != SPI_OK_FINISH)
		elog(ERROR, "tributary launcher: SPI_finish failed: %s", SPI_result_code_string(rc));
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	return wanted;
}

static bool
TribStartWorker(TribWantedStream *w, TribLaunchEntry *e, Oid owner)
{
	BackgroundWorker bgw = {0};
	TribWorkerArgs args = {MyDatabaseId, owner, e->key.index};

	if (w->parallelism == 1)
		snprintf(bgw.bgw_name, BGW_MAXLEN, "tributary stream worker \"%s\"", w->name);
	else
		snprintf(bgw.bgw_name, BGW_MAXLEN, "tributary stream worker \"%s\" #%d",
				 w->name, e->key.index + 1);
	snprintf(bgw.bgw_type, BGW_MAXLEN, "%s", TRIB_STREAM_WORKER_TYPE);
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "tributary");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "TribStreamWorkerMain");
	bgw.bgw_main_arg = Int32GetDatum(w->key.id);
	bgw.bgw_notify_pid = MyProcPid;
	memcpy(bgw.bgw_extra, &args, sizeof(args));

	if (!RegisterDynamicBackgroundWorker(&bgw, &e->handle))
	{
		e->handle = NULL;
		if (!worker_limit_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("tributary launcher could not start a worker for stream \"%s\"", w->name),
					 errdetail("No background worker slot is free."),
					 errhint("Raise max_worker_processes (each stream worker takes one) and restart the server.")));
		worker_limit_logged = true;
		return false;
	}
	e->config_version = w->config_version;
	e->started_at = GetCurrentTimestamp();
	return true;
}

static int
TribBackoffMs(int failures)
{
	int			ms = TRIB_BACKOFF_MIN_MS;

	for (int i = 1; i < failures && ms < TRIB_BACKOFF_MAX_MS; i++)
		ms *= 2;
	return Min(ms, TRIB_BACKOFF_MAX_MS);
}

/* Workers running (or registered), of every stream or of one owner's streams. */
static int
TribRunningWorkers(Oid owner)
{
	HASH_SEQ_STATUS seq;
	TribLaunchEntry *e;
	int			n = 0;

	hash_seq_init(&seq, launch_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
		n += e->handle != NULL && (!OidIsValid(owner) || e->owner == owner);
	return n;
}

/* tributary.max_workers_per_role in force: -1 is half of tributary.max_workers. */
static int
TribWorkersPerRole(void)
{
	if (tributary_max_workers_per_role >= 0)
		return tributary_max_workers_per_role;
	return Max(1, tributary_max_workers / 2);
}

/*
 * Look after one worker of a started stream; returns ms until it next needs attention
 * (or -1).
 */
static long
TribTendWorker(TribWantedStream *w, int index, Oid owner, TimestampTz now)
{
	bool		found;
	TribLaunchKey key = {w->key.catalog, w->key.id, index};
	TribLaunchEntry *e = hash_search(launch_entries, &key, HASH_ENTER, &found);
	pid_t		pid;

	if (!found)
	{
		e->handle = NULL;
		e->failures = 0;
		e->next_start = 0;
		e->config_version = 0;
	}
	e->wanted = true;

	if (e->handle != NULL)
	{
		switch (GetBackgroundWorkerPid(e->handle, &pid))
		{
			case BGWH_STARTED:
				if (e->config_version != w->config_version)
				{
					ereport(LOG, (errmsg("tributary launcher: options of stream \"%s\" changed, reloading its worker #%d",
										 w->name, index + 1)));
					kill(pid, SIGHUP);
					e->config_version = w->config_version;
				}
				if (e->failures > 0 && TimestampDifferenceExceeds(e->started_at, now, TRIB_HEALTHY_RUN_MS))
					e->failures = 0;
				return -1;
			case BGWH_NOT_YET_STARTED:
				return -1;
			case BGWH_STOPPED:
			case BGWH_POSTMASTER_DIED:
				pfree(e->handle);
				e->handle = NULL;
				e->failures++;
				e->next_start = TimestampTzPlusMilliseconds(now, TribBackoffMs(e->failures));
				ereport(LOG,
						(errmsg("tributary launcher: worker #%d of stream \"%s\" exited, restarting in %d ms",
								index + 1, w->name, TribBackoffMs(e->failures))));
				break;
		}
	}

	e->owner = w->owner;
	if (now < e->next_start)
		return (long) ((e->next_start - now) / 1000) + 1;
	if (!w->owner_exempt && TribRunningWorkers(w->owner) >= TribWorkersPerRole())
	{
		snprintf(w->waiting, sizeof(w->waiting),
				 "waiting for a worker: the streams of role %s run %d workers, tributary.max_workers_per_role is %d",
				 w->owner_name, TribRunningWorkers(w->owner), TribWorkersPerRole());
		return -1;
	}
	if (TribRunningWorkers(InvalidOid) >= tributary_max_workers)
	{
		snprintf(w->waiting, sizeof(w->waiting),
				 "waiting for a worker: all %d of tributary.max_workers are taken",
				 tributary_max_workers);
		if (!worker_limit_logged)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("tributary launcher is at tributary.max_workers (%d); stream \"%s\" waits",
							tributary_max_workers, w->name),
					 errhint("Raise tributary.max_workers (and max_worker_processes) and restart the server.")));
		worker_limit_logged = true;
		return -1;
	}
	if (!TribStartWorker(w, e, owner))
		return TRIB_BACKOFF_MIN_MS;
	return -1;
}

/*
 * Stop the workers of streams that are no longer started, and those at an index beyond
 * a stream's lowered parallelism: signal them all first, then
 * wait for each, so one slow worker does not hold up the others' signals.
 */
static void
TribStopUnwanted(void)
{
	HASH_SEQ_STATUS seq;
	TribLaunchEntry *e;
	List	   *stopping = NIL;
	ListCell   *lc;

	hash_seq_init(&seq, launch_entries);
	while ((e = hash_seq_search(&seq)) != NULL)
	{
		if (e->wanted)
		{
			e->wanted = false;
			continue;
		}
		if (e->handle != NULL)
		{
			TerminateBackgroundWorker(e->handle);
			stopping = lappend(stopping, e->handle);
		}
		hash_search(launch_entries, &e->key, HASH_REMOVE, NULL);
	}
	foreach(lc, stopping)
	{
		(void) WaitForBackgroundWorkerShutdown(lfirst(lc));
		pfree(lfirst(lc));
	}
	list_free(stopping);
}

/*
 * Tell tributary.streams which streams wait for a worker slot, and why (last_error):
 * written only when a stream starts or stops waiting.
 */
static void
TribRecordWaiting(List *wanted)
{
	ListCell   *lc;
	bool		started = false;

	if (!catalog_has_states)
		return;
	foreach(lc, wanted)
	{
		TribWantedStream *w = lfirst(lc);
		Oid			types[3] = {INT4OID, BOOLOID, TEXTOID};
		Datum		values[3];
		char		nulls[3] = "   ";

		bool		waiting = w->waiting[0] != '\0';

		if (waiting == w->waiting_stored)
			continue;
		if (!started)
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			started = true;
		}
		values[0] = Int32GetDatum(w->key.id);
		values[1] = BoolGetDatum(waiting);
		values[2] = waiting ? CStringGetTextDatum(w->waiting) : (Datum) 0;
		nulls[2] = waiting ? ' ' : 'n';
		TribCatalogExecute("UPDATE tributary.stream_catalog SET waiting = $2, "
						   "last_error = CASE WHEN $2 THEN $3 "
						   "  WHEN last_error LIKE 'waiting for a worker:%' THEN NULL ELSE last_error END, "
						   "last_error_at = CASE WHEN $2 THEN pg_catalog.now() "
						   "  WHEN last_error LIKE 'waiting for a worker:%' THEN NULL ELSE last_error_at END "
						   "WHERE id = $1",
						   3, types, values, nulls);
	}
	if (started)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
}

/* One pass: returns how long to sleep before the next. */
static long
TribReconcile(void)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary launcher pass",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Oid			owner;
	List	   *wanted = TribReadWantedStreams(&owner);
	TimestampTz now = GetCurrentTimestamp();
	long		sleep_ms = tributary_naptime_ms;
	ListCell   *lc;

	MemoryContextSwitchTo(old);
	/*
	 * Worker #1 of every stream before worker #2 of any: when tributary.max_workers runs
	 * short, every stream still gets a worker.
	 */
	for (int index = 0; index < TRIBUTARY_MAX_PARALLELISM; index++)
		foreach(lc, wanted)
		{
			TribWantedStream *w = lfirst(lc);
			long		ms;

			if (index >= w->parallelism)
				continue;
			ms = TribTendWorker(w, index, owner, now);
			if (ms >= 0)
				sleep_ms = Min(sleep_ms, ms);
		}
	TribStopUnwanted();
	TribRecordWaiting(wanted);
	MemoryContextDelete(cxt);
	return sleep_ms;
}

/*
 * Close the quality windows that the watermark or the wall clock has passed, for streams
 * whose batches did not (silent streams, or many sessions writing one stream at once).
 */
static void
TribLauncherCloseQuality(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "closing tributary quality windows");
	TribQualityCloseDue();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
}

/*
 * Heartbeats of idle streams with fan-out, and resyncs owed once the notification queue
 * has room again. Returns the milliseconds until the next heartbeat is due, or -1.
 */
static long
TribLauncherFanout(void)
{
	long		next;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "sending tributary heartbeats");
	next = TribFanoutTick();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return next;
}

static void
TribLauncherOnExit(int code, Datum arg)
{
	TribSetLauncher(false);
}

void
TribLauncherMain(Datum arg)
{
	HASHCTL		ctl = {0};

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(tributary_database, NULL, 0);
	TribPinSessionSettings();
	pgstat_report_appname("tributary launcher");

	ctl.keysize = sizeof(TribLaunchKey);
	ctl.entrysize = sizeof(TribLaunchEntry);
	launch_entries = hash_create("tributary launcher streams", 64, &ctl, HASH_ELEM | HASH_BLOBS);

	TribTerminateOrphans();
	TribSetLauncher(true);
	before_shmem_exit(TribLauncherOnExit, (Datum) 0);
	ereport(LOG, (errmsg("tributary launcher started for database \"%s\"", tributary_database)));

	for (;;)
	{
		long		sleep_ms;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		sleep_ms = TribReconcile();
		TribLauncherCloseQuality();
		{
			long		heartbeat_ms = TribLauncherFanout();

			if (heartbeat_ms >= 0)
				sleep_ms = Min(sleep_ms, heartbeat_ms);
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 sleep_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
