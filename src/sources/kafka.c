/*
 * kafka.c
 *		The Kafka source: a librdkafka high-level consumer in the stream's worker. This file
 *		collects batches and commits them through the batch path; the source routine,
 *		TribKafkaSource, is at its end.
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

#include "access/xact.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "shmem.h"
#include "sources/kafka.h"
#include "sources/kafka_internal.h"
#include "sources/kafka_policy.h"
#include "sources/source.h"

#define TRIB_KAFKA_POLL_MS 100
#define TRIB_KAFKA_CLOCK_EVERY 256	/* messages between clock reads in a busy batch */

static void TribKafkaRefreshWatermarks(TribKafka *k);

/*
 * Collect up to batch_size messages: wait for the first (checking for signals every
 * TRIB_KAFKA_POLL_MS), then at most batch_ms more (overrun by at most
 * TRIB_KAFKA_CLOCK_EVERY messages already fetched). A revocation during the poll drops the
 * held messages of the revoked partitions (TribKafkaDropRevoked).
 */
static int
TribKafkaCollect(TribKafka *k)
{
	TimestampTz deadline = 0;
	int64		bytes = 0;

	/* at most batch_size messages, and tributary.max_message_size bytes (or one message) */
	while (k->held < k->def->batch_size && bytes < tributary_max_message_size)
	{
		rd_kafka_message_t *msg = NULL;
		long		wait_ms = TRIB_KAFKA_POLL_MS;

		/*
		 * Within a batch, take what is already fetched without waiting, and read the clock
		 * only when the queue runs dry or every TRIB_KAFKA_CLOCK_EVERY messages: a clock
		 * read per message was a measurable share of the worker's time.
		 */
		if (k->held > 0)
		{
			if (k->held % TRIB_KAFKA_CLOCK_EVERY != 0)
				msg = rd_kafka_consumer_poll(k->rk, 0);
			if (msg == NULL)
			{
				long		secs;
				int			usecs;

				TimestampDifference(GetCurrentTimestamp(), deadline, &secs, &usecs);
				wait_ms = Min(wait_ms, secs * 1000 + usecs / 1000);
				if (wait_ms <= 0)
					break;
			}
		}
		if (msg == NULL)
			msg = rd_kafka_consumer_poll(k->rk, (int) wait_ms);
		if (msg != NULL && msg->err)
		{
			if (msg->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET && msg->rkt != NULL)
				TribKafkaResetPartition(k, rd_kafka_topic_name(msg->rkt), msg->partition,
										rd_kafka_message_errstr(msg));
			else if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
				TribKafkaReport(k, psprintf("%s: %s", rd_kafka_err2name(msg->err),
											rd_kafka_message_errstr(msg)));
			rd_kafka_message_destroy(msg);
			msg = NULL;
		}
		else if (msg != NULL)
		{
			if (k->held == 0)
				deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), k->def->batch_ms);
			k->batch[k->held++] = msg;
			bytes += msg->len;
		}
		TribKafkaCheckCallbacks(k);
		if (msg == NULL)
		{
			TribKafkaRefreshWatermarks(k);
			CHECK_FOR_INTERRUPTS();
			if (!PostmasterIsAlive())
				proc_exit(1);
			if (ConfigReloadPending && k->held == 0)
				break;
		}
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
	{
		char	   *hex = palloc(size * 2 + 3);

		hex[0] = '\\';
		hex[1] = 'x';
		hex[2 + hex_encode(data, size, hex + 2)] = '\0';
		escape_json(buf, hex);
	}
}

/*
 * A message's headers as a JSON object text ({"name": "value", ...}; a NULL value as
 * null, names and values as TribKafkaAppendHeaderText writes them), or NULL without
 * headers. Repeated names repeat in the text; jsonb keeps the last.
 */
static char *
TribKafkaHeadersJson(rd_kafka_message_t *msg)
{
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

/* What the batch path hands back to the Kafka source: the batch's share per partition. */
typedef struct TribKafkaSettle
{
	TribKafka  *k;
	TribKafkaTally tally;
} TribKafkaSettle;

/* The batch path's settle step (batch.c): tally the batch and store its next offsets. */
static void
TribKafkaSettleBatch(void *arg, TribMessage *msgs, TribMessageResult *results, int n)
{
	TribKafkaSettle *settle = arg;

	TribKafkaTallyBatch(&settle->tally, settle->k->batch, results, n);
	TribKafkaStoreOffsets(settle->k, settle->tally.next);
}

/*
 * One batch in one transaction through the batch path (batch.c): rows as the target's
 * owner, dead letters, offsets, counters.
 */
static void
TribKafkaProcess(TribKafka *k)
{
	rd_kafka_message_t **batch = k->batch;
	int			n;
	StreamDef  *def = k->def;
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "tributary kafka batch",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old;
	TribMessage *msgs;
	TribMessageResult *results;
	TribBatchCounts counts;
	TribKafkaSettle settle = {k};
	TribBatchRequest request = {0};

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	old = MemoryContextSwitchTo(cxt);
	TribKafkaFence(k);
	n = k->held;
	if (n == 0)
	{
		MemoryContextSwitchTo(old);
		PopActiveSnapshot();
		CommitTransactionCommand();
		MemoryContextDelete(cxt);
		TribKafkaReport(k, NULL);
		return;
	}
	pgstat_report_activity(STATE_RUNNING, psprintf("tributary: ingesting %d messages", n));
	msgs = palloc0(sizeof(TribMessage) * n);
	results = palloc0(sizeof(TribMessageResult) * n);
	for (int i = 0; i < n; i++)
	{
		rd_kafka_timestamp_type_t tstype;

		msgs[i].data = batch[i]->payload ? batch[i]->payload : "";
		msgs[i].len = (int) batch[i]->len;
		msgs[i].topic = rd_kafka_topic_name(batch[i]->rkt);
		msgs[i].partition = batch[i]->partition;
		msgs[i].offset = batch[i]->offset;
		msgs[i].key = batch[i]->key;
		msgs[i].key_len = (int) batch[i]->key_len;
		msgs[i].timestamp_ms = rd_kafka_message_timestamp(batch[i], &tstype);
		msgs[i].headers = TribKafkaHeadersJson(batch[i]);
	}

	request.def = def;
	request.msgs = msgs;
	request.nmsgs = n;
	request.identity = TRIB_BATCH_AS_TABLE_OWNER;
	request.write_dead_letters = true;
	request.count_stats = true;
	request.settle = TribKafkaSettleBatch;
	request.settle_arg = &settle;
	TribBatchCommit(&request, results, &counts);
	MemoryContextSwitchTo(old);
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);

	TribKafkaPartitionStats(k, &settle.tally);
	/* for external lag tools only: PostgreSQL holds the positions that count */
	(void) rd_kafka_commit(k->rk, settle.tally.next, 1);
	rd_kafka_topic_partition_list_destroy(settle.tally.next);
	TribKafkaReleaseHeld(k);
	MemoryContextDelete(cxt);
	TribKafkaReport(k, NULL);
}

/* The source routine's run (kafka.h): consume until a reload, keeping the consumer across it. */
void
TribKafkaRun(StreamDef *def, int index)
{
	TribKafka  *k = TribKafkaCurrentConsumer();
	char	   *signature = TribKafkaSignature(def, index);
	static bool exit_registered = false;

	if (!exit_registered)
	{
		before_shmem_exit(TribKafkaAtExit, (Datum) 0);
		exit_registered = true;
	}

	/*
	 * After a reload, keep the consumer (its partitions, its place in the group) when the
	 * options it was built from did not change: changing batch_size, say, then costs no
	 * rebalance. The old definition is gone; the consumer takes the new one.
	 */
	if (k != NULL && strcmp(k->signature, signature) == 0)
	{
		Assert(k->held == 0);
		k->def = def;
		pfree(k->batch);
		k->batch = MemoryContextAlloc(k->cxt, sizeof(rd_kafka_message_t *) * def->batch_size);
		ereport(LOG, (errmsg("tributary stream \"%s\" worker #%d keeps its consumer: the options it was built from did not change",
							 def->name, index + 1)));
	}
	else
	{
		if (k != NULL)
			TribKafkaDrop(k);
		k = TribKafkaOpen(def, index);
		k->signature = MemoryContextStrdup(k->cxt, signature);
		k->batch = MemoryContextAlloc(k->cxt, sizeof(rd_kafka_message_t *) * def->batch_size);
		ereport(LOG, (errmsg("tributary stream \"%s\" worker #%d consuming from %s as group \"%s\"%s",
							 def->name, index + 1, k->opts.brokers, k->opts.group,
							 k->instance == NULL ? "" :
							 psprintf(", instance \"%s\"", k->instance))));
	}
	pfree(signature);

	while (!ConfigReloadPending)
	{
		if (TribKafkaCollect(k) > 0)
			TribKafkaProcess(k);
	}
	/* the consumer stays: the reload decides whether the next definition can use it */
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

const TribSourceRoutine TribKafkaSource = {
	.name = "kafka",
	.available = true,
	.needs_worker = true,
	/* bench/RESULTS.md, 2026-12-02: 1000 -> 10000 nearly halves a static stream's time */
	.default_batch_size = 10000,
	.options = kafka_options,
	.validate = TribKafkaValidateOptions,
	.check_rights = TribKafkaCheckPropertyRights,
	.run = TribKafkaRun,
	.restore_position = TribKafkaRestorePosition,
};
