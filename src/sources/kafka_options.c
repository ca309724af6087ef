/*
 * kafka_options.c
 *		A kafka stream's options: checked (TribKafkaValidateOptions, the source routine's
 *		validate), resolved into TribKafkaOptions and librdkafka's configuration for the
 *		consumer, and summed up in the signature that tells whether a reloaded definition
 *		can keep its consumer.
 *
 * tributary sets the librdkafka properties that exactly-once relies on (no auto-commit, no
 * offset auto-store, auto.offset.reset=error) and refuses them in the "librdkafka" option;
 * which of the other properties a role may set is kafka_policy.c's business. A property a
 * role may not set is never handed to librdkafka when only validating in a backend of that
 * role (TribKafkaConf).
 */
#include "postgres.h"

#include <librdkafka/rdkafka.h>

#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "optvalue.h"
#include "sources/kafka.h"
#include "sources/kafka_internal.h"
#include "sources/kafka_policy.h"

/* A JSON scalar as text (a librdkafka property's value); NULL for anything else. */
static char *
TribJsonbScalarText(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvString:
			return pnstrdup(v->val.string.val, v->val.string.len);
		case jbvNumeric:
			return DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
		case jbvBool:
			return pstrdup(v->val.boolean ? "true" : "false");
		default:
			return NULL;
	}
}

/*
 * A partition number as a "start" key: decimal digits without sign or leading zeros, below
 * tributary.max_partitions. One spelling per partition, so two keys never name one partition.
 */
static bool
TribKafkaPartitionKey(const char *key)
{
	size_t		len = strlen(key);

	if (len == 0 || len > 9 || strspn(key, "0123456789") != len || (key[0] == '0' && len > 1))
		return false;
	return atoi(key) < tributary_max_partitions;
}

/* The one error for a partition number out of place, in "start" keys and "partitions". */
static void
TribKafkaBadPartition(StreamDef *def, const char *option, const char *value)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid partition in option \"%s\" of stream \"%s\"", option, def->name),
			 errdetail("Got %s; a partition is an integer from 0 to %d, written in decimal without sign or leading zeros.",
					   value, tributary_max_partitions - 1),
			 errhint("Partitions must be below tributary.max_partitions (%d); raise it in postgresql.conf for a topic with more partitions.",
					 tributary_max_partitions)));
}

/* Names the option when timestamptz_in rejects a "start" timestamp. */
static void
TribKafkaStartContext(void *arg)
{
	errcontext("option \"start\" of stream \"%s\": \"earliest\", \"latest\", offsets per partition, or a timestamp",
			   ((StreamDef *) arg)->name);
}

/*
 * Whether a timestamp's text names a time relative to when it is read ("now", "today",
 * "tomorrow", "yesterday", as timestamptz_in accepts them): a worker would read it anew on
 * every start until its first offsets are stored, so the stream's start would drift.
 */
static bool
TribKafkaRelativeTime(const char *text)
{
	static const char *const words[] = {"now", "today", "tomorrow", "yesterday"};
	const char *p = text;

	while (*p)
	{
		const char *start;

		while (*p && !isalpha((unsigned char) *p))
			p++;
		start = p;
		while (isalpha((unsigned char) *p))
			p++;
		for (int i = 0; i < lengthof(words); i++)
			if (p - start == (int) strlen(words[i]) && pg_strncasecmp(start, words[i], p - start) == 0)
				return true;
	}
	return false;
}

/* The "start" option: "earliest", "latest", {"partition": offset, ...} or a timestamp. */
static void
TribKafkaParseStart(StreamDef *def, TribKafkaOptions *o)
{
	JsonbValue *v = TribStreamOption(def, "start");
	const char *expected = "\"earliest\", \"latest\", an object of offsets per partition such as {\"0\": 42}, or a timestamp";

	o->start = TRIB_START_EARLIEST;
	if (v == NULL)
		return;
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	k;
		JsonbValue	val;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *key;
			int64		offset;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &val, true);
			key = pnstrdup(k.val.string.val, k.val.string.len);
			if (!TribKafkaPartitionKey(key))
				TribKafkaBadPartition(def, "start", psprintf("key \"%s\"", key));
			if (!TribJsonbInteger(&val, &offset) || offset < 0)
				TribBadOption(def, "start", expected);
		}
		o->start = TRIB_START_OFFSETS;
		o->start_offsets = JsonbValueToJsonb(v);
		return;
	}
	if (v->type != jbvString)
		TribBadOption(def, "start", expected);
	if (v->val.string.len == 8 && strncmp(v->val.string.val, "earliest", 8) == 0)
		o->start = TRIB_START_EARLIEST;
	else if (v->val.string.len == 6 && strncmp(v->val.string.val, "latest", 6) == 0)
		o->start = TRIB_START_LATEST;
	else
	{
		char	   *text = pnstrdup(v->val.string.val, v->val.string.len);
		ErrorContextCallback context = {error_context_stack, TribKafkaStartContext, def};
		TimestampTz ts;

		if (TribKafkaRelativeTime(text))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"start\" of stream \"%s\" is a relative time", def->name),
					 errdetail("\"start\" is \"%s\", which would be read anew each time a worker starts until the stream's first offsets are stored.",
							   text),
					 errhint("Give a fixed time such as \"2024-05-01 12:00:00+00\", or \"latest\" to start at the end of each partition.")));
		error_context_stack = &context;
		ts = DatumGetTimestampTz(DirectFunctionCall3(timestamptz_in, CStringGetDatum(text),
													 ObjectIdGetDatum(InvalidOid), Int32GetDatum(-1)));
		error_context_stack = context.previous;
		if (TIMESTAMP_NOT_FINITE(ts))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"start\" of stream \"%s\" is not a finite timestamp", def->name),
					 errdetail("\"start\" is \"%s\".", text),
					 errhint("Give a time such as \"2024-05-01 12:00:00+00\", or \"earliest\" or \"latest\".")));
		o->start = TRIB_START_TIMESTAMP;
		o->start_ms = (ts - SetEpochTimestamp()) / 1000;
	}
}

/* Resolve the stream's options into o; raises on a bad one, naming what was expected. */
void
TribKafkaParseOptions(StreamDef *def, TribKafkaOptions *o)
{
	JsonbValue *v;

	memset(o, 0, sizeof(*o));
	v = TribStreamOption(def, "brokers");
	if (v == NULL || v->type != jbvString || v->val.string.len == 0)
		TribBadOption(def, "brokers", "a non-empty string such as \"host1:9092,host2:9092\"");
	o->brokers = pnstrdup(v->val.string.val, v->val.string.len);

	v = TribStreamOption(def, "topic");
	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		o->topics = list_make1(pnstrdup(v->val.string.val, v->val.string.len));
	else if (v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvString || e.val.string.len == 0)
				TribBadOption(def, "topic", "a topic name or an array of topic names");
			o->topics = lappend(o->topics, pnstrdup(e.val.string.val, e.val.string.len));
		}
	}
	if (o->topics == NIL)
		TribBadOption(def, "topic", "a topic name or an array of topic names");

	v = TribStreamOption(def, "group");
	if (v != NULL && (v->type != jbvString || v->val.string.len == 0))
		TribBadOption(def, "group", "a non-empty string");
	o->group_given = v != NULL;
	o->group = v != NULL ? pnstrdup(v->val.string.val, v->val.string.len) :
		psprintf("tributary-" UINT64_FORMAT "-%s-%s", GetSystemIdentifier(),
				 get_database_name(MyDatabaseId), def->name);

	TribKafkaParseStart(def, o);

	v = TribStreamOption(def, "partitions");
	if (v != NULL)
	{
		JsonbIterator *it;
		JsonbValue	e;
		JsonbIteratorToken tok;
		const char *expected = "a non-empty array of distinct partition numbers";

		if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data) ||
			JsonContainerSize(v->val.binary.data) == 0)
			TribBadOption(def, "partitions", expected);
		it = JsonbIteratorInit(v->val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			int64		n;

			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvNumeric)
				TribBadOption(def, "partitions", expected);
			if (!TribJsonbInteger(&e, &n) || n < 0 || n >= tributary_max_partitions)
				TribKafkaBadPartition(def, "partitions", TribJsonbScalarText(&e));
			if (list_member_int(o->partitions, (int) n))
				TribBadOption(def, "partitions", expected);
			o->partitions = lappend_int(o->partitions, (int) n);
		}
	}

	v = TribStreamOption(def, "librdkafka");
	if (v != NULL && (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data)))
		TribBadOption(def, "librdkafka", "an object of librdkafka properties");
	o->librdkafka = v != NULL ? v->val.binary.data : NULL;
}

/* Set one librdkafka property; frees conf before raising with librdkafka's words. */
static void
TribKafkaSet(rd_kafka_conf_t *conf, const char *name, const char *value, StreamDef *def)
{
	char		errstr[512];

	if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid librdkafka property \"%s\" for stream \"%s\"", name, def->name),
				 errdetail("librdkafka: %s", errstr),
				 errhint("See librdkafka's CONFIGURATION.md for the properties a consumer takes.")));
	}
}

/*
 * librdkafka's configuration for the stream; raises with librdkafka's words on a bad property.
 * When only validating (vetting) in the backend of a role that is not a superuser (start,
 * ingest), properties that role may not set are left out: they were checked when a role that
 * may set them stored them, and librdkafka must not act on them in this backend
 * (plugin.library.paths loads its libraries as soon as it is set).
 */
rd_kafka_conf_t *
TribKafkaConf(StreamDef *def, TribKafkaOptions *o, bool vetting)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	TribKafkaSet(conf, "bootstrap.servers", o->brokers, def);
	TribKafkaSet(conf, "group.id", o->group, def);
	TribKafkaSet(conf, "client.id", psprintf("tributary-%s", def->name), def);
	TribKafkaSet(conf, "enable.auto.commit", "false", def);
	TribKafkaSet(conf, "enable.auto.offset.store", "false", def);
	/* an offset out of range comes to TribKafkaResetPartition, which records the jump */
	TribKafkaSet(conf, "auto.offset.reset", "error", def);
	/* a crashed worker's partitions move on after 10 s, not 45; librdkafka options may override */
	TribKafkaSet(conf, "session.timeout.ms", "10000", def);
	/* a topic created after its stream is seen within 30 s, not 5 minutes */
	TribKafkaSet(conf, "topic.metadata.refresh.interval.ms", "30000", def);
	/*
	 * prefetch deep enough for a 10000-message batch; memory stays bounded by
	 * queued.max.messages.kbytes (64 MiB by default); librdkafka options may override
	 */
	TribKafkaSet(conf, "queued.min.messages", "1000000", def);
	/*
	 * A broker answers a fetch of partitions that have nothing new after this long, and
	 * answers a connection's requests in order: a partition whose start offset was asked for
	 * behind such a fetch waited 0.5-1 s (librdkafka's 500 ms default) before its first
	 * fetch, a stall in a group worker's first batches (bench/RESULTS.md). Also the most a
	 * quiet stream's new message can wait at a broker that does not answer early.
	 */
	TribKafkaSet(conf, "fetch.wait.max.ms", "100", def);
	if (o->librdkafka != NULL)
	{
		JsonbIterator *it = JsonbIteratorInit(o->librdkafka);
		JsonbValue	k;
		JsonbValue	v;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;
			char	   *value;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &v, true);
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (TribKafkaPropertyReserved(name))
			{
				rd_kafka_conf_destroy(conf);
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("librdkafka property \"%s\" is set by tributary", name),
						 errdetail("tributary relies on it for exactly-once delivery into PostgreSQL."),
						 errhint("Use the stream options \"brokers\" and \"group\" instead of bootstrap.servers and group.id.")));
			}
			value = TribJsonbScalarText(&v);
			if (value == NULL)
			{
				rd_kafka_conf_destroy(conf);
				TribBadOption(def, "librdkafka", "an object whose values are strings, numbers or booleans");
			}
			if (vetting && !superuser() &&
				!TribKafkaPropertyPermitted(name, v.type == jbvString ? value : NULL, GetUserId()))
				continue;
			TribKafkaSet(conf, name, value, def);
		}
	}
	return conf;
}

/* The source routine's validate: parse the options and let librdkafka check them. */
void
TribKafkaValidateOptions(StreamDef *def)
{
	TribKafkaOptions o;

	TribKafkaParseOptions(def, &o);
	rd_kafka_conf_destroy(TribKafkaConf(def, &o, true));
}

/*
 * Static group membership: with librdkafka's group.instance.id set, worker n of the stream
 * joins as "<id>-<n>". Members sharing one instance id fence each other (the broker keeps
 * one and fails the other, whose restart then fails the first), so the workers of a stream
 * must not share it. The suffix is there with one worker too: a worker kept across a
 * change of parallelism keeps its id, and a new worker cannot take it. Returns the id this
 * worker uses, or NULL.
 */
char *
TribKafkaSetInstance(rd_kafka_conf_t *conf, StreamDef *def, int index)
{
	size_t		size = 0;
	char	   *value;
	char	   *instance;

	if (rd_kafka_conf_get(conf, "group.instance.id", NULL, &size) != RD_KAFKA_CONF_OK || size <= 1)
		return NULL;
	value = palloc(size);
	if (rd_kafka_conf_get(conf, "group.instance.id", value, &size) != RD_KAFKA_CONF_OK || value[0] == '\0')
		return NULL;
	instance = psprintf("%s-%d", value, index + 1);
	TribKafkaSet(conf, "group.instance.id", instance, def);
	return instance;
}

/*
 * What the consumer is built from: the options that shape it, and this worker's share of
 * a static partition list. Two definitions with the same signature can share a consumer;
 * batching, format and metadata options do not matter to it.
 */
char *
TribKafkaSignature(StreamDef *def, int index)
{
	static const char *const keys[] = {"brokers", "topic", "group", "start", "librdkafka", "partitions"};
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(keys); i++)
	{
		JsonbValue *v = TribStreamOption(def, keys[i]);

		appendStringInfo(&buf, "%s=", keys[i]);
		if (v != NULL)
		{
			Jsonb	   *jb = JsonbValueToJsonb(v);

			appendStringInfoString(&buf, JsonbToCString(NULL, &jb->root, VARSIZE(jb)));
		}
		appendStringInfoChar(&buf, ';');
	}
	if (TribStreamOption(def, "partitions") != NULL)
		appendStringInfo(&buf, "share=%d/%d", index, def->parallelism);
	return buf.data;
}
