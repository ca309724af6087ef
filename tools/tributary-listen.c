/*
 * tools/tributary-listen.c: tributary-listen, a client that follows a stream's snapshot
 * (or one key of it) through tributary's LISTEN/NOTIFY fan-out, and prints what it holds
 * as JSON lines. C and libpq only. Usage and output format: docs/fanout.md.
 *
 * The algorithm (docs/fanout.md, "Protocol"):
 *
 *   1. Connect (asynchronously, so SIGTERM is never held up), then LISTEN first: on
 *      tributary.<stream> (the whole stream) or tributary.<stream>.<key> (one key), plus
 *      tributary.<stream>.quality and tributary.alerts when asked. Channel names come from
 *      the server's tributary.fanout_channel(), which shortens long names.
 *   2. Hydrate: in one REPEATABLE READ transaction read tributary.snapshot_seq(S) and
 *      tributary.snapshot(S[, K]); both see the same commits. The state held is now the
 *      snapshot, and `last` is the stream's seq it reflects. Anything committed after the
 *      LISTEN and before the snapshot arrives as a notification too, and is recognised by
 *      its seq as already held.
 *   3. Follow: wait on the socket (ppoll), PQconsumeInput, then take every queued
 *      notification (PQnotifies). A change (upsert or delete) carries the stream's seq:
 *        whole stream: seq <= last is a duplicate (ignored); seq == last + 1 is applied and
 *                      becomes last; seq > last + 1 means notifications were missed: a
 *                      gap, hydrate again.
 *        one key:      seqs of one key are not consecutive; a change is applied when its
 *                      seq is newer than last, and becomes last.
 *      An upsert without its record (payload "keys", or "truncated" because the record
 *      did not fit NOTIFY's 8000 bytes) re-reads that key with tributary.snapshot(S, K).
 *      When even the key did not fit, the notification has none: hydrate again.
 *      A key's state also keeps the seq it was read at, so a notification older than a
 *      re-read record never overwrites it; a deleted key is kept as a tombstone (no record,
 *      a seq) until `last` has passed that seq.
 *      "resync" (the server skipped notifications) hydrates again; a heartbeat whose seq
 *      is newer than last means a missed change: hydrate again. Several reasons found in
 *      one batch of notifications cause one hydration, after the batch.
 *   4. A lost connection (PQconsumeInput fails, a query finds the connection gone)
 *      reconnects with exponential backoff (100 ms doubling to 5 s, with jitter), LISTENs
 *      and hydrates again. The first connection is not retried: a wrong conninfo is an
 *      error (exit 1). An SQL error that does not lose the connection (no such stream,
 *      no snapshot, no privilege) is an error too.
 *   5. SIGTERM or SIGINT (or --exit-after, --idle-exit) prints one final "state" line with
 *      every live key held, and exits 0.
 *
 * Signals are blocked except while waiting in ppoll, so a signal never interrupts libpq
 * half-way and is never lost: it ends the next wait.
 */
#define _GNU_SOURCE

#include "listen/json.h"
#include "listen/keytable.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LISTEN_VERSION "0.3.0"
#define ALERTS_CHANNEL "tributary.alerts"
#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
#define CONNECT_TIMEOUT_MS 10000
/* tombstones kept beyond the live keys before they are pruned */
#define TOMBSTONE_SLACK 1024

/* What a step of the protocol came to. */
typedef enum StepResult
{
	STEP_OK,
	STEP_LOST,	/* the connection is gone: reconnect */
	STEP_FATAL, /* an error that reconnecting does not fix: exit 1 */
} StepResult;

typedef struct Options
{
	const char *conninfo; /* NULL: libpq's environment variables */
	const char *stream;
	const char *key; /* NULL: the whole stream */
	bool quality;
	bool alerts;
	long exit_after;  /* 0: never */
	double idle_exit; /* seconds, 0: never */
	bool verbose;
} Options;

typedef struct Listener
{
	Options opt;
	PGconn *conn;
	char *follow_channel; /* tributary.<stream> or tributary.<stream>.<key> */
	char *quality_channel;
	KeyTable state;
	int64_t last;				/* the stream's seq the state reflects */
	const char *pending_reason; /* hydrate again after this batch of notifications */
	int64_t pending_seq;		/* the seq that told us so */
	long events;				/* upsert, delete, quality and alert lines printed */
	struct timespec last_event; /* when one was last printed (or the start) */
	StrBuf out;
} Listener;

static volatile sig_atomic_t stop_requested = 0;
static sigset_t wait_mask; /* the mask while waiting: SIGTERM and SIGINT unblocked */

/* ------------------------------------------------------------------------------------ */
/* Small helpers. */

static void
Log(const char *fmt, ...)
{
	va_list ap;

	fputs("tributary-listen: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* libpq's notices and asynchronous errors (a FATAL before the server hangs up), as logs. */
static void
LogNotice(void *arg, const char *message)
{
	(void) arg;
	fprintf(stderr, "tributary-listen: server: %s", message);
}

static void
HandleStopSignal(int signo)
{
	(void) signo;
	stop_requested = 1;
}

static double
Now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Wait for fd (or only the clock with fd < 0) up to timeout seconds (< 0: forever). */
static int
WaitFor(int fd, short events, double timeout)
{
	struct pollfd pfd = {fd, events, 0};
	struct timespec ts;

	if (timeout >= 0)
	{
		ts.tv_sec = (time_t) timeout;
		ts.tv_nsec = (long) ((timeout - (double) ts.tv_sec) * 1e9);
	}
	return ppoll(fd >= 0 ? &pfd : NULL, fd >= 0 ? 1 : 0, timeout >= 0 ? &ts : NULL, &wait_mask);
}

/* Print the line in L->out; a reader that went away ends the program. */
static void
EmitLine(Listener *L)
{
	StrBufAppend(&L->out, "\n", 1);
	if (fwrite(L->out.data, 1, L->out.len, stdout) != L->out.len || fflush(stdout) != 0)
	{
		Log("cannot write to standard output: %s", strerror(errno));
		exit(1);
	}
	StrBufReset(&L->out);
}

/* Close the object begun by BeginEvent and print it. */
static void
Emit(Listener *L)
{
	StrBufAppend(&L->out, "}", 1);
	EmitLine(L);
}

/* Start a line {"event":"<event>","stream":"<stream>" (no stream when there is none). */
static void
BeginEvent(Listener *L, const char *event)
{
	StrBufReset(&L->out);
	StrBufAppendStr(&L->out, "{\"event\":");
	StrBufAppendJsonString(&L->out, event);
	if (L->opt.stream)
	{
		StrBufAppendStr(&L->out, ",\"stream\":");
		StrBufAppendJsonString(&L->out, L->opt.stream);
	}
}

static void
AppendMember(StrBuf *b, const char *name)
{
	StrBufAppend(b, ",", 1);
	StrBufAppendJsonString(b, name);
	StrBufAppend(b, ":", 1);
}

static void
CountEvent(Listener *L)
{
	L->events++;
	clock_gettime(CLOCK_MONOTONIC, &L->last_event);
}

/* Whether a failed query lost the connection (reconnect) or not (give up). */
static StepResult
QueryFailed(Listener *L, PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	bool lost = PQstatus(L->conn) == CONNECTION_BAD ||
				(state != NULL && (strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0));

	Log("%s: %s", what, res ? PQresultErrorMessage(res) : PQerrorMessage(L->conn));
	PQclear(res);
	return lost ? STEP_LOST : STEP_FATAL;
}

/* Run a command that returns no rows. */
static StepResult
Command(Listener *L, const char *sql)
{
	PGresult *res = PQexec(L->conn, sql);

	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return QueryFailed(L, res, sql);
	PQclear(res);
	return STEP_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Connecting. */

/* One connection attempt, abandoned on SIGTERM/SIGINT or after CONNECT_TIMEOUT_MS. */
static bool
ConnectOnce(Listener *L)
{
	const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
	const char *values[] = {L->opt.conninfo, "tributary-listen", "UTF8", NULL};
	double deadline = Now() + CONNECT_TIMEOUT_MS / 1000.0;
	PostgresPollingStatusType status = PGRES_POLLING_WRITING;
	PGconn *conn = PQconnectStartParams(keys, values, 1);

	if (conn == NULL)
	{
		Log("out of memory");
		exit(1);
	}
	while (PQstatus(conn) != CONNECTION_BAD && status != PGRES_POLLING_OK &&
		   status != PGRES_POLLING_FAILED)
	{
		double left = deadline - Now();
		int rc;

		if (left <= 0)
		{
			Log("could not connect: timed out after %d ms", CONNECT_TIMEOUT_MS);
			PQfinish(conn);
			return false;
		}
		rc = WaitFor(PQsocket(conn), status == PGRES_POLLING_READING ? POLLIN : POLLOUT, left);
		if (stop_requested)
		{
			PQfinish(conn);
			return false;
		}
		if (rc < 0 && errno != EINTR)
		{
			Log("ppoll: %s", strerror(errno));
			exit(1);
		}
		if (rc > 0)
			status = PQconnectPoll(conn);
	}
	if (PQstatus(conn) != CONNECTION_OK)
	{
		Log("could not connect: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return false;
	}
	PQsetNoticeProcessor(conn, LogNotice, NULL);
	L->conn = conn;
	return true;
}

/*
 * Connect, retrying with exponential backoff and jitter unless this is the program's first
 * connection. False when the first one failed or a signal asked us to stop.
 */
static bool
Connect(Listener *L, bool first, int *backoff_ms)
{
	for (;;)
	{
		if (!first)
		{
			/* full jitter in the upper half: [backoff/2, backoff] */
			int ms = *backoff_ms / 2 + (int) (random() % (*backoff_ms / 2 + 1));

			WaitFor(-1, 0, ms / 1000.0);
			if (stop_requested)
				return false;
			*backoff_ms = *backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff_ms * 2;
		}
		if (ConnectOnce(L))
			return true;
		if (first || stop_requested)
			return false;
	}
}

static void
Disconnect(Listener *L)
{
	PQfinish(L->conn);
	L->conn = NULL;
}

/* Ask the server for the channel names (it shortens names over 63 bytes). */
static StepResult
ResolveChannels(Listener *L)
{
	const char *params[2] = {L->opt.stream, L->opt.key};
	PGresult *res;

	if (L->follow_channel != NULL)
		return STEP_OK;
	res =
		PQexecParams(L->conn,
					 "SELECT tributary.fanout_channel($1, $2), "
					 "tributary.fanout_channel($1, 'quality'), "
					 "(SELECT CASE WHEN $2::text IS NULL THEN 'stream' ELSE 'key' END "
					 "        OPERATOR(pg_catalog.=) ANY (c.channels) "
					 " FROM tributary.snapshot_config c WHERE c.stream OPERATOR(pg_catalog.=) $1)",
					 2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return QueryFailed(L, res, "tributary.fanout_channel");
	L->follow_channel = xstrdup(PQgetvalue(res, 0, 0));
	L->quality_channel = xstrdup(PQgetvalue(res, 0, 1));
	/* not fatal: the fan-out may be set later; but say why nothing may be heard */
	if (PQgetisnull(res, 0, 2) || strcmp(PQgetvalue(res, 0, 2), "t") != 0)
		Log("warning: stream \"%s\" does not notify on %s (see tributary.set_fanout's channels): "
			"nothing is heard until it does",
			L->opt.stream, L->follow_channel);
	PQclear(res);
	return STEP_OK;
}

static StepResult
ListenOn(Listener *L, const char *channel)
{
	char *ident = PQescapeIdentifier(L->conn, channel, strlen(channel));
	StepResult rc;
	char *sql;

	if (ident == NULL)
	{
		Log("cannot quote channel name %s: %s", channel, PQerrorMessage(L->conn));
		return STEP_FATAL;
	}
	sql = xmalloc(strlen(ident) + 8);
	sprintf(sql, "LISTEN %s", ident);
	PQfreemem(ident);
	rc = Command(L, sql);
	free(sql);
	return rc;
}

/* LISTEN on every channel this run follows. */
static StepResult
ListenAll(Listener *L)
{
	StepResult rc = STEP_OK;

	if (L->opt.stream)
	{
		rc = ResolveChannels(L);
		if (rc == STEP_OK)
			rc = ListenOn(L, L->follow_channel);
		if (rc == STEP_OK && L->opt.quality)
			rc = ListenOn(L, L->quality_channel);
	}
	if (rc == STEP_OK && L->opt.alerts)
		rc = ListenOn(L, ALERTS_CHANNEL);
	return rc;
}

/* ------------------------------------------------------------------------------------ */
/* Hydrating and re-reading. */

static void
EmitResync(Listener *L, const char *reason, int64_t got)
{
	BeginEvent(L, "resync");
	AppendMember(&L->out, "reason");
	StrBufAppendJsonString(&L->out, reason);
	if (L->opt.stream)
	{
		AppendMember(&L->out, "seq");
		StrBufAppendInt64(&L->out, L->last);
	}
	if (got >= 0)
	{
		AppendMember(&L->out, "got");
		StrBufAppendInt64(&L->out, got);
	}
	Emit(L);
}

/* The "hydrate" line and one "snapshot" line per key, sorted by key. */
static void
EmitHydrate(Listener *L)
{
	size_t n;
	KeyEntry **entries = KeyTableSorted(&L->state, &n);

	BeginEvent(L, "hydrate");
	if (L->opt.key)
	{
		AppendMember(&L->out, "key");
		StrBufAppendJsonString(&L->out, L->opt.key);
	}
	AppendMember(&L->out, "seq");
	StrBufAppendInt64(&L->out, L->last);
	AppendMember(&L->out, "keys");
	StrBufAppendInt64(&L->out, (int64_t) n);
	Emit(L);
	for (size_t i = 0; i < n; i++)
	{
		BeginEvent(L, "snapshot");
		AppendMember(&L->out, "key");
		StrBufAppendJsonString(&L->out, entries[i]->key);
		AppendMember(&L->out, "seq");
		StrBufAppendInt64(&L->out, entries[i]->seq);
		AppendMember(&L->out, "record");
		StrBufAppendJsonText(&L->out, entries[i]->record, strlen(entries[i]->record));
		Emit(L);
	}
	free(entries);
}

/*
 * Read the snapshot (of the stream, or of key when not NULL) and the stream's seq in one
 * REPEATABLE READ transaction: rows go into *into, the seq into *seq.
 */
static StepResult
ReadSnapshot(Listener *L, const char *key, KeyTable *into, int64_t *seq)
{
	const char *params[2] = {L->opt.stream, key};
	StepResult rc;
	PGresult *res;
	bool failed = false;

	rc = Command(L, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
	if (rc != STEP_OK)
		return rc;
	res =
		PQexecParams(L->conn, "SELECT tributary.snapshot_seq($1)", 1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		return QueryFailed(L, res, "tributary.snapshot_seq");
	*seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);

	/* Row by row, so a large snapshot is not held twice. */
	if (!PQsendQueryParams(L->conn,
						   "SELECT key, seq, record::text FROM tributary.snapshot($1, $2) "
						   "ORDER BY key COLLATE \"C\"",
						   2, NULL, params, NULL, NULL, 0) ||
		!PQsetSingleRowMode(L->conn))
		return QueryFailed(L, NULL, "tributary.snapshot");
	while ((res = PQgetResult(L->conn)) != NULL)
	{
		ExecStatusType st = PQresultStatus(res);

		if (st == PGRES_SINGLE_TUPLE)
		{
			if (PQgetisnull(res, 0, 0))
				Log("tributary.snapshot returned a row without a key: ignored");
			else
				KeyTableSet(into, PQgetvalue(res, 0, 0), strtoll(PQgetvalue(res, 0, 1), NULL, 10),
							xstrdup(PQgetisnull(res, 0, 2) ? "null" : PQgetvalue(res, 0, 2)));
		}
		else if (st != PGRES_TUPLES_OK && !failed)
		{
			/* keep reading until NULL, as libpq requires; report the first error */
			rc = QueryFailed(L, res, "tributary.snapshot");
			failed = true;
			continue;
		}
		PQclear(res);
	}
	if (failed)
		return rc;
	return Command(L, "COMMIT");
}

/* Replace the state with the snapshot; reason NULL for the first hydration. */
static StepResult
Hydrate(Listener *L, const char *reason, int64_t got)
{
	KeyTable fresh;
	int64_t seq = 0;
	StepResult rc;

	if (reason != NULL)
		EmitResync(L, reason, got);
	KeyTableInit(&fresh);
	rc = ReadSnapshot(L, L->opt.key, &fresh, &seq);
	if (rc != STEP_OK)
	{
		KeyTableFree(&fresh);
		return rc;
	}
	KeyTableFree(&L->state);
	L->state = fresh;
	L->last = seq;
	L->pending_reason = NULL;
	EmitHydrate(L);
	return STEP_OK;
}

/*
 * An upsert came without its record (payload "keys", or too large for NOTIFY): read the
 * key's current state. It may be newer than the notification; its seq says which later
 * notifications to ignore. Gone since: a tombstone at the stream's seq of the read.
 */
static StepResult
RereadKey(Listener *L, const char *key, int64_t notified_seq)
{
	KeyTable one;
	int64_t stream_seq = 0;
	KeyEntry *e;
	StepResult rc;

	KeyTableInit(&one);
	rc = ReadSnapshot(L, key, &one, &stream_seq);
	if (rc != STEP_OK)
	{
		KeyTableFree(&one);
		return rc;
	}
	e = KeyTableFind(&one, key);
	BeginEvent(L, e != NULL ? "upsert" : "delete");
	AppendMember(&L->out, "key");
	StrBufAppendJsonString(&L->out, key);
	AppendMember(&L->out, "seq");
	if (e != NULL)
	{
		StrBufAppendInt64(&L->out, e->seq);
		AppendMember(&L->out, "record");
		StrBufAppendJsonText(&L->out, e->record, strlen(e->record));
		KeyTableSet(&L->state, key, e->seq, xstrdup(e->record));
	}
	else
	{
		StrBufAppendInt64(&L->out, stream_seq);
		KeyTableSet(&L->state, key, stream_seq, NULL);
	}
	StrBufAppendStr(&L->out, ",\"reread\":true,\"notified_seq\":");
	StrBufAppendInt64(&L->out, notified_seq);
	if (L->opt.key != NULL && stream_seq > L->last)
		L->last = stream_seq;
	KeyTableFree(&one);
	CountEvent(L);
	Emit(L);
	return STEP_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Notifications. */

enum
{
	M_STREAM,
	M_KEY,
	M_SEQ,
	M_OP,
	M_RECORD,
	M_TRUNCATED,
	M_HEARTBEAT,
	M_RESYNC,
	M_COUNT
};

static const char *const member_names[M_COUNT] = {
	"stream", "key", "seq", "op", "record", "truncated", "heartbeat", "resync",
};

/* Ask for a hydration once this batch of notifications is through. */
static void
RequestHydrate(Listener *L, const char *reason, int64_t got)
{
	if (L->pending_reason == NULL)
	{
		L->pending_reason = reason;
		L->pending_seq = got;
	}
}

/* Apply one upsert or delete of key at seq, already judged new. */
static StepResult
ApplyChange(Listener *L, const char *key, int64_t seq, bool is_delete, const JsonMember *m)
{
	bool has_record = m[M_RECORD].type != JSON_ABSENT && !JsonMemberIsTrue(&m[M_TRUNCATED]);

	if (!is_delete && !has_record)
		return RereadKey(L, key, seq);
	BeginEvent(L, is_delete ? "delete" : "upsert");
	AppendMember(&L->out, "key");
	StrBufAppendJsonString(&L->out, key);
	AppendMember(&L->out, "seq");
	StrBufAppendInt64(&L->out, seq);
	if (is_delete)
		KeyTableSet(&L->state, key, seq, NULL);
	else
	{
		AppendMember(&L->out, "record");
		StrBufAppendJsonText(&L->out, m[M_RECORD].start, m[M_RECORD].len);
		KeyTableSet(&L->state, key, seq, xstrndup(m[M_RECORD].start, m[M_RECORD].len));
	}
	CountEvent(L);
	Emit(L);
	return STEP_OK;
}

/* A change notification: decide by its seq whether it is new, a duplicate, or a gap. */
static StepResult
HandleChange(Listener *L, const JsonMember *m, int64_t seq)
{
	char *key = JsonMemberString(&m[M_KEY]);
	char *op = JsonMemberString(&m[M_OP]);
	bool is_delete = op != NULL && strcmp(op, "delete") == 0;
	KeyEntry *held;
	StepResult rc = STEP_OK;

	if (op == NULL || (!is_delete && strcmp(op, "upsert") != 0) ||
		(key == NULL && !JsonMemberIsTrue(&m[M_TRUNCATED])))
	{
		Log("notification without a key or with an unknown op: ignored");
		goto done;
	}
	if (L->pending_reason != NULL)
		goto done; /* the coming hydration covers it */
	if (L->opt.key != NULL)
	{
		/* one key: its seqs are increasing, not consecutive */
		if ((key != NULL && strcmp(key, L->opt.key) != 0) || seq <= L->last)
			goto done;
		L->last = seq;
	}
	else
	{
		if (seq <= L->last)
		{
			if (L->opt.verbose)
				Log("seq %" PRId64 " of key %s: already held (at %" PRId64 ")", seq,
					key ? key : "(too long for NOTIFY)", L->last);
			goto done;
		}
		if (seq > L->last + 1)
		{
			RequestHydrate(L, "gap", seq);
			goto done;
		}
		L->last = seq;
	}
	if (key == NULL)
	{
		/* a key too long for NOTIFY: which one changed is only in the snapshot */
		RequestHydrate(L, "truncated", seq);
		goto done;
	}
	/* a re-read may already hold a newer state of the key */
	held = KeyTableFind(&L->state, key);
	if (held == NULL || held->seq < seq)
		rc = ApplyChange(L, key, seq, is_delete, m);
done:
	free(key);
	free(op);
	return rc;
}

/* A payload on the followed channel: a change, a heartbeat or a resync. */
static StepResult
HandleFollowPayload(Listener *L, const char *payload)
{
	JsonMember m[M_COUNT];
	const char *error;
	char *stream;
	bool ours;
	int64_t seq;

	for (int i = 0; i < M_COUNT; i++)
		m[i].name = member_names[i];
	error = JsonScanObject(payload, strlen(payload), m, M_COUNT);
	if (error != NULL)
	{
		Log("notification that is not valid JSON (%s): ignored: %.200s", error, payload);
		return STEP_OK;
	}
	stream = JsonMemberString(&m[M_STREAM]);
	ours = stream != NULL && strcmp(stream, L->opt.stream) == 0;
	free(stream);
	if (!ours || !JsonMemberInt64(&m[M_SEQ], &seq))
	{
		Log("notification without this stream's name or a seq: ignored: %.200s", payload);
		return STEP_OK;
	}
	if (JsonMemberIsTrue(&m[M_RESYNC]))
	{
		RequestHydrate(L, "resync", seq);
		return STEP_OK;
	}
	if (JsonMemberIsTrue(&m[M_HEARTBEAT]))
	{
		if (L->opt.verbose)
			Log("heartbeat at seq %" PRId64 " (holding %" PRId64 ")", seq, L->last);
		/* one key: the stream's seq moves with other keys' changes too */
		if (L->opt.key == NULL && seq > L->last)
			RequestHydrate(L, "heartbeat", seq);
		return STEP_OK;
	}
	return HandleChange(L, m, seq);
}

/*
 * A quality window or an alert: printed as {"event":"<event>", then the payload's
 * members. With --stream, alerts of other streams are left out.
 */
static void
HandlePassThrough(Listener *L, const char *event, const char *payload, bool only_ours)
{
	JsonMember m[1] = {{.name = "stream"}};
	const char *error = JsonScanObject(payload, strlen(payload), m, 1);
	const char *body;

	if (error != NULL)
	{
		Log("%s notification that is not valid JSON (%s): ignored: %.200s", event, error, payload);
		return;
	}
	if (only_ours && L->opt.stream != NULL)
	{
		char *stream = JsonMemberString(&m[0]);
		bool ours = stream != NULL && strcmp(stream, L->opt.stream) == 0;

		free(stream);
		if (!ours)
			return;
	}
	StrBufReset(&L->out);
	StrBufAppendStr(&L->out, "{\"event\":");
	StrBufAppendJsonString(&L->out, event);
	body = strchr(payload, '{') + 1;
	while (*body == ' ' || *body == '\t' || *body == '\n' || *body == '\r')
		body++;
	if (*body != '}')
		StrBufAppend(&L->out, ",", 1);
	StrBufAppendJsonText(&L->out, body, strlen(body));
	CountEvent(L);
	EmitLine(L);
}

/* Every notification libpq has queued. */
static StepResult
DrainNotifications(Listener *L)
{
	PGnotify *n;
	StepResult rc = STEP_OK;

	while (rc == STEP_OK && (n = PQnotifies(L->conn)) != NULL)
	{
		/* a key named "quality" shares the quality channel: the payload tells them apart */
		bool is_quality = L->opt.quality && strcmp(n->relname, L->quality_channel) == 0 &&
						  strstr(n->extra, "\"window_start\"") != NULL;

		if (is_quality)
			HandlePassThrough(L, "quality", n->extra, false);
		else if (L->follow_channel != NULL && strcmp(n->relname, L->follow_channel) == 0)
			rc = HandleFollowPayload(L, n->extra);
		else if (L->opt.alerts && strcmp(n->relname, ALERTS_CHANNEL) == 0)
			HandlePassThrough(L, "alert", n->extra, true);
		PQfreemem(n);
	}
	return rc;
}

/* ------------------------------------------------------------------------------------ */
/* The final state and the main loop. */

static void
EmitState(Listener *L)
{
	size_t n;
	KeyEntry **entries = KeyTableSorted(&L->state, &n);

	BeginEvent(L, "state");
	if (L->opt.key)
	{
		AppendMember(&L->out, "key");
		StrBufAppendJsonString(&L->out, L->opt.key);
	}
	AppendMember(&L->out, "seq");
	StrBufAppendInt64(&L->out, L->last);
	StrBufAppendStr(&L->out, ",\"keys\":{");
	for (size_t i = 0; i < n; i++)
	{
		if (i > 0)
			StrBufAppend(&L->out, ",", 1);
		StrBufAppendJsonString(&L->out, entries[i]->key);
		StrBufAppendStr(&L->out, ":{\"seq\":");
		StrBufAppendInt64(&L->out, entries[i]->seq);
		StrBufAppendStr(&L->out, ",\"record\":");
		StrBufAppendJsonText(&L->out, entries[i]->record, strlen(entries[i]->record));
		StrBufAppend(&L->out, "}", 1);
	}
	StrBufAppend(&L->out, "}", 1);
	free(entries);
	Emit(L);
}

/* Connect (again), LISTEN, hydrate. */
static StepResult
Establish(Listener *L, bool first, int *backoff_ms)
{
	StepResult rc;

	if (!Connect(L, first, backoff_ms))
		return stop_requested ? STEP_OK : STEP_FATAL;
	rc = ListenAll(L);
	if (rc == STEP_OK && L->opt.stream)
		rc = Hydrate(L, first ? NULL : "reconnect", -1);
	else if (rc == STEP_OK && !first)
		EmitResync(L, "reconnect", -1);
	if (rc == STEP_OK)
		*backoff_ms = BACKOFF_FIRST_MS;
	return rc;
}

/* Follow until a signal, a limit or a fatal error; the exit status. */
static int
Run(Listener *L)
{
	int backoff_ms = BACKOFF_FIRST_MS;
	bool first = true;

	while (!stop_requested)
	{
		StepResult rc = STEP_OK;
		double timeout = -1;
		int ready;

		if (L->conn == NULL)
		{
			rc = Establish(L, first, &backoff_ms);
			first = false;
		}
		/* notifications, and the hydration they ask for, until none is queued */
		while (rc == STEP_OK && L->conn != NULL)
		{
			rc = DrainNotifications(L);
			if (rc != STEP_OK || L->pending_reason == NULL)
				break;
			rc = Hydrate(L, L->pending_reason, L->pending_seq);
		}
		if (rc == STEP_OK && L->opt.key == NULL &&
			L->state.used > 2 * L->state.live + TOMBSTONE_SLACK)
			KeyTablePrune(&L->state, L->last);
		if (rc == STEP_FATAL)
			return 1;
		if (rc == STEP_LOST || (L->conn != NULL && PQstatus(L->conn) == CONNECTION_BAD))
		{
			Log("connection lost; reconnecting");
			if (L->conn != NULL)
				Disconnect(L);
			continue;
		}
		if (L->conn == NULL)
			break; /* stopped while connecting */
		if (L->opt.exit_after > 0 && L->events >= L->opt.exit_after)
			break;
		if (L->opt.idle_exit > 0)
		{
			double idle = Now() - (L->last_event.tv_sec + L->last_event.tv_nsec / 1e9);

			timeout = L->opt.idle_exit - idle;
			if (timeout <= 0)
				break;
		}
		ready = WaitFor(PQsocket(L->conn), POLLIN, timeout);
		if (ready < 0 && errno != EINTR)
		{
			Log("ppoll: %s", strerror(errno));
			return 1;
		}
		if (ready > 0 && !PQconsumeInput(L->conn))
		{
			Log("connection lost: %s", PQerrorMessage(L->conn));
			Disconnect(L);
		}
	}
	if (L->opt.stream)
		EmitState(L);
	return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Options. */

static void
Usage(FILE *to)
{
	fprintf(to,
			"Usage: tributary-listen [-d CONNINFO] --stream S [--key K] [--quality] [--alerts]\n"
			"                        [--exit-after N] [--idle-exit SECONDS] [--verbose]\n"
			"       tributary-listen [-d CONNINFO] --alerts [...]\n"
			"\n"
			"Follows a tributary stream's snapshot (or one key of it) through LISTEN/NOTIFY and\n"
			"prints it as JSON lines on standard output; see docs/fanout.md.\n"
			"\n"
			"  -d, --dbname=CONNINFO  database name or connection string (default: libpq's\n"
			"                         environment variables, PGHOST, PGDATABASE, ...)\n"
			"  -s, --stream=S         the stream to follow (hydrate, then every change)\n"
			"  -k, --key=K            follow only this key of the stream\n"
			"      --quality          also print the stream's closed quality windows\n"
			"      --alerts           also print quality alerts (of stream S only, with --stream)\n"
			"      --exit-after=N     exit after N upsert, delete, quality and alert lines\n"
			"      --idle-exit=SECS   exit when none of those was printed for SECS seconds\n"
			"  -v, --verbose          log heartbeats and duplicates to standard error\n"
			"  -V, --version          print the version and exit\n"
			"  -h, --help             print this help and exit\n"
			"\n"
			"SIGTERM and SIGINT end it with exit status 0 after a final \"state\" line.\n");
}

static bool
ParseOptions(int argc, char **argv, Options *o)
{
	static const struct option longopts[] = {
		{"dbname", required_argument, NULL, 'd'},
		{"stream", required_argument, NULL, 's'},
		{"key", required_argument, NULL, 'k'},
		{"quality", no_argument, NULL, 'Q'},
		{"alerts", no_argument, NULL, 'A'},
		{"exit-after", required_argument, NULL, 'N'},
		{"idle-exit", required_argument, NULL, 'I'},
		{"verbose", no_argument, NULL, 'v'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	int c;
	char *end;

	memset(o, 0, sizeof(*o));
	while ((c = getopt_long(argc, argv, "d:s:k:vVh", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				o->conninfo = optarg;
				break;
			case 's':
				o->stream = optarg;
				break;
			case 'k':
				o->key = optarg;
				break;
			case 'Q':
				o->quality = true;
				break;
			case 'A':
				o->alerts = true;
				break;
			case 'N':
				errno = 0;
				o->exit_after = strtol(optarg, &end, 10);
				if (errno != 0 || *end != '\0' || o->exit_after <= 0)
				{
					Log("--exit-after needs a positive integer, not \"%s\"", optarg);
					return false;
				}
				break;
			case 'I':
				errno = 0;
				o->idle_exit = strtod(optarg, &end);
				if (errno != 0 || *end != '\0' || !(o->idle_exit > 0))
				{
					Log("--idle-exit needs a positive number of seconds, not \"%s\"", optarg);
					return false;
				}
				break;
			case 'v':
				o->verbose = true;
				break;
			case 'V':
				printf("tributary-listen %s\n", LISTEN_VERSION);
				exit(0);
			case 'h':
				Usage(stdout);
				exit(0);
			default:
				Usage(stderr);
				return false;
		}
	}
	if (optind < argc)
	{
		Log("unexpected argument \"%s\"", argv[optind]);
		return false;
	}
	if (o->stream == NULL && (o->key != NULL || o->quality))
	{
		Log("--key and --quality need --stream");
		return false;
	}
	if (o->stream == NULL && !o->alerts)
	{
		Log("nothing to follow: give --stream, --alerts or both");
		Usage(stderr);
		return false;
	}
	return true;
}

int
main(int argc, char **argv)
{
	Listener L;
	struct sigaction sa;
	sigset_t block;
	int status;

	memset(&L, 0, sizeof(L));
	if (!ParseOptions(argc, argv, &L.opt))
		return 2;

	/* SIGTERM and SIGINT are blocked except inside ppoll (see WaitFor). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = HandleStopSignal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	sigdelset(&wait_mask, SIGTERM);
	sigdelset(&wait_mask, SIGINT);

	srandom((unsigned) time(NULL) ^ (unsigned) getpid());
	clock_gettime(CLOCK_MONOTONIC, &L.last_event);
	KeyTableInit(&L.state);

	status = Run(&L);

	if (L.conn != NULL)
		Disconnect(&L);
	KeyTableFree(&L.state);
	StrBufFree(&L.out);
	free(L.follow_channel);
	free(L.quality_channel);
	return status;
}
