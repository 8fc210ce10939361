/* SPDX-License-Identifier: Apache-2.0 */
/* The reference ms_utf8_valid (common/jsonscan.c) is checked against, in test_jsonscan and in
 * fuzz_jsonscan: RFC 3629 decoded one code point at a time, as plainly as it can be written. */
#ifndef MS_TESTS_UTF8REF_H
#define MS_TESTS_UTF8REF_H

#include <stddef.h>

/* Reference for ms_utf8_valid: RFC 3629 by code point, one sequence at a time. */
static inline int ms_test_utf8_ref(const unsigned char *u, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned c = u[i], cp, len;
        if (c < 0x80) {
            i++;
            continue;
        }
        if ((c & 0xE0) == 0xC0)
            len = 2, cp = c & 0x1F;
        else if ((c & 0xF0) == 0xE0)
            len = 3, cp = c & 0x0F;
        else if ((c & 0xF8) == 0xF0)
            len = 4, cp = c & 0x07;
        else
            return 0;
        if (i + len > n)
            return 0;
        for (unsigned k = 1; k < len; k++) {
            if ((u[i + k] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (u[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        i += len;
    }
    return 1;
}

#endif
