/*
 * notify.c
 *		NOTIFY fan-out of snapshot changes: channel names, payloads, the notification
 *		queue's level, and the launcher's heartbeats and resyncs (docs/fanout.md).
 *
 * Notifications are queued with Async_Notify in the batch's transaction and go out when
 * it commits, in commit order, so they carry the seqs the snapshot stage gave. PostgreSQL
 * fails a commit whose notifications do not fit the queue, which one listener that stops
 * reading fills; so before queuing, the queue's usage is compared with
 * tributary.fanout_queue_limit: past it the batch's notifications are skipped (counted in
 * snapshot_config.skipped) and a resync is owed, sent with the next notification once the
 * queue has room again (by the next batch, or by the launcher's tick).
 *
 * Channel names longer than 63 bytes (NAMEDATALEN - 1) are cut to 46 bytes, at a character
 * boundary, followed by '#' and the first 16 hex digits of the SHA-256 of the whole name:
 * stable, and computable by clients (tributary.fanout_channel does it).
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/async.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "fanout/fanout.h"

/* How much of a long channel name is kept before '#' and the hash: 46 + 1 + 16 = 63. */
#define TRIB_CHANNEL_KEEP 46
#define TRIB_CHANNEL_HASH_HEX 16

/*
 * The channel of a stream ("tributary.<stream>"), of one of its keys
 * ("tributary.<stream>.<key>"), or with a suffix ("tributary.<stream>.quality"), shortened
 * when longer than a channel name may be.
 */
char *
TribFanoutChannel(const char *stream, const char *key, const char *suffix)
{
	StringInfoData name;
	pg_cryptohash_ctx *ctx;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	int			keep;
	char	   *shortened;

	initStringInfo(&name);
	appendStringInfo(&name, "tributary.%s", stream);
	if (key != NULL)
		appendStringInfo(&name, ".%s", key);
	if (suffix != NULL)
		appendStringInfo(&name, ".%s", suffix);
	if (name.len < NAMEDATALEN)
		return name.data;

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) name.data, name.len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "tributary: could not compute a SHA-256 hash: %s", pg_cryptohash_error(ctx));
	pg_cryptohash_free(ctx);
	keep = pg_mbcliplen(name.data, name.len, TRIB_CHANNEL_KEEP);
	shortened = palloc(NAMEDATALEN);
	memcpy(shortened, name.data, keep);
	shortened[keep] = '#';
	for (int i = 0; i < TRIB_CHANNEL_HASH_HEX / 2; i++)
		sprintf(shortened + keep + 1 + 2 * i, "%02x", digest[i]);
	pfree(name.data);
	return shortened;
}

/* Whether the notification queue is below tributary.fanout_queue_limit. */
bool
TribFanoutQueueHasRoom(void)
{
	LOCAL_FCINFO(fcinfo, 0);
	double		usage;

	InitFunctionCallInfoData(*fcinfo, NULL, 0, InvalidOid, NULL, NULL);
	usage = DatumGetFloat8(pg_notification_queue_usage(fcinfo));
	return usage < tributary_fanout_queue_limit;
}

/* A heartbeat or a resync ("heartbeat", "resync") on the stream's channel, with its seq. */
void
TribFanoutNotice(TribSnapshotConfig *cfg, const char *kind)
{
	StringInfoData payload;

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"stream\":");
	escape_json(&payload, cfg->stream);
	appendStringInfo(&payload, ",\"seq\":" INT64_FORMAT ",\"%s\":true}", cfg->last_seq, kind);
	Async_Notify(TribFanoutChannel(cfg->stream, NULL, NULL), payload.data);
	cfg->resync_pending = false;
}

/*
 * One change: its payload (the record, unless the stream's payload is 'keys' or it would
 * not fit NOTIFY's limit) on the stream's channel and on the key's, as asked.
 */
void
TribFanoutChange(TribSnapshotConfig *cfg, const char *key, int64 seq, bool deleted,
				 const char *record, bool to_stream, bool to_key)
{
	StringInfoData payload;
	int			head;

	initStringInfo(&payload);
	appendStringInfoString(&payload, "{\"stream\":");
	escape_json(&payload, cfg->stream);
	appendStringInfoString(&payload, ",\"key\":");
	escape_json(&payload, key);
	appendStringInfo(&payload, ",\"seq\":" INT64_FORMAT ",\"op\":\"%s\"", seq,
					 deleted ? "delete" : "upsert");
	head = payload.len;
	if (record != NULL)
	{
		appendStringInfoString(&payload, ",\"record\":");
		appendStringInfoString(&payload, record);
	}
	appendStringInfoChar(&payload, '}');
	if (payload.len >= TRIB_NOTIFY_PAYLOAD_MAX)
	{
		/* the record does not fit: the client reads it with tributary.snapshot */
		payload.len = head;
		payload.data[head] = '\0';
		appendStringInfoString(&payload, ",\"truncated\":true}");
	}
	if (payload.len >= TRIB_NOTIFY_PAYLOAD_MAX)
	{
		/* nor does the key: the client reads the whole snapshot */
		resetStringInfo(&payload);
		appendStringInfoString(&payload, "{\"stream\":");
		escape_json(&payload, cfg->stream);
		appendStringInfo(&payload, ",\"seq\":" INT64_FORMAT ",\"op\":\"%s\",\"truncated\":true}", seq,
						 deleted ? "delete" : "upsert");
	}
	if (to_stream)
		Async_Notify(TribFanoutChannel(cfg->stream, NULL, NULL), payload.data);
	if (to_key)
		Async_Notify(TribFanoutChannel(cfg->stream, key, NULL), payload.data);
}

/* A closed quality window, on the stream's quality channel (when the queue has room). */
void
TribFanoutQuality(const char *stream, const char *payload)
{
	if (strlen(payload) < TRIB_NOTIFY_PAYLOAD_MAX && TribFanoutQueueHasRoom())
		Async_Notify(TribFanoutChannel(stream, NULL, "quality"), payload);
}

/* ---------------------------------------------------------------------------------------
 * The launcher's tick: heartbeats of idle streams, resyncs owed
 * ---------------------------------------------------------------------------------------
 */

/*
 * The key channels' changes that waited (for min_interval, or for room in the queue) and
 * may go now, each with the key's current state (SPI connected, under the stream's seq lock). Returns the
 * microseconds until the next waiting one may go, or -1 when none waits.
 */
static int64
TribFanoutFlushKeys(TribSnapshotConfig *cfg, TimestampTz now)
{
	Oid			types[3] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	Datum		values[3];
	int			n;
	char	  **keys;
	char	  **records;
	int64	   *seqs;
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(cfg->stream);
	values[1] = TimestampTzGetDatum(now);
	values[2] = TimestampTzGetDatum(now - cfg->min_interval_us);
	if (SPI_execute_with_args("SELECT key, seq, record FROM tributary.snapshots "
							  "WHERE stream OPERATOR(pg_catalog.=) $1 AND notify_pending "
							  "AND (notified_at IS NULL OR notified_at OPERATOR(pg_catalog.<=) $3) ORDER BY seq",
							  3, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not read tributary.snapshots");
	n = (int) SPI_processed;
	keys = palloc(sizeof(char *) * Max(n, 1));
	records = palloc(sizeof(char *) * Max(n, 1));
	seqs = palloc(sizeof(int64) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		keys[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		seqs[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2, &isnull));
		records[i] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 3);
	}
	if (n > 0)
	{
		for (int i = 0; i < n; i++)
			TribFanoutChange(cfg, keys[i], seqs[i], records[i] == NULL,
							 cfg->payload_keys ? NULL : records[i], false, true);
		if (SPI_execute_with_args("UPDATE tributary.snapshots SET notify_pending = false, notified_at = $2 "
								  "WHERE stream OPERATOR(pg_catalog.=) $1 AND notify_pending "
								  "AND (notified_at IS NULL OR notified_at OPERATOR(pg_catalog.<=) $3)",
								  3, types, values, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "tributary: could not update tributary.snapshots");
	}
	if (SPI_execute_with_args("SELECT min(notified_at) FROM tributary.snapshots "
							  "WHERE stream OPERATOR(pg_catalog.=) $1 AND notify_pending",
							  1, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "tributary: could not read tributary.snapshots");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return -1;
	return Max(DatumGetTimestampTz(d) + cfg->min_interval_us - now, 0);
}

/*
 * One stream: a resync owed or a heartbeat due goes out, unless a batch of the stream is in
 * flight (it notifies itself) or the queue is still too full. Returns the microseconds until
 * its next heartbeat is due, or -1 when none.
 */
static int64
TribFanoutTickStream(const char *stream, TimestampTz now)
{
	TribSnapshotConfig *cfg = TribSnapshotConfigLoad(stream);
	int64		since;

	if (cfg == NULL || !cfg->fanout)
		return -1;
	if (!TribSnapshotLock(cfg->stream_id, false))
		return cfg->heartbeat_us > 0 ? Min(cfg->heartbeat_us, USECS_PER_SEC) : USECS_PER_SEC;
	cfg = TribSnapshotConfigLoad(stream);
	if (cfg == NULL || !cfg->fanout)
		return -1;
	since = cfg->notified_at == DT_NOBEGIN ? PG_INT64_MAX : now - cfg->notified_at;
	if (cfg->resync_pending || (cfg->heartbeat_us > 0 && since >= cfg->heartbeat_us))
	{
		if (!TribFanoutQueueHasRoom())
			return USECS_PER_SEC;
		TribFanoutNotice(cfg, cfg->resync_pending ? "resync" : "heartbeat");
		cfg->notified_at = now;
		TribSnapshotStore(cfg);
		since = 0;
	}
	if (cfg->channel_key && TribFanoutQueueHasRoom())
	{
		int64		waiting = TribFanoutFlushKeys(cfg, now);

		if (waiting >= 0 && (cfg->heartbeat_us <= 0 || waiting < cfg->heartbeat_us - since))
			return waiting;
	}
	if (cfg->heartbeat_us <= 0)
		return -1;
	return cfg->heartbeat_us - since;
}

/*
 * For the launcher, in its transaction: every stream with fan-out, each in a
 * subtransaction (one stream's error must not stop the others'). Returns the milliseconds
 * until the next heartbeat is due (at most tributary.naptime), or -1 when none.
 */
/* The tick's progress: now, and the microseconds until the next heartbeat due (-1: none). */
typedef struct TribFanoutTickState
{
	TimestampTz now;
	int64		next;
} TribFanoutTickState;

static void
TribFanoutTickOne(const char *stream, void *arg)
{
	TribFanoutTickState *state = arg;
	int64		due = TribFanoutTickStream(stream, state->now);

	if (due >= 0 && (state->next < 0 || due < state->next))
		state->next = due;
}

long
TribFanoutTick(void)
{
	TribOwnerContext owner;
	TribFanoutTickState state = {GetCurrentTimestamp(), -1};

	if (!TribSnapshotCatalogPresent())
		return -1;
	TribBecomeExtensionOwner(&owner);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	TribForEachStream("SELECT stream FROM tributary.snapshot_config WHERE channels IS NOT NULL "
					  "ORDER BY stream", TribFanoutTickOne, &state, "send the fan-out");
	SPI_finish();
	TribRestoreUser(&owner);
	return state.next < 0 ? -1 : (long) Max(state.next / 1000, 10);
}
