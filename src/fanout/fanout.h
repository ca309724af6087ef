/*
 * fanout.h
 *		Snapshots per key and their NOTIFY fan-out (docs/fanout.md).
 *
 * snapshot.c	the snapshot stage: the latest record per key, seqs in commit order
 * notify.c		channels, payloads, the notification queue's level, heartbeats and resyncs
 * snapshot_sql.c	set_snapshot, drop_snapshot, snapshot, snapshot_seq, set_fanout,
 *				drop_fanout, fanout_channel
 */
#ifndef TRIBUTARY_FANOUT_H
#define TRIBUTARY_FANOUT_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "storage/lockdefs.h"

/* NOTIFY's limit on a payload, with its terminating zero (async.c's NOTIFY_PAYLOAD_MAX_LENGTH). */
#define TRIB_NOTIFY_PAYLOAD_MAX 8000

/* The advisory lock's fourth field for a stream's seq lock (quality's fold lock is 0x5451). */
#define TRIB_SNAPSHOT_LOCK_KIND 0x534E

/* A stream's snapshot settings and progress (a row of tributary.snapshot_config). */
typedef struct TribSnapshotConfig
{
	char	   *stream;
	int32		stream_id;
	bool		event_order;	/* "order" = 'event_time' */
	int64		last_seq;
	/* fan-out: none when !fanout */
	bool		fanout;
	bool		channel_stream;
	bool		channel_key;
	bool		payload_keys;	/* payload = 'keys': no record */
	int64		heartbeat_us;	/* 0: none */
	int64		min_interval_us;	/* a key channel's least interval; 0: none */
	TimestampTz notified_at;	/* DT_NOBEGIN: never */
	int64		skipped;
	bool		resync_pending;
} TribSnapshotConfig;

/* GUC tributary.fanout_queue_limit: the queue usage past which notifications are skipped. */
extern double tributary_fanout_queue_limit;

/* snapshot.c */
extern void TribSnapshotInit(void);
extern bool TribSnapshotCatalogPresent(void);
extern void TribSnapshotForget(void);
extern TribSnapshotConfig *TribSnapshotConfigLoad(const char *stream);
extern bool TribSnapshotLock(int32 stream_id, bool wait);
extern void TribSnapshotStore(TribSnapshotConfig *cfg);

/* notify.c */
extern char *TribFanoutChannel(const char *stream, const char *key, const char *suffix);
extern bool TribFanoutQueueHasRoom(void);
extern void TribFanoutNotice(TribSnapshotConfig *cfg, const char *kind);
extern void TribFanoutChange(TribSnapshotConfig *cfg, const char *key, int64 seq, bool deleted,
							 const char *record, bool to_stream, bool to_key);
extern long TribFanoutTick(void);
extern void TribFanoutQuality(const char *stream, const char *payload);

#endif							/* TRIBUTARY_FANOUT_H */
