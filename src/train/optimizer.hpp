// AdamW, the learning-rate schedule and global-norm gradient clipping (DESIGN.md §2.4).
// The optimizer moments mirror the parameter buffer (same layout, same offsets).
#pragma once

#include <cstdint>

namespace bitttt::train {

struct AdamWConfig {
    float beta1 = 0.9f;
    float beta2 = 0.95f;
    float eps = 1e-8f;
    float weight_decay = 0.1f;  // applied to matrices only (ParamSpec::weight_decay())
};

// Learning rate of step `step` (0-based): linear warmup from max_lr/warmup to max_lr over
// `warmup` steps, then cosine decay to min_lr at step total_steps − 1:
//     lr = min_lr + ½ (max_lr − min_lr) (1 + cos(π · (step − warmup) / (total − 1 − warmup)))
// Steps past the end stay at min_lr.
float learning_rate(int64_t step, int64_t total_steps, int64_t warmup, float max_lr, float min_lr);

// √(Σ g²), summed in double over fixed blocks, so the result does not depend on thread count.
double global_norm(const float* g, int64_t n);

// One AdamW step on n parameters (t = 1-based step count for bias correction); the gradient is
// multiplied by grad_scale first (clipping). Decoupled weight decay: p −= lr · wd · p.
//     m = β1 m + (1 − β1) g;  v = β2 v + (1 − β2) g²
//     p −= lr · (m / (1 − β1^t)) / (√(v / (1 − β2^t)) + ε) + lr · wd · p
void adamw_update(float* params, const float* grads, float* m, float* v, int64_t n, float lr,
                  float grad_scale, int64_t t, bool decay, const AdamWConfig& config);

}  // namespace bitttt::train
