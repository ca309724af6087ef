/*
 * kafka.c
 *		The Kafka source: a librdkafka high-level consumer in the stream's worker. This file
 *		collects batches (headers as JSON), publishes watermarks and per-partition
 *		statistics, and holds the source routine, TribKafkaSource, at its end: the one
 *		consume loop (consume.c) drives the consumer through it and commits each batch
 *		through the batch path.
 *
 * Exactly-once into PostgreSQL: a batch's rows, its dead letters and the next offset of
 * every partition it covers (tributary.offsets) commit in one transaction. Kafka's own
 * committed offsets are updated after that commit, for external lag tools only: on every
 * assignment the worker seeks each partition to the offset stored in PostgreSQL, and
 * only where none is stored yet does the stream's "start" option apply. When partitions
 * are revoked in the middle of collecting a batch, the messages collected from them are
 * dropped; their next owner reads them again from the stored offsets. So a crash anywhere
 * (worker, server, broker) neither loses nor duplicates a message.
 *
 * Every batch checks that the stream's owner may still insert into the target, and
 * inserts as the target table's owner inside a security-restricted operation, never as
 * the superuser the worker connects as (catalog.c, TribBecomeTableOwner). Memory is
 * bounded: at most batch_size messages are held, and librdkafka's prefetch queue is
 * bounded by its own settings.
 *
 * The rest of the source: kafka_options.c (the stream's options, librdkafka's
 * configuration), kafka_consumer.c (the consumer's life, librdkafka's callbacks),
 * kafka_positions.c (positions, the partition fence, the offsets a batch stores), and
 * kafka_internal.h, what they share.
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "shmem.h"
#include "sources/kafka.h"
#include "sources/kafka_internal.h"
#include "sources/kafka_policy.h"
#include "sources/source.h"
#include "varlena.h"

#define TRIB_KAFKA_POLL_MS 100
#define TRIB_KAFKA_TAKE 256		/* messages taken from the queue at most in one call */

static void TribKafkaRefreshWatermarks(TribKafka *k);

/*
 * Take what the consumer queue already holds, at most want messages: in one call, so the
 * queue's lock is taken once per run rather than once per message (with a message per
 * rd_kafka_consumer_poll, the worker spent much of a busy batch waiting on that lock
 * while librdkafka's fetcher filled the queue). Rebalance and other callbacks are served
 * as rd_kafka_consumer_poll serves them.
 */
static int
TribKafkaTake(TribKafka *k, rd_kafka_message_t **run, int want)
{
	ssize_t		n;

	if (k->queue == NULL)
		k->queue = rd_kafka_queue_get_consumer(k->rk);
	if (k->queue == NULL)
	{
		run[0] = rd_kafka_consumer_poll(k->rk, 0);
		return run[0] != NULL ? 1 : 0;
	}
	n = rd_kafka_consume_batch_queue(k->queue, 0, run, (size_t) want);
	return n > 0 ? (int) n : 0;
}

/*
 * Collect up to batch_size messages: wait for the first (checking for signals every
 * TRIB_KAFKA_POLL_MS), then at most batch_ms more, taking what is already fetched in runs
 * of up to TRIB_KAFKA_TAKE (the clock is read once a run). A batch holds at most
 * tributary.max_message_size bytes of messages, or one message: a run asks for no more
 * messages than the bytes left allow at the largest size seen. A revocation during the
 * poll drops the held messages of the revoked partitions (TribKafkaDropRevoked).
 */
static int
TribKafkaCollect(TribKafka *k)
{
	TimestampTz deadline = 0;
	int64		bytes = 0;
	int64		largest = 1;

	while (k->held < k->def->batch_size && bytes < tributary_max_message_size)
	{
		/* apart from k->batch: a revocation during the call may compact the held messages */
		rd_kafka_message_t *run[TRIB_KAFKA_TAKE];
		int			n = 0;
		long		wait_ms = TRIB_KAFKA_POLL_MS;

		if (k->held > 0)
		{
			int			want = Min(k->def->batch_size - k->held, TRIB_KAFKA_TAKE);
			int64		fit = (tributary_max_message_size - bytes) / largest;

			n = TribKafkaTake(k, run, (int) Max(1, Min(want, fit)));
			if (n == 0)
			{
				long		secs;
				int			usecs;

				TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
				wait_ms = Min(wait_ms, secs * 1000 + usecs / 1000);
				if (wait_ms <= 0)
					break;
			}
			else if (GetCurrentTimestamp() >= deadline)
				wait_ms = 0;	/* the run is kept; the batch ends after it */
		}
		if (n == 0 && wait_ms > 0)
		{
			run[0] = rd_kafka_consumer_poll(k->rk, (int) wait_ms);
			n = run[0] != NULL ? 1 : 0;
		}

		/* keep the messages, give back the errors */
		for (int i = 0; i < n; i++)
		{
			rd_kafka_message_t *msg = run[i];

			if (msg->err)
			{
				if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && msg->rkt != NULL)
					TribKafkaResetPartition(k, rd_kafka_topic_name(msg->rkt), msg->partition,
											rd_kafka_message_errstr(msg));
				else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
					TribKafkaReport(k, psprintf("%s: %s", rd_kafka_err2name(msg->err),
												rd_kafka_message_errstr(msg)));
				rd_kafka_message_destroy(msg);
				continue;
			}
			if (k->held == 0)
				deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), k->def->batch_ms);
			k->batch[k->held++] = msg;
			bytes += msg->len;
			largest = Max(largest, (int64) msg->len);
		}
		TribKafkaCheckCallbacks(k);
		if (n == 0)
		{
			TribKafkaRefreshWatermarks(k);
			CHECK_FOR_INTERRUPTS();
			if (!PostmasterIsAlive())
				proc_exit(1);
			if (ConfigReloadPending && k->held == 0)
				break;
		}
		else if (wait_ms == 0)
			break;
	}
	return k->held;
}

/*
 * A header's name or value as a JSON string. Bytes that are not valid text in the
 * database encoding (or text that itself begins with \x) are written as \x and hex, as
 * bytea's text form shows them: every stored header stays valid jsonb, so a dump of the
 * table restores, and a reader can tell encoded bytes from text.
 */
static void
TribKafkaAppendHeaderText(StringInfo buf, const char *data, size_t size)
{
	if (!(size >= 2 && data[0] == '\\' && data[1] == 'x') &&
		pg_verify_mbstr(GetDatabaseEncoding(), data, (int) size, true))
		escape_json(buf, pnstrdup(data, size));
	else
		escape_json(buf, TribHexText(data, size));
}

/*
 * A message's headers as a JSON object text ({"name": "value", ...}; a NULL value as
 * null, names and values as TribKafkaAppendHeaderText writes them), or NULL without
 * headers. Repeated names repeat in the text; jsonb keeps the last.
 */
static char *
TribKafkaHeadersJson(const void *origin)
{
	const rd_kafka_message_t *msg = origin;
	rd_kafka_headers_t *hdrs;
	StringInfoData buf;
	const char *name;
	const void *value;
	size_t		size;

	if (rd_kafka_message_headers(msg, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		rd_kafka_header_cnt(hdrs) == 0)
		return NULL;
	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		TribKafkaAppendHeaderText(&buf, name, strlen(name));
		appendStringInfoString(&buf, ": ");
		if (value == NULL)
			appendStringInfoString(&buf, "null");
		else
			TribKafkaAppendHeaderText(&buf, value, size);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/* Publish a partition's high watermark as librdkafka last saw it (no broker round trip). */
static void
TribKafkaWatermark(TribKafka *k, const char *topic, int32 partition)
{
	int64_t		low;
	int64_t		high;

	if (rd_kafka_get_watermark_offsets(k->rk, topic, partition, &low, &high) ==
		RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
		TribPartitionSetWatermark(&k->def->key, topic, partition, high);
}

/* Refresh the watermarks of every assigned partition, busy or idle, about once a second. */
static void
TribKafkaRefreshWatermarks(TribKafka *k)
{
	rd_kafka_topic_partition_list_t *assigned;
	TimestampTz now = GetCurrentTimestamp();

	if (!TimestampDifferenceExceeds(k->watermarks_at, now, 1000))
		return;
	k->watermarks_at = now;
	if (rd_kafka_assignment(k->rk, &assigned) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	for (int i = 0; i < assigned->cnt; i++)
		TribKafkaWatermark(k, assigned->elems[i].topic, assigned->elems[i].partition);
	rd_kafka_topic_partition_list_destroy(assigned);
}

/* After the commit: each partition's share of the batch, its new position and watermark. */
static void
TribKafkaPartitionStats(TribKafka *k, TribKafkaTally *t)
{
	for (int p = 0; p < t->next->cnt; p++)
	{
		int64	   *c = &t->counts[p * TRIB_TALLY_FIELDS];

		TribPartitionStatsAdd(&k->def->key, t->next->elems[p].topic, t->next->elems[p].partition,
							  c[0], c[1], c[2], c[3], t->next->elems[p].offset);
		TribKafkaWatermark(k, t->next->elems[p].topic, t->next->elems[p].partition);
	}
}

/*
 * A held message as the batch path reads it; its memory stays librdkafka's until release.
 * Every field is set: the array is reused from batch to batch.
 */
static void
TribKafkaMessage(TribMessage *m, rd_kafka_message_t *msg)
{
	rd_kafka_timestamp_type_t tstype;

	*m = (TribMessage) {
		.data = msg->payload ? msg->payload : "",
		.len = (int) msg->len,
		.tombstone = msg->payload == NULL && msg->key != NULL,
		.topic = rd_kafka_topic_name(msg->rkt),
		.partition = msg->partition,
		.offset = msg->offset,
		.key = msg->key,
		.key_len = (int) msg->key_len,
		.timestamp_ms = rd_kafka_message_timestamp(msg, &tstype),
		/* made only for a dead letter or a headers column: most batches read none */
		.headers_of = TribKafkaHeadersJson,
		.origin = msg,
	};
}

/*
 * The routine's collect: a batch (TribKafkaCollect) as TribMessages, in an array the
 * consumer keeps (msgs) and the batch path reads until release.
 */
static int
TribKafkaSourceCollect(void *consumer, TribMessage **msgs)
{
	TribKafka  *k = consumer;
	MemoryContext batch_cxt = CurrentMemoryContext;
	int			n = TribKafkaCollect(k);

	/* a rebalance or a report during the poll committed a transaction: back to the batch's memory */
	MemoryContextSwitchTo(batch_cxt);
	if (n == 0)
		return 0;
	if (n > k->msgs_size)
	{
		if (k->msgs != NULL)
			pfree(k->msgs);
		k->msgs = MemoryContextAlloc(k->cxt, sizeof(TribMessage) * n);
		k->msgs_size = n;
	}
	for (int i = 0; i < n; i++)
		TribKafkaMessage(&k->msgs[i], k->batch[i]);
	*msgs = k->msgs;
	return n;
}

/*
 * The routine's fence, first in the batch's transaction: the partition fence
 * (TribKafkaFence) gives back the held messages another worker stored; msgs keeps the
 * others, in order.
 */
static int
TribKafkaSourceFence(void *consumer, TribMessage *msgs, int n)
{
	TribKafka  *k = consumer;
	int			kept = 0;

	Assert(n == k->held);
	TribKafkaFence(k, msgs);
	/* k->batch is now an ordered subsequence of the batch collected */
	for (int i = 0; i < n && kept < k->held; i++)
		if (msgs[i].origin == k->batch[kept])
			msgs[kept++] = msgs[i];
	Assert(kept == k->held);
	return kept;
}

/* The routine's store_positions (the batch path's settle step): tally, store next offsets. */
static void
TribKafkaSourceStorePositions(void *consumer, TribMessage *msgs, TribMessageResult *results, int n)
{
	TribKafka  *k = consumer;

	Assert(n == k->held);
	TribKafkaTallyBatch(&k->tally, msgs, results, n);
	TribKafkaStoreOffsets(k, k->tally.next);
}

/*
 * The routine's after_commit: each partition's share and position in the shared
 * statistics, the offsets committed to Kafka (for external lag tools only: PostgreSQL
 * holds the positions that count), and the worker's last_error cleared.
 */
static void
TribKafkaSourceAfterCommit(void *consumer)
{
	TribKafka  *k = consumer;

	if (k->tally.next != NULL)
	{
		TribKafkaPartitionStats(k, &k->tally);
		(void) rd_kafka_commit(k->rk, k->tally.next, 1);
		rd_kafka_topic_partition_list_destroy(k->tally.next);
		k->tally.next = NULL;
	}
	TribKafkaReport(k, NULL);
}

/* The routine's release: give the held messages back to librdkafka, forget the batch. */
static void
TribKafkaSourceRelease(void *consumer)
{
	TribKafka  *k = consumer;

	TribKafkaReaperGive(k);		/* the batch is committed: destroyed meanwhile */
	if (k->tally.next != NULL)
		rd_kafka_topic_partition_list_destroy(k->tally.next);
	k->tally.next = NULL;
	k->tally.counts = NULL;
}

/* The routine's open (kafka_consumer.c). */
static void *
TribKafkaSourceOpen(StreamDef *def, int index)
{
	return TribKafkaOpen(def, index);
}

/* The routine's reuse (kafka_consumer.c). */
static bool
TribKafkaSourceReuse(void *consumer, StreamDef *def, int index)
{
	return TribKafkaReuse(consumer, def, index);
}

/* The routine's close (kafka_consumer.c). */
static void
TribKafkaSourceClose(void *consumer, bool at_exit)
{
	TribKafkaClose(consumer, at_exit);
}

/* The options a kafka stream takes, with examples for the required ones. */
static const TribSourceOption kafka_options[] = {
	{"brokers", "{\"brokers\": \"host:9092\"}"},
	{"topic", "{\"topic\": \"name\"}"},
	{"group"},
	{"start"},
	{"librdkafka"},
	{"partitions"},
	{"parallelism"},
	{"metadata"},
	{NULL}
};

/* librdkafka's properties may hold passwords and keys (kafka_policy.c decides which). */
static const TribSecretOption kafka_secret_options[] = {
	{"librdkafka", TribKafkaRedactLibrdkafka},
	{NULL}
};

const TribSourceRoutine TribKafkaSource = {
	.name = "kafka",
	.available = true,
	.needs_worker = true,
	/* bench/RESULTS.md, 2026-12-02: 1000 -> 10000 nearly halves a static stream's time */
	.default_batch_size = 10000,
	.metadata = TRIB_META_BIT(TRIB_META_TOPIC) | TRIB_META_BIT(TRIB_META_PARTITION) |
	TRIB_META_BIT(TRIB_META_OFFSET) | TRIB_META_BIT(TRIB_META_KEY) |
	TRIB_META_BIT(TRIB_META_TIMESTAMP) | TRIB_META_BIT(TRIB_META_HEADERS),
	.options = kafka_options,
	.secret_options = kafka_secret_options,
	.validate = TribKafkaValidateOptions,
	.check_rights = TribKafkaCheckPropertyRights,
	.open = TribKafkaSourceOpen,
	.reuse = TribKafkaSourceReuse,
	.collect = TribKafkaSourceCollect,
	.fence = TribKafkaSourceFence,
	.store_positions = TribKafkaSourceStorePositions,
	.after_commit = TribKafkaSourceAfterCommit,
	.release = TribKafkaSourceRelease,
	.close = TribKafkaSourceClose,
	.restore_position = TribKafkaRestorePosition,
};
