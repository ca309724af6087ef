/*
 * tributary.h
 *		Types shared by every part of tributary: the stream definition loaded from the
 *		catalog, the message handed to the ingest path, and the per-message outcome.
 *
 * Each part has its own header (catalog.h, ingest.h, shmem.h, ...); this one holds only
 * what they all speak.
 */
#ifndef TRIBUTARY_H
#define TRIBUTARY_H

#include "postgres.h"

#include "nodes/pg_list.h"
#include "utils/jsonb.h"

#define TRIBUTARY_SCHEMA "tributary"
#define TRIBUTARY_ADMIN_ROLE "tributary_admin"
#define TRIBUTARY_MAX_NAME_LEN 48
#define TRIBUTARY_MAX_PARALLELISM 32	/* workers per stream */

/*
 * Upper bound of tributary.max_message_size: a message and its varlena header fit one
 * allocation (MaxAllocSize, 1 GB - 1), so it can always be stored as a dead letter.
 */
#define TRIB_MAX_MESSAGE_SIZE_LIMIT (1000 * 1024 * 1024)

/* GUCs (tributary.c) */
extern char *tributary_database;
extern int	tributary_max_message_size;
extern int	tributary_max_workers;
extern int	tributary_max_workers_per_role;
extern int	tributary_max_streams;
extern int	tributary_max_partitions;
extern int	tributary_naptime_ms;

/* An option a source or a format takes; required ones come with an example for the hint. */
typedef struct TribOptionDecl
{
	const char *name;
	const char *required_example;	/* NULL when optional */
	const char *required_detail;	/* why it is required, or NULL for the source's words */
} TribOptionDecl;

/*
 * What identifies a stream across the cluster: ids restart when the extension is
 * re-created and repeat across databases, the catalog table's OID does not.
 */
typedef struct TribStreamKey
{
	Oid			database;
	Oid			catalog;		/* OID of tributary.stream_catalog */
	int32		id;
} TribStreamKey;

/* Message metadata a stream can map to columns (option "metadata"), in this order. */
typedef enum TribMetaField
{
	TRIB_META_TOPIC,
	TRIB_META_PARTITION,
	TRIB_META_OFFSET,
	TRIB_META_KEY,
	TRIB_META_TIMESTAMP,
	TRIB_META_HEADERS,
	TRIB_META_STREAM,			/* a Redis stream key */
	TRIB_META_ID,				/* a Redis entry id */
	TRIB_META_COUNT
} TribMetaField;

#define TRIB_META_BIT(f) (1U << (f))

/* One declared stream, as loaded from tributary.stream_catalog and its options. */
typedef struct StreamDef
{
	int32		id;
	TribStreamKey key;
	char	   *name;
	Oid			target;
	const struct TribSourceRoutine *source; /* sources/source.h */
	const struct TribFormatRoutine *format; /* formats/format.h */
	Oid			owner;			/* role that created the stream */
	bool		enabled;
	int32		config_version;
	Jsonb	   *options;		/* as stored */
	char	   *key_column;		/* NULL when none */
	char	   *event_time_column;	/* NULL when none */

	/* format options, resolved from options */
	List	   *csv_columns;	/* csv: target column names, in field order */
	char		csv_delimiter;
	char	   *column;			/* text/bytes: the one target column */
	char	   *overflow_column;	/* json: jsonb column for unknown keys, or NULL */
	char	   *meta_columns[TRIB_META_COUNT];	/* column per metadata field, or NULL */

	/* batching */
	int			batch_size;
	int			batch_ms;

	int			parallelism;	/* workers that consume the stream together */
} StreamDef;

/* A piece of text of a message; text[len] is a NUL byte. */
typedef struct TribText
{
	const char *text;
	int			len;
} TribText;

/* One message on its way into the target table. */
typedef struct TribMessage
{
	const char *data;
	int			len;
	/* the payload as a varlena whose data is data, when the source has one; or NULL */
	const struct varlena *varlena;
	const char *topic;			/* NULL when the source has none */
	int32		partition;		/* -1 when the source has none */
	int64		offset;			/* -1 when the source has none */
	/* metadata, filled by sources only for streams that map it */
	const char *key;			/* NULL: no key */
	int			key_len;
	int64		timestamp_ms;	/* ms since the Unix epoch; -1 when none */
	const char *headers;		/* the headers as a JSON object text; NULL when none */
	/*
	 * or, from a source whose headers cost to make, how to make them on demand: headers is
	 * then NULL and TribMessageHeaders calls headers_of(origin), for the few readers (a
	 * dead letter, a headers metadata column)
	 */
	char	   *(*headers_of) (const void *origin);
	const void *origin;
	const char *position;		/* text position for sources whose positions are not
								 * integers (Redis ids), or NULL */
	/*
	 * a tombstone: the message has a key and no payload (a null Kafka value, a null element
	 * of tributary.ingest's payloads); a stream whose stages take tombstones (a snapshot)
	 * deletes the key instead of inserting a row (data is then "", len 0)
	 */
	bool		tombstone;
	/*
	 * why the source could not make a payload of what it read (a Redis entry without the
	 * payload field), or NULL: the message is then a dead letter with this error and
	 * detail, and data holds what the source read, for the user to see
	 */
	const char *malformed;
	const char *malformed_detail;
	/*
	 * the message as named text values (name, value, name, value, ...: 2 * npairs), as a
	 * Redis entry's field-value pairs are, or NULL: the json format reads them as one object
	 * of strings without JSON text. data is then NULL and len the pairs' bytes; the JSON
	 * text is made only where it is needed (TribMessageJson: a dead letter's payload, an
	 * overflow column)
	 */
	const TribText *pairs;
	int			npairs;
} TribMessage;

extern const char *const TribMetaFieldNames[TRIB_META_COUNT];

/* A message's headers as a JSON object text, made when the source left them for later. */
static inline const char *
TribMessageHeaders(const TribMessage *msg)
{
	if (msg->headers == NULL && msg->headers_of != NULL)
		return msg->headers_of(msg->origin);
	return msg->headers;
}

typedef enum TribOutcome
{
	TRIB_PENDING = 0,
	TRIB_INSERTED,
	TRIB_DEAD,
	TRIB_TOMBSTONE				/* a tombstone the stream's stages take: no row */
} TribOutcome;

/* Why a message was dead-lettered, for the counters stages see (stage.h). */
typedef enum TribDeadReason
{
	TRIB_DEAD_NONE = 0,
	TRIB_DEAD_TOO_LARGE,		/* over tributary.max_message_size */
	TRIB_DEAD_MALFORMED,		/* the format could not read it: not JSON, bad CSV, bad encoding */
	TRIB_DEAD_BAD_VALUE,		/* a value its column's type does not accept */
	TRIB_DEAD_REJECTED,			/* the table refused the row: constraint, trigger, unique index */
	TRIB_DEAD_REASONS
} TribDeadReason;

/* What happened to one message; reason and the error fields are set for TRIB_DEAD. */
typedef struct TribMessageResult
{
	TribOutcome outcome;
	TribDeadReason reason;
	bool		at_insert;		/* TRIB_DEAD: a value or the insert failed (not the parse) */
	int			sqlerrcode;
	char	   *error;
	char	   *detail;
} TribMessageResult;


#endif							/* TRIBUTARY_H */
