/* The C ABI from strict C99: every function of include/bitttt.h and every status code it can
 * return today. Exits non-zero on the first failure, naming it. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bitttt.h"

static int failures = 0;

#define EXPECT(cond)                                                                             \
    do {                                                                                         \
        if (!(cond)) {                                                                           \
            fprintf(stderr, "%s:%d: failed: %s (last error: '%s')\n", __FILE__, __LINE__, #cond, \
                    bitttt_last_error());                                                        \
            ++failures;                                                                          \
        }                                                                                        \
    } while (0)

/* The call failed with `code` and said why. */
#define EXPECT_STATUS(call, code)                                              \
    do {                                                                       \
        int status_ = (call);                                                  \
        EXPECT(status_ == (code));                                             \
        if ((code) != BITTTT_OK) EXPECT(strlen(bitttt_last_error()) > 0);      \
        if ((code) == BITTTT_OK) EXPECT(strcmp(bitttt_last_error(), "") == 0); \
    } while (0)

enum { kDim = 64, kTokens = 10 };

static float max_abs_diff(const float* a, const float* b, size_t n) {
    float m = 0.0f;
    size_t i;
    for (i = 0; i < n; ++i) {
        float d = (float)fabs(a[i] - b[i]);
        if (d > m) m = d;
    }
    return m;
}

int main(void) {
    float input[kTokens * kDim], output[kTokens * kDim], output2[kTokens * kDim];
    float* state;
    float* state2;
    size_t i, n;
    void* model;
    void* other;
    unsigned seed = 12345u;

    /* Library information. */
    EXPECT(bitttt_version() != NULL && strchr(bitttt_version(), '.') != NULL);
    EXPECT(strcmp(bitttt_status_name(BITTTT_OK), "BITTTT_OK") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_NULL_POINTER), "BITTTT_NULL_POINTER") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_DIMENSION_MISMATCH), "BITTTT_DIMENSION_MISMATCH") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_INVALID_ARGUMENT), "BITTTT_INVALID_ARGUMENT") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_INVALID_HANDLE), "BITTTT_INVALID_HANDLE") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_OUT_OF_MEMORY), "BITTTT_OUT_OF_MEMORY") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_IO_ERROR), "BITTTT_IO_ERROR") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_FORMAT_ERROR), "BITTTT_FORMAT_ERROR") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_UNSUPPORTED), "BITTTT_UNSUPPORTED") == 0);
    EXPECT(strcmp(bitttt_status_name(BITTTT_PANIC), "BITTTT_PANIC") == 0);
    EXPECT(strcmp(bitttt_status_name(12345), "BITTTT_UNKNOWN_STATUS") == 0);

    /* The exception boundary: C++ failures come back as codes. */
    EXPECT_STATUS(bitttt_selftest_exception(0), BITTTT_OK);
    EXPECT_STATUS(bitttt_selftest_exception(1), BITTTT_PANIC);
    EXPECT_STATUS(bitttt_selftest_exception(2), BITTTT_OUT_OF_MEMORY);
    EXPECT_STATUS(bitttt_selftest_exception(3), BITTTT_PANIC);
    EXPECT_STATUS(bitttt_selftest_exception(4), BITTTT_INVALID_ARGUMENT);

    /* ttt_create rejects bad sizes and rates with NULL and a message. */
    EXPECT(ttt_create(0, 0.1f) == NULL && strlen(bitttt_last_error()) > 0);
    EXPECT(ttt_create(66, 0.1f) == NULL && strstr(bitttt_last_error(), "multiple of 4") != NULL);
    EXPECT(ttt_create((size_t)-1, 0.1f) == NULL);
    EXPECT(ttt_create(64, NAN) == NULL);
    EXPECT(ttt_create(64, -1.0f) == NULL);

    model = ttt_create(kDim, 0.1f);
    EXPECT(model != NULL);
    EXPECT(strcmp(bitttt_last_error(), "") == 0);
    if (!model) return 1;

    for (i = 0; i < kTokens * kDim; ++i) {
        seed = seed * 1103515245u + 12345u;
        input[i] = (float)((seed >> 8) & 0xFFFF) / 32768.0f - 1.0f;
    }

    /* State: (D/4)^2 floats, zero at creation. */
    n = ttt_state_size(model);
    EXPECT(n == (kDim / 4) * (kDim / 4));
    state = (float*)calloc(n, sizeof(float));
    state2 = (float*)calloc(n, sizeof(float));
    if (!state || !state2) return 1;
    EXPECT_STATUS(ttt_get_state(model, state, n), BITTTT_OK);
    for (i = 0; i < n; ++i) EXPECT(state[i] == 0.0f);

    /* Forward: the state changes, the output is finite and not all zero. */
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_OK);
    EXPECT_STATUS(ttt_get_state(model, state, n), BITTTT_OK);
    {
        int changed = 0, nonzero = 0;
        for (i = 0; i < n; ++i) changed |= state[i] != 0.0f;
        for (i = 0; i < kTokens * kDim; ++i) {
            EXPECT(isfinite(output[i]));
            nonzero |= output[i] != 0.0f;
        }
        EXPECT(changed);
        EXPECT(nonzero);
    }

    /* Same seed, same weights: a second layer reproduces the output; set_state carries W over. */
    other = ttt_create(kDim, 0.1f);
    EXPECT(other != NULL);
    EXPECT_STATUS(ttt_forward(other, input, kTokens, output2), BITTTT_OK);
    EXPECT(max_abs_diff(output, output2, kTokens * kDim) == 0.0f);
    EXPECT_STATUS(ttt_set_state(other, state, n), BITTTT_OK);
    EXPECT_STATUS(ttt_get_state(other, state2, n), BITTTT_OK);
    EXPECT(memcmp(state, state2, n * sizeof(float)) == 0);
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_OK);
    EXPECT_STATUS(ttt_forward(other, input, kTokens, output2), BITTTT_OK);
    EXPECT(max_abs_diff(output, output2, kTokens * kDim) == 0.0f);

    /* Reset: back to W = 0, and the first output again. */
    EXPECT_STATUS(ttt_reset(model), BITTTT_OK);
    EXPECT_STATUS(ttt_get_state(model, state, n), BITTTT_OK);
    for (i = 0; i < n; ++i) EXPECT(state[i] == 0.0f);

    /* BITTTT_NULL_POINTER */
    EXPECT_STATUS(ttt_forward(NULL, input, kTokens, output), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_forward(model, NULL, kTokens, output), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_forward(model, input, kTokens, NULL), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_reset(NULL), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_get_state(NULL, state, n), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_get_state(model, NULL, n), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_set_state(NULL, state, n), BITTTT_NULL_POINTER);
    EXPECT_STATUS(ttt_set_state(model, NULL, n), BITTTT_NULL_POINTER);
    EXPECT(ttt_state_size(NULL) == 0 && strlen(bitttt_last_error()) > 0);

    /* BITTTT_DIMENSION_MISMATCH */
    EXPECT_STATUS(ttt_forward(model, input, 0, output), BITTTT_DIMENSION_MISMATCH);
    EXPECT_STATUS(ttt_forward(model, input, SIZE_MAX / 8, output), BITTTT_DIMENSION_MISMATCH);
    EXPECT_STATUS(ttt_get_state(model, state, n - 1), BITTTT_DIMENSION_MISMATCH);
    EXPECT_STATUS(ttt_set_state(model, state, n + 1), BITTTT_DIMENSION_MISMATCH);

    /* BITTTT_INVALID_ARGUMENT: NaN/Inf input is rejected, the state and output stay as they were.
     */
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_OK);
    EXPECT_STATUS(ttt_get_state(model, state, n), BITTTT_OK);
    memcpy(output2, output, sizeof(output));
    input[kTokens * kDim - 1] = NAN;
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_INVALID_ARGUMENT);
    input[kTokens * kDim - 1] = INFINITY;
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_INVALID_ARGUMENT);
    input[kTokens * kDim - 1] = 0.5f;
    EXPECT(memcmp(output, output2, sizeof(output)) == 0);
    EXPECT_STATUS(ttt_get_state(model, state2, n), BITTTT_OK);
    EXPECT(memcmp(state, state2, n * sizeof(float)) == 0);
    state2[0] = NAN;
    EXPECT_STATUS(ttt_set_state(model, state2, n), BITTTT_INVALID_ARGUMENT);
    EXPECT_STATUS(ttt_get_state(model, state2, n), BITTTT_OK);
    EXPECT(memcmp(state, state2, n * sizeof(float)) == 0);

    /* BITTTT_INVALID_HANDLE: destroyed and forged handles. */
    ttt_destroy(other);
    EXPECT(strcmp(bitttt_last_error(), "") == 0);
    EXPECT_STATUS(ttt_forward(other, input, kTokens, output), BITTTT_INVALID_HANDLE);
    EXPECT_STATUS(ttt_reset(other), BITTTT_INVALID_HANDLE);
    EXPECT_STATUS(ttt_get_state(other, state, n), BITTTT_INVALID_HANDLE);
    EXPECT_STATUS(ttt_set_state(other, state, n), BITTTT_INVALID_HANDLE);
    EXPECT(ttt_state_size(other) == 0);
    ttt_destroy(other); /* double destroy: ignored, reported */
    EXPECT(strstr(bitttt_last_error(), "not a live") != NULL);
    EXPECT_STATUS(ttt_forward((void*)input, input, kTokens, output), BITTTT_INVALID_HANDLE);
    ttt_destroy(NULL);
    EXPECT(strcmp(bitttt_last_error(), "") == 0);

    /* The live handle still works after all that. */
    EXPECT_STATUS(ttt_forward(model, input, kTokens, output), BITTTT_OK);
    ttt_destroy(model);
    free(state);
    free(state2);
    if (failures) {
        fprintf(stderr, "capi_c99_test: %d failure(s)\n", failures);
        return 1;
    }
    printf("capi_c99_test: all checks passed\n");
    return 0;
}
