/* The agent's hooks in C: the step hook (task steps and the wall time inside them) and the
 * marking dequeue hook (MarkedCall, at the end of this file).
 *
 * `StepHook(handle_type, original, task_types, report, registry)` stands in for
 * `asyncio.events.Handle._run` while a client is attached. It behaves like a Python function
 * stored on the class (Py_TPFLAGS_METHOD_DESCRIPTOR), so `handle._run()` calls it with the
 * handle and no bound-method object is made. For a Handle it does what Handle._run does,
 * `self._context.run(self._callback, *self._args)`, timed; an exception other than
 * SystemExit/KeyboardInterrupt goes to `report(handle, exc)` (step_hooks.py's copy of
 * Handle._run's except branch). Anything unexpected (not a Handle, a slot unset) calls
 * `original(handle)` instead.
 *
 * Counts go to a Registry (_registry.c): one step and its seconds for the Task the callback is
 * bound to (`callback.__self__`), else the registry's "other" pair. The registry folds a task
 * into its group at the step that finishes it, so nothing here keeps a task alive.
 *
 * Why C: the same hook in Python costs ~3,400 instructions per step in the worst-case
 * workload (22,000 per step without a hook); see docs/benchmarks.md.
 */
#include "_registry.h"

#include <structmember.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyTypeObject *handle_type;
    PyObject *original;   /* the Handle._run we replaced */
    PyObject *task_types; /* tuple of Task classes */
    PyObject *report;     /* report(handle, exc): Handle._run's except branch */
    Registry *registry;   /* where steps are counted */
    Py_ssize_t off_callback, off_args, off_context; /* slot offsets in Handle */
} StepHook;

static PyObject *str_self;

static int
is_task(StepHook *self, PyObject *owner)
{
    PyObject *types = self->task_types;
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (Py_TYPE(owner) == (PyTypeObject *)PyTuple_GET_ITEM(types, i)) {
            return 1;
        }
    }
    /* A subclass of Task is a subtype: no __instancecheck__ dispatch for the I/O callbacks
     * (protocols, transports) that are most of what is not a task. */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyType_IsSubtype(Py_TYPE(owner), (PyTypeObject *)PyTuple_GET_ITEM(types, i))) {
            return 1;
        }
    }
    return 0;
}

static void
record(StepHook *self, PyObject *owner, double dt, double end)
{
    if (owner == NULL || !is_task(self, owner)) {
        vmtop_registry_other(self->registry, dt);
        return;
    }
    if (PyErr_Occurred() == NULL) {
        vmtop_registry_step(self->registry, owner, dt, end);
        return;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb); /* the callback's own exception goes back untouched */
    vmtop_registry_step(self->registry, owner, dt, end);
    PyErr_Restore(type, value, tb);
}

static inline PyObject *
slot(PyObject *obj, Py_ssize_t offset)
{
    return *(PyObject **)((char *)obj + offset);
}

/* The object the callback is bound to (new reference), or NULL. */
static PyObject *
owner_of(PyObject *cb)
{
    if (PyCFunction_Check(cb)) {
        return Py_XNewRef(PyCFunction_GET_SELF(cb));
    }
    if (PyMethod_Check(cb)) {
        return Py_NewRef(PyMethod_GET_SELF(cb));
    }
    if (PyFunction_Check(cb)) {
        return NULL; /* a plain function belongs to no task */
    }
    /* Without raising AttributeError for callables that have no __self__ (a partial, a
     * callable object): making and clearing an exception costs ~1 us per callback. */
    PyObject *owner = NULL;
#if PY_VERSION_HEX >= 0x030D0000
    if (PyObject_GetOptionalAttr(cb, str_self, &owner) < 0) {
        PyErr_Clear();
    }
#else
    if (_PyObject_LookupAttr(cb, str_self, &owner) < 0) {
        PyErr_Clear();
    }
#endif
    return owner;
}

/* Handle._run on a handle we cannot read directly: time the original. */
static PyObject *
run_original(StepHook *self, PyObject *handle)
{
    double t0 = vmtop_now();
    PyObject *result = PyObject_CallOneArg(self->original, handle);
    double end = vmtop_now();
    record(self, NULL, end - t0, end);
    return result;
}

static PyObject *
stephook_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    StepHook *self = (StepHook *)callable;
    if (PyVectorcall_NARGS(nargsf) != 1 || kwnames != NULL) {
        PyErr_SetString(PyExc_TypeError, "Handle._run() takes no arguments");
        return NULL;
    }
    PyObject *handle = args[0];
    if (!PyObject_TypeCheck(handle, self->handle_type)) {
        return run_original(self, handle);
    }
    PyObject *context = slot(handle, self->off_context);
    PyObject *cb = slot(handle, self->off_callback);
    PyObject *cb_args = slot(handle, self->off_args);
    if (context == NULL || cb == NULL || cb_args == NULL || !PyTuple_Check(cb_args)) {
        return run_original(self, handle);
    }
    /* The callback may cancel its own handle (slots set to None): hold what we use. */
    Py_INCREF(context);
    Py_INCREF(cb);
    Py_INCREF(cb_args);
    PyObject *owner = owner_of(cb);

    Py_ssize_t n = PyTuple_GET_SIZE(cb_args);
    double t0 = vmtop_now();
    PyObject *result = NULL;
    if (PyContext_Enter(context) == 0) {
        result = PyObject_Vectorcall(cb, &PyTuple_GET_ITEM(cb_args, 0), n, NULL);
        if (PyContext_Exit(context) < 0) {
            Py_CLEAR(result);
        }
    }
    double end = vmtop_now();
    record(self, owner, end - t0, end);
    Py_XDECREF(owner);
    Py_DECREF(context);
    Py_DECREF(cb_args);
    Py_DECREF(cb);

    if (result != NULL) {
        Py_DECREF(result);
        Py_RETURN_NONE;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) ||
        PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return NULL;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL) {
        PyException_SetTraceback(value, tb);
    }
    PyObject *reported = NULL;
    if (value != NULL) {
        reported = PyObject_CallFunctionObjArgs(self->report, handle, value, NULL);
    }
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (reported == NULL) {
        return NULL;
    }
    Py_DECREF(reported);
    Py_RETURN_NONE;
}

static int
member_offset(PyTypeObject *type, const char *name, Py_ssize_t *offset)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name); /* borrowed */
    if (descr == NULL || !Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot", type->tp_name, name);
        return -1;
    }
    PyMemberDef *def = ((PyMemberDescrObject *)descr)->d_member;
    if (def->type != T_OBJECT_EX && def->type != T_OBJECT) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
        return -1;
    }
    *offset = def->offset;
    return 0;
}

static PyObject *
stephook_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *handle_type, *original, *task_types, *report, *registry;
    static char *kwlist[] = {"handle_type", "original", "task_types", "report", "registry", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!OO!OO!:StepHook", kwlist, &PyType_Type,
                                     &handle_type, &original, &PyTuple_Type, &task_types,
                                     &report, &VmtopRegistryType, &registry)) {
        return NULL;
    }
    Py_ssize_t off_callback, off_args, off_context;
    PyTypeObject *ht = (PyTypeObject *)handle_type;
    if (member_offset(ht, "_callback", &off_callback) < 0 ||
        member_offset(ht, "_args", &off_args) < 0 ||
        member_offset(ht, "_context", &off_context) < 0) {
        return NULL;
    }
    StepHook *self = (StepHook *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = stephook_vectorcall;
    self->handle_type = (PyTypeObject *)Py_NewRef(handle_type);
    self->original = Py_NewRef(original);
    self->task_types = Py_NewRef(task_types);
    self->report = Py_NewRef(report);
    self->registry = (Registry *)Py_NewRef(registry);
    self->off_callback = off_callback;
    self->off_args = off_args;
    self->off_context = off_context;
    return (PyObject *)self;
}

static int
stephook_traverse(StepHook *self, visitproc visit, void *arg)
{
    Py_VISIT(self->handle_type);
    Py_VISIT(self->original);
    Py_VISIT(self->task_types);
    Py_VISIT(self->report);
    Py_VISIT(self->registry);
    return 0;
}

static int
stephook_clear(StepHook *self)
{
    Py_CLEAR(self->handle_type);
    Py_CLEAR(self->original);
    Py_CLEAR(self->task_types);
    Py_CLEAR(self->report);
    Py_CLEAR(self->registry);
    return 0;
}

static void
stephook_dealloc(StepHook *self)
{
    PyObject_GC_UnTrack(self);
    stephook_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Read as an attribute of a Handle, it binds like a function. */
static PyObject *
stephook_descr_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

static PyMemberDef stephook_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(StepHook, original), READONLY,
     "the Handle._run this hook replaces"},
    {NULL},
};

static PyTypeObject StepHookType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.StepHook",
    .tp_doc = "Handle._run replacement that counts task steps and their wall time.",
    .tp_basicsize = sizeof(StepHook),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = stephook_new,
    .tp_traverse = (traverseproc)stephook_traverse,
    .tp_clear = (inquiry)stephook_clear,
    .tp_dealloc = (destructor)stephook_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(StepHook, vectorcall),
    .tp_descr_get = stephook_descr_get,
    .tp_members = stephook_members,
};


/* MarkedCall(original, sample): calls original(*args, **kwargs) and returns its result; after a
 * successful call whose first argument (the queue) is not marked yet, it marks that object and
 * calls sample(args[0]), ignoring what that returns or raises. reset() clears every mark (O(1):
 * a generation number). Stands in for asyncio.Queue.get_nowait while a client is attached
 * (mailbox.py): each queue's first dequeue after a refresh tells who consumes it, every later
 * one costs a probe of this table. The table holds addresses only, never a reference: a queue
 * that dies leaves a stale entry that the next rehash drops (and a new object at the same
 * address is at worst sampled at the next refresh instead of this one). */
typedef struct {
    void *ptr;
    unsigned long long gen;
} Mark;

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *original;
    PyObject *sample;
    Mark *table;
    size_t cap;  /* a power of two, or 0 */
    size_t used; /* slots holding an address, of this generation or an older one */
    unsigned long long gen;
    unsigned long long samples; /* calls of sample() so far */
} MarkedCall;

static inline size_t
mark_hash(void *p, size_t mask)
{
    unsigned long long h = (unsigned long long)(uintptr_t)p * 0x9E3779B97F4A7C15ULL;
    return (size_t)(h >> 32) & mask;
}

/* Keep the marks of this generation in a table at most a quarter full. */
static int
marks_rehash(MarkedCall *self)
{
    size_t live = 0;
    for (size_t i = 0; i < self->cap; i++) {
        if (self->table[i].ptr != NULL && self->table[i].gen == self->gen) {
            live++;
        }
    }
    size_t cap = 64;
    while (cap < 4 * (live + 1)) {
        cap <<= 1;
    }
    Mark *table = PyMem_Calloc(cap, sizeof(Mark));
    if (table == NULL) {
        return -1;
    }
    size_t mask = cap - 1;
    for (size_t i = 0; i < self->cap; i++) {
        Mark m = self->table[i];
        if (m.ptr == NULL || m.gen != self->gen) {
            continue;
        }
        size_t j = mark_hash(m.ptr, mask);
        while (table[j].ptr != NULL) {
            j = (j + 1) & mask;
        }
        table[j] = m;
    }
    PyMem_Free(self->table);
    self->table = table;
    self->cap = cap;
    self->used = live;
    return 0;
}

/* 1 when p was marked in this generation; else mark it and return 0 (also when out of memory:
 * then every call samples, which is slower but still right). */
static int
marks_test_and_set(MarkedCall *self, void *p)
{
    if ((self->used + 1) * 2 > self->cap && marks_rehash(self) < 0) {
        return 0;
    }
    size_t mask = self->cap - 1;
    size_t i = mark_hash(p, mask);
    for (;;) {
        Mark *m = &self->table[i];
        if (m->ptr == p) {
            if (m->gen == self->gen) {
                return 1;
            }
            m->gen = self->gen;
            return 0;
        }
        if (m->ptr == NULL) {
            m->ptr = p;
            m->gen = self->gen;
            self->used++;
            return 0;
        }
        i = (i + 1) & mask;
    }
}

static PyObject *
marked_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    MarkedCall *self = (MarkedCall *)callable;
    PyObject *result = PyObject_Vectorcall(self->original, args, nargsf, kwnames);
    if (result == NULL || PyVectorcall_NARGS(nargsf) < 1) {
        return result;
    }
    if (marks_test_and_set(self, (void *)args[0])) {
        return result;
    }
    self->samples++;
    PyObject *r = PyObject_CallOneArg(self->sample, args[0]);
    if (r == NULL) {
        PyErr_Clear(); /* the sample is bookkeeping: it never reaches the program */
    }
    Py_XDECREF(r);
    return result;
}

static PyObject *
marked_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *original, *sample;
    static char *kwlist[] = {"original", "sample", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:MarkedCall", kwlist, &original, &sample)) {
        return NULL;
    }
    MarkedCall *self = (MarkedCall *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = marked_vectorcall;
    self->original = Py_NewRef(original);
    self->sample = Py_NewRef(sample);
    self->table = NULL;
    self->cap = 0;
    self->used = 0;
    self->gen = 1;
    self->samples = 0;
    return (PyObject *)self;
}

static PyObject *
marked_reset(MarkedCall *self, PyObject *Py_UNUSED(ignored))
{
    self->gen++;
    Py_RETURN_NONE;
}

static PyObject *
marked_get_samples(MarkedCall *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->samples);
}

static int
marked_traverse(MarkedCall *self, visitproc visit, void *arg)
{
    Py_VISIT(self->original);
    Py_VISIT(self->sample);
    return 0;
}

static int
marked_clear(MarkedCall *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->sample);
    return 0;
}

static void
marked_dealloc(MarkedCall *self)
{
    PyObject_GC_UnTrack(self);
    marked_clear(self);
    PyMem_Free(self->table);
    self->table = NULL;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMemberDef marked_members[] = {
    {"__wrapped__", T_OBJECT, offsetof(MarkedCall, original), READONLY,
     "the function this wrapper calls"},
    {NULL},
};

static PyMethodDef marked_methods[] = {
    {"reset", (PyCFunction)marked_reset, METH_NOARGS,
     "Forget every mark: the next call on each object samples again."},
    {NULL},
};

static PyGetSetDef marked_getset[] = {
    {"samples", (getter)marked_get_samples, NULL, "calls of sample() so far", NULL},
    {NULL},
};

static PyTypeObject MarkedCallType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "vmtop.agent._hooks.MarkedCall",
    .tp_doc = "Calls a function, and a sampling callback at the first call on each object "
              "since the last reset().",
    .tp_basicsize = sizeof(MarkedCall),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL
                | Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = marked_new,
    .tp_traverse = (traverseproc)marked_traverse,
    .tp_clear = (inquiry)marked_clear,
    .tp_dealloc = (destructor)marked_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(MarkedCall, vectorcall),
    .tp_descr_get = stephook_descr_get,
    .tp_members = marked_members,
    .tp_methods = marked_methods,
    .tp_getset = marked_getset,
};

/* set_type_attr(type, name, value): type.name = value for a heap type that forbids it
 * (Py_TPFLAGS_IMMUTABLETYPE: _queue.SimpleQueue), as type.__setattr__ does it for others:
 * the type's dict, then PyType_Modified so that attribute caches and specialised
 * instructions see the change. mailbox.py wraps SimpleQueue.get with it while attached and
 * puts the original back when the last client leaves. */
static PyObject *
set_type_attr(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *type, *name, *value;
    if (!PyArg_ParseTuple(args, "O!UO:set_type_attr", &PyType_Type, &type, &name, &value)) {
        return NULL;
    }
    PyTypeObject *t = (PyTypeObject *)type;
    if (!(t->tp_flags & Py_TPFLAGS_HEAPTYPE) || t->tp_dict == NULL) {
        PyErr_Format(PyExc_TypeError, "%s is not a heap type", t->tp_name);
        return NULL;
    }
    if (PyDict_SetItem(t->tp_dict, name, value) < 0) {
        return NULL;
    }
    PyType_Modified(t);
    Py_RETURN_NONE;
}

/* untracked_ref(obj): weakref.ref(obj), left out of the cyclic GC. A reference without a
 * callback refers to nothing strongly (its tp_traverse visits only the callback), so the
 * collector has nothing to find through it, and clearing it when obj goes does not need the
 * GC (it is on obj's list of weak references). mailbox.py keeps one per queue and consumer
 * in dicts keyed by id(): 100k of them, tracked, made every full collection walk 100k more
 * objects and pushed the program into full collections it would not have had.
 * Only without a callback: the collector moves a reference whose callback it must call
 * through its own lists (handle_weakrefs), which an untracked object is not on. */
static PyObject *
untracked_ref(PyObject *Py_UNUSED(module), PyObject *obj)
{
    PyObject *ref = PyWeakref_NewRef(obj, NULL);
    if (ref != NULL && PyObject_GC_IsTracked(ref)) {
        PyObject_GC_UnTrack(ref);
    }
    return ref;
}

static PyObject *
clock_now(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyFloat_FromDouble(vmtop_now());
}

static PyObject *
clock_source(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(unused))
{
    return PyUnicode_FromString(vmtop_clock_source());
}

static PyMethodDef module_methods[] = {
    {"now", clock_now, METH_NOARGS, "the clock every timed step reads, in seconds (_clock.c)."},
    {"clock_source", clock_source, METH_NOARGS, "what now() reads: 'tsc' or 'clock_gettime'."},
    {"set_type_attr", set_type_attr, METH_VARARGS,
     "Set an attribute of a heap type, also one marked immutable."},
    {"untracked_ref", untracked_ref, METH_O,
     "weakref.ref(obj) (no callback), not tracked by the cyclic GC."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "vmtop.agent._hooks",
    .m_doc = "C hooks for vmtop's agent (optional; step_hooks.py and mailbox.py have Python ones).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__hooks(void)
{
    if (PyType_Ready(&StepHookType) < 0 || PyType_Ready(&MarkedCallType) < 0 ||
        vmtop_registry_init_types() < 0) {
        return NULL;
    }
    str_self = PyUnicode_InternFromString("__self__");
    if (str_self == NULL) {
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS /* calibration sleeps 2 ms */
    vmtop_clock_init();
    Py_END_ALLOW_THREADS
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "StepHook", (PyObject *)&StepHookType) < 0 ||
        PyModule_AddObjectRef(m, "MarkedCall", (PyObject *)&MarkedCallType) < 0 ||
        PyModule_AddObjectRef(m, "Registry", (PyObject *)&VmtopRegistryType) < 0 ||
        PyModule_AddObjectRef(m, "TaskStat", (PyObject *)&VmtopTaskStatType) < 0 ||
        PyModule_AddObjectRef(m, "GroupStat", (PyObject *)&VmtopGroupStatType) < 0 ||
        PyModule_AddObjectRef(m, "CountingCoro", (PyObject *)&VmtopCountingCoroType) < 0 ||
        PyModule_AddObjectRef(m, "TaskFactory", (PyObject *)&VmtopTaskFactoryType) < 0 ||
        PyModule_AddIntConstant(m, "BUCKETS", VMTOP_BUCKETS) < 0 ||
        PyModule_AddIntConstant(m, "BUCKETS_PER_DECADE", VMTOP_BUCKETS_PER_DECADE) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
