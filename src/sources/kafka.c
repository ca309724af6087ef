/*
 * kafka.c
 *		The Kafka source: a librdkafka high-level consumer in the stream's worker.
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
 * Several workers (option "parallelism") share a stream's partitions: as members of one
 * consumer group, or by splitting a static "partitions" list. Two of them can hold one
 * partition for a moment (a worker stuck in a batch past max.poll.interval.ms loses its
 * partitions to another; a static split changes on alter_stream), so every batch first
 * takes a transaction lock per partition it covers and drops the messages below the
 * partition's stored next offset, which another worker has stored already.
 *
 * Every batch checks that the stream's owner may still insert into the target, and
 * inserts as the target table's owner inside a security-restricted operation, never as
 * the superuser the worker connects as (catalog.c, TribBecomeTableOwner). Memory is bounded: at most batch_size messages are
 * held, and librdkafka's prefetch queue is bounded by its own settings.
 *
 * librdkafka calls the rebalance callback from inside rd_kafka_consumer_poll; errors
 * there are caught and re-raised after the poll returns, so no longjmp crosses
 * librdkafka's frames.
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/lock.h"
#include "storage/pmsignal.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "batch.h"
#include "catalog.h"
#include "optvalue.h"
#include "shmem.h"
#include "sources/kafka.h"
#include "sources/kafka_policy.h"
#include "sources/source.h"

#define TRIB_KAFKA_POLL_MS 100
#define TRIB_KAFKA_CLOSE_MS 5000
#define TRIB_KAFKA_CLOCK_EVERY 256	/* messages between clock reads in a busy batch */
#define TRIB_KAFKA_LEADERS_MS 1000	/* the wait for partition leaders before a static assign */

/* field4 of the advisory lock tag of a partition fence, apart from the SQL functions' 1 and 2 */
#define TRIB_LOCKTAG_PARTITION 0x5452

typedef enum TribKafkaStart
{
	TRIB_START_EARLIEST,
	TRIB_START_LATEST,
	TRIB_START_OFFSETS,			/* per partition; others from the earliest */
	TRIB_START_TIMESTAMP
} TribKafkaStart;

/* A stream's Kafka settings, resolved from its options. */
typedef struct TribKafkaOptions
{
	char	   *brokers;
	List	   *topics;			/* of char * */
	char	   *group;
	bool		group_given;	/* by option: the group's committed offsets count */
	TribKafkaStart start;
	int64		start_ms;		/* TRIB_START_TIMESTAMP: ms since the Unix epoch */
	Jsonb	   *start_offsets;	/* TRIB_START_OFFSETS: {"partition": offset, ...} */
	JsonbContainer *librdkafka; /* the pass-through properties, or NULL */
	List	   *partitions;		/* static assignment (int), or NIL for the consumer group */
} TribKafkaOptions;

/* One consumer. */
typedef struct TribKafka
{
	MemoryContext cxt;			/* lives as long as the consumer */
	StreamDef  *def;
	int			index;			/* which of the stream's workers this is */
	char	   *signature;		/* the options the consumer was built from (TribKafkaSignature) */
	TribKafkaOptions opts;
	rd_kafka_t *rk;
	rd_kafka_message_t **batch; /* messages held: librdkafka's destroy waits for them */
	int			held;
	char	   *callback_error; /* an error reported inside a librdkafka callback */
	char	   *position_error; /* assigned partitions could not be positioned */
	char	   *reported_error; /* the last error written to last_error */
	TimestampTz watermarks_at;	/* when the assigned partitions' watermarks were read */
	char	   *instance;		/* group.instance.id of this worker, or NULL */
} TribKafka;

static TribKafka *current_consumer = NULL;

static void TribKafkaRefreshWatermarks(TribKafka *k);

static JsonbValue *
TribOption(StreamDef *def, const char *key)
{
	return getKeyJsonValueFromContainer(&def->options->root, key, strlen(key), NULL);
}

static char *
TribJsonbScalarText(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * A partition number as a "start" key: decimal digits without sign or leading zeros, below
 * tributary.max_partitions. One spelling per partition, so two keys never name one partition.
 */
static bool
TribKafkaPartitionKey(const char *key)
{
	size_t		len = strlen(key);

	if (len == 0 || len > 9 || strspn(key, "0123456789") != len || (key[0] == '0' && len > 1))
		return false;
	return atoi(key) < tributary_max_partitions;
}

/* The one error for a partition number out of place, in "start" keys and "partitions". */
static void
TribKafkaBadPartition(StreamDef *def, const char *option, const char *value)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid partition in option \"%s\" of stream \"%s\"", option, def->name),
			 errdetail("Got %s; a partition is an integer from 0 to %d, written in decimal without sign or leading zeros.",
					   value, tributary_max_partitions - 1),
			 errhint("Partitions must be below tributary.max_partitions (%d); raise it in postgresql.conf for a topic with more partitions.",
					 tributary_max_partitions)));
}

static void
TribKafkaStartContext(void *arg)
{
	errcontext("option \"start\" of stream \"%s\": \"earliest\", \"latest\", offsets per partition, or a timestamp",
			   ((StreamDef *) arg)->name);
}

/* The "start" option: "earliest", "latest", {"partition": offset, ...} or a timestamp. */
static void
TribKafkaParseStart(StreamDef *def, TribKafkaOptions *o)
{
	JsonbValue *v = TribOption(def, "start");
	const char *expected = "\"earliest\", \"latest\", an object of offsets per partition such as {\"0\": 42}, or a timestamp";

	o->start = TRIB_START_EARLIEST;
	if (v == NULL)
		return;
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	k;
		JsonbValue	val;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *key;
			int64		offset;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &val, true);
			key = pnstrdup(k.val.string.val, k.val.string.len);
			if (!TribKafkaPartitionKey(key))
				TribKafkaBadPartition(def, "start", psprintf("key \"%s\"", key));
			if (!TribJsonbInteger(&val, &offset) || offset < 0)
				TribBadOption(def, "start", expected);
		}
		o->start = TRIB_START_OFFSETS;
		o->start_offsets = JsonbValueToJsonb(v);
		return;
	}
	if (v->type != jbvString)
		TribBadOption(def, "start", expected);
	if (v->val.string.len == 8 && strncmp(v->val.string.val, "earliest", 8) == 0)
		o->start = TRIB_START_EARLIEST;
	else if (v->val.string.len == 6 && strncmp(v->val.string.val, "latest", 6) == 0)
		o->start = TRIB_START_LATEST;
	else
	{
		char	   *text = pnstrdup(v->val.string.val, v->val.string.len);
		ErrorContextCallback context = {error_context_stack, TribKafkaStartContext, def};
		TimestampTz ts;

		error_context_stack = &context;
		ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(text),
													 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		error_context_stack = context.previous;
		if (TIMESTAMP_NOT_FINITE(ts))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"start\" of stream \"%s\" is not a finite timestamp", def->name),
					 errdetail("\"start\" is \"%s\".", text),
					 errhint("Give a time such as \"2024-05-01 12:00:00+00\", or \"earliest\" or \"latest\".")));
		o->start = TRIB_START_TIMESTAMP;
		o->start_ms = (ts - SetEpochTimestamp()) / 1000;
	}
}

static void
TribKafkaParseOptions(StreamDef *def, TribKafkaOptions *o)
{
	JsonbValue *v;

	memset(o, 0, sizeof(*o));
	v = TribOption(def, "brokers");
	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
		TribBadOption(def, "brokers", "a non-empty string such as \"host1:9092,host2:9092\"");
	o->brokers = pnstrdup(v->val.string.val, v->val.string.len);

	v = TribOption(def, "topic");
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		o->topics = list_make1(pnstrdup(v->val.string.val, v->val.string.len));
	else if (v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvString || e.val.string.len == 0)
				TribBadOption(def, "topic", "a topic name or an array of topic names");
			o->topics = lappend(o->topics, pnstrdup(e.val.string.val, e.val.string.len));
		}
	}
	if (o->topics == NIL)
		TribBadOption(def, "topic", "a topic name or an array of topic names");

	v = TribOption(def, "group");
	if (v != NULL && (v->type != jbvString || v->val.string.len == 0))
		TribBadOption(def, "group", "a non-empty string");
	o->group_given = v != NULL;
	o->group = v != NULL ? pnstrdup(v->val.string.val, v->val.string.len) :
		psprintf("tributary-" UINT64_FORMAT "-%s-%s", GetSystemIdentifier(),
				 get_database_name(MyDatabaseId), def->name);

	TribKafkaParseStart(def, o);

	v = TribOption(def, "partitions");
	if (v != NULL)
	{
		JsonbIterator *it;
		JsonbValue	e;
		JsonbIteratorToken tok;
		const char *expected = "a non-empty array of distinct partition numbers";

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) == 0)
			TribBadOption(def, "partitions", expected);
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			int64		n;

			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvNumeric)
				TribBadOption(def, "partitions", expected);
			if (!TribJsonbInteger(&e, &n) || n < 0 || n >= tributary_max_partitions)
				TribKafkaBadPartition(def, "partitions", TribJsonbScalarText(&e));
			if (list_member_int(o->partitions, (int) n))
				TribBadOption(def, "partitions", expected);
			o->partitions = lappend_int(o->partitions, (int) n);
		}
	}

	v = TribOption(def, "librdkafka");
	if (v != NULL && (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data)))
		TribBadOption(def, "librdkafka", "an object of librdkafka properties");
	o->librdkafka = v != NULL ? v->val.binary.data : NULL;
}

static void
TribKafkaSet(rd_kafka_conf_t *conf, const char *name, const char *value, StreamDef *def)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid librdkafka property \"%s\" for stream \"%s\"", name, def->name),
				 errdetail("librdkafka: %s", errstr),
				 errhint("See librdkafka's CONFIGURATION.md for the properties a consumer takes.")));
	}
}

/*
 * librdkafka's configuration for the stream; raises with librdkafka's words on a bad property.
 * When only validating (vetting) in the backend of a role that is not a superuser (start,
 * ingest), properties that role may not set are left out: they were checked when a role that
 * may set them stored them, and librdkafka must not act on them in this backend
 * (plugin.library.paths loads its libraries as soon as it is set).
 */
static rd_kafka_conf_t *
TribKafkaConf(StreamDef *def, TribKafkaOptions *o, bool vetting)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	TribKafkaSet(conf, "bootstrap.servers", o->brokers, def);
	TribKafkaSet(conf, "group.id", o->group, def);
	TribKafkaSet(conf, "client.id", psprintf("tributary-%s", def->name), def);
	TribKafkaSet(conf, "enable.auto.commit", "false", def);
	TribKafkaSet(conf, "enable.auto.offset.store", "false", def);
	/* an offset out of range comes to TribKafkaResetPartition, which records the jump */
	TribKafkaSet(conf, "auto.offset.reset", "error", def);
	/* a crashed worker's partitions move on after 10 s, not 45; librdkafka options may override */
	TribKafkaSet(conf, "session.timeout.ms", "10000", def);
	/* a topic created after its stream is seen within 30 s, not 5 minutes */
	TribKafkaSet(conf, "topic.metadata.refresh.interval.ms", "30000", def);
	if (o->librdkafka != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(o->librdkafka);
		JsonbValue	k;
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;
			char	   *value;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &v, true);
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (TribKafkaPropertyReserved(name))
			{
				rd_kafka_conf_destroy(conf);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("librdkafka property \"%s\" is set by tributary", name),
						 errdetail("tributary relies on it for exactly-once delivery into PostgreSQL."),
						 errhint("Use the stream options \"brokers\" and \"group\" instead of bootstrap.servers and group.id.")));
			}
			value = TribJsonbScalarText(&v);
			if (value == NULL)
			{
				rd_kafka_conf_destroy(conf);
				TribBadOption(def, "librdkafka", "an object whose values are strings, numbers or booleans");
			}
			if (vetting && !superuser() &&
				!TribKafkaPropertyPermitted(name, v.type == jbvString ? value : NULL, GetUserId()))
				continue;
			TribKafkaSet(conf, name, value, def);
		}
	}
	return conf;
}

void
TribKafkaValidateOptions(StreamDef *def)
{
	TribKafkaOptions o;

	TribKafkaParseOptions(def, &o);
	rd_kafka_conf_destroy(TribKafkaConf(def, &o, true));
}

/*
 * Lock partitions of the stream for the rest of the transaction: the partition fence.
 * Every transaction that reads a partition's stored offset to act on it (positioning an
 * assigned partition, a batch) takes it first, so two workers holding one partition for a
 * moment take turns, and the second sees what the first stored. The lock is an advisory
 * lock of the database keyed by hashes of the stream's name (tributary.offsets is keyed by
 * name) and of topic and partition, with TRIB_LOCKTAG_PARTITION apart from the SQL
 * functions' keys. Locks are taken in key order, so two workers cannot deadlock (a hash
 * collision only makes two partitions share a lock).
 */
static int
TribUint32Cmp(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
}

static void
TribKafkaLockPartitions(TribKafka *k, rd_kafka_topic_partition_list_t *parts)
{
	uint32		stream = hash_bytes((const unsigned char *) k->def->name, (int) strlen(k->def->name));
	uint32	   *keys = palloc(sizeof(uint32) * Max(parts->cnt, 1));

	for (int i = 0; i < parts->cnt; i++)
		keys[i] = hash_combine(hash_bytes((const unsigned char *) parts->elems[i].topic,
										  (int) strlen(parts->elems[i].topic)),
							   (uint32) parts->elems[i].partition);
	qsort(keys, parts->cnt, sizeof(uint32), TribUint32Cmp);
	for (int i = 0; i < parts->cnt; i++)
	{
		LOCKTAG		tag;

		if (i > 0 && keys[i] == keys[i - 1])
			continue;
		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, stream, keys[i], TRIB_LOCKTAG_PARTITION);
		(void) LockAcquire(&tag, ExclusiveLock, false, false);
	}
	pfree(keys);
}

/*
 * Set the start offset of each newly assigned partition: the stored next offset, or,
 * where none is stored yet, what the "start" option says. With a "group" given by option
 * and "start" earliest or latest, a partition without a stored offset starts at the
 * group's committed offset where it has one (rd_kafka_committed, one request for all of
 * them): so a partition that moves to a server sharing the group, and never had it, goes
 * on where the group's last member left off. The stored offsets are read in a transaction
 * of their own behind the partition fence: a position read while another worker's batch of
 * the partition is in flight would skip (start "latest", a group's offset) or repeat what
 * that batch stores.
 */
static void
TribKafkaSetStartOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *parts)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(k->def->name);
	bool		timestamps = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* wait for a batch of these partitions that another worker has in flight */
	TribKafkaLockPartitions(k, parts);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	SPI_execute_with_args("SELECT topic, partition, next_offset FROM tributary.offsets WHERE stream = $1",
						  1, &type, &arg, NULL, true, 0);
	for (int i = 0; i < parts->cnt; i++)
	{
		rd_kafka_topic_partition_t *p = &parts->elems[i];
		bool		stored = false;

		for (uint64 r = 0; r < SPI_processed && !stored; r++)
		{
			HeapTuple	tup = SPI_tuptable->vals[r];
			bool		isnull;

			if (DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)) == p->partition &&
				strcmp(SPI_getvalue(tup, SPI_tuptable->tupdesc, 1), p->topic) == 0)
			{
				p->offset = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
				stored = true;
			}
		}
		if (stored)
			continue;
		switch (k->opts.start)
		{
			case TRIB_START_EARLIEST:
				p->offset = k->opts.group_given ? RD_KAFKA_OFFSET_INVALID : RD_KAFKA_OFFSET_BEGINNING;
				break;
			case TRIB_START_LATEST:
				p->offset = k->opts.group_given ? RD_KAFKA_OFFSET_INVALID : RD_KAFKA_OFFSET_END;
				break;
			case TRIB_START_OFFSETS:
				{
					char		key[16];
					JsonbValue *v;
					int64		offset;

					snprintf(key, sizeof(key), "%d", p->partition);
					v = getKeyJsonValueFromContainer(&k->opts.start_offsets->root, key, strlen(key), NULL);
					p->offset = v != NULL && TribJsonbInteger(v, &offset) ? offset :
						RD_KAFKA_OFFSET_BEGINNING;
					break;
				}
			case TRIB_START_TIMESTAMP:
				p->offset = k->opts.start_ms;
				timestamps = true;
				break;
		}
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();

	if (k->opts.group_given)
	{
		/* no stored offset: the group's committed offset where it has one, else "start" */
		rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(parts->cnt);
		rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;

		for (int i = 0; i < parts->cnt; i++)
			if (parts->elems[i].offset == RD_KAFKA_OFFSET_INVALID)
				rd_kafka_topic_partition_list_add(q, parts->elems[i].topic, parts->elems[i].partition);
		if (q->cnt > 0)
			err = rd_kafka_committed(k->rk, q, 10000);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_topic_partition_list_destroy(q);
			elog(ERROR, "could not read the committed offsets of group \"%s\": %s",
				 k->opts.group, rd_kafka_err2str(err));
		}
		for (int i = 0; i < q->cnt; i++)
		{
			rd_kafka_topic_partition_t *dst =
				rd_kafka_topic_partition_list_find(parts, q->elems[i].topic, q->elems[i].partition);

			dst->offset = q->elems[i].offset >= 0 ? q->elems[i].offset :
				k->opts.start == TRIB_START_LATEST ? RD_KAFKA_OFFSET_END : RD_KAFKA_OFFSET_BEGINNING;
		}
		rd_kafka_topic_partition_list_destroy(q);
	}

	if (timestamps)
	{
		/* only the partitions without a stored offset carry a timestamp here */
		rd_kafka_topic_partition_list_t *q = rd_kafka_topic_partition_list_new(parts->cnt);
		rd_kafka_resp_err_t err;

		for (int i = 0; i < parts->cnt; i++)
			if (parts->elems[i].offset == k->opts.start_ms)
				rd_kafka_topic_partition_list_add(q, parts->elems[i].topic,
												  parts->elems[i].partition)->offset = k->opts.start_ms;
		err = rd_kafka_offsets_for_times(k->rk, q, 10000);
		if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			rd_kafka_topic_partition_list_destroy(q);
			elog(ERROR, "could not look up offsets by timestamp: %s", rd_kafka_err2str(err));
		}
		for (int i = 0; i < q->cnt; i++)
		{
			rd_kafka_topic_partition_t *dst =
				rd_kafka_topic_partition_list_find(parts, q->elems[i].topic, q->elems[i].partition);

			dst->offset = q->elems[i].offset >= 0 ? q->elems[i].offset : RD_KAFKA_OFFSET_END;
		}
		rd_kafka_topic_partition_list_destroy(q);
	}
}

/*
 * librdkafka's incremental (un)assign returns an error object to free. Inside the
 * rebalance callback there is nobody to tell (librdkafka logs it, and the consumer's next
 * error reaches last_error).
 */
static void
TribKafkaDiscardError(rd_kafka_error_t *error)
{
	if (error != NULL)
		rd_kafka_error_destroy(error);
}

/*
 * Partitions are being revoked: give back the held messages of those partitions (their
 * next owner reads them again from the stored offsets) and keep the others. The eager
 * protocol revokes everything; a cooperative one only some, and dropping a message of a
 * partition that stays assigned would skip it.
 */
static void
TribKafkaDropRevoked(TribKafka *k, rd_kafka_topic_partition_list_t *revoked)
{
	int			kept = 0;

	for (int i = 0; i < k->held; i++)
	{
		rd_kafka_message_t *m = k->batch[i];

		if (rd_kafka_topic_partition_list_find(revoked, rd_kafka_topic_name(m->rkt), m->partition))
			rd_kafka_message_destroy(m);
		else
			k->batch[kept++] = m;
	}
	k->held = kept;
}

/* Called by librdkafka inside rd_kafka_consumer_poll: never let an ERROR longjmp out. */
static void
TribKafkaRebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
				   rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	TribKafka  *k = opaque;
	bool		cooperative = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	MemoryContext cxt = CurrentMemoryContext;

	/* LOG does not longjmp: safe inside librdkafka's frames */
	ereport(LOG,
			(errmsg("tributary stream \"%s\" worker #%d: %s %d partitions (%s rebalance)",
					k->def->name, k->index + 1,
					err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS ? "assigned" : "revoked",
					parts->cnt, cooperative ? "cooperative" : "eager")));
	if (err != RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
	{
		TribKafkaDropRevoked(k, parts);
		if (cooperative)
			TribKafkaDiscardError(rd_kafka_incremental_unassign(rk, parts));
		else
			(void) rd_kafka_assign(rk, NULL);
		return;
	}

	PG_TRY();
	{
		TribKafkaSetStartOffsets(k, parts);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		k->position_error = MemoryContextStrdup(TopMemoryContext, edata->message);
		return;					/* do not consume partitions we could not position */
	}
	PG_END_TRY();

	if (cooperative)
		TribKafkaDiscardError(rd_kafka_incremental_assign(rk, parts));
	else
		(void) rd_kafka_assign(rk, parts);
}

/*
 * Write the consumer's current trouble to last_error, once per distinct message, or clear
 * it (error NULL). A stream with several workers shares last_error: each worker prefixes
 * its errors with its number and clears only its own (and errors of no worker's), so one
 * worker's good batches do not hide another's trouble.
 */
static void
TribKafkaReport(TribKafka *k, const char *error)
{
	Oid			types[3] = {INT4OID, TEXTOID, TEXTOID};
	Datum		values[3];
	char		nulls[3] = "   ";
	const char *prefix = k->def->parallelism > 1 ? psprintf("worker #%d: ", k->index + 1) : "";

	/* librdkafka appends "(after 0ms in state CONNECT, 3 identical error(s) suppressed)" */
	if (error != NULL && strstr(error, " (after ") != NULL)
		error = pnstrdup(error, strstr(error, " (after ") - error);
	if ((error == NULL && k->reported_error == NULL) ||
		(error != NULL && k->reported_error != NULL && strcmp(error, k->reported_error) == 0))
		return;
	if (k->reported_error)
		pfree(k->reported_error);
	k->reported_error = error ? MemoryContextStrdup(TopMemoryContext, error) : NULL;
	if (error)
		ereport(LOG, (errmsg("tributary stream \"%s\": %s%s", k->def->name, prefix, error)));

	values[0] = Int32GetDatum(k->def->id);
	values[1] = error ? CStringGetTextDatum(psprintf("%s%s", prefix, error)) : (Datum) 0;
	nulls[1] = error ? ' ' : 'n';
	values[2] = CStringGetTextDatum(prefix);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	TribCatalogExecute(error ?
					   "UPDATE tributary.stream_catalog SET last_error = $2, last_error_at = pg_catalog.now() WHERE id = $1" :
					   "UPDATE tributary.stream_catalog SET last_error = $2 WHERE id = $1 AND last_error IS NOT NULL "
					   "AND (pg_catalog.starts_with(last_error, $3) "
					   "OR last_error OPERATOR(pg_catalog.!~) '^worker #[0-9]+: ')",
					   3, types, values, nulls);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * librdkafka's log lines, served by rd_kafka_consumer_poll on the worker's own thread
 * (log.queue), so they can go through ereport like any other log line.
 */
static void
TribKafkaLogCallback(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	ereport(level <= 3 ? WARNING : LOG,
			(errmsg_internal("librdkafka %s: %s", fac, buf)));
}

static void
TribKafkaErrorCallback(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	TribKafka  *k = opaque;

	/* reported from the main loop, outside librdkafka's frames */
	if (k->callback_error == NULL)
		k->callback_error = MemoryContextStrdup(TopMemoryContext,
												psprintf("%s: %s", rd_kafka_err2name(err), reason));
}

/* Give back the messages of an unfinished batch: they will be read again from the stored offsets. */
static void
TribKafkaReleaseHeld(TribKafka *k)
{
	for (int i = 0; i < k->held; i++)
		rd_kafka_message_destroy(k->batch[i]);
	k->held = 0;
}

/*
 * Leave the group so the partitions are reassigned at once rather than after the session
 * times out, but give it at most TRIB_KAFKA_CLOSE_MS: a dead broker must not hold up a
 * server shutdown.
 */
static void
TribKafkaLeaveGroup(rd_kafka_t *rk)
{
	rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), TRIB_KAFKA_CLOSE_MS);
	rd_kafka_error_t *error = rd_kafka_consumer_close_queue(rk, queue);

	if (error != NULL)
		rd_kafka_error_destroy(error);
	else
		while (!rd_kafka_consumer_closed(rk) && GetCurrentTimestamp() < deadline)
		{
			rd_kafka_event_t *ev = rd_kafka_queue_poll(queue, 100);

			if (ev != NULL)
			{
				/* a rebalance during close: give up the partitions */
				if (rd_kafka_event_type(ev) == RD_KAFKA_EVENT_REBALANCE)
				{
					if (strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0)
						TribKafkaDiscardError(rd_kafka_incremental_unassign(rk, rd_kafka_event_topic_partition_list(ev)));
					else
						(void) rd_kafka_assign(rk, NULL);
				}
				rd_kafka_event_destroy(ev);
			}
		}
	rd_kafka_queue_destroy(queue);
}

/* At process exit: leave the group; the process ends, so librdkafka is not torn down. */
static void
TribKafkaAtExit(int code, Datum arg)
{
	if (current_consumer == NULL || current_consumer->rk == NULL)
		return;
	TribKafkaReleaseHeld(current_consumer);
	TribKafkaLeaveGroup(current_consumer->rk);
	current_consumer->rk = NULL;
}

/* Before a reload: leave the group and free the consumer. */
static void
TribKafkaClose(TribKafka *k)
{
	TribKafkaReleaseHeld(k);
	TribKafkaLeaveGroup(k->rk);
	rd_kafka_destroy_flags(k->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	k->rk = NULL;
}

/*
 * Learn the leaders of the stream's topics before a static assignment. librdkafka starts a
 * partition whose leader it does not know yet on a fixed 500 ms timer (its offset query
 * waits for the next metadata), which is a third of a small stream's start. One metadata
 * request for all topics, bounded; when it fails or times out (broker down, topic missing)
 * librdkafka finds the leaders by itself later, and the error is reported from there.
 */
static void
TribKafkaLearnLeaders(TribKafka *k)
{
	List	   *handles = NIL;
	ListCell   *lc;
	const struct rd_kafka_metadata *md;

	foreach(lc, k->opts.topics)
	{
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, lfirst(lc), NULL);

		if (rkt != NULL)
			handles = lappend(handles, rkt);
	}
	/* all_topics = 0 and no topic: the topics this handle knows, i.e. those just named */
	if (rd_kafka_metadata(k->rk, 0, NULL, &md, TRIB_KAFKA_LEADERS_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
	foreach(lc, handles)
		rd_kafka_topic_destroy(lfirst(lc));
	list_free(handles);
}

/*
 * Static group membership: with librdkafka's group.instance.id set, worker n of the stream
 * joins as "<id>-<n>". Members sharing one instance id fence each other (the broker keeps
 * one and fails the other, whose restart then fails the first), so the workers of a stream
 * must not share it. The suffix is there with one worker too: a worker kept across a
 * change of parallelism keeps its id, and a new worker cannot take it. Returns the id this
 * worker uses, or NULL.
 */
static char *
TribKafkaSetInstance(rd_kafka_conf_t *conf, StreamDef *def, int index)
{
	size_t		size = 0;
	char	   *value;
	char	   *instance;

	if (rd_kafka_conf_get(conf, "group.instance.id", NULL, &size) != RD_KAFKA_CONF_OK || size <= 1)
		return NULL;
	value = palloc(size);
	if (rd_kafka_conf_get(conf, "group.instance.id", value, &size) != RD_KAFKA_CONF_OK || value[0] == '\0')
		return NULL;
	instance = psprintf("%s-%d", value, index + 1);
	TribKafkaSet(conf, "group.instance.id", instance, def);
	return instance;
}

static TribKafka *
TribKafkaOpen(StreamDef *def, int index)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "tributary kafka consumer",
											  ALLOCSET_SMALL_SIZES);
	TribKafka  *k = MemoryContextAllocZero(cxt, sizeof(TribKafka));
	rd_kafka_conf_t *conf;
	rd_kafka_topic_partition_list_t *topics;
	char		errstr[512];
	ListCell   *lc;
	rd_kafka_resp_err_t err;
	MemoryContext old;

	k->cxt = cxt;
	k->def = def;
	k->index = index;
	/* unknown: whatever an earlier worker left in last_error goes at the first good batch */
	k->reported_error = MemoryContextStrdup(TopMemoryContext, "");
	/* options name the database and parse timestamps: catalog access needs a transaction */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	old = MemoryContextSwitchTo(cxt);
	TribKafkaParseOptions(def, &k->opts);
	conf = TribKafkaConf(def, &k->opts, false);
	k->instance = TribKafkaSetInstance(conf, def, index);
	MemoryContextSwitchTo(old);
	CommitTransactionCommand();
	rd_kafka_conf_set_opaque(conf, k);
	rd_kafka_conf_set_rebalance_cb(conf, TribKafkaRebalance);
	rd_kafka_conf_set_error_cb(conf, TribKafkaErrorCallback);
	rd_kafka_conf_set_log_cb(conf, TribKafkaLogCallback);
	if (rd_kafka_conf_set(conf, "log.queue", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
		elog(ERROR, "librdkafka: %s", errstr);
	k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
	if (k->rk == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create a Kafka consumer for stream \"%s\"", def->name),
				 errdetail("librdkafka: %s", errstr)));
	(void) rd_kafka_set_log_queue(k->rk, NULL);	/* the main queue, served by our polls */
	rd_kafka_poll_set_consumer(k->rk);
	current_consumer = k;

	if (k->opts.partitions != NIL)
	{
		/*
		 * Static assignment: exactly these partitions of every topic, no group
		 * rebalancing. Several workers deal the list out: worker i takes the entries at
		 * positions i, i + parallelism, ...
		 */
		ListCell   *pc;

		topics = rd_kafka_topic_partition_list_new(list_length(k->opts.topics) *
												   list_length(k->opts.partitions));
		foreach(lc, k->opts.topics)
			foreach(pc, k->opts.partitions)
				if (foreach_current_index(pc) % def->parallelism == index)
					rd_kafka_topic_partition_list_add(topics, lfirst(lc), lfirst_int(pc));
		if (topics->cnt == 0)
			ereport(LOG,
					(errmsg("tributary stream \"%s\": worker #%d has no partition to consume",
							def->name, index + 1),
					 errdetail("Option \"partitions\" lists %d partitions, option \"parallelism\" is %d.",
							   list_length(k->opts.partitions), def->parallelism)));
		TribKafkaLearnLeaders(k);
		TribKafkaSetStartOffsets(k, topics);
		err = rd_kafka_assign(k->rk, topics);
	}
	else
	{
		topics = rd_kafka_topic_partition_list_new(list_length(k->opts.topics));
		foreach(lc, k->opts.topics)
			rd_kafka_topic_partition_list_add(topics, lfirst(lc), RD_KAFKA_PARTITION_UA);
		err = rd_kafka_subscribe(k->rk, topics);
	}
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not subscribe stream \"%s\" to its topics", def->name),
				 errdetail("librdkafka: %s", rd_kafka_err2str(err))));
	return k;
}

/*
 * Outside librdkafka's frames: raise the error of a failed positioning (the worker exits
 * and the launcher restarts it), and report what the error callback saw.
 */
static void
TribKafkaCheckCallbacks(TribKafka *k)
{
	char	   *error = k->callback_error;

	if (k->position_error != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" could not position its assigned partitions: %s",
						k->def->name, k->position_error)));
	if (error == NULL)
		return;
	k->callback_error = NULL;
	TribKafkaReport(k, error);
	pfree(error);
}

/*
 * A partition has no valid position: its stored offset (or its "start" offset, or the
 * group's) is past the partition's end or before its start, because the topic was deleted
 * and re-created, or retention removed messages before they were consumed; or, with a
 * group given by option, neither a stored nor a committed offset exists. (librdkafka is
 * told auto.offset.reset=error so this comes here rather than being reset quietly.) Go on
 * from the partition's start, or its end for "start": "latest", and store that position
 * behind the partition fence first: otherwise the fence would take the old, higher stored
 * offset for messages another worker stored, and skip a re-created topic's messages.
 */
static void
TribKafkaResetPartition(TribKafka *k, const char *topic, int32 partition, const char *why)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(parts, topic, partition);
	int64_t		low;
	int64_t		high;
	rd_kafka_resp_err_t err;
	rd_kafka_error_t *error;
	int64		stored = -1;
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT8OID};
	Datum		values[4];

	err = rd_kafka_query_watermark_offsets(k->rk, topic, partition, &low, &high, 10000);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_topic_partition_list_destroy(parts);
		TribKafkaReport(k, psprintf("%s: partition %d of topic \"%s\" is out of range and its bounds are unknown: %s",
									rd_kafka_err2name(err), partition, topic, rd_kafka_err2str(err)));
		return;					/* librdkafka reports the reset again at the next fetch */
	}
	p->offset = k->opts.start == TRIB_START_LATEST ? high : low;

	values[0] = CStringGetTextDatum(k->def->name);
	values[1] = CStringGetTextDatum(topic);
	values[2] = Int32GetDatum(partition);
	values[3] = Int64GetDatum(p->offset);
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	TribKafkaLockPartitions(k, parts);
	PushActiveSnapshot(GetTransactionSnapshot());
	SPI_connect();
	SPI_execute_with_args("SELECT next_offset FROM tributary.offsets WHERE stream = $1 AND topic = $2 AND partition = $3",
						  3, types, values, NULL, false, 1);
	if (SPI_processed == 1)
	{
		bool		isnull;

		stored = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_finish();
	TribCatalogExecute("INSERT INTO tributary.offsets AS o (stream, topic, partition, next_offset, updated_at) "
					   "VALUES ($1, $2, $3, $4, pg_catalog.now()) "
					   "ON CONFLICT (stream, topic, partition) DO UPDATE "
					   "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
					   4, types, values, NULL);
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (stored >= 0)
		ereport(WARNING,
				(errmsg("tributary stream \"%s\": stored offset " INT64_FORMAT " of partition %d of topic \"%s\" is out of range; going on at offset " INT64_FORMAT,
						k->def->name, stored, partition, topic, (int64) p->offset),
				 errdetail("librdkafka: %s. The partition holds offsets " INT64_FORMAT " to " INT64_FORMAT ".",
						   why, (int64) low, (int64) high),
				 errhint("The topic was deleted and re-created, or retention removed messages before they were consumed.")));
	else
		ereport(LOG,
				(errmsg("tributary stream \"%s\": partition %d of topic \"%s\" starts at offset " INT64_FORMAT,
						k->def->name, partition, topic, (int64) p->offset),
				 errdetail("librdkafka: %s.", why)));

	/*
	 * librdkafka stopped fetching the partition, and a seek is refused in that state: assign
	 * it again from the stored offsets. The cooperative protocol can do that for this one
	 * partition; otherwise the whole assignment is given again, and the held messages go
	 * back (they are read again from the stored offsets).
	 */
	if (strcmp(rd_kafka_rebalance_protocol(k->rk), "COOPERATIVE") == 0)
	{
		TribKafkaDropRevoked(k, parts);
		error = rd_kafka_incremental_unassign(k->rk, parts);
		if (error == NULL)
		{
			TribKafkaSetStartOffsets(k, parts);
			error = rd_kafka_incremental_assign(k->rk, parts);
		}
	}
	else
	{
		rd_kafka_topic_partition_list_t *assigned;

		err = rd_kafka_assignment(k->rk, &assigned);
		if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			TribKafkaReleaseHeld(k);
			TribKafkaSetStartOffsets(k, assigned);
			err = rd_kafka_assign(k->rk, assigned);
			rd_kafka_topic_partition_list_destroy(assigned);
		}
		error = err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_error_new(err, "%s", rd_kafka_err2str(err)) : NULL;
	}
	if (error != NULL)
	{
		TribKafkaReport(k, psprintf("could not position partition %d of topic \"%s\" again: %s",
									partition, topic, rd_kafka_error_string(error)));
		rd_kafka_error_destroy(error);
	}
	rd_kafka_topic_partition_list_destroy(parts);
}

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

	while (k->held < k->def->batch_size)
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

/* The partition TribKafkaPartitionOf found last: messages come in runs from one partition. */
typedef struct TribKafkaLastPartition
{
	int			index;			/* in the list; -1 when none yet */
	rd_kafka_topic_t *rkt;		/* the topic of the message that found it */
} TribKafkaLastPartition;

/* The element of list for msg's partition, added when missing (offset INVALID). */
static rd_kafka_topic_partition_t *
TribKafkaPartitionOf(rd_kafka_topic_partition_list_t *list, rd_kafka_message_t *msg,
					 TribKafkaLastPartition *last)
{
	const char *topic;
	rd_kafka_topic_partition_t *p;

	if (last->index >= 0 && last->rkt == msg->rkt &&
		list->elems[last->index].partition == msg->partition)
		return &list->elems[last->index];
	topic = rd_kafka_topic_name(msg->rkt);
	p = rd_kafka_topic_partition_list_find(list, topic, msg->partition);
	if (p == NULL)
		p = rd_kafka_topic_partition_list_add(list, topic, msg->partition);
	last->index = (int) (p - list->elems);
	last->rkt = msg->rkt;
	return p;
}

/*
 * Fence the batch against another worker of the stream that holds, or held, one of its
 * partitions: lock each partition the batch covers (TribKafkaLockPartitions), read the
 * stored next offsets with a snapshot taken after the locks, and give back the messages
 * below them: another worker has stored those. Runs first in the batch's transaction.
 */
static void
TribKafkaFence(TribKafka *k)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
	int64	   *skipped;
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(k->def->name);
	TribKafkaLastPartition last = {-1, NULL};
	int			kept = 0;

	for (int i = 0; i < k->held; i++)
		(void) TribKafkaPartitionOf(parts, k->batch[i], &last);
	TribKafkaLockPartitions(k, parts);

	SPI_connect();
	SPI_execute_with_args("SELECT topic, partition, next_offset FROM tributary.offsets WHERE stream = $1",
						  1, &type, &arg, NULL, false, 0);
	for (uint64 r = 0; r < SPI_processed; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		bool		isnull;
		rd_kafka_topic_partition_t *p =
			rd_kafka_topic_partition_list_find(parts, SPI_getvalue(tup, SPI_tuptable->tupdesc, 1),
											   DatumGetInt32(SPI_getbinval(tup, SPI_tuptable->tupdesc, 2, &isnull)));

		if (p != NULL)
			p->offset = DatumGetInt64(SPI_getbinval(tup, SPI_tuptable->tupdesc, 3, &isnull));
	}
	SPI_finish();

	skipped = palloc0(sizeof(int64) * parts->cnt);
	last.index = -1;
	for (int i = 0; i < k->held; i++)
	{
		rd_kafka_message_t *m = k->batch[i];
		rd_kafka_topic_partition_t *p = TribKafkaPartitionOf(parts, m, &last);

		if (m->offset < p->offset)
		{
			skipped[p - parts->elems]++;
			rd_kafka_message_destroy(m);
		}
		else
			k->batch[kept++] = m;
	}
	k->held = kept;
	for (int i = 0; i < parts->cnt; i++)
		if (skipped[i] > 0)
			ereport(LOG,
					(errmsg("tributary stream \"%s\" worker #%d skipped " INT64_FORMAT " messages of partition %d of topic \"%s\" stored by another worker",
							k->def->name, k->index + 1, skipped[i], parts->elems[i].partition,
							parts->elems[i].topic),
					 errdetail("The partition's stored next offset is " INT64_FORMAT ".",
							   parts->elems[i].offset)));
	rd_kafka_topic_partition_list_destroy(parts);
}

/* A batch's share per partition: the next offset to read and what the batch did there. */
typedef struct TribKafkaTally
{
	rd_kafka_topic_partition_list_t *next;	/* one element per partition, offset = next */
	int64	   *counts;			/* per element: messages, rows, dead letters, bytes */
} TribKafkaTally;

#define TRIB_TALLY_FIELDS 4

/* One pass over the processed batch: each message's partition is looked up once. */
static void
TribKafkaTallyBatch(TribKafkaTally *t, rd_kafka_message_t **batch, TribMessageResult *results, int n)
{
	TribKafkaLastPartition last = {-1, NULL};

	t->next = rd_kafka_topic_partition_list_new(16);
	t->counts = palloc0(sizeof(int64) * TRIB_TALLY_FIELDS * n);
	for (int i = 0; i < n; i++)
	{
		rd_kafka_topic_partition_t *p = TribKafkaPartitionOf(t->next, batch[i], &last);
		int64	   *c;

		p->offset = Max(p->offset, batch[i]->offset + 1);
		c = &t->counts[(p - t->next->elems) * TRIB_TALLY_FIELDS];
		c[0] += 1;
		c[1] += results[i].outcome == TRIB_INSERTED;
		c[2] += results[i].outcome == TRIB_DEAD;
		c[3] += batch[i]->len;
	}
}

/* Store the next offset of every partition the batch covers, in the batch's transaction. */
static void
TribKafkaStoreOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *next)
{
	Datum	   *topics;
	Datum	   *partitions;
	Datum	   *offsets;
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, INT4ARRAYOID, INT8ARRAYOID};
	Datum		values[4];

	topics = palloc(sizeof(Datum) * next->cnt);
	partitions = palloc(sizeof(Datum) * next->cnt);
	offsets = palloc(sizeof(Datum) * next->cnt);
	for (int i = 0; i < next->cnt; i++)
	{
		topics[i] = CStringGetTextDatum(next->elems[i].topic);
		partitions[i] = Int32GetDatum(next->elems[i].partition);
		offsets[i] = Int64GetDatum(next->elems[i].offset);
	}
	values[0] = CStringGetTextDatum(k->def->name);
	values[1] = PointerGetDatum(construct_array(topics, next->cnt, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(partitions, next->cnt, INT4OID, 4, true, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(offsets, next->cnt, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	TribCatalogExecute("INSERT INTO tributary.offsets AS o (stream, topic, partition, next_offset, updated_at) "
					   "SELECT $1, u.t, u.p, u.n, pg_catalog.now() "
					   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, p, n) "
					   "ON CONFLICT (stream, topic, partition) DO UPDATE "
					   "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
					   4, types, values, NULL);
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
		StringInfoData hex;

		initStringInfo(&hex);
		appendStringInfoString(&hex, "\\x");
		for (size_t b = 0; b < size; b++)
			appendStringInfo(&hex, "%02x", ((const unsigned char *) data)[b]);
		escape_json(buf, hex.data);
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

/*
 * What the consumer is built from: the options that shape it, and this worker's share of
 * a static partition list. Two definitions with the same signature can share a consumer;
 * batching, format and metadata options do not matter to it.
 */
static char *
TribKafkaSignature(StreamDef *def, int index)
{
	static const char *const keys[] = {"brokers", "topic", "group", "start", "librdkafka", "partitions"};
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(keys); i++)
	{
		JsonbValue *v = TribOption(def, keys[i]);

		appendStringInfo(&buf, "%s=", keys[i]);
		if (v != NULL)
		{
			Jsonb	   *jb = JsonbValueToJsonb(v);

			appendStringInfoString(&buf, JsonbToCString(NULL, &jb->root, VARSIZE(jb)));
		}
		appendStringInfoChar(&buf, ';');
	}
	if (TribOption(def, "partitions") != NULL)
		appendStringInfo(&buf, "share=%d/%d", index, def->parallelism);
	return buf.data;
}

/* Give up the consumer: leave the group, free it. */
static void
TribKafkaDrop(TribKafka *k)
{
	TribKafkaClose(k);
	current_consumer = NULL;
	MemoryContextDelete(k->cxt);
}

void
TribKafkaRun(StreamDef *def, int index)
{
	TribKafka  *k = current_consumer;
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
	.options = kafka_options,
	.validate = TribKafkaValidateOptions,
	.check_rights = TribKafkaCheckPropertyRights,
	.run = TribKafkaRun,
};
