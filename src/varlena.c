/*
 * varlena.c
 *		Bytes as PostgreSQL values, shared by the formats, dead letters and the sources.
 */
#include "postgres.h"

#include "utils/builtins.h"

#include "varlena.h"

bytea *
TribBytea(const char *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

char *
TribHexText(const char *data, size_t len)
{
	char	   *hex = palloc(len * 2 + 3);

	hex[0] = '\\';
	hex[1] = 'x';
	hex[2 + hex_encode(data, len, hex + 2)] = '\0';
	return hex;
}
