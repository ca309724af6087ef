/*
 * stage.c
 *		The stage registry and runner: stages register from _PG_init while
 *		shared_preload_libraries are loaded, and the batch path runs those that apply to a
 *		stream over each batch, after the insert and in the batch's transaction.
 *
 * The registry is a fixed array of pointers to the stages' own (static) routine structs,
 * filled once per process before any batch runs and never changed afterwards; it needs no
 * lock. Stages are kept in registration order: tributary's own first, then those of the
 * modules preloaded after it.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "stage.h"

/* Stages one process can hold: tributary's own and a few of preloaded modules. */
#define TRIB_MAX_STAGES 16
StaticAssertDecl(TRIB_MAX_STAGES <= 32, "TribStageBatch.stages is a 32-bit mask");

static const TribStageRoutine *trib_stages[TRIB_MAX_STAGES];
static int	trib_nstages = 0;

/* What the error context callback names while a stage runs. */
typedef struct TribStageErrorArg
{
	const TribStageRoutine *stage;
	const char *stream;
} TribStageErrorArg;

/*
 * Add a stage. Only while shared_preload_libraries are loaded: a stage registered later
 * (LOAD, session_preload_libraries) would exist in some backends and not in the workers,
 * so ingest and a worker would treat the same stream differently.
 */
void
TribRegisterStage(const TribStageRoutine *stage)
{
	if (stage == NULL || stage->name == NULL || stage->applies == NULL || stage->process == NULL)
		elog(ERROR, "tributary stage routine is incomplete: it needs a name, applies and process");

	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tributary stage \"%s\" must be registered while shared_preload_libraries are loaded",
						stage->name),
				 errdetail("A stage must run in every process that commits batches: sessions and stream workers."),
				 errhint("Add the module that registers it to shared_preload_libraries, after tributary, and restart the server.")));

	for (int i = 0; i < trib_nstages; i++)
		if (strcmp(trib_stages[i]->name, stage->name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("tributary stage \"%s\" is already registered", stage->name),
					 errhint("Give each stage its own name, and list each module once in shared_preload_libraries.")));

	if (trib_nstages >= TRIB_MAX_STAGES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("cannot register tributary stage \"%s\": at most %d stages can be registered",
						stage->name, TRIB_MAX_STAGES),
				 errdetail("Registered: %d stages, the first \"%s\".", trib_nstages, trib_stages[0]->name),
				 errhint("Preload fewer modules that register stages.")));

	trib_stages[trib_nstages++] = stage;
}

/*
 * Which stages apply to the stream, asked once per batch before its rows go in: what they
 * need of the batch path (the rows kept at all, tombstones, every row's tuple) and which
 * run must agree, also when a stage's settings change while the batch is inserted (a
 * trigger or a concurrent commit). False when none applies.
 */
bool
TribStagesPlan(StreamDef *def, TribStageBatch *batch)
{
	batch->stages = 0;
	batch->tombstones = false;
	batch->keep_tuples = false;
	for (int i = 0; i < trib_nstages; i++)
		if (trib_stages[i]->applies(def))
		{
			batch->stages |= (uint32) 1 << i;
			batch->tombstones |= trib_stages[i]->takes_tombstones;
			batch->keep_tuples |= !trib_stages[i]->fetches_tuples;
		}
	return batch->stages != 0;
}

/*
 * Fetch a landed row by its TID. Its version is the one the batch stored: SnapshotAny
 * reads the tuple at that TID, not its newest version; and it is still there, as this
 * transaction (whose subtransaction that stored it committed) is in progress, so nothing
 * can prune it, unless the table is rewritten in the transaction (TRUNCATE in an alert
 * handler, say), which the row's xmin tells. The batch path kept a copy of every row it
 * could not fetch this way (a foreign table's, a partition's of another column order, a
 * table's of another access method than heap).
 */
HeapTuple
TribStageRowTuple(const TribStageBatch *batch, const TribStageRow *row)
{
	Relation	rel;
	TupleTableSlot *slot;
	HeapTuple	tuple;
	ItemPointerData tid = row->tid;

	if (row->tuple != NULL)
		return row->tuple;
	rel = table_open(row->tableoid, NoLock);	/* locked by the insert */
	slot = table_slot_create(rel, NULL);
	if (!table_tuple_fetch_row_version(rel, &tid, SnapshotAny, slot))
		elog(ERROR, "tributary: the row stored at (%u,%u) in \"%s\" is gone",
			 ItemPointerGetBlockNumber(&tid), ItemPointerGetOffsetNumber(&tid),
			 RelationGetRelationName(rel));
	tuple = ExecCopySlotHeapTuple(slot);
	/* the same row, unless the table was rewritten since (TRUNCATE in a handler, say) */
	if (!TransactionIdEquals(HeapTupleHeaderGetRawXmin(tuple->t_data), row->xmin))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the row stored at (%u,%u) in \"%s\" was replaced in this transaction",
						ItemPointerGetBlockNumber(&tid), ItemPointerGetOffsetNumber(&tid),
						RelationGetRelationName(rel)),
				 errdetail("A stage reads the rows of its batch as they were stored; the table was rewritten after they were."),
				 errhint("Do not truncate or rewrite a stream's target in the transaction of one of its batches.")));
	ExecDropSingleTupleTableSlot(slot);
	table_close(rel, NoLock);
	return tuple;
}

/* Name the stage and the stream in the context of any error a stage raises. */
static void
TribStageErrorContext(void *arg)
{
	TribStageErrorArg *e = (TribStageErrorArg *) arg;

	errcontext("tributary stage \"%s\" of stream \"%s\"", e->stage->name, e->stream);
}

/*
 * Run the stages planned for the batch (TribStagesPlan), in registration order, each in a
 * memory context that is reset when it returns, under an error context that names it.
 * An error is not caught: it aborts the batch, as any failure of the commit does.
 */
void
TribStagesRun(TribStageBatch *batch)
{
	TribStageErrorArg errarg;
	ErrorContextCallback errcallback;
	MemoryContext stagecxt;
	MemoryContext oldcxt;

	Assert(IsTransactionState());
	if (trib_nstages == 0)
		return;

	stagecxt = AllocSetContextCreate(CurrentMemoryContext, "tributary stage",
									 ALLOCSET_DEFAULT_SIZES);
	errarg.stream = batch->def->name;
	errcallback.callback = TribStageErrorContext;
	errcallback.arg = &errarg;
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;
	oldcxt = MemoryContextSwitchTo(stagecxt);

	for (int i = 0; i < trib_nstages; i++)
	{
		errarg.stage = trib_stages[i];
		if (batch->stages & ((uint32) 1 << i))
			trib_stages[i]->process(batch);
		MemoryContextReset(stagecxt);
	}

	MemoryContextSwitchTo(oldcxt);
	error_context_stack = errcallback.previous;
	MemoryContextDelete(stagecxt);
}
