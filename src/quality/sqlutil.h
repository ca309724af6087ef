/*
 * sqlutil.h
 *		What the SQL entry points of the quality building blocks share: the aggregate
 *		memory context check, the sketch types' text and binary forms, and the quantile
 *		argument check.
 */
#ifndef TRIBUTARY_QUALITY_SQLUTIL_H
#define TRIBUTARY_QUALITY_SQLUTIL_H

#include "postgres.h"

#include "fmgr.h"
#include "lib/stringinfo.h"

/* The aggregate's memory context; an error when fname is called outside an aggregate. */
extern MemoryContext TribAggMemoryContext(FunctionCallInfo fcinfo, const char *fname);

/*
 * A sketch type's text input: "\x" and two hex digits per stored byte (as bytea's hex
 * form; the "\x" is optional). An error (22P02) that names typname when it is not hex.
 */
extern bytea *TribSketchTextIn(const char *text, const char *typname);

/* A sketch type's text output: "\x" and two hex digits per stored byte. */
extern char *TribSketchTextOut(const bytea *value);

/* A sketch type's binary input and output: the stored bytes as they are (input unchecked). */
extern bytea *TribSketchRecv(StringInfo buf);
extern bytea *TribSketchSend(const bytea *value);

/* Check a quantile argument: in [0, 1] (22003), not NaN. fname names the function. */
extern void TribCheckQuantile(double q, const char *fname);

#endif							/* TRIBUTARY_QUALITY_SQLUTIL_H */
