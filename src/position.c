/*
 * position.c
 *		A message's source position as text, for any source, and the strict reading of
 *		integer positions stored as text.
 *
 * A source whose positions are integers (Kafka) fills TribMessage.partition and .offset;
 * one whose positions are not (a Redis entry id) fills TribMessage.position. Whatever
 * stores positions goes through the text forms here, so it needs no source's knowledge.
 */
#include "postgres.h"

#include "position.h"

/* The message's position as text (its offset in decimal, or its text position); NULL when none. */
char *
TribMessagePositionText(const TribMessage *msg)
{
	if (msg->position != NULL)
		return pstrdup(msg->position);
	if (msg->offset >= 0)
		return psprintf(INT64_FORMAT, msg->offset);
	return NULL;
}

/*
 * The message's partition as text: its number in decimal; "" when it comes from a source
 * stream without partitions (as tributary.offsets keys such sources); NULL when it has no
 * source stream at all (tributary.ingest).
 */
char *
TribMessagePartitionText(const TribMessage *msg)
{
	if (msg->partition >= 0)
		return psprintf("%d", msg->partition);
	if (msg->topic != NULL)
		return pstrdup("");
	return NULL;
}

/*
 * Read a stored integer position: canonical decimal only (digits, no sign, no space, no
 * leading zero), at most max. Positions are keys compared as text, so "07" is not 7 but a
 * malformed position, and so is anything a source did not write.
 */
bool
TribPositionParseInteger(const char *text, int64 max, int64 *result)
{
	int64		value = 0;
	int			len = strlen(text);

	if (len == 0 || len > TRIB_POSITION_INTEGER_MAX_LEN || (text[0] == '0' && len > 1))
		return false;
	for (int i = 0; i < len; i++)
	{
		int			digit = text[i] - '0';

		if (digit < 0 || digit > 9 ||
			value > max / 10 || (value == max / 10 && digit > max % 10))
			return false;
		value = value * 10 + digit;
	}
	*result = value;
	return true;
}
