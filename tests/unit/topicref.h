/* SPDX-License-Identifier: Apache-2.0 */
/* The topic matcher coordinator/topic.c used before its token index (topictrie.c), word for
 * word: the reference test_topictrie and bench/topics check the index against. */
#ifndef MS_TOPICREF_H
#define MS_TOPICREF_H

#include <string.h>

static inline int topicref_match(const char *pat, const char *subj)
{
    for (;;) {
        const char *pd = strchr(pat, '.'), *sd = strchr(subj, '.');
        size_t pl = pd ? (size_t)(pd - pat) : strlen(pat);
        size_t sl = sd ? (size_t)(sd - subj) : strlen(subj);
        if (pl == 1 && pat[0] == '>')
            return 1;
        if (!(pl == 1 && pat[0] == '*') && (pl != sl || strncmp(pat, subj, pl)))
            return 0;
        if (!pd || !sd)
            return !pd && !sd;
        pat = pd + 1;
        subj = sd + 1;
    }
}

#endif
