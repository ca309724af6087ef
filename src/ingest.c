/*
 * ingest.c
 *		The insert path shared by every source.
 *
 * A batch of messages is formatted into COPY text rows (formats/), grouped into runs of
 * consecutive rows that supply the same columns, and each run goes into the target table
 * with PostgreSQL's own COPY FROM machinery (BeginCopyFrom/CopyFrom), so defaults,
 * constraints, triggers, partition routing and multi-insert buffering behave exactly as
 * they do for COPY.
 *
 * Each run is tried in a subtransaction. When it fails with an error about the data
 * (classes 22, 23, 44 and PL/pgSQL's P0), the run is split around the row COPY was
 * reading when it failed (or halved when that is unknown) and the parts are tried again,
 * until the failing rows stand alone; those are dead letters with the error they raised,
 * and every other row lands. Errors that are not about one row (out of memory, a
 * cancel, a lock timeout, a missing privilege) abort the batch as they would any
 * statement.
 *
 * The caller owns the transaction; nothing here commits.
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "commands/copy.h"
#include "catalog/pg_type.h"
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

/* One formatted row: where its COPY line sits in the batch buffer. */
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

/* What COPY reads from: a slice of the batch buffer. Saved and restored around each run. */
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

/* Errors about one row's data; anything else is not the row's fault. */
static bool
TribErrorIsRowError(int sqlerrcode)
{
	int			category = ERRCODE_TO_CATEGORY(sqlerrcode);

	return category == ERRCODE_DATA_EXCEPTION ||
		category == ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION ||
		category == ERRCODE_WITH_CHECK_OPTION_VIOLATION ||
		category == ERRCODE_TO_CATEGORY(ERRCODE_PLPGSQL_ERROR);
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
 * COPY rows [lo, hi) into the target in a subtransaction. Returns true on success; on a
 * row error returns false with *edata set and *failed_row to the row COPY was on (or -1).
 */
static bool
TribCopyRun(TribTarget *t, StringInfo lines, TribRow *rows, int lo, int hi,
			int64 *processed, ErrorData **edata, int *failed_row, char **failed_column)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext runcxt = AllocSetContextCreate(oldcxt, "tributary copy run",
												 ALLOCSET_DEFAULT_SIZES);
	const char *saved_src = copy_src;
	int			saved_len = copy_src_len;
	int			saved_pos = copy_src_pos;
	CopyFromState volatile cstate = NULL;
	bool		ok = true;

	*failed_row = -1;
	*failed_column = NULL;
	copy_src = lines->data + rows[lo].start;
	copy_src_len = rows[hi - 1].start + rows[hi - 1].len - rows[lo].start;
	copy_src_pos = 0;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(runcxt);
	PG_TRY();
	{
		List	   *columns = TribTargetColumnNames(t, rows[lo].signature);

		if (columns == NIL)
			*processed = TribInsertDefaultRows(t->rel, hi - lo);
		else
		{
			ParseState *pstate = make_parsestate(NULL);
			List	   *options = list_make1(makeDefElem("encoding",
														 (Node *) makeString((char *) GetDatabaseEncodingName()),
														 -1));

			(void) addRangeTableEntryForRelation(pstate, t->rel, RowExclusiveLock, NULL, false, false);
			cstate = BeginCopyFrom(pstate, t->rel, NULL, NULL, false, TribCopyRead, columns, options);
			*processed = CopyFrom(cstate);
			EndCopyFrom(cstate);
		}
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
	}
	PG_CATCH();
	{
		ErrorData  *err;

		MemoryContextSwitchTo(oldcxt);
		err = CopyErrorData();
		FlushErrorState();
		if (cstate != NULL && cstate->cur_lineno >= 1 && cstate->cur_lineno <= (uint64) (hi - lo))
		{
			*failed_row = lo + (int) cstate->cur_lineno - 1;
			if (cstate->cur_attname != NULL)
				*failed_column = pstrdup(cstate->cur_attname);
		}
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		copy_src = saved_src;
		copy_src_len = saved_len;
		copy_src_pos = saved_pos;
		if (!TribErrorIsRowError(err->sqlerrcode))
			ReThrowError(err);
		*edata = err;
		ok = false;
	}
	PG_END_TRY();

	copy_src = saved_src;
	copy_src_len = saved_len;
	copy_src_pos = saved_pos;
	MemoryContextDelete(runcxt);
	return ok;
}

static void
TribMarkDead(TribMessageResult *res, ErrorData *edata, const char *column)
{
	res->outcome = TRIB_DEAD;
	res->sqlerrcode = edata->sqlerrcode;
	res->error = pstrdup(edata->message);
	if (column != NULL)
		res->detail = edata->detail ?
			psprintf("Column \"%s\": %s", column, edata->detail) :
			psprintf("Column \"%s\".", column);
	else
		res->detail = edata->detail ? pstrdup(edata->detail) : NULL;
}

/*
 * Insert rows [lo, hi) (one signature), isolating the rows that fail. Segments are kept
 * on a stack and tried in row order, so the first of two conflicting rows wins.
 */
static int64
TribInsertSignatureRun(TribTarget *t, StringInfo lines, TribRow *rows, int lo, int hi,
					   TribMessageResult *results)
{
	TribSegment *stack = palloc(sizeof(TribSegment) * (hi - lo) * 2 + sizeof(TribSegment));
	int			depth = 0;
	int64		stored = 0;

	stack[depth++] = (TribSegment) {lo, hi};
	while (depth > 0)
	{
		TribSegment seg = stack[--depth];
		ErrorData  *edata = NULL;
		int			failed;
		char	   *column;
		int64		processed = 0;

		CHECK_FOR_INTERRUPTS();
		if (TribCopyRun(t, lines, rows, seg.lo, seg.hi, &processed, &edata, &failed, &column))
		{
			stored += processed;
			for (int i = seg.lo; i < seg.hi; i++)
				results[rows[i].msg].outcome = TRIB_INSERTED;
			continue;
		}
		if (seg.hi - seg.lo == 1)
		{
			TribMarkDead(&results[rows[seg.lo].msg], edata, column);
			continue;
		}
		/* push the later parts first so the earlier rows are tried first */
		if (failed >= seg.lo && failed < seg.hi)
		{
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

/*
 * Put a batch of messages into def's target. Every message ends TRIB_INSERTED or
 * TRIB_DEAD in results; counts sums them up. The caller checks privileges first, holds
 * the transaction, and writes the dead letters.
 */
void
TribIngestBatch(StreamDef *def, TribMessage *msgs, int nmsgs, TribMessageResult *results,
				TribBatchCounts *counts)
{
	MemoryContext batchcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary batch",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(batchcxt);
	Relation	rel = table_open(def->target, RowExclusiveLock);
	TribTarget *t = TribTargetOpen(def, rel);
	TribRow    *rows = palloc(sizeof(TribRow) * Max(nmsgs, 1));
	StringInfoData lines;
	int			nrows = 0;

	memset(counts, 0, sizeof(*counts));
	initStringInfo(&lines);
	for (int i = 0; i < nmsgs; i++)
	{
		int			start = lines.len;
		int			signature;

		counts->messages++;
		counts->bytes += msgs[i].len;
		memset(&results[i], 0, sizeof(TribMessageResult));
		if (TribFormatMessage(t, &msgs[i], &lines, &signature, &results[i]))
			rows[nrows++] = (TribRow) {i, start, lines.len - start, signature};
		else
		{
			/* the error text must outlive the batch context */
			MemoryContextSwitchTo(old);
			results[i].error = pstrdup(results[i].error);
			if (results[i].detail)
				results[i].detail = pstrdup(results[i].detail);
			MemoryContextSwitchTo(batchcxt);
		}
	}

	for (int lo = 0; lo < nrows;)
	{
		int			hi = lo + 1;

		while (hi < nrows && rows[hi].signature == rows[lo].signature)
			hi++;
		MemoryContextSwitchTo(old);
		counts->rows += TribInsertSignatureRun(t, &lines, rows, lo, hi, results);
		MemoryContextSwitchTo(batchcxt);
		lo = hi;
	}

	for (int i = 0; i < nmsgs; i++)
		if (results[i].outcome == TRIB_DEAD)
			counts->dead++;

	table_close(rel, NoLock);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(batchcxt);
}
