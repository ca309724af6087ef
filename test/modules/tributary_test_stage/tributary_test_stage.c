/*
 * tributary_test_stage.c
 *		A tributary stage for the tests: it records every batch it is given, row by row,
 *		into tables a test reads, so the tests can hold the stage interface (src/stage.h)
 *		to its word.
 *
 * It is a plain library, preloaded after tributary
 * (shared_preload_libraries = 'tributary,tributary_test_stage'); its _PG_init registers
 * the stage "test_stage". The stage applies to the streams named in
 * tributary_test_stage.streams (comma-separated; PGC_SUSET, so a session's SET reaches its
 * own tributary.ingest calls and workers read postgresql.conf). It writes, when they exist,
 * public.tributary_test_stage_seen (one row per row of the batch) and
 * public.tributary_test_stage_batches (one row per batch), whose shape is in
 * tributary_test_stage.sql, with simple_heap_insert (no SPI, no index, no privilege check,
 * as a stage writes its own tables). The writes are in the batch's transaction, so they
 * commit or roll back with it. With tributary_test_stage.fail on it raises an error after
 * recording, to show that a stage's error aborts the batch.
 *
 * It also checks what the interface promises and fails the batch with an error naming the
 * broken promise: rows of inserted messages only, in message order, dead counts that agree
 * with the per-message results, a descriptor of the target's row type.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/varlena.h"

#include "stage.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* public.tributary_test_stage_seen */
#define Natts_seen				11
#define Anum_seen_pid			1
#define Anum_seen_batch			2
#define Anum_seen_stream		3
#define Anum_seen_rownum		4
#define Anum_seen_msg			5
#define Anum_seen_key			6
#define Anum_seen_event_time	7
#define Anum_seen_topic			8
#define Anum_seen_partition		9
#define Anum_seen_offset		10
#define Anum_seen_row			11

static const Oid seen_types[Natts_seen] = {
	INT4OID, INT8OID, TEXTOID, INT4OID, INT4OID, TEXTOID, TIMESTAMPTZOID, TEXTOID, INT4OID,
	INT8OID, TEXTOID
};

/* public.tributary_test_stage_batches */
#define Natts_batches					12
#define Anum_batches_pid				1
#define Anum_batches_batch				2
#define Anum_batches_stream				3
#define Anum_batches_role				4
#define Anum_batches_restricted			5
#define Anum_batches_arrived			6
#define Anum_batches_nmsgs				7
#define Anum_batches_nrows				8
#define Anum_batches_dead_too_large		9
#define Anum_batches_dead_malformed		10
#define Anum_batches_dead_bad_value		11
#define Anum_batches_dead_rejected		12

static const Oid batches_types[Natts_batches] = {
	INT4OID, INT8OID, TEXTOID, TEXTOID, BOOLOID, TIMESTAMPTZOID, INT4OID, INT4OID, INT8OID,
	INT8OID, INT8OID, INT8OID
};

static char *test_stage_streams = NULL;
static bool test_stage_fail = false;

/* Batches this process has seen: with its pid, a batch's identity in the tables. */
static int64 test_stage_batch_count = 0;

/* The GUC's value must be a list of names. */
static bool
TestStageCheckStreams(char **newval, void **extra, GucSource source)
{
	char	   *raw = pstrdup(*newval);
	List	   *names;
	bool		ok = SplitGUCList(raw, ',', &names);

	list_free(names);
	pfree(raw);
	if (!ok)
		GUC_check_errdetail("List syntax is invalid.");
	return ok;
}

/* The stage applies to the streams named in tributary_test_stage.streams. */
static bool
TestStageApplies(StreamDef *def)
{
	char	   *raw;
	List	   *names;
	ListCell   *lc;
	bool		found = false;

	if (test_stage_streams == NULL || test_stage_streams[0] == '\0')
		return false;
	raw = pstrdup(test_stage_streams);
	if (!SplitGUCList(raw, ',', &names))
		elog(ERROR, "tributary_test_stage.streams is not a list of names");
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), def->name) == 0)
			found = true;
	list_free(names);
	pfree(raw);
	return found;
}

/* The table public.<name> locked for insert, checked against its expected columns; or NULL. */
static Relation
TestStageOpen(const char *name, const Oid *types, int natts)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar("public", (char *) name, -1),
										 RowExclusiveLock, true);
	Relation	rel;
	TupleDesc	desc;

	if (!OidIsValid(relid))
		return NULL;
	rel = table_open(relid, NoLock);
	desc = RelationGetDescr(rel);
	if (rel->rd_rel->relkind != RELKIND_RELATION || rel->rd_rel->relhasindex ||
		desc->natts != natts)
		elog(ERROR, "public.%s must be a plain table without indexes, as in tributary_test_stage.sql",
			 name);
	for (int i = 0; i < natts; i++)
		if (TupleDescAttr(desc, i)->attisdropped || TupleDescAttr(desc, i)->atttypid != types[i])
			elog(ERROR, "column %d of public.%s does not have the type tributary_test_stage.sql gives it",
				 i + 1, name);
	return rel;
}

/* Fail the batch when it breaks a promise of stage.h. */
static void
TestStageCheckBatch(const TribStageBatch *batch)
{
	int64		dead[TRIB_DEAD_REASONS] = {0};
	int			prev = -1;

	if (batch->desc->tdtypeid != get_rel_type_id(batch->def->target))
		elog(ERROR, "tributary_test_stage: batch->desc has type %u, not the row type of the target",
			 batch->desc->tdtypeid);
	if (batch->nrows < 0 || batch->nrows > batch->nmsgs)
		elog(ERROR, "tributary_test_stage: %d rows from %d messages", batch->nrows, batch->nmsgs);
	for (int i = 0; i < batch->nrows; i++)
	{
		int			msg = batch->rows[i].msg;

		if (msg < 0 || msg >= batch->nmsgs)
			elog(ERROR, "tributary_test_stage: row %d has message %d of %d", i, msg, batch->nmsgs);
		if (msg <= prev)
			elog(ERROR, "tributary_test_stage: row %d has message %d after message %d", i, msg, prev);
		if (batch->results[msg].outcome != TRIB_INSERTED)
			elog(ERROR, "tributary_test_stage: row %d is of message %d, whose outcome is %d, not inserted",
				 i, msg, (int) batch->results[msg].outcome);
		prev = msg;
	}
	for (int i = 0; i < batch->nmsgs; i++)
	{
		TribDeadReason reason = batch->results[i].reason;

		if (batch->results[i].outcome == TRIB_PENDING)
			elog(ERROR, "tributary_test_stage: message %d has no outcome", i);
		if (batch->results[i].outcome != TRIB_DEAD)
			continue;
		if (reason <= TRIB_DEAD_NONE || reason >= TRIB_DEAD_REASONS)
			elog(ERROR, "tributary_test_stage: message %d is dead with reason %d", i, (int) reason);
		dead[reason]++;
	}
	for (int r = 0; r < TRIB_DEAD_REASONS; r++)
		if (dead[r] != batch->dead[r])
			elog(ERROR, "tributary_test_stage: dead[%d] is " INT64_FORMAT ", but " INT64_FORMAT " results are dead for that reason",
				 r, batch->dead[r], dead[r]);
}

/* One row of tributary_test_stage_seen per row of the batch. */
static void
TestStageRecordRows(Relation rel, const TribStageBatch *batch, int64 batchno)
{
	FmgrInfo	record_out;

	fmgr_info(F_RECORD_OUT, &record_out);
	for (int i = 0; i < batch->nrows; i++)
	{
		const TribStageRow *row = &batch->rows[i];
		const TribMessage *msg = &batch->msgs[row->msg];
		Datum		values[Natts_seen];
		bool		nulls[Natts_seen] = {0};
		Datum		record = heap_copy_tuple_as_datum(row->tuple, batch->desc);

		values[Anum_seen_pid - 1] = Int32GetDatum(MyProcPid);
		values[Anum_seen_batch - 1] = Int64GetDatum(batchno);
		values[Anum_seen_stream - 1] = CStringGetTextDatum(batch->def->name);
		values[Anum_seen_rownum - 1] = Int32GetDatum(i);
		values[Anum_seen_msg - 1] = Int32GetDatum(row->msg);
		nulls[Anum_seen_key - 1] = row->key == NULL;
		if (row->key != NULL)
			values[Anum_seen_key - 1] = CStringGetTextDatum(row->key);
		nulls[Anum_seen_event_time - 1] = !row->has_event_time;
		values[Anum_seen_event_time - 1] = TimestampTzGetDatum(row->event_time);
		nulls[Anum_seen_topic - 1] = msg->topic == NULL;
		if (msg->topic != NULL)
			values[Anum_seen_topic - 1] = CStringGetTextDatum(msg->topic);
		nulls[Anum_seen_partition - 1] = msg->partition == -1;
		values[Anum_seen_partition - 1] = Int32GetDatum(msg->partition);
		nulls[Anum_seen_offset - 1] = msg->offset == -1;
		values[Anum_seen_offset - 1] = Int64GetDatum(msg->offset);
		values[Anum_seen_row - 1] = CStringGetTextDatum(OutputFunctionCall(&record_out, record));

		simple_heap_insert(rel, heap_form_tuple(RelationGetDescr(rel), values, nulls));
	}
}

/* One row of tributary_test_stage_batches for the batch. */
static void
TestStageRecordBatch(Relation rel, const TribStageBatch *batch, int64 batchno)
{
	Datum		values[Natts_batches];
	bool		nulls[Natts_batches] = {0};

	values[Anum_batches_pid - 1] = Int32GetDatum(MyProcPid);
	values[Anum_batches_batch - 1] = Int64GetDatum(batchno);
	values[Anum_batches_stream - 1] = CStringGetTextDatum(batch->def->name);
	values[Anum_batches_role - 1] = CStringGetTextDatum(GetUserNameFromId(GetUserId(), false));
	values[Anum_batches_restricted - 1] = BoolGetDatum(InSecurityRestrictedOperation());
	values[Anum_batches_arrived - 1] = TimestampTzGetDatum(batch->arrived);
	values[Anum_batches_nmsgs - 1] = Int32GetDatum(batch->nmsgs);
	values[Anum_batches_nrows - 1] = Int32GetDatum(batch->nrows);
	values[Anum_batches_dead_too_large - 1] = Int64GetDatum(batch->dead[TRIB_DEAD_TOO_LARGE]);
	values[Anum_batches_dead_malformed - 1] = Int64GetDatum(batch->dead[TRIB_DEAD_MALFORMED]);
	values[Anum_batches_dead_bad_value - 1] = Int64GetDatum(batch->dead[TRIB_DEAD_BAD_VALUE]);
	values[Anum_batches_dead_rejected - 1] = Int64GetDatum(batch->dead[TRIB_DEAD_REJECTED]);
	simple_heap_insert(rel, heap_form_tuple(RelationGetDescr(rel), values, nulls));
}

/* Check the batch, record it where the tables exist, then fail if asked to. */
static void
TestStageProcess(const TribStageBatch *batch)
{
	int64		batchno = ++test_stage_batch_count;
	Relation	rel;

	TestStageCheckBatch(batch);
	if ((rel = TestStageOpen("tributary_test_stage_seen", seen_types, Natts_seen)) != NULL)
	{
		TestStageRecordRows(rel, batch, batchno);
		table_close(rel, NoLock);
	}
	if ((rel = TestStageOpen("tributary_test_stage_batches", batches_types, Natts_batches)) != NULL)
	{
		TestStageRecordBatch(rel, batch, batchno);
		table_close(rel, NoLock);
	}
	if (test_stage_fail)
		ereport(ERROR,
				(errcode(ERRCODE_RAISE_EXCEPTION),
				 errmsg("tributary_test_stage fails the batch of stream \"%s\" as asked",
						batch->def->name),
				 errhint("SET tributary_test_stage.fail = off.")));
}

static const TribStageRoutine TestStage = {
	.name = "test_stage",
	.applies = TestStageApplies,
	.process = TestStageProcess,
};

void
_PG_init(void)
{
	DefineCustomStringVariable("tributary_test_stage.streams",
							   "Streams the test stage applies to (comma-separated names).",
							   NULL,
							   &test_stage_streams,
							   "",
							   PGC_SUSET,
							   GUC_LIST_INPUT,
							   TestStageCheckStreams, NULL, NULL);
	DefineCustomBoolVariable("tributary_test_stage.fail",
							 "Whether the test stage raises an error after recording a batch.",
							 NULL,
							 &test_stage_fail,
							 false,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	MarkGUCPrefixReserved("tributary_test_stage");

	TribRegisterStage(&TestStage);
}
