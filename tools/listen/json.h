/*
 * tools/listen/json.h: the small, strict JSON reader and writer of tributary-listen.
 *
 * The reader checks one whole text against RFC 8259 (UTF-8, no trailing commas, no
 * comments, nesting at most JSON_MAX_DEPTH deep) and hands back the raw text of the
 * top-level object's members the caller asked for, so a record is passed on exactly as the
 * server wrote it. The writer is a growable buffer with JSON string escaping.
 */
#ifndef TRIB_LISTEN_JSON_H
#define TRIB_LISTEN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_MAX_DEPTH 256

typedef enum JsonType
{
	JSON_ABSENT = 0,
	JSON_STRING,
	JSON_NUMBER,
	JSON_TRUE,
	JSON_FALSE,
	JSON_NULL,
	JSON_OBJECT,
	JSON_ARRAY
} JsonType;

/* One member of the top-level object the caller wants: name in, the rest out. */
typedef struct JsonMember
{
	const char *name;
	JsonType type;
	const char *start; /* the value's raw text (for a string: with its quotes) */
	size_t len;
} JsonMember;

/*
 * Check that text[0..len) is one JSON object and fill in the wanted members (type
 * JSON_ABSENT when missing). Returns NULL, or a static message saying what is wrong. A
 * wanted member that appears twice is an error.
 */
extern const char *JsonScanObject(const char *text, size_t len, JsonMember *members, int nmembers);

/* The member's string value, decoded, in a new malloc'ed string; NULL if not a string. */
extern char *JsonMemberString(const JsonMember *m);

/* The member's value as an integer; false if not an integer in int64 range. */
extern bool JsonMemberInt64(const JsonMember *m, int64_t *out);

/* True when the member is present and is JSON true. */
extern bool JsonMemberIsTrue(const JsonMember *m);

/* A growable output buffer (aborts the program when memory runs out). */
typedef struct StrBuf
{
	char *data;
	size_t len;
	size_t cap;
} StrBuf;

extern void StrBufReset(StrBuf *b);
extern void StrBufFree(StrBuf *b);
extern void StrBufAppend(StrBuf *b, const char *s, size_t n);
extern void StrBufAppendStr(StrBuf *b, const char *s);
extern void StrBufAppendInt64(StrBuf *b, int64_t v);
/*
 * Valid JSON text as it is, on one line: a newline or carriage return in valid JSON can
 * only be whitespace between tokens, and becomes a space.
 */
extern void StrBufAppendJsonText(StrBuf *b, const char *s, size_t n);
/* s (UTF-8, NUL-terminated) as a JSON string, with its quotes. */
extern void StrBufAppendJsonString(StrBuf *b, const char *s);

/* malloc, calloc, realloc, strdup, strndup that abort the program when memory runs out. */
extern void *xmalloc(size_t n);
extern void *xcalloc(size_t n, size_t size);
extern void *xrealloc(void *p, size_t n);
extern char *xstrdup(const char *s);
extern char *xstrndup(const char *s, size_t n);

#endif
