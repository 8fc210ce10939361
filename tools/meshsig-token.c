/* SPDX-License-Identifier: Apache-2.0 */
/* meshsig-token: mints a hello JWT (HS256 by default) for tests, load generators and operators. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <jwt.h>

#include "auth.h"
#include "version.h"

#define NS_MAX 64

static void usage(FILE *f)
{
    fprintf(f, "usage: meshsig-token --sub ID --ns NAME [--ns NAME ...] [options]\n"
               "Prints a JWT for meshsig's hello on stdout.\n"
               "  --secret S     HS256 shared secret (or MESHSIG_JWT_SECRET; the environment\n"
               "                 keeps it out of the process list)\n"
               "  --alg A        HS256 (default), RS256 or ES256\n"
               "  --key-file F   private key PEM for RS256/ES256\n"
               "  --sub ID       the peer id: 1..128 chars of [A-Za-z0-9._:@-]\n"
               "  --ns NAME      a namespace the token admits, or '*' for all; repeat for\n"
               "                 several (then the claim is an array)\n"
               "  --ttl SECONDS  lifetime, default 3600\n"
               "  --nbf SECONDS  not valid before now + SECONDS (may be negative)\n"
               "  --version      print the version and exit\n");
}

static int parse_long(const char *s, long *out)
{
    char *end;
    errno = 0;
    *out = strtol(s, &end, 10);
    return errno || end == s || *end ? -1 : 0;
}

static int read_key(const char *path, unsigned char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    if (!f)
        return -1;
    buf = malloc(64 * 1024 + 1);
    if (!buf)
        goto fail;
    *len = fread(buf, 1, 64 * 1024 + 1, f);
    if (ferror(f) || *len == 0 || *len > 64 * 1024)
        goto fail;
    buf[*len] = '\0';
    fclose(f);
    *out = buf;
    return 0;
fail:
    free(buf);
    fclose(f);
    return -1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {{"secret", required_argument, NULL, 's'},
                                             {"alg", required_argument, NULL, 'a'},
                                             {"key-file", required_argument, NULL, 'k'},
                                             {"sub", required_argument, NULL, 'u'},
                                             {"ns", required_argument, NULL, 'n'},
                                             {"ttl", required_argument, NULL, 't'},
                                             {"nbf", required_argument, NULL, 'b'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *secret = getenv("MESHSIG_JWT_SECRET"), *key_file = NULL, *sub = NULL;
    const char *ns[NS_MAX];
    size_t nns = 0, key_len = 0;
    long ttl = 3600, nbf = 0;
    int have_nbf = 0, c, rc = 1;
    ms_auth_alg_t alg = MS_AUTH_HS256;
    unsigned char *key = NULL;
    jwt_t *jwt = NULL;
    json_t *claims = NULL, *ns_claim = NULL;
    char *claims_text = NULL, *out = NULL;
    time_t now = time(NULL);

    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--version")) {
            ms_version_print(argv[0]);
            return 0;
        }
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's':
            secret = optarg;
            break;
        case 'k':
            key_file = optarg;
            break;
        case 'u':
            sub = optarg;
            break;
        case 'a':
            if (ms_auth_alg_parse(optarg, &alg) != MS_OK) {
                fprintf(stderr, "meshsig-token: unknown --alg %s\n", optarg);
                return 2;
            }
            break;
        case 'n':
            if (nns == NS_MAX || !optarg[0]) {
                fprintf(stderr, "meshsig-token: too many or empty --ns\n");
                return 2;
            }
            ns[nns++] = optarg;
            break;
        case 't':
            if (parse_long(optarg, &ttl) || ttl <= 0) {
                fprintf(stderr, "meshsig-token: --ttl wants a positive number of seconds\n");
                return 2;
            }
            break;
        case 'b':
            if (parse_long(optarg, &nbf)) {
                fprintf(stderr, "meshsig-token: --nbf wants a number of seconds\n");
                return 2;
            }
            have_nbf = 1;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || !sub || nns == 0) {
        usage(stderr);
        return 2;
    }
    if (!ms_auth_peer_id_valid(sub)) {
        fprintf(stderr, "meshsig-token: --sub must be 1..128 chars of [A-Za-z0-9._:@-]\n");
        return 2;
    }
    if (alg == MS_AUTH_HS256) {
        if (!secret || !secret[0]) {
            fprintf(stderr, "meshsig-token: no secret (--secret or MESHSIG_JWT_SECRET)\n");
            return 2;
        }
        key_len = strlen(secret);
        key = malloc(key_len + 1);
        if (!key)
            goto fail;
        memcpy(key, secret, key_len + 1);
    } else if (!key_file || read_key(key_file, &key, &key_len)) {
        fprintf(stderr, "meshsig-token: %s needs a readable --key-file\n",
                alg == MS_AUTH_RS256 ? "RS256" : "ES256");
        goto fail;
    }

    if (nns == 1) {
        ns_claim = json_string(ns[0]);
    } else {
        ns_claim = json_array();
        for (size_t i = 0; ns_claim && i < nns; i++)
            if (json_array_append_new(ns_claim, json_string(ns[i])))
                goto fail;
    }
    claims = json_pack("{s:s, s:I, s:I}", "sub", sub, "iat", (json_int_t)now, "exp",
                       (json_int_t)now + ttl);
    if (!ns_claim || !claims || json_object_set(claims, "ns", ns_claim))
        goto fail;
    if (have_nbf && json_object_set_new(claims, "nbf", json_integer((json_int_t)now + nbf)))
        goto fail;
    claims_text = json_dumps(claims, JSON_COMPACT);
    if (!claims_text || jwt_new(&jwt) || jwt_add_grants_json(jwt, claims_text))
        goto fail;
    if (jwt_set_alg(jwt,
                    alg == MS_AUTH_HS256   ? JWT_ALG_HS256
                    : alg == MS_AUTH_RS256 ? JWT_ALG_RS256
                                           : JWT_ALG_ES256,
                    key, (int)key_len)) {
        fprintf(stderr, "meshsig-token: bad key\n");
        goto fail;
    }
    out = jwt_encode_str(jwt);
    if (!out) {
        fprintf(stderr, "meshsig-token: signing failed (is the key a private key of that type?)\n");
        goto fail;
    }
    printf("%s\n", out);
    rc = 0;
fail:
    if (rc && !out)
        fprintf(stderr, "meshsig-token: failed\n");
    free(out);
    jwt_free(jwt);
    free(claims_text);
    json_decref(claims);
    json_decref(ns_claim);
    free(key);
    return rc;
}
