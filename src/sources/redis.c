/*
 * redis.c
 *		The Redis Streams source, by name only: it has no consumer yet, so streams of it are
 *		refused (TribSourceRoutine.available). Its options are listed so the refusal, not
 *		an "unknown option", is what a user sees, and the password of its URL is masked.
 */
#include "postgres.h"

#include "catalog/pg_collation.h"
#include "utils/builtins.h"

#include "sources/source.h"

static const TribSourceOption redis_options[] = {
	{"url"},
	{"stream_key", "{\"stream_key\": \"key\"}"},
	{"group"},
	{"consumer"},
	{NULL}
};

/* The "url" option without its password: redis://user:password@host and ?password=... */
static JsonbValue *
TribRedisRedactUrl(JsonbValue *value)
{
	Datum		url;
	char	   *masked;

	if (value->type != jbvString)
		return value;
	url = PointerGetDatum(cstring_to_text_with_len(value->val.string.val, value->val.string.len));
	url = DirectFunctionCall3Coll(textregexreplace_noopt, C_COLLATION_OID, url,
								  CStringGetTextDatum("^([a-z]+://)([^:@/]*):[^@/]*@"),
								  CStringGetTextDatum("\\1\\2:" TRIB_SECRET_MASK "@"));
	url = DirectFunctionCall4Coll(textregexreplace, C_COLLATION_OID, url,
								  CStringGetTextDatum("([?&]password=)[^&]*"),
								  CStringGetTextDatum("\\1" TRIB_SECRET_MASK),
								  CStringGetTextDatum("g"));
	masked = TextDatumGetCString(url);
	value->val.string.val = masked;
	value->val.string.len = strlen(masked);
	return value;
}

static const TribSecretOption redis_secret_options[] = {
	{"url", TribRedisRedactUrl},
	{NULL}
};

const TribSourceRoutine TribRedisSource = {
	.name = "redis",
	.available = false,
	.needs_worker = true,
	.options = redis_options,
	.secret_options = redis_secret_options,
};
