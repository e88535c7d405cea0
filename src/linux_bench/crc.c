/* CRC-32 (the IEEE polynomial, bit by bit and by table; the two must agree). */
#include "bench.h"

static u32 table[256];
static u8 data[65536];

static void make_table(void)
{
    u32 n, c;
    int k;
    for (n = 0; n < 256; n++) {
        c = n;
        for (k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
        table[n] = c;
    }
}

static u32 crc_table(const u8 *p, int len)
{
    u32 c = 0xffffffff;
    int i;
    for (i = 0; i < len; i++)
        c = table[(c ^ p[i]) & 0xff] ^ (c >> 8);
    return c ^ 0xffffffff;
}

static u32 crc_bits(const u8 *p, int len)
{
    u32 c = 0xffffffff;
    int i, k;
    for (i = 0; i < len; i++) {
        c ^= p[i];
        for (k = 0; k < 8; k++)
            c = c & 1 ? 0xedb88320 ^ (c >> 1) : c >> 1;
    }
    return c ^ 0xffffffff;
}

u64 crc_part(int kib)
{
    u64 state = 7;
    int i, len = kib * 1024;
    if (len > (int)sizeof(data))
        len = sizeof(data);
    for (i = 0; i < len; i++)
        data[i] = (u8)lcg_next(&state);
    make_table();
    if (crc_table(data, len) != crc_bits(data, len))
        return 0xbad;
    return crc_table(data, len);
}
