/*
 * kafka_positions.c
 *		Where each assigned partition is read from, the partition fence, and the offsets a
 *		batch stores.
 *
 * Several workers (option "parallelism") share a stream's partitions: as members of one
 * consumer group, or by splitting a static "partitions" list. Two of them can hold one
 * partition for a moment (a worker stuck in a batch past max.poll.interval.ms loses its
 * partitions to another; a static split changes on alter_stream), so every batch first
 * takes a transaction lock per partition it covers and drops the messages below the
 * partition's stored next offset, which another worker has stored already.
 *
 * Positions come from tributary.offsets (TribKafkaSetStartOffsets, on every assignment and
 * after a reset out of range), and a batch's next offsets go back there in the batch's own
 * transaction (TribKafkaTallyBatch and TribKafkaStoreOffsets, from the batch path's settle
 * step). The table is source-neutral: a Kafka partition's row holds the topic, the partition
 * number and the next offset as text, read back strictly (TribKafkaReadOffsets). Before
 * ALTER EXTENSION UPDATE to 0.3.0 it has 0.2.0's integer columns, which are used instead.
 *
 * Locks: the partition fence, an advisory lock per partition taken in key order and held
 * to the end of the transaction (TribKafkaLockPartitions).
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"

#include "catalog.h"
#include "optvalue.h"
#include "position.h"
#include "sources/kafka.h"
#include "sources/kafka_internal.h"

/* field4 of the advisory lock tag of a partition fence, apart from the SQL functions' 1 and 2 */
#define TRIB_LOCKTAG_PARTITION 0x5452

/* One row of tributary.offsets of a Kafka stream, read as numbers. */
typedef struct TribKafkaStored
{
	char	   *topic;
	int32		partition;
	int64		offset;
} TribKafkaStored;

static void TribKafkaBadPosition(const char *stream, const char *table, const char *topic,
								 const char *partition, const char *position,
								 const char *hint) pg_attribute_noreturn();

/*
 * A stored Kafka position that is not one, in tributary.offsets (where hint says what to
 * do) or tributary.dead_letters. Going on would read it as some number: consume the
 * partition again from its start, or skip to where nothing was stored.
 */
static void
TribKafkaBadPosition(const char *stream, const char *table, const char *topic,
					 const char *partition, const char *position, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
			 errmsg("tributary stream \"%s\" has a malformed Kafka position in tributary.%s: partition \"%s\", position \"%s\" of topic \"%s\"",
					stream, table, partition ? partition : "", position ? position : "",
					topic ? topic : ""),
			 errdetail("A Kafka stream stores the partition number and the offset as decimal integers without sign or leading zeros."),
			 errhint("%s", hint)));
}

/*
 * The stream's stored offsets, every row read strictly (TribKafkaBadPosition). read_only
 * as SPI takes it: false reads with a snapshot taken now, after the partition fence.
 */
static int
TribKafkaReadOffsets(TribKafka *k, bool read_only, TribKafkaStored **stored)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(k->def->name);
	MemoryContext cxt = CurrentMemoryContext;
	int			n;

	SPI_connect();
	TribSpiExecute(TribCatalogHasTextPositions() ?
						  "SELECT source_stream, source_partition, position "
						  "FROM tributary.offsets WHERE stream = $1" :
						  "SELECT topic, partition::pg_catalog.text, next_offset::pg_catalog.text "
						  "FROM tributary.offsets WHERE stream = $1",
						  1, &type, &arg, NULL, read_only, 0);
	n = (int) SPI_processed;
	*stored = MemoryContextAlloc(cxt, sizeof(TribKafkaStored) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		char	   *topic = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *partition = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		char	   *position = SPI_getvalue(tup, SPI_tuptable->tupdesc, 3);
		int64		p;
		int64		o;

		if (!TribPositionParseInteger(partition, PG_INT32_MAX, &p) ||
			!TribPositionParseInteger(position, PG_INT64_MAX, &o))
			TribKafkaBadPosition(k->def->name, "offsets", topic, partition, position,
								 "Correct the row, or delete it: the partition then starts where option \"start\" says.");
		(*stored)[i].topic = MemoryContextStrdup(cxt, topic);
		(*stored)[i].partition = (int32) p;
		(*stored)[i].offset = o;
	}
	SPI_finish();
	return n;
}

/*
 * Store the next offset of every partition of the list (a batch's, or a partition reset
 * out of range) in tributary.offsets, in the current transaction: one upsert for all.
 */
void
TribKafkaStoreOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *next)
{
	Datum	   *topics = palloc(sizeof(Datum) * Max(next->cnt, 1));
	Datum	   *partitions = palloc(sizeof(Datum) * Max(next->cnt, 1));
	Datum	   *offsets = palloc(sizeof(Datum) * Max(next->cnt, 1));
	Oid			types[4] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[4];

	for (int i = 0; i < next->cnt; i++)
	{
		topics[i] = CStringGetTextDatum(next->elems[i].topic);
		partitions[i] = CStringGetTextDatum(psprintf("%d", next->elems[i].partition));
		offsets[i] = CStringGetTextDatum(psprintf(INT64_FORMAT, (int64) next->elems[i].offset));
	}
	values[0] = CStringGetTextDatum(k->def->name);
	values[1] = PointerGetDatum(construct_array(topics, next->cnt, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(partitions, next->cnt, TEXTOID, -1, false, TYPALIGN_INT));
	values[3] = PointerGetDatum(construct_array(offsets, next->cnt, TEXTOID, -1, false, TYPALIGN_INT));
	TribCatalogExecute(TribCatalogHasTextPositions() ?
					   "INSERT INTO tributary.offsets AS o "
					   "(stream, source_stream, source_partition, position, updated_at) "
					   "SELECT $1, u.t, u.p, u.n, pg_catalog.now() "
					   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, p, n) "
					   "ON CONFLICT (stream, source_stream, source_partition) DO UPDATE "
					   "SET position = excluded.position, updated_at = excluded.updated_at" :
					   "INSERT INTO tributary.offsets AS o (stream, topic, partition, next_offset, updated_at) "
					   "SELECT $1, u.t, u.p::pg_catalog.int4, u.n::pg_catalog.int8, pg_catalog.now() "
					   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3), pg_catalog.unnest($4)) AS u(t, p, n) "
					   "ON CONFLICT (stream, topic, partition) DO UPDATE "
					   "SET next_offset = excluded.next_offset, updated_at = excluded.updated_at",
					   4, types, values, NULL);
}

/* qsort's order for the partition fence's lock keys. */
static int
TribUint32Cmp(const void *a, const void *b)
{
	uint32		x = *(const uint32 *) a;
	uint32		y = *(const uint32 *) b;

	return x < y ? -1 : x > y ? 1 : 0;
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
void
TribKafkaSetStartOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *parts)
{
	TribKafkaStored *stored;
	int			nstored;
	bool		timestamps = false;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	/* wait for a batch of these partitions that another worker has in flight */
	TribKafkaLockPartitions(k, parts);
	PushActiveSnapshot(GetTransactionSnapshot());
	nstored = TribKafkaReadOffsets(k, true, &stored);
	for (int i = 0; i < parts->cnt; i++)
	{
		rd_kafka_topic_partition_t *p = &parts->elems[i];
		bool		found = false;

		for (int r = 0; r < nstored && !found; r++)
		{
			if (stored[r].partition == p->partition && strcmp(stored[r].topic, p->topic) == 0)
			{
				p->offset = stored[r].offset;
				found = true;
			}
		}
		if (found)
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
 * A partition has no valid position: its stored offset (or its "start" offset, or the
 * group's) is past the partition's end or before its start, because the topic was deleted
 * and re-created, or retention removed messages before they were consumed; or, with a
 * group given by option, neither a stored nor a committed offset exists. (librdkafka is
 * told auto.offset.reset=error so this comes here rather than being reset quietly.) Go on
 * from the partition's start, or its end for "start": "latest", and store that position
 * behind the partition fence first: otherwise the fence would take the old, higher stored
 * offset for messages another worker stored, and skip a re-created topic's messages.
 */
void
TribKafkaResetPartition(TribKafka *k, const char *topic, int32 partition, const char *why)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_add(parts, topic, partition);
	int64_t		low;
	int64_t		high;
	rd_kafka_resp_err_t err;
	rd_kafka_error_t *error;
	int64		stored = -1;
	TribKafkaStored *rows;
	int			nrows;

	err = rd_kafka_query_watermark_offsets(k->rk, topic, partition, &low, &high, 10000);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_topic_partition_list_destroy(parts);
		TribKafkaReport(k, psprintf("%s: partition %d of topic \"%s\" is out of range and its bounds are unknown: %s",
									rd_kafka_err2name(err), partition, topic, rd_kafka_err2str(err)));
		return;					/* librdkafka reports the reset again at the next fetch */
	}
	p->offset = k->opts.start == TRIB_START_LATEST ? high : low;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	TribKafkaLockPartitions(k, parts);
	PushActiveSnapshot(GetTransactionSnapshot());
	nrows = TribKafkaReadOffsets(k, false, &rows);
	for (int r = 0; r < nrows; r++)
		if (rows[r].partition == partition && strcmp(rows[r].topic, topic) == 0)
			stored = rows[r].offset;
	TribKafkaStoreOffsets(k, parts);
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

/* The partition TribKafkaPartitionOf found last: messages come in runs from one partition. */
typedef struct TribKafkaLastPartition
{
	int			index;			/* in the list; -1 when none yet */
	const char *topic;			/* the topic name pointer of the message that found it */
} TribKafkaLastPartition;

/*
 * The element of list for a message's partition, added when missing (offset INVALID).
 * Reads the batch's TribMessages, which lie in one array, rather than librdkafka's
 * messages scattered over its heap: a message's topic is the name of its topic handle,
 * one pointer per topic.
 */
static rd_kafka_topic_partition_t *
TribKafkaPartitionOf(rd_kafka_topic_partition_list_t *list, const TribMessage *msg,
					 TribKafkaLastPartition *last)
{
	rd_kafka_topic_partition_t *p;

	if (last->index >= 0 && last->topic == msg->topic &&
		list->elems[last->index].partition == msg->partition)
		return &list->elems[last->index];
	p = rd_kafka_topic_partition_list_find(list, msg->topic, msg->partition);
	if (p == NULL)
		p = rd_kafka_topic_partition_list_add(list, msg->topic, msg->partition);
	last->index = (int) (p - list->elems);
	last->topic = msg->topic;
	return p;
}

/*
 * Fence the batch against another worker of the stream that holds, or held, one of its
 * partitions: lock each partition the batch covers (TribKafkaLockPartitions), read the
 * stored next offsets with a snapshot taken after the locks, and give back the messages
 * below them: another worker has stored those. Runs first in the batch's transaction;
 * msgs[i] is held message k->batch[i].
 */
void
TribKafkaFence(TribKafka *k, const TribMessage *msgs)
{
	rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
	int64	   *skipped;
	TribKafkaStored *stored;
	int			nstored;
	TribKafkaLastPartition last = {-1, NULL};
	int			kept = 0;

	for (int i = 0; i < k->held; i++)
		(void) TribKafkaPartitionOf(parts, &msgs[i], &last);
	TribKafkaLockPartitions(k, parts);

	nstored = TribKafkaReadOffsets(k, false, &stored);
	for (int r = 0; r < nstored; r++)
	{
		rd_kafka_topic_partition_t *p =
			rd_kafka_topic_partition_list_find(parts, stored[r].topic, stored[r].partition);

		if (p != NULL)
			p->offset = stored[r].offset;
	}

	skipped = palloc0(sizeof(int64) * parts->cnt);
	last.index = -1;
	for (int i = 0; i < k->held; i++)
	{
		rd_kafka_topic_partition_t *p = TribKafkaPartitionOf(parts, &msgs[i], &last);

		Assert(msgs[i].origin == k->batch[i]);
		if (msgs[i].offset < p->offset)
		{
			skipped[p - parts->elems]++;
			rd_kafka_message_destroy(k->batch[i]);
		}
		else
			k->batch[kept++] = k->batch[i];
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

/*
 * One pass over the processed batch: each message's partition is looked up once; the
 * counts grow with the partitions found (a batch has few).
 */
void
TribKafkaTallyBatch(TribKafkaTally *t, const TribMessage *msgs, TribMessageResult *results, int n)
{
	TribKafkaLastPartition last = {-1, NULL};
	int			size = 16;

	t->next = rd_kafka_topic_partition_list_new(16);
	t->counts = palloc0(sizeof(int64) * TRIB_TALLY_FIELDS * size);
	for (int i = 0; i < n; i++)
	{
		rd_kafka_topic_partition_t *p = TribKafkaPartitionOf(t->next, &msgs[i], &last);
		int			index = (int) (p - t->next->elems);
		int64	   *c;

		if (index >= size)
		{
			int			more = Max(size * 2, index + 1);

			t->counts = repalloc(t->counts, sizeof(int64) * TRIB_TALLY_FIELDS * more);
			memset(t->counts + TRIB_TALLY_FIELDS * size, 0,
				   sizeof(int64) * TRIB_TALLY_FIELDS * (more - size));
			size = more;
		}
		p->offset = Max(p->offset, msgs[i].offset + 1);
		c = &t->counts[index * TRIB_TALLY_FIELDS];
		c[0] += 1;
		c[1] += results[i].outcome == TRIB_INSERTED;
		c[2] += results[i].outcome == TRIB_DEAD;
		c[3] += msgs[i].len;
	}
}

/*
 * The source routine's restore_position (source.h): a dead letter's partition and offset,
 * stored as text, back into numbers, so replay fills the metadata columns as the worker
 * did. NULL stays none (-1).
 */
void
TribKafkaRestorePosition(StreamDef *def, TribMessage *msg, const char *partition,
						 const char *position)
{
	int64		p = -1;
	int64		o = -1;

	if ((partition != NULL && !TribPositionParseInteger(partition, PG_INT32_MAX, &p)) ||
		(position != NULL && !TribPositionParseInteger(position, PG_INT64_MAX, &o)))
		TribKafkaBadPosition(def->name, "dead_letters", msg->topic, partition, position,
							 "Correct the dead letter's source_partition and source_position, or delete it.");
	msg->partition = (int32) p;
	msg->offset = o;
}
