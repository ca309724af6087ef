/*
 * snapshot_sql.c
 *		The SQL functions of snapshots and fan-out: set_snapshot, drop_snapshot, snapshot,
 *		snapshot_seq, set_fanout, drop_fanout, fanout_channel (docs/fanout.md).
 *
 * tributary.snapshot() reads the stored records as the extension's owner, after checking
 * that the caller may SELECT every column of the stream's target. When row-level security
 * applies to the caller on the target, a key is shown only if the caller can see the row
 * it landed as: that row (table, TID and xmin, stored with the record) is looked up in the
 * target as the caller, so the target's own policies decide. A key whose row has since been
 * updated or deleted in the target is then not shown (never a row the caller could not see).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/itemptr.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgrprotos.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/rls.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "fanout/fanout.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(tributary_set_snapshot);
PG_FUNCTION_INFO_V1(tributary_drop_snapshot);
PG_FUNCTION_INFO_V1(tributary_snapshot);
PG_FUNCTION_INFO_V1(tributary_snapshot_seq);
PG_FUNCTION_INFO_V1(tributary_set_fanout);
PG_FUNCTION_INFO_V1(tributary_drop_fanout);
PG_FUNCTION_INFO_V1(tributary_fanout_channel);

static void
TribSnapRequireCatalog(void)
{
	TribRequireCatalogStates();
	if (!TribSnapshotCatalogPresent())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("extension tributary must be updated before this function can run"),
				 errdetail("The library is newer than the extension's SQL objects in this database."),
				 errhint("Run ALTER EXTENSION tributary UPDATE.")));
}

/* The stream's snapshot settings as the extension's owner, or NULL. */
static TribSnapshotConfig *
TribSnapLoad(const char *stream)
{
	TribOwnerContext owner;
	TribSnapshotConfig *cfg;

	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	cfg = TribSnapshotConfigLoad(stream);
	SPI_finish();
	TribRestoreUser(&owner);
	return cfg;
}

static TribSnapshotConfig *
TribSnapRequire(const char *stream)
{
	TribSnapshotConfig *cfg = TribSnapLoad(stream);

	if (cfg == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no snapshot", stream),
				 errhint("Keep one with SELECT tributary.set_snapshot('%s').", stream)));
	return cfg;
}

/* set_snapshot(stream, "order"): keep the latest record per key of the stream. */
Datum
tributary_set_snapshot(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "stream");
	char	   *order = TribArgText(fcinfo, 1, "order");
	StreamDef  *def;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];

	PreventCommandIfReadOnly("tributary.set_snapshot");
	TribSnapRequireCatalog();
	def = TribStreamLoad(name, false, true);
	TribCheckMayManage(def, "set the snapshot of", false);
	if (def->key_column == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no key column", name),
				 errdetail("A snapshot keeps the latest record per key."),
				 errhint("Create the stream with key_column, or set it with tributary.alter_stream.")));
	if (strcmp(order, "source") != 0 && strcmp(order, "event_time") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown snapshot order \"%s\"", order),
				 errhint("Use 'source' (the last message by source order wins) or 'event_time' (an older event never overwrites a newer one).")));
	if (strcmp(order, "event_time") == 0 && def->event_time_column == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" has no event time column", name),
				 errhint("Create the stream with event_time_column, or use order 'source'.")));
	values[0] = CStringGetTextDatum(name);
	values[1] = CStringGetTextDatum(order);
	TribCatalogExecute("INSERT INTO tributary.snapshot_config AS c (stream, \"order\") VALUES ($1, $2) "
					   "ON CONFLICT (stream) DO UPDATE SET \"order\" = excluded.\"order\"",
					   2, types, values, NULL);
	TribSnapshotForget();
	PG_RETURN_VOID();
}

/*
 * What drop_snapshot and drop_fanout (fname; fanout says which) start with: the stream,
 * checked that the caller may manage it, and its settings. NULL when there is nothing to
 * drop and if_exists is true (an error when it is not).
 */
static TribSnapshotConfig *
TribSnapToDrop(FunctionCallInfo fcinfo, const char *fname, bool fanout, StreamDef **defp)
{
	char	   *name = TribArgText(fcinfo, 0, "stream");
	bool		if_exists = !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);
	StreamDef  *def;
	TribSnapshotConfig *cfg;

	PreventCommandIfReadOnly(fname);
	TribSnapRequireCatalog();
	def = TribStreamLoad(name, if_exists, true);
	if (def == NULL)
		return NULL;
	TribCheckMayManage(def, fanout ? "drop the fan-out of" : "drop the snapshot of", false);
	cfg = TribSnapLoad(name);
	if (cfg == NULL || (fanout && !cfg->fanout))
	{
		if (if_exists)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("stream \"%s\" has no %s", name, fanout ? "fan-out" : "snapshot"),
				 errhint("Pass if_exists => true to ignore this.")));
	}
	*defp = def;
	return cfg;
}

/* drop_snapshot(stream, if_exists): forget the stream's snapshot, and its fan-out. */
Datum
tributary_drop_snapshot(PG_FUNCTION_ARGS)
{
	StreamDef  *def;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (TribSnapToDrop(fcinfo, "tributary.drop_snapshot", false, &def) == NULL)
		PG_RETURN_VOID();
	values[0] = CStringGetTextDatum(def->name);
	/* under the seq lock: no batch of the stream is between its snapshot stage and commit */
	(void) TribSnapshotLock(def->id, true);
	TribCatalogExecute("DELETE FROM tributary.snapshot_config WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, types, values, NULL);
	TribSnapshotForget();
	PG_RETURN_VOID();
}

/* A heartbeat or min_interval: positive, without months. */
static void
TribSnapCheckInterval(Interval *iv, const char *what, const char *hint)
{
	if (iv->month != 0 || iv->day < 0 || iv->time < 0 || (iv->day == 0 && iv->time <= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be a positive interval without months or years", what),
				 errhint("%s", hint)));
}

/* set_fanout(stream, channels, payload, min_interval, heartbeat): NOTIFY the snapshot's changes. */
Datum
tributary_set_fanout(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "stream");
	char	   *payload = TribArgText(fcinfo, 2, "payload");
	StreamDef  *def;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	bool		seen_stream = false,
				seen_key = false;
	Oid			types[5] = {TEXTOID, TEXTARRAYOID, TEXTOID, INTERVALOID, INTERVALOID};
	Datum		values[5];
	char		vnulls[5] = "     ";

	PreventCommandIfReadOnly("tributary.set_fanout");
	TribSnapRequireCatalog();
	def = TribStreamLoad(name, false, true);
	TribCheckMayManage(def, "set the fan-out of", false);
	/* its channel, tributary.alerts, is every stream's alerts channel */
	if (strcmp(name, "alerts") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_RESERVED_NAME),
				 errmsg("stream \"alerts\" cannot fan out"),
				 errdetail("Its channel would be tributary.alerts, where the quality alerts of every stream go."),
				 errhint("Fan out a stream of another name (create it with the same target and options).")));
	(void) TribSnapRequire(name);

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("channels must not be null"),
				 errhint("Pass '{stream}', '{key}' or '{stream,key}'; tributary.drop_fanout ends the fan-out.")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
	for (int i = 0; i < n; i++)
	{
		char	   *ch = nulls[i] ? NULL : TextDatumGetCString(elems[i]);
		bool	   *seen = ch == NULL ? NULL : strcmp(ch, "stream") == 0 ? &seen_stream :
			strcmp(ch, "key") == 0 ? &seen_key : NULL;

		if (seen == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown fan-out channel \"%s\"", ch ? ch : "null"),
					 errdetail("'stream' is the channel tributary.<stream>, 'key' one channel per key."),
					 errhint("Pass '{stream}', '{key}' or '{stream,key}'.")));
		if (*seen)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("fan-out channel \"%s\" is named twice", ch)));
		*seen = true;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("channels must name at least one channel"),
				 errhint("Pass '{stream}', '{key}' or '{stream,key}'; tributary.drop_fanout ends the fan-out.")));
	if (strcmp(payload, "full") != 0 && strcmp(payload, "keys") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown fan-out payload \"%s\"", payload),
				 errhint("Use 'full' (the record in the notification) or 'keys' (clients read it with tributary.snapshot, under their own privileges).")));
	if (!PG_ARGISNULL(3))
	{
		TribSnapCheckInterval(PG_GETARG_INTERVAL_P(3), "min_interval",
							  "Pass for example '200 milliseconds', or null to notify every change at once.");
		if (!seen_key)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("min_interval throttles the key channels, and channels has none"),
					 errdetail("The stream's channel is never throttled: its consecutive seqs are how clients see what they missed."),
					 errhint("Add 'key' to channels, or pass min_interval => null.")));
	}
	if (!PG_ARGISNULL(4))
		TribSnapCheckInterval(PG_GETARG_INTERVAL_P(4), "heartbeat",
							  "Pass for example '5 seconds', or null for no heartbeat.");

	values[0] = CStringGetTextDatum(name);
	values[1] = PG_GETARG_DATUM(1);
	values[2] = CStringGetTextDatum(payload);
	values[3] = PG_ARGISNULL(4) ? (Datum) 0 : PG_GETARG_DATUM(4);
	vnulls[3] = PG_ARGISNULL(4) ? 'n' : ' ';
	values[4] = PG_ARGISNULL(3) ? (Datum) 0 : PG_GETARG_DATUM(3);
	vnulls[4] = PG_ARGISNULL(3) ? 'n' : ' ';
	TribCatalogExecute("UPDATE tributary.snapshot_config SET channels = $2, payload = $3, "
					   "min_interval = $5, heartbeat = $4 WHERE stream OPERATOR(pg_catalog.=) $1",
					   5, types, values, vnulls);
	TribWakeLauncherAtCommit();
	PG_RETURN_VOID();
}

/* drop_fanout(stream, if_exists): stop notifying; the snapshot stays. */
Datum
tributary_drop_fanout(PG_FUNCTION_ARGS)
{
	StreamDef  *def;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];

	if (TribSnapToDrop(fcinfo, "tributary.drop_fanout", true, &def) == NULL)
		PG_RETURN_VOID();
	values[0] = CStringGetTextDatum(def->name);
	TribCatalogExecute("UPDATE tributary.snapshot_config SET channels = NULL, payload = NULL, "
					   "min_interval = NULL, heartbeat = NULL, resync_pending = false "
					   "WHERE stream OPERATOR(pg_catalog.=) $1",
					   1, types, values, NULL);
	PG_RETURN_VOID();
}

/* fanout_channel(stream, key): the channel of the stream, or of one of its keys. */
Datum
tributary_fanout_channel(PG_FUNCTION_ARGS)
{
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(TribFanoutChannel(text_to_cstring(PG_GETARG_TEXT_PP(0)),
													   PG_ARGISNULL(1) ? NULL :
													   text_to_cstring(PG_GETARG_TEXT_PP(1)),
													   NULL)));
}

/* snapshot_seq(stream): the stream's newest seq (0 before its first change). */
Datum
tributary_snapshot_seq(PG_FUNCTION_ARGS)
{
	char	   *name = TribArgText(fcinfo, 0, "stream");

	TribSnapRequireCatalog();
	(void) TribStreamLoad(name, false, false);
	PG_RETURN_INT64(TribSnapRequire(name)->last_seq);
}

/* A row a snapshot read found, and where it landed in the target. */
typedef struct TribSnapRow
{
	char	   *key;
	int64		seq;
	Datum		record;
	TimestampTz updated_at;
	bool		has_row;
	Oid			row_table;
	ItemPointerData row_tid;
	TransactionId row_xmin;
	bool		visible;
} TribSnapRow;

/* The landed-row identity the caller can see, as a hash key. */
typedef struct TribSnapRowId
{
	Oid			table;
	ItemPointerData tid;
	TransactionId xmin;
} TribSnapRowId;

/*
 * Under row-level security: mark the rows whose landed row the caller can see in the
 * target, looked up by TID as the caller (the target's policies apply).
 */
static void
TribSnapApplyRls(Oid target, TribSnapRow *rows, int nrows)
{
	Datum	   *tids = palloc(sizeof(Datum) * Max(nrows, 1));
	int			ntids = 0;
	HASHCTL		ctl = {0};
	HTAB	   *seen;
	Oid			types[1] = {TIDARRAYOID};
	Datum		values[1];
	char	   *sql;

	for (int i = 0; i < nrows; i++)
		if (rows[i].has_row)
			tids[ntids++] = PointerGetDatum(&rows[i].row_tid);
	if (ntids == 0)
		return;
	ctl.keysize = sizeof(TribSnapRowId);
	ctl.entrysize = sizeof(TribSnapRowId);
	ctl.hcxt = CurrentMemoryContext;
	seen = hash_create("tributary snapshot rows seen", ntids, &ctl, HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	values[0] = PointerGetDatum(construct_array(tids, ntids, TIDOID, sizeof(ItemPointerData), false,
												TYPALIGN_SHORT));
	sql = psprintf("SELECT tableoid, ctid, xmin FROM %s WHERE ctid OPERATOR(pg_catalog.=) ANY ($1)",
				   quote_qualified_identifier(get_namespace_name(get_rel_namespace(target)),
											  get_rel_name(target)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not read %s", get_rel_name(target));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		TribSnapRowId id;
		bool		isnull;

		memset(&id, 0, sizeof(id));
		id.table = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1, &isnull));
		id.tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		id.xmin = DatumGetTransactionId(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3, &isnull));
		(void) hash_search(seen, &id, HASH_ENTER, NULL);
	}
	SPI_finish();
	for (int i = 0; i < nrows; i++)
	{
		TribSnapRowId id;
		bool		found = false;

		memset(&id, 0, sizeof(id));
		id.table = rows[i].row_table;
		id.tid = rows[i].row_tid;
		id.xmin = rows[i].row_xmin;
		if (rows[i].has_row)
			(void) hash_search(seen, &id, HASH_FIND, &found);
		rows[i].visible = found;
	}
}

/*
 * snapshot(stream, key): the latest record per live key (one key when key is given), with
 * its seq, when it changed, and the stream's newest seq.
 */
Datum
tributary_snapshot(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *name = TribArgText(fcinfo, 0, "stream");
	StreamDef  *def;
	TribOwnerContext owner;
	TribSnapRow *rows = NULL;
	int			nrows = 0;
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = "  ";
	Oid			user = GetUserId();
	MemoryContext cxt = CurrentMemoryContext;
	int64		stream_seq = 0;

	TribSnapRequireCatalog();
	def = TribStreamLoad(name, false, false);
	(void) TribSnapRequire(name);
	if (pg_class_aclcheck(def->target, user, ACL_SELECT) != ACLCHECK_OK &&
		pg_attribute_aclcheck_all(def->target, user, ACL_SELECT, ACLMASK_ALL) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to read the snapshot of stream \"%s\"", name),
				 errdetail("A snapshot holds the rows of %s as they landed.", get_rel_name(def->target)),
				 errhint("Reading it needs SELECT on %s.", get_rel_name(def->target))));

	values[0] = CStringGetTextDatum(name);
	values[1] = PG_ARGISNULL(1) ? (Datum) 0 : PG_GETARG_DATUM(1);
	nulls[1] = PG_ARGISNULL(1) ? 'n' : ' ';
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	/* one statement, one snapshot: the rows and the stream's seq agree */
	if (SPI_execute_with_args("SELECT key, seq, record, updated_at, row_table, row_tid, row_xmin, "
							  "(SELECT c.last_seq FROM tributary.snapshot_config c "
							  " WHERE c.stream OPERATOR(pg_catalog.=) $1) "
							  "FROM tributary.snapshots WHERE stream OPERATOR(pg_catalog.=) $1 "
							  "AND record IS NOT NULL AND ($2 IS NULL OR key OPERATOR(pg_catalog.=) $2) "
							  "ORDER BY key",
							  2, types, values, nulls, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not read tributary.snapshots");
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		rows = palloc0(sizeof(TribSnapRow) * Max(SPI_processed, 1));
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			HeapTuple	tup = SPI_tuptable->vals[i];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			TribSnapRow *r = &rows[nrows++];
			bool		isnull;
			Datum		d;

			r->key = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
			r->seq = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
			r->record = datumCopy(SPI_getbinval(tup, desc, 3, &isnull), false, -1);
			r->updated_at = DatumGetTimestampTz(SPI_getbinval(tup, desc, 4, &isnull));
			d = SPI_getbinval(tup, desc, 5, &isnull);
			r->has_row = !isnull;
			if (r->has_row)
			{
				r->row_table = DatumGetObjectId(d);
				r->row_tid = *(ItemPointer) DatumGetPointer(SPI_getbinval(tup, desc, 6, &isnull));
				r->row_xmin = DatumGetTransactionId(SPI_getbinval(tup, desc, 7, &isnull));
			}
			r->visible = true;
			stream_seq = DatumGetInt64(SPI_getbinval(tup, desc, 8, &isnull));
		}
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	TribRestoreUser(&owner);

	if (check_enable_rls(def->target, InvalidOid, false) == RLS_ENABLED)
		TribSnapApplyRls(def->target, rows, nrows);

	InitMaterializedSRF(fcinfo, 0);
	for (int i = 0; i < nrows; i++)
	{
		Datum		out[5];
		bool		outnulls[5] = {false, false, false, false, false};

		if (!rows[i].visible)
			continue;
		out[0] = CStringGetTextDatum(rows[i].key);
		out[1] = Int64GetDatum(rows[i].seq);
		out[2] = rows[i].record;
		out[3] = TimestampTzGetDatum(rows[i].updated_at);
		out[4] = Int64GetDatum(stream_seq);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, out, outnulls);
	}
	return (Datum) 0;
}
