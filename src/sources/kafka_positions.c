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
 * step).
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
#include "sources/kafka_internal.h"

/* field4 of the advisory lock tag of a partition fence, apart from the SQL functions' 1 and 2 */
#define TRIB_LOCKTAG_PARTITION 0x5452

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
void
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

/* One pass over the processed batch: each message's partition is looked up once. */
void
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
void
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
