/*
 * varlena.h
 *		Bytes as PostgreSQL values, shared by the formats, dead letters and the sources.
 */
#ifndef TRIBUTARY_VARLENA_H
#define TRIBUTARY_VARLENA_H

#include "postgres.h"

/* The bytes as a bytea (one copy, no detour through text). */
extern bytea *TribBytea(const char *data, int len);

/* The bytes as bytea's hex input form, \x and two digits a byte, NUL-terminated. */
extern char *TribHexText(const char *data, size_t len);

#endif							/* TRIBUTARY_VARLENA_H */
