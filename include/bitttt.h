/*
 * bitttt.h: the C ABI of the Bit-TTT engine (libbitttt.so). Plain C99; usable from C, C++,
 * Python ctypes and any FFI.
 *
 * Conventions for every function in this header:
 *  - Functions returning int return a bitttt_status code: 0 on success, never anything that is
 *    not listed below. Functions returning a pointer return NULL on failure.
 *  - No C++ exception ever crosses this boundary; any failure becomes a status code, and
 *    bitttt_last_error() says what went wrong.
 *  - Handles are opaque values, not pointers into memory: the library keeps a registry of live
 *    handles, and ids are never reused, so a destroyed, forged or foreign handle is always
 *    reported as BITTTT_INVALID_HANDLE (or ignored by the destroy functions), never dereferenced.
 *  - Thread safety: any function may be called from any thread. Calls on one handle are serialized
 *    by the library (a second thread waits); destroying a handle while another thread is inside a
 *    call on it is safe (the object lives until that call returns; later calls see an invalid
 *    handle).
 *  - The library cannot check the length of caller buffers: a buffer shorter than the documented
 *    size is undefined behaviour, as with memcpy.
 *
 * Sections: status codes and library information; the standalone TTT layer (the original
 * Bit-TTT C API); [model-level API: later sections].
 */
#ifndef BITTTT_H
#define BITTTT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define BITTTT_API __attribute__((visibility("default")))
#else
#define BITTTT_API
#endif

/* ============================================================================================
 * Status codes and library information
 * ========================================================================================== */

/* Codes 0, 1, 2 and 99 are those of the original Bit-TTT C API. */
enum bitttt_status {
    BITTTT_OK = 0,
    BITTTT_NULL_POINTER = 1,       /* a required pointer argument was NULL */
    BITTTT_DIMENSION_MISMATCH = 2, /* a size is 0, does not match, or its byte count overflows */
    BITTTT_INVALID_ARGUMENT = 3,   /* a value is out of range: NaN/Inf data, bad learning rate */
    BITTTT_INVALID_HANDLE = 4,     /* not a live handle: destroyed, forged, other kind */
    BITTTT_OUT_OF_MEMORY = 5,      /* an allocation failed; nothing was changed */
    BITTTT_IO_ERROR = 6,           /* reading or writing a file failed */
    BITTTT_FORMAT_ERROR = 7,       /* malformed file contents */
    BITTTT_UNSUPPORTED = 8,        /* a valid request this build or machine cannot serve */
    BITTTT_PANIC = 99              /* an unexpected internal error, caught at the boundary */
};

/* The library version, "MAJOR.MINOR.PATCH". Static storage; never NULL. */
BITTTT_API const char* bitttt_version(void);

/* A one-line description of why the most recent call on this thread failed, or "" when it
 * succeeded: every function that can fail clears it on entry (bitttt_version, bitttt_last_error
 * and bitttt_status_name cannot fail and leave it alone). The string is thread-local and stays
 * valid until the next call into the library on this thread. */
BITTTT_API const char* bitttt_last_error(void);

/* The name of a status code ("BITTTT_OK", ...; "BITTTT_UNKNOWN_STATUS" for others).
 * Static storage. */
BITTTT_API const char* bitttt_status_name(int status);

/* Self-test of the exception boundary (for tests of bindings): raises inside the library, then
 * catches at the boundary, the failure named by `kind` and returns the code it maps to:
 * 0 nothing (BITTTT_OK), 1 a C++ std::runtime_error (BITTTT_PANIC), 2 an allocation failure
 * (BITTTT_OUT_OF_MEMORY), 3 a non-standard exception (BITTTT_PANIC); other kinds:
 * BITTTT_INVALID_ARGUMENT. */
BITTTT_API int bitttt_selftest_exception(int kind);

/* ============================================================================================
 * Standalone TTT layer (the original Bit-TTT C API)
 *
 * A `reconstruct` TTT layer (DESIGN.md section 2.2): x (hidden_dim) -> down (ternary,
 * hidden_dim/4) -> TTT recurrence with state W (Dt x Dt floats, Dt = hidden_dim/4) -> up (ternary,
 * hidden_dim).
 * Its projection weights come from a fixed seed (0x5EED; see src/model/ttt_layer.hpp), so two
 * layers of the same size give the same outputs for the same inputs. W starts at 0 and carries
 * over between ttt_forward calls until ttt_reset.
 * ========================================================================================== */

/* Creates a layer. hidden_dim: a positive multiple of 4, at most 16384. inner_lr: the TTT step
 * size, finite and in [0, 2] (the update is stable there; 0.1 is the usual value).
 * Returns NULL on failure (invalid arguments, out of memory) with bitttt_last_error() set.
 * Release with ttt_destroy. */
BITTTT_API void* ttt_create(size_t hidden_dim, float inner_lr);

/* Runs seq_len tokens through the layer, updating its state.
 * input, output: seq_len x hidden_dim floats, row-major (token after token). output may be the
 * same buffer as input (in place); any other overlap is undefined.
 * Returns BITTTT_OK, or:
 *   BITTTT_NULL_POINTER        model, input or output is NULL
 *   BITTTT_INVALID_HANDLE      model is not a live TTT layer handle
 *   BITTTT_DIMENSION_MISMATCH  seq_len is 0, or seq_len x hidden_dim x sizeof(float) overflows
 *   BITTTT_INVALID_ARGUMENT    input holds NaN or +-Inf
 * On any failure the state and the output buffer are left untouched (input is checked in full
 * before the first token runs). */
BITTTT_API int ttt_forward(void* model, const float* input, size_t seq_len, float* output);

/* Destroys a layer. NULL is a no-op; a handle that is not live (already destroyed, forged) is
 * ignored and reported through bitttt_last_error(). */
BITTTT_API void ttt_destroy(void* model);

/* Sets the state W back to 0 (as after ttt_create).
 * Returns BITTTT_OK, BITTTT_NULL_POINTER or BITTTT_INVALID_HANDLE. */
BITTTT_API int ttt_reset(void* model);

/* Number of floats in the state W: (hidden_dim/4)^2. Returns 0 when model is NULL or not live
 * (bitttt_last_error() says which). */
BITTTT_API size_t ttt_state_size(const void* model);

/* Copies W, row-major (W[i*Dt + j]; the layer computes z = W f_hat), into state[0 .. count).
 * count must equal ttt_state_size(model).
 * Returns BITTTT_OK, BITTTT_NULL_POINTER, BITTTT_INVALID_HANDLE or BITTTT_DIMENSION_MISMATCH. */
BITTTT_API int ttt_get_state(const void* model, float* state, size_t count);

/* Replaces W by state[0 .. count), row-major as in ttt_get_state; count must equal
 * ttt_state_size(model). Returns BITTTT_OK, BITTTT_NULL_POINTER, BITTTT_INVALID_HANDLE,
 * BITTTT_DIMENSION_MISMATCH or BITTTT_INVALID_ARGUMENT (NaN/Inf in state: W is left unchanged). */
BITTTT_API int ttt_set_state(void* model, const float* state, size_t count);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* BITTTT_H */
