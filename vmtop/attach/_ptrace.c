/* vmtop's ptrace injector (x86-64 Linux): make one thread of a target call dlopen(path).
 *
 * Used only by vmtop/attach/ptrace_runner.py, in a child process of its own with a time limit
 * (ptrace_inject.py); why each step is safe is in docs/attach.md. One pass of
 * `load_library(pid, candidates, path, dlopen, dlerror, safe_ranges, caught, deadline)`
 * (`caught`: the process's SigCgt mask):
 *
 * 1. For each candidate thread, in the order given: PTRACE_SEIZE (no SIGSTOP, and only that
 *    thread stops; the others keep running) and PTRACE_INTERRUPT, then re-check it where it
 *    stopped. A candidate `(tid, nr, arg0)` with nr >= 0 was seen parked in system call nr on
 *    descriptor/address arg0: it is taken only if it is still inside that very call (orig_rax
 *    == nr, rdi == arg0, rax an interrupted-call code), and never for a futex FUTEX_WAIT (the
 *    glibc low-level lock wait: it may be inside malloc or the loader). With nr < 0 it was
 *    running: it is taken only if its pc is inside `safe_ranges` (the interpreter's own code,
 *    never libc, ld.so or an allocator) and it does not block a signal the process catches
 *    (then it is most likely inside that signal's handler, which may have interrupted it in
 *    malloc). Anything else is detached at once (it resumes) and the pass goes on.
 * 2. Save the full register state: the general registers and the whole extended state
 *    (PTRACE_GETREGSET NT_X86_XSTATE into a buffer the kernel fills and sizes; FXSAVE area
 *    where there is no xstate).
 * 3. Write `path` below the stack pointer (past the red zone), point rip at dlopen with a
 *    return address of 0, continue, and wait for the SIGSEGV at pc 0 that ends the call. Other
 *    signals that arrive meanwhile are delivered (Python's handler only sets a flag).
 * 4. Restore exactly what was saved (the kernel then restarts or fails the interrupted call
 *    as it would have; if a handled signal arrived during the call, the call fails with
 *    EINTR as that signal would have made it) and detach: the thread runs on as if it had
 *    never stopped.
 *
 * Returns (tid, handle, message): tid 0 when no candidate was safe (nothing changed);
 * handle 0 with dlerror()'s message when dlopen failed. Raises OSError when a step failed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if defined(__linux__) && defined(__x86_64__)
#include <elf.h>
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef NT_X86_XSTATE
#define NT_X86_XSTATE 0x202
#endif
#ifndef PTRACE_EVENT_STOP
#define PTRACE_EVENT_STOP 128
#endif
#ifndef PTRACE_GETSIGMASK
#define PTRACE_GETSIGMASK 0x420a
#endif

#define XSTATE_MAX (64 * 1024) /* AMX machines need ~11 KiB; the kernel says how much */
#define RTLD_NOW_NODELETE (0x2 | 0x1000)
#define CALL_LIMIT 300.0 /* a call in flight is never abandoned before this many seconds */
#define ERR_LEN 512

typedef struct {
    struct user_regs_struct regs;
    unsigned char *xstate;
    size_t xstate_len;
    int xstate_kind; /* NT_X86_XSTATE or NT_PRFPREG */
} saved_t;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void nap(void) {
    struct timespec ts = {0, 100000}; /* 0.1 ms */
    nanosleep(&ts, NULL);
}

/* waitpid with a deadline (monotonic seconds). 0 = stopped/exited (status set), -1 = errno. */
static int wait_for(pid_t tid, int *status, double deadline) {
    for (;;) {
        pid_t r = waitpid(tid, status, __WALL | WNOHANG);
        if (r == tid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -1;
        if (now() > deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
        nap();
    }
}

static int is_interrupted_code(long rax) {
    /* ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK, EINTR */
    return rax == -512 || rax == -513 || rax == -514 || rax == -516 || rax == -EINTR;
}

static int in_ranges(unsigned long long pc, PyObject *ranges) {
    Py_ssize_t n = PyList_GET_SIZE(ranges);
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long lo, hi;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(ranges, i), "KK", &lo, &hi))
            return -1;
        if (pc >= lo && pc < hi)
            return 1;
    }
    return 0;
}

static int save_state(pid_t tid, saved_t *s) {
    if (ptrace(PTRACE_GETREGS, tid, NULL, &s->regs) != 0)
        return -1;
    s->xstate = malloc(XSTATE_MAX);
    if (s->xstate == NULL) {
        errno = ENOMEM;
        return -1;
    }
    struct iovec iov = {s->xstate, XSTATE_MAX};
    if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_X86_XSTATE, &iov) == 0) {
        s->xstate_kind = NT_X86_XSTATE;
        s->xstate_len = iov.iov_len; /* what the kernel wrote: written back whole */
        return 0;
    }
    iov.iov_len = sizeof(struct user_fpregs_struct);
    if (ptrace(PTRACE_GETREGSET, tid, (void *)NT_PRFPREG, &iov) == 0) {
        s->xstate_kind = NT_PRFPREG;
        s->xstate_len = iov.iov_len;
        return 0;
    }
    return -1;
}

static int restore_state(pid_t tid, saved_t *s) {
    int rc = 0;
    struct iovec iov = {s->xstate, s->xstate_len};
    if (ptrace(PTRACE_SETREGSET, tid, (void *)(long)s->xstate_kind, &iov) != 0)
        rc = -1;
    if (ptrace(PTRACE_SETREGS, tid, NULL, &s->regs) != 0)
        rc = -1;
    return rc;
}

static int write_memory(pid_t pid, unsigned long long addr, const void *data, size_t len) {
    struct iovec local = {(void *)data, len};
    struct iovec remote = {(void *)(uintptr_t)addr, len};
    if (process_vm_writev(pid, &local, 1, &remote, 1, 0) == (ssize_t)len)
        return 0;
    /* Fallback: word by word through ptrace (len is a multiple of 8 here). */
    for (size_t off = 0; off < len; off += 8) {
        long word;
        memcpy(&word, (const char *)data + off, 8);
        if (ptrace(PTRACE_POKEDATA, pid, (void *)(uintptr_t)(addr + off), (void *)word) != 0)
            return -1;
    }
    return 0;
}

static void read_string(pid_t pid, unsigned long long addr, char *out, size_t len) {
    out[0] = '\0';
    if (!addr)
        return;
    struct iovec local = {out, len - 1};
    struct iovec remote = {(void *)(uintptr_t)addr, len - 1};
    ssize_t got = process_vm_readv(pid, &local, 1, &remote, 1, 0);
    out[got > 0 ? got : 0] = '\0';
}

/* Call fn(arg0, arg1) on the stopped thread, with `data` (if any) copied onto its stack and
 * passed as arg0. Returns 0 and the result in *result; -1 with errno (and `why`) on failure.
 * The thread's registers are those of the call afterwards: the caller restores them.
 * *handled is set when a signal the process catches (`caught`) was delivered meanwhile. */
static int remote_call(pid_t pid, pid_t tid, const saved_t *s, unsigned long long fn,
                       const char *data, unsigned long long arg1, unsigned long long caught,
                       int *handled, unsigned long long *result, char *why) {
    struct user_regs_struct regs = s->regs;
    size_t len = data ? (strlen(data) + 1 + 7) / 8 * 8 : 0;
    unsigned long long base = (s->regs.rsp - 1024 - len) & ~15ULL; /* far below the red zone */
    unsigned char *frame = calloc(1, len + 8);
    if (frame == NULL)
        return -1;
    if (data)
        memcpy(frame + 8, data, strlen(data) + 1);
    /* frame: [return address 0][data...]; at entry (rsp + 8) % 16 == 0 as the ABI wants */
    unsigned long long rsp = base - 8;
    int rc = write_memory(pid, rsp, frame, len + 8);
    free(frame);
    if (rc != 0) {
        snprintf(why, ERR_LEN, "cannot write the thread's stack: %s", strerror(errno));
        return -1;
    }
    regs.rip = fn;
    regs.rdi = data ? base : 0;
    regs.rsi = arg1;
    regs.rsp = rsp;
    regs.rax = 0;
    regs.orig_rax = (unsigned long long)-1; /* no system-call restart on resume */
    regs.eflags &= ~0x400ULL;               /* direction flag clear, as the ABI wants */
    if (ptrace(PTRACE_SETREGS, tid, NULL, &regs) != 0 || ptrace(PTRACE_CONT, tid, NULL, 0) != 0) {
        snprintf(why, ERR_LEN, "cannot start the call: %s", strerror(errno));
        return -1;
    }
    double limit = now() + CALL_LIMIT;
    for (;;) {
        int status;
        if (wait_for(tid, &status, limit) != 0) {
            snprintf(why, ERR_LEN, "the call did not return: %s", strerror(errno));
            return -2; /* in flight: the registers must not be touched */
        }
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            snprintf(why, ERR_LEN, "the thread exited during the call");
            return -2;
        }
        int sig = WSTOPSIG(status);
        int event = status >> 16;
        if (event == 0 && sig == SIGSEGV) {
            struct user_regs_struct after;
            if (ptrace(PTRACE_GETREGS, tid, NULL, &after) != 0)
                return -1;
            if (after.rip == 0) {
                *result = after.rax;
                return 0;
            }
            snprintf(why, ERR_LEN, "fault inside the call at pc %#llx", after.rip);
            return -1;
        }
        /* A stop of ours (event) resumes quietly; any other signal is delivered. */
        if (!event && sig > 0 && sig <= 64 && (caught >> (sig - 1) & 1))
            *handled = 1;
        if (ptrace(PTRACE_CONT, tid, NULL, (void *)(long)(event ? 0 : sig)) != 0) {
            snprintf(why, ERR_LEN, "cannot resume the call: %s", strerror(errno));
            return -2;
        }
    }
}

/* Stop tid; 1 = stopped quietly (ours), 0 = not usable (already detached), -1 = errno. */
static int seize(pid_t tid, double deadline) {
    if (ptrace(PTRACE_SEIZE, tid, NULL, NULL) != 0)
        return errno == ESRCH ? 0 : -1;
    if (ptrace(PTRACE_INTERRUPT, tid, NULL, NULL) != 0) {
        ptrace(PTRACE_DETACH, tid, NULL, 0);
        return 0;
    }
    int status;
    if (wait_for(tid, &status, deadline + 1.0) != 0) {
        ptrace(PTRACE_DETACH, tid, NULL, 0); /* fails unless stopped; the kernel detaches on exit */
        return -1;
    }
    if (WIFEXITED(status) || WIFSIGNALED(status))
        return 0;
    if ((status >> 16) != PTRACE_EVENT_STOP) {
        /* A signal was on its way: let it through and leave this thread alone. */
        ptrace(PTRACE_DETACH, tid, NULL, (void *)(long)WSTOPSIG(status));
        return 0;
    }
    return 1;
}

static int safe_here(pid_t tid, const struct user_regs_struct *r, long nr,
                     unsigned long long arg0, PyObject *ranges, unsigned long long caught) {
    if (nr >= 0) {
        if ((long)r->orig_rax != nr || r->rdi != arg0 || !is_interrupted_code((long)r->rax))
            return 0;
        if (nr == SYS_futex && ((r->rsi & FUTEX_CMD_MASK) == FUTEX_WAIT ||
                                (r->rsi & FUTEX_CMD_MASK) == FUTEX_LOCK_PI))
            return 0;
        return 1;
    }
    unsigned long long blocked = 0;
    if (caught && ptrace(PTRACE_GETSIGMASK, tid, (void *)sizeof blocked, &blocked) == 0 &&
        (blocked & caught))
        return 0; /* probably inside a signal handler */
    return in_ranges(r->rip, ranges);
}

static PyObject *load_library(PyObject *self, PyObject *args) {
    (void)self;
    int pid;
    PyObject *candidates, *ranges;
    const char *path;
    unsigned long long dlopen_addr, dlerror_addr, caught;
    double deadline;
    if (!PyArg_ParseTuple(args, "iO!sKKO!Kd", &pid, &PyList_Type, &candidates, &path,
                          &dlopen_addr, &dlerror_addr, &PyList_Type, &ranges, &caught, &deadline))
        return NULL;
    char why[ERR_LEN] = "";
    Py_ssize_t n = PyList_GET_SIZE(candidates);
    for (Py_ssize_t i = 0; i < n && now() < deadline; i++) {
        int tid;
        long nr;
        unsigned long long arg0;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(candidates, i), "ilK", &tid, &nr, &arg0))
            return NULL;
        int got = seize(tid, deadline);
        if (got < 0)
            return PyErr_SetFromErrno(PyExc_OSError);
        if (got == 0)
            continue;
        saved_t s = {0};
        if (save_state(tid, &s) != 0) {
            int err = errno;
            ptrace(PTRACE_DETACH, tid, NULL, 0);
            free(s.xstate);
            errno = err;
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        int safe = safe_here(tid, &s.regs, nr, arg0, ranges, caught);
        if (safe != 1) {
            ptrace(PTRACE_DETACH, tid, NULL, 0);
            free(s.xstate);
            if (safe < 0)
                return NULL;
            continue;
        }
        unsigned long long handle = 0, message = 0;
        int handled = 0;
        int rc = remote_call(pid, tid, &s, dlopen_addr, path, RTLD_NOW_NODELETE, caught,
                             &handled, &handle, why);
        if (rc == 0 && handle == 0 && dlerror_addr) {
            rc = restore_state(tid, &s); /* a clean frame for the second call */
            if (rc == 0)
                rc = remote_call(pid, tid, &s, dlerror_addr, NULL, 0, caught, &handled,
                                 &message, why);
        }
        /* A handler ran during the call: the interrupted system call must now end as it
         * would have had the signal come while it waited, with EINTR (Python's handlers have
         * no SA_RESTART), not be restarted as if nothing happened (a sleep would hide a
         * Ctrl-C for its whole length). ERESTARTNOINTR always restarts. */
        long was = (long)s.regs.rax;
        if (handled && (long)s.regs.orig_rax >= 0 && (was == -512 || was == -514 || was == -516))
            s.regs.rax = (unsigned long long)-EINTR;
        char text[ERR_LEN] = "";
        if (rc == 0 && handle == 0)
            read_string(pid, message, text, sizeof text);
        if (rc == -2) {
            /* Still inside the call: restoring now would corrupt it. Detaching lets it run
             * on and return to address 0 (a crash), so stay attached until our exit. */
            free(s.xstate);
            PyErr_Format(PyExc_OSError, "%s", why);
            return NULL;
        }
        int restored = restore_state(tid, &s);
        int detached = ptrace(PTRACE_DETACH, tid, NULL, 0);
        free(s.xstate);
        if (restored != 0 || detached != 0)
            return PyErr_Format(PyExc_OSError, "cannot restore thread %d: %s", tid,
                                strerror(errno));
        if (rc != 0)
            return PyErr_Format(PyExc_OSError, "%s", why);
        return Py_BuildValue("iKs", tid, handle, text);
    }
    return Py_BuildValue("iKs", 0, 0ULL, "");
}

static PyMethodDef methods[] = {
    {"load_library", load_library, METH_VARARGS,
     "load_library(pid, candidates, path, dlopen, dlerror, safe_ranges, caught, deadline) -> "
     "(tid, handle, dlerror message); tid 0 when no candidate thread was safe"},
    {NULL, NULL, 0, NULL},
};
#else
static PyMethodDef methods[] = {{NULL, NULL, 0, NULL}}; /* only x86-64 Linux is supported */
#endif

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ptrace", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ptrace(void) { return PyModule_Create(&module); }
