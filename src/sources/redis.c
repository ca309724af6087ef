/*
 * redis.c
 *		The Redis Streams source: a consumer of a consumer group per worker, reading with
 *		XREADGROUP through hiredis. This file collects batches, turns entries into messages
 *		(option "fields"), fences and stores positions, and holds the source routine,
 *		TribRedisSource, at its end: the one consume loop (consume.c) drives the consumer
 *		through it and commits each batch through the batch path.
 *
 * Exactly once into PostgreSQL: a batch's rows, its dead letters and, per key, the last
 * entry id it stored (tributary.offsets) commit in one transaction. Each key is read by one
 * worker at a time, in id order, so the stored id divides the key: at or below it
 * everything is stored, above it nothing. Entries are read with NOACK (no pending list;
 * redis_conn.c says why) and a key's reader starts by moving the group back to the stored
 * id, so after a crash, a lost connection or a server restart what was read and not stored
 * is read again, and what was stored is not.
 *
 * After a full batch the next read is sent before the batch is inserted (read ahead), so
 * redis-server prepares it while PostgreSQL works.
 *
 * Entries as messages (option "fields"): one field's value is the payload; pairs whose
 * values all stay strings (format json's default) are handed over as named values
 * (TribMessage.pairs), which the json format reads without JSON text; pairs with values
 * to parse as JSON are made into a JSON object.
 *
 * Reading: XREADGROUP's replies are read whole into a buffer and walked in place
 * (redis_resp.c), not through hiredis's reader, which would make an object of every field
 * and value; other commands go through hiredis.
 *
 * Memory: at most batch_size entries (and one read ahead) are held, in the replies' buffers,
 * which live in the consumer's reply memory (redis_conn.c) and which messages point into
 * (values are not copied); a JSON object is built in the batch's memory. The buffers are
 * freed with the batch at release.
 *
 * The rest of the source: redis_options.c (options, entry ids, the URL's password),
 * redis_conn.c (the server: connection, replies, keys' locks, groups, stored positions),
 * redis_internal.h, what they share.
 */
#include "postgres.h"

#include <hiredis/hiredis.h>

#include "access/xact.h"
#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "postmaster/interrupt.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "catalog.h"
#include "formats/format.h"
#include "shmem.h"
#include "sources/redis_internal.h"
#include "sources/source.h"

#define TRIB_REDIS_POLL_MS 100		/* longest XREADGROUP BLOCK: signals are seen this often */
#define TRIB_REDIS_LOCK_RETRY_MS 1000

/* Whether len bytes are one JSON value (for a field the "fields" option parses). */
static bool
TribRedisIsJson(const char *s, size_t len)
{
	JsonLexContext *lex;
	JsonParseErrorType err;

	if (len == 0 || !pg_verify_mbstr(GetDatabaseEncoding(), s, (int) len, true))
		return false;
#if PG_VERSION_NUM >= 170000
	lex = makeJsonLexContextCstringLen(NULL, unconstify(char *, s), (int) len, GetDatabaseEncoding(), false);
#elif PG_VERSION_NUM >= 160000
	lex = makeJsonLexContextCstringLen(NULL, unconstify(char *, s), (int) len, GetDatabaseEncoding(), false);
#else
	lex = makeJsonLexContextCstringLen(unconstify(char *, s), (int) len, GetDatabaseEncoding(), false);
#endif
	err = pg_parse_json(lex, &nullSemAction);
	return err == JSON_SUCCESS;
}

/* Whether field name (len bytes) is in list. */
static bool
TribRedisFieldListed(List *list, const char *name, size_t len)
{
	ListCell   *lc;

	foreach(lc, list)
	{
		const char *f = lfirst(lc);

		if (strlen(f) == len && memcmp(f, name, len) == 0)
			return true;
	}
	return false;
}

/* Whether the "fields" option parses field name's value as JSON. */
static bool
TribRedisFieldIsJson(TribRedisOptions *o, const char *name, size_t len)
{
	if (TribRedisFieldListed(o->json_fields, name, len))
		return true;
	if (o->json_default)
		return !TribRedisFieldListed(o->text_fields, name, len);
	return false;
}

/*
 * An entry's field-value pairs as one JSON object: values as strings, or as JSON where
 * option "fields" says so. A value asked for as JSON that is not JSON is written as it
 * came, and *bad (NULL on entry) set to its field, the first such.
 */
static char *
TribRedisEntryObject(TribRedisOptions *o, const TribText *fields, int64 nfields, int *len,
					 char **bad)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoCharMacro(&buf, '{');
	for (int64 i = 0; i + 1 < nfields; i += 2)
	{
		const TribText *f = &fields[i];
		const TribText *v = &fields[i + 1];

		if (i > 0)
			appendStringInfoString(&buf, ", ");
		TribAppendJsonString(&buf, f->text, f->len);
		appendStringInfoString(&buf, ": ");
		if (TribRedisFieldIsJson(o, f->text, f->len))
		{
			/* not JSON: kept as it came, so the object is no JSON either (nor on replay) */
			if (*bad == NULL && !TribRedisIsJson(v->text, v->len))
				*bad = pnstrdup(f->text, f->len);
			appendBinaryStringInfo(&buf, v->text, v->len);
		}
		else
			TribAppendJsonString(&buf, v->text, v->len);
	}
	appendStringInfoCharMacro(&buf, '}');
	*len = buf.len;
	return buf.data;
}

/* Whether an entry's field list (nfields -1: nil) is pairs of strings. */
static bool
TribRedisFieldsWellFormed(const TribText *fields, int64 nfields)
{
	if (nfields < 0 || nfields % 2 != 0)
		return false;
	for (int64 i = 0; i < nfields; i++)
		if (fields[i].text == NULL)
			return false;
	return true;
}

/*
 * The entry's pairs as m's named values (TribMessage.pairs): the json format reads them as
 * an object of strings, and a dead letter's payload is made of them.
 */
static void
TribRedisEntryPairs(const TribText *fields, int64 nfields, TribMessage *m)
{
	m->len = 0;
	for (int64 i = 0; i < nfields; i++)
		m->len += fields[i].len;
	m->data = NULL;
	m->pairs = fields;
	m->npairs = (int) (nfields / 2);
}

/*
 * Fill m from an entry of key, id (idtext as it came) and fields (nfields, -1 when nil; a
 * text NULL where an element is no string): its payload as the "fields" option makes it,
 * its metadata.
 */
static void
TribRedisEntryMessage(TribRedis *r, TribRedisKey *key, char *idtext, TribRedisId id,
					  const TribText *fields, int64 nfields, TribMessage *m)
{
	TribRedisOptions *o = &r->opts;
	char	   *bad = NULL;
	int			len;

	memset(m, 0, sizeof(*m));
	m->topic = key->name;
	m->partition = -1;
	m->offset = -1;
	m->position = idtext;
	m->timestamp_ms = id.ms > (uint64) PG_INT64_MAX ? -1 : (int64) id.ms;
	m->data = "";

	if (!TribRedisFieldsWellFormed(fields, nfields))
	{
		m->malformed = "the Redis entry is not a list of field-value pairs";
		return;
	}
	if (o->fields == TRIB_FIELDS_ONE)
	{
		size_t		fieldlen = strlen(o->field);

		for (int64 i = 0; i + 1 < nfields; i += 2)
		{
			if ((size_t) fields[i].len == fieldlen && memcmp(fields[i].text, o->field, fieldlen) == 0)
			{
				m->data = fields[i + 1].text;
				m->len = fields[i + 1].len;
				return;
			}
		}
		/* a dead letter, whose payload is the entry as an object of strings */
		TribRedisEntryPairs(fields, nfields, m);
		m->malformed = psprintf("the Redis entry has no field \"%s\"", o->field);
		m->malformed_detail = "Option \"fields\" names the field that holds the payload; the dead letter holds the entry's fields as a JSON object.";
	}
	else if (o->json_fields == NIL && !o->json_default)
	{
		/* every value a string: the format reads the pairs themselves, no JSON text */
		TribRedisEntryPairs(fields, nfields, m);
	}
	else
	{
		m->data = TribRedisEntryObject(o, fields, nfields, &len, &bad);
		m->len = len;
		if (bad != NULL)
		{
			m->malformed = psprintf("field \"%s\" of the Redis entry is not valid JSON", bad);
			m->malformed_detail = "Option \"fields\" asks for the field's value to be parsed as JSON; the dead letter holds the entry as the object it makes, with that value as it came.";
		}
	}
}

/* Skip the rest of an element just read: an array's elements. */
static void
TribRedisSkipRest(TribResp *resp, const TribRespItem *item)
{
	for (int64 i = 0; item->type == TRIB_RESP_ARRAY && i < item->n; i++)
		TribRespSkip(resp);
}

/* The key named by an element of a reply, or NULL when it is none of this worker's. */
static TribRedisKey *
TribRedisReplyKey(TribRedis *r, const TribRespItem *name)
{
	if (name->type != TRIB_RESP_STRING)
		return NULL;
	for (int k = 0; k < r->nkeys; k++)
		if ((size_t) r->keys[k].name_len == name->len &&
			memcmp(r->keys[k].name, name->str, name->len) == 0)
			return &r->keys[k];
	return NULL;
}

/*
 * Take the entries of an XREADGROUP reply, after its outer array of nstreams elements
 * ([key, [[id, [field, value, ...]], ...]] each), as messages. Their values point into the
 * reply. An entry at or below its key's stored id is stored already (the group was moved
 * back by hand, or a server restored from an older snapshot): skipped. Returns how many
 * messages it added.
 */
static int
TribRedisTakeReply(TribRedis *r, TribResp *resp, int64 nstreams, TribMessage *msgs,
				   int64 *bytes)
{
	int			added = 0;
	TribText   *pool = NULL;	/* field texts, carved out for the entries */
	int64		pool_left = 0;

	for (int64 s = 0; s < nstreams; s++)
	{
		TribRespItem sr;
		TribRespItem name;
		TribRespItem entries;
		TribRedisKey *key;
		int			skipped = 0;

		TribRespNext(resp, &sr);
		if (sr.type != TRIB_RESP_ARRAY || sr.n != 2)
		{
			TribRedisSkipRest(resp, &sr);
			continue;
		}
		TribRespNext(resp, &name);
		TribRedisSkipRest(resp, &name);
		key = TribRedisReplyKey(r, &name);
		TribRespNext(resp, &entries);
		if (key == NULL || entries.type != TRIB_RESP_ARRAY)
		{
			TribRedisSkipRest(resp, &entries);
			continue;
		}
		for (int64 e = 0; e < entries.n; e++)
		{
			TribRespItem entry;
			TribRespItem idtext;
			TribRespItem fields;
			TribText   *texts = NULL;
			TribRedisId id;

			TribRespNext(resp, &entry);
			if (entry.type != TRIB_RESP_ARRAY || entry.n != 2)
			{
				TribRedisSkipRest(resp, &entry);
				continue;
			}
			TribRespNext(resp, &idtext);
			TribRedisSkipRest(resp, &idtext);
			TribRespNext(resp, &fields);
			if (idtext.type != TRIB_RESP_STRING ||
				!TribRedisParseId(idtext.str, idtext.len, &id) ||
				(key->has_stored && TribRedisIdCmp(id, key->stored) <= 0))
			{
				skipped += idtext.type == TRIB_RESP_STRING && key->has_stored;
				TribRedisSkipRest(resp, &fields);
				continue;
			}
			if (fields.type == TRIB_RESP_ARRAY)
			{
				if (pool_left < fields.n)
				{
					pool_left = Max(fields.n, 8192);
					pool = palloc(sizeof(TribText) * pool_left);
				}
				texts = pool;
				pool += fields.n;
				pool_left -= fields.n;
				for (int64 f = 0; f < fields.n; f++)
				{
					TribRespItem v;

					TribRespNext(resp, &v);
					TribRedisSkipRest(resp, &v);
					texts[f].text = v.type == TRIB_RESP_STRING ? v.str : NULL;
					texts[f].len = v.type == TRIB_RESP_STRING ? (int) Min(v.len, (size_t) PG_INT32_MAX) : 0;
				}
			}
			TribRedisEntryMessage(r, key, idtext.str, id, texts,
								  fields.type == TRIB_RESP_ARRAY ? fields.n : -1, &msgs[r->held]);
			r->msg_key[r->held] = (int) (key - r->keys);
			r->msg_id[r->held] = id;
			*bytes += msgs[r->held].len;
			r->held++;
			added++;
		}
		if (skipped > 0)
			ereport(LOG,
					(errmsg("tributary stream \"%s\": skipped %d entries of key \"%s\" handed out again, stored already",
							r->def->name, skipped, key->name),
					 errdetail("The key's stored position is %s.", TribRedisIdText(key->stored))));
	}
	return added;
}

/* An XREADGROUP being built: its arguments. */
typedef struct TribRedisArgs
{
	const char **argv;
	int			argc;
} TribRedisArgs;

/*
 * The XREADGROUP of one read: new entries (">") of every ready key, at most want in all,
 * waiting up to block_ms for the first (0: not at all). NOACK: the group keeps no pending
 * list of them; the position stored in PostgreSQL says what is stored, and a key's new
 * reader moves the group back to it (redis_conn.c). False when no key is ready.
 */
static bool
TribRedisReadArgs(TribRedis *r, int want, long block_ms, TribRedisArgs *a)
{
	int			nready = 0;

	for (int i = 0; i < r->nkeys; i++)
		nready += r->keys[i].ready;
	if (nready == 0)
		return false;
	a->argv = palloc(sizeof(char *) * (10 + 2 * nready));
	a->argc = 0;
	a->argv[a->argc++] = "XREADGROUP";
	a->argv[a->argc++] = "GROUP";
	a->argv[a->argc++] = r->opts.group;
	a->argv[a->argc++] = r->consumer;
	a->argv[a->argc++] = "COUNT";
	a->argv[a->argc++] = psprintf("%d", Max(1, want / nready));
	if (block_ms > 0)
	{
		a->argv[a->argc++] = "BLOCK";
		a->argv[a->argc++] = psprintf("%ld", block_ms);
	}
	a->argv[a->argc++] = "NOACK";
	a->argv[a->argc++] = "STREAMS";
	for (int i = 0; i < r->nkeys; i++)
		if (r->keys[i].ready)
			a->argv[a->argc++] = r->keys[i].name;
	for (int i = 0; i < r->nkeys; i++)
		if (r->keys[i].ready)
			a->argv[a->argc++] = ">";
	return true;
}

/*
 * Take an XREADGROUP's reply, read whole, into msgs. Returns the messages added; an error
 * reply (a group gone: NOGROUP) makes the keys be taken again. Frees the reply, or keeps
 * it until the batch is released when messages point into it.
 */
static int
TribRedisTakeRead(TribRedis *r, TribResp *resp, TribMessage *msgs, int64 *bytes)
{
	TribRespItem top;
	int			added = 0;

	TribRespNext(resp, &top);
	if (top.type == TRIB_RESP_ERROR)
	{
		/* the group or the key is gone (NOGROUP), or the key is no stream: take the keys again */
		bool		nogroup = TribRedisErrorIs(top.str, top.len, "NOGROUP");

		if (!nogroup)
			TribRedisReport(r, psprintf("could not read from Redis at %s: %s", r->opts.where, top.str));
		for (int i = 0; i < r->nkeys; i++)
			r->keys[i].ready = false;
		pfree(resp->data);
		if (!nogroup)
			TribRedisWait(r, TRIB_REDIS_LOCK_RETRY_MS);
		return 0;
	}
	/* a nil array: nothing within BLOCK */
	if (top.type == TRIB_RESP_ARRAY)
		added = TribRedisTakeReply(r, resp, top.n, msgs, bytes);
	if (added > 0)
		r->nreplies++;
	else
		pfree(resp->data);
	return added;
}

/*
 * The reply of the read sent last, read whole, into msgs. Returns the messages added, or
 * -1 when the connection failed.
 */
static int
TribRedisReadReply(TribRedis *r, TribMessage *msgs, int64 *bytes)
{
	TribResp	resp;
	bool		ok;

	pgstat_report_wait_start(PG_WAIT_EXTENSION);
	ok = TribRedisReadWhole(r, &resp);
	pgstat_report_wait_end();
	return ok ? TribRedisTakeRead(r, &resp, msgs, bytes) : -1;
}

/*
 * One read into msgs (TribRedisReadArgs), waited for. Returns the messages added, or -1
 * when the connection failed.
 */
static int
TribRedisRead(TribRedis *r, TribMessage *msgs, int want, long block_ms, int64 *bytes)
{
	TribRedisArgs a;

	if (!TribRedisReadArgs(r, want, block_ms, &a))
	{
		TribRedisWait(r, Min(block_ms, TRIB_REDIS_POLL_MS));
		return 0;
	}
	if (!TribRedisSend(r, a.argc, a.argv, NULL))
		return -1;
	return TribRedisReadReply(r, msgs, bytes);
}

/*
 * After a full batch, while it is inserted: ask for the next one already (not waiting), so
 * the server prepares it while PostgreSQL works rather than after. Its reply is read by
 * the next collect (TribRedisDrain). Entries it hands out that this worker does not store
 * (it stops, fails) are handed out again from the stored position by the key's next reader.
 */
static void
TribRedisReadAhead(TribRedis *r)
{
	TribRedisArgs a;

	if (r->rc == NULL || r->read_ahead)
		return;
	for (int i = 0; i < r->nkeys; i++)
		if (!r->keys[i].ready)
			return;
	if (!TribRedisReadArgs(r, r->def->batch_size, 0, &a))
		return;
	if (!TribRedisSend(r, a.argc, a.argv, NULL))
		return;
	r->read_ahead = true;
}

/*
 * The reply of the read ahead, into msgs: the messages added (0 when there was none, -1
 * when the connection failed). Before any other command.
 */
static int
TribRedisDrain(TribRedis *r, TribMessage *msgs, int64 *bytes)
{
	int			added = 0;

	if (r->read_ahead && r->rc != NULL)
		added = TribRedisReadReply(r, msgs, bytes);
	r->read_ahead = false;
	return added;
}

/* Milliseconds from now to t, at least 0. */
static long
TribRedisMsUntil(TimestampTz t)
{
	long		secs;
	int			usecs;

	TimestampDifference(GetCurrentTimestamp(), t, &secs, &usecs);
	return secs * 1000 + usecs / 1000;
}

/*
 * The routine's collect: connect when needed, take the keys of this worker's share, then
 * read until batch_size entries, tributary.max_message_size bytes, or batch_ms after the
 * first. A lost connection ends the batch with what it holds (it is stored all the same).
 * Returns 0 when a reload is asked for and nothing is held.
 */
static int
TribRedisSourceCollect(void *consumer, TribMessage **msgs)
{
	TribRedis  *r = consumer;
	MemoryContext batch_cxt = CurrentMemoryContext;
	int			max = r->def->batch_size + r->nkeys;
	TimestampTz deadline = 0;
	int64		bytes = 0;

	Assert(r->held == 0 && r->nreplies == 0);
	if (r->maxheld < max)
	{
		if (r->msg_key != NULL)
		{
			pfree(r->msg_key);
			pfree(r->msg_id);
		}
		r->msg_key = MemoryContextAlloc(r->cxt, sizeof(int) * max);
		r->msg_id = MemoryContextAlloc(r->cxt, sizeof(TribRedisId) * max);
		r->maxheld = max;
	}
	*msgs = palloc(sizeof(TribMessage) * max);

	/* first what was asked ahead: this batch's read */
	if (TribRedisDrain(r, *msgs, &bytes) > 0)
		deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->def->batch_ms);
	TribRedisRefreshLag(r);
	MemoryContextSwitchTo(batch_cxt);

	while (r->held < r->def->batch_size && bytes < tributary_max_message_size)
	{
		long		block_ms = TRIB_REDIS_POLL_MS;
		int			got;

		if (r->rc == NULL)
		{
			if (r->held > 0)
				break;
			if (!TribRedisConnect(r))
			{
				MemoryContextSwitchTo(batch_cxt);
				TribRedisWait(r, Max(1, Min(TRIB_REDIS_POLL_MS, TribRedisMsUntil(r->retry_at))));
				if (ConfigReloadPending)
					break;
				continue;
			}
		}
		if (TimestampDifferenceExceeds(r->locks_at, GetCurrentTimestamp(), TRIB_REDIS_LOCK_RETRY_MS))
		{
			bool		all = true;

			for (int i = 0; i < r->nkeys; i++)
				all &= r->keys[i].owned;
			if (!all)
				TribRedisLockKeys(r);
		}
		if (!TribRedisSetUpKeys(r))
		{
			MemoryContextSwitchTo(batch_cxt);
			if (r->held > 0)
				break;
			if (r->rc != NULL)
				TribRedisWait(r, TRIB_REDIS_LOCK_RETRY_MS);
			if (ConfigReloadPending)
				break;
			continue;
		}
		MemoryContextSwitchTo(batch_cxt);

		if (r->held > 0)
		{
			block_ms = Min(block_ms, TribRedisMsUntil(deadline));
			if (block_ms <= 0)
				block_ms = 0;
		}
		{
			int			want = r->def->batch_size - r->held;
			int64		largest = r->held > 0 ? Max(1, bytes / r->held) : 1;
			int64		fit = (tributary_max_message_size - bytes) / largest;

			got = TribRedisRead(r, *msgs, (int) Max(1, Min(want, fit)), block_ms, &bytes);
		}
		MemoryContextSwitchTo(batch_cxt);
		if (got > 0 && deadline == 0)
			deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), r->def->batch_ms);
		if (got <= 0)
		{
			TribRedisRefreshLag(r);
			MemoryContextSwitchTo(batch_cxt);
			CHECK_FOR_INTERRUPTS();
			if (r->held > 0 && (got < 0 || GetCurrentTimestamp() >= deadline))
				break;
			if (r->held == 0 && ConfigReloadPending)
				break;
		}
		else if (GetCurrentTimestamp() >= deadline)
			break;
	}
	/* a full batch: more is likely waiting; have the server prepare it meanwhile */
	if (r->held >= r->def->batch_size)
		TribRedisReadAhead(r);
	MemoryContextSwitchTo(batch_cxt);
	return r->held;
}

/*
 * The routine's fence, first in the batch's transaction: the stored positions read again
 * (a snapshot taken now); messages at or below their key's are dropped. The reader's lock
 * makes that rare: the group moved back by hand, a server restored from an older snapshot.
 */
static int
TribRedisSourceFence(void *consumer, TribMessage *msgs, int n)
{
	TribRedis  *r = consumer;
	int			kept = 0;

	Assert(n == r->held);
	TribRedisReadStored(r, false);
	for (int i = 0; i < n; i++)
	{
		TribRedisKey *key = &r->keys[r->msg_key[i]];

		if (key->has_stored && TribRedisIdCmp(r->msg_id[i], key->stored) <= 0)
			continue;
		msgs[kept] = msgs[i];
		r->msg_key[kept] = r->msg_key[i];
		r->msg_id[kept] = r->msg_id[i];
		kept++;
	}
	if (kept < n)
		ereport(LOG,
				(errmsg("tributary stream \"%s\": %d entries read were stored already; skipping them",
						r->def->name, n - kept)));
	r->held = kept;
	return kept;
}

/*
 * The routine's store_positions (the batch path's settle step): each key's share of the
 * batch, and its newest id stored in tributary.offsets.
 */
static void
TribRedisSourceStorePositions(void *consumer, TribMessage *msgs, TribMessageResult *results, int n)
{
	TribRedis  *r = consumer;

	Assert(n == r->held);
	for (int i = 0; i < n; i++)
	{
		TribRedisKey *key = &r->keys[r->msg_key[i]];

		if (key->counts[0] == 0 || TribRedisIdCmp(r->msg_id[i], key->batch_last) > 0)
			key->batch_last = r->msg_id[i];
		key->counts[0]++;
		key->counts[1] += results[i].outcome == TRIB_INSERTED;
		key->counts[2] += results[i].outcome == TRIB_DEAD;
		key->counts[3] += msgs[i].len;
	}
	TribRedisStorePositions(r, true);
}

/*
 * The routine's after_commit: the stored positions are now the keys', each key's share
 * goes to the shared statistics, and the worker's last_error is cleared when the server
 * answered.
 */
static void
TribRedisSourceAfterCommit(void *consumer)
{
	TribRedis  *r = consumer;

	for (int i = 0; i < r->nkeys; i++)
	{
		TribRedisKey *key = &r->keys[i];

		if (key->counts[0] > 0)
		{
			key->stored = key->batch_last;
			key->has_stored = true;
			TribPartitionStatsAdd(&r->def->key, key->name, -1, key->counts[0], key->counts[1],
								  key->counts[2], key->counts[3], -1);
		}
	}
	if (r->rc != NULL)
		TribRedisReport(r, NULL);
}

/* The routine's release: free the replies the messages pointed into, forget the batch. */
static void
TribRedisSourceRelease(void *consumer)
{
	TribRedis  *r = consumer;

	if (r->nreplies > 0)
		TribRedisResetReplies(r);	/* the batch's replies, and no other is alive */
	r->nreplies = 0;
	r->held = 0;
	for (int i = 0; i < r->nkeys; i++)
		memset(r->keys[i].counts, 0, sizeof(r->keys[i].counts));
}

/* This worker's share of the keys: key i of the option's list goes to worker i mod parallelism. */
static void
TribRedisShareKeys(TribRedis *r)
{
	ListCell   *lc;
	int			i = 0;

	r->keys = palloc0(sizeof(TribRedisKey) * list_length(r->opts.keys));
	r->nkeys = 0;
	foreach(lc, r->opts.keys)
	{
		if (i++ % r->def->parallelism != r->index)
			continue;
		r->keys[r->nkeys].name = lfirst(lc);
		r->keys[r->nkeys].name_len = (int) strlen(lfirst(lc));
		r->nkeys++;
	}
}

/*
 * The routine's open: the consumer for worker index, connected at the first collect. A
 * catalog not yet updated to 0.3.0 has no text positions, which Redis needs.
 */
static void *
TribRedisSourceOpen(StreamDef *def, int index)
{
	MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "tributary redis consumer",
											  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(cxt);
	TribRedis  *r = palloc0(sizeof(TribRedis));

	/* the catalog and the database's name are read in a transaction */
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(cxt);
	if (!TribCatalogHasTextPositions())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("stream \"%s\" needs tributary 0.3.0's catalog", def->name),
				 errhint("Run ALTER EXTENSION tributary UPDATE.")));
	r->cxt = cxt;
	r->reply_cxt = AllocSetContextCreate(cxt, "tributary redis replies", 0,
										 ALLOCSET_DEFAULT_INITSIZE, 8 * 1024 * 1024);
	r->def = def;
	r->index = index;
	TribRedisParseOptions(def, &r->opts);
	r->signature = TribRedisSignature(def, index);
	r->consumer = TribRedisConsumerName(&r->opts, def, index);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	r->backoff_ms = 100;
	TribRedisShareKeys(r);
	if (r->nkeys == 0)
		ereport(LOG,
				(errmsg("tributary stream \"%s\" worker #%d has no key to read: the stream has %d keys and parallelism %d",
						def->name, index + 1, list_length(r->opts.keys), def->parallelism)));
	MemoryContextSwitchTo(old);
	return r;
}

/*
 * The routine's reuse: the same server, keys, group and consumer keep the connection and
 * the keys' locks; the rest of the options is read again.
 */
static bool
TribRedisSourceReuse(void *consumer, StreamDef *def, int index)
{
	TribRedis  *r = consumer;
	MemoryContext old;
	char	   *signature = TribRedisSignature(def, index);

	if (strcmp(signature, r->signature) != 0)
		return false;
	old = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(r->cxt);
	r->def = def;
	TribRedisParseOptions(def, &r->opts);
	CommitTransactionCommand();
	MemoryContextSwitchTo(old);
	return true;
}

/* The routine's close: the connection and, unless the process is ending, the keys' locks. */
static void
TribRedisSourceClose(void *consumer, bool at_exit)
{
	TribRedis  *r = consumer;

	TribRedisSourceRelease(r);
	if (r->rc != NULL)
		redisFree(r->rc);
	r->rc = NULL;
	if (at_exit)
		return;					/* the process's end gives the locks back */
	TribRedisUnlockKeys(r);
	MemoryContextDelete(r->cxt);
}

static const TribSourceOption redis_options[] = {
	{"url", "{\"url\": \"redis://host:6379\"}"},
	{"stream", "{\"stream\": \"key\"}"},
	{"group"},
	{"consumer"},
	{"start"},
	{"fields"},
	{"parallelism"},
	{"metadata"},
	{NULL}
};

static const TribSecretOption redis_secret_options[] = {
	{"url", TribRedisRedactUrl},
	{NULL}
};

const TribSourceRoutine TribRedisSource = {
	.name = "redis",
	.available = true,
	.needs_worker = true,
	.default_batch_size = 10000,
	.metadata = TRIB_META_BIT(TRIB_META_STREAM) | TRIB_META_BIT(TRIB_META_ID) |
	TRIB_META_BIT(TRIB_META_TIMESTAMP),
	.options = redis_options,
	.secret_options = redis_secret_options,
	.validate = TribRedisValidateOptions,
	.check_rights = TribRedisCheckRights,
	.open = TribRedisSourceOpen,
	.reuse = TribRedisSourceReuse,
	.collect = TribRedisSourceCollect,
	.fence = TribRedisSourceFence,
	.store_positions = TribRedisSourceStorePositions,
	.after_commit = TribRedisSourceAfterCommit,
	.release = TribRedisSourceRelease,
	.close = TribRedisSourceClose,
};
