/*
 * deadletter.c
 *		Writes rejected messages to tributary.dead_letters with their raw bytes, source
 *		position and error, and replays them through the insert path on request.
 *
 * Both run as the extension's owner on tributary's table (users cannot write it), in
 * the caller's transaction: a batch's dead letters commit or roll back with its rows.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "deadletter.h"

#define TRIB_REPLAY_BATCH 1000

static void
TribDeadLetterInsert(StreamDef *def, TribMessage *msg, TribMessageResult *res)
{
	Oid			types[8] = {TEXTOID, INT4OID, INT8OID, BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	Datum		values[8];
	char		nulls[8] = "        ";
	bytea	   *payload = palloc(VARHDRSZ + msg->len);

	SET_VARSIZE(payload, VARHDRSZ + msg->len);
	memcpy(VARDATA(payload), msg->data, msg->len);
	values[0] = CStringGetTextDatum(def->name);
	values[1] = Int32GetDatum(msg->partition);
	nulls[1] = msg->partition < 0 ? 'n' : ' ';
	values[2] = Int64GetDatum(msg->offset);
	nulls[2] = msg->offset < 0 ? 'n' : ' ';
	values[3] = PointerGetDatum(payload);
	values[4] = CStringGetTextDatum(res->error);
	values[5] = CStringGetTextDatum(unpack_sql_state(res->sqlerrcode));
	values[6] = res->detail ? CStringGetTextDatum(res->detail) : (Datum) 0;
	nulls[6] = res->detail ? ' ' : 'n';
	values[7] = msg->topic ? CStringGetTextDatum(msg->topic) : (Datum) 0;
	nulls[7] = msg->topic ? ' ' : 'n';
	if (SPI_execute_with_args("INSERT INTO tributary.dead_letters "
							  "(stream, partition, source_offset, payload, error, sqlstate, detail, topic) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
							  8, types, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "tributary: could not write a dead letter for stream \"%s\"", def->name);
}

/* Write every TRIB_DEAD message of a batch to tributary.dead_letters. */
void
TribDeadLettersWrite(StreamDef *def, TribMessage *msgs, TribMessageResult *results, int nmsgs)
{
	TribOwnerContext owner;
	bool		any = false;

	for (int i = 0; i < nmsgs && !any; i++)
		any = results[i].outcome == TRIB_DEAD;
	if (!any)
		return;

	TribBecomeExtensionOwner(&owner);
	SPI_connect();
	for (int i = 0; i < nmsgs; i++)
		if (results[i].outcome == TRIB_DEAD)
			TribDeadLetterInsert(def, &msgs[i], &results[i]);
	SPI_finish();
	TribRestoreUser(&owner);
}

/* Load up to TRIB_REPLAY_BATCH dead letters after last_id, locked, into msgs and ids. */
static int
TribDeadLettersFetch(StreamDef *def, int64 last_id, TribMessage *msgs, int64 *ids)
{
	Oid			types[2] = {TEXTOID, INT8OID};
	Datum		values[2] = {CStringGetTextDatum(def->name), Int64GetDatum(last_id)};
	MemoryContext cxt = CurrentMemoryContext;
	TribOwnerContext owner;
	int			n;

	TribBecomeExtensionOwner(&owner);
	SPI_connect();
	SPI_execute_with_args("SELECT id, partition, source_offset, payload, topic FROM tributary.dead_letters "
						  "WHERE stream = $1 AND id > $2 ORDER BY id LIMIT " CppAsString2(TRIB_REPLAY_BATCH)
						  " FOR UPDATE",
						  2, types, values, NULL, false, 0);
	n = (int) SPI_processed;
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d;
		bytea	   *payload;
		MemoryContext old;

		ids[i] = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d = SPI_getbinval(tup, desc, 2, &isnull);
		msgs[i].partition = isnull ? -1 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 3, &isnull);
		msgs[i].offset = isnull ? -1 : DatumGetInt64(d);
		old = MemoryContextSwitchTo(cxt);
		payload = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		msgs[i].topic = SPI_getvalue(tup, desc, 5);
		MemoryContextSwitchTo(old);
		msgs[i].data = VARDATA(payload);
		msgs[i].len = VARSIZE(payload) - VARHDRSZ;
	}
	SPI_finish();
	TribRestoreUser(&owner);
	return n;
}

/* Remove the dead letters that landed; record the new error of those that did not. */
static void
TribDeadLettersSettle(int64 *ids, TribMessageResult *results, int n)
{
	TribOwnerContext owner;

	TribBecomeExtensionOwner(&owner);
	SPI_connect();
	for (int i = 0; i < n; i++)
	{
		Oid			types[4] = {INT8OID, TEXTOID, TEXTOID, TEXTOID};
		Datum		values[4];
		char		nulls[4] = "    ";

		values[0] = Int64GetDatum(ids[i]);
		if (results[i].outcome == TRIB_INSERTED)
		{
			SPI_execute_with_args("DELETE FROM tributary.dead_letters WHERE id = $1",
								  1, types, values, NULL, false, 0);
			continue;
		}
		values[1] = CStringGetTextDatum(results[i].error);
		values[2] = CStringGetTextDatum(unpack_sql_state(results[i].sqlerrcode));
		values[3] = results[i].detail ? CStringGetTextDatum(results[i].detail) : (Datum) 0;
		nulls[3] = results[i].detail ? ' ' : 'n';
		SPI_execute_with_args("UPDATE tributary.dead_letters SET error = $2, sqlstate = $3, "
							  "detail = $4, attempts = attempts + 1, failed_at = pg_catalog.now() "
							  "WHERE id = $1",
							  4, types, values, nulls, false, 0);
	}
	SPI_finish();
	TribRestoreUser(&owner);
}

/*
 * Push every dead letter of the stream through the insert path again, oldest first, in
 * batches. Landed ones are deleted; the rest stay with their new error.
 */
void
TribDeadLettersReplay(StreamDef *def, TribBatchCounts *counts)
{
	MemoryContext loopcxt = AllocSetContextCreate(CurrentMemoryContext, "tributary replay",
												  ALLOCSET_DEFAULT_SIZES);
	int64		last_id = 0;

	memset(counts, 0, sizeof(*counts));
	for (;;)
	{
		MemoryContext old = MemoryContextSwitchTo(loopcxt);
		TribMessage *msgs = palloc0(sizeof(TribMessage) * TRIB_REPLAY_BATCH);
		TribMessageResult *results = palloc0(sizeof(TribMessageResult) * TRIB_REPLAY_BATCH);
		int64	   *ids = palloc(sizeof(int64) * TRIB_REPLAY_BATCH);
		TribBatchCounts batch;
		int			n = TribDeadLettersFetch(def, last_id, msgs, ids);

		if (n > 0)
		{
			TribIngestBatch(def, msgs, n, results, &batch);
			TribDeadLettersSettle(ids, results, n);
			counts->messages += batch.messages;
			counts->rows += batch.rows;
			counts->dead += batch.dead;
			counts->bytes += batch.bytes;
			last_id = ids[n - 1];
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(loopcxt);
		if (n < TRIB_REPLAY_BATCH)
			break;
	}
	MemoryContextDelete(loopcxt);
}
