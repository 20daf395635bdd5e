/* Per-task counters that never keep a task alive, folded into per-coroutine groups.
 *
 * Task-per-request servers (aiohttp, uvicorn) make thousands of tasks a second. Counters kept
 * in a dict keyed by task hold each finished request (and its frames) until someone drains
 * them; that cost a watched server ~25 MiB/s. Here the registry holds no task: its table is
 * keyed by the task's address, and each TaskStat keeps a weak reference to its task whose
 * callback is the stat itself. The step that finishes a task folds its counts into its group
 * (one per coroutine code object) and drops the entry at once; a pending task that the
 * program lets go of (always a cycle: task <-> the future it waits on) is freed as it would be
 * without us, and the weakref's callback folds it as "abandoned".
 *
 * The window (stats that stepped since the last take()) is an intrusive list of live stats, so
 * a refresh costs O(tasks that ran) and a client that never asks holds nothing more than one
 * entry per pending task. A step costs a table probe, a few additions and, for asyncio's C
 * Task, a direct call of its `_state` getter (no allocation); a task costs one stat and one
 * weak reference.
 *
 * Every update happens under the GIL with no Python code between reading a structure and
 * writing it, so take() from the agent's thread loses nothing.
 */
#include "_registry.h"

#include <math.h>
#include <stdint.h>
#include <structmember.h>
#include <time.h>

static PyObject *str_state, *str_exception, *str_pending, *str_cancelled, *str_get_coro,
    *str_cr_code, *str_gi_code;

/* ---- GroupStat ------------------------------------------------------------------------ */

static GroupStat *
group_new(PyObject *code)
{
    GroupStat *g = PyObject_New(GroupStat, &VmtopGroupStatType);
    if (g == NULL) {
        return NULL;
    }
    g->code = Py_NewRef(code);
    g->live = g->started = g->adopted = g->finished = g->cancelled = g->failed = 0;
    g->abandoned = g->steps = 0;
    g->secs = 0.0;
    memset(g->hist, 0, sizeof(g->hist));
    return g;
}

static void
group_dealloc(GroupStat *g)
{
    Py_XDECREF(g->code);
    PyObject_Free(g);
}

static PyObject *
group_get_hist(GroupStat *g, void *closure)
{
    PyObject *t = PyTuple_New(VMTOP_BUCKETS);
    if (t == NULL) {
        return NULL;
    }
    for (int i = 0; i < VMTOP_BUCKETS; i++) {
        PyObject *n = PyLong_FromLongLong(g->hist[i]);
        if (n == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, n);
    }
    return t;
}

static PyMemberDef group_members[] = {
    {"code", T_OBJECT, offsetof(GroupStat, code), READONLY, "the coroutine's code (None: other)"},
    {"live", T_LONGLONG, offsetof(GroupStat, live), READONLY, "pending tasks of the group"},
    {"started", T_LONGLONG, offsetof(GroupStat, started), READONLY, "tasks created"},
    {"adopted", T_LONGLONG, offsetof(GroupStat, adopted), READONLY, "tasks older than the attach"},
    {"finished", T_LONGLONG, offsetof(GroupStat, finished), READONLY, "tasks that finished"},
    {"cancelled", T_LONGLONG, offsetof(GroupStat, cancelled), READONLY, "of which cancelled"},
    {"failed", T_LONGLONG, offsetof(GroupStat, failed), READONLY, "of which raised"},
    {"abandoned", T_LONGLONG, offsetof(GroupStat, abandoned), READONLY, "dropped while pending"},
    {"steps", T_LONGLONG, offsetof(GroupStat, steps), READONLY, "steps of all its tasks"},
    {"secs", T_DOUBLE, offsetof(GroupStat, secs), READONLY, "seconds inside those steps"},
    {NULL},
};

static PyGetSetDef group_getset[] = {
    {"hist", (getter)group_get_hist, NULL, "lifetime histogram (see VMTOP_BUCKETS)", NULL},
    {NULL},
};

PyTypeObject VmtopGroupStatType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.GroupStat",
    .tp_doc = "Counters of the tasks of one coroutine function.",
    .tp_basicsize = sizeof(GroupStat),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)group_dealloc,
    .tp_members = group_members,
    .tp_getset = group_getset,
};

/* ---- TaskStat ------------------------------------------------------------------------- */

static TaskStat *
stat_alloc(Registry *reg, GroupStat *group, double created)
{
    TaskStat *s = PyObject_New(TaskStat, &VmtopTaskStatType);
    if (s == NULL) {
        return NULL;
    }
    s->addr = NULL;
    s->wr = NULL;
    s->group = (GroupStat *)Py_NewRef((PyObject *)group);
    s->reg = reg;
    s->steps = 0;
    s->secs = 0.0;
    s->created = created;
    s->last = NAN;
    s->win_steps = 0;
    s->win_secs = 0.0;
    s->wprev = s->wnext = NULL;
    s->in_window = 0;
    s->finished = 0;
    return s;
}

static void
stat_dealloc(TaskStat *s)
{
    Py_CLEAR(s->wr);
    Py_CLEAR(s->group);
    PyObject_Free(s);
}

/* Called as the weak reference's callback: the task was freed while pending. */
static PyObject *
stat_call(TaskStat *s, PyObject *args, PyObject *kwds)
{
    if (!s->finished) {
        vmtop_finish(s->reg, s, VMTOP_ABANDONED, vmtop_now());
    }
    Py_RETURN_NONE;
}

/* The task while it is pending and alive, else None. */
static PyObject *
stat_get_task(TaskStat *s, void *closure)
{
    if (s->finished || s->wr == NULL) {
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *task = NULL;
    if (PyWeakref_GetRef(s->wr, &task) < 0) {
        return NULL;
    }
    return task != NULL ? task : Py_NewRef(Py_None);
#else
    return Py_NewRef(PyWeakref_GET_OBJECT(s->wr));
#endif
}

static PyMemberDef stat_members[] = {
    {"group", T_OBJECT, offsetof(TaskStat, group), READONLY, "the task's GroupStat"},
    {"steps", T_LONGLONG, offsetof(TaskStat, steps), READONLY, "steps since the attach"},
    {"secs", T_DOUBLE, offsetof(TaskStat, secs), READONLY, "seconds inside them"},
    {"created", T_DOUBLE, offsetof(TaskStat, created), READONLY, "creation (monotonic) or NaN"},
    {"last", T_DOUBLE, offsetof(TaskStat, last), READONLY, "end of the last step (monotonic)"},
    {"finished", T_INT, offsetof(TaskStat, finished), READONLY, "folded into its group"},
    {NULL},
};

static PyGetSetDef stat_getset[] = {
    {"task", (getter)stat_get_task, NULL, "the task while it is pending, else None", NULL},
    {NULL},
};

PyTypeObject VmtopTaskStatType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.TaskStat",
    .tp_doc = "Steps and seconds of one task (weakly tied to it).",
    .tp_basicsize = sizeof(TaskStat),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_dealloc = (destructor)stat_dealloc,
    .tp_call = (ternaryfunc)stat_call,
    .tp_members = stat_members,
    .tp_getset = stat_getset,
};

/* ---- the table: task address -> TaskStat ---------------------------------------------- */

#define TOMBSTONE ((void *)1)

static inline Py_ssize_t
slot_of(void *addr, Py_ssize_t mask)
{
    uint64_t h = ((uint64_t)(uintptr_t)addr >> 4) * 0x9E3779B97F4A7C15ULL;
    return (Py_ssize_t)(h >> 20) & mask;
}

static TaskStat *
table_get(StatTable *t, void *addr)
{
    if (t->size == 0) {
        return NULL;
    }
    Py_ssize_t mask = t->size - 1;
    for (Py_ssize_t i = slot_of(addr, mask);; i = (i + 1) & mask) {
        void *k = t->keys[i];
        if (k == addr) {
            return t->values[i];
        }
        if (k == NULL) {
            return NULL;
        }
    }
}

static int
table_resize(StatTable *t, Py_ssize_t size)
{
    void **keys = PyMem_Calloc((size_t)size, sizeof(void *));
    TaskStat **values = PyMem_Calloc((size_t)size, sizeof(TaskStat *));
    if (keys == NULL || values == NULL) {
        PyMem_Free(keys);
        PyMem_Free(values);
        PyErr_NoMemory();
        return -1;
    }
    Py_ssize_t mask = size - 1;
    for (Py_ssize_t j = 0; j < t->size; j++) {
        void *k = t->keys[j];
        if (k != NULL && k != TOMBSTONE) {
            Py_ssize_t i = slot_of(k, mask);
            while (keys[i] != NULL) {
                i = (i + 1) & mask;
            }
            keys[i] = k;
            values[i] = t->values[j];
        }
    }
    PyMem_Free(t->keys);
    PyMem_Free(t->values);
    t->keys = keys;
    t->values = values;
    t->size = size;
    t->filled = t->used;
    return 0;
}

/* Insert (the table takes a new reference to the stat). */
static int
table_put(StatTable *t, void *addr, TaskStat *stat)
{
    if ((t->filled + 1) * 2 > t->size) {
        Py_ssize_t size = 64;
        while (size < (t->used + 1) * 4) {
            size *= 2;
        }
        if (table_resize(t, size) < 0) {
            return -1;
        }
    }
    Py_ssize_t mask = t->size - 1;
    Py_ssize_t i = slot_of(addr, mask);
    while (t->keys[i] != NULL && t->keys[i] != TOMBSTONE) {
        i = (i + 1) & mask;
    }
    if (t->keys[i] == NULL) {
        t->filled += 1;
    }
    t->keys[i] = addr;
    t->values[i] = (TaskStat *)Py_NewRef((PyObject *)stat);
    t->used += 1;
    return 0;
}

/* Remove the entry of `addr` if it is `stat`; returns the table's reference (or NULL). */
static TaskStat *
table_pop(StatTable *t, void *addr, TaskStat *stat)
{
    if (t->size == 0) {
        return NULL;
    }
    Py_ssize_t mask = t->size - 1;
    for (Py_ssize_t i = slot_of(addr, mask);; i = (i + 1) & mask) {
        void *k = t->keys[i];
        if (k == NULL) {
            return NULL;
        }
        if (k == addr) {
            if (t->values[i] != stat) {
                return NULL;
            }
            t->keys[i] = TOMBSTONE;
            t->values[i] = NULL;
            t->used -= 1;
            return stat;
        }
    }
}

/* ---- counting --------------------------------------------------------------------------- */

/* The group of a coroutine (borrowed reference), made on first sight. */
GroupStat *
vmtop_group_for_coro(Registry *reg, PyObject *coro)
{
    PyObject *code = NULL;
    if (PyCoro_CheckExact(coro)) { /* read directly: a generic getattr costs ~200 instructions */
#if PY_VERSION_HEX >= 0x030C0000
        code = (PyObject *)PyGen_GetCode((PyGenObject *)coro);
#else
        code = Py_NewRef((PyObject *)((PyCoroObject *)coro)->cr_code);
#endif
    }
    if (code == NULL) {
        code = PyObject_GetAttr(coro, str_cr_code);
    }
    if (code == NULL) {
        PyErr_Clear();
        code = PyObject_GetAttr(coro, str_gi_code);
    }
    if (code == NULL) {
        PyErr_Clear();
        code = Py_NewRef((PyObject *)Py_TYPE(coro));
    }
    CodeCacheEntry *hit = &reg->code_cache[((uintptr_t)code >> 4) & (VMTOP_CODE_CACHE - 1)];
    if (hit->code == code) {
        Py_DECREF(code);
        return hit->group;
    }
    PyObject *g = PyDict_GetItemWithError(reg->groups, code); /* borrowed */
    if (g == NULL && !PyErr_Occurred()) {
        if (PyDict_GET_SIZE(reg->groups) >= reg->max_groups) {
            Py_DECREF(code);
            return reg->other;
        }
        GroupStat *fresh = group_new(code);
        if (fresh != NULL && PyDict_SetItem(reg->groups, code, (PyObject *)fresh) == 0) {
            g = (PyObject *)fresh;
        }
        Py_XDECREF(fresh); /* the dict holds it */
    }
    if (g == NULL) {
        Py_DECREF(code);
        PyErr_Clear();
        return reg->other;
    }
    PyObject *old_code = hit->code;
    GroupStat *old_group = hit->group;
    hit->code = code; /* our reference moves into the cache */
    hit->group = (GroupStat *)Py_NewRef(g);
    Py_XDECREF(old_code);
    Py_XDECREF(old_group);
    return (GroupStat *)g;
}

static void
code_cache_clear(Registry *reg)
{
    for (int i = 0; i < VMTOP_CODE_CACHE; i++) {
        Py_CLEAR(reg->code_cache[i].code);
        Py_CLEAR(reg->code_cache[i].group);
    }
}

static GroupStat *
group_for_task(Registry *reg, PyObject *task)
{
    PyObject *coro = PyObject_CallMethodNoArgs(task, str_get_coro);
    if (coro == NULL) {
        PyErr_Clear();
        return reg->other;
    }
    GroupStat *g = vmtop_group_for_coro(reg, coro);
    Py_DECREF(coro);
    return g;
}

/* A new entry for `task` in `group` (borrowed; the table holds it). */
TaskStat *
vmtop_stat_register(Registry *reg, PyObject *task, GroupStat *group, double created,
                    int counted)
{
    TaskStat *stat = stat_alloc(reg, group, created);
    if (stat == NULL) {
        return NULL;
    }
    stat->addr = task;
    stat->wr = PyWeakref_NewRef(task, (PyObject *)stat); /* holds the stat: a cycle we break */
    if (stat->wr == NULL || table_put(&reg->table, task, stat) < 0) {
        Py_CLEAR(stat->wr);
        Py_DECREF(stat);
        return NULL;
    }
    Py_DECREF(stat); /* the table's reference (and the weakref's) remain */
    if (counted) {
        return stat;
    }
    group->live += 1;
    if (isnan(created)) {
        group->adopted += 1;
        reg->adopted += 1;
    }
    else {
        group->started += 1;
        reg->created += 1;
    }
    return stat;
}

/* The entry of `task` (borrowed), made when missing: `created` NaN means "older than us". */
TaskStat *
vmtop_stat_for(Registry *reg, PyObject *task, double created)
{
    TaskStat *s = table_get(&reg->table, task);
    if (s != NULL) {
        return s;
    }
    return vmtop_stat_register(reg, task, group_for_task(reg, task), created, 0);
}

void
vmtop_count(Registry *reg, TaskStat *stat, long long steps, double dt, double end)
{
    stat->steps += steps;
    stat->secs += dt;
    stat->last = end;
    stat->group->steps += steps;
    stat->group->secs += dt;
    vmtop_window_put(reg, stat, steps, dt);
}

/* `steps` and `secs` of `stat` into the window (linking it in), not into its group. */
void
vmtop_window_put(Registry *reg, TaskStat *stat, long long steps, double secs)
{
    if (stat->finished) {
        return;
    }
    if (!stat->in_window) {
        TaskStat *head = &reg->window;
        stat->wprev = head->wprev;
        stat->wnext = head;
        head->wprev->wnext = stat;
        head->wprev = stat;
        stat->in_window = 1;
        stat->win_steps = 0;
        stat->win_secs = 0.0;
    }
    stat->win_steps += steps;
    stat->win_secs += secs;
}

static void
window_unlink(TaskStat *stat)
{
    if (stat->in_window) {
        stat->wprev->wnext = stat->wnext;
        stat->wnext->wprev = stat->wprev;
        stat->wprev = stat->wnext = NULL;
        stat->in_window = 0;
    }
}

static void
hist_add(GroupStat *g, double lifetime)
{
    int i = 0;
    if (lifetime > 1e-6) {
        i = (int)floor(log10(lifetime * 1e6) * VMTOP_BUCKETS_PER_DECADE);
    }
    if (i < 0) {
        i = 0;
    }
    if (i >= VMTOP_BUCKETS) {
        i = VMTOP_BUCKETS - 1;
    }
    g->hist[i] += 1;
}

void
vmtop_fold(Registry *reg, GroupStat *g, enum vmtop_outcome how, double lifetime)
{
    g->live -= 1;
    if (how == VMTOP_ABANDONED) {
        g->abandoned += 1;
        reg->abandoned += 1;
        return;
    }
    g->finished += 1;
    reg->finished += 1;
    if (how == VMTOP_CANCELLED) {
        g->cancelled += 1;
    }
    else if (how == VMTOP_FAILED) {
        g->failed += 1;
    }
    if (!isnan(lifetime)) {
        hist_add(g, lifetime);
    }
}

/* Fold a task into its group and drop its entry and weak reference. */
void
vmtop_finish(Registry *reg, TaskStat *stat, enum vmtop_outcome how, double end)
{
    if (stat->finished) {
        return;
    }
    stat->finished = 1;
    window_unlink(stat);
    vmtop_fold(reg, stat->group, how, end - stat->created);
    Py_INCREF(stat); /* until the end of this function */
    Py_CLEAR(stat->wr); /* the weakref held the stat as its callback */
    TaskStat *popped = table_pop(&reg->table, stat->addr, stat);
    Py_XDECREF(popped);
    Py_DECREF(stat);
}

/* How a task that is no longer pending ended, or -1 while it is pending. No side effects
 * (Future.exception() would mark the exception as retrieved). */
int
vmtop_task_outcome(Registry *reg, PyObject *task)
{
    PyObject *state;
    if (Py_IS_TYPE(task, reg->task_type) && reg->state_get != NULL) {
        state = reg->state_get(task, reg->state_closure);
    }
    else {
        state = PyObject_GetAttr(task, str_state);
    }
    if (state == NULL) {
        PyErr_Clear();
        return -1;
    }
    int how = -1;
    if (state == str_pending) {
        how = -1;
    }
    else if (state == str_cancelled) {
        how = VMTOP_CANCELLED;
    }
    else if (PyUnicode_Check(state) && PyUnicode_Compare(state, str_pending) == 0) {
        how = -1;
    }
    else if (PyUnicode_Check(state) && PyUnicode_Compare(state, str_cancelled) == 0) {
        how = VMTOP_CANCELLED;
    }
    else {
        PyObject *exc = PyObject_GetAttr(task, str_exception);
        how = (exc != NULL && exc != Py_None) ? VMTOP_FAILED : VMTOP_OK;
        Py_XDECREF(exc);
    }
    PyErr_Clear();
    Py_DECREF(state);
    return how;
}

void
vmtop_registry_step(Registry *reg, PyObject *task, double dt, double end)
{
    TaskStat *stat = vmtop_stat_for(reg, task, NAN);
    if (stat == NULL) {
        PyErr_Clear(); /* bookkeeping (memory) never reaches the program */
        return;
    }
    vmtop_count(reg, stat, 1, dt, end);
    int how = vmtop_task_outcome(reg, task);
    if (how >= 0) {
        vmtop_finish(reg, stat, (enum vmtop_outcome)how, end);
    }
}

void
vmtop_registry_other(Registry *reg, double dt)
{
    reg->other_n += 1;
    reg->other_secs += dt;
}

/* ---- Registry type --------------------------------------------------------------------- */

static void
find_state_getter(Registry *reg, PyObject *task_type)
{
    if (!PyType_Check(task_type)) {
        return;
    }
    PyTypeObject *tt = (PyTypeObject *)task_type;
    for (PyTypeObject *t = tt; t != NULL; t = t->tp_base) {
        for (PyGetSetDef *gs = t->tp_getset; gs != NULL && gs->name != NULL; gs++) {
            if (strcmp(gs->name, "_state") == 0 && gs->get != NULL) {
                reg->task_type = (PyTypeObject *)Py_NewRef(task_type);
                reg->state_get = gs->get;
                reg->state_closure = gs->closure;
                return;
            }
        }
    }
}

static PyObject *
registry_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *cancelled_error, *task_type = Py_None;
    Py_ssize_t max_groups = 2000;
    static char *kwlist[] = {"cancelled_error", "task_type", "max_groups", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|On:Registry", kwlist, &cancelled_error,
                                     &task_type, &max_groups)) {
        return NULL;
    }
    Registry *reg = (Registry *)type->tp_alloc(type, 0);
    if (reg == NULL) {
        return NULL;
    }
    reg->groups = PyDict_New();
    reg->other = group_new(Py_None);
    reg->cancelled_error = Py_NewRef(cancelled_error);
    reg->max_groups = max_groups;
    reg->window.wprev = reg->window.wnext = &reg->window;
    reg->fresh.prev = reg->fresh.next = &reg->fresh;
    find_state_getter(reg, task_type);
    if (reg->groups == NULL || reg->other == NULL) {
        Py_DECREF(reg);
        return NULL;
    }
    return (PyObject *)reg;
}

static int
registry_traverse(Registry *reg, visitproc visit, void *arg)
{
    Py_VISIT(reg->groups);
    Py_VISIT(reg->cancelled_error);
    for (int i = 0; i < VMTOP_CODE_CACHE; i++) {
        Py_VISIT(reg->code_cache[i].group);
    }
    return 0;
}

/* Forget every entry (detach): no stat counts or folds any more, no weakref is left. */
static void
drop_entries(Registry *reg)
{
    vmtop_fresh_drop(reg);
    StatTable *t = &reg->table;
    for (Py_ssize_t i = 0; i < t->size; i++) {
        void *k = t->keys[i];
        if (k != NULL && k != TOMBSTONE) {
            TaskStat *s = t->values[i];
            s->finished = 1;
            window_unlink(s);
            Py_CLEAR(s->wr);
            Py_DECREF(s);
        }
    }
    PyMem_Free(t->keys);
    PyMem_Free(t->values);
    t->keys = NULL;
    t->values = NULL;
    t->size = t->used = t->filled = 0;
    reg->window.wprev = reg->window.wnext = &reg->window;
}

static int
registry_clear_refs(Registry *reg)
{
    reg->closed = 1;
    drop_entries(reg);
    code_cache_clear(reg);
    Py_CLEAR(reg->groups);
    Py_CLEAR(reg->cancelled_error);
    Py_CLEAR(reg->other);
    Py_CLEAR(reg->task_type);
    return 0;
}

static void
registry_dealloc(Registry *reg)
{
    PyObject_GC_UnTrack(reg);
    registry_clear_refs(reg);
    Py_TYPE(reg)->tp_free((PyObject *)reg);
}

typedef struct {
    TaskStat *stat;
    long long steps;
    double secs;
} Taken;

static PyObject *
registry_take(Registry *reg, PyObject *unused)
{
    vmtop_clock_tune();
    if (vmtop_fresh_flush(reg) < 0) { /* the proxies that stepped get entries (allocates) */
        return NULL;
    }
    /* Then, with no Python object made (nothing can run Python code or switch threads),
     * copy the window and empty it; then build the answer from the copy. */
    TaskStat *head = &reg->window;
    Py_ssize_t n = 0;
    for (TaskStat *s = head->wnext; s != head; s = s->wnext) {
        n += 1;
    }
    Taken *copy = PyMem_Malloc(sizeof(Taken) * (size_t)(n ? n : 1));
    if (copy == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t i = 0;
    for (TaskStat *s = head->wnext; s != head;) {
        TaskStat *next = s->wnext;
        copy[i].stat = (TaskStat *)Py_NewRef((PyObject *)s);
        copy[i].steps = s->win_steps;
        copy[i].secs = s->win_secs;
        s->wprev = s->wnext = NULL;
        s->in_window = 0;
        i += 1;
        s = next;
    }
    head->wprev = head->wnext = head;
    long long other_n = reg->other_n;
    double other_secs = reg->other_secs;
    reg->other_n = 0;
    reg->other_secs = 0.0;

    PyObject *out = PyList_New(n);
    for (i = 0; i < n; i++) {
        PyObject *item = NULL;
        if (out != NULL) {
            item = Py_BuildValue("(OLd)", (PyObject *)copy[i].stat, copy[i].steps, copy[i].secs);
            if (item == NULL) {
                Py_CLEAR(out);
            }
            else {
                PyList_SET_ITEM(out, i, item);
            }
        }
        Py_DECREF(copy[i].stat);
    }
    PyMem_Free(copy);
    if (out == NULL) {
        return NULL;
    }
    PyObject *result = Py_BuildValue("(N[Ld])", out, other_n, other_secs);
    return result;
}

static PyObject *
registry_stat(Registry *reg, PyObject *task)
{
    TaskStat *s = table_get(&reg->table, task);
    if (s == NULL) {
        s = vmtop_fresh_stat(reg, task); /* a wrapped task's, made now */
        if (s == NULL && PyErr_Occurred()) {
            return NULL;
        }
    }
    return Py_NewRef(s != NULL ? (PyObject *)s : Py_None);
}

static PyObject *
registry_add(Registry *reg, PyObject *args)
{
    PyObject *task;
    long long steps;
    double seconds;
    if (!PyArg_ParseTuple(args, "OLd:add", &task, &steps, &seconds)) {
        return NULL;
    }
    TaskStat *stat = vmtop_stat_for(reg, task, NAN);
    if (stat == NULL) {
        return NULL;
    }
    vmtop_count(reg, stat, steps, seconds, vmtop_now());
    Py_RETURN_NONE;
}

/* The `n` live entries with the most steps (by=0) or seconds (by=1) since the attach. */
static PyObject *
registry_top(Registry *reg, PyObject *args)
{
    Py_ssize_t n;
    int by;
    if (!PyArg_ParseTuple(args, "ni:top", &n, &by)) {
        return NULL;
    }
    if (n <= 0) {
        return PyList_New(0);
    }
    if (vmtop_fresh_flush(reg) < 0) {
        return NULL;
    }
    TaskStat **best = PyMem_Calloc((size_t)n, sizeof(TaskStat *));
    if (best == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t have = 0;
    StatTable *t = &reg->table;
    for (Py_ssize_t j = 0; j < t->size; j++) {
        if (t->keys[j] == NULL || t->keys[j] == TOMBSTONE) {
            continue;
        }
        TaskStat *s = t->values[j];
        double v = by ? s->secs : (double)s->steps;
        if (have == n) {
            double worst = by ? best[n - 1]->secs : (double)best[n - 1]->steps;
            if (v <= worst) {
                continue;
            }
            have -= 1;
        }
        Py_ssize_t i = have;
        while (i > 0 && (by ? best[i - 1]->secs : (double)best[i - 1]->steps) < v) {
            best[i] = best[i - 1];
            i -= 1;
        }
        best[i] = s;
        have += 1;
    }
    PyObject *out = PyList_New(have);
    if (out != NULL) {
        for (Py_ssize_t i = 0; i < have; i++) {
            PyList_SET_ITEM(out, i, Py_NewRef((PyObject *)best[i]));
        }
    }
    PyMem_Free(best);
    return out;
}

static PyObject *
registry_group_list(Registry *reg, PyObject *unused)
{
    PyObject *out = PyDict_Values(reg->groups);
    if (out != NULL && (reg->other->started || reg->other->adopted)) {
        if (PyList_Append(out, (PyObject *)reg->other) < 0) {
            Py_CLEAR(out);
        }
    }
    return out;
}

static PyObject *
registry_clear(Registry *reg, PyObject *unused)
{
    reg->closed = 1;
    drop_entries(reg);
    Py_RETURN_NONE;
}

static PyObject *
registry_live(Registry *reg, PyObject *unused)
{
    return PyLong_FromSsize_t(reg->table.used);
}

static PyMethodDef registry_methods[] = {
    {"take", (PyCFunction)registry_take, METH_NOARGS,
     "take() -> ([(stat, steps, secs)...], [n, secs]): what stepped since the last take()."},
    {"stat", (PyCFunction)registry_stat, METH_O, "stat(task) -> TaskStat or None."},
    {"add", (PyCFunction)registry_add, METH_VARARGS,
     "add(task, steps, seconds): count steps run outside the hook."},
    {"top", (PyCFunction)registry_top, METH_VARARGS,
     "top(n, by) -> the n live TaskStats with most steps (by=0) or seconds (by=1)."},
    {"group_list", (PyCFunction)registry_group_list, METH_NOARGS, "every GroupStat."},
    {"clear", (PyCFunction)registry_clear, METH_NOARGS, "forget every entry (detach)."},
    {"live", (PyCFunction)registry_live, METH_NOARGS,
     "number of entries (pending tasks that have one: see CountingCoro)."},
    {NULL},
};

static PyMemberDef registry_members[] = {
    {"created", T_LONGLONG, offsetof(Registry, created), READONLY, "tasks created since attach"},
    {"adopted", T_LONGLONG, offsetof(Registry, adopted), READONLY, "older tasks seen stepping"},
    {"finished", T_LONGLONG, offsetof(Registry, finished), READONLY, "tasks that finished"},
    {"abandoned", T_LONGLONG, offsetof(Registry, abandoned), READONLY, "dropped while pending"},
    {NULL},
};

PyTypeObject VmtopRegistryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.Registry",
    .tp_doc = "Per-task counters of pending tasks, per-coroutine groups of all of them.",
    .tp_basicsize = sizeof(Registry),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = registry_new,
    .tp_traverse = (traverseproc)registry_traverse,
    .tp_clear = (inquiry)registry_clear_refs,
    .tp_dealloc = (destructor)registry_dealloc,
    .tp_methods = registry_methods,
    .tp_members = registry_members,
};

/* ---- set-up --------------------------------------------------------------------------- */

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

int
vmtop_registry_init_types(void)
{
    if (intern(&str_state, "_state") < 0 || intern(&str_exception, "_exception") < 0 ||
        intern(&str_pending, "PENDING") < 0 || intern(&str_cancelled, "CANCELLED") < 0 ||
        intern(&str_get_coro, "get_coro") < 0 || intern(&str_cr_code, "cr_code") < 0 ||
        intern(&str_gi_code, "gi_code") < 0) {
        return -1;
    }
    if (PyType_Ready(&VmtopGroupStatType) < 0 || PyType_Ready(&VmtopTaskStatType) < 0 ||
        PyType_Ready(&VmtopRegistryType) < 0) {
        return -1;
    }
    return vmtop_factory_init_types();
}
