/*
 * redis_options.c
 *		A redis stream's options: checked (TribRedisValidateOptions, the source routine's
 *		validate) and resolved into TribRedisOptions; entry ids read and written; the
 *		signature that tells whether a reloaded definition can keep its consumer; the URL
 *		with its password masked.
 *
 * Nothing here connects to the server: create_stream and alter_stream check the options'
 * form only, as they do for Kafka's brokers.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "catalog/pg_collation.h"
#include "commands/dbcommands.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "formats/format.h"
#include "catalog.h"
#include "optvalue.h"
#include "sources/redis_internal.h"
#include "sources/source.h"

#define TRIB_REDIS_URL_EXPECTED \
	"a URL such as redis://[user:password@]host[:port][/db] or unix://[user:password@]/path/to/redis.sock[?db=N]"

/*
 * Read an entry id: "ms-seq" or "ms" (seq 0), each part decimal digits that fit 64 bits,
 * as Redis writes them.
 */
bool
TribRedisParseId(const char *text, size_t len, TribRedisId *id)
{
	uint64	   *part = &id->ms;
	size_t		digits = 0;

	id->ms = 0;
	id->seq = 0;
	for (size_t i = 0; i < len; i++)
	{
		char		c = text[i];

		if (c == '-' && part == &id->ms && digits > 0)
		{
			part = &id->seq;
			digits = 0;
			continue;
		}
		if (c < '0' || c > '9' || *part > (PG_UINT64_MAX - (c - '0')) / 10)
			return false;
		*part = *part * 10 + (c - '0');
		digits++;
	}
	return digits > 0;
}

/* An entry id as Redis writes it. */
char *
TribRedisIdText(TribRedisId id)
{
	return psprintf(UINT64_FORMAT "-" UINT64_FORMAT, id.ms, id.seq);
}

/* A hexadecimal digit's value, or -1. */
static int
TribHexDigit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %XX sequences of a URL part decoded; false when one is malformed or decodes to NUL. */
static bool
TribRedisUrlDecode(const char *s, size_t len, char **out)
{
	char	   *d = palloc(len + 1);
	size_t		n = 0;

	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '%')
		{
			int			hi,
						lo;

			if (i + 2 >= len)
				return false;
			hi = TribHexDigit(s[i + 1]);
			lo = TribHexDigit(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return false;
			d[n++] = (char) (hi * 16 + lo);
			i += 2;
		}
		else
			d[n++] = s[i];
	}
	d[n] = '\0';
	*out = d;
	return true;
}

/* A whole number from digits[0..len), within [min, max]. */
static bool
TribRedisUrlNumber(const char *digits, size_t len, int min, int max, int *out)
{
	int64		v = 0;

	if (len == 0 || len > 9)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		if (digits[i] < '0' || digits[i] > '9')
			return false;
		v = v * 10 + (digits[i] - '0');
	}
	if (v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

/*
 * The URL's query: "db=N" and "password=..." (as some clients write them), '&'-separated;
 * anything else is refused rather than ignored.
 */
static void
TribRedisUrlQuery(StreamDef *def, TribRedisOptions *o, const char *q)
{
	while (*q != '\0')
	{
		const char *end = strchr(q, '&');
		size_t		len = end ? (size_t) (end - q) : strlen(q);

		if (len > 3 && strncmp(q, "db=", 3) == 0)
		{
			if (!TribRedisUrlNumber(q + 3, len - 3, 0, 1000000, &o->db))
				TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		}
		else if (len > 9 && strncmp(q, "password=", 9) == 0)
		{
			if (!TribRedisUrlDecode(q + 9, len - 9, &o->password))
				TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"url\" of stream \"%s\"", def->name),
					 errdetail("The URL's query parameter \"%s\" is not known.", pnstrdup(q, len)),
					 errhint("A redis URL takes the query parameters db and password.")));
		q += len;
		if (*q == '&')
			q++;
	}
}

/* The option "url": redis://[user:password@]host[:port][/db] or unix://[user:password@]/path[?db=N]. */
static void
TribRedisParseUrl(StreamDef *def, TribRedisOptions *o, const char *url)
{
	const char *rest;
	const char *at;
	const char *end;
	char	   *query = NULL;
	bool		unix_socket;

	o->host = NULL;
	o->port = 6379;
	o->socket_path = NULL;
	o->user = NULL;
	o->password = NULL;
	o->db = 0;

	if (strncmp(url, "rediss://", 9) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("stream \"%s\" asks for TLS (rediss://), which tributary cannot offer", def->name),
				 errdetail("tributary talks to Redis through hiredis %d.%d, which is built without TLS.",
						   HIREDIS_MAJOR, HIREDIS_MINOR),
				 errhint("Use redis:// on a trusted network or a unix:// socket, or reach the server through a TLS tunnel such as stunnel.")));
	if (strncmp(url, "redis://", 8) == 0)
		unix_socket = false;
	else if (strncmp(url, "unix://", 7) == 0)
		unix_socket = true;
	else
		TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
	rest = url + (unix_socket ? 7 : 8);

	/* the query, then the user and password before the last '@' ahead of the path */
	if (strchr(rest, '?') != NULL)
	{
		query = pstrdup(strchr(rest, '?') + 1);
		rest = pnstrdup(rest, strchr(rest, '?') - rest);
	}
	if (unix_socket)
		/* unix://user:password@/path: the '@' right before the path; none when it starts at once */
		at = rest[0] == '/' ? NULL : strstr(rest, "@/");
	else
	{
		/* redis://user:password@host: the last '@' before the path (a password may hold '@') */
		end = rest + strcspn(rest, "/");
		at = NULL;
		for (const char *p = rest; p < end; p++)
			if (*p == '@')
				at = p;
	}
	if (unix_socket && rest[0] != '/' && at == NULL)
		TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
	if (at != NULL)
	{
		const char *colon = memchr(rest, ':', at - rest);

		if (colon == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"url\" of stream \"%s\"", def->name),
					 errdetail("The part before '@' has no ':' between user and password."),
					 errhint("Write redis://user:password@host, or redis://:password@host for the password alone.")));
		if (colon > rest && !TribRedisUrlDecode(rest, colon - rest, &o->user))
			TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		if (!TribRedisUrlDecode(colon + 1, at - colon - 1, &o->password))
			TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		rest = at + 1;
	}

	if (unix_socket)
	{
		if (rest[0] != '/' || rest[1] == '\0')
			TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		o->socket_path = pstrdup(rest);
		o->where = o->socket_path;
	}
	else
	{
		const char *hostend;
		const char *path;

		end = rest + strcspn(rest, "/");
		path = end;
		if (rest[0] == '[')
		{
			hostend = memchr(rest, ']', end - rest);
			if (hostend == NULL)
				TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
			o->host = pnstrdup(rest + 1, hostend - rest - 1);
			hostend++;
		}
		else
		{
			hostend = memchr(rest, ':', end - rest);
			if (hostend == NULL)
				hostend = end;
			o->host = pnstrdup(rest, hostend - rest);
		}
		if (o->host[0] == '\0')
			TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		if (hostend < end)
		{
			if (*hostend != ':' ||
				!TribRedisUrlNumber(hostend + 1, end - hostend - 1, 1, 65535, &o->port))
				TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		}
		if (*path == '/' && path[1] != '\0' &&
			!TribRedisUrlNumber(path + 1, strlen(path + 1), 0, 1000000, &o->db))
			TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
		o->where = psprintf(strchr(o->host, ':') ? "[%s]:%d" : "%s:%d", o->host, o->port);
	}
	if (query != NULL)
		TribRedisUrlQuery(def, o, query);
}

/* A non-empty string option, or NULL when it is not given. */
static char *
TribRedisStringOption(StreamDef *def, const char *key)
{
	JsonbValue *v = TribStreamOption(def, key);

	if (v == NULL)
		return NULL;
	if (v->type != jbvString || v->val.string.len == 0)
		TribBadOption(def, key, "a non-empty string");
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* The option "stream": a key, or an array of distinct keys. */
static List *
TribRedisParseKeys(StreamDef *def)
{
	JsonbValue *v = TribStreamOption(def, "stream");
	const char *expected = "a stream key or an array of distinct stream keys";
	List	   *keys = NIL;

	if (v != NULL && v->type == jbvString && v->val.string.len > 0)
		return list_make1(pnstrdup(v->val.string.val, v->val.string.len));
	if (v != NULL && v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			char	   *key;
			ListCell   *lc;

			if (tok != WJB_ELEM)
				continue;
			if (e.type != jbvString || e.val.string.len == 0)
				TribBadOption(def, "stream", expected);
			key = pnstrdup(e.val.string.val, e.val.string.len);
			foreach(lc, keys)
				if (strcmp(lfirst(lc), key) == 0)
					TribBadOption(def, "stream", expected);
			keys = lappend(keys, key);
		}
	}
	if (keys == NIL)
		TribBadOption(def, "stream", expected);
	return keys;
}

/* The option "start": "0", "$" or an entry id. */
static void
TribRedisParseStart(StreamDef *def, TribRedisOptions *o)
{
	char	   *start = TribRedisStringOption(def, "start");

	o->start = TRIB_REDIS_START_ALL;
	if (start == NULL || strcmp(start, "0") == 0)
		return;
	if (strcmp(start, "$") == 0)
		o->start = TRIB_REDIS_START_NEW;
	else if (TribRedisParseId(start, strlen(start), &o->start_after))
		o->start = TRIB_REDIS_START_AFTER;
	else
		TribBadOption(def, "start", "\"0\" (every entry), \"$\" (only new entries) or an entry id such as \"1700000000000-0\"");
}

/* The option "fields": absent, one field's name, or (json) an object of "json"/"text" rules. */
static void
TribRedisParseFields(StreamDef *def, TribRedisOptions *o)
{
	JsonbValue *v = TribStreamOption(def, "fields");
	bool		json = strcmp(def->format->name, "json") == 0;

	o->fields = TRIB_FIELDS_OBJECT;
	o->field = NULL;
	o->json_fields = NIL;
	o->text_fields = NIL;
	o->json_default = false;
	if (v == NULL)
	{
		if (!json)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("stream \"%s\" needs option \"fields\"", def->name),
					 errdetail("Format %s reads one value per entry; only format json can take an entry's field-value pairs as one object.",
							   def->format->name),
					 errhint("Name the entry field that holds the payload, for example {\"fields\": \"payload\"}.")));
		return;
	}
	if (v->type == jbvString && v->val.string.len > 0)
	{
		o->fields = TRIB_FIELDS_ONE;
		o->field = pnstrdup(v->val.string.val, v->val.string.len);
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(v->val.binary.data);
		JsonbValue	k;
		JsonbValue	rule;
		JsonbIteratorToken tok;

		if (!json)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"fields\" of stream \"%s\"", def->name),
					 errdetail("An object of field rules makes a JSON object of each entry, and the stream's format is %s.",
							   def->format->name),
					 errhint("Use format json, or name the one field that holds the payload.")));
		while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
		{
			char	   *name;
			bool		as_json;

			if (tok != WJB_KEY)
				continue;
			(void) JsonbIteratorNext(&it, &rule, true);
			if (rule.type != jbvString ||
				!((rule.val.string.len == 4 && strncmp(rule.val.string.val, "json", 4) == 0) ||
				  (rule.val.string.len == 4 && strncmp(rule.val.string.val, "text", 4) == 0)))
				TribBadOption(def, "fields", "an object mapping field names (or \"*\", every other field) to \"json\" or \"text\"");
			as_json = rule.val.string.val[0] == 'j';
			name = pnstrdup(k.val.string.val, k.val.string.len);
			if (strcmp(name, "*") == 0)
				o->json_default = as_json;
			else if (as_json)
				o->json_fields = lappend(o->json_fields, name);
			else
				o->text_fields = lappend(o->text_fields, name);
		}
		return;
	}
	TribBadOption(def, "fields", "the name of the field that holds the payload, or (format json) an object of field rules such as {\"attrs\": \"json\"}");
}

/* Resolve the stream's options; raises on a bad one, naming what was expected. */
void
TribRedisParseOptions(StreamDef *def, TribRedisOptions *o)
{
	char	   *url = TribRedisStringOption(def, "url");

	if (url == NULL)
		TribBadOption(def, "url", TRIB_REDIS_URL_EXPECTED);
	TribRedisParseUrl(def, o, url);
	o->keys = TribRedisParseKeys(def);
	o->group = TribRedisStringOption(def, "group");
	if (o->group == NULL)
		o->group = psprintf("tributary-" UINT64_FORMAT "-%s-%s", GetSystemIdentifier(),
							get_database_name(MyDatabaseId), def->name);
	o->consumer = TribRedisStringOption(def, "consumer");
	TribRedisParseStart(def, o);
	TribRedisParseFields(def, o);
}

/* The source routine's validate: the options resolve. */
void
TribRedisValidateOptions(StreamDef *def)
{
	TribRedisOptions o;

	TribRedisParseOptions(def, &o);
}

/* Worker index's consumer name: the option's (with -n when several workers share it), or derived. */
char *
TribRedisConsumerName(TribRedisOptions *o, StreamDef *def, int index)
{
	if (o->consumer == NULL)
		return psprintf("tributary-%s-%d", def->name, index + 1);
	if (def->parallelism == 1)
		return pstrdup(o->consumer);
	return psprintf("%s-%d", o->consumer, index + 1);
}

/*
 * What a consumer is built from: the server, the keys and their split among the workers,
 * the group and the consumer name. A reloaded definition with the same signature keeps
 * the connection and the keys' locks; start, fields and batching may change.
 */
char *
TribRedisSignature(StreamDef *def, int index)
{
	static const char *const keys[] = {"url", "stream", "group", "consumer"};
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%d/%d", index, def->parallelism);
	for (int i = 0; i < lengthof(keys); i++)
	{
		JsonbValue *v = TribStreamOption(def, keys[i]);

		appendStringInfo(&buf, "|%s=", keys[i]);
		if (v != NULL)
			appendStringInfoString(&buf, JsonbToCString(NULL, &JsonbValueToJsonb(v)->root, 0));
	}
	return buf.data;
}

/*
 * The "url" option as roles that may not manage the stream see it: everything between the
 * user and the last '@' masked (redis://user:********@host, unix://:********@/path; a
 * password may itself hold '@' or '/'), and ?password=... or &password=... masked. Any
 * text is taken, not only a URL the parser accepts: this masks what is stored, whatever it
 * is, and masking too much only hides more.
 */
JsonbValue *
TribRedisRedactUrl(JsonbValue *value)
{
	const char *url;
	int			len;
	const char *scheme_end;
	const char *at = NULL;
	StringInfoData buf;
	Datum		masked;

	if (value->type != jbvString)
		return value;
	url = value->val.string.val;
	len = value->val.string.len;
	initStringInfo(&buf);
	scheme_end = NULL;
	for (int i = 0; i + 2 < len; i++)
		if (url[i] == ':' && url[i + 1] == '/' && url[i + 2] == '/')
		{
			scheme_end = url + i + 3;
			break;
		}
	if (scheme_end != NULL)
		for (const char *p = scheme_end; p < url + len; p++)
			if (*p == '@')
				at = p;
	if (at != NULL)
	{
		const char *colon = memchr(scheme_end, ':', at - scheme_end);

		/* the user stays when there is one before a ':'; the rest up to the '@' goes */
		if (colon != NULL)
			appendBinaryStringInfo(&buf, url, (int) (colon + 1 - url));
		else
			appendBinaryStringInfo(&buf, url, (int) (scheme_end - url));
		appendStringInfoString(&buf, TRIB_SECRET_MASK);
		appendBinaryStringInfo(&buf, at, (int) (url + len - at));
	}
	else
		appendBinaryStringInfo(&buf, url, len);

	masked = DirectFunctionCall4Coll(textregexreplace, C_COLLATION_OID,
									 PointerGetDatum(cstring_to_text_with_len(buf.data, buf.len)),
									 CStringGetTextDatum("([?&]password=)[^&]*"),
									 CStringGetTextDatum("\\1" TRIB_SECRET_MASK),
									 CStringGetTextDatum("g"));
	value->val.string.val = TextDatumGetCString(masked);
	value->val.string.len = strlen(value->val.string.val);
	return value;
}

/*
 * The source routine's check_rights: a unix socket is opened by the server's operating
 * system user, so any socket that user may open (PostgreSQL's own, another daemon's)
 * would be within reach of whoever creates a stream; unix:// URLs are for superusers and
 * members of tributary_admin. (A TCP address reaches no more than the network already
 * lets the server's host reach; see docs/security.md.)
 */
void
TribRedisCheckRights(StreamDef *def, Oid roleid)
{
	JsonbValue *v = TribStreamOption(def, "url");

	if (v == NULL || v->type != jbvString || v->val.string.len < 7 ||
		strncmp(v->val.string.val, "unix://", 7) != 0 || TribIsAdmin(roleid))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to read stream \"%s\" from a unix socket", def->name),
			 errdetail("The worker opens the socket as the database server's operating system user, so only superusers and members of %s may name one.",
					   TRIBUTARY_ADMIN_ROLE),
			 errhint("Use a redis:// URL, or ask an administrator to create the stream.")));
}
