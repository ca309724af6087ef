/*
 * batch.c
 *		The one batch path: tributary.ingest, replay_dead_letters and every stream worker
 *		put a batch of messages into the stream's target through TribBatchCommit, in the
 *		caller's transaction:
 *
 *		1. checks and identity: the role that may insert (the caller, or for a worker the
 *		   stream's owner, which must still exist and hold INSERT, with no row-level
 *		   security on the rows), and the insert's identity (the caller, or the target
 *		   table's owner inside a security-restricted operation);
 *		2. the insert (ingest.c), every message ending inserted or dead;
 *		3. the stream's stages (stage.c), over the rows as they landed, back in the
 *		   caller's identity;
 *		4. dead letters (deadletter.c);
 *		5. the source's positions, or replay's settling, through its settle callback;
 *		6. the live counters, applied when the transaction commits (shmem.c; replay counts
 *		   its rows once per call instead).
 *
 * The caller owns the transaction bracket, the consume loop and last_error: nothing here
 * starts or commits a transaction.
 */
#include "postgres.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "miscadmin.h"

#include "batch.h"
#include "catalog.h"
#include "deadletter.h"
#include "shmem.h"

/*
 * Step 1 for a worker: everything that can make a stream unable to store a row (its
 * target, its owner, row-level security as either role), then the owner's INSERT right.
 */
static void
TribBatchCheckStream(StreamDef *def)
{
	char	   *unrunnable = TribStreamUnrunnable(def);

	if (unrunnable != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("%s", unrunnable),
				 errhint("Fix it, then run tributary.start('%s'); or drop the stream.", def->name)));
	TribCheckInsertPrivilege(def, def->owner);
}

/*
 * A process that commits batches keeps the memory they used for the next one, once it
 * commits its first. A batch allocates tens of MB (its rows, the rows kept for the stages)
 * and frees them at its end: with glibc's defaults, blocks that large are mapped and
 * unmapped per batch, or trimmed off the heap's top, and every page is faulted in again by
 * the next batch (15-25 % of a batch, bench/RESULTS.md). Up to TRIB_MALLOC_KEEP of freed
 * memory stays with the process instead (a stream worker, or a session that calls ingest;
 * docs/operations.md).
 */
#define TRIB_MALLOC_MMAP_THRESHOLD (32 * 1024 * 1024)
#define TRIB_MALLOC_KEEP (128 * 1024 * 1024)

static void
TribBatchKeepMemory(void)
{
#ifdef __GLIBC__
	static bool done = false;

	if (done)
		return;
	done = true;
	(void) mallopt(M_MMAP_THRESHOLD, TRIB_MALLOC_MMAP_THRESHOLD);
	(void) mallopt(M_TRIM_THRESHOLD, TRIB_MALLOC_KEEP);
#endif
}

/*
 * Put req's messages into the target: results gets each message's outcome (error texts
 * in the caller's memory context), counts the totals.
 */
void
TribBatchCommit(TribBatchRequest *req, TribMessageResult *results, TribBatchCounts *counts)
{
	StreamDef  *def = req->def;
	TribStageBatch stage_batch = {0};
	TribStageBatch *stage = TribStagesPlan(def, &stage_batch) ? &stage_batch : NULL;

	TribBatchKeepMemory();

	if (req->identity == TRIB_BATCH_AS_TABLE_OWNER)
	{
		TribOwnerContext table_owner;

		TribBatchCheckStream(def);
		TribBecomeTableOwner(def, &table_owner);
		TribIngestBatch(def, req->msgs, req->nmsgs, results, counts, stage);
		TribRestoreUser(&table_owner);
	}
	else
	{
		TribCheckMayInsert(def, GetUserId());
		TribIngestBatch(def, req->msgs, req->nmsgs, results, counts, stage);
	}

	if (stage != NULL)
	{
		stage->def = def;
		stage->msgs = req->msgs;
		stage->results = results;
		stage->nmsgs = req->nmsgs;
		stage->arrived = GetCurrentTransactionStartTimestamp();
		TribStagesRun(stage);
	}
	if (req->write_dead_letters)
		TribDeadLettersWrite(def, req->msgs, results, req->nmsgs);
	if (req->settle != NULL)
		req->settle(req->settle_arg, req->msgs, results, req->nmsgs);
	if (req->count_stats)
		TribStatsAddAtCommit(&def->key, counts->messages, counts->rows, counts->dead, counts->bytes);
}
