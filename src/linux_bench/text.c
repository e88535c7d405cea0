/* Text: formats numbers as decimal lines, then counts words and characters back. */
#include "bench.h"

static char text[65536];

static int format(char *out, u64 v)
{
    char digits[24];
    int n = 0, i;
    do {
        digits[n++] = '0' + v % 10;
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

u64 text_part(int lines)
{
    u64 state = 3, words = 0, digits = 0, h = 0;
    int len = 0, i, in_word = 0;
    for (i = 0; i < lines && len < (int)sizeof(text) - 64; i++) {
        len += format(text + len, lcg_next(&state) % 100000);
        text[len++] = ' ';
        len += format(text + len, (u64)i);
        text[len++] = '\n';
    }
    for (i = 0; i < len; i++) {
        char ch = text[i];
        if (ch >= '0' && ch <= '9') {
            digits++;
            if (!in_word)
                words++;
            in_word = 1;
        } else {
            in_word = 0;
        }
        h = mix(h, (u64)ch);
    }
    return mix(mix(h, words), digits);
}
