/*
 * ingest.c
 *		The insert path shared by every source.
 *
 * A batch of messages is formatted into COPY text rows (formats/), grouped into runs of
 * consecutive rows that supply the same columns, and each run goes into the target table
 * with PostgreSQL's own COPY FROM machinery (BeginCopyFrom/CopyFrom), so defaults,
 * constraints, triggers, partition routing and multi-insert buffering behave exactly as
 * they do for COPY. A batch is cut into chunks of at most TRIB_CHUNK_BYTES of COPY text,
 * and a message larger than tributary.max_message_size is a dead letter before it is
 * formatted, so no buffer nears 1 GB.
 *
 * Memory per message: the text and bytes formats hand COPY the payload column's value
 * directly (TribFormatPayloadValue, through the column's input function slot), so their
 * payload is never escaped nor held in COPY's line and attribute buffers; a payload that
 * already is a varlena (ingest's text and bytea arguments, replayed dead letters) goes
 * into the row without a copy. json hands over its large strings for text columns the
 * same way (TribDirectValue). What remains is the tuple COPY forms and TOAST's
 * compression buffer. Every other value still passes through COPY text.
 *
 * Errors are contained with subtransactions, so that one bad message can neither stop a
 * batch nor be lost:
 *   - Formatting a chunk runs in one subtransaction (it writes nothing, so it costs no
 *     transaction id). If the parser raises an error (stack depth on absurd nesting, an
 *     escape the database encoding cannot hold), the chunk is formatted again one message
 *     per subtransaction, and the messages that raise are dead letters.
 *   - Inserting a chunk first tries all its runs in one subtransaction. When that fails,
 *     each run is tried alone and split around the row COPY was reading when it failed
 *     (or halved when that is unknown), until the failing rows stand alone; those are
 *     dead letters with the error they raised, and every other row lands, in order, so
 *     the first of two conflicting rows wins.
 * Whatever its SQLSTATE, an error that one message raises is that message's fault: it
 * becomes a dead letter and the batch goes on. Only errors that cannot be a message's
 * fault abort the batch, as they would any statement (lost connections, serialization
 * failures and deadlocks, exhausted resources, cancels and shutdowns, system and
 * internal errors: TribErrorStopsBatch), and so does an environmental error that every
 * message of the batch hits alike (TribRaiseIfEveryMessageFailed).
 *
 * The caller owns the transaction; nothing here commits.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/copyfrom_internal.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "formats/format.h"
#include "ingest.h"

/* COPY text per chunk; a message's COPY text is at most about twice its size. */
#define TRIB_CHUNK_BYTES (64 * 1024 * 1024)

/* One formatted row: where its COPY line sits in the chunk buffer. */
typedef struct TribRow
{
	int			msg;
	int			start;
	int			len;
	int			signature;
} TribRow;

/* A run of rows [lo, hi) to try in one COPY. */
typedef struct TribSegment
{
	int			lo;
	int			hi;
} TribSegment;

/* The batch being ingested and its current chunk. */
typedef struct TribBatch
{
	TribTarget *target;
	TribMessage *msgs;
	TribMessageResult *results;
	MemoryContext result_cxt;	/* where dead letters' error texts must live */
	StringInfoData lines;		/* COPY text of the chunk's rows */
	TribRow    *rows;
	int			nrows;
	/* the COPY that is running, for the error handler */
	CopyFromState cstate;
	int			copy_lo;
} TribBatch;

/* What a column's input function slot holds while COPY takes values from tributary. */
typedef struct TribColumnInputState
{
	TribBatch  *batch;
	int			col;
	FmgrInfo	infunc;			/* the column type's own input function */
} TribColumnInputState;

/* What COPY reads from: a slice of the chunk buffer. Saved and restored around each COPY. */
static const char *copy_src = NULL;
static int	copy_src_len = 0;
static int	copy_src_pos = 0;

static int
TribCopyRead(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_src_len - copy_src_pos);

	memcpy(outbuf, copy_src + copy_src_pos, n);
	copy_src_pos += n;
	return n;
}

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
 * to the row a running COPY was on (or -1) and *column to the column it was reading;
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
	b->cstate = NULL;
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
		CopyFromState cstate = b->cstate;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		if (cstate != NULL && cstate->cur_lineno >= 1 &&
			b->copy_lo + (int64) cstate->cur_lineno - 1 < hi)
		{
			*failed = b->copy_lo + (int) cstate->cur_lineno - 1;
			if (cstate->cur_attname != NULL)
				*column = pstrdup(cstate->cur_attname);
		}
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		if (TribErrorStopsBatch(edata->sqlerrcode))
			ReThrowError(edata);
	}
	PG_END_TRY();
	b->cstate = NULL;
	return edata;
}

static void
TribMarkDead(TribBatch *b, int msg, ErrorData *edata, const char *column)
{
	TribMessageResult *res = &b->results[msg];
	MemoryContext old = MemoryContextSwitchTo(b->result_cxt);

	res->outcome = TRIB_DEAD;
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

/* Format messages [lo, hi) into the chunk; parse failures are marked dead, not raised. */
static void
TribFormatRange(TribBatch *b, int lo, int hi, int64 *count)
{
	for (int i = lo; i < hi; i++)
	{
		TribMessageResult *res = &b->results[i];
		int			start = b->lines.len;
		int			signature;

		if (res->outcome == TRIB_DEAD)
			continue;			/* rejected before formatting */
		if (TribFormatMessage(b->target, &b->msgs[i], &b->lines, &signature, res))
			b->rows[b->nrows++] = (TribRow) {i, start, b->lines.len - start, signature};
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

/* Format a chunk in one subtransaction; if the parser raises, one per message. */
static void
TribFormatChunk(TribBatch *b, int lo, int hi)
{
	int			rows_before = b->nrows;
	int			len_before = b->lines.len;
	int			direct_before = list_length(b->target->direct);
	int			failed;
	char	   *column;
	ErrorData  *edata;

	edata = TribRunGuarded(TribFormatRange, b, lo, hi, NULL, &failed, &column);
	if (edata == NULL)
		return;
	FreeErrorData(edata);

	/*
	 * Start the chunk over, one message at a time. Messages the first pass found bad stay
	 * dead (formatting is deterministic) and are skipped; the one that raised raises again.
	 */
	b->nrows = rows_before;
	b->lines.len = len_before;
	b->lines.data[len_before] = '\0';
	TribTargetForgetDirect(b->target, direct_before);
	for (int i = lo; i < hi; i++)
	{
		rows_before = b->nrows;
		len_before = b->lines.len;
		direct_before = list_length(b->target->direct);
		edata = TribRunGuarded(TribFormatRange, b, i, i + 1, NULL, &failed, &column);
		if (edata != NULL)
		{
			b->nrows = rows_before;
			b->lines.len = len_before;
			b->lines.data[len_before] = '\0';
			TribTargetForgetDirect(b->target, direct_before);
			TribMarkDead(b, i, edata, NULL);
			FreeErrorData(edata);
		}
	}
}

/*
 * Rows that supply no column at all (a json message with no known key) are rows of
 * defaults, as INSERT ... DEFAULT VALUES; COPY cannot name zero columns, so INSERT them.
 */
static uint64
TribInsertDefaultRows(Relation rel, int nrows)
{
	char	   *sql = psprintf("INSERT INTO %s SELECT FROM pg_catalog.generate_series(1, $1)",
							   quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
														  RelationGetRelationName(rel)));
	Oid			argtype = INT4OID;
	Datum		arg = Int32GetDatum(nrows);
	uint64		processed;

	SPI_connect();
	if (SPI_execute_with_args(sql, 1, &argtype, &arg, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "tributary: could not insert default rows into \"%s\"", RelationGetRelationName(rel));
	processed = SPI_processed;
	SPI_finish();
	return processed;
}

/*
 * Stands in for a column's input function: the value of the row COPY is reading comes
 * from its message (text and bytes formats) or from a format's direct value (json's large
 * strings) rather than from the (empty) field of the COPY line; other fields of the
 * column go to its own input function.
 */
static Datum
TribColumnInput(PG_FUNCTION_ARGS)
{
	TribColumnInputState *st = (TribColumnInputState *) fcinfo->flinfo->fn_extra;
	TribBatch  *b = st->batch;
	const TribMessage *msg = &b->msgs[b->rows[b->copy_lo + (int) b->cstate->cur_lineno - 1].msg];
	ListCell   *lc;

	if (b->target->payload_value)
		return TribFormatPayloadValue(b->target, msg, &st->infunc,
									  PG_GETARG_OID(1), PG_GETARG_INT32(2));
	foreach(lc, b->target->direct)
	{
		TribDirectValue *d = lfirst(lc);

		if (d->msg == msg && d->col == st->col)
			return d->value;
	}
	return InputFunctionCall(&st->infunc, PG_GETARG_CSTRING(0), PG_GETARG_OID(1),
							 PG_GETARG_INT32(2));
}

/* Route column col of the COPY that was just begun through TribColumnInput. */
static void
TribCopyTakeColumn(TribBatch *b, int col)
{
	FmgrInfo   *f = &b->cstate->in_functions[col];
	TribColumnInputState *st;

	if (f->fn_addr == TribColumnInput)
		return;
	st = palloc(sizeof(TribColumnInputState));
	st->batch = b;
	st->col = col;
	fmgr_info_copy(&st->infunc, f, CurrentMemoryContext);
	MemSet(f, 0, sizeof(FmgrInfo));
	f->fn_addr = TribColumnInput;
	f->fn_oid = InvalidOid;
	f->fn_nargs = 3;
	f->fn_strict = true;
	f->fn_mcxt = CurrentMemoryContext;
	f->fn_extra = st;
}

/* COPY rows [lo, hi), which share one signature, into the target. */
static void
TribCopyRows(TribBatch *b, int lo, int hi, int64 *count)
{
	TribTarget *t = b->target;
	MemoryContext runcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary copy",
												 ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(runcxt);
	List	   *columns = TribTargetColumnNames(t, b->rows[lo].signature);
	const char *saved_src = copy_src;
	int			saved_len = copy_src_len;
	int			saved_pos = copy_src_pos;

	if (columns == NIL)
		*count += TribInsertDefaultRows(t->rel, hi - lo);
	else
	{
		ParseState *pstate = make_parsestate(NULL);
		ListCell   *lc;
		List	   *options = list_make1(makeDefElem("encoding",
													 (Node *) makeString((char *) GetDatabaseEncodingName()),
													 -1));

		(void) addRangeTableEntryForRelation(pstate, t->rel, RowExclusiveLock, NULL, false, false);
		b->cstate = BeginCopyFrom(pstate, t->rel, NULL, NULL, false, TribCopyRead, columns, options);
		b->copy_lo = lo;
		if (t->payload_value)
			TribCopyTakeColumn(b, t->single);
		foreach(lc, t->direct)
			TribCopyTakeColumn(b, ((TribDirectValue *) lfirst(lc))->col);
		copy_src = b->lines.data + b->rows[lo].start;
		copy_src_len = b->rows[hi - 1].start + b->rows[hi - 1].len - b->rows[lo].start;
		copy_src_pos = 0;
		PG_TRY();
		{
			*count += CopyFrom(b->cstate);
		}
		PG_FINALLY();
		{
			copy_src = saved_src;
			copy_src_len = saved_len;
			copy_src_pos = saved_pos;
		}
		PG_END_TRY();
		EndCopyFrom(b->cstate);
		b->cstate = NULL;
	}
	MemoryContextSwitchTo(old);
	MemoryContextDelete(runcxt);
}

/* The runs of rows [lo, hi) that share a signature, one COPY each. */
static void
TribCopyAllRuns(TribBatch *b, int lo, int hi, int64 *count)
{
	while (lo < hi)
	{
		int			end = lo + 1;

		while (end < hi && b->rows[end].signature == b->rows[lo].signature)
			end++;
		TribCopyRows(b, lo, end, count);
		lo = end;
	}
}

/*
 * Insert rows [lo, hi) of one signature, isolating the rows that fail. Segments are kept
 * on a stack and tried in row order, so the first of two conflicting rows wins.
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
		edata = TribRunGuarded(TribCopyRows, b, seg.lo, seg.hi, &processed, &failed, &column);
		if (edata == NULL)
		{
			stored += processed;
			for (int i = seg.lo; i < seg.hi; i++)
				b->results[b->rows[i].msg].outcome = TRIB_INSERTED;
			continue;
		}
		if (seg.hi - seg.lo == 1)
		{
			TribMarkDead(b, b->rows[seg.lo].msg, edata, column);
			b->results[b->rows[seg.lo].msg].at_insert = true;
		}
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

/* Insert the chunk's rows: all in one subtransaction, or run by run isolating failures. */
static int64
TribInsertChunk(TribBatch *b)
{
	int64		stored = 0;
	int			failed;
	char	   *column;
	ErrorData  *edata;

	if (b->nrows == 0)
		return 0;
	edata = TribRunGuarded(TribCopyAllRuns, b, 0, b->nrows, &stored, &failed, &column);
	if (edata == NULL)
	{
		for (int i = 0; i < b->nrows; i++)
			b->results[b->rows[i].msg].outcome = TRIB_INSERTED;
		return stored;
	}
	FreeErrorData(edata);

	stored = 0;
	for (int lo = 0; lo < b->nrows;)
	{
		int			hi = lo + 1;

		while (hi < b->nrows && b->rows[hi].signature == b->rows[lo].signature)
			hi++;
		stored += TribInsertIsolating(b, lo, hi);
		lo = hi;
	}
	return stored;
}

/*
 * A message over tributary.max_message_size is a dead letter before it is formatted or
 * copied: storing it costs no more than holding it.
 */
static void
TribRejectOversized(TribBatch *b, int i)
{
	TribFormatFail(&b->results[i], ERRCODE_PROGRAM_LIMIT_EXCEEDED,
				   "message is too large",
				   psprintf("The message has %d bytes; tributary.max_message_size is %d bytes.",
							b->msgs[i].len, tributary_max_message_size));
}

/*
 * Put a batch of messages into def's target. Every message ends TRIB_INSERTED or
 * TRIB_DEAD in results (error texts allocated in the caller's context); counts sums
 * them up. The caller checks privileges first, holds the transaction, and writes the
 * dead letters.
 */
void
TribIngestBatch(StreamDef *def, TribMessage *msgs, int nmsgs, TribMessageResult *results,
				TribBatchCounts *counts)
{
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary batch",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(batchcxt);
	Relation	rel = table_open(def->target, RowExclusiveLock);
	TribBatch	b = {0};
	int			lo = 0;

	memset(counts, 0, sizeof(*counts));
	memset(results, 0, sizeof(TribMessageResult) * nmsgs);
	b.target = TribTargetOpen(def, rel);
	b.msgs = msgs;
	b.results = results;
	b.result_cxt = old;
	b.rows = palloc(sizeof(TribRow) * Max(nmsgs, 1));
	initStringInfo(&b.lines);

	while (lo < nmsgs)
	{
		int			hi = lo;
		int64		chunk_bytes = 0;

		/* a chunk: messages until their size reaches TRIB_CHUNK_BYTES */
		while (hi < nmsgs && (hi == lo || chunk_bytes + msgs[hi].len <= TRIB_CHUNK_BYTES / 2))
		{
			counts->messages++;
			counts->bytes += msgs[hi].len;
			chunk_bytes += msgs[hi].len;
			if (msgs[hi].len > tributary_max_message_size)
			{
				MemoryContextSwitchTo(old);
				TribRejectOversized(&b, hi);
				MemoryContextSwitchTo(batchcxt);
			}
			hi++;
		}
		b.nrows = 0;
		resetStringInfo(&b.lines);
		TribFormatChunk(&b, lo, hi);
		counts->rows += TribInsertChunk(&b);
		TribTargetForgetDirect(b.target, 0);
		lo = hi;
	}

	for (int i = 0; i < nmsgs; i++)
		if (results[i].outcome == TRIB_DEAD)
			counts->dead++;
	TribRaiseIfEveryMessageFailed(results, nmsgs);

	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(batchcxt);
}
