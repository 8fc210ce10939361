/* SPDX-License-Identifier: Apache-2.0 */
/* YAML configuration files read into jansson trees, so that one checker serves YAML and JSON.
 *
 * libyaml's event parser drives an explicit stack (no recursion on input
 * depth). Aliases are refused rather than expanded: configuration files have no
 * need for them, and expansion is how a few bytes of YAML become gigabytes.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "yamljson.h"

#define MS_YAML_MAX_DEPTH 64

typedef struct {
    json_t *node;
    char *key; /* mapping: the key waiting for its value */
} frame_t;

/* A plain scalar as YAML's core schema reads it. */
static json_t *plain_scalar(const char *s, size_t len)
{
    if (len == 0 || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
        !strcmp(s, "NULL"))
        return json_null();
    if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
        return json_true();
    if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
        return json_false();
    char *end;
    errno = 0;
    long long i = strtoll(s, &end, 10);
    if (*end == '\0' && errno == 0 && end != s)
        return json_integer(i);
    errno = 0;
    double d = strtod(s, &end);
    if (*end == '\0' && errno == 0 && end != s && isfinite(d) &&
        strspn(s, "+-0123456789.eE") == len)
        return json_real(d);
    return json_stringn(s, len);
}

/* Adds v (stolen) to the container on top of the stack, or makes it the root. */
static int attach(frame_t *st, int depth, json_t **root, json_t *v, char *err, size_t errlen,
                  size_t line)
{
    if (!v) {
        snprintf(err, errlen, "line %zu: out of memory", line);
        return -1;
    }
    if (depth == 0) {
        *root = v;
        return 0;
    }
    frame_t *f = &st[depth - 1];
    if (json_is_array(f->node))
        return json_array_append_new(f->node, v) ? -1 : 0;
    if (!f->key) { /* v is a key */
        if (!json_is_string(v)) {
            json_decref(v);
            snprintf(err, errlen, "line %zu: mapping keys must be scalars", line);
            return -1;
        }
        f->key = strdup(json_string_value(v));
        json_decref(v);
        return f->key ? 0 : -1;
    }
    if (json_object_get(f->node, f->key)) {
        snprintf(err, errlen, "line %zu: duplicate key '%s'", line, f->key);
        json_decref(v);
        return -1;
    }
    int rc = json_object_set_new(f->node, f->key, v);
    free(f->key);
    f->key = NULL;
    return rc ? -1 : 0;
}

json_t *ms_yaml_loads(const char *text, size_t len, char *err, size_t errlen)
{
    yaml_parser_t parser;
    frame_t st[MS_YAML_MAX_DEPTH];
    int depth = 0, done = 0, docs = 0;
    json_t *root = NULL;
    if (!yaml_parser_initialize(&parser)) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    while (!done) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&parser, &ev)) {
            snprintf(err, errlen, "line %zu: %s", parser.problem_mark.line + 1,
                     parser.problem ? parser.problem : "syntax error");
            goto fail;
        }
        size_t line = ev.start_mark.line + 1;
        int rc = 0;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            done = 1;
            break;
        case YAML_DOCUMENT_START_EVENT:
            if (++docs > 1) {
                snprintf(err, errlen, "line %zu: one document per file", line);
                rc = -1;
            }
            break;
        case YAML_ALIAS_EVENT:
            snprintf(err, errlen, "line %zu: aliases are not supported", line);
            rc = -1;
            break;
        case YAML_SCALAR_EVENT: {
            const char *v = (const char *)ev.data.scalar.value;
            size_t n = ev.data.scalar.length;
            json_t *j = ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE && !ev.data.scalar.tag
                            ? plain_scalar(v, n)
                            : json_stringn(v, n);
            rc = attach(st, depth, &root, j, err, errlen, line);
            break;
        }
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            if (depth == MS_YAML_MAX_DEPTH) {
                snprintf(err, errlen, "line %zu: nested deeper than %d", line, MS_YAML_MAX_DEPTH);
                rc = -1;
                break;
            }
            st[depth].node = ev.type == YAML_SEQUENCE_START_EVENT ? json_array() : json_object();
            st[depth].key = NULL;
            if (!st[depth].node) {
                snprintf(err, errlen, "out of memory");
                rc = -1;
                break;
            }
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            depth--;
            json_t *node = st[depth].node;
            free(st[depth].key);
            rc = attach(st, depth, &root, node, err, errlen, line);
            break;
        }
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc)
            goto fail;
    }
    yaml_parser_delete(&parser);
    if (!root)
        root = json_null();
    return root;
fail:
    while (depth > 0) {
        depth--;
        json_decref(st[depth].node);
        free(st[depth].key);
    }
    json_decref(root);
    yaml_parser_delete(&parser);
    return NULL;
}

json_t *ms_yaml_load_file(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    json_t *j = NULL;
    if (!f) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    /* Configuration files are small; a cap keeps a wrong path (a log, a
     * device) from being read whole. */
    enum { MAX_FILE = 1 << 20 };
    buf = malloc(MAX_FILE + 1);
    if (!buf) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t n = fread(buf, 1, MAX_FILE + 1, f);
    if (ferror(f) || n > MAX_FILE) {
        snprintf(err, errlen, "%s: %s", path, ferror(f) ? "read error" : "larger than 1 MiB");
        goto out;
    }
    j = ms_yaml_loads(buf, n, err, errlen);
out:
    free(buf);
    fclose(f);
    return j;
}
