/* The agent's per-task bookkeeping in C (see _registry.c): shared by the step hook in
 * _hooks.c, the task factory and the counting coroutine. */
#ifndef VMTOP_REGISTRY_H
#define VMTOP_REGISTRY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Lifetime histogram: bucket i holds [1 us * 10^(i/8), 1 us * 10^((i+1)/8)): 8 buckets a
 * decade from 1 us to 10^4 s (about 33 % wide each); the last one also takes anything longer. */
#define VMTOP_BUCKETS 80
#define VMTOP_BUCKETS_PER_DECADE 8

typedef struct {
    PyObject_HEAD
    PyObject *code; /* the group's key: the coroutine's code object (None: "other") */
    long long live, started, adopted, finished, cancelled, failed, abandoned, steps;
    double secs;
    long long hist[VMTOP_BUCKETS];
} GroupStat;

/* A weak reference to the task (a weakref.ref subclass: its callback, the registry's
 * `_gone`, gets the stat itself), carrying the task's counters. */
typedef struct {
    PyWeakReference ref;
    void *addr;       /* the task's address: the entries key */
    GroupStat *group; /* strong */
    long long steps;
    double secs;
    double created; /* CLOCK_MONOTONIC seconds; NaN when the task is older than the attach */
    double last;    /* end of the last step */
    unsigned long long epoch; /* registry epoch of win_steps/win_secs */
    long long win_steps;
    double win_secs;
    int finished; /* folded into its group (finished, or dropped by the program) */
} TaskStat;

typedef struct {
    PyObject_HEAD
    PyObject *entries;   /* dict: address of a pending task -> TaskStat (weak to the task) */
    PyObject *groups;    /* dict: code object -> GroupStat */
    PyObject *window;    /* list of TaskStat that stepped since the last take() */
    PyObject *cancelled_error; /* asyncio.CancelledError */
    PyObject *gone;      /* the weakref callback: folds a task dropped while pending */
    GroupStat *other;    /* groups past max_groups */
    unsigned long long epoch;
    long long other_n;   /* callbacks that were not task steps, since the last take() */
    double other_secs;
    long long created, adopted, finished, abandoned;
    Py_ssize_t max_groups;
} Registry;

extern PyTypeObject VmtopRegistryType;
extern PyTypeObject VmtopTaskStatType;
extern PyTypeObject VmtopGroupStatType;
extern PyTypeObject VmtopCountingCoroType;
extern PyTypeObject VmtopTaskFactoryType;

double vmtop_now(void);
int vmtop_registry_init_types(void);
/* One step of `task` that took `dt` seconds and ended at `end`: counted, and the task folded
 * into its group when it is no longer pending. Never raises (errors are cleared). */
void vmtop_registry_step(Registry *reg, PyObject *task, double dt, double end);
void vmtop_registry_other(Registry *reg, double dt);

#endif
