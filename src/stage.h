/*
 * stage.h
 *		Stages: what runs after a batch's rows are in, inside the batch's transaction.
 *
 * The batch path (batch.c) inserts a batch, then hands every stage that applies to the
 * stream the rows that landed, as they landed (defaults, triggers and generated columns
 * applied, in the target's row type), each with its message (source position), the
 * stream's key and event time, and the messages that were dead-lettered, counted by
 * reason. The quality metrics and the snapshots are stages. A stage that reads only some
 * rows whole (fetches_tuples) spares the batch path a copy of every row: it fetches those
 * it wants by TID (TribStageRowTuple).
 *
 * A stage runs with the rights of whoever commits the batch (the calling role for
 * tributary.ingest and replay, the background worker for a stream worker), not as the
 * target's owner: it writes its own tables directly (heap or catalog routines), never
 * through SQL that a table's owner could redirect. An error a stage raises aborts the
 * batch, which is retried, as any other failure of the commit: the error is not caught
 * (tributary.ingest fails with it; a worker records it in last_error and retries the batch),
 * and its context names the stage and the stream.
 *
 * Stages register once per process, from _PG_init while shared_preload_libraries are
 * loaded (TribRegisterStage refuses anything else, so every session and every worker has
 * the same stages): tributary's own, and those of modules preloaded after tributary
 * (shared_preload_libraries = 'tributary,module'; PostgreSQL loads libraries with
 * RTLD_GLOBAL, so the module links against TribRegisterStage), which is how the tests
 * watch the interface (test/modules/tributary_test_stage).
 */
#ifndef TRIBUTARY_STAGE_H
#define TRIBUTARY_STAGE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "storage/itemptr.h"
#include "datatype/timestamp.h"

#include "tributary.h"

/* One row that landed. */
typedef struct TribStageRow
{
	int			msg;			/* index of its message in TribStageBatch.msgs */
	/*
	 * the row as stored, in the target's row type; NULL when no stage that applies reads
	 * every row (TribStageRoutine.fetches_tuples): TribStageRowTuple then fetches it
	 */
	HeapTuple	tuple;
	/* the stream's key column (StreamDef.key_column), as text; NULL when none or null */
	char	   *key;
	/* the stream's event time column (StreamDef.event_time_column) */
	TimestampTz event_time;
	bool		has_event_time; /* false when the stream has none or it is null */
	/* where it was stored: its table (a partition, for partitioned targets), TID and xmin */
	Oid			tableoid;
	ItemPointerData tid;
	TransactionId xmin;
} TribStageRow;

/*
 * One committed batch, as the stages see it. It and everything it points to belong to the
 * batch path: read it, never change it, and copy what must outlive the call.
 */
typedef struct TribStageBatch
{
	StreamDef  *def;
	/*
	 * the target's row type (the relation's descriptor, whose tdtypeid is the table's
	 * composite type: heap_copy_tuple_as_datum(row->tuple, desc) is a value of it)
	 */
	TupleDesc	desc;
	const TribMessage *msgs;	/* every message of the batch */
	const TribMessageResult *results;	/* and what became of it */
	int			nmsgs;
	TribStageRow *rows;			/* the rows that landed, in message order */
	int			nrows;
	int64		dead[TRIB_DEAD_REASONS];	/* dead-lettered messages by reason */
	TimestampTz arrived;		/* when the batch was committed (its transaction's start) */
	/*
	 * whether tombstones (TribMessage.tombstone) were taken by a stage (takes_tombstones):
	 * they then end TRIB_TOMBSTONE, with no row, and the stages find them in results
	 */
	bool		tombstones;
	/* whether rows carry their tuple: a stage that applies reads every row's */
	bool		keep_tuples;
	/* the stages that run, by registration order (TribStagesPlan) */
	uint32		stages;
} TribStageBatch;

/* A stage; the registry keeps a pointer to it, so it must be static (const) storage. */
typedef struct TribStageRoutine
{
	const char *name;			/* unique; names the stage in error contexts */

	/*
	 * whether the stream has this stage (a catalog look-up, cheap: called per batch, and
	 * possibly more than once, so it must answer the same within a transaction)
	 */
	bool		(*applies) (StreamDef *def);

	/*
	 * take the batch; runs in the batch's transaction, in a short-lived memory context
	 * that is reset when it returns
	 */
	void		(*process) (const TribStageBatch *batch);

	/*
	 * true when the stage, where it applies, takes the stream's tombstones (a key without a
	 * payload) as deletes: they are then neither inserted nor dead-lettered
	 */
	bool		takes_tombstones;

	/*
	 * true when the stage reads whole rows only through TribStageRowTuple (a few of the
	 * batch's, say): when every stage that applies says so, the batch path keeps no copy
	 * of each row it inserts, and row->tuple is NULL; false (the default) keeps them
	 */
	bool		fetches_tuples;
} TribStageRoutine;

/*
 * Add a stage, from _PG_init while shared_preload_libraries are loaded (an error
 * otherwise, for a duplicate name, or when the registry is full); stages run in the order
 * they were added.
 */
extern PGDLLEXPORT void TribRegisterStage(const TribStageRoutine *stage);

/*
 * Plan a batch's stages (batch.c, before the batch's rows go in): which apply to the stream
 * (batch->stages; exactly those run), whether one takes tombstones, whether one reads every
 * row's tuple. False when none applies: the batch path then keeps nothing for stages.
 */
extern bool TribStagesPlan(StreamDef *def, TribStageBatch *batch);

/*
 * A landed row, whole, in the target's row type (row->tuple, or fetched again by its TID:
 * the version the batch stored, whatever happened to it since in the transaction), in the
 * caller's memory context when fetched.
 */
extern HeapTuple TribStageRowTuple(const TribStageBatch *batch, const TribStageRow *row);

/*
 * Run the batch's planned stages over it (batch.c), for every batch, also one whose
 * messages all died (nrows 0: its dead counts are what the stages learn).
 */
extern void TribStagesRun(TribStageBatch *batch);

#endif							/* TRIBUTARY_STAGE_H */
