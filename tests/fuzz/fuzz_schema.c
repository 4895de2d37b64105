/* fuzz_schema: the JSON-schema subset (src/workflow/schema.c).
 *
 * The input, parsed as JSON, is used twice: as a schema to compile (and, when it compiles, to
 * validate a few fixed instances against), and as an instance validated against a fixed schema that
 * uses every keyword the subset has. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "kailash/schema.h"

static const char fz_fixed_schema[] =
    "{\"type\":\"object\",\"required\":[\"id\",\"name\"],\"additionalProperties\":false,"
    "\"properties\":{"
    "\"id\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1000000},"
    "\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":64,\"pattern\":\"^[A-Za-z][a-z ]*$\"},"
    "\"price\":{\"type\":\"number\",\"exclusiveMinimum\":0},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"enum\":[\"a\",\"b\",\"c\"]},"
    "\"minItems\":0,\"maxItems\":5},"
    "\"email\":{\"type\":\"string\",\"format\":\"email\"},\"uuid\":{\"format\":\"uuid\"},"
    "\"at\":{\"type\":\"string\",\"format\":\"date-time\"},\"v\":{\"const\":[1,{\"a\":null}]},"
    "\"kind\":{\"enum\":[\"x\",1,null,{\"k\":[1]}]},"
    "\"flag\":{\"type\":[\"boolean\",\"null\"]},"
    "\"nested\":{\"type\":\"object\",\"properties\":{\"deep\":{\"type\":\"array\",\"items\":{\"type\":\"object\"}}}}"
    "}}";

static const char *const fz_instances[] = {
    "null", "true",
    "0",    "-1.5",
    "\"\"", "\"abc\"",
    "[]",   "[1,\"a\",null,[],{}]",
    "{}",   "{\"id\":5,\"name\":\"Ada\",\"tags\":[\"a\",\"a\"],\"x\":{\"y\":[1,2,3]}}",
};

static schema *fz_fixed;
static json_t *fz_inst[sizeof fz_instances / sizeof fz_instances[0]];

static void fz_init(void)
{
    char err[256];
    json_t *def = json_loads(fz_fixed_schema, 0, NULL);
    if (!def || schema_compile(def, &fz_fixed, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_schema: the fixed schema does not compile: %s\n", def ? err : "bad JSON");
        abort(); /* the target would test nothing */
    }
    json_decref(def);
    for (size_t i = 0; i < sizeof fz_inst / sizeof fz_inst[0]; i++)
        fz_inst[i] = json_loads(fz_instances[i], JSON_DECODE_ANY, NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!fz_fixed)
        fz_init();
    json_t *v = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!v)
        return 0;
    json_t *violations = json_array();
    schema_validate(fz_fixed, v, violations);
    json_decref(violations);
    schema *s = NULL;
    char err[256];
    if (schema_compile(v, &s, err, sizeof err) == 0) {
        for (size_t i = 0; i < sizeof fz_inst / sizeof fz_inst[0]; i++) {
            violations = json_array();
            schema_validate(s, fz_inst[i], violations);
            json_decref(violations);
        }
        schema_validate(s, v, NULL); /* the schema as its own instance; count only */
        schema_free(s);
    }
    json_decref(v);
    return 0;
}
