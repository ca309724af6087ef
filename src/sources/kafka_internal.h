/*
 * kafka_internal.h
 *		What the files of the Kafka source share: the consumer, its resolved options, a
 *		batch's tally, and the functions one of them calls in another.
 *
 * kafka_options.c resolves a stream's options and librdkafka's configuration;
 * kafka_consumer.c opens, reuses and closes the consumer and serves librdkafka's callbacks;
 * kafka_positions.c positions partitions, fences batches and stores their offsets;
 * kafka.c collects batches, publishes statistics and holds the source routine, through
 * which the consume loop (consume.c) drives the rest. Only these files include this
 * header.
 */
#ifndef TRIBUTARY_KAFKA_INTERNAL_H
#define TRIBUTARY_KAFKA_INTERNAL_H

#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "nodes/pg_list.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "tributary.h"

/* Where a partition without a stored offset starts: the "start" option. */
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

/* A batch's share per partition: the next offset to read and what the batch did there. */
typedef struct TribKafkaTally
{
	rd_kafka_topic_partition_list_t *next;	/* one element per partition, offset = next */
	int64	   *counts;			/* per element: messages, rows, dead letters, bytes */
} TribKafkaTally;

#define TRIB_TALLY_FIELDS 4

/* One consumer: the source routine's opaque consumer (sources/source.h). */
/* kafka_reaper.c's thread, which destroys committed batches' messages */
typedef struct TribKafkaReaper TribKafkaReaper;

typedef struct TribKafka
{
	MemoryContext cxt;			/* lives as long as the consumer */
	StreamDef  *def;
	int			index;			/* which of the stream's workers this is */
	char	   *signature;		/* the options the consumer was built from (TribKafkaSignature) */
	TribKafkaOptions opts;
	rd_kafka_t *rk;
	rd_kafka_queue_t *queue;	/* the consumer queue, for taking fetched messages in runs */
	List	   *topic_handles;	/* rd_kafka_topic_t of each topic (TribKafkaLearnLeaders) */
	rd_kafka_message_t **batch; /* messages held: librdkafka's destroy waits for them */
	int			held;
	/*
	 * the batch as collect hands it over (each message's origin is its held message, which
	 * tells the fence which it kept): kept for the consumer's life and reused, as fresh
	 * memory for 10000 messages a batch cost page faults and zeroing
	 */
	TribMessage *msgs;
	int			msgs_size;
	TribKafkaTally tally;		/* what store_positions stored, for after_commit */
	char	   *callback_error; /* an error reported inside a librdkafka callback */
	char	   *position_error; /* assigned partitions could not be positioned */
	char	   *reported_error; /* the last error written to last_error */
	TimestampTz watermarks_at;	/* when the assigned partitions' watermarks were read */
	char	   *instance;		/* group.instance.id of this worker, or NULL */
	TribKafkaReaper *reaper;	/* NULL: messages are destroyed on this thread */
} TribKafka;

/* kafka_options.c */

/* Resolve the stream's options; raises on a bad one, naming what was expected. */
extern void TribKafkaParseOptions(StreamDef *def, TribKafkaOptions *o);

/* librdkafka's configuration for the stream; vetting leaves out what this role may not set. */
extern rd_kafka_conf_t *TribKafkaConf(StreamDef *def, TribKafkaOptions *o, bool vetting);

/* Give this worker its own group.instance.id when one is configured; returns it, or NULL. */
extern char *TribKafkaSetInstance(rd_kafka_conf_t *conf, StreamDef *def, int index);

/* The options the consumer is built from: equal signatures can share a consumer. */
extern char *TribKafkaSignature(StreamDef *def, int index);

/* kafka_consumer.c */

/* Build the worker's consumer: subscribed to the group, or assigned its static partitions. */
extern TribKafka *TribKafkaOpen(StreamDef *def, int index);

/* After a reload: keep the consumer for def when the options it was built from are unchanged. */
extern bool TribKafkaReuse(TribKafka *k, StreamDef *def, int index);

/* Give up the consumer: leave the group; free it unless the process is exiting. */
extern void TribKafkaClose(TribKafka *k, bool at_exit);

/* Raise or report, outside librdkafka's frames, what the callbacks saw. */
extern void TribKafkaCheckCallbacks(TribKafka *k);

/* Write the consumer's trouble to the stream's last_error, or clear it (error NULL). */
extern void TribKafkaReport(TribKafka *k, const char *error);

/* Give back all held messages: they are read again from the stored offsets. */
extern void TribKafkaReleaseHeld(TribKafka *k);

/* kafka_reaper.c */
extern void TribKafkaReaperStart(TribKafka *k, int capacity);
extern void TribKafkaReaperGive(TribKafka *k);
extern void TribKafkaReaperResize(TribKafka *k, int capacity);
extern void TribKafkaReaperStop(TribKafka *k);

/* Give back the held messages of revoked partitions, keep the others. */
extern void TribKafkaDropRevoked(TribKafka *k, rd_kafka_topic_partition_list_t *revoked);

/* kafka_positions.c */

/* Set each partition's start offset: the stored next offset, else the "start" option. */
extern void TribKafkaSetStartOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *parts);

/* A partition out of range: store its new position and assign it again. */
extern void TribKafkaResetPartition(TribKafka *k, const char *topic, int32 partition,
									const char *why);

/* The partition fence: drop held messages another worker has stored already. */
extern void TribKafkaFence(TribKafka *k, const TribMessage *msgs);

/* A processed batch's share per partition. */
extern void TribKafkaTallyBatch(TribKafkaTally *t, const TribMessage *msgs,
								TribMessageResult *results, int n);

/* Store the batch's next offsets, in the batch's transaction. */
extern void TribKafkaStoreOffsets(TribKafka *k, rd_kafka_topic_partition_list_t *next);

#endif							/* TRIBUTARY_KAFKA_INTERNAL_H */
