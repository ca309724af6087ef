/*
 * redis_internal.h
 *		What the files of the Redis Streams source share: its resolved options, the
 *		consumer and its keys, entry ids, and the functions one file calls in another.
 *
 * redis_options.c resolves and checks a stream's options (the URL, keys, group, start,
 * fields) and masks the URL's password; redis_conn.c talks to the server (connecting with
 * backoff, commands, the consumer group of each key); redis.c collects batches,
 * turns entries into messages, fences and stores positions, and holds the
 * source routine. Only these files include this header.
 */
#ifndef TRIBUTARY_REDIS_INTERNAL_H
#define TRIBUTARY_REDIS_INTERNAL_H

#include "postgres.h"

#include <hiredis/hiredis.h>

#include "nodes/pg_list.h"
#include "utils/timestamp.h"

#include "tributary.h"

/* An entry id, "ms-seq": ordered by ms, then seq. */
typedef struct TribRedisId
{
	uint64		ms;
	uint64		seq;
} TribRedisId;

/* How an entry's field-value pairs become the payload (option "fields"). */
typedef enum TribRedisFields
{
	TRIB_FIELDS_OBJECT,			/* json: one object of the pairs */
	TRIB_FIELDS_ONE				/* one field's value is the payload */
} TribRedisFields;

/* Where a key without a stored position starts (option "start"). */
typedef enum TribRedisStart
{
	TRIB_REDIS_START_ALL,		/* "0" */
	TRIB_REDIS_START_NEW,		/* "$" */
	TRIB_REDIS_START_AFTER		/* after an entry id */
} TribRedisStart;

/* A stream's Redis settings, resolved from its options. */
typedef struct TribRedisOptions
{
	/* the server, from "url" */
	char	   *host;			/* NULL for a unix socket */
	int			port;
	char	   *socket_path;	/* unix:// */
	char	   *user;			/* NULL: AUTH with the password alone */
	char	   *password;		/* NULL: no AUTH */
	int			db;
	char	   *where;			/* host:port or the socket path, for messages */

	List	   *keys;			/* of char *, in option order */
	char	   *group;
	char	   *consumer;		/* as given, or NULL: derived per worker */
	TribRedisStart start;
	TribRedisId start_after;

	TribRedisFields fields;
	char	   *field;			/* TRIB_FIELDS_ONE: the payload field */
	List	   *json_fields;	/* TRIB_FIELDS_OBJECT: fields parsed as JSON (char *) */
	List	   *text_fields;	/* ... and kept as strings, when json_default */
	bool		json_default;	/* "*": "json" */
} TribRedisOptions;

/* One key this worker serves. */
typedef struct TribRedisKey
{
	char	   *name;
	int			name_len;
	bool		owned;			/* this worker holds the key's session lock */
	bool		ready;			/* taken since the last connect: group, pending list, position */
	bool		was_ready;		/* ready once before: a missing group was lost, not new */
	bool		has_stored;
	TribRedisId stored;			/* last entry id stored, as last read */

	/* the batch in flight */
	TribRedisId batch_last;		/* newest id kept in the batch */
	int64		counts[4];		/* messages, rows, dead letters, bytes */
} TribRedisKey;

/* One consumer: the source routine's opaque consumer (sources/source.h). */
typedef struct TribRedis
{
	MemoryContext cxt;			/* lives as long as the consumer */
	MemoryContext reply_cxt;	/* hiredis's replies (redis_conn.c) */
	StreamDef  *def;
	int			index;			/* which of the stream's workers this is */
	char	   *signature;		/* the options it was built from */
	TribRedisOptions opts;
	char	   *consumer;		/* this worker's consumer name */

	TribRedisKey *keys;			/* the keys of this worker's share */
	int			nkeys;

	redisContext *rc;			/* NULL while disconnected */
	int			backoff_ms;		/* next wait before connecting again */
	TimestampTz retry_at;		/* no connection attempt before this */
	TimestampTz locks_at;		/* when keys held elsewhere were last tried */
	TimestampTz lag_at;			/* when the group's lag was last read */

	/* the next batch's XREADGROUP, sent ahead: the next collect reads its reply first */
	bool		read_ahead;

	/*
	 * the batch: how many replies it holds (whole in reply_cxt: messages point into them),
	 * each message's key and id
	 */
	int			nreplies;
	size_t		largest_reply;	/* bytes of the largest read so far: the next one's buffer */
	int		   *msg_key;
	TribRedisId *msg_id;
	int			held;
	int			maxheld;

	char	   *reported_error; /* the last error written to last_error */
} TribRedis;

/* redis_options.c */
/* A reply read whole into memory and walked in place (redis_resp.c) */
#define TRIB_RESP_MAX_DEPTH 8

typedef struct TribRespScanState
{
	size_t		pos;			/* the next element's header */
	bool		started;
	int			depth;			/* arrays open */
	int64		left[TRIB_RESP_MAX_DEPTH];	/* elements each still has to come */
} TribRespScanState;

typedef struct TribResp
{
	char	   *data;			/* the reply (the buffer it was read into) */
	size_t		len;
	char	   *cur;			/* the next element */
} TribResp;

typedef enum TribRespType
{
	TRIB_RESP_STRING,			/* a bulk string */
	TRIB_RESP_ARRAY,
	TRIB_RESP_NIL,				/* a nil string or array */
	TRIB_RESP_STATUS,
	TRIB_RESP_ERROR,
	TRIB_RESP_INTEGER
} TribRespType;

typedef struct TribRespItem
{
	TribRespType type;
	char	   *str;			/* STRING, STATUS, ERROR: NUL-terminated, in the reply */
	size_t		len;
	int64		n;				/* ARRAY: its elements; INTEGER: the value */
} TribRespItem;

extern int	TribRespScan(TribRespScanState *s, const char *buf, size_t len);
extern void TribRespNext(TribResp *resp, TribRespItem *item);
extern void TribRespSkip(TribResp *resp);

extern void TribRedisParseOptions(StreamDef *def, TribRedisOptions *o);
extern void TribRedisValidateOptions(StreamDef *def);
extern char *TribRedisSignature(StreamDef *def, int index);
extern char *TribRedisConsumerName(TribRedisOptions *o, StreamDef *def, int index);
extern bool TribRedisParseId(const char *text, size_t len, TribRedisId *id);
extern char *TribRedisIdText(TribRedisId id);
extern JsonbValue *TribRedisRedactUrl(JsonbValue *value);
extern void TribRedisCheckRights(StreamDef *def, Oid roleid);

static inline int
TribRedisIdCmp(TribRedisId a, TribRedisId b)
{
	if (a.ms != b.ms)
		return a.ms < b.ms ? -1 : 1;
	return a.seq < b.seq ? -1 : a.seq > b.seq ? 1 : 0;
}

/* redis_conn.c */
extern bool TribRedisConnect(TribRedis *r);
extern void TribRedisDisconnect(TribRedis *r, const char *why);
extern redisReply *TribRedisCommand(TribRedis *r, int argc, const char **argv, const size_t *lens);
extern bool TribRedisSend(TribRedis *r, int argc, const char **argv, const size_t *lens);
extern bool TribRedisReadWhole(TribRedis *r, TribResp *resp);
extern bool TribRedisErrorIs(const char *str, size_t len, const char *code);
extern void TribRedisFreeReply(redisReply *reply);
extern void TribRedisResetReplies(TribRedis *r);
extern bool TribRedisReplyIsError(redisReply *reply, const char *code);
extern void TribRedisLockKeys(TribRedis *r);
extern void TribRedisUnlockKeys(TribRedis *r);
extern bool TribRedisSetUpKeys(TribRedis *r);
extern void TribRedisReadStored(TribRedis *r, bool read_only);
extern void TribRedisStorePositions(TribRedis *r, bool only_changed);
extern void TribRedisReport(TribRedis *r, const char *error);
extern void TribRedisWait(TribRedis *r, long ms);
extern void TribRedisRefreshLag(TribRedis *r);

#endif							/* TRIBUTARY_REDIS_INTERNAL_H */
