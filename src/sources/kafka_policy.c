/*
 * kafka_policy.c
 *		Which librdkafka properties a role may set, and what non-admins see of them.
 *
 * A Kafka stream's "librdkafka" object goes to rd_kafka_conf_set as it is, in the backend
 * that validates it and in the worker, which runs as a superuser. Some properties run
 * commands (sasl.kerberos.kinit.cmd), load code (plugin.library.paths is dlopen'ed by
 * rd_kafka_conf_set itself), read the server's files (ssl.ca.location) or flood the server
 * log (debug). So every property is classified in one table (property_policies), and a role
 * that is not a superuser may set only what its class allows: anything not in the table is
 * for superusers only. create_stream and alter_stream check the whole resulting options
 * against the calling role (TribKafkaCheckPropertyRights) before librdkafka sees any of them.
 *
 * The same table decides what tributary.streams shows to roles that may not manage a
 * stream: the "librdkafka" option is the source's secret option (TribKafkaRedactLibrdkafka),
 * and only the properties every role may set that hold no secret are shown in clear;
 * every other value is masked.
 *
 * The table follows librdkafka 2.0's CONFIGURATION.md; docs/security.md lists
 * it by class. A property added by a later librdkafka is for superusers until classified.
 */
#include "postgres.h"

#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "catalog.h"
#include "sources/kafka_policy.h"
#include "sources/source.h"

/* A property's class, or a function that finds it from the value (string or NULL). */
typedef struct TribKafkaPropertyPolicy
{
	const char *name;
	TribKafkaPropertyClass class;
	TribKafkaPropertyClass (*by_value) (const char *value);
} TribKafkaPropertyPolicy;

static TribKafkaPropertyClass TribKafkaMechanismClass(const char *value);
static TribKafkaPropertyClass TribKafkaTokenUrlClass(const char *value);

static const TribKafkaPropertyPolicy property_policies[] = {
	/* tributary sets these; exactly-once depends on them */
	{"auto.offset.reset", TRIB_PROP_RESERVED},
	{"bootstrap.servers", TRIB_PROP_RESERVED},
	{"enable.auto.commit", TRIB_PROP_RESERVED},
	{"enable.auto.offset.store", TRIB_PROP_RESERVED},
	{"enable.partition.eof", TRIB_PROP_RESERVED},
	{"group.id", TRIB_PROP_RESERVED},
	{"metadata.broker.list", TRIB_PROP_RESERVED},

	/* client identity, protocol and metadata */
	{"allow.auto.create.topics", TRIB_PROP_ALLOWED},
	{"api.version.fallback.ms", TRIB_PROP_ALLOWED},
	{"api.version.request", TRIB_PROP_ALLOWED},
	{"api.version.request.timeout.ms", TRIB_PROP_ALLOWED},
	{"broker.version.fallback", TRIB_PROP_ALLOWED},
	{"builtin.features", TRIB_PROP_ALLOWED},
	{"client.id", TRIB_PROP_ALLOWED},
	{"client.rack", TRIB_PROP_ALLOWED},
	{"max.in.flight", TRIB_PROP_ALLOWED},
	{"max.in.flight.requests.per.connection", TRIB_PROP_ALLOWED},
	{"message.copy.max.bytes", TRIB_PROP_ALLOWED},
	{"message.max.bytes", TRIB_PROP_ALLOWED},
	{"metadata.max.age.ms", TRIB_PROP_ALLOWED},
	{"receive.message.max.bytes", TRIB_PROP_ALLOWED},
	{"topic.blacklist", TRIB_PROP_ALLOWED},
	{"topic.metadata.propagation.max.ms", TRIB_PROP_ALLOWED},
	{"topic.metadata.refresh.fast.cnt", TRIB_PROP_ALLOWED},
	{"topic.metadata.refresh.fast.interval.ms", TRIB_PROP_ALLOWED},
	{"topic.metadata.refresh.interval.ms", TRIB_PROP_ALLOWED},
	{"topic.metadata.refresh.sparse", TRIB_PROP_ALLOWED},

	/* sockets and reconnects */
	{"broker.address.family", TRIB_PROP_ALLOWED},
	{"broker.address.ttl", TRIB_PROP_ALLOWED},
	{"connections.max.idle.ms", TRIB_PROP_ALLOWED},
	{"reconnect.backoff.jitter.ms", TRIB_PROP_ALLOWED},
	{"reconnect.backoff.max.ms", TRIB_PROP_ALLOWED},
	{"reconnect.backoff.ms", TRIB_PROP_ALLOWED},
	{"socket.blocking.max.ms", TRIB_PROP_ALLOWED},
	{"socket.connection.setup.timeout.ms", TRIB_PROP_ALLOWED},
	{"socket.keepalive.enable", TRIB_PROP_ALLOWED},
	{"socket.max.fails", TRIB_PROP_ALLOWED},
	{"socket.nagle.disable", TRIB_PROP_ALLOWED},
	{"socket.receive.buffer.bytes", TRIB_PROP_ALLOWED},
	{"socket.send.buffer.bytes", TRIB_PROP_ALLOWED},
	{"socket.timeout.ms", TRIB_PROP_ALLOWED},

	/* consumer group and fetching */
	{"auto.commit.interval.ms", TRIB_PROP_ALLOWED},
	{"check.crcs", TRIB_PROP_ALLOWED},
	{"coordinator.query.interval.ms", TRIB_PROP_ALLOWED},
	{"fetch.error.backoff.ms", TRIB_PROP_ALLOWED},
	{"fetch.max.bytes", TRIB_PROP_ALLOWED},
	{"fetch.message.max.bytes", TRIB_PROP_ALLOWED},
	{"fetch.min.bytes", TRIB_PROP_ALLOWED},
	{"fetch.wait.max.ms", TRIB_PROP_ALLOWED},
	{"group.instance.id", TRIB_PROP_ALLOWED},
	{"group.protocol.type", TRIB_PROP_ALLOWED},
	{"heartbeat.interval.ms", TRIB_PROP_ALLOWED},
	{"isolation.level", TRIB_PROP_ALLOWED},
	{"max.partition.fetch.bytes", TRIB_PROP_ALLOWED},
	{"max.poll.interval.ms", TRIB_PROP_ALLOWED},
	{"partition.assignment.strategy", TRIB_PROP_ALLOWED},
	{"queued.max.messages.kbytes", TRIB_PROP_ALLOWED},
	{"queued.min.messages", TRIB_PROP_ALLOWED},
	{"session.timeout.ms", TRIB_PROP_ALLOWED},

	/* TLS */
	{"enable.ssl.certificate.verification", TRIB_PROP_ALLOWED},
	{"security.protocol", TRIB_PROP_ALLOWED},
	{"ssl.ca.pem", TRIB_PROP_SECRET},	/* librdkafka marks it sensitive */
	{"ssl.certificate.pem", TRIB_PROP_ALLOWED},
	{"ssl.cipher.suites", TRIB_PROP_ALLOWED},
	{"ssl.curves.list", TRIB_PROP_ALLOWED},
	{"ssl.endpoint.identification.algorithm", TRIB_PROP_ALLOWED},
	{"ssl.key.password", TRIB_PROP_SECRET},
	{"ssl.key.pem", TRIB_PROP_SECRET},
	{"ssl.keystore.password", TRIB_PROP_SECRET},
	{"ssl.sigalgs.list", TRIB_PROP_ALLOWED},
	{"ssl.ca.location", TRIB_PROP_FILE},
	{"ssl.certificate.location", TRIB_PROP_FILE},
	{"ssl.crl.location", TRIB_PROP_FILE},
	{"ssl.key.location", TRIB_PROP_FILE},
	{"ssl.keystore.location", TRIB_PROP_FILE},
	{"ssl.engine.id", TRIB_PROP_CODE},
	{"ssl.engine.location", TRIB_PROP_CODE},
	{"ssl.providers", TRIB_PROP_CODE},

	/* SASL */
	{"sasl.mechanism", TRIB_PROP_ALLOWED, TribKafkaMechanismClass},
	{"sasl.mechanisms", TRIB_PROP_ALLOWED, TribKafkaMechanismClass},
	{"sasl.username", TRIB_PROP_SECRET},	/* librdkafka marks it sensitive */
	{"sasl.password", TRIB_PROP_SECRET},
	{"enable.sasl.oauthbearer.unsecure.jwt", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.client.id", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.client.secret", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.config", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.extensions", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.method", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.scope", TRIB_PROP_SECRET},
	{"sasl.oauthbearer.token.endpoint.url", TRIB_PROP_SECRET, TribKafkaTokenUrlClass},
	{"sasl.kerberos.min.time.before.relogin", TRIB_PROP_ALLOWED},
	{"sasl.kerberos.service.name", TRIB_PROP_ALLOWED},
	/* the keytab is read by kinit, which only superusers can have run (GSSAPI) */
	{"sasl.kerberos.keytab", TRIB_PROP_FILE},
	{"sasl.kerberos.kinit.cmd", TRIB_PROP_CODE},
	/* put unquoted into the default kinit.cmd, a shell command */
	{"sasl.kerberos.principal", TRIB_PROP_CODE},

	/* code loaded into the process */
	{"plugin.library.paths", TRIB_PROP_CODE},

	/* logging and statistics: librdkafka's log goes to the server log */
	{"debug", TRIB_PROP_ADMIN},
	{"log.connection.close", TRIB_PROP_ADMIN},
	{"log.queue", TRIB_PROP_ADMIN},
	{"log.thread.name", TRIB_PROP_ADMIN},
	{"log_level", TRIB_PROP_ADMIN},
	{"statistics.interval.ms", TRIB_PROP_ADMIN},
};

/* What each class means in an error, and who may set it. */
typedef struct TribKafkaClassText
{
	const char *label;
	const char *reason;
	const char *hint;
} TribKafkaClassText;

static const TribKafkaClassText class_texts[] = {
	[TRIB_PROP_ALLOWED] = {"allowed", "", ""},
	[TRIB_PROP_SECRET] = {"secret", "", ""},
	[TRIB_PROP_FILE] = {
		"reads server files",
		"librdkafka reads the file it names with the rights of the server's operating system user",
		"Only superusers and members of pg_read_server_files may set it; ssl.ca.pem, ssl.certificate.pem and ssl.key.pem take the PEM text itself."
	},
	[TRIB_PROP_ADMIN] = {
		"logging",
		"librdkafka's logging and debugging output goes into the server log",
		"Only superusers and members of " TRIBUTARY_ADMIN_ROLE " may set it."
	},
	[TRIB_PROP_CREDENTIALS] = {
		"server credentials",
		"SASL mechanisms other than PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (GSSAPI, the default one) go through Cyrus SASL, which runs kinit and logs in with the server's own Kerberos identity",
		"Only superusers may use it; other roles set sasl.mechanism to PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER."
	},
	[TRIB_PROP_CODE] = {
		"runs code",
		"librdkafka runs a command or loads a library with it, inside the server",
		"Only superusers may set it."
	},
	[TRIB_PROP_UNLISTED] = {
		"not allow-listed",
		"it is not on tributary's list of librdkafka properties that other roles may set",
		"Only superusers may set it; docs/security.md lists what other roles may set."
	},
	[TRIB_PROP_RESERVED] = {"reserved", "", ""},
};

/*
 * The SASL mechanisms librdkafka implements itself; any other goes to Cyrus SASL, which
 * for GSSAPI runs sasl.kerberos.kinit.cmd and uses the server's Kerberos credentials.
 */
static TribKafkaPropertyClass
TribKafkaMechanismClass(const char *value)
{
	static const char *const builtin[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"};

	for (int i = 0; value != NULL && i < lengthof(builtin); i++)
		if (strcmp(value, builtin[i]) == 0)
			return TRIB_PROP_ALLOWED;
	return TRIB_PROP_CREDENTIALS;
}

/* librdkafka fetches OIDC tokens with libcurl, which also reads file:// and other URLs. */
static TribKafkaPropertyClass
TribKafkaTokenUrlClass(const char *value)
{
	if (value != NULL &&
		(pg_strncasecmp(value, "https://", 8) == 0 || pg_strncasecmp(value, "http://", 7) == 0))
		return TRIB_PROP_SECRET;
	return TRIB_PROP_FILE;
}

TribKafkaPropertyClass
TribKafkaPropertyClassOf(const char *name, const char *value)
{
	for (int i = 0; i < lengthof(property_policies); i++)
	{
		const TribKafkaPropertyPolicy *p = &property_policies[i];

		if (strcmp(p->name, name) == 0)
			return p->by_value != NULL ? p->by_value(value) : p->class;
	}
	return TRIB_PROP_UNLISTED;
}

/*
 * librdkafka sets a name it does not know as a global property on the default topic
 * configuration, without a "topic." prefix: "topic.auto.offset.reset" is auto.offset.reset.
 */
bool
TribKafkaPropertyReserved(const char *name)
{
	if (TribKafkaPropertyClassOf(name, NULL) == TRIB_PROP_RESERVED)
		return true;
	return strncmp(name, "topic.", 6) == 0 &&
		TribKafkaPropertyClassOf(name + 6, NULL) == TRIB_PROP_RESERVED;
}

/* Reserved properties pass: TribKafkaConf refuses them for everyone, with its own words. */
static bool
TribKafkaClassPermitted(TribKafkaPropertyClass class, Oid roleid)
{
	switch (class)
	{
		case TRIB_PROP_ALLOWED:
		case TRIB_PROP_SECRET:
		case TRIB_PROP_RESERVED:
			return true;
		case TRIB_PROP_FILE:
			return superuser_arg(roleid) || has_privs_of_role(roleid, ROLE_PG_READ_SERVER_FILES);
		case TRIB_PROP_ADMIN:
			return TribIsAdmin(roleid);
		case TRIB_PROP_CREDENTIALS:
		case TRIB_PROP_CODE:
		case TRIB_PROP_UNLISTED:
			return superuser_arg(roleid);
	}
	return false;
}

bool
TribKafkaPropertyPermitted(const char *name, const char *value, Oid roleid)
{
	return TribKafkaClassPermitted(TribKafkaPropertyClassOf(name, value), roleid);
}

static void
TribKafkaRefuseProperty(StreamDef *def, const char *name, TribKafkaPropertyClass class)
{
	const TribKafkaClassText *t = &class_texts[class];

	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to set librdkafka property \"%s\" of stream \"%s\"",
					name, def->name),
			 errdetail("The property is in class \"%s\": %s.", t->label, t->reason),
			 errhint("%s", t->hint)));
}

/* A string property's value, or NULL for other JSON values. */
static char *
TribKafkaStringValue(JsonbValue *v)
{
	return v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;
}

void
TribKafkaCheckPropertyRights(StreamDef *def, Oid roleid)
{
	JsonbValue *v;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	val;
	JsonbIteratorToken tok;
	char	   *protocol = NULL;
	bool		mechanism = false;

	if (superuser_arg(roleid) ||
		!JB_ROOT_IS_OBJECT(def->options) || JB_ROOT_IS_SCALAR(def->options))
		return;
	v = getKeyJsonValueFromContainer(&def->options->root, "librdkafka", 10, NULL);
	/* not an object: TribKafkaParseOptions says what it must be */
	if (v == NULL || v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		return;

	it = JsonbIteratorInit(v->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *name;
		char	   *value;
		TribKafkaPropertyClass class;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &val, true);
		name = pnstrdup(k.val.string.val, k.val.string.len);
		value = TribKafkaStringValue(&val);
		class = TribKafkaPropertyReserved(name) ? TRIB_PROP_RESERVED :
			TribKafkaPropertyClassOf(name, value);
		if (!TribKafkaClassPermitted(class, roleid))
			TribKafkaRefuseProperty(def, name, class);
		if (strcmp(name, "security.protocol") == 0)
			protocol = value;
		mechanism |= strcmp(name, "sasl.mechanism") == 0 || strcmp(name, "sasl.mechanisms") == 0;
	}
	/* SASL without a mechanism is GSSAPI, librdkafka's default */
	if (protocol != NULL && pg_strncasecmp(protocol, "sasl", 4) == 0 && !mechanism)
		TribKafkaRefuseProperty(def, "security.protocol", TRIB_PROP_CREDENTIALS);
}

/*
 * The "librdkafka" option as roles that may not manage the stream see it: every value not
 * shown in clear masked. A value that is not an object is shown as it is (no property
 * reaches librdkafka from it).
 */
JsonbValue *
TribKafkaRedactLibrdkafka(JsonbValue *value)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbValue	mask;
	JsonbIteratorToken tok;
	Jsonb	   *masked;
	JsonbValue *result;

	if (value->type != jbvBinary || !JsonContainerIsObject(value->val.binary.data))
		return value;
	mask.type = jbvString;
	mask.val.string.val = TRIB_SECRET_MASK;
	mask.val.string.len = strlen(TRIB_SECRET_MASK);
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(value->val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		char	   *name;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		name = pnstrdup(k.val.string.val, k.val.string.len);
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		(void) pushJsonbValue(&state, WJB_VALUE,
							  TribKafkaPropertyClassOf(name, TribKafkaStringValue(&v)) ==
							  TRIB_PROP_ALLOWED ? &v : &mask);
	}
	masked = JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
	result = palloc(sizeof(JsonbValue));
	result->type = jbvBinary;
	result->val.binary.data = &masked->root;
	result->val.binary.len = VARSIZE(masked) - VARHDRSZ;
	return result;
}
