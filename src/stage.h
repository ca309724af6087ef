/*
 * stage.h
 *		Stages: what runs after a batch's rows are in, inside the batch's transaction.
 *
 * The batch path (batch.c) inserts a batch, then hands every stage that applies to the
 * stream the rows that landed, as they landed (defaults, triggers and generated columns
 * applied, in the target's row type), each with its message (source position), the
 * stream's key and event time, and the messages that were dead-lettered, counted by
 * reason. The quality metrics and the snapshots are stages.
 *
 * A stage runs with the rights of whoever commits the batch (the calling role for
 * tributary.ingest and replay, the background worker for a stream worker), not as the
 * target's owner: it writes its own tables directly (heap or catalog routines), never
 * through SQL that a table's owner could redirect. An error a stage raises aborts the
 * batch, which is retried, as any other failure of the commit.
 *
 * Stages register once per process, from _PG_init: tributary's own, and those of modules
 * loaded after tributary (shared_preload_libraries = 'tributary,module'), which is how
 * the tests watch the interface (test/modules/tributary_test_stage).
 */
#ifndef TRIBUTARY_STAGE_H
#define TRIBUTARY_STAGE_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

#include "tributary.h"

/* One row that landed. */
typedef struct TribStageRow
{
	int			msg;			/* index of its message in TribStageBatch.msgs */
	HeapTuple	tuple;			/* the row as stored, in the target's row type */
	/* the stream's key column (StreamDef.key_column), as text; NULL when none or null */
	char	   *key;
	/* the stream's event time column (StreamDef.event_time_column) */
	TimestampTz event_time;
	bool		has_event_time; /* false when the stream has none or it is null */
} TribStageRow;

/* One committed batch, as the stages see it. */
typedef struct TribStageBatch
{
	StreamDef  *def;
	TupleDesc	desc;			/* the target's row type */
	const TribMessage *msgs;	/* every message of the batch */
	const TribMessageResult *results;	/* and what became of it */
	int			nmsgs;
	TribStageRow *rows;			/* the rows that landed, in message order */
	int			nrows;
	int64		dead[TRIB_DEAD_REASONS];	/* dead-lettered messages by reason */
	TimestampTz arrived;		/* when the batch was committed (its transaction's start) */
} TribStageBatch;

typedef struct TribStageRoutine
{
	const char *name;

	/* whether the stream has this stage (a catalog look-up, cheap: called per batch) */
	bool		(*applies) (StreamDef *def);

	/* take the batch; runs in the batch's transaction, in a short-lived memory context */
	void		(*process) (const TribStageBatch *batch);
} TribStageRoutine;

/* Add a stage (from _PG_init); stages run in the order they were added. */
extern void TribRegisterStage(const TribStageRoutine *stage);

/* Whether any stage applies to the stream: the batch path then keeps its rows. */
extern bool TribStreamHasStages(StreamDef *def);

/* Run the stages that apply to batch->def over the batch (batch.c). */
extern void TribStagesRun(TribStageBatch *batch);

#endif							/* TRIBUTARY_STAGE_H */
