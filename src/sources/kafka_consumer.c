/*
 * kafka_consumer.c
 *		The Kafka consumer's life in a stream worker (open, reuse across reloads, close,
 *		leave the group at exit) and the callbacks librdkafka calls.
 *
 * librdkafka calls the rebalance callback from inside rd_kafka_consumer_poll; errors
 * there are caught and re-raised after the poll returns, so no longjmp crosses
 * librdkafka's frames. The error callback only records the error for the main loop
 * (TribKafkaCheckCallbacks), and log lines come through the worker's own polls; the
 * consumer's trouble reaches the stream's last_error through TribKafkaReport.
 *
 * The consume loop (consume.c) holds the consumer: it opens it, offers it the definition
 * after a reload (TribKafkaReuse) and closes it when not reused and at process exit.
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "sources/kafka_internal.h"
#include "sources/source.h"

#define TRIB_KAFKA_CLOSE_MS 5000
#define TRIB_KAFKA_LEADERS_MS 1000	/* the wait for partition leaders before a static assign */

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
void
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
void
TribKafkaReport(TribKafka *k, const char *error)
{
	/* librdkafka appends "(after 0ms in state CONNECT, 3 identical error(s) suppressed)" */
	if (error != NULL && strstr(error, " (after ") != NULL)
		error = pnstrdup(error, strstr(error, " (after ") - error);
	TribSourceReport(k->def, k->index, &k->reported_error, error);
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

/* librdkafka's error callback: keep the first error for TribKafkaCheckCallbacks. */
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
void
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

/*
 * Give up the consumer: give back the held messages and leave the group. When a reload
 * replaces it, librdkafka is torn down and the consumer freed; at process exit (at_exit)
 * the process ends anyway, and a teardown could wait on a dead broker.
 */
void
TribKafkaClose(TribKafka *k, bool at_exit)
{
	ListCell   *lc;

	if (k->rk == NULL)
		return;
	TribKafkaReaperStop(k);
	TribKafkaReleaseHeld(k);
	if (k->tally.next != NULL)
		rd_kafka_topic_partition_list_destroy(k->tally.next);
	k->tally.next = NULL;
	if (k->queue != NULL)
		rd_kafka_queue_destroy(k->queue);
	k->queue = NULL;
	TribKafkaLeaveGroup(k->rk);
	foreach(lc, k->topic_handles)
		rd_kafka_topic_destroy(lfirst(lc));
	k->topic_handles = NIL;
	if (at_exit)
	{
		k->rk = NULL;
		return;
	}
	rd_kafka_destroy_flags(k->rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	k->rk = NULL;
	if (k->reported_error != NULL)
		pfree(k->reported_error);
	MemoryContextDelete(k->cxt);
}

/*
 * After a reload: keep the consumer (its partitions, its place in the group) when the
 * options it was built from did not change, so changing batch_size, say, costs no
 * rebalance. It then takes the new definition.
 */
bool
TribKafkaReuse(TribKafka *k, StreamDef *def, int index)
{
	char	   *signature = TribKafkaSignature(def, index);
	bool		same = strcmp(k->signature, signature) == 0;

	pfree(signature);
	if (!same)
		return false;
	Assert(k->held == 0);
	k->def = def;
	TribKafkaReaperResize(k, def->batch_size);
	ereport(LOG, (errmsg("tributary stream \"%s\" worker #%d keeps its consumer: the options it was built from did not change",
						 def->name, index + 1)));
	return true;
}

/*
 * Learn the leaders of the stream's topics before any assignment. librdkafka starts a
 * partition whose leader it does not know yet on a fixed 500 ms timer (its offset query
 * waits for the next metadata): a static assignment made before the first metadata, and a
 * group's assignment, whose partitions librdkafka creates only then and hands to their
 * leader's thread after the start was asked for (debug=fetch,cgrp: 30 of 32 partitions
 * fetched 0.5 s after the first two, in about one group run in three). So the worker holds
 * a handle on each of its topics from the start, which makes librdkafka create their
 * partitions with the first metadata, and asks for that metadata now: one request for all
 * topics, bounded. When it fails or times out (broker down, topic missing) librdkafka finds
 * the leaders by itself later, and the error is reported from there. The handles are
 * given back in TribKafkaClose.
 */
static void
TribKafkaLearnLeaders(TribKafka *k)
{
	ListCell   *lc;
	const struct rd_kafka_metadata *md;

	foreach(lc, k->opts.topics)
	{
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(k->rk, lfirst(lc), NULL);

		if (rkt != NULL)
			k->topic_handles = lappend(k->topic_handles, rkt);
	}
	/* all_topics = 0 and no topic: the topics this handle knows, i.e. those just named */
	if (rd_kafka_metadata(k->rk, 0, NULL, &md, TRIB_KAFKA_LEADERS_MS) == RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_metadata_destroy(md);
}

/*
 * Build the worker's consumer from the stream's options: subscribed to its topics as a
 * member of the group, or assigned its share of a static partition list.
 */
TribKafka *
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
	old = MemoryContextSwitchTo(cxt);
	k->signature = TribKafkaSignature(def, index);
	MemoryContextSwitchTo(old);
	k->batch = MemoryContextAlloc(cxt, sizeof(rd_kafka_message_t *) * def->batch_size);
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
		TribKafkaLearnLeaders(k);
		err = rd_kafka_subscribe(k->rk, topics);
	}
	rd_kafka_topic_partition_list_destroy(topics);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not subscribe stream \"%s\" to its topics", def->name),
				 errdetail("librdkafka: %s", rd_kafka_err2str(err))));
	ereport(LOG, (errmsg("tributary stream \"%s\" worker #%d consuming from %s as group \"%s\"%s",
						 def->name, index + 1, k->opts.brokers, k->opts.group,
						 k->instance == NULL ? "" :
						 psprintf(", instance \"%s\"", k->instance))));
	TribKafkaReaperStart(k, def->batch_size);
	return k;
}

/*
 * Outside librdkafka's frames: raise the error of a failed positioning (the worker exits
 * and the launcher restarts it), and report what the error callback saw.
 */
void
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
