/* SPDX-License-Identifier: Apache-2.0 */
/* The meshsig version and build commit. */
#include <stdio.h>
#include <string.h>

#include "version.h"

#ifndef MS_VERSION
#error "MS_VERSION comes from project(VERSION) in CMakeLists.txt"
#endif

/* Generated at build time (cmake/buildinfo.cmake). */
extern const char ms_build_commit[];

const char *ms_version(void)
{
    return MS_VERSION;
}

const char *ms_version_commit(void)
{
    return ms_build_commit;
}

void ms_version_print(const char *prog)
{
    const char *base = strrchr(prog, '/');
    base = base ? base + 1 : prog;
    if (*ms_build_commit)
        printf("%s %s (commit %s)\n", base, MS_VERSION, ms_build_commit);
    else
        printf("%s %s\n", base, MS_VERSION);
    printf("meshsig, a clustered WebRTC signaling service. Apache License 2.0.\n");
}

int ms_version_metrics(char *buf, size_t cap)
{
    /* Label values: the version and commit hold only [0-9A-Za-z.+-] (buildinfo.cmake), so
     * nothing needs escaping. */
    return snprintf(buf, cap,
                    "# HELP meshsig_build_info the meshsig release and commit of this binary\n"
                    "# TYPE meshsig_build_info gauge\n"
                    "meshsig_build_info{version=\"%s\",commit=\"%s\"} 1\n",
                    MS_VERSION, *ms_build_commit ? ms_build_commit : "unknown");
}
