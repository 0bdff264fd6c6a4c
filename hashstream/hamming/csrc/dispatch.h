/* CPU feature detection and the instruction set in use (runtime dispatch, no -march). */
#ifndef HS_DISPATCH_H
#define HS_DISPATCH_H

#include <stdint.h>

#include "common.h"

enum { ISA_SCALAR = 0, ISA_POPCNT = 1, ISA_AVX2 = 2, ISA_AVX512 = 3 };

HS_HIDDEN extern const char *const hs_isa_names[ISA_AVX512 + 1];
HS_HIDDEN extern int hs_isa_max;         /* best the machine supports */
HS_HIDDEN extern int hs_isa;             /* in use */
HS_HIDDEN extern int64_t hs_tile_bytes;  /* flat scan tile (database bytes per pass) */

/* Set hs_isa_max and hs_isa to the best instruction set the CPU and OS support. */
HS_HIDDEN void hs_dispatch_init(void);
/* Index of an instruction set's name, -1 if unknown. */
HS_HIDDEN int hs_isa_index(const char *name);

#endif
