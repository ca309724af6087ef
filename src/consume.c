/*
 * consume.c
 *		The one consume loop of a stream worker, for every source with a consumer: collect a
 *		batch outside a transaction, then in one transaction fence it, put it through the
 *		batch path (rows as the target's owner, dead letters, the source's positions,
 *		counters) and commit; then let the source act on the commit (Kafka: commit offsets for lag tools) and release it. The source's
 *		callbacks and their contract are in sources/source.h.
 *
 * The consumer outlives a reload: TribConsumeStart gives the source the new definition
 * (reuse) or closes the consumer and opens another. At process exit the consumer is
 * closed (before_shmem_exit), so a consumer group is left at once rather than after its
 * session times out. Errors are the worker's (worker.c): it rolls back, calls
 * TribConsumeAbandonBatch, records last_error and exits.
 *
 * Memory: one batch memory context, reset after every batch; the consumer is the
 * source's. This file holds no locks.
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "batch.h"
#include "catalog.h"
#include "consume.h"
#include "sources/source.h"

static const TribSourceRoutine *consumer_source = NULL;
static void *consumer = NULL;
static StreamDef *consumer_def = NULL;
static bool batch_in_flight = false;	/* collect was called and release not yet */
static MemoryContext batch_cxt = NULL;

/* At process exit: close the consumer, so it leaves its group now and not at a timeout. */
static void
TribConsumeAtExit(int code, Datum arg)
{
	void	   *c = consumer;

	if (c == NULL)
		return;
	consumer = NULL;
	consumer_source->close(c, true);
}

/*
 * Serve def as worker number index: a consumer kept from before a reload goes on when its
 * source can reuse it for def (the old definition is still valid during that call), else
 * it is closed and a new one opened. A source without a consumer (one not available
 * yet) raises.
 */
void
TribConsumeStart(StreamDef *def, int index)
{
	static bool exit_registered = false;

	if (def->source->open == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("source \"%s\" has no consumer in this version of tributary",
						def->source->name)));
	if (!exit_registered)
	{
		before_shmem_exit(TribConsumeAtExit, (Datum) 0);
		batch_cxt = AllocSetContextCreate(TopMemoryContext, "tributary batch",
										  ALLOCSET_DEFAULT_SIZES);
		exit_registered = true;
	}
	Assert(!batch_in_flight);

	if (consumer != NULL)
	{
		void	   *old = consumer;

		if (consumer_source == def->source && consumer_source->reuse != NULL &&
			consumer_source->reuse(consumer, def, index))
		{
			consumer_def = def;
			return;
		}
		consumer = NULL;		/* closed even if close raises: never closed twice */
		consumer_source->close(old, false);
	}
	consumer_source = def->source;
	consumer = consumer_source->open(def, index);
	consumer_def = def;
}

/*
 * One batch: collect it, then fence it, insert it and store its positions in one
 * transaction, commit, and let the source act on the commit and release it.
 */
static void
TribConsumeBatch(void)
{
	const TribSourceRoutine *source = consumer_source;
	MemoryContext old = MemoryContextSwitchTo(batch_cxt);
	MemoryContext xact_cxt;
	TribMessage *msgs = NULL;
	int			n;

	batch_in_flight = true;
	n = source->collect(consumer, &msgs);
	if (n == 0)
	{
		batch_in_flight = false;
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch_cxt);
		return;
	}

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	xact_cxt = MemoryContextSwitchTo(batch_cxt);
	if (source->fence != NULL)
		n = source->fence(consumer, msgs, n);
	if (n > 0)
	{
		TribMessageResult *results = palloc0(sizeof(TribMessageResult) * n);
		TribBatchCounts counts;
		TribBatchRequest request = {
			.def = consumer_def,
			.msgs = msgs,
			.nmsgs = n,
			.identity = TRIB_BATCH_AS_TABLE_OWNER,
			.write_dead_letters = true,
			.count_stats = true,
			.settle = source->store_positions,
			.settle_arg = consumer,
		};

		pgstat_report_activity(STATE_RUNNING, psprintf("tributary: ingesting %d messages", n));
		TribBatchCommit(&request, results, &counts);
	}
	MemoryContextSwitchTo(xact_cxt);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	MemoryContextSwitchTo(batch_cxt);
	if (source->after_commit != NULL)
		source->after_commit(consumer);
	MemoryContextSwitchTo(batch_cxt);
	batch_in_flight = false;
	source->release(consumer);
	MemoryContextSwitchTo(old);
	MemoryContextReset(batch_cxt);
}

/* Consume until a reload is asked for; the consumer stays for the next definition. */
void
TribConsumeUntilReload(void)
{
	Assert(consumer != NULL);
	while (!ConfigReloadPending)
		TribConsumeBatch();
}

/*
 * After an error (the transaction already rolled back): the batch in flight was not
 * stored, so the source forgets it and reads it again from the stored positions.
 */
void
TribConsumeAbandonBatch(void)
{
	if (!batch_in_flight)
		return;
	batch_in_flight = false;
	if (consumer != NULL)
		consumer_source->release(consumer);
	MemoryContextReset(batch_cxt);
}

/*
 * Write a consumer's current trouble to the stream's last_error, once per distinct message,
 * or clear it (error NULL); *reported is the consumer's memory of what it wrote last (in
 * TopMemoryContext). A stream with several workers shares last_error: each worker prefixes
 * its errors with its number and clears only its own (and errors of no worker's), so one
 * worker's good batches do not hide another's trouble. Runs a transaction of its own, so
 * not inside one; the caller's memory context is current again when it returns.
 */
void
TribSourceReport(StreamDef *def, int index, char **reported, const char *error)
{
	Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	const char *prefix = def->parallelism > 1 ? psprintf("worker #%d: ", index + 1) : "";
	MemoryContext caller = CurrentMemoryContext;

	if ((error == NULL && *reported == NULL) ||
		(error != NULL && *reported != NULL && strcmp(error, *reported) == 0))
		return;
	if (*reported)
		pfree(*reported);
	*reported = error ? MemoryContextStrdup(TopMemoryContext, error) : NULL;
	if (error)
		ereport(LOG, (errmsg("tributary stream \"%s\": %s%s", def->name, prefix, error)));

	values[0] = Int32GetDatum(def->id);
	values[1] = error ? CStringGetTextDatum(psprintf("%s%s", prefix, error)) : (Datum) 0;
	nulls[1] = error ? ' ' : 'n';
	values[2] = CStringGetTextDatum(prefix);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	TribCatalogExecute(error ?
					   "UPDATE tributary.stream_catalog SET last_error = $2, last_error_at = pg_catalog.now() WHERE id = $1" :
					   "UPDATE tributary.stream_catalog SET last_error = $2 WHERE id = $1 AND last_error IS NOT NULL "
					   "AND (pg_catalog.starts_with(last_error, $3) "
					   "OR last_error OPERATOR(pg_catalog.!~) '^worker #[0-9]+: ')",
					   3, types, values, nulls);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}
