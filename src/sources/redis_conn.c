/*
 * redis_conn.c
 *		The Redis source's side of the server: connecting (with backoff), commands, the lock
 *		that makes one worker the reader of a key, each key's consumer group and the entries
 *		other consumers left pending, and the positions stored in tributary.offsets.
 *
 * Why a key has one reader at a time. A consumer group hands each new entry to one
 * consumer, in id order; tributary stores, per key, the last entry id it stored, in the
 * batch's transaction. That position is exact only when the entries of a key are stored in
 * id order, which holds when one consumer reads the key at a time: every entry at or below
 * the position is stored, every entry after it is not. So a worker reads a key only while it
 * holds the key's lock, a session-level advisory lock of the database keyed by the stream's
 * name and the key (TRIB_LOCKTAG_REDIS_KEY), taken without waiting; the keys of a stream are
 * split among its workers, and a worker whose share is held by another (a worker of the
 * previous definition that has not exited yet) tries again every second.
 *
 * Taking a key (TribRedisSetUpKeys): the stored position is read; the key's group is made
 * where it is missing (XGROUP CREATE ... MKSTREAM, at the stored position or the "start"
 * option), and said in the log when it existed before (a FLUSHALL, a deleted key, a
 * destroyed group); a stored position past the key's last id (the key was deleted and
 * re-created) is reset, with a WARNING, as Kafka's out-of-range offsets are; then every
 * entry pending in the group for the key is claimed by this worker's consumer (XAUTOCLAIM;
 * XPENDING and XCLAIM before Redis 6.2), and the worker reads its pending entries first
 * (redis.c): those at or below the stored position were stored by whoever read them and are
 * only acknowledged, the others are stored now. Only then does it read new entries.
 *
 * The connection: every command that fails on the connection closes it; the next collect
 * connects again after a backoff (100 ms doubling to 5 s), writes why to last_error while
 * it cannot, and takes every key again (claims, pending entries), so nothing read before
 * the failure is lost or stored twice.
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/wait_event.h"

#include "catalog.h"
#include "shmem.h"
#include "sources/redis_internal.h"
#include "sources/source.h"

/* field4 of the advisory lock tag of a key's reader, apart from the SQL functions' 1 and 2 */
#define TRIB_LOCKTAG_REDIS_KEY 0x5253

#define TRIB_REDIS_CONNECT_TIMEOUT_MS 5000
#define TRIB_REDIS_COMMAND_TIMEOUT_MS 30000
#define TRIB_REDIS_BACKOFF_MIN_MS 100
#define TRIB_REDIS_BACKOFF_MAX_MS 5000
#define TRIB_REDIS_CLAIM_COUNT "1000"

static struct timeval
TribRedisTimeval(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/*
 * Reply objects. hiredis builds every reply of a connection through the reader's object
 * functions; tributary's put them in the consumer's reply memory (reply_cxt) rather than
 * malloc, one allocation per element: a batch of 10000 entries is some 50000 objects, and
 * malloc and free of them (with the heap consolidations the reader's growing buffer set
 * off) were a sixth of the worker's time. The replies of a batch are freed at once when it
 * is released; others one by one (TribRedisFreeReply).
 */
static MemoryContext reply_cxt = NULL;	/* the consumer's: one per worker process */

/* Link a new element into its parent array, as hiredis's own functions do. */
static void *
TribRedisLinkReply(const redisReadTask *task, redisReply *reply)
{
	if (task->parent != NULL)
	{
		redisReply *parent = task->parent->obj;

		Assert(parent->type == REDIS_REPLY_ARRAY);
		parent->element[task->idx] = reply;
	}
	return reply;
}

static redisReply *
TribRedisNewReply(int type)
{
	redisReply *reply = MemoryContextAllocZero(reply_cxt, sizeof(redisReply));

	reply->type = type;
	return reply;
}

static void *
TribRedisCreateString(const redisReadTask *task, char *str, size_t len)
{
	redisReply *reply = TribRedisNewReply(task->type);

	reply->str = MemoryContextAlloc(reply_cxt, len + 1);
	memcpy(reply->str, str, len);
	reply->str[len] = '\0';
	reply->len = len;
	return TribRedisLinkReply(task, reply);
}

static void *
TribRedisCreateArray(const redisReadTask *task, int elements)
{
	redisReply *reply = TribRedisNewReply(REDIS_REPLY_ARRAY);

	if (elements > 0)
		reply->element = MemoryContextAllocZero(reply_cxt, sizeof(redisReply *) * elements);
	reply->elements = elements;
	return TribRedisLinkReply(task, reply);
}

static void *
TribRedisCreateInteger(const redisReadTask *task, long long value)
{
	redisReply *reply = TribRedisNewReply(REDIS_REPLY_INTEGER);

	reply->integer = value;
	return TribRedisLinkReply(task, reply);
}

static void *
TribRedisCreateNil(const redisReadTask *task)
{
	return TribRedisLinkReply(task, TribRedisNewReply(REDIS_REPLY_NIL));
}

/* Free a reply and its elements (hiredis's freeReplyObject, for tributary's reply memory). */
void
TribRedisFreeReply(redisReply *reply)
{
	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_ARRAY && reply->element != NULL)
	{
		for (size_t i = 0; i < reply->elements; i++)
			TribRedisFreeReply(reply->element[i]);
		pfree(reply->element);
	}
	if (reply->str != NULL)
		pfree(reply->str);
	pfree(reply);
}

static void
TribRedisFreeObject(void *reply)
{
	TribRedisFreeReply(reply);
}

static redisReplyObjectFunctions trib_reply_functions = {
	TribRedisCreateString,
	TribRedisCreateArray,
	TribRedisCreateInteger,
	TribRedisCreateNil,
	TribRedisFreeObject
};

/* Forget every reply at once: the batch's, when it is released (none other is alive then). */
void
TribRedisResetReplies(TribRedis *r)
{
	MemoryContextReset(r->reply_cxt);
}

/* Wait up to ms for a signal, or the postmaster's death. */
void
TribRedisWait(TribRedis *r, long ms)
{
	if (ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH, ms,
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
	CHECK_FOR_INTERRUPTS();
}

/* Write the consumer's trouble to the stream's last_error, or clear it (error NULL). */
void
TribRedisReport(TribRedis *r, const char *error)
{
	TribSourceReport(r->def, r->index, &r->reported_error, error);
}

/* Whether reply is an error whose code (its first word) is code. */
bool
TribRedisReplyIsError(redisReply *reply, const char *code)
{
	size_t		len = strlen(code);

	return reply != NULL && reply->type == REDIS_REPLY_ERROR && reply->len >= len &&
		strncmp(reply->str, code, len) == 0 && (reply->len == len || reply->str[len] == ' ');
}

/* Close the connection after a failure (why); the next collect connects again after the backoff. */
void
TribRedisDisconnect(TribRedis *r, const char *why)
{
	if (r->rc == NULL)
		return;
	redisFree(r->rc);
	r->rc = NULL;
	r->read_ahead = false;
	r->acks_ahead = 0;
	for (int i = 0; i < r->nkeys; i++)
		r->keys[i].ready = false;
	r->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->backoff_ms);
	TribRedisReport(r, psprintf("lost the connection to Redis at %s: %s", r->opts.where, why));
}

/*
 * Run one command. NULL when the connection failed (it is then closed and reported);
 * otherwise the reply, which may be an error reply, for the caller to free.
 */
redisReply *
TribRedisCommand(TribRedis *r, int argc, const char **argv, const size_t *lens)
{
	redisReply *reply;

	if (r->rc == NULL)
		return NULL;
	reply = redisCommandArgv(r->rc, argc, argv, lens);
	if (reply == NULL)
		TribRedisDisconnect(r, r->rc->errstr[0] ? r->rc->errstr : "no reply");
	return reply;
}

/*
 * Send a command without waiting for its reply (pipelining: the server works on it while
 * the worker does something else); its reply must be read (TribRedisGetReply) before any
 * other command's. False when the connection failed (it is then closed and reported).
 */
bool
TribRedisSend(TribRedis *r, int argc, const char **argv, const size_t *lens)
{
	int			done = 0;

	if (r->rc == NULL)
		return false;
	if (redisAppendCommandArgv(r->rc, argc, argv, lens) != REDIS_OK)
	{
		TribRedisDisconnect(r, r->rc->errstr[0] ? r->rc->errstr : "could not send");
		return false;
	}
	while (!done)
	{
		if (redisBufferWrite(r->rc, &done) != REDIS_OK)
		{
			TribRedisDisconnect(r, r->rc->errstr[0] ? r->rc->errstr : "could not send");
			return false;
		}
	}
	return true;
}

/* The reply of the oldest command sent ahead; NULL when the connection failed (then closed). */
redisReply *
TribRedisGetReply(TribRedis *r)
{
	void	   *reply = NULL;

	if (r->rc == NULL)
		return NULL;
	if (redisGetReply(r->rc, &reply) != REDIS_OK || reply == NULL)
	{
		TribRedisDisconnect(r, r->rc->errstr[0] ? r->rc->errstr : "no reply");
		return NULL;
	}
	return reply;
}

/* A command of NUL-terminated arguments (keys are: they come from JSON strings, which hold no NUL). */
static redisReply *
TribRedisCommandV(TribRedis *r, int argc, const char **argv)
{
	return TribRedisCommand(r, argc, argv, NULL);
}

/* A command's error reply as a message for last_error; frees the reply. */
static char *
TribRedisErrorText(redisReply *reply, const char *what)
{
	char	   *text = psprintf("%s: %s", what, reply->type == REDIS_REPLY_ERROR ?
								reply->str : "unexpected reply");

	TribRedisFreeReply(reply);
	return text;
}

/* The server's version from INFO server ("redis_version:7.0.15"). */
static void
TribRedisReadVersion(TribRedis *r)
{
	const char *argv[] = {"INFO", "server"};
	redisReply *reply = TribRedisCommandV(r, 2, argv);

	r->server_major = 0;
	r->server_minor = 0;
	if (reply == NULL)
		return;
	if (reply->type == REDIS_REPLY_STRING)
	{
		const char *v = strstr(reply->str, "redis_version:");

		if (v != NULL)
			(void) sscanf(v + strlen("redis_version:"), "%d.%d", &r->server_major, &r->server_minor);
	}
	TribRedisFreeReply(reply);
}

/*
 * Connect when the backoff allows: log in, select the database, read the server's version.
 * On failure the reason goes to last_error and the backoff doubles. Every key is taken
 * again after a connect (TribRedisSetUpKeys).
 */
bool
TribRedisConnect(TribRedis *r)
{
	struct timeval tv = TribRedisTimeval(TRIB_REDIS_CONNECT_TIMEOUT_MS);
	redisContext *rc;
	char	   *failure = NULL;

	if (r->rc != NULL)
		return true;
	if (GetCurrentTimestamp() < r->retry_at)
		return false;

	rc = r->opts.socket_path != NULL ?
		redisConnectUnixWithTimeout(r->opts.socket_path, tv) :
		redisConnectWithTimeout(r->opts.host, r->opts.port, tv);
	if (rc == NULL || rc->err)
	{
		failure = psprintf("could not reach Redis at %s: %s", r->opts.where,
						   rc != NULL ? rc->errstr : "out of memory");
		if (rc != NULL)
			redisFree(rc);
		rc = NULL;
	}
	else
	{
		r->rc = rc;
		(void) redisSetTimeout(rc, TribRedisTimeval(TRIB_REDIS_COMMAND_TIMEOUT_MS));
		/* replies in the consumer's memory; the reader's buffer kept, not freed each reply */
		reply_cxt = r->reply_cxt;
		rc->reader->fn = &trib_reply_functions;
		rc->reader->maxbuf = 0;
		if (r->opts.password != NULL)
		{
			const char *argv[3] = {"AUTH"};
			int			argc = 1;
			redisReply *reply;

			if (r->opts.user != NULL)
				argv[argc++] = r->opts.user;
			argv[argc++] = r->opts.password;
			reply = TribRedisCommandV(r, argc, argv);
			if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
				failure = TribRedisErrorText(reply, psprintf("Redis at %s refused the login", r->opts.where));
			else if (reply != NULL)
				TribRedisFreeReply(reply);
		}
		if (failure == NULL && r->rc != NULL && r->opts.db != 0)
		{
			char	   *db = psprintf("%d", r->opts.db);
			const char *argv[2] = {"SELECT", db};
			redisReply *reply = TribRedisCommandV(r, 2, argv);

			if (reply != NULL && reply->type == REDIS_REPLY_ERROR)
				failure = TribRedisErrorText(reply, psprintf("Redis at %s refused database %d", r->opts.where, r->opts.db));
			else if (reply != NULL)
				TribRedisFreeReply(reply);
		}
		if (failure == NULL && r->rc != NULL)
			TribRedisReadVersion(r);
		if (failure == NULL && r->rc == NULL)
			failure = pstrdup(r->reported_error ? r->reported_error : "connection lost");
	}

	if (failure != NULL)
	{
		if (r->rc != NULL)
			redisFree(r->rc);
		r->rc = NULL;
		r->retry_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->backoff_ms);
		r->backoff_ms = Min(r->backoff_ms * 2, TRIB_REDIS_BACKOFF_MAX_MS);
		TribRedisReport(r, failure);
		return false;
	}
	r->backoff_ms = TRIB_REDIS_BACKOFF_MIN_MS;
	for (int i = 0; i < r->nkeys; i++)
		r->keys[i].ready = false;
	return true;
}

/* The lock tag of key's reader (see the file's header). */
static void
TribRedisKeyTag(TribRedis *r, TribRedisKey *key, LOCKTAG *tag)
{
	uint32		stream = hash_bytes((const unsigned char *) r->def->name, (int) strlen(r->def->name));
	uint32		k = hash_bytes((const unsigned char *) key->name, key->name_len);

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, stream, k, TRIB_LOCKTAG_REDIS_KEY);
}

/*
 * Take, without waiting, the reader's lock of each key of this worker's share that it does
 * not hold yet; a key held by another worker of the stream is tried again later.
 */
void
TribRedisLockKeys(TribRedis *r)
{
	r->locks_at = GetCurrentTimestamp();
	for (int i = 0; i < r->nkeys; i++)
	{
		TribRedisKey *key = &r->keys[i];
		LOCKTAG		tag;

		if (key->owned)
			continue;
		TribRedisKeyTag(r, key, &tag);
		if (LockAcquire(&tag, ExclusiveLock, true, true) != LOCKACQUIRE_NOT_AVAIL)
		{
			key->owned = true;
			key->ready = false;
		}
		else
			ereport(DEBUG1,
					(errmsg("tributary stream \"%s\": key \"%s\" is still read by another worker; trying again",
							r->def->name, key->name)));
	}
}

/* Give the keys' locks back (a consumer closed before its process ends). */
void
TribRedisUnlockKeys(TribRedis *r)
{
	for (int i = 0; i < r->nkeys; i++)
	{
		LOCKTAG		tag;

		if (!r->keys[i].owned)
			continue;
		TribRedisKeyTag(r, &r->keys[i], &tag);
		(void) LockRelease(&tag, ExclusiveLock, true);
		r->keys[i].owned = false;
		r->keys[i].ready = false;
	}
}

/* The key of this worker called name, or NULL. */
static TribRedisKey *
TribRedisFindKey(TribRedis *r, const char *name, size_t len)
{
	for (int i = 0; i < r->nkeys; i++)
		if ((size_t) r->keys[i].name_len == len && memcmp(r->keys[i].name, name, len) == 0)
			return &r->keys[i];
	return NULL;
}

/*
 * Read the stored positions of this worker's keys into them. read_only as SPI takes it
 * (false: in a batch's transaction, with a snapshot taken now). A position that is no
 * entry id raises, as a malformed Kafka offset does.
 */
void
TribRedisReadStored(TribRedis *r, bool read_only)
{
	Oid			type = TEXTOID;
	Datum		arg = CStringGetTextDatum(r->def->name);

	for (int i = 0; i < r->nkeys; i++)
		r->keys[i].has_stored = false;
	SPI_connect();
	if (SPI_execute_with_args("SELECT source_stream, position FROM tributary.offsets "
							  "WHERE stream = $1 AND source_partition = ''",
							  1, &type, &arg, NULL, read_only, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the stored positions of stream \"%s\"", r->def->name);
	for (uint64 row = 0; row < SPI_processed; row++)
	{
		HeapTuple	tup = SPI_tuptable->vals[row];
		char	   *name = SPI_getvalue(tup, SPI_tuptable->tupdesc, 1);
		char	   *position = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		TribRedisKey *key = name ? TribRedisFindKey(r, name, strlen(name)) : NULL;

		if (key == NULL)
			continue;
		if (position == NULL || !TribRedisParseId(position, strlen(position), &key->stored))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("tributary stream \"%s\" has a malformed Redis position in tributary.offsets: \"%s\" for key \"%s\"",
							r->def->name, position ? position : "", name),
					 errdetail("A Redis stream stores the last entry id it stored, such as 1700000000000-0."),
					 errhint("Correct the row, or delete it: the key then starts where option \"start\" says.")));
		key->has_stored = true;
	}
	SPI_finish();
}

/*
 * Store, in the current transaction, the position of each key whose batch share moved it
 * (batch_last above stored), or of every key of the worker with a position to keep when
 * only_changed is false (a reset).
 */
void
TribRedisStorePositions(TribRedis *r, bool only_changed)
{
	Datum	   *names = palloc(sizeof(Datum) * r->nkeys);
	Datum	   *positions = palloc(sizeof(Datum) * r->nkeys);
	Oid			types[3] = {TEXTOID, TEXTARRAYOID, TEXTARRAYOID};
	Datum		values[3];
	int			n = 0;

	for (int i = 0; i < r->nkeys; i++)
	{
		TribRedisKey *key = &r->keys[i];
		TribRedisId pos = only_changed ? key->batch_last : key->stored;

		if (only_changed ? key->counts[0] == 0 : !key->has_stored)
			continue;
		names[n] = CStringGetTextDatum(key->name);
		positions[n] = CStringGetTextDatum(TribRedisIdText(pos));
		n++;
	}
	if (n == 0)
		return;
	values[0] = CStringGetTextDatum(r->def->name);
	values[1] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
	values[2] = PointerGetDatum(construct_array(positions, n, TEXTOID, -1, false, TYPALIGN_INT));
	TribCatalogExecute("INSERT INTO tributary.offsets AS o "
					   "(stream, source_stream, source_partition, position, updated_at) "
					   "SELECT $1, u.k, '', u.p, pg_catalog.now() "
					   "FROM ROWS FROM (pg_catalog.unnest($2), pg_catalog.unnest($3)) AS u(k, p) "
					   "ON CONFLICT (stream, source_stream, source_partition) DO UPDATE "
					   "SET position = excluded.position, updated_at = excluded.updated_at",
					   3, types, values, NULL);
}

/*
 * The key's last entry id (XINFO STREAM's last-generated-id): true and *last when the key
 * exists; false with *last 0-0 when it does not. *error is set (and false returned) when
 * the server refused otherwise (the key is no stream).
 */
static bool
TribRedisLastId(TribRedis *r, TribRedisKey *key, TribRedisId *last, char **error)
{
	const char *argv[3] = {"XINFO", "STREAM", key->name};
	redisReply *reply = TribRedisCommandV(r, 3, argv);

	last->ms = 0;
	last->seq = 0;
	*error = NULL;
	if (reply == NULL)
		return false;
	if (reply->type == REDIS_REPLY_ERROR)
	{
		if (strstr(reply->str, "no such key") == NULL)
			*error = TribRedisErrorText(reply, psprintf("could not read key \"%s\"", key->name));
		else
			TribRedisFreeReply(reply);
		return false;
	}
	for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i + 1 < reply->elements; i += 2)
	{
		redisReply *name = reply->element[i];
		redisReply *value = reply->element[i + 1];

		if (name->type == REDIS_REPLY_STRING && strcmp(name->str, "last-generated-id") == 0 &&
			value->type == REDIS_REPLY_STRING)
			(void) TribRedisParseId(value->str, value->len, last);
	}
	TribRedisFreeReply(reply);
	return true;
}

/*
 * Claim for this worker's consumer every entry of the key pending in the group, whoever it
 * was delivered to (the reader's lock says nobody else reads the key now). False when the
 * connection failed or the server refused (*error).
 */
static bool
TribRedisClaim(TribRedis *r, TribRedisKey *key, char **error)
{
	char	   *cursor = pstrdup("0-0");
	int			rounds = 0;

	*error = NULL;
	if (r->server_major > 6 || (r->server_major == 6 && r->server_minor >= 2))
	{
		/* XAUTOCLAIM key group consumer 0 cursor COUNT n JUSTID, until the cursor is back at 0-0 */
		do
		{
			const char *argv[] = {"XAUTOCLAIM", key->name, r->opts.group, r->consumer, "0",
			cursor, "COUNT", TRIB_REDIS_CLAIM_COUNT, "JUSTID"};
			redisReply *reply;

			reply = TribRedisCommandV(r, lengthof(argv), argv);
			if (reply == NULL)
				return false;
			if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 2 ||
				reply->element[0]->type != REDIS_REPLY_STRING)
			{
				*error = TribRedisErrorText(reply, psprintf("could not claim the pending entries of key \"%s\"", key->name));
				return false;
			}
			cursor = pnstrdup(reply->element[0]->str, reply->element[0]->len);
			TribRedisFreeReply(reply);
		} while (strcmp(cursor, "0-0") != 0 && ++rounds < 100000);
		return true;
	}

	/* before 6.2: XPENDING key group - + n, then XCLAIM the ids of other consumers */
	for (;;)
	{
		const char *argv[] = {"XPENDING", key->name, r->opts.group, "-", "+", TRIB_REDIS_CLAIM_COUNT};
		redisReply *reply;
		const char **claim;
		int			nclaim = 0;

		reply = TribRedisCommandV(r, lengthof(argv), argv);
		if (reply == NULL)
			return false;
		if (reply->type != REDIS_REPLY_ARRAY)
		{
			*error = TribRedisErrorText(reply, psprintf("could not list the pending entries of key \"%s\"", key->name));
			return false;
		}
		claim = palloc(sizeof(char *) * (reply->elements + 6));
		claim[0] = "XCLAIM";
		claim[1] = key->name;
		claim[2] = r->opts.group;
		claim[3] = r->consumer;
		claim[4] = "0";
		nclaim = 5;
		for (size_t i = 0; i < reply->elements; i++)
		{
			redisReply *e = reply->element[i];

			if (e->type == REDIS_REPLY_ARRAY && e->elements >= 2 &&
				strcmp(e->element[1]->str, r->consumer) != 0)
				claim[nclaim++] = pstrdup(e->element[0]->str);
		}
		TribRedisFreeReply(reply);
		if (nclaim == 5)
			return true;
		claim[nclaim++] = "JUSTID";
		reply = TribRedisCommandV(r, nclaim, claim);
		if (reply == NULL)
			return false;
		if (reply->type == REDIS_REPLY_ERROR)
		{
			*error = TribRedisErrorText(reply, psprintf("could not claim the pending entries of key \"%s\"", key->name));
			return false;
		}
		TribRedisFreeReply(reply);
	}
}

/*
 * Make the key's group where it is missing, at pos (text). True when it was made; false
 * when it existed (BUSYGROUP), the connection failed, or the server refused (*error).
 */
static bool
TribRedisCreateGroup(TribRedis *r, TribRedisKey *key, const char *pos, char **error)
{
	const char *argv[] = {"XGROUP", "CREATE", key->name, r->opts.group, pos, "MKSTREAM"};
	redisReply *reply;
	bool		made;

	*error = NULL;
	reply = TribRedisCommandV(r, lengthof(argv), argv);
	if (reply == NULL)
		return false;
	if (TribRedisReplyIsError(reply, "BUSYGROUP"))
	{
		TribRedisFreeReply(reply);
		return false;
	}
	if (reply->type == REDIS_REPLY_ERROR)
	{
		*error = TribRedisErrorText(reply, psprintf("could not create consumer group \"%s\" of key \"%s\"",
													r->opts.group, key->name));
		return false;
	}
	made = true;
	TribRedisFreeReply(reply);
	return made;
}

/* Move the key's group to pos (after a reset of a position past the key's end). */
static bool
TribRedisSetGroupId(TribRedis *r, TribRedisKey *key, const char *pos, char **error)
{
	const char *argv[] = {"XGROUP", "SETID", key->name, r->opts.group, pos};
	redisReply *reply;

	*error = NULL;
	reply = TribRedisCommandV(r, lengthof(argv), argv);
	if (reply == NULL)
		return false;
	if (reply->type == REDIS_REPLY_ERROR)
	{
		*error = TribRedisErrorText(reply, psprintf("could not move consumer group \"%s\" of key \"%s\"",
													r->opts.group, key->name));
		return false;
	}
	TribRedisFreeReply(reply);
	return true;
}

/* Where a key without a stored position starts: the "start" option as an id for XGROUP CREATE. */
static char *
TribRedisStartId(TribRedis *r)
{
	switch (r->opts.start)
	{
		case TRIB_REDIS_START_ALL:
			return pstrdup("0");
		case TRIB_REDIS_START_NEW:
			return pstrdup("$");
		case TRIB_REDIS_START_AFTER:
			return TribRedisIdText(r->opts.start_after);
	}
	return pstrdup("0");
}

/*
 * A stored position past the key's last id: the key was deleted and re-created (or
 * flushed). Go on from the key's start, or its end with start "$", store that position,
 * and move the group there if it exists; as Kafka does with an offset out of range.
 */
static void
TribRedisResetPosition(TribRedis *r, TribRedisKey *key, TribRedisId last, bool exists)
{
	TribRedisId old = key->stored;
	MemoryContext caller = CurrentMemoryContext;

	key->stored = r->opts.start == TRIB_REDIS_START_NEW ? last : (TribRedisId) {0, 0};
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	TribRedisStorePositions(r, false);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
	ereport(WARNING,
			(errmsg("tributary stream \"%s\": stored position %s of key \"%s\" is past the key's last entry; going on after %s",
					r->def->name, TribRedisIdText(old), key->name, TribRedisIdText(key->stored)),
			 exists ? errdetail("The key's last entry id is %s.", TribRedisIdText(last)) :
			 errdetail("The key does not exist."),
			 errhint("The key was deleted and re-created, or the server lost its data.")));
}

/*
 * Take every key of this worker's share that it holds and has not taken since it
 * connected: stored position, group, range, claims (see the file's header). Returns false
 * when the connection failed or the server refused something (then said in last_error);
 * the keys taken stay taken.
 */
bool
TribRedisSetUpKeys(TribRedis *r)
{
	bool		need = false;
	MemoryContext caller = CurrentMemoryContext;

	for (int i = 0; i < r->nkeys; i++)
		need |= r->keys[i].owned && !r->keys[i].ready;
	if (!need)
		return true;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	TribRedisReadStored(r, true);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);

	for (int i = 0; i < r->nkeys && r->rc != NULL; i++)
	{
		TribRedisKey *key = &r->keys[i];
		TribRedisId last;
		bool		exists;
		bool		reset = false;
		char	   *error = NULL;
		char	   *pos;

		if (!key->owned || key->ready)
			continue;
		exists = TribRedisLastId(r, key, &last, &error);
		if (error == NULL && r->rc != NULL && key->has_stored && TribRedisIdCmp(key->stored, last) > 0)
		{
			TribRedisResetPosition(r, key, last, exists);
			reset = true;
		}
		if (error == NULL && r->rc != NULL)
		{
			pos = key->has_stored ? TribRedisIdText(key->stored) : TribRedisStartId(r);
			if (TribRedisCreateGroup(r, key, pos, &error))
			{
				if (key->was_ready)
					ereport(LOG,
							(errmsg("tributary stream \"%s\": consumer group \"%s\" of key \"%s\" was gone; created it again after %s",
									r->def->name, r->opts.group, key->name, pos),
							 errdetail("The key was deleted or flushed, or the group destroyed, while the stream read it.")));
			}
			else if (error == NULL && r->rc != NULL && reset)
				(void) TribRedisSetGroupId(r, key, pos, &error);
		}
		if (error == NULL && r->rc != NULL)
			(void) TribRedisClaim(r, key, &error);
		if (error != NULL)
		{
			TribRedisReport(r, error);
			return false;
		}
		if (r->rc == NULL)
			return false;
		key->ready = true;
		key->was_ready = true;
		key->history = true;
		key->history_after = (TribRedisId) {0, 0};
	}
	return r->rc != NULL;
}

/*
 * About once a second: each ready key's lag as the server counts it (XINFO GROUPS, the
 * group's "lag": entries not yet delivered to it; Redis 7.0 and later), for stream_stats.
 */
void
TribRedisRefreshLag(TribRedis *r)
{
	TimestampTz now = GetCurrentTimestamp();

	if (r->rc == NULL || !TimestampDifferenceExceeds(r->lag_at, now, 1000))
		return;
	r->lag_at = now;
	for (int i = 0; i < r->nkeys && r->rc != NULL; i++)
	{
		TribRedisKey *key = &r->keys[i];
		const char *argv[3] = {"XINFO", "GROUPS", key->name};
		redisReply *reply;

		if (!key->ready)
			continue;
		reply = TribRedisCommandV(r, 3, argv);
		if (reply == NULL)
			return;
		for (size_t g = 0; reply->type == REDIS_REPLY_ARRAY && g < reply->elements; g++)
		{
			redisReply *group = reply->element[g];
			bool		ours = false;
			int64		lag = -1;

			for (size_t f = 0; group->type == REDIS_REPLY_ARRAY && f + 1 < group->elements; f += 2)
			{
				redisReply *name = group->element[f];
				redisReply *value = group->element[f + 1];

				if (name->type != REDIS_REPLY_STRING)
					continue;
				if (strcmp(name->str, "name") == 0 && value->type == REDIS_REPLY_STRING)
					ours = strcmp(value->str, r->opts.group) == 0;
				else if (strcmp(name->str, "lag") == 0 && value->type == REDIS_REPLY_INTEGER)
					lag = value->integer;
			}
			if (ours && lag >= 0)
				TribPartitionSetLag(&r->def->key, key->name, -1, lag);
		}
		TribRedisFreeReply(reply);
	}
}
