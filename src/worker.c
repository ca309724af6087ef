/*
 * worker.c
 *		A stream worker: one of the dynamic background workers (as many as the stream's
 *		"parallelism", 1 by default) of a started non-local stream, started and stopped by
 *		the launcher, which gives each its index.
 *
 * It connects to the launcher's database as the extension's owner, claims its index in
 * its stream's slot in shared memory (so a stream never has two workers at one index),
 * names itself after its stream in pg_stat_activity (application_name
 * "tributary: <stream>", or "tributary: <stream> #<index + 1>" when the stream has
 * several workers), and then waits
 * on its latch: SIGTERM ends it, postmaster death ends it, SIGHUP makes it reload the
 * stream's definition, which is how alter_stream reaches it.
 *
 * It consumes through the one consume loop (consume.c) with its source's consumer
 * (sources/source.h), which it keeps across reloads when the source can.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "consume.h"
#include "launcher.h"
#include "shmem.h"
#include "sources/source.h"
#include "tributary.h"

static int32 worker_stream_id = 0;
static int	worker_index = 0;
static TribStreamKey worker_key;

static void
TribWorkerOnExit(int code, Datum arg)
{
	TribWorkerDetach(&worker_key, worker_index);
}

/* application_name: the stream, and which of its workers this is when it has several */
static void
TribWorkerReportName(StreamDef *def)
{
	if (def->parallelism == 1)
		pgstat_report_appname(psprintf("tributary: %s", def->name));
	else
		pgstat_report_appname(psprintf("tributary: %s #%d", def->name, worker_index + 1));
}

/*
 * Record why the worker cannot run its stream in tributary.streams.last_error. When the
 * stream cannot run whatever is retried (its target or owner is gone, row-level security
 * now applies: TribStreamUnrunnable), that reason is recorded instead and the stream is
 * marked failed, so the launcher stops restarting it until it is altered, started or
 * dropped. Returns whether it failed so.
 */
static bool
TribWorkerRecordError(const char *message)
{
	Oid			types[3] = {INT4OID, TEXTOID, BOOLOID};
	Datum		values[3];
	StreamDef  *def;
	char	   *reason = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	def = TribStreamLoadById(worker_stream_id);
	/* before ALTER EXTENSION UPDATE there is no "failed": the error is retried, as in 0.2.0 */
	if (def != NULL && TribCatalogHasStates())
		reason = TribStreamUnrunnable(def);
	values[0] = Int32GetDatum(worker_stream_id);
	values[1] = CStringGetTextDatum(reason != NULL ? reason : message);
	values[2] = BoolGetDatum(true);
	TribCatalogExecute(reason != NULL ?
					   "UPDATE tributary.stream_catalog SET last_error = $2, "
					   "last_error_at = pg_catalog.now(), failed = $3 WHERE id = $1" :
					   "UPDATE tributary.stream_catalog SET last_error = $2, "
					   "last_error_at = pg_catalog.now() WHERE id = $1",
					   reason != NULL ? 3 : 2, types, values, NULL);
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (reason != NULL)
		ereport(LOG,
				(errmsg("tributary stream %d failed: %s", worker_stream_id, reason),
				 errdetail("The stream waits until it is altered, started or dropped.")));
	return reason != NULL;
}

/*
 * Load the stream's definition into a context that lives as long as the worker. When
 * it cannot be loaded (its target was dropped or altered so its options no longer fit),
 * the error goes to last_error and the worker exits; the launcher retries with backoff,
 * unless the stream failed for good (TribWorkerRecordError).
 */
static StreamDef *
TribWorkerLoadStream(MemoryContext cxt)
{
	StreamDef  *volatile def = NULL;
	MemoryContext old = CurrentMemoryContext;
	char	   *volatile failure = NULL;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		MemoryContextSwitchTo(cxt);
		def = TribStreamLoadById(worker_stream_id);
		if (def != NULL)
			TribStreamResolveOptions(def, true);
		MemoryContextSwitchTo(old);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(old);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		failure = edata->message;
	}
	PG_END_TRY();
	if (failure != NULL)
	{
		if (TribWorkerRecordError(failure))
			proc_exit(0);
		ereport(ERROR,
				(errmsg("tributary worker cannot run stream %d: %s", worker_stream_id, failure)));
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return def;
}

/*
 * Consume the stream until a reload is asked for: keep the consumer from before the
 * reload, or open one, then run the consume loop. The previous definition's memory,
 * retired, is freed once the consumer has let go of it. An error (the target gone, a
 * privilege revoked, a partition that cannot be positioned) rolls back, gives the batch in
 * flight back to the source, is written to last_error and ends the worker; the launcher
 * restarts it with backoff.
 */
static void
TribWorkerConsume(StreamDef *def, MemoryContext retired)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		TribConsumeStart(def, worker_index);
		if (retired != NULL)
			MemoryContextDelete(retired);
		TribConsumeUntilReload();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		if (edata->elevel >= FATAL || ProcDiePending)
			PG_RE_THROW();
		FlushErrorState();
		AbortCurrentTransaction();
		TribConsumeAbandonBatch();
		if (TribWorkerRecordError(edata->message))
			proc_exit(0);
		ReThrowError(edata);
	}
	PG_END_TRY();
}

void
TribStreamWorkerMain(Datum arg)
{
	TribWorkerArgs args;
	MemoryContext defcxt;
	MemoryContext retired = NULL;
	StreamDef  *def;

	worker_stream_id = DatumGetInt32(arg);
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));
	worker_index = args.index;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.database, args.role, 0);
	TribPinSessionSettings();

	defcxt = AllocSetContextCreate(TopMemoryContext, "tributary stream definition",
								   ALLOCSET_SMALL_SIZES);
	def = TribWorkerLoadStream(defcxt);
	if (def == NULL || !def->enabled || worker_index >= def->parallelism)
	{
		ereport(LOG, (errmsg("tributary stream %d is gone or stopped, or needs no worker #%d; worker exits",
							 worker_stream_id, worker_index + 1)));
		proc_exit(0);
	}
	worker_key = def->key;
	if (!TribWorkerAttach(&worker_key, worker_index, def->config_version))
	{
		ereport(LOG, (errmsg("tributary stream \"%s\" already has a worker #%d; this one exits",
							 def->name, worker_index + 1)));
		proc_exit(0);
	}
	before_shmem_exit(TribWorkerOnExit, (Datum) 0);
	TribWorkerReportName(def);
	ereport(LOG, (errmsg("tributary worker #%d of %d for stream \"%s\" started (source %s)",
						 worker_index + 1, def->parallelism, def->name, def->source->name)));

	for (;;)
	{
		pgstat_report_activity(STATE_IDLE, NULL);
		TribWorkerConsume(def, retired);
		retired = NULL;
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			MemoryContext freshcxt;
			StreamDef  *fresh;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			/* the consumer may still use the old definition until it takes the new one */
			freshcxt = AllocSetContextCreate(TopMemoryContext, "tributary stream definition",
											 ALLOCSET_SMALL_SIZES);
			fresh = TribWorkerLoadStream(freshcxt);
			/* gone, stopped, parallelism lowered, or an id reused by a re-created extension */
			if (fresh == NULL || !fresh->enabled || fresh->key.catalog != worker_key.catalog ||
				worker_index >= fresh->parallelism)
				proc_exit(0);
			retired = defcxt;
			defcxt = freshcxt;
			def = fresh;
			TribWorkerSetConfigVersion(&worker_key, worker_index, def->config_version);
			TribWorkerReportName(def);
			ereport(LOG, (errmsg("tributary worker #%d of %d for stream \"%s\" reloaded its options (config version %d)",
								 worker_index + 1, def->parallelism, def->name, def->config_version)));
		}
	}
}
