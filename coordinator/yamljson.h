/* SPDX-License-Identifier: Apache-2.0 */
/* YAML configuration files read into jansson trees (libyaml's document API). */
#ifndef MS_YAMLJSON_H
#define MS_YAMLJSON_H

#include <stddef.h>
#include <jansson.h>

/* Reads one YAML document into the JSON tree jansson would give for the same
 * data: mappings become objects (keys must be scalars), sequences arrays; plain
 * scalars that read as integers, reals, true/false or null become those, every
 * other scalar (and every quoted one) a string. Anchors and aliases are refused,
 * so a small file cannot expand into a large tree. Nesting is bounded (64).
 * New reference, or NULL with err set ("line N: ..."). */
json_t *ms_yaml_loads(const char *text, size_t len, char *err, size_t errlen);
json_t *ms_yaml_load_file(const char *path, char *err, size_t errlen);

#endif
