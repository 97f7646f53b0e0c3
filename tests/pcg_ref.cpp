// pcg_ref.cpp: reference outputs of pcg32 from Debian's libpcg-cpp (pcg_random.hpp), for tests/test_rng.
// usage: pcg_ref SEED STREAM N  — prints N outputs, one per line; then bounded(1000) x 4 (pcg's own
// threshold rejection, which tq_rng_bounded mirrors).
#include <cstdio>
#include <cstdlib>
#include <pcg_random.hpp>

int main(int argc, char **argv)
{
    if (argc != 4) return 2;
    unsigned long long seed = std::strtoull(argv[1], nullptr, 0), stream = std::strtoull(argv[2], nullptr, 0);
    long n = std::strtol(argv[3], nullptr, 10);
    pcg32 rng(seed, stream);
    for (long i = 0; i < n; i++) std::printf("%u\n", (unsigned)rng());
    for (int i = 0; i < 4; i++) std::printf("%u\n", (unsigned)rng(1000u));
    return 0;
}
