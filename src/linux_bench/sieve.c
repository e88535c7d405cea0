/* Primes below a limit by the sieve of Eratosthenes: their count and sum. */
#include "bench.h"

#define LIMIT 200000
static u8 composite[LIMIT];

u64 sieve_part(int limit)
{
    u64 count = 0, sum = 0;
    int i, j;
    if (limit > LIMIT)
        limit = LIMIT;
    for (i = 0; i < limit; i++)
        composite[i] = 0;
    for (i = 2; i < limit; i++) {
        if (composite[i])
            continue;
        count++;
        sum += i;
        for (j = i + i; j < limit; j += i)
            composite[j] = 1;
    }
    return mix(count, sum);
}
