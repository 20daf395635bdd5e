/* A library whose constructor sends SIGUSR1 to the thread that loads it
 * (tests/test_attach_safety.py): a signal that arrives while the ptrace injector borrows a
 * thread, on demand. */
#include <signal.h>

__attribute__((constructor)) static void raise_sigusr1(void) { raise(SIGUSR1); }
