/*
 * fe_shim.c
 *		Just enough of the backend for src/quality's sketches to run in a plain program:
 *		memory contexts as malloc, ereport as a message and exit. libpgcommon and libpgport
 *		(frontend builds) supply palloc, psprintf, StringInfo and the bit utilities.
 *
 * The fuzz harness never frees: it is short-lived, and the leak checker is off.
 */
#include "postgres.h"

#include <stdio.h>
#include <stdlib.h>

MemoryContext CurrentMemoryContext = NULL;

/* The sketches allocate through their context; here every context is malloc. */
void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	void	   *p = malloc(size > 0 ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

/* As MemoryContextAlloc, zeroed. */
void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	void	   *p = calloc(1, size > 0 ? size : 1);

	if (p == NULL)
		abort();
	return p;
}

/* The parsers report problems without ereport; reaching one here is a harness failure. */
bool
errstart(int elevel, const char *domain)
{
	return true;
}

/* ereport(ERROR) goes through here (the compiler marks the path cold). */
bool
errstart_cold(int elevel, const char *domain)
{
	return true;
}

/* Only reached for an ERROR the harness did not expect. */
void
errfinish(const char *filename, int lineno, const char *funcname)
{
	fprintf(stderr, "unexpected ereport at %s:%d (%s)\n", filename, lineno, funcname);
	abort();
}

/* ereport's pieces: ignored, errfinish aborts anyway. */
int
errcode(int sqlerrcode)
{
	return 0;
}

/* As errcode. */
int
errmsg(const char *fmt,...)
{
	return 0;
}

/* As errcode. */
int
errdetail(const char *fmt,...)
{
	return 0;
}

/* As errcode. */
int
errhint(const char *fmt,...)
{
	return 0;
}

/* Assert() in a USE_ASSERT_CHECKING build. */
void
ExceptionalCondition(const char *conditionName, const char *errorType,
					 const char *fileName, int lineNumber)
{
	fprintf(stderr, "%s \"%s\" at %s:%d\n", errorType, conditionName, fileName, lineNumber);
	abort();
}
