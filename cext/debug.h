/* The core's tripwires: CL_ASSERT(cond, msg) states an invariant the core relies on.
 *
 * Compiled with CARDLEDGER_DEBUG defined (CARDLEDGER_DEBUG=1 at build time, see
 * setup.py), a false condition prints the message, the condition as compiled, the C
 * function and the file and line (in the generated _core.c, whose comment above that
 * line names the .pxi line) to stderr, then aborts: the state can no longer be
 * trusted, so the process stops before anything built on it is committed.
 *
 * Without CARDLEDGER_DEBUG, CL_ASSERT and CL_DEBUG_DO expand to nothing: their
 * arguments are never evaluated, and a release build compiles to the same code as
 * without them. Conditions written at the call sites are therefore kept free of side
 * effects; bookkeeping a check needs goes through CL_DEBUG_DO. */
#ifndef CARDLEDGER_DEBUG_H
#define CARDLEDGER_DEBUG_H

#ifdef CARDLEDGER_DEBUG

#include <stdio.h>
#include <stdlib.h>

#define CL_DEBUG 1

#if defined(__GNUC__)
__attribute__((noreturn, cold))
#endif
static void cl_assert_failed(const char* msg, const char* cond, const char* func,
                             const char* file, int line) {
    fprintf(stderr,
            "cardledger core: assertion failed: %s\n"
            "    condition: %s\n"
            "    in %s at %s:%d\n",
            msg, cond, func, file, line);
    fflush(stderr);
    abort();
}

#define CL_ASSERT(cond, msg) \
    ((cond) ? (void)0 : cl_assert_failed((msg), #cond, __func__, __FILE__, __LINE__))
#define CL_DEBUG_DO(expr) ((void)(expr))

#else

#define CL_DEBUG 0
#define CL_ASSERT(cond, msg) ((void)0)
#define CL_DEBUG_DO(expr) ((void)0)

#endif

#endif
