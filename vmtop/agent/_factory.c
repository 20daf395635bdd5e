/* The task factory vmtop puts on each loop while a client is attached, and the counting
 * coroutine it wraps new coroutines in where no Handle._run hook can see steps (uvloop).
 *
 * TaskFactory(registry, original, task_type, wrap): calls the loop's previous factory (or
 * task_type(coro, loop=loop, **kwargs)), then registers the task with its creation time
 * (lifetimes, tasks created per second). A first step run inside the factory (an eager task
 * factory, 3.12+) is timed and counted. With `wrap`, the coroutine is first wrapped in a
 * CountingCoro, whose am_send/throw time and count every step into the task's TaskStat, and
 * fold the task into its group at the step that ends it.
 *
 * A Trio task's coroutine is wrapped the same way, by the Trio adapter (trio_tasks.py), through
 * CountingCoro(registry, coro, task): Trio calls task.coro.send/throw for each step.
 *
 * A CountingCoro stands in for the coroutine everywhere (cr_frame, cr_await, cr_code,
 * __qualname__ are the inner coroutine's; repr too), so asyncio's task repr, get_stack() and
 * vmtop's own await-chain walk see through it.
 */
#include "_registry.h"

#include <math.h>
#include <structmember.h>

static PyObject *str_cr_frame, *str_cr_suspended, *str_loop, *str_throw, *str_close;
static PyObject *str_cr_await, *str_cr_code, *str_cr_running, *str_get_coro;

/* ---- CountingCoro --------------------------------------------------------------------- */

/* A proxy made by the factory counts its task by itself: the factory counts the task into
 * its group when it makes it (live, started), each step adds to the proxy and the group, and
 * the step that ends the task folds it into the group. Nothing else is allocated, so a
 * request task that ends before the next refresh costs one object. A task still pending at
 * a refresh (take() finds it stepped) or asked for (stat()) gets a TaskStat then, and counts
 * into it from there on (proxy_register). Until then the proxy holds its task strongly, to
 * make that TaskStat's weak reference: a cycle (task -> proxy -> task) that the proxy's
 * traverse lets the collector free, and that ends at the registration or the last step.
 * A task freed while pending and unregistered is folded as abandoned when its proxy goes. */
typedef struct {
    PyObject_HEAD
    PyObject *inner;
    Registry *reg;
    GroupStat *group;
    TaskStat *stat;   /* NULL until the task is registered */
    PyObject *task;   /* until then, the task (factory-made proxies) */
    VmtopLink link;   /* in reg->fresh while pending and unregistered */
    double created;
    double last;      /* end of the last step (NaN: none) */
    long long steps;  /* before the registration (the TaskStat takes them over) */
    double secs;
    int counted;      /* the factory counted the task into its group */
    int ended;        /* folded into its group without a TaskStat */
} CountingCoro;

#define PROXY_OF(l) ((CountingCoro *)((char *)(l) - offsetof(CountingCoro, link)))

static void
link_tail(VmtopLink *head, VmtopLink *l)
{
    l->prev = head->prev;
    l->next = head;
    head->prev->next = l;
    head->prev = l;
}

static void
fresh_unlink(CountingCoro *c)
{
    if (c->link.next != NULL) {
        c->link.prev->next = c->link.next;
        c->link.next->prev = c->link.prev;
        c->link.prev = c->link.next = NULL;
    }
}

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
    c->task = NULL;
    c->link.prev = c->link.next = NULL;
    c->created = created;
    c->last = NAN;
    c->steps = 0;
    c->secs = 0.0;
    c->counted = 0;
    c->ended = 0;
    PyObject_GC_Track(c);
    return c;
}

static int
coro_traverse(CountingCoro *c, visitproc visit, void *arg)
{
    Py_VISIT(c->inner);
    Py_VISIT(c->reg);
    Py_VISIT(c->task);
    return 0;
}

static int
coro_clear(CountingCoro *c)
{
    fresh_unlink(c);
    if (c->counted && !c->ended && c->stat == NULL && c->reg != NULL && c->group != NULL) {
        c->ended = 1; /* its task was freed while pending (or the proxy dropped) */
        vmtop_fold(c->reg, c->group, VMTOP_ABANDONED, NAN);
    }
    Py_CLEAR(c->task);
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
    enum vmtop_outcome how = VMTOP_OK;
    if (status == PYGEN_ERROR) {
        PyObject *exc = PyErr_Occurred(); /* borrowed: the step's exception stays set */
        how = (exc != NULL && PyErr_GivenExceptionMatches(exc, c->reg->cancelled_error))
                  ? VMTOP_CANCELLED
                  : VMTOP_FAILED;
    }
    if (c->stat != NULL) {
        vmtop_count(c->reg, c->stat, 1, end - t0, end);
        if (status != PYGEN_NEXT) {
            vmtop_finish(c->reg, c->stat, how, end);
        }
        return;
    }
    if (c->ended) {
        return;
    }
    c->steps += 1;
    c->secs += end - t0;
    c->last = end;
    c->group->steps += 1;
    c->group->secs += end - t0;
    if (status != PYGEN_NEXT) {
        c->ended = 1;
        fresh_unlink(c);
        vmtop_fold(c->reg, c->group, how, end - c->created);
        PyObject *task = c->task; /* the caller of this step holds the task too */
        c->task = NULL;
        Py_XDECREF(task);
    }
}

/* The TaskStat of a pending proxy's task, made now with its counts so far (which also go into
 * the window: nobody took them yet). Borrowed; NULL with an error set. */
static TaskStat *
proxy_register(CountingCoro *c)
{
    Registry *reg = c->reg;
    fresh_unlink(c);
    TaskStat *stat = vmtop_stat_register(reg, c->task, c->group, c->created, 1);
    if (stat == NULL) {
        if (!reg->closed) {
            link_tail(&reg->fresh, &c->link); /* try again at the next take() */
        }
        return NULL;
    }
    stat->steps = c->steps;
    stat->secs = c->secs;
    stat->last = c->last;
    if (c->steps > 0) {
        vmtop_window_put(reg, stat, c->steps, c->secs);
    }
    c->stat = (TaskStat *)Py_NewRef((PyObject *)stat);
    PyObject *task = c->task; /* the TaskStat's weak reference follows the task from now on */
    c->task = NULL;
    Py_DECREF(task);
    return stat;
}

int
vmtop_fresh_flush(Registry *reg)
{
    /* First move the proxies that stepped to a list of our own (pointer moves only), then
     * register them one at a time: an allocation can run the collector, which can free
     * other proxies (and unlink them from whichever list they are on). */
    VmtopLink stepped = {&stepped, &stepped};
    VmtopLink *head = &reg->fresh;
    for (VmtopLink *l = head->next; l != head;) {
        VmtopLink *next = l->next;
        if (PROXY_OF(l)->steps > 0) {
            l->prev->next = l->next;
            l->next->prev = l->prev;
            link_tail(&stepped, l);
        }
        l = next;
    }
    int rc = 0;
    while (stepped.next != &stepped) {
        CountingCoro *c = PROXY_OF(stepped.next);
        if (rc < 0) {
            fresh_unlink(c);
            link_tail(head, &c->link);
            continue;
        }
        Py_INCREF(c);
        if (proxy_register(c) == NULL) {
            rc = -1;
        }
        Py_DECREF(c);
    }
    return rc;
}

TaskStat *
vmtop_fresh_stat(Registry *reg, PyObject *task)
{
    if (reg->fresh.next == &reg->fresh) {
        return NULL;
    }
    PyObject *coro = PyObject_CallMethodNoArgs(task, str_get_coro);
    if (coro == NULL) {
        PyErr_Clear();
        return NULL;
    }
    TaskStat *stat = NULL;
    if (Py_IS_TYPE(coro, &VmtopCountingCoroType)) {
        CountingCoro *c = (CountingCoro *)coro;
        if (c->reg == reg && c->task == task && c->link.next != NULL) {
            stat = proxy_register(c);
        }
    }
    Py_DECREF(coro);
    return stat;
}

void
vmtop_fresh_drop(Registry *reg)
{
    VmtopLink *head = &reg->fresh;
    while (head->next != head) {
        CountingCoro *c = PROXY_OF(head->next);
        fresh_unlink(c);
        PyObject *task = c->task; /* may be the last reference: then the task and proxy go */
        c->task = NULL;
        Py_XDECREF(task);
    }
}

/* The factory made the proxy's task: from now on its counts go to a TaskStat. */
static int
coro_registered(CountingCoro *c, PyObject *task)
{
    TaskStat *stat = vmtop_stat_register(c->reg, task, c->group, c->created, 0);
    if (stat == NULL) {
        return -1;
    }
    c->stat = (TaskStat *)Py_NewRef((PyObject *)stat);
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

/* CountingCoro(registry, coro, task, new=False): a proxy for `coro`, the coroutine of
 * `task`, whose steps count into a TaskStat registered for `task` now. For runtimes that
 * drive a coroutine object held by the task (Trio: the adapter puts the proxy in place of
 * `task.coro` and takes it out at the detach). `new`: the task was just made (its creation
 * time is now), else it is older than the attach. The caller wraps a task once per registry. */
static PyObject *
coro_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *reg, *inner, *task;
    int fresh = 0;
    static char *kwlist[] = {"registry", "coro", "task", "new", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO|p:CountingCoro", kwlist,
                                     &VmtopRegistryType, &reg, &inner, &task, &fresh)) {
        return NULL;
    }
    if (!PyCoro_CheckExact(inner)) {
        PyErr_Format(PyExc_TypeError, "CountingCoro wraps a coroutine object, not %.100s",
                     Py_TYPE(inner)->tp_name);
        return NULL;
    }
    Registry *r = (Registry *)reg;
    double created = fresh ? vmtop_now() : NAN;
    CountingCoro *c = coro_wrap(r, inner, vmtop_group_for_coro(r, inner), created);
    if (c == NULL) {
        return NULL;
    }
    if (coro_registered(c, task) < 0) {
        Py_DECREF(c);
        return NULL;
    }
    return (PyObject *)c;
}

/* The coroutine attributes read often (Trio: Task.iter_await_frames, its KeyboardInterrupt
 * check, inspect.getcoroutinestate(task.coro) at each Lock acquire on trio 0.25+): the inner
 * coroutine's, found without the failed generic lookup (an AttributeError made and dropped)
 * that coro_getattro does for the others. `name` points to the interned attribute name. */
static PyObject *
coro_forward(CountingCoro *c, void *name)
{
    if (c->inner == NULL) {
        PyErr_SetString(PyExc_AttributeError, "counting coroutine was cleared");
        return NULL;
    }
    return PyObject_GetAttr(c->inner, *(PyObject **)name);
}

static PyGetSetDef coro_getset[] = {
    {"cr_frame", (getter)coro_forward, NULL, "the inner coroutine's", &str_cr_frame},
    {"cr_await", (getter)coro_forward, NULL, "the inner coroutine's", &str_cr_await},
    {"cr_code", (getter)coro_forward, NULL, "the inner coroutine's", &str_cr_code},
    {"cr_running", (getter)coro_forward, NULL, "the inner coroutine's", &str_cr_running},
    {"cr_suspended", (getter)coro_forward, NULL, "the inner coroutine's", &str_cr_suspended},
    {NULL},
};

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
    .tp_new = coro_new,
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
    .tp_getset = coro_getset,
};

/* ---- TaskFactory ---------------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    Registry *reg;
    PyObject *original;  /* the loop's factory before ours, or None */
    PyObject *task_type; /* asyncio.Task, when original is None */
    PyObject *kw_in;     /* the last keyword names seen, and the same plus "loop" */
    PyObject *kw_out;
    int wrap;            /* wrap coroutines in CountingCoro (loops whose Handle we cannot hook) */
} TaskFactory;

/* Whether `coro` already ran a step (an eager task factory started it; 3.12+). */
static int
coro_started(PyObject *coro)
{
#if PY_VERSION_HEX < 0x030C0000
    return 0;
#endif
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

/* `kwnames` plus "loop" (cached: a call site passes the same tuple every time). */
static PyObject *
names_with_loop(TaskFactory *f, PyObject *kwnames)
{
    if (kwnames == f->kw_in && f->kw_out != NULL) {
        return f->kw_out;
    }
    Py_ssize_t n = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *out = PyTuple_New(n + 1);
    if (out == NULL) {
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyTuple_SET_ITEM(out, i, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
    }
    PyTuple_SET_ITEM(out, n, Py_NewRef(str_loop));
    Py_XSETREF(f->kw_in, Py_XNewRef(kwnames));
    Py_XSETREF(f->kw_out, out);
    return out;
}

#define MAX_KW 16

static PyObject *
make_task(TaskFactory *f, PyObject *loop, PyObject *coro, PyObject *const *kwvalues,
          PyObject *kwnames)
{
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    PyObject *stack[2 + MAX_KW];
    if (nkw > MAX_KW) {
        PyErr_SetString(PyExc_TypeError, "too many keyword arguments");
        return NULL;
    }
    if (f->original != Py_None) { /* original(loop, coro, **kwargs) */
        stack[0] = loop;
        stack[1] = coro;
        for (Py_ssize_t i = 0; i < nkw; i++) {
            stack[2 + i] = kwvalues[i];
        }
        return PyObject_Vectorcall(f->original, stack, 2, kwnames);
    }
    PyObject *names = names_with_loop(f, kwnames); /* task_type(coro, **kwargs, loop=loop) */
    if (names == NULL) {
        return NULL;
    }
    stack[0] = coro;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        stack[1 + i] = kwvalues[i];
    }
    stack[1 + nkw] = loop;
    return PyObject_Vectorcall(f->task_type, stack, 1, names);
}

static PyObject *
factory_wrapped(TaskFactory *f, PyObject *loop, PyObject *coro, PyObject *const *kwvalues,
                PyObject *kwnames, double t0)
{
    Registry *reg = f->reg;
    GroupStat *group = vmtop_group_for_coro(reg, coro);
    CountingCoro *proxy = coro_wrap(reg, coro, group, t0);
    if (proxy == NULL) {
        return NULL;
    }
    proxy->counted = 1; /* counted now; registered later, if ever (see CountingCoro) */
    group->live += 1;
    group->started += 1;
    reg->created += 1;
    PyObject *task = make_task(f, loop, (PyObject *)proxy, kwvalues, kwnames);
    if (task == NULL) {
        if (!proxy->ended) { /* no task was made: uncount it */
            proxy->ended = 1;
            group->live -= 1;
            group->started -= 1;
            reg->created -= 1;
        }
    }
    else if (!proxy->ended && !reg->closed) { /* (an eager first step may have ended it) */
        proxy->task = Py_NewRef(task);
        link_tail(&reg->fresh, &proxy->link);
    }
    Py_DECREF(proxy);
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
        return factory_wrapped(f, loop, coro, args + 2, kwnames, t0);
    }
    PyObject *task = make_task(f, loop, coro, args + 2, kwnames);
    if (task == NULL) {
        return NULL;
    }
    TaskStat *stat = vmtop_stat_register(reg, task, vmtop_group_for_coro(reg, coro), t0, 0);
    if (stat == NULL) {
        PyErr_Clear();
        return task;
    }
    /* Only another factory (asyncio.eager_task_factory) or eager_start=True can have run
     * the first step already. */
    if ((f->original != Py_None || kwnames != NULL) && coro_started(coro)) {
        double end = vmtop_now();
        vmtop_count(reg, stat, 1, end - t0, end);
        int how = vmtop_task_outcome(reg, task);
        if (how >= 0) {
            vmtop_finish(reg, stat, (enum vmtop_outcome)how, end);
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
    f->kw_in = f->kw_out = NULL;
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
    Py_CLEAR(f->kw_in);
    Py_CLEAR(f->kw_out);
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

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

int
vmtop_factory_init_types(void)
{
    if (intern(&str_cr_frame, "cr_frame") < 0 || intern(&str_cr_suspended, "cr_suspended") < 0 ||
        intern(&str_loop, "loop") < 0 || intern(&str_throw, "throw") < 0 ||
        intern(&str_close, "close") < 0 || intern(&str_cr_await, "cr_await") < 0 ||
        intern(&str_cr_code, "cr_code") < 0 || intern(&str_cr_running, "cr_running") < 0 ||
        intern(&str_get_coro, "get_coro") < 0) {
        return -1;
    }
    if (PyType_Ready(&VmtopCountingCoroType) < 0 || PyType_Ready(&VmtopTaskFactoryType) < 0) {
        return -1;
    }
    return 0;
}
