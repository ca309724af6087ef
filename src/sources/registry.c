/*
 * registry.c
 *		The one list of sources. Adding a source is a new file under sources/ that defines
 *		its TribSourceRoutine, and one line here. Also what is asked of every source at
 *		once: the redaction of their secret options.
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "sources/source.h"

extern const TribSourceRoutine TribLocalSource;
extern const TribSourceRoutine TribKafkaSource;
extern const TribSourceRoutine TribRedisSource;

static const TribSourceRoutine *const sources[] = {
	&TribKafkaSource,
	&TribRedisSource,
	&TribLocalSource,
};

/* The source called name, or NULL. */
const TribSourceRoutine *
TribSourceLookup(const char *name)
{
	for (int i = 0; i < lengthof(sources); i++)
		if (strcmp(sources[i]->name, name) == 0)
			return sources[i];
	return NULL;
}

/* "kafka, redis, local": the names for a hint. */
const char *
TribSourceNameList(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(sources); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", sources[i]->name);
	return buf.data;
}

/* The secret option called name of any source (the first that declares it), or NULL. */
static const TribSecretOption *
TribSecretOptionLookup(const char *name, int len)
{
	for (int i = 0; i < lengthof(sources); i++)
		for (const TribSecretOption *o = sources[i]->secret_options; o != NULL && o->name != NULL; o++)
			if (strlen(o->name) == len && strncmp(o->name, name, len) == 0)
				return o;
	return NULL;
}

/*
 * options as roles that may not manage the stream see them: each source's secret options
 * redacted by that source. Options are taken as they come, without their stream's source,
 * so a secret option of any source is redacted wherever it appears; an option's name means
 * one thing across sources. Not an object: returned as it is.
 */
Jsonb *
TribSourceRedactOptions(Jsonb *options)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbValue	k;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (!JB_ROOT_IS_OBJECT(options) || JB_ROOT_IS_SCALAR(options))
		return options;
	(void) pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(&options->root);
	while ((tok = JsonbIteratorNext(&it, &k, true)) != WJB_DONE)
	{
		const TribSecretOption *secret;

		if (tok != WJB_KEY)
			continue;
		(void) JsonbIteratorNext(&it, &v, true);
		secret = TribSecretOptionLookup(k.val.string.val, k.val.string.len);
		(void) pushJsonbValue(&state, WJB_KEY, &k);
		(void) pushJsonbValue(&state, WJB_VALUE, secret != NULL ? secret->redact(&v) : &v);
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}
