/*
 * catalog_columns.h
 *		The columns tributary reads from tributary.stream_catalog, by name. Each query's
 *		select list and its attribute numbers (Anum_*, as PostgreSQL's catalog headers
 *		have) are generated from one list, so they cannot drift apart: adding, removing or
 *		moving a column is one line, and every reader follows.
 */
#ifndef TRIBUTARY_CATALOG_COLUMNS_H
#define TRIBUTARY_CATALOG_COLUMNS_H

/*
 * A stream's definition (catalog.c, TribStreamFromSpi), after "id":
 * X(attribute, SQL expression).
 */
#define TRIB_STREAM_COLUMN_LIST(X) \
	X(name, "name") \
	X(target, "target::pg_catalog.oid") \
	X(source, "source") \
	X(options, "options") \
	X(key_column, "key_column") \
	X(event_time_column, "event_time_column") \
	X(enabled, "enabled") \
	X(config_version, "config_version") \
	X(owner, "owner::pg_catalog.oid")

#define TRIB_STREAM_ANUM(attr, sql) Anum_trib_stream_##attr,
#define TRIB_STREAM_SQL(attr, sql) ", " sql

typedef enum TribStreamAnum
{
	Anum_trib_stream_id = 1,
	TRIB_STREAM_COLUMN_LIST(TRIB_STREAM_ANUM)
	Anum_trib_stream_end
} TribStreamAnum;

#define Natts_trib_stream (Anum_trib_stream_end - 1)
#define TRIB_STREAM_COLUMNS "id" TRIB_STREAM_COLUMN_LIST(TRIB_STREAM_SQL)

/*
 * What the launcher reads of every stream (launcher.c, TribReadWantedStreams), after
 * "id": X(attribute, SQL expression with the 0.3.0 catalog, SQL expression before
 * ALTER EXTENSION UPDATE to 0.3.0, when there are no columns "failed" and "waiting").
 */
#define TRIB_LAUNCHER_COLUMN_LIST(X) \
	X(config_version, "config_version", "config_version") \
	X(name, "name", "name") \
	X(started, "enabled AND NOT failed", "enabled") \
	X(parallelism, \
	  "options OPERATOR(pg_catalog.->>) 'parallelism'", \
	  "options OPERATOR(pg_catalog.->>) 'parallelism'") \
	X(owner, "owner::pg_catalog.oid", "owner::pg_catalog.oid") \
	X(waiting, "waiting", "true") \
	X(source, "source", "source")

#define TRIB_LAUNCHER_ANUM(attr, sql, sql_0_2) Anum_trib_launcher_##attr,
#define TRIB_LAUNCHER_SQL(attr, sql, sql_0_2) ", " sql
#define TRIB_LAUNCHER_SQL_0_2(attr, sql, sql_0_2) ", " sql_0_2

typedef enum TribLauncherAnum
{
	Anum_trib_launcher_id = 1,
	TRIB_LAUNCHER_COLUMN_LIST(TRIB_LAUNCHER_ANUM)
	Anum_trib_launcher_end
} TribLauncherAnum;

#define Natts_trib_launcher (Anum_trib_launcher_end - 1)
#define TRIB_LAUNCHER_COLUMNS "id" TRIB_LAUNCHER_COLUMN_LIST(TRIB_LAUNCHER_SQL)
#define TRIB_LAUNCHER_COLUMNS_0_2 "id" TRIB_LAUNCHER_COLUMN_LIST(TRIB_LAUNCHER_SQL_0_2)

#endif							/* TRIBUTARY_CATALOG_COLUMNS_H */
