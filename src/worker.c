/*
 * worker.c
 *		A stream worker: one dynamic background worker per started non-local stream,
 *		started and stopped by the launcher.
 *
 * It connects to the launcher's database as the extension's owner, claims its stream's
 * slot in shared memory (so a stream never has two workers), names itself after its
 * stream in pg_stat_activity (application_name "tributary: <stream>"), and then waits
 * on its latch: SIGTERM ends it, postmaster death ends it, SIGHUP makes it reload the
 * stream's definition, which is how alter_stream reaches it.
 *
 * The sources (Kafka, Redis Streams) that give a worker messages to consume arrive with
 * their own modules; until then a worker runs and idles for its stream.
 */
#include "postgres.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "launcher.h"
#include "shmem.h"
#include "tributary.h"

static int32 worker_stream_id = 0;
static TribStreamKey worker_key;

static void
TribWorkerOnExit(int code, Datum arg)
{
	TribWorkerDetach(&worker_key);
}

/* Load the stream's definition into a context that lives as long as the worker. */
static StreamDef *
TribWorkerLoadStream(MemoryContext cxt)
{
	StreamDef  *def;
	MemoryContext old;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	old = MemoryContextSwitchTo(cxt);
	def = TribStreamLoadById(worker_stream_id);
	if (def != NULL)
		TribStreamResolveOptions(def);
	MemoryContextSwitchTo(old);
	PopActiveSnapshot();
	CommitTransactionCommand();
	return def;
}

void
TribStreamWorkerMain(Datum arg)
{
	TribWorkerArgs args;
	MemoryContext defcxt;
	StreamDef  *def;

	worker_stream_id = DatumGetInt32(arg);
	memcpy(&args, MyBgworkerEntry->bgw_extra, sizeof(args));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(args.database, args.role, 0);

	defcxt = AllocSetContextCreate(TopMemoryContext, "tributary stream definition",
								   ALLOCSET_SMALL_SIZES);
	def = TribWorkerLoadStream(defcxt);
	if (def == NULL || !def->enabled)
	{
		ereport(LOG, (errmsg("tributary stream %d is gone or stopped; worker exits", worker_stream_id)));
		proc_exit(0);
	}
	worker_key = def->key;
	if (!TribWorkerAttach(&worker_key, def->config_version))
	{
		ereport(LOG, (errmsg("tributary stream \"%s\" already has a worker; this one exits", def->name)));
		proc_exit(0);
	}
	before_shmem_exit(TribWorkerOnExit, (Datum) 0);
	pgstat_report_appname(psprintf("tributary: %s", def->name));
	ereport(LOG, (errmsg("tributary worker for stream \"%s\" started (source %s)",
						 def->name, TribSourceName(def->source))));

	for (;;)
	{
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 tributary_naptime_ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			StreamDef  *fresh;

			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			MemoryContextReset(defcxt);
			fresh = TribWorkerLoadStream(defcxt);
			if (fresh == NULL || !fresh->enabled)
				proc_exit(0);
			def = fresh;
			TribWorkerSetConfigVersion(&worker_key, def->config_version);
			ereport(LOG, (errmsg("tributary worker for stream \"%s\" reloaded its options (config version %d)",
								 def->name, def->config_version)));
		}
	}
}
