/*
 * shmem.c
 *		tributary's shared memory: the launcher's latch, one slot per stream (its workers
 *		and live counters) and a pool of partition slots (per-partition counters of broker
 *		streams), read by tributary.streams and tributary.stream_stats.
 *
 * Locking protocol
 * ----------------
 * One LWLock, TribState->lock (tranche "tributary"), guards everything below except the
 * stream counters and the fields fixed at startup.
 *
 * - Fixed at startup (lock, nslots, npartitions, partitions): written once in
 *   TribShmemStartup under AddinShmemInitLock, read without a lock afterwards.
 * - Slot ownership (TribStreamSlot.key, dropped, sweep_mark; TribPartitionSlot.key):
 *   a slot is claimed or freed only under the exclusive lock (by a committing backend,
 *   a worker attaching or detaching, or the launcher: its sweep and its orphan check). Holding the lock in any
 *   mode therefore pins every slot to its stream: whoever found a slot keeps the lock
 *   until it is done with it.
 * - Worker entries (TribStreamSlot.workers[]): written under the exclusive lock, each
 *   entry only by its own worker (attach, config version, detach) or, for an entry whose
 *   process is gone (TribWorkerAlive), by the next worker at that index or the launcher;
 *   read under the shared lock.
 * - Launcher (launcher_procno): written under the exclusive lock by the launcher at
 *   start and exit; read under the shared lock.
 * - Partition slots (every field of TribPartitionSlot): plain fields, written under the
 *   exclusive lock by the worker that consumes the partition, read under the shared lock,
 *   so a reader sees one batch's figures of a partition entirely or not at all.
 * - Stream counters (TribStreamSlot.messages ... last_commit): pg_atomic_uint64, added
 *   lock-free with respect to each other by committing backends that hold the lock in
 *   shared mode only (to pin the slot), so concurrent commits do not queue behind one
 *   another; reset only when the slot is claimed, under the exclusive lock. A reader
 *   (shared lock) gets every counter whole and never decreasing while the slot keeps
 *   its stream, but a row read while a commit is being applied may already show that
 *   commit's messages and not yet its rows.
 *
 * Lock order: TribWorkerAlive asks BackgroundWorkerLock and ProcArrayLock (shared) while
 * our lock is held exclusively; no code takes ours while holding either of them.
 *
 * A backend never touches counters in the middle of a transaction: TribStatsAddAtCommit
 * queues the deltas in TopTransactionContext, and the transaction callback applies them
 * on commit or drops them on abort (a rolled-back subtransaction drops its own). So the
 * counters describe committed work only, for ingest() and stream workers alike.
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "catalog.h"
#include "launcher.h"
#include "shmem.h"
#include "tributary.h"

/* One of a stream's workers (parallelism), at its index. */
typedef struct TribWorkerSlot
{
	pid_t		pid;			/* 0 when no worker runs at this index */
	int			procno;			/* the worker's PGPROC: with pid, who it is */
	int32		config_version; /* catalog version the worker has loaded */
	TimestampTz started_at;
} TribWorkerSlot;

typedef struct TribStreamSlot
{
	TribStreamKey key;			/* key.id is 0 when the slot is free */
	bool		dropped;		/* stream dropped; freed when its last worker detaches */
	bool		sweep_mark;		/* missing from the catalog at the launcher's last pass */
	TribWorkerSlot workers[TRIBUTARY_MAX_PARALLELISM];
	pg_atomic_uint64 messages;
	pg_atomic_uint64 rows;
	pg_atomic_uint64 dead_letters;
	pg_atomic_uint64 bytes;
	pg_atomic_uint64 batches;
	pg_atomic_uint64 last_commit;	/* TimestampTz, 0 when never */
} TribStreamSlot;

/*
 * Kafka's longest topic name. Partition slots hold the whole name (two topics that share
 * a long prefix are two slots), which makes a slot about 370 bytes: the default
 * tributary.max_partitions = 1024 takes about 370 kB of shared memory.
 */
#define TRIB_MAX_TOPIC_LEN 249

/* Live position and counters of one partition of a broker stream; written by its worker. */
typedef struct TribPartitionSlot
{
	TribStreamKey key;			/* key.id is 0 when the slot is free */
	char		topic[TRIB_MAX_TOPIC_LEN + 1];
	int32		partition;
	pid_t		worker_pid;		/* the worker that last reported on it */
	int64		messages;
	int64		rows;
	int64		dead_letters;
	int64		bytes;
	int64		batches;
	TimestampTz last_commit;
	int64		next_offset;	/* -1 until a batch committed */
	int64		high_watermark; /* -1 until known */
	int64		lag;			/* entries behind, as the source counts them (Redis); -1: none */
	double		rate;			/* messages per second over the last window */
	TimestampTz rate_at;		/* end of that window */
	TimestampTz window_start;
	int64		window_messages;
} TribPartitionSlot;

typedef struct TribShared
{
	LWLock	   *lock;
	int			launcher_procno;	/* the launcher's PGPROC, or -1 when none runs */
	int			nslots;
	int			npartitions;
	TribPartitionSlot *partitions;	/* npartitions of them, after the stream slots */
	TribStreamSlot slots[FLEXIBLE_ARRAY_MEMBER];
} TribShared;

/* A counter delta or a forget, waiting for its transaction to commit. */
typedef struct TribPending
{
	int			nest_level;
	TribStreamKey key;
	bool		forget;
	int64		messages;
	int64		rows;
	int64		dead_letters;
	int64		bytes;
	int64		batches;
} TribPending;

static TribShared *TribState = NULL;
static List *pending = NIL;		/* of TribPending, in TopTransactionContext */
static bool wake_launcher = false;

/* Stream slots, then the partition pool: both sized by PGC_POSTMASTER settings. */
static Size
TribShmemSize(void)
{
	Size		size = add_size(offsetof(TribShared, slots),
								mul_size(sizeof(TribStreamSlot), tributary_max_streams));

	size = MAXALIGN(size);
	return add_size(size, mul_size(sizeof(TribPartitionSlot), tributary_max_partitions));
}

/* Ask for our shared memory and lock; called from shmem_request_hook (or _PG_init < 15). */
void
TribShmemRequest(void)
{
	RequestAddinShmemSpace(TribShmemSize());
	RequestNamedLWLockTranche("tributary", 1);
}

/* Attach to (or create) the shared state; called from shmem_startup_hook. */
void
TribShmemStartup(void)
{
	bool		found;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	TribState = ShmemInitStruct("tributary", TribShmemSize(), &found);
	if (!found)
	{
		TribState->lock = &(GetNamedLWLockTranche("tributary"))->lock;
		TribState->launcher_procno = -1;
		TribState->nslots = tributary_max_streams;
		TribState->npartitions = tributary_max_partitions;
		TribState->partitions = (TribPartitionSlot *)
			((char *) TribState + MAXALIGN(add_size(offsetof(TribShared, slots),
													mul_size(sizeof(TribStreamSlot), tributary_max_streams))));
		memset(TribState->partitions, 0, sizeof(TribPartitionSlot) * tributary_max_partitions);
		for (int i = 0; i < TribState->nslots; i++)
		{
			TribStreamSlot *slot = &TribState->slots[i];

			memset(slot, 0, sizeof(*slot));
			pg_atomic_init_u64(&slot->messages, 0);
			pg_atomic_init_u64(&slot->rows, 0);
			pg_atomic_init_u64(&slot->dead_letters, 0);
			pg_atomic_init_u64(&slot->bytes, 0);
			pg_atomic_init_u64(&slot->batches, 0);
			pg_atomic_init_u64(&slot->last_commit, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Result shapes of the counters functions, in columns. 0.1.0 and 0.2.0 declare them with
 * the same C symbol, so unlike pg_stat_statements_1_10 and its siblings the version cannot
 * be told by entry point; it is told by the declared column count, which 0.2.0 changed
 * (_stream_counters gained "workers", third; _partition_counters "worker_pid", last).
 * So a database still at 0.1.0 keeps its views working with this library until ALTER
 * EXTENSION UPDATE. The next change of shape gets a versioned symbol of its own
 * (tributary_stream_counters_0_N, declared by that version's upgrade script), and these
 * entry points keep serving the shapes that name them.
 */
#define TRIB_STREAM_COUNTERS_COLS_0_1 10
#define TRIB_STREAM_COUNTERS_COLS 11	/* 0.2.0 and later */
#define TRIB_PARTITION_COUNTERS_COLS_0_1 13
#define TRIB_PARTITION_COUNTERS_COLS 14 /* 0.2.0 and later */

/*
 * Which shape the SQL declaration of a counters function asks for (its column count):
 * the current one or 0.1.0's; anything else is refused with a hint instead of misread.
 */
static int
TribCheckResultColumns(ReturnSetInfo *rsinfo, int current, int old, const char *function)
{
	int			natts = rsinfo->setDesc->natts;

	if (natts != current && natts != old)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tributary.%s() is declared with %d columns, but the tributary library returns %d",
						function, natts, current),
				 errdetail("The extension's SQL objects are from another version than its shared library."),
				 errhint("Run ALTER EXTENSION tributary UPDATE.")));
	return natts;
}

/* SQL functions give a hint, not a crash, when the library was not preloaded. */
static void
TribCheckShmem(void)
{
	if (TribState == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("tributary shared memory is not initialized"),
				 errhint("Add tributary to shared_preload_libraries and restart the server.")));
}

/* Stream ids repeat across databases and re-created extensions: compare the whole key. */
static bool
TribKeyEquals(const TribStreamKey *a, const TribStreamKey *b)
{
	return a->id == b->id && a->database == b->database && a->catalog == b->catalog;
}

/* Find the slot of a stream (a free one for a zero key); caller holds the lock. */
static TribStreamSlot *
TribFindSlot(const TribStreamKey *key)
{
	for (int i = 0; i < TribState->nslots; i++)
	{
		TribStreamSlot *slot = &TribState->slots[i];

		if (key->id == 0 ? slot->key.id == 0 : TribKeyEquals(&slot->key, key))
			return slot;
	}
	return NULL;
}

/* A slot with workers outlives its dropped stream until the last one detaches. */
static bool
TribSlotHasWorkers(TribStreamSlot *slot)
{
	for (int i = 0; i < TRIBUTARY_MAX_PARALLELISM; i++)
		if (slot->workers[i].pid != 0)
			return true;
	return false;
}

/* Give a stream's slot and its partition slots back to the pool; exclusive lock held. */
static void
TribFreeSlot(TribStreamSlot *slot)
{
	/* a stream's partitions go with it */
	for (int i = 0; i < TribState->npartitions; i++)
		if (TribKeyEquals(&TribState->partitions[i].key, &slot->key))
			memset(&TribState->partitions[i], 0, sizeof(TribPartitionSlot));
	memset(&slot->key, 0, sizeof(slot->key));
	slot->dropped = false;
	slot->sweep_mark = false;
}

/* Claim a free slot for key; caller holds the lock exclusively. NULL when none is free. */
static TribStreamSlot *
TribClaimSlot(const TribStreamKey *key)
{
	static const TribStreamKey free_key = {0};
	TribStreamSlot *slot = TribFindSlot(&free_key);

	if (slot == NULL)
		return NULL;
	slot->key = *key;
	slot->dropped = false;
	slot->sweep_mark = false;
	memset(slot->workers, 0, sizeof(slot->workers));
	pg_atomic_write_u64(&slot->messages, 0);
	pg_atomic_write_u64(&slot->rows, 0);
	pg_atomic_write_u64(&slot->dead_letters, 0);
	pg_atomic_write_u64(&slot->bytes, 0);
	pg_atomic_write_u64(&slot->batches, 0);
	pg_atomic_write_u64(&slot->last_commit, 0);
	return slot;
}

/* Counters that find no slot are lost: say so, with the setting that fixes it. */
static void
TribWarnNoSlot(const TribStreamKey *key)
{
	ereport(WARNING,
			(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
			 errmsg("tributary has no free statistics slot for stream %d", key->id),
			 errdetail("All %d slots are in use.", tributary_max_streams),
			 errhint("Raise tributary.max_streams and restart the server.")));
}

/* Queue counter deltas of one batch; they reach shared memory when the transaction commits. */
void
TribStatsAddAtCommit(const TribStreamKey *key, int64 messages, int64 rows, int64 dead_letters,
					 int64 bytes)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	TribPending *p = palloc0(sizeof(TribPending));

	TribCheckShmem();
	p->nest_level = GetCurrentTransactionNestLevel();
	p->key = *key;
	p->messages = messages;
	p->rows = rows;
	p->dead_letters = dead_letters;
	p->bytes = bytes;
	p->batches = 1;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
}

/* Queue the release of a dropped stream's slot for commit. */
void
TribStatsForgetAtCommit(const TribStreamKey *key)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);
	TribPending *p = palloc0(sizeof(TribPending));

	p->nest_level = GetCurrentTransactionNestLevel();
	p->key = *key;
	p->forget = true;
	pending = lappend(pending, p);
	MemoryContextSwitchTo(old);
}

/* Ask for the launcher to be woken when this transaction commits. */
void
TribWakeLauncherAtCommit(void)
{
	wake_launcher = true;
}

/* The launcher announces itself (running) and its exit, so commits can wake it. */
void
TribSetLauncher(bool running)
{
	TribCheckShmem();
	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	TribState->launcher_procno = running ? MyProc->pgprocno : -1;
	LWLockRelease(TribState->lock);
}

/* Add one pending delta to its slot's counters; caller holds the lock (shared is enough). */
static void
TribAddCounters(TribStreamSlot *slot, TribPending *p, TimestampTz now)
{
	pg_atomic_fetch_add_u64(&slot->messages, p->messages);
	pg_atomic_fetch_add_u64(&slot->rows, p->rows);
	pg_atomic_fetch_add_u64(&slot->dead_letters, p->dead_letters);
	pg_atomic_fetch_add_u64(&slot->bytes, p->bytes);
	pg_atomic_fetch_add_u64(&slot->batches, p->batches);
	pg_atomic_write_u64(&slot->last_commit, (uint64) now);
}

/*
 * Apply the committed transaction's counters. Deltas for streams that have a slot are
 * added under the shared lock (it pins the slot; the counters are atomic), so commits
 * of different backends do not serialize; only claiming a slot for a new stream and
 * releasing a dropped stream's slot take the exclusive lock.
 */
static void
TribApplyPending(void)
{
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	TribStreamKey unslotted = {0};
	List	   *rest = NIL;

	LWLockAcquire(TribState->lock, LW_SHARED);
	foreach(lc, pending)
	{
		TribPending *p = lfirst(lc);
		TribStreamSlot *slot = p->forget ? NULL : TribFindSlot(&p->key);

		if (slot != NULL)
			TribAddCounters(slot, p, now);
		else
			rest = lappend(rest, p);
	}
	LWLockRelease(TribState->lock);
	if (rest == NIL)
		return;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	foreach(lc, rest)
	{
		TribPending *p = lfirst(lc);
		TribStreamSlot *slot = TribFindSlot(&p->key);

		if (p->forget)
		{
			if (slot != NULL && !TribSlotHasWorkers(slot))
				TribFreeSlot(slot);
			else if (slot != NULL)
				slot->dropped = true;
			continue;
		}
		if (slot == NULL)
			slot = TribClaimSlot(&p->key);
		if (slot == NULL)
		{
			unslotted = p->key;
			continue;
		}
		TribAddCounters(slot, p, now);
	}
	LWLockRelease(TribState->lock);
	list_free(rest);
	if (unslotted.id != 0)
		TribWarnNoSlot(&unslotted);
}

/*
 * Free the slots of this database's streams that are gone: the catalog (its OID) is not
 * the current one, or the id is not in ids. A slot is freed only when it was missing at
 * two passes in a row, so a stream created after this pass's snapshot keeps its counters;
 * one with workers is freed when the last of them detaches.
 */
void
TribSweepSlots(Oid catalog, const int32 *ids, int nids)
{
	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	for (int i = 0; i < TribState->nslots; i++)
	{
		TribStreamSlot *slot = &TribState->slots[i];
		bool		present = false;

		if (slot->key.id == 0 || slot->key.database != MyDatabaseId)
			continue;
		if (slot->key.catalog == catalog)
			for (int j = 0; j < nids && !present; j++)
				present = ids[j] == slot->key.id;
		if (present)
			slot->sweep_mark = false;
		else if (!slot->sweep_mark)
			slot->sweep_mark = true;
		else if (!TribSlotHasWorkers(slot))
			TribFreeSlot(slot);
		else
			slot->dropped = true;
	}
	LWLockRelease(TribState->lock);
}

/*
 * Wake the launcher, if one runs, by setting its latch. Not kill(pid, SIGUSR1): a pid
 * read from shared memory may by now belong to another process of our OS user, for which
 * SIGUSR1 is fatal; a latch set after the launcher left is at worst a spurious wakeup of
 * the next owner of its PGPROC, which latches allow. Set under the lock, so the launcher
 * cannot leave in between.
 */
static void
TribWakeLauncher(void)
{
	LWLockAcquire(TribState->lock, LW_SHARED);
	if (TribState->launcher_procno >= 0)
		SetLatch(&GetPGProcByNumber(TribState->launcher_procno)->procLatch);
	LWLockRelease(TribState->lock);
}

/* Counters reach shared memory at commit and never on abort. */
static void
TribXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pending != NIL && TribState != NULL)
				TribApplyPending();
			if (wake_launcher && TribState != NULL)
				TribWakeLauncher();
			pending = NIL;
			wake_launcher = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			pending = NIL;
			wake_launcher = false;
			break;
		default:
			break;
	}
}

/* A rolled-back subtransaction takes its counters with it; a committed one hands them up. */
static void
TribSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	ListCell   *lc;

	if (event == SUBXACT_EVENT_ABORT_SUB)
	{
		foreach(lc, pending)
		{
			TribPending *p = lfirst(lc);

			if (p->nest_level >= level)
				pending = foreach_delete_current(pending, lc);
		}
	}
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		foreach(lc, pending)
		{
			TribPending *p = lfirst(lc);

			if (p->nest_level >= level)
				p->nest_level = level - 1;
		}
	}
}

/* Counters follow transactions: registered once per backend from _PG_init. */
void
TribShmemInitXactHooks(void)
{
	RegisterXactCallback(TribXactCallback, NULL);
	RegisterSubXactCallback(TribSubXactCallback, NULL);
}

/*
 * Is the worker recorded in an entry still running? Not kill(pid, 0): it succeeds for any
 * process of our OS user that reuses the pid (another backend, or any program the server's
 * user runs), and a stale entry would then block its index for good and have the launcher
 * SIGTERM a stranger.
 *
 * An entry should never be stale: its worker clears it in a before_shmem_exit callback
 * (run by proc_exit, and by PostgreSQL's atexit hook even on a bare exit()), and a process
 * that dies without running it is a crash, after which the postmaster reinitializes shared
 * memory. Where an entry is judged anyway, PostgreSQL is asked instead of the kernel: the
 * pid must be a running background worker of our type in the postmaster's registry
 * (GetBackgroundWorkerTypeByPid), and run in the PGPROC the entry recorded at attach
 * (BackendPidGetProc). A stranger reusing the pid fails the first; another backend or
 * worker fails one or the other unless it took over both the pid and the PGPROC. Caller
 * holds the lock exclusively, so the answer holds until it is released: a live worker
 * cannot detach, and so cannot exit, in between.
 */
static bool
TribWorkerAlive(const TribWorkerSlot *w)
{
	const char *type;

	if (w->pid == 0)
		return false;
	type = GetBackgroundWorkerTypeByPid(w->pid);
	if (type == NULL || strcmp(type, TRIB_STREAM_WORKER_TYPE) != 0)
		return false;
	return BackendPidGetProc(w->pid) == GetPGProcByNumber(w->procno);
}

/*
 * Claim the stream's slot for this worker at its index; false when another live worker
 * holds that index.
 */
bool
TribWorkerAttach(const TribStreamKey *key, int index, int32 config_version)
{
	TribStreamSlot *slot;
	TribWorkerSlot *w;
	bool		ok = true;

	Assert(index >= 0 && index < TRIBUTARY_MAX_PARALLELISM);
	TribCheckShmem();
	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	slot = TribFindSlot(key);
	if (slot == NULL)
		slot = TribClaimSlot(key);
	if (slot == NULL)
	{
		LWLockRelease(TribState->lock);
		ereport(FATAL,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("no shared memory slot left for stream %d", key->id),
				 errhint("Raise tributary.max_streams and restart the server.")));
	}
	w = &slot->workers[index];
	if (w->pid != 0 && w->pid != MyProcPid && TribWorkerAlive(w))
		ok = false;
	else
	{
		w->pid = MyProcPid;
		w->procno = MyProc->pgprocno;
		w->config_version = config_version;
		w->started_at = GetCurrentTimestamp();
	}
	LWLockRelease(TribState->lock);
	return ok;
}

/* This worker's entry in its stream's slot, or NULL; caller holds the lock. */
static TribWorkerSlot *
TribMyWorkerSlot(const TribStreamKey *key, int index)
{
	TribStreamSlot *slot = TribFindSlot(key);

	if (slot == NULL || slot->workers[index].pid != MyProcPid)
		return NULL;
	return &slot->workers[index];
}

/* After a reload, tributary.streams shows the config version the worker now runs. */
void
TribWorkerSetConfigVersion(const TribStreamKey *key, int index, int32 config_version)
{
	TribWorkerSlot *w;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	w = TribMyWorkerSlot(key, index);
	if (w != NULL)
		w->config_version = config_version;
	LWLockRelease(TribState->lock);
}

/* A worker's exit frees its index (and its dropped stream's slot when it was the last). */
void
TribWorkerDetach(const TribStreamKey *key, int index)
{
	TribWorkerSlot *w;

	if (TribState == NULL)
		return;
	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	w = TribMyWorkerSlot(key, index);
	if (w != NULL)
	{
		TribStreamSlot *slot = TribFindSlot(key);

		memset(w, 0, sizeof(*w));
		/* the stream's partitions this worker consumed have no worker now */
		for (int i = 0; i < TribState->npartitions; i++)
			if (TribState->partitions[i].worker_pid == MyProcPid &&
				TribKeyEquals(&TribState->partitions[i].key, key))
				TribState->partitions[i].worker_pid = 0;
		if (slot->dropped && !TribSlotHasWorkers(slot))
			TribFreeSlot(slot);
	}
	LWLockRelease(TribState->lock);
}

/*
 * The launcher's look at the workers a previous launcher left: entries whose process is
 * gone (see TribWorkerAlive) are cleared, live ones are sent signo (0: none) while the
 * lock keeps them from exiting, so no signal can reach a process that reused a pid.
 * Returns how many live workers there are, with their pids in pids (up to max).
 */
int
TribOrphanWorkers(int signo, pid_t *pids, int max)
{
	int			n = 0;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	for (int i = 0; i < TribState->nslots; i++)
	{
		TribStreamSlot *slot = &TribState->slots[i];

		if (slot->key.id == 0)
			continue;
		for (int w = 0; w < TRIBUTARY_MAX_PARALLELISM; w++)
		{
			TribWorkerSlot *ws = &slot->workers[w];

			if (ws->pid == 0)
				continue;
			if (!TribWorkerAlive(ws))
			{
				memset(ws, 0, sizeof(*ws));
				continue;
			}
			if (signo != 0)
				kill(ws->pid, signo);
			if (n < max)
				pids[n] = ws->pid;
			n++;
		}
		if (slot->dropped && !TribSlotHasWorkers(slot))
			TribFreeSlot(slot);
	}
	LWLockRelease(TribState->lock);
	return n;
}

PG_FUNCTION_INFO_V1(tributary_stream_counters);

/* SRF behind tributary.stream_stats: the slots of this database's streams. */
Datum
tributary_stream_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			catalog = TribCatalogRelid();
	int			natts;

	TribCheckShmem();
	InitMaterializedSRF(fcinfo, 0);
	natts = TribCheckResultColumns(rsinfo, TRIB_STREAM_COUNTERS_COLS,
								   TRIB_STREAM_COUNTERS_COLS_0_1, "_stream_counters");

	LWLockAcquire(TribState->lock, LW_SHARED);
	for (int i = 0; i < TribState->nslots; i++)
	{
		TribStreamSlot *slot = &TribState->slots[i];
		Datum		values[TRIB_STREAM_COUNTERS_COLS];
		bool		nulls[TRIB_STREAM_COUNTERS_COLS] = {0};
		uint64		last_commit;
		TribWorkerSlot *first = NULL;
		int			workers = 0;

		if (slot->key.id == 0 || slot->dropped || slot->key.database != MyDatabaseId ||
			slot->key.catalog != catalog)
			continue;
		/* the lowest-index worker stands for the stream; started_at is the earliest */
		for (int w = 0; w < TRIBUTARY_MAX_PARALLELISM; w++)
		{
			if (slot->workers[w].pid == 0)
				continue;
			workers++;
			if (first == NULL)
				first = &slot->workers[w];
		}
		values[0] = Int32GetDatum(slot->key.id);
		values[1] = Int32GetDatum(first ? first->pid : 0);
		nulls[1] = first == NULL;
		values[2] = Int32GetDatum(workers);
		values[3] = Int32GetDatum(first ? first->config_version : 0);
		nulls[3] = first == NULL;
		values[4] = TimestampTzGetDatum(first ? first->started_at : 0);
		nulls[4] = first == NULL;
		for (int w = 0; w < TRIBUTARY_MAX_PARALLELISM; w++)
			if (slot->workers[w].pid != 0 &&
				slot->workers[w].started_at < DatumGetTimestampTz(values[4]))
				values[4] = TimestampTzGetDatum(slot->workers[w].started_at);
		values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->messages));
		values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->rows));
		values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->dead_letters));
		values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->bytes));
		values[9] = Int64GetDatum((int64) pg_atomic_read_u64(&slot->batches));
		last_commit = pg_atomic_read_u64(&slot->last_commit);
		values[10] = TimestampTzGetDatum((TimestampTz) last_commit);
		nulls[10] = last_commit == 0;
		if (natts == TRIB_STREAM_COUNTERS_COLS_0_1)
		{
			/* 0.1.0 has no "workers" column */
			memmove(&values[2], &values[3], sizeof(Datum) * (TRIB_STREAM_COUNTERS_COLS - 3));
			memmove(&nulls[2], &nulls[3], sizeof(bool) * (TRIB_STREAM_COUNTERS_COLS - 3));
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(TribState->lock);
	return (Datum) 0;
}

/* The partition's slot, claimed when new; NULL when the pool is full. Lock held exclusively. */
static TribPartitionSlot *
TribPartitionSlotFor(const TribStreamKey *key, const char *topic, int32 partition)
{
	TribPartitionSlot *free_slot = NULL;

	for (int i = 0; i < TribState->npartitions; i++)
	{
		TribPartitionSlot *p = &TribState->partitions[i];

		if (p->key.id == 0)
		{
			if (free_slot == NULL)
				free_slot = p;
			continue;
		}
		/* the whole name: a name Kafka cannot have (longer still) matches its stored prefix */
		if (p->partition == partition && TribKeyEquals(&p->key, key) &&
			strncmp(p->topic, topic, TRIB_MAX_TOPIC_LEN) == 0)
			return p;
	}
	if (free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		free_slot->key = *key;
		strlcpy(free_slot->topic, topic, sizeof(free_slot->topic));
		free_slot->partition = partition;
		free_slot->next_offset = -1;
		free_slot->high_watermark = -1;
		free_slot->lag = -1;
	}
	return free_slot;
}

/*
 * Account one committed batch's share of a partition: called by the stream's worker
 * right after it commits, so these too count committed work only.
 */
void
TribPartitionStatsAdd(const TribStreamKey *key, const char *topic, int32 partition,
					  int64 messages, int64 rows, int64 dead_letters, int64 bytes,
					  int64 next_offset)
{
	TimestampTz now = GetCurrentTimestamp();
	TribPartitionSlot *p;
	bool		full = false;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	p = TribPartitionSlotFor(key, topic, partition);
	if (p != NULL)
	{
		p->messages += messages;
		p->rows += rows;
		p->dead_letters += dead_letters;
		p->bytes += bytes;
		p->batches++;
		p->worker_pid = MyProcPid;
		p->last_commit = now;
		p->next_offset = next_offset;
		if (p->window_start == 0)
			p->window_start = now;
		p->window_messages += messages;
		if (TimestampDifferenceExceeds(p->window_start, now, 1000))
		{
			p->rate = p->window_messages /
				((double) (now - p->window_start) / USECS_PER_SEC);
			p->rate_at = now;
			p->window_start = now;
			p->window_messages = 0;
		}
	}
	else
		full = true;
	LWLockRelease(TribState->lock);
	if (full)
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("tributary has no free statistics slot for partition %d of topic \"%s\"",
						partition, topic),
				 errhint("Raise tributary.max_partitions and restart the server.")));
}

/* Record a partition's high watermark as the worker's consumer last saw it. */
void
TribPartitionSetWatermark(const TribStreamKey *key, const char *topic, int32 partition,
						  int64 high_watermark)
{
	TribPartitionSlot *p;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	p = TribPartitionSlotFor(key, topic, partition);
	if (p != NULL)
	{
		p->high_watermark = high_watermark;
		p->worker_pid = MyProcPid;
	}
	LWLockRelease(TribState->lock);
}

/* Record how far behind a partition is, for a source that counts it itself (Redis's group lag). */
void
TribPartitionSetLag(const TribStreamKey *key, const char *topic, int32 partition, int64 lag)
{
	TribPartitionSlot *p;

	LWLockAcquire(TribState->lock, LW_EXCLUSIVE);
	p = TribPartitionSlotFor(key, topic, partition);
	if (p != NULL)
	{
		p->lag = lag;
		p->worker_pid = MyProcPid;
	}
	LWLockRelease(TribState->lock);
}

PG_FUNCTION_INFO_V1(tributary_partition_counters);

/* SRF behind the per-partition rows of tributary.stream_stats. */
Datum
tributary_partition_counters(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			catalog = TribCatalogRelid();
	TimestampTz now = GetCurrentTimestamp();

	TribCheckShmem();
	InitMaterializedSRF(fcinfo, 0);
	/* 0.1.0's shape is the current one without its last column: the tuple omits it */
	(void) TribCheckResultColumns(rsinfo, TRIB_PARTITION_COUNTERS_COLS,
								  TRIB_PARTITION_COUNTERS_COLS_0_1, "_partition_counters");

	LWLockAcquire(TribState->lock, LW_SHARED);
	for (int i = 0; i < TribState->npartitions; i++)
	{
		TribPartitionSlot *p = &TribState->partitions[i];
		Datum		values[TRIB_PARTITION_COUNTERS_COLS];
		bool		nulls[TRIB_PARTITION_COUNTERS_COLS] = {0};

		if (p->key.id == 0 || p->key.database != MyDatabaseId || p->key.catalog != catalog)
			continue;
		values[0] = Int32GetDatum(p->key.id);
		values[1] = CStringGetTextDatum(p->topic);
		values[2] = Int32GetDatum(p->partition);
		nulls[2] = p->partition < 0;
		values[3] = Int64GetDatum(p->messages);
		values[4] = Int64GetDatum(p->rows);
		values[5] = Int64GetDatum(p->dead_letters);
		values[6] = Int64GetDatum(p->bytes);
		values[7] = Int64GetDatum(p->batches);
		values[8] = TimestampTzGetDatum(p->last_commit);
		nulls[8] = p->last_commit == 0;
		values[9] = Int64GetDatum(p->next_offset);
		nulls[9] = p->next_offset < 0;
		values[10] = Int64GetDatum(p->high_watermark);
		nulls[10] = p->high_watermark < 0;
		values[11] = Int64GetDatum(p->lag >= 0 ? p->lag : Max(p->high_watermark - p->next_offset, 0));
		nulls[11] = p->lag < 0 && (p->next_offset < 0 || p->high_watermark < 0);
		/* a rate older than 10 s describes a stream that has gone quiet */
		values[12] = Float8GetDatum(TimestampDifferenceExceeds(p->rate_at, now, 10000) ? 0.0 : p->rate);
		values[13] = Int32GetDatum(p->worker_pid);
		nulls[13] = p->worker_pid == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(TribState->lock);
	return (Datum) 0;
}
