/* One cProfile call stack per thread on Python 3.12+ (profilers/calls.py, ThreadCalls).
 *
 * Why: from 3.12 cProfile sits on sys.monitoring, whose events come from every thread, and
 * _lsprof keeps a single stack of open calls per profiler (``currentProfilerContext``). The
 * calls of all threads are pushed on and popped off that one stack in the order the GIL
 * interleaves them: a function gets as its caller whatever another thread had open at that
 * moment, and a return from a frame that started before ``enable()`` pops (and ends) a call
 * of another thread. A live profile of a program enabled from an agent thread recorded the
 * loop's ``_run_once`` as called by the agent's parked ``Job.wait``, so everything the loop
 * ran looked like the agent's own work (docs/live-profiles.md).
 *
 * What: ``Dispatch(name, table, factory)`` is what gets registered with sys.monitoring for one
 * of cProfile's callback methods (``name``: "_pystart_callback", ...). On each event it finds
 * the calling thread's own profiler (``table``: thread state id -> a cProfile.Profile, or None
 * for a thread left out) and calls that profiler's method with the event's arguments, as if
 * that profiler alone were registered. A thread seen for the first time gets its profiler
 * from ``factory()``, called on that thread (None leaves it out). The last thread's bound
 * method is cached, so the usual cost is one thread-state read and one extra vectorcall.
 *
 * Keyed by PyThreadState_GetID, which no later thread reuses (pthread ids are reused at
 * once). GIL builds only (3.13t is not supported by the agent).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stddef.h>

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *name;    /* the profiler method to call */
    PyObject *table;   /* dict: thread state id (int) -> profiler or None */
    PyObject *factory; /* factory() -> profiler or None, called on the new thread */
    uint64_t cached_id;
    PyObject *cached;  /* bound method of thread cached_id's profiler, or None; NULL: none */
    long long calls;   /* events passed on (for tests) */
    long long skipped; /* events of left-out threads */
} Dispatch;

/* The bound method for the current thread (new reference; None: leave the event), or NULL
 * with an exception set. A factory that raises is reported and its thread left out. */
static PyObject *
method_for(Dispatch *self, uint64_t id)
{
    PyObject *key = PyLong_FromUnsignedLongLong(id);
    if (key == NULL) {
        return NULL;
    }
    PyObject *profiler = PyDict_GetItemWithError(self->table, key); /* borrowed */
    if (profiler == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return NULL;
        }
        profiler = PyObject_CallNoArgs(self->factory);
        if (profiler == NULL) {
            /* Reported once; the thread is left out from here on. */
            PyErr_WriteUnraisable(self->factory);
            profiler = Py_NewRef(Py_None);
        }
        /* The factory may have stored it itself: the table keeps what is there first. */
        PyObject *stored = PyDict_SetDefault(self->table, key, profiler);
        Py_DECREF(profiler);
        profiler = stored;
        if (profiler == NULL) {
            Py_DECREF(key);
            return NULL;
        }
    }
    Py_DECREF(key);
    if (profiler == Py_None) {
        return Py_NewRef(Py_None);
    }
    return PyObject_GetAttr(profiler, self->name);
}

static PyObject *
dispatch_vectorcall(PyObject *callable, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Dispatch *self = (Dispatch *)callable;
    uint64_t id = PyThreadState_GetID(PyThreadState_Get());
    PyObject *method;
    if (self->cached != NULL && self->cached_id == id) {
        method = Py_NewRef(self->cached);
    }
    else {
        method = method_for(self, id);
        if (method == NULL) {
            /* Never raise into the program's code from here: report and leave the event. */
            PyErr_WriteUnraisable(callable);
            Py_RETURN_NONE;
        }
        PyObject *old = self->cached;
        self->cached = Py_NewRef(method);
        self->cached_id = id;
        Py_XDECREF(old);
    }
    if (method == Py_None) {
        self->skipped++;
        return method;
    }
    self->calls++;
    PyObject *result = PyObject_Vectorcall(method, args, nargsf, kwnames);
    Py_DECREF(method);
    return result;
}

static PyObject *
dispatch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "table", "factory", NULL};
    PyObject *name, *table, *factory;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "UO!O:Dispatch", kwlist, &name, &PyDict_Type,
                                     &table, &factory)) {
        return NULL;
    }
    if (!PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "factory must be callable");
        return NULL;
    }
    Dispatch *self = (Dispatch *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->vectorcall = dispatch_vectorcall;
    self->name = Py_NewRef(name);
    self->table = Py_NewRef(table);
    self->factory = Py_NewRef(factory);
    self->cached = NULL;
    return (PyObject *)self;
}

static int
dispatch_traverse(Dispatch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->name);
    Py_VISIT(self->table);
    Py_VISIT(self->factory);
    Py_VISIT(self->cached);
    return 0;
}

static int
dispatch_clear(Dispatch *self)
{
    Py_CLEAR(self->name);
    Py_CLEAR(self->table);
    Py_CLEAR(self->factory);
    Py_CLEAR(self->cached);
    return 0;
}

static void
dispatch_dealloc(Dispatch *self)
{
    PyObject_GC_UnTrack(self);
    dispatch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
dispatch_forget(Dispatch *self, PyObject *Py_UNUSED(ignored))
{
    /* Drop the cached method (and with it the last profiler it holds). */
    Py_CLEAR(self->cached);
    Py_RETURN_NONE;
}

static PyObject *
dispatch_get_counts(Dispatch *self, void *Py_UNUSED(closure))
{
    return Py_BuildValue("(LL)", self->calls, self->skipped);
}

static PyMethodDef dispatch_methods[] = {
    {"forget", (PyCFunction)dispatch_forget, METH_NOARGS, "drop the cached profiler method"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef dispatch_getset[] = {
    {"counts", (getter)dispatch_get_counts, NULL, "(events passed on, events left out)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject DispatchType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "profilers._thread_calls.Dispatch",
    .tp_basicsize = sizeof(Dispatch),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A sys.monitoring callback that passes each event to its thread's profiler.",
    .tp_new = dispatch_new,
    .tp_dealloc = (destructor)dispatch_dealloc,
    .tp_traverse = (traverseproc)dispatch_traverse,
    .tp_clear = (inquiry)dispatch_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(Dispatch, vectorcall),
    .tp_methods = dispatch_methods,
    .tp_getset = dispatch_getset,
};

static PyObject *
thread_id(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(PyThreadState_GetID(PyThreadState_Get()));
}

static PyMethodDef module_methods[] = {
    {"thread_id", thread_id, METH_NOARGS, "the calling thread's state id (the table's keys)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "profilers._thread_calls",
    .m_doc = "One cProfile call stack per thread on sys.monitoring (see profilers/calls.py).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC
PyInit__thread_calls(void)
{
    if (PyType_Ready(&DispatchType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Dispatch", (PyObject *)&DispatchType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
