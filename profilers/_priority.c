/* Blocking waits for the agent's threads that get the GIL back promptly.
 *
 * Why: CPython's take_gil asks the running thread to let the GIL go only when a waiter's
 * switch interval (5 ms) passed *without the GIL changing hands*. An event loop whose steps
 * last 1-2 ms releases and retakes it at every select(0), which restarts that clock, so a
 * thread that returns from a blocking call waits seconds for the GIL (3-20 s measured on
 * 3.11-3.13: docs/attach.md, "Hello latency").
 *
 * What: ``wait(fd, events, timeout)`` releases the GIL for the wait, as the socket module
 * does, but to take it back it first queues a
 * pending call (``Py_AddPendingCall``: allowed without the GIL). The main thread runs it at
 * its next eval-breaker check (where Python signal handlers run) and there gives the GIL up
 * until every such waiter has it (at most YIELD_NS at a time, queued again while one still
 * waits, and never more than EPISODE_NS in a row). So the agent gets the GIL within one bytecode check of the main thread instead of
 * whenever the loop happens to lose a race for it; the program pays one GIL round trip per
 * wake-up of the agent, which is what a switch-interval drop costs it anyway.
 *
 * Only the main thread runs pending calls (3.11-3.13): when the thread that keeps the GIL is
 * another one and the main thread is blocked, this is an ordinary wait. ``begin()``/``end()``
 * bracket a short section (an accept and a thread start) in which the main thread makes way
 * at each of its eval-breaker checks, so that the GIL releases inside it cost nothing.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030D0000
/* 3.11/3.12: the interpreter's eval breaker, to make the main thread see a pending call now
 * (see wake_main below). Internal headers, read-only layout use: one atomic store. */
#define Py_BUILD_CORE 1
#undef _PyGC_FINALIZED /* 3.11: Python.h's public spelling; pycore_gc.h defines its own */
#include "internal/pycore_interp.h"
#undef Py_BUILD_CORE
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define YIELD_NS 5000000LL /* the main thread's longest single yield: 5 ms */
/* The main thread makes way for at most this long per episode (from the moment a thread
 * wants the GIL until none does), unless a begin() asked for longer: a thread that waits
 * for something the main thread holds (a lock, an import) must not stall it for good. */
#define EPISODE_NS 50000000LL

static atomic_int wanting;   /* threads between their wait's end and holding the GIL */
static atomic_int queued;    /* a yield pending call is queued and has not run yet */
static atomic_long yields;   /* yields the main thread made (for tests and benchmarks) */
static atomic_long priority; /* waits that ended with a prioritised take of the GIL */
static atomic_llong episode_start; /* when ``wanting`` last went from 0 to 1 */
static atomic_llong episode_limit; /* how long the main thread may make way in this episode */
static pthread_mutex_t arrived_lock;
static pthread_cond_t arrived_cond;

static long long
now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int yield_to_waiters(void *arg);

/* Make the main thread notice the pending call at its next eval-breaker check.
 *
 * 3.11 and 3.12 set the eval breaker for a pending call only when the thread that adds it
 * can run it (COMPUTE_EVAL_BREAKER tests _Py_ThreadCanHandlePendingCalls() / _Py_IsMainThread()
 * on the *calling* thread): added from any other thread, the call waits until the main thread
 * next takes the GIL (take_gil recomputes the breaker, bpo-40010). For an event loop that is
 * right after its next select() returns, so the yield happened at the first check after the
 * poll call, inside the selector's select(): a sampler saw the loop "idle" in 95-100 % of
 * its samples although it never waited. Setting the breaker here is what SIGNAL_PENDING_CALLS
 * does on the main thread. A non-main thread that holds the GIL meanwhile finds nothing it
 * may run and goes on (on 3.11 its checks take the slow path until the next take of the GIL
 * recomputes the breaker; 3.12 recomputes it at the first). 3.13+ set the main thread's own breaker bit in Py_AddPendingCall. */
static void
wake_main(void)
{
#if PY_VERSION_HEX < 0x030D0000
    PyInterpreterState *interp = PyInterpreterState_Main();
    if (interp != NULL) {
        _Py_atomic_store_relaxed(&interp->ceval.eval_breaker, 1);
    }
#endif
}

static void
queue_yield(void)
{
    if (atomic_exchange(&queued, 1) == 0) {
        if (Py_AddPendingCall(yield_to_waiters, NULL) != 0) {
            atomic_store(&queued, 0); /* the queue is full: an ordinary take, no harm done */
        }
        else {
            wake_main();
        }
    }
}

/* Runs on the main thread, GIL held, at an eval-breaker check. */
static int
yield_to_waiters(void *arg)
{
    (void)arg;
    atomic_store(&queued, 0);
    if (atomic_load(&wanting) == 0) {
        return 0; /* the waiter got the GIL already */
    }
    long long now = now_ns();
    long long left = atomic_load(&episode_start) + atomic_load(&episode_limit) - now;
    if (left <= 0) {
        return 0; /* made way long enough: from here on the GIL goes the ordinary way */
    }
    long long end = now + (left < YIELD_NS ? left : YIELD_NS);
    struct timespec until = {.tv_sec = (time_t)(end / 1000000000LL),
                             .tv_nsec = (long)(end % 1000000000LL)};
    atomic_fetch_add(&yields, 1);
    PyThreadState *ts = PyEval_SaveThread();
    pthread_mutex_lock(&arrived_lock);
    while (atomic_load(&wanting) > 0 && now_ns() < end) {
        if (pthread_cond_timedwait(&arrived_cond, &arrived_lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    pthread_mutex_unlock(&arrived_lock);
    PyEval_RestoreThread(ts);
    if (atomic_load(&wanting) > 0) {
        queue_yield(); /* another thread took it first (or the waiter was not scheduled) */
    }
    return 0;
}

static void
want(long long limit)
{
    if (atomic_fetch_add(&wanting, 1) == 0) {
        atomic_store(&episode_limit, limit);
        atomic_store(&episode_start, now_ns());
    }
    else {
        long long current = atomic_load(&episode_limit);
        long long wanted = now_ns() - atomic_load(&episode_start) + limit;
        while (current < wanted && !atomic_compare_exchange_weak(&episode_limit, &current, wanted)) {
        }
    }
    queue_yield();
}

static void
arrived(void)
{
    if (atomic_fetch_sub(&wanting, 1) <= 0) {
        atomic_fetch_add(&wanting, 1); /* an end() without a begin(): ignore it */
    }
    pthread_mutex_lock(&arrived_lock);
    pthread_cond_broadcast(&arrived_cond);
    pthread_mutex_unlock(&arrived_lock);
}

/* Take the GIL back after a wait: ask the main thread to make way. */
static void
take_back_first(PyThreadState *ts)
{
    want(EPISODE_NS);
    PyEval_RestoreThread(ts);
    arrived();
    atomic_fetch_add(&priority, 1);
}

static PyObject *
priority_begin(PyObject *self, PyObject *args)
{
    double limit = EPISODE_NS / 1e9;
    if (!PyArg_ParseTuple(args, "|d:begin", &limit)) {
        return NULL;
    }
    want((long long)(limit * 1e9));
    Py_RETURN_NONE;
}

static PyObject *
priority_end(PyObject *self, PyObject *unused)
{
    arrived();
    Py_RETURN_NONE;
}

static int
timeout_ms(PyObject *obj, long long *deadline)
{
    if (obj == Py_None) {
        *deadline = -1;
        return 0;
    }
    double seconds = PyFloat_AsDouble(obj);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return -1;
    }
    if (seconds < 0) {
        seconds = 0;
    }
    *deadline = now_ns() + (long long)(seconds * 1e9);
    return 0;
}

PyDoc_STRVAR(wait_doc,
"wait(fd, events, timeout) -> revents\n\n"
"poll() one descriptor without the GIL; 0 when ``timeout`` (seconds, None = forever)\n"
"passed. Either way the GIL is taken back ahead of a busy main thread.");

static PyObject *
priority_wait(PyObject *self, PyObject *args)
{
    int fd, events;
    PyObject *timeout;
    long long deadline;
    if (!PyArg_ParseTuple(args, "iiO:wait", &fd, &events, &timeout)) {
        return NULL;
    }
    if (timeout_ms(timeout, &deadline) < 0) {
        return NULL;
    }
    struct pollfd p = {.fd = fd, .events = (short)events, .revents = 0};
    int rc, err;
    PyThreadState *ts = PyEval_SaveThread();
    for (;;) {
        int ms = -1;
        if (deadline >= 0) {
            long long left = deadline - now_ns();
            ms = left <= 0 ? 0 : (int)((left + 999999) / 1000000);
        }
        rc = poll(&p, 1, ms);
        err = errno;
        if (rc >= 0 || err != EINTR) {
            break;
        }
        /* A signal: agent threads never run Python handlers, so wait on. */
    }
    /* Also after a timeout: a thread stuck in take_gil would miss the next event. */
    take_back_first(ts);
    if (rc < 0) {
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromLong(rc > 0 ? p.revents : 0);
}

PyDoc_STRVAR(sleep_doc,
"sleep(seconds)\n\n"
"Sleep without the GIL, then take it back ahead of a busy main thread: the main thread\n"
"gives it up at its next eval-breaker check (between two bytecodes of its Python code)\n"
"and stays parked there until this thread holds it.");

static PyObject *
priority_sleep(PyObject *self, PyObject *arg)
{
    double seconds = PyFloat_AsDouble(arg);
    if (seconds == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    if (!(seconds >= 0)) {
        seconds = 0;
    }
    if (seconds > 1e6) {
        seconds = 1e6; /* keeps the nanoseconds in range; callers sleep in short slices */
    }
    long long end = now_ns() + (long long)(seconds * 1e9);
    struct timespec until = {.tv_sec = (time_t)(end / 1000000000LL),
                             .tv_nsec = (long)(end % 1000000000LL)};
    PyThreadState *ts = PyEval_SaveThread();
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR) {
        /* a signal: agent threads never run Python handlers, so sleep on */
    }
    take_back_first(ts);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(notify_doc,
"notify(fd)\n\n"
"Add 1 to the eventfd ``fd`` (non-blocking) without giving the GIL up: an event loop's\n"
"callback that answers an agent's wait does not hand the GIL to another thread there.");

static PyObject *
priority_notify(PyObject *self, PyObject *arg)
{
    long value = PyLong_AsLong(arg);
    if (value == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (value < 0 || value > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    int fd = (int)value;
    unsigned long long one = 1;
    ssize_t n;
    do {
        n = write(fd, &one, sizeof one);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN) { /* EAGAIN: the counter is full, a wake-up is pending */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
priority_stats(PyObject *self, PyObject *unused)
{
    return Py_BuildValue("{s:l,s:l}", "yields", atomic_load(&yields), "priority",
                         atomic_load(&priority));
}

static void
init_arrived(void)
{
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&arrived_cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&arrived_lock, NULL);
}

static void
after_fork_child(void)
{
    /* Only the forking thread lives on: nobody waits, nothing is queued in the child (a
     * yield queued before the fork finds nobody waiting and returns). */
    atomic_store(&wanting, 0);
    atomic_store(&queued, 0);
    init_arrived();
}

static PyMethodDef methods[] = {
    {"wait", priority_wait, METH_VARARGS, wait_doc},
    {"sleep", priority_sleep, METH_O, sleep_doc},
    {"notify", priority_notify, METH_O, notify_doc},
    {"begin", priority_begin, METH_VARARGS,
     "begin(limit=0.05): until end(), the main thread gives the GIL up at each eval-breaker\n"
     "check, for at most ``limit`` seconds in all.\n"
     "For short sections that would otherwise lose the GIL to it at each release\n"
     "(a thread start); never around a wait for the main thread itself."},
    {"end", priority_end, METH_NOARGS, "end(): the end of a begin() section."},
    {"stats", priority_stats, METH_NOARGS,
     "stats() -> {'yields': main-thread yields, 'priority': prioritised takes}"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_priority",
    "Blocking waits that take the GIL back ahead of a busy main thread (see _priority.c).", -1,
    methods,
};

PyMODINIT_FUNC
PyInit__priority(void)
{
    static int initialised;
    if (!initialised) {
        init_arrived();
        pthread_atfork(NULL, NULL, after_fork_child);
        initialised = 1;
    }
    return PyModule_Create(&module);
}
