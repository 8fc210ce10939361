/* SPDX-License-Identifier: Apache-2.0 */
/* A minimal RFC 6455 client: upgrade request, handshake check, masked frames, frame parsing. */
#include "ws.h"

#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char ws_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void ms_lg_ws_key(uint64_t seed, char out[25])
{
    unsigned char raw[16];
    uint64_t a = splitmix64(&seed), b = splitmix64(&seed);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    EVP_EncodeBlock((unsigned char *)out, raw, 16); /* 24 chars and a NUL */
}

int ms_lg_ws_request(char *buf, size_t cap, const char *host, const char *path_and_query,
                     const char *key, const char *protocol)
{
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\n"
                     "Host: %s\r\n"
                     "Upgrade: websocket\r\n"
                     "Connection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n"
                     "%s%s%s"
                     "\r\n",
                     path_and_query, host, key, protocol ? "Sec-WebSocket-Protocol: " : "",
                     protocol ? protocol : "", protocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return -1;
    return n;
}

/* Finds header `name` in the response head; returns a pointer to its trimmed value and sets
 * *vlen, or NULL. */
static const char *find_header(const char *head, size_t len, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = head + len;
    const char *p = memchr(head, '\n', len);
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

int ms_lg_ws_check_response(const char *head, size_t len, const char *key, const char *protocol)
{
    if (len < 12 || memcmp(head, "HTTP/1.1 101", 12) != 0)
        return -1;

    char cat[64];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char want[32];
    int n = snprintf(cat, sizeof cat, "%s%s", key, ws_guid);
    if (n < 0 || (size_t)n >= sizeof cat)
        return -1;
    if (!EVP_Digest(cat, (size_t)n, md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return -1;
    EVP_EncodeBlock((unsigned char *)want, md, 20); /* 28 chars */

    size_t vlen = 0;
    const char *v = find_header(head, len, "Sec-WebSocket-Accept", &vlen);
    if (!v || vlen != 28 || memcmp(v, want, 28) != 0)
        return -1;
    if (protocol) {
        v = find_header(head, len, "Sec-WebSocket-Protocol", &vlen);
        if (!v || vlen != strlen(protocol) || memcmp(v, protocol, vlen) != 0)
            return -1;
    }
    return 0;
}

size_t ms_lg_ws_frame_header(uint8_t *hdr, int opcode, uint64_t len, uint32_t mask_key)
{
    size_t n = 0;
    hdr[n++] = (uint8_t)(0x80 | (opcode & 0x0f));
    if (len < 126) {
        hdr[n++] = (uint8_t)(0x80 | len);
    } else if (len <= 0xffff) {
        hdr[n++] = 0x80 | 126;
        hdr[n++] = (uint8_t)(len >> 8);
        hdr[n++] = (uint8_t)len;
    } else {
        hdr[n++] = 0x80 | 127;
        for (int i = 7; i >= 0; i--)
            hdr[n++] = (uint8_t)(len >> (8 * i));
    }
    memcpy(hdr + n, &mask_key, 4);
    return n + 4;
}

void ms_lg_ws_mask(uint8_t *dst, const uint8_t *src, size_t len, uint32_t mask_key)
{
    uint64_t m8 = ((uint64_t)mask_key << 32) | mask_key;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t v;
        memcpy(&v, src + i, 8);
        v ^= m8;
        memcpy(dst + i, &v, 8);
    }
    const uint8_t *mk = (const uint8_t *)&mask_key;
    for (; i < len; i++)
        dst[i] = src[i] ^ mk[i & 3];
}

int ms_lg_ws_parse(const uint8_t *buf, size_t avail, ms_lg_ws_frame_t *f)
{
    if (avail < 2)
        return 0;
    if (buf[0] & 0x70) /* RSV bits: no extension was negotiated */
        return -1;
    f->fin = (buf[0] & 0x80) != 0;
    f->opcode = buf[0] & 0x0f;
    f->masked = (buf[1] & 0x80) != 0;
    uint64_t len = buf[1] & 0x7f;
    size_t n = 2;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = ((uint64_t)buf[2] << 8) | buf[3];
        n = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = (len << 8) | buf[2 + i];
        n = 10;
    }
    if (f->masked) {
        if (avail < n + 4)
            return 0;
        memcpy(&f->mask_key, buf + n, 4);
        n += 4;
    }
    if (f->opcode >= 0x8 && (len > 125 || !f->fin))
        return -1;
    if (len > (1u << 24)) /* no signaling message is near 16 MiB */
        return -1;
    f->len = len;
    f->hdr_len = n;
    return avail >= n + len ? 1 : 0;
}
