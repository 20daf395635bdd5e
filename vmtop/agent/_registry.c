/* Per-task counters that never keep a task alive, folded into per-coroutine groups.
 *
 * Task-per-request servers (aiohttp, uvicorn) make thousands of tasks a second. Counters kept
 * in a dict keyed by task hold each finished request (and its frames) until someone drains
 * them; that cost a watched server ~25 MiB/s. Here the registry holds tasks only weakly: an
 * entry is keyed by the task's address and its TaskStat is a weak reference to the task. The
 * step that finishes a task folds its counts into its group (one per coroutine code object)
 * and drops the entry at once; a pending task that the program lets go of (always a cycle:
 * task <-> the future it waits on) is freed as it would be without us, and the weakref's
 * callback folds it as "abandoned".
 *
 * Registry: entries (address -> TaskStat), groups (code -> GroupStat), the window (TaskStats
 *   that stepped since the last take(), so a refresh costs O(tasks that ran)).
 * TaskFactory: a loop's task factory while a client is attached. It stamps each task's
 *   creation time (for lifetimes) and, for loops whose steps the Handle._run hook cannot see
 *   (uvloop), wraps the coroutine in a CountingCoro that times every send/throw.
 * CountingCoro: a coroutine proxy (am_send) that counts its steps into its TaskStat.
 *
 * Every update happens under the GIL with no Python code between reading a structure and
 * writing it, so take() from the agent's thread loses nothing. A task's entry is removed last.
 */
#include "_registry.h"

#include <math.h>
#include <structmember.h>
#include <time.h>

static PyObject *str_state, *str_exception, *str_pending, *str_cancelled, *str_get_coro,
    *str_cr_code, *str_gi_code, *str_cr_frame, *str_cr_suspended, *str_loop, *str_throw,
    *str_close;

double
vmtop_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

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
    {"live", T_LONGLONG, offsetof(GroupStat, live), READONLY, "tasks of the group with an entry"},
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

/* A new stat for `task`, a weak reference whose callback is the registry's `_gone`. */
static TaskStat *
stat_new(Registry *reg, PyObject *task, GroupStat *group, double created)
{
    PyObject *args = PyTuple_Pack(2, task, reg->gone);
    if (args == NULL) {
        return NULL;
    }
    TaskStat *s = (TaskStat *)PyObject_Call((PyObject *)&VmtopTaskStatType, args, NULL);
    Py_DECREF(args);
    if (s == NULL) {
        return NULL;
    }
    s->addr = task;
    s->group = (GroupStat *)Py_NewRef((PyObject *)group);
    s->steps = 0;
    s->secs = 0.0;
    s->created = created;
    s->last = NAN;
    s->epoch = 0;
    s->win_steps = 0;
    s->win_secs = 0.0;
    s->finished = 0;
    return s;
}

static void
stat_dealloc(TaskStat *s)
{
    Py_CLEAR(s->group);
    _PyWeakref_RefType.tp_dealloc((PyObject *)s);
}

/* The task while it is pending and alive, else None. */
static PyObject *
stat_get_task(TaskStat *s, void *closure)
{
    if (s->finished) {
        Py_RETURN_NONE;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *task = NULL;
    if (PyWeakref_GetRef((PyObject *)s, &task) < 0) {
        return NULL;
    }
    return task != NULL ? task : Py_NewRef(Py_None);
#else
    return Py_NewRef(PyWeakref_GET_OBJECT((PyObject *)s));
#endif
}

static Py_hash_t
stat_hash(PyObject *s)
{
    return PyBaseObject_Type.tp_hash(s); /* identity: a stat outlives its task */
}

static PyObject *
stat_richcompare(PyObject *a, PyObject *b, int op)
{
    return PyBaseObject_Type.tp_richcompare(a, b, op);
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
    .tp_doc = "Steps and seconds of one task: a weak reference to it.",
    .tp_basicsize = sizeof(TaskStat),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_dealloc = (destructor)stat_dealloc,
    .tp_hash = stat_hash,
    .tp_richcompare = stat_richcompare,
    .tp_members = stat_members,
    .tp_getset = stat_getset,
};

/* ---- Registry internals ---------------------------------------------------------------- */

/* The group of a coroutine (borrowed reference), made on first sight. */
static GroupStat *
group_for_coro(Registry *reg, PyObject *coro)
{
    PyObject *code = PyObject_GetAttr(coro, str_cr_code);
    if (code == NULL) {
        PyErr_Clear();
        code = PyObject_GetAttr(coro, str_gi_code);
    }
    if (code == NULL) {
        PyErr_Clear();
        code = Py_NewRef((PyObject *)Py_TYPE(coro));
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
    Py_DECREF(code);
    if (g == NULL) {
        PyErr_Clear();
        return reg->other;
    }
    return (GroupStat *)g;
}

static GroupStat *
group_for_task(Registry *reg, PyObject *task)
{
    PyObject *coro = PyObject_CallMethodNoArgs(task, str_get_coro);
    if (coro == NULL) {
        PyErr_Clear();
        return reg->other;
    }
    GroupStat *g = group_for_coro(reg, coro);
    Py_DECREF(coro);
    return g;
}

static PyObject *
key_of(void *addr)
{
    return PyLong_FromVoidPtr(addr);
}

static int
register_entry(Registry *reg, TaskStat *stat)
{
    PyObject *key = key_of(stat->addr);
    if (key == NULL) {
        return -1;
    }
    int rc = PyDict_SetItem(reg->entries, key, (PyObject *)stat);
    Py_DECREF(key);
    return rc;
}

static TaskStat *
lookup(Registry *reg, PyObject *task)
{
    PyObject *key = key_of(task);
    if (key == NULL) {
        return NULL;
    }
    PyObject *s = PyDict_GetItemWithError(reg->entries, key); /* borrowed */
    Py_DECREF(key);
    return (TaskStat *)s;
}

/* The entry of `task` (borrowed), made when missing: `created` NaN means "older than us". */
static TaskStat *
stat_for(Registry *reg, PyObject *task, double created)
{
    TaskStat *s = lookup(reg, task);
    if (s != NULL || PyErr_Occurred()) {
        return s;
    }
    GroupStat *group = group_for_task(reg, task); /* may run Python code: before the insert */
    TaskStat *stat = stat_new(reg, task, group, created);
    if (stat == NULL) {
        return NULL;
    }
    if (register_entry(reg, stat) < 0) {
        stat->finished = 1; /* its callback must not count it */
        Py_DECREF(stat);
        return NULL;
    }
    Py_DECREF(stat); /* the dict holds it */
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

static int
count_step(Registry *reg, TaskStat *stat, long long steps, double dt, double end)
{
    stat->steps += steps;
    stat->secs += dt;
    stat->last = end;
    stat->group->steps += steps;
    stat->group->secs += dt;
    if (stat->epoch != reg->epoch) {
        if (PyList_Append(reg->window, (PyObject *)stat) < 0) {
            return -1;
        }
        stat->epoch = reg->epoch;
        stat->win_steps = 0;
        stat->win_secs = 0.0;
    }
    stat->win_steps += steps;
    stat->win_secs += dt;
    return 0;
}

enum outcome { OK = 0, CANCELLED = 1, FAILED = 2, ABANDONED = 3 };

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

static void
fold(Registry *reg, GroupStat *g, enum outcome how, double lifetime)
{
    g->live -= 1;
    if (how == ABANDONED) {
        g->abandoned += 1;
        reg->abandoned += 1;
        return;
    }
    g->finished += 1;
    reg->finished += 1;
    if (how == CANCELLED) {
        g->cancelled += 1;
    }
    else if (how == FAILED) {
        g->failed += 1;
    }
    if (!isnan(lifetime)) {
        hist_add(g, lifetime);
    }
}

/* Fold a task into its group and drop its entry (last: the entry may be the stat's only
 * reference). */
static void
finish(Registry *reg, TaskStat *stat, enum outcome how, double end)
{
    if (stat->finished) {
        return;
    }
    stat->finished = 1;
    fold(reg, stat->group, how, end - stat->created);
    PyObject *key = key_of(stat->addr);
    if (key == NULL) {
        PyErr_Clear();
        return;
    }
    PyObject *entry = PyDict_GetItemWithError(reg->entries, key);
    if (entry == (PyObject *)stat && PyDict_DelItem(reg->entries, key) < 0) {
        PyErr_Clear();
    }
    PyErr_Clear();
    Py_DECREF(key);
}

/* How a task that is no longer pending ended, or -1 while it is pending. No side effects
 * (Future.exception() would mark the exception as retrieved). */
static int
task_outcome(PyObject *task)
{
    PyObject *state = PyObject_GetAttr(task, str_state);
    if (state == NULL) {
        PyErr_Clear();
        return -1;
    }
    int how = -1;
    if (state == str_pending || PyUnicode_Compare(state, str_pending) == 0) {
        how = -1;
    }
    else if (state == str_cancelled || PyUnicode_Compare(state, str_cancelled) == 0) {
        how = CANCELLED;
    }
    else {
        PyObject *exc = PyObject_GetAttr(task, str_exception);
        how = (exc != NULL && exc != Py_None) ? FAILED : OK;
        Py_XDECREF(exc);
    }
    PyErr_Clear();
    Py_DECREF(state);
    return how;
}

void
vmtop_registry_step(Registry *reg, PyObject *task, double dt, double end)
{
    TaskStat *stat = stat_for(reg, task, NAN);
    if (stat == NULL || count_step(reg, stat, 1, dt, end) < 0) {
        PyErr_Clear(); /* bookkeeping (memory) never reaches the program */
        return;
    }
    int how = task_outcome(task);
    if (how >= 0) {
        finish(reg, stat, (enum outcome)how, end);
    }
}

void
vmtop_registry_other(Registry *reg, double dt)
{
    reg->other_n += 1;
    reg->other_secs += dt;
}

/* ---- Registry type --------------------------------------------------------------------- */

/* The weakref callback of every TaskStat: its task was freed while pending. */
static PyObject *
registry_gone(Registry *reg, PyObject *stat)
{
    if (Py_IS_TYPE(stat, &VmtopTaskStatType) && reg->entries != NULL) {
        finish(reg, (TaskStat *)stat, ABANDONED, vmtop_now());
    }
    Py_RETURN_NONE;
}

static PyMethodDef gone_def = {"_gone", (PyCFunction)registry_gone, METH_O,
                               "weakref callback: fold a task dropped while pending"};

static PyObject *
registry_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *cancelled_error;
    Py_ssize_t max_groups = 2000;
    static char *kwlist[] = {"cancelled_error", "max_groups", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|n:Registry", kwlist, &cancelled_error,
                                     &max_groups)) {
        return NULL;
    }
    Registry *reg = (Registry *)type->tp_alloc(type, 0);
    if (reg == NULL) {
        return NULL;
    }
    reg->entries = PyDict_New();
    reg->groups = PyDict_New();
    reg->window = PyList_New(0);
    reg->other = group_new(Py_None);
    reg->cancelled_error = Py_NewRef(cancelled_error);
    reg->gone = PyCFunction_New(&gone_def, (PyObject *)reg);
    reg->max_groups = max_groups;
    reg->epoch = 1;
    if (reg->entries == NULL || reg->groups == NULL || reg->window == NULL ||
        reg->other == NULL || reg->gone == NULL) {
        Py_DECREF(reg);
        return NULL;
    }
    return (PyObject *)reg;
}

static int
registry_traverse(Registry *reg, visitproc visit, void *arg)
{
    Py_VISIT(reg->entries);
    Py_VISIT(reg->groups);
    Py_VISIT(reg->window);
    Py_VISIT(reg->cancelled_error);
    Py_VISIT(reg->gone);
    return 0;
}

/* Forget every entry (detach): their stats no longer point at tasks. */
static void
drop_entries(Registry *reg)
{
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    while (PyDict_Next(reg->entries, &pos, &key, &value)) {
        ((TaskStat *)value)->finished = 1; /* no longer counted, nor folded */
    }
    PyDict_Clear(reg->entries);
}

static int
registry_clear_refs(Registry *reg)
{
    if (reg->entries != NULL) {
        drop_entries(reg);
    }
    Py_CLEAR(reg->entries);
    Py_CLEAR(reg->groups);
    Py_CLEAR(reg->window);
    Py_CLEAR(reg->cancelled_error);
    Py_CLEAR(reg->other);
    Py_CLEAR(reg->gone);
    return 0;
}

static void
registry_dealloc(Registry *reg)
{
    PyObject_GC_UnTrack(reg);
    registry_clear_refs(reg);
    Py_TYPE(reg)->tp_free((PyObject *)reg);
}

static PyObject *
registry_take(Registry *reg, PyObject *unused)
{
    PyObject *fresh = PyList_New(0);
    if (fresh == NULL) {
        return NULL;
    }
    PyObject *window = reg->window;
    Py_ssize_t n = PyList_GET_SIZE(window);
    PyObject *out = PyList_New(n);
    PyObject *other = Py_BuildValue("[Ld]", reg->other_n, reg->other_secs);
    if (out == NULL || other == NULL) {
        Py_DECREF(fresh);
        Py_XDECREF(out);
        Py_XDECREF(other);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        TaskStat *s = (TaskStat *)PyList_GET_ITEM(window, i);
        PyObject *item = Py_BuildValue("(OLd)", (PyObject *)s, s->win_steps, s->win_secs);
        if (item == NULL) {
            Py_DECREF(fresh);
            Py_DECREF(out);
            Py_DECREF(other);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    /* Nothing above ran Python code: no step happened in between. */
    reg->window = fresh;
    reg->epoch += 1;
    reg->other_n = 0;
    reg->other_secs = 0.0;
    Py_DECREF(window);
    PyObject *result = PyTuple_Pack(2, out, other);
    Py_DECREF(out);
    Py_DECREF(other);
    return result;
}

static PyObject *
registry_stat(Registry *reg, PyObject *task)
{
    PyObject *s = (PyObject *)lookup(reg, task);
    if (s == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    return Py_NewRef(s);
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
    TaskStat *stat = stat_for(reg, task, NAN);
    if (stat == NULL || count_step(reg, stat, steps, seconds, vmtop_now()) < 0) {
        return NULL;
    }
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
    TaskStat **best = PyMem_Calloc((size_t)n, sizeof(TaskStat *));
    if (best == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t have = 0, pos = 0;
    PyObject *key, *value;
    /* A sorted array of the best `n` (descending); insertion keeps it O(N * n) worst case,
     * O(N) when few entries beat the current n-th. */
    while (PyDict_Next(reg->entries, &pos, &key, &value)) {
        TaskStat *s = (TaskStat *)value;
        if (s->finished) {
            continue;
        }
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
    drop_entries(reg);
    Py_RETURN_NONE;
}

static PyObject *
registry_len(Registry *reg, PyObject *unused)
{
    return PyLong_FromSsize_t(PyDict_GET_SIZE(reg->entries));
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
    {"live", (PyCFunction)registry_len, METH_NOARGS, "number of entries (pending tasks)."},
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

/* ---- CountingCoro --------------------------------------------------------------------- */

/* Until its task exists (the factory makes the task after the proxy), a proxy's counts go
 * straight to its group, and an eager first step that ends the task folds it there. */
typedef struct {
    PyObject_HEAD
    PyObject *inner;
    Registry *reg;
    GroupStat *group;
    TaskStat *stat; /* NULL until the factory registered the task */
    double created;
    long long early_steps;
    double early_secs;
    int ended;
} CountingCoro;

static CountingCoro *
coro_wrap(Registry *reg, PyObject *inner, GroupStat *group, double created)
{
    CountingCoro *c = PyObject_GC_New(CountingCoro, &VmtopCountingCoroType);
    if (c == NULL) {
        return NULL;
    }
    c->inner = Py_NewRef(inner);
    c->reg = (Registry *)Py_NewRef((PyObject *)reg);
    c->group = (GroupStat *)Py_NewRef((PyObject *)group);
    c->stat = NULL;
    c->created = created;
    c->early_steps = 0;
    c->early_secs = 0.0;
    c->ended = 0;
    PyObject_GC_Track(c);
    return c;
}

static int
coro_traverse(CountingCoro *c, visitproc visit, void *arg)
{
    Py_VISIT(c->inner);
    Py_VISIT(c->reg);
    Py_VISIT(c->stat);
    return 0;
}

static int
coro_clear(CountingCoro *c)
{
    Py_CLEAR(c->inner);
    Py_CLEAR(c->stat);
    Py_CLEAR(c->group);
    Py_CLEAR(c->reg);
    return 0;
}

static void
coro_dealloc(CountingCoro *c)
{
    PyObject_GC_UnTrack(c);
    coro_clear(c);
    PyObject_GC_Del(c);
}

/* After one send/throw of the inner coroutine: count it, and fold the task when it ended. */
static void
coro_counted(CountingCoro *c, PySendResult status, double t0)
{
    double end = vmtop_now();
    if (c->reg == NULL || c->group == NULL) {
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* the step's own exception goes back untouched */
    enum outcome how = OK;
    if (status == PYGEN_ERROR && type != NULL) {
        how = PyErr_GivenExceptionMatches(type, c->reg->cancelled_error) ? CANCELLED : FAILED;
    }
    if (c->stat != NULL) {
        if (count_step(c->reg, c->stat, 1, end - t0, end) < 0) {
            PyErr_Clear();
        }
        if (status != PYGEN_NEXT) {
            finish(c->reg, c->stat, how, end);
        }
    }
    else if (!c->ended) {
        c->early_steps += 1;
        c->early_secs += end - t0;
        c->group->steps += 1;
        c->group->secs += end - t0;
        if (status != PYGEN_NEXT) {
            c->ended = 1;
            fold(c->reg, c->group, how, end - c->created);
        }
    }
    PyErr_Restore(type, value, tb);
}

/* The factory made the proxy's task: from now on its counts go to a TaskStat. */
static int
coro_registered(CountingCoro *c, PyObject *task)
{
    if (c->ended) {
        return 0; /* finished inside the factory (eager): already folded */
    }
    TaskStat *stat = stat_new(c->reg, task, c->group, c->created);
    if (stat == NULL) {
        return -1;
    }
    stat->steps = c->early_steps;
    stat->secs = c->early_secs;
    if (register_entry(c->reg, stat) < 0) {
        stat->finished = 1;
        Py_DECREF(stat);
        return -1;
    }
    c->stat = stat; /* the proxy's reference */
    return 0;
}

static PySendResult
coro_am_send(CountingCoro *c, PyObject *arg, PyObject **result)
{
    if (c->inner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "counting coroutine was cleared");
        *result = NULL;
        return PYGEN_ERROR;
    }
    double t0 = vmtop_now();
    PySendResult status = PyIter_Send(c->inner, arg, result);
    coro_counted(c, status, t0);
    return status;
}

/* The Python-level send()/__next__: PYGEN_RETURN becomes StopIteration(value). */
static PyObject *
send_result(PySendResult status, PyObject *result)
{
    if (status == PYGEN_NEXT) {
        return result;
    }
    if (status == PYGEN_RETURN) {
        if (result == Py_None) {
            Py_DECREF(result);
            PyErr_SetNone(PyExc_StopIteration);
            return NULL;
        }
        PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
        Py_DECREF(result);
        if (stop != NULL) {
            PyErr_SetObject(PyExc_StopIteration, stop);
            Py_DECREF(stop);
        }
        return NULL;
    }
    return NULL;
}

static PyObject *
coro_send(CountingCoro *c, PyObject *arg)
{
    PyObject *result = NULL;
    PySendResult status = coro_am_send(c, arg, &result);
    return send_result(status, result);
}

static PyObject *
coro_iternext(CountingCoro *c)
{
    PyObject *result = NULL;
    PySendResult status = coro_am_send(c, Py_None, &result);
    if (status == PYGEN_RETURN && result == Py_None) {
        Py_DECREF(result);
        return NULL; /* StopIteration without a value */
    }
    return send_result(status, result);
}

static PyObject *
coro_throw(CountingCoro *c, PyObject *args)
{
    if (c->inner == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "counting coroutine was cleared");
        return NULL;
    }
    PyObject *meth = PyObject_GetAttr(c->inner, str_throw);
    if (meth == NULL) {
        return NULL;
    }
    double t0 = vmtop_now();
    PyObject *result = PyObject_Call(meth, args, NULL);
    Py_DECREF(meth);
    PySendResult status = PYGEN_NEXT;
    if (result == NULL) {
        status = PyErr_ExceptionMatches(PyExc_StopIteration) ? PYGEN_RETURN : PYGEN_ERROR;
    }
    coro_counted(c, status, t0);
    return result;
}

static PyObject *
coro_close(CountingCoro *c, PyObject *unused)
{
    if (c->inner == NULL) {
        Py_RETURN_NONE;
    }
    return PyObject_CallMethodNoArgs(c->inner, str_close);
}

static PyObject *
coro_await(CountingCoro *c)
{
    return Py_NewRef((PyObject *)c);
}

/* Anything else (cr_frame, cr_await, cr_code, __qualname__, ...) is the inner coroutine's. */
static PyObject *
coro_getattro(CountingCoro *c, PyObject *name)
{
    PyObject *v = PyObject_GenericGetAttr((PyObject *)c, name);
    if (v != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError) || c->inner == NULL) {
        return v;
    }
    PyErr_Clear();
    return PyObject_GetAttr(c->inner, name);
}

static PyObject *
coro_repr(CountingCoro *c)
{
    return c->inner != NULL ? PyObject_Repr(c->inner) : PyUnicode_FromString("<cleared>");
}

static PyAsyncMethods coro_async = {
    .am_await = (unaryfunc)coro_await,
    .am_send = (sendfunc)coro_am_send,
};

static PyMethodDef coro_methods[] = {
    {"send", (PyCFunction)coro_send, METH_O, "send(value): one step of the inner coroutine."},
    {"throw", (PyCFunction)coro_throw, METH_VARARGS, "throw(exc): into the inner coroutine."},
    {"close", (PyCFunction)coro_close, METH_NOARGS, "close the inner coroutine."},
    {NULL},
};

static PyMemberDef coro_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(CountingCoro, inner), READONLY, "the inner coroutine"},
    {"_vmtop_stat", T_OBJECT, offsetof(CountingCoro, stat), READONLY, "its TaskStat, or None"},
    {NULL},
};

PyTypeObject VmtopCountingCoroType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.CountingCoro",
    .tp_doc = "A coroutine that counts the steps and step time of the one it wraps.",
    .tp_basicsize = sizeof(CountingCoro),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_traverse = (traverseproc)coro_traverse,
    .tp_clear = (inquiry)coro_clear,
    .tp_dealloc = (destructor)coro_dealloc,
    .tp_as_async = &coro_async,
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)coro_iternext,
    .tp_getattro = (getattrofunc)coro_getattro,
    .tp_repr = (reprfunc)coro_repr,
    .tp_methods = coro_methods,
    .tp_members = coro_members,
};

/* ---- TaskFactory ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Registry *reg;
    PyObject *original;  /* the loop's factory before ours, or None */
    PyObject *task_type; /* asyncio.Task, when original is None */
    int wrap;            /* wrap coroutines in CountingCoro (loops whose Handle we cannot hook) */
} TaskFactory;

/* Whether `coro` already ran a step (an eager task factory started it). */
static int
coro_started(PyObject *coro)
{
    PyObject *susp = PyObject_GetAttr(coro, str_cr_suspended);
    if (susp != NULL) {
        int r = PyObject_IsTrue(susp);
        Py_DECREF(susp);
        if (r > 0) {
            return 1;
        }
    }
    PyErr_Clear();
    PyObject *frame = PyObject_GetAttr(coro, str_cr_frame);
    if (frame == NULL) {
        PyErr_Clear();
        return 0;
    }
    int gone = frame == Py_None;
    Py_DECREF(frame);
    return gone;
}

static PyObject *
make_task(TaskFactory *f, PyObject *loop, PyObject *coro, PyObject *const *kwvalues,
          PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    if (f->original != Py_None) {
        PyObject *stack[2 + 16];
        if (nkw > 16) {
            PyErr_SetString(PyExc_TypeError, "too many keyword arguments");
            return NULL;
        }
        stack[0] = loop;
        stack[1] = coro;
        for (Py_ssize_t i = 0; i < nkw; i++) {
            stack[2 + i] = kwvalues[i];
        }
        return PyObject_Vectorcall(f->original, stack, 2, kwnames);
    }
    PyObject *kwargs = PyDict_New();
    if (kwargs == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), kwvalues[i]) < 0) {
            Py_DECREF(kwargs);
            return NULL;
        }
    }
    PyObject *task = NULL;
    PyObject *args = PyTuple_Pack(1, coro);
    if (args != NULL && PyDict_SetItem(kwargs, str_loop, loop) == 0) {
        task = PyObject_Call(f->task_type, args, kwargs);
    }
    Py_XDECREF(args);
    Py_DECREF(kwargs);
    return task;
}

static PyObject *
factory_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    TaskFactory *f = (TaskFactory *)callable;
    if (PyVectorcall_NARGS(nargsf) != 2) {
        PyErr_SetString(PyExc_TypeError, "task factory takes (loop, coro, **kwargs)");
        return NULL;
    }
    PyObject *loop = args[0], *coro = args[1];
    Registry *reg = f->reg;
    double t0 = vmtop_now();
    if (f->wrap) {
        CountingCoro *proxy = coro_wrap(reg, coro, group_for_coro(reg, coro), t0);
        if (proxy == NULL) {
            return NULL;
        }
        proxy->group->live += 1;
        proxy->group->started += 1;
        reg->created += 1;
        PyObject *task = make_task(f, loop, (PyObject *)proxy, args + 2, kwnames);
        if (task == NULL) {
            if (!proxy->ended) {
                proxy->ended = 1;
                fold(reg, proxy->group, ABANDONED, NAN);
            }
        }
        else if (coro_registered(proxy, task) < 0) {
            PyErr_Clear();
        }
        Py_DECREF(proxy);
        return task;
    }
    PyObject *task = make_task(f, loop, coro, args + 2, kwnames);
    if (task == NULL) {
        return NULL;
    }
    double end = vmtop_now();
    TaskStat *stat = stat_for(reg, task, t0);
    if (stat == NULL) {
        PyErr_Clear();
        return task;
    }
    if (coro_started(coro)) { /* the first step ran inside the factory (eager) */
        if (count_step(reg, stat, 1, end - t0, end) < 0) {
            PyErr_Clear();
        }
        int how = task_outcome(task);
        if (how >= 0) {
            finish(reg, stat, (enum outcome)how, end);
        }
    }
    return task;
}

static PyObject *
factory_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *reg, *original, *task_type;
    int wrap;
    static char *kwlist[] = {"registry", "original", "task_type", "wrap", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OOp:TaskFactory", kwlist,
                                     &VmtopRegistryType, &reg, &original, &task_type, &wrap)) {
        return NULL;
    }
    TaskFactory *f = (TaskFactory *)type->tp_alloc(type, 0);
    if (f == NULL) {
        return NULL;
    }
    f->vectorcall = factory_vectorcall;
    f->reg = (Registry *)Py_NewRef(reg);
    f->original = Py_NewRef(original);
    f->task_type = Py_NewRef(task_type);
    f->wrap = wrap;
    return (PyObject *)f;
}

static int
factory_traverse(TaskFactory *f, visitproc visit, void *arg)
{
    Py_VISIT(f->reg);
    Py_VISIT(f->original);
    Py_VISIT(f->task_type);
    return 0;
}

static int
factory_clear(TaskFactory *f)
{
    Py_CLEAR(f->reg);
    Py_CLEAR(f->original);
    Py_CLEAR(f->task_type);
    return 0;
}

static void
factory_dealloc(TaskFactory *f)
{
    PyObject_GC_UnTrack(f);
    factory_clear(f);
    Py_TYPE(f)->tp_free((PyObject *)f);
}

static PyMemberDef factory_members[] = {
    {"_vmtop_original", T_OBJECT, offsetof(TaskFactory, original), READONLY,
     "the factory this one replaced (None: the default)"},
    {"wraps", T_INT, offsetof(TaskFactory, wrap), READONLY, "wraps coroutines to count steps"},
    {NULL},
};

PyTypeObject VmtopTaskFactoryType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.TaskFactory",
    .tp_doc = "A loop's task factory that registers every task it makes.",
    .tp_basicsize = sizeof(TaskFactory),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_new = factory_new,
    .tp_traverse = (traverseproc)factory_traverse,
    .tp_clear = (inquiry)factory_clear,
    .tp_dealloc = (destructor)factory_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(TaskFactory, vectorcall),
    .tp_members = factory_members,
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
        intern(&str_gi_code, "gi_code") < 0 || intern(&str_cr_frame, "cr_frame") < 0 ||
        intern(&str_cr_suspended, "cr_suspended") < 0 || intern(&str_loop, "loop") < 0 ||
        intern(&str_throw, "throw") < 0 || intern(&str_close, "close") < 0) {
        return -1;
    }
    VmtopTaskStatType.tp_base = &_PyWeakref_RefType;
    VmtopTaskStatType.tp_traverse = _PyWeakref_RefType.tp_traverse;
    VmtopTaskStatType.tp_clear = _PyWeakref_RefType.tp_clear;
    if (PyType_Ready(&VmtopGroupStatType) < 0 || PyType_Ready(&VmtopTaskStatType) < 0 ||
        PyType_Ready(&VmtopRegistryType) < 0 || PyType_Ready(&VmtopCountingCoroType) < 0 ||
        PyType_Ready(&VmtopTaskFactoryType) < 0) {
        return -1;
    }
    return 0;
}
