/*
 * kafka_policy.h
 *		Which librdkafka properties a role may set, and which values non-admins may see.
 */
#ifndef TRIBUTARY_KAFKA_POLICY_H
#define TRIBUTARY_KAFKA_POLICY_H

#include "postgres.h"

#include "utils/jsonb.h"

#include "tributary.h"

/* What a librdkafka property can do, and so who may set it and who may see its value. */
typedef enum TribKafkaPropertyClass
{
	TRIB_PROP_ALLOWED,			/* any role; shown in clear */
	TRIB_PROP_SECRET,			/* any role; masked */
	TRIB_PROP_FILE,				/* reads server files: pg_read_server_files; masked */
	TRIB_PROP_ADMIN,			/* logging into the server log: tributary_admin; masked */
	TRIB_PROP_CREDENTIALS,		/* uses the server's own Kerberos identity: superuser; masked */
	TRIB_PROP_CODE,				/* runs commands or loads code: superuser; masked */
	TRIB_PROP_UNLISTED,			/* not in the table: superuser; masked */
	TRIB_PROP_RESERVED			/* set by tributary itself: nobody */
} TribKafkaPropertyClass;

/* The class of property name given value (NULL when the value is not a string). */
extern TribKafkaPropertyClass TribKafkaPropertyClassOf(const char *name, const char *value);

/* Whether tributary sets the property itself (exactly-once depends on it). */
extern bool TribKafkaPropertyReserved(const char *name);

/* Whether roleid may set property name to value. */
extern bool TribKafkaPropertyPermitted(const char *name, const char *value, Oid roleid);

/*
 * Raise ERRCODE_INSUFFICIENT_PRIVILEGE unless roleid may set every librdkafka property of a
 * kafka stream's options. Runs where a role stores options (create_stream, alter_stream),
 * before librdkafka sees any of them.
 */
extern void TribKafkaCheckPropertyRights(StreamDef *def, Oid roleid);

/* The "librdkafka" option with every value not shown in clear masked: its secret_options entry. */
extern JsonbValue *TribKafkaRedactLibrdkafka(JsonbValue *value);

#endif							/* TRIBUTARY_KAFKA_POLICY_H */
