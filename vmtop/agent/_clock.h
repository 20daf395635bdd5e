/* The clock of every step the agent times (_clock.c). */
#ifndef VMTOP_CLOCK_H
#define VMTOP_CLOCK_H

/* Seconds on a monotonic clock: CLOCK_MONOTONIC's rate and origin, read from the CPU's
 * time-stamp counter where the kernel itself trusts it (clocksource "tsc"). Under the GIL. */
double vmtop_now(void);

/* Read the kernel's clock source and calibrate (module init; may wait a few ms). */
void vmtop_clock_init(void);

/* Refine the counter's rate against CLOCK_MONOTONIC (cheap; call now and then). */
void vmtop_clock_tune(void);

/* "tsc" or "clock_gettime": what vmtop_now() reads. */
const char *vmtop_clock_source(void);

#endif
