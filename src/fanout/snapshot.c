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

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "compat.h"
#include "fanout/fanout.h"
#include "position.h"
#include "stage.h"

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
	ItemPointerData stored_tid; /* where the stored state is, when stored.exists */
	TribSnapChange *winner;		/* NULL: unchanged */
	/* the key's channel: its last notification (DT_NOBEGIN: none), and this batch's */
	TimestampTz notified_at;
	bool		notify_now;
	bool		notify_pending;
} TribSnapKey;

/*
 * Where this process last wrote each key of a stream: a hint that spares reading the key's
 * stored state its descent of snapshots_pkey (and the walk along the key's chain of
 * versions, one per batch that changed it). A hint is only believed when the tuple at its
 * TID is visible to the batch's snapshot and holds the same stream and key: then it is the
 * key's one live version. Otherwise (another process wrote the key since, the batch that
 * wrote it rolled back, VACUUM FULL moved the rows, the snapshot was dropped) the read
 * descends the index as without a hint. At most TRIB_SNAP_HINTS_MAX keys, then it starts
 * over.
 */
typedef struct TribSnapHintKey
{
	int32		stream;
	const char *key;			/* copied into hint_cxt */
} TribSnapHintKey;

typedef struct TribSnapHint
{
	TribSnapHintKey id;
	ItemPointerData tid;
} TribSnapHint;

#define TRIB_SNAP_HINTS_MAX 100000

static HTAB *snap_hints = NULL;
static MemoryContext hint_cxt = NULL;

static uint32
TribSnapHintHash(const void *key, Size keysize)
{
	const TribSnapHintKey *k = key;

	return hash_combine(hash_bytes_uint32((uint32) k->stream),
						hash_bytes((const unsigned char *) k->key, (int) strlen(k->key)));
}

static int
TribSnapHintMatch(const void *a, const void *b, Size keysize)
{
	const TribSnapHintKey *x = a;
	const TribSnapHintKey *y = b;

	return x->stream != y->stream || strcmp(x->key, y->key) != 0;
}

/* Forget every hint. */
static void
TribSnapHintsReset(void)
{
	if (hint_cxt != NULL)
		MemoryContextReset(hint_cxt);
	snap_hints = NULL;
}

/* The TID this process last wrote key of stream at, or NULL. */
static ItemPointer
TribSnapHintGet(int32 stream, const char *key)
{
	TribSnapHintKey id = {stream, key};
	TribSnapHint *h;

	if (snap_hints == NULL)
		return NULL;
	h = hash_search(snap_hints, &id, HASH_FIND, NULL);
	return h != NULL ? &h->tid : NULL;
}

static void
TribSnapHintSet(int32 stream, const char *key, ItemPointer tid)
{
	TribSnapHintKey id = {stream, key};
	TribSnapHint *h;
	bool		found;

	if (hint_cxt == NULL)
		hint_cxt = AllocSetContextCreate(TopMemoryContext, "tributary snapshot hints",
										 ALLOCSET_DEFAULT_SIZES);
	if (snap_hints != NULL && hash_get_num_entries(snap_hints) >= TRIB_SNAP_HINTS_MAX)
		TribSnapHintsReset();
	if (snap_hints == NULL)
	{
		HASHCTL		ctl = {0};

		ctl.keysize = sizeof(TribSnapHintKey);
		ctl.entrysize = sizeof(TribSnapHint);
		ctl.hash = TribSnapHintHash;
		ctl.match = TribSnapHintMatch;
		ctl.hcxt = hint_cxt;
		snap_hints = hash_create("tributary snapshot hints", 1024, &ctl,
								 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	}
	h = hash_search(snap_hints, &id, HASH_ENTER, &found);
	if (!found)
		h->id.key = MemoryContextStrdup(hint_cxt, key);
	h->tid = *tid;
}

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
	TribSnapHintsReset();
}

/* Run one of this file's statements (SPI connected, as the extension's owner). */
static void
TribSnapSpi(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			rc = TribSpiExecute(sql, nargs, types, values, nulls, false, 0);

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

	TribSnapSpi("SELECT s.id, c.\"order\" OPERATOR(pg_catalog.=) 'event_time', c.last_seq, "
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
	TribSnapSpi("UPDATE tributary.snapshot_config SET last_seq = $2, notified_at = $3, skipped = $4, "
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
	if (def->key_column == NULL)
		return false;
	if (applies_lxid == MyProc->lxid && applies_stream == def->id)
		return applies_answer;
	applies_answer = TribSettingsHaveStream("snapshot_config", def->name);
	applies_lxid = MyProc->lxid;
	applies_stream = def->id;
	return applies_answer;
}

/*
 * The source partition of a message as "topic/partition", or NULL when it has none; made
 * once per run of messages from one partition (*last keeps the previous message's).
 */
static inline const char *
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
	/* every field is set below: a batch of many rows would otherwise zero megabytes */
	TribSnapChange *changes = palloc(sizeof(TribSnapChange) * Max(batch->nmsgs + batch->nrows, 1));
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
			c->state.has_event_time = false;
			c->state.event_time = 0;
			c->state.part = TribSnapPart(msg, &last, &last_part);
			c->state.pos = msg->offset;
			c->entry = NULL;
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
			c->state.deleted = false;
			c->state.has_event_time = row->has_event_time;
			c->state.event_time = row->event_time;
			c->state.part = TribSnapPart(msg, &last, &last_part);
			c->state.pos = msg->offset;
			c->entry = NULL;
		}
	}
	*nchanges = n;
	return changes;
}

/* tributary.snapshots, open for the stage's read and write. */
typedef struct TribSnapTable
{
	Relation	rel;
	/* its columns' attribute numbers */
	AttrNumber	stream, key, seq, record, updated_at, event_time, source_part, source_pos,
				row_table, row_tid, row_xmin, notified_at, notify_pending;
} TribSnapTable;

static void
TribSnapTableOpen(TribSnapTable *t, LOCKMODE mode)
{
	Oid			relid = get_relname_relid("snapshots", get_namespace_oid(TRIBUTARY_SCHEMA, false));

	t->rel = table_open(relid, mode);
	t->stream = get_attnum(relid, "stream");
	t->key = get_attnum(relid, "key");
	t->seq = get_attnum(relid, "seq");
	t->record = get_attnum(relid, "record");
	t->updated_at = get_attnum(relid, "updated_at");
	t->event_time = get_attnum(relid, "event_time");
	t->source_part = get_attnum(relid, "source_part");
	t->source_pos = get_attnum(relid, "source_pos");
	t->row_table = get_attnum(relid, "row_table");
	t->row_tid = get_attnum(relid, "row_tid");
	t->row_xmin = get_attnum(relid, "row_xmin");
	t->notified_at = get_attnum(relid, "notified_at");
	t->notify_pending = get_attnum(relid, "notify_pending");
}

/* Whether a text datum holds exactly the string str. */
static inline bool
TribSnapTextIs(Datum d, const char *str)
{
	text	   *t = DatumGetTextPP(d);
	Size		len = strlen(str);

	return VARSIZE_ANY_EXHDR(t) == len && memcmp(VARDATA_ANY(t), str, len) == 0;
}

/*
 * Read key's stored row into slot through this process's hint (TribSnapHintGet), under the
 * active snapshot; false when there is no hint or it does not hold (then the index does).
 * nblocks: the table's length, so that a hint past its end (VACUUM truncated it) is not read.
 */
static bool
TribSnapFetchHinted(TribSnapTable *t, TribSnapshotConfig *cfg, const char *key,
					BlockNumber nblocks, TupleTableSlot *slot)
{
	ItemPointer tid = TribSnapHintGet(cfg->stream_id, key);
	ItemPointerData at;
	Buffer		buf;
	bool		found;
	bool		isnull;
	Datum		d;

	if (tid == NULL || ItemPointerGetBlockNumber(tid) >= nblocks)
		return false;
	at = *tid;
	/*
	 * prune the page first, as a fetch through the index would: without it the versions
	 * every batch leaves fill the page, and updates stop being HOT
	 */
	buf = ReadBuffer(t->rel, ItemPointerGetBlockNumber(&at));
	heap_page_prune_opt(t->rel, buf);
	found = table_tuple_fetch_row_version(t->rel, &at, GetActiveSnapshot(), slot);
	ReleaseBuffer(buf);
	if (!found)
		return false;
	d = slot_getattr(slot, t->stream, &isnull);
	if (!isnull && TribSnapTextIs(d, cfg->stream))
	{
		d = slot_getattr(slot, t->key, &isnull);
		if (!isnull && TribSnapTextIs(d, key))
			return true;
	}
	ExecClearTuple(slot);
	return false;
}

/*
 * The stored state of every key in keys (step 3), into their entries: one descent of
 * tributary.snapshots' primary key (stream, key) per key, under the statement snapshot an
 * SQL statement would use here (a new one in READ COMMITTED, so after the seq lock it sees
 * every batch committed before; our own earlier batches of this transaction too). Not an
 * SQL statement: its generic plan read every row of the stream and compared each with the
 * batch's whole key array once the table's statistics made "key = ANY ($2)" look
 * unselective (a worker with 1000 keys spent 40 % of its time there).
 */
static void
TribSnapReadStored(TribSnapshotConfig *cfg, HTAB *keys)
{
	TribSnapTable t;
	Relation	idx;
	TupleTableSlot *slot;
	Datum		stream = CStringGetTextDatum(cfg->stream);
	IndexScanDesc scan;
	ScanKeyData sk[2];
	HASH_SEQ_STATUS hs;
	TribSnapKey *k;

	BlockNumber nblocks;

	TribSnapTableOpen(&t, AccessShareLock);
	idx = index_open(TribPrimaryKeyIndex(t.rel), AccessShareLock);
	slot = table_slot_create(t.rel, NULL);
	CommandCounterIncrement();
	PushCopiedSnapshot(GetTransactionSnapshot());
	UpdateActiveSnapshotCommandId();
	scan = index_beginscan(t.rel, idx, GetActiveSnapshot(), 2, 0);
	nblocks = RelationGetNumberOfBlocks(t.rel);
	hash_seq_init(&hs, keys);
	while ((k = hash_seq_search(&hs)) != NULL)
	{
		bool		isnull;
		Datum		d;

		if (!TribSnapFetchHinted(&t, cfg, k->key, nblocks, slot))
		{
			ScanKeyEntryInitialize(&sk[0], 0, 1, BTEqualStrategyNumber, InvalidOid,
								   idx->rd_indcollation[0], F_TEXTEQ, stream);
			ScanKeyEntryInitialize(&sk[1], 0, 2, BTEqualStrategyNumber, InvalidOid,
								   idx->rd_indcollation[1], F_TEXTEQ, CStringGetTextDatum(k->key));
			index_rescan(scan, sk, 2, NULL, 0);
			if (!index_getnext_slot(scan, ForwardScanDirection, slot))
				continue;
		}
		k->stored.exists = true;
		k->stored_tid = slot->tts_tid;
		(void) slot_getattr(slot, t.record, &isnull);
		k->stored.deleted = isnull;
		d = slot_getattr(slot, t.event_time, &isnull);
		k->stored.has_event_time = !isnull;
		k->stored.event_time = isnull ? 0 : DatumGetTimestampTz(d);
		d = slot_getattr(slot, t.source_part, &isnull);
		k->stored.part = isnull ? NULL : TextDatumGetCString(d);
		d = slot_getattr(slot, t.source_pos, &isnull);
		k->stored.pos = isnull ? -1 : DatumGetInt64(d);
		if (isnull)
			k->stored.part = NULL;
		d = slot_getattr(slot, t.notified_at, &isnull);
		k->notified_at = isnull ? DT_NOBEGIN : DatumGetTimestampTz(d);
		k->state = k->stored;
		ExecClearTuple(slot);
	}
	index_endscan(scan);
	PopActiveSnapshot();
	ExecDropSingleTupleTableSlot(slot);
	index_close(idx, AccessShareLock);
	table_close(t.rel, AccessShareLock);
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
	bool		pushed;

	fmgr_info(F_TO_JSONB, &flinfo);
	expr = makeFuncExpr(F_TO_JSONB, JSONBOID,
						list_make1(makeNullConst(batch->desc->tdtypeid, -1, InvalidOid)),
						InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fmgr_info_set_expr((Node *) expr, &flinfo);
	/* a row fetched again holds TOAST pointers: reading them needs a snapshot */
	pushed = !ActiveSnapshotSet();
	if (pushed)
		PushActiveSnapshot(GetTransactionSnapshot());
	TribBecomeTableOwner(batch->def, &table_owner);
	for (int i = 0; i < nchanged; i++)
	{
		const TribStageRow *row = changed[i]->winner->row;

		if (row != NULL)
			records[i] = FunctionCall1(&flinfo, heap_copy_tuple_as_datum(TribStageRowTuple(batch, row),
																		  batch->desc));
	}
	TribRestoreUser(&table_owner);
	if (pushed)
		PopActiveSnapshot();
	return records;
}

/*
 * Write the changed keys into tributary.snapshots (step 5): an update of the stored row
 * each key's read found (TribSnapReadStored kept its TID), an insert for a new key, with
 * the table's index entries as the executor makes them (none after a HOT update). The
 * heap routines, not INSERT ... ON CONFLICT: under the seq lock the read already knows
 * which keys exist, so the statement's speculative check (one more descent per key,
 * walking the key's chain of versions) and its per-statement set-up bought nothing; it
 * was half of a worker's time with 50 keys a batch. The foreign key to snapshot_config
 * holds without its trigger: the stream's config row is there (it was read under the
 * seq lock, which drop_snapshot takes before deleting it).
 */
static void
TribSnapWrite(TribSnapshotConfig *cfg, TribSnapKey **changed, int nchanged, Datum *records,
			  int64 first_seq, TimestampTz now)
{
	TribSnapTable t;
	TupleDesc	desc;
	EState	   *estate = CreateExecutorState();
	ResultRelInfo *rri = makeNode(ResultRelInfo);
	TupleTableSlot *slot;
	Datum	   *values;
	bool	   *nulls;
	Datum		stream = CStringGetTextDatum(cfg->stream);
	CommandId	cid = GetCurrentCommandId(true);

	TribSnapTableOpen(&t, RowExclusiveLock);
	desc = RelationGetDescr(t.rel);
	InitResultRelInfo(rri, t.rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	slot = MakeSingleTupleTableSlot(desc, &TTSOpsHeapTuple);
	values = palloc(sizeof(Datum) * desc->natts);
	nulls = palloc(sizeof(bool) * desc->natts);

	for (int i = 0; i < nchanged; i++)
	{
		TribSnapKey *k = changed[i];
		TribSnapChange *c = k->winner;
		HeapTuple	tup;
		bool		indexes;
#if PG_VERSION_NUM >= 160000
		TU_UpdateIndexes update_indexes = TU_All;
#endif

		memset(nulls, true, sizeof(bool) * desc->natts);
#define TRIB_SET(att, v) (values[(att) - 1] = (v), nulls[(att) - 1] = false)
		TRIB_SET(t.stream, stream);
		TRIB_SET(t.key, CStringGetTextDatum(c->key));
		TRIB_SET(t.seq, Int64GetDatum(first_seq + i));
		if (c->row != NULL)
		{
			ItemPointer tid = palloc(sizeof(ItemPointerData));

			*tid = c->row->tid;
			TRIB_SET(t.record, records[i]);
			TRIB_SET(t.row_table, ObjectIdGetDatum(c->row->tableoid));
			TRIB_SET(t.row_tid, PointerGetDatum(tid));
			TRIB_SET(t.row_xmin, TransactionIdGetDatum(c->row->xmin));
		}
		TRIB_SET(t.updated_at, TimestampTzGetDatum(now));
		if (c->state.has_event_time)
			TRIB_SET(t.event_time, TimestampTzGetDatum(c->state.event_time));
		if (c->state.part != NULL)
		{
			TRIB_SET(t.source_part, CStringGetTextDatum(c->state.part));
			TRIB_SET(t.source_pos, Int64GetDatum(c->state.pos));
		}
		if (k->notified_at != DT_NOBEGIN)
			TRIB_SET(t.notified_at, TimestampTzGetDatum(k->notified_at));
		TRIB_SET(t.notify_pending, BoolGetDatum(k->notify_pending));
#undef TRIB_SET
		tup = heap_form_tuple(desc, values, nulls);
		if (k->stored.exists)
		{
			TM_FailureData tmfd;
			LockTupleMode lockmode;
			TM_Result	res;
#if PG_VERSION_NUM >= 160000
			res = heap_update(t.rel, &k->stored_tid, tup, cid, InvalidSnapshot, true, &tmfd,
							  &lockmode, &update_indexes);
			/* the table has no summarizing index: TU_Summarizing does not occur */
			indexes = update_indexes != TU_None;
#else
			res = heap_update(t.rel, &k->stored_tid, tup, cid, InvalidSnapshot, true, &tmfd,
							  &lockmode);
			indexes = !HeapTupleIsHeapOnly(tup);
#endif
			if (res != TM_Ok)
				ereport(ERROR,
						(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
						 errmsg("could not serialize access due to concurrent update of the snapshot of key \"%s\" of stream \"%s\"",
								c->key, cfg->stream),
						 errdetail("Its row in tributary.snapshots was changed outside the stream's batches."),
						 errhint("Retry the batch; change tributary.snapshots only through tributary's functions.")));
		}
		else
		{
			heap_insert(t.rel, tup, cid, 0, NULL);
			indexes = true;
		}
		if (indexes)
		{
			List	   *recheck;

			/*
			 * as for an insert: with no range table the executor cannot tell which
			 * columns an update changed (its hint for bottom-up index deletion)
			 */
			ExecStoreHeapTuple(tup, slot, false);
			recheck = TribExecInsertIndexTuples(rri, slot, estate);
			list_free(recheck);
			ExecClearTuple(slot);
		}
		TribSnapHintSet(cfg->stream_id, c->key, &tup->t_self);
		heap_freetuple(tup);
		ResetPerTupleExprContext(estate);
	}
	ExecDropSingleTupleTableSlot(slot);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(t.rel, NoLock);
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
	ctl.hash = TribStringPtrHash;
	ctl.match = TribStringPtrMatch;
	ctl.hcxt = cxt;
	/* sized for a batch of few keys (it grows): its buckets are walked twice a batch */
	keys = hash_create("tributary snapshot keys", Min(Max(nchanges, 16), 1024), &ctl,
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
	TribSnapReadStored(cfg, keys);

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
	/*
	 * the stream's progress first: in REPEATABLE READ, a batch of the stream committed
	 * after this transaction's snapshot updated the same config row, so this fails with
	 * the serialization error before any key is written over a state it did not see
	 */
	cfg->last_seq += nchanged;
	TribSnapshotStore(cfg);
	TribSnapWrite(cfg, changed, nchanged, records, cfg->last_seq - nchanged + 1, batch->arrived);
	SPI_finish();
	TribRestoreUser(&owner);
}

static const TribStageRoutine TribSnapshotStage = {
	.name = "snapshot",
	.applies = TribSnapshotApplies,
	.process = TribSnapshotProcess,
	.takes_tombstones = true,
	/* only the rows that win are read whole (TribSnapRecords) */
	.fetches_tuples = true,
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
