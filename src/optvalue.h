/*
 * optvalue.h
 *		Checks of one option's value shared by the option checker (options.c) and the
 *		sources (sources/), so that neither depends on the other.
 */
#ifndef TRIBUTARY_OPTVALUE_H
#define TRIBUTARY_OPTVALUE_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "tributary.h"

extern JsonbValue *TribStreamOption(StreamDef *def, const char *key);
extern bool TribJsonbInteger(JsonbValue *v, int64 *out);
extern void TribBadOption(StreamDef *def, const char *key, const char *expected) pg_attribute_noreturn();

#endif							/* TRIBUTARY_OPTVALUE_H */
