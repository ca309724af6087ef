/*
 * registry.c
 *		The one list of formats. Adding a format is a new file under formats/ that defines
 *		its TribFormatRoutine, and one line here.
 */
#include "postgres.h"

#include "lib/stringinfo.h"

#include "formats/format.h"

extern const TribFormatRoutine TribJsonFormatRoutine;
extern const TribFormatRoutine TribCsvFormatRoutine;
extern const TribFormatRoutine TribTextFormatRoutine;
extern const TribFormatRoutine TribBytesFormatRoutine;

static const TribFormatRoutine *const formats[] = {
	&TribJsonFormatRoutine,
	&TribCsvFormatRoutine,
	&TribTextFormatRoutine,
	&TribBytesFormatRoutine,
};

/* The format called name, or NULL. */
const TribFormatRoutine *
TribFormatLookup(const char *name)
{
	for (int i = 0; i < lengthof(formats); i++)
		if (strcmp(formats[i]->name, name) == 0)
			return formats[i];
	return NULL;
}

/* "json, csv, text, bytes": the names for a hint. */
const char *
TribFormatNameList(void)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int i = 0; i < lengthof(formats); i++)
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", formats[i]->name);
	return buf.data;
}
