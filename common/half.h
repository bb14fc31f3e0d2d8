/* common/half.h — IEEE 754 binary16 <-> binary32 conversion on the host,
 * round-to-nearest-even, with subnormals, infinities and NaN. */
#ifndef QV_HALF_H
#define QV_HALF_H

#include <stdint.h>

uint16_t qv_f32_to_f16(float f);
float qv_f16_to_f32(uint16_t h);

#endif
