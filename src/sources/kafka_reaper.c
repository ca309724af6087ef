/*
 * kafka_reaper.c
 *		A thread that gives a committed batch's messages back to librdkafka while the
 *		worker goes on with the next batch.
 *
 * Why. Destroying a batch's messages frees what librdkafka's fetch threads allocated,
 * under their allocator's locks: 0.15-0.22 us a message of the PostgreSQL thread, about a
 * tenth of a Kafka worker's time, and that thread is what bounds one worker's rate
 * (bench/RESULTS.md). The other cores are idle enough for it.
 *
 * Rules. The thread touches nothing of PostgreSQL: it only reads an array of message
 * pointers and calls rd_kafka_message_destroy, which librdkafka allows from any thread. It
 * is created with every signal blocked, so PostgreSQL's signal handlers only ever run on
 * the PostgreSQL thread. At most one batch is with it: handing over the next waits until
 * the previous one is destroyed, so a worker holds at most two batches of messages (the
 * one it inserts and the one being destroyed). Its arrays are the consumer's, allocated
 * and freed by the PostgreSQL thread only, and only while the thread holds none of them.
 * It is stopped, every message it had destroyed, before the consumer is closed (librdkafka's
 * teardown waits for outstanding messages). When the thread cannot be started, messages
 * are destroyed on the PostgreSQL thread as before.
 *
 * A batch's messages go this way when the batch is released (TribKafkaSourceRelease, after
 * its commit); messages given back for other reasons (a revocation, a reset position,
 * closing) are destroyed at once.
 */
#include "postgres.h"

#include <pthread.h>
#include <signal.h>

#include <librdkafka/rdkafka.h>

#include "utils/memutils.h"

#include "sources/kafka_internal.h"

struct TribKafkaReaper
{
	pthread_t	thread;
	pthread_mutex_t lock;
	pthread_cond_t work;		/* a batch was handed over, or stop */
	pthread_cond_t done;		/* the batch handed over is destroyed */
	rd_kafka_message_t **msgs;	/* the batch being destroyed, or NULL */
	int			n;
	rd_kafka_message_t **spare; /* the array of the last batch destroyed */
	bool		stop;
};

static void *
TribKafkaReaperMain(void *arg)
{
	TribKafkaReaper *r = arg;

	pthread_mutex_lock(&r->lock);
	for (;;)
	{
		if (r->msgs != NULL)
		{
			rd_kafka_message_t **msgs = r->msgs;
			int			n = r->n;

			pthread_mutex_unlock(&r->lock);
			for (int i = 0; i < n; i++)
				rd_kafka_message_destroy(msgs[i]);
			pthread_mutex_lock(&r->lock);
			r->spare = msgs;
			r->msgs = NULL;
			pthread_cond_broadcast(&r->done);
			continue;
		}
		if (r->stop)
			break;
		pthread_cond_wait(&r->work, &r->lock);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

/*
 * Start k's reaper, with a spare array as large as k->batch (capacity messages). Leaves
 * k->reaper NULL, and says so in the log, when the thread cannot be started.
 */
void
TribKafkaReaperStart(TribKafka *k, int capacity)
{
	TribKafkaReaper *r = MemoryContextAllocZero(k->cxt, sizeof(TribKafkaReaper));
	sigset_t	all;
	sigset_t	old;
	int			rc;

	r->spare = MemoryContextAlloc(k->cxt, sizeof(rd_kafka_message_t *) * capacity);
	pthread_mutex_init(&r->lock, NULL);
	pthread_cond_init(&r->work, NULL);
	pthread_cond_init(&r->done, NULL);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = pthread_create(&r->thread, NULL, TribKafkaReaperMain, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0)
	{
		ereport(LOG,
				(errmsg("tributary stream \"%s\" worker #%d gives messages back on its own thread: could not start a thread: %s",
						k->def->name, k->index + 1, strerror(rc))));
		pthread_cond_destroy(&r->done);
		pthread_cond_destroy(&r->work);
		pthread_mutex_destroy(&r->lock);
		pfree(r->spare);
		pfree(r);
		return;
	}
	k->reaper = r;
}

/*
 * Hand the held messages to the reaper (after the previous batch is destroyed) and take
 * its spare array as k->batch; without a reaper, destroy them here.
 */
void
TribKafkaReaperGive(TribKafka *k)
{
	TribKafkaReaper *r = k->reaper;

	if (r == NULL || k->held == 0)
	{
		TribKafkaReleaseHeld(k);
		return;
	}
	pthread_mutex_lock(&r->lock);
	while (r->msgs != NULL)
		pthread_cond_wait(&r->done, &r->lock);
	r->msgs = k->batch;
	r->n = k->held;
	k->batch = r->spare;
	r->spare = NULL;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	k->held = 0;
}

/*
 * Wait until the reaper holds no batch; then make both arrays hold capacity messages (a
 * reload changed batch_size). Without a reaper, only k->batch.
 */
void
TribKafkaReaperResize(TribKafka *k, int capacity)
{
	TribKafkaReaper *r = k->reaper;

	Assert(k->held == 0);
	pfree(k->batch);
	k->batch = MemoryContextAlloc(k->cxt, sizeof(rd_kafka_message_t *) * capacity);
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	while (r->msgs != NULL)
		pthread_cond_wait(&r->done, &r->lock);
	pthread_mutex_unlock(&r->lock);
	pfree(r->spare);
	r->spare = MemoryContextAlloc(k->cxt, sizeof(rd_kafka_message_t *) * capacity);
}

/* Stop the reaper once it has destroyed what it holds; before the consumer is closed. */
void
TribKafkaReaperStop(TribKafka *k)
{
	TribKafkaReaper *r = k->reaper;

	if (r == NULL)
		return;
	pthread_mutex_lock(&r->lock);
	r->stop = true;
	pthread_cond_signal(&r->work);
	pthread_mutex_unlock(&r->lock);
	pthread_join(r->thread, NULL);
	pthread_cond_destroy(&r->done);
	pthread_cond_destroy(&r->work);
	pthread_mutex_destroy(&r->lock);
	pfree(r->spare);
	pfree(r);
	k->reaper = NULL;
}
