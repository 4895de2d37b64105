/* Helpers shared by node types. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kailash/node.h"

int node_fail(node_error *err, const char *code, const char *fmt, ...)
{
    if (!err)
        return -1;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}
