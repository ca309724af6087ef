/*
 * deadletter.c
 *		Writes rejected messages to tributary.dead_letters with their raw bytes, source
 *		position and error, and replays them through the batch path (batch.c) on request.
 *
 * Both run as the extension's owner on tributary's table (users cannot write it), in
 * the caller's transaction: a batch's dead letters commit or roll back with its rows.
 *
 * A message's origin is stored source-neutrally, as text (position.h): source_stream,
 * source_partition, source_position. Replay gives them back to the stream's source to
 * restore (TribSourceRoutine.restore_position). Before ALTER EXTENSION UPDATE to 0.3.0 the
 * table has 0.2.0's columns topic, partition integer and source_offset bigint instead.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "mb/pg_wchar.h"
#include "utils/elog.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "batch.h"
#include "catalog.h"
#include "deadletter.h"
#include "formats/format.h"
#include "position.h"
#include "varlena.h"
#include "sources/source.h"

#define TRIB_REPLAY_BATCH 1000

/*
 * Text for a column of dead_letters: bytes that are not valid in the database encoding
 * (an error quoting a broken payload, a topic name) become \xNN, so the table always
 * dumps and restores.
 */
static Datum
TribValidText(const char *text)
{
	int			encoding = GetDatabaseEncoding();
	int			len = strlen(text);
	StringInfoData buf;

	if (pg_verify_mbstr(encoding, text, len, true))
		return CStringGetTextDatum(text);
	initStringInfo(&buf);
	while (len > 0)
	{
		int			l = pg_encoding_verifymbchar(encoding, text, len);

		if (l > 0)
			appendBinaryStringInfo(&buf, text, l);
		else
		{
			appendStringInfo(&buf, "\\x%02x", (unsigned char) text[0]);
			l = 1;
		}
		text += l;
		len -= l;
	}
	return CStringGetTextDatum(buf.data);
}

#define TRIB_DEAD_LETTER_NARGS 11

/* The one-row INSERT's parameter types; a group's are arrays of these after the stream ($1). */
static const Oid TribDeadLetterTypes[TRIB_DEAD_LETTER_NARGS] = {TEXTOID, TEXTOID, TEXTOID,
BYTEAOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, BYTEAOID, INT8OID, TEXTOID};

/*
 * Plan a dead-letter INSERT once per batch as a generic plan: a custom or one-shot plan
 * would fold the payload parameter into a constant, copying it.
 */
static SPIPlanPtr
TribDeadLetterPlan(const char *sql, Oid *types)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, TRIB_DEAD_LETTER_NARGS, types,
										  CURSOR_OPT_GENERIC_PLAN);

	if (plan == NULL)
		elog(ERROR, "tributary: could not prepare the dead-letter insert: %s",
			 SPI_result_code_string(SPI_result));
	return plan;
}

/* The INSERT of one dead letter (a catalog still at 0.2.0 has integer positions). */
static SPIPlanPtr
TribDeadLetterPrepare(void)
{
	return TribDeadLetterPlan(TribCatalogHasTextPositions() ?
							  "INSERT INTO tributary.dead_letters "
							  "(stream, source_partition, source_position, payload, error, sqlstate, "
							  " detail, source_stream, message_key, message_time, headers) "
							  "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
							  "        pg_catalog.to_timestamp($10 / 1000.0), $11::pg_catalog.jsonb)" :
							  "INSERT INTO tributary.dead_letters "
							  "(stream, partition, source_offset, payload, error, sqlstate, detail, topic, "
							  " message_key, message_time, headers) "
							  "VALUES ($1, $2::pg_catalog.int4, $3::pg_catalog.int8, $4, $5, $6, $7, $8, $9, "
							  "        pg_catalog.to_timestamp($10 / 1000.0), $11::pg_catalog.jsonb)",
							  (Oid *) TribDeadLetterTypes);
}

/*
 * A dead letter's values after the stream's name, in the INSERTs' order ($2 .. $11) into
 * values[1..] and nulls[1..]; a payload that already is a varlena is not copied.
 */
static void
TribDeadLetterValues(TribMessage *msg, TribMessageResult *res, Datum *values, bool *nulls)
{
	char	   *partition = TribMessagePartitionText(msg);
	char	   *position = TribMessagePositionText(msg);
	const char *headers;

	nulls[1] = partition == NULL;
	values[1] = partition ? TribValidText(partition) : (Datum) 0;
	nulls[2] = position == NULL;
	values[2] = position ? TribValidText(position) : (Datum) 0;
	nulls[3] = false;
	if (msg->varlena != NULL)
		values[3] = PointerGetDatum(msg->varlena);
	else
	{
		int			len;
		const char *json = TribMessageJson(msg, &len);	/* data, or made from pairs */

		values[3] = PointerGetDatum(TribBytea(json, len));
	}
	nulls[4] = false;
	values[4] = TribValidText(res->error);
	nulls[5] = false;
	values[5] = CStringGetTextDatum(unpack_sql_state(res->sqlerrcode));
	nulls[6] = res->detail == NULL;
	values[6] = res->detail ? TribValidText(res->detail) : (Datum) 0;
	nulls[7] = msg->topic == NULL;
	values[7] = msg->topic ? TribValidText(msg->topic) : (Datum) 0;
	nulls[8] = msg->key == NULL;
	values[8] = msg->key ? PointerGetDatum(TribBytea(msg->key, msg->key_len)) : (Datum) 0;
	nulls[9] = msg->timestamp_ms < 0;
	values[9] = Int64GetDatum(msg->timestamp_ms);
	headers = TribMessageHeaders(msg);
	nulls[10] = headers == NULL;
	values[10] = headers ? TribValidText(headers) : (Datum) 0;
}

/* Store one dead letter. */
static void
TribDeadLetterInsert(SPIPlanPtr plan, StreamDef *def, TribMessage *msg, TribMessageResult *res)
{
	Datum		values[TRIB_DEAD_LETTER_NARGS];
	bool		isnull[TRIB_DEAD_LETTER_NARGS];
	char		nulls[TRIB_DEAD_LETTER_NARGS];

	values[0] = CStringGetTextDatum(def->name);
	isnull[0] = false;
	TribDeadLetterValues(msg, res, values, isnull);
	for (int c = 0; c < TRIB_DEAD_LETTER_NARGS; c++)
		nulls[c] = isnull[c] ? 'n' : ' ';
	if (SPI_execute_plan(plan, values, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "tributary: could not write a dead letter for stream \"%s\"", def->name);
	if (msg->varlena == NULL)
		pfree(DatumGetPointer(values[3]));
}

/*
 * Dead letters go in groups: up to TRIB_DEAD_LETTER_GROUP rows, or TRIB_DEAD_LETTER_GROUP_BYTES
 * of payload, in one INSERT over unnest() of arrays (in message order, so ids follow the
 * batch), so a batch that rejects many messages pays one statement per group rather than
 * one per message. A group of one (a large message alone) takes the one-row INSERT, which
 * does not copy its payload into an array.
 */
#define TRIB_DEAD_LETTER_GROUP 1000
#define TRIB_DEAD_LETTER_GROUP_BYTES (16 * 1024 * 1024)

/* The INSERT of a group of dead letters: $1 the stream, then one array per column. */
static SPIPlanPtr
TribDeadLetterPrepareGroup(void)
{
	Oid			types[TRIB_DEAD_LETTER_NARGS];

	types[0] = TribDeadLetterTypes[0];
	for (int c = 1; c < TRIB_DEAD_LETTER_NARGS; c++)
		types[c] = get_array_type(TribDeadLetterTypes[c]);
	return TribDeadLetterPlan("INSERT INTO tributary.dead_letters "
							  "(stream, source_partition, source_position, payload, error, sqlstate, "
							  " detail, source_stream, message_key, message_time, headers) "
							  "SELECT $1, u.p, u.q, u.pl, u.e, u.s, u.d, u.ss, u.k, "
							  "       pg_catalog.to_timestamp(u.t / 1000.0), u.h::pg_catalog.jsonb "
							  "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), "
							  "     pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
							  "     pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
							  "     pg_catalog.unnest($10), pg_catalog.unnest($11)) "
							  "     WITH ORDINALITY AS u(p, q, pl, e, s, d, ss, k, t, h, n) "
							  "ORDER BY u.n",
							  types);
}

/* One column of a group as an array of the given element type. */
static Datum
TribDeadLetterArray(Datum *elems, bool *nulls, int n, Oid elemtype)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array(elems, nulls, 1, dims, lbs, elemtype, typlen,
											  typbyval, typalign));
}

/* Store the dead letters of msgs[idx[0..n-1]] with one INSERT. */
static void
TribDeadLetterInsertGroup(SPIPlanPtr plan, StreamDef *def, TribMessage *msgs,
						  TribMessageResult *results, int *idx, int n)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary dead letters",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	Datum		values[TRIB_DEAD_LETTER_NARGS];
	Datum	   *cols[TRIB_DEAD_LETTER_NARGS];
	bool	   *colnulls[TRIB_DEAD_LETTER_NARGS];

	for (int c = 1; c < TRIB_DEAD_LETTER_NARGS; c++)
	{
		cols[c] = palloc(sizeof(Datum) * n);
		colnulls[c] = palloc(sizeof(bool) * n);
	}
	for (int r = 0; r < n; r++)
	{
		Datum		row[TRIB_DEAD_LETTER_NARGS];
		bool		rownulls[TRIB_DEAD_LETTER_NARGS];

		TribDeadLetterValues(&msgs[idx[r]], &results[idx[r]], row, rownulls);
		for (int c = 1; c < TRIB_DEAD_LETTER_NARGS; c++)
		{
			cols[c][r] = row[c];
			colnulls[c][r] = rownulls[c];
		}
	}
	values[0] = CStringGetTextDatum(def->name);
	for (int c = 1; c < TRIB_DEAD_LETTER_NARGS; c++)
		values[c] = TribDeadLetterArray(cols[c], colnulls[c], n, TribDeadLetterTypes[c]);
	if (SPI_execute_plan(plan, values, NULL, false, 0) != SPI_OK_INSERT || SPI_processed != (uint64) n)
		elog(ERROR, "tributary: could not write %d dead letters for stream \"%s\"", n, def->name);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(cxt);
}

/* Write every TRIB_DEAD message of a batch to tributary.dead_letters, in message order. */
void
TribDeadLettersWrite(StreamDef *def, TribMessage *msgs, TribMessageResult *results, int nmsgs)
{
	TribOwnerContext owner;
	SPIPlanPtr	one = NULL;
	SPIPlanPtr	group = NULL;
	bool		text_positions;
	int		   *idx;
	int			n = 0;
	int64		bytes = 0;

	for (int i = 0; i < nmsgs; i++)
		if (results[i].outcome == TRIB_DEAD)
			n++;
	if (n == 0)
		return;

	TribBecomeExtensionOwner(&owner);
	SPI_connect();
	/* a catalog still at 0.2.0 has integer positions: one row at a time, as then */
	text_positions = TribCatalogHasTextPositions();
	idx = palloc(sizeof(int) * Min(n, TRIB_DEAD_LETTER_GROUP));
	n = 0;
	for (int i = 0; i <= nmsgs; i++)
	{
		bool		dead = i < nmsgs && results[i].outcome == TRIB_DEAD;

		/* flush the group before a message that would overfill it, and at the end */
		if (n > 0 && (i == nmsgs || (dead && (n == TRIB_DEAD_LETTER_GROUP ||
											  bytes + msgs[i].len > TRIB_DEAD_LETTER_GROUP_BYTES))))
		{
			if (n == 1 || !text_positions)
			{
				if (one == NULL)
					one = TribDeadLetterPrepare();
				for (int r = 0; r < n; r++)
					TribDeadLetterInsert(one, def, &msgs[idx[r]], &results[idx[r]]);
			}
			else
			{
				if (group == NULL)
					group = TribDeadLetterPrepareGroup();
				TribDeadLetterInsertGroup(group, def, msgs, results, idx, n);
			}
			n = 0;
			bytes = 0;
		}
		if (dead)
		{
			idx[n++] = i;
			bytes += msgs[i].len;
		}
	}
	if (one != NULL)
		SPI_freeplan(one);
	if (group != NULL)
		SPI_freeplan(group);
	SPI_finish();
	TribRestoreUser(&owner);
}

/*
 * A dead letter's position (text, either NULL) back into its message: the source restores
 * its own numeric form; otherwise it stays text, without a partition number.
 */
static void
TribDeadLetterRestorePosition(StreamDef *def, TribMessage *msg, char *partition, char *position)
{
	msg->partition = -1;
	msg->offset = -1;
	msg->position = NULL;
	if (def->source->restore_position != NULL)
		def->source->restore_position(def, msg, partition, position);
	else
		msg->position = position;
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
	TribSpiExecute(TribCatalogHasTextPositions() ?
						  "SELECT id, source_partition, source_position, payload, source_stream, message_key, "
						  "pg_catalog.round(pg_catalog.date_part('epoch', message_time) * 1000)::pg_catalog.int8, "
						  "headers::pg_catalog.text FROM tributary.dead_letters "
						  "WHERE stream = $1 AND id > $2 ORDER BY id LIMIT " CppAsString2(TRIB_REPLAY_BATCH)
						  " FOR UPDATE" :
						  "SELECT id, partition::pg_catalog.text, source_offset::pg_catalog.text, payload, topic, "
						  "message_key, "
						  "pg_catalog.round(pg_catalog.date_part('epoch', message_time) * 1000)::pg_catalog.int8, "
						  "headers::pg_catalog.text FROM tributary.dead_letters "
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
		old = MemoryContextSwitchTo(cxt);
		payload = DatumGetByteaPCopy(SPI_getbinval(tup, desc, 4, &isnull));
		msgs[i].topic = SPI_getvalue(tup, desc, 5);
		TribDeadLetterRestorePosition(def, &msgs[i], SPI_getvalue(tup, desc, 2),
									  SPI_getvalue(tup, desc, 3));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		if (!isnull)
		{
			bytea	   *key = DatumGetByteaPCopy(d);

			msgs[i].key = VARDATA(key);
			msgs[i].key_len = VARSIZE(key) - VARHDRSZ;
		}
		d = SPI_getbinval(tup, desc, 7, &isnull);
		msgs[i].timestamp_ms = isnull ? -1 : DatumGetInt64(d);
		msgs[i].headers = SPI_getvalue(tup, desc, 8);
		MemoryContextSwitchTo(old);
		msgs[i].varlena = (struct varlena *) payload;
		msgs[i].data = VARDATA(payload);
		msgs[i].len = VARSIZE(payload) - VARHDRSZ;
	}
	SPI_finish();
	TribRestoreUser(&owner);
	return n;
}

/*
 * Replay's settle step, inside the batch's transaction (TribBatchCommit): remove the dead
 * letters that landed; record the new error of those that did not.
 */
static void
TribDeadLettersSettle(void *arg, TribMessage *msgs, TribMessageResult *results, int n)
{
	int64	   *ids = arg;
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
		values[1] = TribValidText(results[i].error);
		values[2] = CStringGetTextDatum(unpack_sql_state(results[i].sqlerrcode));
		values[3] = results[i].detail ? TribValidText(results[i].detail) : (Datum) 0;
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
			TribBatchRequest request = {
				.def = def,
				.msgs = msgs,
				.nmsgs = n,
				.identity = TRIB_BATCH_AS_CALLER,
				.write_dead_letters = false,	/* they are dead letters already */
				.count_stats = false,	/* counted once per call, in api.c */
				.settle = TribDeadLettersSettle,
				.settle_arg = ids,
			};

			TribBatchCommit(&request, results, &batch);
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
