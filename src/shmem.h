/*
 * shmem.h
 *		Shared memory of tributary: the launcher's latch and one slot per stream with its
 *		workers and live counters. Counters of a transaction are applied when it commits.
 */
#ifndef TRIBUTARY_SHMEM_H
#define TRIBUTARY_SHMEM_H

#include "postgres.h"

#include "tributary.h"

extern void TribShmemRequest(void);
extern void TribShmemStartup(void);
extern void TribShmemInitXactHooks(void);

/* counters, applied to the stream's slot when the current transaction commits */
extern void TribStatsAddAtCommit(const TribStreamKey *key, int64 messages, int64 rows,
								 int64 dead_letters, int64 bytes);
extern void TribStatsForgetAtCommit(const TribStreamKey *key);

/* per-partition statistics, written by a broker stream's worker after each commit */
extern void TribPartitionStatsAdd(const TribStreamKey *key, const char *topic, int32 partition,
								  int64 messages, int64 rows, int64 dead_letters, int64 bytes,
								  int64 next_offset);
extern void TribPartitionSetLag(const TribStreamKey *key, const char *topic, int32 partition,
								int64 lag);
extern void TribPartitionSetWatermark(const TribStreamKey *key, const char *topic,
									  int32 partition, int64 high_watermark);

/* launcher */
extern void TribWakeLauncherAtCommit(void);
extern void TribSetLauncher(bool running);

/* workers */
extern bool TribWorkerAttach(const TribStreamKey *key, int index, int32 config_version);
extern void TribWorkerSetConfigVersion(const TribStreamKey *key, int index, int32 config_version);
extern void TribWorkerDetach(const TribStreamKey *key, int index);
extern int	TribOrphanWorkers(int signo, pid_t *pids, int max);
extern void TribSweepSlots(Oid catalog, const int32 *ids, int nids);

#endif							/* TRIBUTARY_SHMEM_H */
