/*
 * redis_conn.c
 *		The Redis source's side of the server: connecting (with backoff), commands and their
 *		replies, the lock that makes one worker the reader of a key, each key's consumer
 *		group, and the positions stored in tributary.offsets.
 *
 * Why a key has one reader at a time. A consumer group hands each new entry out once, in
 * id order; tributary stores, per key, the last entry id it stored, in the batch's
 * transaction. That position is exact only when the entries of a key are stored in id
 * order, which holds when one consumer reads the key at a time: every entry at or below
 * the position is stored, every entry after it is not. So a worker reads a key only while
 * it holds the key's lock, a session-level advisory lock of the database keyed by the
 * stream's name and the key (TRIB_LOCKTAG_REDIS_KEY), taken without waiting; the keys of a
 * stream are split among its workers, and a worker whose share is held by another (a
 * worker of the previous definition that has not exited yet) tries again every second.
 *
 * Why no pending list. Since the stored position divides the key, the group's list of
 * pending entries would only repeat what PostgreSQL knows, at twice the server's work per
 * entry (bench/RESULTS.md): the worker reads with NOACK, so entries are never pending, and
 * nothing is acknowledged. What the group handed out past the stored position and was not
 * stored (the worker stopped, failed, lost its connection) is handed out again because a
 * key's new reader moves the group back to the stored position.
 *
 * Taking a key (TribRedisSetUpKeys), after every connect: the stored position is read; a
 * stored position past the key's last id (the key was deleted and re-created) is reset,
 * with a WARNING, as Kafka's out-of-range offsets are; the key's group is made where it is
 * missing (XGROUP CREATE ... MKSTREAM, at the stored position or the "start" option), and
 * said in the log when it existed before (a FLUSHALL, a deleted key, a destroyed group);
 * where it exists, its pending list is emptied (entries left by an earlier version or by
 * another consumer of the group: each is stored already or handed out again) and it is
 * moved back to the stored position (XGROUP SETID), or, with none stored, to before its
 * first pending entry.
 *
 * The connection: every command that fails on the connection closes it; the next collect
 * connects again after a backoff (100 ms doubling to 5 s), writes why to last_error while
 * it cannot, and takes every key again, so nothing read before the failure is lost or
 * stored twice.
 */
#include "postgres.h"

#include <unistd.h>

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
#define TRIB_REDIS_PENDING_PAGE "1000"
#define TRIB_REDIS_READ_MIN (64 * 1024)	/* the least buffer of a reply read whole */
#define TRIB_REDIS_READ_MAX_HINT (64 * 1024 * 1024) /* largest buffer sized ahead */

static struct timeval
TribRedisTimeval(int ms)
{
	struct timeval tv;

	tv.tv_sec = ms / 1000;
	tv.tv_usec = (ms % 1000) * 1000;
	return tv;
}

/*
 * Reply objects. hiredis builds the replies of the commands it reads (all but XREADGROUP,
 * whose replies are read whole: TribRedisReadWhole) through the reader's object
 * functions; tributary's put them in the consumer's reply memory (reply_cxt) rather than
 * malloc. They are freed one by one (TribRedisFreeReply).
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

/* Whether an error reply's text (str, len) has code as its code (its first word). */
bool
TribRedisErrorIs(const char *str, size_t len, const char *code)
{
	size_t		codelen = strlen(code);

	return len >= codelen && strncmp(str, code, codelen) == 0 &&
		(len == codelen || str[codelen] == ' ');
}

/* Whether reply is an error whose code (its first word) is code. */
bool
TribRedisReplyIsError(redisReply *reply, const char *code)
{
	return reply != NULL && reply->type == REDIS_REPLY_ERROR &&
		TribRedisErrorIs(reply->str, reply->len, code);
}

/* Close the connection after a failure (why); the next collect connects again after the backoff. */
void
TribRedisDisconnect(TribRedis *r, const char *why)
{
	if (r->rc == NULL)
		return;
	why = pstrdup(why);			/* often the context's own errstr, freed next */
	redisFree(r->rc);
	r->rc = NULL;
	r->read_ahead = false;
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
 * the worker does something else); its reply must be read (TribRedisReadWhole) before any
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

/*
 * The reply of the oldest command sent ahead, read whole into a buffer of its own in the
 * consumer's reply memory and left for the caller to walk in place (redis_resp.c says
 * why): for XREADGROUP. The buffer is sized by the largest reply so far, so a batch's
 * reply is read straight into it. False when the connection failed (it is then closed and
 * reported).
 */
bool
TribRedisReadWhole(TribRedis *r, TribResp *resp)
{
	redisReader *reader;
	TribRespScanState scan = {0};
	size_t		cap;
	size_t		len = 0;
	char	   *buf;

	if (r->rc == NULL)
		return false;
	reader = r->rc->reader;
	if (reader->ridx != -1 || reader->pos < reader->len)
	{
		/* hiredis holds bytes of a reply: never, as only one command is out at a time */
		TribRedisDisconnect(r, "replies out of step with commands");
		return false;
	}
	cap = Max(r->largest_reply + r->largest_reply / 8, TRIB_REDIS_READ_MIN);
	buf = MemoryContextAllocHuge(r->reply_cxt, cap);
	for (;;)
	{
		int			scanned = TribRespScan(&scan, buf, len);
		ssize_t		got;

		if (scanned > 0)
			break;
		if (scanned < 0)
		{
			pfree(buf);
			TribRedisDisconnect(r, "a reply that is not the Redis protocol");
			return false;
		}
		if (cap - len < TRIB_REDIS_READ_MIN / 2)
		{
			cap *= 2;
			buf = repalloc_huge(buf, cap);
		}
		got = read(r->rc->fd, buf + len, cap - len);
		if (got > 0)
			len += (size_t) got;
		else if (got < 0 && errno == EINTR)
			CHECK_FOR_INTERRUPTS();
		else
		{
			const char *why = got == 0 ? "the server closed the connection" :
				(errno == EAGAIN || errno == EWOULDBLOCK) ? "timed out waiting for a reply" :
				strerror(errno);

			pfree(buf);
			TribRedisDisconnect(r, why);
			return false;
		}
	}
	/* bytes after the reply are the next command's: hiredis's reader keeps them */
	if (scan.pos < len && redisReaderFeed(reader, buf + scan.pos, len - scan.pos) != REDIS_OK)
	{
		pfree(buf);
		TribRedisDisconnect(r, "out of memory");
		return false;
	}
	r->largest_reply = Max(r->largest_reply, Min(scan.pos, (size_t) TRIB_REDIS_READ_MAX_HINT));
	resp->data = buf;
	resp->len = scan.pos;
	resp->cur = buf;
	return true;
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

/*
 * Connect when the backoff allows: log in, select the database.
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
	if (TribSpiExecute("SELECT source_stream, position FROM tributary.offsets "
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
 * Empty the group's pending list of the key, whoever the entries were handed to (a reader
 * of an earlier tributary version, another consumer of the group): each is either stored
 * already (at or below the stored position) or handed out again when the group moves
 * back to that position (TribRedisSetUpKeys); none needs to stay pending. *first is set to
 * the lowest pending id when there was one (has_first). False when the connection failed
 * or the server refused (*error).
 */
static bool
TribRedisClearPending(TribRedis *r, TribRedisKey *key, bool *has_first, TribRedisId *first,
					  char **error)
{
	*error = NULL;
	*has_first = false;
	for (;;)
	{
		const char *argv[] = {"XPENDING", key->name, r->opts.group, "-", "+", TRIB_REDIS_PENDING_PAGE};
		redisReply *reply = TribRedisCommandV(r, lengthof(argv), argv);
		const char **ack;
		int			nack = 0;
		size_t		listed;

		if (reply == NULL)
			return false;
		if (reply->type != REDIS_REPLY_ARRAY)
		{
			*error = TribRedisErrorText(reply, psprintf("could not list the pending entries of key \"%s\"", key->name));
			return false;
		}
		listed = reply->elements;
		ack = palloc(sizeof(char *) * (listed + 3));
		ack[nack++] = "XACK";
		ack[nack++] = key->name;
		ack[nack++] = r->opts.group;
		for (size_t i = 0; i < listed; i++)
		{
			redisReply *e = reply->element[i];
			TribRedisId id;

			if (e->type != REDIS_REPLY_ARRAY || e->elements < 1 ||
				e->element[0]->type != REDIS_REPLY_STRING ||
				!TribRedisParseId(e->element[0]->str, e->element[0]->len, &id))
				continue;
			if (!*has_first || TribRedisIdCmp(id, *first) < 0)
				*first = id;
			*has_first = true;
			ack[nack++] = pstrdup(e->element[0]->str);
		}
		TribRedisFreeReply(reply);
		if (nack == 3)
			return true;
		reply = TribRedisCommandV(r, nack, ack);
		if (reply == NULL)
			return false;
		if (reply->type == REDIS_REPLY_ERROR)
		{
			*error = TribRedisErrorText(reply, psprintf("could not acknowledge the pending entries of key \"%s\"", key->name));
			return false;
		}
		TribRedisFreeReply(reply);
		if (listed < (size_t) atoi(TRIB_REDIS_PENDING_PAGE))
			return true;
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

/* Move the key's group to pos: its reader goes on after pos. */
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

/*
 * Where a key without a stored position starts, as the "start" option says: before every
 * entry, after last (the key's last id now: "$" without the race of reading it twice), or
 * after the given id.
 */
static TribRedisId
TribRedisStartId(TribRedis *r, TribRedisId last)
{
	TribRedisId none = {0, 0};

	switch (r->opts.start)
	{
		case TRIB_REDIS_START_ALL:
			return none;
		case TRIB_REDIS_START_NEW:
			return last;
		case TRIB_REDIS_START_AFTER:
			return r->opts.start_after;
	}
	return none;
}

/* The id right before id (0-0 stays 0-0). */
static TribRedisId
TribRedisIdBefore(TribRedisId id)
{
	if (id.seq > 0)
		id.seq--;
	else if (id.ms > 0)
	{
		id.ms--;
		id.seq = PG_UINT64_MAX;
	}
	return id;
}

/* The group's last delivered id (XINFO GROUPS), into *pos; false when unknown or refused. */
static bool
TribRedisGroupPosition(TribRedis *r, TribRedisKey *key, TribRedisId *pos, char **error)
{
	const char *argv[3] = {"XINFO", "GROUPS", key->name};
	redisReply *reply = TribRedisCommandV(r, 3, argv);
	bool		found = false;

	*error = NULL;
	if (reply == NULL)
		return false;
	if (reply->type != REDIS_REPLY_ARRAY)
	{
		*error = TribRedisErrorText(reply, psprintf("could not read the groups of key \"%s\"", key->name));
		return false;
	}
	for (size_t g = 0; g < reply->elements && !found; g++)
	{
		redisReply *group = reply->element[g];
		bool		ours = false;
		redisReply *delivered = NULL;

		for (size_t f = 0; group->type == REDIS_REPLY_ARRAY && f + 1 < group->elements; f += 2)
		{
			redisReply *name = group->element[f];
			redisReply *value = group->element[f + 1];

			if (name->type != REDIS_REPLY_STRING || value->type != REDIS_REPLY_STRING)
				continue;
			if (strcmp(name->str, "name") == 0)
				ours = strcmp(value->str, r->opts.group) == 0;
			else if (strcmp(name->str, "last-delivered-id") == 0)
				delivered = value;
		}
		if (ours && delivered != NULL)
			found = TribRedisParseId(delivered->str, delivered->len, pos);
	}
	TribRedisFreeReply(reply);
	if (!found)
		*error = psprintf("could not find consumer group \"%s\" of key \"%s\"", r->opts.group, key->name);
	return found;
}

/*
 * Store every key's position in a transaction of its own, outside a batch (a key's
 * starting point, a position reset); back in the caller's memory after.
 */
static void
TribRedisStoreNow(TribRedis *r)
{
	MemoryContext caller = CurrentMemoryContext;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	TribRedisStorePositions(r, false);
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
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

	key->stored = r->opts.start == TRIB_REDIS_START_NEW ? last : (TribRedisId) {0, 0};
	TribRedisStoreNow(r);
	ereport(WARNING,
			(errmsg("tributary stream \"%s\": stored position %s of key \"%s\" is past the key's last entry; going on after %s",
					r->def->name, TribRedisIdText(old), key->name, TribRedisIdText(key->stored)),
			 exists ? errdetail("The key's last entry id is %s.", TribRedisIdText(last)) :
			 errdetail("The key does not exist."),
			 errhint("The key was deleted and re-created, or the server lost its data.")));
}

/*
 * Take every key of this worker's share that it holds and has not taken since it
 * connected: stored position, range, group, pending list (see the file's header). Returns false
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
	{
		/* connected, nothing to take: an error from before the connection is over */
		if (r->rc != NULL && r->reported_error != NULL)
			TribRedisReport(r, NULL);
		return r->rc != NULL;
	}

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
		char	   *error = NULL;
		char	   *pos;

		if (!key->owned || key->ready)
			continue;
		exists = TribRedisLastId(r, key, &last, &error);
		if (error == NULL && r->rc != NULL && key->has_stored && TribRedisIdCmp(key->stored, last) > 0)
			TribRedisResetPosition(r, key, last, exists);
		if (error == NULL && r->rc != NULL)
		{
			bool		first_take = !key->has_stored;
			TribRedisId from = key->has_stored ? key->stored : TribRedisStartId(r, last);

			pos = TribRedisIdText(from);
			if (TribRedisCreateGroup(r, key, pos, &error))
			{
				if (key->was_ready)
					ereport(LOG,
							(errmsg("tributary stream \"%s\": consumer group \"%s\" of key \"%s\" was gone; created it again after %s",
									r->def->name, r->opts.group, key->name, pos),
							 errdetail("The key was deleted or flushed, or the group destroyed, while the stream read it.")));
			}
			else if (error == NULL && r->rc != NULL)
			{
				/*
				 * The group existed: what it handed out after the stored position and this
				 * worker did not store (it stopped, failed, lost the connection) must be
				 * handed out again, pending or not. Move it back to the stored position.
				 * Without one (a group made outside tributary), go on from before its
				 * first pending entry, or from where it is.
				 */
				bool		has_first;
				TribRedisId first;

				if (TribRedisClearPending(r, key, &has_first, &first, &error))
				{
					if (key->has_stored)
						(void) TribRedisSetGroupId(r, key, pos, &error);
					else if (has_first)
					{
						from = TribRedisIdBefore(first);
						pos = TribRedisIdText(from);
						(void) TribRedisSetGroupId(r, key, pos, &error);
					}
					else
						(void) TribRedisGroupPosition(r, key, &from, &error);
				}
			}

			/*
			 * A key read for the first time: its starting point is stored before anything
			 * is read, so entries read and not stored (a crash before the first commit)
			 * are read again from there, as after any other.
			 */
			if (error == NULL && r->rc != NULL && first_take)
			{
				key->stored = from;
				key->has_stored = true;
				TribRedisStoreNow(r);
			}
		}
		if (error != NULL)
		{
			TribRedisReport(r, error);
			return false;
		}
		if (r->rc == NULL)
			return false;
		key->ready = true;
		key->was_ready = true;
	}
	/* the server answered for every key: what kept it from doing so is over */
	if (r->rc != NULL)
		TribRedisReport(r, NULL);
	MemoryContextSwitchTo(caller);
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
			/* after XGROUP SETID the server may not know the lag for a while: shown as NULL */
			if (ours)
				TribPartitionSetLag(&r->def->key, key->name, -1, lag);
		}
		TribRedisFreeReply(reply);
	}
}
