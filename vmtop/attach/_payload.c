/* The library vmtop's injectors load into a target (dlopen), and all it does.
 *
 * Its constructor runs on whichever thread the injector borrowed, in the middle of that
 * thread's own work, so it only starts one new thread (every signal blocked in it, the
 * borrowed thread's errno and signal mask as they were) and returns. The new thread takes the
 * GIL the normal way (PyGILState_Ensure: it waits like any thread for the holder to let go,
 * so nothing is interrupted that holds a lock) and runs the bootstrap (bootstrap.py):
 *
 * - when `threading` is already imported, right here, with PyRun_SimpleString (the
 *   bootstrap then imports and starts the agent on this thread);
 * - when it is not, as a pending call of the main thread (Py_AddPendingCall): the first
 *   import of `threading` decides what threading.main_thread() is (3.11 and 3.12 take the
 *   importing thread), so it must happen on the main thread. That thread runs pending calls
 *   at its next eval-breaker check, i.e. at once when it runs Python code.
 *
 * The bootstrap source is not in this file as installed: the injector copies the library to a
 * file of its own for each injection (dlopen of a path already loaded would not run the
 * constructor again) and writes the source into `vmtop_bootstrap_slot` there, whose header
 * then reads READY. The installed file's header reads EMPTY: loading it does nothing.
 *
 * Against a main thread that keeps the GIL (a CPU-bound loop, or an event loop whose steps
 * last a millisecond or two and so never let a waiting thread's switch interval expire), the
 * thread first queues a pending call that makes the main thread give the GIL up at its next
 * eval-breaker check until the bootstrap has run here (5 ms at a time, at most WAY_NS in
 * all): the same mechanism as profilers/_priority.c, which this library cannot link.
 *
 * No Python symbol is linked: they are looked up when the thread runs (dlsym), so the library
 * loads into any process and an interpreter that is not there is simply not called.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <time.h>

#define SLOT_SIZE (16 * 1024)
#define HEADER_SIZE 32
#define WAY_NS 350000000LL  /* the longest the main thread makes way for the bootstrap */
#define SLICE_NS 5000000LL  /* one such yield, then it runs again until its next check */

/* Not static and not const: the compiler must not assume its contents (they are patched in
 * the copied file). The injector finds the slot by the EMPTY header. */
__attribute__((used, visibility("default"))) char vmtop_bootstrap_slot[SLOT_SIZE] =
    "vmtop-bootstrap-slot:EMPTY:v1";
static const char READY[] = "vmtop-bootstrap-slot:READY:v1";

typedef int (*gil_ensure_t)(void);
typedef void (*gil_release_t)(int);
typedef int (*run_string_t)(const char *);
typedef int (*pending_t)(int (*)(void *), void *);
typedef void *(*get_module_t)(void *);
typedef void *(*from_string_t)(const char *);
typedef void (*dec_ref_t)(void *);
typedef int (*is_initialized_t)(void);
typedef void (*void_t)(void);
typedef void *(*save_thread_t)(void);
typedef void (*restore_thread_t)(void *);

static void *python; /* a handle whose dlsym finds the interpreter's symbols */

static int find_libpython(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    if (info->dlpi_name && strstr(info->dlpi_name, "/libpython3")) {
        python = dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD);
        return python != NULL;
    }
    return 0;
}

static void *symbol(const char *name) {
    void *found = dlsym(python ? python : RTLD_DEFAULT, name);
    if (found == NULL && python == NULL) {
        /* An interpreter embedded as a library loaded with RTLD_LOCAL. */
        dl_iterate_phdr(find_libpython, NULL);
        if (python != NULL)
            found = dlsym(python, name);
    }
    return found;
}

static run_string_t run_string;
static pending_t add_pending;
static save_thread_t save_thread;
static restore_thread_t restore_thread;
static pthread_mutex_t way_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t way_cond = PTHREAD_COND_INITIALIZER; /* CLOCK_REALTIME */
static int way_done;
static long long way_until;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* A pending call: on the main thread, with the GIL, at an eval-breaker check. */
static int make_way(void *unused) {
    (void)unused;
    long long now = now_ns();
    pthread_mutex_lock(&way_lock);
    int done = way_done;
    pthread_mutex_unlock(&way_lock);
    if (done || now >= way_until)
        return 0;
    long long end = now + SLICE_NS < way_until ? now + SLICE_NS : way_until;
    struct timespec until = {.tv_sec = (time_t)(end / 1000000000LL),
                             .tv_nsec = (long)(end % 1000000000LL)};
    void *state = save_thread();
    pthread_mutex_lock(&way_lock);
    while (!way_done && pthread_cond_timedwait(&way_cond, &way_lock, &until) != ETIMEDOUT) {
    }
    done = way_done;
    pthread_mutex_unlock(&way_lock);
    restore_thread(state);
    if (!done && now_ns() < way_until)
        add_pending(make_way, NULL); /* the bootstrap still runs: make way again */
    return 0;
}

static void way_made(void) {
    pthread_mutex_lock(&way_lock);
    way_done = 1;
    pthread_cond_broadcast(&way_cond);
    pthread_mutex_unlock(&way_lock);
}

static int run_pending(void *source) {
    run_string((const char *)source); /* prints and clears its own exception, if any */
    return 0;
}

static void *bootstrap_thread(void *unused) {
    (void)unused;
    const char *source = (const char *)vmtop_bootstrap_slot + HEADER_SIZE;
    is_initialized_t initialized = (is_initialized_t)symbol("Py_IsInitialized");
    gil_ensure_t ensure = (gil_ensure_t)symbol("PyGILState_Ensure");
    gil_release_t release = (gil_release_t)symbol("PyGILState_Release");
    add_pending = (pending_t)symbol("Py_AddPendingCall");
    save_thread = (save_thread_t)symbol("PyEval_SaveThread");
    restore_thread = (restore_thread_t)symbol("PyEval_RestoreThread");
    get_module_t get_module = (get_module_t)symbol("PyImport_GetModule");
    from_string_t from_string = (from_string_t)symbol("PyUnicode_FromString");
    dec_ref_t dec_ref = (dec_ref_t)symbol("Py_DecRef");
    void_t clear = (void_t)symbol("PyErr_Clear");
    run_string = (run_string_t)symbol("PyRun_SimpleString");
    if (!initialized || !ensure || !release || !add_pending || !get_module || !from_string ||
        !dec_ref || !clear || !run_string || !initialized())
        return NULL;
    if (save_thread && restore_thread) {
        way_until = now_ns() + WAY_NS;
        add_pending(make_way, NULL); /* allowed without the GIL */
    }
    int state = ensure();
    void *name = from_string("threading");
    void *threading = name ? get_module(name) : NULL;
    clear();
    if (name)
        dec_ref(name);
    if (threading) {
        dec_ref(threading);
        run_string(source);
    } else {
        add_pending(run_pending, (void *)source);
    }
    way_made();
    release(state);
    return NULL;
}

__attribute__((constructor)) static void vmtop_payload_start(void) {
    int saved_errno = errno;
    if (memcmp(vmtop_bootstrap_slot, READY, sizeof READY) == 0) {
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits: no signal lands there */
        pthread_attr_t attr;
        if (pthread_attr_init(&attr) == 0) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            pthread_attr_setstacksize(&attr, 1024 * 1024);
            pthread_t thread;
            pthread_create(&thread, &attr, bootstrap_thread, NULL);
            pthread_attr_destroy(&attr);
        }
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    errno = saved_errno;
}
