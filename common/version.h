/* SPDX-License-Identifier: Apache-2.0 */
/* The one meshsig version (CMake project(VERSION)) and the commit a binary was built from.
 *
 * Every binary prints it for --version, /metrics exports it as meshsig_build_info and the
 * heartbeats carry it, so an operator sees what runs where. The bus protocol has its own
 * version (busver.h): binaries of different releases interoperate while its major agrees.
 */
#ifndef MS_VERSION_H
#define MS_VERSION_H

#include <stddef.h>

/* "0.1.0": the release, from project(VERSION) in CMakeLists.txt. */
const char *ms_version(void);

/* The commit built from ("1a2b3c4d5e6f", with "-dirty" for uncommitted edits), or "" when
 * built outside a git checkout without -DMESHSIG_COMMIT. */
const char *ms_version_commit(void);

/* Prints "PROG VERSION (commit C)" and the license line to stdout, for --version. */
void ms_version_print(const char *prog);

/* Writes the meshsig_build_info gauge (HELP, TYPE and the sample) to buf as Prometheus text;
 * returns the length it needs (as snprintf). */
int ms_version_metrics(char *buf, size_t cap);

#endif
