/* Integer matrix products: (A B) C and A (B C) must agree (mod 2^64). */
#include "bench.h"

#define N 48
static u64 a[N][N], b[N][N], c[N][N], ab[N][N], bc[N][N], l[N][N], r[N][N];

static void product(u64 x[N][N], u64 y[N][N], u64 out[N][N], int n)
{
    int i, j, k;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            u64 s = 0;
            for (k = 0; k < n; k++)
                s += x[i][k] * y[k][j];
            out[i][j] = s;
        }
}

u64 matrix_part(int n)
{
    u64 state = 99, h = 0;
    int i, j;
    if (n > N)
        n = N;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            a[i][j] = lcg_next(&state) & 0xffff;
            b[i][j] = lcg_next(&state) & 0xffff;
            c[i][j] = lcg_next(&state) & 0xffff;
        }
    product(a, b, ab, n);
    product(ab, c, l, n);
    product(b, c, bc, n);
    product(a, bc, r, n);
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) {
            if (l[i][j] != r[i][j])
                return 0xbad;
            h = mix(h, l[i][j]);
        }
    return h;
}
