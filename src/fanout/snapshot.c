/*
 * snapshot.c
 *		The snapshot stage: the latest record per key of a stream (tributary.set_snapshot),
 *		kept in tributary.snapshots in each batch's transaction, with a seq per change.
 *
 * Per batch, after its rows are in:
 *	1. the changes: each landed row with a key (the stream's key column, as text) is an
 *	   upsert of its key; each tombstone the batch path handed over (a message key without
 *	   a payload: TRIB_TOMBSTONE) is a delete of the message key;
 *	2. the stream's seq lock (an advisory-style lock per stream, ExclusiveLock, held until
 *	   the transaction ends): batches of one stream take it one after the other, so the
 *	   stream's last seq read under it is the last one committed, and seqs follow commit
 *	   order with no gap and no reuse (a batch that rolls back gave its seqs to no one);
 *	3. the stored state of the batch's keys, then per key, in message order, each change
 *	   that wins over the state so far becomes the state: in 'source' order every change
 *	   wins except one older, by source position, than a state from the same partition
 *	   (a replayed dead letter); in 'event_time' order an upsert whose event time is older
 *	   than the state's loses (a missing event time is the oldest), a delete always wins;
 *	4. the keys whose state changed, in the order of the message that changed them last,
 *	   take the next seqs (coalescing: one seq, one row and one notification per key per
 *	   batch); a delete of a key that was not there changes nothing;
 *	5. their records as they landed, as JSON (to_jsonb of the row, run as the target's
 *	   owner inside a security-restricted operation, as the insert ran), are upserted
 *	   into tributary.snapshots (a deleted key keeps its row, record null), the stream's
 *	   last seq is stored, and the fan-out queues its notifications (notify.c), which
 *	   PostgreSQL sends when the transaction commits.
 *
 * Everything here reads and writes tributary's own tables as the extension's owner.
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "catalog.h"
#include "fanout/fanout.h"
#include "position.h"
#include "stage.h"

/* This file's statements, planned once per process (TribSnapSpi). */
static SPIPlanPtr plan_config = NULL;
static SPIPlanPtr plan_store = NULL;
static SPIPlanPtr plan_applies = NULL;
static SPIPlanPtr plan_stored = NULL;
static SPIPlanPtr plan_write = NULL;

/* What is known of a key: stored, or a change of the batch. */
typedef struct TribSnapState
{
	bool		exists;
	bool		deleted;
	bool		has_event_time;
	TimestampTz event_time;
	const char *part;			/* source partition, NULL when none */
	int64		pos;			/* source position within it */
} TribSnapState;

/* One change of the batch. */
typedef struct TribSnapChange
{
	const char *key;
	int			msg;			/* its message */
	const TribStageRow *row;	/* an upsert's row; NULL for a delete */
	TribSnapState state;
	struct TribSnapKey *entry;	/* its key's entry (TribSnapshotProcess) */
} TribSnapChange;

/* A key of the batch: its state so far and the change that made it. */
typedef struct TribSnapKey
{
	const char *key;			/* hash key: a pointer to the string */
	TribSnapState state;
	TribSnapState stored;
	TribSnapChange *winner;		/* NULL: unchanged */
	/* the key's channel: its last notification (DT_NOBEGIN: none), and this batch's */
	TimestampTz notified_at;
	bool		notify_now;
	bool		notify_pending;
} TribSnapKey;

/* ---------------------------------------------------------------------------------------
 * Settings and the seq lock
 * ---------------------------------------------------------------------------------------
 */

/* Whether this database's catalog has snapshots (not before ALTER EXTENSION UPDATE). */
bool
TribSnapshotCatalogPresent(void)
{
	Oid			nsp = get_namespace_oid(TRIBUTARY_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("snapshot_config", nsp));
}

/* Whether the stream has a snapshot, remembered for the rest of the transaction. */
static LocalTransactionId applies_lxid = InvalidLocalTransactionId;
static int32 applies_stream = -1;
static bool applies_answer = false;

/* Forget the remembered answer (set_snapshot, drop_snapshot). */
void
TribSnapshotForget(void)
{
	applies_lxid = InvalidLocalTransactionId;
}

/*
 * Run one of this file's statements (SPI connected, as the extension's owner), planned once
 * per process: *plan caches it (PostgreSQL re-plans a kept plan when the tables change).
 */
static void
TribSnapSpi(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
			const char *nulls, int expect)
{
	int			rc;

	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL)
			elog(ERROR, "tributary snapshot: could not prepare (%s): %s",
				 SPI_result_code_string(SPI_result), sql);
		if (SPI_keepplan(p) != 0)
			elog(ERROR, "tributary snapshot: could not keep the plan of: %s", sql);
		*plan = p;
	}
	rc = SPI_execute_plan(*plan, values, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "tributary snapshot: statement failed (%s): %s", SPI_result_code_string(rc), sql);
}

/*
 * The stream's snapshot settings and progress, or NULL (SPI connected, as the extension's
 * owner), in the caller's memory context.
 */
TribSnapshotConfig *
TribSnapshotConfigLoad(const char *stream)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(stream)};
	TribSnapshotConfig *cfg;
	HeapTuple	tup;
	TupleDesc	desc;
	bool		isnull;

	TribSnapSpi(&plan_config, "SELECT s.id, c.\"order\" OPERATOR(pg_catalog.=) 'event_time', c.last_seq, "
				"c.channels IS NOT NULL, 'stream' OPERATOR(pg_catalog.=) ANY (c.channels), "
				"'key' OPERATOR(pg_catalog.=) ANY (c.channels), c.payload OPERATOR(pg_catalog.=) 'keys', "
				"(pg_catalog.date_part('epoch', c.heartbeat) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8, "
				"c.notified_at, c.skipped, c.resync_pending, "
				"(pg_catalog.date_part('epoch', c.min_interval) OPERATOR(pg_catalog.*) 1000000)::pg_catalog.int8 "
				"FROM tributary.snapshot_config c JOIN tributary.stream_catalog s ON s.name OPERATOR(pg_catalog.=) c.stream "
				"WHERE c.stream OPERATOR(pg_catalog.=) $1",
				1, types, values, NULL, SPI_OK_SELECT);
	if (SPI_processed == 0)
		return NULL;
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	/* in the memory of the caller of SPI_connect */
	cfg = SPI_palloc(sizeof(TribSnapshotConfig));
	memset(cfg, 0, sizeof(*cfg));
	cfg->stream = SPI_palloc(strlen(stream) + 1);
	strcpy(cfg->stream, stream);
	cfg->stream_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	cfg->event_order = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
	cfg->last_seq = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	cfg->fanout = DatumGetBool(SPI_getbinval(tup, desc, 4, &isnull));
	if (cfg->fanout)
	{
		cfg->channel_stream = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull));
		cfg->channel_key = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		cfg->payload_keys = DatumGetBool(SPI_getbinval(tup, desc, 7, &isnull));
		cfg->heartbeat_us = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		if (isnull)
			cfg->heartbeat_us = 0;
	}
	cfg->notified_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 9, &isnull));
	if (isnull)
		cfg->notified_at = DT_NOBEGIN;
	cfg->skipped = DatumGetInt64(SPI_getbinval(tup, desc, 10, &isnull));
	cfg->resync_pending = DatumGetBool(SPI_getbinval(tup, desc, 11, &isnull));
	if (cfg->fanout)
	{
		cfg->min_interval_us = DatumGetInt64(SPI_getbinval(tup, desc, 12, &isnull));
		if (isnull)
			cfg->min_interval_us = 0;
	}
	return cfg;
}

/* Store the stream's progress: last seq, last notification, skipped, resync owed. */
void
TribSnapshotStore(TribSnapshotConfig *cfg)
{
	Oid			types[5] = {TEXTOID, INT8OID, TIMESTAMPTZOID, INT8OID, BOOLOID};
	Datum		values[5];
	char		nulls[5] = "     ";

	values[0] = CStringGetTextDatum(cfg->stream);
	values[1] = Int64GetDatum(cfg->last_seq);
	values[2] = TimestampTzGetDatum(cfg->notified_at);
	nulls[2] = cfg->notified_at == DT_NOBEGIN ? 'n' : ' ';
	values[3] = Int64GetDatum(cfg->skipped);
	values[4] = BoolGetDatum(cfg->resync_pending);
	TribSnapSpi(&plan_store, "UPDATE tributary.snapshot_config SET last_seq = $2, notified_at = $3, skipped = $4, "
				"resync_pending = $5 WHERE stream OPERATOR(pg_catalog.=) $1",
				5, types, values, nulls, SPI_OK_UPDATE);
}

/*
 * Take the stream's seq lock (ExclusiveLock, until the transaction ends); false when !wait
 * and another transaction holds it.
 */
bool
TribSnapshotLock(int32 stream_id, bool wait)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, (uint32) stream_id, 0, TRIB_SNAPSHOT_LOCK_KIND);
	return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
}

/* ---------------------------------------------------------------------------------------
 * The stage
 * ---------------------------------------------------------------------------------------
 */

static bool
TribSnapshotApplies(StreamDef *def)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	TribOwnerContext owner;

	if (def->key_column == NULL)
		return false;
	if (applies_lxid == MyProc->lxid && applies_stream == def->id)
		return applies_answer;
	if (!TribSnapshotCatalogPresent())
		return false;
	values[0] = CStringGetTextDatum(def->name);
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	TribSnapSpi(&plan_applies, "SELECT 1 FROM tributary.snapshot_config WHERE stream OPERATOR(pg_catalog.=) $1",
				1, types, values, NULL, SPI_OK_SELECT);
	applies_answer = SPI_processed > 0;
	SPI_finish();
	TribRestoreUser(&owner);
	applies_lxid = MyProc->lxid;
	applies_stream = def->id;
	return applies_answer;
}

static uint32
TribSnapKeyHash(const void *key, Size keysize)
{
	const char *s = *(const char *const *) key;

	return hash_bytes((const unsigned char *) s, (int) strlen(s));
}

static int
TribSnapKeyMatch(const void *a, const void *b, Size keysize)
{
	return strcmp(*(const char *const *) a, *(const char *const *) b);
}

/*
 * The source partition of a message as "topic/partition", or NULL when it has none; made
 * once per run of messages from one partition (*last keeps the previous message's).
 */
static const char *
TribSnapPart(const TribMessage *msg, const TribMessage **last, const char **last_part)
{
	if (msg->partition < 0 || msg->offset < 0)
		return NULL;
	if (*last == NULL || (*last)->partition != msg->partition || (*last)->topic != msg->topic)
	{
		*last_part = psprintf("%s/%d", msg->topic ? msg->topic : "", msg->partition);
		*last = msg;
	}
	return *last_part;
}

/* Whether change c replaces state cur (the file header, step 3). */
static bool
TribSnapWins(const TribSnapState *cur, const TribSnapChange *c, bool event_order)
{
	if (!cur->exists)
		return true;
	if (event_order)
	{
		if (c->row == NULL || cur->deleted || !cur->has_event_time)
			return true;
		return c->state.has_event_time && c->state.event_time >= cur->event_time;
	}
	if (c->state.part != NULL && cur->part != NULL && strcmp(c->state.part, cur->part) == 0)
		return c->state.pos >= cur->pos;
	return true;
}

/* The batch's changes, in message order (step 1). */
static TribSnapChange *
TribSnapCollect(const TribStageBatch *batch, int *nchanges)
{
	TribSnapChange *changes = palloc0(sizeof(TribSnapChange) * Max(batch->nmsgs + batch->nrows, 1));
	int			n = 0;
	int			r = 0;
	const TribMessage *last = NULL;
	const char *last_part = NULL;

	for (int i = 0; i < batch->nmsgs; i++)
	{
		const TribMessage *msg = &batch->msgs[i];

		if (batch->results[i].outcome == TRIB_TOMBSTONE)
		{
			TribSnapChange *c;

			if (msg->key == NULL || memchr(msg->key, '\0', msg->key_len) != NULL ||
				!pg_verifymbstr(msg->key, msg->key_len, true))
				continue;		/* no key this database can hold as text */
			c = &changes[n++];
			c->key = pnstrdup(msg->key, msg->key_len);
			c->msg = i;
			c->row = NULL;
			c->state.exists = true;
			c->state.deleted = true;
			c->state.part = TribSnapPart(msg, &last, &last_part);
			c->state.pos = msg->offset;
			continue;
		}
		/* this message's rows (a message may land as no row: a trigger skipped it) */
		for (; r < batch->nrows && batch->rows[r].msg == i; r++)
		{
			const TribStageRow *row = &batch->rows[r];
			TribSnapChange *c;

			if (row->key == NULL)
				continue;		/* a row without a key has no place in a snapshot */
			c = &changes[n++];
			c->key = row->key;
			c->msg = i;
			c->row = row;
			c->state.exists = true;
			c->state.has_event_time = row->has_event_time;
			c->state.event_time = row->event_time;
			c->state.part = TribSnapPart(msg, &last, &last_part);
			c->state.pos = msg->offset;
		}
	}
	*nchanges = n;
	return changes;
}

/* The stored state of every key in keys (step 3), into their entries. */
static void
TribSnapReadStored(TribSnapshotConfig *cfg, HTAB *keys, int nkeys)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(nkeys, 1));
	HASH_SEQ_STATUS hs;
	TribSnapKey *k;
	int			i = 0;
	Oid			types[2] = {TEXTOID, TEXTARRAYOID};
	Datum		values[2];

	hash_seq_init(&hs, keys);
	while ((k = hash_seq_search(&hs)) != NULL)
		elems[i++] = CStringGetTextDatum(k->key);
	values[0] = CStringGetTextDatum(cfg->stream);
	values[1] = PointerGetDatum(construct_array(elems, nkeys, TEXTOID, -1, false, TYPALIGN_INT));
	TribSnapSpi(&plan_stored, "SELECT key, record IS NULL, event_time, source_part, source_pos, notified_at "
				"FROM tributary.snapshots WHERE stream OPERATOR(pg_catalog.=) $1 "
				"AND key OPERATOR(pg_catalog.=) ANY ($2)",
				2, types, values, NULL, SPI_OK_SELECT);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		char	   *key = SPI_getvalue(tup, desc, 1);
		bool		isnull;
		bool		found;
		Datum		d;

		k = hash_search(keys, &key, HASH_FIND, &found);
		if (!found)
			continue;
		k->stored.exists = true;
		k->stored.deleted = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		d = SPI_getbinval(tup, desc, 3, &isnull);
		k->stored.has_event_time = !isnull;
		k->stored.event_time = isnull ? 0 : DatumGetTimestampTz(d);
		k->stored.part = SPI_getvalue(tup, desc, 4);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		k->stored.pos = isnull ? -1 : DatumGetInt64(d);
		if (isnull)
			k->stored.part = NULL;
		d = SPI_getbinval(tup, desc, 6, &isnull);
		k->notified_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		k->state = k->stored;
	}
}

static int
TribSnapWinnerCmp(const void *a, const void *b)
{
	const TribSnapKey *ka = *(TribSnapKey *const *) a;
	const TribSnapKey *kb = *(TribSnapKey *const *) b;

	return (ka->winner > kb->winner) - (ka->winner < kb->winner);
}

/*
 * The records of the changed keys' rows as JSON (to_jsonb of the row), run as the target's
 * owner inside a security-restricted operation: a type's cast to json is the table's
 * owner's code, as its triggers are.
 */
static Datum *
TribSnapRecords(const TribStageBatch *batch, TribSnapKey **changed, int nchanged)
{
	Datum	   *records = palloc0(sizeof(Datum) * Max(nchanged, 1));
	TribOwnerContext table_owner;
	FmgrInfo	flinfo;
	FuncExpr   *expr;

	fmgr_info(F_TO_JSONB, &flinfo);
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(batch->desc->tdtypeid, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &flinfo);
	TribBecomeTableOwner(batch->def, &table_owner);
	for (int i = 0; i < nchanged; i++)
	{
		const TribStageRow *row = changed[i]->winner->row;

		if (row != NULL)
			records[i] = FunctionCall1(&flinfo, heap_copy_tuple_as_datum(row->tuple, batch->desc));
	}
	TribRestoreUser(&table_owner);
	return records;
}

/* Upsert the changed keys into tributary.snapshots (step 5). */
static void
TribSnapWrite(TribSnapshotConfig *cfg, TribSnapKey **changed, int nchanged, Datum *records,
			  int64 first_seq, TimestampTz now)
{
	Datum	   *keys = palloc(sizeof(Datum) * nchanged);
	Datum	   *seqs = palloc(sizeof(Datum) * nchanged);
	Datum	   *times = palloc(sizeof(Datum) * nchanged);
	Datum	   *parts = palloc(sizeof(Datum) * nchanged);
	Datum	   *poss = palloc(sizeof(Datum) * nchanged);
	Datum	   *tables = palloc(sizeof(Datum) * nchanged);
	Datum	   *tids = palloc(sizeof(Datum) * nchanged);
	Datum	   *xmins = palloc(sizeof(Datum) * nchanged);
	bool	   *recnull = palloc0(sizeof(bool) * nchanged);
	bool	   *timenull = palloc0(sizeof(bool) * nchanged);
	bool	   *partnull = palloc0(sizeof(bool) * nchanged);
	bool	   *rownull = palloc0(sizeof(bool) * nchanged);
	Datum	   *notified = palloc(sizeof(Datum) * nchanged);
	bool	   *notifiednull = palloc0(sizeof(bool) * nchanged);
	Datum	   *pending = palloc(sizeof(Datum) * nchanged);
	int			dims[1] = {nchanged};
	int			lbs[1] = {1};
	Oid			types[13] = {TEXTOID, TIMESTAMPTZOID, TEXTARRAYOID, INT8ARRAYOID, JSONBARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID, INT8ARRAYOID, OIDARRAYOID, TIDARRAYOID, XIDARRAYOID,
	TIMESTAMPTZARRAYOID, BOOLARRAYOID};
	Datum		values[13];

	for (int i = 0; i < nchanged; i++)
	{
		TribSnapChange *c = changed[i]->winner;

		keys[i] = CStringGetTextDatum(c->key);
		seqs[i] = Int64GetDatum(first_seq + i);
		recnull[i] = c->row == NULL;
		timenull[i] = !c->state.has_event_time;
		times[i] = TimestampTzGetDatum(c->state.event_time);
		partnull[i] = c->state.part == NULL;
		parts[i] = partnull[i] ? (Datum) 0 : CStringGetTextDatum(c->state.part);
		poss[i] = Int64GetDatum(c->state.pos);
		rownull[i] = c->row == NULL;
		notifiednull[i] = changed[i]->notified_at == DT_NOBEGIN;
		notified[i] = TimestampTzGetDatum(changed[i]->notified_at);
		pending[i] = BoolGetDatum(changed[i]->notify_pending);
		if (c->row != NULL)
		{
			ItemPointer tid = palloc(sizeof(ItemPointerData));

			*tid = c->row->tid;
			tables[i] = ObjectIdGetDatum(c->row->tableoid);
			tids[i] = PointerGetDatum(tid);
			xmins[i] = TransactionIdGetDatum(c->row->xmin);
		}
	}
	values[0] = CStringGetTextDatum(cfg->stream);
	values[1] = TimestampTzGetDatum(now);
	values[2] = PointerGetDatum(construct_array(keys, nchanged, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(seqs, nchanged, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[4] = PointerGetDatum(construct_md_array(records, recnull, 1, dims, lbs, JSONBOID, -1, false, TYPALIGN_INT));
	values[5] = PointerGetDatum(construct_md_array(times, timenull, 1, dims, lbs, TIMESTAMPTZOID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[6] = PointerGetDatum(construct_md_array(parts, partnull, 1, dims, lbs, TEXTOID, -1, false, TYPALIGN_INT));
	values[7] = PointerGetDatum(construct_md_array(poss, partnull, 1, dims, lbs, INT8OID, 8,
												   FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[8] = PointerGetDatum(construct_md_array(tables, rownull, 1, dims, lbs, OIDOID, 4, true, TYPALIGN_INT));
	values[9] = PointerGetDatum(construct_md_array(tids, rownull, 1, dims, lbs, TIDOID,
												   sizeof(ItemPointerData), false, TYPALIGN_SHORT));
	values[10] = PointerGetDatum(construct_md_array(xmins, rownull, 1, dims, lbs, XIDOID, 4, true, TYPALIGN_INT));
	values[11] = PointerGetDatum(construct_md_array(notified, notifiednull, 1, dims, lbs, TIMESTAMPTZOID, 8,
													FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	values[12] = PointerGetDatum(construct_array(pending, nchanged, BOOLOID, 1, true, TYPALIGN_CHAR));
	TribSnapSpi(&plan_write, "INSERT INTO tributary.snapshots AS s (stream, key, seq, record, updated_at, event_time, "
				"source_part, source_pos, row_table, row_tid, row_xmin, notified_at, notify_pending) "
				"SELECT $1, u.k, u.q, u.r, $2, u.e, u.p, u.o, u.t, u.c, u.x, u.n, u.w "
				"FROM ROWS FROM (pg_catalog.unnest($3), pg_catalog.unnest($4), pg_catalog.unnest($5), "
				"pg_catalog.unnest($6), pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
				"pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12), "
				"pg_catalog.unnest($13)) AS u(k, q, r, e, p, o, t, c, x, n, w) "
				"ON CONFLICT (stream, key) DO UPDATE SET seq = excluded.seq, record = excluded.record, "
				"updated_at = excluded.updated_at, event_time = excluded.event_time, "
				"source_part = excluded.source_part, source_pos = excluded.source_pos, "
				"row_table = excluded.row_table, row_tid = excluded.row_tid, row_xmin = excluded.row_xmin, "
				"notified_at = excluded.notified_at, notify_pending = excluded.notify_pending",
				13, types, values, NULL, SPI_OK_INSERT);
}

/* The stage (the file header). */
static void
TribSnapshotProcess(const TribStageBatch *batch)
{
	TribSnapChange *changes;
	int			nchanges;
	HASHCTL		ctl = {0};
	HTAB	   *keys;
	TribSnapKey **changed;
	int			nchanged = 0;
	int			nkeys;
	Datum	   *records;
	TribSnapshotConfig *cfg;
	TribOwnerContext owner;
	MemoryContext cxt = CurrentMemoryContext;

	changes = TribSnapCollect(batch, &nchanges);
	if (nchanges == 0)
		return;

	/* one batch of the stream at a time from here to its commit; then the latest progress */
	(void) TribSnapshotLock(batch->def->id, true);
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = TribSnapshotConfigLoad(batch->def->name);
	if (cfg == NULL)
	{
		SPI_finish();
		TribRestoreUser(&owner);
		return;
	}

	ctl.keysize = sizeof(char *);
	ctl.entrysize = sizeof(TribSnapKey);
	ctl.hash = TribSnapKeyHash;
	ctl.match = TribSnapKeyMatch;
	ctl.hcxt = cxt;
	keys = hash_create("tributary snapshot keys", Max(nchanges, 16), &ctl,
					   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	for (int i = 0; i < nchanges; i++)
	{
		bool		found;
		TribSnapKey *k = hash_search(keys, &changes[i].key, HASH_ENTER, &found);

		if (!found)
		{
			memset(((char *) k) + sizeof(char *), 0, sizeof(TribSnapKey) - sizeof(char *));
			k->key = changes[i].key;
			k->notified_at = DT_NOBEGIN;
		}
		changes[i].entry = k;
	}
	nkeys = (int) hash_get_num_entries(keys);
	TribSnapReadStored(cfg, keys, nkeys);

	/* fold each key's changes, in message order, over its stored state */
	for (int i = 0; i < nchanges; i++)
	{
		TribSnapChange *c = &changes[i];
		TribSnapKey *k = c->entry;

		if (TribSnapWins(&k->state, c, cfg->event_order))
		{
			k->state = c->state;
			k->winner = c;
		}
	}
	changed = palloc(sizeof(TribSnapKey *) * nkeys);
	{
		HASH_SEQ_STATUS hs;
		TribSnapKey *k;

		hash_seq_init(&hs, keys);
		while ((k = hash_seq_search(&hs)) != NULL)
		{
			if (k->winner == NULL)
				continue;
			/* deleting what is not there changes nothing */
			if (k->winner->row == NULL && (!k->stored.exists || k->stored.deleted))
				continue;
			changed[nchanged++] = k;
		}
	}
	if (nchanged == 0)
	{
		SPI_finish();
		TribRestoreUser(&owner);
		return;
	}
	/* changes pointers increase with message order: the last change of each key first */
	qsort(changed, nchanged, sizeof(TribSnapKey *), TribSnapWinnerCmp);

	/* step 5: records as the table's owner, then back to writing as the extension's owner */
	TribRestoreUser(&owner);
	records = TribSnapRecords(batch, changed, nchanged);
	TribBecomeExtensionOwner(&owner);

	if (cfg->fanout)
	{
		/* a resync owed goes first: it carries the seq before this batch's changes */
		bool		room = TribFanoutQueueHasRoom();
		TimestampTz now = GetCurrentTimestamp();

		if (room && cfg->resync_pending)
			TribFanoutNotice(cfg, "resync");
		for (int i = 0; i < nchanged; i++)
		{
			TribSnapKey *k = changed[i];
			TribSnapChange *c = k->winner;
			char	   *record = NULL;

			if (!room)
			{
				/*
				 * skipped: the stream's channel gets a resync; a key's channel, which hears
				 * no resync, gets the key's state from the launcher once the queue drains
				 */
				cfg->skipped++;
				k->notify_pending = cfg->channel_key;
				continue;
			}
			/* a key's channel hears it at most once per min_interval; the rest waits */
			if (cfg->channel_key)
			{
				k->notify_now = cfg->min_interval_us == 0 || k->notified_at == DT_NOBEGIN ||
					now - k->notified_at >= cfg->min_interval_us;
				k->notify_pending = !k->notify_now;
				if (k->notify_now)
					k->notified_at = now;
			}
			if (c->row != NULL && !cfg->payload_keys)
			{
				Jsonb	   *jb = DatumGetJsonbP(records[i]);

				record = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
			}
			TribFanoutChange(cfg, c->key, cfg->last_seq + 1 + i, c->row == NULL, record,
							 cfg->channel_stream, k->notify_now);
		}
		if (room)
			cfg->notified_at = now;
		else
			cfg->resync_pending = true;
	}
	TribSnapWrite(cfg, changed, nchanged, records, cfg->last_seq + 1, batch->arrived);
	cfg->last_seq += nchanged;
	TribSnapshotStore(cfg);
	SPI_finish();
	TribRestoreUser(&owner);
}

static const TribStageRoutine TribSnapshotStage = {
	.name = "snapshot",
	.applies = TribSnapshotApplies,
	.process = TribSnapshotProcess,
	.takes_tombstones = true,
};

double		tributary_fanout_queue_limit = 0.5;

void
TribSnapshotInit(void)
{
	DefineCustomRealVariable("tributary.fanout_queue_limit",
							 "Notification queue usage past which fan-out skips notifications.",
							 "Past it, a batch's notifications are skipped (counted in stream_stats) and "
							 "clients get one resync when the queue drains, so that a stalled listener "
							 "never fails a batch's commit.",
							 &tributary_fanout_queue_limit,
							 0.5, 0.0, 1.0,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);
	TribRegisterStage(&TribSnapshotStage);
}
