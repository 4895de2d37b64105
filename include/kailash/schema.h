/* schema: the JSON Schema subset of WORKFLOWS.md (gateway.inputs, DataValidationNode), compiled at
 * load. Unknown keywords are refused at compile time, never ignored. A compiled schema is immutable
 * and schema_validate is thread-safe. */
#ifndef KAILASH_SCHEMA_H
#define KAILASH_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

typedef struct schema schema;

/* Compiles def (borrowed). Returns 0, or -1 with err such as
 * "/properties/age: unknown keyword 'minimun'" or "/pattern: invalid regular expression". */
int schema_compile(json_t *def, schema **out, char *err, size_t errlen);

/* Validates instance. Appends one {"path": JSON Pointer, "message": "..."} object per violation to
 * violations (an array, may be NULL to only count). Returns the number of violations (0 = valid). */
int schema_validate(const schema *s, json_t *instance, json_t *violations);

/* schema_validate describing only the first max violations in violations (a huge invalid array
 * costs no more than max objects); the return value still counts them all. */
int schema_validate_max(const schema *s, json_t *instance, json_t *violations, size_t max);

void schema_free(schema *s);

#endif
