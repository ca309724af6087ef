/*
 * registry.c
 *		The one list of sources. Adding a source is a new file under sources/ that defines
 *		its TribSourceRoutine, and one line here.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

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
