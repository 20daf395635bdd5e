/* The agent's per-task bookkeeping in C: the registry (_registry.c), and the task factory
 * with its counting coroutine (_factory.c), used by the step hook in _hooks.c. */
#ifndef VMTOP_REGISTRY_H
#define VMTOP_REGISTRY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "_clock.h"

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

/* A link of an intrusive doubly linked list (no references). */
typedef struct VmtopLink {
    struct VmtopLink *prev, *next;
} VmtopLink;

typedef struct TaskStat TaskStat;
struct TaskStat {
    PyObject_HEAD
    void *addr;       /* the task's address: the table's key (no reference) */
    PyObject *wr;     /* weakref to the task; its callback is this stat (abandoned tasks) */
    GroupStat *group; /* strong */
    struct Registry *reg; /* borrowed: the registry outlives its entries */
    long long steps;
    double secs;
    double created; /* CLOCK_MONOTONIC seconds; NaN when the task is older than the attach */
    double last;    /* end of the last step */
    long long win_steps; /* since the last take(), while in the window */
    double win_secs;
    TaskStat *wprev, *wnext; /* the window: an intrusive list, no references */
    int in_window;
    int finished; /* folded into its group (finished, or dropped by the program) */
};

/* An open-addressing table: task address -> TaskStat (the table holds a reference). */
typedef struct {
    void **keys;
    TaskStat **values;
    Py_ssize_t size, used, filled; /* slots; live entries; live + tombstones */
} StatTable;

/* Code object -> group, by address: hashing a code object hashes its contents (1,600
 * instructions on a uvicorn handler, measured), and every new task asks. Entries hold
 * references to both, dropped with the groups (clear / dealloc). */
#define VMTOP_CODE_CACHE 64
typedef struct {
    PyObject *code;
    GroupStat *group;
} CodeCacheEntry;

typedef struct Registry {
    PyObject_HEAD
    StatTable table;
    PyObject *groups;          /* dict: code object -> GroupStat */
    PyObject *cancelled_error; /* asyncio.CancelledError */
    GroupStat *other;          /* groups past max_groups */
    TaskStat window;           /* sentinel of the window list */
    VmtopLink fresh;           /* counting proxies of tasks with no entry yet (_factory.c) */
    int closed;                /* clear() ran (detach): no new entry is made */
    long long other_n;         /* callbacks that were not task steps, since the last take() */
    double other_secs;
    long long created, adopted, finished, abandoned;
    Py_ssize_t max_groups;
    PyTypeObject *task_type;   /* asyncio.Task, whose _state getter is called directly */
    getter state_get;
    void *state_closure;
    CodeCacheEntry code_cache[VMTOP_CODE_CACHE];
} Registry;

enum vmtop_outcome { VMTOP_OK = 0, VMTOP_CANCELLED = 1, VMTOP_FAILED = 2, VMTOP_ABANDONED = 3 };

extern PyTypeObject VmtopRegistryType;
extern PyTypeObject VmtopTaskStatType;
extern PyTypeObject VmtopGroupStatType;
extern PyTypeObject VmtopCountingCoroType;
extern PyTypeObject VmtopTaskFactoryType;

int vmtop_registry_init_types(void);
int vmtop_factory_init_types(void);

/* One step of `task` that took `dt` seconds and ended at `end`: counted, and the task folded
 * into its group when it is no longer pending. Never raises (errors are cleared). */
void vmtop_registry_step(Registry *reg, PyObject *task, double dt, double end);
void vmtop_registry_other(Registry *reg, double dt);

/* For the factory (_factory.c). */
GroupStat *vmtop_group_for_coro(Registry *reg, PyObject *coro);
TaskStat *vmtop_stat_for(Registry *reg, PyObject *task, double created);
/* `counted`: the task is already in its group's live/started (the wrapping factory counts a
 * task when it makes it, and registers it later). */
TaskStat *vmtop_stat_register(Registry *reg, PyObject *task, GroupStat *group, double created,
                              int counted);
void vmtop_window_put(Registry *reg, TaskStat *stat, long long steps, double secs);
void vmtop_count(Registry *reg, TaskStat *stat, long long steps, double dt, double end);
void vmtop_finish(Registry *reg, TaskStat *stat, enum vmtop_outcome how, double end);
void vmtop_fold(Registry *reg, GroupStat *g, enum vmtop_outcome how, double lifetime);
int vmtop_task_outcome(Registry *reg, PyObject *task);

/* The wrapping factory's tasks get their TaskStat late (_factory.c): when a take() finds them
 * stepped, or when stat() asks for one. Until then the proxy counts (most request tasks end
 * before a refresh, and never need one). */
int vmtop_fresh_flush(Registry *reg);
TaskStat *vmtop_fresh_stat(Registry *reg, PyObject *task);
void vmtop_fresh_drop(Registry *reg);

#endif
