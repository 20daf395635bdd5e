/* A program that keeps known values in vector registers xmm1-xmm15 and checks them without
 * pause (tests/test_attach_safety.py): an injector that borrows this thread and does not give
 * its vector registers back exactly is caught. SSE2 only, which every x86-64 CPU has.
 *
 * Prints "ready", then "beat N bad M" after each round of checks (M: failed checks so far).
 * The loop is one asm block, so the thread is almost always stopped inside it, in this
 * executable's own code (the injector borrows a running thread only there).
 */
#include <stdint.h>
#include <stdio.h>

static uint8_t pattern[16][16] __attribute__((aligned(16)));

#define LOAD(n) "movdqa " #n "*16(%[p]), %%xmm" #n "\n\t"
#define CHECK(n)                                                                              \
    "movdqa %%xmm" #n ", %%xmm0\n\t"                                                          \
    "pcmpeqb " #n "*16(%[p]), %%xmm0\n\t"                                                     \
    "pmovmskb %%xmm0, %%eax\n\t"                                                              \
    "cmp $0xffff, %%eax\n\t"                                                                  \
    "je 2f\n\t"                                                                               \
    "inc %[bad]\n\t"                                                                          \
    "2:\n\t"

int main(void) {
    for (int r = 0; r < 16; r++)
        for (int b = 0; b < 16; b++)
            pattern[r][b] = (uint8_t)(r * 17 + b * 3 + 1);
    unsigned long bad = 0;
    puts("ready");
    fflush(stdout);
    for (unsigned long beat = 1;; beat++) {
        unsigned long rounds = 20000000;
        __asm__ volatile(LOAD(1) LOAD(2) LOAD(3) LOAD(4) LOAD(5) LOAD(6) LOAD(7) LOAD(8) LOAD(9)
                             LOAD(10) LOAD(11) LOAD(12) LOAD(13) LOAD(14) LOAD(15)
                         "1:\n\t" CHECK(1) CHECK(2) CHECK(3) CHECK(4) CHECK(5) CHECK(6) CHECK(7)
                             CHECK(8) CHECK(9) CHECK(10) CHECK(11) CHECK(12) CHECK(13) CHECK(14)
                                 CHECK(15) "dec %[n]\n\t"
                                           "jnz 1b\n\t"
                         : [bad] "+r"(bad), [n] "+r"(rounds)
                         : [p] "r"(pattern)
                         : "rax", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
                           "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14",
                           "xmm15", "cc", "memory");
        printf("beat %lu bad %lu\n", beat, bad);
        fflush(stdout);
    }
}
