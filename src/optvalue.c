/*
 * optvalue.c
 *		Checks of one option's value shared by the option checker (options.c) and the
 *		sources (sources/): the integer rule and the one error for a value that does not fit.
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/numeric.h"

#include "optvalue.h"

/* The stream's option key, or NULL when it is not given. */
JsonbValue *
TribStreamOption(StreamDef *def, const char *key)
{
	return getKeyJsonValueFromContainer(&def->options->root, key, strlen(key), NULL);
}

/* The one error for an option whose value does not fit; sources use it too. */
void
TribBadOption(StreamDef *def, const char *key, const char *expected)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid value for option \"%s\" of stream \"%s\"", key, def->name),
			 errhint("\"%s\" must be %s.", key, expected)));
}

/*
 * Whether v is a JSON number with an integral value that fits an int64: the one integer check
 * for options. jsonb keeps 1e6 as 1000000 but 1000.0 as 1000.0, so a fractional part of zeros
 * is accepted too, or the spelling would decide. numeric_out writes [-]digits[.digits].
 */
bool
TribJsonbInteger(JsonbValue *v, int64 *out)
{
	char	   *text;
	char	   *point;
	char	   *end;

	if (v->type != jbvNumeric)
		return false;
	text = DatumGetCString(DirectFunctionCall1(numeric_out, NumericGetDatum(v->val.numeric)));
	point = strchr(text, '.');
	if (point != NULL)
	{
		if (point[1 + strspn(point + 1, "0")] != '\0')
			return false;
		*point = '\0';
	}
	errno = 0;
	*out = strtoll(text, &end, 10);
	return errno != ERANGE && *end == '\0' && end != text;
}
