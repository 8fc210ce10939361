/* SPDX-License-Identifier: Apache-2.0 */
/* How a protobuf-c descriptor maps to JSON: the Value/Struct/ListValue types and maps.
 *
 * Shared by the JSON codec and the protobuf limit check, so both agree on
 * which messages are plain JSON values and how deep each one nests.
 */
#ifndef MS_WKT_H
#define MS_WKT_H

#include <stdbool.h>
#include <string.h>
#include <protobuf-c/protobuf-c.h>

typedef enum { MS_WKT_NONE, MS_WKT_VALUE, MS_WKT_STRUCT, MS_WKT_LIST } ms_wkt_t;

/* meshsig.v1.* and google.protobuf.* share the shape of Value, Struct, ListValue. */
static inline bool ms_wkt_package(const char *pkg)
{
    return pkg && (strcmp(pkg, "meshsig.v1") == 0 || strcmp(pkg, "google.protobuf") == 0);
}

static inline ms_wkt_t ms_wkt_of(const ProtobufCMessageDescriptor *d)
{
    const char *s = d->short_name;
    ms_wkt_t k;
    if (s[0] == 'V' && strcmp(s, "Value") == 0)
        k = MS_WKT_VALUE;
    else if (s[0] == 'S' && strcmp(s, "Struct") == 0)
        k = MS_WKT_STRUCT;
    else if (s[0] == 'L' && strcmp(s, "ListValue") == 0)
        k = MS_WKT_LIST;
    else
        return MS_WKT_NONE;
    return ms_wkt_package(d->package_name) ? k : MS_WKT_NONE;
}

/* protobuf-c has no map flag: a map is a repeated FooEntry {key = 1; value = 2}. */
static inline bool ms_wkt_is_map(const ProtobufCFieldDescriptor *fd)
{
    if (fd->label != PROTOBUF_C_LABEL_REPEATED || fd->type != PROTOBUF_C_TYPE_MESSAGE)
        return false;
    const ProtobufCMessageDescriptor *e = fd->descriptor;
    size_t n = strlen(e->short_name);
    return e->n_fields == 2 && e->fields[0].id == 1 && e->fields[1].id == 2 &&
           strcmp(e->fields[0].name, "key") == 0 && strcmp(e->fields[1].name, "value") == 0 &&
           n > 5 && strcmp(e->short_name + n - 5, "Entry") == 0;
}

#endif
