/* The clock of every step the agent times.
 *
 * A timed step reads the clock twice, and a task on uvloop takes seven reads (creation, then
 * two a step). clock_gettime(CLOCK_MONOTONIC) through the vDSO costs 27 ns here; the
 * time-stamp counter it reads underneath costs 10 ns (measured on a 2-core KVM guest), so
 * reading the counter directly removes about a quarter of what counting a short task costs.
 *
 * The counter is used only where the kernel itself uses it for CLOCK_MONOTONIC (clock source
 * "tsc": invariant and synchronised across CPUs, which the kernel checked), and only on
 * x86-64. Anywhere else vmtop_now() is clock_gettime(). Ticks become seconds by a rate taken
 * against CLOCK_MONOTONIC: first over 2 ms at module init, then refined over the whole time
 * since (vmtop_clock_tune(), at every registry take()). Each refinement keeps the clock
 * continuous (the new rate starts from the value the old one gives now), so no step ever
 * reads a negative duration.
 */
#include "_clock.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__) && defined(__linux__)
#include <x86intrin.h>
#define VMTOP_HAVE_TSC 1
#else
#define VMTOP_HAVE_TSC 0
#endif

static int use_tsc;
static unsigned long long first_tick, anchor_tick;
static double first_mono, anchor_mono, secs_per_tick;

static double
mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#if VMTOP_HAVE_TSC
static unsigned long long
ticks(void)
{
    return __rdtsc();
}

static int
kernel_uses_tsc(void)
{
    char source[32] = {0};
    FILE *f = fopen("/sys/devices/system/clocksource/clocksource0/current_clocksource", "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(source, 1, sizeof(source) - 1, f);
    fclose(f);
    return n >= 3 && strncmp(source, "tsc", 3) == 0 && (source[3] == '\n' || source[3] == 0);
}
#endif

double
vmtop_now(void)
{
#if VMTOP_HAVE_TSC
    if (use_tsc) {
        return anchor_mono + (double)(long long)(ticks() - anchor_tick) * secs_per_tick;
    }
#endif
    return mono();
}

void
vmtop_clock_init(void)
{
#if VMTOP_HAVE_TSC
    if (use_tsc || !kernel_uses_tsc()) {
        return;
    }
    /* The counter and the clock read as close together as we can, twice, 2 ms apart. */
    first_mono = mono();
    first_tick = ticks();
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, NULL);
    double m = mono();
    unsigned long long t = ticks();
    if (t <= first_tick || m <= first_mono) {
        return;
    }
    secs_per_tick = (m - first_mono) / (double)(t - first_tick);
    anchor_tick = first_tick;
    anchor_mono = first_mono;
    use_tsc = 1;
#endif
}

void
vmtop_clock_tune(void)
{
#if VMTOP_HAVE_TSC
    if (!use_tsc) {
        return;
    }
    unsigned long long t = ticks();
    double m = mono();
    if (t <= first_tick || m - first_mono < 0.05) {
        return;
    }
    double now = anchor_mono + (double)(long long)(t - anchor_tick) * secs_per_tick;
    anchor_tick = t;
    anchor_mono = now;
    secs_per_tick = (m - first_mono) / (double)(t - first_tick);
#endif
}

const char *
vmtop_clock_source(void)
{
    return use_tsc ? "tsc" : "clock_gettime";
}
