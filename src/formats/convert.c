/*
 * convert.c
 *		Direct conversions of the commonest value shapes (see convert.h).
 *
 * Each function accepts a strict subset of what the type's input function accepts and
 * returns exactly its result for that subset; everything else is declined, including
 * values the input function would refuse, so errors keep their usual wording.
 *
 * double precision has a file of its own (float8.c): correctly rounded decimals.
 *
 * The timestamp shape is the one JSON producers write: "YYYY-MM-DD", 'T' or a space,
 * "HH:MM:SS", optionally '.' and 1 to 6 digits, then for timestamptz 'Z' or an offset
 * (+HH, +HHMM, +HH:MM). The date is checked as ValidateDate does (month, days of the
 * month, leap years) and the result computed as tm2timestamp does. Not covered, and so
 * left to timestamptz_in: no zone (the session's TimeZone applies), leap seconds, 24:00,
 * years outside 1..9999, more than 6 fractional digits (they round), names of zones.
 */
#include "postgres.h"

#include "utils/datetime.h"

#include "formats/convert.h"

/* n decimal digits at s (all must be digits), or -1 */
static inline int
TribDigits(const char *s, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* An optional sign and at most max_digits digits, nothing else: cannot overflow. */
static inline bool
TribConvertInteger(const char *s, int len, int max_digits, int64 *result)
{
	bool		neg = false;
	int64		v = 0;

	if (len > 0 && (*s == '-' || *s == '+'))
	{
		neg = *s == '-';
		s++;
		len--;
	}
	if (len < 1 || len > max_digits)
		return false;
	for (int i = 0; i < len; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*result = neg ? -v : v;
	return true;
}

/* bigint: int8in's result for [+-]digits, at most 18 of them */
bool
TribConvertInt8(const char *s, int len, int64 *result)
{
	return TribConvertInteger(s, len, 18, result);
}

/* integer: int4in's result for [+-]digits, at most 9 of them */
bool
TribConvertInt4(const char *s, int len, int32 *result)
{
	int64		v;

	if (!TribConvertInteger(s, len, 9, &v))
		return false;
	*result = (int32) v;
	return true;
}

/* The zone suffix at s (len bytes, all of the rest): its offset in seconds east of UTC. */
static bool
TribConvertZone(const char *s, int len, int *east)
{
	int			hours;
	int			minutes = 0;

	if (len == 1 && *s == 'Z')
	{
		*east = 0;
		return true;
	}
	if (len < 3 || (*s != '+' && *s != '-'))
		return false;
	hours = TribDigits(s + 1, 2);
	if (len == 5)
		minutes = TribDigits(s + 3, 2);
	else if (len == 6 && s[3] == ':')
		minutes = TribDigits(s + 4, 2);
	else if (len != 3)
		return false;
	/* DecodeTimezone's limits: beyond them timestamptz_in raises its own error */
	if (hours < 0 || hours > MAX_TZDISP_HOUR || minutes < 0 || minutes >= MINS_PER_HOUR)
		return false;
	*east = (hours * MINS_PER_HOUR + minutes) * SECS_PER_MINUTE;
	if (*s == '-')
		*east = -*east;
	return true;
}

/*
 * timestamp (with_zone false) or timestamptz (true) with typmod -1: the input function's
 * result for the ISO 8601 shape in the file header. timestamp ignores a zone, as
 * timestamp_in does; timestamptz requires one.
 */
bool
TribConvertTimestamp(const char *s, int len, bool with_zone, Timestamp *result)
{
	int			year,
				month,
				day,
				hour,
				minute,
				second;
	int64		fsec = 0;
	int			pos = 19;
	int			east = 0;
	int			mdays;

	if (len < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
		s[13] != ':' || s[16] != ':')
		return false;
	year = TribDigits(s, 4);
	month = TribDigits(s + 5, 2);
	day = TribDigits(s + 8, 2);
	hour = TribDigits(s + 11, 2);
	minute = TribDigits(s + 14, 2);
	second = TribDigits(s + 17, 2);
	if (year < 1 || month < 1 || month > MONTHS_PER_YEAR || day < 1 ||
		hour < 0 || hour >= HOURS_PER_DAY || minute < 0 || minute >= MINS_PER_HOUR ||
		second < 0 || second >= SECS_PER_MINUTE)
		return false;
	mdays = day_tab[isleap(year)][month - 1];
	if (day > mdays)
		return false;
	if (pos < len && s[pos] == '.')
	{
		/* the fraction's digits scaled to microseconds: 10^(6 - digits) */
		static const int scale[] = {0, 100000, 10000, 1000, 100, 10, 1};
		int			digits = 0;

		for (pos++; pos < len && s[pos] >= '0' && s[pos] <= '9'; pos++, digits++)
		{
			if (digits == 6)
				return false;	/* the input function rounds past microseconds */
			fsec = fsec * 10 + (s[pos] - '0');
		}
		if (digits == 0)
			return false;
		fsec *= scale[digits];
	}
	if (pos < len)
	{
		if (!TribConvertZone(s + pos, len - pos, &east))
			return false;
	}
	else if (with_zone)
		return false;			/* the session's TimeZone would apply */

	*result = (Timestamp) (date2j(year, month, day) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY +
		(((hour * MINS_PER_HOUR) + minute) * SECS_PER_MINUTE + second) * USECS_PER_SEC + fsec;
	if (with_zone)
		*result -= (Timestamp) east * USECS_PER_SEC;
	return true;
}
