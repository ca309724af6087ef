/*
 * ingest.c
 *		The insert path shared by every source: a batch of messages becomes typed rows of
 *		the target table, and every message that cannot land is reported as dead.
 *
 * The formats (formats/) turn each message straight into its row's values; no COPY text
 * is made. The rows go into the target through tributary's own insert loop, derived from
 * the executor path of CopyFrom() in PostgreSQL's src/backend/commands/copyfrom.c, as
 * TimescaleDB's copy.c is (COPY cannot take rows that are already values): one result
 * relation, partition routing, BEFORE, AFTER and INSTEAD OF row triggers, statement
 * triggers and their transition tables, stored generated columns, constraints, and
 * multi-insert buffering under the conditions CopyFrom uses. What differs from COPY: a
 * row lists only the columns its message supplies, and the others get their defaults per
 * row (as INSERT naming those columns would); there is no WHERE, FREEZE or foreign
 * target (targets are tables or partitioned tables; a foreign partition takes one row at
 * a time); and the loop knows which row an error belongs to. The calls that differ
 * between PostgreSQL versions are in compat.h.
 *
 * A batch is cut into chunks of at most TRIB_CHUNK_BYTES of messages, and a message larger
 * than tributary.max_message_size is a dead letter before it is read, so no buffer nears
 * 1 GB.
 *
 * Errors are contained with subtransactions, so that one bad message can neither stop a
 * batch nor be lost:
 *   - Reading a chunk's messages into rows runs in one subtransaction (it writes
 *     nothing, so it costs no transaction id). Formats report bad messages without
 *     raising; a column's input function raises on 15 (on 16+ its soft error is
 *     returned). When something raises, the chunk is read again one message per
 *     subtransaction, and the messages that raise are dead letters, blamed on the column
 *     being converted.
 *   - Inserting a chunk first tries all its rows in one subtransaction. When that fails,
 *     it is split around the row the error belongs to (or halved when no one row is to
 *     blame: a deferred check at the end of the statement), until the failing rows stand
 *     alone; those are dead letters with the error they raised, and every other row
 *     lands, in order, so the first of two conflicting rows wins.
 * Whatever its SQLSTATE, an error that one message raises is that message's fault: it
 * becomes a dead letter and the batch goes on. Only errors that cannot be a message's
 * fault abort the batch, as they would any statement (lost connections, serialization
 * failures and deadlocks, exhausted resources, cancels and shutdowns, system and
 * internal errors: TribErrorStopsBatch), and so does an environmental error that every
 * message of the batch hits alike (TribRaiseIfEveryMessageFailed).
 *
 * When the stream has stages, the rows as they landed are kept for them (stage.h).
 *
 * The caller owns the transaction; nothing here commits.
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/tupconvert.h"
#include "access/xact.h"
#include "catalog/pg_am.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "commands/trigger.h"
#include "executor/execPartition.h"
#include "executor/executor.h"
#include "executor/nodeModifyTable.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "rewrite/rewriteHandler.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "compat.h"
#include "formats/format.h"
#include "ingest.h"

/* Messages per chunk, by size; a chunk's rows are held as values until inserted. */
#define TRIB_CHUNK_BYTES (32 * 1024 * 1024)

/* Multi-insert buffering, as CopyFrom's: flush at this many rows or bytes, keep this many partitions. */
#define TRIB_MAX_BUFFERED_TUPLES 1000
#define TRIB_MAX_BUFFERED_BYTES 65535
#define TRIB_MAX_PARTITION_BUFFERS 32

/* A run of rows [lo, hi) to try in one subtransaction. */
typedef struct TribSegment
{
	int			lo;
	int			hi;
} TribSegment;

/*
 * The text of a key value a batch has seen: a batch's rows often repeat few keys, and
 * making the text once per value spares the output function and, in stages that group
 * rows by key, comparing the texts (rows of one value share the pointer).
 */
#define TRIB_KEY_TEXTS 256		/* direct-mapped: a value replaces the one in its entry */

typedef struct TribKeyText
{
	uint32		hash;
	Datum		value;			/* by value, or a copy of the bytes (batch's memory) */
	char	   *text;			/* NULL: empty */
} TribKeyText;

/* How the stages' key and event time are read from a landed row. */
typedef struct TribStageReader
{
	int			key_col;		/* the key column's index, or -1 */
	FmgrInfo	key_output;		/* its output function */
	bool		key_byval;		/* its type is passed by value */
	int16		key_typlen;		/* else its bytes: typlen of them, or a varlena (-1) */
	TribKeyText *key_texts;		/* TRIB_KEY_TEXTS entries, when the key is cacheable */
	int			time_col;		/* the event time column's index, or -1 */
	bool		time_is_timestamp;	/* timestamp, not timestamptz */
	TupleTableSlot *slot;		/* deforms a kept row once for both (NULL when neither) */
} TribStageReader;

/* The batch being ingested and its current chunk. */
typedef struct TribBatch
{
	TribTarget *target;
	TribMessage *msgs;
	TribMessageResult *results;
	MemoryContext result_cxt;	/* where dead letters' error texts and landed rows live */
	TribRow    *rows;			/* the chunk's rows, in message order */
	int			nrows;
	ExprState **defaults;		/* per column: its default, or NULL */
	bool		volatile_defaults;	/* a default a message may need is volatile */
	int			cur_row;		/* the row an error belongs to, or -1 */
	/* for the stages, when the stream has any (else all three NULL): per chunk row */
	bool	   *stored;			/* whether it was stored (a BEFORE trigger may skip it) */
	bool	   *read;			/* whether landed_at has its key and event time already */
	HeapTuple  *landed;			/* its copy as stored, in the target's row type, or NULL */
	TribStageRow *landed_at;	/* where it was stored; its key and event time when read */
	bool		keep_tuples;	/* a stage reads every row's tuple (TribStageBatch) */
	TribStageReader *reader;
} TribBatch;

/* Rows waiting for table_multi_insert into one relation (CopyFrom's CopyMultiInsertBuffer). */
typedef struct TribInsertBuffer
{
	ResultRelInfo *rri;
	TupleTableSlot *slots[TRIB_MAX_BUFFERED_TUPLES];
	int			rows[TRIB_MAX_BUFFERED_TUPLES];
	int			nused;
	BulkInsertState bistate;
	TupleDesc	desc;			/* the slots' row type: a copy, so they pin nothing */
} TribInsertBuffer;

/* One attempt at inserting a run of rows: the executor state CopyFrom sets up. */
typedef struct TribInsert
{
	TribBatch  *b;
	EState	   *estate;
	ModifyTableState *mtstate;
	ResultRelInfo *root;
	PartitionTupleRouting *proute;
	TransitionCaptureState *transition_capture;
	CommandId	mycid;
	bool		multi;			/* rows may be buffered (CIM_MULTI, CIM_MULTI_CONDITIONAL) */
	TupleTableSlot *singleslot; /* rows inserted one at a time, and routing's root form */
	BulkInsertState bistate;	/* for those */
	ResultRelInfo *prev_part;
	List	   *buffers;		/* of TribInsertBuffer */
	int			buffered_tuples;
	Size		buffered_bytes;
	int64		stored;
} TribInsert;

/*
 * Whether an error can never be the fault of the message being processed: the server,
 * the session or the transaction is in trouble (lost connection, serialization failure
 * or deadlock, out of disk or memory, cancel or shutdown, I/O or internal error, a lock
 * not granted in time). Such an error stops the batch, as it would any statement; any
 * other error is the message's, which becomes a dead letter while the batch goes on.
 */
static bool
TribErrorStopsBatch(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_INVALID_TRANSACTION_STATE:
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_INTERNAL_ERROR:
			return true;
		default:
			return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE;
	}
}

/*
 * Errors that describe the target's surroundings rather than a row (a privilege, a
 * missing object, an object in the wrong state). Raised for one message of a batch they
 * are that message's fault; raised identically by every message, they are not.
 */
static bool
TribErrorMayBeEnvironment(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_INSUFFICIENT_PRIVILEGE ||
		sqlerrcode == ERRCODE_UNDEFINED_TABLE ||
		sqlerrcode == ERRCODE_UNDEFINED_FUNCTION ||
		sqlerrcode == ERRCODE_UNDEFINED_OBJECT ||
		sqlerrcode == ERRCODE_INVALID_SCHEMA_NAME ||
		ERRCODE_TO_CATEGORY(sqlerrcode) == ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE;
}

/*
 * Stop the batch when every one of its (two or more) messages failed in the insert with
 * the same environmental error: a trigger's function revoked, a sequence without USAGE.
 * Dead-lettering the whole stream would hide the cause; stopping retries it after a fix.
 */
static void
TribRaiseIfEveryMessageFailed(TribMessageResult *results, int nmsgs)
{
	TribMessageResult *first = &results[0];

	if (nmsgs < 2 || !first->at_insert || !TribErrorMayBeEnvironment(first->sqlerrcode))
		return;
	for (int i = 1; i < nmsgs; i++)
		if (results[i].outcome != TRIB_DEAD || !results[i].at_insert ||
			results[i].sqlerrcode != first->sqlerrcode || strcmp(results[i].error, first->error) != 0)
			return;
	ereport(ERROR,
			(errcode(first->sqlerrcode),
			 errmsg("%s", first->error),
			 errdetail("Every message of the batch (%d) failed with this error, so it is not one message's fault.",
					   nmsgs),
			 errhint("Fix the cause; the batch is retried, and no message is lost.")));
}

typedef void (*TribGuardedFn) (TribBatch *b, int lo, int hi, int64 *count);

/*
 * Run fn(b, lo, hi) in a subtransaction. Returns NULL when it succeeds. When it raises an
 * error that may be a message's fault, rolls back and returns the error, with *failed set
 * to the row it belongs to (or -1) and *column to the column being converted (or NULL);
 * other errors are raised again.
 */
static ErrorData *
TribRunGuarded(TribGuardedFn fn, TribBatch *b, int lo, int hi, int64 *count, int *failed,
			   char **column)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	ErrorData  *volatile edata = NULL;

	*failed = -1;
	*column = NULL;
	b->cur_row = -1;
	b->target->cur_col = -1;
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		fn(b, lo, hi, count);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (b->cur_row >= lo && b->cur_row < hi)
			*failed = b->cur_row;
		if (b->target->cur_col >= 0)
			*column = pstrdup(b->target->cols[b->target->cur_col].name);
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (TribErrorStopsBatch(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	b->cur_row = -1;
	b->target->cur_col = -1;
	return edata;
}

static void
TribMarkDead(TribBatch *b, int msg, ErrorData *edata, const char *column, TribDeadReason reason)
{
	TribMessageResult *res = &b->results[msg];
	MemoryContext old = MemoryContextSwitchTo(b->result_cxt);

	res->outcome = TRIB_DEAD;
	res->reason = reason;
	res->at_insert = reason != TRIB_DEAD_MALFORMED;
	res->sqlerrcode = edata->sqlerrcode;
	res->error = pstrdup(edata->message);
	if (column != NULL)
		res->detail = edata->detail ?
			psprintf("Column \"%s\": %s", column, edata->detail) :
			psprintf("Column \"%s\".", column);
	else
		res->detail = edata->detail ? pstrdup(edata->detail) : NULL;
	MemoryContextSwitchTo(old);
}

/* Read messages [lo, hi) into the chunk's rows; messages that cannot be read are marked dead. */
static void
TribFormatRange(TribBatch *b, int lo, int hi, int64 *count)
{
	int			natts = b->target->natts;

	for (int i = lo; i < hi; i++)
	{
		TribMessageResult *res = &b->results[i];
		TribRow    *row = &b->rows[b->nrows];
		char	   *space;

		if (res->outcome != TRIB_PENDING)
			continue;			/* rejected before reading, or a tombstone */
		space = palloc0((sizeof(Datum) + 2 * sizeof(bool)) * natts);
		row->msg = i;
		row->values = (Datum *) space;
		row->nulls = (bool *) (space + sizeof(Datum) * natts);
		row->given = row->nulls + natts;
		if (TribFormatMessage(b->target, &b->msgs[i], row, res))
			b->nrows++;
		else
		{
			MemoryContext old = MemoryContextSwitchTo(b->result_cxt);

			res->error = pstrdup(res->error);
			if (res->detail)
				res->detail = pstrdup(res->detail);
			MemoryContextSwitchTo(old);
		}
	}
}

/* Read a chunk in one subtransaction; if anything raises, one per message. */
static void
TribFormatChunk(TribBatch *b, int lo, int hi)
{
	int			failed;
	char	   *column;
	ErrorData  *edata;

	edata = TribRunGuarded(TribFormatRange, b, lo, hi, NULL, &failed, &column);
	if (edata == NULL)
		return;
	FreeErrorData(edata);

	/*
	 * Start the chunk over, one message at a time. Messages the first pass found bad stay
	 * dead (reading is deterministic) and are skipped; the one that raised raises again.
	 */
	b->nrows = 0;
	for (int i = lo; i < hi; i++)
	{
		int			rows_before = b->nrows;

		edata = TribRunGuarded(TribFormatRange, b, i, i + 1, NULL, &failed, &column);
		if (edata != NULL)
		{
			b->nrows = rows_before;
			TribMarkDead(b, i, edata, column,
						 column != NULL ? TRIB_DEAD_BAD_VALUE : TRIB_DEAD_MALFORMED);
			FreeErrorData(edata);
		}
	}
}

/*
 * The defaults of the target's columns, ready to evaluate for rows that do not supply
 * them (CopyFrom's defexprs), and whether one a message may need is volatile (nextval
 * aside), which rules out multi-insert buffering: it may look at the table.
 */
static void
TribPrepareDefaults(TribBatch *b)
{
	TribTarget *t = b->target;
	TupleDesc	desc = RelationGetDescr(t->rel);

	b->defaults = palloc0(sizeof(ExprState *) * t->natts);
	for (int i = 0; i < t->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Expr	   *expr;

		if (att->attisdropped || att->attgenerated != '\0' || t->always_given[i])
			continue;
		expr = (Expr *) build_column_default(t->rel, i + 1);
		if (expr == NULL)
			continue;
		expr = expression_planner(expr);
		b->defaults[i] = ExecInitExpr(expr, NULL);
		if (contain_volatile_functions_not_nextval((Node *) expr))
			b->volatile_defaults = true;
	}
}

/* A row's values: what its message supplied, defaults for the rest (NextCopyFrom). */
static void
TribRowValues(TribBatch *b, TribRow *row, ExprContext *econtext, Datum *values, bool *nulls)
{
	for (int i = 0; i < b->target->natts; i++)
	{
		if (row->given[i])
		{
			values[i] = row->values[i];
			nulls[i] = row->nulls[i];
		}
		else if (b->defaults[i] != NULL)
			values[i] = ExecEvalExpr(b->defaults[i], econtext, &nulls[i]);
		else
		{
			values[i] = (Datum) 0;
			nulls[i] = true;
		}
	}
}

/*
 * The key value's text: the one made for an equal value earlier in the batch (equal
 * stored bytes give equal text), else made now and remembered in the current memory
 * context (the batch's).
 */
static char *
TribKeyTextOf(TribStageReader *rd, Datum value)
{
	const char *bytes;
	Size		len;
	uint32		hash;
	TribKeyText *e;

	if (rd->key_texts == NULL)
		return OutputFunctionCall(&rd->key_output, value);
	if (rd->key_byval)
	{
		bytes = (const char *) &value;
		len = sizeof(Datum);
	}
	else if (rd->key_typlen > 0)
	{
		bytes = DatumGetPointer(value);
		len = rd->key_typlen;
	}
	else if (VARATT_IS_EXTERNAL(DatumGetPointer(value)) || VARATT_IS_COMPRESSED(DatumGetPointer(value)))
		return OutputFunctionCall(&rd->key_output, value);	/* out of line or compressed */
	else
	{
		bytes = VARDATA_ANY(DatumGetPointer(value));
		len = VARSIZE_ANY_EXHDR(DatumGetPointer(value));
	}
	hash = hash_bytes((const unsigned char *) bytes, (int) len);
	e = &rd->key_texts[hash % TRIB_KEY_TEXTS];
	if (e->text != NULL && e->hash == hash)
	{
		const char *seen = rd->key_byval ? (const char *) &e->value : DatumGetPointer(e->value);

		if (rd->key_typlen == -1)
		{
			if (VARSIZE_ANY_EXHDR(seen) == len && memcmp(VARDATA_ANY(seen), bytes, len) == 0)
				return e->text;
		}
		else if (memcmp(seen, bytes, len) == 0)
			return e->text;
	}
	e->text = NULL;				/* until it is whole again: the output function may fail */
	e->hash = hash;
	if (rd->key_byval)
		e->value = value;
	else
	{
		/* a varlena's copy keeps its header: short and 4-byte headers compare by contents */
		Size		size = rd->key_typlen > 0 ? (Size) rd->key_typlen : VARSIZE_ANY(DatumGetPointer(value));
		char	   *copy;

		if (e->value != (Datum) 0)
			pfree(DatumGetPointer(e->value));
		e->value = (Datum) 0;
		copy = palloc(size);
		memcpy(copy, DatumGetPointer(value), size);
		e->value = PointerGetDatum(copy);
	}
	e->text = OutputFunctionCall(&rd->key_output, value);
	return e->text;
}

/* Read a landed row's key (as text) and event time from slot, in the target's row type. */
static void
TribStageReadRow(TribStageReader *rd, TupleTableSlot *slot, TribStageRow *row)
{
	row->key = NULL;
	row->has_event_time = false;
	if (rd->slot == NULL)
		return;					/* the stream has neither */
	/* one pass over the row's leading columns, however far apart the two are */
	slot_getsomeattrs(slot, Max(rd->key_col, rd->time_col) + 1);
	if (rd->key_col >= 0 && !slot->tts_isnull[rd->key_col])
		row->key = TribKeyTextOf(rd, slot->tts_values[rd->key_col]);
	if (rd->time_col >= 0 && !slot->tts_isnull[rd->time_col])
	{
		Datum		value = slot->tts_values[rd->time_col];

		if (rd->time_is_timestamp)
			value = DirectFunctionCall1(timestamp_timestamptz, value);
		row->event_time = DatumGetTimestampTz(value);
		row->has_event_time = true;
	}
}

/*
 * Row r is about to be stored in rri from slot, its values final: read the stages' key and
 * event time now, while the values are at hand (storing the row deforms it anew), unless
 * the values are not the target's (a partition of another column order) or not final (a
 * foreign table's insert returns what it stored).
 */
static void
TribReadBeforeStore(TribInsert *ins, ResultRelInfo *rri, TupleTableSlot *slot, int r)
{
	TribBatch  *b = ins->b;
	MemoryContext old;

	if (b->stored == NULL || rri->ri_FdwRoutine != NULL ||
		(rri != ins->root && ExecGetChildToRootMap(rri) != NULL))
		return;
	old = MemoryContextSwitchTo(b->result_cxt);
	TribStageReadRow(b->reader, slot, &b->landed_at[r]);
	b->read[r] = true;
	MemoryContextSwitchTo(old);
}

/*
 * Row r was stored: where, for the stages; and a copy as it was stored (in the target's row
 * type) when a stage reads every row, when its key and event time could not be read before
 * (TribReadBeforeStore), or when its table is not a heap (another access method may not
 * fetch a version by TID); otherwise stages fetch the rows they want whole by TID
 * (TribStageRowTuple).
 */
static void
TribKeepLanded(TribInsert *ins, ResultRelInfo *rri, TupleTableSlot *slot, int r)
{
	TribBatch  *b = ins->b;
	TribStageRow *at;
	MemoryContext old;

	if (b->stored == NULL)
		return;
	old = MemoryContextSwitchTo(b->result_cxt);
	at = &b->landed_at[r];
	b->stored[r] = true;
	at->tableoid = RelationGetRelid(rri->ri_RelationDesc);
	at->tid = slot->tts_tid;
	/* the (sub)transaction that inserted it, as heap_insert stamps xmin */
	at->xmin = GetCurrentTransactionId();
	if (b->keep_tuples || !b->read[r] || rri->ri_RelationDesc->rd_rel->relam != HEAP_TABLE_AM_OID)
	{
		HeapTuple	tuple = ExecCopySlotHeapTuple(slot);
		TupleConversionMap *map = rri != ins->root ? ExecGetChildToRootMap(rri) : NULL;

		if (map != NULL)
		{
			HeapTuple	converted = execute_attr_map_tuple(tuple, map);

			heap_freetuple(tuple);
			tuple = converted;
		}
		b->landed[r] = tuple;
	}
	MemoryContextSwitchTo(old);
}

static TribInsertBuffer *
TribBufferCreate(TribInsert *ins, ResultRelInfo *rri)
{
	TribInsertBuffer *buf = palloc0(sizeof(TribInsertBuffer));

	buf->rri = rri;
	buf->bistate = GetBulkInsertState();
	ins->buffers = lappend(ins->buffers, buf);
	return buf;
}

/* The buffer of a relation, made on its first row. */
static TribInsertBuffer *
TribBufferFor(TribInsert *ins, ResultRelInfo *rri)
{
	ListCell   *lc;

	foreach(lc, ins->buffers)
	{
		TribInsertBuffer *buf = lfirst(lc);

		if (buf->rri == rri)
			return buf;
	}
	return TribBufferCreate(ins, rri);
}

/*
 * The buffer's next free slot, made on first use. Unlike table_slot_create, the slots share
 * a copy of the relation's row type that is not reference-counted: a thousand slots pinning
 * the relation's own would each be remembered by the resource owner, in a hash where equal
 * entries collide, once per batch.
 */
static TupleTableSlot *
TribBufferNextSlot(TribInsertBuffer *buf)
{
	Relation	rel = buf->rri->ri_RelationDesc;

	if (buf->slots[buf->nused] == NULL)
	{
		if (buf->desc == NULL)
			buf->desc = CreateTupleDescCopy(RelationGetDescr(rel));
		buf->slots[buf->nused] = MakeSingleTupleTableSlot(buf->desc, table_slot_callbacks(rel));
	}
	return buf->slots[buf->nused];
}

/* Write a buffer's rows out: table_multi_insert, then their index entries and AFTER ROW triggers. */
static void
TribBufferFlush(TribInsert *ins, TribInsertBuffer *buf)
{
	ResultRelInfo *rri = buf->rri;
	EState	   *estate = ins->estate;
	MemoryContext old;

	if (buf->nused == 0)
		return;
	ins->b->cur_row = -1;
	/* table_multi_insert may leak memory: the per-tuple context takes it */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	table_multi_insert(rri->ri_RelationDesc, buf->slots, buf->nused, ins->mycid, 0,
					   buf->bistate);
	MemoryContextSwitchTo(old);
	for (int i = 0; i < buf->nused; i++)
	{
		List	   *recheck = NIL;

		ins->b->cur_row = buf->rows[i];
		if (rri->ri_NumIndices > 0)
			recheck = TribExecInsertIndexTuples(rri, buf->slots[i], estate);
		ExecARInsertTriggers(estate, rri, buf->slots[i], recheck, ins->transition_capture);
		list_free(recheck);
		TribKeepLanded(ins, rri, buf->slots[i], buf->rows[i]);
		ExecClearTuple(buf->slots[i]);
	}
	ins->stored += buf->nused;
	buf->nused = 0;
	ins->b->cur_row = -1;
}

static void
TribBufferCleanup(TribInsertBuffer *buf)
{
	Assert(buf->nused == 0);
	FreeBulkInsertState(buf->bistate);
	for (int i = 0; i < TRIB_MAX_BUFFERED_TUPLES && buf->slots[i] != NULL; i++)
		ExecDropSingleTupleTableSlot(buf->slots[i]);
	table_finish_bulk_insert(buf->rri->ri_RelationDesc, 0);
	pfree(buf);
}

/* Flush every buffer; keep at most TRIB_MAX_PARTITION_BUFFERS, never curr's. */
static void
TribInsertFlushAll(TribInsert *ins, ResultRelInfo *curr)
{
	ListCell   *lc;

	foreach(lc, ins->buffers)
		TribBufferFlush(ins, lfirst(lc));
	ins->buffered_tuples = 0;
	ins->buffered_bytes = 0;
	while (list_length(ins->buffers) > TRIB_MAX_PARTITION_BUFFERS)
	{
		TribInsertBuffer *buf = linitial(ins->buffers);

		ins->buffers = list_delete_first(ins->buffers);
		if (buf->rri == curr)
		{
			ins->buffers = lappend(ins->buffers, buf);
			continue;
		}
		TribBufferCleanup(buf);
	}
}

/* Set up the executor state for inserting into the target (CopyFrom's preamble). */
static void
TribInsertBegin(TribInsert *ins, TribBatch *b)
{
	Relation	rel = b->target->rel;
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	TriggerDesc *trig;

	memset(ins, 0, sizeof(*ins));
	ins->b = b;
	ins->estate = CreateExecutorState();
	ins->mycid = GetCurrentCommandId(true);

	rte->rtekind = RTE_RELATION;
	rte->relid = RelationGetRelid(rel);
	rte->relkind = rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	TribExecInitRangeTable(ins->estate, list_make1(rte));
	ins->root = makeNode(ResultRelInfo);
	ExecInitResultRelation(ins->estate, ins->root, 1);
	TribCheckValidInsertRel(ins->root);
	ExecOpenIndices(ins->root, false);

	ins->mtstate = makeNode(ModifyTableState);
	ins->mtstate->ps.plan = NULL;
	ins->mtstate->ps.state = ins->estate;
	ins->mtstate->operation = CMD_INSERT;
	ins->mtstate->mt_nrels = 1;
	ins->mtstate->resultRelInfo = ins->root;
	ins->mtstate->rootResultRelInfo = ins->root;

	AfterTriggerBeginQuery();
	ins->transition_capture = ins->mtstate->mt_transition_capture =
		MakeTransitionCaptureState(rel->trigdesc, RelationGetRelid(rel), CMD_INSERT);
	if (rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE)
		ins->proute = ExecSetupPartitionTupleRouting(ins->estate, rel);

	/* CopyFrom's reasons not to buffer rows */
	trig = ins->root->ri_TrigDesc;
	if (trig != NULL && (trig->trig_insert_before_row || trig->trig_insert_instead_row))
		ins->multi = false;		/* they may look at the rows already inserted */
	else if (ins->proute != NULL && trig != NULL && trig->trig_insert_new_table)
		ins->multi = false;		/* transition tables must be on the buffered relation */
	else
		ins->multi = !b->volatile_defaults;

	if (ins->multi && ins->proute == NULL)
		(void) TribBufferCreate(ins, ins->root);
	else
	{
		ins->singleslot = table_slot_create(rel, &ins->estate->es_tupleTable);
		ins->bistate = GetBulkInsertState();
	}
	ExecBSInsertTriggers(ins->estate, ins->root);
}

/* Insert row r: values, partition, BEFORE triggers, generated columns, constraints, store. */
static void
TribInsertRow(TribInsert *ins, int r)
{
	TribBatch  *b = ins->b;
	EState	   *estate = ins->estate;
	ResultRelInfo *rri = ins->root;
	TribInsertBuffer *buf = NULL;
	TupleTableSlot *myslot;
	MemoryContext old;
	bool		has_before;
	bool		has_instead;

	b->cur_row = r;
	ResetPerTupleExprContext(estate);
	if (ins->multi && ins->proute == NULL)
	{
		buf = linitial(ins->buffers);
		myslot = TribBufferNextSlot(buf);
	}
	else
		myslot = ins->singleslot;

	/* defaults are evaluated in the per-tuple context, as NextCopyFrom does */
	old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
	ExecClearTuple(myslot);
	TribRowValues(b, &b->rows[r], GetPerTupleExprContext(estate), myslot->tts_values,
				  myslot->tts_isnull);
	ExecStoreVirtualTuple(myslot);
	myslot->tts_tableOid = RelationGetRelid(rri->ri_RelationDesc);
	MemoryContextSwitchTo(old);

	has_before = rri->ri_TrigDesc != NULL && rri->ri_TrigDesc->trig_insert_before_row;
	has_instead = rri->ri_TrigDesc != NULL && rri->ri_TrigDesc->trig_insert_instead_row;

	if (ins->proute != NULL)
	{
		ResultRelInfo *part = ExecFindPartition(ins->mtstate, ins->root, ins->proute, myslot,
												estate);
		TupleConversionMap *map;
		bool		buffered;

		has_before = part->ri_TrigDesc != NULL && part->ri_TrigDesc->trig_insert_before_row;
		has_instead = part->ri_TrigDesc != NULL && part->ri_TrigDesc->trig_insert_instead_row;
		buffered = ins->multi && !has_before && !has_instead && part->ri_FdwRoutine == NULL;
		if (part != ins->prev_part)
		{
			/* rows bound elsewhere go first, so this partition's triggers see them */
			if (!buffered && ins->buffered_tuples > 0)
				TribInsertFlushAll(ins, part);
			if (ins->bistate != NULL)
				ReleaseBulkInsertStatePin(ins->bistate);
			ins->prev_part = part;
		}
		if (ins->transition_capture != NULL)
			ins->transition_capture->tcs_original_insert_tuple = !has_before ? myslot : NULL;
		map = TribRootToChildMap(part, estate);
		if (!buffered)
		{
			if (map != NULL)
				myslot = execute_attr_map_slot(map->attrMap, myslot, part->ri_PartitionTupleSlot);
		}
		else
		{
			TupleTableSlot *batchslot;

			buf = TribBufferFor(ins, part);
			batchslot = TribBufferNextSlot(buf);
			if (map != NULL)
				myslot = execute_attr_map_slot(map->attrMap, myslot, batchslot);
			else
			{
				ExecCopySlot(batchslot, myslot);
				myslot = batchslot;
			}
		}
		myslot->tts_tableOid = RelationGetRelid(part->ri_RelationDesc);
		rri = part;
	}

	if (has_before && !ExecBRInsertTriggers(estate, rri, myslot))
		return;					/* the trigger said "do nothing" */
	if (has_instead)
	{
		ExecIRInsertTriggers(estate, rri, myslot);
		ins->stored++;
		return;
	}
	if (rri->ri_RelationDesc->rd_att->constr &&
		rri->ri_RelationDesc->rd_att->constr->has_generated_stored)
		ExecComputeStoredGenerated(rri, estate, myslot, CMD_INSERT);
	if (rri->ri_FdwRoutine == NULL && rri->ri_RelationDesc->rd_att->constr)
		ExecConstraints(rri, myslot, estate);
	if (rri->ri_RelationDesc->rd_rel->relispartition && (ins->proute == NULL || has_before))
		ExecPartitionCheck(rri, myslot, estate, true);
	TribReadBeforeStore(ins, rri, myslot, r);

	if (buf != NULL)
	{
		/* the values may point into the per-tuple context: the buffer needs its own copy */
		ExecMaterializeSlot(myslot);
		buf->rows[buf->nused++] = r;
		ins->buffered_tuples++;
		ins->buffered_bytes += b->msgs[b->rows[r].msg].len;
		if (ins->buffered_tuples >= TRIB_MAX_BUFFERED_TUPLES ||
			ins->buffered_bytes >= TRIB_MAX_BUFFERED_BYTES)
			TribInsertFlushAll(ins, rri);
		return;
	}
	else
	{
		List	   *recheck = NIL;

		if (rri->ri_FdwRoutine != NULL)
		{
			myslot = rri->ri_FdwRoutine->ExecForeignInsert(estate, rri, myslot, NULL);
			if (myslot == NULL)
				return;			/* the foreign server said "do nothing" */
			myslot->tts_tableOid = RelationGetRelid(rri->ri_RelationDesc);
		}
		else
		{
			table_tuple_insert(rri->ri_RelationDesc, myslot, ins->mycid, 0, ins->bistate);
			if (rri->ri_NumIndices > 0)
				recheck = TribExecInsertIndexTuples(rri, myslot, estate);
		}
		ExecARInsertTriggers(estate, rri, myslot, recheck, ins->transition_capture);
		list_free(recheck);
		TribKeepLanded(ins, rri, myslot, r);
		ins->stored++;
	}
}

/* Flush, fire the statement's AFTER triggers, and take the executor state down. */
static void
TribInsertEnd(TribInsert *ins)
{
	ListCell   *lc;

	if (ins->buffered_tuples > 0)
		TribInsertFlushAll(ins, NULL);
	if (ins->bistate != NULL)
		FreeBulkInsertState(ins->bistate);
	ins->b->cur_row = -1;		/* from here on, no one row is to blame */
	ExecASInsertTriggers(ins->estate, ins->root, ins->transition_capture);
	AfterTriggerEndQuery(ins->estate);
	ExecResetTupleTable(ins->estate->es_tupleTable, false);
	foreach(lc, ins->buffers)
		TribBufferCleanup(lfirst(lc));
	list_free(ins->buffers);
	if (ins->proute != NULL)
		ExecCleanupTupleRouting(ins->mtstate, ins->proute);
	ExecCloseResultRelations(ins->estate);
	ExecCloseRangeTableRelations(ins->estate);
	FreeExecutorState(ins->estate);
}

/* Insert rows [lo, hi) as one statement would. */
static void
TribInsertRows(TribBatch *b, int lo, int hi, int64 *count)
{
	MemoryContext runcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary insert",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(runcxt);
	TribInsert	ins;

	TribInsertBegin(&ins, b);
	for (int r = lo; r < hi; r++)
	{
		CHECK_FOR_INTERRUPTS();
		TribInsertRow(&ins, r);
	}
	TribInsertEnd(&ins);
	*count += ins.stored;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(runcxt);
}

/* Forget what rows [lo, hi) left for the stages in an attempt that was rolled back. */
static void
TribForgetLanded(TribBatch *b, int lo, int hi)
{
	if (b->stored == NULL)
		return;
	for (int r = lo; r < hi; r++)
	{
		if (b->landed[r] != NULL)
		{
			heap_freetuple(b->landed[r]);
			b->landed[r] = NULL;
		}
		b->stored[r] = false;
		b->read[r] = false;
	}
}

/*
 * Insert rows [lo, hi), isolating the rows that fail. Segments are kept on a stack and
 * tried in row order, so the first of two conflicting rows wins.
 */
static int64
TribInsertIsolating(TribBatch *b, int lo, int hi)
{
	TribSegment *stack = palloc(sizeof(TribSegment) * (hi - lo + 1));
	int			depth = 0;
	int64		stored = 0;

	stack[depth++] = (TribSegment) {lo, hi};
	while (depth > 0)
	{
		TribSegment seg = stack[--depth];
		int			failed;
		char	   *column;
		int64		processed = 0;
		ErrorData  *edata;

		CHECK_FOR_INTERRUPTS();
		edata = TribRunGuarded(TribInsertRows, b, seg.lo, seg.hi, &processed, &failed, &column);
		if (edata == NULL)
		{
			stored += processed;
			for (int i = seg.lo; i < seg.hi; i++)
				b->results[b->rows[i].msg].outcome = TRIB_INSERTED;
			continue;
		}
		TribForgetLanded(b, seg.lo, seg.hi);
		if (seg.hi - seg.lo == 1)
			TribMarkDead(b, b->rows[seg.lo].msg, edata, column, TRIB_DEAD_REJECTED);
		else if (failed >= seg.lo && failed < seg.hi)
		{
			/* push the later parts first so the earlier rows are tried first */
			if (failed + 1 < seg.hi)
				stack[depth++] = (TribSegment) {failed + 1, seg.hi};
			stack[depth++] = (TribSegment) {failed, failed + 1};
			if (failed > seg.lo)
				stack[depth++] = (TribSegment) {seg.lo, failed};
		}
		else
		{
			int			mid = seg.lo + (seg.hi - seg.lo) / 2;

			stack[depth++] = (TribSegment) {mid, seg.hi};
			stack[depth++] = (TribSegment) {seg.lo, mid};
		}
		FreeErrorData(edata);
	}
	pfree(stack);
	return stored;
}

/* Insert the chunk's rows: all in one subtransaction, or isolating failures. */
static int64
TribInsertChunk(TribBatch *b)
{
	int64		stored = 0;
	int			failed;
	char	   *column;
	ErrorData  *edata;

	if (b->nrows == 0)
		return 0;
	edata = TribRunGuarded(TribInsertRows, b, 0, b->nrows, &stored, &failed, &column);
	if (edata == NULL)
	{
		for (int i = 0; i < b->nrows; i++)
			b->results[b->rows[i].msg].outcome = TRIB_INSERTED;
		return stored;
	}
	FreeErrorData(edata);
	TribForgetLanded(b, 0, b->nrows);
	return TribInsertIsolating(b, 0, b->nrows);
}

/*
 * A message over tributary.max_message_size is a dead letter before it is read: storing
 * it costs no more than holding it.
 */
static void
TribRejectOversized(TribBatch *b, int i)
{
	TribMessageResult *res = &b->results[i];

	TribFormatFail(res, ERRCODE_PROGRAM_LIMIT_EXCEEDED,
				   "message is too large",
				   psprintf("The message has %d bytes; tributary.max_message_size is %d bytes.",
							b->msgs[i].len, tributary_max_message_size));
	res->reason = TRIB_DEAD_TOO_LARGE;
}

/* The chunk's landed rows, with their key as text and event time, appended to the stage batch. */
static void
TribStageCollect(TribBatch *b, TribStageBatch *stage)
{
	MemoryContext old = MemoryContextSwitchTo(b->result_cxt);
	TribStageReader *rd = b->reader;

	for (int r = 0; r < b->nrows; r++)
	{
		TribStageRow *row;

		if (!b->stored[r])
			continue;			/* not stored: a BEFORE trigger skipped it */
		row = &stage->rows[stage->nrows++];
		*row = b->landed_at[r];
		row->msg = b->rows[r].msg;
		row->tuple = b->landed[r];
		if (!b->read[r] && rd->slot != NULL)
		{
			ExecStoreHeapTuple(row->tuple, rd->slot, false);
			TribStageReadRow(rd, rd->slot, row);
			ExecClearTuple(rd->slot);
		}
		else if (!b->read[r])
			TribStageReadRow(rd, NULL, row);	/* the stream has neither */
		b->landed[r] = NULL;
		b->stored[r] = false;
		b->read[r] = false;
	}
	MemoryContextSwitchTo(old);
}

/*
 * Put a batch of messages into def's target. Every message ends TRIB_INSERTED or
 * TRIB_DEAD in results (error texts allocated in the caller's context); counts sums
 * them up. With stage, the rows as they landed are collected there for the stream's
 * stages (in the caller's context). The caller checks privileges first, holds the
 * transaction, and writes the dead letters.
 */
void
TribIngestBatch(StreamDef *def, TribMessage *msgs, int nmsgs, TribMessageResult *results,
				TribBatchCounts *counts, TribStageBatch *stage)
{
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary batch",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext chunkcxt = AllocSetContextCreate(batchcxt, "tributary chunk",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(batchcxt);
	Relation	rel = table_open(def->target, RowExclusiveLock);
	TribBatch	b = {0};
	TribStageReader rd = {.key_col = -1, .time_col = -1};
	int			lo = 0;

	memset(counts, 0, sizeof(*counts));
	memset(results, 0, sizeof(TribMessageResult) * nmsgs);
	b.target = TribTargetOpen(def, rel);
	b.msgs = msgs;
	b.results = results;
	b.result_cxt = old;
	b.rows = palloc(sizeof(TribRow) * Max(nmsgs, 1));
	TribPrepareDefaults(&b);
	if (stage != NULL)
	{
		b.stored = palloc0(sizeof(bool) * Max(nmsgs, 1));
		b.read = palloc0(sizeof(bool) * Max(nmsgs, 1));
		b.landed = palloc0(sizeof(HeapTuple) * Max(nmsgs, 1));
		b.landed_at = palloc0(sizeof(TribStageRow) * Max(nmsgs, 1));
		b.keep_tuples = stage->keep_tuples;
		b.reader = &rd;
		MemoryContextSwitchTo(old);
		stage->desc = CreateTupleDescCopy(RelationGetDescr(rel));
		stage->rows = palloc(sizeof(TribStageRow) * Max(nmsgs, 1));
		stage->nrows = 0;
		MemoryContextSwitchTo(batchcxt);
		/* any column, generated ones too (they are only read); -1 when none */
		if (def->key_column != NULL)
			rd.key_col = get_attnum(def->target, def->key_column) - 1;
		if (rd.key_col >= 0)
		{
			Oid			output;
			bool		varlena;

			/* looked up once: OidOutputFunctionCall would look it up for every row */
			Form_pg_attribute att = TupleDescAttr(stage->desc, rd.key_col);

			getTypeOutputInfo(att->atttypid, &output, &varlena);
			fmgr_info(output, &rd.key_output);
			rd.key_byval = att->attbyval;
			rd.key_typlen = att->attlen;
			/* texts made once per value: for values stored as bytes or varlenas */
			if (att->attbyval || att->attlen > 0 || att->attlen == -1)
				rd.key_texts = palloc0(sizeof(TribKeyText) * TRIB_KEY_TEXTS);
		}
		if (def->event_time_column != NULL)
			rd.time_col = get_attnum(def->target, def->event_time_column) - 1;
		if (rd.time_col >= 0)
			rd.time_is_timestamp = TupleDescAttr(stage->desc, rd.time_col)->atttypid == TIMESTAMPOID;
		if (rd.key_col >= 0 || rd.time_col >= 0)
			rd.slot = MakeSingleTupleTableSlot(stage->desc, &TTSOpsHeapTuple);
	}

	while (lo < nmsgs)
	{
		int			hi = lo;
		int64		chunk_bytes = 0;

		/* a chunk: messages until their size reaches TRIB_CHUNK_BYTES */
		while (hi < nmsgs && (hi == lo || chunk_bytes + msgs[hi].len <= TRIB_CHUNK_BYTES))
		{
			counts->messages++;
			counts->bytes += msgs[hi].len;
			chunk_bytes += msgs[hi].len;
			if (msgs[hi].tombstone && stage != NULL && stage->tombstones)
				results[hi].outcome = TRIB_TOMBSTONE;
			else if (msgs[hi].len > tributary_max_message_size)
			{
				MemoryContextSwitchTo(old);
				TribRejectOversized(&b, hi);
				MemoryContextSwitchTo(batchcxt);
			}
			else if (msgs[hi].malformed != NULL)
			{
				MemoryContextSwitchTo(old);
				TribFormatFail(&results[hi], ERRCODE_INVALID_TEXT_REPRESENTATION,
							   msgs[hi].malformed, msgs[hi].malformed_detail);
				MemoryContextSwitchTo(batchcxt);
			}
			hi++;
		}
		b.nrows = 0;
		MemoryContextSwitchTo(chunkcxt);
		TribFormatChunk(&b, lo, hi);
		counts->rows += TribInsertChunk(&b);
		MemoryContextSwitchTo(batchcxt);
		if (stage != NULL)
			TribStageCollect(&b, stage);
		MemoryContextReset(chunkcxt);
		lo = hi;
	}

	for (int i = 0; i < nmsgs; i++)
		if (results[i].outcome == TRIB_DEAD)
		{
			counts->dead++;
			if (stage != NULL)
				stage->dead[results[i].reason]++;
		}
	TribRaiseIfEveryMessageFailed(results, nmsgs);

	if (rd.slot != NULL)
		ExecDropSingleTupleTableSlot(rd.slot);
	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(batchcxt);
}
