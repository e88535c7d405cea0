/* Sorting: a heap sort and a merge sort of the same pseudo-random array must agree. */
#include "bench.h"

#define MAX 8192
static u64 a[MAX], b[MAX], tmp[MAX];

static void sift(u64 *v, int start, int end)
{
    int root = start;
    while (2 * root + 1 <= end) {
        int child = 2 * root + 1;
        if (child + 1 <= end && v[child] < v[child + 1])
            child++;
        if (v[root] < v[child]) {
            u64 t = v[root];
            v[root] = v[child];
            v[child] = t;
            root = child;
        } else {
            return;
        }
    }
}

static void heap_sort(u64 *v, int n)
{
    int start, end;
    for (start = (n - 2) / 2; start >= 0; start--)
        sift(v, start, n - 1);
    for (end = n - 1; end > 0; end--) {
        u64 t = v[0];
        v[0] = v[end];
        v[end] = t;
        sift(v, 0, end - 1);
    }
}

static void merge_sort(u64 *v, int lo, int hi)
{
    int mid, i, j, k;
    if (hi - lo < 2)
        return;
    mid = (lo + hi) / 2;
    merge_sort(v, lo, mid);
    merge_sort(v, mid, hi);
    i = lo;
    j = mid;
    k = lo;
    while (i < mid && j < hi)
        tmp[k++] = v[i] <= v[j] ? v[i++] : v[j++];
    while (i < mid)
        tmp[k++] = v[i++];
    while (j < hi)
        tmp[k++] = v[j++];
    for (k = lo; k < hi; k++)
        v[k] = tmp[k];
}

u64 sort_part(int n)
{
    u64 state = 42, h = 0;
    int i;
    if (n > MAX)
        n = MAX;
    for (i = 0; i < n; i++)
        a[i] = b[i] = lcg_next(&state) % 1000003;
    heap_sort(a, n);
    merge_sort(b, 0, n);
    for (i = 0; i < n; i++) {
        if (a[i] != b[i])
            return 0xbad;
        h = mix(h, a[i]);
    }
    return h;
}
