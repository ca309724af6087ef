/*
 * source.h
 *		A source is a routine struct, as FDWs and index access methods are: what the core
 *		needs of a kind of source, filled by the source's own file and found by name in the
 *		one registry (sources/registry.c). Nothing outside a source's file chooses behaviour
 *		by comparing source names.
 *
 * A source with a worker (needs_worker) is driven by the one consume loop (consume.c),
 * which owns the transaction bracket, the batch path (batch.c) and errors; the source
 * only moves messages and positions. One pass of the loop, per batch:
 *
 *		outside a transaction	n = collect(c, &msgs)			wait for a batch
 *		in the transaction		n = fence(c, msgs, n)			keep what this worker owns
 *								rows, dead letters (batch.c)	as the target's owner
 *								store_positions(c, msgs, results, n)
 *								counters; COMMIT
 *		after the commit		after_commit(c)					acknowledge, publish stats
 *								release(c)						forget the batch
 *
 * Exactly once: positions are stored only by store_positions, in the batch's
 * transaction, and a consumer reads from the stored positions when it is opened or given
 * partitions; what after_commit tells the broker is for others to see, never read back.
 * When anything raises between collect and release, the transaction is rolled back and
 * the loop calls release; the messages are read again from the stored positions.
 *
 * Memory: the consumer is the source's (open allocates it in a context of its own, close
 * frees it). collect, fence, store_positions and after_commit run in the loop's batch
 * memory context, which is reset after release (and after a collect that handed nothing
 * over): what they allocate there, such as the TribMessage array and what its messages
 * point to, lives until then (a callback that commits a transaction of its own, which
 * leaves CurrentMemoryContext at TopMemoryContext, switches back). Memory the source gets
 * elsewhere (librdkafka's messages) is the source's to free in release. No callback keeps
 * a pointer into msgs or results past release.
 *
 * Signals: collect returns within batch_ms of the batch's first message; while it has
 * nothing it waits, checking CHECK_FOR_INTERRUPTS() and postmaster death at least every
 * 100 ms, and returns 0 when ConfigReloadPending is set. The loop ends at a reload; the
 * consumer outlives it (reuse).
 */
#ifndef TRIBUTARY_SOURCE_H
#define TRIBUTARY_SOURCE_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "tributary.h"

/* An option of a source (tributary.h) */
typedef TribOptionDecl TribSourceOption;

/* An option whose value is shown only to roles that may manage the stream. */
typedef struct TribSecretOption
{
	const char *name;
	/* the value others see instead of value (value itself when nothing in it is secret) */
	JsonbValue *(*redact) (JsonbValue *value);
} TribSecretOption;

/* The mask tributary.streams shows in place of a secret. */
#define TRIB_SECRET_MASK "********"

typedef struct TribSourceRoutine
{
	const char *name;

	/* false: known by name but without a consumer yet; declaring or starting it is refused */
	bool		available;

	/* consumed by background workers that the launcher starts (every source but local) */
	bool		needs_worker;

	/* batch_size when the stream sets none (0: tributary's own default, 1000) */
	int			default_batch_size;

	/* the metadata fields its messages carry (TRIB_META_BIT of each), for option "metadata" */
	uint32		metadata;

	/* the source's own options, ended by {NULL} */
	const TribSourceOption *options;

	/*
	 * options that hold secrets, ended by {NULL}: tributary.streams shows roles that may
	 * not manage a stream what redact makes of them (or NULL: no secrets)
	 */
	const TribSecretOption *secret_options;

	/* check the source's options of def (after the common ones); raises on the first problem */
	void		(*validate) (StreamDef *def);

	/* whether roleid may store def's options, before validate passes them on; raises if not */
	void		(*check_rights) (StreamDef *def, Oid roleid);

	/*
	 * The consumer callbacks, NULL for a source without a worker. The consumer is an opaque
	 * pointer the loop passes back. Outside a transaction unless said otherwise; each may
	 * raise (the error goes to the stream's last_error and the worker exits).
	 */

	/*
	 * A consumer for def as the stream's worker number index (from 0), reading from the
	 * stored positions. Opens and commits transactions of its own if it needs them.
	 */
	void	   *(*open) (StreamDef *def, int index);

	/*
	 * After a reload: whether consumer can go on serving the new definition def as it is
	 * (Kafka: the options it was built from did not change, so no rebalance); if so it
	 * takes def, whose batch_size may differ. The old definition stays valid until this
	 * returns. Called with no batch held. NULL, or false: the loop closes the consumer and
	 * opens a new one.
	 */
	bool		(*reuse) (void *consumer, StreamDef *def, int index);

	/*
	 * Wait for a batch and hand it over in *msgs: up to def->batch_size messages, up to
	 * tributary.max_message_size bytes (or one message), within batch_ms of the first.
	 * Returns how many (0: none yet). The messages stay the source's until release.
	 */
	int			(*collect) (void *consumer, TribMessage **msgs);

	/*
	 * In the batch's transaction, before the insert: keep only the messages this worker
	 * may still store (Kafka: the partition fence, a lock per partition and its stored
	 * position re-read). Compacts msgs in place, in order; returns the new count, which may
	 * be 0 (the loop then commits without a batch). NULL: every message is kept.
	 */
	int			(*fence) (void *consumer, TribMessage *msgs, int n);

	/*
	 * In the batch's transaction, after its rows and dead letters: store the positions
	 * following msgs (every message is inserted or dead; results say which), so a restart
	 * resumes after them. The batch path's settle step (batch.h).
	 */
	void		(*store_positions) (void *consumer, TribMessage *msgs,
									TribMessageResult *results, int n);

	/*
	 * After the batch's transaction committed (also when fence kept nothing): tell the
	 * broker what others may see (Kafka: the committed offsets for lag tools), publish
	 * per-partition statistics (shmem.h), clear the worker's last_error. Not called when
	 * the transaction failed.
	 */
	void		(*after_commit) (void *consumer);

	/*
	 * Forget the batch collect handed over: after after_commit, or after an error once the
	 * transaction is rolled back (its messages are read again from the stored positions).
	 * Must work whatever state an error left the batch in.
	 */
	void		(*release) (void *consumer);

	/*
	 * Give the consumer up: when a reload does not reuse it, or at_exit when the worker's
	 * process ends (then only what others wait for matters, such as leaving a consumer
	 * group; the process frees the rest). Gives back any batch still held.
	 */
	void		(*close) (void *consumer, bool at_exit);

	/*
	 * a dead letter's stored partition and position (text, either NULL) back into msg's
	 * numeric fields, so replay fills metadata columns as a worker does; raises when they
	 * are not the source's. NULL: the position stays text (TribMessage.position).
	 */
	void		(*restore_position) (StreamDef *def, TribMessage *msg, const char *partition,
									 const char *position);
} TribSourceRoutine;

extern const TribSourceRoutine *TribSourceLookup(const char *name);
extern const char *TribSourceNameList(void);

/* Write a consumer's trouble to the stream's last_error, or clear it (consume.c). */
extern void TribSourceReport(StreamDef *def, int index, char **reported, const char *error);

/* options with the secret values of every source's secret_options redacted */
extern Jsonb *TribSourceRedactOptions(Jsonb *options);

#endif							/* TRIBUTARY_SOURCE_H */
