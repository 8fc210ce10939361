/* SPDX-License-Identifier: Apache-2.0 */
/* placeholder until the codec lands */
#include "codec.h"
void ms_codec_free(ProtobufCMessage *msg) { if (msg) protobuf_c_message_free_unpacked(msg, NULL); }
