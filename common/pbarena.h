/* SPDX-License-Identifier: Apache-2.0 */
/* A bump allocator for protobuf-c: everything one unpacked message allocates, freed at once.
 *
 * protobuf_c_message_unpack mallocs every submessage, string and bytes field
 * and free_unpacked frees them one by one: for a batch of a hundred direct
 * signals that is several hundred malloc/free pairs per NATS message. Unpacked
 * into an arena, the message is freed by ms_pbarena_reset. Blocks are taken
 * from one buffer; what does not fit is malloc'd and freed at the reset, and
 * the buffer grows (up to a cap) so that the next message of that size fits.
 *
 * Thread safety: none; one arena per thread.
 */
#ifndef MS_PBARENA_H
#define MS_PBARENA_H

#include <stddef.h>
#include <protobuf-c/protobuf-c.h>

typedef struct ms_pbarena {
    ProtobufCAllocator alloc; /* pass &arena->alloc to protobuf-c */
    unsigned char *buf;
    size_t cap, used;
    size_t spilled; /* bytes malloc'd beyond buf since the last reset */
    void *spill;    /* those blocks, linked through their first word */
    size_t max_cap; /* buf does not grow beyond this */
    int in_use;     /* set by the user while a message lives in it */
} ms_pbarena_t;

/* An empty arena whose buffer may grow to max_cap bytes (allocated lazily). */
void ms_pbarena_init(ms_pbarena_t *a, size_t max_cap);
/* Frees every block handed out since the last reset (the message is gone). */
void ms_pbarena_reset(ms_pbarena_t *a);
/* Frees everything. */
void ms_pbarena_cleanup(ms_pbarena_t *a);

#endif
